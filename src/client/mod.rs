//! The zero-copy client library (scheme-spec `netmap.md` M8): open a `netmap` handle, map the
//! shared region, view the bound rings and their slots, read and write buffers in place, sync
//! and wait. It knows the scheme contract ([`crate::abi::nmscheme`]) and the netmap layout
//! ([`crate::nm`]) only: everything it reads from the mapping (the netmap_if, ring headers,
//! slots the host filled) is checked before it is used, so a bad daemon or host gives an error,
//! never an access outside the mapping.
//!
//! An [`Os`] carries the calls: Redox's system calls ([`redox::RedoxOs`]), or on the host the
//! in-process kernel of [`crate::scheme::host`] ([`host::HostOs`]): one client API on both. Its
//! `mmap` yields a bounds-checked [`Region`]; `unsafe` is confined to Redox's mapping code.

#[cfg(not(target_os = "redox"))]
pub mod host;
#[cfg(target_os = "redox")]
pub mod redox;
pub mod smol;

use crate::abi::netmap::NETMAP_MAX_FRAGS;
use crate::abi::nmscheme::{NmInfo, INFO_LEN, INFO_VERSION, OP_INFO, OP_RXSYNC, OP_TXSYNC};
use crate::nm::{rx_ring_ofs_index, tx_ring_ofs_index, IfView, RingView, Slot, ViewError};
use crate::ring;
use crate::shm::{Region, ShmError};
use core::fmt;
use std::time::Duration;

pub use syscall::flag::EventFlags;

/// Errors of the client library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The daemon answered with this errno.
    Errno(i32),
    /// The `INFO` reply is not one this library understands.
    BadInfo(String),
    /// The mapped netmap structures are inconsistent.
    Layout(ViewError),
    /// A buffer index or length outside the buffer pool.
    BadBuffer {
        /// Buffer index.
        buf_idx: u32,
        /// Length asked for.
        len: usize,
    },
    /// No such bound ring.
    NoRing(u32),
    /// A slot index outside the ring.
    BadSlot(u32),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Errno(e) => write!(f, "scheme error {e}"),
            Self::BadInfo(s) => write!(f, "bad INFO reply: {s}"),
            Self::Layout(e) => write!(f, "{e}"),
            Self::BadBuffer { buf_idx, len } => {
                write!(f, "buffer {buf_idx} ({len} bytes) out of the pool")
            }
            Self::NoRing(k) => write!(f, "ring {k} is not bound"),
            Self::BadSlot(i) => write!(f, "slot {i} out of the ring"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<syscall::error::Error> for ClientError {
    fn from(e: syscall::error::Error) -> Self {
        Self::Errno(e.errno)
    }
}

impl From<ViewError> for ClientError {
    fn from(e: ViewError) -> Self {
        Self::Layout(e)
    }
}

impl From<ShmError> for ClientError {
    fn from(e: ShmError) -> Self {
        Self::Layout(ViewError::Shm(e))
    }
}

/// What a client needs from its operating system to use a scheme: Redox's system calls
/// ([`redox::RedoxOs`]) or, on the host, the in-process kernel ([`host::HostOs`]). Paths are
/// Redox paths: `/scheme/<scheme name>/<path in the scheme>`.
pub trait Os {
    /// Opens `path` with `flags` (`O_RDWR`, `O_NONBLOCK`, ...); returns a descriptor.
    fn open(&self, path: &str, flags: usize) -> Result<usize, ClientError>;
    /// `read` (positioned at `offset` for handles that have positions).
    fn read(&self, fd: usize, buf: &mut [u8], offset: u64) -> Result<usize, ClientError>;
    /// `write`.
    fn write(&self, fd: usize, buf: &[u8]) -> Result<usize, ClientError>;
    /// `call(fd, payload, metadata)`.
    fn call(&self, fd: usize, payload: &mut [u8], metadata: &[u64]) -> Result<usize, ClientError>;
    /// Subscribes `fd` to `flags` on the client's event queue.
    fn subscribe(&self, fd: usize, flags: EventFlags) -> Result<(), ClientError>;
    /// Waits until an event in `flags` arrives for `fd` or `timeout` passes (empty on timeout).
    fn wait_event(
        &self,
        fd: usize,
        flags: EventFlags,
        timeout: Duration,
    ) -> Result<EventFlags, ClientError>;
    /// `mmap(fd, 0, len, PROT_READ | PROT_WRITE, MAP_SHARED)` as a bounds-checked region.
    fn mmap(&self, fd: usize, len: usize) -> Result<Region, ClientError>;
    /// Closes `fd`.
    fn close(&self, fd: usize);
}

/// Takes the events in `flags` that are pending for `fd` in `pending` (what `Os::wait_event`
/// implementations keep between waits).
fn take_pending(
    pending: &mut std::collections::HashMap<usize, EventFlags>,
    fd: usize,
    flags: EventFlags,
) -> EventFlags {
    let e = pending.entry(fd).or_default();
    let got = *e & flags;
    e.remove(got);
    got
}

/// An open descriptor of an [`Os`], closed on drop.
#[derive(Debug)]
pub struct Fd<'a, O: Os> {
    os: &'a O,
    fd: usize,
}

