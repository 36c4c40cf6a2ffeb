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
        let g = self.gen.load(Ordering::Acquire);
        if g != seen || timeout.is_zero() {
            return g;
        }
        if self.may_yield() {
            for _ in 0..YIELDS {
                let t = Instant::now();
                std::thread::yield_now();
                let slow = t.elapsed() > SLOW_YIELD;
                let g = self.gen.load(Ordering::Acquire);
                if slow {
                    self.yields_off_for(YIELD_BACKOFF);
                }
                if g != seen {
                    return g;
                }
                if slow {
                    break;
                }
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

    /// Wakes a thread that is surely parked (past the yields): it announced itself as a sleeper.
    #[test]
    fn wakes_a_parked_thread() {
        let n = Arc::new(Notifier::new());
        let n2 = n.clone();
        let h = std::thread::spawn(move || n2.wait(0, Duration::from_secs(20)));
        let t0 = Instant::now();
        while n.sleepers.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the waiter never parked");
            std::thread::yield_now();
        }
        n.notify();
        assert_eq!(h.join().unwrap(), 1);
        assert!(t0.elapsed() < Duration::from_secs(10), "woken by the notify, not the timeout");
    }

    /// Ping-pong between two threads, 20,000 round trips, each side waiting on its notifier with
    /// a long timeout: a lost wake-up stalls one side until the deadline and fails the test.
    /// Runs the hand-off in every phase (yielding, parking, in between) many times.
    #[test]
    fn stress_ping_pong_loses_no_wake_up() {
        const ROUNDS: u64 = 20_000;
        let ping = Arc::new(Notifier::new());
        let pong = Arc::new(Notifier::new());
        let failed = Arc::new(AtomicBool::new(false));
        let (pi, po, f) = (ping.clone(), pong.clone(), failed.clone());
        let h = std::thread::spawn(move || {
            let mut seen = 0;
            for k in 0..ROUNDS {
                let g = pi.wait(seen, Duration::from_secs(10));
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
            let g = pong.wait(seen, Duration::from_secs(10));
            assert_ne!(g, seen, "round {k}: the pong was lost");
            seen = g;
            assert!(t0.elapsed() < Duration::from_secs(60), "round {k}: too slow");
        }
        assert_eq!(h.join().unwrap(), ROUNDS);
        assert!(!failed.load(Ordering::SeqCst));
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
