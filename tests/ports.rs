//! Host ports behind a ptnet device: source/sink, reflector, switch endpoints, several rings,
//! and the per-ring counters (issue 2, model items 6 and 7).

mod common;

use common::*;
use ptnetd::abi::csb::NAF_FORCE_RECLAIM;
use ptnetd::model::apps::{udp_frames, Sink, Source, SourceTarget};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec, Reflector};
use ptnetd::model::ptnet::{Netdev, PtnetConfig};
use ptnetd::model::switch::Switch;
use ptnetd::model::vm::Vm;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const A: [u8; 6] = [0x02, 0, 0, 0, 2, 0xa];
const B: [u8; 6] = [0x02, 0, 0, 0, 2, 0xb];
const T: Duration = Duration::from_secs(10);

fn recv_n(g: &mut Guest, ring: u32, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let ok = g.poll_until(T, |g| {
        while let Some(f) = g.get_rx(ring) {
            got.push(f);
        }
        got.len() >= n
    });
    assert!(ok, "received {} of {n}", got.len());
    got
}

fn send_all(g: &mut Guest, ring: u32, frames: &[Vec<u8>]) {
    let mut i = 0;
    let t0 = std::time::Instant::now();
    while i < frames.len() {
        while i < frames.len() && g.put_tx(ring, &frames[i]) {
            i += 1;
        }
        g.txsync(ring, NAF_FORCE_RECLAIM);
        assert!(t0.elapsed() < T, "tx stalled at {i}");
    }
}

