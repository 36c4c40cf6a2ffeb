//! Host-side traffic endpoints: a sink that counts (and optionally verifies) every frame, a
//! source that generates frames at full speed (or a set rate), like netmap's `pkt-gen`, and a
//! reflect endpoint that sends frames back to whoever sent them.
//!
//! The sink and the source work directly on a netmap port (the sink as the port's TX backend,
//! the source filling its RX rings) or on a switch port; [`Reflect`] is a switch port only.

use super::notify::Notifier;
use super::port::{Frame, HostRing, NmPort, PortError, TxBackend};
use super::switch::{Switch, SwitchEndpoint};
use crate::ring;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A frame verifier: gets each frame (header stripped), returns `false` if it is wrong.
pub type Verifier = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// A frame generator: writes frame number `seq` (without virtio-net header) into the buffer.
pub type FrameGen = Box<dyn FnMut(u64, &mut Vec<u8>) + Send>;

/// Counts frames; as a port backend it consumes everything the port transmits.
pub struct Sink {
    hdr_len: u32,
    /// Frames received.
    pub frames: AtomicU64,
    /// Bytes received (headers excluded).
    pub bytes: AtomicU64,
    /// Frames the verifier rejected.
    pub bad: AtomicU64,
    verify: Mutex<Option<Verifier>>,
    /// Signalled when the port this sink backs released RX slots (wakes a [`Source`]).
    pub space: Arc<Notifier>,
    scratch: Mutex<Vec<u8>>,
}

