//! A VALE-like learning switch (spec §7.1, §10; vale(4)).
//!
//! Any number of ports. The switch owns its endpoints; a netmap port refers back to its switch
//! weakly, so whoever built the topology keeps the `Arc<Switch>`.
//!
//! Each frame a port transmits is forwarded synchronously (TX completes at
//! once: `hwcur = head`, `hwtail = prev(head)`, §8.6 TX 3c): the source MAC is learnt, a known
//! unicast destination gets the frame, unknown unicast, multicast and broadcast are flooded to
//! every other port. Delivery copies into the destination's RX ring; a full destination ring
//! drops the frame there (as VALE does) and counts it in that port's `rx_drops`.
//!
//! A port's user releasing RX slots signals [`Switch::space`], so that a host endpoint whose
//! frame was refused by a full ring (a [`super::apps::Reflect`]) can wait and send it again.
//!
//! Ports may use different virtio-net header lengths (0/10/12): frames are converted on the way
//! by [`super::offload::convert`], which also performs software checksum and segmentation when
//! a frame with offload requests goes to a port without headers (§10).

use super::notify::Notifier;
use super::offload;
use super::port::{Frame, HostRing, NmPort, PortError, TxBackend};
use crate::ring;
use crate::shm::Region;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Something attached to a switch port that can receive frames.
pub trait SwitchEndpoint: Send + Sync {
    /// Virtio-net header length the endpoint expects in front of each frame.
    fn hdr_len(&self) -> u32;
    /// Takes one frame (with a header of `hdr_len()` bytes); `true` if it was accepted.
    /// Called with the switch's lock held: it must not call back into the switch (that
    /// deadlocks); an endpoint that answers queues the frame and forwards from its own thread.
    fn receive(&self, ring_hint: u32, frame: &Frame<'_>) -> bool;
    /// [`SwitchEndpoint::receive`] inside a batch: the notification of the endpoint's user may
    /// wait for [`SwitchEndpoint::flush`] (VALE notifies each destination ring once per
    /// forwarded batch, not per frame). The default notifies at once.
    fn receive_quiet(&self, ring_hint: u32, frame: &Frame<'_>) -> bool {
        self.receive(ring_hint, frame)
    }
    /// The end of a batch that delivered to this endpoint on `ring_hint` with
    /// [`SwitchEndpoint::receive_quiet`].
    fn flush(&self, _ring_hint: u32) {}
    /// [`SwitchEndpoint::receive_quiet`] for each of `frames`, in order; returns how many were
    /// accepted. An endpoint with a ring takes its lock once for all of them (VALE's second
    /// phase: each destination ring is locked once per batch).
    fn receive_all<'f>(
        &self,
        ring_hint: u32,
        frames: &mut dyn Iterator<Item = Frame<'f>>,
    ) -> usize {
        frames.filter(|f| self.receive_quiet(ring_hint, f)).count()
    }
    /// [`SwitchEndpoint::receive_all`] for frames of one fragment each, `(offset, len)` in
    /// `region` (most of a switch walk).
    fn receive_singles(&self, ring_hint: u32, region: &Region, frames: &[(usize, usize)]) -> usize {
        let mut it = frames.iter().map(|f| Frame::Shm { region, frags: std::slice::from_ref(f) });
        self.receive_all(ring_hint, &mut it)
    }
}

