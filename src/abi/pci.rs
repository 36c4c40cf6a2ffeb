//! PCI identity and BAR layout of the two functions (spec §1, §2).

/// Vendor of both functions: Red Hat / "QEMU virtual devices" (§1).
pub const VENDOR_ID: u16 = 0x1b36;
/// ptnet NIC device id (§1). Also upstream QEMU's `qemu-xhci`: check the class too.
pub const PTNET_DEVICE_ID: u16 = 0x000d;
/// ptnetmap-memdev device id (§1). Also upstream QEMU's `pcie-root-port`.
pub const MEMDEV_DEVICE_ID: u16 = 0x000c;
/// ptnet class code: network / ethernet / 0 (§1).
pub const PTNET_CLASS: [u8; 3] = [0x02, 0x00, 0x00];
/// memdev class code as QEMU sets it: base 0x00, subclass 0xff, interface 0 (§1 quirk).
pub const MEMDEV_CLASS: [u8; 3] = [0x00, 0xff, 0x00];
/// Subsystem vendor id under QEMU (§1).
pub const SUBSYS_VENDOR_ID: u16 = 0x1af4;
/// Subsystem device id under QEMU (§1).
pub const SUBSYS_ID: u16 = 0x1100;

/// `PTNETMAP_IO_PCI_BAR`: I/O registers, on both functions (§2).
pub const IO_BAR: u8 = 0;
/// `PTNETMAP_MEM_PCI_BAR`: memdev netmap memory (§2).
pub const MEM_BAR: u8 = 1;
/// `PTNETMAP_MSIX_PCI_BAR`: ptnet MSI-X table and PBA (§2).
pub const MSIX_BAR: u8 = 2;

/// Size of the ptnet I/O BAR: `PTNET_IO_MASK + 1` (§2).
pub const PTNET_IO_BAR_SIZE: u32 = 256;
/// Size of the memdev I/O BAR: next power of two ≥ `PTNET_MDEV_IO_END` = 100 (§2).
pub const MEMDEV_IO_BAR_SIZE: u32 = 128;
/// Size of the ptnet MSI-X BAR (QEMU `msix_init_exclusive_bar`, ≤ 128 vectors) (§2).
pub const MSIX_BAR_SIZE: u32 = 4096;
/// Offset of the MSI-X table in BAR2 (§2).
pub const MSIX_TABLE_OFFSET: u32 = 0;
/// Offset of the MSI-X pending-bit array in BAR2 (§2).
pub const MSIX_PBA_OFFSET: u32 = 2048;
/// Size of one MSI-X table entry (PCI spec).
pub const MSIX_ENTRY_SIZE: u32 = 16;
/// Largest netmap region the memdev BAR1 can carry (errata E8: 32-bit BAR, power-of-two rounding
/// on a 32-bit value).
pub const MEMDEV_MAX_REGION: u64 = 1 << 31;
/// Interrupt pin advertised by ptnet (INTA), never raised (§1, §9).
pub const PTNET_INTERRUPT_PIN: u8 = 1;
/// Cache line size register value set by QEMU realize on ptnet (§1).
pub const PTNET_CACHE_LINE_SIZE: u8 = 0x10;

/// Default MAC prefix when none is configured: 52:54:00:12:34:xx (errata E10).
pub const DEFAULT_MAC_PREFIX: [u8; 5] = [0x52, 0x54, 0x00, 0x12, 0x34];