impl<'a, O: Os> Fd<'a, O> {
    /// Opens `path` with `flags`.
    pub fn open(os: &'a O, path: &str, flags: usize) -> Result<Self, ClientError> {
        Ok(Self { os, fd: os.open(path, flags)? })
    }

    /// The descriptor number.
    pub fn raw(&self) -> usize {
        self.fd
    }

    /// The operating system it belongs to.
    pub fn os(&self) -> &'a O {
        self.os
    }

    /// `read` at offset 0 (frame handles ignore the offset).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, ClientError> {
        self.os.read(self.fd, buf, 0)
    }

    /// `write`.
    pub fn write(&self, buf: &[u8]) -> Result<usize, ClientError> {
        self.os.write(self.fd, buf)
    }
}

impl<O: Os> Drop for Fd<'_, O> {
    fn drop(&mut self) {
        self.os.close(self.fd);
    }
}

/// The path of `netmap.<pci-name>_ptnet/<binding>` (scheme-spec M1, M2).
pub fn netmap_path(pci_name: &str, binding: &str) -> String {
    format!("/scheme/netmap.{pci_name}_ptnet/{binding}")
}

/// The path of `network.<pci-name>_ptnet/<path>` (scheme-spec N1, N2).
pub fn network_path(pci_name: &str, path: &str) -> String {
    format!("/scheme/network.{pci_name}_ptnet/{path}")
}

/// A bound netmap port: the geometry, the mapping and views of the bound rings.
pub struct NetmapPort<'a, O: Os> {
    fd: Fd<'a, O>,
    info: NmInfo,
    region: Region,
    tx: Vec<RingView>,
    rx: Vec<RingView>,
    subscribed: EventFlags,
    /// Offset in the region of buffer 0 (NETMAP_BUF's ring address + `buf_ofs`, §7.1), read
    /// once from the first bound ring and checked at open; `None` if no ring is bound or the
    /// host's `buf_ofs` points outside the mapping.
    pool: Option<usize>,
}

impl<O: Os> fmt::Debug for NetmapPort<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetmapPort({:?})", self.info)
    }
}

fn check_info(i: &NmInfo) -> Result<(), ClientError> {
    let bad = |s: &str| Err(ClientError::BadInfo(s.into()));
    if i.version != INFO_VERSION {
        return bad("version");
    }
    if i.first_tx > i.last_tx
        || i.last_tx > i.tx_rings
        || i.first_rx > i.last_rx
        || i.last_rx > i.rx_rings
    {
        return bad("bound rings");
    }
    if i.buf_size == 0 || i.buf_num < 2 || usize::try_from(i.mem_size).is_err() {
        return bad("buffers");
    }
    Ok(())
}

impl<'a, O: Os> NetmapPort<'a, O> {
    /// Opens `netmap.<pci_name>_ptnet/<binding>` (M2) and maps its region.
    pub fn open(os: &'a O, pci_name: &str, binding: &str) -> Result<Self, ClientError> {
        let fd = Fd::open(os, &netmap_path(pci_name, binding), syscall::flag::O_RDWR)?;
        Self::new(fd)
    }

