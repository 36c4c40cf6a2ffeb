//! smoltcp devices over ptnetd's two schemes, for programs that run their own TCP/IP stack:
//!
//! * [`NetworkDevice`]: one frame per `read`/`write` on `network.<name>_ptnet` (what Redox's
//!   netstack does today, scheme-spec N4/N5);
//! * [`NetmapDevice`]: frames pushed and popped in place in the shared rings of
//!   `netmap.<name>_ptnet`, one `TXSYNC`/`RXSYNC` per batch (scheme-spec M3): many frames per
//!   scheme call.
//!
//! Both count the scheme calls they make and the frames they move ([`DeviceStats`]), so the
//! difference is measured, not claimed.

use super::{ClientError, Fd, NetmapPort, Os};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::cell::{Cell, RefCell};
use std::time::Duration;
use syscall::flag::EventFlags;

/// Largest frame either device moves (MTU 1500 + Ethernet header, scheme-spec N5).
pub const MAX_FRAME: usize = 1514;

/// Frames and scheme calls of a device.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Frames received.
    pub rx_frames: Cell<u64>,
    /// Frames sent.
    pub tx_frames: Cell<u64>,
    /// Scheme calls made (reads, writes, syncs), including those that found nothing.
    pub calls: Cell<u64>,
    /// Frames dropped (a full ring or a refused write).
    pub dropped: Cell<u64>,
}

impl DeviceStats {
    fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    /// Scheme calls per frame moved.
    pub fn calls_per_frame(&self) -> f64 {
        let f = self.rx_frames.get() + self.tx_frames.get();
        self.calls.get() as f64 / f.max(1) as f64
    }
}

fn caps() -> DeviceCapabilities {
    let mut c = DeviceCapabilities::default();
    c.medium = Medium::Ethernet;
    c.max_transmission_unit = MAX_FRAME;
    c
}

fn scratch() -> RefCell<Vec<u8>> {
    RefCell::new(vec![0; MAX_FRAME])
}

/// Lends smoltcp `len` bytes of the device's transmit scratch buffer (grown once if smoltcp
/// ever asks for more than [`MAX_FRAME`]; no allocation per frame).
fn with_scratch<R>(buf: &RefCell<Vec<u8>>, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut b = buf.borrow_mut();
    if b.len() < len {
        b.resize(len, 0);
    }
    f(&mut b[..len])
}

/// A received frame, copied out of the scheme or the ring.
pub struct RxBuf<'b>(&'b [u8]);

impl phy::RxToken for RxBuf<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// smoltcp on `network.<name>_ptnet`: a non-blocking data handle, one frame per call.
pub struct NetworkDevice<'a, O: Os> {
    fd: Fd<'a, O>,
    rx: Vec<u8>,
    tx: RefCell<Vec<u8>>,
    stats: DeviceStats,
    subscribed: EventFlags,
}

impl<'a, O: Os> NetworkDevice<'a, O> {
    /// Opens the data handle of `network.<pci_name>_ptnet` (non-blocking).
    pub fn open(os: &'a O, pci_name: &str) -> Result<Self, ClientError> {
        let flags = syscall::flag::O_RDWR | syscall::flag::O_NONBLOCK;
        let fd = Fd::open(os, &super::network_path(pci_name, ""), flags)?;
        Ok(Self {
            fd,
            rx: vec![0; MAX_FRAME],
            tx: scratch(),
            stats: DeviceStats::default(),
            subscribed: EventFlags::empty(),
        })
    }

    /// Waits until `flags` hold for the handle (`EVENT_READ`: frames pending, `EVENT_WRITE`:
    /// room to send; N6) or `timeout` passes; returns the flags that hold. Subscribes again
    /// only when `flags` change.
    pub fn wait(
        &mut self,
        flags: EventFlags,
        timeout: Duration,
    ) -> Result<EventFlags, ClientError> {
        let os = self.fd.os();
        if self.subscribed != flags {
            os.subscribe(self.fd.raw(), flags)?;
            self.subscribed = flags;
        }
        os.wait_event(self.fd.raw(), flags, timeout)
    }

    /// Counters.
    pub fn stats(&self) -> &DeviceStats {
        &self.stats
    }
}

/// Sends through the `network` handle.
pub struct NetworkTx<'d, 'a, O: Os> {
    fd: &'d Fd<'a, O>,
    tx: &'d RefCell<Vec<u8>>,
    stats: &'d DeviceStats,
}

impl<O: Os> phy::TxToken for NetworkTx<'_, '_, O> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        with_scratch(self.tx, len, |b| {
            let r = f(b);
            DeviceStats::bump(&self.stats.calls);
            match self.fd.write(b) {
                Ok(_) => DeviceStats::bump(&self.stats.tx_frames),
                Err(_) => DeviceStats::bump(&self.stats.dropped),
            }
            r
        })
    }
}

