//! The `netmap` scheme (scheme-spec `netmap.md`) through redox-scheme's dispatch and the
//! in-process transport, with the polling fallback off, and the client library on top.

mod skit;

use ptnetd::abi::nmscheme::{NmInfo, INFO_LEN, OP_INFO, OP_TXSYNC};
use ptnetd::client::host::HostOs;
use ptnetd::client::{ClientError, EventFlags, NetmapPort};
use ptnetd::nm::Slot;
use ptnetd::scheme::Owner;
use skit::*;
use syscall::error::*;
use syscall::flag::{MapFlags, O_NONBLOCK, O_RDWR};

fn errno<T: std::fmt::Debug>(r: syscall::error::Result<T>) -> i32 {
    r.expect_err("expected an error").errno
}

type Os<'a> = HostOs<'a, ptnetd::platform::sim::SimPlatform>;
type Port<'a> = NetmapPort<'a, Os<'a>>;

/// The operating system of VM `v` as its clients see it.
fn os(v: &Vm1) -> Os<'_> {
    HostOs::new(vec![&v.k])
}

fn port<'a>(os: &'a Os<'a>, path: &str) -> Port<'a> {
    let name = os_name(os);
    NetmapPort::open(os, &name, path).unwrap()
}

fn os_name(os: &Os<'_>) -> String {
    // Each test VM has one NIC; its name is what the client puts in the scheme path.
    format!("{os:?}").split("HostKernel(").nth(1).unwrap().split(')').next().unwrap().to_string()
}

/// M2, M5.1: binding paths, privileges, EBUSY, release on close.
#[test]
fn open_binds_rings_exclusively() {
    let (a, _b) = pair(2, 64, 2048);
    assert_eq!(errno(a.k.open(NM, "0", O_RDWR, 1000)), EACCES);
    for bad in ["2", "01", "x", "0/X", "all/T/R", "-0"] {
        assert_eq!(errno(a.k.open(NM, bad, O_RDWR, 0)), EINVAL, "{bad:?}");
    }
    let h0 = a.k.open(NM, "0", O_RDWR, 0).unwrap();
    assert_eq!(errno(a.k.open(NM, "0", O_RDWR, 0)), EBUSY);
    assert_eq!(errno(a.k.open(NM, "all", O_RDWR, 0)), EBUSY, "all or none");
    assert_eq!(errno(a.k.open(NM, "0/R", O_RDWR, 0)), EBUSY);
    let h1t = a.k.open(NM, "1/T", O_RDWR, 0).unwrap();
    let h1r = a.k.open(NM, "1/R", O_RDWR, 0).unwrap();
    a.k.close(NM, h0);
    let again = a.k.open(NM, "0", O_RDWR, 0).unwrap();
    assert_ne!(again, h0);
    a.k.close(NM, again);
    a.k.close(NM, h1t);
    a.k.close(NM, h1r);
    let all = a.k.open(NM, "", O_RDWR, 0).unwrap();
    let mut b = [0u8; INFO_LEN];
    a.k.call(NM, all, &mut b, &[OP_INFO]).unwrap();
    let i = NmInfo::decode(&b).unwrap();
    assert_eq!((i.first_tx, i.last_tx, i.first_rx, i.last_rx), (0, 2, 0, 2));
    assert_eq!(errno(a.k.open(NM, "root", O_RDWR, 0)), EINVAL);
    assert_eq!(
        errno(a.k.openat(NM, all, "0", O_RDWR, 0)),
        EACCES,
        "openat relative to a bound handle"
    );
}

