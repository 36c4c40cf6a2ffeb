//! `cargo bench --bench ptnet`: the driver core against the embedded device model, measured side
//! by side in one run (the machine is shared and noisy: compare the ratios, not the absolutes).
//!
//! * copy path (stack mode, §8.5) over a netmap pipe, 60-byte frames, bursts of 1/32/256;
//! * zero-copy path (netmap mode, §8.2–8.3) through a reflector, the `--selftest` workload;
//! * the raw script guest (`model::script`) over the same kind of pipe, as a reference;
//! * the copy path again with direct TX (`klooptx=off`, §8.6): the kick moves the frames to the
//!   peer in the sender's thread, one thread hop fewer. (Direct RX is not measured: the driver's
//!   copy path kicks an RX ring only when it releases slots, so with `klooprx=off` nothing ever
//!   publishes the first frames' hwtail.)
//!
//! Every run also reports kicks and interrupts per packet. Budgets for these figures belong to a
//! later issue; this binary only measures.

use ptnetd::driver::copy::CopyError;
use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec, Reflector};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::script::{Guest, Opts};
use ptnetd::model::vm::Vm;
use ptnetd::platform::sim::SimPlatform;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Nic {
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
    dev: Arc<PtnetDevice>,
}

fn vm_for(port: &Arc<NmPort>, direct: bool) -> (Arc<Vm>, Arc<PtnetDevice>, u8) {
    let vm = Vm::new(64).expect("vm");
    let mut nd = Netdev::passthrough(port.clone());
    nd.kloop_tx = !direct;
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).expect("dev");
    let slot = vm.slot_of(&dev).expect("slot");
    (vm, dev, slot)
}

fn nic(port: &Arc<NmPort>, direct: bool) -> Nic {
    let (vm, dev, slot) = vm_for(port, direct);
    let mut plat = SimPlatform::new(vm, slot);
    let drv = Ptnet::attach(&mut plat, DriverConfig::default()).expect("attach");
    Nic { plat, drv, dev }
}

