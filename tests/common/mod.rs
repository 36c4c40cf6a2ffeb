//! A guest-side script for the conformance tests: it drives the device model only through raw
//! config-space and register accesses and raw CSB/ring memory, following spec §6 and §8.2–8.4.
//! It is deliberately plain (no driver code) so the tests check the model against the spec,
//! not against our own driver.
#![allow(dead_code)]

use ptnetd::abi::csb::{NAF_FORCE_READ, NAF_FORCE_RECLAIM};
use ptnetd::abi::netmap::NS_MOREFRAG;
use ptnetd::abi::pci as ids;
use ptnetd::abi::{memdev as mdr, regs};
use ptnetd::csb::{fence_then_read_flag, rearm_then_recheck, Atok, Ktoa};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::pci::{MSIX_CAP_OFFSET, MSIX_CTRL_ENABLE};
use ptnetd::model::port::{NmPort, PortSpec};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::vm::{PciFunction, Vm, MSI_ADDRESS_BASE};
use ptnetd::nm::{rx_ring_ofs_index, IfView, RingView, Slot};
use ptnetd::ring;
use ptnetd::shm::Region;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First CPU vector used for ring interrupts (vector = BASE + ring).
pub const VEC_BASE: u32 = 0x40;

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A guest's view of one ptnet/memdev pair found on the VM's bus.
pub struct Guest {
    pub vm: Arc<Vm>,
    pub nic: PciFunction,
    pub memdev: PciFunction,
    pub dev: Arc<PtnetDevice>,
    pub ntx: u32,
    pub nrx: u32,
    pub gh: Region,
    pub hg: Region,
    pub gh_gpa: u64,
    pub hg_gpa: u64,
    pub bar1: Region,
    pub rings: Vec<GRing>,
    pub buf_pool_ofs: usize,
    pub buf_size: usize,
    pub buf_num: u32,
    pub hdr_len: u32,
    pub kicks: u64,
}

/// Guest ring state (§8.1).
pub struct GRing {
    pub tx: bool,
    pub idx: u32,
    pub view: RingView,
    pub atok: Atok,
    pub ktoa: Ktoa,
    pub n: u32,
    pub hwcur: u32,
    pub hwtail: u32,
    pub rhead: u32,
    pub rcur: u32,
    pub rtail: u32,
}

pub fn reg_read(f: &PciFunction, off: u32) -> u32 {
    f.bar_read(0, off as u64, 4) as u32
}
pub fn reg_write(f: &PciFunction, off: u32, v: u32) {
    f.bar_write(0, off as u64, 4, v as u64)
}

/// Finds the ptnet function by vendor, device and class (§1 pitfall) and its memdev by MEMID.
pub fn find(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> (PciFunction, PciFunction) {
    let fs = vm.functions();
    let nic = fs
        .iter()
        .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, dev)))
        .expect("nic on the bus")
        .1
        .clone();
    assert_eq!(nic.config_read(0, 2) as u16, ids::VENDOR_ID);
    assert_eq!(nic.config_read(2, 2) as u16, ids::PTNET_DEVICE_ID);
    assert_eq!(nic.config_read(0x0b, 1), 0x02);
    let memid = reg_read(&nic, regs::HOSTMEMID);
    let memdev = fs
        .iter()
        .find(|(_, f)| {
            f.config_read(2, 2) as u16 == ids::MEMDEV_DEVICE_ID
                && f.config_read(0x0a, 2) == 0x00ff
                && f.bar_read(0, mdr::MEMID as u64, 4) as u32 == memid
        })
        .expect("memdev with matching MEMID")
        .1
        .clone();
    (nic, memdev)
}

/// Programs MSI-X entry i = (0xFEE00000, VEC_BASE + i), unmasked, and enables MSI-X.
pub fn setup_msix(nic: &PciFunction, n: u32) {
    for i in 0..n {
        let e = (i * 16) as u64;
        nic.bar_write(2, e, 4, MSI_ADDRESS_BASE);
        nic.bar_write(2, e + 4, 4, 0);
        nic.bar_write(2, e + 8, 4, (VEC_BASE + i) as u64);
        nic.bar_write(2, e + 12, 4, 0);
    }
    let ctl = nic.config_read(MSIX_CAP_OFFSET as u16 + 2, 2);
    nic.config_write(MSIX_CAP_OFFSET as u16 + 2, 2, ctl | MSIX_CTRL_ENABLE as u32);
}

pub struct Opts {
    pub want_vnet: bool,
    pub msix: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self { want_vnet: false, msix: true }
    }
}

