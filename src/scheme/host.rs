//! The in-process transport (host builds): plays the kernel's part between client threads and a
//! daemon thread, so the schemes run exactly the request path they run on Redox.
//!
//! A client call becomes an [`Sqe`] laid out as Redox's kernel lays it out (opcode, tag, args,
//! caller uid/gid), turned into a [`Request`] and handed to the daemon thread, which runs it
//! through [`Server::request`] (redox-scheme's decoding and dispatch). Replies come back as the
//! [`Cqe`] the kernel would read; a blocking request the daemon parks is answered later, like on
//! Redox, and can be cancelled; `post_fevent` events are queued per handle for
//! [`HostKernel::wait_event`]; `mmap` hands out the daemon's own mapping of the region (one
//! address space here). Buffers passed to the daemon are the client's own and stay valid while
//! the client waits for the reply, as the kernel guarantees on Redox.
//!
//! The daemon thread sleeps on the [`Bell`] given at spawn (for the model:
//! `SimPlatform::doorbell`, the VM's interrupt controller), which interrupts and submissions
//! ring. With [`Transport::Inline`] requests run on the caller's thread instead, and a caller
//! that blocks (an event wait, a parked request) sleeps on the bell itself and takes the
//! interrupts that wake it: the guest vCPU halted in `poll` runs the interrupt handler, which
//! wakes the poller, with no daemon thread in between.
#![allow(unsafe_code)]

use super::server::Server;
use super::{Daemon, SchemeStats, Which};
use crate::driver::ring::RingStats;
use crate::notify::Notifier;
use crate::platform::{Bell, Platform};
use crate::shm::Region;
use redox_scheme::{Request, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use syscall::data::Stat;
use syscall::error::{Error, Result, EINVAL, ETIMEDOUT};
use syscall::flag::{EventFlags, MapFlags};
use syscall::schemev2::{Cqe, CqeOpcode, Opcode, Sqe, SqeFlags};

/// Settings of the transport.
#[derive(Debug, Clone, Copy)]
pub struct HostConfig {
    /// Polling fallback of the daemon loop: every ring is treated as signalled at least this
    /// often. `None` in protocol tests: a lost wake-up must fail a test, not cost a poll period.
    pub poll: Option<Duration>,
    /// How long a client waits for a reply before the call fails with `ETIMEDOUT` (a test fails
    /// instead of hanging).
    pub reply_timeout: Duration,
    /// Where requests run. [`Transport::Ipc`] (the default) is Redox's: each request is handed
    /// to the daemon thread and the caller waits for its reply. [`Transport::Inline`] runs the
    /// request, and the end of batch after it, on the calling thread under the daemon's lock, as
    /// a monolithic kernel runs a driver's sync inside the caller's system call (netmap on
    /// FreeBSD or Linux guests): the same dispatch and daemon code without the two thread
    /// hand-offs per call. A blocked inline caller takes the interrupts itself (see the module
    /// documentation); the daemon thread only runs the polling fallback.
    pub transport: Transport,
    /// How long a guest thread that blocks polls before it sleeps: the daemon thread between
    /// loops, a client waiting for a reply or an event, a blocked inline caller. This is KVM's
    /// halt polling (`halt_poll_ns`, 200 µs by default on x86): a vCPU with nothing left to run
    /// polls for a wake-up before the host deschedules it. Zero: it sleeps at once (after
    /// [`crate::notify::YIELDS`] yields).
    pub halt_poll: Duration,
}

/// Default of [`HostConfig::halt_poll`]: KVM's default `halt_poll_ns` on x86. Measured with
/// `ptnet-bench --scenario zc-pipe --batch 256 --frame-len 60 --frames 5000000` (2 cores, load
/// ~1): direct+inline 22.6-27.6 Mpps without polling (four runs), 37.5-41.7 with 200 µs of
/// yields (three runs); kloop+inline 12.4-30.5 without, 17.0-20.0 with (its four threads share
/// two cores; the host loops' own waits do not poll, as netmap's kloop does not). Over IPC
/// (`--frames 4000000`, four alternating runs each), zc-pipe direct 9.2-22.1 without, 20.0-26.5
/// with, kloop 12.2-15.4 / 14.9-21.2; zc-switch direct 3.8-5.8 / 12.1-16.1, kloop 5.2-7.1 /
/// 7.0-12.4. Spinning on the generation without yielding was as fast for direct+inline but cut
/// kloop+inline to 3.8-7.4 Mpps (the spinner held the core the host loop thread needed), and
/// spinning 2,000 or 20,000 rounds in the reply wait cut the IPC rows 2-3x.
pub const HALT_POLL: Duration = Duration::from_micros(200);

/// How a client's request reaches the daemon (see [`HostConfig::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Handed to the daemon thread (Redox's scheme IPC).
    #[default]
    Ipc,
    /// Run on the caller's thread (a system call into an in-kernel driver).
    Inline,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            poll: Some(Duration::from_millis(10)),
            reply_timeout: Duration::from_secs(30),
            transport: Transport::Ipc,
            halt_poll: HALT_POLL,
        }
    }
}

