//! A virtual machine as the device model sees it: guest RAM (rust-vmm `vm-memory`), an MSI
//! interrupt controller, and a PCI bus holding ptnet and memdev functions.
//!
//! Like QEMU, adding a ptnet device also adds the memdev of its port's netmap region, once per
//! distinct region (matched by MEMID, §1). The guest side of tests and of the in-process platform
//! reaches devices through [`Vm::functions`] by bus slot, BAR index and offset.

use super::kloop::{MsiMessage, MsiSink};
use super::memdev::MemdevDevice;
use super::notify::Notifier;
use super::pci::ConfigSpace;
use super::ptnet::{DeviceError, Netdev, PtnetConfig, PtnetDevice};
use crate::shm::{Region, ShmError};
use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Errors of VM setup.
#[derive(Debug)]
pub enum VmError {
    /// Guest RAM could not be created.
    Ram(String),
    /// Out of guest RAM for DMA.
    OutOfDma(usize),
    /// Mapping guest RAM failed.
    Shm(ShmError),
    /// Device creation failed.
    Device(DeviceError),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ram(s) => write!(f, "guest ram: {s}"),
            Self::OutOfDma(n) => write!(f, "no guest ram left for a {n}-byte dma allocation"),
            Self::Shm(e) => write!(f, "guest ram: {e}"),
            Self::Device(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VmError {}

/// A misuse of guest DMA memory found by the VM (memory from [`Vm::alloc_dma_guest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmaViolation {
    /// The guest released memory a device still had mapped (e.g. a CSB array before DELETE and
    /// the BAL writes, spec §11): on a real machine the device then writes into freed pages.
    FreedWhileMapped {
        /// Guest-physical address of the released allocation.
        gpa: u64,
        /// Its length.
        len: usize,
        /// Bus slot of the device holding it.
        slot: u8,
    },
    /// Released memory changed: something (a device) wrote there after the release.
    WrittenAfterFree {
        /// Guest-physical address of the first changed byte.
        gpa: u64,
    },
}

impl fmt::Display for DmaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FreedWhileMapped { gpa, len, slot } => write!(
                f,
                "guest freed {len:#x} bytes at {gpa:#x} still mapped by the device in slot {slot}"
            ),
            Self::WrittenAfterFree { gpa } => {
                write!(f, "write into freed guest memory at {gpa:#x}")
            }
        }
    }
}

/// The byte released DMA memory is filled with; any other value found there later was written
/// after the release.
pub const FREED_POISON: u8 = 0xa5;

/// Released DMA allocations (never handed out again) and the violations seen so far.
#[derive(Default)]
struct DmaBook {
    freed: Vec<(u64, Region)>,
    violations: Vec<DmaViolation>,
}

/// Travels with a guest DMA window (every clone and sub-window): dropped with the last of
/// them, i.e. when the guest lets go of the memory.
struct DmaLease {
    vm: Weak<Vm>,
    gpa: u64,
    len: usize,
}

impl Drop for DmaLease {
    fn drop(&mut self) {
        if let Some(vm) = self.vm.upgrade() {
            vm.dma_released(self.gpa, self.len);
        }
    }
}

/// x86 MSI address window (`0xFEEx_xxxx`).
pub const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

/// Counts MSI messages per vector (data & 0xff), like a local APIC with an `irq:` scheme on top.
#[derive(Debug)]
pub struct InterruptController {
    counts: Vec<AtomicU64>,
    stray: AtomicU64,
    lost: AtomicU64,
    seen: AtomicU64,
    loss_every: AtomicU64,
    notifier: Notifier,
}

impl Default for InterruptController {
    fn default() -> Self {
        Self {
            counts: (0..256).map(|_| AtomicU64::new(0)).collect(),
            stray: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            loss_every: AtomicU64::new(0),
            notifier: Notifier::new(),
        }
    }
}

impl InterruptController {
    /// Interrupts received on CPU vector `v`.
    pub fn count(&self, v: u8) -> u64 {
        self.counts[v as usize].load(Ordering::Relaxed)
    }
    /// Messages that were not valid MSI writes (address outside 0xFEEx_xxxx).
    pub fn stray(&self) -> u64 {
        self.stray.load(Ordering::Relaxed)
    }
    /// Fault injection: lose one interrupt in `n` (1 = all, 0 = none).
    pub fn set_loss(&self, n: u64) {
        self.loss_every.store(n, Ordering::Relaxed);
    }
    /// Interrupts lost by [`InterruptController::set_loss`].
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
    /// Wakes every waiter without raising an interrupt: the stand-in for another event source
    /// of the guest (a scheme request arriving at a daemon that sleeps on its interrupts).
    pub fn wake(&self) {
        self.notifier.notify();
    }

    /// Generation of the wake-up notifier (changes on every interrupt).
    pub fn generation(&self) -> u64 {
        self.notifier.generation()
    }
    /// Waits for any interrupt after generation `seen`.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        self.notifier.wait(seen, timeout)
    }
    /// [`InterruptController::wait`] polling for up to `poll` before it sleeps
    /// ([`Notifier::wait_polling`]).
    pub fn wait_polling(&self, seen: u64, poll: Duration, timeout: Duration) -> u64 {
        self.notifier.wait_polling(seen, poll, timeout)
    }
}