impl Guest {
    /// Bring-up of §6 B–C up to (not including) CREATE.
    pub fn attach(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>, o: &Opts) -> Guest {
        let (nic, memdev) = find(vm, dev);
        nic.config_write(4, 2, 0x7); // io, mem, bus master
        reg_write(&nic, regs::PTFEAT, if o.want_vnet { regs::F_VNET_HDR } else { 0 });
        let feat = reg_read(&nic, regs::PTFEAT);
        let ntx = reg_read(&nic, regs::NUM_TX_RINGS);
        let nrx = reg_read(&nic, regs::NUM_RX_RINGS);
        assert!((ntx + nrx) * 64 <= 4096);
        let (gh_gpa, gh) = vm.alloc_dma(4096).unwrap();
        let (hg_gpa, hg) = vm.alloc_dma(4096).unwrap();
        reg_write(&nic, regs::CSB_GH_BAH, (gh_gpa >> 32) as u32);
        reg_write(&nic, regs::CSB_GH_BAL, gh_gpa as u32);
        reg_write(&nic, regs::CSB_HG_BAH, (hg_gpa >> 32) as u32);
        reg_write(&nic, regs::CSB_HG_BAL, hg_gpa as u32);
        if o.msix {
            setup_msix(&nic, ntx + nrx);
        }
        let hdr_len = if feat & regs::F_VNET_HDR != 0 {
            reg_write(&nic, regs::VNET_HDR_LEN, 12);
            reg_read(&nic, regs::VNET_HDR_LEN)
        } else {
            0
        };
        // C1: memory
        let hi = memdev.bar_read(0, mdr::MEMSIZE_HI as u64, 4);
        let lo = memdev.bar_read(0, mdr::MEMSIZE_LO as u64, 4);
        let memsize = (hi << 32 | lo) as usize;
        let bar1 = memdev.bar_memory(1).unwrap().sub(0, memsize).unwrap();
        let buf_size = memdev.bar_read(0, mdr::BUF_POOL_OBJSZ as u64, 4) as usize;
        let buf_num = memdev.bar_read(0, mdr::BUF_POOL_OBJNUM as u64, 4) as u32;
        let buf_pool_ofs = memdev.bar_read(0, mdr::BUF_POOL_OFS as u64, 4) as usize;
        let nifp = reg_read(&nic, regs::NIFP_OFS) as usize;
        let (ifv, counts) = IfView::new(&bar1.sub(nifp, memsize - nifp).unwrap()).unwrap();
        let mut rings = Vec::new();
        for i in 0..ntx + nrx {
            let tx = i < ntx;
            let k = if tx { i as usize } else { rx_ring_ofs_index(&counts, i - ntx) };
            let ofs = (nifp as i64 + ifv.ring_ofs(k).unwrap()) as usize;
            let slots = reg_read(&nic, if tx { regs::NUM_TX_SLOTS } else { regs::NUM_RX_SLOTS });
            let view = RingView::with_slots(&bar1.sub(ofs, memsize - ofs).unwrap(), slots).unwrap();
            rings.push(GRing {
                tx,
                idx: i,
                view,
                atok: Atok::of(&gh, i).unwrap(),
                ktoa: Ktoa::of(&hg, i).unwrap(),
                n: slots,
                hwcur: 0,
                hwtail: 0,
                rhead: 0,
                rcur: 0,
                rtail: 0,
            });
        }
        Guest {
            vm: vm.clone(),
            nic,
            memdev,
            dev: dev.clone(),
            ntx,
            nrx,
            gh,
            hg,
            gh_gpa,
            hg_gpa,
            bar1,
            rings,
            buf_pool_ofs,
            buf_size,
            buf_num,
            hdr_len,
            kicks: 0,
        }
    }

    /// C4: CSB pre-init, CREATE, status, import (§5.3).
    pub fn create(&mut self) -> u32 {
        for r in &self.rings {
            r.ktoa.set_kern_need_kick(1);
            r.atok.set_appl_need_kick(if r.tx { 0 } else { 1 });
        }
        reg_write(&self.nic, regs::PTCTL, regs::PTCTL_CREATE);
        let st = reg_read(&self.nic, regs::PTCTL);
        if st == 0 {
            self.import();
        }
        st
    }

    /// sync_from_csb (§5.3).
    pub fn import(&mut self) {
        for r in &mut self.rings {
            let a = r.atok.kern_read();
            r.rhead = a.head;
            r.rcur = a.cur;
            let (hwcur, hwtail) = r.ktoa.appl_read();
            r.hwcur = hwcur;
            r.hwtail = hwtail;
            r.rtail = hwtail;
            r.view.set_head(a.head);
            r.view.set_cur(a.cur);
            r.view.set_tail(hwtail);
        }
    }

    pub fn delete(&self) -> u32 {
        reg_write(&self.nic, regs::PTCTL, regs::PTCTL_DELETE);
        reg_read(&self.nic, regs::PTCTL)
    }

