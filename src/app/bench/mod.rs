//! The throughput benchmark (issue 11): the zero-copy path against this machine's two-thread
//! limit and against virtio-net, side by side, in one process run. `cargo bench --bench
//! throughput` runs [`plan`] through [`run_cell`] and writes the rows as JSON, a table and a
//! plot; `ptnet-bench` runs one cell for profilers.
//!
//! Every scenario touches every frame: the sender writes a sequence number into it, the
//! receiver reads it back (and counts any that go backwards: none may). Scenarios:
//!
//! | scenario | path |
//! |---|---|
//! | `spsc-ceiling` | two threads, a batched SPSC ring of 64-byte items (`spsc.rs`) |
//! | `zc-tx` | zero-copy client → `netmap` scheme → ptnetd → host loop → sink port |
//! | `zc-rx` | source port → host loop → ptnetd → zero-copy client |
//! | `zc-pipe` | VM A zero-copy sender → netmap pipe (buffer swap) → VM B zero-copy receiver |
//! | `zc-switch` | the same through the VALE-like switch (one copy on the host) |
//! | `stack-network` | smoltcp's device on `network` (a frame per call), A → switch → B |
//! | `stack-netmap` | smoltcp's batched device on `netmap`, A → switch → B |
//! | `virtio-baseline` | VM-to-VM through virtio-net with split virtqueues ([`virtio`]) |
//!
//! Host modes: `kloop` (ptnet's `klooptx`/`klooprx` on: a host thread per device processes the
//! rings) and `direct` (both off: a kick processes the ring inside the register write).
//! Kicks and interrupts are counted, not paid: there are no VM exits in this model.

mod spsc;
mod stack;
#[cfg(not(target_os = "redox"))]
pub mod virtio;
mod zc;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scenario of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Two threads and a batched SPSC ring: the machine's hand-off limit.
    SpscCeiling,
    /// Zero-copy client → host sink.
    ZcTx,
    /// Host source → zero-copy client.
    ZcRx,
    /// VM A → netmap pipe → VM B, zero-copy clients on both.
    ZcPipe,
    /// VM A → VALE-like switch → VM B, zero-copy clients on both.
    ZcSwitch,
    /// smoltcp's frame-per-call device on `network`, A → switch → B.
    StackNetwork,
    /// smoltcp's batched device on `netmap`, A → switch → B.
    StackNetmap,
    /// virtio-net with split virtqueues, A → B.
    VirtioBaseline,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 8] = [
        Self::SpscCeiling,
        Self::ZcTx,
        Self::ZcRx,
        Self::ZcPipe,
        Self::ZcSwitch,
        Self::StackNetwork,
        Self::StackNetmap,
        Self::VirtioBaseline,
    ];

    /// Its name in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::SpscCeiling => "spsc-ceiling",
            Self::ZcTx => "zc-tx",
            Self::ZcRx => "zc-rx",
            Self::ZcPipe => "zc-pipe",
            Self::ZcSwitch => "zc-switch",
            Self::StackNetwork => "stack-network",
            Self::StackNetmap => "stack-netmap",
            Self::VirtioBaseline => "virtio-baseline",
        }
    }

    /// The scenario called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// `true` if it runs on ptnet devices (and so has a host mode).
    pub fn has_host_mode(self) -> bool {
        !matches!(self, Self::SpscCeiling | Self::VirtioBaseline)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the host processes a ptnet device's rings, and how client requests reach ptnetd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// A kloop thread per device (`klooptx=on,klooprx=on`); requests by Redox's IPC (a hand-off
    /// to the daemon thread and back per call).
    Kloop,
    /// Processing inside the kick (`klooptx=off,klooprx=off`); requests by IPC.
    Direct,
    /// [`HostMode::Kloop`] with requests run on the caller's thread
    /// ([`crate::scheme::host::Transport::Inline`]: what a system call into an in-kernel driver
    /// costs, as in netmap's own guests; not what Redox does).
    KloopInline,
    /// [`HostMode::Direct`] with requests run on the caller's thread.
    DirectInline,
    /// Not a ptnet scenario.
    None,
}

impl HostMode {
    /// The modes of ptnet scenarios.
    pub const PTNET: [Self; 4] = [Self::Kloop, Self::Direct, Self::KloopInline, Self::DirectInline];

    /// Its name in rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kloop => "kloop",
            Self::Direct => "direct",
            Self::KloopInline => "kloop+inline",
            Self::DirectInline => "direct+inline",
            Self::None => "-",
        }
    }

    /// The mode called `s` (`-` or `none` for none).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "-" | "none" => Some(Self::None),
            _ => Self::PTNET.into_iter().find(|m| m.name() == s),
        }
    }

    /// `true` for the kloop modes.
    pub fn kloop(self) -> bool {
        matches!(self, Self::Kloop | Self::KloopInline)
    }

    /// How requests reach ptnetd.
    pub fn transport(self) -> crate::scheme::host::Transport {
        match self {
            Self::KloopInline | Self::DirectInline => crate::scheme::host::Transport::Inline,
            _ => crate::scheme::host::Transport::Ipc,
        }
    }
}

