//! The host sync kloop (spec §8.6): per-ring TX and RX processing against the CSB, kick and
//! interrupt suppression with the need_kick double check, and the main loop.
//!
//! This is the mirror image of the guest's txsync/rxsync: both use the paired functions of
//! [`crate::csb`]. The model adds the full fence of errata E7 between publishing hwcur/hwtail
//! and reading `appl_need_kick`.
//!
//! Readings chosen where the spec leaves room (see also the module doc of `ptnet`):
//! * MSI-X messages are captured from the table at CREATE and used until DELETE, ignoring later
//!   table writes and per-vector masks, as QEMU's irqfd routes do (§9 \[inferred pitfall\]): a
//!   guest that relies on masking is caught by the tests, not rescued by the model.
//! * In direct mode (`klooptx/klooprx = off`) a ring is processed inside the kick (the register
//!   write returns after processing), `kern_need_kick` is not cleared at the start, and every
//!   backend notification raises the interrupts of all rings of that direction (§8.6). Where
//!   netmap may leave `kern_need_kick` at 0 on exit (TX ring full), the model sets it back to 1:
//!   in direct mode no loop thread exists to process the ring without a kick, so 0 would stall
//!   the ring for good.
//! * TX sync flags (§8.6 TX 3a, E11): netmap hands the guest's `sync_flags`, plus
//!   `NAF_FORCE_RECLAIM` when the host ring's free space is ≤ N/2, to the backend's txsync, and
//!   only NIC drivers read them (to reclaim completed slots early). The model's backends (pipe,
//!   reflector, switch port, sink) reclaim on every txsync, as netmap's pipes and VALE ports do,
//!   so the flags would change nothing: the model copies `sync_flags` with atok and passes no
//!   flags on.
//! * RX stop (§8.6 RX 2f), netmap's condition and nothing more: a pass ends when `hwtail ==
//!   rhead` (the backend had nothing more for the guest) or after two dry iterations. A head the
//!   guest publishes meanwhile is taken at the next wake-up (its kick, a backend event or the
//!   timeout); a guest that follows the protocol cannot move head then anyway, since its tail
//!   is `hwtail == rhead`. The model's one addition is to the "no free RX slot" test of RX 2e:
//!   while a host producer waits for room ([`NmPort::rx_blocked`]: the source endpoint, whose
//!   multi-slot frame may need more than the free slots), the pass also asks for a kick, so the
//!   guest's next release is processed at once and wakes the producer. netmap has no such
//!   producer (its backends fill the ring in their own rxsync).

use super::notify::Notifier;
use super::port::{HostRing, NmPort};
use crate::abi::netmap::NS_MOREFRAG;
use crate::csb::{fence_then_read_flag, rearm_then_recheck, Atok, AtokSnapshot, Ktoa};
use crate::ring;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An MSI message (address/data pair from an MSI-X table entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// Where the device's interrupts go (the VM's interrupt controller, or a vfio-user eventfd).
pub trait MsiSink: Send + Sync {
    /// Signals `msg`, sent by MSI-X vector `vector` of the device.
    fn deliver(&self, vector: u16, msg: MsiMessage);
}

/// Per-ring counters (index = ring i in TX-then-RX numbering).
#[derive(Debug, Default)]
pub struct RingCounters {
    /// Frames the host processed for this ring (sent for TX, made visible to the guest for RX;
    /// an RX chain split by a pipe counts when its last slot becomes visible). RX frames are
    /// counted before they are published; TX frames right after the backend handed them on, so
    /// a peer may see a frame a moment before the sender's counter does.
    pub packets: AtomicU64,
    /// Bytes likewise.
    pub bytes: AtomicU64,
    /// Kicks received (`KICK[i]` writes).
    pub kicks: AtomicU64,
    /// Interrupts raised (MSI-X vector i).
    pub interrupts: AtomicU64,
    /// Ring reinitialisations after a failed check (E9).
    pub reinits: AtomicU64,
    /// Processing passes finished (one per kick or wake-up that reached the ring). Counted with
    /// release ordering after everything the pass did, so a reader that sees it grow also sees
    /// the pass's interrupts and publications: tests wait for it instead of sleeping.
    pub passes: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    /// See [`RingCounters::packets`].
    pub packets: u64,
    /// See [`RingCounters::bytes`].
    pub bytes: u64,
    /// See [`RingCounters::kicks`].
    pub kicks: u64,
    /// See [`RingCounters::interrupts`].
    pub interrupts: u64,
    /// See [`RingCounters::reinits`].
    pub reinits: u64,
    /// See [`RingCounters::passes`].
    pub passes: u64,
}

impl RingCounters {
    /// Reads all counters.
    pub fn snapshot(&self) -> CounterSnapshot {
        // `passes` first, with acquire: the other counters are then at least as new as the
        // pass it counts.
        let passes = self.passes.load(Ordering::Acquire);
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            kicks: self.kicks.load(Ordering::Relaxed),
            interrupts: self.interrupts.load(Ordering::Relaxed),
            reinits: self.reinits.load(Ordering::Relaxed),
            passes,
        }
    }
}

