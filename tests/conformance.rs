//! Conformance tests of the device model, written from `../shared/spec/ptnet.md`. They drive the
//! model only through raw register reads/writes and raw CSB/ring memory (see `common`).

mod common;

use common::*;
use ptnetd::abi::csb::{ENTRY_SIZE, NAF_FORCE_RECLAIM};
use ptnetd::abi::netmap::{NS_BUF_CHANGED, NS_MOREFRAG};
use ptnetd::abi::pci as ids;
use ptnetd::abi::{memdev as mdr, regs};
use ptnetd::model::apps::Sink;
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::pci::{MSIX_CAP_OFFSET, MSIX_CTRL_ENABLE};
use ptnetd::model::port::{Frame, HostRing, NmPort, PipeEnd, PortError, PortSpec, TxBackend};
use ptnetd::model::ptnet::{DeviceError, Netdev, PtnetConfig, CSB_ENABLE_FAILED};
use ptnetd::model::switch::Switch;
use ptnetd::model::vm::{PciFunction, Vm};
use ptnetd::nm::Slot;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const T: Duration = Duration::from_secs(10);

/// Polls `cond` every millisecond until it holds; fails the test with `what` after [`T`].
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < T, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn bar_size(f: &PciFunction, bar: u16) -> u32 {
    let off = 0x10 + 4 * bar;
    let old = f.config_read(off, 4);
    f.config_write(off, 4, 0xffff_ffff);
    let v = f.config_read(off, 4);
    f.config_write(off, 4, old);
    let mask = if v & 1 == 1 { v & !0x3 } else { v & !0xf };
    (!mask).wrapping_add(1) & if v & 1 == 1 { 0xffff } else { u32::MAX }
}

/// §1 identity, §2 BAR layout: ptnet BAR0 256-byte I/O, BAR2 4096-byte 32-bit memory with the
/// MSI-X table (one vector per ring); memdev BAR0 128-byte I/O, BAR1 prefetchable memory of the
/// next power of two ≥ MEMSIZE.
#[test]
fn identity_and_bars() {
    let (vm, dev, _) = vm_with_port(2, 256);
    let (nic, md) = find(&vm, &dev);
    assert_eq!(nic.config_read(0, 4), 0x000d_1b36);
    assert_eq!(nic.config_read(8, 4) >> 8, 0x020000, "class network/ethernet");
    assert_eq!(nic.config_read(0x2c, 4), 0x1100_1af4, "subsystem 1af4:1100");
    assert_eq!(nic.config_read(0x3d, 1), 1, "INTA advertised");
    assert_eq!(nic.config_read(0x0c, 1), 0x10, "cache line size");
    assert_eq!(md.config_read(0, 4), 0x000c_1b36);
    assert_eq!(md.config_read(8, 4) >> 8, 0x00ff00, "QEMU's class quirk");
    assert_eq!(nic.config_read(0x10, 4) & 1, 1, "BAR0 is I/O");
    assert_eq!(bar_size(&nic, 0), 256);
    assert_eq!(nic.config_read(0x18, 4) & 0xf, 0, "BAR2 32-bit non-prefetchable memory");
    assert_eq!(bar_size(&nic, 2), 4096);
    assert_eq!(md.config_read(0x10, 4) & 1, 1);
    assert_eq!(bar_size(&md, 0), 128);
    assert_eq!(md.config_read(0x14, 4) & 0xf, 0x8, "BAR1 prefetchable 32-bit");
    let memsize = md.bar_read(0, mdr::MEMSIZE_LO as u64, 4) as u32;
    assert_eq!(bar_size(&md, 1), memsize.next_power_of_two());
    // MSI-X capability: table size N-1 = 3, table BIR 2 offset 0, PBA BIR 2 offset 2048.
    let cap = nic.config_read(0x34, 1) as u16;
    assert_eq!(nic.config_read(cap, 1), 0x11);
    assert_eq!(nic.config_read(cap + 2, 2) & 0x7ff, 3);
    assert_eq!(nic.config_read(cap + 4, 4), 2);
    assert_eq!(nic.config_read(cap + 8, 4), 2048 | 2);
}

/// §3.1: MAC_HI/MAC_LO encoding (00:AA:BB:CC:0a:0b → 0xAA, 0xBBCC0A0B), writes ignored;
/// default MAC 52:54:00:12:34:xx (E10).
#[test]
fn mac_registers() {
    let mem = Arc::new(NetmapMemory::new(1, MemConfig::for_ports(1, 2, 64, 0)).unwrap());
    let port = NmPort::new(mem, &PortSpec::new("p", 1, 64)).unwrap();
    let vm = Vm::new(16).unwrap();
    let cfg = PtnetConfig { mac: Some([0, 0xaa, 0xbb, 0xcc, 0x0a, 0x0b]), ..Default::default() };
    let dev = vm.add_ptnet(Netdev::passthrough(port), cfg).unwrap();
    let (nic, _) = find(&vm, &dev);
    assert_eq!(reg_read(&nic, regs::MAC_HI), 0x0000_00aa);
    assert_eq!(reg_read(&nic, regs::MAC_LO), 0xbbcc_0a0b);
    reg_write(&nic, regs::MAC_LO, 0);
    assert_eq!(reg_read(&nic, regs::MAC_LO), 0xbbcc_0a0b);
    let (vm2, dev2, _) = vm_with_port(1, 64);
    let (nic2, _) = find(&vm2, &dev2);
    assert_eq!(reg_read(&nic2, regs::MAC_HI), 0x5254);
    assert_eq!(reg_read(&nic2, regs::MAC_LO) >> 8, 0x00_1234);
}

