//! The main job (`cargo run --release`): the ptnetd driver core in two VMs of the embedded
//! hypervisor, moving verified traffic through the stack-mode copy path.
//!
//! ```text
//!  VM1 (sender)                                                  VM2 (receiver)
//!  ptnetd driver ── ptnet ── port vm1 ── switch vale0 ── port vm2 ── ptnet ── ptnetd driver
//!     TX ring 0                        (learning, pcap tap on vm2)            RX ring 0
//! ```
//!
//! Each VM gets one ptnet NIC (one TX and one RX ring of [`DemoConfig::slots`] slots) on a port
//! of its own netmap region; both ports sit on one VALE-like [`Switch`]. The two NICs differ as
//! two NICs on one network must: VM1's is 52:54:00:12:34:56 at PCI 00:03.0, VM2's
//! 52:54:00:12:34:57 at 00:04.0 (as `ptnet-host` numbers its VMs). Both are brought up by the
//! driver core ([`Ptnet`] on the [`crate::platform::sim`] platform, §6), the only tie between
//! this job's guests and the model. VM2 first announces itself with one broadcast frame; VM1
//! takes its address from it (so the switch has learnt both when the traffic starts) and sends
//! [`DemoConfig::frames`] test frames ([`crate::frame`]: UDP, sequence number, checksum) of
//! mixed sizes ([`frame_len`]: mostly 60..=1514 bytes, one in 16 a jumbo of up to 9000 bytes
//! spanning several slots with `NS_MOREFRAG`) through the copy path (`send`/`recv`, §8.5); VM2
//! checks every one.
//!
//! A VALE switch drops frames when the destination ring is full, so the sender keeps at most
//! about 30% of the RX ring in flight (the host's view of released RX slots lags the guest's by
//! up to one burst). Any drop, loss, corruption, reordering or flooding after the announcement
//! shows up in the [`DemoReport`]; a run that makes no progress for
//! [`DemoConfig::stall_timeout`] stops and reports what it got.

use super::embedded::{own_port, vm_on_port, EmbeddedError, NicPlace};
use crate::driver::copy::CopyError;
use crate::driver::{DriverConfig, DriverError, Ptnet};
use crate::frame::{self, mac_string, Check};
use crate::model::pcap::{PcapTap, PcapTapError};
use crate::model::port::NmPort;
use crate::model::ptnet::PtnetDevice;
use crate::model::switch::Switch;
use crate::platform::sim::SimPlatform;
use core::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames sent by default.
pub const DEFAULT_FRAMES: u64 = 200_000;
/// Slots per ring by default.
pub const DEFAULT_SLOTS: u32 = 1024;
/// Accepted ring sizes: at least 32 so that a jumbo frame (5 slots) fits the in-flight budget,
/// at most 16384 (64 MiB of buffers per region).
pub const SLOTS_RANGE: RangeInclusive<u32> = 32..=16384;
/// Largest frame [`frame_len`] returns.
pub const MAX_FRAME_LEN: usize = 9000;

/// VM1's NIC (the sender): MAC address and PCI slot.
pub const VM1: NicPlace = NicPlace { mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]), slot: Some(3) };
/// VM2's NIC (the receiver): MAC address and PCI slot.
pub const VM2: NicPlace = NicPlace { mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x57]), slot: Some(4) };
/// How many loss/corruption events are logged individually.
const LOG_LIMIT: u64 = 10;

/// Length of frame `seq`: mostly 60..=1514 bytes, one in 16 a jumbo of 1515..=9000 bytes
/// (deterministic, the same sequence as `tests/traffic.rs`).
pub fn frame_len(seq: u64) -> usize {
    let h = seq.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
    if h.is_multiple_of(16) {
        1515 + (h as usize >> 4) % (MAX_FRAME_LEN - 1515 + 1)
    } else {
        60 + (h as usize >> 4) % (1514 - 60 + 1)
    }
}

/// Checks a received frame: an intact test frame ([`frame::check`]) of the length
/// [`frame_len`] gives its sequence number; returns the sequence number.
pub fn check_demo_frame(f: &[u8]) -> Option<u64> {
    frame::check(f).seq().filter(|&seq| f.len() == frame_len(seq))
}

