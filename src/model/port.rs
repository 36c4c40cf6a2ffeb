//! A host netmap port (spec §7, §8.6): a netmap_if, NIC TX/RX rings and their buffers in a
//! [`NetmapMemory`], plus the host's kring state per ring and a backend that moves frames.
//!
//! Locking: each ring has its own mutex. A TX sync holds its TX ring while the backend delivers
//! into RX rings (its peer's, a switch's ports', or its own), so the order is always
//! **TX ring → switch → RX ring**; nothing takes a TX ring while holding an RX ring, so there is no
//! deadlock. Listeners are notified after the ring locks are dropped.
//!
//! Choices where netmap leaves room:
//! * Pipes and the reflector move slots, not packets (as netmap pipes do): a chain may arrive
//!   in two parts. The VALE-like switch moves whole packets.
//! * A TX packet whose `NS_MOREFRAG` chain is not closed before `head` is held back (not sent,
//!   `hwcur` stops before it) until the guest publishes the rest; VALE would truncate it. Holding
//!   back loses nothing.
//! * A TX packet with a bad buffer index (`< 2` or `≥ buf_num`), a length above the buffer size,
//!   or more than `NETMAP_MAX_FRAGS` fragments is dropped and counted in `tx_errors`.
//! * On RX, every slot the host is about to fill is checked first; a bad buffer index in any of
//!   them drops the frame (`rx_errors`) and leaves the ring untouched.

use super::memory::{MemError, NetmapMemory};
use super::pcap::PcapTap;
use crate::abi::netmap::*;
use crate::nm::{IfCounts, IfView, RingView, Slot, SlotAccess, ViewError};
use crate::ring::{self, Kring};
use crate::shm::Region;
use core::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Errors of port construction and sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// Region allocation failed.
    Mem(MemError),
    /// A netmap structure did not fit.
    View(ViewError),
    /// Bad geometry.
    BadSpec(&'static str),
    /// The backend failed.
    Backend(&'static str),
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mem(e) => write!(f, "{e}"),
            Self::View(e) => write!(f, "{e}"),
            Self::BadSpec(s) => write!(f, "bad port geometry: {s}"),
            Self::Backend(s) => write!(f, "port backend: {s}"),
        }
    }
}

impl std::error::Error for PortError {}

impl From<MemError> for PortError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

impl From<ViewError> for PortError {
    fn from(e: ViewError) -> Self {
        Self::View(e)
    }
}

/// Geometry of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name (netmap_if `ni_name`).
    pub name: String,
    /// NIC TX rings.
    pub tx_rings: u32,
    /// NIC RX rings.
    pub rx_rings: u32,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
}

impl PortSpec {
    /// `rings` TX and `rings` RX rings of `slots` slots.
    pub fn new(name: &str, rings: u32, slots: u32) -> Self {
        Self {
            name: name.into(),
            tx_rings: rings,
            rx_rings: rings,
            tx_slots: slots,
            rx_slots: slots,
        }
    }
}

/// One host ring: the kring state and a view of the shared ring.
#[derive(Debug)]
pub struct HostRing {
    /// Host indices (`nr_hwcur`, `nr_hwtail`, `rhead`, `rcur`, `rtail`).
    pub kring: Kring,
    /// The shared `netmap_ring`.
    pub view: RingView,
    /// Ring index within its direction.
    pub id: u32,
    /// Frames this TX ring sent (cumulative; the kloop's per-ring counters use it).
    pub frames: u64,
    /// Bytes this TX ring sent.
    pub bytes: u64,
}

/// Something that wants to hear about a port's events (the kloop of an attached ptnet device).
pub trait PortListener: Send + Sync {
    /// New frames arrived on RX ring `ring`.
    fn on_rx(&self, ring: u32);
    /// TX ring `ring` may make progress (e.g. a pipe peer freed RX space).
    fn on_tx(&self, ring: u32);
}

/// Moves frames out of a port's TX rings (netmap's backend txsync).
pub trait TxBackend: Send + Sync {
    /// Transmits the frames in `[hwcur, rhead)` of TX ring `hr` of `port`, advancing
    /// `hr.kring.hwcur` past what was sent and updating `hr.kring.hwtail`.
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError>;
    /// The port's user released RX slots on `ring` (after an rxsync).
    fn rx_released(&self, _port: &NmPort, _ring: u32) {}
    /// Short name for logs.
    fn kind(&self) -> &'static str;
    /// `true` if the backend carries virtio-net headers (a VALE-like switch port, §4).
    fn vnet_capable(&self) -> bool {
        false
    }
}

/// What RX fills did, gathered before it is added to the port's shared counters.
#[derive(Debug, Default, Clone, Copy)]
struct RxCount {
    frames: u64,
    bytes: u64,
    drops: u64,
    errors: u64,
}

/// A frame to deliver: either fragments in a netmap region, or plain bytes.
#[derive(Clone, Copy)]
pub enum Frame<'a> {
    /// Fragments `(offset, len)` in `region`.
    Shm {
        /// Source region.
        region: &'a Region,
        /// Fragments.
        frags: &'a [(usize, usize)],
    },
    /// Plain bytes.
    Bytes(&'a [u8]),
}

