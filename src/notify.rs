//! A wake-up primitive for host loops, the model's stand-in for an eventfd: a generation counter
//! that `notify` bumps and a waiter compares with the generation it last saw. `notify` never
//! blocks for long and never loses a wake-up: a waiter returns as soon as the generation differs
//! from the one it passed.
//!
//! Hand-offs are cheap in both directions:
//! * `notify` is one atomic add plus one load when nobody is parked: no lock, no futex call. Only
//!   when a waiter has announced itself (`sleepers` > 0) does it take the mutex and signal the
//!   condvar.
//! * `wait` first yields the core a bounded number of times ([`YIELDS`]), re-reading the
//!   generation after each, then parks on the condvar. The park re-checks the generation under
//!   the mutex after announcing itself, so a notify between the yields and the park is not lost
//!   (the Dekker pair below). A yield that took long ([`SLOW_YIELD`]: the cores are
//!   oversubscribed) stops the yielding for a while ([`YIELD_BACKOFF`]): a yielding waiter is
//!   runnable, so nothing wakes it, and behind CPU hogs each hand-off then costs their slices.
//!
//! Why no lost wake-up: the waiter does `sleepers += 1` then loads `gen`; the notifier does
//! `gen += 1` then loads `sleepers`, all four `SeqCst`. In the single total order one of the two
//! loads comes after the other side's store: either the waiter sees the new generation and does
//! not sleep, or the notifier sees the sleeper and signals it under the mutex, which the waiter
//! holds from its check until the condvar has released it atomically.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// `yield_now` rounds (each re-reading the generation) before a waiter parks. On a 2-core machine
/// shared by more runnable threads than cores, the thread a waiter waits for is often runnable
/// but not running: yielding hands it the core at once, where spinning burns the slice it needs
/// and parking costs a futex sleep and wake-up. Measured with `cargo bench --bench ptnet`
/// (50,000 frames per row, runs alternated in one window, load average ~6 from other jobs):
/// spinning 30/100/1000 `spin_loop` hints before parking was no faster than parking at once for
/// 30, and 1.5-3x slower in task-clock for 100/1000; 1-3 yields raised the copy path at burst 1
/// from 0.035-0.06 to 0.10-0.19 Mpps and cut context switches ~30%; 10 yields was no better. So
/// there is no spin, only the yields. In a quieter window (load ~1.5, 200,000 frames, three
/// alternating rounds against the mutex+condvar notifier): copy path burst 1 0.023-0.029 →
/// 0.030-0.043 Mpps (with 0 yields it stayed at 0.023-0.026), direct TX burst 1 0.053-0.065 →
/// 0.24-0.33 Mpps; task-clock of the kloop rows 6.2-7.3 s → 5.0-6.7 s, while their context
/// switches rose 450-610k → 690-800k (a yield to a runnable thread counts as one; it costs no
/// futex call and no wake-up).
pub const YIELDS: u32 = 2;

/// A `yield_now` that took longer than this gave the core to another thread for (part of) a
/// time slice: more threads are runnable than there are cores (a hand-off to the thread we wait
/// for costs a few microseconds). Far below the scheduler's slice (0.75-3 ms), far above a
/// hand-off.
pub const SLOW_YIELD: Duration = Duration::from_micros(200);

/// After a slow yield, waits park at once for this long. A yielding waiter stays runnable, so
/// its `notify` wakes nobody: the scheduler runs it again only after the CPU hogs ahead of it
/// used their slices, and every hand-off then costs milliseconds (the copy path moved ~250
/// frames/s with three `yes` loops on this 2-core box, and `notification_economy` hit its 20 s
/// deadline in 4 of 7 runs). A parked waiter is woken by a futex and preempts the hogs.
pub const YIELD_BACKOFF: Duration = Duration::from_millis(100);

/// An eventfd-like notifier.
#[derive(Debug)]
pub struct Notifier {
    gen: AtomicU64,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// Nanoseconds since `epoch` before which waits do not yield (0: yield).
    no_yield_until: AtomicU64,
    epoch: Instant,
    /// Polling waits a slow yield ended before their window (see [`Notifier::wait_polling`]).
    polls_cut: AtomicU64,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            gen: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            no_yield_until: AtomicU64::new(0),
            epoch: Instant::now(),
            polls_cut: AtomicU64::new(0),
        }
    }
}