impl SwitchEndpoint for NmPort {
    fn hdr_len(&self) -> u32 {
        self.vnet_hdr_len()
    }
    /// Delivers into RX ring `ring_hint` (modulo the RX rings). A frame refused for lack of
    /// room wakes the port's loop all the same: its user may have released slots the loop has
    /// not taken back yet (no kick is asked while the ring is not full), and taking them back
    /// signals [`Switch::space`] for a sender that offers the frame again.
    fn receive(&self, ring_hint: u32, frame: &Frame<'_>) -> bool {
        let ok = self.receive_quiet(ring_hint, frame);
        self.flush(ring_hint);
        ok
    }
    /// Delivers without notifying; the flush at the end of the batch notifies (also after a
    /// refusal for lack of room, see above).
    fn receive_quiet(&self, ring_hint: u32, frame: &Frame<'_>) -> bool {
        let r = ring_hint % self.num_rx_rings().max(1);
        let Some(mut hr) = self.rx_ring(r) else { return false };
        self.deliver_locked(&mut hr, frame).is_ok()
    }
    fn flush(&self, ring_hint: u32) {
        self.notify_rx(ring_hint % self.num_rx_rings().max(1));
    }
    fn receive_all<'f>(
        &self,
        ring_hint: u32,
        frames: &mut dyn Iterator<Item = Frame<'f>>,
    ) -> usize {
        let r = ring_hint % self.num_rx_rings().max(1);
        let Some(mut hr) = self.rx_ring(r) else { return 0 };
        self.deliver_all_locked(&mut hr, frames)
    }
    fn receive_singles(&self, ring_hint: u32, region: &Region, frames: &[(usize, usize)]) -> usize {
        let r = ring_hint % self.num_rx_rings().max(1);
        let Some(mut hr) = self.rx_ring(r) else { return 0 };
        self.deliver_singles_locked(&mut hr, region, frames)
    }
}

/// Switch counters.
#[derive(Debug, Default)]
pub struct SwitchStats {
    /// Frames entering the switch.
    pub frames_in: AtomicU64,
    /// Frames sent to a learnt unicast destination.
    pub unicast: AtomicU64,
    /// Frames flooded.
    pub flooded: AtomicU64,
    /// Deliveries refused by the destination (ring full or bad slot).
    pub dropped: AtomicU64,
    /// Frames whose header conversion failed (malformed offload request).
    pub conversion_errors: AtomicU64,
}

struct State {
    ports: Vec<Option<Arc<dyn SwitchEndpoint>>>,
    macs: HashMap<[u8; 6], usize>,
    scratch: Vec<u8>,
    out: Vec<Vec<u8>>,
    /// Ports delivered to (quietly) since the last flush.
    touched: Vec<usize>,
    /// The last address learnt and the last unicast lookup, `(mac, port)`: a batch of frames
    /// of one flow hashes neither again (the table is consulted only when they change).
    last_learnt: Option<([u8; 6], usize)>,
    last_lookup: Option<([u8; 6], Option<usize>)>,
    /// The last frame's route, `(source port, its 12 address bytes, target)`: the frames of
    /// one flow after it are routed with one compare. Every routed frame that is not a repeat
    /// learns first and replaces it, so only a change from outside a route (a detach) has to
    /// forget it.
    last_route: Option<(usize, [u8; 12], Target)>,
    /// A TX walk's first phase: `(destination port, fragments)` per delivery, the fragments a
    /// range of `frags` (offsets and lengths in the source port's region, checked by the walk).
    routes: Vec<(usize, std::ops::Range<usize>)>,
    frags: Vec<(usize, usize)>,
    /// The fast lane's share of a walk, `(destination port, frames)`: the first frames of
    /// `frags`, one fragment each, with no entry in `routes` until the general walk needs one.
    lane: (usize, usize),
    /// A destination's share of a walk when every frame of it is one fragment.
    singles: Vec<(usize, usize)>,
}

/// Where a frame goes.
#[derive(Clone, Copy)]
enum Target {
    /// Nowhere: too short to carry Ethernet addresses (counted as dropped).
    Runt,
    /// Nowhere: a unicast to a station learnt on its own source port.
    Local,
    /// One learnt port.
    Port(usize),
    /// Every port but the source.
    Flood,
}

/// The switch.
pub struct Switch {
    name: String,
    state: Mutex<State>,
    /// Counters.
    pub stats: SwitchStats,
    /// Signalled whenever the user of a netmap port on this switch released RX slots.
    pub space: Arc<Notifier>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Switch({})", self.name)
    }
}

/// The TX backend of a netmap port attached to a switch. It holds the switch weakly (the
/// switch holds its ports), so dropping the switch's last owner frees both; frames sent after
/// that are dropped.
struct SwitchPort {
    sw: std::sync::Weak<Switch>,
    no: usize,
}

