//! smoltcp over both schemes between two VMs (scheme-spec N4/N5, M3): a TCP transfer whose
//! SHA-256 matches on both ends, and each device's scheme calls per frame counted with peers
//! that sleep on readiness between polls (a busy-polling loop would count its empty polls):
//! the frame-per-call `network` device needs about one call per frame, the batched `netmap`
//! device at least ten times fewer.

mod skit;

use ptnetd::app::smolpeer::{self, PeerConfig, Role, WaitDevice};
use ptnetd::app::system::tcp_over;
use ptnetd::client::host::HostOs;
use ptnetd::client::smol::{DeviceStats, NetmapDevice, NetworkDevice};
use skit::*;
use smoltcp::wire::Ipv4Address;

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
fn tcp_over_both_schemes_sha256() {
    let (a, b) = pair(1, 512, 2048);
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));

    let mut na = NetworkDevice::open(&oa, a.k.name()).unwrap();
    let mut nb = NetworkDevice::open(&ob, b.k.name()).unwrap();
    let o = tcp_over(&mut na, &mut nb, [mac(1), mac(2)], BYTES, T, &mut |_, _, _| {}).unwrap();
    assert!(o.sha256_match, "SHA-256 of the bytes sent and received over network.*");
    assert_eq!(o.received, BYTES as u64);
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
    assert!(nb_frames(&ma) > 1000, "a real transfer");
}

/// One TCP transfer between two `smolpeer`s (each a stack in its own thread that sleeps on its
/// device's readiness between polls, as a real program does), A sends to B; returns the worst
/// scheme calls per frame of the two devices.
fn calls_per_frame<DA, DB>(da: &mut DA, db: &mut DB) -> f64
where
    DA: WaitDevice + Send,
    DB: WaitDevice + Send,
{
    let cfg = |m: [u8; 6], last: u8, role| PeerConfig {
        mac: m,
        ip: (Ipv4Address::new(10, 0, 0, last), 24),
        role,
        bytes: BYTES as u64,
        timeout: T,
    };
    let (ra, rb) = std::thread::scope(|s| {
        let hb = s.spawn(|| smolpeer::run(db, &cfg(mac(2), 2, Role::Receive { port: 9 })));
        let peer = (Ipv4Address::new(10, 0, 0, 2), 9);
        let ra = smolpeer::run(da, &cfg(mac(1), 1, Role::Send { peer }));
        (ra.unwrap(), hb.join().unwrap().unwrap())
    });
    assert_eq!((ra.bytes, rb.bytes, rb.bad_bytes), (BYTES as u64, BYTES as u64, 0));
    assert_eq!(ra.sha256, rb.sha256);
    println!("sender: {ra}\nreceiver: {rb}");
    ra.calls_per_frame().max(rb.calls_per_frame())
}

/// The frame-per-call device makes a scheme call per frame at least; the batched one moves
/// many frames per sync: at least 10 times fewer calls per frame (issue 11's bar).
#[test]
fn the_batched_device_makes_ten_times_fewer_calls_per_frame() {
    let (a, b) = pair(1, 512, 2048);
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let mut na = NetworkDevice::open(&oa, a.k.name()).unwrap();
    let mut nb = NetworkDevice::open(&ob, b.k.name()).unwrap();
    let net = calls_per_frame(&mut na, &mut nb);
    report("network device, A", na.stats());
    report("network device, B", nb.stats());
    drop((na, nb));
    let mut ma = NetmapDevice::open(&oa, a.k.name(), 0).unwrap();
    let mut mb = NetmapDevice::open(&ob, b.k.name(), 0).unwrap();
    let nm = calls_per_frame(&mut ma, &mut mb);
    report("netmap device, A", ma.stats());
    report("netmap device, B", mb.stats());
    assert!(net >= 0.9, "the network device makes a call per frame at least ({net:.3})");
    assert!(nm * 10.0 < net, "the netmap device batches: {nm:.3} vs {net:.3} calls per frame");
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
