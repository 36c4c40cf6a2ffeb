//! `network.<pci-name>_ptnet`: stack mode (scheme-spec `network.md`). One frame per read or
//! write, copied between the caller's buffer and netmap buffers of the rings the stack owns by
//! the driver's copy path (ptnet.md §8.5), with its batching: frames are published every 64
//! frames and at the end of each batch of requests ([`flush`]).

use super::{copy_err, driver_err, Daemon, Handle, Owner, Which};
use crate::abi::netmap::NETMAP_MAX_FRAGS;
use crate::abi::vnet::{self, VirtioNetHdr};
use crate::driver::copy::CopyError;
use crate::driver::Ptnet;
use crate::inet;
use crate::platform::Platform;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::data::Stat;
use syscall::error::{
    Error, Result, EAGAIN, EBADF, EINVAL, EMSGSIZE, ENETDOWN, EOPNOTSUPP, EWOULDBLOCK,
};
use syscall::flag::{EventFlags, MapFlags, MODE_FILE, O_NONBLOCK};
use syscall::schemev2::NewFdFlags;

/// Largest frame a write accepts: MTU 1500 plus the Ethernet header (scheme-spec N5).
pub const MAX_FRAME: usize = 1514;
/// Shortest frame a write accepts: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Frames shorter than this are padded with zeros (N5).
pub const PAD_TO: usize = 60;

/// The stack's per-device state: a scratch buffer for received frames (a frame may be longer
/// than the caller's buffer and is then truncated, N4), the RX round-robin position and the
/// rings written or read since the last end of batch.
#[derive(Debug)]
pub(crate) struct StackState {
    scratch: Vec<u8>,
    rx_next: u32,
    tx_ring: Option<u32>,
    dirty: Vec<bool>,
}

impl StackState {
    pub(crate) fn new<P: Platform>(nic: &Ptnet<P>) -> Self {
        let info = nic.info();
        let scratch = vec![0u8; NETMAP_MAX_FRAGS * info.buf_size as usize];
        Self { scratch, rx_next: 0, tx_ring: None, dirty: vec![false; nic.num_rings() as usize] }
    }
}

/// `true` if the stack serves ring `i` (N7).
fn stack_owns<P: Platform>(d: &Daemon<P>, i: u32) -> bool {
    d.owners.get(i as usize) == Some(&Owner::Stack)
}

fn stack_tx_ring<P: Platform>(d: &mut Daemon<P>) -> Option<u32> {
    let i = match d.stack.tx_ring.filter(|&i| stack_owns(d, i)) {
        Some(i) => i,
        None => (0..d.nic.info().tx_rings).find(|&i| stack_owns(d, i))?,
    };
    d.stack.tx_ring = Some(i);
    Some(i)
}

/// Receives one frame from the stack's RX rings, round-robin, into `buf` (N4, N7). Frames the
/// host laid out badly are dropped and the next one is tried.
fn recv<P: Platform>(d: &mut Daemon<P>, buf: &mut [u8]) -> Result<Option<usize>> {
    // Round-robin over the RX rings the stack owns, without allocating (one call per frame).
    let (tx, n) = (d.nic.info().tx_rings, d.nic.info().rx_rings);
    let start = d.stack.rx_next % n.max(1);
    for k in 0..n {
        let j = (start + k) % n;
        let i = tx + j;
        if !stack_owns(d, i) {
            continue;
        }
        // A bounded number of bad frames per ring per call: each one consumes slots.
        for _ in 0..d.nic.ring(i).map_or(0, |r| r.num_slots()) {
            match d.nic.recv(i, &mut d.stack.scratch) {
                Ok(Some(r)) => {
                    d.stack.dirty[i as usize] = true;
                    d.stack.rx_next = (j + 1) % n;
                    let len = r.len;
                    if let Some(h) = r.hdr.filter(|h| h.flags & vnet::F_NEEDS_CSUM != 0) {
                        finish_checksum(&mut d.stack.scratch[..len], &h);
                    }
                    let c = len.min(buf.len());
                    buf[..c].copy_from_slice(&d.stack.scratch[..c]);
                    d.stats.frames_read += 1;
                    return Ok(Some(c));
                }
                Ok(None) => break,
                Err(CopyError::Driver(e)) => return Err(driver_err(e)),
                Err(e) => {
                    d.stack.dirty[i as usize] = true;
                    log::debug!("ptnetd: rx ring {i}: frame dropped: {e}");
                }
            }
        }
    }
    Ok(None)
}

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (ptnet.md §10, scheme-spec N4): the netstack cannot take a
/// partial checksum, so it is completed here. A header pointing outside the frame is ignored (the
/// frame is delivered as is).
fn finish_checksum(frame: &mut [u8], h: &VirtioNetHdr) {
    let (start, off) = (h.csum_start as usize, h.csum_offset as usize);
    if !inet::complete_partial(frame, start, off) {
        log::debug!("ptnetd: NEEDS_CSUM outside the frame ({start}+{off})");
    }
}

fn send<P: Platform>(d: &mut Daemon<P>, frame: &[u8], nonblock: bool) -> Result<usize> {
    if frame.len() < MIN_FRAME {
        return Err(Error::new(EINVAL));
    }
    if frame.len() > MAX_FRAME {
        return Err(Error::new(EMSGSIZE));
    }
    let i = stack_tx_ring(d).ok_or(Error::new(ENETDOWN))?;
    let mut padded = [0u8; PAD_TO];
    let out = if frame.len() < PAD_TO {
        padded[..frame.len()].copy_from_slice(frame);
        &padded[..]
    } else {
        frame
    };
    match d.nic.send(i, out, None) {
        Ok(()) => {
            d.stack.dirty[i as usize] = true;
            d.stats.frames_written += 1;
            Ok(frame.len())
        }
        Err(CopyError::Full) if nonblock => Err(Error::new(EAGAIN)),
        Err(CopyError::Full) => Err(Error::new(EWOULDBLOCK)),
        Err(CopyError::TooLong(_)) => Err(Error::new(EMSGSIZE)),
        Err(e) => Err(copy_err(e)),
    }
}

