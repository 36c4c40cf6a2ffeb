//! The pcap tap: records every Ethernet frame crossing a port into a classic pcap file, and
//! [`tshark_verify`] checks such a file with Wireshark's own dissectors.
//!
//! ## Format choices
//!
//! * **Classic pcap, not pcapng.** One global header and then records; every tool reads it
//!   (tcpdump, tshark, Wireshark, scapy, `pcap-file`).
//! * **Link type Ethernet** (`LINKTYPE_ETHERNET` = 1): frames are stored from the destination MAC
//!   on, without preamble or FCS, exactly as a netmap slot holds them.
//! * **Snaplen 65535.** Frames longer than that (only possible with jumbo-of-jumbo buffers) are
//!   stored truncated to 65535 bytes (`incl_len`) while `orig_len` keeps their real length, the
//!   standard way a capture says "cut by the snaplen"; Wireshark shows them as
//!   "Packet size limited during capture", not as malformed. Note that `pcap-file`'s validating
//!   reader (`PcapReader::next_packet`) rejects records with `orig_len > snaplen`; read such
//!   files with `next_raw_packet`.
//! * **Nanosecond timestamps** (magic `0xa1b23c4d`): the emulated ports move many frames within
//!   one microsecond, and nanoseconds keep them apart. libpcap ≥ 1.5 and every Wireshark of the
//!   last decade read this variant. Timestamps are wall-clock time since the UNIX epoch, taken
//!   under the tap's lock and clamped to be non-decreasing, so records in the file are in time
//!   order even when several threads record and the clock steps back.
//! * **Native byte order** for the headers (readers detect it from the magic).
//!
//! ## Concurrency and cost
//!
//! [`PcapTap`] is `Send + Sync`; each port/ring loop may call [`PcapTap::record`] through a
//! shared reference. A record is one lock, one clock read and a copy into a [`BufWriter`]; the
//! file is written when the buffer fills, on [`PcapTap::flush`] and on drop.
//!
//! ## Errors
//!
//! Recording never panics and never returns an error: the first I/O error is logged once with
//! `log::warn!` and remembered, and every later frame is dropped (counted by
//! [`PcapTap::dropped`]). [`PcapTap::flush`] then reports [`PcapTapError::Stopped`].
//!
//! ## Verification
//!
//! [`tshark_verify`] runs
//! `tshark -n -r FILE -T fields -E separator=/t -E occurrence=a -E aggregator=, -e frame.len -e _ws.malformed -e _ws.expert.severity`
//! and counts frames, bytes (sum of `frame.len`, i.e. original lengths), frames with a
//! "Malformed Packet" item (a dissector exception) and frames with any expert item of
//! severity Error. The last one matters: tshark 4.0 reports an IPv4 total length larger than the
//! frame as an Error/Protocol expert item, not as a malformed packet.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// The snaplen written in the file header; longer frames are truncated to it.
pub const SNAPLEN: u32 = 65535;

/// Capacity of the tap's write buffer.
const BUF_CAPACITY: usize = 256 * 1024;

/// Expert-info severity value of "Error" in Wireshark (`PI_ERROR`).
const PI_ERROR: u32 = 0x0080_0000;

/// Errors of the pcap tap and of [`tshark_verify`].
#[derive(Debug)]
#[non_exhaustive]
pub enum PcapTapError {
    /// An I/O operation on the capture file failed.
    Io(io::Error),
    /// `pcap-file` failed to write the pcap global header.
    Pcap(PcapError),
    /// An earlier write failed and the tap stopped recording; holds that error's message.
    Stopped(String),
    /// `tshark` is not installed (not found in `PATH`).
    ToolMissing,
    /// `tshark` ran but failed (e.g. the file is cut short in the middle of a record).
    ToolFailed {
        /// Exit code, if it exited normally.
        code: Option<i32>,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A line of `tshark` output could not be parsed.
    BadToolOutput(String),
}

impl fmt::Display for PcapTapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "pcap file i/o error: {e}"),
            Self::Pcap(e) => write!(f, "pcap format error: {e}"),
            Self::Stopped(why) => write!(f, "pcap tap stopped after an earlier error: {why}"),
            Self::ToolMissing => write!(f, "tshark is not installed (apt-get install tshark)"),
            Self::ToolFailed { code: Some(c), stderr } => {
                write!(f, "tshark failed with exit code {c}: {}", stderr.trim())
            }
            Self::ToolFailed { code: None, stderr } => {
                write!(f, "tshark was killed by a signal: {}", stderr.trim())
            }
            Self::BadToolOutput(line) => write!(f, "unexpected tshark output line: {line:?}"),
        }
    }
}