/// Errors that stop the main job.
#[derive(Debug)]
pub enum DemoError {
    /// A setting is out of range.
    BadConfig {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// A model VM could not be built.
    Testbed(EmbeddedError),
    /// The pcap tap failed.
    Pcap(PcapTapError),
    /// The driver core failed.
    Driver(DriverError),
    /// The driver's copy path failed.
    Copy(CopyError),
    /// VM1 did not receive VM2's announcement within the stall timeout.
    NoAnnouncement,
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig { field, value } => write!(f, "{field} = {value} is out of range"),
            Self::Testbed(e) => write!(f, "model vm: {e}"),
            Self::Pcap(e) => write!(f, "pcap: {e}"),
            Self::Driver(e) => write!(f, "driver: {e}"),
            Self::Copy(e) => write!(f, "driver: {e}"),
            Self::NoAnnouncement => write!(f, "vm1 never heard vm2's announcement"),
        }
    }
}

impl std::error::Error for DemoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Testbed(e) => Some(e),
            Self::Pcap(e) => Some(e),
            Self::Driver(e) => Some(e),
            Self::Copy(e) => Some(e),
            Self::BadConfig { .. } | Self::NoAnnouncement => None,
        }
    }
}

impl From<EmbeddedError> for DemoError {
    fn from(e: EmbeddedError) -> Self {
        Self::Testbed(e)
    }
}

impl From<PcapTapError> for DemoError {
    fn from(e: PcapTapError) -> Self {
        Self::Pcap(e)
    }
}

impl From<DriverError> for DemoError {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

impl From<CopyError> for DemoError {
    fn from(e: CopyError) -> Self {
        Self::Copy(e)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Frames to send (at least 1).
    pub frames: u64,
    /// Slots per ring ([`SLOTS_RANGE`]).
    pub slots: u32,
    /// Record the receiving port into this pcap file.
    pub pcap: Option<PathBuf>,
    /// Give up after this long without a received frame.
    pub stall_timeout: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            frames: DEFAULT_FRAMES,
            slots: DEFAULT_SLOTS,
            pcap: None,
            stall_timeout: Duration::from_secs(10),
        }
    }
}

impl DemoConfig {
    /// Checks the ranges; [`DemoError::BadConfig`] names the first bad setting.
    pub fn validate(&self) -> Result<(), DemoError> {
        if self.frames == 0 {
            return Err(DemoError::BadConfig { field: "frames", value: 0 });
        }
        if !SLOTS_RANGE.contains(&self.slots) {
            return Err(DemoError::BadConfig { field: "slots", value: self.slots as u64 });
        }
        Ok(())
    }
}

/// One NIC of the run: who it is and its device counters, summed over its rings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideReport {
    /// PCI name the driver found it under.
    pub name: String,
    /// MAC address the driver read.
    pub mac: [u8; 6],
    /// The switch has learnt `mac` on this NIC's port.
    pub learnt: bool,
    /// Kicks the host received.
    pub kicks: u64,
    /// Interrupts the host raised.
    pub interrupts: u64,
    /// Ring reinitialisations (the host found invalid guest indices, §7.5).
    pub reinits: u64,
    /// Packets the host moved on this NIC's rings.
    pub packets: u64,
}

impl SideReport {
    fn of(nic: &Nic, sw: &Switch) -> Self {
        let port = nic.dev.port();
        let n = port.num_tx_rings() + port.num_rx_rings();
        let info = nic.drv.info();
        let learnt = sw.lookup(&info.mac) == Some(nic.switch_port);
        let base = Self { name: info.name.clone(), mac: info.mac, learnt, ..Self::default() };
        (0..n).filter_map(|i| nic.dev.counters(i)).fold(base, |s, c| Self {
            kicks: s.kicks + c.kicks,
            interrupts: s.interrupts + c.interrupts,
            reinits: s.reinits + c.reinits,
            packets: s.packets + c.packets,
            ..s
        })
    }
}

