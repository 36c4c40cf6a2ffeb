//! Shared helpers of the driver tests: a VM per port with the driver bound through the sim
//! platform, pipes and ports, test frames, and a copy-path transfer loop.
#![allow(dead_code)]

use ptnetd::driver::copy::CopyError;
use ptnetd::driver::{DriverConfig, DriverError, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::vm::Vm;
use ptnetd::platform::sim::SimPlatform;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const T: Duration = Duration::from_secs(20);

pub struct Nic {
    pub vm: Arc<Vm>,
    pub plat: SimPlatform,
    pub drv: Ptnet<SimPlatform>,
    pub dev: Arc<PtnetDevice>,
    pub port: Arc<NmPort>,
}

pub fn slot_of(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> u8 {
    vm.slot_of(dev).unwrap()
}

pub fn vm_for(port: &Arc<NmPort>) -> (Arc<Vm>, Arc<PtnetDevice>) {
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    (vm, dev)
}

pub fn attach(
    vm: &Arc<Vm>,
    dev: &Arc<PtnetDevice>,
    cfg: DriverConfig,
) -> Result<(SimPlatform, Ptnet<SimPlatform>), DriverError> {
    let mut plat = SimPlatform::new(vm.clone(), slot_of(vm, dev));
    let drv = Ptnet::attach(&mut plat, cfg)?;
    Ok((plat, drv))
}

pub fn nic(port: &Arc<NmPort>, cfg: DriverConfig) -> Nic {
    let (vm, dev) = vm_for(port);
    let (plat, drv) = attach(&vm, &dev, cfg).unwrap();
    Nic { vm, plat, drv, dev, port: port.clone() }
}

pub fn pipe(rings: u32, slots: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let mem =
        Arc::new(NetmapMemory::new(11, MemConfig::for_ports(2, 2 * rings, slots, 64)).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{m", rings, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}m", rings, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    (a, b)
}

pub fn port(mem_id: u16, rings: u32, slots: u32) -> Arc<NmPort> {
    let mem =
        Arc::new(NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap());
    NmPort::new(mem, &PortSpec::new("p", rings, slots)).unwrap()
}

pub fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 3, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 3, 0xa]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[22..].iter_mut().enumerate() {
        *b = (seq as usize * 13 + i) as u8;
    }
    f
}

/// Moves `frames` from TX ring `tx` of `a` to RX ring `rx` of `b` with at most `window` in
/// flight, sending `batch` frames per flush.
pub fn transfer(
    a: &mut Nic,
    tx: u32,
    b: &mut Nic,
    rx: u32,
    frames: &[Vec<u8>],
    window: usize,
    batch: usize,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut i = 0;
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    while got.len() < frames.len() {
        let mut n = 0;
        while i < frames.len() && i < got.len().saturating_add(window) && n < batch {
            match a.drv.send(tx, &frames[i], None) {
                Ok(()) => {
                    i += 1;
                    n += 1;
                }
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
            assert!(t0.elapsed() < T, "stalled: {} of {}", got.len(), frames.len());
            b.drv.wait_work(&b.plat, Duration::from_millis(50));
            a.drv.take_interrupts(false);
        }
    }
    got
}
