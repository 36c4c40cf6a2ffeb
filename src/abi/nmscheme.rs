//! The contract of the `netmap` scheme (scheme-spec `netmap.md` M3) as constants and the wire
//! form of the `INFO` reply: what the daemon and zero-copy clients share, nothing else.

/// `call` operation: the geometry (M3.1).
pub const OP_INFO: u64 = 1;
/// `call` operation: sync the bound TX rings (M3.2).
pub const OP_TXSYNC: u64 = 2;
/// `call` operation: sync the bound RX rings (M3.3).
pub const OP_RXSYNC: u64 = 3;
/// Size of [`NmInfo`] on the wire.
pub const INFO_LEN: usize = 64;
/// [`NmInfo::version`] of this document.
pub const INFO_VERSION: u32 = 1;

/// The `INFO` reply (M3.1), 64 bytes little endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NmInfo {
    /// Layout version ([`INFO_VERSION`]).
    pub version: u32,
    /// Offset of the port's netmap_if in the region.
    pub nifp_offset: u32,
    /// Bytes of the region.
    pub mem_size: u64,
    /// TX rings of the port.
    pub tx_rings: u32,
    /// RX rings of the port.
    pub rx_rings: u32,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// Buffer size.
    pub buf_size: u32,
    /// Number of buffers (valid indices `2..buf_num`).
    pub buf_num: u32,
    /// virtio-net header length in front of every frame.
    pub vnet_hdr_len: u32,
    /// First bound TX ring.
    pub first_tx: u32,
    /// One past the last bound TX ring.
    pub last_tx: u32,
    /// First bound RX ring.
    pub first_rx: u32,
    /// One past the last bound RX ring.
    pub last_rx: u32,
}

impl NmInfo {
    /// Encodes into `b` (at least [`INFO_LEN`] bytes).
    pub fn encode(&self, b: &mut [u8]) -> bool {
        if b.len() < INFO_LEN {
            return false;
        }
        let w = [
            self.version,
            self.nifp_offset,
            self.mem_size as u32,
            (self.mem_size >> 32) as u32,
            self.tx_rings,
            self.rx_rings,
            self.tx_slots,
            self.rx_slots,
            self.buf_size,
            self.buf_num,
            self.vnet_hdr_len,
            self.first_tx,
            self.last_tx,
            self.first_rx,
            self.last_rx,
            0,
        ];
        for (k, v) in w.iter().enumerate() {
            b[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
        }
        true
    }

    /// Decodes from `b` (at least [`INFO_LEN`] bytes).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < INFO_LEN {
            return None;
        }
        let w = |k: usize| u32::from_le_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]]);
        Some(Self {
            version: w(0),
            nifp_offset: w(1),
            mem_size: w(2) as u64 | (w(3) as u64) << 32,
            tx_rings: w(4),
            rx_rings: w(5),
            tx_slots: w(6),
            rx_slots: w(7),
            buf_size: w(8),
            buf_num: w(9),
            vnet_hdr_len: w(10),
            first_tx: w(11),
            last_tx: w(12),
            first_rx: w(13),
            last_rx: w(14),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips() {
        let i = NmInfo {
            version: 1,
            nifp_offset: 4096,
            mem_size: 1 << 33,
            tx_rings: 2,
            last_rx: 7,
            ..Default::default()
        };
        let mut b = [0u8; INFO_LEN];
        assert!(i.encode(&mut b));
        assert_eq!(NmInfo::decode(&b), Some(i));
        assert!(!i.encode(&mut [0u8; 63]));
        assert_eq!(NmInfo::decode(&b[..63]), None);
    }
}
