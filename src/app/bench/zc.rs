//! The zero-copy scenarios: model VMs whose ptnet NIC is served by ptnetd behind the in-process
//! kernel, zero-copy clients ([`NetmapPort`]) writing and reading sequence numbers in place in
//! the shared buffers, and host ports (sink, source, pipe, switch) on the other side.

use super::{BenchError, Cell, HostMode, Load, Measured};
use crate::client::host::HostOs;
use crate::client::{EventFlags, NetmapPort, Os};
use crate::driver::{DriverConfig, Ptnet};
use crate::model::memory::{MemConfig, NetmapMemory};
use crate::model::notify::Notifier;
use crate::model::port::{Frame, HostRing, NmPort, PipeEnd, PortError, PortSpec, TxBackend};
use crate::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use crate::model::switch::Switch;
use crate::model::vm::Vm;
use crate::nm::Slot;
use crate::platform::sim::SimPlatform;
use crate::ring;
use crate::scheme::host::{HostConfig, HostKernel, Snapshot};
use crate::scheme::Daemon;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Slots per ring of every port.
pub(super) const SLOTS: u32 = 1024;
/// Longest wait for an event before looking again (a lost wake-up costs this, visibly).
pub(super) const POLL: Duration = Duration::from_millis(5);
/// No frame for this long: the cell failed.
pub(super) const STALL: Duration = Duration::from_secs(5);
/// MAC addresses of VM A and VM B.
pub(super) const MACS: [[u8; 6]; 2] =
    [[0x52, 0x54, 0, 0x12, 0x34, 0x56], [0x52, 0x54, 0, 0x12, 0x34, 0x57]];
/// Bytes every sender writes into a frame: Ethernet header, magic, sequence number.
pub(super) const HDR: usize = 26;
/// Where the sequence number sits.
pub(super) const SEQ_AT: usize = 18;

/// The bytes a sender writes at the start of frame `seq` from A to B.
pub(super) fn header(seq: u64) -> [u8; HDR] {
    let mut h = [0u8; HDR];
    h[..6].copy_from_slice(&MACS[1]);
    h[6..12].copy_from_slice(&MACS[0]);
    h[12..14].copy_from_slice(&[0x88, 0xb6]); // local experimental ethertype
    h[14..18].copy_from_slice(b"bnch");
    h[SEQ_AT..].copy_from_slice(&seq.to_be_bytes());
    h
}

/// Sequence bookkeeping of a receiver: frames whose number does not increase are counted.
#[derive(Debug, Default)]
pub(super) struct SeqCheck {
    next: u64,
    /// Frames with a number below the next expected one (duplicated or reordered).
    pub backwards: u64,
}

impl SeqCheck {
    pub(super) fn see(&mut self, seq: u64) {
        self.backwards += u64::from(seq < self.next);
        self.next = seq.wrapping_add(1);
    }

    pub(super) fn see_bytes(&mut self, b: [u8; 8]) {
        self.see(u64::from_be_bytes(b));
    }
}

/// The sender's progress, for the receiver's end condition.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Frames handed on so far.
    pub sent: AtomicU64,
    /// The sender finished: `sent` is final.
    pub done: AtomicBool,
}

impl Progress {
    pub(super) fn finish(&self, sent: u64) {
        self.sent.store(sent, Ordering::Release);
        self.done.store(true, Ordering::Release);
    }

    /// `true` once the sender finished and `accounted` covers what it sent.
    pub(super) fn complete(&self, accounted: u64) -> bool {
        self.done.load(Ordering::Acquire) && accounted >= self.sent.load(Ordering::Acquire)
    }
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

/// One model VM: its ptnet device (host counters) and ptnetd serving its schemes.
pub(super) struct Nic {
    pub dev: Arc<PtnetDevice>,
    pub k: HostKernel<SimPlatform>,
}

impl Nic {
    /// A VM (`n`: 0 for A, 1 for B) whose NIC sits on `port` in host mode `mode`.
    pub(super) fn new(port: Arc<NmPort>, mode: HostMode, n: usize) -> Result<Self, BenchError> {
        let vm = Vm::with_first_slot(64, 3 + n as u8).map_err(setup("vm"))?;
        let (kloop, transport) = (mode.kloop(), mode.transport());
        let netdev =
            Netdev { port: Some(port), passthrough: true, kloop_tx: kloop, kloop_rx: kloop };
        let cfg = PtnetConfig { mac: Some(MACS[n]), ..PtnetConfig::default() };
        let dev = vm.add_ptnet(netdev, cfg).map_err(setup("ptnet device"))?;
        let slot = vm.slot_of(&dev).ok_or(BenchError::Setup("no ptnet slot".into()))?;
        let mut plat = SimPlatform::new(vm, slot);
        let nic = Ptnet::attach(&mut plat, DriverConfig::default()).map_err(setup("attach"))?;
        let bell = plat.doorbell();
        let k = HostKernel::spawn(
            Daemon::new(plat, nic),
            bell,
            HostConfig { transport, ..HostConfig::default() },
        );
        Ok(Self { dev, k })
    }

