//! The host reflect endpoint on the VALE-like switch (`model::apps::Reflect`, ptnet-host's
//! `--reflect`): a guest's frames come back to it alone, intact and in order; a sink on the same
//! switch sees only what was flooded before the switch learnt the reflect endpoint's address; a
//! source's broadcasts reach the guest as well; the queue is bounded and the worker stops.

mod common;

use common::*;
use ptnetd::abi::csb::NAF_FORCE_RECLAIM;
use ptnetd::model::apps::{udp_frames, Reflect, ReflectConfig, Sink, Source, SourceTarget};
use ptnetd::model::port::Frame;
use ptnetd::model::switch::{Switch, SwitchEndpoint};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reflect endpoint's MAC, the guest's (vm_with_port's port has none of its own: the
/// switch learns whatever the guest sends from) and the source's.
const R: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x02];
const G: [u8; 6] = [0x02, 0, 0, 0, 3, 0x0a];
const S: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x01];
const T: Duration = Duration::from_secs(20);

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// `f` with its destination and source MAC addresses swapped.
fn swapped(f: &[u8]) -> Vec<u8> {
    let mut s = f.to_vec();
    s[..6].copy_from_slice(&f[6..12]);
    s[6..12].copy_from_slice(&f[..6]);
    s
}

/// Sends `frames` (at most `window` unanswered) and collects what comes back: the answers to
/// them (destination G, source R) in arrival order, and everything else.
fn exchange(g: &mut Guest, frames: &[Vec<u8>], window: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut back, mut other) = (Vec::new(), Vec::new());
    let mut i = 0;
    let ok = g.poll_until(T, |g| {
        while i < frames.len() && i < back.len() + window && g.put_tx(0, &frames[i]) {
            i += 1;
        }
        g.txsync(0, NAF_FORCE_RECLAIM);
        while let Some(f) = g.get_rx(0) {
            if f[..12] == [G, R].concat()[..] {
                back.push(f);
            } else {
                other.push(f);
            }
        }
        back.len() >= frames.len()
    });
    assert!(ok, "{} of {} frames came back ({i} sent)", back.len(), frames.len());
    (back, other)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < T, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Mixed sizes up to jumbo frames (several slots), to R from G.
fn test_frames(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|s| make_frame(R, G, s, 60 + (s as usize * 997) % 8940)).collect()
}

#[test]
fn every_frame_comes_back_in_order_and_the_sink_sees_only_the_flood_before_learning() {
    init_log();
    let sw = Switch::new("vale-r1");
    let (vm, dev, port) = vm_with_port(1, 256);
    let gport = sw.attach_port(&port);
    let sink = Sink::new(0);
    sw.attach(sink.clone());
    let reflect = Reflect::attach(&sw, ReflectConfig::new(R)).unwrap();
    assert_eq!(sw.num_ports(), 3);
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);

    let frames = test_frames(3000);
    // A window of 64 frames of up to 5 slots: more than the RX ring holds at times, so the
    // endpoint has to wait for room (frames refused by a full ring are offered again).
    let (back, other) = exchange(&mut g, &frames, 64);
    assert!(other.is_empty(), "nothing but the answers: {} others", other.len());
    assert_eq!(back.len(), frames.len());
    for (i, (b, f)) in back.iter().zip(&frames).enumerate() {
        assert_eq!(check_frame(b), Some(i as u64), "frame {i} intact and in order");
        assert_eq!(b, &swapped(f), "frame {i}: the sent frame with its addresses swapped");
    }
    let st = &reflect.stats;
    assert_eq!((load(&st.queued), load(&st.reflected)), (3000, 3000), "{}", st.summary());
    assert_eq!(load(&st.ignored) + load(&st.queue_drops) + load(&st.undelivered), 0);
    assert_eq!(sw.lookup(&G), Some(gport));
    assert_eq!(sw.lookup(&R), Some(reflect.port_no()), "learnt from the answers");
    // Only the guest's frames sent before the first answer were flooded, and only those reached
    // the sink (the answers are unicast: the guest's address was learnt from its first frame).
    let flooded = load(&sw.stats.flooded);
    let sunk = load(&sink.frames);
    assert!((1..=64).contains(&flooded), "flooded {flooded}");
    assert_eq!(sunk, flooded, "the sink got exactly the flooded frames");
    // Every answer is unicast, and so is every offer of one that a full ring refused.
    let offers = 3000 + load(&st.retries);
    assert_eq!(load(&sw.stats.unicast), 3000 - flooded + offers);
    assert_eq!(load(&sw.stats.dropped), load(&st.retries), "each refusal was offered again");
    assert_eq!(load(&port.stats.rx_frames), 3000);
    g.shutdown();
}

