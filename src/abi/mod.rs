//! The ptnet specification as types and constants (`../shared/spec/ptnet.md`).
//!
//! No logic lives here: every item mirrors one table of the spec, with its layout asserted at
//! compile time (`size_of`/`offset_of!`). Shared structures are never accessed through references:
//! the offsets of these `#[repr(C)]` types are used with the accessors of [`crate::shm`].
//!
//! Field docs carry netmap-style ownership tags: **W:** who writes, **R:** who reads.

pub mod csb;
pub mod memdev;
pub mod netmap;
pub mod nmscheme;
pub mod pci;
pub mod regs;
pub mod vnet;
