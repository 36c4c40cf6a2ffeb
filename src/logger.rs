//! A small `log` backend writing one line per record to standard error, for the daemon on Redox
//! (where `env_logger` is not used) and anywhere else a dependency-free logger is wanted. The
//! level comes from `RUST_LOG` (`error`, `warn`, `info`, `debug`, `trace`; default `info`).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            let tag = match r.level() {
                Level::Error => "ERROR",
                Level::Warn => "WARN",
                Level::Info => "INFO",
                Level::Debug => "DEBUG",
                Level::Trace => "TRACE",
            };
            let _ = writeln!(std::io::stderr().lock(), "[{tag} {}] {}", r.target(), r.args());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Parses a `RUST_LOG`-style level; unknown or empty values give `Info`.
pub fn parse_level(s: &str) -> LevelFilter {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger (once; later calls do nothing).
pub fn init() {
    let level = parse_level(&std::env::var("RUST_LOG").unwrap_or_default());
    let logger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_with_info_as_default() {
        assert_eq!(parse_level("debug"), LevelFilter::Debug);
        assert_eq!(parse_level(" WARN "), LevelFilter::Warn);
        assert_eq!(parse_level(""), LevelFilter::Info);
        assert_eq!(parse_level("bogus"), LevelFilter::Info);
        assert_eq!(parse_level("off"), LevelFilter::Off);
    }
}