/// Counters read from the daemon thread after each of its loops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Scheme-layer counters.
    pub scheme: SchemeStats,
    /// Driver counters per ring (TX then RX).
    pub rings: Vec<RingStats>,
    /// Requests parked now.
    pub parked: usize,
    /// Loops of the daemon thread (wake-ups).
    pub loops: u64,
}

type Replies = HashMap<(Which, u32), Arc<ReplySlot>>;

/// Where one request's completion goes: written once by whichever thread answers it (the
/// daemon thread, or an inline caller ending a batch), read by the caller.
#[derive(Debug, Default)]
struct ReplySlot {
    cqe: Mutex<Option<Cqe>>,
    ready: AtomicBool,
    bell: Notifier,
}

impl ReplySlot {
    fn put(&self, c: Cqe) {
        *lock(&self.cqe) = Some(c);
        self.ready.store(true, Ordering::Release);
        self.bell.notify();
    }

    fn take(&self) -> Option<Cqe> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.cqe).take()
    }

    /// The reply, waiting at most `t` on the slot's notifier, polling it first for `poll` with
    /// yields, never spinning. (Spinning 2,000 or 20,000 `spin_loop` rounds before sleeping was
    /// measured with `ptnet-bench --scenario zc-pipe --batch 256`, two runs each, kloop and
    /// direct: 5.2-7.1 and 5.6-10.3 Mpps without, 3.0-3.5 and 4.7-4.8 with 2,000, 1.9-3.8 and
    /// 1.8-2.4 with 20,000: on two cores the spinner holds the core the thread it waits for
    /// needs. A yield hands that core over.)
    fn wait(&self, t: Duration, poll: Duration) -> Option<Cqe> {
        let end = Instant::now() + t;
        loop {
            let seen = self.bell.generation();
            if let Some(c) = self.take() {
                return Some(c);
            }
            let left = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            self.bell.wait_polling(seen, poll, left);
        }
    }
}

struct Shared<P: Platform> {
    /// The daemon behind both schemes: the daemon thread holds it for one loop, an inline
    /// caller for one request and its end of batch.
    server: Mutex<Server<P>>,
    queue: Mutex<Vec<(Which, Sqe)>>,
    /// Where the reply of each request in flight goes (registered before it is submitted).
    replies: Mutex<Replies>,
    events: Mutex<HashMap<(Which, usize), usize>>,
    /// Rung when events are posted (what IPC clients waiting for events sleep on).
    event_bell: Notifier,
    snapshot: Mutex<Snapshot>,
    stop: AtomicBool,
    bell: Arc<dyn Bell>,
    cfg: HostConfig,
    /// What the daemon thread sleeps on with [`Transport::Inline`] (only stopping rings it:
    /// interrupts wake the inline callers that wait for them, not the daemon thread).
    idle: Notifier,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the transport's threads sleep on (see [`Bell`]): for the model the VM's interrupt
/// controller (`SimPlatform::doorbell`).
pub type Doorbell = Arc<dyn Bell>;

/// A blocking request in flight.
#[derive(Debug)]
pub struct Pending {
    /// Its tag (what a cancellation names).
    pub tag: u32,
    which: Which,
    slot: Arc<ReplySlot>,
}

/// The kernel's part for one daemon running on a thread of this process.
pub struct HostKernel<P: Platform + Send + 'static> {
    shared: Arc<Shared<P>>,
    thread: Option<JoinHandle<()>>,
    region: Region,
    roots: [usize; 2],
    next_tag: AtomicU32,
    name: String,
}

