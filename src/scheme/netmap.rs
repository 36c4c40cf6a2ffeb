//! `netmap.<pci-name>_ptnet`: zero-copy mode (scheme-spec `netmap.md`). A client binds rings
//! (M2), maps the memdev region (M4) and syncs its rings with `call` (M3). Everything the
//! client wrote into its ring (head, cur, slots) is read once, validated against the daemon's
//! trusted copy (the driver's `Kring`, never read back from shared memory), and only then
//! reaches the CSB; a bad value reinitialises that client's ring from the trusted copy (M3.2).
//!
//! Readings: `TXSYNC` publishes without `NAF_FORCE_RECLAIM` (netmap's ioctl path forces a kick on
//! every sync; here the host is kicked only when it asked, ptnet.md §8.2 step 4) and reclaims
//! completed slots with a tail sync (§8.4), so a batch costs a kick only when the host sleeps.

use super::{driver_err, Daemon, Handle, Owner, Which};
use crate::abi::netmap::{NETMAP_MAX_FRAGS, NS_MOREFRAG};
use crate::driver::ring::{GuestRing, SyncError};
use crate::driver::DriverError;
use crate::nm::SlotAccess;
use crate::platform::Platform;
use crate::ring;
use core::ops::Range;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::data::Stat;
use syscall::error::{Error, Result, EBADF, EBUSY, EINVAL, EIO, ENETDOWN, EOPNOTSUPP};
use syscall::flag::{EventFlags, MapFlags, MODE_CHR};
use syscall::schemev2::NewFdFlags;
use syscall::PAGE_SIZE;

pub use crate::abi::nmscheme::{NmInfo, INFO_LEN, INFO_VERSION, OP_INFO, OP_RXSYNC, OP_TXSYNC};

/// The rings a netmap handle holds, by kind (TX ring `k`, RX ring `k`: netmap numbering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The path it was opened with.
    pub path: String,
    /// Bound TX rings.
    pub tx: Range<u32>,
    /// Bound RX rings.
    pub rx: Range<u32>,
    /// Readiness the handle subscribed to (M6).
    pub events: EventFlags,
}

/// What readiness needs of a binding (no path: copied on every batch end).
#[derive(Debug, Clone)]
struct Watch {
    tx: Range<u32>,
    rx: Range<u32>,
    events: EventFlags,
}

impl Binding {
    fn watch(&self) -> Watch {
        Watch { tx: self.tx.clone(), rx: self.rx.clone(), events: self.events }
    }
}

/// Parses a binding path (M2) for a port with `tx_rings`/`rx_rings` rings.
pub fn parse_path(path: &str, tx_rings: u32, rx_rings: u32) -> Option<(Range<u32>, Range<u32>)> {
    let (which, dir) = match path.split_once('/') {
        Some((w, d)) => (w, Some(d)),
        None => (path, None),
    };
    let (tx_all, rx_all) = (0..tx_rings, 0..rx_rings);
    let (tx, rx) = match which {
        "" | "all" => (tx_all, rx_all),
        s => {
            let ok = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            let k: u32 = if ok { s.parse().ok()? } else { return None };
            if k >= tx_rings.max(rx_rings) {
                return None;
            }
            let one = |n: u32| if k < n { k..k + 1 } else { 0..0 };
            (one(tx_rings), one(rx_rings))
        }
    };
    let (tx, rx) = match dir {
        None => (tx, rx),
        Some("T") => (tx, 0..0),
        Some("R") => (0..0, rx),
        Some(_) => return None,
    };
    (!tx.is_empty() || !rx.is_empty()).then_some((tx, rx))
}

/// Ring indices (TX-then-RX numbering of the driver) of a binding.
fn ring_ids<P: Platform>(d: &Daemon<P>, tx: &Range<u32>, rx: &Range<u32>) -> Vec<u32> {
    let t = d.nic.info().tx_rings;
    tx.clone().chain(rx.clone().map(|k| t + k)).collect()
}

