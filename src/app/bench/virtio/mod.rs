//! **virtio-baseline** (issue 11, scenario 7): the VM-to-VM path through a virtio-net device
//! with split virtqueues, as vtnet/virtio-net and vhost do it, to compare ptnet against.
//!
//! Three threads, like a vhost worker and two vCPUs:
//! - **VM A's driver** (`driver::tx_vcpu`) sends `frames` frames of `frame_len` bytes on its
//!   TX virtqueue: per batch it writes the 12-byte `virtio_net_hdr_v1` (virtio 1.2 §5.1.6) and
//!   the frame's sequence number into a buffer prefilled with the frame, adds `batch`
//!   single-descriptor chains, publishes avail.idx once and makes one kick decision.
//! - **The backend** (`device::backend`, rust-vmm `virtio-queue` 0.18 over `vm-memory`
//!   0.18) pops A's TX chains, reads each header, copies the frame once into a buffer VM B
//!   posted on its RX virtqueue (writing B's header, `num_buffers` = 1), marks both used and
//!   makes one interrupt decision per queue per batch. It **waits for RX buffers rather than
//!   dropping**, so every frame arrives and in order.
//! - **VM B's driver** (`driver::rx_vcpu`) takes used RX buffers, checks each length and
//!   sequence number (lost and out-of-order frames are counted and fail the run) and reposts
//!   the buffers `batch` at a time (and all it holds before it sleeps).
//!
//! Settings (a fair, well-tuned baseline):
//! - Features as negotiated: `VIRTIO_F_VERSION_1` and `VIRTIO_RING_F_EVENT_IDX`; no
//!   checksum/GSO offloads, no mergeable RX buffers, no indirect descriptors (one descriptor
//!   per frame, header and frame together, as Linux's virtio-net does when the header fits in
//!   the skb's headroom).
//! - Event-index notification suppression on both queues and both sides (§2.7.10): the
//!   drivers kick only when avail.idx crosses avail_event, which the backend re-arms only
//!   before it sleeps; the backend interrupts only when used.idx crosses used_event, which
//!   B re-arms (next entry) only before it sleeps and A (when the next batch will fit) only
//!   when its ring is full. Notifications are per batch, never per frame.
//! - `queue_size` 256 by default (Linux/QEMU's virtio-net default), up to 4096 (a power of
//!   two; `batch` ≤ `queue_size`). A TX batch waits until the whole batch fits, so with
//!   batch = queue_size A and the backend never overlap: a well-tuned setup uses
//!   queue_size 1024 (QEMU's largest `tx_queue_size`/`rx_queue_size`) for batches ≥ 256,
//!   which raised the rate at batch 256 in our runs.
//! - Memory: one `GuestMemoryMmap` region per VM (A's holds its TX queue and buffers, B's its
//!   RX queue and buffers); the backend maps both, as a vhost-user switch does. Rings and
//!   buffers are laid out per `driver::Layout`: used ring on its own page, 2 KiB buffers.
//! - Wake-ups: the model's [`Notifier`] for kicks (one for the backend, like one vhost worker
//!   polling both kick eventfds) and for each VM's interrupt, so this path pays the same
//!   hand-off costs as ptnet's model; the two guests' vCPUs halt-poll before they sleep as
//!   ptnet's guest threads do ([`HALT_POLL`]), the backend does not (vhost's `busyloop_timeout`
//!   is 0 by default). Kicks and interrupts are counted, not paid as VM exits.
//!
//! Counted: **kicks** = driver→device notifications sent (A's and B's), **interrupts** =
//! device→driver notifications sent (to A and to B), **copies** = frame copies: one per frame,
//! the backend's A→B copy. The drivers make none (A writes the header and sequence number into
//! a prefilled buffer, as pkt-gen does; B reads the sequence number in place). This is the
//! most generous count for virtio: vhost-net through a tap and a Linux bridge copies into a
//! host skb and again into the receiving guest.
//!
//! Cost: the backend pays virtio-queue's and vm-memory's accessors as rust-vmm backends do
//! (a region lookup per guest access; ~1,900 instructions per frame in the backend at batch
//! 256, 60-byte frames, of which ~1,000 in popping the two chains and ~600 in the two
//! `add_used`, counted with callgrind); it pops up to 64 chains per avail.idx read
//! (`QueueOwnedT::iter`). The guests reach their own memory through one `VolatileSlice`
//! each (~350 instructions per frame per guest), as a guest's plain loads and stores.
//! Not modelled: VM exits, interrupt injection, an IOMMU; three threads share two cores.
//!
//! Every wait has a timeout and returns only on a notification: a thread that gets no
//! wake-up and makes no progress for 5 s fails the run ([`VirtioBenchError::Stalled`]), so
//! a lost kick or interrupt is an error rather than a slow poll, and a failing thread stops
//! the others.

