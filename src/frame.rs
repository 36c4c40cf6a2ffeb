//! The one self-checking test frame of the project: the main job, the zero-copy self test, the
//! model's script guest and source endpoint, and the tests all build and check frames here.
//! Pure and low: it depends on nothing else in the crate, so both sides of the layering (the
//! guest's driver applications and the host's device model) may use it.
//!
//! A test frame is a well-formed Ethernet/IPv4/UDP frame (tshark finds nothing malformed in a
//! pcap of them) whose UDP payload starts with a magic, a sequence number and a checksum:
//!
//! ```text
//!  0..6   destination MAC          14..34  IPv4: 10.0.0.1 -> 10.0.0.2, total length = len - 14,
//!  6..12  source MAC                       ID = low 16 bits of seq, DF, TTL 64, UDP, checksum
//! 12..14  ethertype 0x0800         34..42  UDP: port 0x5074 -> 9 (discard), length, checksum 0
//! 42..46  MAGIC "PtSt"             46..50  checksum (u32, big endian): fold of bytes 50.., xor
//! 50..58  sequence number (u64 BE)         the frame length
//! 58..    payload: 64-bit words derived from (seq, word index), so frames differ everywhere
//! ```
//!
//! A frame is *ours* (a test frame) when its ethertype, IPv4 protocol and magic match. It is
//! *intact* when every other byte but the MAC addresses (a reflect endpoint swaps them) checks
//! out: the IPv4 header by its own checksum and the total length by the frame's, the UDP header
//! by its fixed ports, length and zero checksum, the sequence number and payload by the frame
//! checksum. That checksum is one fold ([`fold`]) over one run of bytes, eight at a time: the
//! frames are made and checked once per packet on the measured paths (the byte-serial FNV of
//! earlier test frames cost two thirds of a main-job run). Length policies (which lengths a
//! run sends) belong to the applications.

use core::fmt::Write as _;

/// Shortest frame (Ethernet minimum without FCS).
pub const MIN_LEN: usize = 60;
/// Longest frame (the IPv4 total length field bounds it).
pub const MAX_LEN: usize = 65_535;
/// Bytes before the payload: Ethernet, IPv4 and UDP headers, magic, sequence and checksum.
pub const HEADER_LEN: usize = 58;
/// Marks a test frame at the start of the UDP payload.
pub const MAGIC: [u8; 4] = *b"PtSt";
/// Destination of the self test's frames: the MAC address of ptnet-host's reflect endpoint
/// (locally administered; the host source sends from 02:00:00:00:ff:01).
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x02];
/// UDP source port of test frames.
pub const UDP_SRC_PORT: u16 = 0x5074;
/// UDP destination port of test frames (discard).
pub const UDP_DST_PORT: u16 = 9;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IP: usize = 14;
const UDP: usize = 34;
const MAGIC_AT: usize = 42;
const CSUM: usize = 46;
const SEQ: usize = 50;
const SEED: u64 = 0x243f_6a88_85a3_08d3;

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(s, "{sep}{b:02x}");
    }
    s
}

/// Folds `b` eight bytes at a time into `h` (xor, multiply, xorshift: every bit counts).
pub fn fold(mut h: u64, b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(w) ^ b.len() as u64).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 32)
}

/// The checksum field of frame `f` (no virtio-net header, at least [`HEADER_LEN`] bytes).
fn checksum(f: &[u8]) -> u32 {
    (fold(SEED, &f[SEQ..]) as u32) ^ f.len() as u32
}

/// RFC 1071 checksum of an IPv4 header (0 when the header holds a correct one).
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(c[1])).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Appends test frame `seq` of `len` bytes (clamped to [`MIN_LEN`]..=[`MAX_LEN`]) to `f` (after
/// what it holds, e.g. a virtio-net header).
pub fn write(f: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) {
    let len = len.clamp(MIN_LEN, MAX_LEN);
    let start = f.len();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_IPV4);
    let ip_len = (len - IP) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&UDP_SRC_PORT.to_be_bytes());
    f.extend_from_slice(&UDP_DST_PORT.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed on IPv4)
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&seq.to_be_bytes());
    let body = f.len();
    f.resize(start + len, 0);
    for (i, c) in f[body..].chunks_mut(8).enumerate() {
        let i = i as u64;
        let w = (seq ^ (i << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i;
        c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
    }
    let c = checksum(&f[start..]);
    f[start + CSUM..start + CSUM + 4].copy_from_slice(&c.to_be_bytes());
}

/// [`write()`] into a new vector, without virtio-net header.
pub fn build(dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.clamp(MIN_LEN, MAX_LEN));
    write(&mut f, dst, src, seq, len);
    f
}