/// The pcap file of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapReport {
    /// Where it is.
    pub path: PathBuf,
    /// Frames recorded.
    pub frames: u64,
    /// Frames the tap could not record.
    pub dropped: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReport {
    /// Frames asked for.
    pub frames_wanted: u64,
    /// Frames the sender put on its TX ring.
    pub frames_sent: u64,
    /// Frames received intact (sequence, length and checksum).
    pub frames: u64,
    /// Bytes of those frames (Ethernet header to end of payload).
    pub bytes: u64,
    /// From the first frame sent to the last one received.
    pub elapsed: Duration,
    /// Sequence numbers that never arrived intact (includes corrupted frames).
    pub lost: u64,
    /// Frames that failed the checks.
    pub corrupt: u64,
    /// Intact frames that came late or twice (their number was already passed).
    pub misordered: u64,
    /// Frames dropped inside the hypervisor: by the switch (destination full, bad slot,
    /// header conversion) or by the sending port (bad TX slot).
    pub drops: u64,
    /// The run stopped because nothing arrived for the stall timeout.
    pub stalled: bool,
    /// Ring size used.
    pub slots: u32,
    /// VM1's NIC (the sender).
    pub sender: SideReport,
    /// VM2's NIC (the receiver).
    pub receiver: SideReport,
    /// Frames the switch flooded (VM2's announcement only, in a clean run).
    pub flooded: u64,
    /// Frames the switch sent to a learnt destination.
    pub unicast: u64,
    /// The pcap file, if one was written.
    pub pcap: Option<PcapReport>,
}

impl DemoReport {
    /// Millions of frames per second.
    pub fn mpps(&self) -> f64 {
        self.frames as f64 / self.secs() / 1e6
    }

    /// Gigabits per second of frame bytes.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs() / 1e9
    }

    /// `count` per received frame.
    pub fn per_packet(&self, count: u64) -> f64 {
        count as f64 / self.frames.max(1) as f64
    }

    /// Ring reinitialisations on both NICs.
    pub fn reinits(&self) -> u64 {
        self.sender.reinits + self.receiver.reinits
    }

    /// The two NICs differ (MAC and PCI address) and the switch learnt each on its own port.
    pub fn learnt_apart(&self) -> bool {
        let (s, r) = (&self.sender, &self.receiver);
        s.learnt && r.learnt && s.mac != r.mac && s.name != r.name
    }

    /// `true` if every frame arrived intact, in order, once, with nothing dropped anywhere, and
    /// the switch learnt both NICs apart and flooded nothing but VM2's announcement.
    pub fn is_clean(&self) -> bool {
        self.learnt_apart()
            && self.flooded == 1
            && self.unicast == self.frames_sent
            && self.frames == self.frames_wanted
            && self.lost == 0
            && self.corrupt == 0
            && self.misordered == 0
            && self.drops == 0
            && !self.stalled
            && self.reinits() == 0
            && self.pcap.as_ref().is_none_or(|p| p.dropped == 0)
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &SideReport| {
            format!(
                "{} at {}{}, kicks {} ({:.4}/pkt), interrupts {} ({:.4}/pkt)",
                mac_string(s.mac),
                s.name,
                if s.learnt { "" } else { " (not learnt)" },
                s.kicks,
                self.per_packet(s.kicks),
                s.interrupts,
                self.per_packet(s.interrupts)
            )
        };
        writeln!(
            f,
            "path       vm1 -> ptnet -> port vm1 -> vale0 -> port vm2 -> ptnet -> vm2, {} slots",
            self.slots
        )?;
        writeln!(
            f,
            "frames     {} received intact of {} sent ({} wanted)",
            self.frames, self.frames_sent, self.frames_wanted
        )?;
        writeln!(
            f,
            "bytes      {} (mean {} per frame)",
            self.bytes,
            self.bytes / self.frames.max(1)
        )?;
        writeln!(f, "elapsed    {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "rate       {:.3} Mpps, {:.2} Gbit/s", self.mpps(), self.gbps())?;
        writeln!(f, "sender     {}", side(&self.sender))?;
        writeln!(f, "receiver   {}", side(&self.receiver))?;
        writeln!(
            f,
            "switch     {} unicast, {} flooded, {}",
            self.unicast,
            self.flooded,
            if self.learnt_apart() { "both NICs learnt apart" } else { "NICs NOT learnt apart" }
        )?;
        writeln!(f, "drops      {}", self.drops)?;
        writeln!(
            f,
            "lost       {} (corrupt {}, misordered {}{})",
            self.lost,
            self.corrupt,
            self.misordered,
            if self.stalled { ", stalled" } else { "" }
        )?;
        writeln!(f, "reinits    {}", self.reinits())?;
        if let Some(p) = &self.pcap {
            writeln!(
                f,
                "pcap       {}: {} frames, {} dropped",
                p.path.display(),
                p.frames,
                p.dropped
            )?;
        }
        write!(f, "result     {}", if self.is_clean() { "ok" } else { "FAILED" })
    }
}

