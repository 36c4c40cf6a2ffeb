//! Both binaries as a user runs them: a bad command line gets a message naming the problem on
//! stderr and exit status 2; `--help` exits 0 and lists every option with its default.

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).env("RUST_LOG", "off").output().expect("run the binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_command_lines_exit_2_with_a_message() {
    let ptnetd = env!("CARGO_BIN_EXE_ptnetd");
    let host = env!("CARGO_BIN_EXE_ptnet-host");
    let cases: [(&str, &[&str], &str); 7] = [
        (ptnetd, &["--bogus"], "'--bogus'"),
        (ptnetd, &["--slots", "8"], "expected a number in 32..=16384"),
        (ptnetd, &["--selftest", "5", "--driver-demo"], "cannot be used with"),
        (ptnetd, &["--pci", "00:03.0"], "--linux"),
        (host, &["--vms", "2", "--backend", "switch"], "--socket-dir"),
        (host, &["--socket-dir", "d", "--vms", "3", "--backend", "pipe"], "exactly 2 vms"),
        (host, &["--socket-dir", "d", "--vms", "1", "--backend", "reflector", "--sink"], "--sink"),
    ];
    for (bin, args, says) in cases {
        let o = run(bin, args);
        assert_eq!(o.status.code(), Some(2), "{bin} {args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bin} {args:?} should say {says}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{bin} {args:?} printed to stdout");
    }
}

#[test]
fn help_exits_0_and_lists_every_option_with_its_default() {
    let o = run(env!("CARGO_BIN_EXE_ptnetd"), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let h = String::from_utf8_lossy(&o.stdout);
    for s in [
        "--selftest <N>",
        "--timeout <S>",
        "[default: 120]",
        "--vnet",
        "--linux",
        "--pci <BDF>",
        "--tcp-mib <N>",
        "[default: 64]",
        "--zc-frames <N>",
        "[default: 10000000]",
        "--switch-mib <N>",
        "[default: 16]",
        "--json",
        "--driver-demo",
        "--frames <N>",
        "[default: 200000]",
        "--slots <N>",
        "[default: 1024]",
        "--pcap <PATH>",
        "[default: none]",
    ] {
        assert!(h.contains(s), "ptnetd --help lacks {s}:\n{h}");
    }
    let o = run(env!("CARGO_BIN_EXE_ptnet-host"), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let h = String::from_utf8_lossy(&o.stdout);
    for s in [
        "--socket-dir <DIR>",
        "--vms <N>",
        "--backend <KIND>",
        "--rings <N>",
        "[default: 1]",
        "--slots <N>",
        "[default: 256]",
        "--sink",
        "--source-pps <N>",
        "--reflect",
        "--vnet",
        "--pcap <FILE>",
    ] {
        assert!(h.contains(s), "ptnet-host --help lacks {s}:\n{h}");
    }
}
