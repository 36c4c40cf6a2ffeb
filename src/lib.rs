//! # ptnetd
//!
//! A Redox OS driver daemon for netmap's **ptnet** paravirtual NIC, and an emulated ptnet
//! hypervisor (device model) to test and benchmark it on machines without ptnet hardware.
//!
//! ## Map (read in this order)
//!
//! Layers, lowest first: a module uses only those above it in this table (`model`, the host
//! side, uses none of the guest's: `tests/layers.rs` checks it).
//!
//! | module | holds |
//! |---|---|
//! | [`abi`] | the spec (`ptnet.md`) as `#[repr(C)]` types and constants, layout asserted at compile time |
//! | [`shm`] | the one shared-memory accessor and the named barriers; `unsafe` lives here |
//! | [`ring`] | netmap ring arithmetic and the validation chains of §7.5 |
//! | [`csb`] | paired CSB protocol functions (§5.4): publish ↔ read, re-arm then re-check |
//! | [`nm`] | views of `netmap_if`, `netmap_ring` and slots over shared memory |
//! | [`frame`] | the one self-checking test frame (UDP, sequence number, checksum), pure |
//! | [`inet`] | the Internet checksum (RFC 1071), pure: the model's offloads and the stack's software checksum |
//! | [`logger`] | the logger of the Redox daemon (stderr, `log` facade) |
//! | [`platform`] | what the driver needs from its environment: PCI config/BARs, DMA, MSI-X, clock; `sim` (the model), `linux` (sysfs + pagemap, for a Linux guest) and `redox` |
//! | [`driver`] | the guest driver core: probe, bring-up (§6), syncs (§8.2–8.4), copy path (§8.5), interrupts (§9), teardown (§11) |
//! | [`scheme`] | the two schemes (`scheme-spec/`): `network` (stack mode), `netmap` (zero-copy), ring ownership, the request server shared by Redox and the host, the host's in-process kernel, the Redox event loop; errno only here |
//! | [`client`] | the zero-copy client library over one `Os` API (Redox system calls, or the host's in-process kernel) |
//! | [`selftest`] | the zero-copy self test (`--selftest N`): N verified frames out and back through a reflecting port, one PASS/FAIL line |
//! | `model` | (host builds) the emulated hypervisor: PCI functions, registers, guest memory, netmap region, kloop, ports, switch, `ptnet-host`'s vfio-user server |
//! | [`app`] | the applications above both sides: the command lines, the main job, the self test on the embedded model |
//!
//! Binaries: `ptnetd` (the daemon; the embedded-model job by default), `ptnet-host` (the
//! device model as a vfio-user server for QEMU), both thin shells over [`app`], and
//! `ptnet-scheme-test` (checks of both schemes as a client, on Redox or on the embedded model).
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub mod app;
pub mod client;
pub mod csb;
pub mod driver;
pub mod frame;
pub mod inet;
pub mod logger;
pub mod nm;
pub mod notify;
pub mod platform;
pub mod ring;
pub mod scheme;
pub mod selftest;
pub mod shm;

#[cfg(not(target_os = "redox"))]
pub mod model;
