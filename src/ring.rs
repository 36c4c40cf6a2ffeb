//! netmap ring arithmetic and the validation chains of spec §7.5.
//!
//! A ring has N slots, indices in `0..N`, and N is "not necessarily a power of two" (§7.3), so
//! everything is computed modulo N without masks. One slot is always kept empty.
//!
//! The validation chains are netmap's prologue checks written as *circular order*: `a ≤ b ≤ c`
//! means that walking forward from `a` one meets `b` no later than `c`:
//!
//! ```text
//!  TX (host checks the guest):  hwcur ≤ rhead ≤ head ≤ cur ≤ rtail ≤ hwtail
//!  RX (host checks the guest):  hwcur ≤ head ≤ cur ≤ hwtail
//! ```
//!
//! Every value from the peer is copied once into a [`RingSnapshot`] (or plain integers), checked
//! here, and only then used.

use core::fmt;

/// Errors of ring validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// An index is not below the number of slots.
    IndexOutOfRange {
        /// Which index.
        what: &'static str,
        /// Its value.
        idx: u32,
        /// N.
        num_slots: u32,
    },
    /// The indices are in range but violate the circular order of §7.5.
    OrderViolation {
        /// Which chain failed.
        what: &'static str,
    },
    /// N is 0 or 1 (a ring needs one empty slot plus one usable).
    BadSize(u32),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { what, idx, num_slots } => {
                write!(f, "{what} = {idx} out of range for a ring of {num_slots} slots")
            }
            Self::OrderViolation { what } => write!(f, "ring indices out of order: {what}"),
            Self::BadSize(n) => write!(f, "invalid ring size {n}"),
        }
    }
}

impl std::error::Error for RingError {}

/// `next(i) = (i + 1) mod n` (`nm_ring_next`). Requires `i < n`.
#[inline]
pub fn next(i: u32, n: u32) -> u32 {
    if i + 1 >= n {
        0
    } else {
        i + 1
    }
}

/// `prev(i) = (i − 1) mod n`. Requires `i < n`.
#[inline]
pub fn prev(i: u32, n: u32) -> u32 {
    if i == 0 {
        n - 1
    } else {
        i - 1
    }
}

/// `(i + k) mod n` for `i < n`, `k ≤ n`.
#[inline]
pub fn add(i: u32, k: u32, n: u32) -> u32 {
    let s = i as u64 + k as u64;
    (s % n as u64) as u32
}

/// Forward distance from `from` to `to`: `(to − from) mod n`. Requires both `< n`.
#[inline]
pub fn dist(from: u32, to: u32, n: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        n - from + to
    }
}

/// `nm_ring_space`: slots available to the user, `(tail − head) mod n` (§7.5).
#[inline]
pub fn space(head: u32, tail: u32, n: u32) -> u32 {
    dist(head, tail, n)
}

/// `true` if walking forward from `a` meets `b` no later than `c` (all `< n`).
#[inline]
pub fn in_order(a: u32, b: u32, c: u32, n: u32) -> bool {
    dist(a, b, n) <= dist(a, c, n)
}

/// `true` if the given indices are in circular order starting at the first one.
pub fn chain_in_order(chain: &[u32], n: u32) -> bool {
    let Some(&first) = chain.first() else {
        return true;
    };
    let mut last = 0;
    for &x in chain {
        let d = dist(first, x, n);
        if d < last {
            return false;
        }
        last = d;
    }
    true
}

/// Checks that `idx < n`.
#[inline]
pub fn check_index(what: &'static str, idx: u32, n: u32) -> Result<u32, RingError> {
    if idx < n {
        Ok(idx)
    } else {
        Err(RingError::IndexOutOfRange { what, idx, num_slots: n })
    }
}

/// Checks a ring size (≥ 2 slots).
pub fn check_size(n: u32) -> Result<u32, RingError> {
    if n >= 2 {
        Ok(n)
    } else {
        Err(RingError::BadSize(n))
    }
}

/// The kernel-side ("kring") state of one ring: what the host last published and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kring {
    /// Number of slots.
    pub num_slots: u32,
    /// `nr_hwcur`: next slot the kernel processes.
    pub hwcur: u32,
    /// `nr_hwtail`: first slot owned by the kernel.
    pub hwtail: u32,
    /// Last validated user head.
    pub rhead: u32,
    /// Last validated user cur.
    pub rcur: u32,
    /// Last tail given to the user.
    pub rtail: u32,
}

/// Indices copied once from the peer (the guest's head/cur, or the host's hwcur/hwtail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingSnapshot {
    /// head (or hwcur).
    pub head: u32,
    /// cur (or hwtail).
    pub cur: u32,
}

impl Kring {
    /// A fresh TX kring (§5.3: head = cur = hwcur = 0, hwtail = N−1).
    pub fn new_tx(n: u32) -> Self {
        Self { num_slots: n, hwtail: n - 1, rtail: n - 1, ..Self::default() }
    }

