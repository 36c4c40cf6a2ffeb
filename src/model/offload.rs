//! virtio-net header conversion and software offloads between switch ports (spec §10).
//!
//! Each port of the emulated VALE-like switch carries a virtio-net header of 0, 10 or 12 bytes in
//! front of every Ethernet frame. When a packet crosses between ports with different header lengths,
//! [`convert`] does what netmap's VALE switch does (spec §10):
//!
//! * **0 → 10/12:** a zeroed header is prepended (no offload requested).
//! * **10 ↔ 12:** the first 10 bytes are copied, `num_buffers` is written as 0 (or dropped).
//! * **10/12 → 0:** the header is dropped. If it requests offloads (`NEEDS_CSUM` and/or a
//!   `gso_type` other than `GSO_NONE`), they are carried out in software first, since the
//!   destination cannot be told about them ([`apply_offloads`]).
//!
//! Choices made (the guest is untrusted: every offset is checked, nothing here panics, and on error
//! nothing has been emitted):
//!
//! * **Equal lengths** pass the packet through byte for byte (`num_buffers` included), exactly like
//!   the switch's own fast path, so both paths agree.
//! * **Lengths come from the frame**, not from the IP length fields nor the header's `hdr_len`
//!   (a hint, as on Linux hosts, which re-parse the headers too): the transport payload is
//!   everything after the TCP/UDP header up to the end of the frame.
//! * **TSO** (`GSO_TCPV4`, `GSO_TCPV6`) follows Linux's software GSO: payload cut into `gso_size`
//!   chunks; per segment the IPv4 total length, id (+1 per segment) and header checksum, or the IPv6
//!   payload length, are rewritten; the TCP sequence number advances by the bytes before the
//!   segment; FIN and PSH stay on the last segment only and CWR on the first only (Linux clears CWR
//!   after the first segment whether or not `GSO_ECN` is set; a Linux sender always sets `GSO_ECN`
//!   together with CWR). A payload not larger than `gso_size` gives one segment.
//! * **UFO** (`GSO_UDP`) follows Linux's software UFO: the UDP length and checksum are computed over
//!   the whole datagram, then the IPv4 payload is cut into fragments of `gso_size` rounded down to a
//!   multiple of 8, all with the original id, the full IPv4 header (options included, as Linux
//!   does), offsets and MF set (DF cleared). A datagram that fits is sent unfragmented. IPv6 UFO is
//!   [`OffloadError::Unsupported`].
//! * **Checksums** of TCP/UDP in segmentation are recomputed from scratch over the pseudo-header;
//!   `csum_start`/`csum_offset` are ignored there. `NEEDS_CSUM` without GSO follows Linux's
//!   `CHECKSUM_PARTIAL` (`skb_checksum_help`): the Internet checksum of `[csum_start..end]`, which
//!   includes the checksum field itself, where the guest left the pseudo-header sum, is stored at
//!   `csum_start + csum_offset`. Any protocol works on that path. A computed transport checksum of
//!   0 is stored as 0xffff (Linux's `CSUM_MANGLED_0`; required for UDP, equivalent for TCP).
//! * **Parsing:** untagged Ethernet or one 802.1Q tag; IPv4 with options (not fragments); IPv6
//!   without extension headers ([`OffloadError::Unsupported`] otherwise). `F_DATA_VALID` needs no
//!   action towards a port without headers.

use crate::abi::vnet::{
    VirtioNetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, HDR_LEN,
    HDR_LEN_MRG,
};
use core::fmt;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header values that are extension headers (RFC 8200 and registry).
const IPV6_EXT_HDRS: [u8; 9] = [0, 43, 44, 50, 51, 60, 135, 139, 140];
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPV4_MF: u16 = 0x2000;
const IPV4_FRAG_MASK: u16 = 0x3fff;
const TCP_MIN_HLEN: usize = 20;
const TCP_CSUM_OFF: usize = 16;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const UDP_HLEN: usize = 8;
const UDP_CSUM_OFF: usize = 6;
const MAX_IP_LEN: usize = 0xffff;

/// Why a packet could not be converted. When one is returned, nothing was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// A virtio-net header length other than 0, 10 or 12.
    BadHeaderLen(usize),
    /// The packet ends before its headers do.
    Truncated,
    /// `csum_start + csum_offset + 2` lies beyond the end of the frame.
    BadCsumOffsets,
    /// An inconsistent GSO request (unknown type, `gso_size` too small, type not matching the
    /// packet).
    BadGso(&'static str),
    /// A malformed IP or TCP header.
    Malformed(&'static str),
    /// A valid packet this software path does not handle.
    Unsupported(&'static str),
    /// An output packet would not fit the 16-bit IP length fields.
    TooLong,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadHeaderLen(n) => {
                write!(f, "bad virtio-net header length {n} (want 0, 10 or 12)")
            }
            Self::Truncated => f.write_str("packet truncated"),
            Self::BadCsumOffsets => f.write_str("checksum offsets beyond the end of the frame"),
            Self::BadGso(why) => write!(f, "bad gso request: {why}"),
            Self::Malformed(why) => write!(f, "malformed packet: {why}"),
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::TooLong => f.write_str("segment too long for the ip length field"),
        }
    }
}

impl std::error::Error for OffloadError {}

/// Moves `pkt` (a `src_hdr_len`-byte virtio-net header, possibly empty, then an Ethernet frame)
/// to a port with `dst_hdr_len`-byte headers (spec §10).
///
/// Calls `emit` once per output packet (`dst_hdr_len` header bytes, then the frame) and returns how
/// many there were: more than one only when TSO/UFO is done in software (`dst_hdr_len == 0`).
/// Header lengths other than 0, 10 and 12 give [`OffloadError::BadHeaderLen`]. On error nothing
/// has been emitted.
pub fn convert(
    pkt: &[u8],
    src_hdr_len: usize,
    dst_hdr_len: usize,
    emit: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    check_hdr_len(src_hdr_len)?;
    check_hdr_len(dst_hdr_len)?;
    let (hdr, frame) = pkt.split_at_checked(src_hdr_len).ok_or(OffloadError::Truncated)?;
    if src_hdr_len == dst_hdr_len {
        emit(pkt);
        return Ok(1);
    }
    if dst_hdr_len != 0 {
        emit(&with_header(hdr, dst_hdr_len, frame));
        return Ok(1);
    }
    let vh = VirtioNetHdr::parse(hdr).ok_or(OffloadError::Truncated)?;
    apply_offloads(&vh, frame, emit)
}