fn bind<P: Platform>(d: &mut Daemon<P>, path: &str) -> Result<usize> {
    if !d.nic.is_running() {
        return Err(Error::new(ENETDOWN));
    }
    let info = d.nic.info();
    let (tx, rx) = parse_path(path, info.tx_rings, info.rx_rings).ok_or(Error::new(EINVAL))?;
    let ids = ring_ids(d, &tx, &rx);
    if ids.iter().any(|&i| d.owners[i as usize] != Owner::Stack) {
        return Err(Error::new(EBUSY));
    }
    let b = Binding { path: path.to_string(), tx, rx, events: EventFlags::empty() };
    let id = d.insert(Handle::Netmap(b));
    for &i in &ids {
        // M5.2: the stack's frames are published (TX) / its consumed slots released (RX) first.
        if let Err(e) = d.nic.release_copy(i) {
            log::warn!("ptnetd: handing ring {i} over: {e}");
        }
        d.owners[i as usize] = Owner::Client(id);
        let _ = d.nic.set_interrupts(i, false); // no interrupts until the client subscribes
        reinit(d, i);
    }
    log::info!("ptnetd: netmap handle {id} bound `{path}` (rings {ids:?})");
    Ok(id)
}

/// Rings of a closed handle go back to the stack (M5.3).
pub(crate) fn unbind<P: Platform>(d: &mut Daemon<P>, id: usize, b: &Binding) {
    for i in ring_ids(d, &b.tx, &b.rx) {
        if d.owners[i as usize] == Owner::Client(id) {
            d.owners[i as usize] = Owner::Stack;
            let _ = d.nic.set_interrupts(i, true);
            reinit(d, i);
        }
    }
    log::info!("ptnetd: netmap handle {id} closed; rings back to the stack");
}

/// Shared ring header from the trusted copy: `head = cur = rhead`, `tail = rtail` (M3.2 step 4).
fn reinit<P: Platform>(d: &Daemon<P>, i: u32) {
    if let Some(r) = d.nic.ring(i) {
        r.view.set_head(r.k.rhead);
        r.view.set_cur(r.k.rhead);
        r.view.set_tail(r.k.rtail);
    }
}

/// Why a client's ring was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    Indices { head: u32, cur: u32 },
    Slot { at: u32, buf_idx: u32, len: u16 },
    Chain { at: u32 },
}

/// Reads the client's head/cur once and checks them and the slots it hands over (M3.2, M3.3).
fn validate<P: Platform>(d: &Daemon<P>, i: u32, tx: bool) -> std::result::Result<(u32, u32), Bad> {
    let info = d.nic.info();
    let r = d.nic.ring(i).ok_or(Bad::Indices { head: 0, cur: 0 })?;
    let (n, k) = (r.num_slots(), r.k);
    let (head, cur) = (r.view.head(), r.view.cur());
    let order = head < n
        && cur < n
        && ring::in_order(k.rhead, head, k.rtail, n)
        && ring::in_order(head, cur, k.rtail, n);
    if !order {
        return Err(Bad::Indices { head, cur });
    }
    // The slots [rhead, head) in at most two runs without wrap-around; per slot one copy (the
    // value checked is the value judged), a range check of the buffer index, the length (TX)
    // and the chain's length so far (TX).
    let (buf_num, buf_size) = (info.buf_num, info.buf_size);
    let max_len = if tx { buf_size } else { u32::MAX };
    let runs = if k.rhead <= head { [(k.rhead, head), (0, 0)] } else { [(k.rhead, n), (0, head)] };
    let check = (buf_num, max_len, tx);
    let frags = match r.view.slots() {
        Some(s) => check_slots(s, runs, check),
        None => check_slots(&r.view, runs, check),
    }?;
    if frags > 0 {
        return Err(Bad::Chain { at: ring::prev(head, n) }); // the last slot handed over goes on
    }
    Ok((head, cur))
}

