//! PCI configuration space and MSI-X table of the two emulated functions (spec §1, §2, §9).
//!
//! What is emulated, faithfully to conventional PCI (PCI Local Bus 3.0, type-0 header):
//!
//! * [`ConfigSpace`]: the 256-byte configuration space of one function. Identity registers
//!   (vendor, device, revision, class code, subsystem ids, interrupt pin, cache line size) come
//!   from a [`PciIdentity`]; the two functions of spec §1 are [`PciIdentity::ptnet`] and
//!   [`PciIdentity::memdev`]. Up to six BARs ([`BarDef`]: I/O, 32-bit or 64-bit memory) implement
//!   the standard sizing protocol (write all-ones, read back the size mask with the type bits).
//!   The only capability is MSI-X (spec §9: ptnet uses MSI-X only, one vector per ring), placed at
//!   [`MSIX_CAP_OFFSET`] with the status capabilities-list bit and the capability pointer set.
//!   Accesses of 1, 2 or 4 bytes at any offset that does not cross a dword boundary are accepted,
//!   like the CF8/CFC mechanism's byte enables.
//! * [`MsixTable`]: the MSI-X table and pending-bit array in the MSI-X BAR (spec §2: ptnet BAR2,
//!   4096 bytes, table at 0, PBA at 2048, one entry per ring; vector i ↔ ring i, TX then RX).
//!
//! Writable configuration fields: command bits 0 (I/O enable), 1 (memory enable), 2 (bus master),
//! 10 (INTx disable); cache line size; latency timer; interrupt line; the address bits of each
//! BAR; MSI-X message-control bits 15 (enable) and 14 (function mask). Everything else is
//! read-only: the status register (no RW1C condition is ever raised), header type 0, BIST 0,
//! the expansion ROM BAR (reads 0: no ROM), the CardBus CIS pointer, Min_Gnt and Max_Lat (0).
//!
//! Not emulated: PCIe extended configuration space, INTx assertion (the pin is advertised on ptnet
//! but never raised, §1 and §9), parity/SERR reporting, power management, MSI.
//!
//! Accesses never panic: a configuration access with a size other than 1, 2 or 4, beyond offset
//! 255, or crossing a dword boundary reads as all-ones (truncated to the access size) and a write
//! of that shape is ignored. The MSI-X BAR takes aligned 4- and 8-byte accesses only (PCI spec
//! §6.8.2); anything else reads all-ones and writes are dropped.

use core::fmt;
use core::ops::Range;

use crate::abi::pci as abi;

/// Size of a conventional PCI configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Offset of the MSI-X capability when present (first capability after the type-0 header, where
/// QEMU's `pci_add_capability` puts it).
pub const MSIX_CAP_OFFSET: u8 = 0x40;
/// Capability id of MSI-X.
pub const MSIX_CAP_ID: u8 = 0x11;
/// Largest MSI-X table size (11-bit "table size − 1" field).
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Number of BAR slots in a type-0 header.
pub const NUM_BARS: usize = 6;

/// Command register: I/O space enable.
pub const CMD_IO: u16 = 1 << 0;
/// Command register: memory space enable.
pub const CMD_MEM: u16 = 1 << 1;
/// Command register: bus master enable.
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx emulation disable.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Status register: capabilities list present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// MSI-X message control: MSI-X enable.
pub const MSIX_CTRL_ENABLE: u16 = 1 << 15;
/// MSI-X message control: function mask.
pub const MSIX_CTRL_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X vector control: per-vector mask bit.
pub const MSIX_VECTOR_MASKED: u32 = 1;

const REG_VENDOR: usize = 0x00;
const REG_DEVICE: usize = 0x02;
const REG_COMMAND: usize = 0x04;
const REG_STATUS: usize = 0x06;
const REG_REVISION: usize = 0x08;
const REG_PROG_IF: usize = 0x09;
const REG_SUBCLASS: usize = 0x0a;
const REG_CLASS: usize = 0x0b;
const REG_CACHE_LINE: usize = 0x0c;
const REG_LATENCY: usize = 0x0d;
const REG_BAR0: usize = 0x10;
const REG_SUBSYS_VENDOR: usize = 0x2c;
const REG_SUBSYS_ID: usize = 0x2e;
const REG_CAP_PTR: usize = 0x34;
const REG_INT_LINE: usize = 0x3c;
const REG_INT_PIN: usize = 0x3d;

/// Writable bits of the command register.
const CMD_WMASK: u16 = CMD_IO | CMD_MEM | CMD_BUS_MASTER | CMD_INTX_DISABLE;
/// Writable bits of the MSI-X message control register.
const MSIX_CTRL_WMASK: u16 = MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK;

/// All-ones truncated to an access of `size` bytes (0 for size 0, saturating at 4 bytes).
fn ones32(size: u8) -> u32 {
    match size {
        0 => 0,
        1..=3 => (1u32 << (8 * u32::from(size))) - 1,
        _ => u32::MAX,
    }
}

/// All-ones truncated to an access of `size` bytes (0 for size 0, saturating at 8 bytes).
fn ones64(size: u8) -> u64 {
    match size {
        0 => 0,
        1..=7 => (1u64 << (8 * u64::from(size))) - 1,
        _ => u64::MAX,
    }
}

/// Errors building a configuration space or an MSI-X table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// A BAR size is not a power of two or out of the range its kind allows
    /// (I/O 4..=256, 32-bit memory 16..=2 GiB, 64-bit memory 16..=2^63).
    BarSize {
        /// The BAR's kind.
        kind: BarKind,
        /// The offending size.
        size: u64,
    },
    /// A BAR index is not in `0..6`.
    BarIndex(u8),
    /// A BAR slot is defined twice, or overlaps the upper half of a 64-bit BAR, or a 64-bit BAR
    /// has no room for its upper half.
    BarSlotTaken(u8),
    /// The MSI-X table size is not in `1..=2048`.
    MsixTableSize(u16),
    /// The MSI-X table or PBA BAR is not a memory BAR of this function.
    MsixBar(u8),
    /// An MSI-X table or PBA offset is not 8-byte aligned (its low 3 bits carry the BIR).
    MsixOffsetAlignment(u32),
    /// The MSI-X table or PBA does not fit inside its BAR (or the 32-bit BAR offset space).
    MsixOutsideBar {
        /// BAR index (or `u8::MAX` when only the 32-bit offset space was checked).
        bar: u8,
        /// First byte after the structure.
        end: u64,
        /// Size of the BAR (or 2^32).
        bar_size: u64,
    },
    /// The MSI-X table and PBA overlap.
    MsixOverlap,
    /// The memdev netmap region is empty or larger than 2 GiB (errata E8).
    MemdevRegion(u64),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BarSize { kind, size } => write!(
                f,
                "invalid {kind} bar size {size:#x}: must be a power of two in {:#x}..={:#x}",
                kind.min_size(),
                kind.max_size()
            ),
            Self::BarIndex(i) => write!(f, "bar index {i} out of range (0..=5)"),
            Self::BarSlotTaken(i) => write!(
                f,
                "bar slot {i} defined twice, overlapping a 64-bit bar, or lacking room for one"
            ),
            Self::MsixTableSize(n) => {
                write!(f, "msi-x table size {n} out of range (1..={MSIX_MAX_VECTORS})")
            }
            Self::MsixBar(i) => write!(f, "msi-x bar {i} is not a memory bar of this function"),
            Self::MsixOffsetAlignment(o) => {
                write!(f, "msi-x table or pba offset {o:#x} not 8-byte aligned")
            }
            Self::MsixOutsideBar { bar, end, bar_size } => write!(
                f,
                "msi-x structure ending at {end:#x} does not fit in bar {bar} of size {bar_size:#x}"
            ),
            Self::MsixOverlap => write!(f, "msi-x table and pba overlap"),
            Self::MemdevRegion(s) => write!(
                f,
                "memdev region size {s:#x} not in 1..={:#x} (32-bit bar, errata e8)",
                abi::MEMDEV_MAX_REGION
            ),
        }
    }
}

impl std::error::Error for PciError {}

/// The identity registers of a function (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIdentity {
    /// Vendor id (offset 0x00).
    pub vendor_id: u16,
    /// Device id (offset 0x02).
    pub device_id: u16,
    /// Revision id (offset 0x08).
    pub revision: u8,
    /// Class code as `[base class (0x0b), subclass (0x0a), programming interface (0x09)]`.
    pub class: [u8; 3],
    /// Subsystem vendor id (offset 0x2c).
    pub subsys_vendor_id: u16,
    /// Subsystem id (offset 0x2e).
    pub subsys_id: u16,
    /// Interrupt pin (offset 0x3d): 0 none, 1 INTA.
    pub interrupt_pin: u8,
    /// Reset value of the cache line size register (offset 0x0c).
    pub cache_line_size: u8,
}

