//! `ptnet-host`'s vfio-user side without QEMU: the backends' message handlers called directly
//! (config space, region table, BAR0 registers, DMA map/unmap, MSI-X eventfds, CREATE, traffic
//! with an interrupt, hostile inputs), then end to end over real sockets with the `vfio-user`
//! crate's own client standing in for QEMU.
#![cfg(not(target_os = "redox"))]

use proptest::prelude::*;
use ptnetd::abi::csb::{array_size, ENTRY_SIZE};
use ptnetd::abi::memdev as mdr;
use ptnetd::abi::regs::*;
use ptnetd::csb::{fence_then_read_flag, Atok, Ktoa};
use ptnetd::model::vfio::backend::{
    Function, MemdevBackend, PtnetBackend, BAR0_REGION, BAR1_REGION, BAR2_REGION, CONFIG_REGION,
    INTX_IRQ, MSIX_IRQ,
};
use ptnetd::model::vfio::host::{REFLECT_MAC, SOURCE_MAC};
use ptnetd::model::vfio::{BackendKind, Host, HostConfig, Topology};
use ptnetd::nm::{rx_ring_ofs_index, tx_ring_ofs_index, IfView, RingView};
use ptnetd::ring;
use ptnetd::shm::Region;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{Client, DmaMapFlags, DmaUnmapFlags, ServerBackend};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const EVENTFD_TRIGGER: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
/// Guest-physical base of the test guest's RAM.
const RAM_GPA: u64 = 0x1000_0000;
const RAM_LEN: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

fn tmp_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ptnet-vfio-{}-{tag}-{n}", std::process::id()))
}

/// An unlinked file of `len` bytes: the guest's RAM (QEMU's memfd).
fn ram_file(len: u64) -> File {
    let path = tmp_path("ram");
    let f = File::options().read(true).write(true).create_new(true).open(&path).expect("ram file");
    std::fs::remove_file(&path).unwrap();
    f.set_len(len).unwrap();
    f
}

/// The guest's own view of memory that `file` backs at `gpa`.
fn view(file: &File, gpa: u64, len: u64) -> Arc<GuestMemoryMmap> {
    let fo = FileOffset::new(file.try_clone().unwrap(), 0);
    let r = GuestRegionMmap::from_range(GuestAddress(gpa), len as usize, Some(fo)).unwrap();
    Arc::new(GuestMemoryMmap::from_regions(vec![r]).unwrap())
}

/// A socket pair standing in for an eventfd (the device writes 8 bytes per interrupt).
fn fake_eventfd() -> (File, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(TIMEOUT)).unwrap();
    (File::from(OwnedFd::from(a)), b)
}

fn topology(vms: u32, backend: BackendKind) -> Topology {
    Topology::build(&HostConfig::new(tmp_path("unused"), vms, backend)).unwrap()
}

/// Register access as a guest has it (BAR0, 32-bit).
trait Regs {
    fn rd(&mut self, off: u32) -> u32;
    fn wr(&mut self, off: u32, v: u32);
}

impl Regs for PtnetBackend {
    fn rd(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.region_read(BAR0_REGION, off.into(), &mut b).unwrap();
        u32::from_le_bytes(b)
    }
    fn wr(&mut self, off: u32, v: u32) {
        self.region_write(BAR0_REGION, off.into(), &v.to_le_bytes()).unwrap();
    }
}

impl Regs for Client {
    fn rd(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.region_read(BAR0_REGION, off.into(), &mut b).unwrap();
        u32::from_le_bytes(b)
    }
    fn wr(&mut self, off: u32, v: u32) {
        self.region_write(BAR0_REGION, off.into(), &v.to_le_bytes()).unwrap();
    }
}

/// Writes the two CSB array addresses (§6 B6) and returns the PTCTL status of CREATE.
fn program_csb_and_create(r: &mut impl Regs, gh: u64, hg: u64) -> u32 {
    r.wr(CSB_GH_BAH, (gh >> 32) as u32);
    r.wr(CSB_GH_BAL, gh as u32);
    r.wr(CSB_HG_BAH, (hg >> 32) as u32);
    r.wr(CSB_HG_BAL, hg as u32);
    r.wr(PTCTL, PTCTL_CREATE);
    r.rd(PTCTL)
}

/// A raw guest on ring 0 of each direction: netmap region view, CSB in its RAM (§8.2–8.4).
struct RawGuest {
    nm: Region,
    tx: RingView,
    tx_base: usize,
    rx: RingView,
    rx_base: usize,
    ntx: u32,
    gh: Region,
    hg: Region,
    tx_head: u32,
    rx_head: u32,
}

