//! Lost wake-ups in the copy path (issue 7 §2), with the driver's polling fallback off: a
//! "nothing now" answer (`recv` → `None`, `send` → `Full`) must leave the ring armed
//! (`appl_need_kick = 1`, §5.4 rule 3) with everything consumed released (RX) or everything
//! filled published (TX); otherwise the host never interrupts again and the waits below stall
//! until their deadline and fail.

/// Prints a measurement so that it shows in `cargo test` output even when the test passes.
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

use ptnetd::abi::csb::ENTRY_SIZE;
use ptnetd::driver::copy::CopyError;
use ptnetd::driver::Ptnet;
use ptnetd::model::port::NmPort;
use ptnetd::model::ptnet::{Netdev, PtnetConfig};
use ptnetd::model::vm::Vm;
use ptnetd::platform::sim::SimPlatform;
use ptnetd::ring;
use std::sync::Arc;
use std::time::Instant;

mod kit;
use kit::*;

/// The invariant of a "nothing now" answer on copy-path ring `i`.
fn assert_armed(drv: &Ptnet<SimPlatform>, i: u32, ctx: &str) {
    let r = drv.ring(i).unwrap();
    assert_eq!(
        r.atok.appl_need_kick(),
        1,
        "{ctx}: ring {i} answered 'nothing' with interrupts off"
    );
    let published = r.atok.kern_read().head;
    assert_eq!(
        Some(published),
        drv.copy_head(i),
        "{ctx}: ring {i} answered 'nothing' with slots not handed to the host"
    );
}

/// A NIC whose host side runs only inside kicks and peer notifications (no kloop thread), so
/// that a test can write the host's CSB fields without the host rewriting them concurrently.
fn direct_nic(port: &Arc<NmPort>) -> Nic {
    let vm = Vm::new(64).unwrap();
    let nd = Netdev { kloop_tx: false, kloop_rx: false, ..Netdev::passthrough(port.clone()) };
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).unwrap();
    let (plat, drv) = attach(&vm, &dev, strict(false)).unwrap();
    Nic { vm, plat, drv, dev, port: port.clone() }
}

/// Writes `hwtail` of ring `i` in the host's CSB array, as a misbehaving host would.
fn poke_hwtail(n: &Nic, i: u32, v: u32) {
    let hg = n.dev.csb_regions().1.unwrap();
    hg.store_u32(i as usize * ENTRY_SIZE + 4, v);
}