impl TxBackend for SwitchPort {
    /// Forwards the whole walk under one switch lock; each destination is notified once at
    /// the end (VALE's `nm_bdg_flush`).
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let id = hr.id;
        match self.sw.upgrade() {
            Some(sw) => {
                let mut guard = sw.lock();
                let s = &mut *guard;
                let hdr = port.vnet_hdr_len();
                s.routes.clear();
                s.frags.clear();
                s.lane = (0, 0);
                let mut counts = [0u64; 3];
                // The frames of the flow the switch last routed, one slot each, through the
                // fast lane; the general walk takes over at the first other frame.
                if let Some((to, eth)) = Switch::lane_route(s, self.no) {
                    let (region, at, frags) = (port.mem().region(), hdr as usize, &mut s.frags);
                    let n = port.take_tx_singles(hr, |off, len| {
                        let same = len >= at + 12
                            && region.read_array::<12>(off + at).is_ok_and(|e| e == eth);
                        if same {
                            frags.push((off, len));
                        }
                        same
                    });
                    s.lane = (to, n);
                    counts[0] += n as u64;
                    counts[1] += n as u64;
                }
                port.for_each_tx_frame(hr, |f, _| {
                    sw.route_walk(s, self.no, hdr, f, &mut counts);
                    true
                });
                sw.count_walk(counts);
                sw.deliver_walk(s, port.mem().region(), hdr, id);
                sw.flush_locked(s, id);
            }
            None => {
                port.for_each_tx_frame(hr, |_, _| true);
            }
        }
        hr.kring.hwtail = ring::prev(hr.kring.hwcur, hr.kring.num_slots);
        Ok(())
    }
    fn rx_released(&self, _port: &NmPort, _ring: u32) {
        if let Some(sw) = self.sw.upgrade() {
            sw.space.notify();
        }
    }
    fn kind(&self) -> &'static str {
        "switch"
    }
    fn vnet_capable(&self) -> bool {
        true
    }
}

