//! The hypervisor side for real VMs: the ptnet NIC and its memdev as **vfio-user** devices
//! (QEMU ≥ 10.1 `-device vfio-user-pci`), served by `ptnet-host` on rust-vmm's `vfio-user`
//! crate. Nothing here re-implements the device: every message ends in the same model objects
//! the in-process tests use ([`PtnetDevice`], [`MemdevDevice`], [`NmPort`], [`Switch`], ...).
//!
//! | module | holds |
//! |---|---|
//! | [`backend`] | the two functions' `ServerBackend`s: config space, region table, BAR accesses, DMA, IRQs |
//! | [`dma`] | guest RAM from DMA-map messages (one shared mapping per message) |
//! | [`irq`] | MSI-X vectors as eventfds: the [`MsiSink`] of a vfio-user ptnet device |
//! | [`host`] | the topology (reflector, switch with host sink/source/reflect endpoints, pipe), one socket per function, serving threads |
//!
//! How QEMU's vfio-user-pci uses a server (measured, `../shared/spec/qemu.md`): it reads the
//! whole config space through the config region and emulates the BAR registers and the MSI-X
//! capability and table itself; BAR accesses arrive as region reads and writes (an I/O BAR
//! too); a region with an fd and a sparse mmap area is mapped into the guest directly; guest
//! RAM arrives as DMA maps with memfds; each MSI-X vector is an eventfd.
//!
//! Trust: the guest reaches the server only through QEMU, as config and BAR accesses, and
//! through memory it shares (its RAM holding the CSB, the netmap region). Every access is
//! checked against its region; the CSB must lie in DMA-mapped RAM (the model refuses other
//! addresses); ring indices and buffer numbers in slots are validated by the model's kloop.
//! Errors concern the one function: an error reply or an ignored write, never a panic.
//!
//! [`PtnetDevice`]: crate::model::ptnet::PtnetDevice
//! [`MemdevDevice`]: crate::model::memdev::MemdevDevice
//! [`NmPort`]: crate::model::port::NmPort
//! [`Switch`]: crate::model::switch::Switch
//! [`MsiSink`]: crate::model::kloop::MsiSink

pub mod backend;
pub mod dma;
pub mod host;
pub mod irq;

pub use backend::{Function, MemdevBackend, PtnetBackend};
pub use host::{BackendKind, Host, HostConfig, HostError, Topology};
