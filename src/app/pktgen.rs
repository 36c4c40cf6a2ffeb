//! A pkt-gen-like traffic generator and sink on the zero-copy scheme (the shape of netmap's
//! `pkt-gen -i netmap:ptnet0 -f tx|rx|txrx|ping`), over [`crate::client`] so it runs unchanged
//! on Redox and on the host.
//!
//! Every frame carries a sequence number (and, for `ping`, its send time); `rx` reports lost,
//! duplicated and reordered frames from the sequence numbers, `ping` the round-trip latency
//! percentiles. Frames are built and checked in place in the shared buffers (`push`/`pop` copy
//! the frame once, into or out of the netmap buffer).

use crate::client::{ClientError, EventFlags, NetmapPort, Os};
use std::fmt;
use std::time::{Duration, Instant};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Send frames.
    Tx,
    /// Receive and check frames.
    Rx,
    /// Both on the same port (against a reflecting port every frame comes back).
    TxRx,
    /// Round trips: one frame out, wait for it to come back, measure.
    Ping,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct PktgenConfig {
    /// Function.
    pub function: Function,
    /// Frame length (60..=1514).
    pub len: usize,
    /// Frames per sync.
    pub batch: u32,
    /// Frames per second to send (0: as fast as possible).
    pub rate: u64,
    /// Frames to send (tx, txrx, ping) or expect (rx); 0: until `duration`.
    pub count: u64,
    /// Longest run.
    pub duration: Duration,
    /// Print a line per second (through `progress`).
    pub per_second: bool,
}

impl Default for PktgenConfig {
    fn default() -> Self {
        Self {
            function: Function::TxRx,
            len: 60,
            batch: 64,
            rate: 0,
            count: 10_000,
            duration: Duration::from_secs(60),
            per_second: false,
        }
    }
}

/// Errors of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PktgenError {
    /// Bad settings.
    Config(String),
    /// The scheme refused something.
    Client(ClientError),
}

impl fmt::Display for PktgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(s) => write!(f, "{s}"),
            Self::Client(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PktgenError {}

impl From<ClientError> for PktgenError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PktgenReport {
    /// Frames sent.
    pub sent: u64,
    /// Frames received (ours, intact).
    pub received: u64,
    /// Sequence numbers never received (up to the highest one seen, or `sent` for txrx/ping).
    pub lost: u64,
    /// Frames received more than once.
    pub duplicated: u64,
    /// Frames received after a higher sequence number.
    pub reordered: u64,
    /// Frames that were not ours or were damaged.
    pub foreign: u64,
    /// Bytes of the frames received (or sent, for tx).
    pub bytes: u64,
    /// Seconds the run took.
    pub secs: f64,
    /// Round-trip times (ping), sorted, in microseconds.
    pub rtt_us: Vec<f64>,
}

impl PktgenReport {
    /// Frames per second moved (received, or sent for a pure sender).
    pub fn pps(&self) -> f64 {
        let n = if self.received > 0 { self.received } else { self.sent };
        n as f64 / self.secs.max(1e-9)
    }

    /// Bits per second (frame bytes, no FCS or preamble).
    pub fn bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9)
    }

    /// Latency percentile `p` (0..=100) in microseconds.
    pub fn rtt(&self, p: f64) -> Option<f64> {
        let n = self.rtt_us.len();
        (n > 0).then(|| self.rtt_us[((p / 100.0) * (n - 1) as f64).round() as usize])
    }
}

impl fmt::Display for PktgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} received={} lost={} duplicated={} reordered={} foreign={} {:.3} Mpps {:.1} Mbit/s in {:.2} s",
            self.sent,
            self.received,
            self.lost,
            self.duplicated,
            self.reordered,
            self.foreign,
            self.pps() / 1e6,
            self.bps() / 1e6,
            self.secs
        )?;
        if let (Some(p50), Some(p90), Some(p99), Some(max)) =
            (self.rtt(50.0), self.rtt(90.0), self.rtt(99.0), self.rtt(100.0))
        {
            write!(f, " rtt p50={p50:.1}us p90={p90:.1}us p99={p99:.1}us max={max:.1}us")?;
        }
        Ok(())
    }
}

const ETHERTYPE: [u8; 2] = [0x88, 0xb6]; // IEEE local experimental ethertype 2
const MAGIC: u32 = 0x706b_7467; // "pktg"

/// A test frame: broadcast from `src`, `len` bytes, sequence `seq`, send time `t_ns`.
pub fn frame(src: [u8; 6], seq: u64, t_ns: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    write_frame(&mut f, src, seq, t_ns);
    f
}

