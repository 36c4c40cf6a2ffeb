//! The driver against a misbehaving or unusual host (issue 3): bring-up matrix, negative probes,
//! CREATE failure, hostile host, lost interrupts, and the notification economy.

/// Prints a measurement so that it shows in `cargo test` output even when the test passes
/// (the harness captures `eprintln!`, not direct writes to standard error).
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

use ptnetd::abi::netmap::IF_RING_OFS;
use ptnetd::abi::regs;
use ptnetd::driver::copy::CopyError;
use ptnetd::driver::{DriverConfig, DriverError, Ptnet};
use ptnetd::model::hostile::{self, Hostile};
use ptnetd::model::memdev::MemdevDevice;
use ptnetd::model::pci::{BarDef, ConfigSpace, PciIdentity};
use ptnetd::model::switch::Switch;
use ptnetd::model::vm::{PciFunction, Vm};
use ptnetd::platform::sim::SimPlatform;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod kit;
use kit::*;

/// Bring-up over 1..32 rings, 64..4096 slots, with and without vnet header, on a pipe and on
/// the switch; traffic on every ring; DELETE/CREATE cycles; teardown and re-bring-up.
#[test]
fn bring_up_matrix() {
    for &(rings, slots) in &[(1u32, 64u32), (2, 4096), (4, 1024), (16, 128)] {
        for vnet in [false, true] {
            for on_switch in [false, true] {
                let cfg = DriverConfig { vnet_hdr: vnet, ..Default::default() };
                let sw = Switch::new("vale-m"); // owned here: ports refer to it weakly
                let (pa, pb) = if on_switch {
                    let (a, b) = (port(21, rings, slots), port(22, rings, slots));
                    sw.attach_port(&a);
                    sw.attach_port(&b);
                    (a, b)
                } else {
                    pipe(rings, slots)
                };
                let mut a = nic(&pa, cfg);
                let mut b = nic(&pb, cfg);
                let ctx = format!("rings {rings} slots {slots} vnet {vnet} switch {on_switch}");
                assert_eq!(a.drv.num_rings(), 2 * rings, "{ctx}");
                assert_eq!(
                    a.drv.info().vnet_hdr_len,
                    if vnet && on_switch { 12 } else { 0 },
                    "{ctx}"
                );
                for r in 0..rings {
                    let f: Vec<_> = (0..20).map(|s| frame(s, 60 + 300 * s as usize)).collect();
                    assert_eq!(
                        transfer(&mut a, r, &mut b, rings + r, &f, 8, 8),
                        f,
                        "{ctx} ring {r}"
                    );
                }
                for _ in 0..3 {
                    a.drv.restart().unwrap();
                }
                let f: Vec<_> = (0..10).map(|s| frame(s, 100)).collect();
                assert_eq!(transfer(&mut a, 0, &mut b, rings, &f, 8, 8), f, "{ctx} after restarts");
                a.drv.shutdown().unwrap();
                assert!(!a.dev.is_running(), "{ctx}");
                assert_eq!(a.vm.dma_violations(), vec![], "{ctx}");
                let (plat, drv) = attach(&a.vm, &a.dev, cfg).unwrap();
                a.plat = plat;
                a.drv = drv;
                assert_eq!(
                    transfer(&mut a, 0, &mut b, rings, &f, 8, 8),
                    f,
                    "{ctx} after re-bring-up"
                );
                let _ = &a.port;
            }
        }
    }
}

fn other(class: [u8; 3], device: u16) -> PciFunction {
    let id = PciIdentity { device_id: device, class, ..PciIdentity::ptnet() };
    let bars = [(0u8, BarDef::mem64(65536, false).unwrap())];
    PciFunction::Other(Arc::new(Mutex::new(ConfigSpace::new(&id, &bars, None).unwrap())))
}

/// §1 pitfall: an xHCI controller with ptnet's ids is not bound.
#[test]
fn wrong_class_is_refused() {
    let vm = Vm::new(16).unwrap();
    let slot = vm.add_function(other([0x0c, 0x03, 0x30], 0x000d));
    let mut plat = SimPlatform::new(vm, slot);
    match Ptnet::attach(&mut plat, DriverConfig::default()) {
        Err(DriverError::NotPtnet { vendor: 0x1b36, device: 0x000d, class }) => {
            assert_eq!(class, (0x0c, 0x03, 0x30))
        }
        other => panic!("expected NotPtnet, got {other:?}"),
    }
}

