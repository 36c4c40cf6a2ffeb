//! The stack scenarios: the two smoltcp devices of [`crate::client::smol`] driven through
//! smoltcp's `Device` trait (transmit and receive tokens, the calls an `Interface` makes), VM A
//! → VALE-like switch → VM B, host mode kloop:
//!
//! * `stack-network`: [`NetworkDevice`], one `write` per frame sent and one `read` per frame
//!   received on `network.<pci>_ptnet` (the driver's copy path copies in and out);
//! * `stack-netmap`: [`NetmapDevice`], frames pushed into and popped out of the shared rings
//!   (one copy each way, from and to smoltcp's buffer), one `TXSYNC` per `batch` frames and
//!   an `RXSYNC` when the ring looks empty.
//!
//! No TCP/IP processing is measured here: `app::system` runs TCP over both devices.

use super::zc::{header, notifications, own_port, Nic, Progress, SeqCheck, POLL, SEQ_AT};
use super::{BenchError, Cell, Measured};
use crate::client::host::HostOs;
use crate::client::smol::{DeviceStats, NetmapDevice, NetworkDevice};
use crate::client::EventFlags;
use crate::model::switch::Switch;
use crate::platform::sim::SimPlatform;
use smoltcp::phy::{Device as _, RxToken as _, TxToken as _};
use smoltcp::time::Instant as SmolInstant;
use std::sync::atomic::Ordering;
use std::sync::Barrier;
use std::time::Instant;

/// Which smoltcp device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Device {
    /// Frame per call on `network`.
    Network,
    /// Batched on `netmap`.
    Netmap,
}

type HOs<'a> = HostOs<'a, SimPlatform>;

/// One end: either device, with what the bench needs of it.
enum End<'a> {
    /// Frame per call on `network`.
    Network(NetworkDevice<'a, HOs<'a>>),
    Netmap(NetmapDevice<'a, HOs<'a>>),
}

impl<'a> End<'a> {
    fn open(os: &'a HOs<'a>, pci: &str, d: Device) -> Result<Self, BenchError> {
        Ok(match d {
            Device::Network => Self::Network(NetworkDevice::open(os, pci)?),
            Device::Netmap => Self::Netmap(NetmapDevice::open(os, pci, 0)?),
        })
    }

    fn stats(&self) -> &DeviceStats {
        match self {
            Self::Network(d) => d.stats(),
            Self::Netmap(d) => d.stats(),
        }
    }

    /// Sends frame `seq` of `len` bytes; `false` if the device refused it (ring full).
    fn send(&mut self, seq: u64, len: usize) -> bool {
        let before = self.stats().tx_frames.get();
        let fill = |b: &mut [u8]| b[..super::zc::HDR].copy_from_slice(&header(seq));
        let now = SmolInstant::now();
        match self {
            Self::Network(d) => d.transmit(now).map(|t| t.consume(len, fill)),
            Self::Netmap(d) => d.transmit(now).map(|t| t.consume(len, fill)),
        };
        self.stats().tx_frames.get() > before
    }

    /// Hands queued frames over (the batched device's flush after a poll).
    fn flush(&self) -> Result<(), BenchError> {
        match self {
            Self::Network(..) => Ok(()),
            Self::Netmap(d) => Ok(d.flush()?),
        }
    }

    /// Receives one frame and reads its sequence number.
    fn recv(&mut self) -> Option<[u8; 8]> {
        let read = |f: &[u8]| {
            let mut b = [0u8; 8];
            if let Some(s) = f.get(SEQ_AT..SEQ_AT + 8) {
                b.copy_from_slice(s);
            }
            b
        };
        let now = SmolInstant::now();
        match self {
            Self::Network(d) => d.receive(now).map(|(r, _)| r.consume(read)),
            Self::Netmap(d) => d.receive(now).map(|(r, _)| r.consume(read)),
        }
    }

    /// Waits for `flags` on the device's handle (an event wait, not a scheme call).
    fn wait(&mut self, flags: EventFlags) -> Result<(), BenchError> {
        match self {
            Self::Network(d) => {
                d.wait(flags, POLL)?;
            }
            Self::Netmap(d) => {
                d.port_mut().wait(flags, POLL)?;
            }
        }
        Ok(())
    }
}