/// M3, M3.1, M4, M7: INFO, bad calls, mmap rules, other operations.
#[test]
fn info_calls_and_mmap() {
    let (a, _b) = pair(2, 128, 2048);
    let h = a.k.open(NM, "1", O_RDWR, 0).unwrap();
    let mut b = [0u8; 80];
    assert_eq!(a.k.call(NM, h, &mut b, &[OP_INFO]).unwrap(), INFO_LEN);
    let i = NmInfo::decode(&b).unwrap();
    let st = a.k.fstat(NM, h).unwrap();
    assert_eq!(st.st_size, i.mem_size);
    assert_eq!((i.version, i.tx_rings, i.rx_rings, i.tx_slots, i.rx_slots), (1, 2, 2, 128, 128));
    assert_eq!((i.first_tx, i.last_tx, i.first_rx, i.last_rx), (1, 2, 1, 2));
    assert_eq!(i.buf_size, 2048);
    assert_eq!(errno(a.k.call(NM, h, &mut [0u8; 63], &[OP_INFO])), EINVAL, "short payload");
    assert_eq!(errno(a.k.call(NM, h, &mut [], &[99])), EINVAL, "unknown op");
    assert_eq!(errno(a.k.call(NM, h, &mut [], &[])), EINVAL, "no op");
    assert_eq!(errno(a.k.read(NM, h, &mut [0u8; 8], 0, 0)), EOPNOTSUPP);
    assert_eq!(errno(a.k.write(NM, h, &[0u8; 60], 0)), EOPNOTSUPP);
    let sh = MapFlags::MAP_SHARED;
    assert_eq!(errno(a.k.mmap(NM, h, 1, 4096, sh)), EINVAL, "unaligned offset");
    assert_eq!(errno(a.k.mmap(NM, h, 0, i.mem_size as usize + 1, sh)), EINVAL, "beyond the region");
    assert_eq!(errno(a.k.mmap(NM, h, 0, 0, sh)), EINVAL, "empty");
    assert_eq!(errno(a.k.mmap(NM, h, 0, 4096, MapFlags::MAP_PRIVATE)), EINVAL, "private");
    let r = a.k.mmap(NM, h, 4096, 4096, sh).unwrap();
    assert_eq!(r.len(), 4096);
    let mut p = [0u8; 128];
    let n = a.k.fpath(NM, h, &mut p).unwrap();
    assert!(std::str::from_utf8(&p[..n]).unwrap().ends_with("_ptnet/1"));
    assert_eq!(errno(a.k.call(NM, 424242, &mut [], &[OP_TXSYNC])), EBADF);
}

/// Zero-copy both ways between two VMs' netmap schemes, event-driven (no polling): every frame
/// arrives once, in order, intact.
#[test]
fn zero_copy_frames_between_two_vms() {
    let (a, b) = pair(1, 256, 2048);
    let (oa, ob) = (os(&a), os(&b));
    let mut tx = port(&oa, "0/T");
    let mut rx = port(&ob, "0/R");
    let total = 5000u64;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut buf = vec![0u8; 2048];
    let t0 = std::time::Instant::now();
    while got < total {
        assert!(t0.elapsed() < T, "stalled at {got} of {total}");
        tx.txsync().unwrap(); // reclaim what the host completed, then fill
        let ring = tx.tx_ring(0).unwrap();
        while sent < total {
            let len = 60 + (sent as usize * 37) % 1400;
            if !ring.push(&frame(1, 2, sent, len)).unwrap() {
                break;
            }
            sent += 1;
        }
        tx.txsync().unwrap();
        rx.rxsync().unwrap();
        let r = rx.rx_ring(0).unwrap();
        let mut any = false;
        while let Some(n) = r.pop(&mut buf).unwrap() {
            let len = 60 + (got as usize * 37) % 1400;
            assert_eq!(&buf[..n], &frame(1, 2, got, len)[..], "frame {got}");
            got += 1;
            any = true;
        }
        if !any && got < total && sent == got {
            let ev = tx.wait(EventFlags::EVENT_WRITE, T).unwrap();
            assert_eq!(ev, EventFlags::EVENT_WRITE, "woken by the TX interrupt, not a timeout");
        } else if !any && got < total {
            rx.rxsync().unwrap(); // release, then wait for the host (interrupt-driven)
            if rx.rx_ring(0).unwrap().space() == 0 {
                let ev = rx.wait(EventFlags::EVENT_READ, T).unwrap();
                assert_eq!(ev, EventFlags::EVENT_READ, "woken by the interrupt, not a timeout");
            }
        }
    }
    assert_eq!((sent, got), (total, total));
    let s = b.k.snapshot().scheme;
    assert!(s.syncs > 0 && s.bad_syncs == 0, "{s:?}");
}

