//! smoltcp over both schemes between two VMs (scheme-spec N4/N5, M3): a TCP transfer whose
//! SHA-256 matches on both ends, with each device's scheme calls per frame counted. The
//! frame-per-call `network` device needs about one call per frame; the batched `netmap` device
//! needs several times fewer.

mod skit;

use ptnetd::client::host::HostOs;
use ptnetd::client::smol::{DeviceStats, NetmapDevice, NetworkDevice};
use sha2::{Digest, Sha256};
use skit::*;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

const BYTES: usize = 2 << 20;

fn iface<D: Device>(dev: &mut D, mac: [u8; 6], ip: [u8; 4]) -> Interface {
    let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut i = Interface::new(cfg, dev, Instant::now());
    i.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24)).unwrap();
    });
    i
}

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        tcp::SocketBuffer::new(vec![0; 256 * 1024]),
    )
}

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

/// Moves `BYTES` from A to B over TCP; `poll` runs both interfaces once (and flushes).
fn transfer<DA: Device, DB: Device>(
    da: &mut DA,
    db: &mut DB,
    flush: &mut dyn FnMut(&mut DA, &mut DB),
) -> ([u8; 32], [u8; 32]) {
    let mut ia = iface(da, mac(1), [10, 0, 0, 1]);
    let mut ib = iface(db, mac(2), [10, 0, 0, 2]);
    let (mut sa, mut sb) = (SocketSet::new(vec![]), SocketSet::new(vec![]));
    let ha = sa.add(socket());
    let hb = sb.add(socket());
    sb.get_mut::<tcp::Socket>(hb).listen(5000).unwrap();
    sa.get_mut::<tcp::Socket>(ha)
        .connect(ia.context(), (Ipv4Address::new(10, 0, 0, 2), 5000), 49152)
        .unwrap();
    let (mut sent, mut got) = (0usize, 0usize);
    let (mut hs, mut hr) = (Sha256::new(), Sha256::new());
    let t0 = std::time::Instant::now();
    while got < BYTES {
        assert!(t0.elapsed() < T, "stalled: sent {sent} received {got}");
        let now = Instant::now();
        ia.poll(now, da, &mut sa);
        ib.poll(now, db, &mut sb);
        flush(da, db);
        let a = sa.get_mut::<tcp::Socket>(ha);
        if a.can_send() && sent < BYTES {
            let n = a
                .send(|buf| {
                    let n = buf.len().min(BYTES - sent);
                    for (k, b) in buf[..n].iter_mut().enumerate() {
                        *b = byte(sent + k);
                    }
                    hs.update(&buf[..n]);
                    (n, n)
                })
                .unwrap();
            sent += n;
        }
        let b = sb.get_mut::<tcp::Socket>(hb);
        if b.can_recv() {
            got += b
                .recv(|buf| {
                    hr.update(&*buf);
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
    }
    (hs.finalize().into(), hr.finalize().into())
}

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
    let (s1, r1) = transfer(&mut na, &mut nb, &mut |_, _| {});
    assert_eq!(s1, r1, "SHA-256 of the bytes sent and received over network.*");
    let net = report("network device, A", na.stats()).max(report("network device, B", nb.stats()));
    drop((na, nb));

    let mut ma = NetmapDevice::open(&oa, a.k.name(), 0).unwrap();
    let mut mb = NetmapDevice::open(&ob, b.k.name(), 0).unwrap();
    let (s2, r2) = transfer(&mut ma, &mut mb, &mut |x, y| {
        x.flush().unwrap();
        y.flush().unwrap();
    });
    assert_eq!(s2, r2, "SHA-256 of the bytes sent and received over netmap.*");
    let nm = report("netmap device, A", ma.stats()).max(report("netmap device, B", mb.stats()));
    assert!(nb_frames(&ma) > 1000, "a real transfer");
    assert!(net >= 0.9, "the network device makes a call per frame at least ({net:.3})");
    assert!(nm * 4.0 < net, "the netmap device batches: {nm:.3} vs {net:.3} calls per frame");
}

fn nb_frames<O: ptnetd::client::Os>(d: &NetmapDevice<'_, O>) -> u64 {
    d.stats().rx_frames.get() + d.stats().tx_frames.get()
}
