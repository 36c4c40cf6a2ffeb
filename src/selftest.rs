//! The zero-copy self test: N frames out through TX ring 0 and back in on the first RX ring,
//! through a port that reflects every frame (ptnet-host's reflector port, the model's
//! `model::port::Reflector` backend) or through a VALE-like switch with a reflect endpoint on
//! it (`ptnet-host --backend switch --reflect`, `model::apps::Reflect`). Generic over
//! [`Platform`]: the same test runs on Redox, in a Linux guest and against the model.
//!
//! Frames go from the NIC's MAC address to [`PEER_MAC`], the reflect endpoint's: a reflector
//! port returns them as they are, a reflect endpoint with the addresses swapped, and a switch
//! delivers the answer to this port alone once it has learnt both addresses (the first frames
//! are flooded to every port). A frame counts as ours when it is a test frame and one of its
//! two addresses is the NIC's; anything else that arrives (a host source's broadcasts, another
//! VM's test frames flooded before learning) is *foreign*: counted, released, and no reason to
//! fail.
//!
//! The test is a netmap application on the driver's rings (netmap mode, spec §7.5, §8.2–8.3): it
//! writes frames straight into the netmap buffers of TX slots `[head, tail)` and publishes them
//! with [`Ptnet::txsync`], reads RX slots `[head, tail)` in place and releases them with
//! [`Ptnet::rxsync`]. No copy path, no intermediate buffers on the TX side.
//!
//! Frames are the project's test frames ([`crate::frame`]: UDP, sequence number, checksum);
//! their sizes ([`frame_len`]) are mixed, and every eighth frame is longer than a buffer so it
//! spans several slots chained with `NS_MOREFRAG`. At most half the RX ring's slots are in
//! flight, so a reflector that drops when its RX ring is full loses nothing. The run ends when
//! every frame came back or at the deadline; then one line is logged:
//!
//! ```text
//! ptnetd: selftest PASS sent=N received=N corrupt=0 misordered=0 duplicate=0 lost=0 ...
//! ptnetd: selftest FAIL sent=N received=M corrupt=… lost=… timeout …
//! ```

use crate::abi::netmap::{FIRST_BUF_IDX, NETMAP_MAX_FRAGS, NS_MOREFRAG};
use crate::driver::{DriverError, Ptnet};
use crate::frame::{self, Check, PEER_MAC};
use crate::nm::Slot;
use crate::platform::Platform;
use crate::ring;
use crate::shm::{Region, ShmError};
use core::fmt;
use std::time::Duration;

/// Shortest frame (Ethernet minimum without FCS).
pub const MIN_FRAME_LEN: usize = frame::MIN_LEN;
/// Longest frame (a jumbo frame).
pub const MAX_FRAME_LEN: usize = 9000;
/// Most frames one run may send (the duplicate detector keeps one bit per frame).
pub const MAX_FRAMES: u64 = 100_000_000;
/// How many bad frames are described individually at debug level.
const LOG_LIMIT: u64 = 10;

/// Errors that stop a run early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelftestError {
    /// A sync failed (bad user indices are a bug here; bad host indices a host fault).
    Driver(DriverError),
    /// A buffer access failed.
    Shm(ShmError),
    /// The host put a buffer index outside the pool into a TX slot.
    BadTxSlot {
        /// Slot index.
        slot: u32,
        /// Buffer index found.
        buf_idx: u32,
    },
    /// The device cannot carry test frames (too few slots, too small buffers, no RX ring).
    Geometry(String),
}