/// The reproduction: a 32-slot pipe with 5000-byte frames (three slots each, so chains
/// are often incomplete at the end of what the host published, E5, while the host keeps
/// moving hwtail). The sender and the receiver each wait on interrupts only.
#[test]
fn small_ring_big_frames_never_sleep_unarmed() {
    const N: u64 = 4000;
    let (pa, pb) = pipe(1, 32);
    let a = nic(&pa, strict(false));
    let mut b = nic(&pb, strict(false));
    let deadline = Instant::now() + T;
    let sender = std::thread::spawn(move || {
        let mut a = a;
        let (mut k, mut fulls) = (0u64, 0u64);
        while k < N {
            match a.drv.send(0, &frame(k, 5000), None) {
                Ok(()) => k += 1,
                Err(CopyError::Full) => {
                    fulls += 1;
                    assert_armed(&a.drv, 0, "send → Full");
                    let left = deadline.saturating_duration_since(Instant::now());
                    assert!(!left.is_zero(), "lost TX wake-up: sender stalled at frame {k}");
                    a.drv.wait_work(&a.plat, left);
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        a.drv.flush_tx(0).unwrap();
        (a, fulls)
    });
    let mut buf = vec![0u8; 9000];
    let (mut got, mut nones) = (0u64, 0u64);
    while got < N {
        match b.drv.recv(1, &mut buf).unwrap() {
            Some(r) => {
                assert_eq!(&buf[..r.len], &frame(got, 5000)[..], "frame {got}");
                got += 1;
            }
            None => {
                nones += 1;
                assert_armed(&b.drv, 1, "recv → None");
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "lost RX wake-up: receiver stalled at frame {got}");
                b.drv.wait_work(&b.plat, left);
            }
        }
    }
    let (_a, fulls) = sender.join().unwrap();
    report!("wakeup: {N} frames of 5000 bytes through 32 slots: {nones} empty receives, {fulls} full sends");
    assert!(nones > 0 && fulls > 0, "both sides waited");
}

/// E5 with the host moving hwtail during the re-arm: here a hostile host writes an hwtail that
/// fails validation. `recv` must not take the raw value as "work appeared" and return `None`
/// with interrupts off; once the host publishes the rest of the chain, an interrupt arrives.
#[test]
fn rx_rearm_with_a_bad_hwtail_stays_armed() {
    let (pa, pb) = pipe(1, 64);
    let mut a = direct_nic(&pa);
    let mut b = nic(&pb, strict(false)); // a direct RX host publishes only when kicked
    let frame: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    // Fill a three-slot chain in netmap mode and publish its first two slots only.
    let r = a.drv.ring(0).unwrap();
    let (h0, n) = (r.k.rhead, r.num_slots());
    let h = fill_chain(&a.drv, 0, h0, &frame, true);
    let mid = ring::add(h0, 2, n);
    a.drv.txsync(0, mid, mid, 0).unwrap();
    let mut buf = vec![0u8; 9000];
    let deadline = Instant::now() + T;
    loop {
        assert_eq!(b.drv.recv(1, &mut buf).unwrap(), None, "incomplete chain");
        let k = b.drv.ring(1).unwrap().k;
        if k.rtail != k.rhead {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the two slots never arrived");
        b.drv.wait_work(&b.plat, left);
    }
    let k = b.drv.ring(1).unwrap().k;
    assert_eq!(ring::dist(k.rhead, k.rtail, n), 2, "the two published slots are visible");
    assert_armed(&b.drv, 1, "incomplete chain");
    // hwtail one slot back: in range, but behind what the host already published.
    let bad = ring::prev(k.hwtail, n);
    assert!(!ring::in_order(k.hwtail, bad, ring::prev(k.hwcur, n), n));
    poke_hwtail(&b, 1, bad);
    let errors = b.drv.stats(1).unwrap().errors;
    b.drv.take_interrupts(false);
    assert_eq!(b.drv.recv(1, &mut buf).unwrap(), None, "still incomplete");
    assert_armed(&b.drv, 1, "bad hwtail during the re-arm");
    assert!(b.drv.stats(1).unwrap().errors > errors, "the bad hwtail was noticed");
    // The host publishes the last slot: the armed ring gets its interrupt and the frame.
    a.drv.txsync(0, h, h, 0).unwrap();
    // `wait_work` may wake spuriously (A's interrupts ring the same controller): wait until
    // ring 1's interrupt is reported, failing at the deadline.
    while b.drv.wait_work(&b.plat, deadline.saturating_duration_since(Instant::now())) & 1 << 1 == 0
    {
        assert!(Instant::now() < deadline, "RX interrupt never raised");
    }
    let got = b.drv.recv(1, &mut buf).unwrap().expect("the whole frame");
    assert_eq!(&buf[..got.len], &frame[..]);
}

/// TX side (`send`): when the ring is full, the re-check after re-arming must use a validated
/// hwtail. A bad one (out of range, or in range but out of order) gives `Full` with the ring
/// armed, never `Full` (or an error) with interrupts off.
#[test]
fn tx_rearm_with_a_bad_hwtail_stays_armed() {
    let (pa, pb) = pipe(1, 64);
    let mut a = direct_nic(&pa);
    let _b = direct_nic(&pb); // attached, never receives: A's ring fills up
    let f = frame(0, 60);
    let mut sent = 0;
    loop {
        match a.drv.send(0, &f, None) {
            Ok(()) => sent += 1,
            // Full, and the host (which runs in our kicks) cannot make room: B's ring is full.
            Err(CopyError::Full) if a.drv.tx_space(0).unwrap() == 0 => break,
            Err(CopyError::Full) => {}
            Err(e) => panic!("send: {e}"),
        }
        assert!(sent < 1000, "the ring never filled");
    }
    assert_armed(&a.drv, 0, "full ring");
    let k = a.drv.ring(0).unwrap().k;
    let n = a.drv.ring(0).unwrap().num_slots();
    assert_eq!(ring::space(a.drv.copy_head(0).unwrap(), k.rtail, n), 0);
    assert_eq!(
        a.drv.ring(0).unwrap().ktoa.appl_read(),
        (k.hwcur, k.hwtail),
        "in sync with the host"
    );
    let in_range_bad = k.hwcur; // past prev(hwcur): slots the host has not processed
    assert!(
        in_range_bad != k.hwtail
            && !ring::in_order(k.hwtail, in_range_bad, ring::prev(k.hwcur, n), n)
    );
    for bad in [n + 5, u32::MAX, in_range_bad] {
        poke_hwtail(&a, 0, bad);
        let errors = a.drv.stats(0).unwrap().errors;
        match a.drv.send(0, &f, None) {
            Err(CopyError::Full) => {}
            other => panic!("hwtail {bad}: expected Full, got {other:?}"),
        }
        assert_armed(&a.drv, 0, &format!("hwtail {bad}"));
        assert!(a.drv.stats(0).unwrap().errors > errors, "hwtail {bad} was noticed");
        assert!(
            a.drv.tx_space(0).unwrap() == 0,
            "hwtail {bad}: no space appears from a rejected value"
        );
        assert_armed(&a.drv, 0, &format!("tx_space with hwtail {bad}"));
        poke_hwtail(&a, 0, k.hwtail);
    }
}

/// An unterminated chain that fills the whole RX ring can never complete (the host cannot add
/// a slot before the guest releases one): `recv` drops it instead of answering `None` forever,
/// and the ring goes on. The receiver waits on interrupts only.
#[test]
fn unterminated_chain_filling_the_ring_is_dropped_not_waited_for() {
    let (pa, pb) = pipe(1, 64);
    let mut a = nic(&pa, strict(false));
    let mut b = nic(&pb, strict(false));
    let bsz = a.drv.info().buf_size as usize;
    let n = a.drv.ring(0).unwrap().num_slots();
    let head = a.drv.ring(0).unwrap().k.rhead;
    let mut h = fill_chain(&a.drv, 0, head, &vec![0x3c; (n as usize - 1) * bsz], false);
    a.drv.txsync(0, h, h, 0).unwrap();
    let mut buf = vec![0u8; 65536 * 2];
    let deadline = Instant::now() + T;
    let mut rx = |b: &mut Nic, what: &str| loop {
        match b.drv.recv(1, &mut buf) {
            Ok(None) => {
                assert_armed(&b.drv, 1, what);
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "{what}: stalled");
                b.drv.wait_work(&b.plat, left);
            }
            other => break other.map(|r| r.map(|r| r.len)),
        }
    };
    assert_eq!(rx(&mut b, "unterminated"), Err(CopyError::TooLong(63 * bsz)));
    // The ring goes on: the next frame arrives.
    let f = frame(7, 100);
    loop {
        a.drv.txsync(0, h, h, 0).unwrap();
        if a.drv.ring(0).unwrap().k.rtail != h {
            break;
        }
        assert!(Instant::now() < deadline, "no TX space");
        a.drv.wait_work(&a.plat, deadline.saturating_duration_since(Instant::now()));
    }
    h = fill_chain(&a.drv, 0, h, &f, true);
    a.drv.txsync(0, h, h, 0).unwrap();
    assert_eq!(rx(&mut b, "next frame"), Ok(Some(f.len())));
}

/// Direct TX (`klooptx=off`, §8.6): the host processes a TX ring only inside a kick. Frames it
/// held back because the pipe's peer was full wait in the host ring; the peer's release raises
/// the sender's TX interrupt and nothing else. The sender's next TX sync must then kick although
/// it published nothing new (§8.2 step 5: `rhead != hwcur` and `kern_need_kick`), or those
/// frames wait forever: this test stalls at frame 63 without that kick.
#[test]
fn direct_tx_frames_held_back_by_a_full_peer_are_sent_after_its_release() {
    const N: u64 = 126; // two ring-fulls of a 64-slot pipe
    let (pa, pb) = pipe(1, 64);
    let vm = Vm::new(64).unwrap();
    let nd = Netdev { kloop_tx: false, ..Netdev::passthrough(pa.clone()) };
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).unwrap();
    let (plat, drv) = attach(&vm, &dev, strict(false)).unwrap();
    let mut a = Nic { vm, plat, drv, dev, port: pa.clone() };
    let mut b = nic(&pb, strict(false));
    let deadline = Instant::now() + T;
    let mut sent = 0u64;
    let mut send_all = |a: &mut Nic, upto: u64| {
        while sent < upto {
            match a.drv.send(0, &frame(sent, 60), None) {
                Ok(()) => sent += 1,
                Err(e) => panic!("send {sent}: {e}"),
            }
        }
        a.drv.flush_tx(0).unwrap();
    };
    // The first ring-full goes to the peer inside the kick and fills its RX ring ...
    send_all(&mut a, 63);
    while b.drv.rx_pending(1).unwrap() < 63 {
        assert!(Instant::now() < deadline, "the first frames never arrived");
        b.drv.wait_work(&b.plat, deadline.saturating_duration_since(Instant::now()));
    }
    // ... so the second waits in the sender's host ring, published but not consumed.
    send_all(&mut a, N);
    let r = a.drv.ring(0).unwrap();
    assert_ne!(r.ktoa.appl_read().0, r.k.rhead, "frames held back by the host");
    let mut buf = vec![0u8; 2048];
    let mut got = 0u64;
    while got < N {
        let before = got;
        while let Some(r) = b.drv.recv(1, &mut buf).unwrap() {
            assert_eq!(&buf[..r.len], &frame(got, 60)[..], "frame {got}");
            got += 1;
        }
        b.drv.flush_rx(1).unwrap();
        a.drv.flush_tx(0).unwrap(); // nothing new to publish: the TX-interrupt path
        if got == before {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "held-back frames never sent: receiver stalled at {got}");
            // Held back: the sender waits for its TX interrupt (the peer's release), as a
            // driver with a full ring does; otherwise the receiver waits for frames.
            let r = a.drv.ring(0).unwrap();
            if r.ktoa.appl_read().0 != r.k.rhead {
                a.drv.wait_work(&a.plat, left);
            } else {
                b.drv.wait_work(&b.plat, left);
            }
        }
    }
}