/// One guest: its NIC, the platform and the driver bound to it.
struct Nic {
    dev: Arc<PtnetDevice>,
    port: Arc<NmPort>,
    switch_port: usize,
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
}

impl Nic {
    /// A VM named `name` with its NIC placed as `place` on a new port of `sw`, the driver
    /// attached.
    fn attach(
        sw: &Arc<Switch>,
        name: &str,
        place: NicPlace,
        slots: u32,
    ) -> Result<Self, DemoError> {
        let port = own_port(name, slots)?;
        let switch_port = sw.attach_port(&port);
        let (dev, mut plat) = vm_on_port(port.clone(), place)?;
        let drv = Ptnet::attach(&mut plat, DriverConfig::default())?;
        Ok(Self { dev, port, switch_port, plat, drv })
    }

    /// The first RX ring.
    fn rx_ring(&self) -> u32 {
        self.drv.info().tx_rings
    }
}

/// The hypervisor of the run and its two guests.
struct Testbed {
    sw: Arc<Switch>,
    tap: Option<Arc<PcapTap>>,
    g1: Nic,
    g2: Nic,
}

impl Testbed {
    fn build(cfg: &DemoConfig) -> Result<Self, DemoError> {
        let sw = Switch::new("vale0");
        let g1 = Nic::attach(&sw, "vm1", VM1, cfg.slots)?;
        let g2 = Nic::attach(&sw, "vm2", VM2, cfg.slots)?;
        Ok(Self { sw, tap: None, g1, g2 })
    }

    /// Records VM2's port into a pcap file at `path` from now on.
    fn tap(&mut self, path: &std::path::Path) -> Result<(), DemoError> {
        let t = Arc::new(PcapTap::create(path)?);
        self.g2.port.set_tap(Some(t.clone()));
        self.tap = Some(t);
        Ok(())
    }

    /// VM2 broadcasts one test frame (sequence number 0) from its address; VM1 waits for it
    /// (at most `timeout`) and returns the address it came from: VM2's, now learnt by the
    /// switch too.
    fn announce(&mut self, timeout: Duration) -> Result<[u8; 6], DemoError> {
        let hello = frame::build([0xff; 6], self.g2.drv.info().mac, 0, frame::MIN_LEN);
        self.g2.drv.send(0, &hello, None)?;
        self.g2.drv.flush_tx(0)?;
        let (rx, mut buf) = (self.g1.rx_ring(), vec![0u8; 2048]);
        let t0 = Instant::now();
        let mut peer = None;
        while peer.is_none() && t0.elapsed() < timeout {
            while let Some(r) = self.g1.drv.recv(rx, &mut buf)? {
                let f = &buf[..r.len];
                if frame::check(f) == Check::Ok(0) && f[..6] == [0xff; 6] {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&f[6..12]);
                    peer = Some(mac);
                }
            }
            self.g1.drv.flush_rx(rx)?;
            if peer.is_none() {
                self.g1.drv.wait_work(&self.g1.plat, Duration::from_millis(1));
            }
        }
        self.g2.drv.take_interrupts(false);
        peer.ok_or(DemoError::NoAnnouncement)
    }

    /// Frames dropped inside the hypervisor (see [`DemoReport::drops`]). Deliveries into VM2's
    /// ring that fail are counted by the switch (and again by the port), so only the switch's
    /// count is taken for them.
    fn drops(&self) -> u64 {
        let s = &self.sw.stats;
        s.dropped.load(Ordering::Relaxed)
            + s.conversion_errors.load(Ordering::Relaxed)
            + self.g1.port.stats.tx_errors.load(Ordering::Relaxed)
    }
}