/// How much traffic a cell sends: at most `frames` frames, and no new batch after `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Frame limit.
    pub frames: u64,
    /// Time limit of the sender.
    pub time: Duration,
}

impl Load {
    /// Exactly `frames` frames, however long they take.
    pub fn frames(frames: u64) -> Self {
        Self { frames, time: Duration::from_secs(3600) }
    }

    /// As many frames as `time` allows.
    pub fn time(time: Duration) -> Self {
        Self { frames: u64::MAX, time }
    }
}

/// One measurement: a scenario in a host mode at a batch and frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Scenario.
    pub scenario: Scenario,
    /// Host mode ([`HostMode::None`] for spsc-ceiling and virtio-baseline).
    pub host_mode: HostMode,
    /// Frames per sync (or per ring publication, or per notification decision).
    pub batch: u64,
    /// Frame length in bytes (60..=1514).
    pub frame_len: usize,
    /// Traffic.
    pub load: Load,
}

/// Errors of a cell.
#[derive(Debug)]
pub enum BenchError {
    /// The cell's settings make no sense.
    Config(String),
    /// Building the VMs, ports or daemons failed.
    Setup(String),
    /// A scheme call failed.
    Client(crate::client::ClientError),
    /// Frames stopped arriving.
    Stalled {
        /// Frames sent.
        sent: u64,
        /// Frames received.
        received: u64,
        /// Frames dropped (accounted).
        dropped: u64,
    },
    /// Frames arrived damaged or out of sequence.
    Corrupt {
        /// What was wrong.
        what: &'static str,
        /// How many.
        count: u64,
    },
    /// The virtio baseline failed.
    Virtio(String),
    /// Writing the results failed.
    Io(std::io::Error),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(s) => write!(f, "bad cell: {s}"),
            Self::Setup(s) => write!(f, "setup: {s}"),
            Self::Client(e) => write!(f, "scheme: {e}"),
            Self::Stalled { sent, received, dropped } => {
                write!(f, "stalled: sent {sent}, received {received}, dropped {dropped}")
            }
            Self::Corrupt { what, count } => write!(f, "{count} {what}"),
            Self::Virtio(s) => write!(f, "virtio-baseline: {s}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<crate::client::ClientError> for BenchError {
    fn from(e: crate::client::ClientError) -> Self {
        Self::Client(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// What a scenario counted over its traffic window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Measured {
    /// Frames the sender handed on.
    pub sent: u64,
    /// Frames the receiver read (sequence checked).
    pub received: u64,
    /// Frames dropped on the way and accounted (a full switch port).
    pub dropped: u64,
    /// From the sender's first frame to the receiver's last.
    pub elapsed: Duration,
    /// Kicks (guest → host notifications), all rings of all devices.
    pub kicks: u64,
    /// Interrupts (host → guest notifications).
    pub interrupts: u64,
    /// Frame copies made between the sender's write and the receiver's read.
    pub copies: u64,
    /// Scheme calls the clients made (syncs, reads, writes; not event waits).
    pub scheme_calls: u64,
    /// Of `kicks` and `interrupts`, those of the sending VM's device (VM-to-VM scenarios
    /// only; the rest are the receiving VM's).
    pub sender_notifications: Option<(u64, u64)>,
}

/// One row of the results (`target/bench/throughput.json` is a list of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// `kloop`, `direct` or `-`.
    pub host_mode: String,
    /// Frames per sync.
    pub batch: u64,
    /// Frame length in bytes.
    pub frame_len: usize,
    /// Frames received (the figures below are per received frame).
    pub frames: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames dropped on the way (accounted: received + dropped = sent).
    pub frames_dropped: u64,
    /// Seconds from the first frame sent to the last received.
    pub elapsed_s: f64,
    /// Million frames received per second.
    pub mpps: f64,
    /// Frame bits received per second / 1e9 (no preamble or FCS).
    pub gbit_s: f64,
    /// Kicks per frame.
    pub kicks_per_packet: f64,
    /// Interrupts per frame.
    pub interrupts_per_packet: f64,
    /// Frame copies per frame.
    pub copies_per_packet: f64,
    /// Scheme calls per frame (0 where no scheme is involved).
    pub scheme_calls_per_frame: f64,
    /// Mpps of every round of this cell, in run order (the row is the best round's).
    #[serde(default)]
    pub mpps_rounds: Vec<f64>,
    /// VM-to-VM scenarios: the kicks and interrupts per frame of the sending VM's device
    /// (the receiving VM's are the totals minus these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_kicks_per_packet: Option<f64>,
    /// See `sender_kicks_per_packet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_interrupts_per_packet: Option<f64>,
}

impl Row {
    fn new(c: &Cell, m: &Measured) -> Self {
        let f = m.received.max(1) as f64;
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let mpps = m.received as f64 / secs / 1e6;
        Self {
            scenario: c.scenario.name().into(),
            host_mode: c.host_mode.name().into(),
            batch: c.batch,
            frame_len: c.frame_len,
            frames: m.received,
            frames_sent: m.sent,
            frames_dropped: m.dropped,
            elapsed_s: secs,
            mpps,
            gbit_s: mpps * 1e6 * c.frame_len as f64 * 8.0 / 1e9,
            kicks_per_packet: m.kicks as f64 / f,
            interrupts_per_packet: m.interrupts as f64 / f,
            copies_per_packet: m.copies as f64 / f,
            scheme_calls_per_frame: m.scheme_calls as f64 / f,
            mpps_rounds: vec![mpps],
            sender_kicks_per_packet: m.sender_notifications.map(|(k, _)| k as f64 / f),
            sender_interrupts_per_packet: m.sender_notifications.map(|(_, i)| i as f64 / f),
        }
    }
}

/// Rounds of a full run: the plan runs this many times, interleaved, and each cell reports its
/// best round (the machine is shared: a round that lost the CPU to another process is noise).
pub const ROUNDS: usize = 2;

/// Merges rows of several rounds: per scenario, host mode, batch and frame length, the row of
/// the round with the highest Mpps, with every round's Mpps in `mpps_rounds`. Order: first
/// appearance.
pub fn best_of_rounds(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for r in rows {
        let same = |o: &&mut Row| {
            o.scenario == r.scenario
                && o.host_mode == r.host_mode
                && o.batch == r.batch
                && o.frame_len == r.frame_len
        };
        match out.iter_mut().find(|o| same(o)) {
            Some(o) => {
                let mut rounds = std::mem::take(&mut o.mpps_rounds);
                rounds.extend(&r.mpps_rounds);
                if r.mpps > o.mpps {
                    *o = r;
                }
                o.mpps_rounds = rounds;
            }
            None => out.push(r),
        }
    }
    out
}

/// Batches of the zero-copy scenarios.
pub const BATCHES: [u64; 6] = [1, 8, 32, 64, 256, 512];
/// Frame lengths.
pub const FRAME_LENS: [usize; 2] = [60, 1514];

/// The cells of a run, interleaved (for each frame length and batch, every scenario and mode
/// in turn, so that a noisy moment hits all of them alike). `quick`: 60-byte frames, batches
/// 1 and 256, kloop mode except for zc-pipe (both), a short time per cell.
pub fn plan(quick: bool) -> Vec<Cell> {
    let (lens, batches, time): (&[usize], &[u64], _) = if quick {
        (&[60], &[1, 256], Duration::from_millis(150))
    } else {
        (&FRAME_LENS, &BATCHES, Duration::from_millis(600))
    };
    let load = Load::time(time);
    let mut cells = Vec::new();
    for &frame_len in lens {
        for &batch in batches {
            let mut add = |scenario, host_mode| {
                cells.push(Cell { scenario, host_mode, batch, frame_len, load });
            };
            add(Scenario::SpscCeiling, HostMode::None);
            for s in [Scenario::ZcTx, Scenario::ZcRx, Scenario::ZcPipe, Scenario::ZcSwitch] {
                add(s, HostMode::Kloop);
                if !quick || s == Scenario::ZcPipe {
                    add(s, HostMode::Direct);
                }
                // Without the IPC hop: VM to VM only (the scenarios the targets name).
                if matches!(s, Scenario::ZcPipe | Scenario::ZcSwitch) {
                    add(s, HostMode::KloopInline);
                    if !quick {
                        add(s, HostMode::DirectInline);
                    }
                }
            }
            // The stack: the frame-per-call device has no batch (one at 1); the batched
            // device at the batches an application flushes after.
            for mode in [HostMode::Kloop, HostMode::Direct] {
                if quick && mode == HostMode::Direct {
                    continue;
                }
                if batch == 1 {
                    add(Scenario::StackNetwork, mode);
                }
                if [1, 32, 256].contains(&batch) {
                    add(Scenario::StackNetmap, mode);
                }
            }
            add(Scenario::VirtioBaseline, HostMode::None);
        }
    }
    cells
}

fn check(c: &Cell) -> Result<(), BenchError> {
    if !(60..=1514).contains(&c.frame_len) {
        return Err(BenchError::Config(format!("frame length {} not in 60..=1514", c.frame_len)));
    }
    if !(1..=512).contains(&c.batch) {
        return Err(BenchError::Config(format!("batch {} not in 1..=512", c.batch)));
    }
    if c.scenario.has_host_mode() == (c.host_mode == HostMode::None) {
        return Err(BenchError::Config(format!(
            "{} takes {}",
            c.scenario,
            if c.scenario.has_host_mode() { "host mode kloop or direct" } else { "no host mode" }
        )));
    }
    if c.load.frames == 0 {
        return Err(BenchError::Config("no frames to send".into()));
    }
    Ok(())
}

/// Runs one cell.
pub fn run_cell(c: &Cell) -> Result<Row, BenchError> {
    check(c)?;
    let m = match c.scenario {
        Scenario::SpscCeiling => spsc::run(&c.load, c.batch, c.frame_len.next_multiple_of(64))?,
        Scenario::ZcTx => zc::tx(c)?,
        Scenario::ZcRx => zc::rx(c)?,
        Scenario::ZcPipe => zc::vm_to_vm(c, zc::Link::Pipe)?,
        Scenario::ZcSwitch => zc::vm_to_vm(c, zc::Link::Switch)?,
        Scenario::StackNetwork => stack::run(c, stack::Device::Network)?,
        Scenario::StackNetmap => stack::run(c, stack::Device::Netmap)?,
        Scenario::VirtioBaseline => run_virtio(c)?,
    };
    Ok(Row::new(c, &m))
}

/// virtio-baseline: [`virtio::run`] takes a frame count, so a short probe sizes the run to the
/// cell's time (a frame-limited cell runs exactly its frames). Queue size 256, or 2 × batch.
fn run_virtio(c: &Cell) -> Result<Measured, BenchError> {
    let params = |frames| virtio::VirtioParams {
        batch: c.batch as usize,
        frame_len: c.frame_len,
        frames,
        // Room for two batches, so that A fills one while the backend drains the other.
        queue_size: (2 * c.batch as u16).next_power_of_two().max(256),
    };
    let go = |frames| virtio::run(&params(frames)).map_err(|e| BenchError::Virtio(e.to_string()));
    let frames = if c.load.frames != u64::MAX {
        c.load.frames
    } else {
        let probe = go(20_000)?;
        let rate = probe.frames_received as f64 / probe.elapsed.as_secs_f64().max(1e-6);
        ((rate * c.load.time.as_secs_f64()) as u64).clamp(4096, 50_000_000)
    };
    let r = go(frames)?;
    Ok(Measured {
        sent: r.frames_sent,
        received: r.frames_received,
        dropped: 0,
        elapsed: r.elapsed,
        kicks: r.kicks,
        interrupts: r.interrupts,
        copies: r.copies,
        scheme_calls: 0,
        sender_notifications: None,
    })
}

/// Where the results go: `<target dir>/bench`. The target directory is `CARGO_TARGET_DIR` if
/// set, else found from the running executable (`<target>/<profile>/[deps/]<exe>`).
pub fn out_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("bench");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.pop(); // the profile directory
    if dir.as_os_str().is_empty() {
        dir = PathBuf::from("target");
    }
    dir.join("bench")
}

/// Writes `rows` as a JSON list to `path` (creating its directory).
pub fn write_json(rows: &[Row], path: &Path) -> Result<(), BenchError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let s = serde_json::to_string_pretty(rows).map_err(|e| BenchError::Io(e.into()))?;
    std::fs::write(path, s + "\n")?;
    Ok(())
}

