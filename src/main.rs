//! ptnetd: the daemon entry point.
//!
//! | where | command | what |
//! |---|---|---|
//! | host | `ptnetd` | the main job on the embedded device model ([`ptnetd::model::demo`]): verified traffic between two VMs |
//! | host | `ptnetd --selftest N` | the zero-copy self test ([`ptnetd::selftest`]) against an in-process model VM whose port reflects every frame |
//! | Linux guest | `ptnetd --linux [--pci BDF] [--selftest N]` | the driver on a real ptnet NIC through sysfs ([`ptnetd::platform::linux`]): attach, start line, optional self test, shutdown |
//! | Redox | `ptnetd [--selftest N]` (from pcid-spawner) | attach, readiness to the spawner, the self test or (without one) stay until the device goes away, shutdown |
//!
//! `--vnet` asks for the virtio-net header; `--timeout S` bounds the self test. Parsing is manual
//! (no dependencies); `--help` lists everything. Exit status: 0 on success, 1 on failure, 2 on a
//! usage error. Logs go to stderr: `env_logger` on the host (`RUST_LOG`, default `info`), the
//! crate's own logger on Redox. Lines whose message starts with `ptnetd: ` (the start line, the
//! self-test verdict) are printed bare on the host, so scripts can match them at line start.

use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::platform::Platform;
use ptnetd::selftest;
use std::process::ExitCode;

/// Command-line pieces shared by every target (pure; tested on the host).
#[cfg_attr(not(target_os = "redox"), allow(dead_code))]
mod cli {
    use std::ffi::OsString;
    use std::fmt;
    use std::time::Duration;