/// Per-ring processing state (serialises processing of one ring).
#[derive(Debug, Default)]
struct RingProc {
    /// TX: hwtail moved and no interrupt was raised yet. RX: some received, likewise.
    pending_irq: bool,
}

/// Everything the kloop of one running device needs, fixed at CREATE.
pub struct KloopCtx {
    port: Arc<NmPort>,
    atok: Vec<Atok>,
    ktoa: Vec<Ktoa>,
    routes: Vec<MsiMessage>,
    msi: Arc<dyn MsiSink>,
    counters: Arc<Vec<RingCounters>>,
    procs: Vec<Mutex<RingProc>>,
    ntx: u32,
    direct_tx: bool,
    direct_rx: bool,
    wake: Notifier,
    stop: AtomicBool,
    timeout: Duration,
}

/// Settings of a kloop.
#[derive(Debug, Clone, Copy)]
pub struct KloopMode {
    /// `klooptx=off`: TX rings are processed inside the kick.
    pub direct_tx: bool,
    /// `klooprx=off`: RX rings are processed inside the kick.
    pub direct_rx: bool,
    /// Sleep timeout of the main loop (3 s in netmap).
    pub timeout: Duration,
}

impl KloopCtx {
    /// Builds the context: `atok`/`ktoa` hold one entry per ring, TX rings first.
    pub fn new(
        port: Arc<NmPort>,
        atok: Vec<Atok>,
        ktoa: Vec<Ktoa>,
        routes: Vec<MsiMessage>,
        msi: Arc<dyn MsiSink>,
        counters: Arc<Vec<RingCounters>>,
        mode: KloopMode,
    ) -> Arc<Self> {
        let n = atok.len();
        Arc::new(Self {
            ntx: port.num_tx_rings(),
            port,
            atok,
            ktoa,
            routes,
            msi,
            counters,
            procs: (0..n).map(|_| Mutex::new(RingProc::default())).collect(),
            direct_tx: mode.direct_tx,
            direct_rx: mode.direct_rx,
            wake: Notifier::new(),
            stop: AtomicBool::new(false),
            timeout: mode.timeout,
        })
    }

    fn num_rings(&self) -> u32 {
        self.atok.len() as u32
    }

    fn is_tx(&self, i: u32) -> bool {
        i < self.ntx
    }

    fn direct(&self, i: u32) -> bool {
        if self.is_tx(i) {
            self.direct_tx
        } else {
            self.direct_rx
        }
    }

    /// Initialises the CSB from the host krings (§5.3, `NETMAP_REQ_CSB_ENABLE`): zero ktoa,
    /// then per ring atok head/cur = rhead/rcur, appl_need_kick = 1, sync_flags = 1, ktoa
    /// hwcur/hwtail from the kring, kern_need_kick = 1.
    pub fn init_csb(&self) {
        for i in 0..self.num_rings() {
            let hr = self.host_ring(i);
            let Some(hr) = hr else { continue };
            let k = hr.kring;
            drop(hr);
            let (a, t) = (&self.atok[i as usize], &self.ktoa[i as usize]);
            t.kern_zero();
            a.kern_init(k.rhead, k.rcur);
            t.kern_publish_hwcur_hwtail(k.hwcur, k.hwtail);
            t.set_kern_need_kick(1);
        }
    }

