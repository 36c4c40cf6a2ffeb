//! One end of a TCP transfer on a smoltcp stack of its own, over either of ptnetd's schemes
//! (`ptnet-smol`): the frame-per-call [`NetworkDevice`](crate::client::smol::NetworkDevice) on
//! `network.*` or the batched [`NetmapDevice`](crate::client::smol::NetmapDevice) on
//! `netmap.*`. The sender writes `bytes` bytes of the [`stream_byte`] pattern and closes; the
//! receiver accepts one connection, checks every byte against the pattern, hashes it
//! (SHA-256) and reports when the sender has closed. Between polls a peer waits for its
//! device's readiness (`EVENT_READ`) no longer than smoltcp's next timer, so it sleeps
//! when idle instead of spinning.

use crate::client::smol::{DeviceStats, NetmapDevice, NetworkDevice};
use crate::client::{ClientError, Os};
use sha2::{Digest, Sha256};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Address};
use std::fmt;
use std::time::{Duration, Instant};
use syscall::flag::EventFlags;

/// Byte `i` of every transfer's stream (a fixed pseudo-random pattern, so a receiver or a
/// capture can check each byte without a second channel).
pub fn stream_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

/// What a peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accept one connection on this port and read until the sender closes.
    Receive {
        /// Local TCP port.
        port: u16,
    },
    /// Connect to `peer`, send the bytes, close.
    Send {
        /// The receiver.
        peer: (Ipv4Address, u16),
    },
}

/// A peer's settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Our MAC (the NIC's).
    pub mac: [u8; 6],
    /// Our address and prefix.
    pub ip: (Ipv4Address, u8),
    /// Send or receive.
    pub role: Role,
    /// Bytes to send, or expected.
    pub bytes: u64,
    /// Longest the transfer may take.
    pub timeout: Duration,
}

/// What a peer saw.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// Bytes sent or received.
    pub bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    /// Received bytes that differ from the pattern (0 for a sender).
    pub bad_bytes: u64,
    /// Seconds from the first poll to the end.
    pub secs: f64,
    /// Frames the device moved (both directions).
    pub frames: u64,
    /// Scheme calls the device made.
    pub calls: u64,
}

impl PeerReport {
    /// Payload throughput.
    pub fn mbit_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }

    /// Scheme calls per frame.
    pub fn calls_per_frame(&self) -> f64 {
        self.calls as f64 / self.frames.max(1) as f64
    }
}

impl fmt::Display for PeerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes in {:.2} s ({:.1} Mbit/s), sha256 {}, {} frames, {:.2} scheme calls/frame",
            self.bytes,
            self.secs,
            self.mbit_s(),
            self.sha256,
            self.frames,
            self.calls_per_frame()
        )
    }
}

/// Why a peer failed.
#[derive(Debug)]
pub enum PeerError {
    /// The scheme refused something.
    Client(ClientError),
    /// smoltcp refused a socket operation.
    Tcp(String),
    /// The transfer did not finish in time.
    Timeout {
        /// Bytes moved by then.
        bytes: u64,
        /// The socket's state.
        state: String,
    },
    /// The connection ended before all the bytes arrived.
    Short {
        /// Bytes received.
        got: u64,
    },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(e) => write!(f, "scheme: {e}"),
            Self::Tcp(e) => write!(f, "tcp: {e}"),
            Self::Timeout { bytes, state } => {
                write!(f, "timed out after {bytes} bytes (socket {state})")
            }
            Self::Short { got } => write!(f, "the connection closed after {got} bytes"),
        }
    }
}

impl std::error::Error for PeerError {}

impl From<ClientError> for PeerError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// A smoltcp device over one of ptnetd's schemes that can wait for frames.
pub trait WaitDevice: Device {
    /// Hands queued frames over (a batched device's TXSYNC); nothing for frame per call.
    fn flush(&mut self) -> Result<(), ClientError>;
    /// Waits until frames may be readable or `timeout` passes.
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), ClientError>;
    /// Counters.
    fn counters(&self) -> &DeviceStats;
}

impl<O: Os> WaitDevice for NetworkDevice<'_, O> {
    fn flush(&mut self) -> Result<(), ClientError> {
        Ok(())
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.wait(EventFlags::EVENT_READ, timeout).map(|_| ())
    }

    fn counters(&self) -> &DeviceStats {
        self.stats()
    }
}