impl std::error::Error for PcapTapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Pcap(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PcapTapError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<PcapError> for PcapTapError {
    fn from(e: PcapError) -> Self {
        match e {
            PcapError::IoError(io) => Self::Io(io),
            other => Self::Pcap(other),
        }
    }
}

/// The writer behind the lock.
struct Inner {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Message of the first write error; once set, frames are dropped.
    failed: Option<String>,
    /// Last timestamp written, to keep the file in time order.
    last_ts: Duration,
}

/// A thread-safe recorder of Ethernet frames into a pcap file (see the [module docs](self)).
pub struct PcapTap {
    path: PathBuf,
    inner: Mutex<Inner>,
    frames: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    /// Frames still to record ([`UNLIMITED`]: all).
    budget: AtomicU64,
    skipped: AtomicU64,
}

/// [`PcapTap::set_budget`]'s "no limit".
const UNLIMITED: u64 = u64::MAX;

impl fmt::Debug for PcapTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapTap")
            .field("path", &self.path)
            .field("frames", &self.frames())
            .field("bytes", &self.bytes())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl PcapTap {
    /// Creates (or truncates) `path` and writes the pcap global header: Ethernet link type,
    /// snaplen 65535, nanosecond timestamps, native byte order. The header is flushed at once,
    /// so the file is a valid (empty) capture from the start.
    ///
    /// # Errors
    /// [`PcapTapError::Io`] if the file cannot be created or the header cannot be written.
    pub fn create(path: impl AsRef<Path>) -> Result<PcapTap, PcapTapError> {
        let path = path.as_ref();
        let file = File::create(path)?;
        Self::with_writer(path.to_path_buf(), Box::new(file))
    }

    /// Builds a tap on any writer (the tests use failing writers); `path` is only reported.
    fn with_writer(path: PathBuf, w: Box<dyn Write + Send>) -> Result<PcapTap, PcapTapError> {
        let mut out = BufWriter::with_capacity(BUF_CAPACITY, w);
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        header.write_to(&mut out)?;
        out.flush()?;
        Ok(PcapTap {
            path,
            inner: Mutex::new(Inner { out, failed: None, last_ts: Duration::ZERO }),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            budget: AtomicU64::new(UNLIMITED),
            skipped: AtomicU64::new(0),
        })
    }

    /// The file this tap writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one Ethernet frame (destination MAC first, no FCS), timestamped now.
    ///
    /// Frames longer than [`SNAPLEN`] are stored truncated, with `orig_len` = the real length.
    /// Never panics and never blocks on anything but the tap's own lock; after a write error the
    /// frame is dropped (see the [module docs](self)).
    pub fn record(&self, frame: &[u8]) {
        let take = |b: u64| match b {
            UNLIMITED => Some(b),
            0 => None,
            _ => Some(b - 1),
        };
        if self.budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, take).is_err() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut inner = self.lock();
        if inner.failed.is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let ts = now.max(inner.last_ts);
        inner.last_ts = ts;
        // Classic pcap seconds are u32: saturate instead of failing (year 2106).
        let (secs, nanos) = match u32::try_from(ts.as_secs()) {
            Ok(s) => (s, ts.subsec_nanos()),
            Err(_) => (u32::MAX, 999_999_999),
        };
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let data = &frame[..frame.len().min(SNAPLEN as usize)];
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&secs.to_ne_bytes());
        hdr[4..8].copy_from_slice(&nanos.to_ne_bytes());
        hdr[8..12].copy_from_slice(&orig_len.min(SNAPLEN).to_ne_bytes()); // incl_len
        hdr[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        let res = inner.out.write_all(&hdr).and_then(|()| inner.out.write_all(data));
        match res {
            Ok(()) => {
                self.frames.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.fail(&mut inner, &e);
            }
        }
    }

    /// Number of frames recorded (written to the buffer) so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Sum of the original lengths of the recorded frames (what crossed the port, before any
    /// snaplen truncation) — the same quantity as the sum of tshark's `frame.len`.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Records at most `n` more frames (`None`: every frame, the default); later frames are
    /// counted by [`skipped`](Self::skipped) and not written.
    pub fn set_budget(&self, n: Option<u64>) {
        self.budget.store(n.map_or(UNLIMITED, |n| n.min(UNLIMITED - 1)), Ordering::Release);
    }

    /// Number of frames not recorded because the budget was spent.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Number of frames dropped because an earlier write failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes buffered records to the file.
    ///
    /// Fails with [`PcapTapError::Io`] if this flush fails (the tap then stops recording) and
    /// with [`PcapTapError::Stopped`] if an earlier write had already failed.
    ///
    /// # Errors
    /// As above.
    pub fn flush(&self) -> Result<(), PcapTapError> {
        let mut inner = self.lock();
        if let Some(why) = &inner.failed {
            return Err(PcapTapError::Stopped(why.clone()));
        }
        inner.out.flush().map_err(|e| {
            self.fail(&mut inner, &e);
            PcapTapError::Io(e)
        })
    }

    /// Locks the writer; a poisoned lock is still usable (nothing in the critical sections can
    /// leave the writer inconsistent beyond what `failed` already tracks).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the first write error and logs it once.
    fn fail(&self, inner: &mut Inner, e: &io::Error) {
        if inner.failed.is_none() {
            log::warn!(
                "pcap tap {}: write failed ({e}); dropping further frames",
                self.path.display()
            );
            inner.failed = Some(e.to_string());
        }
    }
}