/// §3.1/§3.2: geometry registers, HOSTMEMID = MEMID, pool registers consistent with §7.1,
/// deprecated CSBBAH/CSBBAL and 68..127 read 0.
#[test]
fn geometry_and_memdev_registers() {
    let (vm, dev, port) = vm_with_port(3, 512);
    let (nic, md) = find(&vm, &dev);
    assert_eq!(reg_read(&nic, regs::NUM_TX_RINGS), 3);
    assert_eq!(reg_read(&nic, regs::NUM_RX_RINGS), 3);
    assert_eq!(reg_read(&nic, regs::NUM_TX_SLOTS), 512);
    assert_eq!(reg_read(&nic, regs::NUM_RX_SLOTS), 512);
    assert_eq!(reg_read(&nic, regs::NIFP_OFS) as u64, port.nifp_ofs());
    let r = |o: u32| md.bar_read(0, o as u64, 4) as u32;
    assert_eq!(reg_read(&nic, regs::HOSTMEMID), r(mdr::MEMID));
    assert_eq!(r(mdr::IF_POOL_OFS), 0);
    assert!(r(mdr::RING_POOL_OFS) >= r(mdr::IF_POOL_OBJNUM) * r(mdr::IF_POOL_OBJSZ));
    assert!(
        r(mdr::BUF_POOL_OFS)
            >= r(mdr::RING_POOL_OFS) + r(mdr::RING_POOL_OBJNUM) * r(mdr::RING_POOL_OBJSZ)
    );
    assert_eq!(
        r(mdr::BUF_POOL_OFS) + r(mdr::BUF_POOL_OBJNUM) * r(mdr::BUF_POOL_OBJSZ),
        r(mdr::MEMSIZE_LO)
    );
    assert_eq!(r(mdr::MEMSIZE_HI), 0);
    assert_eq!(r(mdr::BUF_POOL_OBJSZ), 2048);
    assert!(r(mdr::RING_POOL_OBJSZ) >= 256 + 16 * 512);
    for o in [regs::CSBBAH, regs::CSBBAL, regs::IO_END, 100, 124] {
        assert_eq!(reg_read(&nic, o), 0, "offset {o}");
    }
    reg_write(&nic, regs::CSBBAH, 5);
    assert_eq!(reg_read(&nic, regs::CSBBAH), 0, "deprecated register ignores writes");
    assert_eq!(md.bar_read(0, 12, 4), 0, "memdev 12..63 read 0");
    let bufs = port.mem().alloc_bufs(0).unwrap();
    assert!(bufs.is_empty());
}

/// §4: PTFEAT reads 0 before a write and `offered & written` after; only switch (VALE) ports
/// offer VNET_HDR.
#[test]
fn feature_negotiation() {
    let (vm, dev, _) = vm_with_port(1, 64);
    let (nic, _) = find(&vm, &dev);
    assert_eq!(reg_read(&nic, regs::PTFEAT), 0);
    reg_write(&nic, regs::PTFEAT, 0xffff_ffff);
    assert_eq!(reg_read(&nic, regs::PTFEAT), 0, "a plain port offers nothing");
    let sw = Switch::new("vale0");
    let (vm, dev, port) = vm_with_port(1, 64);
    sw.attach_port(&port);
    let (nic, _) = find(&vm, &dev);
    reg_write(&nic, regs::PTFEAT, 0xffff_ffff);
    assert_eq!(reg_read(&nic, regs::PTFEAT), regs::F_VNET_HDR);
    reg_write(&nic, regs::PTFEAT, 2);
    assert_eq!(reg_read(&nic, regs::PTFEAT), 0);
}

/// §3.1/§10: VNET_HDR_LEN accepts 0/10/12 only on ports that carry headers; otherwise the
/// register keeps its previous value.
#[test]
fn vnet_hdr_len_rules() {
    let sw = Switch::new("vale0");
    let (vm, dev, port) = vm_with_port(1, 64);
    sw.attach_port(&port);
    let (nic, _) = find(&vm, &dev);
    let set = |v| {
        reg_write(&nic, regs::VNET_HDR_LEN, v);
        reg_read(&nic, regs::VNET_HDR_LEN)
    };
    assert_eq!(reg_read(&nic, regs::VNET_HDR_LEN), 0);
    assert_eq!(set(12), 12);
    assert_eq!(port.vnet_hdr_len(), 12);
    assert_eq!(set(7), 12, "unsupported length: unchanged");
    assert_eq!(set(10), 10);
    assert_eq!(set(0), 0);
    let (vm, dev, port) = vm_with_port(1, 64);
    let (nic, _) = find(&vm, &dev);
    reg_write(&nic, regs::VNET_HDR_LEN, 12);
    assert_eq!(reg_read(&nic, regs::VNET_HDR_LEN), 0, "no headers on a plain port");
    assert_eq!(port.vnet_hdr_len(), 0);
}

