//! The ptnet guest driver core: probe, bring-up (spec §6), ring syncs (§8.2–8.4, in [`ring`]),
//! the stack-mode copy path (§8.5, in [`copy`]), interrupts (§9) and teardown (§11), generic
//! over a [`Platform`].
//!
//! Everything read from the device or from shared memory (registers, the netmap_if, ring
//! headers, slots, CSB indices) is copied once, validated, and rejected with a typed error: a
//! misbehaving host cannot make the driver access memory outside the CSB pages and the memdev
//! region, whatever it writes.

pub mod copy;
pub mod ring;

use crate::abi::memdev as mdr;
use crate::abi::netmap::{ring_size, FIRST_BUF_IDX};
use crate::abi::pci as ids;
use crate::abi::regs::{self, status};
use crate::csb::{Atok, Ktoa};
use crate::nm::{rx_ring_ofs_index, tx_ring_ofs_index, IfView, RingView, ViewError};
use crate::platform::cfg::{self, BarInfo};
use crate::platform::{Dma, Interrupt, PciFunction, Platform, PlatformError};
use crate::shm::Region;
use core::fmt;
use ring::{GuestRing, RingStats, SyncError};
use std::time::Duration;

/// Errors of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// The primary function is not a ptnet NIC (wrong ids or class; e.g. QEMU's xHCI).
    NotPtnet {
        /// Vendor id read.
        vendor: u16,
        /// Device id read.
        device: u16,
        /// Class triple read.
        class: (u8, u8, u8),
    },
    /// No memdev function with a register file and a MEMID equal to HOSTMEMID.
    NoMemdev {
        /// HOSTMEMID of the NIC.
        hostmemid: u32,
        /// Candidates rejected.
        rejected: usize,
    },
    /// A register or BAR holds a value the driver cannot accept.
    BadDevice(String),
    /// The netmap structures in the memdev region are inconsistent.
    BadLayout(String),
    /// `PTCTL` CREATE or DELETE failed with this status.
    Ctl {
        /// Command written.
        cmd: u32,
        /// Status read back.
        status: u32,
    },
    /// The platform failed.
    Platform(PlatformError),
    /// A ring sync failed.
    Sync(SyncError),
    /// No such ring.
    NoRing(u32),
    /// The device is not running (CREATE not done or DELETE done).
    NotRunning,
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPtnet { vendor, device, class } => write!(
                f,
                "{vendor:04x}:{device:04x} class {:02x}/{:02x}/{:02x} is not a ptnet nic",
                class.0, class.1, class.2
            ),
            Self::NoMemdev { hostmemid, rejected } => {
                write!(f, "no memdev with MEMID {hostmemid} ({rejected} candidates rejected)")
            }
            Self::BadDevice(s) => write!(f, "bad device: {s}"),
            Self::BadLayout(s) => write!(f, "bad netmap layout: {s}"),
            Self::Ctl { cmd, status } => write!(f, "PTCTL {cmd} failed with status {status}"),
            Self::Platform(e) => write!(f, "{e}"),
            Self::Sync(e) => write!(f, "{e}"),
            Self::NoRing(i) => write!(f, "no ring {i}"),
            Self::NotRunning => write!(f, "device not running"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<PlatformError> for DriverError {
    fn from(e: PlatformError) -> Self {
        Self::Platform(e)
    }
}

impl From<crate::shm::ShmError> for DriverError {
    fn from(e: crate::shm::ShmError) -> Self {
        Self::Platform(PlatformError::Shm(e))
    }
}

impl From<SyncError> for DriverError {
    fn from(e: SyncError) -> Self {
        Self::Sync(e)
    }
}

fn layout(e: impl fmt::Display) -> DriverError {
    DriverError::BadLayout(e.to_string())
}

/// What the driver wants.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Negotiate `PTNETMAP_F_VNET_HDR` and use a 12-byte header if acked (§4, §10).
    pub vnet_hdr: bool,
    /// Polling fallback for lost interrupts (§9): while waiting, every ring is reported at
    /// least this often. `None` turns the fallback off, so that [`Ptnet::wait_work`] reports
    /// interrupts only (protocol tests run this way: a lost wake-up then stalls and fails
    /// instead of costing one interval).
    pub poll_interval: Option<Duration>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self { vnet_hdr: false, poll_interval: Some(Duration::from_millis(10)) }
    }
}

