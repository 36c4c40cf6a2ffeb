//! The driver's protocol details against the model (issue 3): the bring-up order of §6, the
//! teardown order of §11, netmap-mode syncs and their validation, the E5 rewind of incomplete
//! RX chains, and the publish policy of the copy path (§8.5).

use ptnetd::abi::regs::{self, *};
use ptnetd::driver::copy::BATCH;
use ptnetd::driver::ring::SyncError;
use ptnetd::driver::{DriverConfig, DriverError, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec};
use ptnetd::model::ptnet::{Access, Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::vm::Vm;
use ptnetd::nm::Slot;
use ptnetd::platform::sim::SimPlatform;
use ptnetd::ring;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod kit;

struct Nic {
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
    dev: Arc<PtnetDevice>,
}

/// A NIC whose driver has the polling fallback off: the waits below end on interrupts only
/// (or fail at their deadline), so a lost wake-up fails instead of costing a poll interval.
fn nic(port: &Arc<NmPort>, cfg: DriverConfig, trace: bool) -> Nic {
    let cfg = DriverConfig { poll_interval: None, ..cfg };
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    if trace {
        dev.start_trace();
    }
    let slot = vm.slot_of(&dev).unwrap();
    let mut plat = SimPlatform::new(vm, slot);
    let drv = Ptnet::attach(&mut plat, cfg).unwrap();
    Nic { plat, drv, dev }
}

fn pipe(slots: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let mem = Arc::new(NetmapMemory::new(12, MemConfig::for_ports(2, 2, slots, 64)).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{p", 1, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}p", 1, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    (a, b)
}

fn pos(t: &[Access], a: Access) -> usize {
    t.iter().position(|x| *x == a).unwrap_or_else(|| panic!("{a:?} not in trace"))
}

fn pos_read(t: &[Access], off: u32) -> usize {
    t.iter()
        .position(|x| matches!(x, Access::Read(o, _) if *o == off))
        .unwrap_or_else(|| panic!("no read of {off}"))
}

/// §6 B/C order: features, ring counts, CSB addresses high-then-low (GH then HG), MSI-X enabled
/// before CREATE (E6), MAC_HI before MAC_LO, NIFP_OFS before CREATE, VNET_HDR_LEN written 12
/// only when the feature was acked, status read right after CREATE. §11: DELETE, then zero
/// BAH/BAL of both arrays.
#[test]
fn bring_up_and_teardown_order() {
    let (pa, _pb) = pipe(64);
    let a = nic(&pa, DriverConfig { vnet_hdr: true, ..Default::default() }, true);
    let t = a.dev.trace();
    let feat = pos(&t, Access::Write(PTFEAT, F_VNET_HDR));
    assert!(feat < pos_read(&t, NUM_TX_RINGS) && feat < pos_read(&t, NUM_RX_RINGS));
    let w = |off| t.iter().position(|x| matches!(x, Access::Write(o, _) if *o == off)).unwrap();
    assert!(pos_read(&t, NUM_RX_RINGS) < w(CSB_GH_BAH));
    assert!(
        w(CSB_GH_BAH) < w(CSB_GH_BAL)
            && w(CSB_GH_BAL) < w(CSB_HG_BAH)
            && w(CSB_HG_BAH) < w(CSB_HG_BAL)
    );
    let msix_on = t
        .iter()
        .position(|x| matches!(x, Access::Config(0x40, v) if v & (1 << 31) != 0))
        .expect("MSI-X enabled");
    let create = pos(&t, Access::Write(PTCTL, PTCTL_CREATE));
    assert!(msix_on < create, "MSI-X before CREATE (E6)");
    assert!(matches!(t[create + 1], Access::Read(PTCTL, 0)), "status read right after CREATE");
    assert!(pos_read(&t, MAC_HI) < pos_read(&t, MAC_LO));
    assert!(pos_read(&t, NIFP_OFS) < create);
    assert!(!t.contains(&Access::Write(VNET_HDR_LEN, 12)), "the pipe does not offer VNET_HDR");
    assert_eq!(a.drv.info().features, 0);
    a.dev.start_trace();
    a.drv.shutdown().unwrap();
    let t = a.dev.trace();
    let expect = [
        Access::Write(PTCTL, PTCTL_DELETE),
        Access::Read(PTCTL, 0),
        Access::Write(CSB_GH_BAH, 0),
        Access::Write(CSB_GH_BAL, 0),
        Access::Write(CSB_HG_BAH, 0),
        Access::Write(CSB_HG_BAL, 0),
    ];
    assert_eq!(t, expect);
}

/// netmap mode: the user fills slots and calls txsync(head, cur); the peer consumes up to tail
/// and releases with rxsync. Bad user indices are rejected.
#[test]
fn netmap_mode_syncs_and_user_validation() {
    let (pa, pb) = pipe(64);
    let a = nic(&pa, DriverConfig::default(), false);
    let mut b = nic(&pb, DriverConfig::default(), false);
    let info = a.drv.info().clone();
    let buf_off = move |idx: u32| (info.buf_pool_ofs + idx as u64 * info.buf_size as u64) as usize;
    let total = 500u32;
    // Each side waits on its own interrupts, as two guests do: a single thread that slept on
    // B's interrupts alone stalled ~5 runs in 100 under load, when A's ring was full at its sync
    // and the completion that freed it (A's TX interrupt) came after every frame had arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sender = std::thread::spawn(move || {
        let mut a = a;
        let mut sent = 0u32;
        while sent < total {
            // TX: fill free slots [head, tail) of ring 0.
            let r = a.drv.ring(0).unwrap();
            let (mut head, tail, n) = (r.k.rhead, r.k.rtail, r.num_slots());
            let view = r.view.clone();
            while head != tail && sent < total {
                let s = view.slot(head);
                a.drv.region().write_bytes(buf_off(s.buf_idx), &sent.to_be_bytes()).unwrap();
                view.set_slot(head, Slot { buf_idx: s.buf_idx, len: 60, flags: 0 });
                head = ring::next(head, n);
                sent += 1;
            }
            a.drv.txsync(0, head, head, 0).unwrap();
            let k = a.drv.ring(0).unwrap().k;
            if sent < total && k.rtail == k.rhead {
                // Still full after the sync (which armed the ring): wait for the completion.
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "sender stalled at {sent}");
                a.drv.wait_work(&a.plat, left);
            }
        }
        a
    });
    let mut recvd = 0u32;
    while recvd < total {
        // RX: consume [head, tail) of ring 1.
        let r = b.drv.ring(1).unwrap();
        let (mut h, t, n) = (r.k.rhead, r.k.rtail, r.num_slots());
        let view = r.view.clone();
        while h != t {
            let s = view.slot(h);
            let mut v = [0u8; 4];
            b.drv.region().read_bytes(buf_off(s.buf_idx), &mut v).unwrap();
            assert_eq!(u32::from_be_bytes(v), recvd);
            assert_eq!(s.len, 60);
            recvd += 1;
            h = ring::next(h, n);
        }
        b.drv.rxsync(1, h, h, 0).unwrap();
        if recvd < total && b.drv.ring(1).unwrap().k.rtail == h {
            // Nothing new after the sync (which re-armed the ring): wait for the interrupt.
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "receiver stalled at {recvd}");
            b.drv.wait_work(&b.plat, left);
        }
    }
    let mut a = sender.join().unwrap();
    assert!(b.drv.stats(1).unwrap().syncs > 0);
    // User errors: head beyond tail, cur before head, wrong direction, no such ring.
    let r = a.drv.ring(0).unwrap();
    let (rhead, n) = (r.k.rhead, r.num_slots());
    let beyond = ring::add(r.k.rtail, 1, n);
    let bad = a.drv.txsync(0, beyond, beyond, 0);
    assert!(matches!(bad, Err(DriverError::Sync(SyncError::User(_)))), "{bad:?}");
    let bad = a.drv.txsync(0, ring::next(rhead, n), rhead, 0);
    assert!(matches!(bad, Err(DriverError::Sync(SyncError::User(_)))), "cur before head");
    assert!(matches!(a.drv.txsync(0, 70, 70, 0), Err(DriverError::Sync(SyncError::User(_)))));
    assert!(matches!(a.drv.rxsync(0, 0, 0, 0), Err(DriverError::NoRing(0))));
    assert!(matches!(a.drv.txsync(9, 0, 0, 0), Err(DriverError::NoRing(9))));
    let r = b.drv.ring(1).unwrap();
    let beyond = ring::add(r.k.hwtail, 1, r.num_slots());
    assert!(matches!(
        b.drv.rxsync(1, beyond, beyond, 0),
        Err(DriverError::Sync(SyncError::User(_)))
    ));
}