mod device;
mod driver;

use crate::model::notify::Notifier;
use crate::scheme::host::HALT_POLL;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Parameters of one virtio-baseline run.
#[derive(Debug, Clone)]
pub struct VirtioParams {
    /// Chains added per publish and kick decision (TX), buffers per repost (RX); ≤ `queue_size`.
    pub batch: usize,
    /// Frame length in bytes without the virtio-net header, 22..=1514.
    pub frame_len: usize,
    /// Frames to send.
    pub frames: u64,
    /// Virtqueue size: a power of two, up to 4096.
    pub queue_size: u16,
}

impl Default for VirtioParams {
    fn default() -> Self {
        Self { batch: 32, frame_len: 60, frames: 100_000, queue_size: 256 }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct VirtioRun {
    /// Frames VM A's driver sent.
    pub frames_sent: u64,
    /// Frames VM B's driver received in order.
    pub frames_received: u64,
    /// From the threads' start until B received the last frame.
    pub elapsed: Duration,
    /// Driver-to-device notifications sent (A's and B's).
    pub kicks: u64,
    /// Device-to-driver notifications sent (to A and to B).
    pub interrupts: u64,
    /// Frame copies made (the backend's, one per frame).
    pub copies: u64,
}

/// Why a run failed.
#[derive(Debug)]
pub enum VirtioBenchError {
    /// The parameters cannot be run.
    BadParams(&'static str),
    /// Guest memory or queue setup failed.
    Setup(String),
    /// virtio-queue refused an operation (device side).
    Queue(virtio_queue::Error),
    /// A guest memory access failed.
    Memory(vm_memory::GuestMemoryError),
    /// A guest's access to its own memory failed.
    Volatile(vm_memory::VolatileMemoryError),
    /// The driver made a chain head outside the descriptor table available (device side).
    BadHead {
        /// Which queue.
        queue: &'static str,
        /// The head index.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// avail.idx moved more than a ring ahead of what the device took (device side).
    AvailOverrun {
        /// Which queue.
        queue: &'static str,
        /// avail.idx as read.
        avail: u16,
        /// The device's next avail index.
        next: u16,
    },
    /// A descriptor chain the device cannot use.
    BadChain {
        /// Which queue.
        queue: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// The device returned a used entry the driver did not make available, or too many.
    BadUsed {
        /// Which queue.
        queue: &'static str,
        /// The id (or count) read.
        id: u32,
    },
    /// A received frame has the wrong length.
    BadLength {
        /// Length in the used entry.
        got: u32,
        /// Header plus frame length.
        want: u32,
    },
    /// Frames were lost or reordered.
    Sequence {
        /// Sequence numbers skipped.
        lost: u64,
        /// Frames that came after a later one.
        out_of_order: u64,
    },
    /// A thread made no progress for the stall limit.
    Stalled {
        /// Which thread.
        who: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// Another thread failed first and stopped this one.
    PeerFailed,
    /// A thread panicked.
    Panicked(&'static str),
}

impl fmt::Display for VirtioBenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadParams(w) => write!(f, "bad parameters: {w}"),
            Self::Setup(w) => write!(f, "setup failed: {w}"),
            Self::Queue(e) => write!(f, "virtqueue: {e}"),
            Self::Memory(e) => write!(f, "guest memory: {e}"),
            Self::Volatile(e) => write!(f, "guest memory (driver side): {e}"),
            Self::BadHead { queue, head, size } => {
                write!(f, "{queue}: chain head {head} outside the descriptor table (size {size})")
            }
            Self::AvailOverrun { queue, avail, next } => {
                write!(f, "{queue}: avail.idx {avail} more than a ring ahead of {next}")
            }
            Self::BadChain { queue, what } => write!(f, "{queue}: bad descriptor chain: {what}"),
            Self::BadUsed { queue, id } => write!(f, "{queue}: bad used entry {id}"),
            Self::BadLength { got, want } => write!(f, "received {got} bytes, expected {want}"),
            Self::Sequence { lost, out_of_order } => {
                write!(f, "{lost} frames lost, {out_of_order} out of order")
            }
            Self::Stalled { who, after } => write!(f, "{who} made no progress for {after:?}"),
            Self::PeerFailed => write!(f, "stopped because another thread failed"),
            Self::Panicked(who) => write!(f, "{who} panicked"),
        }
    }
}

impl std::error::Error for VirtioBenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Queue(e) => Some(e),
            Self::Memory(e) => Some(e),
            Self::Volatile(e) => Some(e),
            _ => None,
        }
    }
}

impl From<virtio_queue::Error> for VirtioBenchError {
    fn from(e: virtio_queue::Error) -> Self {
        Self::Queue(e)
    }
}

impl From<vm_memory::VolatileMemoryError> for VirtioBenchError {
    fn from(e: vm_memory::VolatileMemoryError) -> Self {
        Self::Volatile(e)
    }
}

impl From<vm_memory::GuestMemoryError> for VirtioBenchError {
    fn from(e: vm_memory::GuestMemoryError) -> Self {
        Self::Memory(e)
    }
}

/// virtio_net_hdr_v1: 12 bytes (§5.1.6).
const HDR_LEN: usize = 12;
/// Where the sequence number sits in the frame: right after the Ethernet header.
const SEQ_OFF: usize = 14;
/// Largest frame.
const MAX_FRAME: usize = 1514;
/// Default stall limit.
const STALL: Duration = Duration::from_secs(5);
/// Longest single sleep, so that a stop is seen even without a wake-up.
const SLICE: Duration = Duration::from_millis(100);

/// Faults the tests inject to show the run fails cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // only the tests construct faults
enum Fault {
    /// A writes a head index past the descriptor table for frame `at`.
    HeadOutOfRange { at: u64 },
    /// A publishes an avail.idx more than a ring ahead.
    AvailOverrun,
    /// B posts RX buffers too small for a frame.
    ShortRxBuffer,
    /// Neither driver kicks (A's TX kicks alone are not enough: the device serves both queues
    /// on any wake-up, so B's RX kicks could carry A's frames through, depending on timing).
    NoKick,
    /// The backend drops frame `at`.
    DeviceDrops { at: u64 },
}

/// What the three threads share: the notifiers (kick, two interrupts), the stop flag.
struct Link {
    dev_wake: Notifier,
    a_irq: Notifier,
    b_irq: Notifier,
    stop: AtomicBool,
    stall: Duration,
    fault: Option<Fault>,
}

impl Link {
    /// Sleeps on `n` until its generation differs from `seen`, in slices so that a stop is
    /// seen; fails if the run was stopped or if no notification came before the caller's
    /// stall limit (no progress since `since`). Returning only on a notification, never on a
    /// timeout, makes a lost kick or interrupt an error rather than a slow poll. A guest's
    /// vCPU (`vcpu`) polls for [`HALT_POLL`] first, as ptnet's guest threads do (KVM's halt
    /// polling); the backend, a vhost worker in the host kernel, sleeps at once.
    fn wait(
        &self,
        who: &'static str,
        n: &Notifier,
        seen: u64,
        since: Instant,
        vcpu: bool,
    ) -> Result<(), VirtioBenchError> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(VirtioBenchError::PeerFailed);
            }
            let idle = since.elapsed();
            if idle >= self.stall {
                return Err(VirtioBenchError::Stalled { who, after: idle });
            }
            let poll = if vcpu { HALT_POLL } else { Duration::ZERO };
            if n.wait_polling(seen, poll, (self.stall - idle).min(SLICE)) != seen {
                return Ok(());
            }
        }
    }

    /// Stops every thread and wakes them.
    fn fail(&self) {
        self.stop.store(true, Ordering::Release);
        for n in [&self.dev_wake, &self.a_irq, &self.b_irq] {
            n.notify();
        }
    }
}

