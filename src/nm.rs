//! Typed views of the netmap structures in shared memory (spec §7): `netmap_if`, `netmap_ring`
//! and its slots, over a [`Region`]. Used by the device model, the driver and zero-copy clients.
//!
//! A view checks once, at construction, that the whole structure lies inside the region; its
//! getters then read fields at fixed offsets (values, never references). Getters return what the
//! peer wrote, unvalidated: callers copy a value once and validate it with [`crate::ring`] before
//! acting on it.

use crate::abi::netmap::*;
use crate::shm::{Region, ShmError, Words, WordsRef};
use core::fmt;

/// Errors building a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewError {
    /// The structure does not fit in the region.
    Shm(ShmError),
    /// A header field makes the structure impossible (e.g. a ring with < 2 slots).
    BadField {
        /// Field name.
        field: &'static str,
        /// Value read.
        value: u64,
    },
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(e) => write!(f, "netmap structure outside the region: {e}"),
            Self::BadField { field, value } => write!(f, "invalid {field} = {value:#x}"),
        }
    }
}

impl std::error::Error for ViewError {}

impl From<ShmError> for ViewError {
    fn from(e: ShmError) -> Self {
        Self::Shm(e)
    }
}

/// A `netmap_slot` copied out of shared memory (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    /// Buffer index.
    pub buf_idx: u32,
    /// Fragment length.
    pub len: u16,
    /// `NS_*` flags.
    pub flags: u16,
}

/// A view of one `netmap_ring` (header + `num_slots` slots).
#[derive(Clone, Debug)]
pub struct RingView {
    r: Region,
    num_slots: u32,
    /// The slot array as 64-bit words (slot `i` is words `2i` and `2i + 1`), if the ring is
    /// 8-aligned (netmap's always are; a host's odd `ring_ofs` gets the field-by-field path):
    /// bounds and alignment are checked once here, so the slot accesses of the hot loops cost
    /// one compare each instead of a region check.
    words: Option<Words>,
}

impl RingView {
    /// Views the ring at the start of `region`, reading `num_slots` from its header (copied once)
    /// and checking that every slot lies inside `region`.
    pub fn new(region: &Region) -> Result<Self, ViewError> {
        let n = region.try_load_u32(RING_NUM_SLOTS)?;
        Self::with_slots(region, n)
    }

    /// Views the ring at the start of `region` with a known number of slots (the value a caller
    /// already validated, e.g. from a device register), ignoring the header's `num_slots`.
    pub fn with_slots(region: &Region, num_slots: u32) -> Result<Self, ViewError> {
        if num_slots < 2 {
            return Err(ViewError::BadField { field: "num_slots", value: num_slots as u64 });
        }
        let size = ring_size(num_slots);
        let r = region.sub(0, size)?;
        let words = r.words(RING_HDR_SIZE, 2 * num_slots as usize).ok();
        Ok(Self { r, num_slots, words })
    }

    /// Number of slots this view was built with.
    pub fn num_slots(&self) -> u32 {
        self.num_slots
    }

    /// The underlying window.
    pub fn region(&self) -> &Region {
        &self.r
    }

