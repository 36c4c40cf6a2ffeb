//! The platform wired to the in-process device model: PCI functions of a [`Vm`], DMA from its
//! guest RAM, MSI-X vectors delivered to its interrupt controller.

use super::Bell;
use super::{BarSpace, Dma, Interrupt, MsiMessage, PciFunction, Platform, PlatformError};
use crate::model::vm::{InterruptController, PciFunction as VmFunction, Vm, MSI_ADDRESS_BASE};
use crate::shm::Region;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A platform call a test can make fail once ([`SimPlatform::fail_next`]), as pcid or the
/// memory and irq schemes can refuse them on Redox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// [`Platform::alloc_dma`].
    AllocDma,
    /// [`Platform::alloc_vectors`].
    AllocVectors,
    /// [`PciFunction::enable_msix`].
    EnableMsix,
    /// [`PciFunction::map_bar`].
    MapBar,
}

/// Pending one-shot faults, shared by the platform and the functions it opened.
#[derive(Debug, Default)]
struct Faults(Mutex<Vec<SimFault>>);

impl Faults {
    /// Consumes a pending `f`; `Err` if it was pending.
    fn hit(&self, f: SimFault) -> Result<(), PlatformError> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match v.iter().position(|x| *x == f) {
            Some(i) => {
                v.remove(i);
                Err(PlatformError::Protocol(format!("injected fault: {f:?}")))
            }
            None => Ok(()),
        }
    }
}

/// A function of the simulated VM.
#[derive(Debug, Clone)]
pub struct SimFunction {
    f: VmFunction,
    slot: u8,
    faults: Arc<Faults>,
}

impl SimFunction {
    /// The model-side function (for tests).
    pub fn inner(&self) -> &VmFunction {
        &self.f
    }
}

impl PciFunction for SimFunction {
    fn name(&self) -> String {
        format!("pci-0000-00-{:02x}.0", self.slot)
    }
    fn config_read(&self, offset: u16) -> u32 {
        self.f.config_read(offset, 4)
    }
    fn config_write(&self, offset: u16, value: u32) {
        self.f.config_write(offset, 4, value)
    }
    fn enable_bar(&mut self, bar: u8) -> Result<BarSpace, PlatformError> {
        let v = self.f.config_read(0x10 + 4 * bar as u16, 4);
        Ok(if v & 1 == 1 { BarSpace::Io } else { BarSpace::Memory })
    }
    fn bar_read32(&self, bar: u8, offset: u32) -> u32 {
        self.f.bar_read(bar, offset as u64, 4) as u32
    }
    fn bar_write32(&self, bar: u8, offset: u32, value: u32) {
        self.f.bar_write(bar, offset as u64, 4, value as u64)
    }
    fn map_bar(&mut self, bar: u8, len: usize) -> Result<Region, PlatformError> {
        self.faults.hit(SimFault::MapBar)?;
        let r = self.f.bar_memory(bar).ok_or(PlatformError::Unsupported("bar is not memory"))?;
        Ok(r.sub(0, len)?)
    }
    fn enable_msix(&mut self) -> Result<(), PlatformError> {
        self.faults.hit(SimFault::EnableMsix)?;
        let cap = super::cfg::msix(self)
            .ok_or_else(|| PlatformError::NotFound("msi-x capability".into()))?
            .offset;
        let hdr = self.f.config_read(cap, 4);
        self.f.config_write(cap, 4, hdr | 1 << 31);
        Ok(())
    }
}

/// One vector of the VM's interrupt controller.
#[derive(Debug)]
pub struct SimIrq {
    ctl: Arc<InterruptController>,
    vector: u8,
    seen: AtomicU64,
}

impl Interrupt for SimIrq {
    fn take(&self) -> bool {
        let c = self.ctl.count(self.vector);
        self.seen.swap(c, Ordering::AcqRel) != c
    }
}

