//! Guest ring state and the netmap-mode syncs (spec §8.1–8.4), the mirror image of the
//! model's kloop over the same [`crate::csb`] functions.
//!
//! Every index the host publishes is copied once ([`Ktoa::appl_read`]), checked against what the
//! guest holds ([`ring::check_host_indices`]) and only then used; a bad pair is rejected with
//! [`SyncError::Host`], counted, and the previous (good) values are kept.

use crate::abi::csb::NAF_FORCE_RECLAIM;
use crate::csb::{fence_then_read_flag, rearm_then_recheck, Atok, Ktoa};
use crate::nm::RingView;
use crate::ring::{self, Kring, RingError};
use core::fmt;

/// Errors of a ring sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    /// The user's head/cur violate the netmap chain (§7.5).
    User(RingError),
    /// The host published indices that are out of range or out of order.
    Host(RingError),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(e) => write!(f, "invalid user indices: {e}"),
            Self::Host(e) => write!(f, "host published invalid indices: {e}"),
        }
    }
}

impl std::error::Error for SyncError {}

/// Per-ring counters of the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames moved through the copy path (or synced slots in netmap mode).
    pub frames: u64,
    /// Bytes moved through the copy path.
    pub bytes: u64,
    /// Kicks written.
    pub kicks: u64,
    /// Interrupts taken.
    pub interrupts: u64,
    /// Errors (host index violations, bad slots, dropped frames).
    pub errors: u64,
    /// Syncs performed.
    pub syncs: u64,
}

/// One ring as the guest sees it (§8.1).
#[derive(Debug)]
pub struct GuestRing {
    /// Ring index i in TX-then-RX numbering (kick register and MSI-X vector i).
    pub index: u32,
    /// TX (true) or RX.
    pub tx: bool,
    /// The shared netmap ring.
    pub view: RingView,
    /// Guest-written CSB entry.
    pub atok: Atok,
    /// Host-written CSB entry.
    pub ktoa: Ktoa,
    /// hwcur/hwtail as last read (validated) and rhead/rcur/rtail as last published/given.
    pub k: Kring,
    /// Interrupts disabled for this ring by the user (never re-armed by syncs).
    pub no_interrupts: bool,
    /// Counters.
    pub stats: RingStats,
}

impl GuestRing {
    /// Builds the ring state; indices are imported later from the CSB.
    pub fn new(index: u32, tx: bool, view: RingView, atok: Atok, ktoa: Ktoa) -> Self {
        let n = view.num_slots();
        Self {
            index,
            tx,
            view,
            atok,
            ktoa,
            k: Kring { num_slots: n, ..Kring::default() },
            no_interrupts: false,
            stats: RingStats::default(),
        }
    }

    /// Number of slots.
    pub fn num_slots(&self) -> u32 {
        self.k.num_slots
    }

    /// Imports the state the host wrote at CREATE (§5.3 `sync_from_csb`): each value copied
    /// once, checked in range and in circular order ([`ring::check_import`], §7.5), and only
    /// then used and mirrored into the shared ring's head/cur/tail.
    pub fn import(&mut self) -> Result<(), SyncError> {
        let n = self.k.num_slots;
        let a = self.atok.kern_read();
        let (hwcur, hwtail) = self.ktoa.appl_read();
        ring::check_import(n, hwcur, a.head, a.cur, hwtail).map_err(SyncError::Host)?;
        self.k = Kring { num_slots: n, hwcur, hwtail, rhead: a.head, rcur: a.cur, rtail: hwtail };
        self.view.set_head(a.head);
        self.view.set_cur(a.cur);
        self.view.set_tail(hwtail);
        Ok(())
    }

    /// Reads hwcur/hwtail (§5.4 rule 2) and validates them; on success updates `k`.
    pub fn read_host(&mut self) -> Result<(), SyncError> {
        let (hwcur, hwtail) = self.ktoa.appl_read();
        if let Err(e) = ring::check_host_indices(&self.k, hwcur, hwtail) {
            self.stats.errors += 1;
            return Err(SyncError::Host(e));
        }
        self.k.hwcur = hwcur;
        self.k.hwtail = hwtail;
        Ok(())
    }

    fn would_block(&self) -> bool {
        self.k.rcur == self.k.hwtail
    }