impl<O: Os> WaitDevice for NetmapDevice<'_, O> {
    fn flush(&mut self) -> Result<(), ClientError> {
        NetmapDevice::flush(self)
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.port_mut().wait(EventFlags::EVENT_READ, timeout).map(|_| ())
    }

    fn counters(&self) -> &DeviceStats {
        self.stats()
    }
}

/// Runs one peer on `dev` until its side of the transfer is complete.
pub fn run<D: WaitDevice>(dev: &mut D, cfg: &PeerConfig) -> Result<PeerReport, PeerError> {
    let hw = HardwareAddress::Ethernet(EthernetAddress(cfg.mac));
    let mut iface = Interface::new(Config::new(hw), dev, SmolInstant::now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(cfg.ip.0.into(), cfg.ip.1));
    });
    let buf = || tcp::SocketBuffer::new(vec![0; 256 * 1024]);
    let mut sockets = SocketSet::new(vec![]);
    let h = sockets.add(tcp::Socket::new(buf(), buf()));
    let tcp_err = |e: &dyn fmt::Display| PeerError::Tcp(e.to_string());
    match cfg.role {
        Role::Receive { port } => {
            sockets.get_mut::<tcp::Socket>(h).listen(port).map_err(|e| tcp_err(&e))?
        }
        Role::Send { peer } => {
            let local = 49152 + (std::process::id() % 16384) as u16;
            let ep = IpEndpoint::new(peer.0.into(), peer.1);
            sockets
                .get_mut::<tcp::Socket>(h)
                .connect(iface.context(), ep, local)
                .map_err(|e| tcp_err(&e))?
        }
    }
    let sending = matches!(cfg.role, Role::Send { .. });
    let (mut done, mut bad, mut hash) = (0u64, 0u64, Sha256::new());
    let mut connected = false;
    let t0 = Instant::now();
    loop {
        let now = SmolInstant::now();
        iface.poll(now, dev, &mut sockets);
        dev.flush()?;
        let s = sockets.get_mut::<tcp::Socket>(h);
        connected |= s.is_active() && s.may_send() || s.may_recv();
        if sending {
            while s.can_send() && done < cfg.bytes {
                let n = s
                    .send(|b| {
                        let n = b.len().min((cfg.bytes - done) as usize);
                        for (k, x) in b[..n].iter_mut().enumerate() {
                            *x = stream_byte(done as usize + k);
                        }
                        hash.update(&b[..n]);
                        (n, n)
                    })
                    .map_err(|e| tcp_err(&e))?;
                done += n as u64;
            }
            if done == cfg.bytes && s.send_queue() == 0 && s.may_send() {
                s.close(); // FIN once everything is acknowledged
            }
            // Complete when our FIN was acknowledged (or the peer closed too).
            if done == cfg.bytes && connected && !s.is_open() {
                break;
            }
        } else {
            while s.can_recv() {
                let n = s
                    .recv(|b| {
                        for (k, &x) in b.iter().enumerate() {
                            bad += u64::from(x != stream_byte(done as usize + k));
                        }
                        hash.update(&*b);
                        (b.len(), b.len())
                    })
                    .map_err(|e| tcp_err(&e))?;
                done += n as u64;
            }
            if connected && !s.may_recv() {
                // The sender closed: answer with our FIN and flush it out.
                s.close();
                iface.poll(SmolInstant::now(), dev, &mut sockets);
                dev.flush()?;
                if done != cfg.bytes {
                    return Err(PeerError::Short { got: done });
                }
                break;
            }
        }
        if t0.elapsed() > cfg.timeout {
            let state = sockets.get::<tcp::Socket>(h).state().to_string();
            return Err(PeerError::Timeout { bytes: done, state });
        }
        // Sleep until a frame may have arrived or smoltcp's next timer, whichever is first.
        let delay = iface.poll_delay(SmolInstant::now(), &sockets);
        let delay =
            delay.map_or(Duration::from_millis(50), |d| Duration::from_micros(d.total_micros()));
        if !delay.is_zero() {
            dev.wait_rx(delay.min(Duration::from_millis(50)))?;
        }
    }
    let st = dev.counters();
    Ok(PeerReport {
        bytes: done,
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        bad_bytes: bad,
        secs: t0.elapsed().as_secs_f64(),
        frames: st.rx_frames.get() + st.tx_frames.get(),
        calls: st.calls.get(),
    })
}
