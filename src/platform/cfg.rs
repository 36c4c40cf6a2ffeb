//! pci_types' config-space access over a [`PciFunction`], and bounded parsers for what
//! pci_types would not bound against a hostile device.
//!
//! pci_types is used for the header (ids, class) and memory BAR decoding; two of its behaviours
//! are guarded here: `EndpointHeader::bar` panics on a reserved memory-BAR type (bits 2:1 = 01
//! or 11), so the type is checked first; and its capability iterator follows `next` pointers
//! without a bound (a looping list would hang), so the MSI-X capability is found by a walk of at
//! most 48 steps.
#![allow(unsafe_code)]

use super::PciFunction;
use pci_types::{Bar, ConfigRegionAccess, EndpointHeader, PciAddress, PciHeader};

/// Adapter: config accesses of one function, whatever address pci_types passes.
pub struct Cfg<'a, F: PciFunction>(pub &'a F);

impl<F: PciFunction> ConfigRegionAccess for Cfg<'_, F> {
    unsafe fn read(&self, _address: PciAddress, offset: u16) -> u32 {
        self.0.config_read(offset & !3)
    }
    unsafe fn write(&self, _address: PciAddress, offset: u16, value: u32) {
        self.0.config_write(offset & !3, value)
    }
}

fn header() -> PciHeader {
    PciHeader::new(PciAddress::new(0, 0, 0, 0))
}

/// `(vendor, device)`.
pub fn ids<F: PciFunction>(f: &F) -> (u16, u16) {
    header().id(Cfg(f))
}

/// `(base class, subclass, prog-if)`.
pub fn class<F: PciFunction>(f: &F) -> (u8, u8, u8) {
    let (_rev, base, sub, iface) = header().revision_and_class(Cfg(f));
    (base, sub, iface)
}

/// A decoded BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarInfo {
    /// I/O space of `size` bytes.
    Io {
        /// Size in bytes.
        size: u32,
    },
    /// Memory space.
    Memory {
        /// Bus address.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Prefetchable.
        prefetchable: bool,
    },
}

/// Decodes BAR `slot` (0..6): `None` if absent or malformed.
pub fn bar<F: PciFunction>(f: &F, slot: u8) -> Option<BarInfo> {
    if slot >= 6 {
        return None;
    }
    let off = 0x10 + 4 * slot as u16;
    let raw = f.config_read(off);
    if raw & 1 == 1 {
        // I/O BAR: size by the standard protocol (pci_types reports no I/O size).
        f.config_write(off, 0xffff_ffff);
        let rb = f.config_read(off) & 0xffff_fffc;
        f.config_write(off, raw);
        let size = (!rb).wrapping_add(1) & 0xffff;
        return (rb != 0 && size != 0).then_some(BarInfo::Io { size });
    }
    if !matches!((raw >> 1) & 3, 0 | 2) {
        return None; // reserved memory type: pci_types would panic
    }
    let hdr = EndpointHeader::from_header(header(), Cfg(f))?;
    match hdr.bar(slot, Cfg(f))? {
        Bar::Memory32 { address, size, prefetchable } => {
            Some(BarInfo::Memory { address: address as u64, size: size as u64, prefetchable })
        }
        Bar::Memory64 { address, size, prefetchable } => {
            Some(BarInfo::Memory { address, size, prefetchable })
        }
        Bar::Io { .. } => None,
    }
}

/// MSI-X capability fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixInfo {
    /// Config-space offset of the capability.
    pub offset: u16,
    /// Number of table entries.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the PBA.
    pub pba_bar: u8,
    /// Offset of the PBA.
    pub pba_offset: u32,
}

/// Finds the MSI-X capability (id 0x11) with a bounded walk of the capability list.
pub fn msix<F: PciFunction>(f: &F) -> Option<MsixInfo> {
    let status = f.config_read(0x04) >> 16;
    if status & 0x10 == 0 {
        return None;
    }
    let mut p = (f.config_read(0x34) & 0xfc) as u16;
    for _ in 0..48 {
        if p < 0x40 {
            return None;
        }
        let h = f.config_read(p);
        if h == u32::MAX {
            return None; // the function is gone (reads all-ones)
        }
        if h & 0xff == 0x11 {
            let table = f.config_read(p + 4);
            let pba = f.config_read(p + 8);
            return Some(MsixInfo {
                offset: p,
                table_size: ((h >> 16) & 0x7ff) as u16 + 1,
                table_bar: (table & 7) as u8,
                table_offset: table & !7,
                pba_bar: (pba & 7) as u8,
                pba_offset: pba & !7,
            });
        }
        p = ((h >> 8) & 0xfc) as u16;
    }
    None
}