/// Device facts read at bring-up (logged once at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// PCI name of the NIC.
    pub name: String,
    /// MAC address.
    pub mac: [u8; 6],
    /// TX rings.
    pub tx_rings: u32,
    /// RX rings.
    pub rx_rings: u32,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// Negotiated features.
    pub features: u32,
    /// Effective virtio-net header length.
    pub vnet_hdr_len: u32,
    /// Host memory id.
    pub mem_id: u32,
    /// Region size.
    pub mem_size: u64,
    /// Buffer size.
    pub buf_size: u32,
    /// Number of buffers.
    pub buf_num: u32,
    /// Buffer pool offset in the region.
    pub buf_pool_ofs: u64,
    /// netmap_if offset in the region.
    pub nifp_ofs: u32,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mac;
        write!(
            f,
            "{} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} rings {}/{} slots {}/{} features {:#x} vnet_hdr_len {} mem {} bytes id {}",
            self.name, m[0], m[1], m[2], m[3], m[4], m[5], self.tx_rings, self.rx_rings,
            self.tx_slots, self.rx_slots, self.features, self.vnet_hdr_len, self.mem_size,
            self.mem_id
        )
    }
}

/// The NIC while it may hold the CSB addresses (§11): from the BAH/BAL writes of bring-up
/// until DELETE and the BAL writes of teardown. It owns the CSB pages, so they cannot be
/// released before the device lets go of them: [`Drop`] performs the teardown unless
/// [`Ptnet::shutdown`] (its explicit form) already did. Every error of the bring-up after the
/// BAL writes therefore stops the device before the pages go.
struct Bound<F: PciFunction> {
    nic: F,
    /// The GH (atok) and HG (ktoa) arrays: one zeroed page each (§5.1: the protocol passes the
    /// two addresses separately, so they need not be adjacent; separate pages spare platforms
    /// the search for physically contiguous memory). Ring entries hold sub-windows of them;
    /// the memory is released with the last one, never before this guard's teardown.
    csb: [Dma; 2],
    /// The device may hold the CSB addresses (BAL written non-zero, not yet zeroed).
    holds_csb: bool,
}

impl<F: PciFunction> Bound<F> {
    /// B4: hands the device the CSB addresses, high word first, GH then HG (§5.1).
    fn new(nic: F, csb: [Dma; 2]) -> Self {
        let (gh_pa, hg_pa) = (csb[0].phys, csb[1].phys);
        let me = Self { nic, csb, holds_csb: true };
        for (bah, bal, pa) in [
            (regs::CSB_GH_BAH, regs::CSB_GH_BAL, gh_pa),
            (regs::CSB_HG_BAH, regs::CSB_HG_BAL, hg_pa),
        ] {
            set_reg(&me.nic, bah, (pa >> 32) as u32);
            set_reg(&me.nic, bal, pa as u32);
        }
        me
    }

    /// `PTCTL` DELETE and its status (§11).
    fn delete(&self) -> Result<(), DriverError> {
        set_reg(&self.nic, regs::PTCTL, regs::PTCTL_DELETE);
        let st = reg(&self.nic, regs::PTCTL);
        if st != status::OK {
            return Err(DriverError::Ctl { cmd: regs::PTCTL_DELETE, status: st });
        }
        Ok(())
    }

    /// Teardown (§11): DELETE, then zero the CSB addresses (each BAL write unmaps on the host,
    /// with another implicit DELETE), whatever DELETE's status. Afterwards the pages may go.
    fn release(&mut self) -> Result<(), DriverError> {
        if !self.holds_csb {
            return Ok(());
        }
        let r = self.delete();
        self.clear_csb();
        r
    }

    /// Zeroes the CSB addresses (after DELETE): from here on the device holds none of them.
    fn clear_csb(&mut self) {
        for off in [regs::CSB_GH_BAH, regs::CSB_GH_BAL, regs::CSB_HG_BAH, regs::CSB_HG_BAL] {
            set_reg(&self.nic, off, 0);
        }
        self.holds_csb = false;
    }
}

impl<F: PciFunction> Drop for Bound<F> {
    fn drop(&mut self) {
        if self.holds_csb {
            log::info!(
                "ptnetd: {}: released without shutdown: stopping the device",
                self.nic.name()
            );
            if let Err(e) = self.release() {
                log::warn!("ptnetd: {}: {e}", self.nic.name());
            }
        }
    }
}