    /// The slots for a hot loop, if the ring is 8-aligned: see [`Slots`].
    #[inline]
    pub fn slots(&self) -> Option<Slots<'_>> {
        self.words.as_ref().map(|w| Slots { w: w.borrow() })
    }

    fn slot_off(&self, i: u32) -> usize {
        RING_HDR_SIZE + SLOT_SIZE * index(i, self.num_slots)
    }

    /// Reads slot `i` (taken modulo N, so a bad index cannot leave the ring): `buf_idx`, `len`
    /// and `flags` are the slot's first 8 bytes, read as one 64-bit load (one bounds check; the
    /// three values are of one moment), or field by field if the ring is not 8-aligned.
    #[inline]
    pub fn slot(&self, i: u32) -> Slot {
        const _: () = assert!(SLOT_BUF_IDX == 0 && SLOT_LEN == 4 && SLOT_FLAGS == 6);
        const _: () = assert!(SLOT_SIZE == 16 && RING_HDR_SIZE.is_multiple_of(8));
        match self.slots() {
            Some(s) => s.slot(index(i, self.num_slots) as u32),
            None => self.slot_by_fields(i),
        }
    }

    /// Writes slot `i` (modulo N) as one 64-bit store of its first 8 bytes (field by field if
    /// the ring is not 8-aligned); `ptr` is left alone.
    #[inline]
    pub fn set_slot(&self, i: u32, s: Slot) {
        match self.slots() {
            Some(w) => w.set_slot(index(i, self.num_slots) as u32, s),
            None => self.set_slot_by_fields(i, s),
        }
    }

    /// Writes slot `i`'s `len` and `flags` only (one 32-bit store).
    #[inline]
    pub fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        match self.slots() {
            Some(w) => w.set_len_flags(index(i, self.num_slots) as u32, len, flags),
            None => self.r.store_u32(self.slot_off(i) + SLOT_LEN, pack_len_flags(len, flags)),
        }
    }

    /// [`RingView::slot`] on a ring that is not 8-aligned (kept out of the hot path).
    #[cold]
    #[inline(never)]
    fn slot_by_fields(&self, i: u32) -> Slot {
        let o = self.slot_off(i);
        Slot {
            buf_idx: self.r.load_u32(o + SLOT_BUF_IDX),
            len: self.r.load_u16(o + SLOT_LEN),
            flags: self.r.load_u16(o + SLOT_FLAGS),
        }
    }

    /// [`RingView::set_slot`] on a ring that is not 8-aligned.
    #[cold]
    #[inline(never)]
    fn set_slot_by_fields(&self, i: u32, s: Slot) {
        let o = self.slot_off(i);
        self.r.store_u32(o + SLOT_BUF_IDX, s.buf_idx);
        self.r.store_u16(o + SLOT_LEN, s.len);
        self.r.store_u16(o + SLOT_FLAGS, s.flags);
    }

    /// Writes slot `i`'s `ptr` field.
    pub fn set_slot_ptr(&self, i: u32, ptr: u64) {
        self.r.store_u64(self.slot_off(i) + SLOT_PTR, ptr);
    }

    /// `head` as stored in the shared ring.
    pub fn head(&self) -> u32 {
        self.r.load_u32(RING_HEAD)
    }
    /// `cur` as stored in the shared ring.
    pub fn cur(&self) -> u32 {
        self.r.load_u32(RING_CUR)
    }
    /// `tail` as stored in the shared ring.
    pub fn tail(&self) -> u32 {
        self.r.load_u32(RING_TAIL)
    }
    /// Stores `head`.
    pub fn set_head(&self, v: u32) {
        self.r.store_u32(RING_HEAD, v)
    }
    /// Stores `cur`.
    pub fn set_cur(&self, v: u32) {
        self.r.store_u32(RING_CUR, v)
    }
    /// Stores `tail`.
    pub fn set_tail(&self, v: u32) {
        self.r.store_u32(RING_TAIL, v)
    }
    /// `buf_ofs` (relative to this ring).
    pub fn buf_ofs(&self) -> i64 {
        self.r.load_u64(RING_BUF_OFS) as i64
    }
    /// `nr_buf_size`.
    pub fn nr_buf_size(&self) -> u32 {
        self.r.load_u32(RING_NR_BUF_SIZE)
    }
    /// `num_slots` as stored in the header (may differ from [`RingView::num_slots`] if the peer
    /// rewrote it).
    pub fn hdr_num_slots(&self) -> u32 {
        self.r.load_u32(RING_NUM_SLOTS)
    }
    /// `ringid`.
    pub fn ringid(&self) -> u16 {
        self.r.load_u16(RING_RINGID)
    }
    /// `dir` (0 TX, 1 RX).
    pub fn dir(&self) -> u16 {
        self.r.load_u16(RING_DIR)
    }

    /// Host-side initialisation of the constant header fields and the slots (§7.3, §7.4:
    /// every slot gets `len` = buffer size, `flags` = 0, `ptr` = 0) with the given buffers.
    pub fn init(&self, buf_ofs: i64, buf_size: u32, ringid: u16, dir: u16, bufs: &[u32]) {
        let _ = self.r.fill(0, RING_HDR_SIZE, 0);
        self.r.store_u64(RING_BUF_OFS, buf_ofs as u64);
        self.r.store_u32(RING_NUM_SLOTS, self.num_slots);
        self.r.store_u32(RING_NR_BUF_SIZE, buf_size);
        self.r.store_u16(RING_RINGID, ringid);
        self.r.store_u16(RING_DIR, dir);
        for i in 0..self.num_slots {
            let b = bufs.get(i as usize).copied().unwrap_or(0);
            self.set_slot(
                i,
                Slot { buf_idx: b, len: buf_size.min(u16::MAX as u32) as u16, flags: 0 },
            );
            self.set_slot_ptr(i, 0);
        }
    }
}