/// §3.1: a BAL write maps the array and performs an implicit DELETE (overwriting the status);
/// address 0 unmaps, so CREATE then fails with ENXIO (§6 C4c).
#[test]
fn csb_address_writes_and_implicit_delete() {
    let (vm, dev, _) = vm_with_port(1, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(reg_read(&g.nic, regs::CSB_GH_BAL), g.gh_gpa as u32);
    assert_eq!(reg_read(&g.nic, regs::CSB_HG_BAL), g.hg_gpa as u32);
    assert_eq!(g.create(), 0);
    assert!(dev.is_running());
    reg_write(&g.nic, regs::PTCTL, 99);
    assert_eq!(reg_read(&g.nic, regs::PTCTL), regs::status::EINVAL);
    reg_write(&g.nic, regs::CSB_GH_BAL, g.gh_gpa as u32);
    assert!(!dev.is_running(), "BAL write = implicit DELETE");
    assert_eq!(reg_read(&g.nic, regs::PTCTL), 0, "status overwritten by the DELETE");
    assert_eq!(g.create(), 0, "remapped at the same address: CREATE works again");
    reg_write(&g.nic, regs::CSB_HG_BAH, 0);
    reg_write(&g.nic, regs::CSB_HG_BAL, 0);
    assert!(!dev.is_running());
    assert_eq!(g.create(), regs::status::ENXIO, "HG array unmapped");
}

/// §6 C4c / E6 / E10: CREATE errors and refused realizes.
#[test]
fn create_errors() {
    // CSB outside guest RAM: the array stays unmapped, CREATE says ENXIO.
    let (vm, dev, _) = vm_with_port(1, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    reg_write(&g.nic, regs::CSB_GH_BAH, 0x10);
    reg_write(&g.nic, regs::CSB_GH_BAL, 0);
    assert_eq!(g.create(), regs::status::ENXIO);
    // An array that straddles the end of RAM is refused too.
    reg_write(&g.nic, regs::CSB_GH_BAH, 0);
    reg_write(&g.nic, regs::CSB_GH_BAL, (vm.ram_size() - ENTRY_SIZE as u64) as u32);
    assert_eq!(g.create(), regs::status::ENXIO);
    assert!(!dev.is_running());
    // E6: MSI-X not enabled: CREATE fails with a non-zero status instead of aborting.
    let (vm, dev, _) = vm_with_port(1, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts { msix: false, ..Default::default() });
    assert_ne!(g.create(), 0);
    assert!(!dev.is_running());
    setup_msix(&g.nic, 2);
    assert_eq!(g.create(), 0);
    // E10: no netdev, or no passthrough: refused explicitly.
    let vm = Vm::new(16).unwrap();
    let nd = Netdev { port: None, passthrough: true, kloop_tx: true, kloop_rx: true };
    assert!(matches!(
        vm.add_ptnet(nd, PtnetConfig::default()),
        Err(ptnetd::model::vm::VmError::Device(DeviceError::NoNetdev))
    ));
    let (_, _, port) = vm_with_port(1, 64);
    let nd = Netdev { port: Some(port), passthrough: false, kloop_tx: true, kloop_rx: true };
    assert!(vm.add_ptnet(nd, PtnetConfig::default()).is_err());
    // More rings than kick registers (§3.1 derived limit).
    let mem = Arc::new(NetmapMemory::new(2, MemConfig::for_ports(1, 34, 64, 0)).unwrap());
    let port = NmPort::new(mem, &PortSpec::new("big", 17, 64)).unwrap();
    assert!(vm.add_ptnet(Netdev::passthrough(port), PtnetConfig::default()).is_err());
}

/// §5.3: CREATE overwrites the CSB from the host krings: ktoa zeroed then hwcur/hwtail and
/// kern_need_kick = 1; atok head/cur from the kring, appl_need_kick = 1, sync_flags = 1.
#[test]
fn create_initialises_the_csb() {
    // Direct mode: no loop thread runs after CREATE, so the CSB holds exactly what CREATE
    // wrote (in kloop mode the loop starts processing at once and may clear kern_need_kick).
    let (_, _, port) = vm_with_port(2, 128);
    let vm = Vm::new(64).unwrap();
    let nd = Netdev { port: Some(port), passthrough: true, kloop_tx: false, kloop_rx: false };
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).unwrap();
    let g = Guest::attach(&vm, &dev, &Opts::default());
    g.gh.fill(0, 4096, 0x5a).unwrap();
    g.hg.fill(0, 4096, 0xa5).unwrap();
    reg_write(&g.nic, regs::PTCTL, regs::PTCTL_CREATE);
    assert_eq!(reg_read(&g.nic, regs::PTCTL), 0);
    for i in 0..4u32 {
        let tx = i < 2;
        let (o, gh, hg) = (i as usize * 64, &g.gh, &g.hg);
        assert_eq!(gh.load_u32(o), 0, "atok.head");
        assert_eq!(gh.load_u32(o + 4), 0, "atok.cur");
        assert_eq!(gh.load_u32(o + 8), 1, "atok.appl_need_kick");
        assert_eq!(gh.load_u32(o + 12), 1, "atok.sync_flags");
        assert_eq!(hg.load_u32(o), 0, "ktoa.hwcur");
        assert_eq!(hg.load_u32(o + 4), if tx { 127 } else { 0 }, "ktoa.hwtail");
        assert_eq!(hg.load_u32(o + 8), 1, "ktoa.kern_need_kick");
        assert_eq!(hg.load_u32(o + 12), 0, "ktoa padding zeroed");
    }
    // E11: a second CREATE while running returns 0 and does not touch the CSB.
    g.gh.store_u32(8, 0);
    reg_write(&g.nic, regs::PTCTL, regs::PTCTL_CREATE);
    assert_eq!(reg_read(&g.nic, regs::PTCTL), 0);
    assert_eq!(g.gh.load_u32(8), 0, "CSB untouched by the second CREATE");
    assert!(dev.is_running());
}

fn pipe_pair(slots: u32) -> (Arc<Vm>, Guest, Guest) {
    let mem = Arc::new(NetmapMemory::new(3, MemConfig::for_ports(2, 2, slots, 64)).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{0", 1, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}0", 1, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    let vm = Vm::new(64).unwrap();
    let da = vm.add_ptnet(Netdev::passthrough(a), PtnetConfig::default()).unwrap();
    let db = vm.add_ptnet(Netdev::passthrough(b), PtnetConfig::default()).unwrap();
    assert_eq!(vm.functions().len(), 3, "one memdev for the shared region");
    let mut ga = Guest::attach(&vm, &da, &Opts::default());
    let mut gb = Guest::attach(&vm, &db, &Opts::default());
    assert_eq!(ga.create(), 0);
    assert_eq!(gb.create(), 0);
    (vm, ga, gb)
}

fn transfer(tx: &mut Guest, rx: &mut Guest, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut i = 0;
    let ok = rx.poll_until(T, |rx| {
        while i < frames.len() && tx.put_tx(0, &frames[i]) {
            i += 1;
        }
        // A full ring needs a reclaim (netmap's NIOCTXSYNC always asks for one, §8.2).
        tx.txsync(0, if i < frames.len() { NAF_FORCE_RECLAIM } else { 0 });
        while let Some(f) = rx.get_rx(0) {
            got.push(f);
        }
        got.len() == frames.len()
    });
    if !ok {
        for (name, g) in [("tx", &*tx), ("rx", &*rx)] {
            for r in &g.rings {
                eprintln!(
                    "{name} ring {} tx={} view h/c/t={}/{}/{} atok={:?} need={} ktoa={:?} knk={} g: hwcur={} hwtail={} rhead={}",
                    r.idx, r.tx, r.view.head(), r.view.cur(), r.view.tail(), r.atok.kern_read(),
                    r.atok.appl_need_kick(), r.ktoa.appl_read(), r.ktoa.kern_need_kick(), r.hwcur, r.hwtail, r.rhead
                );
            }
        }
    }
    assert!(ok, "only {} of {} frames arrived", got.len(), frames.len());
    got
}

/// §7.4/§8: TX and RX through a netmap pipe (zero-copy: RX slots carry NS_BUF_CHANGED), both
/// directions, single- and multi-slot (NS_MOREFRAG) frames, more frames than the ring holds.
#[test]
fn tx_rx_through_a_pipe() {
    let (_vm, mut ga, mut gb) = pipe_pair(64);
    let frames: Vec<_> =
        (0..500).map(|s| make_frame(B, A, s, 60 + (s as usize * 37) % 6000)).collect();
    let got = transfer(&mut ga, &mut gb, &frames);
    assert_eq!(got, frames);
    let back: Vec<_> = (0..300).map(|s| make_frame(A, B, s, 9000)).collect();
    assert_eq!(transfer(&mut gb, &mut ga, &back), back);
    let r = gb.rx(0);
    let s = r.view.slot(ptnetd::ring::prev(r.view.head(), r.n));
    assert_ne!(s.flags & NS_BUF_CHANGED, 0, "pipes swap buffers");
    // The host counts TX frames right after handing them on: wait for it.
    wait_until("500 TX frames counted", || ga.dev.counters(0).unwrap().packets >= 500);
    let c = ga.dev.counters(0).unwrap();
    assert_eq!(c.packets, 500);
    assert!(c.kicks > 0);
}

/// §8.6 TX/RX through the switch: learning, flooding, and header conversion between a port with
/// a 12-byte virtio-net header and one without (§10).
#[test]
fn tx_rx_through_the_switch() {
    init_log();
    let sw = Switch::new("vale0");
    let (vm1, d1, p1) = vm_with_port(1, 256);
    let (vm2, d2, p2) = vm_with_port(1, 256);
    let (_vm3, _d3, p3) = vm_with_port(1, 256);
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    sw.attach_port(&p3);
    let mut g1 = Guest::attach(&vm1, &d1, &Opts { want_vnet: true, ..Default::default() });
    let mut g2 = Guest::attach(&vm2, &d2, &Opts::default());
    assert_eq!(g1.hdr_len, 12);
    assert_eq!(g1.create(), 0);
    assert_eq!(g2.create(), 0);
    // g1 -> g2 with a zero header: the switch strips it; the first frame floods (p3 too).
    let mk = |s| {
        let mut f = vec![0u8; 12];
        f.extend(make_frame(B, A, s, 100 + s as usize * 50));
        f
    };
    let frames: Vec<_> = (0..100).map(mk).collect();
    let got = transfer(&mut g1, &mut g2, &frames);
    for (s, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), Some(s as u64));
        assert_eq!(f[..], frames[s][12..]);
    }
    // g2 answers: A was learnt on port 0, so only g1 gets it, with a zeroed 12-byte header.
    let back: Vec<_> = (0..50).map(|s| make_frame(A, B, s, 2100)).collect();
    let got = transfer(&mut g2, &mut g1, &back);
    for (s, f) in got.iter().enumerate() {
        assert_eq!(f[..12], [0u8; 12]);
        assert_eq!(f[12..], back[s][..]);
    }
    assert_eq!(sw.lookup(&A), Some(0));
    assert_eq!(sw.lookup(&B), Some(1));
    let p3_rx = p3.stats.rx_frames.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(p3_rx, 100, "B was unknown while g1 sent: flooded; g2's answers were not");
    assert_eq!(sw.stats.unicast.load(std::sync::atomic::Ordering::Relaxed), 50);
}

/// §8.6 / §9: no interrupt while `appl_need_kick` = 0; an interrupt after the guest re-arms.
#[test]
fn interrupt_suppression_and_rearm() {
    let (_vm, mut ga, mut gb) = pipe_pair(64);
    let rx = gb.ntx; // ring index of RX ring 0
    gb.rx(0).atok.set_appl_need_kick(0);
    let before = gb.interrupts(rx);
    for s in 0..10 {
        assert!(ga.put_tx(0, &make_frame(B, A, s, 60)));
    }
    ga.txsync(0, NAF_FORCE_RECLAIM);
    // Wait until the host published all 10 frames, without syncing (which would re-arm).
    wait_until("10 frames published", || gb.rx(0).ktoa.appl_read().1 == 10);
    // Passes on a ring run one at a time: once one ends after this point (the kick forces one),
    // the pass that published the frames has made its interrupt decision.
    let passes = gb.dev.counters(rx).unwrap().passes;
    gb.kick(rx);
    wait_until("an RX pass after the kick", || gb.dev.counters(rx).unwrap().passes > passes);
    assert_eq!(gb.interrupts(rx), before, "suppressed");
    // Drain, re-arm through rxsync (wouldblock), then new traffic must interrupt.
    gb.rxsync(0);
    while gb.get_rx(0).is_some() {}
    gb.rxsync(0);
    assert_eq!(gb.rx(0).atok.appl_need_kick(), 1, "re-armed when the ring ran dry");
    assert!(ga.put_tx(0, &make_frame(B, A, 99, 60)));
    ga.txsync(0, 0);
    let irq = gb.vm.irq().clone();
    let t0 = std::time::Instant::now();
    while gb.interrupts(rx) == before && t0.elapsed() < T {
        irq.wait(irq.generation(), Duration::from_millis(5));
    }
    assert!(gb.interrupts(rx) > before, "interrupt after re-arm");
    assert!(gb.dev.counters(rx).unwrap().interrupts > 0);
}

/// §7.5 / E9: a guest that publishes head beyond tail gets its ring reinitialised; slots with bad
/// buffer indices are cleaned; the host survives and traffic resumes.
#[test]
fn ring_validation_and_reinit() {
    init_log();
    let (_vm, mut ga, mut gb) = pipe_pair(64);
    let r = ga.tx(0);
    // hwcur = 0, hwtail = 63: publishing head = cur = 0 after moving... use a head that lies
    // outside [rhead, rtail]: rtail = 63, rhead = 0 → every value is inside, so break tail first.
    r.view.set_slot(5, Slot { buf_idx: 1, len: 60, flags: 0 });
    r.view.set_slot(6, Slot { buf_idx: 7, len: 5000, flags: 0 });
    r.atok.appl_publish_head_cur(70, 70); // out of range
    r.view.set_head(70);
    ga.kick(0);
    wait_until("TX ring reinitialised", || ga.dev.counters(0).unwrap().reinits > 0);
    assert_eq!(ga.dev.counters(0).unwrap().reinits, 1);
    let r = ga.tx(0);
    assert_eq!(r.view.slot(5).buf_idx, 0, "buf_idx < 2 cleaned");
    assert_eq!(r.view.slot(5).len, 0);
    assert_eq!(r.view.slot(6).len, 0, "len > buffer size cleaned");
    assert_eq!((r.view.head(), r.view.cur(), r.view.tail()), (0, 0, 63), "indices reset (> N-1)");
    assert_eq!(r.ktoa.kern_need_kick(), 1);
    // Repair the two slots the way a guest would (fresh buffers from its own RX ring are not
    // available, so reuse valid indices), then traffic resumes.
    let valid = ga.tx(0).view.slot(10).buf_idx;
    ga.tx(0).view.set_slot(5, Slot { buf_idx: valid, len: 0, flags: 0 });
    ga.tx(0).view.set_slot(6, Slot { buf_idx: valid, len: 0, flags: 0 });
    ga.tx(0).atok.appl_publish_head_cur(0, 0);
    let frames: Vec<_> = (0..4).map(|s| make_frame(B, A, s, 80)).collect();
    assert_eq!(transfer(&mut ga, &mut gb, &frames), frames);
    // RX side: head published behind hwcur (released slots taken back) → reinit of RX ring.
    let rxi = gb.ntx;
    gb.rx(0).atok.appl_publish_head_cur(60, 60);
    gb.rx(0).view.set_head(60);
    gb.kick(rxi);
    assert!(ga.put_tx(0, &make_frame(B, A, 9, 60)));
    ga.txsync(0, 0);
    wait_until("RX ring reinitialised", || gb.dev.counters(rxi).unwrap().reinits > 0);
}

/// §11: DELETE stops the loop (kicks then do nothing), zeroing BAL unmaps; a new bring-up works.
#[test]
fn teardown_and_rebringup() {
    let (vm, mut ga, mut gb) = pipe_pair(64);
    let f: Vec<_> = (0..10).map(|s| make_frame(B, A, s, 60)).collect();
    assert_eq!(transfer(&mut ga, &mut gb, &f), f);
    ga.shutdown();
    assert!(!ga.dev.is_running());
    assert_eq!(reg_read(&ga.nic, regs::CSB_GH_BAL), 0);
    let before = ga.dev.counters(0).unwrap();
    assert!(ga.put_tx(0, &make_frame(B, A, 11, 60)));
    ga.tx(0).atok.appl_publish_head_cur(ga.tx(0).view.head(), ga.tx(0).view.head());
    ga.kick(0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ga.dev.counters(0).unwrap().packets, before.packets, "no processing after DELETE");
    assert_eq!(ga.dev.counters(0).unwrap().kicks, before.kicks + 1, "kick still counted");
    // Bring up again: CREATE imports the current host state (hwcur = 10, not 0).
    let dev = ga.dev.clone();
    let mut ga = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(ga.create(), 0);
    assert_eq!(ga.tx(0).hwcur, 10);
    assert_eq!(ga.tx(0).rhead, 10);
    let f: Vec<_> = (20..30).map(|s| make_frame(B, A, s, 60)).collect();
    assert_eq!(transfer(&mut ga, &mut gb, &f), f);
    // DELETE/CREATE cycles.
    for _ in 0..5 {
        assert_eq!(ga.delete(), 0);
        assert_eq!(ga.create(), 0);
    }
    assert_eq!(transfer(&mut ga, &mut gb, &f), f);
}

/// E1/E12: kicks need 32-bit writes; narrow reads return the low bytes of the register;
/// unaligned narrow writes are ignored, aligned ones act as 32-bit writes.
#[test]
fn narrow_accesses() {
    let sw = Switch::new("vale0");
    let (vm, dev, port) = vm_with_port(1, 64);
    sw.attach_port(&port);
    let (nic, _) = find(&vm, &dev);
    nic.bar_write(0, regs::kick_offset(0) as u64, 2, 0);
    nic.bar_write(0, regs::kick_offset(0) as u64, 1, 0);
    assert_eq!(dev.counters(0).unwrap().kicks, 0, "narrow kick dropped");
    nic.bar_write(0, regs::kick_offset(0) as u64, 4, 0);
    assert_eq!(dev.counters(0).unwrap().kicks, 1);
    nic.bar_write(0, regs::VNET_HDR_LEN as u64 + 1, 1, 12);
    assert_eq!(reg_read(&nic, regs::VNET_HDR_LEN), 0, "unaligned narrow write ignored");
    nic.bar_write(0, regs::VNET_HDR_LEN as u64, 2, 0xff0c);
    assert_eq!(reg_read(&nic, regs::VNET_HDR_LEN), 0, "0xff0c is not a valid length");
    nic.bar_write(0, regs::VNET_HDR_LEN as u64, 1, 0x10a);
    assert_eq!(reg_read(&nic, regs::VNET_HDR_LEN), 10, "aligned byte write, zero-extended");
    assert_eq!(nic.bar_read(0, regs::MAC_LO as u64 + 1, 1), 0x56, "low byte of MAC_LO");
    assert_eq!(nic.bar_read(0, regs::NUM_TX_SLOTS as u64 + 2, 2), 64);
}

/// §8.6 direct modes (klooptx/klooprx = off): rings processed inside the kick.
#[test]
fn direct_mode_traffic() {
    let mem = Arc::new(NetmapMemory::new(3, MemConfig::for_ports(2, 2, 64, 64)).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{1", 1, 64)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}1", 1, 64)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    let vm = Vm::new(64).unwrap();
    let nd = |p| Netdev { port: Some(p), passthrough: true, kloop_tx: false, kloop_rx: false };
    let da = vm.add_ptnet(nd(a), PtnetConfig::default()).unwrap();
    let db = vm.add_ptnet(nd(b), PtnetConfig::default()).unwrap();
    let mut ga = Guest::attach(&vm, &da, &Opts::default());
    let mut gb = Guest::attach(&vm, &db, &Opts::default());
    assert_eq!(ga.create(), 0);
    assert_eq!(gb.create(), 0);
    let f: Vec<_> = (0..300).map(|s| make_frame(B, A, s, 60 + s as usize * 13)).collect();
    assert_eq!(transfer(&mut ga, &mut gb, &f), f);
    assert!(gb.interrupts(gb.ntx) > 0, "backend RX events raise RX interrupts");
}

/// §7.4: multi-slot frames are split with NS_MOREFRAG on every slot but the last.
#[test]
fn morefrag_layout_on_rx() {
    let sw = Switch::new("vale1");
    let (vm1, d1, p1) = vm_with_port(1, 128);
    let (vm2, d2, p2) = vm_with_port(1, 128);
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    let mut g1 = Guest::attach(&vm1, &d1, &Opts::default());
    let mut g2 = Guest::attach(&vm2, &d2, &Opts::default());
    g1.create();
    g2.create();
    let f = vec![make_frame(B, A, 1, 5000)];
    assert_eq!(transfer(&mut g1, &mut g2, &f), f);
    let r = g2.rx(0);
    let slots: Vec<_> = (0..3).map(|i| r.view.slot(i)).collect();
    assert_eq!(slots[0].flags & NS_MOREFRAG, NS_MOREFRAG);
    assert_eq!(slots[1].flags & NS_MOREFRAG, NS_MOREFRAG);
    assert_eq!(slots[2].flags & NS_MOREFRAG, 0);
    assert_eq!((slots[0].len, slots[1].len, slots[2].len), (2048, 2048, 904));
}

/// Identity pitfall (§1): another function with the same IDs but a different class is not ours.
#[test]
fn memdev_matched_by_memid() {
    let (vm, dev, _) = vm_with_port(1, 64);
    let (nic, md) = find(&vm, &dev);
    assert_eq!(md.bar_read(0, mdr::MEMID as u64, 4) as u32, reg_read(&nic, regs::HOSTMEMID));
    assert_eq!(md.config_read(0x0b, 1), 0, "memdev base class 0");
    assert_ne!(nic.config_read(0x0b, 1), md.config_read(0x0b, 1));
    let _ = ids::MEMDEV_CLASS;
}

/// §8.6 kick suppression as the guest sees it: an idle TX ring asks for kicks
/// (`kern_need_kick` = 1); an RX ring with room does not (0); an RX ring whose buffers the guest
/// all holds asks for a kick (1), and the guest's release with that kick lets traffic resume.
#[test]
fn kern_need_kick_follows_the_host_state() {
    let (_vm, mut ga, mut gb) = pipe_pair(64);
    let f: Vec<_> = (0..10).map(|s| make_frame(B, A, s, 60)).collect();
    assert_eq!(transfer(&mut ga, &mut gb, &f), f);
    wait_until("idle TX ring: the host sleeps, wants kicks", || {
        ga.tx(0).ktoa.kern_need_kick() == 1
    });
    wait_until("RX ring with room: no kicks needed", || gb.rx(0).ktoa.kern_need_kick() == 0);
    // Fill B's RX ring without consuming: 63 usable slots, then 7 more frames wait in A's TX.
    for s in 0..70 {
        let t0 = std::time::Instant::now();
        while !ga.put_tx(0, &make_frame(B, A, 100 + s, 60)) {
            ga.txsync(0, NAF_FORCE_RECLAIM);
            assert!(t0.elapsed() < T, "tx ring stuck at frame {s}");
        }
        ga.txsync(0, 0);
    }
    // Full as the host sees it: hwtail == prev(head as last published by the guest).
    let full = |g: &Guest| {
        g.rx(0).ktoa.appl_read().1 == ptnetd::ring::prev(g.rx(0).atok.kern_read().head, 64)
    };
    wait_until("the RX ring filled up", || full(&gb));
    wait_until("guest holds every RX buffer: host wants a kick", || {
        gb.rx(0).ktoa.kern_need_kick() == 1
    });
    let kicks = gb.dev.counters(gb.ntx).unwrap().kicks;
    let mut got = 0;
    let ok = gb.poll_until(T, |g| {
        while g.get_rx(0).is_some() {
            got += 1;
        }
        got == 70
    });
    assert!(ok, "only {got} of 70 after the release");
    assert!(gb.kicks > 0);
    assert!(gb.dev.counters(gb.ntx).unwrap().kicks > kicks, "the release was kicked");
}

/// §10: a TSO frame (virtio-net header: NEEDS_CSUM, GSO_TCPV4, MSS 1000) from a port with
/// headers reaches a port without headers as MSS-sized segments with valid checksums.
#[test]
fn switch_segments_and_checksums_for_a_port_without_headers() {
    use ptnetd::model::offload::{internet_checksum, pseudo_header_sum};
    let sw = Switch::new("vale-tso");
    let (vm1, d1, p1) = vm_with_port(1, 256);
    let (vm2, d2, p2) = vm_with_port(1, 256);
    sw.attach_port(&p1);
    sw.attach_port(&p2);
    let mut g1 = Guest::attach(&vm1, &d1, &Opts { want_vnet: true, ..Default::default() });
    let mut g2 = Guest::attach(&vm2, &d2, &Opts::default());
    assert_eq!((g1.hdr_len, g2.hdr_len), (12, 0));
    assert_eq!((g1.create(), g2.create()), (0, 0));
    let (src, dst) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 31 + 7) as u8).collect();
    let mut f = vec![1u8, 1, 54, 0, 0xe8, 0x03, 34, 0, 16, 0, 0, 0]; // vnet header (LE fields)
    f.extend_from_slice(&B);
    f.extend_from_slice(&A);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    f.extend_from_slice(&ip);
    let mut tcp = vec![
        0x30, 0x39, 0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let seed = pseudo_header_sum(&src, &dst, 6, (20 + payload.len()) as u32);
    tcp[16..18].copy_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(&payload);
    let mut got = Vec::new();
    let mut sent = false;
    let ok = g2.poll_until(T, |g2| {
        if !sent {
            sent = g1.put_tx(0, &f);
            g1.txsync(0, 0);
        }
        while let Some(x) = g2.get_rx(0) {
            got.push(x);
        }
        got.len() >= 3
    });
    assert!(ok, "{} segments", got.len());
    let mut joined = Vec::new();
    for (k, s) in got.iter().enumerate() {
        let ip = &s[14..34];
        assert_eq!(internet_checksum(ip, 0), 0, "segment {k}: IPv4 header checksum");
        let tcp = &s[34..];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, 20 + tcp.len());
        let ph = pseudo_header_sum(&src, &dst, 6, tcp.len() as u32);
        assert_eq!(internet_checksum(tcp, ph as u32), 0, "segment {k}: TCP checksum");
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        assert_eq!(seq, 1000 + 1000 * k as u32);
        assert_eq!(tcp[20..].len(), 1000);
        joined.extend_from_slice(&tcp[20..]);
    }
    assert_eq!(joined, payload);
    assert_eq!(got.len(), 3);
}