    /// Kicks and interrupts of every ring so far.
    pub(super) fn notifications(&self) -> (u64, u64) {
        let (mut kicks, mut irqs) = (0, 0);
        let mut i = 0;
        while let Some(c) = self.dev.counters(i) {
            kicks += c.kicks;
            irqs += c.interrupts;
            i += 1;
        }
        (kicks, irqs)
    }

    /// The daemon's counters once `ready` holds for them (its snapshot is taken after each
    /// of its loops), or as they are after two seconds.
    pub(super) fn snapshot_when(&self, ready: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            let s = self.k.snapshot();
            if ready(&s) || Instant::now() >= end {
                return s;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Stops ptnetd and shuts the device down.
    pub(super) fn stop(self) -> Result<(), BenchError> {
        match self.k.stop() {
            Some(d) => d.shutdown().map_err(setup("shutdown")),
            None => Err(BenchError::Setup("the daemon thread died".into())),
        }
    }
}

/// Kicks and interrupts of `nics` now.
pub(super) fn notifications(nics: &[&Nic]) -> (u64, u64) {
    nics.iter().map(|n| n.notifications()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// A port `name` of one ring pair in a region of its own.
pub(super) fn own_port(name: &str) -> Result<Arc<NmPort>, BenchError> {
    crate::app::embedded::own_port(name, SLOTS).map_err(setup("port"))
}

/// What a zero-copy sender did.
#[derive(Debug, Clone, Copy)]
struct Sent {
    t0: Instant,
    frames: u64,
    calls: u64,
}

/// Sends from TX ring `ring` of `port`: batches of `batch` frames of `len` bytes, each with its
/// header and sequence number written in place, one `TXSYNC` per batch; waits for room when
/// the ring is full. Always marks `prog` finished.
fn zc_send<O: Os>(
    port: &mut NetmapPort<'_, O>,
    ring: u32,
    load: &Load,
    batch: u64,
    len: usize,
    prog: &Progress,
) -> Result<Sent, BenchError> {
    let t0 = Instant::now();
    let (mut seq, mut calls) = (0u64, 0u64);
    let mut go = || -> Result<(), BenchError> {
        let deadline = t0 + load.time;
        while seq < load.frames && Instant::now() < deadline {
            let tx = port.tx_ring(ring)?;
            let room = u64::from(tx.space());
            if room == 0 {
                // The batch's TXSYNC found the ring full and armed the TX interrupt (§8.2
                // step 6): wait for it as pkt-gen's `poll` loop does; the readiness check
                // re-reads the tail (and syncs when the interrupt fired), so a second TXSYNC
                // here would only cost a call, and in direct mode a kick.
                port.wait(EventFlags::EVENT_WRITE, POLL)?;
                continue;
            }
            let n = room.min(batch).min(load.frames - seq);
            let mut h = tx.head();
            for _ in 0..n {
                let s = tx.slot(h)?;
                tx.write_buf(s.buf_idx, 0, &header(seq))?;
                tx.set_slot(h, Slot { buf_idx: s.buf_idx, len: len as u16, flags: 0 })?;
                h = tx.next(h);
                seq += 1;
            }
            tx.set_head_cur(h, h);
            port.txsync()?;
            calls += 1;
            prog.sent.store(seq, Ordering::Release);
        }
        prog.finish(seq);
        // Drain, as pkt-gen does before it exits: sync until the host has taken every slot
        // (in direct mode the host moves TX slots only inside a sync's kick, so frames a full
        // peer held back would otherwise stay in the ring).
        let mut idle = Instant::now();
        loop {
            let tx = port.tx_ring(ring)?;
            let free = tx.space();
            if free + 1 >= tx.num_slots() {
                return Ok(());
            }
            port.txsync()?;
            calls += 1;
            if port.tx_ring(ring)?.space() != free {
                idle = Instant::now();
            } else if idle.elapsed() > STALL {
                return Err(BenchError::Stalled {
                    sent: seq,
                    received: seq - u64::from(tx.num_slots() - 1 - free),
                    dropped: 0,
                });
            } else {
                port.wait(EventFlags::EVENT_WRITE, POLL)?;
            }
        }
    };
    let r = go();
    prog.finish(seq);
    r.map(|()| Sent { t0, frames: seq, calls })
}

/// What a zero-copy receiver did.
#[derive(Debug, Clone, Copy)]
struct Received {
    last: Instant,
    frames: u64,
    calls: u64,
}

/// Receives on RX ring `ring` of `port`, at most `batch` frames per `RXSYNC`, reading each
/// frame's sequence number in place, until the sender finished and received + `dropped()`
/// covers what it sent.
fn zc_recv<O: Os>(
    port: &mut NetmapPort<'_, O>,
    ring: u32,
    batch: u64,
    prog: &Progress,
    dropped: &dyn Fn() -> u64,
) -> Result<Received, BenchError> {
    let mut out = Received { last: Instant::now(), frames: 0, calls: 0 };
    let mut seqs = SeqCheck::default();
    let mut idle = Instant::now();
    let mut b = [0u8; 8];
    loop {
        let rx = port.rx_ring(ring)?;
        let n = u64::from(rx.space()).min(batch);
        if n > 0 {
            let mut h = rx.head();
            for _ in 0..n {
                let s = rx.slot(h)?;
                rx.read_buf(s.buf_idx, SEQ_AT, &mut b)?;
                seqs.see_bytes(b);
                h = rx.next(h);
            }
            rx.set_head_cur(h, h);
            out.frames += n;
            out.last = Instant::now();
            idle = out.last;
        }
        if prog.complete(out.frames + dropped()) {
            break;
        }
        port.rxsync()?;
        out.calls += 1;
        if port.rx_ring(ring)?.space() == 0 {
            if idle.elapsed() > STALL {
                return Err(BenchError::Stalled {
                    sent: prog.sent.load(Ordering::Acquire),
                    received: out.frames,
                    dropped: dropped(),
                });
            }
            port.wait(EventFlags::EVENT_READ, POLL)?;
        }
    }
    port.rxsync()?; // hand the last slots back (not part of the measurement)
    if seqs.backwards > 0 {
        return Err(BenchError::Corrupt { what: "frames out of sequence", count: seqs.backwards });
    }
    Ok(out)
}

/// A TX backend that consumes every frame, reading its sequence number in place (no copy).
#[derive(Default)]
struct SeqSink {
    frames: AtomicU64,
    seqs: Mutex<SeqCheck>,
    last: Mutex<Option<Instant>>,
    /// Signalled when the port's user releases RX slots (wakes the source of zc-rx).
    space: Notifier,
}

impl TxBackend for SeqSink {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let mut seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        let mut b = [0u8; 8];
        let n = port.for_each_tx_frame(hr, |f, _| {
            f.read_at(SEQ_AT, &mut b);
            seqs.see_bytes(b);
            true
        });
        hr.kring.hwtail = ring::prev(hr.kring.hwcur, hr.kring.num_slots);
        if n > 0 {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.frames.fetch_add(n as u64, Ordering::Release);
        }
        Ok(())
    }

    fn rx_released(&self, _port: &NmPort, _ring: u32) {
        self.space.notify();
    }

    fn kind(&self) -> &'static str {
        "bench-sink"
    }
}

/// zc-tx: a zero-copy client on VM A sends into a port whose backend is a [`SeqSink`].
pub(super) fn tx(c: &Cell) -> Result<Measured, BenchError> {
    let port = own_port("sink")?;
    let sink = Arc::new(SeqSink::default());
    port.set_backend(sink.clone());
    let a = Nic::new(port, c.host_mode, 0)?;
    let os = HostOs::new(vec![&a.k]);
    let mut p = NetmapPort::open(&os, a.k.name(), "0/T")?;
    let (k0, i0) = a.notifications();
    let prog = Progress::default();
    let sent = zc_send(&mut p, 0, &c.load, c.batch, c.frame_len, &prog)?;
    // The host consumes asynchronously in kloop mode: wait for the sink to see everything.
    let end = Instant::now() + STALL;
    while sink.frames.load(Ordering::Acquire) < sent.frames {
        if Instant::now() > end {
            return Err(BenchError::Stalled {
                sent: sent.frames,
                received: sink.frames.load(Ordering::Acquire),
                dropped: 0,
            });
        }
        std::thread::yield_now();
    }
    let (k1, i1) = a.notifications();
    let last = sink.last.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(sent.t0);
    let backwards = sink.seqs.lock().unwrap_or_else(|e| e.into_inner()).backwards;
    drop(p);
    drop(os);
    a.stop()?;
    if backwards > 0 {
        return Err(BenchError::Corrupt { what: "frames out of sequence", count: backwards });
    }
    Ok(Measured {
        sent: sent.frames,
        received: sink.frames.load(Ordering::Acquire),
        dropped: 0,
        elapsed: last.saturating_duration_since(sent.t0),
        kicks: k1 - k0,
        interrupts: i1 - i0,
        copies: 0, // the client writes in place, the sink reads in place
        scheme_calls: sent.calls,
        sender_notifications: None,
    })
}

/// zc-rx: a host source thread fills VM A's RX ring in batches (one notification per batch,
/// waiting for released slots when the ring is full); a zero-copy client receives.
pub(super) fn rx(c: &Cell) -> Result<Measured, BenchError> {
    let port = own_port("source")?;
    let sink = Arc::new(SeqSink::default());
    port.set_backend(sink.clone()); // for its `space` notifier
    let a = Nic::new(port.clone(), c.host_mode, 0)?;
    let os = HostOs::new(vec![&a.k]);
    let mut p = NetmapPort::open(&os, a.k.name(), "0/R")?;
    let (k0, i0) = a.notifications();
    let rx0 = port.stats.rx_frames.load(Ordering::Relaxed);
    let prog = Progress::default();
    let start = Barrier::new(2);
    let (t0, got) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            start.wait();
            zc_recv(&mut p, 0, c.batch, &prog, &|| 0)
        });
        start.wait();
        let t0 = Instant::now();
        source(&port, &sink.space, &c.load, c.batch, c.frame_len, &prog);
        (t0, h.join())
    });
    let got = got.map_err(|_| BenchError::Setup("receiver panicked".into()))??;
    let (k1, i1) = a.notifications();
    let copies = port.stats.rx_frames.load(Ordering::Relaxed) - rx0;
    drop(p);
    drop(os);
    a.stop()?;
    Ok(Measured {
        sent: prog.sent.load(Ordering::Acquire),
        received: got.frames,
        dropped: 0,
        elapsed: got.last.saturating_duration_since(t0),
        kicks: k1 - k0,
        interrupts: i1 - i0,
        copies, // the source writes each frame into an RX buffer (what a NIC's DMA does)
        scheme_calls: got.calls,
        sender_notifications: None,
    })
}