impl MsiSink for InterruptController {
    fn deliver(&self, _vector: u16, msg: MsiMessage) {
        if msg.address & !0xf_ffff != MSI_ADDRESS_BASE {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let every = self.loss_every.load(Ordering::Relaxed);
        if every > 0 && self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts[(msg.data & 0xff) as usize].fetch_add(1, Ordering::Relaxed);
        self.notifier.notify();
    }
}

/// A PCI function on the VM's bus.
#[derive(Clone, Debug)]
pub enum PciFunction {
    /// A ptnet NIC.
    Ptnet(Arc<PtnetDevice>),
    /// A memdev.
    Memdev(Arc<MemdevDevice>),
    /// Any other function (config space only; BARs read all-ones), e.g. QEMU's xHCI controller
    /// that shares ptnet's ids (§1 pitfall).
    Other(Arc<Mutex<ConfigSpace>>),
}

impl PciFunction {
    /// Config space read.
    pub fn config_read(&self, off: u16, size: u8) -> u32 {
        match self {
            Self::Ptnet(d) => d.config_read(off, size),
            Self::Memdev(d) => d.config_read(off, size),
            Self::Other(c) => c.lock().unwrap_or_else(|e| e.into_inner()).read(off, size),
        }
    }
    /// Config space write.
    pub fn config_write(&self, off: u16, size: u8, val: u32) {
        match self {
            Self::Ptnet(d) => d.config_write(off, size, val),
            Self::Memdev(d) => d.config_write(off, size, val),
            Self::Other(c) => c.lock().unwrap_or_else(|e| e.into_inner()).write(off, size, val),
        }
    }
    /// BAR read.
    pub fn bar_read(&self, bar: u8, off: u64, size: u8) -> u64 {
        match self {
            Self::Ptnet(d) => d.bar_read(bar, off, size),
            Self::Memdev(d) => d.bar_read(bar, off, size),
            Self::Other(_) => u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32),
        }
    }
    /// BAR write.
    pub fn bar_write(&self, bar: u8, off: u64, size: u8, val: u64) {
        match self {
            Self::Ptnet(d) => d.bar_write(bar, off, size, val),
            Self::Memdev(d) => d.bar_write(bar, off, size, val),
            Self::Other(_) => {}
        }
    }
    /// A BAR that can be mapped as memory (memdev BAR1).
    pub fn bar_memory(&self, bar: u8) -> Option<Region> {
        match self {
            Self::Memdev(d) if bar == crate::abi::pci::MEM_BAR => Some(d.bar1()),
            _ => None,
        }
    }
}

/// A virtual machine.
pub struct Vm {
    ram: Arc<GuestMemoryMmap>,
    ram_size: u64,
    irq: Arc<InterruptController>,
    functions: Mutex<Vec<(u8, PciFunction)>>,
    first_slot: u8,
    dma_next: Mutex<u64>,
    dma_book: Mutex<DmaBook>,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vm({} MiB)", self.ram_size >> 20)
    }
}

/// Where DMA allocations start (the first MiB is left alone, as on a PC).
const DMA_BASE: u64 = 1 << 20;

impl Vm {
    /// A VM with `ram_mib` MiB of RAM at guest-physical 0; functions from slot 3 on (QEMU's
    /// first free slot on a q35 or pc machine).
    pub fn new(ram_mib: u64) -> Result<Arc<Self>, VmError> {
        Self::with_first_slot(ram_mib, 3)
    }