impl Frame<'_> {
    /// Total length.
    pub fn len(&self) -> usize {
        match self {
            Frame::Shm { frags, .. } => frags.iter().map(|f| f.1).sum(),
            Frame::Bytes(b) => b.len(),
        }
    }

    /// `true` if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `out.len()` bytes starting at byte `pos` of the frame into `out`; returns how many
    /// were available.
    pub fn read_at(&self, mut pos: usize, out: &mut [u8]) -> usize {
        match self {
            Frame::Bytes(b) => {
                let src = b.get(pos..).unwrap_or(&[]);
                let k = src.len().min(out.len());
                out[..k].copy_from_slice(&src[..k]);
                k
            }
            Frame::Shm { region, frags } => {
                let mut done = 0;
                for &(off, len) in frags.iter() {
                    if done == out.len() {
                        break;
                    }
                    if pos >= len {
                        pos -= len;
                        continue;
                    }
                    let k = (len - pos).min(out.len() - done);
                    if region.read_bytes(off + pos, &mut out[done..done + k]).is_err() {
                        break;
                    }
                    done += k;
                    pos = 0;
                }
                done
            }
        }
    }

    /// `N` bytes from byte `pos` of the frame, if it has them: [`Frame::read_at`] with one
    /// fixed-size copy when a single fragment holds them (a switch reading addresses).
    #[inline]
    pub fn read_array<const N: usize>(&self, pos: usize) -> Option<[u8; N]> {
        if let Frame::Shm { region, frags: [(off, len)] } = self {
            if len.checked_sub(pos).is_some_and(|r| r >= N) {
                return region.read_array(off + pos).ok();
            }
        }
        let mut out = [0u8; N];
        (self.read_at(pos, &mut out) == N).then_some(out)
    }

    /// Appends the whole frame to `out`.
    pub fn gather(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.len(), 0);
        let n = self.read_at(0, &mut out[start..]);
        out.truncate(start + n);
    }

    /// Copies bytes `[pos, pos+len)` of the frame to `dst[dst_off..]`.
    fn copy_to(&self, mut pos: usize, dst: &Region, mut dst_off: usize, mut len: usize) {
        match self {
            Frame::Bytes(b) => {
                if let Some(s) = b.get(pos..pos + len) {
                    let _ = dst.write_bytes(dst_off, s);
                }
            }
            Frame::Shm { region, frags } => {
                for &(off, flen) in frags.iter() {
                    if len == 0 {
                        break;
                    }
                    if pos >= flen {
                        pos -= flen;
                        continue;
                    }
                    let k = (flen - pos).min(len);
                    let _ = Region::copy(region, off + pos, dst, dst_off, k);
                    dst_off += k;
                    len -= k;
                    pos = 0;
                }
            }
        }
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverError {
    /// Not enough free RX slots.
    NoSpace,
    /// A slot the host would fill holds a bad buffer index.
    BadSlot,
    /// The frame needs more than `NETMAP_MAX_FRAGS` slots.
    TooLong,
}

/// Per-port counters.
#[derive(Debug, Default)]
pub struct PortStats {
    /// Frames transmitted by the port's user.
    pub tx_frames: AtomicU64,
    /// Bytes transmitted.
    pub tx_bytes: AtomicU64,
    /// TX frames dropped for bad slots.
    pub tx_errors: AtomicU64,
    /// Frames delivered to the port's RX rings.
    pub rx_frames: AtomicU64,
    /// Bytes delivered.
    pub rx_bytes: AtomicU64,
    /// Frames dropped because an RX ring was full.
    pub rx_drops: AtomicU64,
    /// Frames dropped for bad RX slots.
    pub rx_errors: AtomicU64,
}

/// A host netmap port.
pub struct NmPort {
    name: String,
    mem: Arc<NetmapMemory>,
    nifp_ofs: u64,
    tx: Vec<Mutex<HostRing>>,
    rx: Vec<Mutex<HostRing>>,
    tx_slots: u32,
    rx_slots: u32,
    vnet_hdr_len: AtomicU32,
    rx_blocked: Vec<AtomicBool>,
    backend: RwLock<Option<Arc<dyn TxBackend>>>,
    listener: RwLock<Option<Arc<dyn PortListener>>>,
    tap: RwLock<Option<Arc<PcapTap>>>,
    /// Cheap per-frame check before taking the `tap` lock (the data path runs per packet).
    has_tap: AtomicBool,
    /// Counters.
    pub stats: PortStats,
}

impl fmt::Debug for NmPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NmPort")
            .field("name", &self.name)
            .field("nifp_ofs", &self.nifp_ofs)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NmPort {
    /// Registers a port in `mem`: allocates its netmap_if, rings and one buffer per slot, and
    /// initialises them as a freshly registered host port (§5.3: TX head = cur = hwcur = 0,
    /// tail = hwtail = N−1; RX all 0). Host rings get `ring_ofs` entries of 0 (§7.2,
    /// `NR_REG_ALL_NIC`), and the netmap_if reports one host ring per direction.
    pub fn new(mem: Arc<NetmapMemory>, spec: &PortSpec) -> Result<Arc<Self>, PortError> {
        if spec.tx_rings == 0 || spec.rx_rings == 0 {
            return Err(PortError::BadSpec("a port needs at least one TX and one RX ring"));
        }
        for n in [spec.tx_slots, spec.rx_slots] {
            ring::check_size(n).map_err(|_| PortError::BadSpec("ring size below 2"))?;
        }
        let counts = IfCounts { tx: spec.tx_rings, rx: spec.rx_rings, host_tx: 1, host_rx: 1 };
        let n_ofs = counts.total().ok_or(PortError::BadSpec("too many rings"))?;
        if if_size(n_ofs) > mem.layout().cfg.if_size as usize {
            return Err(PortError::BadSpec("too many rings for the if object size"));
        }
        let nifp_ofs = mem.alloc_if()?;
        let mut ring_ofs = Vec::with_capacity(n_ofs);
        let mut tx = Vec::new();
        let mut rx = Vec::new();
        let region = mem.region().clone();
        for (dir, nrings, slots) in
            [(DIR_TX, spec.tx_rings, spec.tx_slots), (DIR_RX, spec.rx_rings, spec.rx_slots)]
        {
            for id in 0..nrings {
                let ofs = mem.alloc_ring(slots)?;
                let bufs = mem.alloc_bufs(slots as usize)?;
                let view = RingView::with_slots(
                    &region.sub(ofs as usize, ring_size(slots)).map_err(ViewError::from)?,
                    slots,
                )?;
                let buf_ofs = mem.layout().buf_pool_ofs as i64 - ofs as i64;
                view.init(buf_ofs, mem.buf_size(), id as u16, dir, &bufs);
                let kring = if dir == DIR_TX { Kring::new_tx(slots) } else { Kring::new_rx(slots) };
                view.set_head(kring.rhead);
                view.set_cur(kring.rcur);
                view.set_tail(kring.rtail);
                ring_ofs.push(ofs as i64 - nifp_ofs as i64);
                let hr = Mutex::new(HostRing { kring, view, id, frames: 0, bytes: 0 });
                if dir == DIR_TX {
                    tx.push(hr)
                } else {
                    rx.push(hr)
                }
            }
            ring_ofs.push(0); // the host ring of this direction is not bound (§7.2)
        }
        let ifr = region.sub(nifp_ofs as usize, if_size(n_ofs)).map_err(ViewError::from)?;
        IfView::init(&ifr, &spec.name, counts, &ring_ofs).map_err(ViewError::from)?;
        Ok(Arc::new(Self {
            name: spec.name.clone(),
            mem,
            nifp_ofs,
            tx,
            rx,
            tx_slots: spec.tx_slots,
            rx_slots: spec.rx_slots,
            vnet_hdr_len: AtomicU32::new(0),
            rx_blocked: (0..spec.rx_rings).map(|_| AtomicBool::new(false)).collect(),
            backend: RwLock::new(None),
            listener: RwLock::new(None),
            tap: RwLock::new(None),
            has_tap: AtomicBool::new(false),
            stats: PortStats::default(),
        }))
    }

    /// Port name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The memory region the port lives in.
    pub fn mem(&self) -> &Arc<NetmapMemory> {
        &self.mem
    }
    /// Offset of the port's netmap_if in the region (`NIFP_OFS`).
    pub fn nifp_ofs(&self) -> u64 {
        self.nifp_ofs
    }
    /// Number of TX rings.
    pub fn num_tx_rings(&self) -> u32 {
        self.tx.len() as u32
    }
    /// Number of RX rings.
    pub fn num_rx_rings(&self) -> u32 {
        self.rx.len() as u32
    }
    /// Slots per TX ring.
    pub fn num_tx_slots(&self) -> u32 {
        self.tx_slots
    }
    /// Slots per RX ring.
    pub fn num_rx_slots(&self) -> u32 {
        self.rx_slots
    }

    /// Locks TX ring `i`.
    pub fn tx_ring(&self, i: u32) -> Option<MutexGuard<'_, HostRing>> {
        self.tx.get(i as usize).map(lock)
    }
    /// Locks RX ring `i`.
    pub fn rx_ring(&self, i: u32) -> Option<MutexGuard<'_, HostRing>> {
        self.rx.get(i as usize).map(lock)
    }

    /// Current virtio-net header length.
    pub fn vnet_hdr_len(&self) -> u32 {
        self.vnet_hdr_len.load(Ordering::Relaxed)
    }

    /// `NETMAP_REQ_PORT_HDR_SET` (§10): 0 is always accepted; 10 and 12 only on a port whose
    /// backend carries headers. Returns `false` (length unchanged) otherwise.
    pub fn set_vnet_hdr_len(&self, len: u32) -> bool {
        let ok =
            len == 0 || (crate::abi::vnet::VALID_HDR_LENS.contains(&len) && self.vnet_capable());
        if ok {
            self.vnet_hdr_len.store(len, Ordering::Relaxed);
        }
        ok
    }

    /// `true` if the backend carries virtio-net headers.
    pub fn vnet_capable(&self) -> bool {
        self.backend
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|b| b.vnet_capable())
    }

    /// Installs the TX backend.
    pub fn set_backend(&self, b: Arc<dyn TxBackend>) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = Some(b);
    }

    fn backend(&self) -> Option<Arc<dyn TxBackend>> {
        self.backend.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs (or removes) the listener for RX/TX events.
    pub fn set_listener(&self, l: Option<Arc<dyn PortListener>>) {
        *self.listener.write().unwrap_or_else(|e| e.into_inner()) = l;
    }

    /// Installs (or removes) a pcap tap recording every frame the port sends or receives
    /// (virtio-net headers stripped).
    pub fn set_tap(&self, t: Option<Arc<PcapTap>>) {
        let mut g = self.tap.write().unwrap_or_else(|e| e.into_inner());
        self.has_tap.store(t.is_some(), Ordering::Release);
        *g = t;
    }

    fn tap(&self) -> Option<Arc<PcapTap>> {
        self.tap.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `true` while a tap is installed.
    #[inline]
    fn tapped(&self) -> bool {
        self.has_tap.load(Ordering::Acquire)
    }

    fn record(&self, frame: &Frame<'_>) {
        if !self.tapped() {
            return;
        }
        if let Some(t) = self.tap() {
            let mut v = Vec::with_capacity(frame.len());
            frame.gather(&mut v);
            let h = (self.vnet_hdr_len() as usize).min(v.len());
            t.record(&v[h..]);
        }
    }

    /// A lossless host producer marks RX ring `ring` as blocked while it waits for room, and
    /// wakes the host loop; the loop then treats the ring like a full one and asks the guest to
    /// kick when it releases slots (§8.6 RX 2e, extended: a netmap NIC would drop instead).
    pub fn set_rx_blocked(&self, ring: u32, blocked: bool) {
        if let Some(b) = self.rx_blocked.get(ring as usize) {
            let was = b.swap(blocked, Ordering::AcqRel);
            if blocked && !was {
                self.notify_rx(ring);
            }
        }
    }

    /// `true` while a host producer waits for room on RX ring `ring`.
    pub fn rx_blocked(&self, ring: u32) -> bool {
        self.rx_blocked.get(ring as usize).is_some_and(|b| b.load(Ordering::Acquire))
    }

    /// Tells the listener that RX ring `ring` has new frames.
    pub fn notify_rx(&self, ring: u32) {
        if let Some(l) = self.listener.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            l.on_rx(ring);
        }
    }

    /// Tells the listener that TX ring `ring` may progress.
    pub fn notify_tx(&self, ring: u32) {
        if let Some(l) = self.listener.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            l.on_tx(ring);
        }
    }

    /// Backend txsync of TX ring `hr` (the caller validated `rhead` with the TX prologue).
    /// Without a backend the frames are consumed and dropped.
    pub fn txsync(&self, hr: &mut HostRing) -> Result<(), PortError> {
        match self.backend() {
            Some(b) => b.transmit(self, hr),
            None => {
                self.for_each_tx_frame(hr, |_, _| true);
                hr.kring.hwtail = ring::prev(hr.kring.hwcur, hr.kring.num_slots);
                Ok(())
            }
        }
    }

    /// Backend rxsync of RX ring `hr` (the caller validated `rhead` with the RX prologue):
    /// releases `[hwcur, rhead)` back to the host. Returns `true` if slots were released; the
    /// caller then calls [`NmPort::rx_released`] once the ring lock is dropped. Newly received
    /// frames were already placed by [`NmPort::deliver`], which advanced `hwtail`.
    pub fn rxsync_release(&self, hr: &mut HostRing) -> bool {
        let released = hr.kring.hwcur != hr.kring.rhead;
        hr.kring.hwcur = hr.kring.rhead;
        released
    }

    /// Tells the backend that RX slots of `ring` were released (call without ring locks).
    pub fn rx_released(&self, ring: u32) {
        if let Some(b) = self.backend() {
            b.rx_released(self, ring);
        }
    }

    /// Walks the complete frames in `[hwcur, rhead)` of a TX ring, calling `f(frame, slots)`
    /// for each valid one; `f` returns `false` to stop before consuming that frame. Bad frames
    /// are skipped and counted. Advances `hwcur` past every consumed frame and returns the
    /// number of frames passed to `f` and accepted.
    pub fn for_each_tx_frame(
        &self,
        hr: &mut HostRing,
        mut f: impl FnMut(&Frame<'_>, &[u32]) -> bool,
    ) -> usize {
        let n = hr.kring.num_slots;
        let region = self.mem.region().clone();
        let bsz = self.mem.buf_size();
        // Whether to record is decided once per walk (a tap attached meanwhile starts with the
        // next one).
        let tapped = self.tapped();
        // A chain's fragments and slot indices, on the stack (a frame has at most
        // NETMAP_MAX_FRAGS slots; a longer chain is consumed as an error).
        let mut frags = [(0usize, 0usize); NETMAP_MAX_FRAGS];
        let mut slots = [0u32; NETMAP_MAX_FRAGS];
        // The port's counters are shared: added to once per call, not per frame.
        let (mut sent, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        'frames: while hr.kring.hwcur != hr.kring.rhead {
            let mut k = 0usize;
            let mut len = 0usize;
            let mut i = hr.kring.hwcur;
            let mut bad = false;
            loop {
                if i == hr.kring.rhead {
                    break 'frames; // unterminated chain: hold it back
                }
                let s = hr.view.slot(i);
                match self.mem.buf_offset(s.buf_idx) {
                    Some(off) if (s.len as u32) <= bsz && k < NETMAP_MAX_FRAGS => {
                        frags[k] = (off, s.len as usize);
                        slots[k] = i;
                        len += s.len as usize;
                    }
                    _ => bad = true, // a bad slot, or an over-long chain
                }
                k += 1;
                i = ring::next(i, n);
                if s.flags & NS_MOREFRAG == 0 {
                    break;
                }
            }
            if bad {
                errors += 1;
                hr.kring.hwcur = i;
                continue;
            }
            let frame = Frame::Shm { region: &region, frags: &frags[..k] };
            if !f(&frame, &slots[..k]) {
                break;
            }
            bytes += len as u64;
            if tapped {
                self.record(&frame);
            }
            hr.kring.hwcur = i;
            sent += 1;
        }
        self.count_tx(hr, sent, bytes, errors);
        sent
    }

    /// Adds a TX walk's counts to the ring's and, once per walk, to the port's shared ones.
    fn count_tx(&self, hr: &mut HostRing, sent: usize, bytes: u64, errors: u64) {
        hr.frames += sent as u64;
        hr.bytes += bytes;
        if sent > 0 {
            self.stats.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
            self.stats.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if errors > 0 {
            self.stats.tx_errors.fetch_add(errors, Ordering::Relaxed);
        }
    }

    /// The fast lane of a TX walk: takes the frames at `hwcur` that are one slot each, for as
    /// long as `f(offset, len)` (the frame's buffer offset in this port's region, and its
    /// length) accepts them, advancing `hwcur` and counting them as
    /// [`NmPort::for_each_tx_frame`] does. It stops at the first slot that chains or is bad
    /// and at the first frame `f` refuses, which stay for `for_each_tx_frame`; it takes
    /// nothing while the port has a tap (the general walk records) or from a ring that is not
    /// 8-aligned. Per frame: one slot read, the buffer index and length checks, `f`.
    pub fn take_tx_singles(
        &self,
        hr: &mut HostRing,
        mut f: impl FnMut(usize, usize) -> bool,
    ) -> usize {
        if self.tapped() {
            return 0;
        }
        let Some(slots) = hr.view.slots() else { return 0 };
        let (n, head, bsz) = (hr.kring.num_slots, hr.kring.rhead, self.mem.buf_size());
        let (mut i, mut sent, mut bytes) = (hr.kring.hwcur, 0usize, 0u64);
        while i != head {
            let s = slots.slot(i);
            if s.flags & NS_MOREFRAG != 0 || u32::from(s.len) > bsz {
                break;
            }
            let Some(off) = self.mem.buf_offset(s.buf_idx) else { break };
            if !f(off, usize::from(s.len)) {
                break;
            }
            bytes += u64::from(s.len);
            sent += 1;
            i = ring::next(i, n);
        }
        hr.kring.hwcur = i;
        self.count_tx(hr, sent, bytes, 0);
        sent
    }

    /// Copies `frame` (header included, already in this port's header format) into RX ring
    /// `ring` (taken modulo the number of RX rings), splitting it over slots with
    /// `NS_MOREFRAG`, and advances `hwtail`. Notifies the listener. The host fills at most up to
    /// `prev(hwcur)`, keeping one slot empty (§8.6 RX 2b).
    pub fn deliver(&self, ring: u32, frame: &Frame<'_>) -> Result<(), DeliverError> {
        let r = ring % self.num_rx_rings();
        let res = {
            let Some(mut hr) = self.rx_ring(r) else { return Err(DeliverError::BadSlot) };
            self.deliver_locked(&mut hr, frame)
        };
        if res.is_ok() {
            self.notify_rx(r);
        }
        res
    }

    /// Number of RX slots `frame` needs.
    pub fn slots_for(&self, frame: &Frame<'_>) -> u32 {
        frame.len().div_ceil(self.mem.buf_size() as usize).max(1) as u32
    }

    /// `true` if `frame` fits in an empty RX ring (so waiting for space makes sense).
    pub fn fits_rx(&self, frame: &Frame<'_>) -> bool {
        let need = self.slots_for(frame);
        need < self.rx_slots && need as usize <= NETMAP_MAX_FRAGS
    }

    /// Free RX slots the host may fill: `(prev(hwcur) − hwtail) mod N`.
    pub fn rx_free(hr: &HostRing) -> u32 {
        let n = hr.kring.num_slots;
        ring::dist(hr.kring.hwtail, ring::prev(hr.kring.hwcur, n), n)
    }

    /// [`NmPort::deliver`] with the RX ring already locked (no notification). Failures are
    /// counted in `rx_drops` (no space) or `rx_errors`.
    pub fn deliver_locked(&self, hr: &mut HostRing, frame: &Frame<'_>) -> Result<(), DeliverError> {
        let mut c = RxCount::default();
        let r = self.fill_rx(hr, frame, &mut c);
        self.count_rx(c);
        r
    }

    /// [`NmPort::deliver_locked`] for each of `frames`, in order, with the port's shared
    /// counters added to once for the batch; returns how many were placed.
    pub fn deliver_all_locked<'f>(
        &self,
        hr: &mut HostRing,
        frames: &mut dyn Iterator<Item = Frame<'f>>,
    ) -> usize {
        let mut c = RxCount::default();
        for f in frames {
            let _ = self.fill_rx(hr, &f, &mut c);
        }
        self.count_rx(c);
        c.frames as usize
    }

    /// [`NmPort::deliver_all_locked`] for frames of one fragment each, `(offset, len)` in
    /// `src` (the common case of a switch walk): one slot and one copy per frame, without the
    /// generic frame walk. A frame longer than one of this port's buffers, and every frame
    /// while a tap is attached, goes through [`NmPort::fill_rx`]. Returns how many were placed.
    pub fn deliver_singles_locked(
        &self,
        hr: &mut HostRing,
        src: &Region,
        frames: &[(usize, usize)],
    ) -> usize {
        let mut c = RxCount::default();
        let bsz = self.mem.buf_size() as usize;
        let tapped = self.tapped();
        let mut free = Self::rx_free(hr);
        for &(off, len) in frames {
            if tapped || len > bsz {
                let _ = self.fill_rx(hr, &Frame::Shm { region: src, frags: &[(off, len)] }, &mut c);
                free = Self::rx_free(hr);
                continue;
            }
            if free == 0 {
                c.drops += 1;
                continue;
            }
            if self
                .place_one(hr, len, |dst, d| Region::copy(src, off, dst, d, len).is_ok())
                .is_err()
            {
                c.errors += 1; // a bad RX slot
                continue;
            }
            free -= 1;
            c.frames += 1;
            c.bytes += len as u64;
        }
        self.count_rx(c);
        c.frames as usize
    }

    /// Adds `c` to the port's shared counters (their cache line is shared with the port's
    /// user: once per call, not per frame).
    fn count_rx(&self, c: RxCount) {
        let add = |a: &AtomicU64, v| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&self.stats.rx_frames, c.frames);
        add(&self.stats.rx_bytes, c.bytes);
        add(&self.stats.rx_drops, c.drops);
        add(&self.stats.rx_errors, c.errors);
    }

    /// Places `frame` in the RX ring, counting the outcome in `c`.
    fn fill_rx(
        &self,
        hr: &mut HostRing,
        frame: &Frame<'_>,
        c: &mut RxCount,
    ) -> Result<(), DeliverError> {
        let r = self.place_rx(hr, frame);
        match r {
            Ok(len) => {
                c.frames += 1;
                c.bytes += len as u64;
                if self.tapped() {
                    self.record(frame);
                }
            }
            Err(DeliverError::NoSpace) => c.drops += 1,
            Err(_) => c.errors += 1,
        }
        r.map(drop)
    }

    /// Copies `frame` into the RX ring at hwtail (one slot, or a chain); returns its length.
    fn place_rx(&self, hr: &mut HostRing, frame: &Frame<'_>) -> Result<usize, DeliverError> {
        let bsz = self.mem.buf_size() as usize;
        let len = frame.len();
        let need = len.div_ceil(bsz).max(1);
        if need > NETMAP_MAX_FRAGS {
            return Err(DeliverError::TooLong);
        }
        if need > Self::rx_free(hr) as usize {
            return Err(DeliverError::NoSpace);
        }
        let n = hr.kring.num_slots;
        let region = self.mem.region();
        if need == 1 {
            // The common case, without the offsets array: one slot, one copy.
            return self.place_one(hr, len, |dst, off| {
                frame.copy_to(0, dst, off, len);
                true
            });
        }
        let mut offs = [0usize; NETMAP_MAX_FRAGS];
        let mut i = hr.kring.hwtail;
        for o in offs.iter_mut().take(need) {
            *o = self.mem.buf_offset(hr.view.slot(i).buf_idx).ok_or(DeliverError::BadSlot)?;
            i = ring::next(i, n);
        }
        let mut i = hr.kring.hwtail;
        for (k, &off) in offs.iter().take(need).enumerate() {
            let pos = k * bsz;
            let l = (len - pos.min(len)).min(bsz);
            frame.copy_to(pos, region, off, l);
            let flags = if k + 1 < need { NS_MOREFRAG } else { 0 };
            hr.view.set_len_flags(i, l as u16, flags);
            i = ring::next(i, n);
        }
        hr.kring.hwtail = i;
        Ok(len)
    }

    /// Puts a `len`-byte frame (at most one buffer) in the RX slot at `hwtail`, which the
    /// caller found free: `write` copies it into the slot's buffer (this port's region and the
    /// buffer's offset, the slot's buffer index read once and checked) and says whether it
    /// could; then the slot's length is set and `hwtail` advances. A bad buffer index, or a
    /// failed write, is `BadSlot` and moves nothing.
    fn place_one(
        &self,
        hr: &mut HostRing,
        len: usize,
        write: impl FnOnce(&Region, usize) -> bool,
    ) -> Result<usize, DeliverError> {
        let i = hr.kring.hwtail;
        let off = self.mem.buf_offset(hr.view.slot(i).buf_idx).ok_or(DeliverError::BadSlot)?;
        if !write(self.mem.region(), off) {
            return Err(DeliverError::BadSlot);
        }
        hr.view.set_len_flags(i, len as u16, 0);
        hr.kring.hwtail = ring::next(i, hr.kring.num_slots);
        Ok(len)
    }

    /// E9 ring reinitialisation after a failed host check, for a TX (`tx = true`) or RX ring:
    /// copy head/cur/tail from the shared ring into the kring, clean every bad slot, and reset
    /// the indices to hwcur/hwtail only if one of the shared values is above N−1.
    /// Returns `true` if the indices were reset.
    pub fn reinit_ring(&self, hr: &mut HostRing) -> bool {
        let n = hr.kring.num_slots;
        let (h, c, t) = (hr.view.head(), hr.view.cur(), hr.view.tail());
        hr.kring.rhead = h;
        hr.kring.rcur = c;
        hr.kring.rtail = t;
        for i in 0..n {
            let s = hr.view.slot(i);
            if !self.mem.buf_valid(s.buf_idx) {
                hr.view.set_slot(i, Slot { buf_idx: 0, len: 0, flags: s.flags });
            } else if s.len as u32 > self.mem.buf_size() {
                hr.view.set_len_flags(i, 0, s.flags);
            }
        }
        let reset = h >= n || c >= n || t >= n;
        if reset {
            hr.kring.rhead = hr.kring.hwcur;
            hr.kring.rcur = hr.kring.hwcur;
            hr.kring.rtail = hr.kring.hwtail;
            hr.view.set_head(hr.kring.hwcur);
            hr.view.set_cur(hr.kring.hwcur);
            hr.view.set_tail(hr.kring.hwtail);
        }
        log::warn!("{}: ring {} reinitialised (indices reset: {reset})", self.name, hr.id);
        reset
    }
}

