//! A minimal guest ("the script") for the device model.
//!
//! It drives a ptnet NIC only the way a guest can: raw config-space and BAR register accesses,
//! and raw CSB and netmap ring memory, following the bring-up of spec §6 and the sync procedures
//! of §8.2 (txsync), §8.3 (rxsync) and §8.4 (interrupts and kicks). It is deliberately plain: no
//! driver code is reused, so the conformance tests (`tests/conformance.rs`, `tests/traffic.rs`)
//! check the model against the spec and not against our own driver. The real driver is
//! separate (`crate::driver`), and the model never uses it.
//!
//! ## Shape
//!
//! * [`try_vm_with_port`]: a VM with one ptnet NIC on a fresh port in its own netmap region.
//! * [`try_find`]: the NIC by identity and its memdev by `MEMID` (§1).
//! * [`Guest::try_attach`] (§6 B–C up to CREATE), [`Guest::create`] (C4, raw status),
//!   [`Guest::try_bring_up`] (both, non-zero status as an error), [`Guest::try_shutdown`] (§11).
//! * [`Guest::try_txsync`], [`Guest::try_rxsync`], [`Guest::try_put_tx`], [`Guest::try_get_rx`]
//!   (or [`Guest::try_get_rx_into`]), [`Guest::try_poll_until`]: the data path.
//!
//! Frames are the project's self-checking test frames ([`crate::frame`]).
//!
//! ## Errors
//!
//! Fallible functions are named `try_*` and return [`ScriptError`]; nothing on these paths
//! panics. What the host publishes (`hwcur`, `hwtail`, slot buffer indices and lengths) is copied
//! once and validated before use (§5.4, §7.5). Functions that report a device status
//! ([`Guest::create`], [`Guest::delete`]) return the raw `PTCTL` value, because tests check it.
//! What the guest itself publishes is not validated, so tests can publish bad indices on purpose.

use super::memory::{MemConfig, MemError, NetmapMemory};
use super::pci::{MSIX_CAP_OFFSET, MSIX_CTRL_ENABLE};
use super::port::{NmPort, PortError, PortSpec};
use super::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use super::vm::{PciFunction, Vm, VmError, MSI_ADDRESS_BASE};
use crate::abi::csb::{ENTRY_SIZE, NAF_FORCE_READ, NAF_FORCE_RECLAIM};
use crate::abi::netmap::NS_MOREFRAG;
use crate::abi::pci as ids;
use crate::abi::{memdev as mdr, regs};
use crate::csb::{fence_then_read_flag, rearm_then_recheck, Atok, Ktoa};
use crate::nm::{rx_ring_ofs_index, IfView, RingView, Slot, ViewError};
use crate::ring;
use crate::shm::{Region, ShmError};
use core::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First CPU vector used for ring interrupts (vector = `VEC_BASE` + ring).
pub const VEC_BASE: u32 = 0x40;

/// Bytes of guest RAM the script allocates for each CSB array (one page).
const CSB_BYTES: usize = 4096;

/// Guest RAM of the VMs made by [`try_vm_with_port`], in MiB (only CSBs live there).
const VM_RAM_MIB: u64 = 64;