/// [`frame`] into `f` (its whole length, at least 60 bytes): the sender's per-frame path, no
/// allocation.
pub fn write_frame(f: &mut [u8], src: [u8; 6], seq: u64, t_ns: u64) {
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(&MAGIC.to_be_bytes());
    f[18..26].copy_from_slice(&seq.to_be_bytes());
    f[26..34].copy_from_slice(&t_ns.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(34) {
        *b = (seq as usize).wrapping_add(i) as u8;
    }
}

/// `(seq, t_ns)` of an intact test frame, `None` for anything else.
pub fn parse(f: &[u8]) -> Option<(u64, u64)> {
    if f.len() < 60 || f[12..14] != ETHERTYPE || f[14..18] != MAGIC.to_be_bytes() {
        return None;
    }
    let seq = u64::from_be_bytes(f[18..26].try_into().ok()?);
    let t = u64::from_be_bytes(f[26..34].try_into().ok()?);
    let ok = f.iter().enumerate().skip(34).all(|(i, &b)| b == (seq as usize).wrapping_add(i) as u8);
    ok.then_some((seq, t))
}

/// Sequence bookkeeping of a receiver.
#[derive(Debug, Default)]
struct Seen {
    bits: Vec<u64>,
    highest: Option<u64>,
}

impl Seen {
    /// Records `seq`: `(new, reordered)`.
    fn add(&mut self, seq: u64) -> (bool, bool) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        let new = self.bits[w] & (1 << b) == 0;
        self.bits[w] |= 1 << b;
        let reordered = new && self.highest.is_some_and(|h| seq < h);
        if self.highest.is_none_or(|h| seq > h) {
            self.highest = Some(seq);
        }
        (new, reordered)
    }
}

fn validate(cfg: &PktgenConfig) -> Result<(), PktgenError> {
    if !(60..=1514).contains(&cfg.len) {
        return Err(PktgenError::Config(format!("frame length {} not in 60..=1514", cfg.len)));
    }
    if cfg.batch == 0 {
        return Err(PktgenError::Config("batch must be at least 1".into()));
    }
    if cfg.count == 0 && cfg.duration.is_zero() {
        return Err(PktgenError::Config("give a count or a duration".into()));
    }
    Ok(())
}

/// Longest a sender waits for the host to take its last frames.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// TX ring `k`'s slots the host has not taken yet.
fn tx_pending<O: Os>(port: &NetmapPort<'_, O>, k: u32) -> Result<u32, PktgenError> {
    let tx = port.tx_ring(k)?;
    Ok(tx.num_slots() - 1 - tx.space())
}

/// Syncs TX ring `k` until the host has taken every frame or `until` passes.
fn drain_tx<O: Os>(
    port: &mut NetmapPort<'_, O>,
    k: u32,
    until: Instant,
) -> Result<(), PktgenError> {
    loop {
        port.txsync()?;
        if tx_pending(port, k)? == 0 || Instant::now() >= until {
            return Ok(());
        }
        port.wait(EventFlags::EVENT_WRITE, Duration::from_millis(10))?;
    }
}