impl<P: Platform + Send + 'static> std::fmt::Debug for HostKernel<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKernel({})", self.name)
    }
}

fn to_request(sqe: Sqe) -> Request {
    // SAFETY: `Request` is `#[repr(transparent)]` over `Sqe` (redox-scheme 0.12), and the kernel
    // hands requests to schemes as exactly these bytes (`Socket::read_requests` reads them into
    // `Request`s); any bit pattern of `Sqe` is a valid value.
    unsafe { core::mem::transmute::<Sqe, Request>(sqe) }
}

fn to_cqe(r: Response) -> Cqe {
    // SAFETY: `Response` is `#[repr(transparent)]` over `Cqe`; the kernel reads responses as
    // these bytes (`Socket::write_response` writes them). Consuming the response here is the
    // "written exactly once" of redox-scheme's contract.
    unsafe { core::mem::transmute::<Response, Cqe>(r) }
}

fn result(c: &Cqe) -> Result<usize> {
    Error::demux(c.result as usize)
}

impl<P: Platform + Send + 'static> HostKernel<P> {
    /// Starts `daemon` on its own thread. `bell` must be rung by every interrupt of the
    /// daemon's device (the transport rings it after every submission and posted event).
    pub fn spawn(daemon: Daemon<P>, bell: Doorbell, cfg: HostConfig) -> Self
    where
        Daemon<P>: Send,
    {
        let region = daemon.nic().region().clone();
        let name = daemon.nic().info().name.clone();
        let mut server = Server::new(daemon);
        let roots = [server.root(Which::Network), server.root(Which::Netmap)];
        let shared = Arc::new(Shared {
            server: Mutex::new(server),
            queue: Mutex::default(),
            replies: Mutex::default(),
            events: Mutex::default(),
            event_bell: Notifier::new(),
            snapshot: Mutex::default(),
            stop: AtomicBool::new(false),
            bell,
            cfg,
            idle: Notifier::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ptnetd {name}"))
            .spawn(move || run(&sh, cfg))
            .expect("spawning the daemon thread");
        Self { shared, thread: Some(thread), region, roots, next_tag: AtomicU32::new(1), name }
    }

    /// Stops the daemon thread and returns the daemon (to shut the device down).
    pub fn stop(mut self) -> Option<Daemon<P>> {
        self.shared.halt();
        self.thread.take()?.join().ok()?;
        let shared = self.shared.clone();
        drop(self); // its reference to the shared state; the thread's went with the thread
        let sh = Arc::into_inner(shared)?;
        Some(sh.server.into_inner().unwrap_or_else(|e| e.into_inner()).into_daemon())
    }

    /// The transport's settings.
    fn cfg(&self) -> &HostConfig {
        &self.shared.cfg
    }

    /// Counters as of the daemon's last loop (or inline request).
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.shared.snapshot).clone()
    }

    /// The PCI name of the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Submits a raw request; `reply` gets its completion. Inline, it has run (and been
    /// answered, unless it was parked) when this returns.
    fn submit_sqe(&self, which: Which, sqe: Sqe, reply: Option<Arc<ReplySlot>>) {
        if let Some(r) = reply {
            lock(&self.shared.replies).insert((which, sqe.tag), r);
        }
        match self.cfg().transport {
            Transport::Ipc => {
                lock(&self.shared.queue).push((which, sqe));
                self.shared.bell.ring();
            }
            Transport::Inline => self.shared.inline(Some((which, sqe))),
        }
    }

    fn sqe(&self, opcode: Opcode, args: [u64; 6], uid: u32) -> Sqe {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let mut args = args;
        if !matches!(opcode, Opcode::Call) {
            args[5] = uid as u64; // CallerCtx: uid in the low half, gid (0) in the high half
        }
        Sqe { opcode: opcode as u8, sqe_flags: SqeFlags::empty(), _rsvd: 0, tag, args, caller: 0 }
    }

    /// Submits a request and returns without waiting (for blocking reads a test cancels).
    pub fn submit(&self, which: Which, opcode: Opcode, args: [u64; 6], uid: u32) -> Pending {
        let sqe = self.sqe(opcode, args, uid);
        let slot = Arc::new(ReplySlot::default());
        let tx = slot.clone();
        let tag = sqe.tag;
        self.submit_sqe(which, sqe, Some(tx));
        Pending { tag, which, slot }
    }

    /// Waits for the reply of `p` (`ETIMEDOUT` after the configured reply timeout).
    pub fn wait(&self, p: Pending) -> Result<usize> {
        self.wait_for(p, self.cfg().reply_timeout)
    }

    /// Waits at most `t` for the reply of `p`.
    pub fn wait_for(&self, p: Pending, t: Duration) -> Result<usize> {
        match self.reply(&p, t) {
            Some(c) => result(&c),
            None => Err(Error::new(ETIMEDOUT)),
        }
    }

    /// The reply of `p` if it arrives within `t`; `None` if it is still pending.
    pub fn still_pending(&self, p: &Pending, t: Duration) -> Option<Result<usize>> {
        self.reply(p, t).map(|c| result(&c))
    }

    /// The reply of `p` within `t`: on the reply slot's notifier (IPC), or taking interrupts on
    /// the bell while the request stays parked (inline).
    fn reply(&self, p: &Pending, t: Duration) -> Option<Cqe> {
        match self.cfg().transport {
            Transport::Ipc => p.slot.wait(t, self.cfg().halt_poll),
            Transport::Inline => self.shared.inline_wait(t, || p.slot.take()),
        }
    }

    /// Cancels the request `p` (a signal interrupting a blocking call).
    pub fn cancel(&self, p: &Pending) {
        let sqe = Sqe {
            opcode: Opcode::Cancel as u8,
            sqe_flags: SqeFlags::ONEWAY,
            _rsvd: 0,
            tag: p.tag,
            args: [0; 6],
            caller: 0,
        };
        self.submit_sqe(p.which, sqe, None);
    }

    fn run_call(&self, which: Which, opcode: Opcode, args: [u64; 6], uid: u32) -> Result<usize> {
        let p = self.submit(which, opcode, args, uid);
        self.wait(p)
    }

    /// `openat(root of which, path, flags)` as user `uid`.
    pub fn open(&self, which: Which, path: &str, flags: usize, uid: u32) -> Result<usize> {
        self.openat(which, self.roots[which as usize], path, flags, uid)
    }

    /// `openat` relative to handle `dir`.
    pub fn openat(
        &self,
        which: Which,
        dir: usize,
        path: &str,
        flags: usize,
        uid: u32,
    ) -> Result<usize> {
        let fcntl = flags & syscall::flag::O_FCNTL_MASK;
        let args =
            [dir as u64, path.as_ptr() as u64, path.len() as u64, flags as u64, fcntl as u64, 0];
        self.run_call(which, Opcode::OpenAt, args, uid)
    }

    /// `read` with the handle's fcntl `flags` (e.g. `O_NONBLOCK`).
    pub fn read(
        &self,
        which: Which,
        fd: usize,
        buf: &mut [u8],
        offset: u64,
        flags: usize,
    ) -> Result<usize> {
        let p = self.read_async(which, fd, buf, offset, flags);
        self.wait(p)
    }

    /// Starts a `read`; `buf` must stay untouched until the reply is taken.
    pub fn read_async(
        &self,
        which: Which,
        fd: usize,
        buf: &mut [u8],
        offset: u64,
        flags: usize,
    ) -> Pending {
        let args = [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, offset, flags as u64, 0];
        self.submit(which, Opcode::Read, args, 0)
    }

    /// `write` with the handle's fcntl `flags`.
    pub fn write(&self, which: Which, fd: usize, buf: &[u8], flags: usize) -> Result<usize> {
        let args = [fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0, flags as u64, 0];
        self.run_call(which, Opcode::Write, args, 0)
    }

    /// `call(fd, payload, metadata)` (at most 3 metadata words, as on Redox).
    pub fn call(
        &self,
        which: Which,
        fd: usize,
        payload: &mut [u8],
        metadata: &[u64],
    ) -> Result<usize> {
        if metadata.len() > 3 {
            return Err(Error::new(EINVAL));
        }
        let mut m = [0u64; 3];
        m[..metadata.len()].copy_from_slice(metadata);
        let args = [fd as u64, payload.as_mut_ptr() as u64, payload.len() as u64, m[0], m[1], m[2]];
        self.run_call(which, Opcode::Call, args, 0)
    }

    /// `fevent(fd, flags)`: subscribes and returns the flags ready now.
    pub fn fevent(&self, which: Which, fd: usize, flags: EventFlags) -> Result<EventFlags> {
        let args = [fd as u64, flags.bits() as u64, 0, 0, 0, 0];
        self.run_call(which, Opcode::Fevent, args, 0).map(EventFlags::from_bits_retain)
    }

    /// `fpath` into `buf`.
    pub fn fpath(&self, which: Which, fd: usize, buf: &mut [u8]) -> Result<usize> {
        let args = [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0];
        self.run_call(which, Opcode::Fpath, args, 0)
    }

    /// `fstat`.
    pub fn fstat(&self, which: Which, fd: usize) -> Result<Stat> {
        let mut st = Stat::default();
        let p = &mut st as *mut Stat;
        let args = [fd as u64, p as u64, size_of::<Stat>() as u64, 0, 0, 0];
        self.run_call(which, Opcode::Fstat, args, 0).map(|_| st)
    }

    /// `fsync`.
    pub fn fsync(&self, which: Which, fd: usize) -> Result<usize> {
        self.run_call(which, Opcode::Fsync, [fd as u64, 0, 0, 0, 0, 0], 0)
    }

    /// `fsize`.
    pub fn fsize(&self, which: Which, fd: usize) -> Result<usize> {
        self.run_call(which, Opcode::Fsize, [fd as u64, 0, 0, 0, 0, 0], 0)
    }

    /// `mmap(fd, offset, len, flags)`: the daemon's `mmap_prep` answer, as the mapping the
    /// kernel would install (here: the same pages, one address space).
    pub fn mmap(
        &self,
        which: Which,
        fd: usize,
        offset: u64,
        len: usize,
        flags: MapFlags,
    ) -> Result<Region> {
        let args = [fd as u64, len as u64, flags.bits() as u64, offset, 0, 0];
        let addr = self.run_call(which, Opcode::MmapPrep, args, 0)?;
        let off = addr.checked_sub(self.region.addr()).ok_or(Error::new(EINVAL))?;
        self.region.sub(off, len).map_err(|_| Error::new(EINVAL))
    }

    /// Closes handle `fd` (the last descriptor goes away, or its process died).
    pub fn close(&self, which: Which, fd: usize) {
        let mut sqe = self.sqe(Opcode::CloseMsg, [fd as u64, 0, 0, 0, 0, 0], 0);
        sqe.sqe_flags = SqeFlags::ONEWAY;
        self.submit_sqe(which, sqe, None);
    }

    /// Waits until an event in `mask` is posted for `fd` (or `timeout`); takes and returns the
    /// posted flags in `mask` (empty on timeout).
    pub fn wait_event(
        &self,
        which: Which,
        fd: usize,
        mask: EventFlags,
        timeout: Duration,
    ) -> EventFlags {
        let take = || self.shared.take_event(which, fd, mask);
        let got = match self.cfg().transport {
            Transport::Inline => self.shared.inline_wait(timeout, take),
            Transport::Ipc => {
                let end = Instant::now() + timeout;
                loop {
                    let seen = self.shared.event_bell.generation();
                    if let Some(e) = take() {
                        break Some(e);
                    }
                    let Some(left) =
                        end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
                    else {
                        break None;
                    };
                    self.shared.event_bell.wait_polling(seen, self.cfg().halt_poll, left);
                }
            }
        };
        got.unwrap_or(EventFlags::empty())
    }
}