#[test]
fn a_sources_broadcasts_reach_the_guest_beside_its_own_frames() {
    init_log();
    let sw = Switch::new("vale-r2");
    let (vm, dev, port) = vm_with_port(1, 256);
    sw.attach_port(&port);
    let sink = Sink::new(0);
    let host = sw.attach(sink.clone());
    let reflect = Reflect::attach(&sw, ReflectConfig::new(R)).unwrap();
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);
    // Broadcasts from the sink's port, as ptnet-host's --sink --source-pps does.
    let src = Source::start(
        SourceTarget::Switch { sw: sw.clone(), no: host, hdr_len: 0 },
        udp_frames(S, [0xff; 6], 60),
        None,
        20_000,
    );
    wait_until("the first broadcasts", || src.sent() >= 50);
    let frames = test_frames(4000);
    let (back, other) = exchange(&mut g, &frames, 64);
    let sent = src.stop();
    for (i, b) in back.iter().enumerate() {
        assert_eq!(b, &swapped(&frames[i]), "frame {i} intact and in order");
    }
    // Drain what is left, then every other frame must be one of the source's, intact.
    let mut other = other;
    g.poll_until(Duration::from_millis(200), |g| {
        while let Some(f) = g.get_rx(0) {
            other.push(f);
        }
        false
    });
    let mut gen = udp_frames(S, [0xff; 6], 60);
    let mut expect = Vec::new();
    let mut last = None;
    for f in &other {
        let seq = check_frame(f).expect("an intact test frame");
        expect.clear();
        gen(seq, &mut expect);
        assert_eq!(f, &expect, "broadcast {seq} intact");
        assert!(last < Some(seq), "broadcasts in order");
        last = Some(seq);
    }
    assert!(other.len() >= 50, "broadcasts reached the guest: {}", other.len());
    assert!(sent >= other.len() as u64);
    let st = &reflect.stats;
    assert_eq!(load(&st.reflected), 4000, "{}", st.summary());
    assert_eq!(load(&st.queue_drops) + load(&st.undelivered), 0);
    assert_eq!(load(&st.ignored), sent, "every broadcast reached it too, and was not reflected");
    // The sink is the source's own port: it saw none of the broadcasts, only the guest's
    // frames flooded before learning.
    let flooded = load(&sw.stats.flooded);
    assert_eq!(load(&sink.frames) + sent, flooded);
    assert!(load(&sink.frames) >= 1);
    g.shutdown();
}

/// An endpoint that refuses everything (a destination whose ring stays full).
struct Refuser {
    offered: AtomicU64,
}

impl SwitchEndpoint for Refuser {
    fn hdr_len(&self) -> u32 {
        0
    }
    fn receive(&self, _ring: u32, _frame: &Frame<'_>) -> bool {
        self.offered.fetch_add(1, Ordering::Relaxed);
        false
    }
}

#[test]
fn the_queue_is_bounded_and_the_worker_stops() {
    init_log();
    const X: [u8; 6] = [0x02, 0, 0, 0, 4, 1];
    let sw = Switch::new("vale-r3");
    let refuser = Arc::new(Refuser { offered: AtomicU64::new(0) });
    let x = sw.attach(refuser.clone());
    let cfg =
        ReflectConfig { capacity: 4, retry: Duration::from_secs(30), ..ReflectConfig::new(R) };
    let reflect = Reflect::attach(&sw, cfg).unwrap();
    let send = |seq| sw.forward(x, 0, 0, &Frame::Bytes(&make_frame(R, X, seq, 100)));
    assert_eq!(send(0), 1, "flooded: the reflect endpoint took it");
    // The worker takes it and offers it to X again and again.
    wait_until("retries", || load(&reflect.stats.retries) >= 3 && reflect.queue_len() == 0);
    assert!(load(&refuser.offered) >= 3);
    let accepted: usize = (1..10).map(send).sum();
    assert_eq!(accepted, 4, "four queued behind the one under retry");
    let st = &reflect.stats;
    assert_eq!((load(&st.queued), load(&st.queue_drops)), (5, 5));
    assert_eq!(reflect.queue_len(), 4);
    // Frames not for it are ignored, not queued.
    let bcast = make_frame([0xff; 6], X, 99, 100);
    sw.forward(x, 0, 0, &Frame::Bytes(&bcast));
    sw.forward(x, 0, 0, &Frame::Bytes(&make_frame([2, 0, 0, 0, 4, 2], X, 98, 100)));
    sw.forward(x, 0, 0, &Frame::Bytes(&make_frame(R, [0x03, 0, 0, 0, 0, 1], 97, 100)));
    assert_eq!(load(&st.ignored), 3);
    assert_eq!(reflect.queue_len(), 4);

    // stop() ends a worker in the middle of a 30 s retry at once.
    let t0 = Instant::now();
    reflect.stop();
    assert!(t0.elapsed() < Duration::from_secs(2), "stop took {:?}", t0.elapsed());
    assert!(!reflect.is_running());
    assert_eq!(load(&st.undelivered), 5, "the one under retry and the four queued");
    assert_eq!(load(&st.reflected), 0);
    assert_eq!(send(10), 0, "stopped: refused");

    // Dropping the switch and the last handle ends a worker that is retrying, and frees all.
    let sw = Switch::new("vale-r4");
    let x = sw.attach(Arc::new(Refuser { offered: AtomicU64::new(0) }));
    let reflect = Reflect::attach(&sw, cfg).unwrap();
    sw.forward(x, 0, 0, &Frame::Bytes(&make_frame(R, X, 0, 100)));
    wait_until("a retry", || load(&reflect.stats.retries) >= 1);
    let stats = reflect.stats.clone();
    let weak = Arc::downgrade(&sw);
    let t0 = Instant::now();
    drop(reflect);
    drop(sw);
    assert!(weak.upgrade().is_none(), "the worker holds the switch only while forwarding");
    assert!(t0.elapsed() < Duration::from_secs(2), "drop took {:?}", t0.elapsed());
    assert_eq!(Arc::strong_count(&stats), 1, "the worker thread ended");
    assert_eq!(load(&stats.undelivered), 1);
}