impl Drop for PcapTap {
    fn drop(&mut self) {
        // Errors are logged (once) inside flush; nothing else can be done here.
        let _ = self.flush();
    }
}

/// What tshark found in a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TsharkReport {
    /// Number of frames read.
    pub frames: u64,
    /// Frames carrying a "Malformed Packet" item (a dissector hit the end of the reported data).
    pub malformed: u64,
    /// Sum of `frame.len` (original frame lengths).
    pub bytes: u64,
    /// Frames with at least one expert item of severity Error (includes every malformed frame,
    /// and also e.g. "IPv4 total length exceeds packet length").
    pub expert_errors: u64,
}

/// Runs tshark over `path` and counts frames, bytes, malformed frames and expert errors.
///
/// The invocation is
/// `tshark -n -r PATH -T fields -E separator=/t -E occurrence=a -E aggregator=, -e frame.len -e _ws.malformed -e _ws.expert.severity`:
/// one line per frame (so the frame count does not depend on any filter), name resolution off
/// (`-n`, no DNS lookups). Returns [`PcapTapError::ToolMissing`] if tshark is not installed and
/// [`PcapTapError::ToolFailed`] if tshark cannot read the file to its end.
///
/// # Errors
/// [`PcapTapError::ToolMissing`], [`PcapTapError::ToolFailed`], [`PcapTapError::BadToolOutput`],
/// or [`PcapTapError::Io`] if tshark cannot be started for another reason.
pub fn tshark_verify(path: &Path) -> Result<TsharkReport, PcapTapError> {
    tshark_verify_with("tshark", path)
}