/// The host source of zc-rx: up to `batch` frames per ring lock and notification.
fn source(port: &NmPort, space: &Notifier, load: &Load, batch: u64, len: usize, prog: &Progress) {
    let t0 = Instant::now();
    let mut buf = vec![0u8; len];
    let mut seq = 0u64;
    let mut blocked = false;
    while seq < load.frames && t0.elapsed() < load.time {
        let g = space.generation();
        let mut k = 0;
        if let Some(mut hr) = port.rx_ring(0) {
            while k < batch && seq < load.frames && NmPort::rx_free(&hr) > 0 {
                buf[..HDR].copy_from_slice(&header(seq));
                if port.deliver_locked(&mut hr, &Frame::Bytes(&buf)).is_err() {
                    break;
                }
                seq += 1;
                k += 1;
            }
        }
        if k > 0 {
            if blocked {
                port.set_rx_blocked(0, false);
                blocked = false;
            }
            prog.sent.store(seq, Ordering::Release);
            port.notify_rx(0);
        } else {
            // Full: let the host loop ask for a kick on the next release, and wait for it.
            port.set_rx_blocked(0, true);
            blocked = true;
            space.wait(g, POLL);
        }
    }
    port.set_rx_blocked(0, false);
    prog.finish(seq);
}

/// What connects VM A and VM B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// A netmap pipe (slots swapped, no copy).
    Pipe,
    /// The VALE-like switch (one copy; a full destination ring drops).
    Switch,
}