    /// §11 detach: DELETE, zero the CSB addresses.
    pub fn shutdown(&self) {
        assert_eq!(self.delete(), 0);
        for r in [regs::CSB_GH_BAH, regs::CSB_GH_BAL, regs::CSB_HG_BAH, regs::CSB_HG_BAL] {
            reg_write(&self.nic, r, 0);
        }
    }

    pub fn kick(&mut self, i: u32) {
        self.kicks += 1;
        reg_write(&self.nic, regs::kick_offset(i), 0);
    }

    pub fn tx(&self, i: u32) -> &GRing {
        &self.rings[i as usize]
    }
    pub fn rx(&self, j: u32) -> &GRing {
        &self.rings[(self.ntx + j) as usize]
    }

    fn read_ktoa(r: &mut GRing) {
        let (hwcur, hwtail) = r.ktoa.appl_read();
        assert!(hwcur < r.n && hwtail < r.n, "host published out-of-range indices");
        r.hwcur = hwcur;
        r.hwtail = hwtail;
    }

    /// Guest txsync (§8.2) of TX ring `i`, with `head = cur = ring.head` as set by the user.
    pub fn txsync(&mut self, i: u32, flags: u32) {
        let ri = i as usize;
        let kick;
        {
            let r = &mut self.rings[ri];
            r.rhead = r.view.head();
            r.rcur = r.view.cur();
            r.atok.set_appl_need_kick(0);
            r.hwcur = r.ktoa.appl_read().0;
            r.atok.appl_publish_head_cur(r.rhead, r.rcur);
            let wouldblock = r.rcur == r.hwtail;
            let knk = fence_then_read_flag(|| r.ktoa.kern_need_kick());
            kick =
                ((r.rhead != r.hwcur || wouldblock) && knk != 0) || flags & NAF_FORCE_RECLAIM != 0;
            if kick {
                r.atok.set_sync_flags(flags);
            }
            if wouldblock || flags & NAF_FORCE_RECLAIM != 0 {
                Self::read_ktoa(r);
            }
            if r.rcur == r.hwtail {
                let mut probe = (0, 0);
                rearm_then_recheck(
                    |v| r.atok.set_appl_need_kick(v),
                    || {
                        probe = r.ktoa.appl_read();
                        probe.1 != r.rcur
                    },
                );
                Self::read_ktoa(r);
            }
        }
        if kick {
            self.kick(i);
        }
        let r = &mut self.rings[ri];
        r.rtail = r.hwtail;
        r.view.set_tail(r.hwtail);
    }

    /// Guest rxsync (§8.3) of RX ring `j`.
    pub fn rxsync(&mut self, j: u32) {
        let ri = (self.ntx + j) as usize;
        let kick;
        {
            let r = &mut self.rings[ri];
            r.rhead = r.view.head();
            r.rcur = r.view.cur();
            r.atok.set_appl_need_kick(0);
            Self::read_ktoa(r);
            if r.rhead != r.hwcur {
                r.atok.appl_publish_head_cur(r.rhead, r.rcur);
            }
            if r.rcur == r.hwtail {
                rearm_then_recheck(
                    |v| r.atok.set_appl_need_kick(v),
                    || r.ktoa.appl_read().1 != r.rcur,
                );
                Self::read_ktoa(r);
            }
            let wouldblock = r.rcur == r.hwtail;
            let knk = fence_then_read_flag(|| r.ktoa.kern_need_kick());
            kick = (r.rhead != r.hwcur || wouldblock) && knk != 0;
            if kick {
                r.atok.set_sync_flags(NAF_FORCE_READ);
            }
        }
        if kick {
            self.kick(self.ntx + j);
        }
        let r = &mut self.rings[ri];
        r.rtail = r.hwtail;
        r.view.set_tail(r.hwtail);
    }

    fn buf_off(&self, idx: u32) -> usize {
        assert!(idx >= 2 && idx < self.buf_num, "bad buffer index {idx}");
        self.buf_pool_ofs + idx as usize * self.buf_size
    }

    /// Copies `frame` (header included) into TX ring `i` at its head with NS_MOREFRAG chains;
    /// returns false if there is no room. Does not sync.
    pub fn put_tx(&mut self, i: u32, frame: &[u8]) -> bool {
        let bsz = self.buf_size;
        let need = frame.len().div_ceil(bsz).max(1) as u32;
        let r = &self.rings[i as usize];
        let head = r.view.head();
        if ring::space(head, r.rtail, r.n) < need {
            return false;
        }
        let mut h = head;
        for k in 0..need as usize {
            let s = r.view.slot(h);
            let chunk = &frame[(k * bsz).min(frame.len())..((k + 1) * bsz).min(frame.len())];
            self.bar1.write_bytes(self.buf_off(s.buf_idx), chunk).unwrap();
            let flags = if (k as u32) + 1 < need { NS_MOREFRAG } else { 0 };
            r.view.set_slot(h, Slot { buf_idx: s.buf_idx, len: chunk.len() as u16, flags });
            h = ring::next(h, r.n);
        }
        r.view.set_head(h);
        r.view.set_cur(h);
        true
    }