impl PciIdentity {
    /// The ptnet NIC as QEMU's `ptnet-pci` presents it: 1b36:000d, class 02/00/00, subsystem
    /// 1af4:1100, revision 0, INTA advertised, cache line size 0x10 (spec §1).
    pub const fn ptnet() -> Self {
        Self {
            vendor_id: abi::VENDOR_ID,
            device_id: abi::PTNET_DEVICE_ID,
            revision: 0,
            class: abi::PTNET_CLASS,
            subsys_vendor_id: abi::SUBSYS_VENDOR_ID,
            subsys_id: abi::SUBSYS_ID,
            interrupt_pin: abi::PTNET_INTERRUPT_PIN,
            cache_line_size: abi::PTNET_CACHE_LINE_SIZE,
        }
    }

    /// The ptnetmap-memdev as QEMU presents it: 1b36:000c, base class 0x00 / subclass 0xff
    /// (QEMU's 16-bit `class_id` quirk), subsystem 1af4:1100, revision 0, no interrupt pin,
    /// cache line size 0 (spec §1).
    pub const fn memdev() -> Self {
        Self {
            vendor_id: abi::VENDOR_ID,
            device_id: abi::MEMDEV_DEVICE_ID,
            revision: 0,
            class: abi::MEMDEV_CLASS,
            subsys_vendor_id: abi::SUBSYS_VENDOR_ID,
            subsys_id: abi::SUBSYS_ID,
            interrupt_pin: 0,
            cache_line_size: 0,
        }
    }
}

/// The kind of a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space (bit 0 = 1).
    Io,
    /// 32-bit memory space (type bits 00).
    Mem32 {
        /// Prefetchable bit (bit 3).
        prefetchable: bool,
    },
    /// 64-bit memory space (type bits 10); the upper half lives in the next BAR slot.
    Mem64 {
        /// Prefetchable bit (bit 3).
        prefetchable: bool,
    },
}

impl BarKind {
    /// Smallest size allowed for this kind (PCI spec: 4 bytes of I/O, 16 bytes of memory).
    pub const fn min_size(self) -> u64 {
        match self {
            Self::Io => 4,
            Self::Mem32 { .. } | Self::Mem64 { .. } => 16,
        }
    }

    /// Largest size allowed for this kind (256 bytes of I/O per PCI spec, 2 GiB for a 32-bit
    /// memory BAR, 2^63 for a 64-bit one).
    pub const fn max_size(self) -> u64 {
        match self {
            Self::Io => 256,
            Self::Mem32 { .. } => 1 << 31,
            Self::Mem64 { .. } => 1 << 63,
        }
    }

    /// Whether this is a memory BAR.
    pub const fn is_mem(self) -> bool {
        !matches!(self, Self::Io)
    }

    /// Number of BAR slots (dwords) used: 2 for a 64-bit BAR, else 1.
    pub const fn slots(self) -> usize {
        match self {
            Self::Mem64 { .. } => 2,
            _ => 1,
        }
    }

    /// The read-only low bits of the BAR register (space, type and prefetch bits).
    pub const fn type_bits(self) -> u32 {
        match self {
            Self::Io => 0x1,
            Self::Mem32 { prefetchable } => {
                if prefetchable {
                    0x8
                } else {
                    0x0
                }
            }
            Self::Mem64 { prefetchable } => {
                if prefetchable {
                    0xc
                } else {
                    0x4
                }
            }
        }
    }

    /// Mask of the low bits that are not address bits (2 for I/O, 4 for memory).
    const fn low_mask(self) -> u64 {
        match self {
            Self::Io => 0x3,
            _ => 0xf,
        }
    }
}

impl fmt::Display for BarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, pf) = match self {
            Self::Io => ("i/o", false),
            Self::Mem32 { prefetchable } => ("32-bit memory", *prefetchable),
            Self::Mem64 { prefetchable } => ("64-bit memory", *prefetchable),
        };
        if pf {
            write!(f, "prefetchable {name}")
        } else {
            f.write_str(name)
        }
    }
}

/// A validated BAR definition: kind and power-of-two size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarDef {
    kind: BarKind,
    size: u64,
}

impl BarDef {
    /// A BAR of `kind` and `size` bytes; `size` must be a power of two within
    /// [`BarKind::min_size`]`..=`[`BarKind::max_size`].
    pub const fn new(kind: BarKind, size: u64) -> Result<Self, PciError> {
        if !size.is_power_of_two() || size < kind.min_size() || size > kind.max_size() {
            return Err(PciError::BarSize { kind, size });
        }
        Ok(Self { kind, size })
    }

    /// An I/O BAR of `size` bytes.
    pub const fn io(size: u64) -> Result<Self, PciError> {
        Self::new(BarKind::Io, size)
    }

    /// A 32-bit memory BAR of `size` bytes.
    pub const fn mem32(size: u64, prefetchable: bool) -> Result<Self, PciError> {
        Self::new(BarKind::Mem32 { prefetchable }, size)
    }

    /// A 64-bit memory BAR of `size` bytes.
    pub const fn mem64(size: u64, prefetchable: bool) -> Result<Self, PciError> {
        Self::new(BarKind::Mem64 { prefetchable }, size)
    }

    /// The BAR's kind.
    pub const fn kind(&self) -> BarKind {
        self.kind
    }

    /// The BAR's size in bytes (a power of two).
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Writable bits of the 64-bit BAR value (address bits only).
    const fn addr_mask(&self) -> u64 {
        !(self.size - 1) & !self.kind.low_mask()
    }
}

/// Where the MSI-X capability points (spec §2: ptnet uses BAR2, table at 0, PBA at 2048).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCapDef {
    /// Number of vectors (1..=2048); the capability encodes `table_size − 1`.
    pub table_size: u16,
    /// BAR indicator of the table.
    pub table_bar: u8,
    /// Offset of the table in its BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR indicator of the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in its BAR (8-byte aligned).
    pub pba_offset: u32,
}

impl MsixCapDef {
    /// ptnet's layout: `num_rings` vectors in BAR2, table at 0, PBA at 2048 (spec §2, §9).
    pub const fn ptnet(num_rings: u16) -> Self {
        Self {
            table_size: num_rings,
            table_bar: abi::MSIX_BAR,
            table_offset: abi::MSIX_TABLE_OFFSET,
            pba_bar: abi::MSIX_BAR,
            pba_offset: abi::MSIX_PBA_OFFSET,
        }
    }

    /// Byte length of the table.
    pub const fn table_len(&self) -> u64 {
        self.table_size as u64 * abi::MSIX_ENTRY_SIZE as u64
    }

    /// Byte length of the PBA (one bit per vector, in whole qwords).
    pub const fn pba_len(&self) -> u64 {
        (self.table_size as u64).div_ceil(64) * 8
    }
}

/// Checks an MSI-X layout independent of any BAR: size, alignment, 32-bit offset space, overlap.
fn check_msix_layout(def: &MsixCapDef) -> Result<(), PciError> {
    if def.table_size == 0 || def.table_size > MSIX_MAX_VECTORS {
        return Err(PciError::MsixTableSize(def.table_size));
    }
    for off in [def.table_offset, def.pba_offset] {
        if !off.is_multiple_of(8) {
            return Err(PciError::MsixOffsetAlignment(off));
        }
    }
    let table = u64::from(def.table_offset)..u64::from(def.table_offset) + def.table_len();
    let pba = u64::from(def.pba_offset)..u64::from(def.pba_offset) + def.pba_len();
    for end in [table.end, pba.end] {
        if end > 1 << 32 {
            return Err(PciError::MsixOutsideBar { bar: u8::MAX, end, bar_size: 1 << 32 });
        }
    }
    if def.table_bar == def.pba_bar && table.start < pba.end && pba.start < table.end {
        return Err(PciError::MsixOverlap);
    }
    Ok(())
}

/// The 256-byte type-0 configuration space of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpace {
    identity: PciIdentity,
    /// Defined BARs, at their (lower) slot.
    bars: [Option<BarDef>; NUM_BARS],
    msix: Option<MsixCapDef>,
    regs: [u8; CONFIG_SPACE_SIZE],
    /// Per-byte writable bits.
    wmask: [u8; CONFIG_SPACE_SIZE],
    /// Register values after reset.
    reset_regs: [u8; CONFIG_SPACE_SIZE],
}

