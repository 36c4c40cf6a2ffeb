//! ptnetd: the daemon entry point.
//!
//! On Redox this will be the driver daemon; it is not implemented yet, so it says so and exits 1.
//! On a development host, `cargo run --release` runs the main job on the embedded default, the
//! device model: verified traffic between two VMs across the emulated hypervisor
//! ([`ptnetd::model::demo`]). `--help` lists the options.

#[cfg(not(target_os = "redox"))]
mod host {
    use ptnetd::model::demo::{self, DemoConfig, DEFAULT_FRAMES, DEFAULT_SLOTS, SLOTS_RANGE};
    use std::ffi::OsString;
    use std::fmt;
    use std::path::PathBuf;
    use std::process::ExitCode;

    /// `--help` text.
    pub fn usage() -> String {
        format!(
            "ptnetd {version}: the netmap ptnet driver for Redox, with an emulated ptnet hypervisor

Until the driver exists, the main job runs on the embedded device model: two VMs, each with
a ptnet NIC on a port of one VALE-like switch, brought up by a minimal guest that uses raw
registers and CSB/ring memory. VM1 sends frames of mixed sizes (60..9000 bytes) to VM2, which
checks every sequence number and checksum; the report gives throughput, kicks and interrupts
per packet, drops and ring reinits.

Usage: ptnetd [OPTIONS]

Options:
  --frames N    frames to send (default {DEFAULT_FRAMES})
  --slots N     slots per ring, {min}..={max} (default {DEFAULT_SLOTS})
  --pcap PATH   record the receiving port into a pcap file
  -h, --help    print this help

Exit status: 0 if every frame arrived intact and in order, 1 if anything was lost, corrupted
or failed, 2 on a usage error. Logs go to stderr (RUST_LOG=info or debug for more).
",
            version = env!("CARGO_PKG_VERSION"),
            min = SLOTS_RANGE.start(),
            max = SLOTS_RANGE.end(),
        )
    }