/// The per-slot checks of [`validate`] over `runs` (index ranges below N): `2 ≤ buf_idx <
/// buf_num`, `len ≤ max_len` and, for TX, chains of fewer than `NETMAP_MAX_FRAGS` slots.
/// Returns the slots of the chain left open at the end.
fn check_slots(
    slots: impl SlotAccess,
    runs: [(u32, u32); 2],
    (buf_num, max_len, tx): (u32, u32, bool),
) -> std::result::Result<usize, Bad> {
    let mut frags = 0usize;
    for (from, to) in runs {
        for h in from..to {
            let s = slots.slot(h);
            if s.buf_idx < 2 || s.buf_idx >= buf_num || s.len as u32 > max_len {
                return Err(Bad::Slot { at: h, buf_idx: s.buf_idx, len: s.len });
            }
            if tx {
                frags = if s.flags & NS_MOREFRAG != 0 { frags + 1 } else { 0 };
                if frags >= NETMAP_MAX_FRAGS {
                    return Err(Bad::Chain { at: h });
                }
            }
        }
    }
    Ok(frags)
}

fn sync_ring<P: Platform>(d: &mut Daemon<P>, i: u32, tx: bool) -> Result<()> {
    let (head, cur) = match validate(d, i, tx) {
        Ok(v) => v,
        Err(bad) => {
            log::warn!("ptnetd: ring {i}: client values refused ({bad:?}); ring reinitialised");
            d.stats.bad_syncs += 1;
            reinit(d, i);
            return Err(Error::new(EINVAL));
        }
    };
    let r = if tx {
        d.nic.txsync(i, head, cur, 0).and_then(|()| d.nic.sync_tail(i))
    } else {
        d.nic.rxsync(i, head, cur, 0)
    };
    match r {
        Ok(()) => Ok(()),
        Err(DriverError::Sync(SyncError::User(e))) => {
            log::warn!("ptnetd: ring {i}: {e}; ring reinitialised");
            d.stats.bad_syncs += 1;
            reinit(d, i);
            Err(Error::new(EINVAL))
        }
        Err(DriverError::Sync(SyncError::Host(e))) => {
            log::warn!("ptnetd: ring {i}: host published bad indices: {e}");
            Err(Error::new(EIO))
        }
        Err(e) => Err(driver_err(e)),
    }
}

/// Syncs the bound rings `ids` (driver numbering) of one direction, per call on the data path:
/// no allocation.
fn sync_all<P: Platform>(d: &mut Daemon<P>, ids: Range<u32>, tx: bool) -> Result<usize> {
    d.stats.syncs += 1;
    let mut res = Ok(0);
    for i in ids {
        if let Err(e) = sync_ring(d, i, tx) {
            if res.is_ok() || e.errno != EINVAL {
                res = Err(e);
            }
        }
    }
    res
}

/// Readiness of a binding now (M6): frames to read on a bound RX ring, space on a bound TX ring.
/// A ring in `signalled` (bit i: ring i) that does not look ready after a tail sync gets
/// netmap's poll ([`Ptnet::poll_sync`]: a kick if the host wants one, then the tail again): in
/// direct mode an interrupt reports a backend event and the host moves nothing without a kick.
/// Other rings are not synced: after the client's own sync the host already had its kick, and
/// in kloop mode an interrupt comes after the indices moved, so a kick there only wakes a loop
/// that has nothing to do (the ring it feeds is full).
fn ready<P: Platform>(d: &mut Daemon<P>, b: &Watch, signalled: u64) -> EventFlags {
    let t = d.nic.info().tx_rings;
    let mut f = EventFlags::empty();
    if b.events.contains(EventFlags::EVENT_READ) {
        let frames = |r: &GuestRing| r.k.rhead != r.k.rtail;
        // Every bound ring is looked at (no short cut), as before: each gets its tail sync.
        if b.rx.clone().fold(false, |any, k| ring_ready(d, t + k, signalled, frames) | any) {
            f |= EventFlags::EVENT_READ;
        }
    }
    if b.events.contains(EventFlags::EVENT_WRITE) {
        let room = |r: &GuestRing| ring::space(r.k.rhead, r.k.rtail, r.num_slots()) > 0;
        if b.tx.clone().fold(false, |any, k| ring_ready(d, k, signalled, room) | any) {
            f |= EventFlags::EVENT_WRITE;
        }
    }
    f
}