/// Moves slots one by one from a TX ring to an RX ring, the way netmap pipes do: as many slots
/// as the RX ring has room for, regardless of packet boundaries (a `NS_MOREFRAG` chain may be
/// split across syncs; the receiver sees it complete once its last slot arrives). `swap` = true
/// exchanges buffer indices (zero-copy, both slots get `NS_BUF_CHANGED`); false copies the data
/// into the RX slot's own buffer. Frames are counted (and tapped) when their last slot moves.
struct SlotMover {
    /// Per TX ring: the chain in progress.
    partial: Vec<Mutex<Partial>>,
    swap: bool,
}

/// The state of one [`SlotMover::run`] walk.
#[derive(Default)]
struct Walk {
    /// Next TX slot, next RX slot, RX slots free at the start.
    ti: u32,
    ri: u32,
    free: u32,
    /// The chain in progress: bytes and slots so far.
    chain_bytes: u64,
    chain_slots: usize,
    /// Frames and bytes completed, slots whose copy failed.
    frames: u64,
    bytes: u64,
    errors: u64,
}

/// The slots of a chain moved so far (a chain may be split across calls).
#[derive(Default)]
struct Partial {
    /// Bytes.
    bytes: u64,
    /// Slots.
    slots: usize,
    /// The RX-side `(buf_idx, len)` of each slot, kept only while a port has a tap (a tap
    /// installed in the middle of a chain records that frame from where it started).
    frags: Vec<(u32, u16)>,
}