    /// What the command line asks for.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Command {
        /// Run the main job.
        Run(DemoConfig),
        /// Print the usage text.
        Help,
    }

    /// Command line errors (exit code 2).
    #[derive(Debug, PartialEq, Eq)]
    pub enum CliError {
        /// An argument that is not an option.
        Unknown(String),
        /// An option without its value.
        MissingValue(&'static str),
        /// An option with a value it cannot take.
        BadValue {
            /// The option.
            flag: &'static str,
            /// The value given.
            value: String,
            /// What it must be.
            expected: String,
        },
    }

    impl fmt::Display for CliError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Unknown(a) => write!(f, "unknown option '{a}'"),
                Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
                Self::BadValue { flag, value, expected } => {
                    write!(f, "{flag} '{value}': expected {expected}")
                }
            }
        }
    }

    fn number(flag: &'static str, v: OsString, lo: u64, hi: u64) -> Result<u64, CliError> {
        let s = v.to_string_lossy();
        let expected = || format!("a number in {lo}..={hi}");
        s.replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| CliError::BadValue { flag, value: s.to_string(), expected: expected() })
    }

    /// Parses the arguments after the program name. Options take their value as the next
    /// argument or after `=` (`--frames=1000`); digits may be grouped with `_`.
    pub fn parse_args<I>(args: I) -> Result<Command, CliError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        let mut cfg = DemoConfig::default();
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            let text = arg.to_string_lossy().into_owned();
            let (name, inline) = match text.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(OsString::from(v))),
                _ => (text.clone(), None),
            };
            let mut value = |flag: &'static str| {
                inline.clone().or_else(|| it.next()).ok_or(CliError::MissingValue(flag))
            };
            match name.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--frames" => cfg.frames = number("--frames", value("--frames")?, 1, u64::MAX)?,
                "--slots" => {
                    let (lo, hi) = (*SLOTS_RANGE.start() as u64, *SLOTS_RANGE.end() as u64);
                    cfg.slots = number("--slots", value("--slots")?, lo, hi)? as u32;
                }
                // Taken as given (also a non-UTF-8 path).
                "--pcap" => cfg.pcap = Some(PathBuf::from(value("--pcap")?)),
                _ => return Err(CliError::Unknown(text)),
            }
        }
        Ok(Command::Run(cfg))
    }

    pub fn main() -> ExitCode {
        let env = env_logger::Env::default().default_filter_or("warn");
        env_logger::Builder::from_env(env).init();
        log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
        let cfg = match parse_args(std::env::args_os().skip(1)) {
            Ok(Command::Run(cfg)) => cfg,
            Ok(Command::Help) => {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ptnetd: {e}\ntry 'ptnetd --help'");
                return ExitCode::from(2);
            }
        };
        match demo::run(&cfg) {
            Ok(report) => {
                println!("{report}");
                if report.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("ptnetd: {e}");
                ExitCode::FAILURE
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn parse(args: &[&str]) -> Result<Command, CliError> {
            parse_args(args.iter().copied())
        }

        fn run_cfg(args: &[&str]) -> DemoConfig {
            match parse(args) {
                Ok(Command::Run(cfg)) => cfg,
                other => panic!("{args:?}: {other:?}"),
            }
        }

        #[test]
        fn defaults() {
            assert_eq!(run_cfg(&[]), DemoConfig::default());
            let d = DemoConfig::default();
            assert_eq!((d.frames, d.slots, d.pcap), (200_000, 1024, None));
        }

        #[test]
        fn options_with_separate_and_inline_values() {
            let c = run_cfg(&["--frames", "1_000", "--slots=256", "--pcap", "/tmp/x.pcap"]);
            assert_eq!(c.frames, 1000);
            assert_eq!(c.slots, 256);
            assert_eq!(c.pcap, Some(PathBuf::from("/tmp/x.pcap")));
            assert_eq!(run_cfg(&["--pcap=a=b.pcap"]).pcap, Some(PathBuf::from("a=b.pcap")));
            assert_eq!(run_cfg(&["--frames", "5", "--frames", "7"]).frames, 7, "last one wins");
        }

        #[test]
        fn help() {
            assert_eq!(parse(&["--help"]), Ok(Command::Help));
            assert_eq!(parse(&["--frames", "3", "-h"]), Ok(Command::Help));
            let u = usage();
            for opt in ["--frames N", "--slots N", "--pcap PATH", "--help", "200000", "1024"] {
                assert!(u.contains(opt), "usage mentions {opt}");
            }
        }

        #[test]
        fn errors() {
            assert_eq!(parse(&["--bogus"]), Err(CliError::Unknown("--bogus".into())));
            assert_eq!(parse(&["frames"]), Err(CliError::Unknown("frames".into())));
            assert_eq!(parse(&["--frames"]), Err(CliError::MissingValue("--frames")));
            assert_eq!(parse(&["--pcap"]), Err(CliError::MissingValue("--pcap")));
            assert!(matches!(parse(&["--frames", "x"]), Err(CliError::BadValue { .. })));
            assert!(matches!(parse(&["--frames", "0"]), Err(CliError::BadValue { .. })));
            assert!(matches!(parse(&["--frames", "-1"]), Err(CliError::BadValue { .. })));
            let e = parse(&["--slots", "8"]).unwrap_err();
            assert_eq!(e.to_string(), "--slots '8': expected a number in 32..=16384");
            assert!(matches!(parse(&["--slots=99999"]), Err(CliError::BadValue { .. })));
        }

        #[test]
        fn parsed_configs_validate() {
            for args in [&["--slots", "32"][..], &["--slots", "16384", "--frames", "1"]] {
                run_cfg(args).validate().unwrap();
            }
        }
    }
}

#[cfg(not(target_os = "redox"))]
fn main() -> std::process::ExitCode {
    host::main()
}

#[cfg(target_os = "redox")]
fn main() -> std::process::ExitCode {
    log::error!("ptnetd {}: the redox daemon is not implemented yet", env!("CARGO_PKG_VERSION"));
    eprintln!("ptnetd {}: the redox daemon is not implemented yet", env!("CARGO_PKG_VERSION"));
    std::process::ExitCode::FAILURE
}