/// A bound ptnet NIC.
pub struct Ptnet<P: Platform> {
    /// First field: dropped first, so the device is stopped before the interrupt vectors, the
    /// memdev mapping and the CSB windows of the rings go.
    dev: Bound<P::Function>,
    memdev: P::Function,
    region: Region,
    irqs: Vec<P::Irq>,
    info: DeviceInfo,
    rings: Vec<GuestRing>,
    running: bool,
    cfg: DriverConfig,
    min_tx_space: u32,
    copy: Vec<copy::CopyState>,
}

impl<P: Platform> fmt::Debug for Ptnet<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ptnet({})", self.info.name)
    }
}

fn reg<F: PciFunction>(f: &F, off: u32) -> u32 {
    f.bar_read32(ids::IO_BAR, off)
}

fn set_reg<F: PciFunction>(f: &F, off: u32, v: u32) {
    f.bar_write32(ids::IO_BAR, off, v)
}

/// Checks that `nic` is a ptnet NIC: vendor 1b36, device 000d **and** class 02/00 (§1 pitfall:
/// the same ids are QEMU's xHCI controller).
pub fn probe_nic<F: PciFunction>(nic: &F) -> Result<(), DriverError> {
    let (vendor, device) = cfg::ids(nic);
    let class = cfg::class(nic);
    if vendor != ids::VENDOR_ID || device != ids::PTNET_DEVICE_ID || (class.0, class.1) != (2, 0) {
        return Err(DriverError::NotPtnet { vendor, device, class });
    }
    Ok(())
}

/// Checks that `f` looks like a ptnet memdev: ids 1b36:000c, class 00/ff (QEMU) or 02/00
/// (bhyve), an I/O BAR0 holding the register file (≥ 100 bytes) and a memory BAR1 (§1, §2).
pub fn probe_memdev<F: PciFunction>(f: &F) -> bool {
    let (vendor, device) = cfg::ids(f);
    let class = cfg::class(f);
    let class_ok = matches!((class.0, class.1), (0x00, 0xff) | (0x02, 0x00));
    let io_ok =
        matches!(cfg::bar(f, ids::IO_BAR), Some(BarInfo::Io { size }) if size >= mdr::IO_END);
    let mem_ok = matches!(cfg::bar(f, ids::MEM_BAR), Some(BarInfo::Memory { .. }));
    vendor == ids::VENDOR_ID && device == ids::MEMDEV_DEVICE_ID && class_ok && io_ok && mem_ok
}