impl<P: Platform + Send + 'static> Drop for HostKernel<P> {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.halt();
            let _ = t.join();
        }
    }
}

impl<P: Platform> Shared<P> {
    /// Publishes the daemon's counters (`loops`: the daemon thread's loops so far, 0 to keep
    /// the last count).
    fn record(&self, server: &Server<P>, loops: u64) {
        let d = server.daemon();
        let mut s = lock(&self.snapshot);
        s.scheme = d.stats();
        s.rings.clear();
        s.rings.extend((0..d.nic().num_rings()).filter_map(|i| d.nic().stats(i)));
        s.parked = server.parked();
        s.loops = s.loops.max(loops);
    }

    /// Delivers replies to their waiters and posts events.
    fn deliver(&self, out: &mut Vec<(Which, Response)>) {
        let mut posted = false;
        let delivered = !out.is_empty();
        for (which, r) in out.drain(..) {
            let c = to_cqe(r);
            if CqeOpcode::try_from_raw(c.flags & 7) == Some(CqeOpcode::SendFevent) {
                let mut ev = lock(&self.events);
                *ev.entry((which, c.result as usize)).or_default() |= c.tag as usize;
                posted = true;
            } else if let Some(slot) = lock(&self.replies).remove(&(which, c.tag)) {
                slot.put(c);
            }
        }
        if posted {
            self.event_bell.notify();
        }
        if self.cfg.transport == Transport::Inline && delivered {
            // Inline callers wait on the bell, not on the reply slots and the event notifier.
            self.bell.ring();
        }
    }