impl SlotMover {
    fn new(tx_rings: u32, swap: bool) -> Self {
        Self { partial: (0..tx_rings).map(|_| Mutex::default()).collect(), swap }
    }

    /// Returns `true` if any slot moved. Per slot: one slot read on each side, one write (two
    /// when swapping); per frame: a length sum; the ports' shared counters are added to once
    /// per call, and a frame's slots are kept for a tap only while one of the ports has a tap.
    fn run(&self, src: &NmPort, hr: &mut HostRing, dst: &NmPort, rx: &mut HostRing) -> bool {
        let Some(partial) = self.partial.get(hr.id as usize) else { return false };
        let mut p = lock(partial);
        let tapped = src.tapped() || dst.tapped();
        let mut w = Walk {
            ti: hr.kring.hwcur,
            ri: rx.kring.hwtail,
            free: NmPort::rx_free(rx),
            // The chain in progress in locals: kept in the guarded struct, its two counters
            // were stored and reloaded per slot (a stalled 16-byte reload took 69 % of this
            // function's samples in `perf annotate`, zc-pipe direct).
            chain_bytes: p.bytes,
            chain_slots: p.slots,
            ..Walk::default()
        };
        let ends = (hr.kring.rhead, hr.kring.num_slots, rx.kring.num_slots);
        match (hr.view.slots(), rx.view.slots()) {
            (Some(t), Some(r)) => self.walk_in(tapped, (src, t), (dst, r), ends, &mut w, &mut p),
            _ => self.walk_in(tapped, (src, &hr.view), (dst, &rx.view), ends, &mut w, &mut p),
        }
        if !tapped && w.frames > 0 {
            p.frags.clear(); // as a tapped walk does at each frame's end
        }
        (p.bytes, p.slots) = (w.chain_bytes, w.chain_slots);
        let tn = hr.kring.num_slots;
        let moved = w.ti != hr.kring.hwcur;
        hr.kring.hwcur = w.ti;
        rx.kring.hwtail = w.ri;
        hr.kring.hwtail = ring::prev(w.ti, tn);
        hr.frames += w.frames;
        hr.bytes += w.bytes;
        if w.frames > 0 {
            src.stats.tx_frames.fetch_add(w.frames, Ordering::Relaxed);
            src.stats.tx_bytes.fetch_add(w.bytes, Ordering::Relaxed);
            dst.stats.rx_frames.fetch_add(w.frames, Ordering::Relaxed);
            dst.stats.rx_bytes.fetch_add(w.bytes, Ordering::Relaxed);
        }
        if w.errors > 0 {
            src.stats.tx_errors.fetch_add(w.errors, Ordering::Relaxed);
        }
        moved
    }

