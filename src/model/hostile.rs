//! A misbehaving host for driver tests: a thread that writes random and adversarial values into
//! the memory a host controls (the ktoa array, the port's netmap_if, ring headers and slots)
//! while traffic runs. Packet buffers are left alone: their contents are the host's to choose
//! anyway and cannot affect the guest's memory safety.

use super::port::NmPort;
use super::ptnet::PtnetDevice;
use crate::abi::netmap::if_size;
use crate::shm::Region;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A window the hostile host scribbles on.
#[derive(Debug, Clone)]
pub struct Target {
    /// What it is (for logs).
    pub what: &'static str,
    /// The memory.
    pub region: Region,
}

/// Collects the host-writable structures of `dev` and its port: the ktoa array (once mapped),
/// the netmap_if, and every ring (header and slots).
pub fn targets(dev: &PtnetDevice, port: &NmPort) -> Vec<Target> {
    let mut t = Vec::new();
    if let (_, Some(hg)) = dev.csb_regions() {
        t.push(Target { what: "ktoa", region: hg });
    }
    let mem = port.mem().region();
    let n_ofs = (port.num_tx_rings() + port.num_rx_rings() + 2) as usize;
    if let Ok(r) = mem.sub(port.nifp_ofs() as usize, if_size(n_ofs)) {
        t.push(Target { what: "netmap_if", region: r });
    }
    for i in 0..port.num_tx_rings() {
        if let Some(hr) = port.tx_ring(i) {
            t.push(Target { what: "tx ring", region: hr.view.region().clone() });
        }
    }
    for i in 0..port.num_rx_rings() {
        if let Some(hr) = port.rx_ring(i) {
            t.push(Target { what: "rx ring", region: hr.view.region().clone() });
        }
    }
    t
}

/// A running scribbler.
pub struct Hostile {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

impl Hostile {
    /// Starts writing one adversarial 32-bit value every `every` (0 = as fast as possible) into
    /// a random aligned offset of a random target, seeded by `seed`.
    pub fn start(targets: Vec<Target>, seed: u64, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (st, wr) = (stop.clone(), writes.clone());
        let handle = std::thread::Builder::new()
            .name("ptnet-hostile".into())
            .spawn(move || {
                let mut x = seed | 1;
                while !st.load(Ordering::Relaxed) && !targets.is_empty() {
                    let t = &targets[(xorshift(&mut x) % targets.len() as u64) as usize];
                    let words = t.region.len() / 4;
                    if words == 0 {
                        continue;
                    }
                    // Bias towards the first 64 bytes (indices, counts, offsets).
                    let w = if xorshift(&mut x).is_multiple_of(2) {
                        xorshift(&mut x) % 16
                    } else {
                        xorshift(&mut x)
                    };
                    let off = (w as usize % words) * 4;
                    let v = match xorshift(&mut x) % 6 {
                        0 => 0,
                        1 => u32::MAX,
                        2 => 1 << (xorshift(&mut x) % 32),
                        3 => (xorshift(&mut x) % 4096) as u32,
                        4 => (xorshift(&mut x) % 70000) as u32,
                        _ => xorshift(&mut x) as u32,
                    };
                    let _ = t.region.try_store_u32(off, v);
                    wr.fetch_add(1, Ordering::Relaxed);
                    if !every.is_zero() {
                        std::thread::sleep(every);
                    }
                }
            })
            .ok();
        Self { stop, writes, handle }
    }

    /// Writes done so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Stops the thread.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.writes()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
