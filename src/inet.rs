//! The Internet checksum (RFC 1071), shared by the device model's offloads and the stack-mode
//! scheme's software checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, ptnet.md §10). No dependencies.

/// Internet checksum (RFC 1071) of `data`: the complement of [`ones_complement_sum`]. Store the
/// result as is; recomputing it over data that contains a correct checksum gives 0.
pub fn internet_checksum(data: &[u8], initial: u32) -> u16 {
    !ones_complement_sum(data, initial)
}

/// One's-complement sum of `data` read as big-endian 16-bit words (an odd last byte is padded
/// with a zero byte), plus `initial` (e.g. a pseudo-header sum), folded to 16 bits and not
/// complemented.
pub fn ones_complement_sum(data: &[u8], initial: u32) -> u16 {
    fold(u64::from(initial) + sum_words(data))
}

/// Sum of `data` as big-endian 16-bit words, not folded.
pub fn sum_words(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum: u64 = words.by_ref().map(|w| u64::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a wide sum to 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes a partial checksum in place (`NEEDS_CSUM`, Linux's `skb_checksum_help`): the sum
/// of `frame[start..]` (whose checksum field at `start + offset` holds the pseudo-header sum)
/// is stored at `start + offset`, a zero result as 0xffff (UDP's "no checksum" is 0). Returns
/// `false`, changing nothing, when the field is outside the frame.
pub fn complete_partial(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(at) = start.checked_add(offset) else { return false };
    if start > frame.len() || at + 2 > frame.len() {
        return false;
    }
    let c = internet_checksum(&frame[start..], 0);
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_partial_gives_a_sum_that_checks() {
        let mut f = [0u8; 40];
        for (i, b) in f.iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        f[20..22].copy_from_slice(&[0x12, 0x34]); // pseudo-header sum left by the host
        assert!(complete_partial(&mut f, 10, 10));
        assert_eq!(internet_checksum(&f[10..], 0x1234), 0, "checks with the pseudo-header sum");
        assert!(!complete_partial(&mut f, 39, 1));
        assert!(!complete_partial(&mut f, usize::MAX, 1));
    }
}