impl Sink {
    /// A sink expecting `hdr_len`-byte virtio-net headers (when attached to a switch).
    pub fn new(hdr_len: u32) -> Arc<Self> {
        Arc::new(Self {
            hdr_len,
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            verify: Mutex::new(None),
            space: Arc::new(Notifier::new()),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Installs a verifier run on every frame.
    pub fn set_verifier(&self, v: Verifier) {
        *self.verify.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    /// Makes this sink the TX backend of `port`.
    pub fn attach_to_port(self: &Arc<Self>, port: &NmPort) {
        port.set_backend(self.clone());
    }

    fn take(&self, frame: &Frame<'_>, hdr_len: usize) {
        let len = frame.len().saturating_sub(hdr_len);
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let mut v = self.verify.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = v.as_mut() {
            let mut s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            s.clear();
            frame.gather(&mut s);
            let body = s.get(hdr_len..).unwrap_or(&[]);
            if !f(body) {
                self.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl SwitchEndpoint for Sink {
    fn hdr_len(&self) -> u32 {
        self.hdr_len
    }
    fn receive(&self, _ring: u32, frame: &Frame<'_>) -> bool {
        self.take(frame, self.hdr_len as usize);
        true
    }
}

impl TxBackend for Sink {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let h = port.vnet_hdr_len() as usize;
        port.for_each_tx_frame(hr, |f, _| {
            self.take(f, h);
            true
        });
        hr.kring.hwtail = ring::prev(hr.kring.hwcur, hr.kring.num_slots);
        Ok(())
    }
    fn rx_released(&self, _port: &NmPort, _ring: u32) {
        self.space.notify();
    }
    fn kind(&self) -> &'static str {
        "sink"
    }
}

/// Where a [`Source`] sends.
pub enum SourceTarget {
    /// Into the RX rings of a port (round robin), waiting for space (lossless). `space` is
    /// signalled when the port's user releases RX slots (a [`Sink`] backend's `space`).
    Port {
        /// The port.
        port: Arc<NmPort>,
        /// Wake-up on released RX slots.
        space: Arc<Notifier>,
    },
    /// Into a switch as port `no`, with `hdr_len`-byte headers (zeroed).
    Switch {
        /// The switch.
        sw: Arc<Switch>,
        /// Our port number on it.
        no: usize,
        /// Header length to prepend.
        hdr_len: u32,
    },
}

/// A running generator thread.
pub struct Source {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Source {
    /// Starts generating: frame `seq` for `seq` in `0..limit` (forever if `None`), at most `pps`
    /// frames per second (0 = as fast as possible).
    pub fn start(target: SourceTarget, mut gen: FrameGen, limit: Option<u64>, pps: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("ptnet-source".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut buf = Vec::new();
                let mut seq = 0u64;
                let hdr = match &target {
                    SourceTarget::Port { port, .. } => port.vnet_hdr_len(),
                    SourceTarget::Switch { hdr_len, .. } => *hdr_len,
                } as usize;
                while !st.load(Ordering::Relaxed) && limit.is_none_or(|l| seq < l) {
                    if pps > 0 && seq * 1_000_000_000 / pps > t0.elapsed().as_nanos() as u64 {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    buf.clear();
                    buf.resize(hdr, 0);
                    gen(seq, &mut buf);
                    if !Self::send_one(&target, seq, &buf, &st) {
                        break;
                    }
                    seq += 1;
                    se.store(seq, Ordering::Relaxed);
                }
            })
            .ok();
        Self { stop, sent, handle }
    }

    fn send_one(target: &SourceTarget, seq: u64, buf: &[u8], stop: &AtomicBool) -> bool {
        match target {
            SourceTarget::Switch { sw, no, hdr_len } => {
                sw.forward(*no, *hdr_len, seq as u32, &Frame::Bytes(buf));
                true
            }
            SourceTarget::Port { port, space } => {
                let f = Frame::Bytes(buf);
                if !port.fits_rx(&f) {
                    return true; // can never fit: skip it
                }
                let ring = (seq % port.num_rx_rings() as u64) as u32;
                loop {
                    let g = space.generation();
                    match port.deliver(ring, &f) {
                        Ok(()) => {
                            port.set_rx_blocked(ring, false);
                            return true;
                        }
                        Err(super::port::DeliverError::NoSpace) => {}
                        Err(_) => return true,
                    }
                    if stop.load(Ordering::Relaxed) {
                        port.set_rx_blocked(ring, false);
                        return false;
                    }
                    port.set_rx_blocked(ring, true);
                    space.wait(g, Duration::from_millis(5));
                }
            }
        }
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `true` once the thread has finished (limit reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the thread and returns the number of frames sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.sent()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A generator of the project's test frames ([`crate::frame`]: well-formed Ethernet/IPv4/UDP
/// with a sequence number and a checksum) of `size` bytes (at least 60).
pub fn udp_frames(src: [u8; 6], dst: [u8; 6], size: usize) -> FrameGen {
    Box::new(move |seq, buf| crate::frame::write(buf, dst, src, seq, size))
}

// ------------------------------------------------------------------------------------------
// Reflect

/// Settings of a [`Reflect`] endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReflectConfig {
    /// The endpoint's MAC address: frames sent to it come back.
    pub mac: [u8; 6],
    /// Virtio-net header length of its switch port.
    pub hdr_len: u32,
    /// Most frames waiting to be sent back; more are dropped (`queue_drops`).
    pub capacity: usize,
    /// How long a frame its destination refuses (RX ring full) is offered again before it is
    /// dropped (`undelivered`).
    pub retry: Duration,
}

impl ReflectConfig {
    /// `mac`, no virtio-net header, 1024 frames of queue, 1 s of retries.
    pub fn new(mac: [u8; 6]) -> Self {
        Self { mac, hdr_len: 0, capacity: 1024, retry: Duration::from_secs(1) }
    }
}

/// Counters of a [`Reflect`] endpoint.
#[derive(Debug, Default)]
pub struct ReflectStats {
    /// Frames addressed to the endpoint and queued.
    pub queued: AtomicU64,
    /// Frames sent back and accepted by their destination.
    pub reflected: AtomicU64,
    /// Frames dropped because the queue was full (or the endpoint stopped).
    pub queue_drops: AtomicU64,
    /// Frames dropped because their destination refused them for the whole retry time, the
    /// switch was gone, or the endpoint stopped with them queued.
    pub undelivered: AtomicU64,
    /// Times a refused frame was offered again.
    pub retries: AtomicU64,
    /// Frames not for it: addressed to another MAC (flooded unknown unicast), multicast or
    /// broadcast, from a multicast address or its own, or shorter than two MAC addresses.
    pub ignored: AtomicU64,
}

impl ReflectStats {
    /// `queued=… reflected=… ignored=… queue_drops=… undelivered=… retries=…`.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "queued={} reflected={} ignored={} queue_drops={} undelivered={} retries={}",
            g(&self.queued),
            g(&self.reflected),
            g(&self.ignored),
            g(&self.queue_drops),
            g(&self.undelivered),
            g(&self.retries),
        )
    }
}

/// Frames waiting for the worker, as `(ring hint, frame with header)`.
struct ReflectQueue {
    frames: VecDeque<(u32, Vec<u8>)>,
    free: Vec<Vec<u8>>,
    stop: bool,
}

struct ReflectShared {
    q: Mutex<ReflectQueue>,
    cv: Condvar,
}

impl ReflectShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReflectQueue> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next frame, or `None` once stopped.
    fn next(&self) -> Option<(u32, Vec<u8>)> {
        let mut q = self.lock();
        loop {
            if q.stop {
                return None;
            }
            if let Some(f) = q.frames.pop_front() {
                return Some(f);
            }
            q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stopped(&self) -> bool {
        self.lock().stop
    }

    fn recycle(&self, buf: Vec<u8>) {
        let mut q = self.lock();
        if q.free.len() < 64 {
            q.free.push(buf);
        }
    }
}

/// A switch endpoint that sends every frame addressed to its MAC back into the switch, from its
/// own port, with the destination and source MAC addresses swapped: the frame returns, unicast,
/// to its sender (the switch learnt the sender's address when the frame came in, and learns the
/// endpoint's from the answer, so after the first answer nothing is flooded). The guest self
/// test's peer on a switch (`ptnet-host --reflect`).
///
/// [`SwitchEndpoint::receive`] runs under the switch's lock, so it only queues a copy (bounded:
/// a full queue drops and counts); a worker thread sends the copies in order. A frame whose
/// destination refuses it (its RX ring is full) is offered again whenever a port on the switch
/// releases RX slots ([`Switch::space`]), and at least every 2 ms, for at most
/// [`ReflectConfig::retry`]: a guest that keeps
/// at most half its RX ring in flight gets every frame back even while other traffic (a
/// source's broadcasts) fills the rest. Frames in the queue wait behind such a frame.
///
/// The worker holds the switch weakly and stops when the endpoint is dropped or
/// [`Reflect::stop`]ped.
pub struct Reflect {
    cfg: ReflectConfig,
    no: std::sync::OnceLock<usize>,
    shared: Arc<ReflectShared>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Counters.
    pub stats: Arc<ReflectStats>,
}

impl std::fmt::Debug for Reflect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reflect(port {}, {})", self.port_no(), self.stats.summary())
    }
}

impl Reflect {
    /// Attaches a reflect endpoint to `sw` and starts its worker thread.
    pub fn attach(sw: &Arc<Switch>, cfg: ReflectConfig) -> std::io::Result<Arc<Self>> {
        let shared = Arc::new(ReflectShared {
            q: Mutex::new(ReflectQueue { frames: VecDeque::new(), free: Vec::new(), stop: false }),
            cv: Condvar::new(),
        });
        let stats = Arc::new(ReflectStats::default());
        let this = Arc::new(Self {
            cfg,
            no: std::sync::OnceLock::new(),
            shared: shared.clone(),
            worker: Mutex::new(None),
            stats: stats.clone(),
        });
        // Until the worker runs, frames just queue.
        let no = sw.attach(this.clone());
        let _ = this.no.set(no);
        let weak = Arc::downgrade(sw);
        let spawned = std::thread::Builder::new()
            .name("ptnet-reflect".into())
            .spawn(move || reflect_worker(&shared, &stats, &weak, no, cfg));
        match spawned {
            Ok(h) => {
                *this.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                Ok(this)
            }
            Err(e) => {
                sw.detach(no);
                Err(e)
            }
        }
    }

    /// Its port number on the switch.
    pub fn port_no(&self) -> usize {
        self.no.get().copied().unwrap_or(usize::MAX)
    }

    /// Its settings.
    pub fn config(&self) -> &ReflectConfig {
        &self.cfg
    }

    /// Frames waiting to be sent back.
    pub fn queue_len(&self) -> usize {
        self.shared.lock().frames.len()
    }

    /// `true` while the worker thread runs.
    pub fn is_running(&self) -> bool {
        let w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        w.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops the worker (within a few milliseconds, even while it retries a frame) and waits
    /// for it; queued frames are dropped and counted as `undelivered`. Later frames are
    /// dropped as `queue_drops`. Idempotent.
    pub fn stop(&self) {
        {
            let mut q = self.shared.lock();
            q.stop = true;
            let left = q.frames.len() as u64;
            q.frames.clear();
            self.stats.undelivered.fetch_add(left, Ordering::Relaxed);
        }
        self.shared.cv.notify_all();
        let h = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            // The worker may drop the last reference to the switch, and so to us: it cannot
            // wait for itself, and it ends on its own once it sees `stop`.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Reflect {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SwitchEndpoint for Reflect {
    fn hdr_len(&self) -> u32 {
        self.cfg.hdr_len
    }

    fn receive(&self, ring: u32, frame: &Frame<'_>) -> bool {
        let mut eth = [0u8; 12];
        let full = frame.read_at(self.cfg.hdr_len as usize, &mut eth) == eth.len();
        let (dst, src) = eth.split_at(6);
        if !full || dst != self.cfg.mac || src[0] & 1 != 0 || src == self.cfg.mac {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let mut q = self.shared.lock();
        if q.stop || q.frames.len() >= self.cfg.capacity {
            drop(q);
            self.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut buf = q.free.pop().unwrap_or_default();
        buf.clear();
        frame.gather(&mut buf);
        q.frames.push_back((ring, buf));
        drop(q);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.shared.cv.notify_one();
        true
    }
}

fn reflect_worker(
    shared: &ReflectShared,
    stats: &ReflectStats,
    sw: &Weak<Switch>,
    no: usize,
    cfg: ReflectConfig,
) {
    let h = cfg.hdr_len as usize;
    while let Some((ring, mut f)) = shared.next() {
        if let Some(macs) = f.get_mut(h..h + 12) {
            let (dst, src) = macs.split_at_mut(6);
            dst.swap_with_slice(src);
        }
        let sent = offer(shared, stats, sw, no, cfg, ring, &f);
        let c = if sent { &stats.reflected } else { &stats.undelivered };
        c.fetch_add(1, Ordering::Relaxed);
        shared.recycle(f);
    }
}

/// Forwards `f` from port `no`, offering it again while nobody accepts it (see [`Reflect`]).
/// The switch is held only while forwarding, never while waiting: dropping it (and so this
/// endpoint) is not delayed by a frame under retry.
fn offer(
    shared: &ReflectShared,
    stats: &ReflectStats,
    sw: &Weak<Switch>,
    no: usize,
    cfg: ReflectConfig,
    ring: u32,
    f: &[u8],
) -> bool {
    let deadline = Instant::now() + cfg.retry;
    loop {
        let Some(switch) = sw.upgrade() else { return false };
        let space = switch.space.clone();
        let g = space.generation();
        let accepted = switch.forward(no, cfg.hdr_len, ring, &Frame::Bytes(f)) > 0;
        drop(switch);
        if accepted {
            return true;
        }
        let now = Instant::now();
        if now >= deadline || shared.stopped() {
            return false;
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        space.wait(g, (deadline - now).min(Duration::from_millis(2)));
    }
}