/// Errors of the script guest.
#[derive(Debug)]
pub enum ScriptError {
    /// The device is not on the VM's bus.
    NoNic,
    /// No memdev on the bus exports the region the NIC names in `HOSTMEMID`.
    NoMemdev {
        /// The NIC's `HOSTMEMID`.
        memid: u32,
    },
    /// The function is not a ptnet NIC (vendor, device ID or class differ, §1).
    Identity {
        /// Vendor ID read.
        vendor: u16,
        /// Device ID read.
        device: u16,
        /// Base class read.
        class: u8,
    },
    /// A register reports a geometry the script cannot use.
    BadGeometry {
        /// What was read.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A caller's setting is out of range.
    BadConfig {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// The guest has no such ring.
    NoRing {
        /// `true` for a TX ring.
        tx: bool,
        /// Index within its direction.
        index: u32,
    },
    /// The host published indices outside the ring.
    HostIndex {
        /// Ring index (TX rings first).
        ring: u32,
        /// `hwcur` read.
        hwcur: u32,
        /// `hwtail` read.
        hwtail: u32,
        /// Ring size.
        num_slots: u32,
    },
    /// The shared ring holds an index outside the ring.
    RingIndex {
        /// Ring index (TX rings first).
        ring: u32,
        /// Which field.
        field: &'static str,
        /// The value read.
        value: u32,
        /// Ring size.
        num_slots: u32,
    },
    /// A slot names a reserved buffer (0, 1) or one outside the pool.
    BadBuffer(u32),
    /// A slot's length exceeds the buffer size.
    BadLength {
        /// The slot's `len`.
        len: u16,
        /// The buffer size.
        buf_size: usize,
    },
    /// CREATE failed with this `PTCTL` status (a positive errno, §6 C4c).
    Create(u32),
    /// DELETE failed with this `PTCTL` status.
    Delete(u32),
    /// VM setup or DMA allocation failed.
    Vm(VmError),
    /// A shared-memory access was out of bounds.
    Shm(ShmError),
    /// A netmap structure did not fit in the region.
    View(ViewError),
    /// The netmap region could not be created.
    Mem(MemError),
    /// The port could not be created.
    Port(PortError),
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNic => write!(f, "ptnet device not found on the vm's bus"),
            Self::NoMemdev { memid } => write!(f, "no memdev with memid {memid} on the bus"),
            Self::Identity { vendor, device, class } => {
                write!(f, "function {vendor:04x}:{device:04x} class {class:#04x} is not ptnet")
            }
            Self::BadGeometry { field, value } => write!(f, "unusable {field} = {value}"),
            Self::BadConfig { field, value } => write!(f, "{field} = {value} is out of range"),
            Self::NoRing { tx, index } => {
                write!(f, "no {} ring {index}", if *tx { "tx" } else { "rx" })
            }
            Self::HostIndex { ring, hwcur, hwtail, num_slots } => write!(
                f,
                "ring {ring}: host published hwcur {hwcur}, hwtail {hwtail} \
                 outside {num_slots} slots"
            ),
            Self::RingIndex { ring, field, value, num_slots } => {
                write!(f, "ring {ring}: {field} {value} outside {num_slots} slots")
            }
            Self::BadBuffer(i) => write!(f, "slot names buffer {i}, outside the pool"),
            Self::BadLength { len, buf_size } => {
                write!(f, "slot length {len} exceeds the {buf_size}-byte buffer")
            }
            Self::Create(st) => write!(f, "create failed with status {st}"),
            Self::Delete(st) => write!(f, "delete failed with status {st}"),
            Self::Vm(e) => write!(f, "vm: {e}"),
            Self::Shm(e) => write!(f, "shared memory: {e}"),
            Self::View(e) => write!(f, "netmap view: {e}"),
            Self::Mem(e) => write!(f, "netmap memory: {e}"),
            Self::Port(e) => write!(f, "port: {e}"),
        }
    }
}

impl std::error::Error for ScriptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Vm(e) => Some(e),
            Self::Shm(e) => Some(e),
            Self::View(e) => Some(e),
            Self::Mem(e) => Some(e),
            Self::Port(e) => Some(e),
            _ => None,
        }
    }
}

impl From<VmError> for ScriptError {
    fn from(e: VmError) -> Self {
        Self::Vm(e)
    }
}

impl From<ShmError> for ScriptError {
    fn from(e: ShmError) -> Self {
        Self::Shm(e)
    }
}

impl From<ViewError> for ScriptError {
    fn from(e: ViewError) -> Self {
        Self::View(e)
    }
}

impl From<MemError> for ScriptError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

impl From<PortError> for ScriptError {
    fn from(e: PortError) -> Self {
        Self::Port(e)
    }
}