/// Whether `hdr` asks for work (`NEEDS_CSUM` or GSO) that a port without headers cannot be asked
/// to do, so that [`apply_offloads`] must do it in software.
pub fn needs_software_offload(hdr: &VirtioNetHdr) -> bool {
    hdr.flags & F_NEEDS_CSUM != 0 || hdr.gso_type != GSO_NONE
}

/// Carries out in software the offloads `hdr` requests on the Ethernet `frame` (no virtio-net
/// header), calling `emit` once per resulting frame; returns how many. A frame with no request is
/// emitted unchanged. See the module documentation for the exact semantics.
pub fn apply_offloads(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    emit: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    match gso_kind(hdr.gso_type)? {
        Gso::None if hdr.flags & F_NEEDS_CSUM != 0 => partial_csum(hdr, frame, emit),
        Gso::None => {
            emit(frame);
            Ok(1)
        }
        Gso::Tcp { v6 } => tso(hdr, frame, v6, emit),
        Gso::Udp => ufo(hdr, frame, emit),
    }
}

use crate::inet::{fold, sum_words};
pub use crate::inet::{internet_checksum, ones_complement_sum};

/// Folded, non-complemented sum of the TCP/UDP pseudo-header: addresses (4 bytes each for IPv4,
/// 16 for IPv6), protocol and transport length (header + payload). This is what a guest stores in
/// the checksum field with `NEEDS_CSUM`, and the `initial` value for [`internet_checksum`] over
/// the transport header and payload.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u16 {
    let lens = u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    fold(sum_words(src) + sum_words(dst) + u64::from(proto) + lens)
}

fn check_hdr_len(len: usize) -> Result<(), OffloadError> {
    match len {
        0 | HDR_LEN | HDR_LEN_MRG => Ok(()),
        _ => Err(OffloadError::BadHeaderLen(len)),
    }
}

/// `dst_len` header bytes (the first 10 of `src_hdr` if any, zeros otherwise) followed by `frame`.
fn with_header(src_hdr: &[u8], dst_len: usize, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dst_len + frame.len());
    out.resize(dst_len, 0);
    let n = src_hdr.len().min(dst_len).min(HDR_LEN);
    out[..n].copy_from_slice(&src_hdr[..n]);
    out.extend_from_slice(frame);
    out
}

enum Gso {
    None,
    Tcp { v6: bool },
    Udp,
}

fn gso_kind(gso_type: u8) -> Result<Gso, OffloadError> {
    if gso_type == GSO_NONE {
        return Ok(Gso::None);
    }
    match gso_type & !GSO_ECN {
        GSO_TCPV4 => Ok(Gso::Tcp { v6: false }),
        GSO_TCPV6 => Ok(Gso::Tcp { v6: true }),
        GSO_UDP => Ok(Gso::Udp),
        _ => Err(OffloadError::BadGso("unknown gso type")),
    }
}

/// `NEEDS_CSUM` without GSO: Linux's `skb_checksum_help`.
fn partial_csum(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    emit: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::BadCsumOffsets);
    }
    let mut out = frame.to_vec();
    let csum = internet_checksum(&out[start..], 0);
    put16(&mut out, field, mangle_zero(csum));
    emit(&out);
    Ok(1)
}

/// Offsets of the IP and transport headers of a parsed frame.
#[derive(Debug, Clone, Copy)]
struct Layout {
    v6: bool,
    l3: usize,
    l4: usize,
}

impl Layout {
    /// Value of the IP length field (IPv4 total length, IPv6 payload length) for a frame of
    /// `frame_len` bytes.
    fn ip_len(&self, frame_len: usize) -> usize {
        frame_len.saturating_sub(self.l3 + if self.v6 { IPV6_HLEN } else { 0 })
    }
}

/// Ethertype and offset of the L3 header, past at most one 802.1Q tag.
fn parse_l2(frame: &[u8]) -> Result<(u16, usize), OffloadError> {
    let mut ty = be16(frame, ETH_HLEN - 2)?;
    let mut l3 = ETH_HLEN;
    if ty == ETH_P_8021Q {
        ty = be16(frame, ETH_HLEN + VLAN_HLEN - 2)?;
        l3 += VLAN_HLEN;
    }
    if ty == ETH_P_8021Q || ty == ETH_P_8021AD {
        return Err(OffloadError::Unsupported("stacked or 802.1ad vlan tags"));
    }
    Ok((ty, l3))
}

/// Parses L2 and L3, requiring IPv4 or IPv6 (`v6`) carrying `proto` directly.
fn parse_ip(frame: &[u8], v6: bool, proto: u8) -> Result<Layout, OffloadError> {
    let (ty, l3) = parse_l2(frame)?;
    if ty != if v6 { ETH_P_IPV6 } else { ETH_P_IP } {
        return Err(OffloadError::BadGso("gso type does not match the ethertype"));
    }
    let l4 = if v6 { parse_ipv6(frame, l3, proto)? } else { parse_ipv4(frame, l3, proto)? };
    Ok(Layout { v6, l3, l4 })
}

fn parse_ipv4(frame: &[u8], l3: usize, proto: u8) -> Result<usize, OffloadError> {
    let vihl = *frame.get(l3).ok_or(OffloadError::Truncated)?;
    if vihl >> 4 != 4 {
        return Err(OffloadError::Malformed("ip version is not 4"));
    }
    let ihl = usize::from(vihl & 0xf) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(OffloadError::Malformed("ipv4 header length below 20"));
    }
    if frame.len() < l3 + ihl {
        return Err(OffloadError::Truncated);
    }
    if be16(frame, l3 + 6)? & IPV4_FRAG_MASK != 0 {
        return Err(OffloadError::Malformed("ipv4 fragment"));
    }
    if frame[l3 + 9] != proto {
        return Err(OffloadError::BadGso("transport protocol does not match the gso type"));
    }
    Ok(l3 + ihl)
}

fn parse_ipv6(frame: &[u8], l3: usize, proto: u8) -> Result<usize, OffloadError> {
    if frame.len() < l3 + IPV6_HLEN {
        return Err(OffloadError::Truncated);
    }
    if frame[l3] >> 4 != 6 {
        return Err(OffloadError::Malformed("ip version is not 6"));
    }
    match frame[l3 + 6] {
        next if next == proto => Ok(l3 + IPV6_HLEN),
        next if IPV6_EXT_HDRS.contains(&next) => {
            Err(OffloadError::Unsupported("ipv6 extension headers"))
        }
        _ => Err(OffloadError::BadGso("transport protocol does not match the gso type")),
    }
}