/// [`tshark_verify`] with the program name as a parameter (for tests).
fn tshark_verify_with(program: &str, path: &Path) -> Result<TsharkReport, PcapTapError> {
    let out = Command::new(program)
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=,"])
        .args(["-e", "frame.len", "-e", "_ws.malformed", "-e", "_ws.expert.severity"])
        // Test frames (crate::frame) carry arbitrary bytes to the discard port: decode them as
        // data, or a heuristic dissector (Thrift) guesses a protocol and reports its "errors".
        .args(["-d", &format!("udp.port=={},data", crate::frame::UDP_DST_PORT)])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => PcapTapError::ToolMissing,
            _ => PcapTapError::Io(e),
        })?;
    if !out.status.success() {
        return Err(PcapTapError::ToolFailed {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    parse_tshark_fields(&String::from_utf8_lossy(&out.stdout))
}

/// Parses the `-T fields` output of [`tshark_verify`]: `len \t malformed \t severities`.
fn parse_tshark_fields(text: &str) -> Result<TsharkReport, PcapTapError> {
    let mut r = TsharkReport::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || PcapTapError::BadToolOutput(line.to_owned());
        let mut cols = line.split('\t');
        let len: u64 = cols.next().and_then(|c| c.trim().parse().ok()).ok_or_else(bad)?;
        let malformed = cols.next().is_some_and(|c| !c.trim().is_empty());
        let mut error = false;
        for sev in cols.next().unwrap_or("").split(',').map(str::trim) {
            if sev.is_empty() {
                continue;
            }
            let sev: u32 = sev.parse().map_err(|_| bad())?;
            error |= sev >= PI_ERROR;
        }
        r.frames += 1;
        r.bytes += len;
        r.malformed += u64::from(malformed);
        r.expert_errors += u64::from(error || malformed);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A temp file path that is removed when dropped (also on test failure).
    struct TempPcap(PathBuf);

    impl TempPcap {
        fn new(name: &str) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let nanos =
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            TempPcap(
                std::env::temp_dir()
                    .join(format!("ptnetd-pcap-{}-{nanos}-{n}-{name}.pcap", std::process::id())),
            )
        }
    }

    impl Drop for TempPcap {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
        sum
    }

    fn csum_fold(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    const SRC_IP: [u8; 4] = [10, 0, 0, 1];
    const DST_IP: [u8; 4] = [10, 0, 0, 2];

    /// Ethernet + IPv4 header (checksum filled in) for an L4 payload of `l4_len` bytes;
    /// `ip_len_extra` is added to the IPv4 total length (to build bogus frames).
    fn eth_ipv4(proto: u8, l4_len: usize, ip_len_extra: usize) -> Vec<u8> {
        let mut f = Vec::with_capacity(34 + l4_len);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = u16::try_from(20 + l4_len + ip_len_extra).expect("ipv4 length");
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&1u16.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&SRC_IP);
        ip[16..20].copy_from_slice(&DST_IP);
        let c = csum_fold(csum_add(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    /// A well-formed Ethernet/IPv4/UDP frame of exactly `len` bytes (42..=65549), correct
    /// lengths and checksums; `tag` seeds the payload.
    fn udp_frame(len: usize, tag: u32) -> Vec<u8> {
        assert!((42..=14 + 65535).contains(&len));
        let udp_len = len - 34;
        let mut f = eth_ipv4(17, udp_len, 0);
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend_from_slice(&40000u16.to_be_bytes());
        udp.extend_from_slice(&40001u16.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&tag.to_be_bytes()[..udp_len.saturating_sub(8).min(4)]);
        let mut x = tag.wrapping_mul(2_654_435_761).wrapping_add(len as u32);
        while udp.len() < udp_len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            udp.push(x as u8);
        }
        let mut sum = csum_add(0, &SRC_IP);
        sum = csum_add(sum, &DST_IP);
        sum += 17 + udp_len as u32;
        let c = match csum_fold(csum_add(sum, &udp)) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
        assert_eq!(f.len(), len);
        f
    }

    /// A frame whose TCP header is cut after 6 bytes (tshark: "Malformed Packet: TCP").
    fn truncated_tcp_frame() -> Vec<u8> {
        let mut f = eth_ipv4(6, 6, 0);
        f.extend_from_slice(&[0x9c, 0x40, 0x9c, 0x41, 0, 0]);
        f
    }

    /// A UDP frame whose IPv4 total length claims 100 bytes more than the frame holds.
    fn bogus_ip_len_frame() -> Vec<u8> {
        let mut f = udp_frame(100, 7);
        let good = eth_ipv4(17, 100 - 34, 100);
        f[..34].copy_from_slice(&good);
        f
    }

    fn sizes() -> Vec<usize> {
        let mut v = vec![
            60, 61, 64, 65, 100, 128, 255, 256, 511, 1000, 1500, 1514, 1515, 1518, 2048, 4095,
            4096, 8191, 8192, 8999, 9000,
        ];
        let mut x = 12345u32;
        for _ in 0..80 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.push(60 + (x >> 8) as usize % (9000 - 60 + 1));
        }
        v
    }

    fn read_all(path: &Path) -> (PcapHeader, Vec<(Duration, u32, Vec<u8>)>) {
        let mut r = PcapReader::new(File::open(path).expect("open")).expect("pcap header");
        let h = r.header();
        let mut v = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.expect("pcap record");
            v.push((p.timestamp, p.orig_len, p.data.into_owned()));
        }
        (h, v)
    }

    #[test]
    fn tap_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PcapTap>();
        check::<PcapTapError>();
    }

    #[test]
    fn header_and_frames_round_trip_byte_exact() {
        let tmp = TempPcap::new("roundtrip");
        let frames: Vec<Vec<u8>> =
            sizes().iter().enumerate().map(|(i, &n)| udp_frame(n, i as u32)).collect();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let tap = PcapTap::create(&tmp.0).expect("create");
        assert_eq!(tap.path(), tmp.0.as_path());
        for f in &frames {
            tap.record(f);
        }
        tap.flush().expect("flush");
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(tap.frames(), frames.len() as u64);
        let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(tap.bytes(), total);
        assert_eq!(tap.dropped(), 0);

        // Readable while the tap is still alive (after flush).
        let (h, got) = read_all(&tmp.0);
        assert_eq!(h.datalink, DataLink::ETHERNET);
        assert_eq!(h.snaplen, 65535);
        assert_eq!(h.ts_resolution, TsResolution::NanoSecond);
        assert_eq!((h.version_major, h.version_minor), (2, 4));
        assert_eq!(got.len(), frames.len());
        let mut last = Duration::ZERO;
        for ((ts, orig, data), want) in got.iter().zip(&frames) {
            assert_eq!(data, want);
            assert_eq!(*orig as usize, want.len());
            // Nanosecond file: allow the sub-ns rounding of `before`/`after` only.
            assert!(*ts >= before - Duration::from_micros(1) && *ts <= after, "{ts:?}");
            assert!(*ts >= last);
            last = *ts;
        }
        drop(tap);
        assert_eq!(read_all(&tmp.0).1.len(), frames.len());
    }

    #[test]
    fn a_budget_keeps_the_first_frames_and_counts_the_rest() {
        let tmp = TempPcap::new("budget");
        let tap = PcapTap::create(&tmp.0).expect("create");
        tap.record(&udp_frame(60, 0));
        tap.set_budget(Some(3));
        for i in 1..=10 {
            tap.record(&udp_frame(60, i));
        }
        tap.set_budget(None);
        tap.record(&udp_frame(60, 11));
        tap.flush().expect("flush");
        assert_eq!((tap.frames(), tap.skipped()), (5, 7));
        let got: Vec<_> = read_all(&tmp.0).1.into_iter().map(|(_, _, d)| d).collect();
        let want: Vec<_> = [0, 1, 2, 3, 11].iter().map(|&i| udp_frame(60, i)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn drop_flushes() {
        let tmp = TempPcap::new("dropflush");
        let tap = PcapTap::create(&tmp.0).expect("create");
        tap.record(&udp_frame(60, 1));
        tap.record(&udp_frame(61, 2));
        // Nothing but the header is on disk yet (the buffer is larger than these frames).
        assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), 24);
        drop(tap);
        let (_, got) = read_all(&tmp.0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].2, udp_frame(61, 2));
    }

    #[test]
    fn concurrent_recording_from_four_threads_keeps_every_frame() {
        const THREADS: u32 = 4;
        const PER_THREAD: u32 = 2000;
        let tmp = TempPcap::new("threads");
        let tap = Arc::new(PcapTap::create(&tmp.0).expect("create"));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let tap = Arc::clone(&tap);
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let len = 60 + ((i * 37 + t * 1000) % 2000) as usize;
                        tap.record(&udp_frame(len, (t << 24) | i));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("recording thread");
        }
        assert_eq!(tap.frames(), u64::from(THREADS * PER_THREAD));
        tap.flush().expect("flush");
        let (_, got) = read_all(&tmp.0);
        assert_eq!(got.len(), (THREADS * PER_THREAD) as usize);
        let mut seen = HashSet::new();
        let mut next = [0u32; THREADS as usize];
        let mut last = Duration::ZERO;
        let mut bytes = 0u64;
        for (ts, orig, data) in &got {
            assert!(*ts >= last, "timestamps must not go backwards");
            last = *ts;
            let tag = u32::from_be_bytes(data[42..46].try_into().unwrap());
            let (t, i) = (tag >> 24, tag & 0xff_ffff);
            let len = 60 + ((i * 37 + t * 1000) % 2000) as usize;
            assert_eq!(data, &udp_frame(len, tag), "frame {t}/{i} corrupted");
            assert_eq!(*orig as usize, len);
            assert_eq!(next[t as usize], i, "per-thread order kept");
            next[t as usize] += 1;
            assert!(seen.insert(tag));
            bytes += len as u64;
        }
        assert_eq!(bytes, tap.bytes());
    }

    #[test]
    fn oversize_frame_is_truncated_to_snaplen_with_orig_len_kept() {
        let tmp = TempPcap::new("oversize");
        let tap = PcapTap::create(&tmp.0).expect("create");
        let max_ip = udp_frame(14 + 65535, 1); // 65549 bytes: the largest IPv4-in-Ethernet
        let exact = udp_frame(65535, 2);
        let mut huge = udp_frame(14 + 65535, 3);
        huge.extend((0..70000 - huge.len()).map(|i| i as u8)); // 70000 bytes with a trailer
        for f in [&max_ip, &exact, &huge] {
            tap.record(f);
        }
        tap.flush().expect("flush");
        assert_eq!(tap.frames(), 3);
        assert_eq!(tap.bytes(), 65549 + 65535 + 70000);
        let mut r = PcapReader::new(File::open(&tmp.0).unwrap()).unwrap();
        let mut got = Vec::new();
        // The validating `next_packet` rejects orig_len > snaplen; read raw records.
        while let Some(p) = r.next_raw_packet() {
            let p = p.expect("raw record");
            got.push((p.incl_len, p.orig_len, p.data.into_owned()));
        }
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].1), (65535, 65549));
        assert_eq!(got[0].2, max_ip[..65535]);
        assert_eq!((got[1].0, got[1].1), (65535, 65535));
        assert_eq!(got[1].2, exact);
        assert_eq!((got[2].0, got[2].1), (65535, 70000));
        assert_eq!(got[2].2, huge[..65535]);
    }

    #[test]
    fn create_in_missing_directory_fails_with_io_error() {
        let dir = TempPcap::new("nodir");
        let err = PcapTap::create(dir.0.join("x.pcap")).expect_err("must fail");
        assert!(matches!(err, PcapTapError::Io(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("pcap file i/o error"), "{msg}");
        assert!(std::error::Error::source(&err).is_some());
    }

    /// Accepts `budget` bytes, then fails every write.
    struct FailAfter {
        budget: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_error_is_remembered_and_later_frames_dropped() {
        // The header (24 bytes) fits; the first buffer flush hits the error.
        let tap =
            PcapTap::with_writer(PathBuf::from("/failing"), Box::new(FailAfter { budget: 100 }))
                .expect("header fits");
        let big = udp_frame(9000, 1);
        // Fill the 256 KiB buffer, forcing writes to the failing sink.
        let mut recorded = 0u64;
        for _ in 0..100 {
            tap.record(&big);
            if tap.dropped() > 0 {
                break;
            }
            recorded += 1;
        }
        assert!(tap.dropped() > 0, "the sink must have failed");
        assert_eq!(tap.frames(), recorded);
        for _ in 0..5 {
            tap.record(&big); // must not panic
        }
        assert_eq!(tap.frames(), recorded);
        assert_eq!(tap.dropped(), 6);
        let err = tap.flush().expect_err("stopped");
        assert!(matches!(err, PcapTapError::Stopped(ref m) if m.contains("disk on fire")));
        assert!(err.to_string().starts_with("pcap tap stopped"));
        drop(tap); // must not panic either
    }

    #[test]
    fn flush_error_stops_the_tap() {
        struct FailFlush;
        impl Write for FailFlush {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("flush refused"))
            }
        }
        let err = PcapTap::with_writer(PathBuf::from("/x"), Box::new(FailFlush))
            .expect_err("create flushes the header");
        assert!(matches!(err, PcapTapError::Io(_)));
    }

    #[test]
    fn parse_tshark_fields_counts() {
        let text = "60\t\t\n100\t\t8388608\n40\t[Malformed Packet: TCP],_ws.malformed\t8388608\n\
                    1514\t\t6291456,4194304\n";
        let r = parse_tshark_fields(text).unwrap();
        assert_eq!(
            r,
            TsharkReport { frames: 4, malformed: 1, bytes: 60 + 100 + 40 + 1514, expert_errors: 2 }
        );
        assert!(matches!(parse_tshark_fields("abc\t\t\n"), Err(PcapTapError::BadToolOutput(_))));
        assert_eq!(parse_tshark_fields("").unwrap(), TsharkReport::default());
    }

    #[test]
    fn missing_tool_is_reported_as_tool_missing() {
        let r = tshark_verify_with("ptnetd-no-such-tshark-binary", Path::new("/nonexistent"));
        assert!(matches!(r, Err(PcapTapError::ToolMissing)), "{r:?}");
    }

    /// True if tshark can run; otherwise fails when `PTNET_REQUIRE_TSHARK` is set (CI's run
    /// after it installed tshark) or prints a skip note (the README's `cargo test --release`,
    /// which CI runs first, on a fresh machine without tshark).
    fn tshark_available() -> bool {
        match Command::new("tshark")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => true,
            Err(e) => {
                assert!(
                    std::env::var_os("PTNET_REQUIRE_TSHARK").is_none(),
                    "tshark is required (PTNET_REQUIRE_TSHARK) but cannot run: {e}"
                );
                eprintln!("skipping tshark test: tshark not installed ({e})");
                false
            }
        }
    }

    #[test]
    fn tshark_reports_well_formed_and_malformed_files() {
        if !tshark_available() {
            return;
        }
        // Well-formed file, including a frame truncated by the snaplen.
        let good = TempPcap::new("tshark-good");
        let tap = PcapTap::create(&good.0).expect("create");
        let sizes = sizes();
        for (i, &n) in sizes.iter().enumerate() {
            tap.record(&udp_frame(n, i as u32));
        }
        let mut huge = udp_frame(14 + 65535, 99);
        huge.resize(70000, 0);
        tap.record(&huge);
        let (frames, bytes) = (tap.frames(), tap.bytes());
        drop(tap);
        let r = tshark_verify(&good.0).expect("tshark on the good file");
        assert_eq!(r, TsharkReport { frames, malformed: 0, bytes, expert_errors: 0 });
        assert_eq!(r.frames, sizes.len() as u64 + 1);

        // Malformed file: a truncated TCP header and a bogus IPv4 length among good frames.
        let bad = TempPcap::new("tshark-bad");
        let tap = PcapTap::create(&bad.0).expect("create");
        tap.record(&udp_frame(60, 1));
        tap.record(&truncated_tcp_frame());
        tap.record(&udp_frame(1514, 2));
        tap.record(&bogus_ip_len_frame());
        drop(tap);
        let r = tshark_verify(&bad.0).expect("tshark on the bad file");
        assert_eq!(r.frames, 4);
        assert_eq!(r.bytes, 60 + 40 + 1514 + 100);
        assert!(r.malformed > 0, "{r:?}");
        assert_eq!(r.malformed, 1, "{r:?}");
        assert_eq!(r.expert_errors, 2, "{r:?}");

        // A file cut short in the middle of a record is a tool failure, not a count.
        let cut = TempPcap::new("tshark-cut");
        let bytes = std::fs::read(&good.0).unwrap();
        std::fs::write(&cut.0, &bytes[..24 + 16 + 30]).unwrap();
        let r = tshark_verify(&cut.0);
        assert!(matches!(r, Err(PcapTapError::ToolFailed { .. })), "{r:?}");
    }
}