/// A guest's view of one ptnet/memdev pair found on the VM's bus.
#[derive(Debug)]
pub struct Guest {
    /// The VM.
    pub vm: Arc<Vm>,
    /// The ptnet function.
    pub nic: PciFunction,
    /// Its memdev.
    pub memdev: PciFunction,
    /// The device behind `nic` (for counters; the script never calls it directly).
    pub dev: Arc<PtnetDevice>,
    /// `NUM_TX_RINGS`.
    pub ntx: u32,
    /// `NUM_RX_RINGS`.
    pub nrx: u32,
    /// The guest → host CSB array (`nm_csb_atok`).
    pub gh: Region,
    /// The host → guest CSB array (`nm_csb_ktoa`).
    pub hg: Region,
    /// Guest-physical address of `gh`.
    pub gh_gpa: u64,
    /// Guest-physical address of `hg`.
    pub hg_gpa: u64,
    /// The netmap region (memdev BAR1, `MEMSIZE` bytes).
    pub bar1: Region,
    /// Ring state, TX rings first.
    pub rings: Vec<GRing>,
    /// `BUF_POOL_OFS`.
    pub buf_pool_ofs: usize,
    /// `BUF_POOL_OBJSZ` (never 0).
    pub buf_size: usize,
    /// `BUF_POOL_OBJNUM`.
    pub buf_num: u32,
    /// Negotiated virtio-net header length (0 or 12).
    pub hdr_len: u32,
    /// Kicks the guest wrote.
    pub kicks: u64,
}

/// Guest ring state (§8.1).
#[derive(Debug)]
pub struct GRing {
    /// `true` for a TX ring.
    pub tx: bool,
    /// Ring index (TX rings first), also its CSB entry and kick register.
    pub idx: u32,
    /// The shared `netmap_ring`.
    pub view: RingView,
    /// Its CSB atok entry.
    pub atok: Atok,
    /// Its CSB ktoa entry.
    pub ktoa: Ktoa,
    /// Number of slots.
    pub n: u32,
    /// Host `hwcur` as last read (validated except for txsync's early read, which only decides
    /// whether to kick).
    pub hwcur: u32,
    /// Host `hwtail` as last read and validated.
    pub hwtail: u32,
    /// Last published `head`.
    pub rhead: u32,
    /// Last published `cur`.
    pub rcur: u32,
    /// Last `tail` given to the ring's user.
    pub rtail: u32,
}

/// Reads the 32-bit register at `off` of BAR0.
pub fn reg_read(f: &PciFunction, off: u32) -> u32 {
    f.bar_read(0, off as u64, 4) as u32
}

/// Writes the 32-bit register at `off` of BAR0.
pub fn reg_write(f: &PciFunction, off: u32, v: u32) {
    f.bar_write(0, off as u64, 4, v as u64)
}

/// Finds the ptnet function of `dev` on the bus, checks it by vendor, device and class (§1
/// pitfall), and finds its memdev by `MEMID`.
pub fn try_find(
    vm: &Arc<Vm>,
    dev: &Arc<PtnetDevice>,
) -> Result<(PciFunction, PciFunction), ScriptError> {
    let (slot, nic) = vm.ptnet_function(dev).ok_or(ScriptError::NoNic)?;
    let fs = vm.functions();
    let vendor = nic.config_read(0, 2) as u16;
    let device = nic.config_read(2, 2) as u16;
    let class = nic.config_read(0x0b, 1) as u8;
    if vendor != ids::VENDOR_ID || device != ids::PTNET_DEVICE_ID || class != 0x02 {
        return Err(ScriptError::Identity { vendor, device, class });
    }
    let memid = reg_read(&nic, regs::HOSTMEMID);
    let (md_slot, memdev) = fs
        .iter()
        .find(|(_, f)| {
            f.config_read(2, 2) as u16 == ids::MEMDEV_DEVICE_ID
                && f.config_read(0x0a, 2) == 0x00ff
                && f.bar_read(0, mdr::MEMID as u64, 4) as u32 == memid
        })
        .cloned()
        .ok_or(ScriptError::NoMemdev { memid })?;
    log::debug!("script: ptnet at slot {slot}, memdev at slot {md_slot} (memid {memid})");
    Ok((nic, memdev))
}