    /// Reads the geometry of the open handle `fd`, maps the region and builds views of the bound
    /// rings (each checked to lie inside the mapping, with the slot count `INFO` gives).
    pub fn new(fd: Fd<'a, O>) -> Result<Self, ClientError> {
        let mut b = [0u8; INFO_LEN];
        fd.os.call(fd.fd, &mut b, &[OP_INFO])?;
        let info = NmInfo::decode(&b).ok_or_else(|| ClientError::BadInfo("short".into()))?;
        check_info(&info)?;
        let region = fd.os.mmap(fd.fd, info.mem_size as usize)?;
        let nifp =
            region.sub(info.nifp_offset as usize, region.len() - info.nifp_offset as usize)?;
        let (ifv, counts) = IfView::new(&nifp)?;
        let ring = |k: usize, n: u32| -> Result<RingView, ClientError> {
            let ofs = ifv.ring_ofs(k).ok_or(ClientError::NoRing(k as u32))?;
            let at = (info.nifp_offset as i64).checked_add(ofs).filter(|&a| a >= 0);
            let at = at.ok_or(ClientError::Layout(ViewError::BadField {
                field: "ring_ofs",
                value: ofs as u64,
            }))?;
            let at = at as usize;
            let r = region.sub(at, region.len().saturating_sub(at))?;
            Ok(RingView::with_slots(&r, n)?)
        };
        let tx: Vec<RingView> = (info.first_tx..info.last_tx)
            .map(|k| ring(tx_ring_ofs_index(k), info.tx_slots))
            .collect::<Result<_, _>>()?;
        let rx: Vec<RingView> = (info.first_rx..info.last_rx)
            .map(|k| ring(rx_ring_ofs_index(&counts, k), info.rx_slots))
            .collect::<Result<_, _>>()?;
        let pool = tx.first().or(rx.first()).and_then(|r: &RingView| {
            let ring_at = (r.region().addr() - region.addr()) as i64;
            let base = ring_at.checked_add(r.buf_ofs()).filter(|&o| o >= 0)? as usize;
            (base <= region.len()).then_some(base)
        });
        Ok(Self { fd, info, region, tx, rx, subscribed: EventFlags::empty(), pool })
    }

    /// The geometry.
    pub fn info(&self) -> &NmInfo {
        &self.info
    }

    /// The descriptor.
    pub fn fd(&self) -> &Fd<'a, O> {
        &self.fd
    }

    /// Bound TX ring `k` (netmap numbering).
    pub fn tx_ring(&self, k: u32) -> Result<Ring<'_, 'a, O>, ClientError> {
        let v = k.checked_sub(self.info.first_tx).and_then(|j| self.tx.get(j as usize));
        v.map(|view| Ring { view, port: self }).ok_or(ClientError::NoRing(k))
    }

    /// Bound RX ring `k`.
    pub fn rx_ring(&self, k: u32) -> Result<Ring<'_, 'a, O>, ClientError> {
        let v = k.checked_sub(self.info.first_rx).and_then(|j| self.rx.get(j as usize));
        v.map(|view| Ring { view, port: self }).ok_or(ClientError::NoRing(k))
    }

    /// Publishes every bound TX ring's head/cur and reclaims completed slots (M3.2).
    pub fn txsync(&self) -> Result<(), ClientError> {
        self.fd.os.call(self.fd.fd, &mut [], &[OP_TXSYNC]).map(|_| ())
    }

    /// Releases consumed RX slots and exposes newly received ones (M3.3).
    pub fn rxsync(&self) -> Result<(), ClientError> {
        self.fd.os.call(self.fd.fd, &mut [], &[OP_RXSYNC]).map(|_| ())
    }

    /// Waits until `flags` (`EVENT_READ`: frames to read; `EVENT_WRITE`: TX space) hold, or
    /// `timeout` passes; returns the flags that hold (M6).
    pub fn wait(
        &mut self,
        flags: EventFlags,
        timeout: Duration,
    ) -> Result<EventFlags, ClientError> {
        if self.subscribed != flags {
            self.subscribed = flags;
            self.fd.os.subscribe(self.fd.fd, flags)?;
        }
        self.fd.os.wait_event(self.fd.fd, flags, timeout)
    }

    fn buf_off(&self, buf_idx: u32, len: usize) -> Result<usize, ClientError> {
        let bad = || ClientError::BadBuffer { buf_idx, len };
        let pool = self.pool.ok_or(ClientError::NoRing(0))?;
        let bs = self.info.buf_size as usize;
        if buf_idx < 2 || buf_idx >= self.info.buf_num || len > bs {
            return Err(bad());
        }
        // NETMAP_BUF: pool + idx × buf_size (§7.1), checked against the mapping.
        let off = pool.checked_add(buf_idx as usize * bs).ok_or_else(bad)?;
        match off.checked_add(len) {
            Some(end) if end <= self.region.len() => Ok(off),
            _ => Err(bad()),
        }
    }
}

/// One bound ring of a [`NetmapPort`]. Its `head`/`cur` are the client's to write; `tail` is
/// the daemon's. Slots handed to the client by the host are checked before their buffers are
/// touched.
#[derive(Debug)]
pub struct Ring<'r, 'a, O: Os> {
    view: &'r RingView,
    port: &'r NetmapPort<'a, O>,
}

impl<O: Os> Ring<'_, '_, O> {
    /// Number of slots.
    pub fn num_slots(&self) -> u32 {
        self.view.num_slots()
    }

    /// `head` (first slot owned by the client).
    pub fn head(&self) -> u32 {
        self.view.head() % self.num_slots()
    }