/// What a received frame (virtio-net header already stripped) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// An intact test frame with this sequence number.
    Ok(u64),
    /// A test frame (ethertype, IPv4 protocol and magic match) that is damaged.
    Corrupt,
    /// Not a test frame.
    Foreign,
}

impl Check {
    /// The sequence number of an intact frame.
    pub fn seq(self) -> Option<u64> {
        match self {
            Self::Ok(s) => Some(s),
            _ => None,
        }
    }
}

/// `true` if `f` is a test frame (ethertype IPv4, protocol UDP, [`MAGIC`]), intact or not.
pub fn is_test_frame(f: &[u8]) -> bool {
    f.len() >= HEADER_LEN
        && f[12..14] == ETHERTYPE_IPV4
        && f[IP + 9] == 17
        && f[MAGIC_AT..MAGIC_AT + 4] == MAGIC
}

/// Checks a frame (virtio-net header stripped): see the module doc for "test frame" and
/// "intact".
pub fn check(f: &[u8]) -> Check {
    if !is_test_frame(f) {
        return Check::Foreign;
    }
    let be16 = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    let ip_len = be16(IP + 2) as usize;
    let mut w = [0u8; 4];
    w.copy_from_slice(&f[CSUM..CSUM + 4]);
    if f[IP] != 0x45
        || ip_len + IP != f.len()
        || f.len() < MIN_LEN
        || ipv4_checksum(&f[IP..IP + 20]) != 0
        || (be16(UDP), be16(UDP + 2)) != (UDP_SRC_PORT, UDP_DST_PORT)
        || be16(UDP + 4) as usize != ip_len - 20
        || be16(UDP + 6) != 0
        || u32::from_be_bytes(w) != checksum(f)
    {
        return Check::Corrupt;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&f[SEQ..SEQ + 8]);
    Check::Ok(u64::from_be_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn frames_round_trip_and_every_damaged_byte_is_caught() {
        let mut f = Vec::new();
        for (seq, len) in [(0u64, 10usize), (7, 60), (9, 1514), (123_456, 9000), (1 << 40, 61)] {
            f = build(PEER_MAC, A, seq, len);
            assert_eq!(f.len(), len.max(MIN_LEN));
            assert_eq!((&f[..6], &f[6..12]), (&PEER_MAC[..], &A[..]));
            assert_eq!(check(&f), Check::Ok(seq));
            for at in 12..f.len() {
                let mut bad = f.clone();
                bad[at] ^= 0x10;
                let identity = [12, 13, IP + 9, 42, 43, 44, 45].contains(&at);
                let want = if identity { Check::Foreign } else { Check::Corrupt };
                assert_eq!(check(&bad), want, "byte {at} of {len} flipped");
            }
            assert_eq!(check(&f[..f.len() - 1]), Check::Corrupt, "shortened");
        }
        assert_eq!(check(&f[..HEADER_LEN - 1]), Check::Foreign, "too short for a test frame");
    }

    #[test]
    fn addresses_are_outside_the_checksum_and_headers_are_valid() {
        let f = build(PEER_MAC, A, 5, 100);
        let mut swapped = f.clone();
        swapped[..6].copy_from_slice(&A);
        swapped[6..12].copy_from_slice(&PEER_MAC);
        assert_eq!(check(&swapped), Check::Ok(5), "a reflect endpoint swaps the addresses");
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 86, "IPv4 total length");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 66, "UDP length");
        let mut v = vec![0xee; 12];
        write(&mut v, PEER_MAC, A, 5, 100);
        assert!(v[..12].iter().all(|&b| b == 0xee), "appended after what was there");
        assert_eq!(&v[12..], &f[..]);
        assert_ne!(build(PEER_MAC, A, 6, 100)[HEADER_LEN..], f[HEADER_LEN..]);
    }

    #[test]
    fn other_frames_are_foreign() {
        let mut raw = vec![0xff; 6];
        raw.extend_from_slice(&A);
        raw.extend_from_slice(&[0x88, 0xb5]);
        raw.resize(60, 0);
        assert_eq!(check(&raw), Check::Foreign);
        assert!(!is_test_frame(&raw));
        assert_eq!(Check::Foreign.seq(), None);
        assert_eq!(Check::Ok(3).seq(), Some(3));
    }

    #[test]
    fn mac_text() {
        assert_eq!(mac_string(PEER_MAC), "02:00:00:00:ff:02");
        assert_eq!(mac_string([0x52, 0x54, 0, 0x12, 0x34, 0x56]), "52:54:00:12:34:56");
    }
}