/// §5.1 / §3.1: CREATE's `NETMAP_REQ_CSB_ENABLE` (`netmap_csb_validate`) refuses a CSB array
/// whose address is not a multiple of the 64-byte entry: status 1 (QEMU stores the raw ioctl
/// result). The array is mapped all the same (QEMU maps any RAM address), so the ENXIO check
/// (array unmapped) and the MSI-X check (E6) come first.
#[test]
fn create_refuses_a_misaligned_csb() {
    let (vm, dev, _) = vm_with_port(2, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    let arrays = [(regs::CSB_GH_BAL, g.gh_gpa), (regs::CSB_HG_BAL, g.hg_gpa)];
    for (bal, gpa) in arrays {
        for delta in [8u64, 32, 4, 1, 63] {
            reg_write(&g.nic, bal, (gpa + delta) as u32);
            assert_eq!(g.create(), CSB_ENABLE_FAILED, "{bal}: {gpa:#x} + {delta}");
            assert!(!dev.is_running());
        }
        reg_write(&g.nic, bal, gpa as u32);
    }
    assert_eq!(g.create(), 0, "aligned again");
    // Misaligned GH, and HG unmapped: ENXIO first.
    reg_write(&g.nic, regs::CSB_GH_BAL, (g.gh_gpa + 8) as u32);
    reg_write(&g.nic, regs::CSB_HG_BAL, 0);
    assert_eq!(g.create(), regs::status::ENXIO);
    // Misaligned (not even to 8 bytes) and outside RAM: unmapped, ENXIO.
    reg_write(&g.nic, regs::CSB_HG_BAH, 0x10);
    reg_write(&g.nic, regs::CSB_HG_BAL, 4);
    assert_eq!(g.create(), regs::status::ENXIO);
    reg_write(&g.nic, regs::CSB_HG_BAH, 0);
    reg_write(&g.nic, regs::CSB_HG_BAL, g.hg_gpa as u32);
    // Misaligned, MSI-X disabled: the MSI-X check comes first (E6).
    let (vm, dev, _) = vm_with_port(1, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts { msix: false, ..Default::default() });
    reg_write(&g.nic, regs::CSB_GH_BAL, (g.gh_gpa + 8) as u32);
    assert_eq!(g.create(), regs::status::EIO);
    setup_msix(&g.nic, 2);
    assert_eq!(g.create(), CSB_ENABLE_FAILED);
    assert!(!dev.is_running());
}

/// §6 "QEMU side of CREATE": every CREATE runs the ENXIO and MSI-X checks, also while the loop
/// runs (only CSB_ENABLE and the loop start are skipped, E11); a failing check leaves the
/// running loop alone.
#[test]
fn a_second_create_runs_the_checks() {
    let (vm, dev, _) = vm_with_port(1, 64);
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);
    let create = |nic: &PciFunction| {
        reg_write(nic, regs::PTCTL, regs::PTCTL_CREATE);
        reg_read(nic, regs::PTCTL)
    };
    // MSI-X disabled while the loop runs (E6: QEMU would abort; the model fails).
    let ctl_off = MSIX_CAP_OFFSET as u16 + 2;
    let ctl = g.nic.config_read(ctl_off, 2);
    g.nic.config_write(ctl_off, 2, ctl & !(MSIX_CTRL_ENABLE as u32));
    assert_eq!(create(&g.nic), regs::status::EIO, "second CREATE, MSI-X off");
    assert!(dev.is_running(), "the first CREATE's loop runs on");
    g.nic.config_write(ctl_off, 2, ctl);
    assert_eq!(create(&g.nic), 0, "second CREATE, MSI-X on");
    // A device reset forgets the CSB addresses but leaves the loop running (§11 [observed]):
    // the CSB is gone for CREATE, which says ENXIO.
    dev.reset();
    assert!(dev.is_running());
    assert_eq!(create(&g.nic), regs::status::ENXIO, "second CREATE, CSB gone");
    assert!(dev.is_running());
    // The driver's way back: BAL writes (implicit DELETE), MSI-X, CREATE.
    g.nic.config_write(4, 2, 0x7);
    reg_write(&g.nic, regs::CSB_GH_BAL, g.gh_gpa as u32);
    reg_write(&g.nic, regs::CSB_HG_BAL, g.hg_gpa as u32);
    assert!(!dev.is_running());
    setup_msix(&g.nic, 2);
    assert_eq!(g.create(), 0);
}