/// zc-pipe and zc-switch: a zero-copy sender on VM A, a zero-copy receiver on VM B.
pub(super) fn vm_to_vm(c: &Cell, link: Link) -> Result<Measured, BenchError> {
    let sw = Switch::new("bench0");
    let (pa, pb) = match link {
        Link::Pipe => {
            let mem = NetmapMemory::new(1, MemConfig::for_ports(2, 2, SLOTS, 64))
                .map_err(setup("mem"))?;
            let mem = Arc::new(mem);
            let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{0", 1, SLOTS))
                .map_err(setup("port"))?;
            let b = NmPort::new(mem, &PortSpec::new("pipe}0", 1, SLOTS)).map_err(setup("port"))?;
            PipeEnd::connect(&a, &b).map_err(setup("pipe"))?;
            (a, b)
        }
        Link::Switch => {
            let (a, b) = (own_port("vm1")?, own_port("vm2")?);
            sw.attach_port(&a);
            let nb = sw.attach_port(&b);
            // B announces itself with one frame (an ARP reply would do it), so the switch has
            // learnt B's address and forwards A's frames to B as a known unicast destination,
            // VALE's steady state for a flow between two VMs. (Unlearnt, each frame would be
            // flooded, which with two ports reaches B alone, through a dearer route.)
            let mut hello = header(0);
            hello[..12].copy_from_slice(&[MACS[0], MACS[1]].concat());
            sw.forward(nb, 0, 0, &Frame::Bytes(&hello));
            (a, b)
        }
    };
    let a = Nic::new(pa, c.host_mode, 0)?;
    let b = Nic::new(pb.clone(), c.host_mode, 1)?;
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let mut txp = NetmapPort::open(&oa, a.k.name(), "0/T")?;
    let mut rxp = NetmapPort::open(&ob, b.k.name(), "0/R")?;
    let (k0, i0) = notifications(&[&a, &b]);
    let (ka0, ia0) = a.notifications();
    let (rx0, drop0) =
        (pb.stats.rx_frames.load(Ordering::Relaxed), sw.stats.dropped.load(Ordering::Relaxed));
    let flood0 = sw.stats.flooded.load(Ordering::Relaxed);
    let dropped = || sw.stats.dropped.load(Ordering::Relaxed) - drop0;
    let prog = Progress::default();
    let start = Barrier::new(2);
    let (sent, got) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            start.wait();
            zc_recv(&mut rxp, 0, c.batch, &prog, &dropped)
        });
        start.wait();
        let sent = zc_send(&mut txp, 0, &c.load, c.batch, c.frame_len, &prog);
        (sent, h.join())
    });
    let got = got.map_err(|_| BenchError::Setup("receiver panicked".into()))?;
    let (sent, got) = (sent?, got?);
    let (k1, i1) = notifications(&[&a, &b]);
    let (ka1, ia1) = a.notifications();
    let copies = match link {
        Link::Pipe => 0, // PipeEnd swaps buffer indices
        Link::Switch => pb.stats.rx_frames.load(Ordering::Relaxed) - rx0,
    };
    let flooded = sw.stats.flooded.load(Ordering::Relaxed) - flood0;
    if flooded > 0 {
        return Err(BenchError::Corrupt { what: "frames flooded (B not learnt)", count: flooded });
    }
    let m = Measured {
        sent: sent.frames,
        received: got.frames,
        dropped: dropped(),
        elapsed: got.last.saturating_duration_since(sent.t0),
        kicks: k1 - k0,
        interrupts: i1 - i0,
        copies,
        scheme_calls: sent.calls + got.calls,
        sender_notifications: Some((ka1 - ka0, ia1 - ia0)),
    };
    drop((txp, rxp));
    drop((oa, ob));
    a.stop()?;
    b.stop()?;
    Ok(m)
}