/// The platform of a guest running in a model [`Vm`].
#[derive(Debug)]
pub struct SimPlatform {
    vm: Arc<Vm>,
    primary: u8,
    next_vector: u8,
    irq_gen: AtomicU64,
    t0: Instant,
    faults: Arc<Faults>,
}

impl SimPlatform {
    /// A platform for the guest of `vm`, started for the function in bus slot `primary`.
    pub fn new(vm: Arc<Vm>, primary: u8) -> Self {
        Self {
            vm,
            primary,
            next_vector: 0x40,
            irq_gen: AtomicU64::new(0),
            t0: Instant::now(),
            faults: Arc::default(),
        }
    }

    /// Makes the next call of kind `f` (on this platform or a function it opens) fail.
    pub fn fail_next(&self, f: SimFault) {
        self.faults.0.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<Vm> {
        &self.vm
    }
}

/// The VM's interrupt controller as the in-process transport's [`Bell`]: rung by requests and
/// posted events, and by every interrupt the VM receives.
#[derive(Debug)]
struct SimBell(Arc<InterruptController>);

impl Bell for SimBell {
    fn ring(&self) {
        self.0.wake();
    }
    fn generation(&self) -> u64 {
        self.0.generation()
    }
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        self.0.wait(seen, timeout)
    }
    fn wait_polling(&self, seen: u64, poll: Duration, timeout: Duration) -> u64 {
        self.0.wait_polling(seen, poll, timeout)
    }
}

impl SimPlatform {
    /// The bell the in-process transport's threads sleep on: the VM's interrupt controller.
    pub fn doorbell(&self) -> Arc<dyn Bell> {
        Arc::new(SimBell(self.vm.irq().clone()))
    }
}

impl Platform for SimPlatform {
    type Function = SimFunction;
    type Irq = SimIrq;

    fn primary(&mut self) -> Result<SimFunction, PlatformError> {
        self.vm
            .functions()
            .into_iter()
            .find(|(s, _)| *s == self.primary)
            .map(|(slot, f)| SimFunction { f, slot, faults: self.faults.clone() })
            .ok_or_else(|| PlatformError::NotFound(format!("slot {}", self.primary)))
    }

    fn find_functions(
        &mut self,
        vendor: u16,
        device: u16,
    ) -> Result<Vec<SimFunction>, PlatformError> {
        Ok(self
            .vm
            .functions()
            .into_iter()
            .filter(|(s, f)| {
                *s != self.primary
                    && f.config_read(0, 2) as u16 == vendor
                    && f.config_read(2, 2) as u16 == device
            })
            .map(|(slot, f)| SimFunction { f, slot, faults: self.faults.clone() })
            .collect())
    }

    /// Guest DMA from the VM's RAM; its release is checked by the VM ([`Vm::alloc_dma_guest`]).
    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError> {
        self.faults.hit(SimFault::AllocDma)?;
        let (phys, region) = self
            .vm
            .alloc_dma_guest(len)
            .map_err(|e| PlatformError::Protocol(format!("dma: {e}")))?;
        Ok(Dma { region, phys })
    }

    fn alloc_vectors(
        &mut self,
        _function: &SimFunction,
        n: u16,
    ) -> Result<Vec<(MsiMessage, SimIrq)>, PlatformError> {
        self.faults.hit(SimFault::AllocVectors)?;
        if self.next_vector as u32 + n as u32 > 0xf0 {
            return Err(PlatformError::NotFound("free interrupt vectors".into()));
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let vector = self.next_vector;
            self.next_vector += 1;
            let ctl = self.vm.irq().clone();
            let seen = AtomicU64::new(ctl.count(vector));
            v.push((
                MsiMessage { address: MSI_ADDRESS_BASE, data: vector as u32 },
                SimIrq { ctl, vector, seen },
            ));
        }
        Ok(v)
    }

    fn wait_interrupts(&self, timeout: Duration) {
        let seen = self.irq_gen.load(Ordering::Acquire);
        let g = self.vm.irq().wait(seen, timeout);
        self.irq_gen.store(g, Ordering::Release);
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }
}