impl fmt::Display for SelftestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver(e) => write!(f, "{e}"),
            Self::Shm(e) => write!(f, "{e}"),
            Self::BadTxSlot { slot, buf_idx } => write!(f, "tx slot {slot} holds buffer {buf_idx}"),
            Self::Geometry(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for SelftestError {}

impl From<DriverError> for SelftestError {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

impl From<ShmError> for SelftestError {
    fn from(e: ShmError) -> Self {
        Self::Shm(e)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelftestReport {
    /// Frames asked for.
    pub requested: u64,
    /// Frames published on TX.
    pub sent: u64,
    /// Frames of ours that came back (intact or not).
    pub received: u64,
    /// Frames of ours that came back damaged (checksum, length, bad slot, chain too long).
    pub corrupt: u64,
    /// Intact frames that arrived after a later one (late, not duplicated).
    pub misordered: u64,
    /// Intact frames that arrived a second time.
    pub duplicates: u64,
    /// Frames sent that never came back intact.
    pub lost: u64,
    /// Frames that are not ours: not test frames, or test frames addressed neither to nor from
    /// this NIC (counted and released, not a failure).
    pub foreign: u64,
    /// Frames sent that spanned several slots (`NS_MOREFRAG`).
    pub multi_slot: u64,
    /// Bytes sent (frames, without virtio-net headers).
    pub bytes: u64,
    /// Duration of the run.
    pub elapsed: Duration,
    /// The deadline passed before every frame came back.
    pub timed_out: bool,
    /// What stopped the run early.
    pub error: Option<SelftestError>,
}

impl SelftestReport {
    /// Every frame sent, received once, intact and in order; no error.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.sent == self.requested
            && self.received == self.requested
            && self.corrupt == 0
            && self.misordered == 0
            && self.duplicates == 0
            && self.lost == 0
    }
}

impl fmt::Display for SelftestReport {
    /// `selftest PASS sent=… received=… corrupt=… misordered=… duplicate=… lost=… foreign=…
    /// multislot=… bytes=… elapsed=…s rate=…pps`, then `timeout` and `error=…` when they apply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { self.received as f64 / secs } else { 0.0 };
        write!(
            f,
            "selftest {} sent={} received={} corrupt={} misordered={} duplicate={} lost={} \
             foreign={} multislot={} bytes={} elapsed={secs:.3}s rate={rate:.0}pps",
            if self.passed() { "PASS" } else { "FAIL" },
            self.sent,
            self.received,
            self.corrupt,
            self.misordered,
            self.duplicates,
            self.lost,
            self.foreign,
            self.multi_slot,
            self.bytes,
        )?;
        if self.sent < self.requested {
            write!(f, " requested={}", self.requested)?;
        }
        if self.timed_out {
            write!(f, " timeout")?;
        }
        if let Some(e) = &self.error {
            write!(f, " error=\"{e}\"")?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Frames (pure)

/// Length of frame `seq` (without virtio-net header): every eighth frame (`seq % 8 == 3`) is
/// longer than `buf_size` when `max_len` allows it (several slots); the others are
/// 60..=min(1514, `max_len`) bytes. `max_len` must be at least [`MIN_FRAME_LEN`].
pub fn frame_len(seq: u64, max_len: usize, buf_size: usize) -> usize {
    let h = (seq.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize;
    let max_len = max_len.clamp(MIN_FRAME_LEN, MAX_FRAME_LEN);
    if seq % 8 == 3 && max_len > buf_size.max(MIN_FRAME_LEN) {
        let lo = buf_size.max(MIN_FRAME_LEN) + 1;
        lo + h % (max_len - lo + 1)
    } else {
        let hi = max_len.min(1514);
        MIN_FRAME_LEN + h % (hi - MIN_FRAME_LEN + 1)
    }
}

/// Checks a received frame (virtio-net header stripped) as [`frame::check`] does, and also
/// that its length is the one [`frame_len`] gives its sequence number.
pub fn check_frame(f: &[u8], max_len: usize, buf_size: usize) -> Check {
    match frame::check(f) {
        Check::Ok(seq) if f.len() != frame_len(seq, max_len, buf_size) => Check::Corrupt,
        c => c,
    }
}

/// `true` if the frame (virtio-net header stripped) is a test frame whose destination or
/// source is `mac`: one this NIC sent, reflected as it was or with the addresses swapped. Its
/// integrity is [`check_frame`]'s business.
pub fn is_ours(f: &[u8], mac: [u8; 6]) -> bool {
    frame::is_test_frame(f) && (f[..6] == mac || f[6..12] == mac)
}

// ------------------------------------------------------------------------------------------
// The run

/// Ring geometry and buffer pool, read once from the driver.
struct Geometry {
    tx: u32,
    rx: u32,
    buf_size: usize,
    hdr_len: usize,
    buf_num: u32,
    pool_ofs: usize,
    max_len: usize,
    window: u32,
    mac: [u8; 6],
}

impl Geometry {
    fn of<P: Platform>(drv: &Ptnet<P>) -> Result<Self, SelftestError> {
        let info = drv.info();
        let geometry = |s: String| SelftestError::Geometry(s);
        let rx = info.tx_rings;
        let rx_ring =
            drv.ring(rx).filter(|r| !r.tx).ok_or_else(|| geometry("no rx ring".into()))?;
        let tx_ring = drv.ring(0).filter(|r| r.tx).ok_or_else(|| geometry("no tx ring".into()))?;
        let (tn, rn) = (tx_ring.num_slots(), rx_ring.num_slots());
        let buf_size = info.buf_size as usize;
        let hdr_len = info.vnet_hdr_len as usize;
        let max_slots = (NETMAP_MAX_FRAGS as u32).min(tn / 4).min(rn / 4).max(1) as usize;
        let max_len = (buf_size * max_slots).saturating_sub(hdr_len).min(MAX_FRAME_LEN);
        if max_len < MIN_FRAME_LEN {
            return Err(geometry(format!(
                "{buf_size}-byte buffers, {tn}/{rn} slots: no room for a {MIN_FRAME_LEN}-byte frame"
            )));
        }
        let most = (hdr_len + max_len).div_ceil(buf_size) as u32;
        Ok(Self {
            tx: 0,
            rx,
            buf_size,
            hdr_len,
            buf_num: info.buf_num,
            pool_ofs: info.buf_pool_ofs as usize,
            max_len,
            window: (rn / 2).max(most),
            mac: info.mac,
        })
    }

    /// Offset of buffer `idx` in the region, if it is a buffer of the pool.
    fn buf_off(&self, idx: u32) -> Option<usize> {
        (FIRST_BUF_IDX..self.buf_num)
            .contains(&idx)
            .then(|| self.pool_ofs + idx as usize * self.buf_size)
    }
}

/// State of a run.
struct Run {
    g: Geometry,
    n: u64,
    rep: SelftestReport,
    /// Slots of frames sent and not yet back.
    in_flight: u32,
    /// One bit per sequence number seen intact.
    seen: Vec<u64>,
    unique: u64,
    next_seq: u64,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    logged: u64,
}

impl Run {
    fn new(g: Geometry, n: u64) -> Self {
        Self {
            g,
            n,
            rep: SelftestReport { requested: n, ..Default::default() },
            in_flight: 0,
            seen: vec![0; n.div_ceil(64) as usize],
            unique: 0,
            next_seq: 0,
            tx_buf: Vec::with_capacity(MAX_FRAME_LEN + 64),
            rx_buf: Vec::with_capacity(MAX_FRAME_LEN + 64),
            logged: 0,
        }
    }

    fn done(&self) -> bool {
        self.rep.sent == self.n && (self.unique == self.n || self.rep.received >= self.n)
    }

    /// Fills free TX slots with whole frames (within the in-flight window) and publishes them.
    /// When the next frame does not fit, syncs with `cur = tail` to learn about freed slots
    /// (and re-arm the TX interrupt). Returns `true` if frames were published or the tail
    /// moved (so the caller retries before waiting).
    fn transmit<P: Platform>(&mut self, drv: &mut Ptnet<P>) -> Result<bool, SelftestError> {
        let g = &self.g;
        let r = drv.ring(g.tx).ok_or(DriverError::NoRing(g.tx))?;
        let (rhead, rtail, n) = (r.k.rhead, r.k.rtail, r.num_slots());
        let view = r.view.clone();
        let region: Region = drv.region().clone();
        let (mut head, mut filled, mut no_space) = (rhead, 0u64, false);
        while self.rep.sent < self.n {
            let seq = self.rep.sent;
            let len = frame_len(seq, g.max_len, g.buf_size);
            let total = g.hdr_len + len;
            let need = total.div_ceil(g.buf_size) as u32;
            if self.in_flight + need > g.window {
                break;
            }
            if ring::space(head, rtail, n) < need {
                no_space = true;
                break;
            }
            self.tx_buf.clear();
            self.tx_buf.resize(g.hdr_len, 0); // a virtio-net header asking for no offload
            frame::write(&mut self.tx_buf, PEER_MAC, g.mac, seq, len);
            let mut h = head;
            for (k, chunk) in self.tx_buf.chunks(g.buf_size).enumerate() {
                let s = view.slot(h);
                let off = g
                    .buf_off(s.buf_idx)
                    .ok_or(SelftestError::BadTxSlot { slot: h, buf_idx: s.buf_idx })?;
                region.write_bytes(off, chunk)?;
                let flags = if (k as u32) + 1 < need { NS_MOREFRAG } else { 0 };
                view.set_slot(h, Slot { buf_idx: s.buf_idx, len: chunk.len() as u16, flags });
                h = ring::next(h, n);
            }
            head = h;
            self.in_flight += need;
            self.rep.sent += 1;
            self.rep.bytes += len as u64;
            self.rep.multi_slot += (need > 1) as u64;
            filled += 1;
        }
        if filled == 0 && !no_space {
            return Ok(false);
        }
        drv.txsync(g.tx, head, if no_space { rtail } else { head }, 0)?;
        let new_tail = drv.ring(g.tx).map_or(rtail, |r| r.k.rtail);
        Ok(filled > 0 || new_tail != rtail)
    }

    /// Reads the complete frames in RX slots `[head, tail)`, releases them, and syncs (which
    /// also fetches new ones and, when none are left, re-arms the RX interrupt). An incomplete
    /// chain at the tail stays for the next pass (E5). Returns `true` if slots were released or
    /// new ones arrived (so the caller retries before waiting).
    fn receive<P: Platform>(&mut self, drv: &mut Ptnet<P>) -> Result<bool, SelftestError> {
        let rx = self.g.rx;
        let r = drv.ring(rx).ok_or(DriverError::NoRing(rx))?;
        let (rhead, rtail, n) = (r.k.rhead, r.k.rtail, r.num_slots());
        let view = r.view.clone();
        let region: Region = drv.region().clone();
        let (mut head, mut h) = (rhead, rhead);
        let (mut slots, mut bad) = (0u32, false);
        self.rx_buf.clear();
        while h != rtail {
            let s = view.slot(h);
            h = ring::next(h, n);
            slots += 1;
            match self.g.buf_off(s.buf_idx).filter(|_| s.len as usize <= self.g.buf_size) {
                Some(off) if !bad => {
                    let at = self.rx_buf.len();
                    self.rx_buf.resize(at + s.len as usize, 0);
                    region.read_bytes(off, &mut self.rx_buf[at..])?;
                }
                Some(_) => {}
                None => bad = true,
            }
            if s.flags & NS_MOREFRAG != 0 && (slots as usize) < NETMAP_MAX_FRAGS {
                continue;
            }
            bad |= s.flags & NS_MOREFRAG != 0; // a chain longer than netmap allows
            self.account(bad, slots);
            head = h;
            (slots, bad) = (0, false);
            self.rx_buf.clear();
        }
        let cur = if head == rtail { head } else { rtail };
        drv.rxsync(rx, head, cur, 0)?;
        let new_tail = drv.ring(rx).map_or(rtail, |r| r.k.rtail);
        Ok(head != rhead || new_tail != rtail)
    }

    /// Counts one received frame (`rx_buf`, `slots` slots long).
    fn account(&mut self, bad_slot: bool, slots: u32) {
        let hl = self.g.hdr_len;
        let check = match self.rx_buf.get(hl..) {
            _ if bad_slot => Check::Corrupt,
            Some(body) if !is_ours(body, self.g.mac) => Check::Foreign,
            Some(body) => check_frame(body, self.g.max_len, self.g.buf_size),
            None => Check::Foreign,
        };
        if check == Check::Foreign {
            self.rep.foreign += 1;
            return;
        }
        self.rep.received += 1;
        self.in_flight = self.in_flight.saturating_sub(slots);
        let seq = match check {
            Check::Ok(seq) if seq < self.n => seq,
            _ => {
                self.rep.corrupt += 1;
                self.note(format_args!("corrupt frame of {} bytes", self.rx_buf.len()));
                return;
            }
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.rep.duplicates += 1;
            self.note(format_args!("frame {seq} again"));
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if seq < self.next_seq {
            self.rep.misordered += 1;
            self.note(format_args!("frame {seq} after frame {}", self.next_seq - 1));
        }
        self.next_seq = self.next_seq.max(seq + 1);
    }

    fn note(&mut self, what: fmt::Arguments<'_>) {
        if self.logged < LOG_LIMIT {
            self.logged += 1;
            log::debug!("selftest: {what}");
        }
    }
}

/// Sends `n` test frames through TX ring 0 of `drv` in netmap mode and expects each back on the
/// first RX ring (the port must reflect them), for at most `timeout`. Logs one line
/// (`ptnetd: selftest PASS …` at info, or `ptnetd: selftest FAIL …` at error) and returns the
/// report. `n` above [`MAX_FRAMES`] fails at once.
pub fn run<P: Platform>(drv: &mut Ptnet<P>, plat: &P, n: u64, timeout: Duration) -> SelftestReport {
    let t0 = plat.now();
    let deadline = t0 + timeout;
    let mut rep = if n > MAX_FRAMES {
        SelftestReport {
            requested: n,
            error: Some(SelftestError::Geometry(format!("more than {MAX_FRAMES} frames"))),
            ..Default::default()
        }
    } else {
        match Geometry::of(drv) {
            Ok(g) => {
                let mut st = Run::new(g, n);
                if let Err(e) = drive(&mut st, drv, plat, deadline) {
                    st.rep.error = Some(e);
                }
                st.rep.lost = st.rep.sent - st.unique.min(st.rep.sent);
                st.rep
            }
            Err(e) => SelftestReport { requested: n, error: Some(e), ..Default::default() },
        }
    };
    rep.elapsed = plat.now().saturating_sub(t0);
    if rep.passed() {
        log::info!("ptnetd: {rep}");
    } else {
        log::error!("ptnetd: {rep}");
    }
    rep
}

fn drive<P: Platform>(
    st: &mut Run,
    drv: &mut Ptnet<P>,
    plat: &P,
    deadline: Duration,
) -> Result<(), SelftestError> {
    loop {
        if st.done() {
            return Ok(());
        }
        let now = plat.now();
        if now >= deadline {
            st.rep.timed_out = true;
            return Ok(());
        }
        let sent = st.transmit(drv)?;
        let received = st.receive(drv)?;
        if !sent && !received {
            drv.wait_work(plat, deadline.saturating_sub(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn frames_of_the_wrong_length_are_corrupt() {
        for seq in 0..2000u64 {
            let len = frame_len(seq, 9000, 2048);
            assert!((60..=9000).contains(&len), "{seq}: {len}");
            assert_eq!(len > 2048, seq % 8 == 3, "every eighth frame spans several slots");
            let f = frame::build(PEER_MAC, MAC, seq, len);
            assert_eq!(check_frame(&f, 9000, 2048), Check::Ok(seq));
        }
        let mut f = frame::build(PEER_MAC, MAC, 7, frame_len(7, 9000, 2048) + 1);
        assert_eq!(frame::check(&f), Check::Ok(7), "intact, but not the length of frame 7");
        assert_eq!(check_frame(&f, 9000, 2048), Check::Corrupt);
        f.truncate(20);
        assert_eq!(check_frame(&f, 9000, 2048), Check::Foreign);
    }

    #[test]
    fn our_frames_are_to_or_from_our_mac() {
        let f = frame::build(PEER_MAC, MAC, 5, 100);
        assert!(is_ours(&f, MAC), "as sent (a reflector port returns it unchanged)");
        let mut swapped = f.clone();
        swapped[..6].copy_from_slice(&MAC);
        swapped[6..12].copy_from_slice(&PEER_MAC);
        assert!(is_ours(&swapped, MAC), "addresses swapped by a reflect endpoint");
        let other_vm = [2, 0, 0, 0, 0, 9];
        let f = frame::build(PEER_MAC, other_vm, 5, 100);
        assert!(!is_ours(&f, MAC), "another VM's test frame, flooded before learning");
        let mut bcast = vec![0xff; 6];
        bcast.extend_from_slice(&MAC);
        bcast.extend_from_slice(&[0x08, 0x00]);
        bcast.resize(60, 0);
        assert!(!is_ours(&bcast, MAC), "not a test frame, even from our address");
        assert!(!is_ours(&f[..20], other_vm), "too short");
    }

    #[test]
    fn frame_lengths_respect_the_geometry() {
        for seq in 0..500 {
            assert!(frame_len(seq, 60, 2048) == 60);
            let l = frame_len(seq, 1000, 512);
            assert!((60..=1000).contains(&l));
            assert!(seq % 8 != 3 || l > 512, "multi-slot when the buffers are small too");
            assert!(frame_len(seq, 4096, 2048) <= 4096);
        }
        // Buffers smaller than the minimum frame: every frame is multi-slot anyway.
        assert!(frame_len(3, 9000, 32) > 60);
    }

    #[test]
    fn report_line() {
        let mut r = SelftestReport { requested: 3, sent: 3, received: 3, ..Default::default() };
        r.elapsed = Duration::from_millis(1500);
        assert!(r.passed());
        let s = r.to_string();
        assert!(s.starts_with("selftest PASS sent=3 received=3 corrupt=0 misordered=0"), "{s}");
        assert!(s.contains(" lost=0 ") && s.contains("elapsed=1.500s rate=2pps"), "{s}");
        r.lost = 1;
        r.received = 2;
        r.timed_out = true;
        let s = r.to_string();
        assert!(s.starts_with("selftest FAIL sent=3 received=2"), "{s}");
        assert!(s.ends_with(" timeout"), "{s}");
        r = SelftestReport { requested: 3, sent: 3, received: 3, ..Default::default() };
        r.error = Some(SelftestError::BadTxSlot { slot: 1, buf_idx: 0 });
        assert!(!r.passed());
        assert!(r.to_string().ends_with("pps error=\"tx slot 1 holds buffer 0\""), "{r}");
        let setters: [fn(&mut SelftestReport); 3] =
            [|r| r.corrupt = 1, |r| r.misordered = 1, |r| r.duplicates = 1];
        for field in setters {
            let mut r = SelftestReport { requested: 1, sent: 1, received: 1, ..Default::default() };
            field(&mut r);
            assert!(!r.passed());
        }
        assert!(SelftestReport::default().passed(), "zero frames asked, zero moved");
    }
}