impl ConfigSpace {
    /// Builds the configuration space of a function with the given identity, BARs
    /// (`(index, definition)` pairs) and optional MSI-X capability.
    ///
    /// Fails if a BAR index is out of range or used twice (a 64-bit BAR takes two slots), or if
    /// the MSI-X capability has a bad size, points at a BAR that is not a memory BAR of this
    /// function, has misaligned offsets, or does not fit in its BAR(s).
    pub fn new(
        id: &PciIdentity,
        bars: &[(u8, BarDef)],
        msix: Option<MsixCapDef>,
    ) -> Result<Self, PciError> {
        let mut slots = [None; NUM_BARS];
        let mut used = [false; NUM_BARS];
        for &(idx, def) in bars {
            // Re-validate: cheap, and keeps the invariants local.
            let def = BarDef::new(def.kind, def.size)?;
            let start = usize::from(idx);
            if start >= NUM_BARS {
                return Err(PciError::BarIndex(idx));
            }
            let end = start + def.kind.slots();
            if end > NUM_BARS {
                return Err(PciError::BarSlotTaken(idx));
            }
            if let Some(taken) = (start..end).find(|&s| used[s]) {
                return Err(PciError::BarSlotTaken(taken as u8));
            }
            used[start..end].fill(true);
            slots[start] = Some(def);
        }

        if let Some(m) = &msix {
            check_msix_layout(m)?;
            for (bar, off, len) in [
                (m.table_bar, m.table_offset, m.table_len()),
                (m.pba_bar, m.pba_offset, m.pba_len()),
            ] {
                let def = slots
                    .get(usize::from(bar))
                    .copied()
                    .flatten()
                    .filter(|d| d.kind.is_mem())
                    .ok_or(PciError::MsixBar(bar))?;
                let end = u64::from(off) + len;
                if end > def.size {
                    return Err(PciError::MsixOutsideBar { bar, end, bar_size: def.size });
                }
            }
        }

        let mut cs = Self {
            identity: *id,
            bars: slots,
            msix,
            regs: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            reset_regs: [0; CONFIG_SPACE_SIZE],
        };
        cs.put16(REG_VENDOR, id.vendor_id);
        cs.put16(REG_DEVICE, id.device_id);
        cs.put_mask16(REG_COMMAND, CMD_WMASK);
        cs.regs[REG_REVISION] = id.revision;
        cs.regs[REG_PROG_IF] = id.class[2];
        cs.regs[REG_SUBCLASS] = id.class[1];
        cs.regs[REG_CLASS] = id.class[0];
        cs.regs[REG_CACHE_LINE] = id.cache_line_size;
        cs.wmask[REG_CACHE_LINE] = 0xff;
        cs.wmask[REG_LATENCY] = 0xff;
        // Header type 0x0e = 0 (type 0, single function), BIST 0x0f = 0: left zero.
        for (idx, def) in slots.iter().enumerate() {
            let Some(def) = def else { continue };
            let reg = REG_BAR0 + 4 * idx;
            let mask = def.addr_mask();
            cs.put32(reg, def.kind.type_bits());
            cs.put_mask32(reg, mask as u32);
            if let BarKind::Mem64 { .. } = def.kind {
                cs.put_mask32(reg + 4, (mask >> 32) as u32);
            }
        }
        cs.put16(REG_SUBSYS_VENDOR, id.subsys_vendor_id);
        cs.put16(REG_SUBSYS_ID, id.subsys_id);
        cs.wmask[REG_INT_LINE] = 0xff;
        cs.regs[REG_INT_PIN] = id.interrupt_pin;

        if let Some(m) = &msix {
            let cap = usize::from(MSIX_CAP_OFFSET);
            cs.put16(REG_STATUS, STATUS_CAP_LIST);
            cs.regs[REG_CAP_PTR] = MSIX_CAP_OFFSET;
            cs.regs[cap] = MSIX_CAP_ID;
            cs.regs[cap + 1] = 0; // end of list
            cs.put16(cap + 2, m.table_size - 1);
            cs.put_mask16(cap + 2, MSIX_CTRL_WMASK);
            cs.put32(cap + 4, m.table_offset | u32::from(m.table_bar));
            cs.put32(cap + 8, m.pba_offset | u32::from(m.pba_bar));
        }
        cs.reset_regs = cs.regs;
        Ok(cs)
    }

    /// The ptnet NIC with `num_rings` (TX + RX) MSI-X vectors: identity of §1, BAR0 256-byte I/O,
    /// BAR2 4096-byte 32-bit non-prefetchable memory with the table at 0 and PBA at 2048 (§2, §9).
    /// `num_rings` must be 1..=128 to fit in the 4096-byte BAR.
    pub fn ptnet(num_rings: u16) -> Result<Self, PciError> {
        Self::new(
            &PciIdentity::ptnet(),
            &[
                (abi::IO_BAR, BarDef::io(u64::from(abi::PTNET_IO_BAR_SIZE))?),
                (abi::MSIX_BAR, BarDef::mem32(u64::from(abi::MSIX_BAR_SIZE), false)?),
            ],
            Some(MsixCapDef::ptnet(num_rings)),
        )
    }

    /// The memdev with a netmap region of `region_size` bytes: identity of §1, BAR0 128-byte I/O,
    /// BAR1 32-bit prefetchable memory of the next power of two ≥ `region_size` (at least 16), no
    /// capabilities (§2). Regions of 0 bytes or above 2 GiB are refused (errata E8).
    pub fn memdev(region_size: u64) -> Result<Self, PciError> {
        if region_size == 0 || region_size > abi::MEMDEV_MAX_REGION {
            return Err(PciError::MemdevRegion(region_size));
        }
        let bar1 = region_size.next_power_of_two().max(16);
        Self::new(
            &PciIdentity::memdev(),
            &[
                (abi::IO_BAR, BarDef::io(u64::from(abi::MEMDEV_IO_BAR_SIZE))?),
                (abi::MEM_BAR, BarDef::mem32(bar1, true)?),
            ],
            None,
        )
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.regs[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, off: usize, v: u32) {
        self.regs[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put_mask16(&mut self, off: usize, m: u16) {
        self.wmask[off..off + 2].copy_from_slice(&m.to_le_bytes());
    }

    fn put_mask32(&mut self, off: usize, m: u32) {
        self.wmask[off..off + 4].copy_from_slice(&m.to_le_bytes());
    }

    fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.regs[off], self.regs[off + 1]])
    }

    fn get32(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.regs[off],
            self.regs[off + 1],
            self.regs[off + 2],
            self.regs[off + 3],
        ])
    }

    /// The byte range of a valid access: size 1, 2 or 4, within 256 bytes, not crossing a dword.
    fn access_range(offset: u16, size: u8) -> Option<Range<usize>> {
        if !matches!(size, 1 | 2 | 4) {
            return None;
        }
        let off = usize::from(offset);
        let size = usize::from(size);
        if off >= CONFIG_SPACE_SIZE || off % 4 + size > 4 {
            return None;
        }
        Some(off..off + size)
    }

    /// Reads `size` (1, 2 or 4) bytes at `offset`, little endian. An invalid access (other size,
    /// beyond 255, or crossing a dword boundary) returns all-ones truncated to `size`.
    pub fn read(&self, offset: u16, size: u8) -> u32 {
        let Some(range) = Self::access_range(offset, size) else {
            return ones32(size);
        };
        self.regs[range].iter().rev().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    }

    /// Writes the low `size` (1, 2 or 4) bytes of `value` at `offset`, little endian. Only
    /// writable bits change; an invalid access is ignored.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) {
        let Some(range) = Self::access_range(offset, size) else {
            return;
        };
        for (i, off) in range.enumerate() {
            let b = (value >> (8 * i)) as u8;
            let m = self.wmask[off];
            self.regs[off] = (self.regs[off] & !m) | (b & m);
        }
    }

    /// Restores every register to its value after construction (PCI reset).
    pub fn reset(&mut self) {
        self.regs = self.reset_regs;
    }

    /// The identity this space was built from.
    pub fn identity(&self) -> &PciIdentity {
        &self.identity
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.get16(REG_COMMAND)
    }

    /// The status register.
    pub fn status(&self) -> u16 {
        self.get16(REG_STATUS)
    }

    /// Whether I/O space decoding is enabled (command bit 0).
    pub fn io_enabled(&self) -> bool {
        self.command() & CMD_IO != 0
    }

    /// Whether memory space decoding is enabled (command bit 1).
    pub fn mem_enabled(&self) -> bool {
        self.command() & CMD_MEM != 0
    }

    /// Whether the function may master the bus, i.e. DMA and MSI-X writes (command bit 2).
    pub fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    /// Whether INTx is disabled (command bit 10).
    pub fn intx_disabled(&self) -> bool {
        self.command() & CMD_INTX_DISABLE != 0
    }

    /// The interrupt line register (written by firmware or the OS, not used by the device).
    pub fn interrupt_line(&self) -> u8 {
        self.regs[REG_INT_LINE]
    }

    /// The definition of the BAR at slot `idx`, if one starts there.
    pub fn bar_def(&self, idx: u8) -> Option<BarDef> {
        self.bars.get(usize::from(idx)).copied().flatten()
    }

    /// The programmed base address of the BAR at slot `idx` (type bits masked off; the upper half
    /// included for a 64-bit BAR), or `None` if no BAR starts at `idx`. Whether the BAR is decoded
    /// depends on [`io_enabled`](Self::io_enabled) / [`mem_enabled`](Self::mem_enabled).
    pub fn bar_address(&self, idx: u8) -> Option<u64> {
        let def = self.bar_def(idx)?;
        let reg = REG_BAR0 + 4 * usize::from(idx);
        let lo = u64::from(self.get32(reg));
        let hi = match def.kind {
            BarKind::Mem64 { .. } => u64::from(self.get32(reg + 4)),
            _ => 0,
        };
        Some(((hi << 32) | lo) & def.addr_mask())
    }

    /// The MSI-X capability definition, if present.
    pub fn msix_cap(&self) -> Option<MsixCapDef> {
        self.msix
    }

    /// The MSI-X message control register, if MSI-X is present.
    fn msix_control(&self) -> Option<u16> {
        self.msix.map(|_| self.get16(usize::from(MSIX_CAP_OFFSET) + 2))
    }

    /// Whether MSI-X is enabled (message control bit 15); false without MSI-X.
    pub fn msix_enabled(&self) -> bool {
        self.msix_control().is_some_and(|c| c & MSIX_CTRL_ENABLE != 0)
    }

    /// Whether all MSI-X vectors are masked by the function mask (message control bit 14); false
    /// without MSI-X.
    pub fn msix_function_masked(&self) -> bool {
        self.msix_control().is_some_and(|c| c & MSIX_CTRL_FUNCTION_MASK != 0)
    }
}