fn pipe(slots: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let mem = Arc::new(NetmapMemory::new(1, MemConfig::for_ports(2, 2, slots, 64)).expect("mem"));
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{b", 1, slots)).expect("port");
    let b = NmPort::new(mem, &PortSpec::new("pipe}b", 1, slots)).expect("port");
    PipeEnd::connect(&a, &b).expect("pipe");
    (a, b)
}

struct Row {
    name: String,
    frames: u64,
    elapsed: Duration,
    kicks: u64,
    irqs: u64,
}

impl Row {
    fn mpps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn copy_path(n: u64, batch: usize, direct: bool) -> Row {
    let (pa, pb) = pipe(1024);
    let (mut a, mut b) = (nic(&pa, direct), nic(&pb, direct));
    let frame = vec![0x5au8; 60];
    let mut buf = vec![0u8; 2048];
    let (mut sent, mut got) = (0u64, 0u64);
    let t0 = Instant::now();
    while got < n {
        let mut k = 0;
        while sent < n && k < batch {
            match a.drv.send(0, &frame, None) {
                Ok(()) => {
                    sent += 1;
                    k += 1;
                }
                Err(CopyError::Full) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        a.drv.flush_tx(0).expect("flush");
        let before = got;
        while let Some(_r) = b.drv.recv(1, &mut buf).expect("recv") {
            got += 1;
        }
        b.drv.flush_rx(1).expect("flush");
        if got == before {
            b.drv.wait_work(&b.plat, Duration::from_millis(1));
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let (ra, rb) = (a.drv.ring(0).unwrap(), b.drv.ring(1).unwrap());
            eprintln!(
                "a: {:?} ktoa {:?} knk {} atok {:?}",
                ra.k,
                ra.ktoa.appl_read(),
                ra.ktoa.kern_need_kick(),
                ra.atok.kern_read()
            );
            eprintln!(
                "b: {:?} ktoa {:?} knk {} atok {:?}",
                rb.k,
                rb.ktoa.appl_read(),
                rb.ktoa.kern_need_kick(),
                rb.atok.kern_read()
            );
            panic!("stalled at {got} sent {sent}");
        }
    }
    let elapsed = t0.elapsed();
    let kicks = a.drv.stats(0).unwrap_or_default().kicks + b.drv.stats(1).unwrap_or_default().kicks;
    let irqs = a.dev.counters(0).unwrap_or_default().interrupts
        + b.dev.counters(1).unwrap_or_default().interrupts;
    let mode = if direct { ", direct TX" } else { "" };
    Row { name: format!("driver copy path, burst {batch}{mode}"), frames: n, elapsed, kicks, irqs }
}

fn zero_copy(n: u64) -> Row {
    let mem = Arc::new(NetmapMemory::new(2, MemConfig::for_ports(1, 2, 1024, 64)).expect("mem"));
    let p = NmPort::new(mem, &PortSpec::new("refl", 1, 1024)).expect("port");
    p.set_backend(Reflector::new(&p));
    let mut a = nic(&p, false);
    let r = ptnetd::selftest::run(&mut a.drv, &a.plat, n, Duration::from_secs(60));
    assert!(r.received == n && r.corrupt == 0, "selftest failed: {r:?}");
    let kicks = a.drv.stats(0).unwrap_or_default().kicks + a.drv.stats(1).unwrap_or_default().kicks;
    let irqs = a.dev.counters(0).unwrap_or_default().interrupts
        + a.dev.counters(1).unwrap_or_default().interrupts;
    let name = "driver zero-copy via reflector (selftest frames: 60..9000 B, checked)".into();
    Row { name, frames: n, elapsed: r.elapsed, kicks, irqs }
}

fn script_guest(n: u64) -> Row {
    let (pa, pb) = pipe(1024);
    let (vma, da, _) = vm_for(&pa, false);
    let (vmb, db, _) = vm_for(&pb, false);
    let mut ga = Guest::try_attach(&vma, &da, &Opts::default()).expect("attach");
    let mut gb = Guest::try_attach(&vmb, &db, &Opts::default()).expect("attach");
    assert_eq!((ga.create(), gb.create()), (0, 0));
    let frame = vec![0x5au8; 60];
    let (mut sent, mut got) = (0u64, 0u64);
    let t0 = Instant::now();
    while got < n {
        let mut k = 0;
        while sent < n && k < 256 && ga.try_put_tx(0, &frame).expect("put") {
            sent += 1;
            k += 1;
        }
        ga.try_txsync(0, ptnetd::abi::csb::NAF_FORCE_RECLAIM).expect("txsync");
        let seen = vmb.irq().generation();
        gb.try_rxsync(0).expect("rxsync");
        let before = got;
        while gb.try_get_rx(0).expect("rx").is_some() {
            got += 1;
        }
        if got == before {
            vmb.irq().wait(seen, Duration::from_millis(1));
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "stalled at {got}");
    }
    let elapsed = t0.elapsed();
    let kicks = da.counters(0).unwrap_or_default().kicks + db.counters(1).unwrap_or_default().kicks;
    let irqs = da.counters(0).unwrap_or_default().interrupts
        + db.counters(1).unwrap_or_default().interrupts;
    Row { name: "raw script guest, burst 256 (reference)".into(), frames: n, elapsed, kicks, irqs }
}

fn main() {
    let n: u64 =
        std::env::var("PTNET_BENCH_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000);
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep that run short.
    let n = if std::env::args().any(|a| a == "--bench") { n } else { n.min(5_000) };
    // `PTNET_BENCH_ROWS=1,4` runs only those rows (0-based, in the order below), for profiling.
    let only: Option<Vec<usize>> = std::env::var("PTNET_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let all: Vec<Box<dyn Fn() -> Row>> = vec![
        Box::new(move || script_guest(n)),
        Box::new(move || copy_path(n, 1, false)),
        Box::new(move || copy_path(n, 32, false)),
        Box::new(move || copy_path(n, 256, false)),
        Box::new(move || copy_path(n, 1, true)),
        Box::new(move || copy_path(n, 256, true)),
        Box::new(move || zero_copy(n)),
    ];
    let rows: Vec<Row> = all
        .iter()
        .enumerate()
        .filter(|(k, _)| only.as_ref().is_none_or(|o| o.contains(k)))
        .map(|(_, f)| f())
        .collect();
    let base = rows[0].mpps();
    println!(
        "{:<70} {:>10} {:>9} {:>8} {:>11} {:>11}",
        "path (60-byte frames unless noted)", "frames", "Mpps", "ratio", "kicks/pkt", "irqs/pkt"
    );
    for r in &rows {
        println!(
            "{:<70} {:>10} {:>9.3} {:>8.2} {:>11.4} {:>11.4}",
            r.name,
            r.frames,
            r.mpps(),
            r.mpps() / base,
            r.kicks as f64 / r.frames as f64,
            r.irqs as f64 / r.frames as f64
        );
    }
}