/// No memdev, a root port with the memdev's ids, and a memdev of another region (MEMID
/// mismatch) all fail with NoMemdev.
#[test]
fn missing_or_mismatched_memdev_is_refused() {
    let p = port(31, 1, 64);
    let (vm, dev) = vm_for(&p);
    let md_slot =
        vm.functions().iter().find(|(_, f)| matches!(f, PciFunction::Memdev(_))).unwrap().0;
    vm.remove_function(md_slot);
    vm.add_function(other([0x06, 0x04, 0x00], 0x000c)); // pcie-root-port lookalike
    match attach(&vm, &dev, DriverConfig::default()) {
        Err(DriverError::NoMemdev { hostmemid: 31, rejected: 1 }) => {}
        other => panic!("expected NoMemdev, got {other:?}"),
    }
    let q = port(32, 1, 64);
    vm.add_function(PciFunction::Memdev(MemdevDevice::new(q.mem().clone()).unwrap()));
    match attach(&vm, &dev, DriverConfig::default()) {
        Err(DriverError::NoMemdev { hostmemid: 31, rejected: 2 }) => {}
        other => panic!("expected NoMemdev (MEMID mismatch), got {other:?}"),
    }
}

/// §6 C4c: a CREATE failure is reported with its status.
#[test]
fn create_failure_is_reported() {
    let p = port(33, 1, 64);
    let (vm, dev) = vm_for(&p);
    dev.fail_next_create(regs::status::ENXIO);
    match attach(&vm, &dev, DriverConfig::default()) {
        Err(DriverError::Ctl { cmd: 1, status: 6 }) => {}
        other => panic!("expected Ctl error, got {other:?}"),
    }
    assert!(attach(&vm, &dev, DriverConfig::default()).is_ok(), "the next attempt works");
}

/// Registers a buggy or hostile host may report: too many rings, NIFP_OFS outside the region,
/// no slots, a bad VNET_HDR_LEN.
#[test]
fn bad_registers_are_refused() {
    let cases: &[(u32, u32, &str)] = &[
        (regs::NUM_TX_RINGS, 20, "rings"),
        (regs::NUM_RX_RINGS, 0, "rings"),
        (regs::NIFP_OFS, 0xffff_fff0, "NIFP_OFS"),
        (regs::NIFP_OFS, 4, "NIFP_OFS"),
        (regs::NUM_TX_SLOTS, 1, "slots"),
        (regs::NUM_RX_SLOTS, 100_000, "slots"),
        (regs::VNET_HDR_LEN, 7, "VNET_HDR_LEN"),
    ];
    for &(off, val, what) in cases {
        let p = port(34, 2, 64);
        let (vm, dev) = vm_for(&p);
        dev.override_register(off, Some(val));
        let e = attach(&vm, &dev, DriverConfig::default()).expect_err(what);
        assert!(matches!(e, DriverError::BadDevice(_) | DriverError::BadLayout(_)), "{what}: {e}");
        dev.override_register(off, None);
        assert!(attach(&vm, &dev, DriverConfig::default()).is_ok(), "{what}: recovers");
    }
}

/// Ring offsets in the netmap_if that point outside the region, or a ring header that
/// disagrees with the registers, are refused at bring-up.
#[test]
fn bad_netmap_layout_is_refused() {
    for (k, val) in [(0usize, i64::MAX), (2, -1_000_000_000), (0, 1 << 40), (2, 3)] {
        let p = port(35, 1, 64);
        let (vm, dev) = vm_for(&p);
        let nifp = p.nifp_ofs() as usize;
        p.mem().region().store_u64(nifp + IF_RING_OFS + 8 * k, val as u64);
        let e = attach(&vm, &dev, DriverConfig::default()).expect_err("bad ring_ofs");
        assert!(matches!(e, DriverError::BadLayout(_)), "{e}");
    }
    let p = port(36, 1, 64);
    let (vm, dev) = vm_for(&p);
    let ring0 = p.tx_ring(0).unwrap().view.clone();
    p.mem().region().store_u32(ring0.region().addr() - p.mem().region().addr() + 8, 4096);
    let e = attach(&vm, &dev, DriverConfig::default()).expect_err("bad num_slots");
    assert!(matches!(e, DriverError::BadLayout(_)), "{e}");
    // The netmap_if claims more rings than the registers.
    let p = port(37, 1, 64);
    let (vm, dev) = vm_for(&p);
    p.mem().region().store_u32(p.nifp_ofs() as usize + 24, 9);
    assert!(matches!(attach(&vm, &dev, DriverConfig::default()), Err(DriverError::BadLayout(_))));
}