    /// Tells the daemon thread to return, wherever it sleeps.
    fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        self.bell.ring();
        self.idle.notify();
    }

    /// Takes the posted flags in `mask` for handle `fd` of `which`, if any.
    fn take_event(&self, which: Which, fd: usize, mask: EventFlags) -> Option<EventFlags> {
        let mut ev = lock(&self.events);
        let e = ev.get_mut(&(which, fd))?;
        let got = *e & mask.bits();
        *e &= !got;
        (got != 0).then(|| EventFlags::from_bits_retain(got))
    }

    /// One inline step on the caller's thread under the daemon's lock: the request `req` if
    /// any, then the end of batch (interrupts, parked requests, events), then the replies and
    /// events delivered.
    fn inline(&self, req: Option<(Which, Sqe)>) {
        let mut out = Vec::new();
        {
            let mut server = lock(&self.server);
            if let Some((which, sqe)) = req {
                server.request(which, to_request(sqe), &mut out);
            }
            server.tick(false, &mut out);
            self.record(&server, 0);
        }
        self.deliver(&mut out);
    }

    /// Waits at most `t` for `ready` to give something, as a blocked inline caller: checks,
    /// takes the interrupts and ends a batch on this thread (which posts events and answers
    /// parked requests), checks again, then sleeps on the bell (polling it first for
    /// [`HostConfig::halt_poll`]) until the next interrupt or posted event. The generation is
    /// read before the first check, so an interrupt or an event after it ends the sleep at once.
    fn inline_wait<T>(&self, t: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        let end = Instant::now() + t;
        loop {
            let seen = self.bell.generation();
            if let Some(x) = ready() {
                return Some(x);
            }
            self.inline(None);
            if let Some(x) = ready() {
                return Some(x);
            }
            let left = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            self.bell.wait_polling(seen, self.cfg.halt_poll, left);
        }
    }
}