    /// [`SlotMover::walk`] for this mover's mode and the tap state, with `ends` = (TX `rhead`,
    /// TX N, RX N): one loop per case, so the per-slot body tests neither (the zero-copy,
    /// untapped one is the pipe's hot path: four slot accesses and a sum).
    fn walk_in<A: SlotAccess>(
        &self,
        tapped: bool,
        tx: (&NmPort, A),
        rx: (&NmPort, A),
        ends: (u32, u32, u32),
        w: &mut Walk,
        p: &mut Partial,
    ) {
        match (self.swap, tapped) {
            (true, false) => Self::walk::<true, false, A>(tx, rx, ends, w, p),
            (true, true) => Self::walk::<true, true, A>(tx, rx, ends, w, p),
            (false, false) => Self::walk::<false, false, A>(tx, rx, ends, w, p),
            (false, true) => Self::walk::<false, true, A>(tx, rx, ends, w, p),
        }
    }

    /// The slot loop of [`SlotMover::run`], for one mode (`SWAP`) and tap state (`TAP`).
    #[inline(always)]
    fn walk<const SWAP: bool, const TAP: bool, A: SlotAccess>(
        (src, tv): (&NmPort, A),
        (dst, rv): (&NmPort, A),
        (head, tn, rn): (u32, u32, u32),
        w: &mut Walk,
        p: &mut Partial,
    ) {
        let mem = src.mem();
        let max_len = mem.buf_size().min(u16::MAX as u32) as u16;
        let (mut ti, mut ri) = (w.ti, w.ri);
        // The slots to move, and the frame bookkeeping as running totals and marks (few live
        // values, so the loop keeps them in registers): `total` bytes and `k` slots moved,
        // counting the chain in progress; `done` and `mark` are their values at the last frame
        // end (the chain carried in is not done).
        let count = ring::dist(ti, head, tn).min(w.free);
        let (mut total, mut k) = (w.chain_bytes, w.chain_slots);
        let (mut done, mut mark, mut frames) = (0u64, 0usize, 0u64);
        for _ in 0..count {
            let ts = tv.slot(ti);
            let more = ts.flags & NS_MOREFRAG;
            let mut len = ts.len.min(max_len);
            let rx_buf = if SWAP {
                let rs_idx = rv.slot(ri).buf_idx;
                rv.set_slot(ri, Slot { buf_idx: ts.buf_idx, len, flags: more | NS_BUF_CHANGED });
                tv.set_slot(ti, Slot { buf_idx: rs_idx, len: ts.len, flags: NS_BUF_CHANGED });
                ts.buf_idx
            } else {
                let rs = rv.slot(ri);
                let ok = match (mem.buf_offset(ts.buf_idx), dst.mem().buf_offset(rs.buf_idx)) {
                    (Some(so), Some(d)) => {
                        Region::copy(mem.region(), so, dst.mem().region(), d, len as usize).is_ok()
                    }
                    _ => false,
                };
                if !ok {
                    w.errors += 1;
                    len = 0;
                }
                rv.set_len_flags(ri, len, more);
                rs.buf_idx
            };
            total += u64::from(len);
            k += 1;
            if TAP {
                p.frags.push((rx_buf, len));
            }
            ti = ring::next(ti, tn);
            ri = ring::next(ri, rn);
            if more == 0 || k - mark >= NETMAP_MAX_FRAGS * 4 {
                if TAP {
                    Self::tap(src, dst, &p.frags);
                    p.frags.clear();
                }
                frames += 1;
                (done, mark) = (total, k);
            }
        }
        (w.ti, w.ri) = (ti, ri);
        (w.chain_bytes, w.chain_slots) = (total - done, k - mark);
        (w.frames, w.bytes) = (frames, done);
    }

