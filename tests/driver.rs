//! The driver core against the device model (issue 3): bring-up matrix, traffic through the
//! copy path and netmap-mode syncs, teardown and re-bring-up.

use ptnetd::driver::copy::CopyError;
use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec, Reflector};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::switch::Switch;
use ptnetd::model::vm::{PciFunction, Vm};
use ptnetd::platform::sim::SimPlatform;
use ptnetd::platform::Platform;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn slot_of(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> u8 {
    vm.functions()
        .iter()
        .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, dev)))
        .map(|(s, _)| *s)
        .unwrap()
}

struct Nic {
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
    dev: Arc<PtnetDevice>,
}

fn port_vm(port: &Arc<NmPort>) -> (Arc<Vm>, Arc<PtnetDevice>) {
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    (vm, dev)
}

fn bring_up(port: &Arc<NmPort>, cfg: DriverConfig) -> Nic {
    let (vm, dev) = port_vm(port);
    let mut plat = SimPlatform::new(vm.clone(), slot_of(&vm, &dev));
    let drv = Ptnet::attach(&mut plat, cfg).unwrap();
    Nic { plat, drv, dev }
}

fn new_port(mem_id: u16, rings: u32, slots: u32) -> Arc<NmPort> {
    let mem =
        Arc::new(NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap());
    NmPort::new(mem, &PortSpec::new("p", rings, slots)).unwrap()
}

fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[22..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    f
}

/// Sends `frames` on TX ring `tx` of `a`, receives them on RX ring `rx` of `b` (copy path).
/// At most `window` frames are in flight (a switch drops what its destination cannot hold).
fn copy_transfer(
    a: &mut Nic,
    tx: u32,
    b: &mut Nic,
    rx: u32,
    frames: &[Vec<u8>],
    window: usize,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut i = 0;
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    while got.len() < frames.len() {
        while i < frames.len() && i < got.len().saturating_add(window) {
            match a.drv.send(tx, &frames[i], None) {
                Ok(()) => i += 1,
                Err(CopyError::Full) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        a.drv.flush_tx(tx).unwrap();
        let mut any = false;
        while let Some(r) = b.drv.recv(rx, &mut buf).unwrap() {
            got.push(buf[..r.len].to_vec());
            any = true;
        }
        b.drv.flush_rx(rx).unwrap();
        if !any {
            assert!(t0.elapsed() < T, "stalled: {} of {} received", got.len(), frames.len());
            b.plat.wait_interrupts(b.drv.poll_interval());
            b.drv.take_interrupts(false);
            a.drv.take_interrupts(false);
        }
    }
    got
}

#[test]
fn copy_path_through_a_pipe() {
    let mem = Arc::new(NetmapMemory::new(4, MemConfig::for_ports(2, 2, 256, 64)).unwrap());
    let pa = NmPort::new(mem.clone(), &PortSpec::new("pipe{9", 1, 256)).unwrap();
    let pb = NmPort::new(mem, &PortSpec::new("pipe}9", 1, 256)).unwrap();
    PipeEnd::connect(&pa, &pb).unwrap();
    let mut a = bring_up(&pa, DriverConfig::default());
    let mut b = bring_up(&pb, DriverConfig::default());
    assert_eq!(a.drv.info().tx_slots, 256);
    let frames: Vec<_> = (0..3000).map(|s| frame(s, 60 + (s as usize * 131) % 9000)).collect();
    assert_eq!(copy_transfer(&mut a, 0, &mut b, 1, &frames, usize::MAX), frames);
    assert_eq!(a.drv.stats(0).unwrap().frames, 3000);
    assert_eq!(a.dev.counters(0).unwrap().packets, 3000);
    a.drv.shutdown().unwrap();
    b.drv.shutdown().unwrap();
}

#[test]
fn copy_path_through_the_reflector_with_vnet_header_refused() {
    let p = new_port(5, 1, 128);
    p.set_backend(Reflector::new(&p));
    let mut a = bring_up(&p, DriverConfig { vnet_hdr: true, ..Default::default() });
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
        a.plat.wait_interrupts(Duration::from_millis(1));
    }
    assert_eq!(got, frames);
}

#[test]
fn vnet_header_through_the_switch() {
    let sw = Switch::new("vale9");
    let p1 = new_port(6, 1, 256);
    let p2 = new_port(7, 1, 256);
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    let mut a = bring_up(&p1, DriverConfig { vnet_hdr: true, ..Default::default() });
    let mut b = bring_up(&p2, DriverConfig { vnet_hdr: true, ..Default::default() });
    assert_eq!(a.drv.info().vnet_hdr_len, 12);
    assert_eq!(a.drv.info().features, 1);
    let frames: Vec<_> = (0..200).map(|s| frame(s, 60 + s as usize * 40)).collect();
    assert_eq!(copy_transfer(&mut a, 0, &mut b, 1, &frames, 16), frames);
    assert_eq!(p2.stats.rx_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
}
