//! The two command lines: values, defaults, help, and each usage error's kind and message.

use super::*;
use crate::app::demo::DemoConfig;
use crate::app::system::SystemConfig;
use crate::model::vfio::host::BackendKind;
use clap::error::ErrorKind;
use std::path::PathBuf;

fn parse(args: &[&str]) -> Result<PtnetdArgs, clap::Error> {
    PtnetdArgs::try_parse_args(std::iter::once("ptnetd").chain(args.iter().copied()))
}

fn mode(args: &[&str]) -> Mode {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).mode()
}

fn demo(args: &[&str]) -> DemoConfig {
    let mut a = vec!["--driver-demo"];
    a.extend_from_slice(args);
    match mode(&a) {
        Mode::Demo(c) => c,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// The error kind and clap's rendered message.
fn error(args: &[&str]) -> (ErrorKind, String) {
    let e = parse(args).expect_err(&format!("{args:?} should be refused"));
    (e.kind(), e.to_string())
}

fn system(args: &[&str]) -> (SystemConfig, bool) {
    match mode(args) {
        Mode::System { cfg, json } => (cfg, json),
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn the_main_job_is_the_default() {
    assert_eq!(system(&[]), (SystemConfig::default(), false));
    let d = SystemConfig::default();
    assert_eq!((d.tcp_bytes, d.zc_frames, d.switch_bytes), (64 << 20, 10_000_000, 16 << 20));
    let (c, json) = system(&["--tcp-mib", "2", "--zc-frames=1_000", "--switch-mib", "1", "--json"]);
    assert_eq!((c.tcp_bytes, c.zc_frames, c.switch_bytes, json), (2 << 20, 1000, 1 << 20, true));
    assert_eq!(system(&["--pcap", "p.pcap"]).0.pcap, Some(PathBuf::from("p.pcap")));
    for bad in ["0", "4097", "x", "-1"] {
        assert_eq!(error(&["--tcp-mib", bad]).0, ErrorKind::ValueValidation, "{bad}");
        assert_eq!(error(&["--switch-mib", bad]).0, ErrorKind::ValueValidation, "{bad}");
    }
    assert_eq!(error(&["--zc-frames", "0"]).0, ErrorKind::ValueValidation);
    for main in ["--tcp-mib=1", "--zc-frames=1", "--switch-mib=1", "--json"] {
        for other in [&["--driver-demo"][..], &["--selftest", "1"], &["--linux"]] {
            let mut a = vec![main];
            a.extend_from_slice(other);
            assert_eq!(error(&a).0, ErrorKind::ArgumentConflict, "{a:?}");
        }
    }
    let (kind, msg) = error(&["--frames", "5"]);
    assert_eq!(kind, ErrorKind::MissingRequiredArgument);
    assert!(msg.contains("--driver-demo"), "{msg}");
}

#[test]
fn defaults() {
    assert_eq!(demo(&[]), DemoConfig::default());
    let d = DemoConfig::default();
    assert_eq!((d.frames, d.slots, d.pcap), (200_000, 1024, None));
}

#[test]
fn options_with_separate_and_inline_values() {
    let c = demo(&["--frames", "1_000", "--slots=256", "--pcap", "/tmp/x.pcap"]);
    assert_eq!((c.frames, c.slots), (1000, 256));
    assert_eq!(c.pcap, Some(PathBuf::from("/tmp/x.pcap")));
    assert_eq!(demo(&["--pcap=a=b.pcap"]).pcap, Some(PathBuf::from("a=b.pcap")));
    assert_eq!(demo(&["--frames", "5", "--frames", "7"]).frames, 7, "last one wins");
}

#[test]
fn help_lists_every_option_with_its_default() {
    for args in [&["--help"][..], &["--driver-demo", "--frames", "3", "-h"], &["--linux", "--help"]]
    {
        assert_eq!(error(args).0, ErrorKind::DisplayHelp, "{args:?}");
    }
    let help = PtnetdArgs::command_with_help().render_long_help().to_string();
    for arg in PtnetdArgs::command().get_arguments() {
        let name = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
        assert!(help.contains(&name), "help lacks {name}:\n{help}");
    }
    for default in [
        "[default: 64]",
        "[default: 10000000]",
        "[default: 16]",
        "[default: 200000]",
        "[default: 1024]",
        "[default: 120]",
        "[default: none]",
        "[default: off]",
        "[default: the first 1b36:000d",
    ] {
        assert!(help.contains(default), "help lacks {default}:\n{help}");
    }
    assert!(help.contains("02:00:00:00:ff:02") && help.contains("100000000"), "{help}");
    let host = PtnetHostArgs::command_with_help().render_long_help().to_string();
    for arg in PtnetHostArgs::command().get_arguments() {
        let name = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
        assert!(host.contains(&name), "ptnet-host help lacks {name}:\n{host}");
    }
    for s in ["[default: 1]", "[default: 256]", "reflector", "switch", "pipe"] {
        assert!(host.contains(s), "ptnet-host help lacks {s}:\n{host}");
    }
    assert!(host.contains("reflect\nendpoint is 02:00:00:00:ff:02"), "{host}");
    assert!(host.contains("sends from 02:00:00:00:ff:01"), "{host}");
}

#[test]
fn usage_errors_name_the_option() {
    assert_eq!(error(&["--bogus"]).0, ErrorKind::UnknownArgument);
    assert_eq!(error(&["frames"]).0, ErrorKind::UnknownArgument);
    assert_eq!(error(&["--driver-demo", "--frames"]).0, ErrorKind::InvalidValue);
    assert_eq!(error(&["--pcap"]).0, ErrorKind::InvalidValue);
    for bad in ["x", "0", "-1"] {
        assert_eq!(
            error(&["--driver-demo", "--frames", bad]).0,
            ErrorKind::ValueValidation,
            "{bad}"
        );
    }
    let (kind, msg) = error(&["--slots", "8"]);
    assert_eq!(kind, ErrorKind::ValueValidation);
    assert!(msg.contains("'--slots <N>'") && msg.contains("expected a number in 32..=16384"));
    assert_eq!(error(&["--slots=99999"]).0, ErrorKind::ValueValidation);
}

#[test]
fn parsed_configs_validate() {
    for args in [&["--slots", "32"][..], &["--slots", "16384", "--frames", "1"]] {
        demo(args).validate().unwrap();
    }
}

#[test]
fn selftest_on_the_embedded_model() {
    let st = |slots, selftest, vnet, timeout| Mode::ModelSelftest {
        slots,
        opts: DriveOpts { selftest: Some(selftest), vnet, timeout },
    };
    assert_eq!(mode(&["--selftest", "1000"]), st(1024, 1000, false, DEFAULT_TIMEOUT));
    assert_eq!(
        mode(&["--selftest=1_000_000", "--slots", "64", "--vnet", "--timeout", "2.5"]),
        st(64, 1_000_000, true, Duration::from_millis(2500))
    );
    assert_eq!(error(&["--selftest"]).0, ErrorKind::InvalidValue);
    for bad in ["0", "x", "100000001", "-5"] {
        let (kind, msg) = error(&["--selftest", bad]);
        assert_eq!(kind, ErrorKind::ValueValidation, "{bad}");
        assert!(msg.contains("--selftest"), "{msg}");
    }
    for bad in ["0", "-1", "x", "86401", "NaN"] {
        let (kind, msg) = error(&["--selftest", "1", "--timeout", bad]);
        assert_eq!(kind, ErrorKind::ValueValidation, "{bad}");
        assert!(msg.contains("--timeout"), "{msg}");
    }
    let (kind, msg) = error(&["--selftest", "5", "--driver-demo"]);
    assert_eq!(kind, ErrorKind::ArgumentConflict);
    assert!(msg.contains("--driver-demo") && msg.contains("--selftest"), "{msg}");
    assert_eq!(error(&["--pcap", "x", "--selftest", "5"]).0, ErrorKind::ArgumentConflict);
    assert_eq!(error(&["--vnet"]).0, ErrorKind::MissingRequiredArgument);
    assert_eq!(error(&["--timeout", "3"]).0, ErrorKind::MissingRequiredArgument);
    assert_eq!(error(&["--vnet=1", "--selftest", "1"]).0, ErrorKind::TooManyValues);
}

#[test]
fn linux_mode() {
    let lin = |pci: Option<&str>, selftest, vnet, timeout| Mode::Linux {
        pci: pci.map(String::from),
        opts: DriveOpts { selftest, vnet, timeout },
    };
    assert_eq!(mode(&["--linux"]), lin(None, None, false, DEFAULT_TIMEOUT));
    assert_eq!(
        mode(&["--linux", "--pci", "0000:00:03.0", "--selftest", "100000", "--vnet"]),
        lin(Some("0000:00:03.0"), Some(100_000), true, DEFAULT_TIMEOUT)
    );
    assert_eq!(
        mode(&["--pci=00:04.0", "--selftest=7", "--timeout=60", "--linux"]),
        lin(Some("00:04.0"), Some(7), false, Duration::from_secs(60)),
        "order does not matter"
    );
    assert_eq!(error(&["--linux", "--pci"]).0, ErrorKind::InvalidValue);
    #[cfg(target_os = "linux")]
    for bad in ["nonsense", "0000:00:20.0", "0000:00:03"] {
        assert_eq!(error(&["--linux", "--pci", bad]).0, ErrorKind::ValueValidation, "{bad}");
    }
    assert_eq!(error(&["--pci", "00:03.0"]).0, ErrorKind::MissingRequiredArgument);
    for extra in [&["--driver-demo"][..], &["--slots", "64"], &["--pcap", "x"]] {
        let mut a = vec!["--linux"];
        a.extend_from_slice(extra);
        let (kind, msg) = error(&a);
        assert_eq!(kind, ErrorKind::ArgumentConflict, "{a:?}");
        assert!(msg.contains(extra[0]), "{msg}");
    }
    assert_eq!(error(&["--linux", "--timeout", "5"]).0, ErrorKind::MissingRequiredArgument);
    assert_eq!(error(&["--linux=yes"]).0, ErrorKind::TooManyValues);
}

fn host(args: &[&str]) -> Result<PtnetHostArgs, clap::Error> {
    PtnetHostArgs::try_parse_args(std::iter::once("ptnet-host").chain(args.iter().copied()))
}

fn host_config(args: &[&str]) -> crate::model::vfio::HostConfig {
    host(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).config()
}

const BASE: [&str; 6] = ["--socket-dir", "/tmp/s", "--vms", "2", "--backend", "switch"];

#[test]
fn host_full_command_line() {
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
    let c = host_config(&a);
    assert_eq!(c.socket_dir, PathBuf::from("/tmp/s"));
    assert_eq!((c.vms, c.backend, c.rings, c.slots), (2, BackendKind::Switch, 2, 1024));
    assert!(c.vnet && c.sink && c.reflect);
    assert_eq!(c.pcap, Some(PathBuf::from("x.pcap")));
    assert_eq!(c.source_pps, Some(1000));
    assert_eq!(c.socket_paths(1).0, PathBuf::from("/tmp/s/vm1-ptnet.sock"));
}

#[test]
fn host_repeated_option_overrides_and_defaults() {
    let mut a = BASE.to_vec();
    a.extend(["--backend", "reflector", "--vms=1"]);
    let c = host_config(&a);
    assert_eq!((c.backend, c.vms), (BackendKind::Reflector, 1));
    let c = host_config(&BASE);
    assert_eq!((c.rings, c.slots, c.vnet, c.sink, c.reflect), (1, 256, false, false, false));
    assert_eq!((c.pcap, c.source_pps), (None, None));
    assert_eq!(host(&["--help"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
    assert_eq!(host(&["--vms", "1", "-h"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
}

#[test]
fn host_usage_errors() {
    let kind = |a: &[&str]| host(a).unwrap_err().kind();
    assert_eq!(kind(&["--bogus"]), ErrorKind::UnknownArgument);
    assert_eq!(kind(&["stray"]), ErrorKind::UnknownArgument);
    assert_eq!(kind(&["--vms"]), ErrorKind::InvalidValue);
    assert_eq!(kind(&["--sink=yes"]), ErrorKind::TooManyValues);
    for bad in [
        &["--vms", "0"][..],
        &["--vms", "65"],
        &["--rings", "17"],
        &["--slots", "4"],
        &["--source-pps", "-1"],
        &["--socket-dir="],
    ] {
        let mut a = BASE.to_vec();
        a.extend_from_slice(bad);
        assert_eq!(kind(&a), ErrorKind::ValueValidation, "{bad:?}");
    }
    let mut a = BASE.to_vec();
    a.extend(["--backend", "vale"]);
    assert_eq!(kind(&a), ErrorKind::InvalidValue);
    assert_eq!(kind(&["--vms", "1", "--backend", "pipe"]), ErrorKind::MissingRequiredArgument);
    let e = host(&["--socket-dir", "d", "--backend", "pipe"]).unwrap_err().to_string();
    assert!(e.contains("--vms"), "{e}");
    let mut a = BASE.to_vec();
    a.extend(["--slots", "x"]);
    let e = host(&a).unwrap_err().to_string();
    assert!(e.contains("'--slots <N>'") && e.contains("expected a number in 8..=16384"), "{e}");
}

#[test]
fn host_combinations_are_validated() {
    let e = host(&["--socket-dir", "d", "--vms", "3", "--backend", "pipe"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
    assert!(e.to_string().contains("pipe joins exactly 2 vms"), "{e}");
    host(&["--socket-dir", "d", "--vms", "2", "--backend", "pipe"]).unwrap();
    for extra in [&["--sink"][..], &["--source-pps", "5"], &["--vnet"], &["--reflect"]] {
        for backend in ["reflector", "pipe"] {
            let mut a = vec!["--socket-dir", "d", "--vms", "2", "--backend", backend];
            a.extend_from_slice(extra);
            let e = host(&a).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
            let e = e.to_string();
            assert!(e.contains(extra[0]) && e.contains("--backend switch"), "{e}");
        }
    }
    let mut a = BASE.to_vec();
    a.extend(["--reflect", "--sink", "--source-pps", "2000"]);
    let c = host_config(&a);
    assert_eq!((c.reflect, c.sink, c.source_pps), (true, true, Some(2000)));
}