/// Receive-side bookkeeping.
#[derive(Default)]
struct Tally {
    sent: u64,
    next: u64,
    frames: u64,
    bytes: u64,
    lost: u64,
    corrupt: u64,
    misordered: u64,
    stalled: bool,
    in_flight: usize,
}

impl Tally {
    /// Accounts one received frame; `slots` gives the RX slots a frame length takes.
    fn take(&mut self, f: &[u8], total: u64, slots: impl Fn(usize) -> usize) {
        let Some(seq) = check_demo_frame(f) else {
            self.corrupt += 1;
            if self.corrupt <= LOG_LIMIT {
                log::warn!("demo: corrupt frame of {} bytes after {}", f.len(), self.next);
            }
            return; // its slots are released when the gap it leaves is accounted
        };
        if seq < self.next || seq >= total {
            self.misordered += 1;
            if self.misordered <= LOG_LIMIT {
                log::warn!("demo: frame {seq} arrived while expecting {}", self.next);
            }
            return;
        }
        if seq > self.next {
            if self.lost < LOG_LIMIT {
                log::warn!("demo: frames {}..{seq} lost", self.next);
            }
            self.lost += seq - self.next;
            for s in self.next..seq {
                self.in_flight = self.in_flight.saturating_sub(slots(frame_len(s)));
            }
        }
        self.in_flight = self.in_flight.saturating_sub(slots(f.len()));
        self.frames += 1;
        self.bytes += f.len() as u64;
        self.next = seq + 1;
    }
}

