//! Shared helpers of the scheme tests: two VMs on a netmap pipe (or a port alone), each with
//! the driver, a daemon serving both schemes and the in-process transport in front of it.
#![allow(dead_code, unused_imports)]

use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::vm::{PciFunction, Vm};
use ptnetd::platform::sim::SimPlatform;
use ptnetd::scheme::host::{Doorbell, HostConfig, HostKernel, Transport};
use ptnetd::scheme::Daemon;
use std::sync::Arc;
use std::time::Duration;

pub use ptnetd::scheme::Which::{Netmap as NM, Network as NET};

/// How long any wait in these tests may take before the test fails.
pub const T: Duration = Duration::from_secs(20);

pub struct Vm1 {
    pub vm: Arc<Vm>,
    pub dev: Arc<PtnetDevice>,
    pub k: HostKernel<SimPlatform>,
}

/// Protocol tests run with the polling fallback off: a lost wake-up fails them. Blocked inline
/// callers sleep at once (no halt polling to cover a wake-up that comes late).
pub fn no_poll() -> HostConfig {
    HostConfig {
        poll: None,
        reply_timeout: T,
        transport: Transport::Ipc,
        halt_poll: std::time::Duration::ZERO,
    }
}

pub fn pipe_ports(rings: u32, slots: u32, buf_size: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let mut cfg = MemConfig::for_ports(2, 2 * rings, slots, 64);
    cfg.buf_size = buf_size;
    let mem = Arc::new(NetmapMemory::new(11, cfg).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{s", rings, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}s", rings, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    (a, b)
}

pub fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x34, n]
}

pub fn vm_on(port: &Arc<NmPort>, n: u8, drv: DriverConfig, host: HostConfig) -> Vm1 {
    vm_with(Netdev::passthrough(port.clone()), n, drv, host)
}

/// A VM whose ptnet NIC has the host settings `netdev` (e.g. direct mode).
pub fn vm_with(netdev: Netdev, n: u8, drv: DriverConfig, host: HostConfig) -> Vm1 {
    let vm = Vm::new(64).unwrap();
    let cfg = PtnetConfig { mac: Some(mac(n)), ..PtnetConfig::default() };
    let dev = vm.add_ptnet(netdev, cfg).unwrap();
    let slot = vm
        .functions()
        .iter()
        .find(|(_, f)| matches!(f, PciFunction::Ptnet(d) if Arc::ptr_eq(d, &dev)))
        .map(|(s, _)| *s)
        .unwrap();
    let mut plat = SimPlatform::new(vm.clone(), slot);
    let nic = Ptnet::attach(&mut plat, drv).unwrap();
    let bell = plat.doorbell();
    let k = HostKernel::spawn(Daemon::new(plat, nic), bell, host);
    Vm1 { vm, dev, k }
}

/// Two VMs joined by a pipe of `rings` ring pairs of `slots` slots and `buf_size`-byte buffers.
pub fn pair(rings: u32, slots: u32, buf_size: u32) -> (Vm1, Vm1) {
    let (a, b) = pipe_ports(rings, slots, buf_size);
    (
        vm_on(&a, 1, DriverConfig::default(), no_poll()),
        vm_on(&b, 2, DriverConfig::default(), no_poll()),
    )
}

/// [`pair`] with the host in kloop mode (`kloop`) or direct mode (`klooptx=off,klooprx=off`)
/// and requests carried by `transport`.
pub fn pair_on(
    kloop: bool,
    transport: Transport,
    rings: u32,
    slots: u32,
    buf_size: u32,
) -> (Vm1, Vm1) {
    pair_with(kloop, HostConfig { transport, ..no_poll() }, rings, slots, buf_size)
}

/// [`pair_on`] with the transport's settings `host`.
pub fn pair_with(
    kloop: bool,
    host: HostConfig,
    rings: u32,
    slots: u32,
    buf_size: u32,
) -> (Vm1, Vm1) {
    let (a, b) = pipe_ports(rings, slots, buf_size);
    let nd = |p: &Arc<NmPort>| Netdev {
        kloop_tx: kloop,
        kloop_rx: kloop,
        ..Netdev::passthrough(p.clone())
    };
    (
        vm_with(nd(&a), 1, DriverConfig::default(), host),
        vm_with(nd(&b), 2, DriverConfig::default(), host),
    )
}

/// An Ethernet frame from VM `src` to VM `dst` carrying `seq`, `len` bytes long.
pub fn frame(src: u8, dst: u8, seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&mac(dst));
    f[6..12].copy_from_slice(&mac(src));
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    if len >= 22 {
        f[14..22].copy_from_slice(&seq.to_be_bytes());
    }
    for (i, b) in f.iter_mut().enumerate().skip(22) {
        *b = (seq as usize * 31 + i) as u8;
    }
    f
}

/// A port with its own memory region (`mem_id`), for a switch.
pub fn lone_port(mem_id: u16, rings: u32, slots: u32) -> Arc<NmPort> {
    let mem =
        Arc::new(NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap());
    NmPort::new(mem, &PortSpec::new("p", rings, slots)).unwrap()
}

/// Two VMs on a VALE-like switch; `vnet` negotiates the 12-byte virtio-net header on both.
pub fn switch_pair(vnet: bool) -> (Vm1, Vm1, Arc<ptnetd::model::switch::Switch>) {
    let sw = ptnetd::model::switch::Switch::new("vale-s");
    let (p1, p2) = (lone_port(21, 1, 256), lone_port(22, 1, 256));
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    let drv = DriverConfig { vnet_hdr: vnet, ..DriverConfig::default() };
    (vm_on(&p1, 1, drv, no_poll()), vm_on(&p2, 2, drv, no_poll()), sw)
}