/// A source fills the port's RX rings at full speed, losslessly (it waits for released slots);
/// a sink consumes and verifies everything the guest transmits.
#[test]
fn source_and_sink_on_a_port() {
    let (vm, dev, port) = vm_with_port(1, 256);
    let sink = Sink::new(0);
    sink.attach_to_port(&port);
    sink.set_verifier(Box::new(|f| check_frame(f).is_some()));
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);
    let src = Source::start(
        SourceTarget::Port { port: port.clone(), space: sink.space.clone() },
        Box::new(|seq, buf| buf.extend(make_frame(A, B, seq, 60 + (seq as usize % 3000)))),
        Some(5000),
        0,
    );
    let got = recv_n(&mut g, 0, 5000);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), Some(i as u64), "in order, intact");
    }
    assert_eq!(src.stop(), 5000);
    let frames: Vec<_> = (0..3000).map(|s| make_frame(B, A, s, 60 + s as usize)).collect();
    send_all(&mut g, 0, &frames);
    let t0 = std::time::Instant::now();
    while sink.frames.load(Ordering::Relaxed) < 3000 && t0.elapsed() < T {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.frames.load(Ordering::Relaxed), 3000);
    assert_eq!(sink.bad.load(Ordering::Relaxed), 0);
    // The host counts TX frames right after handing them on: wait for it.
    let t0 = std::time::Instant::now();
    while dev.counters(0).unwrap().packets < 3000 && t0.elapsed() < T {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let c = dev.counters(0).unwrap();
    assert_eq!(c.packets, 3000);
    assert_eq!(c.bytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    let rx = dev.counters(1).unwrap();
    assert_eq!(rx.packets, 5000, "rx ring counts frames");
    assert_eq!(rx.bytes, got.iter().map(|f| f.len() as u64).sum::<u64>());
}

/// The reflector sends every frame back, multi-slot ones included.
#[test]
fn reflector_returns_every_frame() {
    let (vm, dev, port) = vm_with_port(1, 128);
    port.set_backend(Reflector::new(&port));
    let mut g = Guest::attach(&vm, &dev, &Opts::default());
    assert_eq!(g.create(), 0);
    let frames: Vec<_> =
        (0..400).map(|s| make_frame(B, A, s, 60 + (s as usize * 71) % 9000)).collect();
    let mut got = Vec::new();
    let mut i = 0;
    let ok = g.poll_until(T, |g| {
        while i < frames.len() && g.put_tx(0, &frames[i]) {
            i += 1;
        }
        g.txsync(0, NAF_FORCE_RECLAIM);
        while let Some(f) = g.get_rx(0) {
            got.push(f);
        }
        got.len() == frames.len()
    });
    assert!(ok, "{} of {} reflected", got.len(), frames.len());
    assert_eq!(got, frames);
}

/// Switch endpoints: a host source on the switch reaches a guest that uses 12-byte headers (a
/// zeroed header is added); the guest's frames reach a host sink without headers.
#[test]
fn source_and_sink_on_the_switch() {
    let sw = Switch::new("vale2");
    let (vm, dev, port) = vm_with_port(1, 512);
    sw.attach_port(&port);
    let mut g = Guest::attach(&vm, &dev, &Opts { want_vnet: true, ..Default::default() });
    assert_eq!(g.hdr_len, 12);
    assert_eq!(g.create(), 0);
    let sink = Sink::new(0);
    sink.set_verifier(Box::new(|f| check_frame(f).is_some()));
    sw.attach(sink.clone());
    let src_no = sw.attach(Sink::new(0)); // the source's own port (frames to it are dropped)
                                          // The guest talks first (to C, unknown: flooded to both host ports), so A is learnt.
    const C: [u8; 6] = [0x02, 0, 0, 0, 2, 0xc];
    let frames: Vec<_> = (0..50)
        .map(|s| {
            let mut f = vec![0u8; 12];
            f.extend(make_frame(C, A, s, 1000));
            f
        })
        .collect();
    send_all(&mut g, 0, &frames);
    let t0 = std::time::Instant::now();
    while sink.frames.load(Ordering::Relaxed) < 50 && t0.elapsed() < T {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.frames.load(Ordering::Relaxed), 50);
    assert_eq!(sink.bad.load(Ordering::Relaxed), 0, "header stripped, frame intact");
    assert_eq!(sink.bytes.load(Ordering::Relaxed), 50 * 1000);
    assert_eq!(sw.lookup(&A), Some(0));
    // The source (MAC B) sends to A: unicast to the guest only, with a zeroed header added.
    let src = Source::start(
        SourceTarget::Switch { sw: sw.clone(), no: src_no, hdr_len: 0 },
        udp_frames(B, A, 200),
        Some(100),
        20_000,
    );
    let got = recv_n(&mut g, 0, 100);
    assert!(got.iter().all(|f| f.len() == 212 && f[..12] == [0; 12]));
    assert_eq!(src.stop(), 100);
    assert_eq!(sink.frames.load(Ordering::Relaxed), 50, "unicast: the sink saw none");
    assert_eq!(sw.lookup(&B), Some(src_no));
}

/// Several rings: TX ring i of one pipe end feeds RX ring i of the other; per-ring counters.
#[test]
fn four_rings_through_a_pipe() {
    let (a, b) = pipe(9, 4, 128);
    let vm = Vm::new(64).unwrap();
    let da = vm.add_ptnet(Netdev::passthrough(a), PtnetConfig::default()).unwrap();
    let db = vm.add_ptnet(Netdev::passthrough(b), PtnetConfig::default()).unwrap();
    let mut ga = Guest::attach(&vm, &da, &Opts::default());
    let mut gb = Guest::attach(&vm, &db, &Opts::default());
    assert_eq!((ga.create(), gb.create()), (0, 0));
    for ring in 0..4u32 {
        let frames: Vec<_> = (0..100)
            .map(|s| make_frame(B, A, s + 1000 * ring as u64, 100 + ring as usize))
            .collect();
        send_all(&mut ga, ring, &frames);
        assert_eq!(recv_n(&mut gb, ring, 100), frames, "ring {ring}");
    }
    // The host counts a ring's frames right after handing them to the peer: wait for it.
    let t0 = std::time::Instant::now();
    while (0..4).any(|r| da.counters(r).unwrap().packets < 100) && t0.elapsed() < T {
        std::thread::sleep(Duration::from_millis(1));
    }
    for ring in 0..4u32 {
        let c = da.counters(ring).unwrap();
        assert_eq!(c.packets, 100, "tx ring {ring}");
        assert_eq!(c.bytes, 100 * (100 + ring as u64));
        assert!(c.kicks > 0);
        assert_eq!(db.counters(4 + ring).unwrap().packets, 100);
        assert_eq!(db.counters(4 + ring).unwrap().bytes, 100 * (100 + ring as u64));
    }
}

/// The host's walk of a TX ring (`NmPort::for_each_tx_frame`): chains of up to
/// `NETMAP_MAX_FRAGS` slots reach the backend with their slot list; a longer chain and a slot
/// naming no buffer are consumed and counted as errors, never handed on; the port's counters
/// add up to what was walked.
#[test]
fn tx_walk_passes_chains_and_drops_overlong_and_bad_ones() {
    use ptnetd::abi::netmap::{NETMAP_MAX_FRAGS, NS_MOREFRAG};
    use ptnetd::nm::Slot;
    let mem = Arc::new(NetmapMemory::new(3, MemConfig::for_ports(1, 2, 256, 64)).unwrap());
    let port = NmPort::new(mem, &PortSpec::new("walk", 1, 256)).unwrap();
    let mut hr = port.tx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let mut at = hr.kring.hwcur;
    let mut chain = |hr: &mut ptnetd::model::port::HostRing, slots: usize, buf: u32| {
        for k in 0..slots {
            let more = if k + 1 < slots { NS_MOREFRAG } else { 0 };
            let idx = hr.view.slot(at).buf_idx;
            hr.view.set_slot(
                at,
                Slot { buf_idx: if buf == 0 { 0 } else { idx }, len: 1, flags: more },
            );
            at = (at + 1) % n;
        }
    };
    chain(&mut hr, NETMAP_MAX_FRAGS, 1); // the longest allowed: passed on
    chain(&mut hr, NETMAP_MAX_FRAGS + 1, 1); // too long: dropped
    chain(&mut hr, 1, 0); // buffer 0: dropped
    chain(&mut hr, 3, 1); // passed on
    hr.kring.rhead = at;
    let mut seen = Vec::new();
    let walked = port.for_each_tx_frame(&mut hr, |f, slots| {
        seen.push((f.len(), slots.len(), slots[0]));
        true
    });
    assert_eq!(walked, 2);
    let first = (NETMAP_MAX_FRAGS, NETMAP_MAX_FRAGS, 0);
    let last = (3, 3, (2 * NETMAP_MAX_FRAGS as u32 + 2) % n);
    assert_eq!(seen, [first, last]);
    assert_eq!(hr.kring.hwcur, at, "every slot consumed");
    assert_eq!(port.stats.tx_errors.load(Ordering::Relaxed), 2);
    assert_eq!(port.stats.tx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(port.stats.tx_bytes.load(Ordering::Relaxed), (NETMAP_MAX_FRAGS + 3) as u64);
}

/// A pipe moves chains slot by slot, possibly split across syncs; the ports' counters count a
/// frame and its bytes once its last slot moved, and a tap on either end records each frame
/// whole (gathered from the peer's slots). Frames of 1 to 3 slots (2,048-byte buffers).
#[test]
fn pipe_counts_and_taps_whole_chains() {
    use ptnetd::model::pcap::PcapTap;
    let (a, b) = pipe(12, 1, 64);
    let path = std::env::temp_dir().join(format!("ptnet-pipe-tap-{}.pcap", std::process::id()));
    let tap = Arc::new(PcapTap::create(&path).unwrap());
    b.set_tap(Some(tap.clone()));
    let vm = Vm::new(64).unwrap();
    let da = vm.add_ptnet(Netdev::passthrough(a.clone()), PtnetConfig::default()).unwrap();
    let db = vm.add_ptnet(Netdev::passthrough(b.clone()), PtnetConfig::default()).unwrap();
    let mut ga = Guest::attach(&vm, &da, &Opts::default());
    let mut gb = Guest::attach(&vm, &db, &Opts::default());
    assert_eq!((ga.create(), gb.create()), (0, 0));
    let frames: Vec<_> =
        (0..300u64).map(|s| make_frame(B, A, s, 60 + (s as usize * 97) % 5000)).collect();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut got = Vec::new();
    let (mut i, t0) = (0, std::time::Instant::now());
    while got.len() < frames.len() {
        while i < frames.len() && ga.put_tx(0, &frames[i]) {
            i += 1;
        }
        ga.txsync(0, NAF_FORCE_RECLAIM); // a 3-slot frame may need more than the slots left
        gb.rxsync(0);
        while let Some(f) = gb.get_rx(0) {
            got.push(f);
        }
        assert!(t0.elapsed() < T, "stalled at {} of {}", got.len(), frames.len());
    }
    assert_eq!(got, frames);
    tap.flush().unwrap();
    assert_eq!((tap.frames(), tap.bytes()), (300, bytes), "the tap saw every frame whole");
    let (sa, sb) = (&a.stats, &b.stats);
    assert_eq!(sa.tx_frames.load(Ordering::Relaxed), 300);
    assert_eq!(sa.tx_bytes.load(Ordering::Relaxed), bytes);
    assert_eq!(sb.rx_frames.load(Ordering::Relaxed), 300);
    assert_eq!(sb.rx_bytes.load(Ordering::Relaxed), bytes);
    b.set_tap(None);
    let _ = std::fs::remove_file(&path);
}

/// The switch forwards a TX walk as a batch, as VALE's `nm_bdg_flush` does: every frame of the
/// walk reaches the destination ring, which is notified once per walk, not once per frame; a
/// single `forward` still notifies at once. The address cache follows a station that moves.
#[test]
fn switch_notifies_each_destination_once_per_batch() {
    use ptnetd::model::port::PortListener;
    use ptnetd::nm::Slot;
    use std::sync::atomic::AtomicU64;
    #[derive(Default)]
    struct Count(AtomicU64);
    impl PortListener for Count {
        fn on_rx(&self, _ring: u32) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn on_tx(&self, _ring: u32) {}
    }
    let sw = Switch::new("batch");
    let (a, b, c) = (lone(31), lone(32), lone(33));
    let (na, nb) = (sw.attach_port(&a), sw.attach_port(&b));
    let nc = sw.attach_port(&c);
    let (heard_b, heard_c) = (Arc::new(Count::default()), Arc::new(Count::default()));
    b.set_listener(Some(heard_b.clone()));
    c.set_listener(Some(heard_c.clone()));
    // B and C make themselves known (make_frame(dst, src, ..)): each flood reaches the other.
    let hello = |dst, src| make_frame(dst, src, 0, 60);
    sw.forward(nb, 0, 0, &ptnetd::model::port::Frame::Bytes(&hello(A, B)));
    assert_eq!(heard_c.0.load(Ordering::Relaxed), 1, "a single forward notifies at once");
    sw.forward(nc, 0, 0, &ptnetd::model::port::Frame::Bytes(&hello(A, [2, 0, 0, 0, 2, 0xc])));
    let (b0, c0) = (heard_b.0.load(Ordering::Relaxed), heard_c.0.load(Ordering::Relaxed));
    let (rb0, rc0) =
        (b.stats.rx_frames.load(Ordering::Relaxed), c.stats.rx_frames.load(Ordering::Relaxed));
    // One walk of 100 frames from A: 60 to B, 40 to C.
    let mut hr = a.tx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let mut at = hr.kring.hwcur;
    for seq in 0..100u64 {
        let dst = if seq % 5 < 3 { B } else { [2, 0, 0, 0, 2, 0xc] };
        let f = make_frame(dst, A, seq, 60);
        let idx = hr.view.slot(at).buf_idx;
        let off = a.mem().buf_offset(idx).unwrap();
        a.mem().region().write_bytes(off, &f).unwrap();
        hr.view.set_slot(at, Slot { buf_idx: idx, len: 60, flags: 0 });
        at = (at + 1) % n;
    }
    hr.kring.rhead = at;
    a.txsync(&mut hr).unwrap();
    drop(hr);
    assert_eq!(b.stats.rx_frames.load(Ordering::Relaxed), rb0 + 60);
    assert_eq!(c.stats.rx_frames.load(Ordering::Relaxed), rc0 + 40);
    assert_eq!(heard_b.0.load(Ordering::Relaxed), b0 + 1, "B notified once for 60 frames");
    assert_eq!(heard_c.0.load(Ordering::Relaxed), c0 + 1, "C notified once for 40 frames");
    // B moves to C's port: frames for B now reach C.
    sw.forward(nc, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(A, B, 1, 60)));
    assert_eq!(sw.lookup(&B), Some(nc));
    let rb = b.stats.rx_frames.load(Ordering::Relaxed);
    sw.forward(na, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(B, A, 2, 60)));
    assert_eq!(c.stats.rx_frames.load(Ordering::Relaxed), rc0 + 40 + 1, "C got B's frame");
    assert_eq!(b.stats.rx_frames.load(Ordering::Relaxed), rb, "not B's old port");
    // An unknown destination floods; once it is learnt (the cached miss is dropped) it does not.
    let z = [2, 0, 0, 0, 2, 0xd];
    let rx = |p: &NmPort| p.stats.rx_frames.load(Ordering::Relaxed);
    let (a1, b1, c1) = (rx(&a), rx(&b), rx(&c));
    sw.forward(na, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(z, A, 3, 60)));
    sw.forward(na, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(z, A, 4, 60)));
    assert_eq!((rx(&b), rx(&c)), (b1 + 2, c1 + 2), "flooded while unknown");
    // z appears on B's port with a frame to itself: learnt there, so not forwarded at all
    // (a stale cached miss would flood it).
    sw.forward(nb, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(z, z, 5, 60)));
    assert_eq!((rx(&a), rx(&b), rx(&c)), (a1, b1 + 2, c1 + 2), "learnt, not flooded");
    sw.forward(na, 0, 0, &ptnetd::model::port::Frame::Bytes(&make_frame(z, A, 6, 60)));
    assert_eq!((rx(&b), rx(&c)), (b1 + 3, c1 + 2), "unicast to B's port once learnt");
}