/// `holds` of ring `i` after a tail sync, and after netmap's poll if it did not hold and the
/// ring is in `signalled` (see [`ready`]).
fn ring_ready<P: Platform>(
    d: &mut Daemon<P>,
    i: u32,
    signalled: u64,
    holds: impl Fn(&GuestRing) -> bool,
) -> bool {
    let _ = d.nic.sync_tail(i);
    let now = |d: &Daemon<P>| d.nic.ring(i).is_some_and(&holds);
    if now(d) {
        return true;
    }
    if i >= 64 || signalled >> i & 1 != 0 {
        let _ = d.nic.poll_sync(i);
    }
    now(d)
}

/// Arms the interrupts of the rings a subscribed handle waits on, then re-checks (the
/// re-arm-then-re-check of ptnet.md §5.4 rule 3: work that arrived before the arm is seen now,
/// work after it raises an interrupt).
fn arm_and_check<P: Platform>(d: &mut Daemon<P>, b: &Watch, signalled: u64) -> EventFlags {
    let t = d.nic.info().tx_rings;
    if b.events.contains(EventFlags::EVENT_READ) {
        for k in b.rx.clone() {
            let _ = d.nic.set_interrupts(t + k, true);
        }
    }
    if b.events.contains(EventFlags::EVENT_WRITE) {
        for i in b.tx.clone() {
            let _ = d.nic.set_interrupts(i, true);
        }
    }
    ready(d, b, signalled)
}

/// Events to post to subscribed netmap handles (M6).
pub(crate) fn events<P: Platform>(d: &mut Daemon<P>, out: &mut Vec<(Which, usize, usize)>) {
    let subs: Vec<(usize, Watch)> = d
        .handles
        .iter()
        .filter_map(|(id, h)| match h {
            Handle::Netmap(b) if !b.events.is_empty() => Some((*id, b.watch())),
            _ => None,
        })
        .collect();
    for (id, b) in subs {
        let f = arm_and_check(d, &b, d.signalled);
        if !f.is_empty() {
            out.push((Which::Netmap, id, f.bits()));
        }
    }
}

/// The `netmap` scheme: a view of the daemon (one per dispatch).
#[derive(Debug)]
pub struct NetmapView<'a, P: Platform>(pub &'a mut Daemon<P>);

impl<P: Platform> NetmapView<'_, P> {
    fn binding(&self, id: usize) -> Result<Binding> {
        self.bound(id, |b| b.clone())
    }

    /// `f` of the binding of handle `id`, without copying it.
    fn bound<T>(&self, id: usize, f: impl FnOnce(&Binding) -> T) -> Result<T> {
        match self.0.handle(Which::Netmap, id)? {
            Handle::Netmap(b) => Ok(f(b)),
            _ => Err(Error::new(EBADF)),
        }
    }

    fn info(&self, tx: &Range<u32>, rx: &Range<u32>) -> NmInfo {
        let i = self.0.nic.info();
        NmInfo {
            version: INFO_VERSION,
            nifp_offset: i.nifp_ofs,
            mem_size: i.mem_size,
            tx_rings: i.tx_rings,
            rx_rings: i.rx_rings,
            tx_slots: i.tx_slots,
            rx_slots: i.rx_slots,
            buf_size: i.buf_size,
            buf_num: i.buf_num,
            vnet_hdr_len: i.vnet_hdr_len,
            first_tx: tx.start,
            last_tx: tx.end,
            first_rx: rx.start,
            last_rx: rx.end,
        }
    }
}