/// M3.2 step 4: a client's bad head/cur or slots are refused, its ring is reinitialised from the
/// daemon's copy, and it can go on afterwards.
#[test]
fn bad_client_values_reinitialise_only_that_ring() {
    let (a, b) = pair(1, 64, 2048);
    let oa = os(&a);
    let p = port(&oa, "0/T");
    let r = p.tx_ring(0).unwrap();
    let (h0, t0) = (r.head(), r.tail());
    // Head out of range.
    r.set_head_cur(64, 64);
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)));
    assert_eq!((r.head(), r.cur(), r.tail()), (h0, h0, t0), "reinitialised from the trusted copy");
    // Head behind rhead (moves backwards) / cur before head.
    r.set_head_cur(5, 3);
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)));
    // A slot with a buffer index outside the pool, then one too long.
    let s = r.slot(h0).unwrap();
    r.set_slot(h0, Slot { buf_idx: 1, len: 60, flags: 0 }).unwrap();
    r.set_head_cur(r.next(h0), r.next(h0));
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)));
    r.set_slot(h0, Slot { buf_idx: s.buf_idx, len: 4000, flags: 0 }).unwrap();
    r.set_head_cur(r.next(h0), r.next(h0));
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)));
    // A chain handed over without its end.
    r.set_slot(h0, Slot { buf_idx: s.buf_idx, len: 60, flags: ptnetd::abi::netmap::NS_MOREFRAG })
        .unwrap();
    r.set_head_cur(r.next(h0), r.next(h0));
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)));
    assert_eq!(a.k.snapshot().scheme.bad_syncs, 5);
    // Nothing reached the host: the peer has received nothing.
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    assert_eq!(errno(b.k.read(NET, db, &mut [0u8; 64], 0, O_NONBLOCK)), EAGAIN);
    // A good frame afterwards goes through.
    r.set_slot(h0, Slot { buf_idx: s.buf_idx, len: 60, flags: 0 }).unwrap();
    assert!(r.push(&frame(1, 2, 9, 60)).unwrap());
    p.txsync().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(b.k.read(NET, db, &mut buf, 0, 0).unwrap(), 60);
    assert_eq!(buf[..60], frame(1, 2, 9, 60)[..]);
}

/// M5: the stack keeps the rings no client holds; rings come back on close; frames in flight at
/// a switch are delivered once (pending RX frames go to the client, then back to the stack).
#[test]
fn ownership_and_mode_switch_account_for_every_frame() {
    let (a, b) = pair(2, 64, 2048);
    let (oa, ob) = (os(&a), os(&b));
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    // A's stack writes 10 frames; they wait unread in B's RX ring 0.
    for k in 0..10 {
        a.k.write(NET, da, &frame(1, 2, k, 100), 0).unwrap();
    }
    // B's zero-copy client takes RX ring 0: the 10 pending frames are its first frames.
    let mut c = port(&ob, "0/R");
    assert_eq!(b.k.snapshot().scheme.frames_read, 0);
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    let t0 = std::time::Instant::now();
    while got.len() < 4 {
        assert!(t0.elapsed() < T);
        c.rxsync().unwrap();
        let r = c.rx_ring(0).unwrap();
        if let Some(n) = r.pop(&mut buf).unwrap() {
            got.push(buf[..n].to_vec());
        } else {
            assert_eq!(c.wait(EventFlags::EVENT_READ, T).unwrap(), EventFlags::EVENT_READ);
        }
    }
    c.rxsync().unwrap(); // releases the 4 frames it consumed
                         // While the client holds ring 0 on B and a client holds TX ring 0 on A, the stack moves
                         // frames over ring 1.
    let holder = port(&oa, "0/T");
    assert_eq!(a.k.snapshot().scheme.frames_written, 10);
    a.k.write(NET, da, &frame(1, 2, 100, 100), 0).unwrap();
    let n = b.k.read(NET, db, &mut buf, 0, 0).unwrap();
    assert_eq!(&buf[..n], &frame(1, 2, 100, 100)[..], "ring 1 serves the stack");
    drop(holder);
    // N7: the stack sticks to TX ring 1 after ring 0 comes back (no reordering across rings).
    let before = a.k.snapshot().rings;
    let t0 = std::time::Instant::now();
    while b.k_owner(0) != Owner::Stack || a.k_owner(0) != Owner::Stack {
        assert!(t0.elapsed() < T, "ring 0 never came back");
    }
    a.k.write(NET, da, &frame(1, 2, 101, 100), 0).unwrap();
    let n = b.k.read(NET, db, &mut buf, 0, 0).unwrap();
    assert_eq!(&buf[..n], &frame(1, 2, 101, 100)[..]);
    let after = a.k.snapshot().rings;
    assert_eq!((after[0].frames, after[1].frames), (before[0].frames, before[1].frames + 1));
    // The client goes away with 6 frames unread: the stack reads them, once each.
    drop(c);
    for k in 4..10 {
        let n = b.k.read(NET, db, &mut buf, 0, 0).unwrap();
        got.push(buf[..n].to_vec());
        assert_eq!(got.last().unwrap(), &frame(1, 2, k, 100), "frame {k}");
    }
    for (k, f) in got.iter().enumerate().take(4) {
        assert_eq!(f, &frame(1, 2, k as u64, 100));
    }
    assert_eq!(errno(b.k.read(NET, db, &mut buf, 0, O_NONBLOCK)), EAGAIN, "none twice");
    for i in 0..4 {
        assert_eq!(b.k_owner(i), Owner::Stack);
    }
}

