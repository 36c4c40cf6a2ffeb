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
