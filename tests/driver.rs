//! The driver core against the device model (issue 3): bring-up matrix, traffic through the
//! copy path and netmap-mode syncs, teardown and re-bring-up.

use ptnetd::driver::DriverConfig;
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec, Reflector};
use ptnetd::model::switch::Switch;
use std::sync::Arc;
use std::time::Instant;

mod kit;
use kit::*;

#[test]
fn copy_path_through_a_pipe() {
    let mem = Arc::new(NetmapMemory::new(4, MemConfig::for_ports(2, 2, 256, 64)).unwrap());
    let pa = NmPort::new(mem.clone(), &PortSpec::new("pipe{9", 1, 256)).unwrap();
    let pb = NmPort::new(mem, &PortSpec::new("pipe}9", 1, 256)).unwrap();
    PipeEnd::connect(&pa, &pb).unwrap();
    let mut a = nic(&pa, DriverConfig::default());
    let mut b = nic(&pb, DriverConfig::default());
    assert_eq!(a.drv.info().tx_slots, 256);
    let frames: Vec<_> = (0..3000).map(|s| frame(s, 60 + (s as usize * 131) % 9000)).collect();
    assert_eq!(transfer(&mut a, 0, &mut b, 1, &frames, usize::MAX, usize::MAX), frames);
    assert_eq!(a.drv.stats(0).unwrap().frames, 3000);
    // The host counts a ring's frames right after handing them to the peer: wait for it.
    let t0 = std::time::Instant::now();
    while a.dev.counters(0).unwrap().packets < 3000 && t0.elapsed() < T {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(a.dev.counters(0).unwrap().packets, 3000);
    a.drv.shutdown().unwrap();
    b.drv.shutdown().unwrap();
}

#[test]
fn copy_path_through_the_reflector_with_vnet_header_refused() {
    let p = port(5, 1, 128);
    p.set_backend(Reflector::new(&p));
    let mut a = nic(&p, DriverConfig { vnet_hdr: true, ..Default::default() });
    assert_eq!(a.drv.info().vnet_hdr_len, 0, "not offered by a reflector port");
    let frames: Vec<_> = (0..500).map(|s| frame(s, 60 + s as usize * 3)).collect();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 9100];
    let mut i = 0;
    let t0 = Instant::now();
    while got.len() < frames.len() {
        while i < frames.len() && a.drv.send(0, &frames[i], None).is_ok() {
            i += 1;
        }
        a.drv.flush_tx(0).unwrap();
        while let Some(r) = a.drv.recv(1, &mut buf).unwrap() {
            got.push(buf[..r.len].to_vec());
        }
        a.drv.flush_rx(1).unwrap();
        assert!(t0.elapsed() < T, "stalled at {}", got.len());
        a.drv.wait_work(&a.plat, T.saturating_sub(t0.elapsed()));
    }
    assert_eq!(got, frames);
}

#[test]
fn vnet_header_through_the_switch() {
    let sw = Switch::new("vale9");
    let p1 = port(6, 1, 256);
    let p2 = port(7, 1, 256);
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    let mut a = nic(&p1, DriverConfig { vnet_hdr: true, ..Default::default() });
    let mut b = nic(&p2, DriverConfig { vnet_hdr: true, ..Default::default() });
    assert_eq!(a.drv.info().vnet_hdr_len, 12);
    assert_eq!(a.drv.info().features, 1);
    let frames: Vec<_> = (0..200).map(|s| frame(s, 60 + s as usize * 40)).collect();
    assert_eq!(transfer(&mut a, 0, &mut b, 1, &frames, 16, usize::MAX), frames);
    assert_eq!(p2.stats.rx_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
}