    fn host_ring(&self, i: u32) -> Option<std::sync::MutexGuard<'_, HostRing>> {
        if self.is_tx(i) {
            self.port.tx_ring(i)
        } else {
            self.port.rx_ring(i - self.ntx)
        }
    }

    /// Raises MSI-X vector `i` with the message captured at CREATE.
    fn raise(&self, i: u32) {
        if let Some(m) = self.routes.get(i as usize) {
            self.counters[i as usize].interrupts.fetch_add(1, Ordering::Relaxed);
            self.msi.deliver(i as u16, *m);
        }
    }

    /// A kick on ring `i`: processed right here in direct mode, else wakes the loop.
    pub fn kick(&self, i: u32) {
        if i >= self.num_rings() {
            return;
        }
        self.counters[i as usize].kicks.fetch_add(1, Ordering::Relaxed);
        if self.direct(i) {
            self.process(i);
        } else {
            self.wake.notify();
        }
    }

    /// A backend event for the TX (`tx = true`) or RX rings.
    pub fn backend_event(&self, tx: bool) {
        let direct = if tx { self.direct_tx } else { self.direct_rx };
        if direct {
            // §8.6 direct mode: raise the interrupts of all rings of that direction.
            let range = if tx { 0..self.ntx } else { self.ntx..self.num_rings() };
            for i in range {
                self.raise(i);
            }
        } else {
            self.wake.notify();
        }
    }

    /// Processes ring `i` (TX or RX).
    pub fn process(&self, i: u32) {
        let Some(p) = self.procs.get(i as usize) else { return };
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_tx(i) {
            self.process_tx(i, &mut p);
        } else {
            self.process_rx(i, &mut p);
        }
        self.counters[i as usize].passes.fetch_add(1, Ordering::Release);
    }

    /// §8.6 TX 3f / RX 2d: if the ring has news for the guest and the guest wants interrupts
    /// (read after the E7 full fence), raise its vector. Direct mode raises nothing here.
    fn notify_guest(&self, i: u32, direct: bool, p: &mut RingProc) {
        let atok = &self.atok[i as usize];
        if !direct && p.pending_irq && fence_then_read_flag(|| atok.appl_need_kick()) != 0 {
            self.raise(i);
            p.pending_irq = false;
        }
    }

    /// §8.6 TX 3g / RX 2e: nothing to do until the guest moves `head` past `seen`, so set
    /// `kern_need_kick` = 1, full fence, re-read atok into `shadow`; if head moved after all,
    /// clear the flag and return `true` (keep processing), else leave it armed.
    fn ask_for_kick(&self, i: u32, shadow: &mut AtokSnapshot, seen: u32) -> bool {
        let (atok, ktoa) = (&self.atok[i as usize], &self.ktoa[i as usize]);
        rearm_then_recheck(
            |v| ktoa.set_kern_need_kick(v),
            || {
                *shadow = atok.kern_read();
                shadow.head != seen
            },
        )
    }

    /// Per-ring TX processing (§8.6 TX 1–4).
    fn process_tx(&self, i: u32, p: &mut RingProc) {
        let (atok, ktoa) = (&self.atok[i as usize], &self.ktoa[i as usize]);
        let direct = self.direct(i);
        if !direct {
            ktoa.set_kern_need_kick(0);
        }
        let mut shadow = atok.kern_read();
        loop {
            let Some(mut hr) = self.host_ring(i) else { return };
            if hr.kring.txsync_prologue(shadow.head, shadow.cur).is_err() {
                self.reinit(i, &mut hr);
                return;
            }
            let (f0, b0) = (hr.frames, hr.bytes);
            if let Err(e) = self.port.txsync(&mut hr) {
                log::debug!("{}: txsync ring {i}: {e}", self.port.name());
                ktoa.set_kern_need_kick(1);
                return;
            }
            self.account(i, hr.frames - f0, hr.bytes - b0);
            ktoa.kern_publish_hwcur_hwtail(hr.kring.hwcur, hr.kring.hwtail);
            if hr.kring.rtail != hr.kring.hwtail {
                hr.kring.rtail = hr.kring.hwtail;
                p.pending_irq = true;
            }
            let (rhead, hwtail) = (hr.kring.rhead, hr.kring.hwtail);
            drop(hr);
            self.notify_guest(i, direct, p);
            let new = atok.kern_read();
            if new.head == rhead {
                if !self.ask_for_kick(i, &mut shadow, rhead) {
                    break;
                }
            } else {
                shadow = new;
            }
            if rhead == hwtail {
                break; // host ring full: the backend's completion will wake us
            }
        }
        self.notify_guest(i, direct, p);
        if direct {
            ktoa.set_kern_need_kick(1); // no loop thread to rescue a ring left at 0
        }
    }

    /// Per-ring RX processing (§8.6 RX 1–3).
    fn process_rx(&self, i: u32, p: &mut RingProc) {
        let (atok, ktoa) = (&self.atok[i as usize], &self.ktoa[i as usize]);
        let direct = self.direct(i);
        if !direct {
            ktoa.set_kern_need_kick(0);
        }
        let mut shadow = atok.kern_read();
        let mut dry = 0;
        loop {
            let Some(mut hr) = self.host_ring(i) else { return };
            let n = hr.kring.num_slots;
            if hr.kring.rxsync_prologue(shadow.head, shadow.cur).is_err() {
                self.reinit(i, &mut hr);
                return;
            }
            let released = self.port.rxsync_release(&mut hr);
            // Count the new slots before publishing them: once published they are the
            // guest's (it may rewrite them), and a reader of the counters sees them complete.
            let moved = hr.kring.hwtail != hr.kring.rtail;
            if moved {
                let (mut frames, mut bytes) = (0, 0);
                let mut s = hr.kring.rtail;
                while s != hr.kring.hwtail {
                    let slot = hr.view.slot(s);
                    frames += u64::from(slot.flags & NS_MOREFRAG == 0);
                    bytes += u64::from(slot.len);
                    s = ring::next(s, n);
                }
                self.account(i, frames, bytes);
                hr.kring.rtail = hr.kring.hwtail;
                p.pending_irq = true;
                dry = 0;
            } else {
                dry += 1;
            }
            ktoa.kern_publish_hwcur_hwtail(hr.kring.hwcur, hr.kring.hwtail);
            let (rhead, hwtail) = (hr.kring.rhead, hr.kring.hwtail);
            let ring_id = hr.id;
            drop(hr);
            if released {
                self.port.rx_released(ring_id);
            }
            self.notify_guest(i, direct, p);
            shadow = atok.kern_read();
            if hwtail == ring::prev(shadow.head, n) || self.port.rx_blocked(ring_id) {
                // The guest holds every buffer (or a host producer waits for room): ask for a
                // kick when it releases some.
                let h0 = shadow.head;
                if !self.ask_for_kick(i, &mut shadow, h0) {
                    break;
                }
                continue;
            }
            if hwtail == rhead || dry >= 2 {
                break; // nothing more from the backend; its next event wakes us
            }
        }
        self.notify_guest(i, direct, p);
        if direct {
            ktoa.set_kern_need_kick(1);
        }
    }

    fn account(&self, i: u32, frames: u64, bytes: u64) {
        let c = &self.counters[i as usize];
        c.packets.fetch_add(frames, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn reinit(&self, i: u32, hr: &mut HostRing) {
        self.port.reinit_ring(hr);
        self.counters[i as usize].reinits.fetch_add(1, Ordering::Relaxed);
        self.ktoa[i as usize].set_kern_need_kick(1);
    }

    /// The main loop (§8.6): process every TX ring, then every RX ring (skipping direct ones),
    /// then sleep until a kick or a backend event (or the timeout).
    pub fn run(&self) {
        log::debug!("{}: kloop started", self.port.name());
        while !self.stop.load(Ordering::Acquire) {
            let seen = self.wake.generation();
            for i in 0..self.num_rings() {
                if !self.direct(i) {
                    self.process(i);
                }
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            self.wake.wait(seen, self.timeout);
        }
        log::debug!("{}: kloop stopped", self.port.name());
    }

    /// Asks the loop to stop (`NETMAP_REQ_SYNC_KLOOP_STOP`).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify();
    }

    /// `true` when no ring runs in the loop thread.
    pub fn all_direct(&self) -> bool {
        self.direct_tx && self.direct_rx
    }
}
