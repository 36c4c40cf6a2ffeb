//! The emulated ptnet hypervisor (device model), faithful to `../shared/spec/ptnet.md`.
//!
//! The host side: it uses only the layers both sides share (`abi`, `shm`, `ring`, `csb`, `nm`,
//! `frame`) and never the guest's (`driver`, `selftest`, `platform`) nor the applications above
//! (`app`); `tests/layers.rs` fails if a file here does.
//!
//! | module | holds |
//! |---|---|
//! | [`pci`] | config space, BARs, MSI-X capability and table (§1, §2, §9) |
//! | [`ptnet`] | the NIC: register file and QEMU quirks (§3.1), CSB mapping, CREATE/DELETE |
//! | [`memdev`] | the memdev: pool registers (§3.2) and BAR1 |
//! | [`memory`] | the netmap region and its if/ring/buffer pools (§7.1) |
//! | [`port`] | host netmap ports, krings, TX/RX backends, pipes, the reflector (§7, §8.6) |
//! | [`kloop`] | the host sync loop, per-ring TX/RX processing, counters (§8.6) |
//! | [`switch`] | a VALE-like learning switch with header conversion (§10) |
//! | [`offload`] | virtio-net header conversion, software checksum and segmentation (§10) |
//! | [`apps`] | source, sink and reflect endpoints |
//! | [`hostile`] | a misbehaving host that scribbles on host-written memory (driver tests) |
//! | [`pcap`] | a pcap tap |
//! | [`vm`] | guest RAM (vm-memory), interrupt controller, PCI bus |
//! | [`script`] | a minimal guest: raw registers and CSB/ring memory (§6, §8.2–8.4) |
//! | [`vfio`] | the functions as vfio-user devices for QEMU, and the `ptnet-host` server |
//!
//! Readings of \[inferred\]/\[uncertain\] spec items are written down in each module's doc:
//! `ptnet` (register quirks, E6/E10/E11, the order of CREATE's checks, CSB alignment), `kloop`
//! (MSI-X routes captured at CREATE, direct mode, TX sync flags, the RX stop condition and the
//! model's one addition to it), `memdev` (BAR1 access widths), `port` (incomplete and bad TX
//! packets), `switch` (drops on a full destination).

pub mod apps;
pub mod hostile;
pub mod kloop;
pub mod memdev;
pub mod memory;
pub use crate::notify; // the wake-up primitive lives below every layer (src/notify.rs)
pub mod offload;
pub mod pcap;
pub mod pci;
pub mod port;
pub mod ptnet;
pub mod script;
pub mod switch;
pub mod vfio;
pub mod vm;