    /// [`Vm::new`] with the functions from slot `first` on (VMs of one run told apart by their
    /// PCI addresses).
    pub fn with_first_slot(ram_mib: u64, first: u8) -> Result<Arc<Self>, VmError> {
        let size = ram_mib << 20;
        let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|e| VmError::Ram(e.to_string()))?;
        Ok(Arc::new(Self {
            ram: Arc::new(ram),
            ram_size: size,
            irq: Arc::new(InterruptController::default()),
            functions: Mutex::new(Vec::new()),
            first_slot: first,
            dma_next: Mutex::new(DMA_BASE),
            dma_book: Mutex::new(DmaBook::default()),
        }))
    }

    /// Guest RAM.
    pub fn ram(&self) -> &Arc<GuestMemoryMmap> {
        &self.ram
    }
    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }
    /// The interrupt controller.
    pub fn irq(&self) -> &Arc<InterruptController> {
        &self.irq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u8, PciFunction)>> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The functions on the bus, with their slot numbers.
    pub fn functions(&self) -> Vec<(u8, PciFunction)> {
        self.lock().clone()
    }

    /// The slot of ptnet device `dev` on this VM's bus ("the PCI slot of this device").
    pub fn slot_of(&self, dev: &Arc<PtnetDevice>) -> Option<u8> {
        self.ptnet_function(dev).map(|(slot, _)| slot)
    }

    /// The slot and function of ptnet device `dev` on this VM's bus.
    pub fn ptnet_function(&self, dev: &Arc<PtnetDevice>) -> Option<(u8, PciFunction)> {
        self.lock()
            .iter()
            .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, dev)))
            .cloned()
    }

    /// Adds a function at the next free slot (starting at the VM's first slot); returns the
    /// slot.
    pub fn add_function(&self, f: PciFunction) -> u8 {
        let mut v = self.lock();
        let slot = v.iter().map(|(s, _)| *s + 1).max().unwrap_or(self.first_slot);
        v.push((slot, f));
        slot
    }

    /// Removes the function in `slot` (e.g. to build a VM without a memdev); returns it.
    pub fn remove_function(&self, slot: u8) -> Option<PciFunction> {
        let mut v = self.lock();
        let i = v.iter().position(|(s, _)| *s == slot)?;
        Some(v.remove(i).1)
    }

    /// Realizes a ptnet device on `netdev`, and the memdev of its region if the bus has none
    /// with that MEMID yet (QEMU hot-creates it, §1).
    pub fn add_ptnet(&self, netdev: Netdev, cfg: PtnetConfig) -> Result<Arc<PtnetDevice>, VmError> {
        let dev = PtnetDevice::new(netdev, self.ram.clone(), self.irq.clone(), cfg)
            .map_err(VmError::Device)?;
        let mem = dev.port().mem().clone();
        let have = self.lock().iter().any(
            |(_, f)| matches!(f, PciFunction::Memdev(m) if m.memory().mem_id() == mem.mem_id()),
        );
        self.add_function(PciFunction::Ptnet(dev.clone()));
        if !have {
            let md = MemdevDevice::new(mem).map_err(|e| VmError::Device(DeviceError::Pci(e)))?;
            self.add_function(PciFunction::Memdev(md));
        }
        Ok(dev)
    }

    /// Allocates `len` bytes of zeroed, page-aligned guest RAM for DMA; returns its
    /// guest-physical address and a window on it (the guest's own mapping).
    pub fn alloc_dma(&self, len: usize) -> Result<(u64, Region), VmError> {
        let len = len.max(1).next_multiple_of(4096);
        let mut next = self.dma_next.lock().unwrap_or_else(|e| e.into_inner());
        if *next + len as u64 > self.ram_size {
            return Err(VmError::OutOfDma(len));
        }
        let gpa = *next;
        let r = Region::from_guest(&self.ram, gpa, len).map_err(VmError::Shm)?;
        r.fill(0, len, 0).map_err(VmError::Shm)?;
        *next += len as u64;
        Ok((gpa, r))
    }

    /// [`Vm::alloc_dma`] for a guest driver: when the last clone of the returned window is
    /// dropped (the guest frees the memory, as unmapping does on Redox), the VM checks that no
    /// device still maps it and fills it with [`FREED_POISON`]; [`Vm::dma_violations`] reports
    /// both kinds of misuse. Released memory is never handed out again.
    pub fn alloc_dma_guest(self: &Arc<Self>, len: usize) -> Result<(u64, Region), VmError> {
        let (gpa, r) = self.alloc_dma(len)?;
        let lease = DmaLease { vm: Arc::downgrade(self), gpa, len: r.len() };
        Ok((gpa, r.with_token(Arc::new(lease))))
    }

    fn dma_released(&self, gpa: u64, len: usize) {
        let Ok(r) = Region::from_guest(&self.ram, gpa, len) else { return };
        let (lo, hi) = (r.addr(), r.addr() + len);
        let mut found = Vec::new();
        for (slot, f) in self.functions() {
            let PciFunction::Ptnet(d) = f else { continue };
            let (gh, hg) = d.csb_regions();
            if [gh, hg].iter().flatten().any(|m| m.addr() < hi && lo < m.addr() + m.len()) {
                found.push(DmaViolation::FreedWhileMapped { gpa, len, slot });
            }
        }
        for v in &found {
            log::error!("vm: {v}");
        }
        let _ = r.fill(0, len, FREED_POISON);
        let mut book = self.dma_book.lock().unwrap_or_else(|e| e.into_inner());
        book.violations.extend(found);
        book.freed.push((gpa, r));
    }

    /// Misuses of guest DMA memory so far: releases of memory a device still mapped, and
    /// released memory found changed (scanned now).
    pub fn dma_violations(&self) -> Vec<DmaViolation> {
        let book = self.dma_book.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = book.violations.clone();
        for (gpa, r) in &book.freed {
            let mut bytes = vec![0u8; r.len()];
            if r.read_bytes(0, &mut bytes).is_ok() {
                if let Some(off) = bytes.iter().position(|&b| b != FREED_POISON) {
                    v.push(DmaViolation::WrittenAfterFree { gpa: gpa + off as u64 });
                }
            }
        }
        v
    }

    /// Number of guest DMA allocations released so far.
    pub fn dma_released_count(&self) -> usize {
        self.dma_book.lock().unwrap_or_else(|e| e.into_inner()).freed.len()
    }
}