/// Programs MSI-X entry i = (0xFEE00000, `VEC_BASE` + i), unmasked, for `n` entries, and
/// enables MSI-X.
pub fn setup_msix(nic: &PciFunction, n: u32) {
    for i in 0..n {
        let e = i as u64 * 16;
        nic.bar_write(2, e, 4, MSI_ADDRESS_BASE);
        nic.bar_write(2, e + 4, 4, 0);
        nic.bar_write(2, e + 8, 4, VEC_BASE.wrapping_add(i) as u64);
        nic.bar_write(2, e + 12, 4, 0);
    }
    let ctl = nic.config_read(MSIX_CAP_OFFSET as u16 + 2, 2);
    nic.config_write(MSIX_CAP_OFFSET as u16 + 2, 2, ctl | MSIX_CTRL_ENABLE as u32);
}

/// Bring-up options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opts {
    /// Ask for `VIRTIO_NET_F_HDR` (§4) and set a 12-byte header if offered.
    pub want_vnet: bool,
    /// Program and enable MSI-X (CREATE fails without it, E6).
    pub msix: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self { want_vnet: false, msix: true }
    }
}

/// What §6 C1 reads from the memdev.
struct Pools {
    bar1: Region,
    buf_pool_ofs: usize,
    buf_size: usize,
    buf_num: u32,
}

fn geometry(field: &'static str, value: u64) -> ScriptError {
    ScriptError::BadGeometry { field, value }
}

/// §6 C1: maps the netmap region and reads the buffer pool.
fn map_pools(memdev: &PciFunction, memid: u32) -> Result<Pools, ScriptError> {
    let read = |r: u32| memdev.bar_read(0, r as u64, 4);
    let memsize = read(mdr::MEMSIZE_HI) << 32 | read(mdr::MEMSIZE_LO);
    let len = usize::try_from(memsize).map_err(|_| geometry("memsize", memsize))?;
    let bar1 = memdev.bar_memory(ids::MEM_BAR).ok_or(ScriptError::NoMemdev { memid })?;
    let bar1 = bar1.sub(0, len)?;
    let buf_size = read(mdr::BUF_POOL_OBJSZ) as usize;
    if buf_size == 0 {
        return Err(geometry("buf_pool_objsz", 0));
    }
    let buf_num = read(mdr::BUF_POOL_OBJNUM) as u32;
    let buf_pool_ofs = read(mdr::BUF_POOL_OFS) as usize;
    Ok(Pools { bar1, buf_pool_ofs, buf_size, buf_num })
}

/// §6 C2: views of every ring through the netmap_if at `NIFP_OFS`, with CSB entries.
fn map_rings(
    nic: &PciFunction,
    bar1: &Region,
    gh: &Region,
    hg: &Region,
    (ntx, nrx): (u32, u32),
) -> Result<Vec<GRing>, ScriptError> {
    let memsize = bar1.len();
    let nifp = reg_read(nic, regs::NIFP_OFS) as usize;
    let if_len = memsize.checked_sub(nifp).ok_or(geometry("nifp_ofs", nifp as u64))?;
    let (ifv, counts) = IfView::new(&bar1.sub(nifp, if_len)?)?;
    let mut rings = Vec::new();
    for i in 0..ntx + nrx {
        let tx = i < ntx;
        let k = if tx { i as usize } else { rx_ring_ofs_index(&counts, i - ntx) };
        let rel = ifv.ring_ofs(k).ok_or(geometry("ring_ofs index", k as u64))?;
        let ofs = (nifp as i64)
            .checked_add(rel)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < memsize)
            .ok_or(geometry("ring_ofs", rel as u64))?;
        let slots = reg_read(nic, if tx { regs::NUM_TX_SLOTS } else { regs::NUM_RX_SLOTS });
        let view = RingView::with_slots(&bar1.sub(ofs, memsize - ofs)?, slots)?;
        rings.push(GRing {
            tx,
            idx: i,
            view,
            atok: Atok::of(gh, i)?,
            ktoa: Ktoa::of(hg, i)?,
            n: slots,
            hwcur: 0,
            hwtail: 0,
            rhead: 0,
            rcur: 0,
            rtail: 0,
        });
    }
    Ok(rings)
}

