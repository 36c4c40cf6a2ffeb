//! Host-side traffic endpoints: a sink that counts (and optionally verifies) every frame, and a
//! source that generates frames at full speed (or a set rate), like netmap's `pkt-gen`.
//!
//! Both work directly on a netmap port (the sink as the port's TX backend, the source filling
//! its RX rings) or on a switch port.

use super::notify::Notifier;
use super::port::{Frame, HostRing, NmPort, PortError, TxBackend};
use super::switch::{Switch, SwitchEndpoint};
use crate::ring;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A frame verifier: gets each frame (header stripped), returns `false` if it is wrong.
pub type Verifier = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// A frame generator: writes frame number `seq` (without virtio-net header) into the buffer.
pub type FrameGen = Box<dyn FnMut(u64, &mut Vec<u8>) + Send>;

/// Counts frames; as a port backend it consumes everything the port transmits.
pub struct Sink {
    hdr_len: u32,
    /// Frames received.
    pub frames: AtomicU64,
    /// Bytes received (headers excluded).
    pub bytes: AtomicU64,
    /// Frames the verifier rejected.
    pub bad: AtomicU64,
    verify: Mutex<Option<Verifier>>,
    /// Signalled when the port this sink backs released RX slots (wakes a [`Source`]).
    pub space: Arc<Notifier>,
    scratch: Mutex<Vec<u8>>,
}

impl Sink {
    /// A sink expecting `hdr_len`-byte virtio-net headers (when attached to a switch).
    pub fn new(hdr_len: u32) -> Arc<Self> {
        Arc::new(Self {
            hdr_len,
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            verify: Mutex::new(None),
            space: Arc::new(Notifier::new()),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Installs a verifier run on every frame.
    pub fn set_verifier(&self, v: Verifier) {
        *self.verify.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    /// Makes this sink the TX backend of `port`.
    pub fn attach_to_port(self: &Arc<Self>, port: &NmPort) {
        port.set_backend(self.clone());
    }

    fn take(&self, frame: &Frame<'_>, hdr_len: usize) {
        let len = frame.len().saturating_sub(hdr_len);
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let mut v = self.verify.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = v.as_mut() {
            let mut s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            s.clear();
            frame.gather(&mut s);
            let body = s.get(hdr_len..).unwrap_or(&[]);
            if !f(body) {
                self.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl SwitchEndpoint for Sink {
    fn hdr_len(&self) -> u32 {
        self.hdr_len
    }
    fn receive(&self, _ring: u32, frame: &Frame<'_>) -> bool {
        self.take(frame, self.hdr_len as usize);
        true
    }
}

impl TxBackend for Sink {
    fn transmit(&self, port: &NmPort, hr: &mut HostRing) -> Result<(), PortError> {
        let h = port.vnet_hdr_len() as usize;
        port.for_each_tx_frame(hr, |f, _| {
            self.take(f, h);
            true
        });
        hr.kring.hwtail = ring::prev(hr.kring.hwcur, hr.kring.num_slots);
        Ok(())
    }
    fn rx_released(&self, _port: &NmPort, _ring: u32) {
        self.space.notify();
    }
    fn kind(&self) -> &'static str {
        "sink"
    }
}

/// Where a [`Source`] sends.
pub enum SourceTarget {
    /// Into the RX rings of a port (round robin), waiting for space (lossless). `space` is
    /// signalled when the port's user releases RX slots (a [`Sink`] backend's `space`).
    Port {
        /// The port.
        port: Arc<NmPort>,
        /// Wake-up on released RX slots.
        space: Arc<Notifier>,
    },
    /// Into a switch as port `no`, with `hdr_len`-byte headers (zeroed).
    Switch {
        /// The switch.
        sw: Arc<Switch>,
        /// Our port number on it.
        no: usize,
        /// Header length to prepend.
        hdr_len: u32,
    },
}

/// A running generator thread.
pub struct Source {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Source {
    /// Starts generating: frame `seq` for `seq` in `0..limit` (forever if `None`), at most `pps`
    /// frames per second (0 = as fast as possible).
    pub fn start(target: SourceTarget, mut gen: FrameGen, limit: Option<u64>, pps: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("ptnet-source".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut buf = Vec::new();
                let mut seq = 0u64;
                let hdr = match &target {
                    SourceTarget::Port { port, .. } => port.vnet_hdr_len(),
                    SourceTarget::Switch { hdr_len, .. } => *hdr_len,
                } as usize;
                while !st.load(Ordering::Relaxed) && limit.is_none_or(|l| seq < l) {
                    if pps > 0 && seq * 1_000_000_000 / pps > t0.elapsed().as_nanos() as u64 {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    buf.clear();
                    buf.resize(hdr, 0);
                    gen(seq, &mut buf);
                    if !Self::send_one(&target, seq, &buf, &st) {
                        break;
                    }
                    seq += 1;
                    se.store(seq, Ordering::Relaxed);
                }
            })
            .ok();
        Self { stop, sent, handle }
    }

    fn send_one(target: &SourceTarget, seq: u64, buf: &[u8], stop: &AtomicBool) -> bool {
        match target {
            SourceTarget::Switch { sw, no, hdr_len } => {
                sw.forward(*no, *hdr_len, seq as u32, &Frame::Bytes(buf));
                true
            }
            SourceTarget::Port { port, space } => {
                let f = Frame::Bytes(buf);
                if !port.fits_rx(&f) {
                    return true; // can never fit: skip it
                }
                let ring = (seq % port.num_rx_rings() as u64) as u32;
                loop {
                    let g = space.generation();
                    match port.deliver(ring, &f) {
                        Ok(()) => {
                            port.set_rx_blocked(ring, false);
                            return true;
                        }
                        Err(super::port::DeliverError::NoSpace) => {}
                        Err(_) => return true,
                    }
                    if stop.load(Ordering::Relaxed) {
                        port.set_rx_blocked(ring, false);
                        return false;
                    }
                    port.set_rx_blocked(ring, true);
                    space.wait(g, Duration::from_millis(5));
                }
            }
        }
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `true` once the thread has finished (limit reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the thread and returns the number of frames sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.sent()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A generator of well-formed Ethernet/IPv4/UDP frames of `size` bytes (≥ 60) carrying the
/// sequence number in the first 8 payload bytes.
pub fn udp_frames(src: [u8; 6], dst: [u8; 6], size: usize) -> FrameGen {
    Box::new(move |seq, buf| {
        let size = size.max(60);
        let start = buf.len();
        buf.extend_from_slice(&dst);
        buf.extend_from_slice(&src);
        buf.extend_from_slice(&[0x08, 0x00]);
        let ip_len = (size - 14) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = super::offload::internet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        buf.extend_from_slice(&ip);
        let udp_len = ip_len - 20;
        buf.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e]);
        buf.extend_from_slice(&udp_len.to_be_bytes());
        buf.extend_from_slice(&[0, 0]); // no UDP checksum (allowed on IPv4)
        buf.extend_from_slice(&seq.to_be_bytes());
        let k = start + size - buf.len();
        buf.extend((0..k).map(|i| (seq as usize + i) as u8));
    })
}