impl<P: Platform> SchemeSync for NetmapView<'_, P> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(self.0.root(Which::Netmap))
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        self.0.check_open(Which::Netmap, fd, ctx)?;
        let number = bind(self.0, path)?;
        Ok(OpenResult::ThisScheme { number, flags: NewFdFlags::empty() })
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        let t = self.0.nic.info().tx_rings;
        let (txr, rxr) = self.bound(id, |b| (b.tx.clone(), b.rx.clone()))?;
        match metadata.first().copied() {
            Some(OP_INFO) => {
                if self.info(&txr, &rxr).encode(payload) {
                    Ok(INFO_LEN)
                } else {
                    Err(Error::new(EINVAL))
                }
            }
            Some(OP_TXSYNC) => sync_all(self.0, txr, true),
            Some(OP_RXSYNC) => sync_all(self.0, (t + rxr.start)..(t + rxr.end), false),
            _ => Err(Error::new(EINVAL)),
        }
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        flags: MapFlags,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.bound(id, |_| ())?;
        let region = self.0.nic.region();
        let ok = offset.is_multiple_of(PAGE_SIZE as u64)
            && size > 0
            && offset.checked_add(size as u64).is_some_and(|e| e <= region.len() as u64)
            && !flags.contains(MapFlags::MAP_PRIVATE);
        if !ok {
            return Err(Error::new(EINVAL));
        }
        Ok(region.addr() + offset as usize)
    }

    fn munmap(
        &mut self,
        id: usize,
        _offset: u64,
        _size: usize,
        _flags: syscall::flag::MunmapFlags,
        _ctx: &CallerCtx,
    ) -> Result<()> {
        self.bound(id, |_| ())
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        let mut w = self.bound(id, Binding::watch)?;
        let want = flags & (EventFlags::EVENT_READ | EventFlags::EVENT_WRITE);
        if want.is_empty() {
            for i in ring_ids(self.0, &w.tx, &w.rx) {
                let _ = self.0.nic.set_interrupts(i, false);
            }
        }
        w.events = want;
        if let Some(Handle::Netmap(h)) = self.0.handles.get_mut(&id) {
            h.events = want;
        }
        Ok(arm_and_check(self.0, &w, u64::MAX)) // a new subscription: netmap's poll on all
    }

    fn read(&mut self, id: usize, _: &mut [u8], _: u64, _: u32, _: &CallerCtx) -> Result<usize> {
        self.bound(id, |_| ())?;
        Err(Error::new(EOPNOTSUPP))
    }

    fn write(&mut self, id: usize, _: &[u8], _: u64, _: u32, _: &CallerCtx) -> Result<usize> {
        self.bound(id, |_| ())?;
        Err(Error::new(EOPNOTSUPP))
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let b = self.binding(id)?;
        Ok(self.0.fpath(Which::Netmap, &b.path, buf))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        self.bound(id, |_| ())?;
        stat.st_mode = MODE_CHR | 0o600;
        stat.st_size = self.0.nic.info().mem_size;
        Ok(())
    }

    fn fsize(&mut self, id: usize, _ctx: &CallerCtx) -> Result<u64> {
        self.bound(id, |_| ())?;
        Ok(self.0.nic.info().mem_size)
    }

    fn fsync(&mut self, id: usize, _ctx: &CallerCtx) -> Result<()> {
        self.bound(id, |_| ())
    }

    fn on_close(&mut self, id: usize) {
        self.0.close(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_grammar() {
        assert_eq!(parse_path("", 2, 2), Some((0..2, 0..2)));
        assert_eq!(parse_path("all", 2, 3), Some((0..2, 0..3)));
        assert_eq!(parse_path("1", 2, 2), Some((1..2, 1..2)));
        assert_eq!(parse_path("2", 2, 3), Some((0..0, 2..3)));
        assert_eq!(parse_path("0/T", 2, 2), Some((0..1, 0..0)));
        assert_eq!(parse_path("/R", 2, 2), Some((0..0, 0..2)));
        for bad in ["3", "01", "-1", "+1", " 1", "1/", "1/X", "all/T/R", "x", "1 ", "2/T"] {
            assert_eq!(parse_path(bad, 2, 3), None, "{bad:?}");
        }
    }
}