/// Stops the other threads if its thread ends by a panic.
struct StopOnPanic<'a>(&'a Link);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail();
        }
    }
}

/// The thread's result, or `Panicked`.
fn join<T>(
    h: std::thread::ScopedJoinHandle<'_, Result<T, VirtioBenchError>>,
    who: &'static str,
) -> Result<T, VirtioBenchError> {
    h.join().unwrap_or(Err(VirtioBenchError::Panicked(who)))
}

/// Stops the other threads if `r` is an error.
fn guarded<T>(link: &Link, r: Result<T, VirtioBenchError>) -> Result<T, VirtioBenchError> {
    if r.is_err() {
        link.fail();
    }
    r
}

fn check(p: &VirtioParams) -> Result<(), VirtioBenchError> {
    let q = p.queue_size;
    if q == 0 || !q.is_power_of_two() || q > 4096 {
        return Err(VirtioBenchError::BadParams("queue_size must be a power of two up to 4096"));
    }
    if p.batch == 0 || p.batch > usize::from(q) {
        return Err(VirtioBenchError::BadParams("batch must be 1..=queue_size"));
    }
    if !(SEQ_OFF + 8..=MAX_FRAME).contains(&p.frame_len) {
        return Err(VirtioBenchError::BadParams("frame_len must be 22..=1514"));
    }
    Ok(())
}