impl RawGuest {
    /// After a successful CREATE: `nm` is the guest's view of memdev BAR1, `gh`/`hg` its views
    /// of the CSB arrays.
    fn new(r: &mut impl Regs, nm: Region, gh: Region, hg: Region) -> Self {
        let nifp = r.rd(NIFP_OFS) as usize;
        let ntx = r.rd(NUM_TX_RINGS);
        let ifr = nm.sub(nifp, nm.len() - nifp).unwrap();
        let (ifv, counts) = IfView::new(&ifr).unwrap();
        let ring_at = |k: usize| {
            let base = (nifp as i64 + ifv.ring_ofs(k).unwrap()) as usize;
            (RingView::new(&nm.sub(base, nm.len() - base).unwrap()).unwrap(), base)
        };
        let (tx, tx_base) = ring_at(tx_ring_ofs_index(0));
        let (rx, rx_base) = ring_at(rx_ring_ofs_index(&counts, 0));
        let (tx_head, rx_head) = (tx.head(), rx.head());
        Self { nm, tx, tx_base, rx, rx_base, ntx, gh, hg, tx_head, rx_head }
    }

    fn atok(&self, i: u32) -> Atok {
        Atok::of(&self.gh, i).unwrap()
    }

    fn ktoa(&self, i: u32) -> Ktoa {
        Ktoa::of(&self.hg, i).unwrap()
    }

    fn buf(ring: &RingView, base: usize, idx: u32) -> usize {
        (base as i64 + ring.buf_ofs()) as usize + idx as usize * ring.nr_buf_size() as usize
    }

    /// Puts `frame` in the next TX slot, publishes it and kicks if the host asks (§8.2).
    fn send(&mut self, r: &mut impl Regs, frame: &[u8]) {
        let i = self.tx_head;
        let s = self.tx.slot(i);
        self.nm.write_bytes(Self::buf(&self.tx, self.tx_base, s.buf_idx), frame).unwrap();
        self.tx.set_len_flags(i, frame.len() as u16, 0);
        self.tx_head = ring::next(i, self.tx.num_slots());
        self.publish(r, 0, self.tx_head);
    }

    fn publish(&self, r: &mut impl Regs, ring_no: u32, head: u32) {
        let a = self.atok(ring_no);
        a.appl_publish_head_cur(head, head);
        if fence_then_read_flag(|| self.ktoa(ring_no).kern_need_kick()) != 0 {
            r.wr(kick_offset(ring_no), 0);
        }
    }

    /// Waits for a frame on RX ring 0 (by polling the CSB), takes it and releases the slot.
    fn recv(&mut self, r: &mut impl Regs) -> Option<Vec<u8>> {
        let k = self.ktoa(self.ntx);
        let t0 = Instant::now();
        while k.appl_read().1 == self.rx_head {
            if t0.elapsed() > TIMEOUT {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = self.rx.slot(self.rx_head);
        let mut v = vec![0u8; s.len as usize];
        self.nm.read_bytes(Self::buf(&self.rx, self.rx_base, s.buf_idx), &mut v).unwrap();
        self.rx_head = ring::next(self.rx_head, self.rx.num_slots());
        self.publish(r, self.ntx, self.rx_head);
        Some(v)
    }
}

fn frame(src_last: u8, seq: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, src_last]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..46).map(|i| seq.wrapping_add(i)));
    f
}

// ---------------------------------------------------------------------------------------------
// Handlers called directly.

#[test]
fn config_space_through_the_config_region() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let mut cs = [0u8; 256];
    p.region_read(CONFIG_REGION, 0, &mut cs).unwrap();
    let w16 = |cs: &[u8], o: usize| u16::from_le_bytes([cs[o], cs[o + 1]]);
    let w32 = |cs: &[u8], o: usize| u32::from_le_bytes([cs[o], cs[o + 1], cs[o + 2], cs[o + 3]]);
    assert_eq!((w16(&cs, 0), w16(&cs, 2)), (0x1b36, 0x000d));
    assert_eq!(&cs[9..12], &[0x00, 0x00, 0x02], "class network/ethernet");
    assert_eq!((w16(&cs, 0x2c), w16(&cs, 0x2e)), (0x1af4, 0x1100));
    assert_eq!(w16(&cs, 6) & 0x10, 0x10, "capabilities list");
    assert_eq!(w32(&cs, 0x10), 0x1, "BAR0 is I/O");
    assert_eq!(w32(&cs, 0x18), 0x0, "BAR2 is 32-bit memory");
    assert_eq!(cs[0x3d], 1, "INTA advertised");
    let cap = cs[0x34] as usize;
    assert_eq!(cap, 0x40);
    assert_eq!(cs[cap], 0x11, "MSI-X");
    assert_eq!(w16(&cs, cap + 2) & 0x7ff, 1, "2 vectors (1 TX + 1 RX ring)");
    assert_eq!(w32(&cs, cap + 4), 2, "table in BAR2 at 0");
    assert_eq!(w32(&cs, cap + 8), 2048 | 2, "PBA in BAR2 at 2048");
    // Narrow and unaligned reads see the same bytes.
    let mut b2 = [0u8; 2];
    p.region_read(CONFIG_REGION, 2, &mut b2).unwrap();
    assert_eq!(u16::from_le_bytes(b2), 0x000d);
    let mut b3 = [0u8; 3];
    p.region_read(CONFIG_REGION, 9, &mut b3).unwrap();
    assert_eq!(b3, [0, 0, 2]);
    // Command register: I/O, memory and bus master are writable.
    p.region_write(CONFIG_REGION, 4, &7u16.to_le_bytes()).unwrap();
    p.region_read(CONFIG_REGION, 4, &mut b2).unwrap();
    assert_eq!(u16::from_le_bytes(b2), 7);
    assert!(p.region_read(CONFIG_REGION, 250, &mut [0u8; 8]).is_err());
    assert!(p.region_write(CONFIG_REGION, 256, &[0]).is_err());
    assert!(p.region_read(CONFIG_REGION, u64::MAX, &mut [0u8; 2]).is_err());

    let mut m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
    m.region_read(CONFIG_REGION, 0, &mut cs).unwrap();
    assert_eq!((w16(&cs, 0), w16(&cs, 2)), (0x1b36, 0x000c));
    assert_eq!(&cs[9..12], &[0x00, 0xff, 0x00], "QEMU's class quirk");
    assert_eq!(w32(&cs, 0x10), 0x1, "BAR0 is I/O");
    assert_eq!(w32(&cs, 0x14), 0x8, "BAR1 is prefetchable 32-bit memory");
    assert_eq!((cs[0x34], cs[0x3d]), (0, 0), "no capabilities, no pin");
}