    /// Default bound of a self test.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Longest accepted `--timeout`.
    pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

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
        /// Options that do not go together (or an option outside its mode).
        Conflict(String),
    }

    impl fmt::Display for CliError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Unknown(a) => write!(f, "unknown option '{a}'"),
                Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
                Self::BadValue { flag, value, expected } => {
                    write!(f, "{flag} '{value}': expected {expected}")
                }
                Self::Conflict(s) => write!(f, "{s}"),
            }
        }
    }

    /// A number in `lo..=hi`; digits may be grouped with `_`.
    pub fn number(flag: &'static str, v: OsString, lo: u64, hi: u64) -> Result<u64, CliError> {
        let s = v.to_string_lossy();
        let expected = || format!("a number in {lo}..={hi}");
        s.replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| CliError::BadValue { flag, value: s.to_string(), expected: expected() })
    }

    /// A positive number of seconds (decimals allowed), at most a day.
    pub fn seconds(flag: &'static str, v: OsString) -> Result<Duration, CliError> {
        let s = v.to_string_lossy();
        s.parse::<f64>()
            .ok()
            .filter(|x| *x > 0.0 && *x <= MAX_TIMEOUT_SECS)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| CliError::BadValue {
                flag,
                value: s.to_string(),
                expected: format!("seconds, more than 0 and at most {MAX_TIMEOUT_SECS}"),
            })
    }

    /// The arguments as options: `--name value` or `--name=value`.
    pub struct Flags<I: Iterator<Item = OsString>> {
        it: I,
    }

    /// One option: its text as given, its name, and a value given after `=`.
    pub struct Flag {
        /// The argument as given.
        pub text: String,
        /// The name (before any `=`).
        pub name: String,
        inline: Option<OsString>,
    }

    impl<I: Iterator<Item = OsString>> Flags<I> {
        /// Wraps the arguments after the program name.
        pub fn new<A>(args: A) -> Self
        where
            A: IntoIterator<IntoIter = I>,
        {
            Self { it: args.into_iter() }
        }

        /// The next option.
        pub fn next_flag(&mut self) -> Option<Flag> {
            let text = self.it.next()?.to_string_lossy().into_owned();
            let (name, inline) = match text.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(OsString::from(v))),
                _ => (text.clone(), None),
            };
            Some(Flag { text, name, inline })
        }

        /// The value of `flag`: after `=`, else the next argument (taken as given, also a
        /// non-UTF-8 path).
        pub fn value(&mut self, flag: &mut Flag, name: &'static str) -> Result<OsString, CliError> {
            flag.inline.take().or_else(|| self.it.next()).ok_or(CliError::MissingValue(name))
        }
    }

    impl Flag {
        /// Rejects a value given after `=` to an option that takes none.
        pub fn no_value(&self) -> Result<(), CliError> {
            match &self.inline {
                None => Ok(()),
                Some(_) => Err(CliError::Unknown(self.text.clone())),
            }
        }
    }

    /// What the driver is asked to do once attached.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DriverOpts {
        /// Run the self test with this many frames.
        pub selftest: Option<u64>,
        /// Negotiate the virtio-net header.
        pub vnet: bool,
        /// Bound of the self test.
        pub timeout: Duration,
    }

    impl Default for DriverOpts {
        fn default() -> Self {
            Self { selftest: None, vnet: false, timeout: DEFAULT_TIMEOUT }
        }
    }

    /// `--selftest N`: 1..=[`ptnetd::selftest::MAX_FRAMES`].
    pub fn selftest_frames(v: OsString) -> Result<u64, CliError> {
        number("--selftest", v, 1, ptnetd::selftest::MAX_FRAMES)
    }

    /// What the Redox daemon's command line asks for.
    #[derive(Debug, PartialEq, Eq)]
    pub enum DaemonCommand {
        /// Attach (and maybe run the self test).
        Run(DriverOpts),
        /// Print the usage text.
        Help,
    }

    /// The daemon's `--help` text (Redox).
    pub fn daemon_usage() -> String {
        format!(
            "ptnetd {version}: the netmap ptnet driver for Redox (started by pcid-spawner for 1b36:000d)

Usage: ptnetd [OPTIONS]

Attaches to the ptnet NIC of PCID_CLIENT_CHANNEL and its memdev, logs the start line, signals
readiness, then runs the self test if asked and shuts the device down; without --selftest it
stays until the device goes away.

Options:
  --selftest N  send N frames through TX ring 0 and expect them back on the first RX ring
                (the host port must reflect them, or a switch with a reflect endpoint at
                {peer} must send them back; other frames are counted as foreign);
                1..={max}
  --timeout S   bound of the self test in seconds (default {timeout})
  --vnet        ask for the 12-byte virtio-net header
  -h, --help    print this help

Exit status: 0 on success, 1 on failure, 2 on a usage error.
",
            version = env!("CARGO_PKG_VERSION"),
            max = ptnetd::selftest::MAX_FRAMES,
            timeout = DEFAULT_TIMEOUT.as_secs(),
            peer = ptnetd::selftest::mac_string(ptnetd::selftest::PEER_MAC),
        )
    }

    /// Parses the Redox daemon's arguments (as pcid-spawner passes them from its config).
    pub fn parse_daemon_args<A>(args: A) -> Result<DaemonCommand, CliError>
    where
        A: IntoIterator,
        A::Item: Into<OsString>,
    {
        let mut opts = DriverOpts::default();
        let mut timeout_given = false;
        let mut flags = Flags::new(args.into_iter().map(Into::into));
        while let Some(mut f) = flags.next_flag() {
            match f.name.as_str() {
                "-h" | "--help" => return Ok(DaemonCommand::Help),
                "--selftest" => {
                    opts.selftest = Some(selftest_frames(flags.value(&mut f, "--selftest")?)?)
                }
                "--timeout" => {
                    opts.timeout = seconds("--timeout", flags.value(&mut f, "--timeout")?)?;
                    timeout_given = true;
                }
                "--vnet" => {
                    f.no_value()?;
                    opts.vnet = true;
                }
                _ => return Err(CliError::Unknown(f.text)),
            }
        }
        if timeout_given && opts.selftest.is_none() {
            return Err(CliError::Conflict("--timeout applies to --selftest".into()));
        }
        Ok(DaemonCommand::Run(opts))
    }
}