trait OwnerOf {
    fn k_owner(&self, i: u32) -> Owner;
}

impl OwnerOf for Vm1 {
    fn k_owner(&self, i: u32) -> Owner {
        // Ownership is visible through behaviour: a ring held by a client refuses a new bind.
        let tx = i < 2;
        let path = format!("{}/{}", i % 2, if tx { "T" } else { "R" });
        match self.k.open(NM, &path, O_RDWR, 0) {
            Ok(h) => {
                self.k.close(NM, h);
                Owner::Stack
            }
            Err(_) => Owner::Client(0),
        }
    }
}

/// M6: EVENT_READ is posted when a frame arrives at an idle client (no polling).
#[test]
fn readiness_events_wake_a_waiting_client() {
    let (a, b) = pair(1, 64, 2048);
    let (oa, ob) = (os(&a), os(&b));
    let mut c = port(&ob, "0/R");
    assert_eq!(
        c.wait(EventFlags::EVENT_READ, std::time::Duration::from_millis(30)).unwrap(),
        EventFlags::empty()
    );
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
    a.k.write(NET, da, &frame(1, 2, 1, 80), 0).unwrap();
    assert_eq!(c.wait(EventFlags::EVENT_READ, T).unwrap(), EventFlags::EVENT_READ);
    c.rxsync().unwrap();
    let mut buf = [0u8; 128];
    assert_eq!(c.rx_ring(0).unwrap().pop(&mut buf).unwrap(), Some(80));
    let t = port(&oa, "0/T");
    let mut t = t;
    assert_eq!(t.wait(EventFlags::EVENT_WRITE, T).unwrap(), EventFlags::EVENT_WRITE);
}

