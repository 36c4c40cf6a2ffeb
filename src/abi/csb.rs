//! CSB entries (spec §5.2): one 64-byte `nm_csb_atok` and one 64-byte `nm_csb_ktoa` per ring,
//! TX rings first, then RX rings (§5.1).

use core::mem::{offset_of, size_of};

/// `struct nm_csb_atok`: application (guest) to kernel (host) (§5.2).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmCsbAtok {
    /// Guest ring head. W: guest (after `cur`, behind a st-st fence, §5.4 rule 1). R: host.
    pub head: u32,
    /// Guest ring cur. W: guest (before `head`). R: host.
    pub cur: u32,
    /// 1 = the guest wants interrupts for this ring. W: guest. R: host.
    pub appl_need_kick: u32,
    /// `NAF_FORCE_READ`/`NAF_FORCE_RECLAIM` of the guest's last sync. W: guest. R: host.
    pub sync_flags: u32,
    /// Padding to one cache line (16..64).
    pub pad: [u32; 12],
}

/// `struct nm_csb_ktoa`: kernel (host) to application (guest) (§5.2).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmCsbKtoa {
    /// Host kring `nr_hwcur`. W: host (before `hwtail`, §5.4 rule 2). R: guest.
    pub hwcur: u32,
    /// Host kring `nr_hwtail`. W: host (after `hwcur`). R: guest (before `hwcur`).
    pub hwtail: u32,
    /// 1 = the host wants kicks for this ring. W: host. R: guest.
    pub kern_need_kick: u32,
    /// Padding (12..64).
    pub pad: [u32; 13],
}

/// Size of one CSB entry in either array.
pub const ENTRY_SIZE: usize = 64;
/// `NAF_FORCE_READ`: in `sync_flags` (§5.2).
pub const NAF_FORCE_READ: u32 = 1;
/// `NAF_FORCE_RECLAIM`: in `sync_flags` (§5.2).
pub const NAF_FORCE_RECLAIM: u32 = 2;

/// Byte offset of `atok.head`.
pub const ATOK_HEAD: usize = offset_of!(NmCsbAtok, head);
/// Byte offset of `atok.cur`.
pub const ATOK_CUR: usize = offset_of!(NmCsbAtok, cur);
/// Byte offset of `atok.appl_need_kick`.
pub const ATOK_APPL_NEED_KICK: usize = offset_of!(NmCsbAtok, appl_need_kick);
/// Byte offset of `atok.sync_flags`.
pub const ATOK_SYNC_FLAGS: usize = offset_of!(NmCsbAtok, sync_flags);
/// Byte offset of `ktoa.hwcur`.
pub const KTOA_HWCUR: usize = offset_of!(NmCsbKtoa, hwcur);
/// Byte offset of `ktoa.hwtail`.
pub const KTOA_HWTAIL: usize = offset_of!(NmCsbKtoa, hwtail);
/// Byte offset of `ktoa.kern_need_kick`.
pub const KTOA_KERN_NEED_KICK: usize = offset_of!(NmCsbKtoa, kern_need_kick);

/// Size in bytes of one CSB array for `num_rings` rings (§5.1).
pub const fn array_size(num_rings: u32) -> usize {
    ENTRY_SIZE * num_rings as usize
}

const _: () = assert!(size_of::<NmCsbAtok>() == ENTRY_SIZE);
const _: () = assert!(size_of::<NmCsbKtoa>() == ENTRY_SIZE);
const _: () = assert!(ATOK_HEAD == 0);
const _: () = assert!(ATOK_CUR == 4);
const _: () = assert!(ATOK_APPL_NEED_KICK == 8);
const _: () = assert!(ATOK_SYNC_FLAGS == 12);
const _: () = assert!(offset_of!(NmCsbAtok, pad) == 16);
const _: () = assert!(KTOA_HWCUR == 0);
const _: () = assert!(KTOA_HWTAIL == 4);
const _: () = assert!(KTOA_KERN_NEED_KICK == 8);
const _: () = assert!(offset_of!(NmCsbKtoa, pad) == 12);
