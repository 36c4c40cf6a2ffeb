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
//! of its own netmap region; both ports sit on one VALE-like [`Switch`]. Both NICs are brought up
//! by the driver core ([`crate::driver::Ptnet`] on the [`crate::platform::sim`] platform, §6)
//! and the frames go through its copy path (`send`/`recv`, §8.5). VM1 sends
//! [`DemoConfig::frames`] well-formed UDP frames of mixed sizes ([`frame_len`]: mostly
//! 60..=1514 bytes, one in 16 a jumbo of up to 9000 bytes spanning several slots with
//! `NS_MOREFRAG`), each carrying its sequence number and a checksum; VM2 checks every one.
//!
//! The frames ([`make_demo_frame`]/[`check_demo_frame`]) have the headers of
//! [`script::make_udp_frame`] but a payload built and checked eight bytes at a time: the
//! byte-serial generator and FNV checksum of the test frames would take two thirds of the run
//! and the report would measure them instead of the hypervisor.
//!
//! A VALE switch drops frames when the destination ring is full, so the sender keeps at most
//! about 30% of the RX ring in flight (the host's view of released RX slots lags the guest's by
//! up to one burst). Any drop, loss, corruption or reordering shows up in the [`DemoReport`]; a
//! run that makes no progress for [`DemoConfig::stall_timeout`] stops and reports what it got.

use super::pcap::PcapTap;
use super::ptnet::PtnetDevice;
use super::script::{self, ScriptError};
use super::switch::Switch;
use super::vm::{PciFunction, Vm};
use crate::driver::copy::CopyError;
use crate::driver::{DriverConfig, Ptnet};
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

/// VM1's MAC address (the sender).
const SRC: [u8; 6] = [0x02, 0, 0, 0, 1, 0xa];
/// VM2's MAC address (the receiver).
const DST: [u8; 6] = [0x02, 0, 0, 0, 1, 0xb];
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

