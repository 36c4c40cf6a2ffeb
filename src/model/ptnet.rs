//! The ptnet NIC function (spec §3.1, §4, §5, §6, §8.6, §11): config space, the BAR0 register
//! file with QEMU's quirks, the MSI-X BAR, CSB mapping, CREATE/DELETE and the kloop.
//!
//! Behaviour follows the QEMU fork, with the errata's corrections:
//! * `PTFEAT` reads `offered & written`; `VNET_HDR_LEN` keeps its value unless the port accepts
//!   the new length (0 always; 10/12 only on switch ports, §10).
//! * `PTCTL` is write-then-read: 0 = ok, else a positive errno. CREATE fails with `ENXIO` if a
//!   CSB array is unmapped and with `EIO` if MSI-X is not enabled (E6: QEMU aborts the VM).
//! * A write to `CSB_GH_BAL`/`CSB_HG_BAL` maps `64 × rings` bytes of guest RAM at BAH:BAL
//!   (0 = unmap; an address outside RAM leaves the array unmapped) and performs an implicit
//!   DELETE, overwriting the status.
//! * Kicks at `128 + 4·i` take 32-bit writes only (E1); narrow accesses elsewhere follow E12.
//! * A second CREATE while running returns 0 and changes nothing: the loop keeps the first
//!   CREATE's MSI-X messages and the CSB is not reinitialised (E11).
//! * A device without a netdev, or with one lacking passthrough, is refused at creation (E10).
//! * A device reset reloads the MAC and forgets the CSB addresses but does not stop a running
//!   loop (§11 [observed]); the next BAL write does.

use super::kloop::{CounterSnapshot, KloopCtx, KloopMode, MsiMessage, MsiSink, RingCounters};
use super::pci::{ConfigSpace, MsixTable, PciError};
use super::port::{NmPort, PortListener};
use crate::abi::csb::array_size;
use crate::abi::pci::{DEFAULT_MAC_PREFIX, IO_BAR, MSIX_BAR};
use crate::abi::regs::*;
use crate::csb::{Atok, Ktoa};
use crate::shm::Region;
use core::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::GuestMemoryMmap;

