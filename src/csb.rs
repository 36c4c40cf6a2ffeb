//! Paired CSB protocol functions (spec §5.4): each producer function sits next to the consumer
//! function it pairs with, so the driver's sync and the model's kloop use the same code.
//!
//! ```text
//!        Guest (appl)                                   Host (kern)
//!  fill slots/buffers
//!  appl_publish_head_cur:                        kern_read_atok:
//!    st-st; atok.cur = cur;                        h = atok.head; ld-ld;
//!    st-st; atok.head = head  ──────────────►      c = atok.cur; f = atok.sync_flags; ld-ld
//!  st-ld (E7)                                    process slots [hwcur, h)
//!  read ktoa.kern_need_kick → kick?              kern_publish_hwcur_hwtail:
//!                                                  st-st; ktoa.hwcur; st-st; ktoa.hwtail
//!  appl_read_ktoa:                  ◄──────────  st-ld (E7)
//!    t = ktoa.hwtail; ld-ld;                     read atok.appl_need_kick → interrupt?
//!    c = ktoa.hwcur; ld-ld
//!  use slots up to t−1
//!
//!  re-enable notifications (both sides), rule 3:
//!    need_kick = 1; st-ld; re-read peer indices; if work appeared: need_kick = 0
//! ```

use crate::abi::csb::*;
use crate::shm::{self, Region, ShmError};

/// One ring's `nm_csb_atok` entry (guest → host).
#[derive(Clone, Debug)]
pub struct Atok(Region);

/// One ring's `nm_csb_ktoa` entry (host → guest).
#[derive(Clone, Debug)]
pub struct Ktoa(Region);

/// What the host copies out of an atok entry (§8.6 TX step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtokSnapshot {
    /// Guest head.
    pub head: u32,
    /// Guest cur.
    pub cur: u32,
    /// Guest sync flags.
    pub sync_flags: u32,
}

impl Atok {
    /// The entry of ring `i` in a GH array. Fails if the array is too short.
    pub fn of(array: &Region, i: u32) -> Result<Self, ShmError> {
        array.sub(i as usize * ENTRY_SIZE, ENTRY_SIZE).map(Self)
    }

    /// Guest side, §5.4 rule 1 (`nm_sync_kloop_appl_write`): publish `cur` then `head`, each
    /// behind a st-st barrier so slot and buffer writes are visible first.
    /// Pairs with [`Atok::kern_read`].
    pub fn appl_publish_head_cur(&self, head: u32, cur: u32) {
        shm::store_store(); // slots/buffers before cur
        self.0.store_u32(ATOK_CUR, cur);
        shm::store_store(); // cur before head: the host never sees a head newer than cur
        self.0.store_u32(ATOK_HEAD, head);
    }

    /// Host side of rule 1: read head, ld-ld, cur and sync_flags, ld-ld before touching the
    /// ring. Pairs with [`Atok::appl_publish_head_cur`].
    pub fn kern_read(&self) -> AtokSnapshot {
        let head = self.0.load_u32(ATOK_HEAD);
        shm::load_load();
        let cur = self.0.load_u32(ATOK_CUR);
        let sync_flags = self.0.load_u32(ATOK_SYNC_FLAGS);
        shm::load_load(); // index loads before slot/buffer accesses
        AtokSnapshot { head, cur, sync_flags }
    }

    /// `appl_need_kick` (1 = the guest wants interrupts). Written by the guest.
    pub fn appl_need_kick(&self) -> u32 {
        self.0.load_u32(ATOK_APPL_NEED_KICK)
    }

    /// Sets `appl_need_kick`.
    pub fn set_appl_need_kick(&self, v: u32) {
        self.0.store_u32(ATOK_APPL_NEED_KICK, v);
    }

    /// Stores `sync_flags` (before a kick, §5.4 rule 4; the kick itself serialises).
    pub fn set_sync_flags(&self, v: u32) {
        self.0.store_u32(ATOK_SYNC_FLAGS, v);
    }

    /// Host-only initialisation at CREATE (§5.3): head, cur, need_kick, sync_flags.
    pub fn kern_init(&self, head: u32, cur: u32) {
        self.0.store_u32(ATOK_HEAD, head);
        self.0.store_u32(ATOK_CUR, cur);
        self.0.store_u32(ATOK_APPL_NEED_KICK, 1);
        self.0.store_u32(ATOK_SYNC_FLAGS, 1);
    }
}

impl Ktoa {
    /// The entry of ring `i` in an HG array. Fails if the array is too short.
    pub fn of(array: &Region, i: u32) -> Result<Self, ShmError> {
        array.sub(i as usize * ENTRY_SIZE, ENTRY_SIZE).map(Self)
    }

    /// Host side, §5.4 rule 2 / §8.6 TX 3d: st-st, hwcur, st-st, hwtail.
    /// Pairs with [`Ktoa::appl_read`].
    pub fn kern_publish_hwcur_hwtail(&self, hwcur: u32, hwtail: u32) {
        shm::store_store(); // slots/buffers before the indices
        self.0.store_u32(KTOA_HWCUR, hwcur);
        shm::store_store();
        self.0.store_u32(KTOA_HWTAIL, hwtail);
    }