/// Appends the payload words of frame `seq` to `f` until it is `len` bytes long: word i is a
/// multiplicative hash of (`seq`, i), so frames differ everywhere and no two words repeat.
fn payload(f: &mut Vec<u8>, seq: u64, len: usize) {
    let start = f.len().min(len);
    f.resize(len, 0);
    for (i, c) in f[start..].chunks_mut(8).enumerate() {
        let i = i as u64;
        let w = (seq ^ (i << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i;
        c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
    }
}

/// The checksum of [`check_demo_frame`] over `b`: the self test's eight-bytes-at-a-time fold
/// ([`crate::selftest::fold`]), so a change anywhere is caught.
fn fold(b: &[u8]) -> u32 {
    crate::selftest::fold(0x243f_6a88_85a3_08d3, b) as u32
}

/// Builds demo frame `seq` of `len` bytes (clamped to 60..=[`MAX_FRAME_LEN`]) into `f`: the
/// Ethernet/IPv4/UDP headers of [`script::make_udp_frame`] from VM1 to VM2, then the sequence
/// number, a checksum of the rest (xor the length) and the payload words.
pub fn make_demo_frame(f: &mut Vec<u8>, seq: u64, len: usize) {
    let len = len.clamp(60, MAX_FRAME_LEN);
    f.clear();
    script::push_udp_headers(f, DST, SRC, seq, len);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    payload(f, seq, len);
    let c = fold(&f[54..]) ^ len as u32;
    f[50..54].copy_from_slice(&c.to_be_bytes());
}

/// Checks a frame made by [`make_demo_frame`] (IPv4 header checksum and lengths, payload
/// checksum, length of its sequence number per [`frame_len`]); returns the sequence number.
pub fn check_demo_frame(f: &[u8]) -> Option<u64> {
    if !script::udp_headers_ok(f) {
        return None;
    }
    let seq = u64::from_be_bytes(f[42..50].try_into().ok()?);
    let c = u32::from_be_bytes(f[50..54].try_into().ok()?);
    (fold(&f[54..]) ^ f.len() as u32 == c && f.len() == frame_len(seq)).then_some(seq)
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
    /// Checks the ranges; [`ScriptError::BadConfig`] names the first bad setting.
    pub fn validate(&self) -> Result<(), ScriptError> {
        if self.frames == 0 {
            return Err(ScriptError::BadConfig { field: "frames", value: 0 });
        }
        if !SLOTS_RANGE.contains(&self.slots) {
            return Err(ScriptError::BadConfig { field: "slots", value: self.slots as u64 });
        }
        Ok(())
    }
}

/// Device counters of one NIC, summed over its rings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideReport {
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
    fn of(dev: &PtnetDevice) -> Self {
        let port = dev.port();
        let n = port.num_tx_rings() + port.num_rx_rings();
        (0..n).filter_map(|i| dev.counters(i)).fold(Self::default(), |s, c| Self {
            kicks: s.kicks + c.kicks,
            interrupts: s.interrupts + c.interrupts,
            reinits: s.reinits + c.reinits,
            packets: s.packets + c.packets,
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

    /// `true` if every frame arrived intact, in order, once, with nothing dropped anywhere.
    pub fn is_clean(&self) -> bool {
        self.frames == self.frames_wanted
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
                "kicks {} ({:.4}/pkt), interrupts {} ({:.4}/pkt)",
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

/// One guest: its platform and the driver bound to its NIC.
struct Nic {
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
}

impl Nic {
    fn attach(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> Result<Self, ScriptError> {
        let slot = vm
            .functions()
            .iter()
            .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, dev)))
            .map(|(s, _)| *s)
            .ok_or(ScriptError::NoNic)?;
        let mut plat = SimPlatform::new(vm.clone(), slot);
        let drv = Ptnet::attach(&mut plat, DriverConfig::default())?;
        Ok(Self { plat, drv })
    }
}

/// The hypervisor of the run and its two guests.
struct Testbed {
    sw: Arc<Switch>,
    d1: Arc<PtnetDevice>,
    d2: Arc<PtnetDevice>,
    p1: Arc<super::port::NmPort>,
    p2: Arc<super::port::NmPort>,
    tap: Option<Arc<PcapTap>>,
    g1: Nic,
    g2: Nic,
}

impl Testbed {
    fn build(cfg: &DemoConfig) -> Result<Self, ScriptError> {
        let sw = Switch::new("vale0");
        let (vm1, d1, p1) = script::try_vm_with_named_port("vm1", 1, cfg.slots)?;
        let (vm2, d2, p2) = script::try_vm_with_named_port("vm2", 1, cfg.slots)?;
        sw.attach_port(&p1);
        sw.attach_port(&p2);
        let tap = match &cfg.pcap {
            Some(path) => {
                let t = Arc::new(PcapTap::create(path)?);
                p2.set_tap(Some(t.clone()));
                Some(t)
            }
            None => None,
        };
        let g1 = Nic::attach(&vm1, &d1)?;
        let g2 = Nic::attach(&vm2, &d2)?;
        Ok(Self { sw, d1, d2, p1, p2, tap, g1, g2 })
    }

    /// Frames dropped inside the hypervisor (see [`DemoReport::drops`]). Deliveries into VM2's
    /// ring that fail are counted by the switch (and again by the port), so only the switch's
    /// count is taken for them.
    fn drops(&self) -> u64 {
        let s = &self.sw.stats;
        s.dropped.load(Ordering::Relaxed)
            + s.conversion_errors.load(Ordering::Relaxed)
            + self.p1.stats.tx_errors.load(Ordering::Relaxed)
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
fn pump(tb: &mut Testbed, cfg: &DemoConfig) -> Result<(Tally, Duration), ScriptError> {
    let total = cfg.frames;
    let bsz = (tb.g2.drv.info().buf_size as usize).max(1);
    let slots = |len: usize| len.div_ceil(bsz);
    let rx_ring = tb.g2.drv.info().tx_rings; // the first RX ring
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
            make_demo_frame(&mut frame, t.sent, len);
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
pub fn run(cfg: &DemoConfig) -> Result<DemoReport, ScriptError> {
    cfg.validate()?;
    log::info!(
        "demo: {} frames of 60..={MAX_FRAME_LEN} bytes, vm1 -> vale0 -> vm2, {} slots per ring",
        cfg.frames,
        cfg.slots
    );
    let mut tb = Testbed::build(cfg)?;
    let (t, elapsed) = pump(&mut tb, cfg)?;
    let drops = tb.drops();
    let Testbed { g1, g2, .. } = tb;
    let (sender_drv, receiver_drv) = (g1.drv.stats(0), g2.drv.stats(g2.drv.info().tx_rings));
    g1.drv.shutdown()?;
    g2.drv.shutdown()?;
    log::debug!("demo: driver counters tx {sender_drv:?} rx {receiver_drv:?}");
    tb.p2.set_tap(None);
    let pcap = match (&tb.tap, &cfg.pcap) {
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
        sender: SideReport::of(&tb.d1),
        receiver: SideReport::of(&tb.d2),
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
        assert_eq!(r.sender.packets, 2000, "the host moved every frame");
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
            assert!(matches!(run(&cfg), Err(ScriptError::BadConfig { .. })));
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
    fn demo_frames_are_udp_and_self_checking() {
        let mut f = Vec::new();
        for seq in [0u64, 1, 5, 77, 1 << 40] {
            let len = frame_len(seq);
            make_demo_frame(&mut f, seq, len);
            assert_eq!(f.len(), len);
            assert_eq!(check_demo_frame(&f), Some(seq));
            assert!(script::udp_headers_ok(&f));
            for i in [14, 24, 42, 50, 54, 55, len - 8, len - 1] {
                let mut bad = f.clone();
                bad[i] ^= 0x10;
                assert_eq!(check_demo_frame(&bad), None, "flip at {i} of {len}");
            }
            assert_eq!(check_demo_frame(&f[..len - 1]), None);
        }
        let mut g = Vec::new();
        make_demo_frame(&mut f, 2, 200);
        make_demo_frame(&mut g, 3, 200);
        assert_ne!(f[54..], g[54..], "the payload depends on the sequence number");
    }

    #[test]
    fn tally_counts_gaps_corruption_and_late_frames() {
        let mut t = Tally { in_flight: 100, ..Tally::default() };
        let one = |_| 1;
        let f = |s| {
            let mut v = Vec::new();
            make_demo_frame(&mut v, s, frame_len(s));
            v
        };
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
