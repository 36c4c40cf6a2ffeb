//! The CSB pages are never freed while the device may still write them (issue 7 §2, spec §11):
//! every error of the bring-up after the BAH/BAL writes, and a driver dropped without
//! `shutdown`, must first DELETE and zero BAH/BAL. The VM checks it: when the guest releases DMA
//! memory a device still maps, or when released memory changes afterwards, it records a
//! violation.

use ptnetd::abi::netmap::IF_RING_OFS;
use ptnetd::abi::pci::IO_BAR;
use ptnetd::abi::regs::{self, status};
use ptnetd::driver::{DriverConfig, DriverError, Ptnet};
use ptnetd::model::ptnet::PtnetDevice;
use ptnetd::model::vm::{DmaViolation, Vm};
use ptnetd::platform::sim::{SimFault, SimPlatform};
use ptnetd::platform::{PciFunction, Platform};
use ptnetd::shm::Region;
use std::sync::Arc;

mod kit;
use kit::*;

/// What a case breaks before `attach`.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// A platform call fails.
    Fault(SimFault),
    /// A device register reads this value.
    Register(u32, u32),
    /// CREATE fails with this status.
    Create(u32),
    /// The netmap_if's first ring offset points outside the region.
    RingOfs,
    /// The host's state of RX ring 0, published at CREATE, has head and cur out of range.
    HostHead,
}

/// No device wrote into freed memory and no memory a device maps was released; the device is
/// stopped and maps no CSB array; `released` more DMA allocations were released.
fn assert_clean(vm: &Vm, dev: &PtnetDevice, released: usize, ctx: &str) {
    assert_eq!(vm.dma_violations(), Vec::<DmaViolation>::new(), "{ctx}");
    assert!(!dev.is_running(), "{ctx}: the device still runs");
    let (gh, hg) = dev.csb_regions();
    assert!(gh.is_none() && hg.is_none(), "{ctx}: the device still maps a CSB array");
    assert_eq!(vm.dma_released_count(), released, "{ctx}: CSB pages released");
}

/// Every error path of `attach` after the BAH/BAL writes (§6 B4): MSI-X (B6), VNET_HDR_LEN
/// (B10), the memdev region (C1), the rings (C3), CREATE and the import of the host's indices
/// (C4). After each, the device is mended and the next attach works.
#[test]
fn attach_errors_after_the_csb_writes_free_nothing_the_device_holds() {
    let cases = [
        ("alloc_vectors", Break::Fault(SimFault::AllocVectors)),
        ("enable_msix", Break::Fault(SimFault::EnableMsix)),
        ("VNET_HDR_LEN", Break::Register(regs::VNET_HDR_LEN, 7)),
        ("NUM_TX_SLOTS", Break::Register(regs::NUM_TX_SLOTS, 1)),
        ("map BAR1", Break::Fault(SimFault::MapBar)),
        ("NIFP_OFS", Break::Register(regs::NIFP_OFS, 4)),
        ("ring_ofs", Break::RingOfs),
        ("CREATE", Break::Create(status::ENXIO)),
        ("import", Break::HostHead),
    ];
    for (what, brk) in cases {
        let p = port(41, 1, 64);
        let (vm, dev) = vm_for(&p);
        let mut plat = SimPlatform::new(vm.clone(), slot_of(&vm, &dev));
        let ring_ofs = p.nifp_ofs() as usize + IF_RING_OFS;
        let saved_ofs = p.mem().region().load_u64(ring_ofs);
        let set_host_head = |v: u32| {
            let mut hr = p.rx_ring(0).unwrap();
            hr.kring.rhead = v;
            hr.kring.rcur = v;
        };
        match brk {
            Break::Fault(f) => plat.fail_next(f),
            Break::Register(off, v) => dev.override_register(off, Some(v)),
            Break::Create(st) => dev.fail_next_create(st),
            Break::RingOfs => p.mem().region().store_u64(ring_ofs, 1 << 40),
            Break::HostHead => set_host_head(1000),
        }
        let released = vm.dma_released_count();
        let e = Ptnet::attach(&mut plat, DriverConfig::default()).expect_err(what);
        let ctx = format!("{what}: {e}");
        let expected = match brk {
            Break::Fault(_) => matches!(e, DriverError::Platform(_)),
            Break::Register(..) => {
                matches!(e, DriverError::BadDevice(_) | DriverError::BadLayout(_))
            }
            Break::RingOfs => matches!(e, DriverError::BadLayout(_)),
            Break::Create(st) => e == DriverError::Ctl { cmd: regs::PTCTL_CREATE, status: st },
            Break::HostHead => matches!(e, DriverError::Sync(_)),
        };
        assert!(expected, "{ctx}: not the expected error");
        assert_clean(&vm, &dev, released + 2, &ctx);
        match brk {
            Break::Register(off, _) => dev.override_register(off, None),
            Break::RingOfs => p.mem().region().store_u64(ring_ofs, saved_ofs),
            Break::HostHead => set_host_head(0),
            Break::Fault(_) | Break::Create(_) => {}
        }
        let (_plat, drv) = attach(&vm, &dev, DriverConfig::default())
            .unwrap_or_else(|e| panic!("{ctx}: attach after mending: {e}"));
        assert!(dev.is_running(), "{ctx}");
        drv.shutdown().unwrap();
        assert_clean(&vm, &dev, released + 4, &format!("{ctx}, then attach and shutdown"));
    }
}