#[test]
fn region_and_irq_tables() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    let regions = p.regions();
    assert_eq!(regions.len(), 9);
    for (i, r) in regions.iter().enumerate() {
        assert_eq!(r.region_info.index, i as u32);
        let want = match i as u32 {
            BAR0_REGION => (256, rw),
            BAR2_REGION => (4096, rw),
            CONFIG_REGION => (256, rw),
            _ => (0, 0),
        };
        assert_eq!((r.region_info.size, r.region_info.flags), want, "region {i}");
        assert!(r.sparse_areas.is_empty() && r.mmap_fd.is_none());
    }
    let irqs = p.irqs();
    assert_eq!(irqs.len(), 5);
    assert_eq!(irqs[INTX_IRQ as usize].count, 1);
    assert_eq!(irqs[MSIX_IRQ as usize].count, 2);
    assert_eq!(irqs[1].count + irqs[3].count + irqs[4].count, 0);

    let m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
    let memsize = vm.port.mem().layout().total;
    let regions = m.regions();
    assert_eq!(regions[BAR0_REGION as usize].region_info.size, 128);
    let bar1 = &regions[BAR1_REGION as usize];
    assert_eq!(bar1.region_info.size, memsize.next_power_of_two());
    assert_eq!(bar1.region_info.flags, rw | VFIO_REGION_INFO_FLAG_MMAP);
    assert_eq!(bar1.mmap_fd, vm.memdev.bar1().memfd());
    assert_eq!(bar1.sparse_areas.len(), 1);
    let a = bar1.sparse_areas[0].area;
    assert_eq!(a.offset, 0);
    assert!(a.size >= memsize && a.size.is_multiple_of(4096) && a.size <= m.bar1_size());
    assert_eq!(regions[CONFIG_REGION as usize].region_info.size, 256);
    assert_eq!(regions[BAR2_REGION as usize].region_info.size, 0);
    assert!(m.irqs().iter().all(|i| i.count == 0));
}

#[test]
fn bar0_registers() {
    for (backend, vnet) in [(BackendKind::Reflector, false), (BackendKind::Switch, true)] {
        let t = topology(2, backend);
        let vm = &t.vms[1];
        let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
        p.wr(PTFEAT, F_VNET_HDR);
        assert_eq!(p.rd(PTFEAT), if vnet { F_VNET_HDR } else { 0 }, "{backend:?}");
        p.wr(VNET_HDR_LEN, 12);
        assert_eq!(p.rd(VNET_HDR_LEN), if vnet { 12 } else { 0 }, "{backend:?}");
        assert_eq!(p.rd(MAC_HI), 0x5254);
        assert_eq!(p.rd(MAC_LO), 0x0012_3457, "vm1 is 52:54:00:12:34:57");
        assert_eq!((p.rd(NUM_TX_RINGS), p.rd(NUM_RX_RINGS)), (1, 1));
        assert_eq!((p.rd(NUM_TX_SLOTS), p.rd(NUM_RX_SLOTS)), (256, 256));
        // Narrow reads return the low bytes of the register (E12); 8 bytes are two dwords.
        let mut b1 = [0u8; 1];
        p.region_read(BAR0_REGION, MAC_LO.into(), &mut b1).unwrap();
        assert_eq!(b1[0], 0x57);
        let mut b8 = [0u8; 8];
        p.region_read(BAR0_REGION, MAC_LO.into(), &mut b8).unwrap();
        assert_eq!(u64::from_le_bytes(b8), 0x5254 << 32 | 0x0012_3457);
        // MAC registers are read-only; an unaligned narrow write is ignored.
        p.wr(MAC_LO, 0);
        p.region_write(BAR0_REGION, 45, &[0]).unwrap();
        assert_eq!(p.rd(MAC_LO), 0x0012_3457);
        // HOSTMEMID matches the memdev's MEMID.
        let mut m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
        let mut b4 = [0u8; 4];
        m.region_read(BAR0_REGION, mdr::MEMID.into(), &mut b4).unwrap();
        assert_eq!(u32::from_le_bytes(b4), p.rd(HOSTMEMID));
        m.region_read(BAR0_REGION, mdr::MEMSIZE_LO.into(), &mut b4).unwrap();
        assert_eq!(u64::from(u32::from_le_bytes(b4)), vm.port.mem().layout().total);
        // Accesses outside the BAR or of odd sizes are errors and change nothing.
        assert!(p.region_read(BAR0_REGION, 256, &mut b4).is_err());
        assert!(p.region_read(BAR0_REGION, 254, &mut b4).is_err());
        assert!(p.region_write(BAR0_REGION, 0, &[1, 0, 0]).is_err());
        assert!(m.region_read(BAR0_REGION, 128, &mut b4).is_err());
        assert!(p.region_read(7 + 10, 0, &mut b4).is_err());
    }
}

