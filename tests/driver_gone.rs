//! A device that goes away under the driver (a vfio-user server that exits, a surprise removal):
//! its registers read all-ones. The plain daemon's loop must notice, and the shutdown must be
//! clean without DELETE (the device cannot take it) and without freeing the CSB.

use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::platform::sim::{SimFunction, SimIrq, SimPlatform};
use ptnetd::platform::{BarSpace, Dma, MsiMessage, PciFunction, Platform, PlatformError};
use ptnetd::shm::Region;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

mod kit;
use kit::*;

/// A sim function that reads all-ones and drops writes once `gone` is set.
#[derive(Debug)]
struct Unpluggable {
    f: SimFunction,
    gone: Arc<AtomicBool>,
}

impl Unpluggable {
    fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}

impl PciFunction for Unpluggable {
    fn name(&self) -> String {
        self.f.name()
    }
    fn config_read(&self, offset: u16) -> u32 {
        if self.gone() {
            u32::MAX
        } else {
            self.f.config_read(offset)
        }
    }
    fn config_write(&self, offset: u16, value: u32) {
        if !self.gone() {
            self.f.config_write(offset, value)
        }
    }
    fn enable_bar(&mut self, bar: u8) -> Result<BarSpace, PlatformError> {
        self.f.enable_bar(bar)
    }
    fn bar_read32(&self, bar: u8, offset: u32) -> u32 {
        if self.gone() {
            u32::MAX
        } else {
            self.f.bar_read32(bar, offset)
        }
    }
    fn bar_write32(&self, bar: u8, offset: u32, value: u32) {
        if !self.gone() {
            self.f.bar_write32(bar, offset, value)
        }
    }
    fn map_bar(&mut self, bar: u8, len: usize) -> Result<Region, PlatformError> {
        self.f.map_bar(bar, len)
    }
    fn enable_msix(&mut self) -> Result<(), PlatformError> {
        self.f.enable_msix()
    }
}

/// The sim platform whose functions can all be unplugged at once.
#[derive(Debug)]
struct UnplugPlatform {
    sim: SimPlatform,
    gone: Arc<AtomicBool>,
}

impl UnplugPlatform {
    fn wrap(&self, f: SimFunction) -> Unpluggable {
        Unpluggable { f, gone: self.gone.clone() }
    }
}

impl Platform for UnplugPlatform {
    type Function = Unpluggable;
    type Irq = SimIrq;

    fn primary(&mut self) -> Result<Unpluggable, PlatformError> {
        let f = self.sim.primary()?;
        Ok(self.wrap(f))
    }
    fn find_functions(
        &mut self,
        vendor: u16,
        device: u16,
    ) -> Result<Vec<Unpluggable>, PlatformError> {
        let fs = self.sim.find_functions(vendor, device)?;
        Ok(fs.into_iter().map(|f| self.wrap(f)).collect())
    }
    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError> {
        self.sim.alloc_dma(len)
    }
    fn alloc_vectors(
        &mut self,
        function: &Unpluggable,
        n: u16,
    ) -> Result<Vec<(MsiMessage, SimIrq)>, PlatformError> {
        self.sim.alloc_vectors(&function.f, n)
    }
    fn wait_interrupts(&self, timeout: Duration) {
        self.sim.wait_interrupts(timeout)
    }
    fn now(&self) -> Duration {
        self.sim.now()
    }
}

fn attached() -> (Arc<ptnetd::model::ptnet::PtnetDevice>, UnplugPlatform, Ptnet<UnplugPlatform>) {
    let (vm, dev) = vm_for(&port(21, 1, 64));
    let sim = SimPlatform::new(vm.clone(), slot_of(&vm, &dev));
    let mut plat = UnplugPlatform { sim, gone: Arc::new(AtomicBool::new(false)) };
    let drv = Ptnet::attach(&mut plat, DriverConfig::default()).unwrap();
    assert!(dev.is_running());
    (dev, plat, drv)
}

#[test]
fn the_daemon_loop_returns_when_the_device_goes_away() {
    let (dev, plat, mut drv) = attached();
    assert!(drv.present());
    let gone = plat.gone.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            drv.run_until_gone(&plat, Duration::from_millis(20));
            done_tx.send(()).unwrap();
        });
        // Still there: the loop keeps running.
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        gone.store(true, Ordering::SeqCst);
        // Gone: it returns within a few checks (deadline, not a fixed sleep).
        done_rx.recv_timeout(T).expect("run_until_gone did not notice the device go");
    });
    assert!(!drv.present());
    // A clean shutdown, with nothing sent to the device and the CSB left where the host put it.
    assert_eq!(drv.shutdown(), Ok(()));
    assert!(dev.is_running(), "no DELETE can reach a device that is gone");
    let (gh, hg) = dev.csb_regions();
    assert!(gh.is_some() && hg.is_some(), "the CSB stays mapped at the host");
}

#[test]
fn a_present_device_is_deleted_at_shutdown() {
    let (dev, _plat, drv) = attached();
    assert!(drv.present());
    assert_eq!(drv.shutdown(), Ok(()));
    assert!(!dev.is_running());
}