/// A client that scribbles garbage over its own ring between syncs while another client and the
/// stack move verified frames: only its own syncs fail.
#[test]
fn a_garbage_writing_client_disturbs_no_one_else() {
    let (a, b) = pair(2, 128, 2048);
    let (oa, ob) = (os(&a), os(&b));
    let bad = port(&oa, "1/T");
    let mut good_tx = port(&oa, "0/T");
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap(); // the stack: A's TX rings are all held...
    assert_eq!(errno(a.k.write(NET, da, &frame(1, 2, 0, 60), 0)), ENETDOWN, "no TX ring left");
    let mut good_rx = port(&ob, "0/R");
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap(); // B's stack owns RX ring 1
    let br = bad.tx_ring(1).unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut sent, mut got, mut refused) = (0u64, 0u64, 0u64);
    let total = 2000;
    let mut buf = vec![0u8; 2048];
    let t0 = std::time::Instant::now();
    while got < total {
        assert!(t0.elapsed() < T, "stalled at {got}");
        for _ in 0..4 {
            let x = next();
            match x % 3 {
                0 => br.set_head_cur(x as u32 >> 8, (x >> 40) as u32),
                1 => br
                    .set_slot(
                        (x >> 8) as u32 % 128,
                        Slot {
                            buf_idx: (x >> 20) as u32,
                            len: (x >> 50) as u16,
                            flags: (x >> 4) as u16,
                        },
                    )
                    .unwrap(),
                _ => br.set_head_cur(br.head().wrapping_add(1 + (x >> 9) as u32 % 200), br.head()),
            }
            if bad.txsync().is_err() {
                refused += 1;
            }
        }
        good_tx.txsync().unwrap(); // reclaim what the host completed, then fill
        let r = good_tx.tx_ring(0).unwrap();
        while sent < total && r.push(&frame(1, 2, sent, 64)).unwrap() {
            sent += 1;
        }
        good_tx.txsync().unwrap();
        good_rx.rxsync().unwrap();
        let rr = good_rx.rx_ring(0).unwrap();
        while let Some(n) = rr.pop(&mut buf).unwrap() {
            assert_eq!(&buf[..n], &frame(1, 2, got, 64)[..], "frame {got}");
            got += 1;
        }
        if got < total && sent == got {
            // Nothing in flight: the sender waits for the host to complete its TX slots.
            let ev = good_tx.wait(EventFlags::EVENT_WRITE, T).unwrap();
            assert_eq!(ev, EventFlags::EVENT_WRITE, "woken by the TX interrupt, not a timeout");
        } else if got < total {
            good_rx.rxsync().unwrap();
            let ev = good_rx.wait(EventFlags::EVENT_READ, T).unwrap();
            assert_eq!(ev, EventFlags::EVENT_READ, "woken by the interrupt, not a timeout: sent {sent} got {got} tx space {} rx space {}", good_tx.tx_ring(0).unwrap().space(), good_rx.rx_ring(0).unwrap().space());
        }
    }
    assert!(refused > 0);
    // Whatever the bad client's ring carried to B's stack ring 1 is frames or nothing: B's
    // stack still answers, and never with garbage lengths beyond a frame.
    while let Ok(n) = b.k.read(NET, db, &mut buf, 0, O_NONBLOCK) {
        assert!(n <= 2048);
    }
}

/// M5.2/M5.3 under traffic: A's stack streams frames (blocking writes, parked when the ring is
/// full) while B's single RX ring goes back and forth between B's stack and a zero-copy client,
/// every 300 frames. Every frame arrives exactly once, in order, whoever holds the ring.
#[test]
fn mode_switches_under_traffic_lose_and_repeat_nothing() {
    let (a, b) = pair(1, 256, 2048);
    let ob = os(&b);
    let total = 12_000u64;
    let len = |k: u64| 60 + (k % 200) as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
            for k in 0..total {
                assert_eq!(a.k.write(NET, da, &frame(1, 2, k, len(k)), 0).unwrap(), len(k));
            }
            a.k.fsync(NET, da).unwrap();
        });
        let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
        b.k.fevent(NET, db, EventFlags::EVENT_READ).unwrap();
        let mut buf = vec![0u8; 2048];
        let (mut next, mut switches) = (0u64, 0);
        let t0 = std::time::Instant::now();
        let check = |buf: &[u8], next: &mut u64| {
            assert_eq!(buf, &frame(1, 2, *next, len(*next))[..], "frame {next}");
            *next += 1;
        };
        while next < total {
            assert!(t0.elapsed() < T, "stalled at {next}");
            let end = (next + 300).min(total);
            while next < end {
                match b.k.read(NET, db, &mut buf, 0, O_NONBLOCK) {
                    Ok(n) => check(&buf[..n], &mut next),
                    Err(e) if e.errno == EAGAIN => {
                        // Woken by the frame's arrival (or the ring coming back), never a poll.
                        let ev = b.k.wait_event(NET, db, EventFlags::EVENT_READ, T);
                        assert_eq!(ev, EventFlags::EVENT_READ, "stack stalled at {next}");
                    }
                    Err(e) => panic!("stack read: {e:?}"),
                }
            }
            if next == total {
                break;
            }
            let mut c = port(&ob, "0/R");
            switches += 1;
            let end = (next + 300).min(total);
            while next < end {
                c.rxsync().unwrap();
                let r = c.rx_ring(0).unwrap();
                let before = next;
                while next < end {
                    match r.pop(&mut buf).unwrap() {
                        Some(n) => check(&buf[..n], &mut next),
                        None => break,
                    }
                }
                if next == before {
                    let ev = c.wait(EventFlags::EVENT_READ, T).unwrap();
                    assert_eq!(ev, EventFlags::EVENT_READ, "client stalled at {next}");
                }
            }
            c.rxsync().unwrap(); // release what it took; the rest stays for the stack
        }
        assert!(switches >= 10, "{switches} switches");
    });
    assert_eq!(b.k.snapshot().scheme.bad_syncs, 0);
}