/// A TX walk is forwarded in two phases (VALE's `nm_bdg_preflush` / `nm_bdg_flush`): every
/// frame is routed first, then each destination takes all of its frames, in order, through one
/// `receive_all` (one lock of its ring). Broadcasts reach every other port, runts are dropped
/// and counted, and a destination with no room drops the rest of its frames, counted.
#[test]
fn switch_walk_routes_first_then_delivers_once_per_destination() {
    use ptnetd::model::port::Frame;
    use ptnetd::model::switch::SwitchEndpoint;
    use std::sync::Mutex;
    /// An endpoint that records its frames' sequence numbers and its `receive_all` calls.
    #[derive(Default)]
    struct Recorder {
        seqs: Mutex<Vec<u64>>,
        batches: Mutex<Vec<usize>>,
    }
    impl Recorder {
        fn take(&self, f: &Frame<'_>) -> bool {
            let mut b = Vec::new();
            f.gather(&mut b);
            self.seqs.lock().unwrap().push(check_frame(&b).expect("an intact frame"));
            true
        }
    }
    impl SwitchEndpoint for Recorder {
        fn hdr_len(&self) -> u32 {
            0
        }
        fn receive(&self, _ring: u32, f: &Frame<'_>) -> bool {
            self.take(f)
        }
        fn receive_all<'f>(&self, _ring: u32, fs: &mut dyn Iterator<Item = Frame<'f>>) -> usize {
            let n = fs.filter(|f| self.take(f)).count();
            self.batches.lock().unwrap().push(n);
            n
        }
    }
    const R: [u8; 6] = [2, 0, 0, 0, 2, 0xe];
    let sw = Switch::new("two-phase");
    let (a, b) = (lone(34), lone(35));
    let (na, nb) = (sw.attach_port(&a), sw.attach_port(&b));
    let rec = Arc::new(Recorder::default());
    let nr = sw.attach(rec.clone());
    // B and R make themselves known.
    sw.forward(nb, 0, 0, &Frame::Bytes(&make_frame(A, B, 0, 60)));
    sw.forward(nr, 0, 0, &Frame::Bytes(&make_frame(A, R, 0, 60)));
    rec.seqs.lock().unwrap().clear();
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let before =
        [&sw.stats.frames_in, &sw.stats.unicast, &sw.stats.flooded, &sw.stats.dropped].map(stat);
    let (b_rx0, b_drops0) = (stat(&b.stats.rx_frames), stat(&b.stats.rx_drops));
    // Three walks of 200 frames from A (the ring has 256 slots): seq % 4 = 0 broadcast, 1 to
    // R, 2 to B, 3 a runt. B's ring (255 usable slots, nobody reads it) fills up with the
    // first of the 300 frames for it and drops the rest.
    let (mut to_r, mut to_b) = (Vec::new(), Vec::new());
    for part in 0..3u64 {
        let seqs = part * 200..part * 200 + 200;
        for seq in seqs.clone().filter(|s| s % 4 != 3) {
            if seq % 4 != 2 {
                to_r.push(seq);
            }
            if seq % 4 != 1 {
                to_b.push(seq);
            }
        }
        send_walk(
            &a,
            seqs.map(|seq| match seq % 4 {
                0 => (make_frame([0xff; 6], A, seq, 60), 60),
                1 => (make_frame(R, A, seq, 60), 60),
                2 => (make_frame(B, A, seq, 60), 60),
                _ => (make_frame(B, A, seq, 60), 10),
            }),
        );
    }
    assert_eq!(*rec.seqs.lock().unwrap(), to_r, "R got its frames and the broadcasts, in order");
    assert_eq!(*rec.batches.lock().unwrap(), vec![100; 3], "one receive_all per walk");
    // B's ring: what was there before (the hello R flooded), then the first of its frames.
    let pre = b_rx0 as usize;
    let room = 255 - pre;
    let got = rx_seqs(&b, false);
    assert_eq!(got.len(), 255, "B's ring is full");
    assert_eq!(&got[pre..], &to_b[..room], "B got its first frames in order");
    assert_eq!(stat(&b.stats.rx_frames) - b_rx0, room as u64);
    let refused = (to_b.len() - room) as u64;
    assert_eq!(stat(&b.stats.rx_drops) - b_drops0, refused);
    let after =
        [&sw.stats.frames_in, &sw.stats.unicast, &sw.stats.flooded, &sw.stats.dropped].map(stat);
    let delta: Vec<u64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    let dropped = 150 + refused; // runts, and B's refusals
    assert_eq!(delta, vec![600, 300, 150, dropped], "frames in, unicast, flooded, dropped");
    let _ = na;
}