#[test]
fn memdev_bar1_accesses_reach_the_region() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
    let region = vm.memdev.bar1();
    let nifp = vm.port.nifp_ofs();
    let mut name = [0u8; 3];
    m.region_read(BAR1_REGION, nifp, &mut name).unwrap();
    assert_eq!(&name, b"vm0", "netmap_if name through BAR1");
    let last = region.len() as u64 - 8;
    m.region_write(BAR1_REGION, last, &0x1122_3344_5566_7788u64.to_le_bytes()).unwrap();
    assert_eq!(region.load_u64(last as usize), 0x1122_3344_5566_7788);
    // Past MEMSIZE, inside the power-of-two BAR: all-ones, writes dropped.
    let mut b = [0u8; 4];
    m.region_read(BAR1_REGION, region.len() as u64, &mut b).unwrap();
    assert_eq!(b, [0xff; 4]);
    m.region_write(BAR1_REGION, region.len() as u64 - 2, &[1, 2, 3, 4]).unwrap();
    assert!(m.region_read(BAR1_REGION, m.bar1_size(), &mut b).is_err());
}

/// DMA map of a memfd-like file, CSB inside it, CREATE refused before MSI-X (E6) and accepted
/// after SET_IRQS, a frame reflected with an interrupt on the RX vector's eventfd, DELETE, DMA
/// unmap, disconnect.
#[test]
fn dma_csb_create_traffic_and_interrupt() {
    init_log();
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let ram = ram_file(RAM_LEN);
    let rw = DmaMapFlags::READ_WRITE;
    p.dma_map(rw, 0, RAM_GPA, RAM_LEN, Some(ram.try_clone().unwrap())).unwrap();
    assert_eq!(p.dma().ranges(), vec![(RAM_GPA, RAM_LEN)]);
    let guest = view(&ram, RAM_GPA, RAM_LEN);
    let (gh_gpa, hg_gpa) = (RAM_GPA + 0x1000, RAM_GPA + 0x2000);
    let n = 2;

    assert_eq!(program_csb_and_create(&mut p, gh_gpa, hg_gpa), status::EIO, "E6: no MSI-X yet");
    // QEMU enables MSI-X with no vector (fd −1), then connects vectors one by one.
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 1, Vec::new()).unwrap();
    let (tx_fd, _tx_irq) = fake_eventfd();
    let (rx_fd, mut rx_irq) = fake_eventfd();
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 1, vec![tx_fd]).unwrap();
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 1, 1, vec![rx_fd]).unwrap();
    assert_eq!(p.msi().connected(), 2);
    p.wr(PTCTL, PTCTL_CREATE);
    assert_eq!(p.rd(PTCTL), status::OK);
    assert!(vm.ptnet.is_running());

    let gh = Region::from_guest(&guest, gh_gpa, array_size(n)).unwrap();
    let hg = Region::from_guest(&guest, hg_gpa, array_size(n)).unwrap();
    let mut g = RawGuest::new(&mut p, vm.memdev.bar1(), gh, hg);
    for seq in 0..3 {
        let f = frame(0x56, seq);
        g.send(&mut p, &f);
        let mut b = [0u8; 8];
        rx_irq.read_exact(&mut b).expect("rx interrupt on the eventfd of vector 1");
        assert!(u64::from_ne_bytes(b) >= 1);
        assert_eq!(g.recv(&mut p).as_deref(), Some(&f[..]), "frame {seq} reflected");
    }
    assert!(vm.msi.delivered() >= 3);
    let c = vm.ptnet.counters(1).unwrap();
    assert_eq!(c.packets, 3);
    assert!(c.interrupts >= 3);

    p.wr(PTCTL, PTCTL_DELETE);
    assert_eq!(p.rd(PTCTL), status::OK);
    assert!(!vm.ptnet.is_running());
    p.dma_unmap(DmaUnmapFlags::empty(), RAM_GPA, RAM_LEN).unwrap();
    assert!(p.dma().ranges().is_empty());
    // The CSB is no longer in guest RAM: programming it again leaves it unmapped.
    assert_eq!(program_csb_and_create(&mut p, gh_gpa, hg_gpa), status::ENXIO);
    // MSI-X disabled: vectors dropped.
    p.set_irqs(MSIX_IRQ, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, Vec::new())
        .unwrap();
    assert_eq!(p.msi().connected(), 0);
}