fn vm_memory(l: &driver::Layout) -> Result<GuestMemoryMmap, VirtioBenchError> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), l.end as usize)])
        .map_err(|e| VirtioBenchError::Setup(format!("guest memory: {e}")))
}

/// Runs one virtio-baseline transfer: `p.frames` frames from VM A to VM B, all received in
/// order, or an error.
pub fn run(p: &VirtioParams) -> Result<VirtioRun, VirtioBenchError> {
    run_with(p, STALL, None)
}

fn run_with(
    p: &VirtioParams,
    stall: Duration,
    fault: Option<Fault>,
) -> Result<VirtioRun, VirtioBenchError> {
    check(p)?;
    if p.frames == 0 {
        return Ok(VirtioRun::default());
    }
    let l = driver::Layout::new(p.queue_size);
    let (mem_a, mem_b) = (vm_memory(&l)?, vm_memory(&l)?);
    driver::prefill_tx(&mem_a, &l, p.frame_len)?;
    let mut txq = device::DevQueue {
        q: device::queue(&mem_a, l.size, l.desc, l.avail, l.used)?,
        mem: &mem_a,
        name: "tx",
    };
    let mut rxq = device::DevQueue {
        q: device::queue(&mem_b, l.size, l.desc, l.avail, l.used)?,
        mem: &mem_b,
        name: "rx",
    };
    let link = Link {
        dev_wake: Notifier::new(),
        a_irq: Notifier::new(),
        b_irq: Notifier::new(),
        stop: AtomicBool::new(false),
        stall,
        fault,
    };
    let start = Instant::now();
    let (a, dev, b) = std::thread::scope(|s| {
        let link = &link;
        let a = s.spawn(|| {
            let _g = StopOnPanic(link);
            guarded(link, driver::tx_vcpu(&mem_a, l, link, p.batch, p.frame_len, p.frames))
        });
        let dev = s.spawn(|| {
            let _g = StopOnPanic(link);
            guarded(link, device::backend(&mut txq, &mut rxq, link, p.frames))
        });
        let b = s.spawn(|| {
            let _g = StopOnPanic(link);
            guarded(link, driver::rx_vcpu(&mem_b, l, link, p.batch, p.frame_len, p.frames))
        });
        (join(a, "VM A driver"), join(dev, "backend"), join(b, "VM B driver"))
    });
    // The first real error wins over the PeerFailed it caused.
    let (a, dev, b) = match (a, dev, b) {
        (Ok(a), Ok(d), Ok(b)) => (a, d, b),
        (a, d, b) => {
            let errs = [a.err(), d.err(), b.err()];
            let mut errs = errs.into_iter().flatten();
            let first = errs.next().unwrap_or(VirtioBenchError::PeerFailed);
            return Err(match first {
                VirtioBenchError::PeerFailed => {
                    errs.find(|e| !matches!(e, VirtioBenchError::PeerFailed)).unwrap_or(first)
                }
                e => e,
            });
        }
    };
    if b.lost > 0 || b.out_of_order > 0 {
        return Err(VirtioBenchError::Sequence { lost: b.lost, out_of_order: b.out_of_order });
    }
    let end = b.drv.finished.unwrap_or_else(Instant::now);
    Ok(VirtioRun {
        frames_sent: a.frames,
        frames_received: b.drv.frames,
        elapsed: end.duration_since(start),
        kicks: a.kicks + b.drv.kicks,
        interrupts: dev.irq_a + dev.irq_b,
        copies: dev.copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::QueueT;

    fn params(batch: usize, frame_len: usize, frames: u64) -> VirtioParams {
        VirtioParams { batch, frame_len, frames, queue_size: 256 }
    }

    fn per_packet(n: u64, r: &VirtioRun) -> f64 {
        n as f64 / r.frames_received as f64
    }

    #[test]
    fn every_frame_arrives_in_order_at_every_batch_and_length() {
        for batch in [1, 32, 256] {
            for frame_len in [60, 1514] {
                let p = params(batch, frame_len, 20_000);
                let r = run(&p).unwrap_or_else(|e| panic!("batch {batch} len {frame_len}: {e}"));
                assert_eq!(r.frames_sent, 20_000, "{p:?}");
                assert_eq!(r.frames_received, 20_000, "{p:?}");
                assert_eq!(r.copies, 20_000, "{p:?}");
            }
        }
    }

    #[test]
    fn large_batches_suppress_notifications_and_batch_one_notifies() {
        let r = run(&VirtioParams { queue_size: 1024, ..params(256, 60, 20_000) }).unwrap();
        assert!(per_packet(r.kicks, &r) <= 0.1, "kicks {r:?}");
        assert!(per_packet(r.interrupts, &r) <= 0.1, "interrupts {r:?}");
        let r = run(&params(256, 60, 20_000)).unwrap();
        assert!(per_packet(r.kicks, &r) <= 0.1, "kicks {r:?}");
        assert!(per_packet(r.interrupts, &r) <= 0.1, "interrupts {r:?}");
        let r = run(&params(1, 60, 5_000)).unwrap();
        assert!(r.kicks > 0 && r.interrupts > 0, "{r:?}");
    }

    /// Both sides' event-index suppression, step by step in one thread: a kick only when
    /// avail.idx crosses the avail_event the device re-armed, an interrupt only when used.idx
    /// crosses the used_event the driver armed.
    #[test]
    fn event_index_suppresses_kicks_and_interrupts_until_rearmed() {
        let l = driver::Layout::new(8);
        let mem = vm_memory(&l).unwrap();
        let mut drv = driver::DriverQueue::new(&mem, l, "tx").unwrap();
        let mut dev = device::queue(&mem, l.size, l.desc, l.avail, l.used).unwrap();
        let add = |drv: &mut driver::DriverQueue<'_>| {
            let id = drv.free.pop().unwrap();
            drv.add(id, 64, 0).unwrap();
            drv.publish().unwrap()
        };
        assert!(!dev.enable_notification(&mem).unwrap()); // avail_event = 0, nothing pending
        assert!(add(&mut drv), "first entry after re-arm kicks");
        assert!(!add(&mut drv), "the device did not re-arm: no kick");
        assert!(!add(&mut drv));
        let heads: Vec<u16> =
            std::iter::from_fn(|| dev.pop_descriptor_chain(&mem).map(|c| c.head_index())).collect();
        assert_eq!(heads.len(), 3);
        assert!(!dev.enable_notification(&mem).unwrap());
        assert!(add(&mut drv), "re-armed: the next entry kicks");

        assert!(!drv.arm(2).unwrap()); // interrupt once 2 more are used
        dev.add_used(&mem, heads[0], 0).unwrap();
        assert!(!dev.needs_notification(&mem).unwrap(), "1 used, asked for 2");
        dev.add_used(&mem, heads[1], 0).unwrap();
        assert!(dev.needs_notification(&mem).unwrap(), "2 used: interrupt");
        dev.add_used(&mem, heads[2], 0).unwrap();
        assert!(!dev.needs_notification(&mem).unwrap(), "not re-armed: no interrupt");
        assert_eq!(drv.used_pending().unwrap(), 3);
    }

    #[test]
    fn a_head_index_out_of_range_is_a_device_error() {
        let e = run_with(&params(32, 60, 1000), STALL, Some(Fault::HeadOutOfRange { at: 100 }))
            .unwrap_err();
        assert!(
            matches!(e, VirtioBenchError::BadHead { queue: "tx", head: 259, size: 256 }),
            "{e}"
        );
    }

    #[test]
    fn an_avail_index_more_than_a_ring_ahead_is_a_device_error() {
        let e = run_with(&params(8, 60, 1000), STALL, Some(Fault::AvailOverrun)).unwrap_err();
        assert!(matches!(e, VirtioBenchError::AvailOverrun { queue: "tx", .. }), "{e}");
    }

    #[test]
    fn rx_buffers_too_small_are_a_device_error() {
        let e = run_with(&params(8, 60, 1000), STALL, Some(Fault::ShortRxBuffer)).unwrap_err();
        assert!(matches!(e, VirtioBenchError::BadChain { queue: "rx", .. }), "{e}");
    }

    #[test]
    fn a_missing_kick_stalls_with_an_error_not_a_hang() {
        let e = run_with(&params(8, 60, 1000), Duration::from_millis(300), Some(Fault::NoKick))
            .unwrap_err();
        assert!(matches!(e, VirtioBenchError::Stalled { .. }), "{e}");
    }

    #[test]
    fn a_dropped_frame_is_reported_as_lost() {
        let e = run_with(&params(8, 60, 1000), STALL, Some(Fault::DeviceDrops { at: 500 }))
            .unwrap_err();
        assert!(matches!(e, VirtioBenchError::Sequence { lost: 1, out_of_order: 0 }), "{e}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        for p in [
            VirtioParams { queue_size: 100, ..params(8, 60, 10) },
            VirtioParams { queue_size: 0, ..params(8, 60, 10) },
            params(0, 60, 10),
            params(257, 60, 10),
            params(8, 10, 10),
            params(8, 1515, 10),
        ] {
            assert!(matches!(run(&p), Err(VirtioBenchError::BadParams(_))), "{p:?}");
        }
        assert_eq!(run(&params(8, 60, 0)).unwrap().frames_received, 0);
    }

    /// `cargo test --release virtio_baseline_rate -- --ignored --nocapture`
    #[test]
    #[ignore = "prints rates; run in release"]
    fn virtio_baseline_rate() {
        for (batch, queue_size) in
            [(1, 256), (32, 256), (256, 256), (1, 1024), (32, 1024), (256, 1024), (512, 1024)]
        {
            for frame_len in [60, 1514] {
                let p = VirtioParams { batch, frame_len, frames: 2_000_000, queue_size };
                let r = run(&p).unwrap();
                let n = r.frames_received as f64;
                println!(
                    "batch {batch:4} q {queue_size:5} len {frame_len:5}: {:7.3} Mpps  kicks/pkt {:.5}  irqs/pkt {:.5}  copies/pkt {:.2}",
                    n / r.elapsed.as_secs_f64() / 1e6,
                    r.kicks as f64 / n,
                    r.interrupts as f64 / n,
                    r.copies as f64 / n,
                );
            }
        }
    }
}