/// E5: an RX chain whose last slot has not arrived is not delivered truncated; it is rewound
/// and delivered whole once complete.
#[test]
fn incomplete_rx_chain_is_rewound_and_retried() {
    let (pa, pb) = pipe(64);
    let mut a = nic(&pa, DriverConfig::default(), false);
    let mut b = nic(&pb, DriverConfig::default(), false);
    let frame: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let r = a.drv.ring(0).unwrap();
    let (h0, n) = (r.k.rhead, r.num_slots());
    let h = kit::fill_chain(&a.drv, 0, h0, &frame, true);
    // Publish only the first two slots of the chain.
    let mid = ring::add(h0, 2, n);
    a.drv.txsync(0, mid, mid, 0).unwrap();
    let mut buf = vec![0u8; 9000];
    let t0 = Instant::now();
    loop {
        assert_eq!(b.drv.recv(1, &mut buf).unwrap(), None, "no truncated frame");
        let k = b.drv.ring(1).unwrap().k;
        if k.rtail != k.rhead {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the first two slots never arrived");
        b.drv.wait_work(&b.plat, Duration::from_secs(5).saturating_sub(t0.elapsed()));
    }
    assert_eq!(b.drv.recv(1, &mut buf).unwrap(), None, "two slots of three: rewound");
    a.drv.txsync(0, h, h, 0).unwrap();
    let got = loop {
        if let Some(r) = b.drv.recv(1, &mut buf).unwrap() {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the rest never arrived");
        b.drv.wait_work(&b.plat, Duration::from_secs(5).saturating_sub(t0.elapsed()));
    };
    assert_eq!(&buf[..got.len], &frame[..]);
}

/// §8.5: TX publishes every BATCH frames and at the end of a burst; interrupts are taken and
/// counted per ring.
#[test]
fn copy_path_publish_policy_and_interrupt_accounting() {
    let (pa, pb) = pipe(1024);
    let mut a = nic(&pa, DriverConfig::default(), false);
    let mut b = nic(&pb, DriverConfig::default(), false);
    let gh = a.dev.csb_regions().0.unwrap();
    let f = vec![0x5au8; 60];
    for k in 0..BATCH - 1 {
        a.drv.send(0, &f, None).unwrap();
        assert_eq!(gh.load_u32(0), 0, "frame {k}: nothing published before the batch is full");
    }
    a.drv.send(0, &f, None).unwrap();
    assert_eq!(gh.load_u32(0), BATCH, "published at BATCH frames");
    a.drv.send(0, &f, None).unwrap();
    assert_eq!(gh.load_u32(0), BATCH);
    a.drv.flush_tx(0).unwrap();
    assert_eq!(gh.load_u32(0), BATCH + 1, "published at the end of the burst");
    let mut buf = [0u8; 100];
    let mut got = 0;
    let t0 = Instant::now();
    while got < BATCH + 1 {
        while b.drv.recv(1, &mut buf).unwrap().is_some() {
            got += 1;
        }
        if got < BATCH + 1 {
            assert!(t0.elapsed() < Duration::from_secs(5), "stalled at {got}");
            b.drv.wait_work(&b.plat, Duration::from_secs(5).saturating_sub(t0.elapsed()));
        }
    }
    assert!(b.drv.stats(1).unwrap().interrupts > 0, "rx interrupts taken and counted");
    assert_eq!(b.drv.stats(1).unwrap().frames, (BATCH + 1) as u64);
    let _ = regs::MAX_RINGS;
}