impl Notifier {
    /// A fresh notifier at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals every waiter. Without a parked waiter this is two atomic operations.
    pub fn notify(&self) {
        self.gen.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            // Taking the mutex orders this signal after a waiter's check-then-park: it holds
            // the mutex from its generation check until the condvar wait releases it.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.cv.notify_all();
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::SeqCst)
    }

    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// generation observed.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        self.wait_with(seen, None, timeout)
    }

    /// [`Notifier::wait`] that polls before it parks: yields the core and re-reads the
    /// generation until `poll` has passed (KVM's halt polling for a vCPU that halts: a wake-up
    /// that comes within the window costs no futex sleep and wake-up). A yield returns at once
    /// when no other thread is runnable on this core, and runs that thread when one is, so the
    /// poller never holds a core another thread needs (KVM stops polling when another task is
    /// runnable, for the same reason). A slow yield ([`SLOW_YIELD`]) ends the polling: the
    /// thread it ran shares this core, and parking lets the scheduler wake this thread on the
    /// other one (polling on after it cut `zc-pipe direct+inline` to 11.0-12.8 Mpps, three
    /// runs: the two threads kept taking turns on one core). Unlike [`Notifier::wait`] it does
    /// not turn the yields of later waits off: with two threads handing batches to each other,
    /// a yield that ran the peer for a whole batch is the normal case, and that back-off cut
    /// the same row from 37.5-41.7 to 11.1-12.8 Mpps. Behind CPU hogs a wait costs at most one
    /// of their slices before it parks.
    ///
    /// A zero `poll` is [`Notifier::wait`].
    pub fn wait_polling(&self, seen: u64, poll: Duration, timeout: Duration) -> u64 {
        if poll.is_zero() {
            return self.wait(seen, timeout);
        }
        self.wait_with(seen, Some(poll.min(timeout)), timeout)
    }

    /// Yields, then parks. Without `budget`: at most [`YIELDS`] times, none while yields are
    /// off, and a slow yield turns them off. With `budget`: until it has passed. Either way a
    /// slow yield ends the yielding.
    fn wait_with(&self, seen: u64, budget: Option<Duration>, timeout: Duration) -> u64 {
        let g = self.gen.load(Ordering::Acquire);
        if g != seen || timeout.is_zero() {
            return g;
        }
        // One clock read per round (a vDSO call; three per round were 5 % of the samples of
        // zc-switch direct+inline).
        let t0 = Instant::now();
        let mut last = t0;
        let mut rounds = 0;
        let go_on = |rounds: u32, last: Instant| match budget {
            Some(b) => last.duration_since(t0) < b,
            None => rounds < YIELDS && self.may_yield(),
        };
        while go_on(rounds, last) {
            std::thread::yield_now();
            rounds += 1;
            let g = self.gen.load(Ordering::Acquire);
            if g != seen {
                return g;
            }
            let now = Instant::now();
            let slow = now.duration_since(last) > SLOW_YIELD;
            last = now;
            if slow {
                match budget {
                    None => self.yields_off_for(YIELD_BACKOFF),
                    Some(_) => {
                        self.polls_cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
                break;
            }
        }
        self.park(seen, timeout)
    }

    /// `false` while a recent yield was slow (the core is contended, see [`SLOW_YIELD`]).
    fn may_yield(&self) -> bool {
        let until = self.no_yield_until.load(Ordering::Relaxed);
        until == 0 || self.epoch.elapsed().as_nanos() >= u128::from(until)
    }

    fn yields_off_for(&self, d: Duration) {
        let until = (self.epoch.elapsed() + d).as_nanos();
        self.no_yield_until.store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn park(&self, seen: u64, timeout: Duration) -> u64 {
        let end = Instant::now().checked_add(timeout);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let g = loop {
            let g = self.gen.load(Ordering::SeqCst);
            if g != seen {
                break g;
            }
            let left = match end {
                Some(end) => match end.checked_duration_since(Instant::now()) {
                    Some(d) if !d.is_zero() => d,
                    _ => break g,
                },
                None => Duration::from_secs(3600),
            };
            guard = self.cv.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let n = Notifier::new();
        let seen = n.generation();
        n.notify();
        assert_ne!(n.wait(seen, Duration::from_secs(5)), seen);
    }

    #[test]
    fn wait_times_out_without_notification() {
        let n = Notifier::new();
        let t = std::time::Instant::now();
        assert_eq!(n.wait(0, Duration::from_millis(20)), 0);
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(n.sleepers.load(Ordering::SeqCst), 0, "the sleeper left");
        assert_eq!(n.wait(0, Duration::ZERO), 0, "a zero timeout returns at once");
    }

    #[test]
    fn wakes_another_thread() {
        let n = Arc::new(Notifier::new());
        let n2 = n.clone();
        let h = std::thread::spawn(move || n2.wait(0, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(10));
        n.notify();
        assert_eq!(h.join().unwrap(), 1);
    }

    /// Runs `wait` (from generation 0, with a 20 s timeout) on another thread, notifies once
    /// it has parked (announced itself as a sleeper), and checks that the notify woke it.
    fn wake_when_parked(n: &Arc<Notifier>, wait: fn(&Notifier) -> u64) {
        let n2 = n.clone();
        let h = std::thread::spawn(move || wait(&n2));
        let t0 = Instant::now();
        while n.sleepers.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the waiter never parked");
            std::thread::yield_now();
        }
        n.notify();
        assert_eq!(h.join().unwrap(), 1);
        assert!(t0.elapsed() < Duration::from_secs(10), "woken by the notify, not the timeout");
    }

    /// Wakes a thread that is surely parked (past the yields): it announced itself as a sleeper.
    #[test]
    fn wakes_a_parked_thread() {
        wake_when_parked(&Arc::new(Notifier::new()), |n| n.wait(0, Duration::from_secs(20)));
    }

    /// A polling wait stays out of the parked state for its window: a notify within it reaches
    /// a waiter that never announced itself as a sleeper, unless a slow yield (other threads
    /// on these cores) ended the polling early, which the notifier counts. A wait that parked
    /// at once would park with no slow yield counted.
    #[test]
    fn a_polling_wait_does_not_park_within_its_window() {
        for _ in 0..5 {
            let n = Arc::new(Notifier::new());
            let n2 = n.clone();
            let window = Duration::from_secs(20);
            let h = std::thread::spawn(move || n2.wait_polling(0, window, Duration::from_secs(30)));
            let t0 = Instant::now();
            let mut parked = false;
            while t0.elapsed() < Duration::from_millis(20) && !parked {
                parked = n.sleepers.load(Ordering::SeqCst) != 0;
                std::thread::yield_now();
            }
            n.notify();
            assert_eq!(h.join().unwrap(), 1);
            assert!(t0.elapsed() < Duration::from_secs(10), "woken by the notify");
            let cut = n.polls_cut.load(Ordering::Relaxed);
            assert!(!parked || cut == 1, "parked within its window without a slow yield");
        }
    }

    /// After its window a polling wait parks, and a notify then wakes it; without a notify it
    /// times out; a zero timeout returns at once.
    #[test]
    fn a_polling_wait_parks_after_its_window_and_is_woken() {
        let n = Arc::new(Notifier::new());
        wake_when_parked(&n, |n| {
            n.wait_polling(0, Duration::from_millis(1), Duration::from_secs(20))
        });
        let t = Instant::now();
        let poll = Duration::from_millis(5);
        assert_eq!(n.wait_polling(1, poll, Duration::from_millis(30)), 1);
        assert!(t.elapsed() >= Duration::from_millis(30), "returned before its timeout");
        assert_eq!(n.sleepers.load(Ordering::SeqCst), 0, "the sleeper left");
        assert_eq!(n.wait_polling(1, poll, Duration::ZERO), 1);
        assert_eq!(n.wait_polling(0, poll, Duration::from_secs(5)), 1, "a past notify counts");
    }

    /// Ping-pong between two threads, 20,000 round trips, each side waiting on its notifier with
    /// a long timeout: a lost wake-up stalls one side until the deadline and fails the test.
    /// Runs the hand-off in every phase (yielding, parking, in between) many times; with
    /// `poll`, both sides use [`Notifier::wait_polling`] with that window.
    fn ping_pong(poll: Option<Duration>) {
        const ROUNDS: u64 = 20_000;
        let wait = move |n: &Notifier, seen| match poll {
            Some(p) => n.wait_polling(seen, p, Duration::from_secs(10)),
            None => n.wait(seen, Duration::from_secs(10)),
        };
        let ping = Arc::new(Notifier::new());
        let pong = Arc::new(Notifier::new());
        let failed = Arc::new(AtomicBool::new(false));
        let (pi, po, f) = (ping.clone(), pong.clone(), failed.clone());
        let h = std::thread::spawn(move || {
            let mut seen = 0;
            for k in 0..ROUNDS {
                let g = wait(&pi, seen);
                if g == seen {
                    f.store(true, Ordering::SeqCst);
                    return k;
                }
                seen = g;
                if k % 64 == 0 {
                    std::thread::yield_now(); // vary the phase the other side is in
                }
                po.notify();
            }
            ROUNDS
        });
        let t0 = Instant::now();
        let mut seen = 0;
        for k in 0..ROUNDS {
            ping.notify();
            let g = wait(&pong, seen);
            assert_ne!(g, seen, "round {k}: the pong was lost");
            seen = g;
            assert!(t0.elapsed() < Duration::from_secs(60), "round {k}: too slow");
        }
        assert_eq!(h.join().unwrap(), ROUNDS);
        assert!(!failed.load(Ordering::SeqCst));
    }

    #[test]
    fn stress_ping_pong_loses_no_wake_up() {
        ping_pong(None);
    }

    /// The same through polling waits, with windows that end in every phase of a hand-off.
    #[test]
    fn stress_ping_pong_loses_no_wake_up_when_polling() {
        ping_pong(Some(Duration::from_micros(5)));
        ping_pong(Some(Duration::from_micros(200)));
    }

    /// Ping-pong while spinning threads keep every core busy (more runnable threads than
    /// cores, as with `yes` loops beside the test suite). A waiter that only yields stays
    /// runnable, so a notify wakes nobody and each hand-off waits for the hogs' time slices:
    /// without the slow-yield back-off ~3,400 of the 5,000 round trips were done at the 10 s
    /// deadline here (~3 ms each); with it all 5,000 took 0.10-0.16 s, as parked waiters are
    /// woken by the futex and preempt the hogs.
    #[test]
    fn hand_offs_stay_prompt_while_hogs_hold_every_core() {
        const ROUNDS: u64 = 5_000;
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs: Vec<_> = (0..cores + 1)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let ping = Arc::new(Notifier::new());
        let pong = Arc::new(Notifier::new());
        let (pi, po) = (ping.clone(), pong.clone());
        let h = std::thread::spawn(move || {
            let mut seen = 0;
            for _ in 0..ROUNDS {
                seen = pi.wait(seen, Duration::from_secs(10));
                po.notify();
            }
        });
        let t0 = Instant::now();
        let mut seen = 0;
        let mut done = 0;
        while done < ROUNDS && t0.elapsed() < Duration::from_secs(10) {
            ping.notify();
            seen = pong.wait(seen, Duration::from_secs(10));
            done += 1;
        }
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
        while done < ROUNDS {
            ping.notify();
            seen = pong.wait(seen, Duration::from_secs(10));
            done += 1;
        }
        h.join().unwrap();
        assert!(took < Duration::from_secs(10), "{ROUNDS} round trips not done in {took:?}");
    }

    /// Many producers notify while many consumers wait for "their" count of events, checked
    /// against a shared counter written before each notify: every consumer must see the final
    /// count before its deadline (eventfd semantics: a notify after the count's store is never
    /// lost, however the yields and the park interleave).
    #[test]
    fn stress_many_producers_and_waiters() {
        const PRODUCERS: u64 = 3;
        const PER: u64 = 5_000;
        let n = Arc::new(Notifier::new());
        let count = Arc::new(AtomicU64::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (n, count) = (n.clone(), count.clone());
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    loop {
                        let g = n.generation();
                        if count.load(Ordering::SeqCst) == PRODUCERS * PER {
                            return true;
                        }
                        if t0.elapsed() > Duration::from_secs(30) {
                            return false;
                        }
                        n.wait(g, Duration::from_secs(30));
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (n, count) = (n.clone(), count.clone());
                std::thread::spawn(move || {
                    for k in 0..PER {
                        count.fetch_add(1, Ordering::SeqCst);
                        n.notify();
                        if (k + p) % 97 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        for w in waiters {
            assert!(w.join().unwrap(), "a waiter missed the last notification");
        }
    }
}