/// The daemon thread: takes the submitted requests, runs them through the server and delivers
/// their replies, ends the batch (interrupts, parked requests, events), delivers what that
/// produced, then sleeps on the bell (after [`HostConfig::halt_poll`]) until a submission, an
/// interrupt or the polling deadline. With [`Transport::Inline`] it sleeps apart from the bell
/// and only runs the polling fallback (blocked callers take the interrupts).
fn run<P: Platform>(sh: &Shared<P>, cfg: HostConfig) {
    let mut out = Vec::new();
    let mut last_poll = Instant::now();
    let mut loops = 0u64;
    let inline = cfg.transport == Transport::Inline;
    let mut seen = if inline { sh.idle.generation() } else { sh.bell.generation() };
    loop {
        {
            let mut server = lock(&sh.server);
            let batch = std::mem::take(&mut *lock(&sh.queue));
            for (which, sqe) in batch {
                server.request(which, to_request(sqe), &mut out);
            }
            if !out.is_empty() {
                // The replies go out before the end of batch, as a Redox daemon writes each
                // response when it has handled the request: the caller runs on while this
                // thread takes the interrupts and posts the events. The counters first, so
                // that a caller that got its reply sees them include it.
                sh.record(&server, loops);
                sh.deliver(&mut out);
            }
            let poll = cfg.poll.is_some_and(|p| last_poll.elapsed() >= p);
            if poll {
                last_poll = Instant::now();
            }
            server.tick(poll, &mut out);
            loops += 1;
            // Before the replies: a client that got its reply sees counters that include it.
            sh.record(&server, loops);
        }
        sh.deliver(&mut out);
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        let t = cfg.poll.unwrap_or(Duration::from_secs(3600));
        seen = if inline {
            sh.idle.wait(seen, t)
        } else {
            sh.bell.wait_polling(seen, cfg.halt_poll, t)
        };
    }
}