    /// Hands one frame whose slots now sit in `dst`'s RX ring to the ports' taps.
    fn tap(src: &NmPort, dst: &NmPort, frags: &[(u32, u16)]) {
        let m = dst.mem();
        let mut offs = [(0usize, 0usize); NETMAP_MAX_FRAGS * 4];
        let mut k = 0;
        for &(b, l) in frags {
            if let Some(o) = m.buf_offset(b) {
                offs[k] = (o, l as usize);
                k += 1;
            }
        }
        let frame = Frame::Shm { region: m.region(), frags: &offs[..k] };
        src.record(&frame);
        if !std::ptr::eq(src, dst) {
            dst.record(&frame);
        }
    }
}

/// Backend of one end of a netmap pipe (zero-copy: buffer indices are swapped between the TX
/// slot and the peer's RX slot, both marked `NS_BUF_CHANGED`). Both ends share one region.
/// Slots wait in the TX ring while the peer's RX ring is full; the peer's release wakes this
/// end. TX ring `i` feeds the peer's RX ring `i mod peer_rx_rings`.
pub struct PipeEnd {
    peer: std::sync::Weak<NmPort>,
    mover: SlotMover,
}

impl PipeEnd {
    /// Connects two ports (which must share a region) as a pipe pair.
    pub fn connect(a: &Arc<NmPort>, b: &Arc<NmPort>) -> Result<(), PortError> {
        if !Arc::ptr_eq(a.mem(), b.mem()) {
            return Err(PortError::BadSpec("pipe ends must share one memory region"));
        }
        let end = |me: &NmPort, peer: &Arc<NmPort>| PipeEnd {
            peer: Arc::downgrade(peer),
            mover: SlotMover::new(me.num_tx_rings(), true),
        };
        a.set_backend(Arc::new(end(a, b)));
        b.set_backend(Arc::new(end(b, a)));
        Ok(())
    }
}

