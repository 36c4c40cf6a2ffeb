//! The narrow interface the driver core needs from its environment, and its implementations:
//! [`sim`] (the in-process device model, host builds) and `redox` (pcid, the memory and irq
//! schemes; Redox builds).
//!
//! The driver core is generic over [`Platform`]; it never touches hardware itself. Every method
//! documents what implementors must guarantee.

use crate::shm::{Region, ShmError};
use core::fmt;
use std::time::Duration;

pub mod cfg;
#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(not(target_os = "redox"))]
pub mod sim;

#[cfg(target_os = "redox")]
pub mod redox;

/// The pcid wire codec is pure code: its tests run on the host.
#[cfg(test)]
#[path = "redox/wire.rs"]
mod redox_wire_tests;

/// Errors of a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// The function or resource does not exist.
    NotFound(String),
    /// An OS call failed (errno).
    Os {
        /// What was being done.
        what: &'static str,
        /// errno.
        errno: i32,
    },
    /// The request is not supported by this platform or device.
    Unsupported(&'static str),
    /// A malformed reply from a system service (e.g. pcid).
    Protocol(String),
    /// Mapping memory failed.
    Shm(ShmError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(s) => write!(f, "not found: {s}"),
            Self::Os { what, errno } => write!(f, "{what} failed: errno {errno}"),
            Self::Unsupported(s) => write!(f, "unsupported: {s}"),
            Self::Protocol(s) => write!(f, "protocol error: {s}"),
            Self::Shm(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PlatformError {}

impl From<ShmError> for PlatformError {
    fn from(e: ShmError) -> Self {
        Self::Shm(e)
    }
}

/// Kind of a BAR as the platform maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarSpace {
    /// Port I/O (ptnet's BAR0 under QEMU).
    Io,
    /// Memory-mapped.
    Memory,
}

/// An MSI message to program into an MSI-X table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// One PCI function the driver uses.
///
/// Implementors must guarantee: config accesses reach this function's configuration space and
/// nothing else; BAR accesses are 32-bit, little endian, at `offset` inside the BAR and are
/// bounds-checked against the BAR size (an access outside reads all-ones and writes nothing).
pub trait PciFunction {
    /// A name for logs and scheme names, e.g. `pci-0000-00-03.0`.
    fn name(&self) -> String;
    /// 32-bit config space read at a 4-aligned `offset` (< 256 or < 4096).
    fn config_read(&self, offset: u16) -> u32;
    /// 32-bit config space write at a 4-aligned `offset`.
    fn config_write(&self, offset: u16, value: u32);
    /// Makes BAR `bar` accessible (port I/O rights or an uncached mapping); idempotent.
    fn enable_bar(&mut self, bar: u8) -> Result<BarSpace, PlatformError>;
    /// 32-bit read from an enabled BAR.
    fn bar_read32(&self, bar: u8, offset: u32) -> u32;
    /// 32-bit write to an enabled BAR.
    fn bar_write32(&self, bar: u8, offset: u32, value: u32);
    /// Maps `len` bytes of memory BAR `bar` cacheable (write-back) as shared memory (memdev
    /// BAR1, §2). The region must stay valid until the function is dropped.
    fn map_bar(&mut self, bar: u8, len: usize) -> Result<Region, PlatformError>;
    /// Enables MSI-X on the function (after the driver programmed the table). On Redox this goes
    /// through pcid; elsewhere it sets the enable bit in the capability.
    fn enable_msix(&mut self) -> Result<(), PlatformError>;
}

/// DMA memory: zeroed, physically contiguous, page aligned, with its bus address.
#[derive(Debug, Clone)]
pub struct Dma {
    /// The driver's mapping.
    pub region: Region,
    /// Physical (bus) address of the first byte.
    pub phys: u64,
}

/// An interrupt source (one MSI-X vector).
///
/// Implementors must guarantee that an interrupt raised after the last `take` is reported by
/// the next `take` (no lost edges), and that `take` never blocks.
pub trait Interrupt {
    /// Consumes and acknowledges pending interrupts; returns `true` if there were any.
    fn take(&self) -> bool;
}

/// What the in-process transport's threads sleep on: the guest's interrupt wake-up (for the
/// model: the VM's interrupt controller), a generation that changes on every interrupt and every
/// [`Bell::ring`]. A waiter passes the generation it saw before its last check, so a ring or an
/// interrupt between that check and the sleep is not lost.
pub trait Bell: Send + Sync {
    /// Wakes every thread waiting on the bell (a request arrived, an event was posted).
    fn ring(&self);
    /// The current generation.
    fn generation(&self) -> u64;
    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// generation observed.
    fn wait(&self, seen: u64, timeout: Duration) -> u64;
    /// [`Bell::wait`] that polls for up to `poll` before it sleeps (a vCPU's halt polling); a
    /// zero `poll` is [`Bell::wait`].
    fn wait_polling(&self, seen: u64, poll: Duration, timeout: Duration) -> u64;
}

/// A plain notifier is a bell (what the transport's reply slots and event waiters sleep on).
impl Bell for crate::notify::Notifier {
    fn ring(&self) {
        self.notify();
    }
    fn generation(&self) -> u64 {
        crate::notify::Notifier::generation(self)
    }
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        crate::notify::Notifier::wait(self, seen, timeout)
    }
    fn wait_polling(&self, seen: u64, poll: Duration, timeout: Duration) -> u64 {
        crate::notify::Notifier::wait_polling(self, seen, poll, timeout)
    }
}

/// The environment of the driver.
pub trait Platform {
    /// A PCI function.
    type Function: PciFunction;
    /// An interrupt handle.
    type Irq: Interrupt;

    /// The function the daemon was started for (on Redox: the pcid channel it inherited).
    fn primary(&mut self) -> Result<Self::Function, PlatformError>;
    /// Opens every other function with this vendor and device id (memdev candidates; the caller
    /// checks them). Must be called before the daemon drops its namespace.
    fn find_functions(
        &mut self,
        vendor: u16,
        device: u16,
    ) -> Result<Vec<Self::Function>, PlatformError>;
    /// Allocates `len` bytes (rounded up to pages) of zeroed, physically contiguous DMA memory.
    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError>;
    /// Allocates `n` interrupt vectors for `function`: the MSI message to program in MSI-X
    /// table entry i, and the handle on which vector i's interrupts arrive.
    fn alloc_vectors(
        &mut self,
        function: &Self::Function,
        n: u16,
    ) -> Result<Vec<(MsiMessage, Self::Irq)>, PlatformError>;
    /// Waits until some interrupt may have arrived, or `timeout` passes (spurious wake-ups are
    /// allowed; callers re-check with [`Interrupt::take`]).
    fn wait_interrupts(&self, timeout: Duration);
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
}
