//! The platform wired to the in-process device model: PCI functions of a [`Vm`], DMA from its
//! guest RAM, MSI-X vectors delivered to its interrupt controller.

use super::{BarSpace, Dma, Interrupt, MsiMessage, PciFunction, Platform, PlatformError};
use crate::model::vm::{InterruptController, PciFunction as VmFunction, Vm, MSI_ADDRESS_BASE};
use crate::shm::Region;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A function of the simulated VM.
#[derive(Debug, Clone)]
pub struct SimFunction {
    f: VmFunction,
    slot: u8,
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
        let r = self.f.bar_memory(bar).ok_or(PlatformError::Unsupported("bar is not memory"))?;
        Ok(r.sub(0, len)?)
    }
    fn enable_msix(&mut self) -> Result<(), PlatformError> {
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
}

impl SimPlatform {
    /// A platform for the guest of `vm`, started for the function in bus slot `primary`.
    pub fn new(vm: Arc<Vm>, primary: u8) -> Self {
        Self { vm, primary, next_vector: 0x40, irq_gen: AtomicU64::new(0), t0: Instant::now() }
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<Vm> {
        &self.vm
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
            .map(|(slot, f)| SimFunction { f, slot })
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
            .map(|(slot, f)| SimFunction { f, slot })
            .collect())
    }

    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError> {
        let (phys, region) =
            self.vm.alloc_dma(len).map_err(|e| PlatformError::Protocol(format!("dma: {e}")))?;
        Ok(Dma { region, phys })
    }

    fn alloc_vectors(
        &mut self,
        _function: &SimFunction,
        n: u16,
    ) -> Result<Vec<(MsiMessage, SimIrq)>, PlatformError> {
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