impl<P: Platform> Ptnet<P> {
    /// Probes and brings the device up through CREATE (§6 B and C), ready for traffic.
    pub fn attach(platform: &mut P, cfg: DriverConfig) -> Result<Self, DriverError> {
        let mut nic = platform.primary()?;
        probe_nic(&nic)?;
        // B1: bus master, I/O and memory decoding; map BAR0.
        let cmd = nic.config_read(0x04);
        nic.config_write(0x04, (cmd & 0xffff) | 0x7);
        nic.enable_bar(ids::IO_BAR)?;
        if !matches!(cfg::bar(&nic, ids::IO_BAR), Some(BarInfo::Io { size }) if size >= regs::KICK_BASE + 4)
            && !matches!(cfg::bar(&nic, ids::IO_BAR), Some(BarInfo::Memory { size, .. }) if size >= 256)
        {
            return Err(DriverError::BadDevice("ptnet BAR0 missing or too small".into()));
        }
        let hostmemid = reg(&nic, regs::HOSTMEMID);
        let memdev = Self::find_memdev(platform, hostmemid)?;
        // B2: features.
        let want = if cfg.vnet_hdr { regs::F_VNET_HDR } else { 0 };
        set_reg(&nic, regs::PTFEAT, want);
        let features = reg(&nic, regs::PTFEAT) & want;
        // B3: ring counts (≤ 32 rings: the kick registers, §3.1).
        let tx_rings = reg(&nic, regs::NUM_TX_RINGS);
        let rx_rings = reg(&nic, regs::NUM_RX_RINGS);
        let n = tx_rings as u64 + rx_rings as u64;
        if tx_rings == 0 || rx_rings == 0 || n > regs::MAX_RINGS as u64 {
            return Err(DriverError::BadDevice(format!(
                "{tx_rings} tx + {rx_rings} rx rings (need ≥ 1 each, ≤ {} in all)",
                regs::MAX_RINGS
            )));
        }
        let n = n as u32;
        // B4: CSB, two zeroed pages, handed to the device; from here on every exit (error or
        // not) goes through the guard's teardown before the pages can be released (§11).
        let csb = [platform.alloc_dma(4096)?, platform.alloc_dma(4096)?];
        let mut dev = Bound::new(nic, csb);
        // B6: MSI-X, programmed and enabled before CREATE (E6).
        let irqs = Self::setup_msix(platform, &mut dev.nic, n as u16)?;
        let nic = &dev.nic;
        // B8–B10: MAC, geometry, vnet header.
        let (hi, lo) = (reg(nic, regs::MAC_HI), reg(nic, regs::MAC_LO));
        let mac = [
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 24) as u8,
            (lo >> 16) as u8,
            (lo >> 8) as u8,
            lo as u8,
        ];
        let nifp_ofs = reg(nic, regs::NIFP_OFS);
        let vnet_hdr_len = Self::set_vnet_hdr(nic, features)?;
        let mut me = Self {
            info: DeviceInfo {
                name: dev.nic.name(),
                mac,
                tx_rings,
                rx_rings,
                tx_slots: 0,
                rx_slots: 0,
                features,
                vnet_hdr_len,
                mem_id: hostmemid,
                mem_size: 0,
                buf_size: 0,
                buf_num: 0,
                buf_pool_ofs: 0,
                nifp_ofs,
            },
            dev,
            memdev,
            region: Region::alloc(1).map_err(PlatformError::from)?,
            irqs,
            rings: Vec::new(),
            running: false,
            cfg,
            min_tx_space: 0,
            copy: Vec::new(),
        };
        me.finalize_memory()?;
        me.bind_rings()?;
        me.create()?;
        log::info!("ptnetd: {}", me.info);
        Ok(me)
    }

    fn find_memdev(platform: &mut P, hostmemid: u32) -> Result<P::Function, DriverError> {
        let cands = platform.find_functions(ids::VENDOR_ID, ids::MEMDEV_DEVICE_ID)?;
        let mut rejected = 0;
        for mut f in cands {
            if !probe_memdev(&f) || f.enable_bar(ids::IO_BAR).is_err() {
                rejected += 1;
                continue;
            }
            let cmd = f.config_read(0x04);
            f.config_write(0x04, (cmd & 0xffff) | 0x3);
            if reg(&f, mdr::MEMID) == hostmemid {
                return Ok(f);
            }
            rejected += 1;
        }
        Err(DriverError::NoMemdev { hostmemid, rejected })
    }

    fn setup_msix(
        platform: &mut P,
        nic: &mut P::Function,
        n: u16,
    ) -> Result<Vec<P::Irq>, DriverError> {
        let m =
            cfg::msix(nic).ok_or_else(|| DriverError::BadDevice("no MSI-X capability".into()))?;
        if m.table_size < n {
            return Err(DriverError::BadDevice(format!(
                "{} MSI-X vectors for {n} rings",
                m.table_size
            )));
        }
        match cfg::bar(nic, m.table_bar) {
            Some(BarInfo::Memory { size, .. })
                if (m.table_offset as u64 + 16 * n as u64) <= size => {}
            _ => return Err(DriverError::BadDevice("MSI-X table outside its BAR".into())),
        }
        nic.enable_bar(m.table_bar)?;
        let vectors = platform.alloc_vectors(nic, n)?;
        let mut irqs = Vec::with_capacity(n as usize);
        for (i, (msg, irq)) in vectors.into_iter().enumerate() {
            let e = m.table_offset + 16 * i as u32;
            nic.bar_write32(m.table_bar, e + 12, 1); // mask while programming
            nic.bar_write32(m.table_bar, e, msg.address as u32);
            nic.bar_write32(m.table_bar, e + 4, (msg.address >> 32) as u32);
            nic.bar_write32(m.table_bar, e + 8, msg.data);
            nic.bar_write32(m.table_bar, e + 12, 0);
            irqs.push(irq);
        }
        nic.enable_msix()?;
        Ok(irqs)
    }

    /// B10: write 12 only if the feature was acked; always use the read-back value (§4 pitfall).
    fn set_vnet_hdr(nic: &P::Function, features: u32) -> Result<u32, DriverError> {
        let want = if features & regs::F_VNET_HDR != 0 { 12 } else { 0 };
        set_reg(nic, regs::VNET_HDR_LEN, want);
        let got = reg(nic, regs::VNET_HDR_LEN);
        if !crate::abi::vnet::VALID_HDR_LENS.contains(&got) {
            return Err(DriverError::BadDevice(format!("VNET_HDR_LEN reads {got}")));
        }
        Ok(got)
    }

    /// C1 (after the E2 geometry re-read): size, map and check the memdev region.
    fn finalize_memory(&mut self) -> Result<(), DriverError> {
        self.info.tx_slots = reg(&self.dev.nic, regs::NUM_TX_SLOTS);
        self.info.rx_slots = reg(&self.dev.nic, regs::NUM_RX_SLOTS);
        for s in [self.info.tx_slots, self.info.rx_slots] {
            if !(2..=65536).contains(&s) {
                return Err(DriverError::BadDevice(format!("{s} slots per ring")));
            }
        }
        let md = &self.memdev;
        let hi = md.bar_read32(ids::IO_BAR, mdr::MEMSIZE_HI);
        let lo = md.bar_read32(ids::IO_BAR, mdr::MEMSIZE_LO);
        let size = (hi as u64) << 32 | lo as u64;
        let bar_size = match cfg::bar(md, ids::MEM_BAR) {
            Some(BarInfo::Memory { size, .. }) => size,
            _ => return Err(DriverError::BadDevice("memdev BAR1 missing".into())),
        };
        if size == 0 || size > bar_size || size > ids::MEMDEV_MAX_REGION {
            return Err(DriverError::BadDevice(format!("MEMSIZE {size} vs BAR1 {bar_size} (E8)")));
        }
        let buf_size = md.bar_read32(ids::IO_BAR, mdr::BUF_POOL_OBJSZ);
        let buf_num = md.bar_read32(ids::IO_BAR, mdr::BUF_POOL_OBJNUM);
        let buf_ofs = md.bar_read32(ids::IO_BAR, mdr::BUF_POOL_OFS) as u64;
        let pool_end = buf_ofs + buf_num as u64 * buf_size as u64;
        if !(64..=65535).contains(&buf_size) || buf_num <= FIRST_BUF_IDX || pool_end > size {
            return Err(layout(format!(
                "buffer pool {buf_num} × {buf_size} at {buf_ofs:#x} in {size}"
            )));
        }
        self.region = self.memdev.map_bar(ids::MEM_BAR, size as usize)?;
        self.info.mem_size = size;
        self.info.buf_size = buf_size;
        self.info.buf_num = buf_num;
        self.info.buf_pool_ofs = buf_ofs;
        self.min_tx_space = 65536 / buf_size + 2; // C5
        Ok(())
    }

    /// C3: rings from the netmap_if, every offset and header checked against the registers.
    fn bind_rings(&mut self) -> Result<(), DriverError> {
        let nifp = self.info.nifp_ofs as usize;
        if !nifp.is_multiple_of(8) || nifp as u64 >= self.info.mem_size {
            return Err(layout(format!("NIFP_OFS {nifp:#x}")));
        }
        let ifr = self.region.sub(nifp, self.region.len() - nifp).map_err(layout)?;
        let (ifv, counts) = IfView::new(&ifr).map_err(layout)?;
        if counts.tx != self.info.tx_rings || counts.rx != self.info.rx_rings {
            return Err(layout(format!(
                "netmap_if has {}/{} rings, registers say {}/{}",
                counts.tx, counts.rx, self.info.tx_rings, self.info.rx_rings
            )));
        }
        let csb = &self.dev.csb;
        let (gh, hg) = (csb[0].region.sub(0, 4096)?, csb[1].region.sub(0, 4096)?);
        let total = self.info.tx_rings + self.info.rx_rings;
        for i in 0..total {
            let tx = i < self.info.tx_rings;
            let (k, slots) = if tx {
                (tx_ring_ofs_index(i), self.info.tx_slots)
            } else {
                (rx_ring_ofs_index(&counts, i - self.info.tx_rings), self.info.rx_slots)
            };
            let rel = ifv.ring_ofs(k).ok_or_else(|| layout(format!("no ring_ofs[{k}]")))?;
            let off = (nifp as i64).checked_add(rel).filter(|&o| o >= 0 && o % 8 == 0);
            let off = off.ok_or_else(|| layout(format!("ring {i} offset {rel}")))? as usize;
            let rr = self
                .region
                .sub(off, ring_size(slots))
                .map_err(|e| layout(format!("ring {i}: {e}")))?;
            let view = RingView::with_slots(&rr, slots).map_err(|e: ViewError| layout(e))?;
            self.check_ring_header(i, off, &view)?;
            let atok = Atok::of(&gh, i)?;
            let ktoa = Ktoa::of(&hg, i)?;
            self.rings.push(GuestRing::new(i, tx, view, atok, ktoa));
            self.copy.push(copy::CopyState::default());
        }
        Ok(())
    }

    fn check_ring_header(&self, i: u32, off: usize, v: &RingView) -> Result<(), DriverError> {
        let (hn, bs, bo) = (v.hdr_num_slots(), v.nr_buf_size(), v.buf_ofs());
        let pool = off as i64 + bo;
        if hn != v.num_slots() || bs != self.info.buf_size || pool != self.info.buf_pool_ofs as i64
        {
            return Err(layout(format!(
                "ring {i} header: {hn} slots, buffers {bs} at {pool:#x} (expected {}, {} at {:#x})",
                v.num_slots(),
                self.info.buf_size,
                self.info.buf_pool_ofs
            )));
        }
        Ok(())
    }

    /// C4: notification flags, header length again, CREATE, status, import (§5.3).
    fn create(&mut self) -> Result<(), DriverError> {
        for r in &self.rings {
            r.ktoa.set_kern_need_kick(1);
            r.atok.set_appl_need_kick(if r.tx { 0 } else { 1 });
        }
        let len = Self::set_vnet_hdr(&self.dev.nic, self.info.features)?;
        if len != self.info.vnet_hdr_len {
            return Err(DriverError::BadDevice("VNET_HDR_LEN changed".into()));
        }
        set_reg(&self.dev.nic, regs::PTCTL, regs::PTCTL_CREATE);
        let st = reg(&self.dev.nic, regs::PTCTL);
        if st != status::OK {
            return Err(DriverError::Ctl { cmd: regs::PTCTL_CREATE, status: st });
        }
        self.running = true;
        for r in &mut self.rings {
            r.import()?;
        }
        for c in &mut self.copy {
            *c = copy::CopyState::default();
        }
        Ok(())
    }

    /// DELETE and CREATE again (e.g. after a stall), re-importing the host state.
    pub fn restart(&mut self) -> Result<(), DriverError> {
        self.delete()?;
        self.create()
    }

    fn delete(&mut self) -> Result<(), DriverError> {
        self.running = false;
        self.dev.delete()
    }

    /// Teardown (§11): DELETE, zero the CSB addresses (each BAL write unmaps on the host), and
    /// only then let the CSB pages go. Dropping a `Ptnet` does the same; this form reports
    /// DELETE's status.
    ///
    /// A device that went away (DELETE fails and [`Self::present`] too) took no DELETE: whoever
    /// served it may still hold the CSB addresses, so nothing is freed (the driver is leaked;
    /// the process is about to exit) and the shutdown counts as clean.
    pub fn shutdown(mut self) -> Result<(), DriverError> {
        self.running = false;
        let r = self.dev.delete();
        if r.is_err() && !self.present() {
            log::info!(
                "ptnetd: {} shut down (device gone: no DELETE, CSB pages kept)",
                self.info.name
            );
            std::mem::forget(self);
            return Ok(());
        }
        self.dev.clear_csb();
        log::info!("ptnetd: {} shut down", self.info.name);
        r
    }

    /// `true` while the NIC answers: `NUM_TX_RINGS` still reads what it read at attach. A
    /// function that went away reads all-ones, as PCI does after a removal; QEMU answers so for
    /// a vfio-user function whose server is gone (measured under QEMU 11.1 with a Redox guest).
    pub fn present(&self) -> bool {
        reg(&self.dev.nic, regs::NUM_TX_RINGS) == self.info.tx_rings
    }

    /// Keeps the device attached, with no client, until it goes away: sleeps on the interrupts
    /// for at most `check` at a time, takes them, and checks [`Self::present`] in between. The
    /// plain daemon's main loop until it serves schemes.
    pub fn run_until_gone(&mut self, platform: &P, check: Duration) {
        while self.present() {
            platform.wait_interrupts(check);
            self.take_interrupts(false);
        }
        log::warn!("ptnetd: {} went away (its registers read all-ones)", self.info.name);
    }

    /// Device facts.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Number of rings (TX + RX).
    pub fn num_rings(&self) -> u32 {
        self.rings.len() as u32
    }

    /// The memdev region (what zero-copy clients map).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Ring `i` (TX rings first).
    pub fn ring(&self, i: u32) -> Option<&GuestRing> {
        self.rings.get(i as usize)
    }

    /// Counters of ring `i`.
    pub fn stats(&self, i: u32) -> Option<RingStats> {
        self.rings.get(i as usize).map(|r| r.stats)
    }

    /// `true` between CREATE and DELETE.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn kick(&self, i: u32) {
        self.dev.nic.bar_write32(ids::IO_BAR, regs::kick_offset(i), 0);
    }

    fn ring_mut(&mut self, i: u32) -> Result<&mut GuestRing, DriverError> {
        if !self.running {
            return Err(DriverError::NotRunning);
        }
        self.rings.get_mut(i as usize).ok_or(DriverError::NoRing(i))
    }

    /// netmap-mode txsync of TX ring `i` with the user's `head`/`cur` (§8.2); kicks if needed.
    pub fn txsync(&mut self, i: u32, head: u32, cur: u32, flags: u32) -> Result<(), DriverError> {
        let r = self.ring_mut(i)?;
        if !r.tx {
            return Err(DriverError::NoRing(i));
        }
        let kick = r.txsync(head, cur, flags)?;
        if kick {
            self.kick(i);
        }
        Ok(())
    }

    /// netmap-mode rxsync of ring `i` (TX-then-RX numbering) with the user's `head`/`cur`
    /// (§8.3); kicks if needed.
    pub fn rxsync(&mut self, i: u32, head: u32, cur: u32, flags: u32) -> Result<(), DriverError> {
        let r = self.ring_mut(i)?;
        if r.tx {
            return Err(DriverError::NoRing(i));
        }
        let kick = r.rxsync(head, cur, flags)?;
        if kick {
            self.kick(i);
        }
        Ok(())
    }

    /// Takes pending interrupts (§9): returns a bit mask of rings whose indices moved. With
    /// `poll` set (the lost-interrupt fallback), every ring is reported.
    pub fn take_interrupts(&mut self, poll: bool) -> u64 {
        let mut mask = 0u64;
        for (i, irq) in self.irqs.iter().enumerate() {
            if irq.take() {
                mask |= 1 << i;
                if let Some(r) = self.rings.get_mut(i) {
                    r.stats.interrupts += 1;
                }
            }
        }
        if poll {
            mask |= (1u64 << self.rings.len()) - 1;
        }
        mask
    }

    /// Waits for work (§9): returns the rings whose interrupts fired, or, when none fired within
    /// the polling interval (or `max`, if shorter), every ring: a lost interrupt costs at most
    /// one interval, never a stall. With the fallback off it waits up to `max` and reports
    /// interrupts only (0: none arrived; spurious wake-ups are possible).
    pub fn wait_work(&mut self, platform: &P, max: Duration) -> u64 {
        let mask = self.take_interrupts(false);
        if mask != 0 {
            return mask;
        }
        platform.wait_interrupts(self.cfg.poll_interval.map_or(max, |p| p.min(max)));
        let mask = self.take_interrupts(false);
        if mask != 0 || self.cfg.poll_interval.is_none() {
            mask
        } else {
            self.take_interrupts(true)
        }
    }

    /// The polling interval of the lost-interrupt fallback (`None`: off).
    pub fn poll_interval(&self) -> Option<Duration> {
        self.cfg.poll_interval
    }

    /// Enables or disables interrupts of ring `i` (netmap `nm_intr`).
    pub fn set_interrupts(&mut self, i: u32, on: bool) -> Result<(), DriverError> {
        self.ring_mut(i)?.set_interrupts(on);
        Ok(())
    }
}
