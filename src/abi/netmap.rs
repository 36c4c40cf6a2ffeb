//! netmap shared structures seen through memdev BAR1 (spec §7): `netmap_if`, `netmap_ring`,
//! `netmap_slot`, with the x86-64 (LP64 host) layout.

use core::mem::{offset_of, size_of};

/// `IFNAMSIZ`.
pub const IFNAMSIZ: usize = 16;

/// `struct netmap_if` fixed part (§7.2); `ring_ofs: [i64]` follows at [`IF_RING_OFS`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NetmapIf {
    /// Port name, NUL-terminated. W: host at registration. R: guest.
    pub ni_name: [u8; IFNAMSIZ],
    /// "API version, currently unused".
    pub ni_version: u32,
    /// `NI_PRIV_MEM`.
    pub ni_flags: u32,
    /// Number of NIC TX rings. W: host (const). R: guest.
    pub ni_tx_rings: u32,
    /// Number of NIC RX rings. W: host (const). R: guest.
    pub ni_rx_rings: u32,
    /// Head of the extra-buffer list (0 if none).
    pub ni_bufs_head: u32,
    /// Number of host (sw) TX rings; the host writes max(configured, 1).
    pub ni_host_tx_rings: u32,
    /// Number of host (sw) RX rings.
    pub ni_host_rx_rings: u32,
    /// Spare.
    pub ni_spare1: [u32; 3],
}

/// Offset of the `ring_ofs[]` array (signed 64-bit, relative to the netmap_if) (§7.2).
pub const IF_RING_OFS: usize = size_of::<NetmapIf>();
/// Offset of `ni_tx_rings`.
pub const IF_TX_RINGS: usize = offset_of!(NetmapIf, ni_tx_rings);
/// Offset of `ni_rx_rings`.
pub const IF_RX_RINGS: usize = offset_of!(NetmapIf, ni_rx_rings);
/// Offset of `ni_host_tx_rings`.
pub const IF_HOST_TX_RINGS: usize = offset_of!(NetmapIf, ni_host_tx_rings);
/// Offset of `ni_host_rx_rings`.
pub const IF_HOST_RX_RINGS: usize = offset_of!(NetmapIf, ni_host_rx_rings);
/// Offset of `ni_flags`.
pub const IF_FLAGS: usize = offset_of!(NetmapIf, ni_flags);
/// Offset of `ni_bufs_head`.
pub const IF_BUFS_HEAD: usize = offset_of!(NetmapIf, ni_bufs_head);
/// `NI_PRIV_MEM`: the port has a private memory region.
pub const NI_PRIV_MEM: u32 = 0x1;

/// Size of a netmap_if with `n` ring offsets.
pub const fn if_size(n_ring_ofs: usize) -> usize {
    IF_RING_OFS + 8 * n_ring_ofs
}

/// `struct netmap_ring` header (§7.3): 256 bytes, then `num_slots` slots.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy)]
pub struct NetmapRing {
    /// Offset from this ring to the buffer pool start. W: host (const). R: guest.
    pub buf_ofs: i64,
    /// N. W: host (const). R: guest. Not necessarily a power of two.
    pub num_slots: u32,
    /// Buffer size. W: host (const).
    pub nr_buf_size: u32,
    /// Ring index. W: host (const).
    pub ringid: u16,
    /// 0 = TX, 1 = RX. W: host (const).
    pub dir: u16,
    /// First slot owned by the user. W: guest (host only on reinit, E9). R: guest.
    pub head: u32,
    /// Wake-up point. W: guest (host only on reinit). R: guest.
    pub cur: u32,
    /// First slot owned by the kernel. W: guest (from ktoa.hwtail; host only on reinit). R: guest.
    pub tail: u32,
    /// `NR_TIMESTAMP`, `NR_FORWARD`.
    pub flags: u32,
    /// Explicit padding (36..40).
    pub _pad0: u32,
    /// `struct timeval` (LP64): time of last sync.
    pub ts: [i64; 2],
    /// Mask of `ptr` bits used as a buffer offset (2019-03).
    pub offset_mask: u64,
    /// Required packet-start alignment (2019-03).
    pub buf_align: u64,
    /// Padding to `sem` (72..128).
    pub _pad1: [u8; 56],
    /// Opaque, 128-byte aligned.
    pub sem: [u8; 128],
}

/// Size of the ring header; slot 0 starts here (§7.3).
pub const RING_HDR_SIZE: usize = size_of::<NetmapRing>();
/// Offset of `buf_ofs`.
pub const RING_BUF_OFS: usize = offset_of!(NetmapRing, buf_ofs);
/// Offset of `num_slots`.
pub const RING_NUM_SLOTS: usize = offset_of!(NetmapRing, num_slots);
/// Offset of `nr_buf_size`.
pub const RING_NR_BUF_SIZE: usize = offset_of!(NetmapRing, nr_buf_size);
/// Offset of `ringid`.
pub const RING_RINGID: usize = offset_of!(NetmapRing, ringid);
/// Offset of `dir`.
pub const RING_DIR: usize = offset_of!(NetmapRing, dir);
/// Offset of `head`.
pub const RING_HEAD: usize = offset_of!(NetmapRing, head);
/// Offset of `cur`.
pub const RING_CUR: usize = offset_of!(NetmapRing, cur);
/// Offset of `tail`.
pub const RING_TAIL: usize = offset_of!(NetmapRing, tail);
/// Offset of `flags`.
pub const RING_FLAGS: usize = offset_of!(NetmapRing, flags);
/// Offset of `offset_mask`.
pub const RING_OFFSET_MASK: usize = offset_of!(NetmapRing, offset_mask);
/// `dir` value of a TX ring.
pub const DIR_TX: u16 = 0;
/// `dir` value of an RX ring.
pub const DIR_RX: u16 = 1;
/// `NR_TIMESTAMP`.
pub const NR_TIMESTAMP: u32 = 0x2;
/// `NR_FORWARD`.
pub const NR_FORWARD: u32 = 0x4;

