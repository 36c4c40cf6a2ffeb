//! Model VMs for the driver: a VM of the embedded hypervisor with one ptnet NIC on a given
//! port, and the platform ([`SimPlatform`]) the driver reaches it through. Used by the main job
//! and by `ptnetd --selftest N` on the host.

use super::{drive, DriveOpts};
use crate::model::memory::{MemConfig, MemError, NetmapMemory};
use crate::model::port::{NmPort, PortError, PortSpec, Reflector};
use crate::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use crate::model::vm::{Vm, VmError};
use crate::platform::sim::SimPlatform;
use core::fmt;
use std::sync::Arc;

/// Guest RAM of a model VM, in MiB (only CSBs live there).
const VM_RAM_MIB: u64 = 64;

/// Errors building a model VM.
#[derive(Debug)]
pub enum EmbeddedError {
    /// The netmap region could not be created.
    Mem(MemError),
    /// The port could not be created.
    Port(PortError),
    /// The VM or its device could not be created.
    Vm(VmError),
    /// The NIC is not on the VM's bus.
    NoNic,
}

impl fmt::Display for EmbeddedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mem(e) => write!(f, "netmap memory: {e}"),
            Self::Port(e) => write!(f, "port: {e}"),
            Self::Vm(e) => write!(f, "vm: {e}"),
            Self::NoNic => write!(f, "the ptnet function is not on the bus"),
        }
    }
}

impl std::error::Error for EmbeddedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Mem(e) => Some(e),
            Self::Port(e) => Some(e),
            Self::Vm(e) => Some(e),
            Self::NoNic => None,
        }
    }
}

impl From<MemError> for EmbeddedError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

impl From<PortError> for EmbeddedError {
    fn from(e: PortError) -> Self {
        Self::Port(e)
    }
}

impl From<VmError> for EmbeddedError {
    fn from(e: VmError) -> Self {
        Self::Vm(e)
    }
}

/// Where a model VM's NIC sits and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NicPlace {
    /// Its MAC address (`None`: the model's default, 52:54:00:12:34:56).
    pub mac: Option<[u8; 6]>,
    /// Its PCI slot (`None`: the first free one, 3).
    pub slot: Option<u8>,
}

/// A model VM with one ptnet NIC on `port` placed as `place` asks; returns the device and the
/// platform a driver in that VM uses.
pub fn vm_on_port(
    port: Arc<NmPort>,
    place: NicPlace,
) -> Result<(Arc<PtnetDevice>, SimPlatform), EmbeddedError> {
    let vm = Vm::with_first_slot(VM_RAM_MIB, place.slot.unwrap_or(3))?;
    let cfg = PtnetConfig { mac: place.mac, ..PtnetConfig::default() };
    let dev = vm.add_ptnet(Netdev::passthrough(port), cfg)?;
    let slot = vm.slot_of(&dev).ok_or(EmbeddedError::NoNic)?;
    Ok((dev, SimPlatform::new(vm, slot)))
}

/// A port `name` with one TX and one RX ring of `slots` slots in a netmap region of its own.
pub fn own_port(name: &str, slots: u32) -> Result<Arc<NmPort>, EmbeddedError> {
    let mem = NetmapMemory::new(1, MemConfig::for_ports(1, 2, slots, 64))?;
    Ok(NmPort::new(Arc::new(mem), &PortSpec::new(name, 1, slots))?)
}

/// The self test against an in-process VM: one ptnet NIC (one ring each way of `slots`
/// slots) on a port whose backend reflects every frame, the driver on [`SimPlatform`].
pub fn model_selftest(frames: u64, slots: u32, opts: &DriveOpts) -> bool {
    let built = own_port("reflector", slots).and_then(|port| {
        port.set_backend(Reflector::new(&port));
        vm_on_port(port, NicPlace::default())
    });
    match built {
        Ok((_dev, mut plat)) => {
            let opts = DriveOpts { selftest: Some(frames), ..opts.clone() };
            drive(&mut plat, &opts, || {})
        }
        Err(e) => {
            log::error!("model VM: {e}");
            false
        }
    }
}

/// The MAC of VM `n` (0-based) on the embedded switch: 52:54:00:12:34:56 + n, as QEMU numbers
/// NICs.
pub fn switch_mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0x12, 0x34, 0x56 + n]
}

