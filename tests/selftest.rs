//! The zero-copy self test (issue 4) against the model: a port with the `Reflector` backend
//! passes, and so does a port on a switch with a `Reflect` endpoint while a source floods the
//! NIC with foreign frames; a `Sink` port (nothing comes back) fails by timeout with every frame
//! lost; a backend that damages frames fails with them counted as corrupt.

use ptnetd::driver::{DriverConfig, Ptnet};
use ptnetd::frame::PEER_MAC;
use ptnetd::model::apps::{udp_frames, Reflect, ReflectConfig, Sink, Source, SourceTarget};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{HostRing, NmPort, PortError, PortSpec, Reflector, TxBackend};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::switch::Switch;
use ptnetd::model::vm::Vm;
use ptnetd::platform::sim::SimPlatform;
use ptnetd::ring;
use ptnetd::selftest::{self, SelftestReport, MAX_FRAMES};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

struct Nic {
    plat: SimPlatform,
    drv: Ptnet<SimPlatform>,
    port: Arc<NmPort>,
    dev: Arc<PtnetDevice>,
}

/// A fresh port (`rings` rings of `slots` slots each way) in its own region.
fn new_port(mem_id: u16, rings: u32, slots: u32) -> Arc<NmPort> {
    init_log();
    let mem = NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap();
    NmPort::new(Arc::new(mem), &PortSpec::new("selftest", rings, slots)).unwrap()
}

/// A VM whose ptnet NIC sits on `port`; the driver attached.
fn nic_on(port: Arc<NmPort>, cfg: DriverConfig) -> Nic {
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    let slot = vm.slot_of(&dev).unwrap();
    let mut plat = SimPlatform::new(vm, slot);
    let drv = Ptnet::attach(&mut plat, cfg).unwrap();
    Nic { plat, drv, port, dev }
}

/// A VM whose ptnet NIC sits on a fresh port (`rings` rings of `slots` slots each way), with
/// `backend` made from the port; the driver attached.
fn nic(
    mem_id: u16,
    rings: u32,
    slots: u32,
    cfg: DriverConfig,
    backend: impl FnOnce(&Arc<NmPort>) -> Arc<dyn TxBackend>,
) -> Nic {
    let port = new_port(mem_id, rings, slots);
    port.set_backend(backend(&port));
    nic_on(port, cfg)
}

fn reflector(p: &Arc<NmPort>) -> Arc<dyn TxBackend> {
    Reflector::new(p)
}

fn run(n: &mut Nic, frames: u64, timeout: Duration) -> SelftestReport {
    selftest::run(&mut n.drv, &n.plat, frames, timeout)
}