/// `i` modulo `n`; the division only for an index out of range (callers pass in-range ones).
#[inline]
fn index(i: u32, n: u32) -> usize {
    (if i < n { i } else { i % n }) as usize
}

/// A slot's first 8 bytes, read as one native-endian word, as `buf_idx`, `len` and `flags`.
#[inline]
fn unpack(v: u64) -> Slot {
    let b = v.to_ne_bytes();
    Slot {
        buf_idx: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        len: u16::from_ne_bytes([b[4], b[5]]),
        flags: u16::from_ne_bytes([b[6], b[7]]),
    }
}

/// A slot's first 8 bytes as one native-endian word.
#[inline]
fn pack(s: Slot) -> u64 {
    let (b, l, f) = (s.buf_idx.to_ne_bytes(), s.len.to_ne_bytes(), s.flags.to_ne_bytes());
    u64::from_ne_bytes([b[0], b[1], b[2], b[3], l[0], l[1], f[0], f[1]])
}

/// A slot's `len` and `flags` (bytes 4..8) as one native-endian 32-bit word.
#[inline]
fn pack_len_flags(len: u16, flags: u16) -> u32 {
    let (l, f) = (len.to_ne_bytes(), flags.to_ne_bytes());
    u32::from_ne_bytes([l[0], l[1], f[0], f[1]])
}

/// Slot access by index, through a [`RingView`] (an index ≥ N is taken modulo N) or the
/// [`Slots`] taken from one (an index ≥ N reads an empty slot and drops a write): hot loops,
/// whose indices come from validated krings and stay below N, are written once over this and
/// run on `Slots` when the ring allows it.
pub trait SlotAccess {
    /// Reads slot `i` (`buf_idx`, `len`, `flags` of one moment).
    fn slot(&self, i: u32) -> Slot;
    /// Writes slot `i`'s first 8 bytes (`ptr` is left alone).
    fn set_slot(&self, i: u32, s: Slot);
    /// Writes slot `i`'s `len` and `flags` only.
    fn set_len_flags(&self, i: u32, len: u16, flags: u16);
}

impl SlotAccess for &RingView {
    #[inline]
    fn slot(&self, i: u32) -> Slot {
        RingView::slot(self, i)
    }
    #[inline]
    fn set_slot(&self, i: u32, s: Slot) {
        RingView::set_slot(self, i, s)
    }
    #[inline]
    fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        RingView::set_len_flags(self, i, len, flags)
    }
}

/// The slot array of an 8-aligned ring, borrowed from its [`RingView`] ([`RingView::slots`]):
/// the array's word pointer and length in a `Copy` value a loop keeps in registers. An access
/// is the array's index compare and one atomic load or store: slot `i` is words `2i`
/// (`buf_idx`, `len`, `flags`) and `2i + 1` (`ptr`); an index ≥ N is outside the array, so it
/// reads an empty slot and drops a write.
#[derive(Clone, Copy, Debug)]
pub struct Slots<'a> {
    w: WordsRef<'a>,
}

impl SlotAccess for Slots<'_> {
    #[inline]
    fn slot(&self, i: u32) -> Slot {
        unpack(self.w.load(2 * i as usize))
    }
    #[inline]
    fn set_slot(&self, i: u32, s: Slot) {
        self.w.store(2 * i as usize, pack(s))
    }
    #[inline]
    fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        self.w.store_upper_u32(2 * i as usize, pack_len_flags(len, flags))
    }
}

/// A view of a `netmap_if` (§7.2).
#[derive(Clone, Debug)]
pub struct IfView {
    r: Region,
    n_ofs: usize,
}

/// Ring counts read once from a `netmap_if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfCounts {
    /// `ni_tx_rings`.
    pub tx: u32,
    /// `ni_rx_rings`.
    pub rx: u32,
    /// `ni_host_tx_rings`.
    pub host_tx: u32,
    /// `ni_host_rx_rings`.
    pub host_rx: u32,
}

impl IfCounts {
    /// Total number of `ring_ofs` entries, `None` on overflow.
    pub fn total(&self) -> Option<usize> {
        (self.tx as usize)
            .checked_add(self.rx as usize)?
            .checked_add(self.host_tx as usize)?
            .checked_add(self.host_rx as usize)
    }
}