#[test]
fn disconnect_leaves_a_fresh_device() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let ram = ram_file(RAM_LEN);
    p.dma_map(DmaMapFlags::READ_WRITE, 0, RAM_GPA, RAM_LEN, Some(ram)).unwrap();
    let (fd0, _a) = fake_eventfd();
    let (fd1, _b) = fake_eventfd();
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 2, vec![fd0, fd1]).unwrap();
    p.wr(PTFEAT, 1);
    assert_eq!(program_csb_and_create(&mut p, RAM_GPA, RAM_GPA + 0x1000), status::OK);
    assert!(vm.ptnet.is_running());
    p.disconnect();
    assert!(!vm.ptnet.is_running());
    assert_eq!(p.msi().connected(), 0);
    assert!(p.dma().ranges().is_empty());
    assert_eq!((p.rd(CSB_GH_BAL), p.rd(PTFEAT)), (0, 0));
    assert_eq!(p.rd(MAC_HI), 0x5254);
    // A new client starts from scratch: CREATE needs RAM and MSI-X again.
    assert_eq!(program_csb_and_create(&mut p, RAM_GPA, RAM_GPA + 0x1000), status::ENXIO);
}

#[test]
fn csb_outside_guest_ram_is_refused() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let ram = ram_file(RAM_LEN);
    p.dma_map(DmaMapFlags::READ_WRITE, 0, RAM_GPA, RAM_LEN, Some(ram)).unwrap();
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 1, Vec::new()).unwrap();
    let end = RAM_GPA + RAM_LEN;
    for (gh, hg) in [
        (0x1000, RAM_GPA),                  // below RAM
        (RAM_GPA, end),                     // just past the end
        (end - ENTRY_SIZE as u64, RAM_GPA), // straddles the end (2 entries)
        (u64::MAX - 63, RAM_GPA),           // wraps
        (0xfee0_0000, RAM_GPA),             // the MSI window
    ] {
        assert_eq!(program_csb_and_create(&mut p, gh, hg), status::ENXIO, "{gh:#x} {hg:#x}");
        assert!(!vm.ptnet.is_running());
    }
    assert_eq!(program_csb_and_create(&mut p, RAM_GPA, end - 128), status::OK);
}

/// Hostile guest after a successful CREATE: garbage buffer indices and lengths in TX slots, a
/// head outside the ring, then the device still answers and a clean restart works.
#[test]
fn garbage_slots_do_not_hurt_the_host() {
    init_log();
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let ram = ram_file(RAM_LEN);
    p.dma_map(DmaMapFlags::READ_WRITE, 0, RAM_GPA, RAM_LEN, Some(ram.try_clone().unwrap()))
        .unwrap();
    p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 1, Vec::new()).unwrap();
    assert_eq!(program_csb_and_create(&mut p, RAM_GPA, RAM_GPA + 0x1000), status::OK);
    let guest = view(&ram, RAM_GPA, RAM_LEN);
    let gh = Region::from_guest(&guest, RAM_GPA, 128).unwrap();
    let hg = Region::from_guest(&guest, RAM_GPA + 0x1000, 128).unwrap();
    let g = RawGuest::new(&mut p, vm.memdev.bar1(), gh, hg);
    let n = g.tx.num_slots();
    let bufs = vm.port.mem().buf_num();
    for (i, (idx, len)) in
        [(0, 60), (1, 60), (bufs, 60), (u32::MAX, 60), (5, u16::MAX)].into_iter().enumerate()
    {
        let s = ptnetd::nm::Slot { buf_idx: idx, len, flags: 0 };
        g.tx.set_slot(i as u32, s);
    }
    g.publish(&mut p, 0, 5);
    let t0 = Instant::now();
    // Four bad buffer indices are dropped (counted); the oversized length is clamped.
    while vm.port.stats.tx_errors.load(std::sync::atomic::Ordering::Relaxed) < 4 {
        assert!(t0.elapsed() < TIMEOUT, "bad slots not dropped");
        std::thread::sleep(Duration::from_millis(2));
    }
    // A head outside the ring: the host reinitialises the ring (E9).
    g.tx.set_head(n + 7);
    g.publish(&mut p, 0, n + 7);
    let t0 = Instant::now();
    while vm.ptnet.counters(0).unwrap().reinits == 0 {
        assert!(t0.elapsed() < TIMEOUT, "no reinit");
        g.publish(&mut p, 0, n + 7);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(p.rd(NUM_TX_SLOTS), n);
    p.wr(PTCTL, PTCTL_DELETE);
    assert_eq!(p.rd(PTCTL), status::OK);
    assert!(!vm.ptnet.is_running());
}