#[test]
fn passes_through_a_reflector() {
    let mut n = nic(21, 1, 256, DriverConfig::default(), reflector);
    let t0 = Instant::now();
    let r = run(&mut n, 5000, Duration::from_secs(30));
    assert!(r.passed(), "{r}");
    assert_eq!((r.sent, r.received, r.lost, r.foreign), (5000, 5000, 0, 0));
    assert!(!r.timed_out && r.error.is_none());
    assert!(r.multi_slot >= 5000 / 8, "jumbo frames with NS_MOREFRAG: {}", r.multi_slot);
    assert!(r.to_string().starts_with("selftest PASS sent=5000 received=5000 corrupt=0 "), "{r}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    // Netmap-mode syncs only: the copy path was not used, and the device moved every frame.
    let tx = n.drv.stats(0).unwrap();
    assert_eq!(tx.frames, 0, "no copy-path frames");
    assert!(tx.syncs > 0 && n.drv.stats(1).unwrap().syncs > 0);
    // The host counts TX frames right after handing them on: wait for it.
    let t0 = std::time::Instant::now();
    while n.dev.counters(0).unwrap().packets < 5000
        && t0.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(n.dev.counters(0).unwrap().packets, 5000);
    // A second run on the same rings starts where the first stopped.
    let r = run(&mut n, 777, Duration::from_secs(30));
    assert!(r.passed(), "{r}");
    n.drv.shutdown().unwrap();
}

#[test]
fn passes_with_small_rings_several_ring_pairs_and_vnet_asked() {
    // 32 slots: jumbo frames are at most 8 slots and the window is 16 slots.
    let cfg = DriverConfig { vnet_hdr: true, ..Default::default() };
    let mut n = nic(22, 2, 32, cfg, reflector);
    assert_eq!(n.drv.info().vnet_hdr_len, 0, "a reflector port offers no vnet header");
    let r = run(&mut n, 1000, Duration::from_secs(30));
    assert!(r.passed(), "{r}");
    assert!(r.multi_slot > 0);
    n.drv.shutdown().unwrap();
}

/// ptnet-host's `--backend switch --reflect --sink --source-pps N` in the model: the NIC on a
/// switch with a reflect endpoint (MAC [`PEER_MAC`]) and a host port that sinks and sends
/// broadcasts. Half the broadcasts are test frames of another NIC (right ethertype and magic,
/// someone else's addresses), the rest UDP. The source starts before the driver, so the RX ring
/// is full of them at bring-up. Every own frame comes back; the others are counted as foreign.
#[test]
fn passes_on_a_switch_with_a_reflect_endpoint_among_foreign_frames() {
    const OTHER: [u8; 6] = [0x02, 0, 0, 0, 7, 7];
    let sw = Switch::new("vale-selftest");
    let port = new_port(26, 1, 256);
    sw.attach_port(&port);
    let sink = Sink::new(0);
    let host = sw.attach(sink.clone());
    let reflect = Reflect::attach(&sw, ReflectConfig::new(PEER_MAC)).unwrap();
    let mut udp = udp_frames([0x02, 0, 0, 0, 0xff, 0x01], [0xff; 6], 60);
    let gen = Box::new(move |seq: u64, buf: &mut Vec<u8>| {
        if seq.is_multiple_of(2) {
            udp(seq, buf);
        } else {
            ptnetd::frame::write(buf, [0xff; 6], OTHER, seq, 100 + seq as usize % 1400);
        }
    });
    let target = SourceTarget::Switch { sw: sw.clone(), no: host, hdr_len: 0 };
    let src = Source::start(target, gen, None, 20_000);
    let t0 = Instant::now();
    while src.sent() < 300 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(port.stats.rx_drops.load(Relaxed) > 0, "the RX ring filled up before bring-up");

    let mut n = nic_on(port, DriverConfig::default());
    let r = run(&mut n, 100_000, Duration::from_secs(60));
    let broadcasts = src.stop();
    assert!(r.passed(), "{r}");
    assert_eq!((r.sent, r.received, r.lost, r.corrupt), (100_000, 100_000, 0, 0));
    assert!(r.foreign >= 200, "the source's frames were received and set aside: {r}");
    assert!(r.foreign <= broadcasts);
    assert!(r.to_string().contains(&format!(" foreign={} ", r.foreign)), "{r}");
    let st = &reflect.stats;
    assert_eq!(st.reflected.load(Relaxed), 100_000, "{}", st.summary());
    assert_eq!(st.ignored.load(Relaxed), broadcasts, "broadcasts are not reflected");
    // The sink (the source's own port) got only the NIC's frames flooded before learning.
    let flooded = sw.stats.flooded.load(Relaxed);
    let sunk = sink.frames.load(Relaxed);
    assert!(sunk >= 1 && sunk + broadcasts == flooded, "sink {sunk}, flooded {flooded}");
    n.drv.shutdown().unwrap();
}

#[test]
fn fails_when_nothing_comes_back() {
    let sink = Sink::new(0);
    let s = sink.clone();
    let mut n = nic(23, 1, 256, DriverConfig::default(), move |_| s);
    let t0 = Instant::now();
    let r = run(&mut n, 1000, Duration::from_millis(300));
    let took = t0.elapsed();
    assert!(!r.passed());
    assert!(r.timed_out, "{r}");
    assert!(r.sent > 0 && r.sent < 1000, "the in-flight window stops the sender: {r}");
    assert_eq!((r.received, r.corrupt, r.lost), (0, 0, r.sent));
    let line = r.to_string();
    assert!(line.starts_with("selftest FAIL sent="), "{line}");
    assert!(line.contains(" received=0 ") && line.contains(" timeout"), "{line}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
    // The sink saw every published frame intact: the failure is the missing reflection.
    let t1 = Instant::now();
    while sink.frames.load(std::sync::atomic::Ordering::Relaxed) < r.sent {
        assert!(t1.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    n.drv.shutdown().unwrap();
}

/// A reflector that flips one payload byte in every 97th slot it is handed.
struct Corrupter {
    inner: Arc<Reflector>,
    /// TX slots already looked at (the next one to look at), and how many so far.
    state: Mutex<Option<(u32, u64)>>,
}

impl TxBackend for Corrupter {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let mut st = self.state.lock().unwrap();
        let (mut i, mut count) = st.unwrap_or((hr.kring.hwcur, 0));
        while i != hr.kring.rhead {
            count += 1;
            if count % 97 == 13 {
                let s = hr.view.slot(i);
                if let Some(off) = port.mem().buf_offset(s.buf_idx) {
                    let r = port.mem().region();
                    let at = off + 40.min(s.len as usize - 1);
                    let mut b = [0u8];
                    r.read_bytes(at, &mut b).unwrap();
                    r.write_bytes(at, &[b[0] ^ 0x5a]).unwrap();
                }
            }
            i = ring::next(i, hr.kring.num_slots);
        }
        *st = Some((i, count));
        drop(st);
        self.inner.transmit(port, hr)
    }

    fn rx_released(&self, port: &NmPort, ring: u32) {
        self.inner.rx_released(port, ring)
    }

    fn kind(&self) -> &'static str {
        "corrupter"
    }
}

#[test]
fn fails_when_frames_come_back_damaged() {
    let mut n = nic(24, 1, 256, DriverConfig::default(), |p| {
        Arc::new(Corrupter { inner: Reflector::new(p), state: Mutex::new(None) })
    });
    let r = run(&mut n, 2000, Duration::from_secs(30));
    assert!(!r.passed(), "{r}");
    assert!(!r.timed_out, "everything came back: {r}");
    assert_eq!((r.sent, r.received), (2000, 2000));
    assert!(r.corrupt >= 10, "{r}");
    assert_eq!(r.lost, r.corrupt, "a damaged frame never arrived intact");
    assert_eq!((r.misordered, r.duplicates, r.foreign), (0, 0, 0));
    assert!(n.port.stats.tx_frames.load(std::sync::atomic::Ordering::Relaxed) >= 2000);
    n.drv.shutdown().unwrap();
}

#[test]
fn refuses_absurd_counts_at_once() {
    let mut n = nic(25, 1, 64, DriverConfig::default(), reflector);
    let r = run(&mut n, MAX_FRAMES + 1, Duration::from_secs(30));
    assert!(!r.passed() && r.sent == 0 && r.error.is_some(), "{r}");
    let r = run(&mut n, 0, Duration::from_secs(1));
    assert!(r.passed(), "nothing asked, nothing to do: {r}");
}
