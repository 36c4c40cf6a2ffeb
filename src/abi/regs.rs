//! ptnet NIC register file, BAR0 (spec §3.1), and the feature bits (§4).
//!
//! All registers are 32-bit little endian and must be accessed with 32-bit accesses (E12).

/// `PTFEAT` (R/W): written = features wanted; read = `offered & written` (§3.1, §4).
/// W: guest (wanted). R: guest (acked). 0 before any write.
pub const PTFEAT: u32 = 0;
/// `PTCTL` (R/W): write a command, then read the status: 0 = ok, else an errno (§3.1, E4).
pub const PTCTL: u32 = 4;
/// `MAC_LO` (R): mac[2] in 31:24, mac[3] 23:16, mac[4] 15:8, mac[5] 7:0 (§3.1).
pub const MAC_LO: u32 = 8;
/// `MAC_HI` (R): mac[0] in 15:8, mac[1] in 7:0 (§3.1).
pub const MAC_HI: u32 = 12;
/// `CSBBAH`: deprecated single-CSB register; writes ignored, reads 0 (§3.1).
pub const CSBBAH: u32 = 16;
/// `CSBBAL`: deprecated single-CSB register; writes ignored, reads 0 (§3.1).
pub const CSBBAL: u32 = 20;
/// `NIFP_OFS` (R): offset of the port's `netmap_if` in the memdev region (§3.1).
pub const NIFP_OFS: u32 = 24;
/// `NUM_TX_RINGS` (R) (§3.1).
pub const NUM_TX_RINGS: u32 = 28;
/// `NUM_RX_RINGS` (R) (§3.1).
pub const NUM_RX_RINGS: u32 = 32;
/// `NUM_TX_SLOTS` (R) (§3.1).
pub const NUM_TX_SLOTS: u32 = 36;
/// `NUM_RX_SLOTS` (R) (§3.1).
pub const NUM_RX_SLOTS: u32 = 40;
/// `VNET_HDR_LEN` (R/W): write the wanted length; read back the effective one (§3.1, §10).
pub const VNET_HDR_LEN: u32 = 44;
/// `HOSTMEMID` (R): host allocator id, equals the memdev's `MEMID` (§3.1).
pub const HOSTMEMID: u32 = 48;
/// `CSB_GH_BAH` (R/W): atok array address, high 32 bits (§3.1, §5.1).
pub const CSB_GH_BAH: u32 = 52;
/// `CSB_GH_BAL` (R/W): low 32 bits; the write maps the array and performs an implicit DELETE.
pub const CSB_GH_BAL: u32 = 56;
/// `CSB_HG_BAH` (R/W): ktoa array address, high 32 bits.
pub const CSB_HG_BAH: u32 = 60;
/// `CSB_HG_BAL` (R/W): low 32 bits; same trigger semantics as `CSB_GH_BAL`.
pub const CSB_HG_BAL: u32 = 64;
/// `PTNET_IO_END`: end of the register file; 68..255 read 0 (§3.1).
pub const IO_END: u32 = 68;
/// `PTNET_IO_KICK_BASE`: `KICK[i]` is at `KICK_BASE + 4·i` (§3.1).
pub const KICK_BASE: u32 = 128;
/// `PTNET_IO_MASK`: the address is masked with this before decoding (§2).
pub const IO_MASK: u32 = 0xff;

/// `PTNETMAP_PTCTL_CREATE`: start the host sync kloop (§3.1).
pub const PTCTL_CREATE: u32 = 1;
/// `PTNETMAP_PTCTL_DELETE`: stop it (§3.1).
pub const PTCTL_DELETE: u32 = 2;

/// `PTNETMAP_F_VNET_HDR`: the host port carries virtio-net headers (§4).
pub const F_VNET_HDR: u32 = 1;

/// Effective maximum number of rings (TX + RX): the kick registers fit 128..252 (§3.1 derived
/// limits, [inferred]; we take the safe reading, 32).
pub const MAX_RINGS: u32 = 32;

/// Offset of `KICK[i]`.
pub const fn kick_offset(ring: u32) -> u32 {
    KICK_BASE + 4 * ring
}

/// Errno values the device reports through `PTCTL` (§3.1: positive errno, 0 = ok).
pub mod status {
    /// Success.
    pub const OK: u32 = 0;
    /// `EPERM`.
    pub const EPERM: u32 = 1;
    /// `ENXIO`: a CSB array is not mapped (§6 C4c).
    pub const ENXIO: u32 = 6;
    /// `ENOMEM`.
    pub const ENOMEM: u32 = 12;
    /// `EBUSY`.
    pub const EBUSY: u32 = 16;
    /// `EINVAL`: unknown command (§3.1).
    pub const EINVAL: u32 = 22;
    /// `ENODEV`: no passthrough backend (E10).
    pub const ENODEV: u32 = 19;
    /// `EIO`: MSI-X not enabled at CREATE (E6: the model fails instead of aborting).
    pub const EIO: u32 = 5;
}

const _: () = assert!(kick_offset(MAX_RINGS - 1) + 4 <= IO_MASK + 1);
const _: () = assert!(IO_END < KICK_BASE);