impl IfView {
    /// Views the netmap_if at the start of `region`; reads its ring counts once and checks that
    /// the `ring_ofs[]` array fits in the region.
    pub fn new(region: &Region) -> Result<(Self, IfCounts), ViewError> {
        let head = region.sub(0, IF_RING_OFS)?;
        let c = IfCounts {
            tx: head.load_u32(IF_TX_RINGS),
            rx: head.load_u32(IF_RX_RINGS),
            host_tx: head.load_u32(IF_HOST_TX_RINGS),
            host_rx: head.load_u32(IF_HOST_RX_RINGS),
        };
        let n = c.total().ok_or(ViewError::BadField { field: "ring count", value: u64::MAX })?;
        let size = n.checked_mul(8).and_then(|s| s.checked_add(IF_RING_OFS));
        let size = size.ok_or(ViewError::BadField { field: "ring count", value: n as u64 })?;
        let r = region.sub(0, size)?;
        Ok((Self { r, n_ofs: n }, c))
    }

    /// `ring_ofs[k]` (signed, relative to the netmap_if); `None` if `k` is out of range.
    pub fn ring_ofs(&self, k: usize) -> Option<i64> {
        (k < self.n_ofs).then(|| self.r.load_u64(IF_RING_OFS + 8 * k) as i64)
    }

    /// Host-side initialisation: name, counts, flags and ring offsets.
    pub fn init(
        region: &Region,
        name: &str,
        c: IfCounts,
        ring_ofs: &[i64],
    ) -> Result<(), ShmError> {
        let n = ring_ofs.len();
        let r = region.sub(0, if_size(n))?;
        r.fill(0, if_size(n), 0)?;
        let mut nm = [0u8; IFNAMSIZ];
        let b = name.as_bytes();
        let k = b.len().min(IFNAMSIZ - 1);
        nm[..k].copy_from_slice(&b[..k]);
        r.write_bytes(0, &nm)?;
        r.try_store_u32(IF_FLAGS, NI_PRIV_MEM)?;
        r.try_store_u32(IF_TX_RINGS, c.tx)?;
        r.try_store_u32(IF_RX_RINGS, c.rx)?;
        r.try_store_u32(IF_HOST_TX_RINGS, c.host_tx)?;
        r.try_store_u32(IF_HOST_RX_RINGS, c.host_rx)?;
        for (k, o) in ring_ofs.iter().enumerate() {
            r.try_store_u64(IF_RING_OFS + 8 * k, *o as u64)?;
        }
        Ok(())
    }
}

/// Index of TX ring `i` in `ring_ofs[]` (§7.2: NIC TX, host TX, NIC RX, host RX).
pub fn tx_ring_ofs_index(i: u32) -> usize {
    i as usize
}