/// One MSI-X table entry as the device uses it to send an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixEntry {
    /// Message address (upper dword << 32 | lower dword), as written by the guest.
    pub address: u64,
    /// Message data.
    pub data: u32,
    /// Per-vector mask (vector control bit 0).
    pub masked: bool,
}

/// Raw table entry: address lo, address hi, data, vector control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawEntry([u32; 4]);

impl RawEntry {
    const RESET: Self = Self([0, 0, 0, MSIX_VECTOR_MASKED]);
}

/// MSI-X table and pending-bit array of one function, addressed relative to the start of the
/// MSI-X BAR (spec §2, §9). Vectors are masked at reset; the PBA is read-only to the guest and
/// set by the device with [`set_pending`](Self::set_pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsixTable {
    table_offset: u32,
    pba_offset: u32,
    entries: Vec<RawEntry>,
    pba: Vec<u64>,
}

impl MsixTable {
    /// A table of `n` vectors (1..=2048) at `table_offset` with the PBA at `pba_offset`, both
    /// offsets 8-byte aligned, in the same BAR, not overlapping.
    pub fn new(n: u16, table_offset: u32, pba_offset: u32) -> Result<Self, PciError> {
        let def = MsixCapDef { table_size: n, table_bar: 0, table_offset, pba_bar: 0, pba_offset };
        check_msix_layout(&def)?;
        Ok(Self {
            table_offset,
            pba_offset,
            entries: vec![RawEntry::RESET; usize::from(n)],
            pba: vec![0; usize::from(n).div_ceil(64)],
        })
    }