/// The client library checks every buffer access against the pool and the mapping: indices 0
/// and 1 (reserved), `buf_num` and beyond, and lengths over `buf_size` are `BadBuffer`, never
/// an access outside a buffer; a valid buffer reads back what was written.
#[test]
fn client_buffer_access_is_bounded() {
    let (a, _b) = pair(1, 64, 2048);
    let oa = os(&a);
    let p = port(&oa, "0");
    let (num, bs) = (p.info().buf_num, p.info().buf_size as usize);
    let tx = p.tx_ring(0).unwrap();
    let ok = tx.slot(tx.head()).unwrap().buf_idx;
    tx.write_buf(ok, 0, &[0xa5; 60]).unwrap();
    let mut back = [0u8; 60];
    tx.read_buf(ok, 0, &mut back).unwrap();
    assert_eq!(back, [0xa5; 60]);
    tx.write_buf(ok, bs - 4, &[1, 2, 3, 4]).unwrap();
    let bad = |r: Result<(), ClientError>| matches!(r, Err(ClientError::BadBuffer { .. }));
    for idx in [0, 1, num, num + 1, u32::MAX] {
        assert!(bad(tx.write_buf(idx, 0, &[0; 60])), "buffer {idx}");
        assert!(bad(tx.read_buf(idx, 0, &mut back)), "buffer {idx}");
    }
    assert!(bad(tx.write_buf(ok, 0, &vec![0; bs + 1])), "longer than a buffer");
    assert!(bad(tx.write_buf(ok, bs - 3, &[1, 2, 3, 4])), "across the buffer's end");
    assert!(bad(tx.read_buf(ok, usize::MAX, &mut back)), "offset overflow");
    assert!(bad(tx.read_buf(num - 1, bs, &mut [0u8; 1])), "past the last buffer");
}