/// One TX walk of port `a`'s ring 0: each `(frame, slot length)` written into the next slot,
/// then the host's TX sync.
fn send_walk(a: &NmPort, frames: impl Iterator<Item = (Vec<u8>, u16)>) {
    use ptnetd::nm::Slot;
    let mut hr = a.tx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let mut at = hr.kring.hwcur;
    for (f, len) in frames {
        let idx = hr.view.slot(at).buf_idx;
        let off = a.mem().buf_offset(idx).unwrap();
        a.mem().region().write_bytes(off, &f).unwrap();
        hr.view.set_slot(at, Slot { buf_idx: idx, len, flags: 0 });
        at = (at + 1) % n;
    }
    hr.kring.rhead = at;
    a.txsync(&mut hr).unwrap();
}

/// The sequence numbers of the frames in `p`'s RX ring 0, `[hwcur, hwtail)`, each frame
/// gathered over its `NS_MOREFRAG` chain; `release` hands the slots back to the host after.
fn rx_seqs(p: &NmPort, release: bool) -> Vec<u64> {
    use ptnetd::abi::netmap::NS_MOREFRAG;
    let mut hr = p.rx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let (mut out, mut f) = (Vec::new(), Vec::new());
    let mut i = hr.kring.hwcur;
    while i != hr.kring.hwtail {
        let s = hr.view.slot(i);
        let mut part = vec![0u8; s.len as usize];
        let off = p.mem().buf_offset(s.buf_idx).unwrap();
        p.mem().region().read_bytes(off, &mut part).unwrap();
        f.extend_from_slice(&part);
        if s.flags & NS_MOREFRAG == 0 {
            out.push(check_frame(&f).expect("an intact frame"));
            f.clear();
        }
        i = (i + 1) % n;
    }
    if release {
        hr.kring.rhead = hr.kring.hwtail;
        p.rxsync_release(&mut hr);
    }
    out
}