/// Runs `cfg` on a bound port (its first bound TX/RX rings); `mac` is the source address;
/// `progress` gets the per-second lines.
pub fn run<O: Os>(
    port: &mut NetmapPort<'_, O>,
    mac: [u8; 6],
    cfg: &PktgenConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<PktgenReport, PktgenError> {
    validate(cfg)?;
    let info = *port.info();
    let (txr, rxr) = (info.first_tx, info.first_rx);
    let sends = matches!(cfg.function, Function::Tx | Function::TxRx | Function::Ping);
    let recvs = matches!(cfg.function, Function::Rx | Function::TxRx | Function::Ping);
    if sends && info.first_tx == info.last_tx || recvs && info.first_rx == info.last_rx {
        return Err(PktgenError::Config("the binding lacks the rings this function needs".into()));
    }
    let t0 = Instant::now();
    let end = t0 + cfg.duration;
    let mut rep = PktgenReport::default();
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; cfg.len];
    let mut last_line = (t0, 0u64, 0u64);
    let want = if cfg.count == 0 { u64::MAX } else { cfg.count };
    let mut idle_since = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let in_flight = rep.sent.saturating_sub(rep.received + rep.lost);
        let sending_done = !sends || rep.sent >= want;
        let receiving_done =
            !recvs || rep.received >= want || (sends && sending_done && in_flight == 0);
        if sending_done && receiving_done {
            break;
        }
        let mut progressed = false;
        if sends && rep.sent < want && (cfg.function != Function::Ping || in_flight == 0) {
            let allowed = if cfg.rate == 0 {
                u64::MAX
            } else {
                (now.duration_since(t0).as_secs_f64() * cfg.rate as f64) as u64 + 1
            };
            let tx = port.tx_ring(txr)?;
            let burst = if cfg.function == Function::Ping { 1 } else { cfg.batch as u64 };
            let mut k = 0;
            while k < burst && rep.sent < want.min(allowed) {
                write_frame(&mut out, mac, rep.sent, t0.elapsed().as_nanos() as u64);
                if !tx.push(&out)? {
                    break;
                }
                rep.sent += 1;
                k += 1;
                if !recvs {
                    rep.bytes += cfg.len as u64;
                }
            }
            port.txsync()?;
            progressed |= k > 0;
        }
        if recvs {
            port.rxsync()?;
            let rx = port.rx_ring(rxr)?;
            while let Some(n) = rx.pop(&mut buf)? {
                progressed = true;
                match parse(&buf[..n.min(buf.len())]) {
                    Some((seq, t)) if buf[6..12] == mac || cfg.function == Function::Rx => {
                        let (new, reordered) = seen.add(seq);
                        if !new {
                            rep.duplicated += 1;
                            continue;
                        }
                        rep.reordered += reordered as u64;
                        rep.received += 1;
                        rep.bytes += n as u64;
                        if cfg.function == Function::Ping {
                            // Saturating: a monotonic clock that steps back (seen under QEMU's
                            // TCG on Redox) must not turn into a huge round trip.
                            let rtt = (t0.elapsed().as_nanos() as u64).saturating_sub(t);
                            rep.rtt_us.push(rtt as f64 / 1e3);
                        }
                    }
                    _ => rep.foreign += 1,
                }
            }
        }
        if progressed {
            idle_since = Instant::now();
        } else if sends && rep.sent >= want && idle_since.elapsed() > Duration::from_secs(2) {
            break; // what has not come back by now is lost
        } else if !sends && rep.received > 0 && idle_since.elapsed() > Duration::from_secs(1) {
            break; // a receiver: the sender stopped (what it sent and we lack is lost)
        } else {
            let f = if recvs { EventFlags::EVENT_READ } else { EventFlags::EVENT_WRITE };
            port.wait(f, Duration::from_millis(100))?;
        }
        if cfg.per_second && last_line.0.elapsed() >= Duration::from_secs(1) {
            let dt = last_line.0.elapsed().as_secs_f64();
            let (ds, dr) = (rep.sent - last_line.1, rep.received - last_line.2);
            progress(&format!(
                "pkt-gen: {:.3} Mpps sent, {:.3} Mpps received",
                ds as f64 / dt / 1e6,
                dr as f64 / dt / 1e6
            ));
            last_line = (Instant::now(), rep.sent, rep.received);
        }
    }
    if sends {
        // As netmap's pkt-gen: before stopping, sync until the host has taken every frame
        // (a peer that was full may still hold some back), within the run's time.
        drain_tx(port, txr, end.min(Instant::now() + DRAIN_LIMIT))?;
    }
    rep.secs = t0.elapsed().as_secs_f64();
    let expected = if sends { rep.sent } else { seen.highest.map_or(0, |h| h + 1) };
    rep.lost = expected.saturating_sub(rep.received);
    port.rxsync().ok(); // release what we took
    rep.rtt_us.sort_by(f64::total_cmp);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_seen() {
        let f = frame([2, 0, 0, 0, 0, 1], 77, 123, 200);
        assert_eq!(parse(&f), Some((77, 123)));
        let mut g = f.clone();
        g[150] ^= 1;
        assert_eq!(parse(&g), None);
        assert_eq!(parse(&f[..59]), None);
    }

    #[test]
    fn sequence_bookkeeping() {
        let mut s = Seen::default();
        assert_eq!(s.add(0), (true, false));
        assert_eq!(s.add(2), (true, false));
        assert_eq!(s.add(1), (true, true));
        assert_eq!(s.add(2), (false, false));
        assert_eq!(s.highest, Some(2));
    }

    #[test]
    fn bad_settings_are_refused() {
        let c = PktgenConfig { len: 59, ..PktgenConfig::default() };
        assert!(matches!(validate(&c), Err(PktgenError::Config(_))));
        let c = PktgenConfig { batch: 0, ..PktgenConfig::default() };
        assert!(validate(&c).is_err());
    }
}