impl TxBackend for PipeEnd {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let Some(peer) = self.peer.upgrade() else {
            return Err(PortError::Backend("pipe peer gone"));
        };
        let r = hr.id % peer.num_rx_rings();
        let moved = {
            let Some(mut prx) = peer.rx_ring(r) else {
                return Err(PortError::Backend("pipe peer has no rx ring"));
            };
            self.mover.run(port, hr, &peer, &mut prx)
        };
        if moved {
            peer.notify_rx(r);
        }
        Ok(())
    }

    fn rx_released(&self, port: &NmPort, ring: u32) {
        if let Some(peer) = self.peer.upgrade() {
            for t in 0..peer.num_tx_rings() {
                if t % port.num_rx_rings() == ring {
                    peer.notify_tx(t);
                }
            }
        }
    }

    fn kind(&self) -> &'static str {
        "pipe"
    }
}

/// Backend that sends every frame back into the same port's RX ring (a copy, slot by slot like a
/// pipe), waiting while that ring is full. TX ring `i` feeds RX ring `i mod rx_rings`.
pub struct Reflector {
    mover: SlotMover,
}

impl Reflector {
    /// A reflector for `port`; install it with [`NmPort::set_backend`].
    pub fn new(port: &NmPort) -> Arc<Self> {
        Arc::new(Self { mover: SlotMover::new(port.num_tx_rings(), false) })
    }
}

impl TxBackend for Reflector {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let r = hr.id % port.num_rx_rings();
        let moved = {
            let Some(mut rx) = port.rx_ring(r) else {
                return Err(PortError::Backend("no rx ring"));
            };
            self.mover.run(port, hr, port, &mut rx)
        };
        if moved {
            port.notify_rx(r);
        }
        Ok(())
    }

    fn rx_released(&self, port: &NmPort, ring: u32) {
        for t in 0..port.num_tx_rings() {
            if t % port.num_rx_rings() == ring {
                port.notify_tx(t);
            }
        }
    }

    fn kind(&self) -> &'static str {
        "reflector"
    }
}