#[test]
fn bad_irq_and_dma_messages_are_refused() {
    let t = topology(1, BackendKind::Reflector);
    let vm = &t.vms[0];
    let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
    let (fd, _r) = fake_eventfd();
    assert!(p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 1, 2, Vec::new()).is_err());
    assert!(p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, u32::MAX, 2, Vec::new()).is_err());
    assert!(p.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 2, vec![fd]).is_err());
    assert!(p.set_irqs(1, EVENTFD_TRIGGER, 0, 1, Vec::new()).is_err());
    assert!(p.set_irqs(99, EVENTFD_TRIGGER, 0, 1, Vec::new()).is_err());
    assert_eq!(vm.msi.connected(), 0);
    let ram = || Some(ram_file(0x4000));
    let rw = DmaMapFlags::READ_WRITE;
    assert!(p.dma_map(rw, 0, 0, 0x8000, ram()).is_err(), "past the end of the file");
    assert!(p.dma_map(rw, 0, u64::MAX - 10, 0x1000, ram()).is_err(), "wraps");
    assert!(p.dma_map(rw, 1, 0, 0x1000, ram()).is_err(), "unaligned offset");
    p.dma_map(rw, 0, 0x10000, 0x4000, ram()).unwrap();
    assert!(p.dma_map(rw, 0, 0x12000, 0x4000, ram()).is_err(), "overlap");
    assert!(p.dma_unmap(DmaUnmapFlags::empty(), 0x10000, 0x1000).is_err(), "split");
    p.dma_map(rw, 0, 0x20000, 0x1000, None).unwrap(); // no fd: accepted, not usable
    assert_eq!(p.dma().ranges(), vec![(0x10000, 0x4000)]);
    let mut m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
    assert!(m.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, 1, Vec::new()).is_err());
    m.dma_map(rw, 0, 0, 0x4000, ram()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random region accesses (any region index, offset, length, data) on both functions:
    /// never a panic; an access inside a defined region of a supported size succeeds.
    #[test]
    fn random_region_accesses(
        ops in proptest::collection::vec(
            (0u32..12, prop_oneof![0u64..300, 0u64..8192, any::<u64>()], 0usize..20, any::<bool>(),
             any::<u64>()),
            1..64,
        )
    ) {
        let t = topology(1, BackendKind::Reflector);
        let vm = &t.vms[0];
        let mut p = PtnetBackend::new("p", vm.ptnet.clone(), vm.msi.clone());
        let mut m = MemdevBackend::new("m", vm.memdev.clone()).unwrap();
        for (region, offset, len, write, v) in ops {
            let mut data: Vec<u8> = (0..len).map(|i| (v >> (8 * (i % 8))) as u8).collect();
            let f: &mut dyn ServerBackend = if v & 1 == 0 { &mut p } else { &mut m };
            let r = if write {
                f.region_write(region, offset, &data)
            } else {
                f.region_read(region, offset, &mut data)
            };
            if region == CONFIG_REGION && len > 0 && offset.saturating_add(len as u64) <= 256 {
                prop_assert!(r.is_ok());
            }
            if len == 0 || region > 8 || offset > 1 << 40 {
                prop_assert!(r.is_err());
            }
        }
        // Both functions still answer.
        prop_assert_eq!(p.rd(NUM_TX_RINGS), 1);
        let mut b = [0u8; 2];
        m.region_read(CONFIG_REGION, 2, &mut b).unwrap();
        prop_assert_eq!(u16::from_le_bytes(b), 0x000c);
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: sockets and the vfio-user crate's client.

fn wait_for(path: &std::path::Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < TIMEOUT, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The guest's view of memdev BAR1 through the fd the server sent with its region info.
fn map_bar1(c: &Client) -> Region {
    let r = c.region(BAR1_REGION).expect("bar1");
    let fo = r.file_offset.clone().expect("bar1 comes with an fd");
    let area = r.sparse_areas[0];
    let mr = GuestRegionMmap::from_range(GuestAddress(0), area.size as usize, Some(fo)).unwrap();
    let mem = Arc::new(GuestMemoryMmap::from_regions(vec![mr]).unwrap());
    Region::from_guest(&mem, 0, area.size as usize).unwrap()
}

struct VmClient {
    ptnet: Client,
    _memdev: Client,
    guest: RawGuest,
    irqs: Vec<EventFd>,
    _ram: File,
}

/// Connects to VM `k`'s two sockets like QEMU: DMA map, MSI-X eventfds, CSB, CREATE.
fn connect(cfg: &HostConfig, k: u32) -> VmClient {
    let (pp, mp) = cfg.socket_paths(k);
    wait_for(&pp);
    wait_for(&mp);
    let mut ptnet = Client::new(&pp).expect("ptnet client");
    let memdev = Client::new(&mp).expect("memdev client");
    let ram = ram_file(RAM_LEN);
    ptnet.dma_map(0, RAM_GPA, RAM_LEN, ram.as_raw_fd()).unwrap();
    let mut cfgsp = [0u8; 4];
    ptnet.region_read(CONFIG_REGION, 0, &mut cfgsp).unwrap();
    assert_eq!(u32::from_le_bytes(cfgsp), 0x000d_1b36);
    let msix = ptnet.get_irq_info(MSIX_IRQ).unwrap();
    assert_eq!(msix.count, 2);
    let irqs: Vec<EventFd> = (0..msix.count).map(|_| EventFd::new(EFD_NONBLOCK).unwrap()).collect();
    let fds: Vec<i32> = irqs.iter().map(|e| e.as_raw_fd()).collect();
    ptnet.set_irqs(MSIX_IRQ, EVENTFD_TRIGGER, 0, msix.count, &fds).unwrap();
    let st = program_csb_and_create(&mut ptnet, RAM_GPA, RAM_GPA + 0x1000);
    assert_eq!(st, status::OK, "CREATE over the socket");
    let gview = view(&ram, RAM_GPA, RAM_LEN);
    let gh = Region::from_guest(&gview, RAM_GPA, 128).unwrap();
    let hg = Region::from_guest(&gview, RAM_GPA + 0x1000, 128).unwrap();
    let nm = map_bar1(&memdev);
    let guest = RawGuest::new(&mut ptnet, nm, gh, hg);
    VmClient { ptnet, _memdev: memdev, guest, irqs, _ram: ram }
}

fn wait_irq(e: &EventFd) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < TIMEOUT {
        if e.read().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Two VMs on the switch over real sockets: VM0 broadcasts, VM1 receives with an interrupt;
/// then both disconnect and a new client on VM0's sockets is served from scratch.
#[test]
fn end_to_end_two_vms_on_the_switch() {
    init_log();
    let dir = tmp_path("sock");
    let mut cfg = HostConfig::new(&dir, 2, BackendKind::Switch);
    cfg.sink = true;
    let host = Host::start(cfg.clone()).expect("host");
    let mut a = connect(&cfg, 0);
    let mut b = connect(&cfg, 1);
    for seq in 0..5 {
        let f = frame(0x56, seq);
        a.guest.send(&mut a.ptnet, &f);
        assert!(wait_irq(&b.irqs[1]), "rx interrupt in vm1");
        assert_eq!(b.guest.recv(&mut b.ptnet).as_deref(), Some(&f[..]), "frame {seq}");
    }
    let sink = host.topology().sink.clone().unwrap();
    // The switch floods VM1 first, then the sink: the last frame may still be on its way.
    let t0 = Instant::now();
    while sink.frames.load(std::sync::atomic::Ordering::Relaxed) < 5 && t0.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.frames.load(std::sync::atomic::Ordering::Relaxed), 5, "flooded to the sink");
    let vm0 = host.topology().vms[0].clone();
    assert!(vm0.ptnet.is_running());

    drop(a);
    drop(b);
    let t0 = Instant::now();
    while vm0.ptnet.is_running() || vm0.msi.connected() > 0 {
        assert!(t0.elapsed() < TIMEOUT, "disconnect did not stop vm0's loop");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Same sockets, new VM.
    let mut again = connect(&cfg, 0);
    assert_eq!(again.ptnet.rd(MAC_HI), 0x5254);
    again.guest.send(&mut again.ptnet, &frame(0x56, 9));
    drop(again);
    host.shutdown();
    let (pp, mp) = cfg.socket_paths(0);
    assert!(!pp.exists() && !mp.exists(), "sockets removed");
    let _ = std::fs::remove_dir(&dir);
}

/// ptnet-host as the CI's second phase runs it (`--backend switch --reflect --sink
/// --source-pps N`), over real sockets: what VM0 sends to the reflect endpoint comes back to
/// it, addresses swapped, in order, among the source's broadcasts; the sink sees only the flood
/// before the switch learnt the reflect endpoint's address.
#[test]
fn end_to_end_reflect_sink_and_source_on_the_switch() {
    init_log();
    let dir = tmp_path("sock");
    let mut cfg = HostConfig::new(&dir, 1, BackendKind::Switch);
    cfg.reflect = true;
    cfg.sink = true;
    cfg.source_pps = Some(2000);
    let host = Host::start(cfg.clone()).expect("host");
    let mut a = connect(&cfg, 0);
    let me = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mut back = Vec::new();
    let mut broadcasts = 0;
    for seq in 0..40u8 {
        let mut f = frame(0x56, seq);
        f[..6].copy_from_slice(&REFLECT_MAC);
        a.guest.send(&mut a.ptnet, &f);
        loop {
            let got = a.guest.recv(&mut a.ptnet).expect("a frame");
            if got[..6] == [0xff; 6] && got[6..12] == SOURCE_MAC {
                broadcasts += 1;
                continue;
            }
            let mut want = f.clone();
            want[..6].copy_from_slice(&me);
            want[6..12].copy_from_slice(&REFLECT_MAC);
            assert_eq!(got, want, "frame {seq}: back with its addresses swapped");
            back.push(got);
            break;
        }
    }
    // Wait for a few broadcasts if the answers were quicker than the source.
    while broadcasts < 5 {
        let got = a.guest.recv(&mut a.ptnet).expect("a broadcast");
        broadcasts += usize::from(got[..6] == [0xff; 6]);
    }
    let t = host.topology();
    let r = t.reflect.clone().unwrap();
    assert_eq!(r.stats.reflected.load(std::sync::atomic::Ordering::Relaxed), 40);
    let sink = t.sink.clone().unwrap().frames.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sink, 1, "only the first frame was flooded (one at a time: learnt before the next)");
    drop(a);
    host.shutdown();
    let _ = std::fs::remove_dir(&dir);
}

/// Garbage on a socket ends that connection only; the next client is served.
#[test]
fn garbage_on_a_socket_does_not_kill_the_host() {
    init_log();
    let dir = tmp_path("sock");
    let cfg = HostConfig::new(&dir, 1, BackendKind::Reflector);
    let host = Host::start(cfg.clone()).expect("host");
    let (pp, mp) = cfg.socket_paths(0);
    // A version message shorter than its header (the crate would underflow), unknown commands,
    // random bytes, a half header.
    let mut bad_version = Vec::new();
    for v in [0u16, 1, 4, 0, 0, 0, 0, 0, 0, 1] {
        bad_version.extend_from_slice(&v.to_le_bytes());
    }
    let mut unknown = bad_version.clone();
    unknown[2] = 0x77;
    let garbage: Vec<u8> =
        (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for msg in [bad_version, unknown, garbage, vec![1, 2, 3]] {
        for path in [&pp, &mp] {
            let mut s = UnixStream::connect(path).unwrap();
            let _ = s.write_all(&msg);
            let _ = s.shutdown(std::net::Shutdown::Write);
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let _ = s.read(&mut [0u8; 64]);
        }
    }
    let mut c = Client::new(&pp).expect("served after garbage");
    assert_eq!(c.rd(NUM_TX_RINGS), 1);
    let m = Client::new(&mp).expect("memdev served after garbage");
    assert!(m.region(BAR1_REGION).unwrap().file_offset.is_some());
    drop((c, m));
    host.shutdown();
    assert!(!pp.exists());
    let _ = std::fs::remove_dir(&dir);
}

/// A live socket is not stolen; a stale one is replaced.
#[test]
fn sockets_in_use_are_refused_and_stale_ones_replaced() {
    let dir = tmp_path("sock");
    let cfg = HostConfig::new(&dir, 1, BackendKind::Reflector);
    let host = Host::start(cfg.clone()).unwrap();
    assert!(Host::start(cfg.clone()).is_err(), "second host on the same sockets");
    host.shutdown();
    // A socket file nobody listens on.
    std::fs::create_dir_all(&dir).unwrap();
    let (pp, _) = cfg.socket_paths(0);
    drop(std::os::unix::net::UnixListener::bind(&pp).unwrap());
    assert!(pp.exists());
    let host = Host::start(cfg.clone()).expect("stale socket replaced");
    host.shutdown();
    let _ = std::fs::remove_dir(&dir);
}

/// The three topologies: regions per VM (reflector, switch) or one shared region (pipe).
#[test]
fn topologies() {
    let t = topology(3, BackendKind::Reflector);
    let ids: Vec<u16> = t.vms.iter().map(|v| v.port.mem().mem_id()).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(t.switch.is_none());
    let mut cfg = HostConfig::new(tmp_path("unused"), 2, BackendKind::Switch);
    cfg.sink = true;
    cfg.vnet = true;
    cfg.rings = 2;
    let t = Topology::build(&cfg).unwrap();
    assert_eq!(t.switch.as_ref().unwrap().num_ports(), 3, "two vms and the host endpoint");
    assert!(t.reflect.is_none() && t.sink.is_some());
    // Every host endpoint: a reflect endpoint (port 2) beside the sink/source port (3).
    let mut all = cfg.clone();
    all.reflect = true;
    all.source_pps = Some(1000);
    let mut full = Topology::build(&all).unwrap();
    let sw = full.switch.clone().unwrap();
    assert_eq!(sw.num_ports(), 4, "two vms, the reflect endpoint and the sink/source");
    let r = full.reflect.clone().unwrap();
    assert_eq!((r.port_no(), r.config().mac, r.config().hdr_len), (2, REFLECT_MAC, 12));
    assert!(r.is_running());
    full.stop();
    assert!(!r.is_running(), "stopped with the host");
    for backend in [BackendKind::Reflector, BackendKind::Pipe] {
        let mut c = HostConfig::new(tmp_path("unused"), 2, backend);
        c.reflect = true;
        assert!(Topology::build(&c).is_err(), "--reflect needs the switch");
    }
    assert!(t.vms.iter().all(|v| v.port.num_tx_rings() == 2 && v.msi.len() == 4));
    assert!(!Arc::ptr_eq(t.vms[0].port.mem(), t.vms[1].port.mem()), "isolated regions");
    let t = topology(2, BackendKind::Pipe);
    assert!(Arc::ptr_eq(t.vms[0].port.mem(), t.vms[1].port.mem()), "one shared region");
    let m: Vec<MemdevBackend> =
        t.vms.iter().map(|v| MemdevBackend::new("m", v.memdev.clone()).unwrap()).collect();
    assert_eq!(m[0].regions()[1].mmap_fd, m[1].regions()[1].mmap_fd);
    assert!(Topology::build(&HostConfig::new(tmp_path("unused"), 3, BackendKind::Pipe)).is_err());
}
