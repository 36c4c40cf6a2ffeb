//! The pkt-gen-like tool on the zero-copy scheme: tx on one VM → rx on the other over a pipe
//! (counts exact, no loss, duplicate or reordering), txrx and ping against a reflecting port.

mod skit;

use ptnetd::app::pktgen::{run, Function, PktgenConfig};
use ptnetd::client::host::HostOs;
use ptnetd::client::NetmapPort;
use skit::*;
use std::time::Duration;

#[test]
fn tx_to_rx_over_a_pipe_counts_exact() {
    let (a, b) = pair(1, 256, 2048);
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let n = 50_000;
    let cfg = |function| PktgenConfig {
        function,
        count: n,
        len: 60,
        duration: Duration::from_secs(20),
        ..PktgenConfig::default()
    };
    let mut rxp = NetmapPort::open(&ob, b.k.name(), "0/R").unwrap();
    let rep_rx = std::thread::scope(|s| {
        let h = s.spawn(|| run(&mut rxp, mac(2), &cfg(Function::Rx), &mut |_| {}).unwrap());
        let mut txp = NetmapPort::open(&oa, a.k.name(), "0/T").unwrap();
        let tx = run(&mut txp, mac(1), &cfg(Function::Tx), &mut |_| {}).unwrap();
        assert_eq!(tx.sent, n);
        h.join().unwrap()
    });
    assert_eq!((rep_rx.received, rep_rx.lost, rep_rx.duplicated), (n, 0, 0), "{rep_rx}");
    assert_eq!(rep_rx.reordered, 0);
    assert_eq!(rep_rx.bytes, n * 60);
}

/// Like netmap's pkt-gen, tx returns only once the host has taken every frame from its ring
/// (ten short runs: the last batch is still in the ring right after its TXSYNC more often than
/// not, so a tx that stops at once fails here).
#[test]
fn tx_returns_with_its_ring_drained() {
    let (a, b) = pair(1, 256, 2048);
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let mut rxp = NetmapPort::open(&ob, b.k.name(), "0/R").unwrap();
    let mut txp = NetmapPort::open(&oa, a.k.name(), "0/T").unwrap();
    for round in 0..10 {
        let cfg = |function| PktgenConfig {
            function,
            count: 2_000,
            batch: 256,
            duration: Duration::from_secs(20),
            ..PktgenConfig::default()
        };
        let rx = std::thread::scope(|s| {
            let h = s.spawn(|| run(&mut rxp, mac(2), &cfg(Function::Rx), &mut |_| {}).unwrap());
            assert_eq!(run(&mut txp, mac(1), &cfg(Function::Tx), &mut |_| {}).unwrap().sent, 2_000);
            let ring = txp.tx_ring(0).unwrap();
            assert_eq!(
                ring.space(),
                ring.num_slots() - 1,
                "round {round}: frames left in the ring"
            );
            h.join().unwrap()
        });
        assert_eq!(rx.received, 2_000, "round {round}: {rx}");
    }
}

#[test]
fn txrx_and_ping_against_a_reflector() {
    let k = ptnetd::app::embedded::reflector_daemon(1).unwrap();
    let os = HostOs::new(vec![&k]);
    let mut p = NetmapPort::open(&os, k.name(), "0").unwrap();
    let base = PktgenConfig { count: 20_000, len: 1514, ..PktgenConfig::default() };
    let r = run(&mut p, [0x52, 0x54, 0, 0x12, 0x34, 0x56], &base, &mut |_| {}).unwrap();
    assert_eq!((r.sent, r.received, r.lost), (20_000, 20_000, 0), "{r}");
    let ping = PktgenConfig { function: Function::Ping, count: 200, ..base };
    let r = run(&mut p, [0x52, 0x54, 0, 0x12, 0x34, 0x56], &ping, &mut |_| {}).unwrap();
    assert_eq!((r.sent, r.received), (200, 200));
    assert_eq!(r.rtt_us.len(), 200);
    assert!(r.rtt(50.0).unwrap() <= r.rtt(99.0).unwrap());
    assert!(r.to_string().contains("rtt p50="), "{r}");
}