    /// `cur`.
    pub fn cur(&self) -> u32 {
        self.view.cur() % self.num_slots()
    }

    /// `tail` as the daemon last set it; a value out of range reads as `head` (nothing owned).
    pub fn tail(&self) -> u32 {
        let t = self.view.tail();
        if t < self.num_slots() {
            t
        } else {
            self.head()
        }
    }

    /// Sets `cur` then `head` (what the next sync hands over).
    pub fn set_head_cur(&self, head: u32, cur: u32) {
        self.view.set_cur(cur);
        self.view.set_head(head);
    }

    /// `(i + 1) mod N`.
    pub fn next(&self, i: u32) -> u32 {
        ring::next(i, self.num_slots())
    }

    /// Slots between `head` and `tail`: free slots (TX) or received ones (RX).
    pub fn space(&self) -> u32 {
        ring::dist(self.head(), self.tail(), self.num_slots())
    }

    /// Slot `i`.
    pub fn slot(&self, i: u32) -> Result<Slot, ClientError> {
        if i >= self.num_slots() {
            return Err(ClientError::BadSlot(i));
        }
        Ok(self.view.slot(i))
    }

    /// Writes slot `i`.
    pub fn set_slot(&self, i: u32, s: Slot) -> Result<(), ClientError> {
        if i >= self.num_slots() {
            return Err(ClientError::BadSlot(i));
        }
        self.view.set_slot(i, s);
        Ok(())
    }

    /// Copies `data` into buffer `buf_idx` (in place in the shared region).
    pub fn write_buf(&self, buf_idx: u32, at: usize, data: &[u8]) -> Result<(), ClientError> {
        let off = self.port.buf_off(buf_idx, at.saturating_add(data.len()))?;
        Ok(self.port.region.write_bytes(off + at, data)?)
    }

    /// Copies `out.len()` bytes of buffer `buf_idx` from `at` into `out`.
    pub fn read_buf(&self, buf_idx: u32, at: usize, out: &mut [u8]) -> Result<(), ClientError> {
        let off = self.port.buf_off(buf_idx, at.saturating_add(out.len()))?;
        Ok(self.port.region.read_bytes(off + at, out)?)
    }

    /// TX: puts one frame (split over slots with `NS_MOREFRAG` when longer than a buffer) at
    /// `head` and advances `head`/`cur` past it. `Ok(false)`: not enough free slots now.
    pub fn push(&self, frame: &[u8]) -> Result<bool, ClientError> {
        let bs = self.port.info.buf_size as usize;
        let need = frame.len().div_ceil(bs).max(1);
        if need > NETMAP_MAX_FRAGS || need as u32 >= self.num_slots() {
            return Err(ClientError::BadBuffer { buf_idx: 0, len: frame.len() });
        }
        if (self.space() as usize) < need {
            return Ok(false);
        }
        let mut h = self.head();
        for (k, chunk) in
            frame.chunks(bs).chain(frame.is_empty().then_some(&frame[..0])).enumerate()
        {
            let s = self.slot(h)?;
            self.write_buf(s.buf_idx, 0, chunk)?;
            let more = if k + 1 < need { crate::abi::netmap::NS_MOREFRAG } else { 0 };
            self.set_slot(h, Slot { buf_idx: s.buf_idx, len: chunk.len() as u16, flags: more })?;
            h = self.next(h);
        }
        self.set_head_cur(h, h);
        Ok(true)
    }

    /// RX: takes the frame at `head` into `out` (truncated to `out.len()`), advances
    /// `head`/`cur` past its slots and returns its full length. `Ok(None)`: no complete frame.
    /// A slot the host filled with a bad buffer index or length is an error (the frame's slots
    /// are skipped).
    pub fn pop(&self, out: &mut [u8]) -> Result<Option<usize>, ClientError> {
        let avail = self.space();
        let mut h = self.head();
        let (mut total, mut k) = (0usize, 0u32);
        let mut bad = None;
        loop {
            if k >= avail {
                return Ok(None); // empty, or a chain whose end has not arrived yet
            }
            let s = self.slot(h)?;
            let len = s.len as usize;
            if bad.is_none() && total < out.len() {
                let n = len.min(out.len() - total);
                if let Err(e) = self.read_buf(s.buf_idx, 0, &mut out[total..total + n]) {
                    bad = Some(e);
                }
            }
            total += len;
            h = self.next(h);
            k += 1;
            if s.flags & crate::abi::netmap::NS_MOREFRAG == 0 || k as usize >= NETMAP_MAX_FRAGS {
                break;
            }
        }
        self.set_head_cur(h, h);
        match bad {
            Some(e) => Err(e),
            None => Ok(Some(total)),
        }
    }
}
