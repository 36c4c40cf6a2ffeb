//! The zero-copy client library (scheme-spec `netmap.md` M8): open a `netmap` handle, map the
//! shared region, view the bound rings and their slots, read and write buffers in place, sync
//! and wait. It knows the scheme contract ([`crate::abi::nmscheme`]) and the netmap layout
//! ([`crate::nm`]) only: everything it reads from the mapping (the netmap_if, ring headers,
//! slots the host filled) is checked before it is used, so a bad daemon or host gives an error,
//! never an access outside the mapping.
//!
//! A [`Transport`] carries the calls: on Redox the scheme file itself; on the host the
//! in-process kernel of [`crate::scheme::host`] ([`HostPort`]). `unsafe` is confined to the
//! mapping (the transport's `map`), which yields a bounds-checked [`Region`].

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

/// How a client reaches one open `netmap` handle.
pub trait Transport {
    /// `call(fd, payload, metadata)`.
    fn call(&self, payload: &mut [u8], metadata: &[u64]) -> Result<usize, ClientError>;
    /// `fevent`: subscribes to `flags` and returns those ready now.
    fn subscribe(&self, flags: EventFlags) -> Result<EventFlags, ClientError>;
    /// Waits until the daemon posts an event in `flags` or `timeout` passes (empty on timeout).
    fn wait_event(&self, flags: EventFlags, timeout: Duration) -> Result<EventFlags, ClientError>;
    /// `mmap(fd, 0, len, MAP_SHARED)`.
    fn map(&self, len: usize) -> Result<Region, ClientError>;
}

/// A bound netmap port: the geometry, the mapping and views of the bound rings.
pub struct NetmapPort<T: Transport> {
    t: T,
    info: NmInfo,
    region: Region,
    tx: Vec<RingView>,
    rx: Vec<RingView>,
    subscribed: EventFlags,
}

impl<T: Transport> fmt::Debug for NetmapPort<T> {
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

impl<T: Transport> NetmapPort<T> {
    /// Reads the geometry, maps the region and builds views of the bound rings (each checked to
    /// lie inside the mapping, with the slot count `INFO` gives).
    pub fn new(t: T) -> Result<Self, ClientError> {
        let mut b = [0u8; INFO_LEN];
        t.call(&mut b, &[OP_INFO])?;
        let info = NmInfo::decode(&b).ok_or_else(|| ClientError::BadInfo("short".into()))?;
        check_info(&info)?;
        let region = t.map(info.mem_size as usize)?;
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
        let tx = (info.first_tx..info.last_tx)
            .map(|k| ring(tx_ring_ofs_index(k), info.tx_slots))
            .collect::<Result<_, _>>()?;
        let rx = (info.first_rx..info.last_rx)
            .map(|k| ring(rx_ring_ofs_index(&counts, k), info.rx_slots))
            .collect::<Result<_, _>>()?;
        Ok(Self { t, info, region, tx, rx, subscribed: EventFlags::empty() })
    }

    /// The geometry.
    pub fn info(&self) -> &NmInfo {
        &self.info
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.t
    }

    /// Bound TX ring `k` (netmap numbering).
    pub fn tx_ring(&self, k: u32) -> Result<Ring<'_, T>, ClientError> {
        let v = k.checked_sub(self.info.first_tx).and_then(|j| self.tx.get(j as usize));
        v.map(|view| Ring { view, port: self }).ok_or(ClientError::NoRing(k))
    }

