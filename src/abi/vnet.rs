//! virtio-net header (spec §10): 10 bytes (`virtio_net_hdr`) or 12 (`virtio_net_hdr_mrg_rxbuf`),
//! at the start of the first buffer of each packet, little endian.

use core::mem::{offset_of, size_of};

/// `struct virtio_net_hdr` (10 bytes) followed by `num_buffers` in the 12-byte form.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, possibly OR `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (TSO).
    pub hdr_len: u16,
    /// MSS.
    pub gso_size: u16,
    /// Offset from the start of the Ethernet frame where checksumming starts.
    pub csum_start: u16,
    /// Offset after `csum_start` where the checksum is stored.
    pub csum_offset: u16,
}

/// `struct virtio_net_hdr_mrg_rxbuf` (12 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdrMrgRxbuf {
    /// The 10-byte header.
    pub hdr: VirtioNetHdr,
    /// Mergeable-buffers count; unused by ptnet, written as 0.
    pub num_buffers: u16,
}

/// Header lengths netmap accepts on VALE ports (§10).
pub const VALID_HDR_LENS: [u32; 3] = [0, 10, 12];
/// Length the guests write to `VNET_HDR_LEN` (§4, §10).
pub const HDR_LEN_MRG: usize = size_of::<VirtioNetHdrMrgRxbuf>();
/// Length of the plain header.
pub const HDR_LEN: usize = size_of::<VirtioNetHdr>();

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`.
pub const GSO_ECN: u8 = 0x80;

/// Byte offsets inside the header.
pub mod field {
    /// `flags`.
    pub const FLAGS: usize = 0;
    /// `gso_type`.
    pub const GSO_TYPE: usize = 1;
    /// `hdr_len`.
    pub const HDR_LEN: usize = 2;
    /// `gso_size`.
    pub const GSO_SIZE: usize = 4;
    /// `csum_start`.
    pub const CSUM_START: usize = 6;
    /// `csum_offset`.
    pub const CSUM_OFFSET: usize = 8;
    /// `num_buffers` (12-byte form only).
    pub const NUM_BUFFERS: usize = 10;
}

impl VirtioNetHdr {
    /// Decodes the first 10 bytes of `b`; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HDR_LEN] = b.get(..HDR_LEN)?.try_into().ok()?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Some(Self {
            flags: b[field::FLAGS],
            gso_type: b[field::GSO_TYPE],
            hdr_len: u16_at(field::HDR_LEN),
            gso_size: u16_at(field::GSO_SIZE),
            csum_start: u16_at(field::CSUM_START),
            csum_offset: u16_at(field::CSUM_OFFSET),
        })
    }

    /// Encodes into the first 10 bytes of `b`; `false` if `b` is shorter.
    pub fn emit(&self, b: &mut [u8]) -> bool {
        let Some(b) = b.get_mut(..HDR_LEN) else {
            return false;
        };
        b[field::FLAGS] = self.flags;
        b[field::GSO_TYPE] = self.gso_type;
        let (hl, gs, cs, co) = (self.hdr_len, self.gso_size, self.csum_start, self.csum_offset);
        b[field::HDR_LEN..field::HDR_LEN + 2].copy_from_slice(&hl.to_le_bytes());
        b[field::GSO_SIZE..field::GSO_SIZE + 2].copy_from_slice(&gs.to_le_bytes());
        b[field::CSUM_START..field::CSUM_START + 2].copy_from_slice(&cs.to_le_bytes());
        b[field::CSUM_OFFSET..field::CSUM_OFFSET + 2].copy_from_slice(&co.to_le_bytes());
        true
    }
}

const _: () = assert!(HDR_LEN == 10);
const _: () = assert!(HDR_LEN_MRG == 12);
const _: () = assert!(offset_of!(VirtioNetHdr, gso_type) == field::GSO_TYPE);
const _: () = assert!(offset_of!(VirtioNetHdr, hdr_len) == field::HDR_LEN);
const _: () = assert!(offset_of!(VirtioNetHdr, gso_size) == field::GSO_SIZE);
const _: () = assert!(offset_of!(VirtioNetHdr, csum_start) == field::CSUM_START);
const _: () = assert!(offset_of!(VirtioNetHdr, csum_offset) == field::CSUM_OFFSET);
const _: () = assert!(offset_of!(VirtioNetHdrMrgRxbuf, num_buffers) == field::NUM_BUFFERS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_is_little_endian() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
        };
        let mut b = [0xa5u8; 12];
        assert!(h.emit(&mut b));
        assert_eq!(b[..10], [1, 0x81, 2, 1, 4, 3, 6, 5, 8, 7]);
        assert_eq!(b[10..], [0xa5, 0xa5], "num_buffers untouched");
        assert_eq!(VirtioNetHdr::parse(&b), Some(h));
        assert_eq!(VirtioNetHdr::parse(&b[..9]), None);
        assert!(!h.emit(&mut [0u8; 9]));
    }
}