/// Copies the host's `(hwcur, hwtail)` of `r` once and validates them (§5.4 rule 2).
fn read_ktoa(r: &mut GRing) -> Result<(), ScriptError> {
    let (hwcur, hwtail) = r.ktoa.appl_read();
    if hwcur >= r.n || hwtail >= r.n {
        return Err(ScriptError::HostIndex { ring: r.idx, hwcur, hwtail, num_slots: r.n });
    }
    r.hwcur = hwcur;
    r.hwtail = hwtail;
    Ok(())
}

impl Guest {
    /// Bring-up of §6 B–C up to (not including) CREATE: enable the function, negotiate
    /// features, map the CSB, program MSI-X (if `o.msix`), set the header length, map the
    /// netmap region and the rings.
    pub fn try_attach(
        vm: &Arc<Vm>,
        dev: &Arc<PtnetDevice>,
        o: &Opts,
    ) -> Result<Guest, ScriptError> {
        let (nic, memdev) = try_find(vm, dev)?;
        nic.config_write(4, 2, 0x7); // io, mem, bus master
        reg_write(&nic, regs::PTFEAT, if o.want_vnet { regs::F_VNET_HDR } else { 0 });
        let feat = reg_read(&nic, regs::PTFEAT);
        let ntx = reg_read(&nic, regs::NUM_TX_RINGS);
        let nrx = reg_read(&nic, regs::NUM_RX_RINGS);
        let nrings = ntx as u64 + nrx as u64;
        if nrings * ENTRY_SIZE as u64 > CSB_BYTES as u64 {
            return Err(geometry("rings", nrings));
        }
        let (gh_gpa, gh) = vm.alloc_dma(CSB_BYTES)?;
        let (hg_gpa, hg) = vm.alloc_dma(CSB_BYTES)?;
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
        let memid = reg_read(&nic, regs::HOSTMEMID);
        let pools = map_pools(&memdev, memid)?;
        let rings = map_rings(&nic, &pools.bar1, &gh, &hg, (ntx, nrx))?;
        log::debug!(
            "script: attached {ntx} tx + {nrx} rx rings, {} buffers of {} bytes, header {hdr_len}",
            pools.buf_num,
            pools.buf_size
        );
        Ok(Guest {
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
            bar1: pools.bar1,
            rings,
            buf_pool_ofs: pools.buf_pool_ofs,
            buf_size: pools.buf_size,
            buf_num: pools.buf_num,
            hdr_len,
            kicks: 0,
        })
    }

    /// [`Guest::try_attach`] then [`Guest::create`]; a non-zero status is
    /// [`ScriptError::Create`].
    pub fn try_bring_up(
        vm: &Arc<Vm>,
        dev: &Arc<PtnetDevice>,
        o: &Opts,
    ) -> Result<Guest, ScriptError> {
        let mut g = Self::try_attach(vm, dev, o)?;
        match g.create() {
            0 => Ok(g),
            st => Err(ScriptError::Create(st)),
        }
    }

    /// C4: CSB pre-init, CREATE, status, import (§5.3). Returns the `PTCTL` status (0 = ok).
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

    /// sync_from_csb (§5.3): takes the host's state of every ring as the guest's own.
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

    /// DELETE; returns the `PTCTL` status (0 = ok).
    pub fn delete(&self) -> u32 {
        reg_write(&self.nic, regs::PTCTL, regs::PTCTL_DELETE);
        reg_read(&self.nic, regs::PTCTL)
    }

    /// §11 detach: DELETE, then zero the CSB addresses (also when DELETE failed; its status is
    /// reported as [`ScriptError::Delete`]).
    pub fn try_shutdown(&self) -> Result<(), ScriptError> {
        let st = self.delete();
        for r in [regs::CSB_GH_BAH, regs::CSB_GH_BAL, regs::CSB_HG_BAH, regs::CSB_HG_BAL] {
            reg_write(&self.nic, r, 0);
        }
        match st {
            0 => Ok(()),
            st => Err(ScriptError::Delete(st)),
        }
    }