/// A sender and a receiver on their own threads, each sleeping on its readiness event whenever
/// it cannot go on (TX ring full, RX ring empty), in kloop mode and in direct mode
/// (`klooptx=off,klooprx=off`), with requests over IPC (the daemon thread) and inline (the
/// caller's thread), with the polling fallback off: every wait must end by its
/// event, never by the timeout. In direct mode the host moves a TX slot only inside a kick, so
/// a TX interrupt (the peer released slots) must lead to a kick before `EVENT_WRITE` can be
/// ready, and an RX interrupt to a kick before `EVENT_READ` can (netmap's poll: a sync of the
/// waited-on ring, §8.6 direct modes); without that the waits below time out. Inline, no daemon
/// thread takes the interrupts (the polling fallback is off too): the blocked caller must take
/// them itself. Every wait sleeps at once, or after halt polling.
#[test]
fn blocked_clients_are_woken_by_events_in_both_host_modes() {
    const W: std::time::Duration = std::time::Duration::from_secs(3);
    use ptnetd::scheme::host::{HostConfig, Transport, HALT_POLL};
    let inline = HostConfig { transport: Transport::Inline, ..no_poll() };
    let polled = |h: HostConfig| HostConfig { halt_poll: HALT_POLL, ..h };
    let hosts = [no_poll(), inline, polled(no_poll()), polled(inline)];
    for (kloop, host) in [true, false].into_iter().flat_map(|k| hosts.map(|h| (k, h))) {
        let (a, b) = pair_with(kloop, host, 1, 64, 2048);
        let (oa, ob) = (os(&a), os(&b));
        let (mut tx, mut rx) = (port(&oa, "0/T"), port(&ob, "0/R"));
        let total = 20_000u64;
        let mode = format!(
            "{} {:?} poll {:?}",
            if kloop { "kloop" } else { "direct" },
            host.transport,
            host.halt_poll
        );
        let mode = mode.as_str();
        std::thread::scope(|s| {
            let recv = s.spawn(|| {
                let mut buf = [0u8; 128];
                let mut got = 0u64;
                while got < total {
                    rx.rxsync().unwrap();
                    let r = rx.rx_ring(0).unwrap();
                    let mut any = false;
                    while let Some(n) = r.pop(&mut buf).unwrap() {
                        assert_eq!(&buf[..n], &frame(1, 2, got, 60)[..], "{mode}: frame {got}");
                        got += 1;
                        any = true;
                    }
                    if !any {
                        rx.rxsync().unwrap(); // hand the slots back before sleeping
                        if rx.rx_ring(0).unwrap().space() == 0 {
                            let ev = rx.wait(EventFlags::EVENT_READ, W).unwrap();
                            assert_eq!(ev, EventFlags::EVENT_READ, "{mode}: RX woken at {got}");
                        }
                    }
                }
                got
            });
            let mut sent = 0u64;
            while sent < total {
                let ring = tx.tx_ring(0).unwrap();
                let mut k = 0;
                while sent < total && k < 16 && ring.push(&frame(1, 2, sent, 60)).unwrap() {
                    sent += 1;
                    k += 1;
                }
                tx.txsync().unwrap();
                if tx.tx_ring(0).unwrap().space() == 0 {
                    let ev = tx.wait(EventFlags::EVENT_WRITE, W).unwrap();
                    assert_eq!(ev, EventFlags::EVENT_WRITE, "{mode}: TX woken at {sent}");
                }
            }
            // Drain: frames a full peer held back leave on later syncs.
            let t0 = std::time::Instant::now();
            while tx.tx_ring(0).unwrap().space() + 1 < 64 {
                assert!(t0.elapsed() < T, "{mode}: TX ring never drained");
                tx.txsync().unwrap();
                if tx.tx_ring(0).unwrap().space() + 1 < 64 {
                    tx.wait(EventFlags::EVENT_WRITE, W).unwrap();
                }
            }
            assert_eq!(recv.join().unwrap(), total, "{mode}");
        });
        let s = b.k.snapshot().scheme;
        assert_eq!(s.bad_syncs, 0, "{mode}: {s:?}");
    }
}

/// M6: a readiness check syncs (and so may kick) only a ring whose interrupt fired, or at a new
/// subscription. In kloop mode a TX client waits while the peer's RX ring is full: the host
/// loop has nothing to do until the peer releases, so the daemon's other batches (200 `INFO`
/// calls here) must not kick it; the peer's release then wakes the client by its event.
#[test]
fn readiness_checks_kick_only_after_an_interrupt() {
    use ptnetd::scheme::host::Transport;
    let (a, b) = pair_on(true, Transport::Ipc, 1, 64, 2048);
    let (oa, ob) = (os(&a), os(&b));
    let mut tx = port(&oa, "0/T");
    let rx = port(&ob, "0/R"); // bound, reads only at the end
    let (mut sent, t0) = (0u64, std::time::Instant::now());
    let short = std::time::Duration::from_millis(100);
    loop {
        assert!(t0.elapsed() < T, "A's ring never stayed full");
        let ring = tx.tx_ring(0).unwrap();
        while ring.push(&frame(1, 2, sent, 60)).unwrap() {
            sent += 1;
        }
        tx.txsync().unwrap();
        if tx.tx_ring(0).unwrap().space() == 0
            && tx.wait(EventFlags::EVENT_WRITE, short).unwrap().is_empty()
        {
            break; // subscribed, and no room came within 100 ms: B's ring is full
        }
    }
    let kicks = |v: &Vm1| v.dev.counters(0).unwrap().kicks;
    let k0 = kicks(&a);
    let h = a.k.open(NM, "0/R", O_RDWR, 0).unwrap(); // another handle of A's daemon
    for _ in 0..200 {
        assert_eq!(a.k.call(NM, h, &mut [0u8; 80], &[OP_INFO]).unwrap(), INFO_LEN);
    }
    assert_eq!(kicks(&a) - k0, 0, "batches without an interrupt kicked the idle host loop");
    // B reads everything: A's host loop moves the rest, its interrupt wakes A.
    let mut buf = [0u8; 128];
    let mut got = 0u64;
    while got < sent {
        assert!(t0.elapsed() < T, "received {got} of {sent}");
        rx.rxsync().unwrap();
        while let Some(n) = rx.rx_ring(0).unwrap().pop(&mut buf).unwrap() {
            assert_eq!(&buf[..n], &frame(1, 2, got, 60)[..]);
            got += 1;
        }
    }
    assert_eq!(tx.wait(EventFlags::EVENT_WRITE, T).unwrap(), EventFlags::EVENT_WRITE);
}