    /// Guest side of rule 2 (`nm_sync_kloop_appl_read`): load hwtail, ld-ld, load hwcur, ld-ld.
    /// Returns `(hwcur, hwtail)` as read (unvalidated). Pairs with
    /// [`Ktoa::kern_publish_hwcur_hwtail`].
    pub fn appl_read(&self) -> (u32, u32) {
        let hwtail = self.0.load_u32(KTOA_HWTAIL);
        shm::load_load();
        let hwcur = self.0.load_u32(KTOA_HWCUR);
        shm::load_load(); // index loads before slot/buffer accesses
        (hwcur, hwtail)
    }

    /// `kern_need_kick` (1 = the host wants kicks). Written by the host.
    pub fn kern_need_kick(&self) -> u32 {
        self.0.load_u32(KTOA_KERN_NEED_KICK)
    }

    /// Sets `kern_need_kick`.
    pub fn set_kern_need_kick(&self, v: u32) {
        self.0.store_u32(KTOA_KERN_NEED_KICK, v);
    }

    /// Zeroes the entry (the host zeroes the ktoa array at CREATE, §5.3).
    pub fn kern_zero(&self) {
        let _ = self.0.fill(0, ENTRY_SIZE, 0);
    }
}

/// After publishing one's own indices, read the peer's need_kick flag with a full barrier in
/// between (errata E7: the reference lacks it, which allows a lost kick or interrupt on x86-TSO).
pub fn fence_then_read_flag(read_flag: impl FnOnce() -> u32) -> u32 {
    shm::store_load();
    read_flag()
}

/// Re-enable notifications, then re-check (§5.4 rule 3): store `need_kick = 1`, full barrier,
/// run `work_appeared`; if it returns `true`, store `need_kick = 0` again.
/// Returns `true` when work appeared (the caller goes on instead of sleeping).
pub fn rearm_then_recheck(set_flag: impl Fn(u32), work_appeared: impl FnOnce() -> bool) -> bool {
    set_flag(1);
    shm::store_load();
    if work_appeared() {
        set_flag(0);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn entries_are_bounded_by_the_array() {
        let gh = Region::alloc(2 * ENTRY_SIZE).unwrap();
        assert!(Atok::of(&gh, 1).is_ok());
        assert!(Atok::of(&gh, 2).is_err());
        assert!(Ktoa::of(&gh, u32::MAX).is_err());
    }

    /// §5.2 offsets as seen through the paired functions.
    #[test]
    fn publish_and_read_use_the_spec_offsets() {
        let gh = Region::alloc(4096).unwrap();
        let hg = Region::alloc(4096).unwrap();
        let a = Atok::of(&gh, 3).unwrap();
        a.appl_publish_head_cur(5, 9);
        a.set_sync_flags(NAF_FORCE_RECLAIM);
        a.set_appl_need_kick(1);
        assert_eq!(gh.load_u32(3 * 64), 5);
        assert_eq!(gh.load_u32(3 * 64 + 4), 9);
        assert_eq!(gh.load_u32(3 * 64 + 8), 1);
        assert_eq!(gh.load_u32(3 * 64 + 12), 2);
        assert_eq!(a.kern_read(), AtokSnapshot { head: 5, cur: 9, sync_flags: 2 });
        let k = Ktoa::of(&hg, 1).unwrap();
        k.kern_publish_hwcur_hwtail(7, 6);
        k.set_kern_need_kick(1);
        assert_eq!((hg.load_u32(64), hg.load_u32(68), hg.load_u32(72)), (7, 6, 1));
        assert_eq!(k.appl_read(), (7, 6));
        k.kern_zero();
        assert_eq!(k.appl_read(), (0, 0));
        assert_eq!(k.kern_need_kick(), 0);
    }

    #[test]
    fn rearm_clears_the_flag_only_when_work_appeared() {
        let gh = Region::alloc(64).unwrap();
        let a = Atok::of(&gh, 0).unwrap();
        assert!(!rearm_then_recheck(|v| a.set_appl_need_kick(v), || false));
        assert_eq!(a.appl_need_kick(), 1);
        assert!(rearm_then_recheck(|v| a.set_appl_need_kick(v), || true));
        assert_eq!(a.appl_need_kick(), 0);
    }

    /// Two threads: a producer publishes (head, cur) with head == cur == i; the consumer must
    /// never observe head newer than cur (rule 1), nor hwcur older than hwtail's pairing (rule 2).
    #[test]
    fn consumer_never_sees_head_ahead_of_cur() {
        let gh = Region::alloc(64).unwrap();
        let a = Atok::of(&gh, 0).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, s2) = (a.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            let mut i = 0u32;
            while !s2.load(Ordering::Relaxed) {
                a2.appl_publish_head_cur(i, i);
                i = i.wrapping_add(1) & 0x3fff_ffff;
            }
        });
        // Wait (bounded) until the producer runs, so the check below sees it working.
        let t0 = std::time::Instant::now();
        while a.kern_read().head == 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::yield_now();
        }
        let mut changes = 0;
        let mut last = 0;
        for _ in 0..2_000_000 {
            let s = a.kern_read();
            assert!(
                s.cur >= s.head || s.head - s.cur > 0x2000_0000,
                "head {} ahead of cur {}",
                s.head,
                s.cur
            );
            changes += (s.head != last) as u32;
            last = s.head;
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(changes > 0, "the producer was never observed");
    }
}
