//! Command line of `ptnet-host` (see [`help`]). One flag per option (no aliases), values after
//! a space or `=`; a repeated option overrides the earlier one (so a script can append to a
//! fixed command line); an unknown flag, a missing or bad value or a stray argument is an error
//! (the binary prints it and exits with status 2).

use super::host::{
    BackendKind, HostConfig, MAX_RINGS_PER_DIR, MAX_VMS, REFLECT_MAC, SLOTS_RANGE, SOURCE_MAC,
};
use crate::selftest::mac_string;
use core::fmt;
use std::ffi::OsString;
use std::path::PathBuf;

/// `--help` text.
pub fn help() -> String {
    let (lo, hi) = (SLOTS_RANGE.start(), SLOTS_RANGE.end());
    format!(
        "\
ptnet-host: netmap ptnet NICs for QEMU VMs, served over vfio-user

usage: ptnet-host --socket-dir DIR --vms N --backend reflector|switch|pipe [options]

For VM k (0..N) it serves two PCI functions, each on its own UNIX socket:
  DIR/vm{{k}}-ptnet.sock    the ptnet NIC (1b36:000d)
  DIR/vm{{k}}-memdev.sock   its ptnetmap-memdev (1b36:000c), BAR1 = the netmap region
Attach both to VM k:
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine q35,memory-backend=mem -m 512
  -device '{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"path\":\"DIR/vm0-ptnet.sock\",\"type\":\"unix\"}}}}'
  -device '{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"path\":\"DIR/vm0-memdev.sock\",\"type\":\"unix\"}}}}'

options:
  --socket-dir DIR     where the sockets are created (made if missing)
  --vms N              number of VMs, 1..={MAX_VMS}
  --backend KIND       reflector: each VM's port sends its frames back to it (own region)
                       switch: all VM ports on one VALE-like learning switch (own region
                               per VM, the switch copies)
                       pipe: exactly 2 VMs joined by a netmap pipe (one shared region)
  --rings N            TX and RX rings per NIC, 1..={MAX_RINGS_PER_DIR} (default 1)
  --slots N            slots per ring, {lo}..={hi} (default 256)
  --sink               switch only: a host endpoint counting the frames it receives
  --source-pps N       switch only: the host endpoint sends N broadcast UDP frames per
                       second (0 = as fast as possible) from {source}
  --reflect            switch only: a host endpoint with MAC {reflect} that sends every
                       frame addressed to it back to its sender, addresses swapped (the
                       peer of the guest's 'ptnetd --selftest'); combines with --sink and
                       --source-pps
  --vnet               switch only: the host endpoints use 12-byte virtio-net headers
  --pcap FILE          record VM 0's port into a pcap file
  --help               print this help
Values follow a space or '='; an option given twice takes the last value.

VM k has MAC 52:54:00:12:34:(56+k). A VM may disconnect and a new one connect to the same
sockets; the host runs until SIGINT or SIGTERM, then logs the counters of the host endpoints
and the switch, and removes its sockets. RUST_LOG sets the log level (default info).
",
        source = mac_string(SOURCE_MAC),
        reflect = mac_string(REFLECT_MAC),
    )
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print [`help`].
    Help,
    /// Serve.
    Run(HostConfig),
}

/// A command-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// An unknown flag or a stray argument.
    Unknown(String),
    /// A flag without its value.
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A required flag is missing.
    Required(&'static str),
    /// A switch (no value) given a value.
    Unexpected(&'static str),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(a) => write!(f, "unknown argument '{a}'"),
            Self::MissingValue(n) => write!(f, "{n} needs a value"),
            Self::BadValue { flag, value, expected } => {
                write!(f, "{flag} '{value}': expected {expected}")
            }
            Self::Required(n) => write!(f, "{n} is required"),
            Self::Unexpected(n) => write!(f, "{n} takes no value"),
        }
    }
}

impl std::error::Error for CliError {}