/// Lets a test act as the guest at one exact point of the host's RX pass: when the host has
/// released RX slots (after publishing hwcur/hwtail, before re-reading atok; §8.6 RX 2b–2e).
struct ReleaseHook(Mutex<Option<Box<dyn Fn() + Send>>>);

impl TxBackend for ReleaseHook {
    /// The tests using this backend send nothing.
    fn transmit(&self, _: &NmPort, _: &mut HostRing) -> Result<(), PortError> {
        Ok(())
    }
    fn rx_released(&self, _: &NmPort, _: u32) {
        if let Some(f) = self.0.lock().unwrap().as_ref() {
            f();
        }
    }
    fn kind(&self) -> &'static str {
        "release-hook"
    }
}

/// One VM whose ptnet device runs both directions in direct mode (every kick is processed
/// before the register write returns), on a 1-ring, 64-slot port with `backend`.
fn direct_guest(backend: Arc<dyn TxBackend>) -> (Guest, Arc<NmPort>) {
    let mem = Arc::new(NetmapMemory::new(1, MemConfig::for_ports(1, 2, 64, 64)).unwrap());
    let port = NmPort::new(mem, &PortSpec::new("direct", 1, 64)).unwrap();
    port.set_backend(backend);
    let vm = Vm::new(64).unwrap();
    let nd =
        Netdev { port: Some(port.clone()), passthrough: true, kloop_tx: false, kloop_rx: false };
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).unwrap();
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);
    (g, port)
}

