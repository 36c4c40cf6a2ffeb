//! ptnetmap-memdev register file, BAR0 (spec §3.2). All registers read-only; writes ignored.

/// `MEMSIZE_LO`: region size, low 32 bits.
pub const MEMSIZE_LO: u32 = 0;
/// `MEMSIZE_HI`: region size, high 32 bits (guests read HI first).
pub const MEMSIZE_HI: u32 = 4;
/// `MEMID`: host allocator id, equals ptnet `HOSTMEMID`.
pub const MEMID: u32 = 8;
/// `IF_POOL_OFS`: offset of the netmap_if pool (0 in current netmap).
pub const IF_POOL_OFS: u32 = 64;
/// `IF_POOL_OBJNUM`.
pub const IF_POOL_OBJNUM: u32 = 68;
/// `IF_POOL_OBJSZ`.
pub const IF_POOL_OBJSZ: u32 = 72;
/// `RING_POOL_OFS` (= if pool size).
pub const RING_POOL_OFS: u32 = 76;
/// `RING_POOL_OBJNUM`.
pub const RING_POOL_OBJNUM: u32 = 80;
/// `RING_POOL_OBJSZ`.
pub const RING_POOL_OBJSZ: u32 = 84;
/// `BUF_POOL_OFS` (= if pool size + ring pool size).
pub const BUF_POOL_OFS: u32 = 88;
/// `BUF_POOL_OBJNUM`.
pub const BUF_POOL_OBJNUM: u32 = 92;
/// `BUF_POOL_OBJSZ` (default 2048).
pub const BUF_POOL_OBJSZ: u32 = 96;
/// `PTNET_MDEV_IO_END`.
pub const IO_END: u32 = 100;

const _: () = assert!(IO_END <= super::pci::MEMDEV_IO_BAR_SIZE);