impl<O: Os> Device for NetworkDevice<'_, O> {
    type RxToken<'d>
        = RxBuf<'d>
    where
        Self: 'd;
    type TxToken<'d>
        = NetworkTx<'d, 'd, O>
    where
        Self: 'd;

    fn receive(&mut self, _t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        DeviceStats::bump(&self.stats.calls);
        let n = self.fd.read(&mut self.rx).ok()?; // EAGAIN: nothing now
        DeviceStats::bump(&self.stats.rx_frames);
        Some((RxBuf(&self.rx[..n]), NetworkTx { fd: &self.fd, tx: &self.tx, stats: &self.stats }))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Self::TxToken<'_>> {
        Some(NetworkTx { fd: &self.fd, tx: &self.tx, stats: &self.stats })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        caps()
    }
}

/// smoltcp on `netmap.<name>_ptnet/<ring pair>`: frames in place in the shared rings, a sync
/// only when a ring is empty (RX) or full, or at [`NetmapDevice::flush`] (TX).
pub struct NetmapDevice<'a, O: Os> {
    port: NetmapPort<'a, O>,
    ring: u32,
    rx: Vec<u8>,
    tx: RefCell<Vec<u8>>,
    pending_tx: Cell<bool>,
    stats: DeviceStats,
}

impl<'a, O: Os> NetmapDevice<'a, O> {
    /// Binds ring pair `ring` of `netmap.<pci_name>_ptnet`.
    pub fn open(os: &'a O, pci_name: &str, ring: u32) -> Result<Self, ClientError> {
        let port = NetmapPort::open(os, pci_name, &ring.to_string())?;
        Ok(Self {
            port,
            ring,
            rx: vec![0; MAX_FRAME],
            tx: scratch(),
            pending_tx: Cell::new(false),
            stats: DeviceStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &DeviceStats {
        &self.stats
    }

    /// Hands the frames queued since the last flush to the host (one `TXSYNC`); call it after
    /// each `Interface::poll`.
    pub fn flush(&self) -> Result<(), ClientError> {
        if self.pending_tx.replace(false) {
            DeviceStats::bump(&self.stats.calls);
            self.port.txsync()?;
        }
        Ok(())
    }

    /// The port (to wait for readiness between polls).
    pub fn port_mut(&mut self) -> &mut NetmapPort<'a, O> {
        &mut self.port
    }
}

/// Sends into the TX ring of a [`NetmapDevice`].
pub struct NetmapTx<'d, 'a, O: Os> {
    dev: &'d NetmapDevice<'a, O>,
}

impl<O: Os> phy::TxToken for NetmapTx<'_, '_, O> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let d = self.dev;
        with_scratch(&d.tx, len, |b| {
            let r = f(b);
            d.queue(b);
            r
        })
    }
}

impl<O: Os> NetmapDevice<'_, O> {
    /// Puts one frame into the TX ring, syncing once if the ring is full.
    fn queue(&self, b: &[u8]) {
        let d = self;
        let Ok(tx) = d.port.tx_ring(d.ring) else {
            DeviceStats::bump(&d.stats.dropped);
            return;
        };
        let mut pushed = tx.push(b).unwrap_or(false);
        if !pushed {
            // Full: hand what is queued over and reclaim completed slots, then once more.
            DeviceStats::bump(&d.stats.calls);
            pushed = d.port.txsync().is_ok() && tx.push(b).unwrap_or(false);
        }
        if pushed {
            d.pending_tx.set(true);
            DeviceStats::bump(&d.stats.tx_frames);
        } else {
            DeviceStats::bump(&d.stats.dropped);
        }
    }
}

impl<O: Os> Device for NetmapDevice<'_, O> {
    type RxToken<'d>
        = RxBuf<'d>
    where
        Self: 'd;
    type TxToken<'d>
        = NetmapTx<'d, 'd, O>
    where
        Self: 'd;

    fn receive(&mut self, _t: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let rx = self.port.rx_ring(self.ring).ok()?;
        let mut got = rx.pop(&mut self.rx);
        if matches!(got, Ok(None)) {
            // Empty as far as we know: release what we took and look for more (one RXSYNC).
            DeviceStats::bump(&self.stats.calls);
            self.port.rxsync().ok()?;
            got = self.port.rx_ring(self.ring).ok()?.pop(&mut self.rx);
        }
        let n = match got {
            Ok(Some(n)) => n.min(self.rx.len()),
            Ok(None) => return None,
            Err(_) => {
                DeviceStats::bump(&self.stats.dropped);
                return None;
            }
        };
        DeviceStats::bump(&self.stats.rx_frames);
        Some((RxBuf(&self.rx[..n]), NetmapTx { dev: self }))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Self::TxToken<'_>> {
        Some(NetmapTx { dev: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        caps()
    }
}