/// stack-network or stack-netmap on two VMs on the switch.
pub(super) fn run(c: &Cell, dev: Device) -> Result<Measured, BenchError> {
    let sw = Switch::new("bench0");
    let (pa, pb) = (own_port("vm1")?, own_port("vm2")?);
    sw.attach_port(&pa);
    sw.attach_port(&pb);
    let a = Nic::new(pa, c.host_mode, 0)?;
    let b = Nic::new(pb.clone(), c.host_mode, 1)?;
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let mut ea = End::open(&oa, a.k.name(), dev)?;
    let mut eb = End::open(&ob, b.k.name(), dev)?;
    let (k0, i0) = notifications(&[&a, &b]);
    let (rx0, drop0) =
        (pb.stats.rx_frames.load(Ordering::Relaxed), sw.stats.dropped.load(Ordering::Relaxed));
    let s0 = (a.k.snapshot().scheme.frames_written, b.k.snapshot().scheme.frames_read);
    let calls0 = ea.stats().calls.get() + eb.stats().calls.get();
    let dropped = || sw.stats.dropped.load(Ordering::Relaxed) - drop0;
    let prog = Progress::default();
    let start = Barrier::new(2);
    let (sent, got) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            start.wait();
            receive(&mut eb, &prog, &dropped)
        });
        start.wait();
        let sent = send(&mut ea, c, &prog);
        (sent, h.join())
    });
    let got = got.map_err(|_| BenchError::Setup("receiver panicked".into()))?;
    let ((t0, sent), (last, got)) = (sent?, got?);
    let (k1, i1) = notifications(&[&a, &b]);
    let switch_copies = pb.stats.rx_frames.load(Ordering::Relaxed) - rx0;
    let client_copies = match dev {
        // The driver's copy path: into the TX ring on write, out of the RX ring on read.
        Device::Network => {
            let w = a.snapshot_when(|s| s.scheme.frames_written - s0.0 >= sent);
            let r = b.snapshot_when(|s| s.scheme.frames_read - s0.1 >= got);
            (w.scheme.frames_written - s0.0) + (r.scheme.frames_read - s0.1)
        }
        // smoltcp's buffer into the ring (push) and out of it (pop).
        Device::Netmap => ea.stats().tx_frames.get() + eb.stats().rx_frames.get(),
    };
    let calls = ea.stats().calls.get() + eb.stats().calls.get() - calls0;
    let m = Measured {
        sent,
        received: got,
        dropped: dropped(),
        elapsed: last.saturating_duration_since(t0),
        kicks: k1 - k0,
        interrupts: i1 - i0,
        copies: switch_copies + client_copies,
        scheme_calls: calls,
        sender_notifications: None,
    };
    drop((ea, eb));
    drop((oa, ob));
    a.stop()?;
    b.stop()?;
    Ok(m)
}

/// Sends batches of `c.batch` frames, flushing after each; waits for room when refused.
fn send(e: &mut End<'_>, c: &Cell, prog: &Progress) -> Result<(Instant, u64), BenchError> {
    let t0 = Instant::now();
    let mut seq = 0u64;
    let mut go = || -> Result<(), BenchError> {
        let deadline = t0 + c.load.time;
        while seq < c.load.frames && Instant::now() < deadline {
            let mut k = 0;
            while k < c.batch && seq < c.load.frames {
                if !e.send(seq, c.frame_len) {
                    e.flush()?;
                    e.wait(EventFlags::EVENT_WRITE)?;
                    break;
                }
                seq += 1;
                k += 1;
            }
            e.flush()?;
            prog.sent.store(seq, Ordering::Release);
        }
        Ok(())
    };
    let r = go();
    prog.finish(seq);
    r.map(|()| (t0, seq))
}

/// Receives until the sender finished and received + dropped covers what it sent.
fn receive(
    e: &mut End<'_>,
    prog: &Progress,
    dropped: &dyn Fn() -> u64,
) -> Result<(Instant, u64), BenchError> {
    let (mut got, mut last) = (0u64, Instant::now());
    let mut seqs = SeqCheck::default();
    loop {
        if let Some(b) = e.recv() {
            seqs.see_bytes(b);
            got += 1;
            last = Instant::now();
            continue;
        }
        if prog.complete(got + dropped()) {
            break;
        }
        if last.elapsed() > super::zc::STALL {
            let sent = prog.sent.load(Ordering::Acquire);
            return Err(BenchError::Stalled { sent, received: got, dropped: dropped() });
        }
        e.wait(EventFlags::EVENT_READ)?;
    }
    if seqs.backwards > 0 {
        return Err(BenchError::Corrupt { what: "frames out of sequence", count: seqs.backwards });
    }
    Ok((last, got))
}