/// Direct RX (`klooprx=off`, §8.6): the host moves frames into a guest RX ring only inside a
/// kick; what arrives from the peer raises the RX interrupt and nothing else. So an RX sync that
/// would block must kick when the host asks (§8.3 step 5: wouldblock and `kern_need_kick`), and
/// look once more, since the kick ran the host in place. Without that kick the copy path
/// receives nothing at all (the bench's stack rows in direct mode stalled at frame 0).
#[test]
fn direct_rx_copy_path_kicks_when_it_would_block() {
    const N: u64 = 2000;
    let (pa, pb) = pipe(1, 64);
    let a = nic(&pa, strict(false));
    let vm = Vm::new(64).unwrap();
    let nd = Netdev { kloop_rx: false, ..Netdev::passthrough(pb.clone()) };
    let dev = vm.add_ptnet(nd, PtnetConfig::default()).unwrap();
    let (plat, drv) = attach(&vm, &dev, strict(false)).unwrap();
    let mut b = Nic { vm, plat, drv, dev, port: pb.clone() };
    let deadline = Instant::now() + T;
    let sender = std::thread::spawn(move || {
        let mut a = a;
        let mut k = 0u64;
        while k < N {
            match a.drv.send(0, &frame(k, 60), None) {
                Ok(()) => k += 1,
                Err(CopyError::Full) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    assert!(!left.is_zero(), "sender stalled at frame {k}");
                    a.drv.wait_work(&a.plat, left);
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        a.drv.flush_tx(0).unwrap();
        a
    });
    let mut buf = vec![0u8; 2048];
    let mut got = 0u64;
    while got < N {
        match b.drv.recv(1, &mut buf).unwrap() {
            Some(r) => {
                assert_eq!(&buf[..r.len], &frame(got, 60)[..], "frame {got}");
                got += 1;
            }
            None => {
                assert_armed(&b.drv, 1, "recv → None");
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "direct RX: receiver stalled at frame {got}");
                b.drv.wait_work(&b.plat, left);
            }
        }
    }
    sender.join().unwrap();
    assert!(b.drv.stats(1).unwrap().kicks > 0, "the receiver kicked its host");
}