fn tcp_header_len(frame: &[u8], l4: usize) -> Result<usize, OffloadError> {
    let doff = *frame.get(l4 + 12).ok_or(OffloadError::Truncated)?;
    let len = usize::from(doff >> 4) * 4;
    if len < TCP_MIN_HLEN {
        return Err(OffloadError::Malformed("tcp data offset below 20"));
    }
    if frame.len() < l4 + len {
        return Err(OffloadError::Truncated);
    }
    Ok(len)
}

/// Software TSO (`GSO_TCPV4`/`GSO_TCPV6`), as Linux's `tcp_gso_segment` + `inet_gso_segment`.
fn tso(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    v6: bool,
    emit: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::BadGso("gso_size is zero"));
    }
    let lay = parse_ip(frame, v6, IPPROTO_TCP)?;
    let hlen = lay.l4 + tcp_header_len(frame, lay.l4)?;
    let payload = &frame[hlen..];
    if lay.ip_len(hlen + mss.min(payload.len())) > MAX_IP_LEN {
        return Err(OffloadError::TooLong);
    }
    let seq0 = be32(frame, lay.l4 + 4)?;
    let id0 = be16(frame, lay.l3 + 4)?;
    let n = payload.len().div_ceil(mss).max(1);
    let mut seg = Vec::with_capacity(hlen + mss.min(payload.len()));
    for i in 0..n {
        let start = i * mss;
        let end = (start + mss).min(payload.len());
        seg.clear();
        seg.extend_from_slice(&frame[..hlen]);
        seg.extend_from_slice(&payload[start..end]);
        // Sequence numbers and IPv4 ids are modular: truncating casts are intended.
        fix_tcp_header(&mut seg[lay.l4..], seq0.wrapping_add(start as u32), i == 0, i + 1 == n);
        if !lay.v6 {
            put16(&mut seg, lay.l3 + 4, id0.wrapping_add(i as u16));
        }
        finish_ip(&mut seg, &lay);
        fill_l4_csum(&mut seg, &lay, IPPROTO_TCP, TCP_CSUM_OFF);
        emit(&seg);
    }
    Ok(n)
}

/// Sets the sequence number and keeps FIN/PSH on the last segment only, CWR on the first only.
fn fix_tcp_header(tcp: &mut [u8], seq: u32, first: bool, last: bool) {
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    if !last {
        tcp[13] &= !(TCP_FIN | TCP_PSH);
    }
    if !first {
        tcp[13] &= !TCP_CWR;
    }
}

/// Software UFO (`GSO_UDP`), as Linux's `udp4_ufo_fragment` + `inet_gso_segment`.
fn ufo(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    emit: &mut dyn FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    if parse_l2(frame)?.0 == ETH_P_IPV6 {
        return Err(OffloadError::Unsupported("ipv6 ufo"));
    }
    let frag = usize::from(hdr.gso_size) & !7;
    if frag == 0 {
        return Err(OffloadError::BadGso("gso_size below 8 for ufo"));
    }
    let lay = parse_ip(frame, false, IPPROTO_UDP)?;
    let udp_len = frame.len() - lay.l4;
    if udp_len < UDP_HLEN {
        return Err(OffloadError::Truncated);
    }
    if udp_len > MAX_IP_LEN || lay.ip_len(lay.l4 + udp_len.min(frag)) > MAX_IP_LEN {
        return Err(OffloadError::TooLong);
    }
    let mut dgram = frame.to_vec();
    put16(&mut dgram, lay.l4 + 4, udp_len as u16);
    fill_l4_csum(&mut dgram, &lay, IPPROTO_UDP, UDP_CSUM_OFF);
    if udp_len <= frag {
        finish_ip(&mut dgram, &lay);
        emit(&dgram);
        return Ok(1);
    }
    Ok(emit_fragments(&dgram, &lay, frag, emit))
}

/// Emits IPv4 fragments of `dgram`'s payload, `frag` (a multiple of 8) bytes each but the last.
fn emit_fragments(dgram: &[u8], lay: &Layout, frag: usize, emit: &mut dyn FnMut(&[u8])) -> usize {
    let body = &dgram[lay.l4..];
    let n = body.len().div_ceil(frag);
    let mut out = Vec::with_capacity(lay.l4 + frag);
    for (i, chunk) in body.chunks(frag).enumerate() {
        out.clear();
        out.extend_from_slice(&dgram[..lay.l4]);
        out.extend_from_slice(chunk);
        let mf = if i + 1 < n { IPV4_MF } else { 0 };
        // The caller checked the datagram fits 64 KiB, so the offset fits its 13 bits.
        put16(&mut out, lay.l3 + 6, ((i * frag) >> 3) as u16 | mf);
        finish_ip(&mut out, lay);
        emit(&out);
    }
    n
}

/// Writes the IP length field for `pkt`'s length and, for IPv4, the header checksum. The caller
/// has checked that the length fits.
fn finish_ip(pkt: &mut [u8], lay: &Layout) {
    let len = lay.ip_len(pkt.len()) as u16;
    if lay.v6 {
        put16(pkt, lay.l3 + 4, len);
        return;
    }
    put16(pkt, lay.l3 + 2, len);
    put16(pkt, lay.l3 + 10, 0);
    let csum = internet_checksum(&pkt[lay.l3..lay.l4], 0);
    put16(pkt, lay.l3 + 10, csum);
}

/// Computes the full TCP/UDP checksum of `pkt` (pseudo-header included) into the field at
/// `lay.l4 + field`.
fn fill_l4_csum(pkt: &mut [u8], lay: &Layout, proto: u8, field: usize) {
    put16(pkt, lay.l4 + field, 0);
    let (src, dst) = if lay.v6 {
        (&pkt[lay.l3 + 8..lay.l3 + 24], &pkt[lay.l3 + 24..lay.l3 + 40])
    } else {
        (&pkt[lay.l3 + 12..lay.l3 + 16], &pkt[lay.l3 + 16..lay.l3 + 20])
    };
    // Lengths beyond 32 bits cannot occur for IP packets; truncation would only skew the sum.
    let pseudo = pseudo_header_sum(src, dst, proto, (pkt.len() - lay.l4) as u32);
    let csum = internet_checksum(&pkt[lay.l4..], u32::from(pseudo));
    put16(pkt, lay.l4 + field, mangle_zero(csum));
}