    /// Writes the kick register of ring `i` (TX rings first).
    pub fn kick(&mut self, i: u32) {
        self.kicks += 1;
        reg_write(&self.nic, regs::kick_offset(i), 0);
    }

    /// TX ring `i`.
    pub fn tx_ring(&self, i: u32) -> Option<&GRing> {
        self.rings.get(self.tx_index(i).ok()?)
    }

    /// RX ring `j`.
    pub fn rx_ring(&self, j: u32) -> Option<&GRing> {
        self.rings.get(self.rx_index(j).ok()?)
    }

    fn tx_index(&self, i: u32) -> Result<usize, ScriptError> {
        if i < self.ntx && (i as usize) < self.rings.len() {
            Ok(i as usize)
        } else {
            Err(ScriptError::NoRing { tx: true, index: i })
        }
    }

    fn rx_index(&self, j: u32) -> Result<usize, ScriptError> {
        let ri = self.ntx as usize + j as usize;
        if j < self.nrx && ri < self.rings.len() {
            Ok(ri)
        } else {
            Err(ScriptError::NoRing { tx: false, index: j })
        }
    }

    /// Guest txsync (§8.2) of TX ring `i`, with `head = cur = ring.head` as set by the user.
    pub fn try_txsync(&mut self, i: u32, flags: u32) -> Result<(), ScriptError> {
        let ri = self.tx_index(i)?;
        let r = &mut self.rings[ri];
        r.rhead = r.view.head();
        r.rcur = r.view.cur();
        r.atok.set_appl_need_kick(0);
        r.hwcur = r.ktoa.appl_read().0;
        r.atok.appl_publish_head_cur(r.rhead, r.rcur);
        let wouldblock = r.rcur == r.hwtail;
        let knk = fence_then_read_flag(|| r.ktoa.kern_need_kick());
        let kick =
            ((r.rhead != r.hwcur || wouldblock) && knk != 0) || flags & NAF_FORCE_RECLAIM != 0;
        if kick {
            r.atok.set_sync_flags(flags);
        }
        if wouldblock || flags & NAF_FORCE_RECLAIM != 0 {
            read_ktoa(r)?;
        }
        if r.rcur == r.hwtail {
            rearm_then_recheck(|v| r.atok.set_appl_need_kick(v), || r.ktoa.appl_read().1 != r.rcur);
            read_ktoa(r)?;
        }
        if kick {
            self.kick(i);
        }
        let r = &mut self.rings[ri];
        r.rtail = r.hwtail;
        r.view.set_tail(r.hwtail);
        Ok(())
    }

    /// Guest rxsync (§8.3) of RX ring `j`.
    pub fn try_rxsync(&mut self, j: u32) -> Result<(), ScriptError> {
        let ri = self.rx_index(j)?;
        let r = &mut self.rings[ri];
        r.rhead = r.view.head();
        r.rcur = r.view.cur();
        r.atok.set_appl_need_kick(0);
        read_ktoa(r)?;
        if r.rhead != r.hwcur {
            r.atok.appl_publish_head_cur(r.rhead, r.rcur);
        }
        if r.rcur == r.hwtail {
            rearm_then_recheck(|v| r.atok.set_appl_need_kick(v), || r.ktoa.appl_read().1 != r.rcur);
            read_ktoa(r)?;
        }
        let wouldblock = r.rcur == r.hwtail;
        let knk = fence_then_read_flag(|| r.ktoa.kern_need_kick());
        let kick = (r.rhead != r.hwcur || wouldblock) && knk != 0;
        if kick {
            r.atok.set_sync_flags(NAF_FORCE_READ);
        }
        let idx = r.idx;
        if kick {
            self.kick(idx);
        }
        let r = &mut self.rings[ri];
        r.rtail = r.hwtail;
        r.view.set_tail(r.hwtail);
        Ok(())
    }