/// §8.6 RX 2f, as netmap: a pass ends once the backend has nothing more for the guest
/// (`hwtail == rhead`) or after two dry iterations; what the guest publishes meanwhile waits for
/// the next wake-up. Here the guest publishes a head past tail right after the host released
/// its slots: that pass ends without looking (no reinit), the next kick finds it (E9).
#[test]
fn rx_pass_ends_when_the_backend_has_nothing_more() {
    let hook = Arc::new(ReleaseHook(Mutex::new(None)));
    let (mut g, port) = direct_guest(hook.clone());
    let rx = g.ntx;
    for s in 0..3 {
        port.deliver(0, &Frame::Bytes(&make_frame(B, A, s, 60))).unwrap();
    }
    g.kick(rx);
    assert_eq!(g.rx(0).ktoa.appl_read(), (0, 3), "three frames published");
    let atok = g.rx(0).atok.clone();
    *hook.0.lock().unwrap() = Some(Box::new(move || atok.appl_publish_head_cur(10, 10)));
    g.rx(0).atok.appl_publish_head_cur(3, 3);
    g.kick(rx);
    assert_eq!(g.rx(0).ktoa.appl_read(), (3, 3), "slots released");
    assert_eq!(g.dev.counters(rx).unwrap().reinits, 0, "the pass ended at hwtail == rhead");
    *hook.0.lock().unwrap() = None;
    g.kick(rx);
    assert_eq!(g.dev.counters(rx).unwrap().reinits, 1, "the next pass checks the bad head");
}