/// End of a batch: publish what the stack wrote and release what it read (ptnet.md §8.5).
pub(crate) fn flush<P: Platform>(d: &mut Daemon<P>) {
    let tx = d.nic.info().tx_rings;
    for i in 0..d.stack.dirty.len() {
        if !std::mem::take(&mut d.stack.dirty[i]) || d.owners[i] != Owner::Stack {
            continue;
        }
        let r = if (i as u32) < tx { d.nic.flush_tx(i as u32) } else { d.nic.flush_rx(i as u32) };
        if let Err(e) = r {
            log::warn!("ptnetd: flush of ring {i}: {e}");
        }
    }
}

fn rx_pending<P: Platform>(d: &mut Daemon<P>) -> bool {
    let tx = d.nic.info().tx_rings;
    (tx..d.nic.num_rings()).any(|i| stack_owns(d, i) && d.nic.rx_pending(i).is_ok_and(|n| n > 0))
}

/// `EVENT_READ` for every data handle that asked for it while a frame is pending (N8).
pub(crate) fn events<P: Platform>(d: &mut Daemon<P>, out: &mut Vec<(Which, usize, usize)>) {
    let ids: Vec<usize> = d
        .handles
        .iter()
        .filter(|(_, h)| matches!(h, Handle::NetData { read_events: true }))
        .map(|(id, _)| *id)
        .collect();
    if !ids.is_empty() && rx_pending(d) {
        out.extend(ids.into_iter().map(|id| (Which::Network, id, EventFlags::EVENT_READ.bits())));
    }
}

/// The `network` scheme: a view of the daemon (one per dispatch).
#[derive(Debug)]
pub struct NetworkView<'a, P: Platform>(pub &'a mut Daemon<P>);

impl<P: Platform> NetworkView<'_, P> {
    fn data_or_mac(&self, id: usize) -> Result<&Handle> {
        match self.0.handle(Which::Network, id)? {
            Handle::Root(_) => Err(Error::new(EBADF)),
            h => Ok(h),
        }
    }
}

impl<P: Platform> SchemeSync for NetworkView<'_, P> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(self.0.root(Which::Network))
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        self.0.check_open(Which::Network, fd, ctx)?;
        let (h, flags) = match path {
            "" => (Handle::NetData { read_events: false }, NewFdFlags::empty()),
            "mac" => (Handle::NetMac, NewFdFlags::POSITIONED),
            _ => return Err(Error::new(EINVAL)),
        };
        Ok(OpenResult::ThisScheme { number: self.0.insert(h), flags })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        fcntl_flags: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.data_or_mac(id)? {
            Handle::NetMac => {
                let mac = self.0.nic.info().mac;
                let from = (offset.min(6)) as usize;
                let n = (6 - from).min(buf.len());
                buf[..n].copy_from_slice(&mac[from..from + n]);
                Ok(n)
            }
            _ => match recv(self.0, buf)? {
                Some(n) => Ok(n),
                None if fcntl_flags as usize & O_NONBLOCK != 0 => Err(Error::new(EAGAIN)),
                None => Err(Error::new(EWOULDBLOCK)),
            },
        }
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        fcntl_flags: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.data_or_mac(id)? {
            Handle::NetMac => Err(Error::new(EBADF)),
            _ => send(self.0, buf, fcntl_flags as usize & O_NONBLOCK != 0),
        }
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        let want = flags.contains(EventFlags::EVENT_READ);
        match self.0.handles.get_mut(&id) {
            Some(Handle::NetData { read_events }) => *read_events = want,
            Some(Handle::NetMac) => return Ok(EventFlags::empty()),
            _ => return Err(Error::new(EBADF)),
        }
        if want && rx_pending(self.0) {
            return Ok(EventFlags::EVENT_READ);
        }
        Ok(EventFlags::empty())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = match self.data_or_mac(id)? {
            Handle::NetMac => "mac",
            _ => "",
        };
        Ok(self.0.fpath(Which::Network, path, buf))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let (mode, size) = match self.data_or_mac(id)? {
            Handle::NetMac => (MODE_FILE | 0o400, 6),
            _ => (MODE_FILE | 0o700, 0),
        };
        stat.st_mode = mode;
        stat.st_size = size;
        Ok(())
    }

    fn fsize(&mut self, id: usize, _ctx: &CallerCtx) -> Result<u64> {
        Ok(match self.data_or_mac(id)? {
            Handle::NetMac => 6,
            _ => 0,
        })
    }

    fn fsync(&mut self, id: usize, _ctx: &CallerCtx) -> Result<()> {
        self.data_or_mac(id)?;
        flush(self.0);
        Ok(())
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        _offset: u64,
        _size: usize,
        _flags: MapFlags,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.data_or_mac(id)?;
        Err(Error::new(EOPNOTSUPP))
    }

    fn call(
        &mut self,
        id: usize,
        _payload: &mut [u8],
        _metadata: &[u64],
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.data_or_mac(id)?;
        Err(Error::new(EOPNOTSUPP))
    }

    fn on_close(&mut self, id: usize) {
        self.0.close(id);
    }
}