/// Index of RX ring `i` in `ring_ofs[]`, using the netmap_if's own counts (§7.2 pitfall).
pub fn rx_ring_ofs_index(c: &IfCounts, i: u32) -> usize {
    c.tx as usize + c.host_tx as usize + i as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_view_checks_size_and_round_trips_slots() {
        let mem = Region::alloc(ring_size(8)).unwrap();
        let v = RingView::with_slots(&mem, 8).unwrap();
        v.init(4096, 2048, 3, DIR_RX, &[2, 3, 4, 5, 6, 7, 8, 9]);
        let v = RingView::new(&mem).unwrap();
        assert_eq!((v.num_slots(), v.nr_buf_size(), v.ringid(), v.dir()), (8, 2048, 3, 1));
        assert_eq!(v.buf_ofs(), 4096);
        assert_eq!(v.slot(7), Slot { buf_idx: 9, len: 2048, flags: 0 });
        assert_eq!(v.slot(8), v.slot(0), "indices are taken modulo N");
        v.set_slot(1, Slot { buf_idx: 42, len: 60, flags: NS_MOREFRAG });
        assert_eq!(mem.load_u32(256 + 16), 42);
        assert_eq!(mem.load_u16(256 + 16 + 4), 60);
        assert_eq!(mem.load_u16(256 + 16 + 6), NS_MOREFRAG);
        assert!(RingView::with_slots(&mem, 9).is_err(), "slots beyond the region");
        assert!(RingView::with_slots(&mem, 1).is_err());
        mem.store_u32(RING_NUM_SLOTS, u32::MAX);
        assert!(RingView::new(&mem).is_err(), "a hostile num_slots is refused");
    }

    /// Slots are read and written as one 64-bit access (fields in netmap's order, `ptr`
    /// untouched), and field by field on a ring that is only 4-aligned.
    #[test]
    fn slot_access_whole_and_on_a_4_aligned_ring() {
        let mem = Region::alloc(ring_size(8) + 8).unwrap();
        for base in [0usize, 4] {
            let r = mem.sub(base, ring_size(8)).unwrap();
            let v = RingView::with_slots(&r, 8).unwrap();
            let o = 256 + 3 * 16;
            r.store_u32(o + 8, 0x5566_7788); // ptr, as two 32-bit halves (4-aligned)
            r.store_u32(o + 12, 0x1122_3344);
            v.set_slot(3, Slot { buf_idx: 0xdead_beef, len: 1514, flags: NS_MOREFRAG | 0x100 });
            assert_eq!(r.load_u32(o), 0xdead_beef, "base {base}");
            assert_eq!(r.load_u16(o + 4), 1514);
            assert_eq!(r.load_u16(o + 6), NS_MOREFRAG | 0x100);
            assert_eq!((r.load_u32(o + 8), r.load_u32(o + 12)), (0x5566_7788, 0x1122_3344));
            v.set_len_flags(3, 60, 0);
            assert_eq!(v.slot(3), Slot { buf_idx: 0xdead_beef, len: 60, flags: 0 });
            assert_eq!(v.slot(11), v.slot(3), "modulo N");
            assert_eq!(v.slots().is_some(), base == 0, "the word array only on an 8-aligned ring");
        }
    }

    /// [`Slots`] reads and writes what the view does, at the same bytes; an index ≥ N reads an
    /// empty slot and writes nothing, neither past the ring nor (modulo N) inside it.
    #[test]
    fn slots_match_the_view_and_stay_in_the_ring() {
        let mem = Region::alloc(ring_size(8) + 64).unwrap();
        let r = mem.sub(0, ring_size(8)).unwrap();
        let v = RingView::with_slots(&r, 8).unwrap();
        let s = v.slots().unwrap();
        let a = Slot { buf_idx: 0x0102_0304, len: 1514, flags: NS_MOREFRAG };
        s.set_slot(7, a);
        assert_eq!((v.slot(7), s.slot(7)), (a, a));
        assert_eq!(r.load_u32(256 + 7 * 16), 0x0102_0304, "slot 7's buf_idx at its offset");
        s.set_len_flags(7, 60, 0);
        assert_eq!(v.slot(7), Slot { buf_idx: 0x0102_0304, len: 60, flags: 0 });
        v.set_slot(2, a);
        assert_eq!(s.slot(2), a);
        assert_eq!(s.slot(8), Slot { buf_idx: 0, len: 0, flags: 0 }, "past the ring: empty");
        s.set_slot(8, a);
        s.set_len_flags(9, 1, 1);
        s.set_slot(u32::MAX, a);
        let mut tail = [0u8; 64];
        mem.read_bytes(ring_size(8), &mut tail).unwrap();
        assert_eq!(tail, [0u8; 64], "nothing written after the ring");
        assert_eq!(v.slot(0), Slot { buf_idx: 0, len: 0, flags: 0 }, "nor wrapped into it");
        assert_eq!(v.slot(1), Slot { buf_idx: 0, len: 0, flags: 0 });
    }

    #[test]
    fn if_view_reads_counts_and_offsets() {
        let mem = Region::alloc(1024).unwrap();
        let c = IfCounts { tx: 2, rx: 1, host_tx: 1, host_rx: 1 };
        IfView::init(&mem, "vale0:1", c, &[100, 200, 0, 300, 0]).unwrap();
        let (v, c2) = IfView::new(&mem).unwrap();
        assert_eq!(c2, c);
        assert_eq!(v.ring_ofs(rx_ring_ofs_index(&c, 0)), Some(300));
        assert_eq!(v.ring_ofs(tx_ring_ofs_index(1)), Some(200));
        assert_eq!(v.ring_ofs(5), None);
        mem.store_u32(IF_RX_RINGS, u32::MAX);
        assert!(IfView::new(&mem).is_err(), "counts that do not fit are refused");
    }
}