/// §8.6 TX 3a: netmap adds `NAF_FORCE_RECLAIM` for the backend's txsync, which only NIC drivers
/// read. The model's backends reclaim on every pass (as netmap's pipes and VALE ports do), so a
/// sync without the flag, with most of the ring in flight, gets every sent slot back.
#[test]
fn tx_reclaims_on_every_pass_without_force_reclaim() {
    let (mut g, _port) = direct_guest(Sink::new(0));
    for s in 0..40 {
        assert!(g.put_tx(0, &make_frame(B, A, s, 60)));
    }
    g.tx(0).atok.set_sync_flags(0);
    g.tx(0).atok.appl_publish_head_cur(40, 40);
    g.kick(0);
    assert_eq!(g.tx(0).ktoa.appl_read(), (40, 39), "all 40 slots reclaimed, sync_flags 0");
    assert_eq!(g.dev.counters(0).unwrap().packets, 40);
}

/// §2: memdev BAR1 is RAM in QEMU, so 1-, 2-, 4- and 8-byte accesses work at any offset inside
/// MEMSIZE (little endian); bytes past MEMSIZE (the unbacked tail of the power-of-two BAR) read
/// all-ones and drop writes, also within an access that straddles the end.
#[test]
fn memdev_bar1_takes_every_access_width() {
    let (vm, dev, port) = vm_with_port(1, 64);
    let (_, md) = find(&vm, &dev);
    let bar1 = md.bar_memory(ids::MEM_BAR).unwrap();
    let bar = ids::MEM_BAR;
    let nifp = port.nifp_ofs();
    assert_eq!(md.bar_read(bar, nifp, 1), u64::from(b'p'), "netmap_if name, byte read");
    assert_eq!(md.bar_read(bar, nifp, 2), u64::from(u16::from_le_bytes(*b"p0")));
    // Scratch space: the last spare buffer (64 spare buffers, none handed out).
    let end = bar1.len() as u64;
    let base = end - 2048;
    let cases: [(u64, u8, u64); 9] = [
        (0, 1, 0xab),
        (1, 1, 0xcd),
        (3, 2, 0xbeef),
        (6, 2, 0x1234),
        (9, 4, 0x1122_3344),
        (16, 4, 0x5566_7788),
        (21, 8, 0x0102_0304_0506_0708),
        (32, 8, 0x1112_1314_1516_1718),
        (45, 2, 0xa55a),
    ];
    for (off, size, val) in cases {
        md.bar_write(bar, base + off, size, val);
        assert_eq!(md.bar_read(bar, base + off, size), val, "{size} bytes at +{off}");
        let mut b = [0u8; 8];
        bar1.read_bytes((base + off) as usize, &mut b[..size as usize]).unwrap();
        assert_eq!(u64::from_le_bytes(b), val, "{size} bytes at +{off} in the region");
    }
    assert_eq!(md.bar_read(bar, base, 2), 0xcdab, "two byte writes read as one halfword");
    assert_eq!(md.bar_read(bar, base + 4, 4), 0x1234_00be, "pieces of earlier writes");
    md.bar_write(bar, end - 2, 4, 0xddcc_bbaa);
    assert_eq!(md.bar_read(bar, end - 2, 4), 0xffff_bbaa, "straddling MEMSIZE");
    assert_eq!(md.bar_read(bar, end - 1, 1), 0xbb);
    assert_eq!(md.bar_read(bar, end, 2), 0xffff, "past MEMSIZE");
    md.bar_write(bar, end, 8, 0);
    assert_eq!(md.bar_read(bar, end, 8), u64::MAX, "writes past MEMSIZE dropped");
    assert_eq!(md.bar_read(bar, base, 3), 0xff_ffff, "3-byte access: not a width, all-ones");
}