    /// Takes one complete frame from RX ring `j` (rewinding on an incomplete one, E5).
    pub fn get_rx(&mut self, j: u32) -> Option<Vec<u8>> {
        let r = &self.rings[(self.ntx + j) as usize];
        let mut h = r.view.head();
        let mut out = Vec::new();
        loop {
            if h == r.rtail {
                // Empty, or an incomplete chain (E5): leave head at the chain's first slot and
                // move cur to tail, so the next rxsync sees "would block" and asks for more
                // (netmap: cur may run ahead of head to wait without releasing, §7.5).
                r.view.set_cur(r.rtail);
                return None;
            }
            let s = r.view.slot(h);
            let mut b = vec![0u8; s.len as usize];
            assert!(s.len as usize <= self.buf_size, "host wrote len {} > buffer", s.len);
            self.bar1.read_bytes(self.buf_off(s.buf_idx), &mut b).unwrap();
            out.extend_from_slice(&b);
            h = ring::next(h, r.n);
            if s.flags & NS_MOREFRAG == 0 {
                break;
            }
        }
        r.view.set_head(h);
        r.view.set_cur(h);
        Some(out)
    }

    /// Waits until `cond` holds, syncing every ring in between (bounded).
    pub fn poll_until(
        &mut self,
        timeout: Duration,
        mut cond: impl FnMut(&mut Guest) -> bool,
    ) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if cond(self) {
                return true;
            }
            let seen = self.vm.irq().generation();
            for j in 0..self.nrx {
                self.rxsync(j);
            }
            if cond(self) {
                return true;
            }
            self.vm.irq().wait(seen, Duration::from_millis(2));
        }
        cond(self)
    }

    pub fn interrupts(&self, ring: u32) -> u64 {
        self.vm.irq().count((VEC_BASE + ring) as u8)
    }
}

/// One VM with one ptnet device on a fresh port in its own region; returns the port too.
pub fn vm_with_port(rings: u32, slots: u32) -> (Arc<Vm>, Arc<PtnetDevice>, Arc<NmPort>) {
    let mem =
        Arc::new(NetmapMemory::new(1, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap());
    let port = NmPort::new(mem, &PortSpec::new("p0", rings, slots)).unwrap();
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    (vm, dev, port)
}

/// Deterministic test frame: Ethernet header + 8-byte sequence + 4-byte FNV checksum + filler.
pub fn make_frame(dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.push(x as u8);
    }
    let c = fnv(&f[26..]) ^ (len as u32);
    f[22..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// Checks a frame made by [`make_frame`]; returns its sequence number.
pub fn check_frame(f: &[u8]) -> Option<u64> {
    if f.len() < 60 || f[12..14] != [0x88, 0xb5] {
        return None;
    }
    let seq = u64::from_be_bytes(f[14..22].try_into().ok()?);
    let c = u32::from_be_bytes(f[22..26].try_into().ok()?);
    (fnv(&f[26..]) ^ f.len() as u32 == c).then_some(seq)
}

fn fnv(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| (h ^ x as u32).wrapping_mul(0x0100_0193))
}

/// A well-formed Ethernet/IPv4/UDP frame of `len` bytes (60..=9014) to the discard port, with
/// the sequence number and an FNV checksum of the rest of the payload at the start of the UDP
/// payload. Correct IPv4 header checksum and lengths, UDP checksum 0 (allowed on IPv4).
pub fn make_udp_frame(dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    let len = len.clamp(60, 9014);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = ptnetd::model::offload::internet_checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0, 9, 0, 9]);
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.push(x as u8);
    }
    let c = fnv(&f[54..]) ^ len as u32;
    f[50..54].copy_from_slice(&c.to_be_bytes());
    f
}

/// Checks a frame made by [`make_udp_frame`]; returns its sequence number.
pub fn check_udp_frame(f: &[u8]) -> Option<u64> {
    if f.len() < 60 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return None;
    }
    if u16::from_be_bytes([f[16], f[17]]) as usize != f.len() - 14 {
        return None;
    }
    if ptnetd::model::offload::internet_checksum(&f[14..34], 0) != 0 {
        return None;
    }
    let seq = u64::from_be_bytes(f[42..50].try_into().ok()?);
    let c = u32::from_be_bytes(f[50..54].try_into().ok()?);
    (fnv(&f[54..]) ^ f.len() as u32 == c).then_some(seq)
}