    /// Guest txsync (§8.2) after netmap's prologue: `head`/`cur` are the user's new values,
    /// validated here against `rhead ≤ head ≤ cur ≤ rtail`. Returns `true` if the caller must
    /// kick (write `KICK[index]`). The epilogue sets the shared ring's tail.
    pub fn txsync(&mut self, head: u32, cur: u32, flags: u32) -> Result<bool, SyncError> {
        self.k.txsync_prologue(head, cur).map_err(SyncError::User)?;
        self.stats.syncs += 1;
        self.atok.set_appl_need_kick(0);
        // Step 2: hwcur (plain load); validated together with hwtail below.
        let (hwcur, _) = self.ktoa.appl_read();
        if ring::check_host_indices(&self.k, hwcur, self.k.hwtail).is_ok() {
            self.k.hwcur = hwcur;
        } else {
            self.stats.errors += 1;
        }
        self.atok.appl_publish_head_cur(self.k.rhead, self.k.rcur);
        let knk = fence_then_read_flag(|| self.ktoa.kern_need_kick());
        let kick = ((self.k.rhead != self.k.hwcur || self.would_block()) && knk != 0)
            || flags & NAF_FORCE_RECLAIM != 0;
        if kick {
            self.atok.set_sync_flags(flags);
        }
        let mut res = Ok(());
        if self.would_block() || flags & NAF_FORCE_RECLAIM != 0 {
            res = self.read_host();
        }
        if self.would_block() && !self.no_interrupts {
            self.rearm();
        }
        self.epilogue();
        if kick {
            self.stats.kicks += 1;
        }
        res.map(|_| kick)
    }

    /// Guest rxsync (§8.3) after the prologue: validates `hwcur ≤ head ≤ cur ≤ hwtail` against
    /// the guest's view. Returns `true` if the caller must kick.
    pub fn rxsync(&mut self, head: u32, cur: u32, flags: u32) -> Result<bool, SyncError> {
        let mut probe = self.k;
        probe.hwcur = self.k.rhead; // the user may only release what we handed out
        probe.rxsync_prologue(head, cur).map_err(SyncError::User)?;
        self.k.rhead = head;
        self.k.rcur = cur;
        self.stats.syncs += 1;
        self.atok.set_appl_need_kick(0);
        let res = self.read_host();
        if self.k.rhead != self.k.hwcur {
            self.atok.appl_publish_head_cur(self.k.rhead, self.k.rcur);
        }
        if self.would_block() && !self.no_interrupts {
            self.rearm();
        }
        let knk = fence_then_read_flag(|| self.ktoa.kern_need_kick());
        let kick = (self.k.rhead != self.k.hwcur || self.would_block()) && knk != 0;
        if kick {
            self.atok.set_sync_flags(flags);
            self.stats.kicks += 1;
        }
        self.epilogue();
        res.map(|_| kick)
    }

    /// §5.4 rule 3: `appl_need_kick = 1`, full barrier, re-read; clear it again if work
    /// appeared.
    fn rearm(&mut self) {
        let mut fresh = None;
        let k = self.k;
        let ktoa = &self.ktoa;
        let atok = &self.atok;
        rearm_then_recheck(
            |v| atok.set_appl_need_kick(v),
            || {
                let (c, t) = ktoa.appl_read();
                let ok = ring::check_host_indices(&k, c, t).is_ok();
                fresh = ok.then_some((c, t));
                ok && t != k.rcur
            },
        );
        if let Some((c, t)) = fresh {
            self.k.hwcur = c;
            self.k.hwtail = t;
        }
    }

    /// Sets `rtail = hwtail` and the shared ring's tail (netmap epilogue).
    fn epilogue(&mut self) {
        self.k.rtail = self.k.hwtail;
        self.view.set_tail(self.k.hwtail);
    }

    /// `ptnet_sync_tail` (§8.4): read the host's indices, then `tail = hwtail`.
    pub fn sync_tail(&mut self) -> Result<(), SyncError> {
        let r = self.read_host();
        self.epilogue();
        r
    }

    /// The copy path's "nothing to do now" step (§8.5 TX 1 / RX 1, §5.4 rule 3):
    /// `appl_need_kick = 1`, full barrier, tail sync (the host's indices copied once and
    /// validated, [`GuestRing::sync_tail`]), then `ready` on the fresh state. If `ready` holds,
    /// `appl_need_kick = 0` and `true`: go on. Otherwise `false` with the ring left armed, so
    /// whatever the host publishes next raises an interrupt. A bad index from the host is
    /// counted and ignored: it can neither wake the caller nor disarm the ring.
    pub fn rearm_sync_tail(&mut self, ready: impl FnOnce(&Self) -> bool) -> bool {
        let atok = self.atok.clone();
        rearm_then_recheck(
            |v| atok.set_appl_need_kick(v),
            || {
                let _ = self.sync_tail();
                ready(self)
            },
        )
    }

    /// Enables (`true`) or disables interrupts for this ring (netmap `nm_intr`).
    pub fn set_interrupts(&mut self, on: bool) {
        self.no_interrupts = !on;
        self.atok.set_appl_need_kick(on as u32);
    }
}