    /// ptnet's table: `num_rings` vectors, table at 0, PBA at 2048 (spec §2).
    pub fn ptnet(num_rings: u16) -> Result<Self, PciError> {
        Self::new(num_rings, abi::MSIX_TABLE_OFFSET, abi::MSIX_PBA_OFFSET)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a table has at least one vector.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Restores the reset state: every entry zero and masked, no pending bit.
    pub fn reset(&mut self) {
        self.entries.fill(RawEntry::RESET);
        self.pba.fill(0);
    }

    /// Reads an aligned 4-byte or 8-byte (two dwords, low first) access at BAR offset `offset`.
    /// Bytes outside the table and PBA read 0; other sizes or misaligned accesses return
    /// all-ones truncated to `size`.
    pub fn read(&self, offset: u32, size: u8) -> u64 {
        match size {
            4 if offset.is_multiple_of(4) => u64::from(self.read32(offset)),
            8 if offset.is_multiple_of(8) => {
                u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
            }
            _ => ones64(size),
        }
    }

    /// Writes an aligned 4-byte or 8-byte (two dwords, low first) access at BAR offset `offset`.
    /// Only the table is writable, and only bit 0 of vector control; everything else, other
    /// sizes and misaligned accesses are ignored.
    pub fn write(&mut self, offset: u32, size: u8, value: u64) {
        match size {
            4 if offset.is_multiple_of(4) => self.write32(offset, value as u32),
            8 if offset.is_multiple_of(8) => {
                self.write32(offset, value as u32);
                self.write32(offset + 4, (value >> 32) as u32);
            }
            _ => {}
        }
    }

    /// (entry, dword within entry) for a dword-aligned table offset.
    fn table_slot(&self, offset: u32) -> Option<(usize, usize)> {
        let rel = offset.checked_sub(self.table_offset)?;
        let entry = (rel / abi::MSIX_ENTRY_SIZE) as usize;
        (entry < self.entries.len()).then_some((entry, (rel % abi::MSIX_ENTRY_SIZE / 4) as usize))
    }

    /// (qword, upper half) for a dword-aligned PBA offset.
    fn pba_slot(&self, offset: u32) -> Option<(usize, bool)> {
        let rel = offset.checked_sub(self.pba_offset)?;
        let word = (rel / 8) as usize;
        (word < self.pba.len()).then_some((word, rel % 8 >= 4))
    }

    fn read32(&self, offset: u32) -> u32 {
        if let Some((e, d)) = self.table_slot(offset) {
            self.entries[e].0[d]
        } else if let Some((w, upper)) = self.pba_slot(offset) {
            if upper {
                (self.pba[w] >> 32) as u32
            } else {
                self.pba[w] as u32
            }
        } else {
            0
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        if let Some((e, d)) = self.table_slot(offset) {
            self.entries[e].0[d] = if d == 3 { value & MSIX_VECTOR_MASKED } else { value };
        }
    }

    /// Entry `i` (address, data, mask), or `None` if `i` is out of range.
    pub fn entry(&self, i: usize) -> Option<MsixEntry> {
        let [lo, hi, data, ctrl] = self.entries.get(i)?.0;
        Some(MsixEntry {
            address: (u64::from(hi) << 32) | u64::from(lo),
            data,
            masked: ctrl & MSIX_VECTOR_MASKED != 0,
        })
    }

    /// Sets or clears the pending bit of vector `i`; out-of-range `i` is ignored.
    pub fn set_pending(&mut self, i: usize, pending: bool) {
        if i < self.entries.len() {
            let bit = 1u64 << (i % 64);
            if pending {
                self.pba[i / 64] |= bit;
            } else {
                self.pba[i / 64] &= !bit;
            }
        }
    }

    /// Whether vector `i` is pending; false if `i` is out of range.
    pub fn pending(&self, i: usize) -> bool {
        i < self.entries.len() && self.pba[i / 64] & (1u64 << (i % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NRINGS: u16 = 6;

    fn ptnet() -> ConfigSpace {
        ConfigSpace::ptnet(NRINGS).unwrap()
    }

    fn memdev() -> ConfigSpace {
        ConfigSpace::memdev(5 << 20).unwrap()
    }

    fn r8(cs: &ConfigSpace, off: u16) -> u8 {
        cs.read(off, 1) as u8
    }

    fn r16(cs: &ConfigSpace, off: u16) -> u16 {
        cs.read(off, 2) as u16
    }

    fn r32(cs: &ConfigSpace, off: u16) -> u32 {
        cs.read(off, 4)
    }

    fn bar_reg(i: u16) -> u16 {
        0x10 + 4 * i
    }

    /// Sizes BAR `i` the standard way and restores it; returns the read-back mask.
    fn size_bar(cs: &mut ConfigSpace, i: u16) -> u32 {
        let old = r32(cs, bar_reg(i));
        cs.write(bar_reg(i), 4, 0xffff_ffff);
        let mask = r32(cs, bar_reg(i));
        cs.write(bar_reg(i), 4, old);
        assert_eq!(r32(cs, bar_reg(i)), old);
        mask
    }

    #[test]
    fn ptnet_identity_bytes() {
        let cs = ptnet();
        assert_eq!(r16(&cs, 0x00), 0x1b36);
        assert_eq!(r16(&cs, 0x02), 0x000d);
        assert_eq!(r32(&cs, 0x00), 0x000d_1b36);
        assert_eq!(r16(&cs, 0x04), 0);
        assert_eq!(r16(&cs, 0x06), 0x0010);
        assert_eq!(r8(&cs, 0x08), 0);
        assert_eq!(r8(&cs, 0x09), 0x00);
        assert_eq!(r8(&cs, 0x0a), 0x00);
        assert_eq!(r8(&cs, 0x0b), 0x02);
        assert_eq!(r32(&cs, 0x08), 0x0200_0000);
        assert_eq!(r8(&cs, 0x0c), 0x10);
        assert_eq!(r8(&cs, 0x0d), 0);
        assert_eq!(r8(&cs, 0x0e), 0);
        assert_eq!(r8(&cs, 0x0f), 0);
        assert_eq!(r32(&cs, 0x10), 0x1); // BAR0 I/O, unprogrammed
        assert_eq!(r32(&cs, 0x14), 0); // BAR1 unused
        assert_eq!(r32(&cs, 0x18), 0); // BAR2 mem32, non-prefetchable
        assert_eq!(r32(&cs, 0x1c), 0);
        assert_eq!(r32(&cs, 0x20), 0);
        assert_eq!(r32(&cs, 0x24), 0);
        assert_eq!(r32(&cs, 0x28), 0); // CardBus CIS
        assert_eq!(r16(&cs, 0x2c), 0x1af4);
        assert_eq!(r16(&cs, 0x2e), 0x1100);
        assert_eq!(r32(&cs, 0x2c), 0x1100_1af4);
        assert_eq!(r32(&cs, 0x30), 0); // expansion ROM
        assert_eq!(r8(&cs, 0x34), 0x40);
        assert_eq!(r8(&cs, 0x3c), 0);
        assert_eq!(r8(&cs, 0x3d), 1);
        assert_eq!(r16(&cs, 0x3e), 0); // Min_Gnt, Max_Lat
        assert_eq!(cs.identity(), &PciIdentity::ptnet());
    }

    #[test]
    fn memdev_identity_bytes() {
        let cs = memdev();
        assert_eq!(r16(&cs, 0x00), 0x1b36);
        assert_eq!(r16(&cs, 0x02), 0x000c);
        assert_eq!(r16(&cs, 0x04), 0);
        assert_eq!(r16(&cs, 0x06), 0); // no capabilities list
        assert_eq!(r8(&cs, 0x08), 0);
        assert_eq!(r8(&cs, 0x09), 0x00);
        assert_eq!(r8(&cs, 0x0a), 0xff);
        assert_eq!(r8(&cs, 0x0b), 0x00);
        assert_eq!(r32(&cs, 0x08), 0x00ff_0000);
        assert_eq!(r8(&cs, 0x0c), 0);
        assert_eq!(r8(&cs, 0x0e), 0);
        assert_eq!(r32(&cs, 0x10), 0x1); // BAR0 I/O
        assert_eq!(r32(&cs, 0x14), 0x8); // BAR1 mem32 prefetchable
        for i in 2..6 {
            assert_eq!(r32(&cs, bar_reg(i)), 0);
        }
        assert_eq!(r16(&cs, 0x2c), 0x1af4);
        assert_eq!(r16(&cs, 0x2e), 0x1100);
        assert_eq!(r8(&cs, 0x34), 0);
        assert_eq!(r8(&cs, 0x3c), 0);
        assert_eq!(r8(&cs, 0x3d), 0);
        assert!(cs.msix_cap().is_none());
        assert!(!cs.msix_enabled());
        assert!(!cs.msix_function_masked());
        // Nothing beyond the header.
        for off in (0x40..256).step_by(4) {
            assert_eq!(r32(&cs, off), 0, "offset {off:#x}");
        }
        assert_eq!(cs.identity(), &PciIdentity::memdev());
    }

    #[test]
    fn identity_constructors_use_abi_constants() {
        let p = PciIdentity::ptnet();
        assert_eq!((p.vendor_id, p.device_id), (abi::VENDOR_ID, abi::PTNET_DEVICE_ID));
        assert_eq!(p.class, [0x02, 0x00, 0x00]);
        assert_eq!((p.subsys_vendor_id, p.subsys_id), (0x1af4, 0x1100));
        assert_eq!((p.revision, p.interrupt_pin, p.cache_line_size), (0, 1, 0x10));
        let m = PciIdentity::memdev();
        assert_eq!((m.vendor_id, m.device_id), (0x1b36, 0x000c));
        assert_eq!(m.class, [0x00, 0xff, 0x00]);
        assert_eq!((m.subsys_vendor_id, m.subsys_id), (0x1af4, 0x1100));
        assert_eq!((m.revision, m.interrupt_pin, m.cache_line_size), (0, 0, 0));
    }

    #[test]
    fn narrow_reads() {
        let cs = ptnet();
        assert_eq!(r8(&cs, 0x00), 0x36);
        assert_eq!(r8(&cs, 0x01), 0x1b);
        assert_eq!(r8(&cs, 0x02), 0x0d);
        assert_eq!(r8(&cs, 0x03), 0x00);
        assert_eq!(r16(&cs, 0x01), 0x0d1b); // unaligned within a dword is fine
        assert_eq!(cs.read(0x2d, 2), 0x001a);
        assert_eq!(r8(&cs, 0x2c), 0xf4);
        assert_eq!(r8(&cs, 0x2f), 0x11);
        // Every 4-byte read equals its byte reads.
        for off in (0u16..256).step_by(4) {
            let bytes: Vec<u8> = (0..4).map(|i| r8(&cs, off + i)).collect();
            assert_eq!(r32(&cs, off).to_le_bytes().to_vec(), bytes);
            assert_eq!(u32::from(r16(&cs, off)), r32(&cs, off) & 0xffff);
            assert_eq!(u32::from(r16(&cs, off + 2)), r32(&cs, off) >> 16);
        }
    }

    #[test]
    fn invalid_accesses_read_all_ones() {
        let cs = ptnet();
        assert_eq!(cs.read(256, 4), 0xffff_ffff);
        assert_eq!(cs.read(256, 2), 0xffff);
        assert_eq!(cs.read(300, 1), 0xff);
        assert_eq!(cs.read(u16::MAX, 4), 0xffff_ffff);
        assert_eq!(cs.read(0x02, 4), 0xffff_ffff); // crosses a dword
        assert_eq!(cs.read(0x03, 2), 0xffff);
        assert_eq!(cs.read(0xfe, 4), 0xffff_ffff);
        assert_eq!(cs.read(0x00, 3), 0xff_ffff);
        assert_eq!(cs.read(0x00, 0), 0);
        assert_eq!(cs.read(0x00, 8), 0xffff_ffff);
        assert_eq!(cs.read(0xff, 1), 0);
    }

    #[test]
    fn invalid_writes_ignored() {
        let mut cs = ptnet();
        let before = cs.clone();
        cs.write(0x03, 2, 0xffff); // crosses into command
        cs.write(0x02, 4, 0xffff_ffff);
        cs.write(0x04, 3, 0xffff_ffff);
        cs.write(0x04, 8, 0xffff_ffff);
        cs.write(0x04, 0, 0xffff_ffff);
        cs.write(256, 4, 0xffff_ffff);
        cs.write(u16::MAX, 1, 0xff);
        cs.write(0x0e, 4, 0xffff_ffff); // crosses from header type to BAR0
        assert_eq!(cs, before);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        for mut cs in [ptnet(), memdev()] {
            let before = cs.clone();
            for off in [0x00u16, 0x08, 0x28, 0x2c, 0x30, 0x34, 0x38] {
                cs.write(off, 4, 0xffff_ffff);
                cs.write(off, 4, 0);
            }
            cs.write(0x06, 2, 0xffff); // status: RW1C bits read-only, cap bit sticks
            cs.write(0x0e, 2, 0xffff); // header type, BIST
            cs.write(0x3d, 1, 0xff); // interrupt pin
            cs.write(0x3e, 2, 0xffff); // Min_Gnt, Max_Lat
            for off in (0x80u16..256).step_by(4) {
                cs.write(off, 4, 0xdead_beef);
            }
            assert_eq!(cs, before);
        }
    }

    #[test]
    fn command_register_writable_bits() {
        let mut cs = ptnet();
        cs.write(0x04, 2, 0xffff);
        assert_eq!(cs.command(), 0x0407);
        assert_eq!(r16(&cs, 0x04), 0x0407);
        assert!(cs.io_enabled() && cs.mem_enabled() && cs.bus_master() && cs.intx_disabled());
        assert_eq!(r16(&cs, 0x06), 0x0010, "status untouched by a command write");
        cs.write(0x04, 4, 0xffff_0002); // dword write; status half read-only
        assert_eq!(cs.command(), CMD_MEM);
        assert_eq!(cs.status(), STATUS_CAP_LIST);
        assert!(!cs.io_enabled() && cs.mem_enabled() && !cs.bus_master());
        cs.write(0x05, 1, 0x04); // byte write to the high half
        assert_eq!(cs.command(), CMD_MEM | CMD_INTX_DISABLE);
        cs.write(0x04, 1, 0x05);
        assert_eq!(cs.command(), CMD_IO | CMD_BUS_MASTER | CMD_INTX_DISABLE);
        cs.reset();
        assert_eq!(cs.command(), 0);
    }

    #[test]
    fn cache_line_latency_interrupt_line_writable() {
        let mut cs = ptnet();
        cs.write(0x0c, 1, 0x20);
        cs.write(0x0d, 1, 0x40);
        cs.write(0x3c, 1, 0x0b);
        assert_eq!(r32(&cs, 0x0c), 0x0000_4020);
        assert_eq!(cs.interrupt_line(), 0x0b);
        assert_eq!(r16(&cs, 0x3c), 0x010b);
        cs.write(0x3c, 4, 0xffff_ff0a); // pin, Min_Gnt, Max_Lat read-only
        assert_eq!(r32(&cs, 0x3c), 0x0000_010a);
        cs.write(0x0c, 4, 0xffff_ffff);
        assert_eq!(r32(&cs, 0x0c), 0x0000_ffff); // header type and BIST stay 0
        cs.reset();
        assert_eq!(r8(&cs, 0x0c), 0x10);
        assert_eq!(r8(&cs, 0x3c), 0);
    }

    #[test]
    fn bar_sizing_ptnet() {
        let mut cs = ptnet();
        assert_eq!(size_bar(&mut cs, 0), 0xffff_ff01); // 256-byte I/O
        assert_eq!(size_bar(&mut cs, 1), 0); // unimplemented
        assert_eq!(size_bar(&mut cs, 2), 0xffff_f000); // 4096-byte mem32, not prefetchable
        for i in 3..6 {
            assert_eq!(size_bar(&mut cs, i), 0);
        }
        // Decoding the size as a driver does.
        assert_eq!(!(size_bar(&mut cs, 0) & !0x3) + 1, 256);
        assert_eq!(!(size_bar(&mut cs, 2) & !0xf) + 1, 4096);
    }

    #[test]
    fn bar_sizing_memdev() {
        let mut cs = memdev();
        assert_eq!(size_bar(&mut cs, 0), 0xffff_ff81); // 128-byte I/O
        assert_eq!(size_bar(&mut cs, 1), 0xff80_0008); // 8 MiB prefetchable mem32
        assert_eq!(cs.bar_def(1).unwrap().size(), 8 << 20);
        assert_eq!(size_bar(&mut cs, 2), 0);
    }

    #[test]
    fn bar_sizing_mem64() {
        let id = PciIdentity::ptnet();
        let bars = [
            (0, BarDef::mem64(1 << 33, true).unwrap()),
            (2, BarDef::mem64(0x4000, false).unwrap()),
            (4, BarDef::mem32(16, false).unwrap()),
            (5, BarDef::io(4).unwrap()),
        ];
        let mut cs = ConfigSpace::new(&id, &bars, None).unwrap();
        assert_eq!(r32(&cs, 0x10), 0xc);
        assert_eq!(r32(&cs, 0x18), 0x4);
        assert_eq!(size_bar(&mut cs, 0), 0x0000_000c);
        assert_eq!(size_bar(&mut cs, 1), 0xffff_fffe);
        assert_eq!(size_bar(&mut cs, 2), 0xffff_c004);
        assert_eq!(size_bar(&mut cs, 3), 0xffff_ffff);
        assert_eq!(size_bar(&mut cs, 4), 0xffff_fff0);
        assert_eq!(size_bar(&mut cs, 5), 0xffff_fffd);
        // Full 64-bit size decode of BAR0/1.
        cs.write(0x10, 4, 0xffff_ffff);
        cs.write(0x14, 4, 0xffff_ffff);
        let mask = (u64::from(r32(&cs, 0x14)) << 32) | u64::from(r32(&cs, 0x10) & !0xf);
        assert_eq!(!mask + 1, 1 << 33);
        // Programming.
        cs.write(0x10, 4, 0x1234_5678);
        cs.write(0x14, 4, 0x0000_00ab);
        assert_eq!(r32(&cs, 0x10), 0x0000_000c);
        assert_eq!(cs.bar_address(0), Some(0xaa_0000_0000));
        assert_eq!(cs.bar_address(1), None, "upper half is not a BAR of its own");
        cs.write(0x18, 4, 0xfebf_1000);
        cs.write(0x1c, 4, 0x1);
        assert_eq!(cs.bar_address(2), Some(0x1_febf_0000));
        assert_eq!(r32(&cs, 0x18), 0xfebf_0004);
    }

    #[test]
    fn bar_programming_and_address() {
        let mut cs = ptnet();
        assert_eq!(cs.bar_address(0), Some(0));
        assert_eq!(cs.bar_address(1), None);
        assert_eq!(cs.bar_address(6), None);
        assert_eq!(cs.bar_address(255), None);
        cs.write(0x10, 4, 0xc0ff);
        assert_eq!(r32(&cs, 0x10), 0xc001);
        assert_eq!(cs.bar_address(0), Some(0xc000));
        cs.write(0x18, 4, 0xfebf_1234);
        assert_eq!(r32(&cs, 0x18), 0xfebf_1000);
        assert_eq!(cs.bar_address(2), Some(0xfebf_1000));
        // Narrow writes to a BAR: only the written bytes change.
        cs.write(0x1b, 1, 0xfd);
        assert_eq!(cs.bar_address(2), Some(0xfdbf_1000));
        cs.write(0x18, 2, 0xffff);
        assert_eq!(r32(&cs, 0x18), 0xfdbf_f000);
        cs.reset();
        assert_eq!(cs.bar_address(0), Some(0));
        assert_eq!(cs.bar_address(2), Some(0));
        assert_eq!(r32(&cs, 0x10), 1);

        let mut md = memdev();
        md.write(0x14, 4, 0xe000_0000);
        assert_eq!(md.bar_address(1), Some(0xe000_0000));
        assert_eq!(r32(&md, 0x14), 0xe000_0008);
    }

    #[test]
    fn msix_capability_layout() {
        let cs = ptnet();
        assert_eq!(r8(&cs, 0x34), 0x40);
        assert_ne!(r16(&cs, 0x06) & 0x10, 0);
        assert_eq!(r8(&cs, 0x40), 0x11);
        assert_eq!(r8(&cs, 0x41), 0);
        assert_eq!(r16(&cs, 0x42), NRINGS - 1);
        assert_eq!(r32(&cs, 0x40), (u32::from(NRINGS - 1) << 16) | 0x11);
        assert_eq!(r32(&cs, 0x44), 2); // table offset 0, BIR 2
        assert_eq!(r32(&cs, 0x48), 2048 | 2); // PBA offset 2048, BIR 2
        assert_eq!(r32(&cs, 0x44) & 7, u32::from(abi::MSIX_BAR));
        assert_eq!(r32(&cs, 0x48) & !7, abi::MSIX_PBA_OFFSET);
        for off in (0x4cu16..256).step_by(4) {
            assert_eq!(r32(&cs, off), 0, "offset {off:#x}");
        }
        assert_eq!(cs.msix_cap(), Some(MsixCapDef::ptnet(NRINGS)));
        // Largest ptnet table that fits the 4096-byte BAR, and the 64-ring guest limit.
        let big = ConfigSpace::ptnet(128).unwrap();
        assert_eq!(r16(&big, 0x42), 127);
        assert_eq!(r16(&ConfigSpace::ptnet(1).unwrap(), 0x42), 0);
        // 129 vectors run into the PBA at 2048.
        assert_eq!(ConfigSpace::ptnet(129), Err(PciError::MsixOverlap));
        let bars = [(2, BarDef::mem32(4096, false).unwrap())];
        let pba_out = MsixCapDef { pba_offset: 4096, ..MsixCapDef::ptnet(4) };
        assert_eq!(
            ConfigSpace::new(&PciIdentity::ptnet(), &bars, Some(pba_out)),
            Err(PciError::MsixOutsideBar { bar: 2, end: 4104, bar_size: 4096 })
        );
        assert!(matches!(ConfigSpace::ptnet(0), Err(PciError::MsixTableSize(0))));
    }

    #[test]
    fn msix_enable_and_function_mask() {
        let mut cs = ptnet();
        assert!(!cs.msix_enabled() && !cs.msix_function_masked());
        cs.write(0x42, 2, 0xffff);
        assert_eq!(r16(&cs, 0x42), 0xc000 | (NRINGS - 1)); // table size read-only
        assert!(cs.msix_enabled() && cs.msix_function_masked());
        cs.write(0x40, 4, 0x8000_0000); // dword write; id/next read-only
        assert_eq!(r32(&cs, 0x40), 0x8000_0011 | (u32::from(NRINGS - 1) << 16));
        assert!(cs.msix_enabled() && !cs.msix_function_masked());
        cs.write(0x43, 1, 0x40);
        assert!(!cs.msix_enabled() && cs.msix_function_masked());
        cs.write(0x42, 1, 0xff); // low byte is all table size: read-only
        assert_eq!(r8(&cs, 0x42), (NRINGS - 1) as u8);
        cs.write(0x44, 4, 0xffff_ffff);
        cs.write(0x48, 4, 0);
        assert_eq!(r32(&cs, 0x44), 2);
        assert_eq!(r32(&cs, 0x48), 2050);
        cs.write(0x43, 1, 0x80);
        cs.reset();
        assert!(!cs.msix_enabled());
    }

    #[test]
    fn config_construction_errors() {
        let id = PciIdentity::ptnet();
        let io = BarDef::io(256).unwrap();
        let m32 = BarDef::mem32(4096, false).unwrap();
        let m64 = BarDef::mem64(4096, false).unwrap();
        assert_eq!(ConfigSpace::new(&id, &[(6, io)], None), Err(PciError::BarIndex(6)));
        assert_eq!(
            ConfigSpace::new(&id, &[(0, io), (0, m32)], None),
            Err(PciError::BarSlotTaken(0))
        );
        assert_eq!(
            ConfigSpace::new(&id, &[(0, m64), (1, m32)], None),
            Err(PciError::BarSlotTaken(1))
        );
        assert_eq!(ConfigSpace::new(&id, &[(5, m64)], None), Err(PciError::BarSlotTaken(5)));
        assert!(ConfigSpace::new(&id, &[(4, m64)], None).is_ok());
        let msix = MsixCapDef::ptnet(4);
        // MSI-X BAR missing, or I/O, or the upper half of a 64-bit BAR.
        assert_eq!(ConfigSpace::new(&id, &[(0, io)], Some(msix)), Err(PciError::MsixBar(2)));
        assert_eq!(ConfigSpace::new(&id, &[(2, io)], Some(msix)), Err(PciError::MsixBar(2)));
        assert_eq!(ConfigSpace::new(&id, &[(1, m64)], Some(msix)), Err(PciError::MsixBar(2)));
        let bad_bir = MsixCapDef { table_bar: 7, ..msix };
        assert_eq!(ConfigSpace::new(&id, &[(2, m32)], Some(bad_bir)), Err(PciError::MsixBar(7)));
        let misaligned = MsixCapDef { pba_offset: 2052, ..msix };
        assert_eq!(
            ConfigSpace::new(&id, &[(2, m32)], Some(misaligned)),
            Err(PciError::MsixOffsetAlignment(2052))
        );
        let overlap = MsixCapDef { pba_offset: 48, ..msix };
        assert_eq!(ConfigSpace::new(&id, &[(2, m32)], Some(overlap)), Err(PciError::MsixOverlap));
        let too_big = MsixCapDef { table_size: 2049, ..msix };
        assert_eq!(
            ConfigSpace::new(&id, &[(2, m32)], Some(too_big)),
            Err(PciError::MsixTableSize(2049))
        );
        // Table and PBA in different BARs, and a 64-bit MSI-X BAR.
        let split = MsixCapDef { pba_bar: 4, pba_offset: 0, ..msix };
        let cs = ConfigSpace::new(&id, &[(2, m64), (4, m32)], Some(split)).unwrap();
        assert_eq!(r32(&cs, 0x44), 2);
        assert_eq!(r32(&cs, 0x48), 4);
        assert_eq!(ConfigSpace::memdev(0).unwrap_err(), PciError::MemdevRegion(0));
        assert_eq!(
            ConfigSpace::memdev((1 << 31) + 1).unwrap_err(),
            PciError::MemdevRegion((1 << 31) + 1)
        );
        let md = ConfigSpace::memdev(1 << 31).unwrap();
        assert_eq!(md.bar_def(1).unwrap().size(), 1 << 31);
        assert_eq!(ConfigSpace::memdev(1).unwrap().bar_def(1).unwrap().size(), 16);
        assert_eq!(ConfigSpace::memdev(4097).unwrap().bar_def(1).unwrap().size(), 8192);
    }

    #[test]
    fn bar_def_validation() {
        assert!(BarDef::io(4).is_ok());
        assert!(BarDef::io(256).is_ok());
        assert!(BarDef::io(2).is_err());
        assert!(BarDef::io(512).is_err());
        assert!(BarDef::io(100).is_err());
        assert!(BarDef::mem32(16, false).is_ok());
        assert!(BarDef::mem32(8, false).is_err());
        assert!(BarDef::mem32(1 << 31, true).is_ok());
        assert!(BarDef::mem32(1 << 32, true).is_err());
        assert!(BarDef::mem32(0, true).is_err());
        assert!(BarDef::mem32(3 << 12, true).is_err());
        assert!(BarDef::mem64(1 << 63, false).is_ok());
        assert!(BarDef::mem64(1 << 40, false).is_ok());
        assert!(BarDef::mem64(0, false).is_err());
        let e = BarDef::mem32(100, true).unwrap_err();
        assert_eq!(e, PciError::BarSize { kind: BarKind::Mem32 { prefetchable: true }, size: 100 });
        let d = BarDef::new(BarKind::Io, 128).unwrap();
        assert_eq!((d.kind(), d.size()), (BarKind::Io, 128));
    }

    #[test]
    fn error_messages_lower_case() {
        let errs = [
            PciError::BarSize { kind: BarKind::Mem64 { prefetchable: true }, size: 3 },
            PciError::BarIndex(9),
            PciError::BarSlotTaken(1),
            PciError::MsixTableSize(0),
            PciError::MsixBar(3),
            PciError::MsixOffsetAlignment(4),
            PciError::MsixOutsideBar { bar: 2, end: 5000, bar_size: 4096 },
            PciError::MsixOverlap,
            PciError::MemdevRegion(0),
        ];
        for e in errs {
            let s = e.to_string();
            assert!(!s.is_empty());
            assert_eq!(s.chars().next(), s.chars().next().map(|c| c.to_ascii_lowercase()), "{s}");
            let _: &dyn std::error::Error = &e;
        }
        assert!(errs[0].to_string().contains("prefetchable 64-bit memory"));
    }

    #[test]
    fn msix_table_masked_at_reset() {
        let t = MsixTable::ptnet(NRINGS).unwrap();
        assert_eq!(t.len(), usize::from(NRINGS));
        assert!(!t.is_empty());
        for i in 0..usize::from(NRINGS) {
            assert_eq!(t.entry(i), Some(MsixEntry { address: 0, data: 0, masked: true }));
            assert!(!t.pending(i));
            let base = 16 * i as u32;
            assert_eq!(t.read(base, 4), 0);
            assert_eq!(t.read(base + 4, 4), 0);
            assert_eq!(t.read(base + 8, 4), 0);
            assert_eq!(t.read(base + 12, 4), 1);
            assert_eq!(t.read(base + 8, 8), 1 << 32);
        }
        assert_eq!(t.entry(usize::from(NRINGS)), None);
        assert_eq!(t.read(2048, 8), 0);
    }

    #[test]
    fn msix_table_programming_and_readback() {
        let mut t = MsixTable::ptnet(NRINGS).unwrap();
        // Vector 3 by dwords, vector 4 by qwords.
        t.write(0x30, 4, 0xfee0_100c);
        t.write(0x34, 4, 0x1);
        t.write(0x38, 4, 0x4041);
        t.write(0x3c, 4, 0);
        assert_eq!(
            t.entry(3),
            Some(MsixEntry { address: 0x1_fee0_100c, data: 0x4041, masked: false })
        );
        assert_eq!(t.read(0x30, 4), 0xfee0_100c);
        assert_eq!(t.read(0x34, 4), 1);
        assert_eq!(t.read(0x38, 4), 0x4041);
        assert_eq!(t.read(0x3c, 4), 0);
        assert_eq!(t.read(0x30, 8), 0x1_fee0_100c);
        t.write(0x40, 8, 0x0000_0002_fee0_2000);
        t.write(0x48, 8, 0xffff_fffe_0000_0051); // reserved vector-control bits dropped
        assert_eq!(
            t.entry(4),
            Some(MsixEntry { address: 0x2_fee0_2000, data: 0x51, masked: false })
        );
        assert_eq!(t.read(0x48, 8), 0x51);
        t.write(0x4c, 4, 0xffff_ffff);
        assert_eq!(t.read(0x4c, 4), 1);
        assert!(t.entry(4).unwrap().masked);
        // Neighbours untouched.
        assert_eq!(t.entry(2), Some(MsixEntry { address: 0, data: 0, masked: true }));
        assert_eq!(t.entry(5), Some(MsixEntry { address: 0, data: 0, masked: true }));
        // Reset.
        t.set_pending(3, true);
        t.reset();
        assert_eq!(t.entry(3), Some(MsixEntry { address: 0, data: 0, masked: true }));
        assert!(!t.pending(3));
    }

    #[test]
    fn msix_bad_sizes_and_alignment() {
        let mut t = MsixTable::ptnet(NRINGS).unwrap();
        let before = t.clone();
        assert_eq!(t.read(0, 1), 0xff);
        assert_eq!(t.read(0, 2), 0xffff);
        assert_eq!(t.read(2, 4), 0xffff_ffff);
        assert_eq!(t.read(4, 8), u64::MAX);
        assert_eq!(t.read(0, 3), 0xff_ffff);
        assert_eq!(t.read(0, 16), u64::MAX);
        assert_eq!(t.read(0, 0), 0);
        t.write(0, 1, 0xff);
        t.write(0, 2, 0xffff);
        t.write(2, 4, 0xffff_ffff);
        t.write(4, 8, u64::MAX);
        t.write(12, 3, 0);
        assert_eq!(t, before);
        // Holes in the BAR read zero and ignore writes.
        assert_eq!(t.read(16 * u32::from(NRINGS), 4), 0);
        assert_eq!(t.read(4092, 4), 0);
        assert_eq!(t.read(u32::MAX - 3, 4), 0);
        assert_eq!(t.read(u32::MAX - 7, 8), 0);
        t.write(16 * u32::from(NRINGS), 8, u64::MAX);
        t.write(u32::MAX - 7, 8, u64::MAX);
        assert_eq!(t, before);
    }

    #[test]
    fn msix_pba() {
        let mut t = MsixTable::new(70, 0x100, 0x800).unwrap();
        assert_eq!(t.read(0x100 + 16 * 69 + 12, 4), 1);
        assert_eq!(t.read(0xfc, 4), 0);
        t.set_pending(0, true);
        t.set_pending(5, true);
        t.set_pending(63, true);
        t.set_pending(64, true);
        t.set_pending(69, true);
        t.set_pending(70, true); // out of range: ignored
        t.set_pending(1000, true);
        assert!(t.pending(0) && t.pending(5) && t.pending(63) && t.pending(64) && t.pending(69));
        assert!(!t.pending(1) && !t.pending(70) && !t.pending(usize::MAX));
        assert_eq!(t.read(0x800, 8), (1 << 63) | (1 << 5) | 1);
        assert_eq!(t.read(0x800, 4), (1 << 5) | 1);
        assert_eq!(t.read(0x804, 4), 1 << 31);
        assert_eq!(t.read(0x808, 8), (1 << 5) | 1);
        assert_eq!(t.read(0x810, 4), 0); // past the PBA
                                         // Read-only to the guest.
        t.write(0x800, 8, 0);
        t.write(0x808, 4, 0);
        assert!(t.pending(0) && t.pending(64));
        t.set_pending(5, false);
        assert_eq!(t.read(0x800, 4), 1);
    }

    #[test]
    fn msix_table_construction_errors() {
        assert_eq!(MsixTable::new(0, 0, 2048), Err(PciError::MsixTableSize(0)));
        assert_eq!(MsixTable::new(2049, 0, 1 << 16), Err(PciError::MsixTableSize(2049)));
        assert!(MsixTable::new(2048, 0, 1 << 15).is_ok());
        assert_eq!(MsixTable::new(4, 4, 2048), Err(PciError::MsixOffsetAlignment(4)));
        assert_eq!(MsixTable::new(4, 0, 2049), Err(PciError::MsixOffsetAlignment(2049)));
        assert_eq!(MsixTable::new(4, 0, 56), Err(PciError::MsixOverlap));
        assert!(MsixTable::new(4, 0, 64).is_ok());
        assert_eq!(MsixTable::new(4, 64, 120), Err(PciError::MsixOverlap));
        assert!(MsixTable::new(4, 64, 56).is_ok()); // PBA ends where the table starts
        assert!(MsixTable::new(4, 64, 128).is_ok());
        assert!(matches!(MsixTable::new(4, u32::MAX - 7, 0), Err(PciError::MsixOutsideBar { .. })));
        assert!(MsixTable::ptnet(128).is_ok());
    }

    proptest! {
        #[test]
        fn config_random_accesses_never_panic(
            ops in prop::collection::vec(
                (any::<bool>(), 0u16..320, 0u8..10, any::<u32>()), 0..128),
            rings in 1u16..=128,
            use_memdev in any::<bool>(),
        ) {
            let mut cs = if use_memdev {
                ConfigSpace::memdev(u64::from(rings) << 16).unwrap()
            } else {
                ConfigSpace::ptnet(rings).unwrap()
            };
            let id = *cs.identity();
            for (is_write, off, size, val) in ops {
                let valid = matches!(size, 1 | 2 | 4)
                    && off < 256
                    && usize::from(off) % 4 + usize::from(size) <= 4;
                if is_write {
                    let before = cs.clone();
                    cs.write(off, size, val);
                    for i in 0..CONFIG_SPACE_SIZE {
                        // Only writable bits changed, and only inside a valid access.
                        let changed = before.regs[i] ^ cs.regs[i];
                        prop_assert_eq!(changed & !cs.wmask[i], 0);
                        let inside = valid
                            && i >= usize::from(off)
                            && i < usize::from(off) + usize::from(size);
                        prop_assert!(inside || changed == 0);
                    }
                } else {
                    let v = cs.read(off, size);
                    if valid {
                        let bytes = (0..u16::from(size)).fold(0u32, |acc, i| {
                            acc | (cs.read(off + i, 1) << (8 * i))
                        });
                        prop_assert_eq!(v, bytes);
                    } else {
                        prop_assert_eq!(v, ones32(size));
                    }
                }
            }
            prop_assert_eq!(r16(&cs, 0x00), id.vendor_id);
            prop_assert_eq!(r16(&cs, 0x02), id.device_id);
            prop_assert_eq!(r8(&cs, 0x0b), id.class[0]);
            prop_assert_eq!(r8(&cs, 0x3d), id.interrupt_pin);
            prop_assert_eq!(cs.command() & !0x0407, 0);
            for i in 0..6u8 {
                if let (Some(def), Some(addr)) = (cs.bar_def(i), cs.bar_address(i)) {
                    prop_assert_eq!(addr & (def.size() - 1), 0);
                }
            }
            if !use_memdev {
                prop_assert_eq!(r16(&cs, 0x42) & 0x7ff, rings - 1);
            }
        }

        #[test]
        fn msix_random_accesses_never_panic(
            ops in prop::collection::vec(
                (any::<bool>(), any::<u32>(), 0u8..12, any::<u64>()), 0..128),
            near in prop::collection::vec((any::<bool>(), 0u32..4200, 0u8..12, any::<u64>()), 0..128),
            rings in 1u16..=128,
        ) {
            let mut t = MsixTable::ptnet(rings).unwrap();
            for (is_write, off, size, val) in ops.into_iter().chain(near) {
                if is_write {
                    let pba = t.pba.clone();
                    t.write(off, size, val);
                    prop_assert_eq!(&t.pba, &pba);
                } else {
                    let v = t.read(off, size);
                    let valid = (size == 4 && off.is_multiple_of(4)) || (size == 8 && off.is_multiple_of(8));
                    if !valid {
                        prop_assert_eq!(v, ones64(size));
                    }
                }
            }
            for i in 0..usize::from(rings) {
                let e = t.entry(i).unwrap();
                prop_assert_eq!(t.read(16 * i as u32 + 12, 4), u64::from(e.masked));
            }
            prop_assert!(t.entry(usize::from(rings)).is_none());
        }
    }
}