    /// Bound RX ring `k`.
    pub fn rx_ring(&self, k: u32) -> Result<Ring<'_, T>, ClientError> {
        let v = k.checked_sub(self.info.first_rx).and_then(|j| self.rx.get(j as usize));
        v.map(|view| Ring { view, port: self }).ok_or(ClientError::NoRing(k))
    }

    /// Publishes every bound TX ring's head/cur and reclaims completed slots (M3.2).
    pub fn txsync(&self) -> Result<(), ClientError> {
        self.t.call(&mut [], &[OP_TXSYNC]).map(|_| ())
    }

    /// Releases consumed RX slots and exposes newly received ones (M3.3).
    pub fn rxsync(&self) -> Result<(), ClientError> {
        self.t.call(&mut [], &[OP_RXSYNC]).map(|_| ())
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
            let now = self.t.subscribe(flags)?;
            if !now.is_empty() {
                return Ok(now);
            }
        }
        self.t.wait_event(flags, timeout)
    }

    fn buf_off(&self, buf_idx: u32, len: usize) -> Result<usize, ClientError> {
        let bad = ClientError::BadBuffer { buf_idx, len };
        let ring0 = self.tx.first().or(self.rx.first()).ok_or(ClientError::NoRing(0))?;
        let bs = self.info.buf_size as usize;
        if !(2..self.info.buf_num).contains(&buf_idx) || len > bs {
            return Err(bad);
        }
        // NETMAP_BUF: ring address + buf_ofs + idx × buf_size (§7.1), checked against the mapping.
        let ring_at = ring0.region().addr() - self.region.addr();
        let off =
            (ring_at as i64).checked_add(ring0.buf_ofs()).filter(|&o| o >= 0).ok_or(bad.clone())?;
        let off = (off as usize).checked_add(buf_idx as usize * bs).ok_or(bad.clone())?;
        off.checked_add(len).filter(|&e| e <= self.region.len()).ok_or(bad)?;
        Ok(off)
    }
}

/// One bound ring of a [`NetmapPort`]. Its `head`/`cur` are the client's to write; `tail` is
/// the daemon's. Slots handed to the client by the host are checked before their buffers are
/// touched.
#[derive(Debug)]
pub struct Ring<'a, T: Transport> {
    view: &'a RingView,
    port: &'a NetmapPort<T>,
}

impl<T: Transport> Ring<'_, T> {
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

/// A `netmap` handle reached through the host's in-process kernel.
#[cfg(not(target_os = "redox"))]
#[derive(Debug)]
pub struct HostPort<'a, P: crate::platform::Platform + Send + 'static> {
    k: &'a crate::scheme::host::HostKernel<P>,
    fd: usize,
}

#[cfg(not(target_os = "redox"))]
impl<'a, P: crate::platform::Platform + Send + 'static> HostPort<'a, P> {
    /// Opens `netmap.<…>/path` as root (M2).
    pub fn open(
        k: &'a crate::scheme::host::HostKernel<P>,
        path: &str,
    ) -> Result<Self, ClientError> {
        let fd = k.open(crate::scheme::Which::Netmap, path, syscall::flag::O_RDWR, 0)?;
        Ok(Self { k, fd })
    }

    /// The handle id.
    pub fn fd(&self) -> usize {
        self.fd
    }
}

#[cfg(not(target_os = "redox"))]
impl<P: crate::platform::Platform + Send + 'static> Drop for HostPort<'_, P> {
    fn drop(&mut self) {
        self.k.close(crate::scheme::Which::Netmap, self.fd);
    }
}

#[cfg(not(target_os = "redox"))]
impl<P: crate::platform::Platform + Send + 'static> Transport for HostPort<'_, P> {
    fn call(&self, payload: &mut [u8], metadata: &[u64]) -> Result<usize, ClientError> {
        Ok(self.k.call(crate::scheme::Which::Netmap, self.fd, payload, metadata)?)
    }
    fn subscribe(&self, flags: EventFlags) -> Result<EventFlags, ClientError> {
        Ok(self.k.fevent(crate::scheme::Which::Netmap, self.fd, flags)?)
    }
    fn wait_event(&self, flags: EventFlags, timeout: Duration) -> Result<EventFlags, ClientError> {
        Ok(self.k.wait_event(crate::scheme::Which::Netmap, self.fd, flags, timeout))
    }
    fn map(&self, len: usize) -> Result<Region, ClientError> {
        let f = syscall::flag::MapFlags::MAP_SHARED
            | syscall::flag::MapFlags::PROT_READ
            | syscall::flag::MapFlags::PROT_WRITE;
        Ok(self.k.mmap(crate::scheme::Which::Netmap, self.fd, 0, len, f)?)
    }
}