/// A walk to a port that takes another virtio-net header length goes through the header
/// conversion one frame at a time; each frame its full ring refuses is counted once, in the
/// switch's drops and in the port's.
#[test]
fn switch_walk_converting_headers_counts_each_refusal_once() {
    use ptnetd::model::port::Frame;
    const C: [u8; 6] = [2, 0, 0, 0, 2, 0xc];
    let sw = Switch::new("convert");
    let (a, c) = (lone(36), lone(37));
    sw.attach_port(&a);
    let nc = sw.attach_port(&c);
    assert!(c.set_vnet_hdr_len(12));
    let mut hello = vec![0u8; 12]; // C's frames carry its 12-byte header
    hello.extend_from_slice(&make_frame(A, C, 0, 60));
    sw.forward(nc, 12, 0, &Frame::Bytes(&hello));
    let stat = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let (dropped0, conv0) = (stat(&sw.stats.dropped), stat(&sw.stats.conversion_errors));
    let (rx0, drops0) = (stat(&c.stats.rx_frames), stat(&c.stats.rx_drops));
    for part in 0..2u64 {
        send_walk(&a, (part * 200..part * 200 + 200).map(|seq| (make_frame(C, A, seq, 60), 60)));
    }
    let room = 255 - rx0; // nobody reads C's ring
    assert_eq!(stat(&c.stats.rx_frames) - rx0, room, "C's ring filled");
    assert_eq!(stat(&c.stats.rx_drops) - drops0, 400 - room, "C counted each refusal");
    assert_eq!(stat(&sw.stats.dropped) - dropped0, 400 - room, "the switch counted each once");
    assert_eq!(stat(&sw.stats.conversion_errors), conv0, "no conversion failed");
}

fn lone(mem_id: u16) -> Arc<NmPort> {
    let mem = Arc::new(NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2, 256, 64)).unwrap());
    NmPort::new(mem, &PortSpec::new("lone", 1, 256)).unwrap()
}