/// Size of a ring object with `num_slots` slots (§7.3: 256 + 16·N).
pub const fn ring_size(num_slots: u32) -> usize {
    RING_HDR_SIZE + SLOT_SIZE * num_slots as usize
}

/// `struct netmap_slot` (§7.4).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetmapSlot {
    /// Buffer index; 0 and 1 are reserved.
    pub buf_idx: u32,
    /// Length of this fragment.
    pub len: u16,
    /// `NS_*` flags.
    pub flags: u16,
    /// Indirect buffer / offset field.
    pub ptr: u64,
}

/// Size of one slot.
pub const SLOT_SIZE: usize = size_of::<NetmapSlot>();
/// Offset of `buf_idx` in a slot.
pub const SLOT_BUF_IDX: usize = offset_of!(NetmapSlot, buf_idx);
/// Offset of `len` in a slot.
pub const SLOT_LEN: usize = offset_of!(NetmapSlot, len);
/// Offset of `flags` in a slot.
pub const SLOT_FLAGS: usize = offset_of!(NetmapSlot, flags);
/// Offset of `ptr` in a slot.
pub const SLOT_PTR: usize = offset_of!(NetmapSlot, ptr);

/// `NS_BUF_CHANGED`: buf_idx changed; must be set when swapping buffers.
pub const NS_BUF_CHANGED: u16 = 0x0001;
/// `NS_REPORT`.
pub const NS_REPORT: u16 = 0x0002;
/// `NS_FORWARD`.
pub const NS_FORWARD: u16 = 0x0004;
/// `NS_NO_LEARN`.
pub const NS_NO_LEARN: u16 = 0x0008;
/// `NS_INDIRECT`.
pub const NS_INDIRECT: u16 = 0x0010;
/// `NS_MOREFRAG`: every slot of a multi-slot packet except the last.
pub const NS_MOREFRAG: u16 = 0x0020;
/// `NS_TXMON`.
pub const NS_TXMON: u16 = 0x0040;
/// `NS_PORT_SHIFT`: VALE destination port / RX fragment count in bits 8..15.
pub const NS_PORT_SHIFT: u16 = 8;
/// `NS_PORT_MASK`.
pub const NS_PORT_MASK: u16 = 0xff00;
/// `NETMAP_MAX_FRAGS`.
pub const NETMAP_MAX_FRAGS: usize = 64;
/// First buffer index that may be allocated: 0 and 1 are reserved (§7.1).
pub const FIRST_BUF_IDX: u32 = 2;
/// Default buffer size (§3.2).
pub const DEFAULT_BUF_SIZE: u32 = 2048;
/// `NM_CACHE_ALIGN`.
pub const NM_CACHE_ALIGN: usize = 128;

const _: () = assert!(IF_RING_OFS == 56);
const _: () = assert!(offset_of!(NetmapIf, ni_version) == 16);
const _: () = assert!(IF_FLAGS == 20);
const _: () = assert!(IF_TX_RINGS == 24);
const _: () = assert!(IF_RX_RINGS == 28);
const _: () = assert!(IF_BUFS_HEAD == 32);
const _: () = assert!(IF_HOST_TX_RINGS == 36);
const _: () = assert!(IF_HOST_RX_RINGS == 40);
const _: () = assert!(offset_of!(NetmapIf, ni_spare1) == 44);
const _: () = assert!(RING_HDR_SIZE == 256);
const _: () = assert!(RING_BUF_OFS == 0);
const _: () = assert!(RING_NUM_SLOTS == 8);
const _: () = assert!(RING_NR_BUF_SIZE == 12);
const _: () = assert!(RING_RINGID == 16);
const _: () = assert!(RING_DIR == 18);
const _: () = assert!(RING_HEAD == 20);
const _: () = assert!(RING_CUR == 24);
const _: () = assert!(RING_TAIL == 28);
const _: () = assert!(RING_FLAGS == 32);
const _: () = assert!(offset_of!(NetmapRing, ts) == 40);
const _: () = assert!(RING_OFFSET_MASK == 56);
const _: () = assert!(offset_of!(NetmapRing, buf_align) == 64);
const _: () = assert!(offset_of!(NetmapRing, sem) == 128);
const _: () = assert!(SLOT_SIZE == 16);
const _: () = assert!(SLOT_BUF_IDX == 0);
const _: () = assert!(SLOT_LEN == 4);
const _: () = assert!(SLOT_FLAGS == 6);
const _: () = assert!(SLOT_PTR == 8);