/// A hostile host scribbles on ktoa, the netmap_if, ring headers and slots while traffic runs:
/// the driver reports errors, never panics, never touches memory outside its mappings.
#[test]
fn hostile_host_cannot_crash_the_driver() {
    let (pa, pb) = pipe(2, 128);
    let mut a = nic(&pa, DriverConfig::default());
    let mut b = nic(&pb, DriverConfig::default());
    let mut targets = hostile::targets(&a.dev, &a.port);
    targets.extend(hostile::targets(&b.dev, &b.port));
    let h = Hostile::start(targets, 0x5eed, Duration::ZERO);
    let mut buf = vec![0u8; 2048]; // smaller than some frames the host may claim
    let (mut sent, mut got, mut errors) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        for r in 0..2 {
            match a.drv.send(r, &frame(sent, 60 + (sent as usize % 3000)), None) {
                Ok(()) => sent += 1,
                Err(CopyError::Full) => {}
                Err(_) => errors += 1,
            }
            if a.drv.flush_tx(r).is_err() {
                errors += 1;
            }
            match b.drv.recv(2 + r, &mut buf) {
                Ok(Some(_)) => got += 1,
                Ok(None) => {}
                Err(_) => errors += 1,
            }
            if b.drv.flush_rx(2 + r).is_err() {
                errors += 1;
            }
            let _ = a.drv.txsync(r, 0, 0, 0).is_err();
            let _ = b.drv.rxsync(2 + r, 0, 0, 0).is_err();
        }
        a.drv.take_interrupts(true);
        b.drv.take_interrupts(true);
    }
    let writes = h.stop();
    let stats: u64 =
        (0..4).map(|i| a.drv.stats(i).unwrap().errors + b.drv.stats(i).unwrap().errors).sum();
    report!("hostile: {writes} host writes, sent {sent}, received {got}, errors {errors} + {stats} counted");
    assert!(writes > 1000);
    assert!(errors + stats > 0, "the driver noticed");
    // The driver still tears down cleanly, and freed nothing the device still wrote (§11).
    a.drv.shutdown().unwrap();
    b.drv.shutdown().unwrap();
    assert!(a.vm.dma_violations().is_empty(), "{:?}", a.vm.dma_violations());
    assert!(b.vm.dma_violations().is_empty(), "{:?}", b.vm.dma_violations());
}

/// §9: with every interrupt lost, the polling fallback still moves the traffic.
#[test]
fn lost_interrupts_do_not_stall_traffic() {
    let (pa, pb) = pipe(1, 256);
    let mut a = nic(
        &pa,
        DriverConfig { poll_interval: Some(Duration::from_millis(2)), ..Default::default() },
    );
    let mut b = nic(
        &pb,
        DriverConfig { poll_interval: Some(Duration::from_millis(2)), ..Default::default() },
    );
    a.vm.irq().set_loss(1);
    b.vm.irq().set_loss(1);
    let f: Vec<_> = (0..2000).map(|s| frame(s, 60 + (s as usize * 97) % 4000)).collect();
    assert_eq!(transfer(&mut a, 0, &mut b, 1, &f, usize::MAX, 64), f);
    assert!(b.vm.irq().lost() > 0 || a.vm.irq().lost() > 0, "interrupts were raised and lost");
}

/// Kicks and interrupts per packet at saturation for bursts of 1, 32 and 256 frames.
#[test]
fn notification_economy() {
    let mut per = Vec::new();
    for batch in [1usize, 32, 256] {
        let (pa, pb) = pipe(1, 1024);
        let mut a = nic(&pa, DriverConfig::default());
        let mut b = nic(&pb, DriverConfig::default());
        let n = 20_000u64;
        let f: Vec<_> = (0..n).map(|s| frame(s, 60)).collect();
        assert_eq!(transfer(&mut a, 0, &mut b, 1, &f, usize::MAX, batch).len(), n as usize);
        let (ta, rb) = (a.drv.stats(0).unwrap(), b.drv.stats(1).unwrap());
        let kicks = (ta.kicks + rb.kicks) as f64 / n as f64;
        let irqs = (a.dev.counters(0).unwrap().interrupts + b.dev.counters(1).unwrap().interrupts)
            as f64
            / n as f64;
        report!("economy: batch {batch:3}: {kicks:.4} kicks/pkt (tx {} rx {}), {irqs:.4} interrupts/pkt", ta.kicks, rb.kicks);
        per.push((batch, kicks, irqs));
    }
    let (_, k256, i256) = per[2];
    assert!(k256 < 0.05, "batch 256 kicks/pkt {k256}");
    assert!(i256 < 0.05, "batch 256 interrupts/pkt {i256}");
    assert!(per[2].1 <= per[0].1, "batching never costs more kicks");
}