/// Two ports of `rings` ring pairs of `slots` slots joined as a pipe, in region `mem_id`.
fn pipe(mem_id: u16, rings: u32, slots: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let cfg = MemConfig::for_ports(2, 2 * rings, slots, 64);
    let mem = Arc::new(NetmapMemory::new(mem_id, cfg).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{", rings, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}", rings, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    (a, b)
}

/// The switch remembers the last frame's route (source port and address bytes) so that a
/// flow is routed with one compare; the memory must follow the table: a destination learnt,
/// moved or detached after the first frame changes where the same frame goes next.
#[test]
fn switch_route_memory_follows_the_table() {
    use ptnetd::model::port::Frame;
    use ptnetd::model::switch::SwitchEndpoint;
    use std::sync::atomic::AtomicU64;
    #[derive(Default)]
    struct Counter(AtomicU64);
    impl SwitchEndpoint for Counter {
        fn hdr_len(&self) -> u32 {
            0
        }
        fn receive(&self, _ring: u32, _f: &Frame<'_>) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed);
            true
        }
    }
    const X: [u8; 6] = [2, 0, 0, 0, 2, 0x58];
    let sw = Switch::new("route-memory");
    let eps: Vec<Arc<Counter>> = (0..3).map(|_| Arc::new(Counter::default())).collect();
    let nos: Vec<usize> = eps.iter().map(|e| sw.attach(e.clone())).collect();
    let counts = || eps.iter().map(|e| e.0.swap(0, Ordering::Relaxed)).collect::<Vec<_>>();
    let a_to_x = make_frame(X, A, 1, 60);
    let send = |from: usize, f: &[u8]| sw.forward(nos[from], 0, 0, &Frame::Bytes(f));
    // X unknown: A's frame floods, twice (the second from memory).
    assert_eq!(send(0, &a_to_x), 2);
    assert_eq!(send(0, &a_to_x), 2);
    assert_eq!(counts(), vec![0, 2, 2]);
    // X speaks on port 2: the same frame from A now goes to port 2 only.
    assert_eq!(send(2, &make_frame(A, X, 2, 60)), 1);
    assert_eq!(counts(), vec![1, 0, 0]);
    assert_eq!(send(0, &a_to_x), 1);
    assert_eq!(send(0, &a_to_x), 1);
    assert_eq!(counts(), vec![0, 0, 2], "learnt after the flood");
    // X moves to port 1.
    assert_eq!(send(1, &make_frame(A, X, 3, 60)), 1);
    assert_eq!(counts(), vec![1, 0, 0]);
    assert_eq!(send(0, &a_to_x), 1);
    assert_eq!(counts(), vec![0, 1, 0], "moved");
    // The same bytes entering on port 1, where X is: A moves there too and the frame stays
    // local (the route remembered for port 0 would send it back out of port 1).
    assert_eq!(send(1, &a_to_x), 0);
    assert_eq!(counts(), vec![0, 0, 0], "routed for its own source port");
    // Port 1 goes away, and with it what was learnt there (A and X): X is unknown again.
    assert_eq!(send(0, &a_to_x), 1);
    assert_eq!(counts(), vec![0, 1, 0], "A learnt on port 0 again, X still on port 1");
    sw.detach(nos[1]);
    assert_eq!(send(0, &a_to_x), 1);
    assert_eq!(counts(), vec![0, 0, 1], "detached: flooded to the ports left");
}

/// A switch destination takes a walk's one-fragment frames in one call
/// (`NmPort::deliver_singles_locked`): each in one slot, in order; a frame longer than the
/// destination's buffers is split into a chain; an RX slot with a bad buffer index is counted as
/// an error and left alone; frames beyond the free slots are dropped and counted; with a tap,
/// every frame is recorded. The counters add up to what was offered.
#[test]
fn deliver_singles_places_splits_and_counts() {
    use ptnetd::model::pcap::PcapTap;
    use ptnetd::nm::Slot;
    // The source region has 4,096-byte buffers, the destination 2,048-byte ones.
    let big = MemConfig { buf_size: 4096, ..MemConfig::for_ports(1, 2, 256, 64) };
    let src_mem = NetmapMemory::new(40, big).unwrap();
    let dst = lone(41);
    let src = src_mem.region();
    let mut frames = Vec::new();
    let mut offered = Vec::new();
    for seq in 0..300u64 {
        let len = if seq == 5 { 3000 } else { 60 + (seq as usize % 7) };
        let off = src_mem.buf_offset(2 + seq as u32).unwrap();
        let f = make_frame(B, A, seq, len);
        src.write_bytes(off, &f).unwrap();
        frames.push((off, len));
        offered.push(f);
    }
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut hr = dst.rx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    // The slot the 11th frame would take holds a bad buffer index (the 6th takes two slots).
    let bad_at = (hr.kring.hwtail + 11) % n;
    let s = hr.view.slot(bad_at);
    hr.view.set_slot(bad_at, Slot { buf_idx: u32::MAX, ..s });
    let placed = dst.deliver_singles_locked(&mut hr, src, &frames[..20]);
    // Frames 10..20 all meet the bad slot: nothing moves past it (as `place_rx` does).
    assert_eq!(placed, 10, "the frames before the bad slot");
    assert_eq!(stat(&dst.stats.rx_errors), 10);
    hr.view.set_slot(bad_at, s); // repaired: the next frames go on from there
    let placed = dst.deliver_singles_locked(&mut hr, src, &frames[20..]);
    // 255 usable slots: 10 frames took 11; 244 more fit, 36 are dropped.
    assert_eq!(placed, 244);
    assert_eq!(stat(&dst.stats.rx_drops), 36);
    assert_eq!(stat(&dst.stats.rx_frames), 10 + 244);
    let kept = |i: usize| i < 10 || (20..264).contains(&i);
    let bytes: u64 =
        frames.iter().enumerate().filter(|(i, _)| kept(*i)).map(|(_, f)| f.1 as u64).sum();
    assert_eq!(stat(&dst.stats.rx_bytes), bytes);
    // The ring holds frames 0..10 and 20..264, in order, the 6th as a two-slot chain.
    let mut got = Vec::new();
    let mut i = hr.kring.hwcur;
    let mut chain = Vec::new();
    while i != hr.kring.hwtail {
        let s = hr.view.slot(i);
        let off = dst.mem().buf_offset(s.buf_idx).unwrap();
        let mut b = vec![0u8; s.len as usize];
        dst.mem().region().read_bytes(off, &mut b).unwrap();
        chain.extend_from_slice(&b);
        if s.flags & ptnetd::abi::netmap::NS_MOREFRAG == 0 {
            got.push(std::mem::take(&mut chain));
        }
        i = (i + 1) % n;
    }
    let want: Vec<_> =
        offered.iter().enumerate().filter(|(i, _)| kept(*i)).map(|(_, f)| f.clone()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every frame intact and in order");
    drop(hr);
    // With a tap attached, each frame placed is recorded too.
    let path = std::env::temp_dir().join(format!("ptnet-singles-tap-{}.pcap", std::process::id()));
    let tap = Arc::new(PcapTap::create(&path).unwrap());
    let other = lone(42);
    other.set_tap(Some(tap.clone()));
    let mut hr = other.rx_ring(0).unwrap();
    assert_eq!(other.deliver_singles_locked(&mut hr, src, &frames[..10]), 10);
    assert_eq!(tap.frames(), 10);
    let _ = std::fs::remove_file(&path);
}

/// `Frame::read_array` (the switch's read of a frame's addresses): from one fragment with one
/// copy, across fragments, from plain bytes; `None` when the frame is shorter.
#[test]
fn frame_read_array_within_and_across_fragments() {
    use ptnetd::model::port::Frame;
    use ptnetd::shm::Region;
    let r = Region::alloc(4096).unwrap();
    r.write_bytes(100, b"0123456789ab").unwrap();
    r.write_bytes(2000, b"xyz").unwrap();
    let one = Frame::Shm { region: &r, frags: &[(100, 12)] };
    assert_eq!(one.read_array::<12>(0), Some(*b"0123456789ab"));
    assert_eq!(one.read_array::<4>(8), Some(*b"89ab"));
    assert_eq!(one.read_array::<12>(1), None, "one byte short");
    let two = Frame::Shm { region: &r, frags: &[(100, 10), (2000, 3)] };
    assert_eq!(two.read_array::<12>(1), Some(*b"123456789xyz"));
    assert_eq!(two.read_array::<12>(2), None);
    assert_eq!(Frame::Bytes(b"abcdef").read_array::<3>(3), Some(*b"def"));
    // A fragment outside the region reads as nothing, not a panic.
    let bad = Frame::Shm { region: &r, frags: &[(4090, 12)] };
    assert_eq!(bad.read_array::<12>(0), None);
}

/// The pipe's slot mover, driven at the host rings: a chain split across syncs by a full RX
/// ring is counted once, when its last slot moves, with all its bytes; buffer indices are
/// swapped (B's RX slots get A's buffers in order, with `NS_MOREFRAG` kept and
/// `NS_BUF_CHANGED` set; A's TX slots get B's old buffers); and a chain that never ends is
/// cut after `4 × NETMAP_MAX_FRAGS` slots, counting the slots carried across syncs.
#[test]
fn pipe_mover_counts_split_chains_and_swaps_buffers() {
    use ptnetd::abi::netmap::{NETMAP_MAX_FRAGS, NS_BUF_CHANGED, NS_MOREFRAG};
    use ptnetd::nm::Slot;
    let (a, b) = pipe(14, 1, 16);
    let stats = || {
        let l = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (sa, sb) = (&a.stats, &b.stats);
        let v = (l(&sa.tx_frames), l(&sa.tx_bytes));
        assert_eq!(v, (l(&sb.rx_frames), l(&sb.rx_bytes)), "both ends count the same");
        v
    };
    // Hands `lens` (with their flags) to A's TX ring and syncs it; returns the buffers sent.
    let send = |slots: &[(u16, u16)]| -> Vec<u32> {
        let mut hr = a.tx_ring(0).unwrap();
        let n = hr.kring.num_slots;
        let mut at = hr.kring.rhead;
        let mut bufs = Vec::new();
        for &(len, flags) in slots {
            let idx = hr.view.slot(at).buf_idx;
            bufs.push(idx);
            hr.view.set_slot(at, Slot { buf_idx: idx, len, flags });
            at = (at + 1) % n;
        }
        hr.kring.rhead = at;
        a.txsync(&mut hr).unwrap();
        bufs
    };
    // Releases every slot B holds; returns what they were, in order.
    let release = || -> Vec<Slot> {
        let mut hr = b.rx_ring(0).unwrap();
        let n = hr.kring.num_slots;
        let mut out = Vec::new();
        let mut at = hr.kring.hwcur;
        while at != hr.kring.hwtail {
            out.push(hr.view.slot(at));
            at = (at + 1) % n;
        }
        hr.kring.rhead = hr.kring.hwtail;
        b.rxsync_release(&mut hr);
        out
    };
    // 8 single-slot frames fill B's RX ring to 7 free slots.
    send(&[(60, 0); 8]);
    assert_eq!(stats(), (8, 480));
    // 5 chains of 3 slots (10 + 20 + 30 bytes): 7 slots move, 2 chains end, 1 slot waits in B.
    let chain = [(10, NS_MOREFRAG), (20, NS_MOREFRAG), (30, 0)];
    let chains: Vec<(u16, u16)> = (0..5).flat_map(|_| chain).collect();
    let sent = send(&chains);
    assert_eq!(stats(), (10, 600), "only the chains whose last slot moved are counted");
    let first = release();
    assert_eq!(first.len(), 15);
    a.txsync(&mut a.tx_ring(0).unwrap()).unwrap(); // B's release lets the rest move
    assert_eq!(stats(), (13, 780), "the split chain is counted once, with all its bytes");
    let got: Vec<Slot> = first.into_iter().skip(8).chain(release()).collect();
    assert_eq!(got.len(), 15);
    for (k, (s, (&buf, &(len, flags)))) in got.iter().zip(sent.iter().zip(&chains)).enumerate() {
        assert_eq!(*s, Slot { buf_idx: buf, len, flags: flags | NS_BUF_CHANGED }, "slot {k}");
    }
    {
        let hr = a.tx_ring(0).unwrap();
        let n = hr.kring.num_slots;
        let back: Vec<u32> = (0..n).map(|i| hr.view.slot(i).buf_idx).collect();
        for buf in &sent {
            assert!(!back.contains(buf), "A's TX slots no longer hold the buffer {buf} sent");
        }
    }
    // A chain that never ends: 4 × NETMAP_MAX_FRAGS slots of 1 byte are cut into one frame,
    // over many syncs of at most 15 slots; the 14 slots after the cut stay open.
    let limit = 4 * NETMAP_MAX_FRAGS;
    let mut left = limit + 14;
    while left > 0 {
        let k = left.min(15);
        send(&vec![(1, NS_MOREFRAG); k]);
        release();
        left -= k;
    }
    assert_eq!(stats(), (14, 780 + limit as u64), "cut once, at the limit");
    send(&[(1, 0)]);
    assert_eq!(stats(), (15, 780 + limit as u64 + 15), "the open chain ends with its slots");
}

/// A walk whose frames all go to one port in one fragment each (a flow between two VMs) is
/// delivered as the walk's fragments, in order, in one piece; what the destination has no
/// room for is dropped and counted. A walk with a chained frame to the same port takes the
/// general path: the chain arrives whole, between its neighbours.
#[test]
fn switch_walk_to_one_port_delivers_in_order_and_counts_drops() {
    use ptnetd::abi::netmap::NS_MOREFRAG;
    use ptnetd::model::port::Frame;
    use ptnetd::nm::Slot;
    let sw = Switch::new("one-port");
    let (a, b) = (lone(36), lone(37));
    let (na, nb) = (sw.attach_port(&a), sw.attach_port(&b));
    sw.forward(nb, 0, 0, &Frame::Bytes(&make_frame(A, B, 0, 60))); // B makes itself known
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (unicast0, dropped0) = (stat(&sw.stats.unicast), stat(&sw.stats.dropped));
    let drain = || rx_seqs(&b, true);
    // 200 frames to B, then 200 more while B holds the first: room for 55, 145 dropped.
    send_walk(&a, (0..200u64).map(|s| (make_frame(B, A, s, 60), 60)));
    send_walk(&a, (200..400u64).map(|s| (make_frame(B, A, s, 60), 60)));
    assert_eq!(drain(), (0..255u64).collect::<Vec<_>>(), "the first 255, in order");
    assert_eq!(stat(&sw.stats.unicast) - unicast0, 400);
    assert_eq!(stat(&sw.stats.dropped) - dropped0, 145, "B's refusals are counted");
    // A walk with a 3000-byte frame in two slots between single-slot frames, all to B.
    let mut hr = a.tx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let mut at = hr.kring.hwcur;
    let big = make_frame(B, A, 1001, 3000);
    let parts: Vec<(Vec<u8>, u16)> = vec![
        (make_frame(B, A, 1000, 60), 0),
        (big[..2048].to_vec(), NS_MOREFRAG),
        (big[2048..].to_vec(), 0),
        (make_frame(B, A, 1002, 60), 0),
    ];
    for (bytes, flags) in &parts {
        let idx = hr.view.slot(at).buf_idx;
        a.mem().region().write_bytes(a.mem().buf_offset(idx).unwrap(), bytes).unwrap();
        hr.view.set_slot(at, Slot { buf_idx: idx, len: bytes.len() as u16, flags: *flags });
        at = (at + 1) % n;
    }
    hr.kring.rhead = at;
    a.txsync(&mut hr).unwrap();
    drop(hr);
    assert_eq!(drain(), vec![1000, 1001, 1002], "three frames, the chain whole, in order");
    let _ = na;
}

/// The fast lane of a TX walk takes one-slot frames at `hwcur` while the callback accepts
/// them, with their buffer offsets and lengths, and counts them; it stops at a chain, a bad
/// buffer index, an over-long length and the callback's refusal, leaving those to the general
/// walk, and takes nothing while the port has a tap.
#[test]
fn tx_fast_lane_takes_single_slots_and_stops_where_the_walk_must() {
    use ptnetd::abi::netmap::NS_MOREFRAG;
    use ptnetd::model::pcap::PcapTap;
    use ptnetd::nm::Slot;
    let a = lone(38);
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let bsz = a.mem().buf_size() as u16;
    // Slots from hwcur: (len, flags, valid buffer?).
    let plan: [(u16, u16, bool); 9] = [
        (60, 0, true),
        (61, 0, true),
        (62, 0, true),
        (100, NS_MOREFRAG, true), // a chain: the lane stops here
        (40, 0, true),
        (63, 0, true),
        (0, 0, false), // a bad buffer index
        (64, 0, true),
        (bsz + 1, 0, true), // longer than a buffer
    ];
    let mut hr = a.tx_ring(0).unwrap();
    let n = hr.kring.num_slots;
    let first = hr.kring.hwcur;
    let mut offs = Vec::new();
    for (k, &(len, flags, ok)) in plan.iter().enumerate() {
        let at = (first + k as u32) % n;
        let idx = if ok { hr.view.slot(at).buf_idx } else { 0 };
        offs.push(a.mem().buf_offset(idx));
        hr.view.set_slot(at, Slot { buf_idx: idx, len, flags });
    }
    hr.kring.rhead = (first + plan.len() as u32) % n;
    let (f0, b0) = (stat(&a.stats.tx_frames), stat(&a.stats.tx_bytes));
    let mut seen = Vec::new();
    let took = a.take_tx_singles(&mut hr, |off, len| {
        seen.push((Some(off), len));
        true
    });
    assert_eq!(took, 3, "up to the chain");
    assert_eq!(seen, vec![(offs[0], 60), (offs[1], 61), (offs[2], 62)]);
    assert_eq!(hr.kring.hwcur, (first + 3) % n);
    assert_eq!((stat(&a.stats.tx_frames) - f0, stat(&a.stats.tx_bytes) - b0), (3, 183));
    assert_eq!(a.take_tx_singles(&mut hr, |_, _| true), 0, "a chain at hwcur: nothing");
    hr.kring.hwcur = (first + 4) % n; // past the chain (as the general walk would be)
    let mut calls = 0;
    let took = a.take_tx_singles(&mut hr, |_, len| {
        calls += 1;
        len != 63 // refuse the second
    });
    assert_eq!((took, calls), (1, 2), "the refused frame stays");
    assert_eq!(hr.kring.hwcur, (first + 5) % n);
    hr.kring.hwcur = (first + 6) % n;
    assert_eq!(a.take_tx_singles(&mut hr, |_, _| true), 0, "a bad buffer index at hwcur");
    hr.kring.hwcur = (first + 7) % n;
    assert_eq!(a.take_tx_singles(&mut hr, |_, _| true), 1, "then the over-long one stops it");
    assert_eq!(hr.kring.hwcur, (first + 8) % n);
    // With a tap the lane takes nothing: the general walk records every frame.
    hr.kring.hwcur = first;
    let path = std::env::temp_dir().join(format!("ptnet-lane-tap-{}.pcap", std::process::id()));
    a.set_tap(Some(Arc::new(PcapTap::create(&path).unwrap())));
    assert_eq!(a.take_tx_singles(&mut hr, |_, _| true), 0, "tapped: nothing");
    assert_eq!(hr.kring.hwcur, first);
    a.set_tap(None);
    let _ = std::fs::remove_file(&path);
}

/// The switch's fast lane takes the frames of the flow it last routed and hands the rest of
/// the walk to the general one at the first other frame: across a walk that changes flow
/// mid-way, every frame reaches its port in order, and the counters see each frame once.
#[test]
fn switch_fast_lane_hands_over_at_a_new_flow() {
    use ptnetd::model::port::Frame;
    let sw = Switch::new("lane");
    let (a, b, c) = (lone(39), lone(40), lone(41));
    let (na, nb, nc) = (sw.attach_port(&a), sw.attach_port(&b), sw.attach_port(&c));
    const C: [u8; 6] = [2, 0, 0, 0, 2, 0xc];
    sw.forward(nb, 0, 0, &Frame::Bytes(&make_frame(A, B, 0, 60)));
    sw.forward(nc, 0, 0, &Frame::Bytes(&make_frame(A, C, 0, 60)));
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (in0, uni0) = (stat(&sw.stats.frames_in), stat(&sw.stats.unicast));
    // Walk 1 teaches the route A -> B; walk 2 starts with it (the fast lane), switches to
    // C, and back to B (a new route each time: the general walk).
    send_walk(&a, (1..=10u64).map(|s| (make_frame(B, A, s, 60), 60)));
    let to = |s: u64| if (15..20).contains(&s) { C } else { B };
    send_walk(&a, (11..=30u64).map(|s| (make_frame(to(s), A, s, 60), 60)));
    // The hellos (sequence 0) were flooded while A was unknown: B holds C's, C holds B's.
    let walked =
        |p: &NmPort| -> Vec<u64> { rx_seqs(p, false).into_iter().filter(|&s| s > 0).collect() };
    let want_b: Vec<u64> = (1..=30).filter(|s| !(15..20).contains(s)).collect();
    assert_eq!(walked(&b), want_b, "B's frames, in order");
    assert_eq!(walked(&c), (15..20).collect::<Vec<u64>>(), "C's frames, in order");
    assert_eq!(stat(&sw.stats.frames_in) - in0, 30, "each frame counted once");
    assert_eq!(stat(&sw.stats.unicast) - uni0, 30);
    let _ = na;
}

/// The fast lane is the last route's only for walks from that route's source port: the same
/// addresses entering on another port (a station that moved) go through the general walk,
/// which learns the station's new port.
#[test]
fn switch_fast_lane_is_per_source_port() {
    use ptnetd::model::port::Frame;
    let sw = Switch::new("lane-src");
    let (a, b, c) = (lone(42), lone(43), lone(44));
    let (na, nb, nc) = (sw.attach_port(&a), sw.attach_port(&b), sw.attach_port(&c));
    sw.forward(nb, 0, 0, &Frame::Bytes(&make_frame(A, B, 0, 60)));
    send_walk(&a, (1..=5u64).map(|s| (make_frame(B, A, s, 60), 60)));
    assert_eq!(sw.lookup(&A), Some(na));
    // A moves to port C and sends the same flow from there.
    send_walk(&c, (6..=10u64).map(|s| (make_frame(B, A, s, 60), 60)));
    assert_eq!(sw.lookup(&A), Some(nc), "learnt on its new port");
    assert_eq!(b.stats.rx_frames.load(Ordering::Relaxed), 10, "B got all ten");
}