/// Errors creating a device (QEMU's realize).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// No netdev (E10: QEMU dereferences a NULL peer).
    NoNetdev,
    /// A netmap netdev without `passthrough=on` (E10: QEMU realizes a dead device).
    NoPassthrough,
    /// More rings than the kick registers can address (§3.1 derived limit).
    TooManyRings(u32),
    /// PCI configuration error.
    Pci(PciError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNetdev => write!(f, "ptnet needs a netdev (errata E10)"),
            Self::NoPassthrough => {
                write!(f, "ptnet needs a netmap netdev with passthrough=on (E10)")
            }
            Self::TooManyRings(n) => write!(f, "{n} rings exceed the {MAX_RINGS} kick registers"),
            Self::Pci(e) => write!(f, "pci: {e}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// The netdev a ptnet device is realized with.
#[derive(Clone)]
pub struct Netdev {
    /// The host netmap port (None = no netdev).
    pub port: Option<Arc<NmPort>>,
    /// `passthrough=on`.
    pub passthrough: bool,
    /// `klooptx` (default on; off = direct TX processing in the kick).
    pub kloop_tx: bool,
    /// `klooprx` (default on).
    pub kloop_rx: bool,
}

impl Netdev {
    /// A passthrough netdev on `port` with both kloops on.
    pub fn passthrough(port: Arc<NmPort>) -> Self {
        Self { port: Some(port), passthrough: true, kloop_tx: true, kloop_rx: true }
    }
}

/// Device settings.
#[derive(Debug, Clone, Copy)]
pub struct PtnetConfig {
    /// MAC address (default 52:54:00:12:34:56).
    pub mac: Option<[u8; 6]>,
    /// Kloop sleep timeout (3 s in netmap).
    pub kloop_timeout: Duration,
}

impl Default for PtnetConfig {
    fn default() -> Self {
        Self { mac: None, kloop_timeout: Duration::from_secs(3) }
    }
}

#[derive(Debug, Default)]
struct Regs {
    ptfeat: u32,
    ptctl: u32,
    vnet_hdr_len: u32,
    gh_bah: u32,
    gh_bal: u32,
    hg_bah: u32,
    hg_bal: u32,
    mac: [u8; 6],
    gh: Option<Region>,
    hg: Option<Region>,
}

struct Running {
    ctx: Arc<KloopCtx>,
    thread: Option<JoinHandle<()>>,
}

/// Forwards port events to the running kloop, if any.
struct Listener {
    running: Weak<Mutex<Option<Arc<KloopCtx>>>>,
}

impl Listener {
    fn ctx(&self) -> Option<Arc<KloopCtx>> {
        let r = self.running.upgrade()?;
        let g = r.lock().unwrap_or_else(|e| e.into_inner());
        g.clone()
    }
}

impl PortListener for Listener {
    fn on_rx(&self, _ring: u32) {
        if let Some(c) = self.ctx() {
            c.backend_event(false);
        }
    }
    fn on_tx(&self, _ring: u32) {
        if let Some(c) = self.ctx() {
            c.backend_event(true);
        }
    }
}

/// The ptnet PCI function.
pub struct PtnetDevice {
    port: Arc<NmPort>,
    ram: std::sync::RwLock<Arc<GuestMemoryMmap>>,
    external_msix: std::sync::atomic::AtomicU8,
    msi: Arc<dyn MsiSink>,
    netdev_mode: KloopMode,
    default_mac: [u8; 6],
    pci: Mutex<ConfigSpace>,
    msix: Mutex<MsixTable>,
    regs: Mutex<Regs>,
    running: Mutex<Option<Running>>,
    current: Arc<Mutex<Option<Arc<KloopCtx>>>>,
    counters: Arc<Vec<RingCounters>>,
    faults: Mutex<Faults>,
}

/// Fault injection (a misbehaving host, for driver tests).
#[derive(Debug, Default)]
struct Faults {
    fail_create: Option<u32>,
    overrides: std::collections::HashMap<u32, u32>,
    trace: Option<Vec<Access>>,
}

/// One guest access recorded by [`PtnetDevice::start_trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// BAR0 register read (offset, value returned).
    Read(u32, u32),
    /// BAR0 register write (offset, value).
    Write(u32, u32),
    /// Config space write (offset, value).
    Config(u16, u32),
}

impl fmt::Debug for PtnetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PtnetDevice({})", self.port.name())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PtnetDevice {
    /// Realizes the device on `netdev`, with guest RAM `ram` (for the CSB) and interrupts
    /// going to `msi`.
    pub fn new(
        netdev: Netdev,
        ram: Arc<GuestMemoryMmap>,
        msi: Arc<dyn MsiSink>,
        cfg: PtnetConfig,
    ) -> Result<Arc<Self>, DeviceError> {
        let port = netdev.port.ok_or(DeviceError::NoNetdev)?;
        if !netdev.passthrough {
            return Err(DeviceError::NoPassthrough);
        }
        let n = port.num_tx_rings() + port.num_rx_rings();
        if n > MAX_RINGS {
            return Err(DeviceError::TooManyRings(n));
        }
        let pci = ConfigSpace::ptnet(n as u16).map_err(DeviceError::Pci)?;
        let msix = MsixTable::ptnet(n as u16).map_err(DeviceError::Pci)?;
        let mut mac = [0u8; 6];
        mac[..5].copy_from_slice(&DEFAULT_MAC_PREFIX);
        mac[5] = 0x56;
        let default_mac = cfg.mac.unwrap_or(mac);
        let netdev_mode = KloopMode {
            direct_tx: !netdev.kloop_tx,
            direct_rx: !netdev.kloop_rx,
            timeout: cfg.kloop_timeout,
        };
        let dev = Arc::new(Self {
            port,
            ram: std::sync::RwLock::new(ram),
            external_msix: std::sync::atomic::AtomicU8::new(0),
            msi,
            netdev_mode,
            default_mac,
            pci: Mutex::new(pci),
            msix: Mutex::new(msix),
            regs: Mutex::new(Regs { mac: default_mac, ..Regs::default() }),
            running: Mutex::new(None),
            current: Arc::new(Mutex::new(None)),
            counters: Arc::new((0..n).map(|_| RingCounters::default()).collect()),
            faults: Mutex::new(Faults::default()),
        });
        dev.port.set_listener(Some(Arc::new(Listener { running: Arc::downgrade(&dev.current) })));
        Ok(dev)
    }

    /// The host port behind the device.
    pub fn port(&self) -> &Arc<NmPort> {
        &self.port
    }

    fn num_rings(&self) -> u32 {
        self.port.num_tx_rings() + self.port.num_rx_rings()
    }

    /// Counters of ring `i` (TX rings first).
    pub fn counters(&self, i: u32) -> Option<CounterSnapshot> {
        self.counters.get(i as usize).map(RingCounters::snapshot)
    }

    /// `true` while the host loop runs (between a successful CREATE and DELETE).
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Config space read.
    pub fn config_read(&self, off: u16, size: u8) -> u32 {
        lock(&self.pci).read(off, size)
    }

    /// Config space write.
    pub fn config_write(&self, off: u16, size: u8, val: u32) {
        self.record(Access::Config(off, val));
        lock(&self.pci).write(off, size, val)
    }

    /// `true` if MSI-X is enabled in the capability.
    pub fn msix_enabled(&self) -> bool {
        match self.external_msix.load(std::sync::atomic::Ordering::Acquire) {
            1 => true,
            2 => false,
            _ => lock(&self.pci).msix_enabled(),
        }
    }

    /// For transports where the hypervisor emulates the MSI-X table itself (vfio-user: QEMU
    /// hands the device one eventfd per vector): `Some(on)` overrides the capability's enable
    /// bit, `None` returns to the config-space state. The messages captured at CREATE are then
    /// meaningless; the [`MsiSink`] routes by vector number.
    pub fn set_external_msix(&self, state: Option<bool>) {
        let v = match state {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.external_msix.store(v, std::sync::atomic::Ordering::Release);
    }

    /// Replaces guest RAM (vfio-user DMA map/unmap). CSB arrays already mapped keep the memory
    /// they were mapped from alive until the next BAL write.
    pub fn set_ram(&self, ram: Arc<GuestMemoryMmap>) {
        *self.ram.write().unwrap_or_else(|e| e.into_inner()) = ram;
    }

    /// BAR read (`bar` 0: registers, 2: MSI-X); other BARs read all-ones.
    pub fn bar_read(&self, bar: u8, off: u64, size: u8) -> u64 {
        match bar {
            IO_BAR => self.io_read(off as u32, size) as u64,
            MSIX_BAR => lock(&self.msix).read(off as u32, size),
            _ => u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32),
        }
    }

    /// BAR write.
    pub fn bar_write(&self, bar: u8, off: u64, size: u8, val: u64) {
        match bar {
            IO_BAR => self.io_write(off as u32, size, val as u32),
            MSIX_BAR => lock(&self.msix).write(off as u32, size, val),
            _ => {}
        }
    }

    /// BAR0 read of `size` bytes at `off` (E12: a narrow read at 4k+j returns the low bytes of
    /// register k).
    pub fn io_read(&self, off: u32, size: u8) -> u32 {
        let off = off & IO_MASK;
        let v = self.io_read_inner(off, size);
        self.record(Access::Read(off, v));
        v
    }

    fn io_read_inner(&self, off: u32, size: u8) -> u32 {
        match size {
            4 if off.is_multiple_of(4) => self.reg_read(off),
            1 | 2 => {
                let v = self.reg_read(off & !3);
                v & if size == 1 { 0xff } else { 0xffff }
            }
            _ => 0,
        }
    }

    /// BAR0 write (E12: aligned narrow writes act as 32-bit writes of the zero-extended value,
    /// unaligned ones are ignored; E1: a narrow write to a kick register is dropped).
    pub fn io_write(&self, off: u32, size: u8, val: u32) {
        let off = off & IO_MASK;
        self.record(Access::Write(off, val));
        if !off.is_multiple_of(4) || !matches!(size, 1 | 2 | 4) {
            return;
        }
        if off >= KICK_BASE {
            if size == 4 {
                self.kick((off - KICK_BASE) / 4);
            }
            return;
        }
        let val = match size {
            1 => val & 0xff,
            2 => val & 0xffff,
            _ => val,
        };
        self.reg_write(off, val);
    }

    /// Fault injection: the next CREATE fails with `status` (non-zero).
    pub fn fail_next_create(&self, status: u32) {
        lock(&self.faults).fail_create = Some(status);
    }

    /// Fault injection: register `off` reads `value` (None: normal behaviour again), as a
    /// hostile or buggy host could report.
    pub fn override_register(&self, off: u32, value: Option<u32>) {
        let mut f = lock(&self.faults);
        match value {
            Some(v) => f.overrides.insert(off, v),
            None => f.overrides.remove(&off),
        };
    }

    /// Starts recording BAR0 and config-space accesses (for bring-up order tests).
    pub fn start_trace(&self) {
        lock(&self.faults).trace = Some(Vec::new());
    }

    /// The accesses recorded since [`PtnetDevice::start_trace`].
    pub fn trace(&self) -> Vec<Access> {
        lock(&self.faults).trace.clone().unwrap_or_default()
    }

    fn record(&self, a: Access) {
        if let Some(t) = lock(&self.faults).trace.as_mut() {
            t.push(a);
        }
    }

    /// The mapped CSB arrays `(GH, HG)` (for hostile-host tests).
    pub fn csb_regions(&self) -> (Option<Region>, Option<Region>) {
        let r = lock(&self.regs);
        (r.gh.clone(), r.hg.clone())
    }

    fn reg_read(&self, off: u32) -> u32 {
        if let Some(v) = lock(&self.faults).overrides.get(&off) {
            return *v;
        }
        let r = lock(&self.regs);
        let m = r.mac;
        match off {
            PTFEAT => r.ptfeat,
            PTCTL => r.ptctl,
            MAC_LO => u32::from_be_bytes([m[2], m[3], m[4], m[5]]),
            MAC_HI => u32::from_be_bytes([0, 0, m[0], m[1]]),
            NIFP_OFS => self.port.nifp_ofs() as u32,
            NUM_TX_RINGS => self.port.num_tx_rings(),
            NUM_RX_RINGS => self.port.num_rx_rings(),
            NUM_TX_SLOTS => self.port.num_tx_slots(),
            NUM_RX_SLOTS => self.port.num_rx_slots(),
            VNET_HDR_LEN => r.vnet_hdr_len,
            HOSTMEMID => self.port.mem().mem_id() as u32,
            CSB_GH_BAH => r.gh_bah,
            CSB_GH_BAL => r.gh_bal,
            CSB_HG_BAH => r.hg_bah,
            CSB_HG_BAL => r.hg_bal,
            _ => 0, // CSBBAH/CSBBAL (deprecated), 68..255
        }
    }

    fn offered_features(&self) -> u32 {
        if self.port.vnet_capable() {
            F_VNET_HDR
        } else {
            0
        }
    }

    fn reg_write(&self, off: u32, val: u32) {
        match off {
            PTFEAT => lock(&self.regs).ptfeat = self.offered_features() & val,
            PTCTL => {
                let st = match val {
                    PTCTL_CREATE => self.create(),
                    PTCTL_DELETE => self.delete(),
                    _ => status::EINVAL,
                };
                lock(&self.regs).ptctl = st;
            }
            VNET_HDR_LEN if self.port.set_vnet_hdr_len(val) => lock(&self.regs).vnet_hdr_len = val,
            VNET_HDR_LEN => {}
            CSB_GH_BAH => lock(&self.regs).gh_bah = val,
            CSB_HG_BAH => lock(&self.regs).hg_bah = val,
            CSB_GH_BAL | CSB_HG_BAL => self.map_csb(off == CSB_GH_BAL, val),
            _ => {} // read-only or unused
        }
    }

    /// BAL write: map (or unmap) the array, then an implicit DELETE (§3.1).
    fn map_csb(&self, gh: bool, bal: u32) {
        let len = array_size(self.num_rings());
        {
            let mut r = lock(&self.regs);
            let bah = if gh { r.gh_bah } else { r.hg_bah };
            let gpa = (bah as u64) << 32 | bal as u64;
            let map = if gpa == 0 {
                None
            } else {
                let ram = self.ram.read().unwrap_or_else(|e| e.into_inner()).clone();
                match Region::from_guest(&ram, gpa, len) {
                    Ok(reg) => Some(reg),
                    Err(e) => {
                        log::warn!("{}: CSB at {gpa:#x} not mappable: {e}", self.port.name());
                        None
                    }
                }
            };
            if gh {
                r.gh_bal = bal;
                r.gh = map;
            } else {
                r.hg_bal = bal;
                r.hg = map;
            }
        }
        let st = self.delete();
        lock(&self.regs).ptctl = st;
    }

    /// PTCTL CREATE (§6 "QEMU side of CREATE").
    fn create(&self) -> u32 {
        if let Some(st) = lock(&self.faults).fail_create.take() {
            return st;
        }
        let mut running = lock(&self.running);
        if running.is_some() {
            log::warn!("{}: CREATE while running: ignored (E11)", self.port.name());
            return status::OK;
        }
        let (gh, hg) = {
            let r = lock(&self.regs);
            match (r.gh.clone(), r.hg.clone()) {
                (Some(g), Some(h)) => (g, h),
                _ => return status::ENXIO,
            }
        };
        if !self.msix_enabled() {
            log::warn!("{}: CREATE with MSI-X disabled refused (E6)", self.port.name());
            return status::EIO;
        }
        let n = self.num_rings();
        let routes: Vec<MsiMessage> = {
            let t = lock(&self.msix);
            (0..n as usize)
                .map(|i| t.entry(i).map(|e| MsiMessage { address: e.address, data: e.data }))
                .map(Option::unwrap_or_default)
                .collect()
        };
        let mut atok = Vec::with_capacity(n as usize);
        let mut ktoa = Vec::with_capacity(n as usize);
        for i in 0..n {
            match (Atok::of(&gh, i), Ktoa::of(&hg, i)) {
                (Ok(a), Ok(k)) => {
                    atok.push(a);
                    ktoa.push(k);
                }
                _ => return status::ENXIO,
            }
        }
        let ctx = KloopCtx::new(
            self.port.clone(),
            atok,
            ktoa,
            routes,
            self.msi.clone(),
            self.counters.clone(),
            self.netdev_mode,
        );
        ctx.init_csb();
        let thread = if ctx.all_direct() {
            None
        } else {
            let c = ctx.clone();
            match std::thread::Builder::new().name("ptnet-kloop".into()).spawn(move || c.run()) {
                Ok(h) => Some(h),
                Err(_) => return status::ENOMEM,
            }
        };
        *lock(&self.current) = Some(ctx.clone());
        *running = Some(Running { ctx, thread });
        log::info!("{}: CREATE: {n} rings, kloop started", self.port.name());
        status::OK
    }

    /// PTCTL DELETE: stop the loop and wait for it (§11).
    fn delete(&self) -> u32 {
        let taken = lock(&self.running).take();
        *lock(&self.current) = None;
        if let Some(mut r) = taken {
            r.ctx.request_stop();
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
            log::info!("{}: DELETE: kloop stopped", self.port.name());
        }
        status::OK
    }

    fn kick(&self, i: u32) {
        let ctx = lock(&self.current).clone();
        match ctx {
            Some(c) => c.kick(i),
            None => {
                if let Some(c) = self.counters.get(i as usize) {
                    c.kicks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Device reset (QEMU `qdev_ptnet_reset`): reloads the MAC and forgets the CSB pointers;
    /// does not stop a running loop or clear the other registers (§11 [observed]).
    pub fn reset(&self) {
        let mut r = lock(&self.regs);
        r.mac = self.default_mac;
        r.gh = None;
        r.hg = None;
        drop(r);
        lock(&self.pci).reset();
        lock(&self.msix).reset();
    }
}

impl Drop for PtnetDevice {
    fn drop(&mut self) {
        self.delete();
        self.port.set_listener(None);
    }
}
