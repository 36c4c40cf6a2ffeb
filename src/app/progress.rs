//! Progress of a long job, phase by phase: a bar per phase on a terminal ([`Bars`], on
//! `indicatif`), plain lines otherwise ([`Lines`]: one when a phase starts, at most one a
//! second while it runs, one when it ends), or nothing ([`Quiet`]). [`for_stderr`] picks bars
//! when stderr is a terminal and lines when it is not (a log, a pipe, CI), so stdout keeps only
//! the report or the JSON object.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown in MiB).
    Bytes,
    /// Frames.
    Frames,
}

/// Receives the progress of a job.
pub trait Progress {
    /// Phase `name` starts; it is done at `total` units.
    fn begin(&mut self, name: &str, total: u64, unit: Unit);
    /// `done` units of the current phase are done (cheap: call it as often as you like).
    fn update(&mut self, done: u64);
    /// The current phase ends; `summary` is its one-line result.
    fn end(&mut self, summary: &str);
}

/// No progress at all.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&mut self, _: &str, _: u64, _: Unit) {}
    fn update(&mut self, _: u64) {}
    fn end(&mut self, _: &str) {}
}

fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        Unit::Frames => format!("{n} frames"),
    }
}

/// Plain lines into `W`: `NAME: started (TOTAL)`, `NAME: P% (DONE of TOTAL)` at most every
/// `every`, `NAME: SUMMARY`.
#[derive(Debug)]
pub struct Lines<W: Write> {
    out: W,
    every: Duration,
    name: String,
    total: u64,
    unit: Unit,
    last: Instant,
}

impl<W: Write> Lines<W> {
    /// Lines into `out`, a progress line at most every `every`.
    pub fn new(out: W, every: Duration) -> Self {
        Self { out, every, name: String::new(), total: 0, unit: Unit::Frames, last: Instant::now() }
    }

    /// The writer back (the tests read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, s: &str) {
        // Progress is advisory: a closed stderr must not stop the job.
        let _ = writeln!(self.out, "{}: {s}", self.name);
        let _ = self.out.flush();
    }
}

impl<W: Write> Progress for Lines<W> {
    fn begin(&mut self, name: &str, total: u64, unit: Unit) {
        (self.name, self.total, self.unit) = (name.to_string(), total, unit);
        self.last = Instant::now();
        self.line(&format!("started ({})", amount(total, unit)));
    }

    fn update(&mut self, done: u64) {
        if self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let pct = done.min(self.total) as f64 * 100.0 / self.total.max(1) as f64;
        let (d, t) = (amount(done, self.unit), amount(self.total, self.unit));
        self.line(&format!("{pct:.0}% ({d} of {t})"));
    }

    fn end(&mut self, summary: &str) {
        self.line(summary);
    }
}

/// A bar per phase on stderr (a terminal).
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn begin(&mut self, name: &str, total: u64, unit: Unit) {
        let tmpl = match unit {
            Unit::Bytes => "{prefix:>10} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
            Unit::Frames => "{prefix:>10} [{bar:40}] {human_pos}/{human_len} frames {per_sec} {eta}",
        };
        let style = ProgressStyle::with_template(tmpl)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(name.to_string());
        self.bar = Some(bar);
    }

    fn update(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn end(&mut self, summary: &str) {
        if let Some(b) = self.bar.take() {
            let name = b.prefix();
            b.finish_and_clear();
            eprintln!("{name:>10} {summary}");
        }
    }
}

/// Bars if stderr is a terminal, else a line a second on stderr.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::new(std::io::stderr(), Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_report_at_most_each_interval_and_end() {
        let mut p = Lines::new(Vec::new(), Duration::from_secs(3600));
        p.begin("stack", 4 << 20, Unit::Bytes);
        for i in 0..1000 {
            p.update(i);
        }
        p.end("PASS 1.0 Mbit/s");
        let s = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(s, "stack: started (4.0 MiB)\nstack: PASS 1.0 Mbit/s\n");

        let mut p = Lines::new(Vec::new(), Duration::ZERO);
        p.begin("zero-copy", 200, Unit::Frames);
        p.update(50);
        p.update(500); // over the total: clamped to 100%
        p.end("done");
        let s = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(
            s.lines().collect::<Vec<_>>(),
            [
                "zero-copy: started (200 frames)",
                "zero-copy: 25% (50 frames of 200 frames)",
                "zero-copy: 100% (500 frames of 200 frames)",
                "zero-copy: done",
            ]
        );
    }
}