/// A running driver dropped without `shutdown` (an error or a panic in a later layer) stops the
/// device before its CSB pages go; `shutdown` is the same teardown, explicit.
#[test]
fn dropping_or_shutting_down_a_running_driver_frees_the_csb_last() {
    for explicit in [false, true] {
        let p = port(42, 2, 64);
        let Nic { vm, drv, dev, .. } = nic(&p, DriverConfig::default());
        assert!(dev.is_running());
        let released = vm.dma_released_count();
        if explicit {
            drv.shutdown().unwrap();
        } else {
            drop(drv);
        }
        assert_clean(&vm, &dev, released + 2, &format!("explicit shutdown: {explicit}"));
    }
}

/// The detector itself: releasing memory a device maps is caught (when the last window on it
/// goes, not before), and so is a write into memory after its release.
#[test]
fn the_vm_catches_a_release_of_mapped_memory_and_writes_after_release() {
    let p = port(43, 1, 64);
    let (vm, dev) = vm_for(&p);
    let slot = slot_of(&vm, &dev);
    let mut plat = SimPlatform::new(vm.clone(), slot);
    let nic = plat.primary().unwrap();
    let map = |pa: u64| {
        nic.bar_write32(IO_BAR, regs::CSB_GH_BAH, (pa >> 32) as u32);
        nic.bar_write32(IO_BAR, regs::CSB_GH_BAL, pa as u32);
    };
    let dma = plat.alloc_dma(4096).unwrap();
    let gpa = dma.phys;
    map(gpa);
    assert!(dev.csb_regions().0.is_some(), "the device maps the array");
    let window = dma.region.sub(64, 64).unwrap();
    drop(dma);
    assert_eq!(vm.dma_released_count(), 0, "a sub-window still holds the memory");
    drop(window);
    assert_eq!(vm.dma_violations(), vec![DmaViolation::FreedWhileMapped { gpa, len: 4096, slot }]);
    // Unmapped first (BAL = 0), then released: no new violation; a later write is caught.
    let dma = plat.alloc_dma(4096).unwrap();
    let gpa2 = dma.phys;
    map(gpa2);
    map(0);
    assert!(dev.csb_regions().0.is_none());
    drop(dma);
    assert_eq!(vm.dma_violations().len(), 1);
    Region::from_guest(vm.ram(), gpa2 + 8, 8).unwrap().store_u32(0, 7);
    assert_eq!(vm.dma_violations()[1..], [DmaViolation::WrittenAfterFree { gpa: gpa2 + 8 }]);
    let _: &Arc<Vm> = &vm;
}

/// §5.3/§7.5: the import after CREATE refuses host indices that are in range but out of
/// circular order (`hwcur ≤ head ≤ cur ≤ hwtail`), on TX and RX rings, and still frees
/// nothing the device holds; a mended host then attaches.
#[test]
fn import_refuses_host_indices_out_of_order() {
    use ptnetd::ring::{Kring, RingError};
    // (tx, hwcur, head, cur, hwtail) as the host's kring holds them before CREATE.
    let cases = [
        (false, 0, 5, 5, 0),   // RX: head past hwtail
        (false, 0, 2, 1, 4),   // RX: cur before head
        (false, 10, 5, 5, 20), // RX: head before hwcur
        (true, 0, 5, 5, 3),    // TX: head past hwtail
        (true, 0, 3, 2, 63),   // TX: cur before head
    ];
    for (tx, hwcur, head, cur, hwtail) in cases {
        let ctx = format!("tx {tx}: hwcur {hwcur} head {head} cur {cur} hwtail {hwtail}");
        let p = port(44, 1, 64);
        let (vm, dev) = vm_for(&p);
        let set = |k: Kring| {
            let mut hr = if tx { p.tx_ring(0) } else { p.rx_ring(0) }.unwrap();
            hr.kring = k;
        };
        let fresh = if tx { Kring::new_tx(64) } else { Kring::new_rx(64) };
        set(Kring { hwcur, hwtail, rhead: head, rcur: cur, rtail: hwtail, ..fresh });
        let released = vm.dma_released_count();
        match attach(&vm, &dev, DriverConfig::default()) {
            Err(DriverError::Sync(ptnetd::driver::ring::SyncError::Host(
                RingError::OrderViolation { .. },
            ))) => {}
            Err(e) => panic!("{ctx}: wrong error {e}"),
            Ok(_) => panic!("{ctx}: imported"),
        }
        assert_clean(&vm, &dev, released + 2, &ctx);
        set(fresh);
        let (_plat, drv) =
            attach(&vm, &dev, DriverConfig::default()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        drv.shutdown().unwrap();
    }
}