    /// Offset of buffer `idx` in the region; reserved (0, 1) and out-of-pool indices fail.
    fn buf_off(&self, idx: u32) -> Result<usize, ScriptError> {
        if idx < 2 || idx >= self.buf_num {
            return Err(ScriptError::BadBuffer(idx));
        }
        Ok(self.buf_pool_ofs + idx as usize * self.buf_size)
    }

    /// Copies `frame` (header included) into TX ring `i` at its head, one buffer per slot with
    /// `NS_MOREFRAG` on all but the last, and advances head and cur. Returns `false` (and
    /// changes nothing) if there is no room. Does not sync.
    pub fn try_put_tx(&mut self, i: u32, frame: &[u8]) -> Result<bool, ScriptError> {
        let r = &self.rings[self.tx_index(i)?];
        let bsz = self.buf_size.max(1);
        let need = frame.len().div_ceil(bsz).max(1);
        let head = r.view.head();
        if head >= r.n {
            return Err(ScriptError::RingIndex {
                ring: r.idx,
                field: "head",
                value: head,
                num_slots: r.n,
            });
        }
        if (ring::space(head, r.rtail, r.n) as usize) < need {
            return Ok(false);
        }
        let mut h = head;
        for k in 0..need {
            let s = r.view.slot(h);
            let chunk = &frame[(k * bsz).min(frame.len())..((k + 1) * bsz).min(frame.len())];
            self.bar1.write_bytes(self.buf_off(s.buf_idx)?, chunk)?;
            let flags = if k + 1 < need { NS_MOREFRAG } else { 0 };
            r.view.set_slot(h, Slot { buf_idx: s.buf_idx, len: chunk.len() as u16, flags });
            h = ring::next(h, r.n);
        }
        r.view.set_head(h);
        r.view.set_cur(h);
        Ok(true)
    }

    /// Takes one complete frame from RX ring `j`. On an empty ring or an incomplete chain (E5)
    /// returns `None`, leaving head at the chain's first slot and moving cur to tail, so the next
    /// rxsync sees "would block" and asks for more (netmap: cur may run ahead of head, §7.5).
    pub fn try_get_rx(&mut self, j: u32) -> Result<Option<Vec<u8>>, ScriptError> {
        let mut out = Vec::new();
        Ok(self.try_get_rx_into(j, &mut out)?.then_some(out))
    }

    /// [`Guest::try_get_rx`] into a caller-owned buffer (cleared first); `true` if a frame was
    /// taken. On `false` or an error, `out` holds nothing useful.
    pub fn try_get_rx_into(&mut self, j: u32, out: &mut Vec<u8>) -> Result<bool, ScriptError> {
        let r = &self.rings[self.rx_index(j)?];
        let (n, tail) = (r.n, r.rtail);
        if tail >= n {
            let (ring, hwcur) = (r.idx, r.hwcur);
            return Err(ScriptError::HostIndex { ring, hwcur, hwtail: tail, num_slots: n });
        }
        let mut h = r.view.head();
        if h >= n {
            return Err(ScriptError::RingIndex {
                ring: r.idx,
                field: "head",
                value: h,
                num_slots: n,
            });
        }
        out.clear();
        loop {
            if h == tail {
                r.view.set_cur(tail);
                return Ok(false);
            }
            let s = r.view.slot(h);
            if s.len as usize > self.buf_size {
                return Err(ScriptError::BadLength { len: s.len, buf_size: self.buf_size });
            }
            let off = self.buf_off(s.buf_idx)?;
            let start = out.len();
            out.resize(start + s.len as usize, 0);
            self.bar1.read_bytes(off, &mut out[start..])?;
            h = ring::next(h, n);
            if s.flags & NS_MOREFRAG == 0 {
                break;
            }
        }
        r.view.set_head(h);
        r.view.set_cur(h);
        Ok(true)
    }