/// Sends and receives until every frame is accounted for or the run stalls.
fn pump(tb: &mut Testbed, cfg: &DemoConfig, dst: [u8; 6]) -> Result<(Tally, Duration), DemoError> {
    let total = cfg.frames;
    let src = tb.g1.drv.info().mac;
    let bsz = (tb.g2.drv.info().buf_size as usize).max(1);
    let slots = |len: usize| len.div_ceil(bsz);
    let rx_ring = tb.g2.rx_ring();
    // RX slots in flight: the host's view of released RX slots may lag a burst.
    let budget = ((cfg.slots as usize - 1) * 300 / 1024).max(slots(MAX_FRAME_LEN));
    let mut t = Tally::default();
    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    let mut rx = vec![0u8; 65536];
    let t0 = Instant::now();
    let mut last_progress = t0;
    while t.next < total {
        while t.sent < total {
            let len = frame_len(t.sent);
            if t.in_flight + slots(len) > budget {
                break;
            }
            frame.clear();
            frame::write(&mut frame, dst, src, t.sent, len);
            match tb.g1.drv.send(0, &frame, None) {
                Ok(()) => {}
                Err(CopyError::Full) => break,
                Err(e) => return Err(e.into()),
            }
            t.in_flight += slots(len);
            t.sent += 1;
        }
        tb.g1.drv.flush_tx(0)?;
        let mut got_any = false;
        loop {
            match tb.g2.drv.recv(rx_ring, &mut rx) {
                Ok(Some(r)) => {
                    t.take(&rx[..r.len], total, slots);
                    got_any = true;
                }
                Ok(None) => break,
                Err(
                    CopyError::BufferTooSmall { .. }
                    | CopyError::BadSlot(_)
                    | CopyError::TooLong(_),
                ) => {
                    t.corrupt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tb.g2.drv.flush_rx(rx_ring)?;
        if got_any {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= cfg.stall_timeout {
            log::warn!(
                "demo: no frame for {:?}, stopping at {}/{total}",
                cfg.stall_timeout,
                t.next
            );
            t.stalled = true;
            t.lost += total - t.next;
            break;
        } else {
            tb.g2.drv.wait_work(&tb.g2.plat, Duration::from_millis(1));
            tb.g1.drv.take_interrupts(false);
        }
    }
    Ok((t, t0.elapsed()))
}

/// Runs the job: builds the hypervisor, brings both NICs up, moves the frames and reports.
pub fn run(cfg: &DemoConfig) -> Result<DemoReport, DemoError> {
    cfg.validate()?;
    log::info!(
        "demo: {} frames of 60..={MAX_FRAME_LEN} bytes, vm1 -> vale0 -> vm2, {} slots per ring",
        cfg.frames,
        cfg.slots
    );
    let mut tb = Testbed::build(cfg)?;
    let dst = tb.announce(cfg.stall_timeout)?;
    log::info!("demo: vm1 heard vm2 at {}", mac_string(dst));
    if let Some(path) = &cfg.pcap {
        tb.tap(path)?;
    }
    let (t, elapsed) = pump(&mut tb, cfg, dst)?;
    // The host counts a TX walk's frames after the walk has delivered them, so the receiver
    // can be done before the sender's counters are: wait (bounded) for every frame put on the
    // TX ring, and the hello, to be counted.
    let deadline = Instant::now() + cfg.stall_timeout;
    while !t.stalled
        && SideReport::of(&tb.g1, &tb.sw).packets < t.sent + 1
        && Instant::now() < deadline
    {
        std::thread::yield_now();
    }
    let drops = tb.drops();
    let (sender, receiver) = (SideReport::of(&tb.g1, &tb.sw), SideReport::of(&tb.g2, &tb.sw));
    let Testbed { sw, tap, g1, g2 } = tb;
    let (sender_drv, receiver_drv) = (g1.drv.stats(0), g2.drv.stats(g2.rx_ring()));
    g1.drv.shutdown()?;
    g2.drv.shutdown()?;
    log::debug!("demo: driver counters tx {sender_drv:?} rx {receiver_drv:?}");
    g2.port.set_tap(None);
    let pcap = match (&tap, &cfg.pcap) {
        (Some(tap), Some(path)) => {
            tap.flush()?;
            Some(PcapReport { path: path.clone(), frames: tap.frames(), dropped: tap.dropped() })
        }
        _ => None,
    };
    let report = DemoReport {
        frames_wanted: cfg.frames,
        frames_sent: t.sent,
        frames: t.frames,
        bytes: t.bytes,
        elapsed,
        lost: t.lost,
        corrupt: t.corrupt,
        misordered: t.misordered,
        drops,
        stalled: t.stalled,
        slots: cfg.slots,
        sender,
        receiver,
        flooded: sw.stats.flooded.load(Ordering::Relaxed),
        unicast: sw.stats.unicast.load(Ordering::Relaxed),
        pcap,
    };
    log::info!(
        "demo: {} of {} frames in {:.3} s ({:.3} Mpps), clean: {}",
        report.frames,
        report.frames_wanted,
        elapsed.as_secs_f64(),
        report.mpps(),
        report.is_clean()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(frames: u64) -> DemoConfig {
        DemoConfig { frames, slots: 256, ..DemoConfig::default() }
    }

    #[test]
    fn two_thousand_frames_arrive_intact() {
        let r = run(&small(2000)).unwrap();
        assert_eq!(r.frames, 2000, "{r}");
        assert_eq!(r.frames_sent, 2000);
        assert_eq!((r.drops, r.lost, r.corrupt, r.misordered), (0, 0, 0, 0), "{r}");
        assert!(!r.stalled);
        assert_eq!(r.reinits(), 0);
        assert_eq!(r.sender.packets, 2000 + 1, "the host moved every frame (and the hello)");
        assert!(r.bytes >= 2000 * 60);
        assert!(r.is_clean());
        assert!(r.to_string().ends_with("result     ok"), "{r}");
    }

    #[test]
    fn pcap_of_the_receiving_port() {
        let path = std::env::temp_dir().join(format!("ptnet-demo-{}.pcap", std::process::id()));
        let r = run(&DemoConfig { pcap: Some(path.clone()), ..small(500) }).unwrap();
        let p = r.pcap.clone().unwrap();
        assert_eq!((p.frames, p.dropped), (500, 0));
        assert!(r.is_clean(), "{r}");
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, 24 + 500 * 16 + r.bytes, "pcap header + records");
        match crate::model::pcap::tshark_verify(&path) {
            Ok(v) => {
                assert_eq!((v.frames, v.bytes, v.malformed, v.expert_errors), (500, r.bytes, 0, 0))
            }
            Err(crate::model::pcap::PcapTapError::ToolMissing) => {}
            Err(e) => panic!("tshark: {e}"),
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn config_ranges() {
        assert!(DemoConfig::default().validate().is_ok());
        for cfg in [
            DemoConfig { frames: 0, ..DemoConfig::default() },
            DemoConfig { slots: 31, ..DemoConfig::default() },
            DemoConfig { slots: 16385, ..DemoConfig::default() },
        ] {
            assert!(matches!(run(&cfg), Err(DemoError::BadConfig { .. })));
        }
    }

    #[test]
    fn frame_sizes_are_mixed() {
        let lens: Vec<_> = (0..10_000).map(frame_len).collect();
        assert!(lens.iter().all(|l| (60..=MAX_FRAME_LEN).contains(l)));
        let jumbo = lens.iter().filter(|&&l| l > 1514).count();
        assert!((400..=850).contains(&jumbo), "about one in 16: {jumbo}");
    }

    #[test]
    fn the_two_vms_are_told_apart_and_the_switch_learns_both() {
        let r = run(&small(300)).unwrap();
        let (s, v) = (&r.sender, &r.receiver);
        assert_eq!((s.mac, s.name.as_str()), (VM1.mac.unwrap(), "pci-0000-00-03.0"), "{r}");
        assert_eq!((v.mac, v.name.as_str()), (VM2.mac.unwrap(), "pci-0000-00-04.0"), "{r}");
        assert!(s.learnt && v.learnt && r.learnt_apart(), "{r}");
        assert_eq!((r.flooded, r.unicast), (1, 300), "only the announcement was flooded: {r}");
        assert!(r.is_clean(), "{r}");
        let text = r.to_string();
        assert!(text.contains("52:54:00:12:34:56 at pci-0000-00-03.0"), "{text}");
        assert!(text.contains("52:54:00:12:34:57 at pci-0000-00-04.0"), "{text}");
        assert!(text.contains("1 flooded, both NICs learnt apart"), "{text}");
    }

    #[test]
    fn frames_of_another_length_are_not_demo_frames() {
        for seq in [0u64, 1, 5, 77, 1 << 40] {
            let f = frame::build(VM2.mac.unwrap(), VM1.mac.unwrap(), seq, frame_len(seq));
            assert_eq!(check_demo_frame(&f), Some(seq));
            let g = frame::build(VM2.mac.unwrap(), VM1.mac.unwrap(), seq, frame_len(seq) + 1);
            assert_eq!((frame::check(&g), check_demo_frame(&g)), (Check::Ok(seq), None));
        }
    }

    #[test]
    fn tally_counts_gaps_corruption_and_late_frames() {
        let mut t = Tally { in_flight: 100, ..Tally::default() };
        let one = |_| 1;
        let f = |s| frame::build([2; 6], [4; 6], s, frame_len(s));
        t.take(&f(0), 10, one);
        t.take(&f(3), 10, one);
        let mut bad = f(4);
        bad[60] ^= 0xff;
        t.take(&bad, 10, one);
        t.take(&f(2), 10, one);
        t.take(&f(5), 10, one);
        assert_eq!((t.frames, t.lost, t.corrupt, t.misordered, t.next), (3, 3, 1, 1, 6));
        assert_eq!(t.in_flight, 100 - 6, "slots of received and lost frames released");
    }
}