impl Switch {
    /// A switch with no ports.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            state: Mutex::new(State {
                ports: Vec::new(),
                macs: HashMap::new(),
                scratch: Vec::new(),
                out: Vec::new(),
                touched: Vec::new(),
                last_learnt: None,
                last_lookup: None,
                last_route: None,
                routes: Vec::new(),
                lane: (0, 0),
                frags: Vec::new(),
                singles: Vec::new(),
            }),
            stats: SwitchStats::default(),
            space: Arc::new(Notifier::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches an endpoint; returns its port number.
    pub fn attach(&self, ep: Arc<dyn SwitchEndpoint>) -> usize {
        let mut s = self.lock();
        if let Some(i) = s.ports.iter().position(Option::is_none) {
            s.ports[i] = Some(ep);
            i
        } else {
            s.ports.push(Some(ep));
            s.ports.len() - 1
        }
    }

    /// Attaches a netmap port: its TX rings now feed the switch, and it receives from it.
    pub fn attach_port(self: &Arc<Self>, port: &Arc<NmPort>) -> usize {
        let no = self.attach(port.clone());
        port.set_backend(Arc::new(SwitchPort { sw: Arc::downgrade(self), no }));
        no
    }

    /// Detaches port `no` and forgets the addresses learnt on it.
    pub fn detach(&self, no: usize) {
        let mut s = self.lock();
        if let Some(p) = s.ports.get_mut(no) {
            *p = None;
        }
        s.macs.retain(|_, p| *p != no);
        s.last_learnt = None;
        s.last_lookup = None;
        s.last_route = None;
    }

    /// The switch's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of attached ports.
    pub fn num_ports(&self) -> usize {
        self.lock().ports.iter().flatten().count()
    }

    /// Port learnt for `mac`, if any.
    pub fn lookup(&self, mac: &[u8; 6]) -> Option<usize> {
        self.lock().macs.get(mac).copied()
    }

    /// Forwards one frame (with a `src_hdr_len`-byte header) entering on port `src`.
    /// Returns the number of endpoints that accepted it.
    pub fn forward(
        &self,
        src: usize,
        src_hdr_len: u32,
        ring_hint: u32,
        frame: &Frame<'_>,
    ) -> usize {
        let mut guard = self.lock();
        let n = self.forward_locked(&mut guard, src, src_hdr_len, ring_hint, frame);
        self.flush_locked(&mut guard, ring_hint);
        n
    }

    /// Notifies every port delivered to since the last flush, once.
    fn flush_locked(&self, s: &mut State, ring_hint: u32) {
        for no in s.touched.drain(..) {
            if let Some(Some(ep)) = s.ports.get(no) {
                ep.flush(ring_hint);
            }
        }
    }

    /// Learns the source address of `frame` (entering on `src`, after a `src_hdr_len`-byte
    /// header) and finds where it goes.
    #[inline(always)]
    fn route(s: &mut State, src: usize, src_hdr_len: u32, frame: &Frame<'_>) -> Target {
        let Some(eth) = frame.read_array::<12>(src_hdr_len as usize) else {
            return Target::Runt;
        };
        if let Some((p, e, t)) = s.last_route {
            if p == src && e == eth {
                return t; // same source, same addresses, same table: same route
            }
        }
        Self::route_new(s, src, eth)
    }

    /// [`Switch::route`] for addresses `eth` (destination, source) that differ from the last
    /// frame's, or from another port: learns, looks up, and remembers the route.
    #[inline(never)]
    fn route_new(s: &mut State, src: usize, eth: [u8; 12]) -> Target {
        let dst: [u8; 6] = eth[..6].try_into().unwrap_or_default();
        let smac: [u8; 6] = eth[6..].try_into().unwrap_or_default();
        if smac[0] & 1 == 0 && s.last_learnt != Some((smac, src)) {
            if s.macs.insert(smac, src) != Some(src) {
                s.last_lookup = None; // the table changed
            }
            s.last_learnt = Some((smac, src));
        }
        let target = if dst[0] & 1 != 0 {
            None
        } else if let Some((_, t)) = s.last_lookup.filter(|(m, _)| *m == dst) {
            t // a miss is cached too: a destination not learnt yet floods, as before
        } else {
            let t = s.macs.get(&dst).copied();
            s.last_lookup = Some((dst, t));
            t
        };
        let t = match target {
            Some(t) if t == src => Target::Local,
            Some(t) => Target::Port(t),
            None => Target::Flood,
        };
        s.last_route = Some((src, eth, t));
        t
    }

    /// The fast lane of a walk from port `src`: the last route's destination and 12 address
    /// bytes, if that route came from `src` and goes to one port. A frame of the walk with
    /// the same address bytes goes the same way (same source, same addresses, same table), so
    /// its delivery is recorded in the lane (its fragment; its route only if the general walk
    /// follows, see [`Switch::deliver_walk`]). A runt, a new flow, a flood or a frame for its
    /// own port is the general walk's.
    fn lane_route(s: &State, src: usize) -> Option<(usize, [u8; 12])> {
        match s.last_route {
            Some((p, e, Target::Port(t))) if p == src => Some((t, e)),
            _ => None,
        }
    }

    /// Adds the counts of a walk (`[frames in, unicast, flooded]`), once per walk.
    fn count_walk(&self, [frames, unicast, flooded]: [u64; 3]) {
        if frames > 0 {
            self.stats.frames_in.fetch_add(frames, Ordering::Relaxed);
            self.stats.unicast.fetch_add(unicast, Ordering::Relaxed);
            self.stats.flooded.fetch_add(flooded, Ordering::Relaxed);
        }
    }

    /// A TX walk's first phase for one frame (VALE's `nm_bdg_preflush`): routes it and
    /// records a delivery per destination port, without touching any destination yet.
    /// `counts` gathers `[frames in, unicast, flooded]`; a runt is counted as dropped. The
    /// fragments are copied once here (the walk checked them) and used as copied.
    #[inline]
    fn route_walk(
        &self,
        s: &mut State,
        src: usize,
        src_hdr_len: u32,
        frame: &Frame<'_>,
        counts: &mut [u64; 3],
    ) {
        counts[0] += 1;
        let target = Self::route(s, src, src_hdr_len, frame);
        let Frame::Shm { frags, .. } = frame else {
            return; // a TX walk gives frames in the port's region only
        };
        let at = s.frags.len()..s.frags.len() + frags.len();
        match target {
            Target::Runt => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Target::Local => return,
            Target::Port(t) => {
                counts[1] += 1;
                s.routes.push((t, at));
            }
            Target::Flood => {
                counts[2] += 1;
                for i in 0..s.ports.len() {
                    if i != src && s.ports[i].is_some() {
                        s.routes.push((i, at.clone()));
                    }
                }
            }
        }
        match frags {
            [one] => s.frags.push(*one), // the common case, without a `memcpy` call
            _ => s.frags.extend_from_slice(frags),
        }
    }

    /// A TX walk's second phase (VALE's `nm_bdg_flush`): for each destination in the order
    /// first routed to, its frames in order, through one [`SwitchEndpoint::receive_all`] (one
    /// lock of its ring) when it takes the source's header length, else converted one by one.
    fn deliver_walk(&self, s: &mut State, region: &Region, src_len: u32, ring_hint: u32) {
        // The fast lane's frames lead the walk, without routes: all of it (one destination,
        // one fragment per frame), or routes made for them here when the general walk routed
        // more after them.
        let (lane_to, lane) = std::mem::take(&mut s.lane);
        let whole_lane = lane > 0 && lane == s.frags.len();
        if lane > 0 && !whole_lane {
            Self::lane_routes(s, lane_to, lane);
        }
        // A walk whose frames all go to one port that takes the source's header length, each
        // in one fragment (a flow between two VMs): its fragments, in order, are the delivery.
        // (With one destination a frame has one route, so as many routes as fragments means
        // one fragment per frame.)
        let one = if whole_lane {
            Some(lane_to)
        } else {
            let no = s.routes.first().map(|r| r.0);
            no.filter(|&no| s.routes.len() == s.frags.len() && s.routes.iter().all(|r| r.0 == no))
        };
        if let Some(no) = one {
            if let Some(Some(ep)) = s.ports.get(no) {
                if ep.hdr_len() == src_len {
                    let ep = ep.clone();
                    self.take_singles(ep.as_ref(), ring_hint, region, &s.frags);
                    Self::touch(s, no);
                    return;
                }
            }
        }
        if whole_lane {
            Self::lane_routes(s, lane_to, lane);
        }
        let routes = std::mem::take(&mut s.routes);
        let mut k = 0;
        while k < routes.len() {
            let no = routes[k].0;
            k += 1;
            if s.touched.contains(&no) {
                continue; // delivered with the first route to it
            }
            let Some(Some(ep)) = s.ports.get(no) else { continue };
            let ep = ep.clone();
            let frags = &s.frags;
            let mine = routes[k - 1..].iter().filter(|r| r.0 == no);
            let frame_of = |r: &(usize, std::ops::Range<usize>)| Frame::Shm {
                region,
                frags: &frags[r.1.clone()],
            };
            if ep.hdr_len() == src_len {
                // Single fragments (the common case) go as one slice, without the frame walk.
                s.singles.clear();
                let all_single = mine.clone().all(|r| {
                    let one = r.1.len() == 1;
                    if one {
                        s.singles.push(frags[r.1.start]);
                    }
                    one
                });
                if all_single {
                    self.take_singles(ep.as_ref(), ring_hint, region, &s.singles);
                } else {
                    let mut frames = mine.map(frame_of);
                    let mut n = 0;
                    let ok = ep.receive_all(ring_hint, &mut frames.by_ref().inspect(|_| n += 1));
                    self.count_refused(n, ok);
                }
            } else {
                // Converted one by one; `deliver_one` counts its refusals and conversion errors.
                let frames: Vec<_> = mine.map(frame_of).collect();
                let State { scratch, out, .. } = s;
                for f in &frames {
                    self.deliver_one(scratch, out, ep.as_ref(), src_len, ring_hint, f);
                }
            }
            Self::touch(s, no);
        }
        s.routes = routes;
    }

    /// Gives the fast lane's `n` frames (the first of the walk, one fragment each, all to
    /// port `to`) their routes, ahead of the general walk's.
    fn lane_routes(s: &mut State, to: usize, n: usize) {
        drop(s.routes.splice(0..0, (0..n).map(|k| (to, k..k + 1))));
    }

    /// Hands `singles` (one-fragment frames in `region`) to `ep` as one slice; what it
    /// refuses is counted as dropped.
    fn take_singles(
        &self,
        ep: &dyn SwitchEndpoint,
        ring_hint: u32,
        region: &Region,
        singles: &[(usize, usize)],
    ) {
        let ok = ep.receive_singles(ring_hint, region, singles);
        self.count_refused(singles.len(), ok);
    }

    /// Counts the frames a destination refused: `n` offered, `ok` taken.
    fn count_refused(&self, n: usize, ok: usize) {
        if n > ok {
            self.stats.dropped.fetch_add((n - ok) as u64, Ordering::Relaxed);
        }
    }

    /// [`Switch::forward`] with the lock held and the notifications left to the flush.
    fn forward_locked(
        &self,
        s: &mut State,
        src: usize,
        src_hdr_len: u32,
        ring_hint: u32,
        frame: &Frame<'_>,
    ) -> usize {
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let mut delivered = 0;
        match Self::route(s, src, src_hdr_len, frame) {
            Target::Runt => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Target::Local => {}
            Target::Port(t) => {
                self.stats.unicast.fetch_add(1, Ordering::Relaxed);
                delivered += self.deliver_to(s, t, src_hdr_len, ring_hint, frame);
            }
            Target::Flood => {
                self.stats.flooded.fetch_add(1, Ordering::Relaxed);
                for i in 0..s.ports.len() {
                    if i != src {
                        delivered += self.deliver_to(s, i, src_hdr_len, ring_hint, frame);
                    }
                }
            }
        }
        delivered
    }

    fn touch(s: &mut State, no: usize) {
        if !s.touched.contains(&no) {
            s.touched.push(no);
        }
    }

    /// Delivers `frame` to port `no` (its endpoint borrowed in place: no reference count
    /// touched per frame) and marks the port for the flush.
    fn deliver_to(
        &self,
        s: &mut State,
        no: usize,
        src_len: u32,
        ring_hint: u32,
        frame: &Frame<'_>,
    ) -> usize {
        let State { ports, scratch, out, .. } = s;
        let Some(Some(ep)) = ports.get(no) else { return 0 };
        let n = self.deliver_one(scratch, out, ep.as_ref(), src_len, ring_hint, frame);
        Self::touch(s, no);
        n
    }

    fn deliver_one(
        &self,
        scratch: &mut Vec<u8>,
        out: &mut Vec<Vec<u8>>,
        ep: &dyn SwitchEndpoint,
        src_len: u32,
        ring_hint: u32,
        frame: &Frame<'_>,
    ) -> usize {
        let dst_len = ep.hdr_len();
        if dst_len == src_len {
            return self.count(ep.receive_quiet(ring_hint, frame));
        }
        scratch.clear();
        frame.gather(scratch);
        let mut outs = std::mem::take(out);
        let mut n_out = 0;
        let res = offload::convert(scratch, src_len as usize, dst_len as usize, &mut |b| {
            if outs.len() <= n_out {
                outs.push(Vec::new());
            }
            outs[n_out].clear();
            outs[n_out].extend_from_slice(b);
            n_out += 1;
        });
        let mut ok = 0;
        match res {
            Ok(_) => {
                for o in outs.iter().take(n_out) {
                    ok += self.count(ep.receive_quiet(ring_hint, &Frame::Bytes(o)));
                }
            }
            Err(e) => {
                log::debug!("{}: header conversion failed: {e}", self.name);
                self.stats.conversion_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        *out = outs;
        ok.min(1)
    }

    fn count(&self, accepted: bool) -> usize {
        if !accepted {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        accepted as usize
    }
}