    /// A fresh RX kring (§5.3: all 0).
    pub fn new_rx(n: u32) -> Self {
        Self { num_slots: n, ..Self::default() }
    }

    /// netmap's TX prologue (§7.5): validate the user's `head`/`cur` against
    /// `rhead ≤ head ≤ cur ≤ rtail`; on success record them in `rhead`/`rcur`.
    pub fn txsync_prologue(&mut self, head: u32, cur: u32) -> Result<(), RingError> {
        let n = self.num_slots;
        check_index("rhead", self.rhead, n)?;
        check_index("rtail", self.rtail, n)?;
        check_index("head", head, n)?;
        check_index("cur", cur, n)?;
        if !in_order(self.rhead, head, self.rtail, n) {
            return Err(RingError::OrderViolation { what: "tx: rhead <= head <= rtail" });
        }
        if !in_order(head, cur, self.rtail, n) {
            return Err(RingError::OrderViolation { what: "tx: head <= cur <= rtail" });
        }
        self.rhead = head;
        self.rcur = cur;
        Ok(())
    }

    /// netmap's RX prologue (§7.5): validate `hwcur ≤ head ≤ cur ≤ hwtail`; on success record
    /// them in `rhead`/`rcur`.
    pub fn rxsync_prologue(&mut self, head: u32, cur: u32) -> Result<(), RingError> {
        let n = self.num_slots;
        check_index("hwcur", self.hwcur, n)?;
        check_index("hwtail", self.hwtail, n)?;
        check_index("head", head, n)?;
        check_index("cur", cur, n)?;
        if !in_order(self.hwcur, head, self.hwtail, n) {
            return Err(RingError::OrderViolation { what: "rx: hwcur <= head <= hwtail" });
        }
        if !in_order(head, cur, self.hwtail, n) {
            return Err(RingError::OrderViolation { what: "rx: head <= cur <= hwtail" });
        }
        self.rhead = head;
        self.rcur = cur;
        Ok(())
    }

    /// Free TX space from the kernel's point of view, `(hwtail − hwcur) mod N`
    /// (used for `NAF_FORCE_RECLAIM`, §8.6 TX 3a).
    pub fn tx_free(&self) -> u32 {
        dist(self.hwcur, self.hwtail, self.num_slots)
    }
}

/// Validates a new `(hwcur, hwtail)` pair published by the host against what the guest holds
/// (used by a guest, spec §8.1–8.4): both in range, and `hwcur ≤ rhead`-consistent orderings:
///
/// * TX: `hwcur ≤ rhead ≤ hwtail+1` is not required by netmap, but the host can never have
///   processed past what the guest published: `old_hwcur ≤ hwcur ≤ rhead`, and the host can only
///   hand back slots it processed: `hwtail` lies in `[old_hwtail, hwcur − 1]` circularly.
/// * RX: the host can only consume released slots: `old_hwcur ≤ hwcur ≤ rhead`; new packets
///   never overrun what the guest holds: `hwtail ∈ [old_hwtail, hwcur − 1]`.
///
/// Both directions therefore share one chain: `old_hwcur ≤ hwcur ≤ rhead` and
/// `old_hwtail ≤ hwtail ≤ prev(hwcur)`, the latter only when the host moved hwtail.
pub fn check_host_indices(old: &Kring, hwcur: u32, hwtail: u32) -> Result<(), RingError> {
    let n = old.num_slots;
    check_index("hwcur", hwcur, n)?;
    check_index("hwtail", hwtail, n)?;
    if !in_order(old.hwcur, hwcur, old.rhead, n) {
        return Err(RingError::OrderViolation { what: "old hwcur <= hwcur <= head" });
    }
    if hwtail != old.hwtail && !in_order(old.hwtail, hwtail, prev(hwcur, n), n) {
        return Err(RingError::OrderViolation { what: "old hwtail <= hwtail < hwcur" });
    }
    Ok(())
}