/// M3.2: the slots handed over are checked across the ring's end (the check walks
/// `[rhead, N)` then `[0, head)`): a bad slot after the wrap is refused, the ring is
/// reinitialised, and the same slots with the bad one fixed go through, in order. A chain of
/// `NETMAP_MAX_FRAGS` or more slots is refused too.
#[test]
fn handed_over_slots_are_checked_across_the_ring_end() {
    use ptnetd::abi::netmap::{NETMAP_MAX_FRAGS, NS_MOREFRAG};
    let (a, b) = pair(1, 256, 2048);
    let oa = os(&a);
    let p = port(&oa, "0/T");
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let mut buf = [0u8; 128];
    let mut read = |seqs: std::ops::Range<u64>| {
        for seq in seqs {
            let t0 = std::time::Instant::now();
            let n = loop {
                match b.k.read(NET, db, &mut buf, 0, O_NONBLOCK) {
                    Ok(n) => break n,
                    Err(_) => assert!(t0.elapsed() < T, "frame {seq} never came"),
                }
            };
            assert_eq!(&buf[..n], &frame(1, 2, seq, 60)[..], "frame {seq}");
        }
    };
    let r = p.tx_ring(0).unwrap();
    // Over-long chain: NETMAP_MAX_FRAGS slots with NS_MOREFRAG, then its end.
    let h0 = r.head();
    let mut h = h0;
    for k in 0..=NETMAP_MAX_FRAGS {
        let s = r.slot(h).unwrap();
        let more = if k < NETMAP_MAX_FRAGS { NS_MOREFRAG } else { 0 };
        r.set_slot(h, Slot { buf_idx: s.buf_idx, len: 60, flags: more }).unwrap();
        h = r.next(h);
    }
    r.set_head_cur(h, h);
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)), "over-long chain");
    assert_eq!(r.head(), h0, "reinitialised");
    for k in 0..250u64 {
        assert!(r.push(&frame(1, 2, k, 60)).unwrap());
    }
    p.txsync().unwrap();
    read(0..250);
    // rhead is now 250 of 256: hand over 250..255 and 0..2 with slot 1 bad.
    let t0 = std::time::Instant::now();
    while r.space() < 20 {
        assert!(t0.elapsed() < T, "TX slots never completed");
        p.txsync().unwrap();
    }
    let h0 = r.head();
    assert_eq!(h0, 250);
    for k in 0..9u64 {
        assert!(r.push(&frame(1, 2, 250 + k, 60)).unwrap());
    }
    assert_eq!(r.head(), 3, "wrapped");
    let good = r.slot(1).unwrap();
    r.set_slot(1, Slot { buf_idx: 1, ..good }).unwrap();
    assert_eq!(p.txsync(), Err(ClientError::Errno(EINVAL)), "bad slot after the wrap");
    assert_eq!(r.head(), h0, "reinitialised");
    r.set_slot(1, good).unwrap();
    r.set_head_cur(3, 3);
    p.txsync().unwrap();
    read(250..259);
    assert_eq!(a.k.snapshot().scheme.bad_syncs, 2);
}