/// A model VM on a switch port with ptnetd serving its two schemes behind the in-process kernel.
pub struct SwitchedVm {
    /// The kernel that reaches ptnetd's schemes.
    pub kernel: crate::scheme::host::HostKernel<SimPlatform>,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its switch port (for a pcap tap).
    pub port: Arc<NmPort>,
    /// What the driver found.
    pub info: crate::driver::DeviceInfo,
}

/// VM `n` (0-based: MAC [`switch_mac`]`(n)`, PCI slot 3 + n) with a `rings`-ring-pair NIC
/// (1024 slots) on a new port of `sw`, and ptnetd's daemon serving it.
pub fn switched_vm(
    sw: &Arc<crate::model::switch::Switch>,
    n: u8,
    rings: u32,
) -> Result<SwitchedVm, Box<dyn std::error::Error>> {
    use crate::scheme::host::{HostConfig, HostKernel};
    let mem = NetmapMemory::new(20 + u16::from(n), MemConfig::for_ports(1, 2 * rings, 1024, 64))?;
    let port = NmPort::new(Arc::new(mem), &PortSpec::new(&format!("vm{}", n + 1), rings, 1024))?;
    sw.attach_port(&port);
    let mac = switch_mac(n);
    let place = NicPlace { mac: Some(mac), slot: Some(3 + n) };
    let (_dev, mut plat) = vm_on_port(port.clone(), place)?;
    let nic = crate::driver::Ptnet::attach(&mut plat, crate::driver::DriverConfig::default())?;
    let info = nic.info().clone();
    let bell = plat.doorbell();
    let daemon = crate::scheme::Daemon::new(plat, nic);
    let kernel = HostKernel::spawn(daemon, bell, HostConfig::default());
    Ok(SwitchedVm { kernel, mac, port, info })
}

/// ptnetd's daemon serving both schemes for a model VM whose NIC (`rings` ring pairs) sits on a
/// port that reflects every frame, behind the in-process kernel (polling fallback off). What the
/// host modes of the test clients (`ptnet-scheme-test --model`, `ptnet-pktgen --model`) run on.
pub fn reflector_daemon(
    rings: u32,
) -> Result<crate::scheme::host::HostKernel<SimPlatform>, Box<dyn std::error::Error>> {
    use crate::scheme::host::{HostConfig, HostKernel};
    let mem = NetmapMemory::new(1, MemConfig::for_ports(1, 2 * rings, 256, 64))?;
    let port = NmPort::new(Arc::new(mem), &PortSpec::new("reflector", rings, 256))?;
    port.set_backend(Reflector::new(&port));
    let (dev, mut plat) = vm_on_port(port, NicPlace::default())?;
    drop(dev);
    let nic = crate::driver::Ptnet::attach(&mut plat, crate::driver::DriverConfig::default())?;
    let bell = plat.doorbell();
    let cfg = HostConfig { poll: None, ..HostConfig::default() };
    let daemon = crate::scheme::Daemon::new(plat, nic);
    Ok(HostKernel::spawn(daemon, bell, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DriverConfig, Ptnet};

    #[test]
    fn the_model_selftest_passes() {
        let opts = DriveOpts::default();
        assert!(model_selftest(2000, 256, &opts));
        assert!(model_selftest(100, 32, &DriveOpts { vnet: true, ..opts }));
    }

    #[test]
    fn a_vm_places_its_nic_where_asked() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
        let place = NicPlace { mac: Some(mac), slot: Some(4) };
        let (dev, mut plat) = vm_on_port(own_port("p", 64).unwrap(), place).unwrap();
        assert_eq!(dev.port().name(), "p");
        let drv = Ptnet::attach(&mut plat, DriverConfig::default()).unwrap();
        assert_eq!((drv.info().name.as_str(), drv.info().mac), ("pci-0000-00-04.0", mac));
        drv.shutdown().unwrap();
        let (_, mut plat) = vm_on_port(own_port("q", 64).unwrap(), NicPlace::default()).unwrap();
        let drv = Ptnet::attach(&mut plat, DriverConfig::default()).unwrap();
        let default_mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!((drv.info().name.as_str(), drv.info().mac), ("pci-0000-00-03.0", default_mac));
        drv.shutdown().unwrap();
    }
}
