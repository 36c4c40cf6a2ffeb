//! smoltcp over both schemes between two VMs (scheme-spec N4/N5, M3): a TCP transfer whose
//! SHA-256 matches on both ends, with each device's scheme calls per frame counted. The
//! frame-per-call `network` device needs about one call per frame; the batched `netmap` device
//! needs several times fewer.

mod skit;

use ptnetd::app::system::tcp_over;
use ptnetd::client::host::HostOs;
use ptnetd::client::smol::{DeviceStats, NetmapDevice, NetworkDevice};
use skit::*;

const BYTES: usize = 2 << 20;

fn report(what: &str, s: &DeviceStats) -> f64 {
    let c = s.calls_per_frame();
    println!(
        "{what}: rx {} tx {} frames, {} scheme calls ({c:.3} per frame), {} dropped",
        s.rx_frames.get(),
        s.tx_frames.get(),
        s.calls.get(),
        s.dropped.get()
    );
    c
}

#[test]
fn tcp_over_both_schemes_and_calls_per_frame() {
    let (a, b) = pair(1, 512, 2048);
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));

    let mut na = NetworkDevice::open(&oa, a.k.name()).unwrap();
    let mut nb = NetworkDevice::open(&ob, b.k.name()).unwrap();
    let o = tcp_over(&mut na, &mut nb, [mac(1), mac(2)], BYTES, T, &mut |_, _, _| {}).unwrap();
    assert!(o.sha256_match, "SHA-256 of the bytes sent and received over network.*");
    assert_eq!(o.received, BYTES as u64);
    let net = report("network device, A", na.stats()).max(report("network device, B", nb.stats()));
    drop((na, nb));

    let mut ma = NetmapDevice::open(&oa, a.k.name(), 0).unwrap();
    let mut mb = NetmapDevice::open(&ob, b.k.name(), 0).unwrap();
    let o = tcp_over(&mut ma, &mut mb, [mac(1), mac(2)], BYTES, T, &mut |x, y, _| {
        x.flush().unwrap();
        y.flush().unwrap();
    })
    .unwrap();
    assert!(o.sha256_match, "SHA-256 of the bytes sent and received over netmap.*");
    assert_eq!(o.received, BYTES as u64);
    let nm = report("netmap device, A", ma.stats()).max(report("netmap device, B", mb.stats()));
    assert!(nb_frames(&ma) > 1000, "a real transfer");
    assert!(net >= 0.9, "the network device makes a call per frame at least ({net:.3})");
    assert!(nm * 4.0 < net, "the netmap device batches: {nm:.3} vs {net:.3} calls per frame");
}

fn nb_frames<O: ptnetd::client::Os>(d: &NetmapDevice<'_, O>) -> u64 {
    d.stats().rx_frames.get() + d.stats().tx_frames.get()
}

/// `ptnet-smol model`: each end of the transfer a separate smoltcp stack in its own thread,
/// waiting for readiness between polls, over every pairing of the two schemes; the receiver
/// checks every byte against the stream pattern and both print the same SHA-256.
#[test]
fn ptnet_smol_over_every_pairing_of_schemes() {
    let bin = env!("CARGO_BIN_EXE_ptnet-smol");
    for (a, b) in
        [("network", "network"), ("network", "netmap"), ("netmap", "network"), ("netmap", "netmap")]
    {
        let o = std::process::Command::new(bin)
            .args([
                "model",
                "--scheme-a",
                a,
                "--scheme-b",
                b,
                "--bytes",
                "1048576",
                "--timeout",
                "60",
            ])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{a} -> {b}:\n{out}");
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("smol: ")).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines.iter().all(|l| l.contains(" PASS 1048576 bytes")), "{out}");
        let sha =
            |l: &str| l.split("sha256 ").nth(1).unwrap().split(',').next().unwrap().to_string();
        assert_eq!(sha(lines[0]), sha(lines[1]), "{out}");
    }
}

#[test]
fn ptnet_smol_usage_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_ptnet-smol");
    for args in [
        &["model", "--scheme-a", "ip"][..],
        &["send", "--ip", "10.0.0.1", "--peer", "10.0.0.2:9"],
        &["send", "--ip", "10.0.0.1/24", "--peer", "10.0.0.2"],
        &["receive", "--ip", "10.0.0.1/33"],
        &["bogus"],
    ] {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!o.stderr.is_empty());
    }
}