/// Validates the indices a host publishes at CREATE, as the guest imports them (§5.3
/// `sync_from_csb`): each in range, and in the circular order of §7.5 with the guest's head and
/// cur taken as `rhead`/`rcur` and `rtail = hwtail`, which for both directions is
/// `hwcur ≤ head ≤ cur ≤ hwtail` (TX: `hwcur ≤ rhead ≤ rcur ≤ rtail ≤ hwtail`; RX:
/// `hwcur ≤ head ≤ cur ≤ hwtail`). The caller passes values it copied once.
pub fn check_import(n: u32, hwcur: u32, head: u32, cur: u32, hwtail: u32) -> Result<(), RingError> {
    check_size(n)?;
    for (what, v) in [("hwcur", hwcur), ("head", head), ("cur", cur), ("hwtail", hwtail)] {
        check_index(what, v, n)?;
    }
    if !chain_in_order(&[hwcur, head, cur, hwtail], n) {
        return Err(RingError::OrderViolation { what: "import: hwcur <= head <= cur <= hwtail" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_in_order(a: u32, b: u32, c: u32, n: u32) -> bool {
        // Walk forward from a; b must be met no later than c.
        let mut i = a;
        for _ in 0..=n {
            if i == b {
                return true;
            }
            if i == c {
                return false;
            }
            i = (i + 1) % n;
        }
        unreachable!()
    }

    #[test]
    fn arithmetic_on_non_power_of_two_rings() {
        assert_eq!(next(6, 7), 0);
        assert_eq!(prev(0, 7), 6);
        assert_eq!(dist(5, 2, 7), 4);
        assert_eq!(space(0, 6, 7), 6);
        assert_eq!(add(6, 7, 7), 6);
        assert!(check_size(1).is_err());
        assert!(check_index("head", 7, 7).is_err());
    }

    /// §5.3: a fresh TX kring is hwcur = 0, hwtail = N−1; a user with head = cur = 0 is valid.
    #[test]
    fn fresh_krings_accept_initial_user_state() {
        let mut tx = Kring::new_tx(8);
        assert_eq!(tx.tx_free(), 7);
        tx.txsync_prologue(0, 0).unwrap();
        tx.txsync_prologue(7, 7).unwrap();
        assert!(tx.txsync_prologue(0, 0).is_err(), "head may not move backward past rhead");
        let mut rx = Kring::new_rx(8);
        rx.rxsync_prologue(0, 0).unwrap();
        assert!(rx.rxsync_prologue(1, 1).is_err(), "head beyond hwtail");
    }

    proptest! {
        #[test]
        fn next_prev_inverse(n in 2u32..5000, i in 0u32..5000) {
            let i = i % n;
            prop_assert_eq!(prev(next(i, n), n), i);
            prop_assert!(next(i, n) < n && prev(i, n) < n);
            prop_assert_eq!(next(i, n), (i + 1) % n);
        }

        #[test]
        fn dist_and_add_agree(n in 2u32..5000, a in 0u32..5000, k in 0u32..5000) {
            let a = a % n;
            let k = k % n;
            let b = add(a, k, n);
            prop_assert_eq!(dist(a, b, n), k);
            prop_assert_eq!(space(a, b, n), k);
        }

        #[test]
        fn in_order_matches_brute_force(n in 2u32..64, a in 0u32..64, b in 0u32..64, c in 0u32..64) {
            let (a, b, c) = (a % n, b % n, c % n);
            prop_assert_eq!(in_order(a, b, c, n), brute_in_order(a, b, c, n));
            prop_assert_eq!(chain_in_order(&[a, b, c], n), brute_in_order(a, b, c, n));
        }

        /// §7.5 TX: the prologue accepts exactly rhead ≤ head ≤ cur ≤ rtail.
        #[test]
        fn tx_prologue_is_the_chain(n in 2u32..64, rh in 0u32..64, rt in 0u32..64,
                                    h in 0u32..70, c in 0u32..70) {
            let (rh, rt) = (rh % n, rt % n);
            let mut k = Kring { num_slots: n, rhead: rh, rtail: rt, ..Kring::default() };
            let ok = h < n && c < n && brute_in_order(rh, h, rt, n) && brute_in_order(h, c, rt, n);
            let before = k;
            let r = k.txsync_prologue(h, c);
            prop_assert_eq!(r.is_ok(), ok);
            if ok { prop_assert_eq!((k.rhead, k.rcur), (h, c)); } else { prop_assert_eq!(k, before); }
        }

        /// §7.5 RX: the prologue accepts exactly hwcur ≤ head ≤ cur ≤ hwtail.
        #[test]
        fn rx_prologue_is_the_chain(n in 2u32..64, hc in 0u32..64, ht in 0u32..64,
                                    h in 0u32..70, c in 0u32..70) {
            let (hc, ht) = (hc % n, ht % n);
            let mut k = Kring { num_slots: n, hwcur: hc, hwtail: ht, ..Kring::default() };
            let ok = h < n && c < n && brute_in_order(hc, h, ht, n) && brute_in_order(h, c, ht, n);
            prop_assert_eq!(k.rxsync_prologue(h, c).is_ok(), ok);
        }

        /// §5.3/§7.5: the import accepts exactly in-range indices in the order
        /// hwcur ≤ head ≤ cur ≤ hwtail (walking forward from hwcur).
        #[test]
        fn import_is_the_chain(n in 2u32..64, hc in 0u32..70, h in 0u32..70, c in 0u32..70,
                               ht in 0u32..70) {
            let in_range = hc < n && h < n && c < n && ht < n;
            let ok = in_range && brute_in_order(hc, h, ht, n) && brute_in_order(h, c, ht, n);
            prop_assert_eq!(check_import(n, hc, h, c, ht).is_ok(), ok);
        }

        #[test]
        fn host_index_check_rejects_out_of_range(n in 2u32..64, hc in 0u32..200, ht in 0u32..200) {
            let k = Kring::new_tx(n);
            let r = check_host_indices(&k, hc, ht);
            if hc >= n || ht >= n { prop_assert!(r.is_err()); }
        }
    }
}