/// The table header of [`table_line`].
pub fn table_header() -> String {
    format!(
        "{:<16} {:<6} {:>5} {:>5} {:>10} {:>9} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "scenario",
        "host",
        "batch",
        "len",
        "frames",
        "Mpps",
        "Gbit/s",
        "kicks/pkt",
        "irqs/pkt",
        "copies",
        "calls"
    )
}

/// One row as a table line.
pub fn table_line(r: &Row) -> String {
    format!(
        "{:<16} {:<6} {:>5} {:>5} {:>10} {:>9.3} {:>8.2} {:>10.4} {:>10.4} {:>8.2} {:>8.3}",
        r.scenario,
        r.host_mode,
        r.batch,
        r.frame_len,
        r.frames,
        r.mpps,
        r.gbit_s,
        r.kicks_per_packet,
        r.interrupts_per_packet,
        r.copies_per_packet,
        r.scheme_calls_per_frame
    )
}

/// Rows as a table sorted by frame length, scenario, host mode and batch.
pub fn table(rows: &[Row]) -> String {
    let order = |r: &Row| {
        let s = Scenario::ALL.iter().position(|s| s.name() == r.scenario).unwrap_or(99);
        (r.frame_len, s, r.host_mode.clone(), r.batch)
    };
    let mut v: Vec<&Row> = rows.iter().collect();
    v.sort_by_key(|r| order(r));
    let mut out = table_header();
    for r in v {
        out.push('\n');
        out.push_str(&table_line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(scenario: Scenario, host_mode: HostMode, batch: u64, frames: u64) -> Cell {
        Cell { scenario, host_mode, batch, frame_len: 60, load: Load::frames(frames) }
    }

    #[test]
    fn a_row_has_the_keys_of_the_issue() {
        let c = tiny(Scenario::ZcPipe, HostMode::Direct, 256, 1000);
        let m = Measured {
            sent: 1000,
            received: 1000,
            elapsed: Duration::from_millis(1),
            kicks: 5,
            interrupts: 10,
            scheme_calls: 8,
            ..Measured::default()
        };
        let j = serde_json::to_value(vec![Row::new(&c, &m)]).unwrap();
        let r = &j[0];
        for k in [
            "scenario",
            "host_mode",
            "batch",
            "frame_len",
            "mpps",
            "gbit_s",
            "kicks_per_packet",
            "interrupts_per_packet",
            "copies_per_packet",
            "frames",
            "scheme_calls_per_frame",
        ] {
            assert!(r.get(k).is_some(), "missing {k} in {r}");
        }
        assert_eq!(
            (r["scenario"].as_str(), r["host_mode"].as_str()),
            (Some("zc-pipe"), Some("direct"))
        );
        let near = |k: &str, v: f64| (r[k].as_f64().unwrap() - v).abs() < 1e-9;
        assert!(near("mpps", 1.0) && near("gbit_s", 0.48), "{r}");
        assert!(near("kicks_per_packet", 0.005) && near("interrupts_per_packet", 0.01), "{r}");
        assert!(near("copies_per_packet", 0.0) && near("scheme_calls_per_frame", 0.008), "{r}");
        assert!(r.get("sender_kicks_per_packet").is_none(), "no split measured: no key");
        let back: Vec<Row> = serde_json::from_value(j).unwrap();
        assert_eq!(back[0].frames, 1000);
        let split = Measured { sender_notifications: Some((3, 4)), ..m };
        let j = serde_json::to_value(Row::new(&c, &split)).unwrap();
        let near = |k: &str, v: f64| (j[k].as_f64().unwrap() - v).abs() < 1e-9;
        assert!(near("sender_kicks_per_packet", 0.003), "{j}");
        assert!(near("sender_interrupts_per_packet", 0.004), "{j}");
    }

    #[test]
    fn rounds_merge_into_the_best_row() {
        let c = tiny(Scenario::ZcTx, HostMode::Kloop, 8, 10);
        let m = |ms| Measured {
            sent: 10,
            received: 10,
            elapsed: Duration::from_millis(ms),
            ..Measured::default()
        };
        let d = tiny(Scenario::ZcTx, HostMode::Direct, 8, 10);
        let rows = vec![Row::new(&c, &m(2)), Row::new(&d, &m(1)), Row::new(&c, &m(1))];
        let b = best_of_rounds(rows);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].host_mode.as_str(), b[0].elapsed_s), ("kloop", 0.001));
        assert_eq!(b[0].mpps_rounds.len(), 2);
        assert!(b[0].mpps_rounds[0] < b[0].mpps_rounds[1]);
        assert_eq!(b[1].mpps_rounds.len(), 1);
    }

    #[test]
    fn the_plan_covers_the_issue_and_bad_cells_are_refused() {
        let p = plan(false);
        for s in Scenario::ALL {
            assert!(p.iter().any(|c| c.scenario == s), "{s} missing");
        }
        for m in HostMode::PTNET {
            assert_eq!(HostMode::parse(m.name()), Some(m));
        }
        assert_eq!(HostMode::KloopInline.transport(), crate::scheme::host::Transport::Inline);
        assert!(HostMode::KloopInline.kloop() && !HostMode::DirectInline.kloop());
        for b in BATCHES {
            for m in HostMode::PTNET {
                for len in FRAME_LENS {
                    assert!(p.iter().any(|c| c.scenario == Scenario::ZcPipe
                        && c.batch == b
                        && c.host_mode == m
                        && c.frame_len == len));
                }
            }
        }
        assert!(plan(true).len() < p.len());
        assert!(run_cell(&tiny(Scenario::ZcTx, HostMode::None, 1, 10)).is_err());
        assert!(run_cell(&tiny(Scenario::SpscCeiling, HostMode::Kloop, 1, 10)).is_err());
        let mut c = tiny(Scenario::ZcTx, HostMode::Kloop, 1, 10);
        c.frame_len = 59;
        assert!(matches!(run_cell(&c), Err(BenchError::Config(_))));
        assert_eq!(Scenario::parse("zc-switch"), Some(Scenario::ZcSwitch));
    }

    /// Every scenario at a tiny size: frames counted exactly, fields sane (no speed asserted).
    #[test]
    fn every_scenario_moves_exactly_its_frames() {
        let cells = [
            tiny(Scenario::SpscCeiling, HostMode::None, 8, 3000),
            tiny(Scenario::ZcTx, HostMode::Kloop, 32, 3000),
            tiny(Scenario::ZcTx, HostMode::Direct, 1, 500),
            tiny(Scenario::ZcRx, HostMode::Kloop, 32, 3000),
            tiny(Scenario::ZcRx, HostMode::Direct, 8, 1000),
            tiny(Scenario::ZcPipe, HostMode::Kloop, 64, 3000),
            tiny(Scenario::ZcPipe, HostMode::Direct, 64, 3000),
            tiny(Scenario::ZcSwitch, HostMode::Kloop, 32, 3000),
            tiny(Scenario::ZcSwitch, HostMode::Direct, 32, 3000),
            tiny(Scenario::ZcPipe, HostMode::KloopInline, 64, 3000),
            tiny(Scenario::ZcPipe, HostMode::DirectInline, 64, 3000),
            tiny(Scenario::ZcSwitch, HostMode::KloopInline, 32, 3000),
            tiny(Scenario::ZcSwitch, HostMode::DirectInline, 32, 3000),
            tiny(Scenario::StackNetwork, HostMode::Kloop, 1, 1000),
            tiny(Scenario::StackNetwork, HostMode::Direct, 1, 1000),
            tiny(Scenario::StackNetmap, HostMode::Kloop, 32, 3000),
            tiny(Scenario::StackNetmap, HostMode::Direct, 32, 3000),
            tiny(Scenario::VirtioBaseline, HostMode::None, 32, 3000),
        ];
        for c in cells {
            let r = run_cell(&c)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", c.scenario, c.host_mode.name()));
            let what = table_line(&r);
            assert_eq!(r.frames_sent, c.load.frames, "{what}");
            assert_eq!(r.frames + r.frames_dropped, r.frames_sent, "{what}");
            assert!(r.frames > 0 && r.mpps > 0.0 && r.elapsed_s > 0.0, "{what}");
            // Only the switch drops (a full destination ring, as VALE does), and accounts it.
            let switched = [Scenario::ZcSwitch, Scenario::StackNetwork, Scenario::StackNetmap];
            if !switched.contains(&c.scenario) {
                assert_eq!(r.frames_dropped, 0, "{what}");
            }
            assert!(r.kicks_per_packet.is_finite() && r.interrupts_per_packet.is_finite());
            let vm_to_vm = [Scenario::ZcPipe, Scenario::ZcSwitch].contains(&c.scenario);
            match (r.sender_kicks_per_packet, r.sender_interrupts_per_packet) {
                (Some(k), Some(i)) => {
                    assert!(vm_to_vm, "{what}");
                    assert!(k > 0.0 && k <= r.kicks_per_packet, "{what}: sender kicks {k}");
                    assert!(i <= r.interrupts_per_packet, "{what}: sender interrupts {i}");
                }
                (None, None) => assert!(!vm_to_vm, "{what}: no sender split"),
                _ => panic!("{what}: half a split"),
            }
            match c.scenario {
                Scenario::SpscCeiling | Scenario::VirtioBaseline => {
                    assert_eq!(r.scheme_calls_per_frame, 0.0)
                }
                _ => assert!(r.scheme_calls_per_frame > 0.0, "{what}"),
            }
            match c.scenario {
                Scenario::ZcTx | Scenario::ZcPipe | Scenario::SpscCeiling => {
                    assert_eq!(r.copies_per_packet, 0.0, "{what}")
                }
                Scenario::ZcSwitch | Scenario::ZcRx | Scenario::VirtioBaseline => {
                    assert_eq!(r.copies_per_packet, 1.0, "{what}")
                }
                _ => assert!(r.copies_per_packet >= 2.0, "{what}"),
            }
        }
    }
}