/// Attaches the driver on `plat` (which logs the start line `ptnetd: <info>`), calls
/// `attached`, runs the self test if asked, and shuts down. `true` if everything succeeded.
fn drive<P: Platform>(
    plat: &mut P,
    opts: &cli::DriverOpts,
    attached: impl FnOnce(&mut Ptnet<P>, &P),
) -> bool {
    let cfg = DriverConfig { vnet_hdr: opts.vnet, ..DriverConfig::default() };
    let mut drv = match Ptnet::attach(plat, cfg) {
        Ok(d) => d,
        Err(e) => {
            log::error!("attach failed: {e}");
            return false;
        }
    };
    attached(&mut drv, plat);
    let ok = opts.selftest.is_none_or(|n| selftest::run(&mut drv, plat, n, opts.timeout).passed());
    match drv.shutdown() {
        Ok(()) => ok,
        Err(e) => {
            log::error!("shutdown failed: {e}");
            false
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(not(target_os = "redox"))]
mod host {
    use super::cli::{self, CliError, DriverOpts, Flags};
    use super::{drive, exit};
    use ptnetd::model::demo::{self, DemoConfig, DEFAULT_FRAMES, DEFAULT_SLOTS, SLOTS_RANGE};
    use ptnetd::model::memory::{MemConfig, NetmapMemory};
    use ptnetd::model::port::{NmPort, PortSpec, Reflector};
    use ptnetd::model::ptnet::{Netdev, PtnetConfig};
    use ptnetd::model::vm::{PciFunction, Vm};
    use ptnetd::platform::sim::SimPlatform;
    use std::ffi::OsString;
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::Arc;

    /// `--help` text.
    pub fn usage() -> String {
        format!(
            "ptnetd {version}: the netmap ptnet driver for Redox, with an emulated ptnet hypervisor

By default the main job runs on the embedded device model: two VMs, each with a ptnet NIC on a
port of one VALE-like switch, brought up by the driver core. VM1 sends frames of mixed sizes
(60..9000 bytes) to VM2 through the driver's copy path; VM2 checks every sequence number and
checksum; the report gives throughput, kicks and interrupts per packet, drops and ring reinits.

Usage: ptnetd [OPTIONS]
       ptnetd --selftest N [--slots N] [--vnet] [--timeout S]
       ptnetd --linux [--pci BDF] [--selftest N] [--vnet] [--timeout S]

Modes:
  (default)     the main job on the embedded model
  --selftest N  the zero-copy self test: N frames (1..={max_frames}) through TX ring 0 in netmap
                mode, each expected back intact and in order on the first RX ring; against an
                in-process model VM whose port reflects every frame (with --linux: against the
                real device, whose host port must reflect, or sit on a switch with a reflect
                endpoint: frames go to {peer}; frames not ours are counted as
                foreign, not failed). Logs 'ptnetd: selftest PASS|FAIL ...'
  --linux       drive a real ptnet NIC from a Linux guest (root): sysfs config space and BARs,
                DMA from /proc/self/pagemap, polling instead of interrupts; attach, log the start
                line 'ptnetd: <nic> mac ... rings ...', run --selftest if given, shut down

Options:
  --frames N    main job: frames to send (default {DEFAULT_FRAMES})
  --slots N     main job and model self test: slots per ring, {min}..={max} (default {DEFAULT_SLOTS})
  --pcap PATH   main job: record the receiving port into a pcap file
  --pci BDF     --linux: the ptnet function, e.g. 0000:00:03.0 (default: the first 1b36:000d
                with a network class under /sys/bus/pci/devices)
  --vnet        --linux or --selftest: ask for the 12-byte virtio-net header
  --timeout S   --selftest: give up after S seconds (default {timeout})
  -h, --help    print this help

Exit status: 0 if every frame arrived intact and in order (or the NIC attached and shut down
cleanly), 1 if anything was lost, corrupted or failed, 2 on a usage error. Logs go to stderr
(RUST_LOG=debug for more, default info).
",
            version = env!("CARGO_PKG_VERSION"),
            min = SLOTS_RANGE.start(),
            max = SLOTS_RANGE.end(),
            max_frames = ptnetd::selftest::MAX_FRAMES,
            timeout = cli::DEFAULT_TIMEOUT.as_secs(),
            peer = ptnetd::selftest::mac_string(ptnetd::selftest::PEER_MAC),
        )
    }

    /// What the command line asks for.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Command {
        /// Run the main job.
        Run(DemoConfig),
        /// The self test against an in-process model VM with a reflector port.
        Selftest {
            /// Frames.
            frames: u64,
            /// Slots per ring of the model port.
            slots: u32,
            /// vnet header and timeout (`selftest` is `Some(frames)`).
            opts: DriverOpts,
        },
        /// The driver on a real NIC in a Linux guest.
        Linux {
            /// The NIC's PCI address, if given.
            pci: Option<String>,
            /// Self test, vnet header, timeout.
            opts: DriverOpts,
        },
        /// Print the usage text.
        Help,
    }

    /// `--pci`: a PCI address (checked with the Linux platform's parser where it exists).
    fn pci_address(v: OsString) -> Result<String, CliError> {
        let s = v.to_string_lossy().into_owned();
        #[cfg(target_os = "linux")]
        let ok = ptnetd::platform::linux::Bdf::parse(&s).is_some();
        #[cfg(not(target_os = "linux"))]
        let ok = !s.is_empty();
        if ok {
            Ok(s)
        } else {
            Err(CliError::BadValue {
                flag: "--pci",
                value: s,
                expected: "a PCI address DDDD:BB:DD.F".into(),
            })
        }
    }

    /// Parses the arguments after the program name. Options take their value as the next
    /// argument or after `=` (`--frames=1000`); digits may be grouped with `_`; the last of a
    /// repeated option wins; an option outside its mode is a [`CliError::Conflict`].
    pub fn parse_args<I>(args: I) -> Result<Command, CliError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        let mut cfg = DemoConfig::default();
        let mut opts = DriverOpts::default();
        let (mut linux, mut pci) = (false, None);
        let mut seen: Vec<&'static str> = Vec::new();
        let mut flags = Flags::new(args.into_iter().map(Into::into));
        while let Some(mut f) = flags.next_flag() {
            let name: &'static str = match f.name.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--frames" => {
                    cfg.frames =
                        cli::number("--frames", flags.value(&mut f, "--frames")?, 1, u64::MAX)?;
                    "--frames"
                }
                "--slots" => {
                    let (lo, hi) = (*SLOTS_RANGE.start() as u64, *SLOTS_RANGE.end() as u64);
                    cfg.slots =
                        cli::number("--slots", flags.value(&mut f, "--slots")?, lo, hi)? as u32;
                    "--slots"
                }
                "--pcap" => {
                    cfg.pcap = Some(PathBuf::from(flags.value(&mut f, "--pcap")?));
                    "--pcap"
                }
                "--selftest" => {
                    opts.selftest = Some(cli::selftest_frames(flags.value(&mut f, "--selftest")?)?);
                    "--selftest"
                }
                "--timeout" => {
                    opts.timeout = cli::seconds("--timeout", flags.value(&mut f, "--timeout")?)?;
                    "--timeout"
                }
                "--vnet" => {
                    f.no_value()?;
                    opts.vnet = true;
                    "--vnet"
                }
                "--linux" => {
                    f.no_value()?;
                    linux = true;
                    "--linux"
                }
                "--pci" => {
                    pci = Some(pci_address(flags.value(&mut f, "--pci")?)?);
                    "--pci"
                }
                _ => return Err(CliError::Unknown(f.text)),
            };
            seen.push(name);
        }
        let given = |names: &[&'static str]| names.iter().copied().find(|n| seen.contains(n));
        let conflict = |flag: &str, why: &str| Err(CliError::Conflict(format!("{flag} {why}")));
        if linux {
            if let Some(flag) = given(&["--frames", "--slots", "--pcap"]) {
                return conflict(flag, "applies to the embedded model, not to --linux");
            }
            if opts.selftest.is_none() && seen.contains(&"--timeout") {
                return conflict("--timeout", "applies to --selftest");
            }
            return Ok(Command::Linux { pci, opts });
        }
        if seen.contains(&"--pci") {
            return conflict("--pci", "needs --linux");
        }
        match opts.selftest {
            Some(frames) => {
                if let Some(flag) = given(&["--frames", "--pcap"]) {
                    return conflict(flag, "applies to the main job, not to --selftest");
                }
                Ok(Command::Selftest { frames, slots: cfg.slots, opts })
            }
            None => match given(&["--vnet", "--timeout"]) {
                Some(flag) => conflict(flag, "applies to --selftest or --linux"),
                None => Ok(Command::Run(cfg)),
            },
        }
    }

    /// The host logger: `env_logger` with `RUST_LOG` (default `info`); messages starting with
    /// `ptnetd: ` bare, others as `[LEVEL target] message`.
    fn init_logging() {
        let env = env_logger::Env::default().default_filter_or("info");
        env_logger::Builder::from_env(env)
            .format(|buf, r| {
                let msg = r.args().to_string();
                if msg.starts_with("ptnetd: ") {
                    writeln!(buf, "{msg}")
                } else {
                    writeln!(buf, "[{} {}] {msg}", r.level(), r.target())
                }
            })
            .init();
    }

    /// The self test against an in-process VM: one ptnet NIC (one ring each way of `slots`
    /// slots) on a port whose backend reflects every frame, the driver on [`SimPlatform`].
    pub fn model_selftest(frames: u64, slots: u32, opts: &DriverOpts) -> bool {
        let built = (|| -> Result<SimPlatform, String> {
            let mem = NetmapMemory::new(1, MemConfig::for_ports(1, 2, slots, 64))
                .map_err(|e| format!("netmap memory: {e}"))?;
            let port = NmPort::new(Arc::new(mem), &PortSpec::new("reflector", 1, slots))
                .map_err(|e| format!("port: {e}"))?;
            port.set_backend(Reflector::new(&port));
            let vm = Vm::new(64).map_err(|e| format!("vm: {e}"))?;
            let dev = vm
                .add_ptnet(Netdev::passthrough(port), PtnetConfig::default())
                .map_err(|e| format!("ptnet device: {e}"))?;
            let slot = vm
                .functions()
                .iter()
                .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, &dev)))
                .map(|(s, _)| *s)
                .ok_or("the ptnet function is not on the bus")?;
            Ok(SimPlatform::new(vm, slot))
        })();
        match built {
            Ok(mut plat) => {
                let opts = DriverOpts { selftest: Some(frames), ..opts.clone() };
                drive(&mut plat, &opts, |_, _| {})
            }
            Err(e) => {
                log::error!("model VM: {e}");
                false
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn linux(pci: Option<&str>, opts: &DriverOpts) -> bool {
        use ptnetd::platform::linux::LinuxPlatform;
        match LinuxPlatform::new(pci) {
            Ok(mut plat) => drive(&mut plat, opts, |_, _| {}),
            Err(e) => {
                log::error!("linux platform: {e}");
                false
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn linux(_pci: Option<&str>, _opts: &DriverOpts) -> bool {
        log::error!("--linux: this build is not for Linux");
        false
    }

    pub fn main() -> ExitCode {
        init_logging();
        log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
        let cmd = match parse_args(std::env::args_os().skip(1)) {
            Ok(cmd) => cmd,
            Err(e) => {
                eprintln!("ptnetd: {e}\ntry 'ptnetd --help'");
                return ExitCode::from(2);
            }
        };
        let cfg = match cmd {
            Command::Help => {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
            Command::Selftest { frames, slots, opts } => {
                return exit(model_selftest(frames, slots, &opts));
            }
            Command::Linux { pci, opts } => return exit(linux(pci.as_deref(), &opts)),
            Command::Run(cfg) => cfg,
        };
        match demo::run(&cfg) {
            Ok(report) => {
                println!("{report}");
                exit(report.is_clean())
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
        use cli::{DaemonCommand, DEFAULT_TIMEOUT};
        use std::time::Duration;

        fn parse(args: &[&str]) -> Result<Command, CliError> {
            parse_args(args.iter().copied())
        }

        fn run_cfg(args: &[&str]) -> DemoConfig {
            match parse(args) {
                Ok(Command::Run(cfg)) => cfg,
                other => panic!("{args:?}: {other:?}"),
            }
        }

        fn conflict(args: &[&str]) -> String {
            match parse(args) {
                Err(CliError::Conflict(s)) => s,
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
            assert_eq!(parse(&["--linux", "--help"]), Ok(Command::Help));
            let u = usage();
            for opt in ["--frames N", "--slots N", "--pcap PATH", "--help", "200000", "1024"] {
                assert!(u.contains(opt), "usage mentions {opt}");
            }
            for opt in ["--selftest N", "--linux", "--pci BDF", "--vnet", "--timeout S", "120"] {
                assert!(u.contains(opt), "usage mentions {opt}");
            }
            let d = cli::daemon_usage();
            for opt in ["--selftest N", "--timeout S", "--vnet", "--help"] {
                assert!(d.contains(opt), "daemon usage mentions {opt}");
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

        #[test]
        fn selftest_on_the_embedded_model() {
            let st = |frames, slots, vnet, timeout| Command::Selftest {
                frames,
                slots,
                opts: DriverOpts { selftest: Some(frames), vnet, timeout },
            };
            assert_eq!(parse(&["--selftest", "1000"]), Ok(st(1000, 1024, false, DEFAULT_TIMEOUT)));
            assert_eq!(
                parse(&["--selftest=1_000_000", "--slots", "64", "--vnet", "--timeout", "2.5"]),
                Ok(st(1_000_000, 64, true, Duration::from_millis(2500)))
            );
            assert_eq!(parse(&["--selftest"]), Err(CliError::MissingValue("--selftest")));
            for bad in ["0", "x", "100000001", "-5"] {
                assert!(
                    matches!(
                        parse(&["--selftest", bad]),
                        Err(CliError::BadValue { flag: "--selftest", .. })
                    ),
                    "{bad}"
                );
            }
            for bad in ["0", "-1", "x", "86401", "NaN"] {
                assert!(
                    matches!(
                        parse(&["--selftest", "1", "--timeout", bad]),
                        Err(CliError::BadValue { flag: "--timeout", .. })
                    ),
                    "{bad}"
                );
            }
            assert_eq!(
                conflict(&["--selftest", "5", "--frames", "5"]),
                "--frames applies to the main job, not to --selftest"
            );
            assert!(conflict(&["--pcap", "x", "--selftest", "5"]).starts_with("--pcap"));
            assert_eq!(conflict(&["--vnet"]), "--vnet applies to --selftest or --linux");
            assert!(conflict(&["--timeout", "3"]).starts_with("--timeout"));
            assert_eq!(
                parse(&["--vnet=1", "--selftest", "1"]),
                Err(CliError::Unknown("--vnet=1".into()))
            );
        }

        #[test]
        fn linux_mode() {
            let lin = |pci: Option<&str>, selftest, vnet, timeout| Command::Linux {
                pci: pci.map(String::from),
                opts: DriverOpts { selftest, vnet, timeout },
            };
            assert_eq!(parse(&["--linux"]), Ok(lin(None, None, false, DEFAULT_TIMEOUT)));
            assert_eq!(
                parse(&["--linux", "--pci", "0000:00:03.0", "--selftest", "100000", "--vnet"]),
                Ok(lin(Some("0000:00:03.0"), Some(100_000), true, DEFAULT_TIMEOUT))
            );
            assert_eq!(
                parse(&["--pci=00:04.0", "--selftest=7", "--timeout=60", "--linux"]),
                Ok(lin(Some("00:04.0"), Some(7), false, Duration::from_secs(60))),
                "order does not matter"
            );
            assert_eq!(parse(&["--linux", "--pci"]), Err(CliError::MissingValue("--pci")));
            #[cfg(target_os = "linux")]
            for bad in ["nonsense", "0000:00:20.0", "0000:00:03"] {
                assert!(
                    matches!(
                        parse(&["--linux", "--pci", bad]),
                        Err(CliError::BadValue { flag: "--pci", .. })
                    ),
                    "{bad}"
                );
            }
            assert_eq!(conflict(&["--pci", "00:03.0"]), "--pci needs --linux");
            assert_eq!(
                conflict(&["--linux", "--frames", "5"]),
                "--frames applies to the embedded model, not to --linux"
            );
            assert!(conflict(&["--linux", "--slots", "64"]).starts_with("--slots"));
            assert_eq!(conflict(&["--linux", "--timeout", "5"]), "--timeout applies to --selftest");
            assert_eq!(parse(&["--linux=yes"]), Err(CliError::Unknown("--linux=yes".into())));
        }

        #[test]
        fn daemon_arguments() {
            let p = |args: &[&str]| cli::parse_daemon_args(args.iter().copied());
            let run = |selftest, vnet, timeout| {
                Ok(DaemonCommand::Run(DriverOpts { selftest, vnet, timeout }))
            };
            assert_eq!(p(&[]), run(None, false, DEFAULT_TIMEOUT));
            assert_eq!(
                p(&["--selftest", "10_000", "--vnet"]),
                run(Some(10_000), true, DEFAULT_TIMEOUT)
            );
            assert_eq!(
                p(&["--selftest=3", "--timeout", "0.5"]),
                run(Some(3), false, Duration::from_millis(500))
            );
            assert_eq!(p(&["-h"]), Ok(DaemonCommand::Help));
            assert_eq!(p(&["--linux"]), Err(CliError::Unknown("--linux".into())));
            assert_eq!(p(&["--frames", "3"]), Err(CliError::Unknown("--frames".into())));
            assert_eq!(p(&["--selftest"]), Err(CliError::MissingValue("--selftest")));
            assert!(matches!(p(&["--selftest", "0"]), Err(CliError::BadValue { .. })));
            assert!(matches!(p(&["--timeout", "3"]), Err(CliError::Conflict(_))));
        }

        #[test]
        fn the_model_selftest_passes() {
            let opts = DriverOpts::default();
            assert!(model_selftest(2000, 256, &opts));
            assert!(model_selftest(100, 32, &DriverOpts { vnet: true, ..opts }));
        }
    }
}

#[cfg(not(target_os = "redox"))]
fn main() -> ExitCode {
    host::main()
}

#[cfg(target_os = "redox")]
fn main() -> ExitCode {
    use ptnetd::platform::redox::{notify_ready, RedoxPlatform};
    ptnetd::logger::init();
    log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
    let opts = match cli::parse_daemon_args(std::env::args_os().skip(1)) {
        Ok(cli::DaemonCommand::Run(opts)) => opts,
        Ok(cli::DaemonCommand::Help) => {
            print!("{}", cli::daemon_usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            log::error!("{e} (try 'ptnetd --help')");
            return ExitCode::from(2);
        }
    };
    let mut plat = match RedoxPlatform::new() {
        Ok(p) => p,
        Err(e) => {
            log::error!("redox platform: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without a self test the daemon stays until its device goes away.
    let ok = drive(&mut plat, &opts, |drv, plat| {
        if let Err(e) = notify_ready() {
            log::warn!("readiness: {e}");
        }
        if opts.selftest.is_none() {
            drv.run_until_gone(plat, std::time::Duration::from_secs(1));
        }
    });
    exit(ok)
}