const FLAGS: [&str; 11] = [
    "--socket-dir",
    "--vms",
    "--backend",
    "--rings",
    "--slots",
    "--vnet",
    "--pcap",
    "--source-pps",
    "--sink",
    "--reflect",
    "--help",
];

fn number(flag: &'static str, v: &str, lo: u64, hi: u64) -> Result<u64, CliError> {
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(CliError::BadValue {
            flag,
            value: v.into(),
            expected: if hi == u64::MAX {
                format!("a number ≥ {lo}")
            } else {
                format!("a number in {lo}..={hi}")
            },
        }),
    }
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, CliError> {
    let mut it = args.into_iter();
    let (mut dir, mut vms, mut backend) = (None, None, None);
    let mut cfg = HostConfig::new("", 0, BackendKind::Reflector);
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        let (name, inline) = match s.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (s.clone(), None),
        };
        let Some(flag) = FLAGS.iter().copied().find(|f| *f == name) else {
            return Err(CliError::Unknown(s));
        };
        if matches!(flag, "--vnet" | "--sink" | "--reflect" | "--help") && inline.is_some() {
            return Err(CliError::Unexpected(flag));
        }
        let mut value = || -> Result<String, CliError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or(CliError::MissingValue(flag)),
            }
        };
        match flag {
            "--help" => return Ok(Command::Help),
            "--vnet" => cfg.vnet = true,
            "--sink" => cfg.sink = true,
            "--reflect" => cfg.reflect = true,
            "--socket-dir" => {
                let v = value()?;
                if v.is_empty() {
                    return Err(CliError::BadValue {
                        flag,
                        value: v,
                        expected: "a directory".into(),
                    });
                }
                dir = Some(PathBuf::from(v));
            }
            "--vms" => vms = Some(number(flag, &value()?, 1, MAX_VMS.into())? as u32),
            "--backend" => {
                let v = value()?;
                backend = Some(match v.as_str() {
                    "reflector" => BackendKind::Reflector,
                    "switch" => BackendKind::Switch,
                    "pipe" => BackendKind::Pipe,
                    _ => {
                        return Err(CliError::BadValue {
                            flag,
                            value: v,
                            expected: "reflector, switch or pipe".into(),
                        })
                    }
                });
            }
            "--rings" => cfg.rings = number(flag, &value()?, 1, MAX_RINGS_PER_DIR.into())? as u32,
            "--slots" => {
                let (lo, hi) = (*SLOTS_RANGE.start() as u64, *SLOTS_RANGE.end() as u64);
                cfg.slots = number(flag, &value()?, lo, hi)? as u32;
            }
            "--pcap" => {
                let v = value()?;
                if v.is_empty() {
                    return Err(CliError::BadValue { flag, value: v, expected: "a file".into() });
                }
                cfg.pcap = Some(PathBuf::from(v));
            }
            "--source-pps" => cfg.source_pps = Some(number(flag, &value()?, 0, u64::MAX)?),
            _ => return Err(CliError::Unknown(s)),
        }
    }
    cfg.socket_dir = dir.ok_or(CliError::Required("--socket-dir"))?;
    cfg.vms = vms.ok_or(CliError::Required("--vms"))?;
    cfg.backend = backend.ok_or(CliError::Required("--backend"))?;
    Ok(Command::Run(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> HostConfig {
        match p(args) {
            Ok(Command::Run(c)) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    const BASE: [&str; 6] = ["--socket-dir", "/tmp/s", "--vms", "2", "--backend", "switch"];

    #[test]
    fn full_command_line() {
        let mut a = BASE.to_vec();
        a.extend([
            "--rings=2",
            "--slots",
            "1024",
            "--vnet",
            "--pcap",
            "x.pcap",
            "--source-pps",
            "1000",
            "--sink",
            "--reflect",
        ]);
        let c = run(&a);
        assert_eq!(c.socket_dir, PathBuf::from("/tmp/s"));
        assert_eq!((c.vms, c.backend, c.rings, c.slots), (2, BackendKind::Switch, 2, 1024));
        assert!(c.vnet && c.sink && c.reflect);
        assert_eq!(c.pcap, Some(PathBuf::from("x.pcap")));
        assert_eq!(c.source_pps, Some(1000));
        assert!(c.validate().is_ok());
        assert_eq!(c.socket_paths(1).0, PathBuf::from("/tmp/s/vm1-ptnet.sock"));
        assert_eq!(c.socket_paths(1).1, PathBuf::from("/tmp/s/vm1-memdev.sock"));
    }

    #[test]
    fn a_repeated_option_overrides() {
        let mut a = BASE.to_vec();
        a.extend(["--backend", "reflector", "--vms=1"]);
        let c = run(&a);
        assert_eq!((c.backend, c.vms), (BackendKind::Reflector, 1));
    }

    #[test]
    fn defaults_and_help() {
        let c = run(&BASE);
        assert_eq!((c.rings, c.slots, c.vnet, c.sink, c.reflect), (1, 256, false, false, false));
        assert_eq!((c.pcap, c.source_pps), (None, None));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["--vms", "1", "--help"]), Ok(Command::Help));
        let h = help();
        for f in FLAGS {
            assert!(h.contains(f), "help lacks {f}");
        }
        assert!(h.contains("MAC 02:00:00:00:ff:02 that sends"), "reflect endpoint's MAC: {h}");
        assert!(h.contains("from 02:00:00:00:ff:01"), "source's MAC");
    }

    #[test]
    fn errors() {
        assert_eq!(p(&["--bogus"]), Err(CliError::Unknown("--bogus".into())));
        assert_eq!(p(&["-h"]), Err(CliError::Unknown("-h".into())));
        assert_eq!(p(&["stray"]), Err(CliError::Unknown("stray".into())));
        assert_eq!(p(&["--vms"]), Err(CliError::MissingValue("--vms")));
        assert_eq!(p(&["--sink=yes"]), Err(CliError::Unexpected("--sink")));
        assert_eq!(p(&["--reflect=1"]), Err(CliError::Unexpected("--reflect")));
        assert!(matches!(p(&["--vms", "0"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--vms", "65"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--rings", "17"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--slots", "4"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--backend", "vale"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--source-pps", "-1"]), Err(CliError::BadValue { .. })));
        assert!(matches!(p(&["--socket-dir="]), Err(CliError::BadValue { .. })));
        assert_eq!(
            p(&["--vms", "1", "--backend", "pipe"]),
            Err(CliError::Required("--socket-dir"))
        );
        assert_eq!(
            p(&["--socket-dir", "d", "--backend", "pipe"]),
            Err(CliError::Required("--vms"))
        );
        assert_eq!(p(&["--socket-dir", "d", "--vms", "2"]), Err(CliError::Required("--backend")));
        let e = p(&["--slots", "x"]).unwrap_err();
        assert_eq!(e.to_string(), "--slots 'x': expected a number in 8..=16384");
    }

    #[test]
    fn combinations_are_validated() {
        let mut c = run(&["--socket-dir", "d", "--vms", "3", "--backend", "pipe"]);
        assert!(c.validate().is_err(), "pipe needs 2 vms");
        c.vms = 2;
        assert!(c.validate().is_ok());
        for extra in [&["--sink"][..], &["--source-pps", "5"], &["--vnet"], &["--reflect"]] {
            for backend in ["reflector", "pipe"] {
                let mut a = vec!["--socket-dir", "d", "--vms", "2", "--backend", backend];
                a.extend_from_slice(extra);
                let e = run(&a).validate().unwrap_err().to_string();
                assert!(e.starts_with(extra[0]) && e.contains("--backend switch"), "{e}");
            }
        }
        // The CI's second phase: every host endpoint at once.
        let mut a = BASE.to_vec();
        a.extend(["--reflect", "--sink", "--source-pps", "2000"]);
        let c = run(&a);
        assert!(c.validate().is_ok());
        assert_eq!((c.reflect, c.sink, c.source_pps), (true, true, Some(2000)));
    }
}