    /// Waits until `cond` holds, syncing every RX ring and waiting for an interrupt (at most
    /// 2 ms) in between; gives up after `timeout` and returns the last verdict of `cond`.
    pub fn try_poll_until(
        &mut self,
        timeout: Duration,
        mut cond: impl FnMut(&mut Guest) -> Result<bool, ScriptError>,
    ) -> Result<bool, ScriptError> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if cond(self)? {
                return Ok(true);
            }
            let seen = self.vm.irq().generation();
            for j in 0..self.nrx {
                self.try_rxsync(j)?;
            }
            if cond(self)? {
                return Ok(true);
            }
            self.vm.irq().wait(seen, Duration::from_millis(2));
        }
        cond(self)
    }

    /// Interrupts the VM received on the vector of ring `ring` (TX rings first).
    pub fn interrupts(&self, ring: u32) -> u64 {
        self.vm.irq().count(VEC_BASE.wrapping_add(ring) as u8)
    }
}

/// What [`try_vm_with_port`] makes: the VM, its ptnet device and the device's port.
pub type VmWithPort = (Arc<Vm>, Arc<PtnetDevice>, Arc<NmPort>);

/// One VM with one ptnet device (`rings` TX and RX rings of `slots` slots) on a fresh port
/// "p0" in its own netmap region (MEMID 1, 64 spare buffers); returns the port too.
pub fn try_vm_with_port(rings: u32, slots: u32) -> Result<VmWithPort, ScriptError> {
    try_vm_with_named_port("p0", rings, slots)
}

/// [`try_vm_with_port`] with the port named `name` (the name the model's logs use).
pub fn try_vm_with_named_port(
    name: &str,
    rings: u32,
    slots: u32,
) -> Result<VmWithPort, ScriptError> {
    let bufs = rings.checked_mul(2).and_then(|r| r.checked_mul(slots));
    if bufs.is_none_or(|b| b > u32::MAX / 2) {
        let value = rings as u64 * slots as u64;
        return Err(ScriptError::BadConfig { field: "rings × slots", value });
    }
    let mem = Arc::new(NetmapMemory::new(1, MemConfig::for_ports(1, 2 * rings, slots, 64))?);
    let port = NmPort::new(mem, &PortSpec::new(name, rings, slots))?;
    let vm = Vm::new(VM_RAM_MIB)?;
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default())?;
    Ok((vm, dev, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_instead_of_panics() {
        let (vm, dev, _port) = try_vm_with_port(1, 64).unwrap();
        let mut g = Guest::try_bring_up(&vm, &dev, &Opts::default()).unwrap();
        assert!(matches!(g.try_txsync(1, 0), Err(ScriptError::NoRing { tx: true, index: 1 })));
        assert!(matches!(g.try_get_rx(3), Err(ScriptError::NoRing { tx: false, index: 3 })));
        assert!(g.tx_ring(1).is_none() && g.rx_ring(0).is_some());
        // A host that publishes hwtail outside the ring is reported, not trusted.
        g.try_shutdown().unwrap();
        g.rx_ring(0).unwrap().ktoa.kern_publish_hwcur_hwtail(0, 1000);
        let e = g.try_rxsync(0).unwrap_err();
        assert!(matches!(e, ScriptError::HostIndex { hwtail: 1000, num_slots: 64, .. }), "{e}");
        // A slot naming a reserved buffer.
        let r = g.tx_ring(0).unwrap();
        r.view.set_slot(r.view.head(), Slot { buf_idx: 1, len: 0, flags: 0 });
        assert!(matches!(g.try_put_tx(0, &[0; 60]), Err(ScriptError::BadBuffer(1))));
        assert!(matches!(try_vm_with_port(1 << 16, 1 << 16), Err(ScriptError::BadConfig { .. })));
        // Without MSI-X CREATE fails (E6), which bring-up reports with the status.
        let (vm, dev, _port) = try_vm_with_port(1, 64).unwrap();
        let o = Opts { msix: false, ..Opts::default() };
        assert!(
            matches!(Guest::try_bring_up(&vm, &dev, &o), Err(ScriptError::Create(st)) if st != 0)
        );
    }
}