/// A transport checksum of 0 is sent as 0xffff (0 means "no checksum" for UDP).
fn mangle_zero(csum: u16) -> u16 {
    if csum == 0 {
        0xffff
    } else {
        csum
    }
}

fn be16(b: &[u8], off: usize) -> Result<u16, OffloadError> {
    match b.get(off..off + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(OffloadError::Truncated),
    }
}

fn be32(b: &[u8], off: usize) -> Result<u32, OffloadError> {
    match b.get(off..off + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(OffloadError::Truncated),
    }
}

/// Stores `v` big-endian at `off`; callers only pass offsets inside validated headers.
fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::vnet::F_DATA_VALID;
    use proptest::prelude::*;

    const TCP_HLEN: usize = 32; // with 12 bytes of options (NOP, NOP, timestamps)
    const ACK: u8 = 0x10;
    const SRC4: [u8; 4] = [10, 0, 0, 1];
    const DST4: [u8; 4] = [10, 0, 0, 2];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// What to build: a TCP or UDP packet over IPv4/IPv6, optionally VLAN-tagged.
    #[derive(Debug, Clone)]
    struct Spec {
        v6: bool,
        vlan: bool,
        proto: u8,
        ip_opts: usize,
        payload: Vec<u8>,
        tcp_flags: u8,
        seq: u32,
        id: u16,
    }

    impl Spec {
        fn new(v6: bool, proto: u8, payload_len: usize) -> Self {
            let payload = (0..payload_len).map(|i| (i * 7 + i / 251) as u8).collect();
            let (ip_opts, tcp_flags, seq, id) = (0, ACK | TCP_PSH, 1000, 7);
            Self { v6, vlan: false, proto, ip_opts, payload, tcp_flags, seq, id }
        }
    }

    /// A built frame and its header offsets.
    struct Built {
        frame: Vec<u8>,
        l3: usize,
        l4: usize,
    }

    fn be16_at(b: &[u8], off: usize) -> u16 {
        u16::from_be_bytes([b[off], b[off + 1]])
    }

    fn be32_at(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn l4_header(s: &Spec, l4_len: usize) -> Vec<u8> {
        let mut h = vec![0x04, 0xd2, 0x00, 0x50]; // ports 1234 -> 80
        if s.proto == IPPROTO_UDP {
            h.extend((l4_len as u16).to_be_bytes());
            h.extend([0, 0]);
            return h;
        }
        h.extend(s.seq.to_be_bytes());
        h.extend(0x0102_0304u32.to_be_bytes()); // ack
        h.extend([((TCP_HLEN / 4) << 4) as u8, s.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
        h.extend([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        h
    }

    fn ip_header(s: &Spec, l4_len: usize) -> Vec<u8> {
        if s.v6 {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend((l4_len as u16).to_be_bytes());
            h.extend([s.proto, 64]);
            h.extend(SRC6);
            h.extend(DST6);
            return h;
        }
        let ihl = 20 + s.ip_opts;
        let mut h = vec![0x40 | (ihl / 4) as u8, 0];
        h.extend(((ihl + l4_len) as u16).to_be_bytes());
        h.extend(s.id.to_be_bytes());
        h.extend([0x40, 0, 64, s.proto, 0, 0]); // DF
        h.extend(SRC4);
        h.extend(DST4);
        h.extend(std::iter::repeat_n(1u8, s.ip_opts)); // NOPs
        let csum = internet_checksum(&h, 0);
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        h
    }

    /// Builds the frame as a Linux guest hands it over with `CHECKSUM_PARTIAL`: the transport
    /// checksum field holds the pseudo-header sum.
    fn build(s: &Spec) -> Built {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if s.vlan {
            f.extend([0x81, 0x00, 0x20, 0x64]);
        }
        f.extend(if s.v6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes());
        let l3 = f.len();
        let l4h = l4_header(s, 0);
        let l4_len = l4h.len() + s.payload.len();
        f.extend(ip_header(s, l4_len));
        let l4 = f.len();
        f.extend(l4_header(s, l4_len));
        f.extend(&s.payload);
        let (src, dst): (&[u8], &[u8]) = if s.v6 { (&SRC6, &DST6) } else { (&SRC4, &DST4) };
        let pseudo = pseudo_header_sum(src, dst, s.proto, l4_len as u32);
        let off = l4 + if s.proto == IPPROTO_UDP { UDP_CSUM_OFF } else { TCP_CSUM_OFF };
        f[off..off + 2].copy_from_slice(&pseudo.to_be_bytes());
        Built { frame: f, l3, l4 }
    }

    fn offload_hdr(b: &Built, proto: u8, gso_type: u8, gso_size: u16) -> VirtioNetHdr {
        let tcp = proto == IPPROTO_TCP;
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: (b.l4 + if tcp { TCP_HLEN } else { UDP_HLEN }) as u16,
            gso_size,
            csum_start: b.l4 as u16,
            csum_offset: if tcp { TCP_CSUM_OFF } else { UDP_CSUM_OFF } as u16,
        }
    }

    /// `len` header bytes (`num_buffers` = 0x5a5a if 12) followed by `frame`.
    fn with_vhdr(h: &VirtioNetHdr, len: usize, frame: &[u8]) -> Vec<u8> {
        let mut pkt = vec![0x5a; len];
        if len > 0 {
            assert!(h.emit(&mut pkt));
        }
        pkt.extend_from_slice(frame);
        pkt
    }

    fn run(pkt: &[u8], src: usize, dst: usize) -> Result<Vec<Vec<u8>>, OffloadError> {
        let mut out = Vec::new();
        let res = convert(pkt, src, dst, &mut |p| out.push(p.to_vec()));
        match res {
            Ok(n) => assert_eq!(n, out.len(), "returned count matches emitted packets"),
            Err(_) => assert!(out.is_empty(), "nothing emitted on error"),
        }
        res.map(|_| out)
    }

    fn ipv4_valid(seg: &[u8], b: &Built) -> bool {
        internet_checksum(&seg[b.l3..b.l4], 0) == 0
    }

    fn l4_valid(seg: &[u8], b: &Built, v6: bool, proto: u8) -> bool {
        let (src, dst) = if v6 {
            (&seg[b.l3 + 8..b.l3 + 24], &seg[b.l3 + 24..b.l3 + 40])
        } else {
            (&seg[b.l3 + 12..b.l3 + 16], &seg[b.l3 + 16..b.l3 + 20])
        };
        let pseudo = pseudo_header_sum(src, dst, proto, (seg.len() - b.l4) as u32);
        internet_checksum(&seg[b.l4..], pseudo.into()) == 0
    }

    /// Segments `s` with TSO (12-byte header -> port without header) and checks every segment.
    fn tso_check(s: &Spec, mss: u16, ecn: bool) -> Vec<Vec<u8>> {
        let b = build(s);
        let gso = if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 } | if ecn { GSO_ECN } else { 0 };
        let pkt = with_vhdr(&offload_hdr(&b, IPPROTO_TCP, gso, mss), HDR_LEN_MRG, &b.frame);
        let segs = run(&pkt, HDR_LEN_MRG, 0).expect("tso");
        let mss = usize::from(mss);
        assert_eq!(segs.len(), s.payload.len().div_ceil(mss).max(1));
        let mut payload = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            check_segment(s, &b, seg, mss, (i, segs.len()));
            let chunk = &seg[b.l4 + TCP_HLEN..];
            assert!(chunk.len() == mss || i + 1 == segs.len(), "only the last one is short");
            payload.extend_from_slice(chunk);
        }
        assert_eq!(payload, s.payload, "segments concatenate to the original payload");
        segs
    }

    fn check_segment(s: &Spec, b: &Built, seg: &[u8], mss: usize, (i, n): (usize, usize)) {
        let hlen = b.l4 + TCP_HLEN;
        let ip_len = seg.len() - b.l3 - if s.v6 { IPV6_HLEN } else { 0 };
        assert_eq!(seg[..b.l3], b.frame[..b.l3], "ethernet header copied");
        if s.v6 {
            assert_eq!(be16_at(seg, b.l3 + 4) as usize, ip_len);
        } else {
            assert_eq!(be16_at(seg, b.l3 + 2) as usize, ip_len);
            assert_eq!(be16_at(seg, b.l3 + 4), s.id.wrapping_add(i as u16));
            assert!(ipv4_valid(seg, b), "ipv4 header checksum of segment {i}");
        }
        assert!(seg.len() - hlen <= mss, "segment {i} within mss");
        assert_eq!(be32_at(seg, b.l4 + 4), s.seq.wrapping_add((i * mss) as u32), "seq of {i}");
        let mut flags = s.tcp_flags;
        if i + 1 < n {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        assert_eq!(seg[b.l4 + 13], flags, "tcp flags of segment {i}");
        assert_eq!(seg[b.l4 + 8..b.l4 + 12], b.frame[b.l4 + 8..b.l4 + 12], "ack copied");
        assert!(l4_valid(seg, b, s.v6, IPPROTO_TCP), "tcp checksum of segment {i}");
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&data, 0), 0xddf2);
        assert_eq!(internet_checksum(&data, 0), !0xddf2);
        let mut with_csum = data.to_vec();
        with_csum.extend(internet_checksum(&data, 0).to_be_bytes());
        assert_eq!(internet_checksum(&with_csum, 0), 0);
    }

    #[test]
    fn checksum_pads_odd_length_and_folds_seed() {
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
        assert_eq!(ones_complement_sum(&[], 0x1_0001), 0x0002);
        assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x02], 0), 0x0002);
        assert_eq!(ones_complement_sum(&[0xffu8; 70_000], u32::MAX), 0xffff);
        assert_eq!(internet_checksum(&[], 0), 0xffff);
    }

    #[test]
    fn pseudo_header_sum_matches_explicit_bytes() {
        let mut v4 = Vec::from(SRC4);
        v4.extend(DST4);
        v4.extend([0, IPPROTO_TCP, 0x05, 0xdc]);
        assert_eq!(pseudo_header_sum(&SRC4, &DST4, IPPROTO_TCP, 1500), ones_complement_sum(&v4, 0));
        let mut v6 = Vec::from(SRC6);
        v6.extend(DST6);
        v6.extend(0x0001_0002u32.to_be_bytes());
        v6.extend([0, 0, 0, IPPROTO_UDP]);
        let got = pseudo_header_sum(&SRC6, &DST6, IPPROTO_UDP, 0x0001_0002);
        assert_eq!(got, ones_complement_sum(&v6, 0));
    }

    #[test]
    fn zero_header_prepended_for_header_ports() {
        let frame = build(&Spec::new(false, IPPROTO_TCP, 50)).frame;
        for dst in [HDR_LEN, HDR_LEN_MRG] {
            let out = run(&frame, 0, dst).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0][..dst], vec![0; dst]);
            assert_eq!(out[0][dst..], frame);
        }
    }

    #[test]
    fn header_10_and_12_convert_byte_exact() {
        let frame = [0xabu8; 60];
        let hdr12: Vec<u8> = (1..=12).collect();
        let mut pkt = hdr12.clone();
        pkt.extend(frame);
        let out = run(&pkt, HDR_LEN_MRG, HDR_LEN).unwrap();
        assert_eq!(out, vec![[&hdr12[..10], &frame[..]].concat()]);
        let out = run(&pkt[2..], HDR_LEN, HDR_LEN_MRG).unwrap();
        assert_eq!(out, vec![[&pkt[2..12], &[0, 0], &frame[..]].concat()]);
    }

    #[test]
    fn header_dropped_without_offload_request() {
        let frame = build(&Spec::new(false, IPPROTO_UDP, 20)).frame;
        let h = VirtioNetHdr { flags: F_DATA_VALID, ..Default::default() };
        for src in [HDR_LEN, HDR_LEN_MRG] {
            assert_eq!(run(&with_vhdr(&h, src, &frame), src, 0).unwrap(), vec![frame.clone()]);
        }
        assert!(!needs_software_offload(&h));
    }

    #[test]
    fn equal_lengths_pass_through_unchanged() {
        let pkt: Vec<u8> = (0..80).collect();
        for len in [0, HDR_LEN, HDR_LEN_MRG] {
            assert_eq!(run(&pkt, len, len).unwrap(), vec![pkt.clone()]);
        }
    }

    #[test]
    fn bogus_header_lengths_are_rejected() {
        let pkt = [0u8; 64];
        for bad in [1, 4, 8, 11, 13, 16, usize::MAX] {
            assert_eq!(run(&pkt, bad, 0), Err(OffloadError::BadHeaderLen(bad)));
            assert_eq!(run(&pkt, 0, bad), Err(OffloadError::BadHeaderLen(bad)));
        }
    }

    #[test]
    fn packet_shorter_than_its_header_is_truncated() {
        assert_eq!(run(&[0u8; 9], HDR_LEN, 0), Err(OffloadError::Truncated));
        assert_eq!(run(&[0u8; 11], HDR_LEN_MRG, HDR_LEN), Err(OffloadError::Truncated));
        assert_eq!(run(&[], HDR_LEN_MRG, HDR_LEN_MRG), Err(OffloadError::Truncated));
    }

    #[test]
    fn tso_v4_splits_3000_bytes_into_three_segments() {
        let mut s = Spec::new(false, IPPROTO_TCP, 3000);
        s.tcp_flags = ACK | TCP_PSH | TCP_FIN;
        let segs = tso_check(&s, 1000, false);
        let b = build(&s);
        assert_eq!(segs.len(), 3);
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg.len(), 14 + 20 + TCP_HLEN + 1000);
            assert_eq!(be16_at(seg, b.l3 + 2), 20 + 32 + 1000);
            assert_eq!(be16_at(seg, b.l3 + 4), 7 + i as u16);
            assert_eq!(be32_at(seg, b.l4 + 4), 1000 + 1000 * i as u32);
            assert_eq!(seg[b.l3 + 6], 0x40, "df kept");
        }
        assert_eq!(segs[0][b.l4 + 13], ACK);
        assert_eq!(segs[2][b.l4 + 13], ACK | TCP_PSH | TCP_FIN);
    }

    #[test]
    fn tso_uneven_last_segment_keeps_cwr_on_first_only() {
        let mut s = Spec::new(false, IPPROTO_TCP, 2500);
        s.tcp_flags = ACK | TCP_PSH | TCP_FIN | TCP_CWR;
        let segs = tso_check(&s, 1000, true);
        let lens: Vec<usize> = segs.iter().map(|g| g.len() - (14 + 20 + TCP_HLEN)).collect();
        assert_eq!(lens, [1000, 1000, 500]);
        let l4 = 14 + 20;
        assert_eq!(segs[0][l4 + 13], ACK | TCP_CWR);
        assert_eq!(segs[1][l4 + 13], ACK);
        assert_eq!(segs[2][l4 + 13], ACK | TCP_PSH | TCP_FIN);
    }

    #[test]
    fn tso_v6_splits_3000_bytes_into_three_segments() {
        let s = Spec::new(true, IPPROTO_TCP, 3000);
        let segs = tso_check(&s, 1000, false);
        assert_eq!(segs.len(), 3);
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg.len(), 14 + 40 + TCP_HLEN + 1000);
            assert_eq!(be16_at(seg, 14 + 4), (TCP_HLEN + 1000) as u16);
            assert_eq!(be32_at(seg, 14 + 40 + 4), 1000 + 1000 * i as u32);
        }
    }

    #[test]
    fn tso_handles_one_vlan_tag() {
        for v6 in [false, true] {
            let mut s = Spec::new(v6, IPPROTO_TCP, 3000);
            s.vlan = true;
            let segs = tso_check(&s, 1000, false);
            assert_eq!(segs.len(), 3);
            assert!(segs.iter().all(|g| g[12..16] == [0x81, 0x00, 0x20, 0x64]));
        }
    }

    #[test]
    fn tso_copies_ipv4_options() {
        let mut s = Spec::new(false, IPPROTO_TCP, 2000);
        s.ip_opts = 8;
        let segs = tso_check(&s, 999, false);
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|g| g[14] == 0x47 && g[14 + 20..14 + 28] == [1; 8]));
    }

    #[test]
    fn tso_payload_within_mss_gives_one_segment() {
        for len in [0, 1, 999, 1000] {
            let segs = tso_check(&Spec::new(false, IPPROTO_TCP, len), 1000, false);
            assert_eq!(segs.len(), 1);
            assert_eq!(segs[0].len(), 14 + 20 + TCP_HLEN + len);
        }
    }

    #[test]
    fn tso_sequence_numbers_and_ids_wrap() {
        let mut s = Spec::new(false, IPPROTO_TCP, 3000);
        s.seq = u32::MAX - 1500;
        s.id = u16::MAX;
        let segs = tso_check(&s, 1000, false);
        let l4 = 14 + 20;
        assert_eq!(be32_at(&segs[2], l4 + 4), 499);
        assert_eq!(be16_at(&segs[1], 14 + 4), 0);
    }

    #[test]
    fn gso_packet_to_header_port_is_not_segmented() {
        let b = build(&Spec::new(false, IPPROTO_TCP, 3000));
        let h = offload_hdr(&b, IPPROTO_TCP, GSO_TCPV4, 1000);
        let pkt = with_vhdr(&h, HDR_LEN_MRG, &b.frame);
        let out = run(&pkt, HDR_LEN_MRG, HDR_LEN).unwrap();
        assert_eq!(out, vec![[&pkt[..10], &b.frame[..]].concat()]);
        assert!(needs_software_offload(&h));
    }

    /// Runs UFO on `s` and returns the fragments.
    fn ufo_run(s: &Spec, gso_size: u16) -> (Built, Vec<Vec<u8>>) {
        let b = build(s);
        let h = offload_hdr(&b, IPPROTO_UDP, GSO_UDP, gso_size);
        let frags = run(&with_vhdr(&h, HDR_LEN, &b.frame), HDR_LEN, 0).expect("ufo");
        (b, frags)
    }

    /// Checks fragment headers and reassembles the IPv4 payload.
    fn reassemble(s: &Spec, b: &Built, frags: &[Vec<u8>], frag: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(ipv4_valid(f, b), "ipv4 header checksum of fragment {i}");
            assert_eq!(be16_at(f, b.l3 + 2) as usize, f.len() - b.l3);
            assert_eq!(be16_at(f, b.l3 + 4), s.id, "same id in every fragment");
            let off = be16_at(f, b.l3 + 6);
            assert_eq!(usize::from(off & 0x1fff) * 8, body.len());
            assert_eq!(off & IPV4_MF != 0, i + 1 < frags.len());
            if i + 1 < frags.len() {
                assert_eq!(f.len() - b.l4, frag);
            }
            assert_eq!(f[..b.l4], [&frags[0][..b.l3 + 2], &f[b.l3 + 2..b.l4]].concat());
            body.extend_from_slice(&f[b.l4..]);
        }
        body
    }

    #[test]
    fn ufo_v4_fragments_reassemble_to_checksummed_datagram() {
        let s = Spec::new(false, IPPROTO_UDP, 3000);
        let (b, frags) = ufo_run(&s, 1480);
        assert_eq!(frags.len(), 3);
        let body = reassemble(&s, &b, &frags, 1480);
        assert_eq!(body.len(), UDP_HLEN + 3000);
        assert_eq!(body[UDP_HLEN..], s.payload);
        assert_eq!(be16_at(&body, 4) as usize, body.len(), "udp length");
        let mut whole = frags[0][..b.l4].to_vec();
        whole.extend(&body);
        assert!(l4_valid(&whole, &b, false, IPPROTO_UDP), "udp checksum of the datagram");
    }

    #[test]
    fn ufo_rounds_fragment_size_down_to_multiple_of_8() {
        let mut s = Spec::new(false, IPPROTO_UDP, 2500);
        s.vlan = true;
        let (b, frags) = ufo_run(&s, 1003);
        assert_eq!(frags.len(), 3);
        let body = reassemble(&s, &b, &frags, 1000);
        assert_eq!(body[UDP_HLEN..], s.payload);
    }

    #[test]
    fn ufo_small_datagram_is_sent_whole() {
        let s = Spec::new(false, IPPROTO_UDP, 100);
        let (b, frags) = ufo_run(&s, 1480);
        assert_eq!(frags.len(), 1);
        let f = &frags[0];
        assert_eq!(f.len(), b.frame.len());
        assert_eq!(be16_at(f, b.l3 + 6), 0x4000, "frag_off untouched");
        assert!(ipv4_valid(f, &b) && l4_valid(f, &b, false, IPPROTO_UDP));
        assert_eq!(f[b.l4 + UDP_HLEN..], s.payload);
    }

    #[test]
    fn ufo_over_ipv6_is_unsupported() {
        let b = build(&Spec::new(true, IPPROTO_UDP, 3000));
        let h = offload_hdr(&b, IPPROTO_UDP, GSO_UDP, 1000);
        let got = run(&with_vhdr(&h, HDR_LEN, &b.frame), HDR_LEN, 0);
        assert_eq!(got, Err(OffloadError::Unsupported("ipv6 ufo")));
    }

    #[test]
    fn needs_csum_computes_transport_checksums() {
        for (v6, proto, vlan) in [
            (false, IPPROTO_TCP, false),
            (false, IPPROTO_UDP, false),
            (true, IPPROTO_TCP, false),
            (true, IPPROTO_UDP, true),
            (false, IPPROTO_TCP, true),
        ] {
            let mut s = Spec::new(v6, proto, 777);
            s.vlan = vlan;
            let b = build(&s);
            let h = offload_hdr(&b, proto, GSO_NONE, 0);
            let out = run(&with_vhdr(&h, HDR_LEN_MRG, &b.frame), HDR_LEN_MRG, 0).unwrap();
            assert_eq!(out.len(), 1);
            let f = &out[0];
            assert!(l4_valid(f, &b, v6, proto), "{v6} {proto} {vlan}");
            let field = usize::from(h.csum_start + h.csum_offset);
            assert_eq!(f[..field], b.frame[..field], "only the checksum field changes");
            assert_eq!(f[field + 2..], b.frame[field + 2..]);
        }
    }

    #[test]
    fn needs_csum_zero_result_is_stored_as_ffff() {
        let mut frame = vec![0u8; 20];
        frame[16..18].copy_from_slice(&[0xff, 0xff]);
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 16,
            csum_offset: 2,
            ..Default::default()
        };
        let out = run(&with_vhdr(&h, HDR_LEN, &frame), HDR_LEN, 0).unwrap();
        assert_eq!(out[0][18..20], [0xff, 0xff]);
    }

    #[test]
    fn needs_csum_offsets_beyond_frame_are_rejected() {
        let frame = build(&Spec::new(false, IPPROTO_TCP, 10)).frame;
        let len = frame.len() as u16;
        for (start, off) in [(len, 0), (len + 100, 0), (len - 1, 0), (len - 4, 3), (0, u16::MAX)] {
            let h = VirtioNetHdr {
                flags: F_NEEDS_CSUM,
                csum_start: start,
                csum_offset: off,
                ..Default::default()
            };
            let got = run(&with_vhdr(&h, HDR_LEN, &frame), HDR_LEN, 0);
            assert_eq!(got, Err(OffloadError::BadCsumOffsets), "{start} {off}");
        }
        let h = VirtioNetHdr { flags: F_NEEDS_CSUM, csum_start: len - 2, ..Default::default() };
        assert!(run(&with_vhdr(&h, HDR_LEN, &frame), HDR_LEN, 0).is_ok(), "last two bytes");
    }

    /// Runs a GSO request on `frame` (12-byte header -> port without one); returns the error.
    fn gso_err(frame: &[u8], gso_type: u8, gso_size: u16) -> OffloadError {
        let h = VirtioNetHdr { flags: F_NEEDS_CSUM, gso_type, gso_size, ..Default::default() };
        match run(&with_vhdr(&h, HDR_LEN_MRG, frame), HDR_LEN_MRG, 0) {
            Ok(out) => panic!("expected an error, got {} packets", out.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_gso_requests_are_rejected() {
        let tcp4 = build(&Spec::new(false, IPPROTO_TCP, 3000)).frame;
        let udp4 = build(&Spec::new(false, IPPROTO_UDP, 3000)).frame;
        assert_eq!(gso_err(&tcp4, GSO_TCPV4, 0), OffloadError::BadGso("gso_size is zero"));
        assert_eq!(gso_err(&udp4, GSO_UDP, 7), OffloadError::BadGso("gso_size below 8 for ufo"));
        for bad in [2, 5, 0x7f, GSO_ECN] {
            assert_eq!(gso_err(&tcp4, bad, 1000), OffloadError::BadGso("unknown gso type"));
        }
        let mismatch = OffloadError::BadGso("gso type does not match the ethertype");
        assert_eq!(gso_err(&tcp4, GSO_TCPV6, 1000), mismatch);
        let proto = OffloadError::BadGso("transport protocol does not match the gso type");
        assert_eq!(gso_err(&udp4, GSO_TCPV4, 1000), proto);
        assert_eq!(gso_err(&tcp4, GSO_UDP, 1000), proto);
        assert_eq!(gso_err(&[0u8; 60], GSO_TCPV4, 1000), mismatch, "ethertype 0");
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let tcp4 = build(&Spec::new(false, IPPROTO_TCP, 3000)).frame;
        for cut in [0, 5, 13, 14, 20, 33, 34, 40, 46, 14 + 20 + 31] {
            assert_eq!(gso_err(&tcp4[..cut], GSO_TCPV4, 1000), OffloadError::Truncated, "{cut}");
        }
        let tcp6 = build(&Spec::new(true, IPPROTO_TCP, 100)).frame;
        assert_eq!(gso_err(&tcp6[..14 + 39], GSO_TCPV6, 1000), OffloadError::Truncated);
        let udp4 = build(&Spec::new(false, IPPROTO_UDP, 3000)).frame;
        assert_eq!(gso_err(&udp4[..14 + 20 + 7], GSO_UDP, 1000), OffloadError::Truncated);
        let patch = |off: usize, v: u8| {
            let mut f = tcp4.clone();
            f[off] = v;
            gso_err(&f, GSO_TCPV4, 1000)
        };
        assert_eq!(patch(14, 0x65), OffloadError::Malformed("ip version is not 4"));
        assert_eq!(patch(14, 0x44), OffloadError::Malformed("ipv4 header length below 20"));
        assert_eq!(patch(14 + 6, 0x20), OffloadError::Malformed("ipv4 fragment"));
        assert_eq!(patch(14 + 20 + 12, 0x40), OffloadError::Malformed("tcp data offset below 20"));
        let mut ext = tcp6.clone();
        ext[14 + 6] = 0; // hop-by-hop options
        assert_eq!(
            gso_err(&ext, GSO_TCPV6, 1000),
            OffloadError::Unsupported("ipv6 extension headers")
        );
        let mut qinq = tcp4.clone();
        qinq.splice(12..12, [0x81, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02]);
        assert_eq!(
            gso_err(&qinq, GSO_TCPV4, 1000),
            OffloadError::Unsupported("stacked or 802.1ad vlan tags")
        );
    }

    #[test]
    fn oversized_segments_are_rejected() {
        let tcp4 = build(&Spec::new(false, IPPROTO_TCP, 70_000)).frame;
        assert_eq!(gso_err(&tcp4, GSO_TCPV4, u16::MAX), OffloadError::TooLong);
        let udp4 = build(&Spec::new(false, IPPROTO_UDP, 65_535)).frame;
        assert_eq!(gso_err(&udp4, GSO_UDP, 1480), OffloadError::TooLong);
        let udp4 = build(&Spec::new(false, IPPROTO_UDP, 65_520)).frame;
        assert_eq!(gso_err(&udp4, GSO_UDP, u16::MAX), OffloadError::TooLong);
    }

    #[test]
    fn error_messages_are_lower_case() {
        let errs = [
            OffloadError::BadHeaderLen(3),
            OffloadError::Truncated,
            OffloadError::BadCsumOffsets,
            OffloadError::BadGso("x"),
            OffloadError::Malformed("x"),
            OffloadError::Unsupported("x"),
            OffloadError::TooLong,
        ];
        for e in errs {
            let msg = e.to_string();
            assert_eq!(msg, msg.to_lowercase());
            let _: &dyn std::error::Error = &e;
        }
    }

    fn any_hdr_len() -> impl Strategy<Value = usize> {
        prop_oneof![Just(0usize), Just(HDR_LEN), Just(HDR_LEN_MRG), 0usize..16]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            pkt in proptest::collection::vec(any::<u8>(), 0..200),
            src in any_hdr_len(),
            dst in any_hdr_len(),
        ) {
            let _ = run(&pkt, src, dst);
        }

        #[test]
        fn mutated_offload_packets_never_panic(
            v6 in any::<bool>(),
            udp in any::<bool>(),
            vlan in any::<bool>(),
            len in 0usize..3000,
            hdr in any::<[u8; 12]>(),
            gso_type in prop_oneof![Just(GSO_TCPV4), Just(GSO_TCPV6), Just(GSO_UDP), any::<u8>()],
            edits in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut s = Spec::new(v6, if udp { IPPROTO_UDP } else { IPPROTO_TCP }, len);
            s.vlan = vlan;
            let mut pkt = hdr.to_vec();
            pkt[1] = gso_type;
            pkt.extend(build(&s).frame);
            for (off, v) in edits {
                if let Some(b) = pkt.get_mut(off) {
                    *b = v;
                }
            }
            pkt.truncate(cut.index(pkt.len() + 1));
            if let Ok(out) = run(&pkt, HDR_LEN_MRG, 0) {
                prop_assert!(!out.is_empty());
            }
        }

        #[test]
        fn tso_invariants_hold(
            v6 in any::<bool>(),
            vlan in any::<bool>(),
            len in 0usize..5000,
            mss in 1u16..1600,
            seq in any::<u32>(),
            id in any::<u16>(),
            flags in any::<u8>(),
        ) {
            let mut s = Spec::new(v6, IPPROTO_TCP, len);
            (s.vlan, s.seq, s.id, s.tcp_flags) = (vlan, seq, id, flags);
            tso_check(&s, mss, true);
        }

        #[test]
        fn ufo_reassembles(len in 0usize..5000, gso in 8u16..2000, opts in 0usize..10) {
            let mut s = Spec::new(false, IPPROTO_UDP, len);
            s.ip_opts = opts * 4;
            let (b, frags) = ufo_run(&s, gso);
            let frag = usize::from(gso) & !7;
            let body = if frags.len() == 1 {
                frags[0][b.l4..].to_vec()
            } else {
                reassemble(&s, &b, &frags, frag)
            };
            prop_assert_eq!(&body[UDP_HLEN..], &s.payload[..]);
            let mut whole = frags[0][..b.l4].to_vec();
            whole.extend(&body);
            prop_assert!(l4_valid(&whole, &b, false, IPPROTO_UDP));
        }
    }
}
