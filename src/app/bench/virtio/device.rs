//! The host side: a vhost-like backend thread on rust-vmm's `virtio-queue`. It owns VM A's
//! TX queue and VM B's RX queue and, like vhost-net plus a VALE/bridge hop in one worker,
//! pairs each TX chain with an RX chain, copies the frame once from A's memory into B's
//! (after reading A's virtio_net_hdr_v1 and writing B's, §5.1.6), and marks both used.
//! Notifications: one `needs_notification` decision per queue per batch, and the queues'
//! notifications re-enabled (`enable_notification`, which re-checks) only before it sleeps.
//! It waits for RX buffers rather than dropping: nothing is lost, so B can demand order.

use super::{Fault, Link, VirtioBenchError, HDR_LEN};
use std::num::Wrapping;
use std::sync::atomic::Ordering;
use std::time::Instant;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Most descriptors a chain may have here (the drivers use one).
const MAX_SEGS: usize = 8;
/// Chains popped per avail.idx read.
const CHUNK: usize = 64;

/// The buffers of one chain: (guest address, length) each.
struct Segs {
    s: [(u64, u32); MAX_SEGS],
    n: usize,
    total: u64,
}

/// A position inside [`Segs`].
struct Cursor<'a> {
    segs: &'a Segs,
    i: usize,
    off: u32,
}

impl<'a> Cursor<'a> {
    fn new(segs: &'a Segs) -> Self {
        Self { segs, i: 0, off: 0 }
    }
    /// The current contiguous piece: (address, bytes left in it).
    fn piece(&mut self) -> Option<(u64, usize)> {
        while self.i < self.segs.n && self.off == self.segs.s[self.i].1 {
            self.i += 1;
            self.off = 0;
        }
        let (addr, len) = *self.segs.s.get(self.i).filter(|_| self.i < self.segs.n)?;
        Some((addr + u64::from(self.off), (len - self.off) as usize))
    }
    fn advance(&mut self, n: usize) {
        self.off += n as u32;
    }
}

/// Copies `len` bytes from `src` (in `sm`) to `dst` (in `dm`) piece by piece: one memcpy per
/// contiguous pair, no bounce buffer.
fn copy(
    sm: &GuestMemoryMmap,
    src: &mut Cursor<'_>,
    dm: &GuestMemoryMmap,
    dst: &mut Cursor<'_>,
    mut len: usize,
) -> Result<(), VirtioBenchError> {
    while len > 0 {
        let (Some((sa, sn)), Some((da, dn))) = (src.piece(), dst.piece()) else {
            return Err(VirtioBenchError::BadChain {
                queue: "tx/rx",
                what: "chain shorter than its frame",
            });
        };
        let n = len.min(sn).min(dn);
        let s = sm.get_slice(GuestAddress(sa), n)?;
        let d = dm.get_slice(GuestAddress(da), n)?;
        s.copy_to_volatile_slice(d);
        src.advance(n);
        dst.advance(n);
        len -= n;
    }
    Ok(())
}

/// Reads (`write == false`) or writes a small header at the cursor.
fn header(
    m: &GuestMemoryMmap,
    c: &mut Cursor<'_>,
    buf: &mut [u8; HDR_LEN],
    write: bool,
) -> Result<(), VirtioBenchError> {
    let mut done = 0;
    while done < HDR_LEN {
        let Some((a, n)) = c.piece() else {
            return Err(VirtioBenchError::BadChain {
                queue: "tx/rx",
                what: "chain shorter than the header",
            });
        };
        let n = n.min(HDR_LEN - done);
        let s = m.get_slice(GuestAddress(a), n)?;
        if write {
            s.copy_from(&buf[done..done + n]);
        } else {
            s.copy_to(&mut buf[done..done + n]);
        }
        c.advance(n);
        done += n;
    }
    Ok(())
}

/// One device-side queue with the memory it lives in.
pub(super) struct DevQueue<'m> {
    pub q: Queue,
    pub mem: &'m GuestMemoryMmap,
    pub name: &'static str,
}

impl DevQueue<'_> {
    /// Chains the driver made available and the device has not taken, validated against the
    /// queue size (a driver cannot make the device walk more than a ring).
    fn pending(&self) -> Result<u16, VirtioBenchError> {
        let avail = self.q.avail_idx(self.mem, Ordering::Acquire)?;
        let next = Wrapping(self.q.next_avail());
        let n = (avail - next).0;
        if n > self.q.size() {
            return Err(VirtioBenchError::AvailOverrun {
                queue: self.name,
                avail: avail.0,
                next: next.0,
            });
        }
        Ok(n)
    }

    /// Pops `n` chains (one avail.idx read for all, through `QueueOwnedT::iter`) into `out`,
    /// collecting their buffers, which must all be device-readable (`writable == false`) or
    /// all device-writable.
    fn pop_many(
        &mut self,
        n: usize,
        writable: bool,
        out: &mut Vec<(u16, Segs)>,
    ) -> Result<(), VirtioBenchError> {
        out.clear();
        let (size, name) = (self.q.size(), self.name);
        for chain in self.q.iter(self.mem)?.take(n) {
            let head = chain.head_index();
            if head >= size {
                return Err(VirtioBenchError::BadHead { queue: name, head, size });
            }
            let mut segs = Segs { s: [(0, 0); MAX_SEGS], n: 0, total: 0 };
            for d in chain {
                if d.is_write_only() != writable {
                    let what = if writable {
                        "RX buffer not device-writable"
                    } else {
                        "TX buffer device-writable"
                    };
                    return Err(VirtioBenchError::BadChain { queue: name, what });
                }
                if segs.n == MAX_SEGS {
                    let what = "more than 8 descriptors";
                    return Err(VirtioBenchError::BadChain { queue: name, what });
                }
                segs.s[segs.n] = (d.addr().0, d.len());
                segs.n += 1;
                segs.total += u64::from(d.len());
            }
            out.push((head, segs));
        }
        if out.len() < n {
            return Err(VirtioBenchError::BadChain { queue: name, what: "avail ring unreadable" });
        }
        Ok(())
    }
}

/// What the backend reports.
#[derive(Debug, Default)]
pub(super) struct DevStats {
    pub frames: u64,
    pub copies: u64,
    pub irq_a: u64,
    pub irq_b: u64,
}

/// The backend worker: forwards `frames` frames from A's TX queue to B's RX queue.
pub(super) fn backend(
    tx: &mut DevQueue<'_>,
    rx: &mut DevQueue<'_>,
    link: &Link,
    frames: u64,
) -> Result<DevStats, VirtioBenchError> {
    let mut st = DevStats::default();
    let mut progress = Instant::now();
    let (mut txs, mut rxs) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    while st.frames < frames {
        let (ntx, nrx) = (tx.pending()?, rx.pending()?);
        let n = ntx.min(nrx);
        if n == 0 {
            // Nothing to pair: re-enable the notification of the side we wait for (which
            // re-checks it after a fence), then sleep until a kick.
            let seen = link.dev_wake.generation();
            let more = if ntx == 0 {
                tx.q.enable_notification(tx.mem)?
            } else {
                rx.q.enable_notification(rx.mem)?
            };
            if !more {
                link.wait("backend", &link.dev_wake, seen, progress, false)?;
            }
            continue;
        }
        progress = Instant::now();
        let mut left = usize::from(n);
        while left > 0 {
            let k = left.min(CHUNK);
            tx.pop_many(k, false, &mut txs)?;
            rx.pop_many(k, true, &mut rxs)?;
            let mut rxi = rxs.iter();
            for (th, ts) in &txs {
                forward(tx, rx, (*th, ts), &mut rxi, link, &mut st)?;
            }
            // RX chains a dropped frame did not use go back to the ring, in order.
            let unused = rxi.len() as u16;
            rx.q.set_next_avail(rx.q.next_avail().wrapping_sub(unused));
            left -= k;
        }
        if rx.q.needs_notification(rx.mem)? {
            link.b_irq.notify();
            st.irq_b += 1;
        }
        if tx.q.needs_notification(tx.mem)? {
            link.a_irq.notify();
            st.irq_a += 1;
        }
    }
    Ok(st)
}

/// One frame: A's popped TX chain → the next popped RX chain, both marked used.
fn forward<'s>(
    tx: &mut DevQueue<'_>,
    rx: &mut DevQueue<'_>,
    (th, ts): (u16, &Segs),
    rxs: &mut impl Iterator<Item = &'s (u16, Segs)>,
    link: &Link,
    st: &mut DevStats,
) -> Result<(), VirtioBenchError> {
    if ts.total < HDR_LEN as u64 {
        let what = "shorter than virtio_net_hdr";
        return Err(VirtioBenchError::BadChain { queue: tx.name, what });
    }
    st.frames += 1;
    if matches!(link.fault, Some(Fault::DeviceDrops { at }) if at + 1 == st.frames) {
        // A dropping switch: the TX buffer is done, no RX buffer is used.
        tx.q.add_used(tx.mem, th, 0)?;
        return Ok(());
    }
    let Some((rh, rs)) = rxs.next() else {
        return Err(VirtioBenchError::BadChain { queue: rx.name, what: "RX chain missing" });
    };
    if rs.total < ts.total {
        let what = "RX buffer smaller than the frame";
        return Err(VirtioBenchError::BadChain { queue: rx.name, what });
    }
    let len = ts.total as usize;
    let mut h = [0u8; HDR_LEN];
    let mut out = [0u8; HDR_LEN];
    out[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers = 1
    if ts.n == 1 && rs.n == 1 {
        // One buffer each (what the drivers post): one slice each, header then frame.
        let src = tx.mem.get_slice(GuestAddress(ts.s[0].0), len)?;
        let dst = rx.mem.get_slice(GuestAddress(rs.s[0].0), len)?;
        src.subslice(0, HDR_LEN)?.copy_to(&mut h[..]);
        check_tx_header(&h)?;
        dst.subslice(0, HDR_LEN)?.copy_from(&out[..]);
        src.offset(HDR_LEN)?.copy_to_volatile_slice(dst.offset(HDR_LEN)?);
    } else {
        let (mut tc, mut rc) = (Cursor::new(ts), Cursor::new(rs));
        header(tx.mem, &mut tc, &mut h, false)?;
        check_tx_header(&h)?;
        header(rx.mem, &mut rc, &mut out, true)?;
        copy(tx.mem, &mut tc, rx.mem, &mut rc, len - HDR_LEN)?;
    }
    st.copies += 1;
    tx.q.add_used(tx.mem, th, 0)?;
    rx.q.add_used(rx.mem, *rh, len as u32)?;
    Ok(())
}

/// flags (byte 0) and gso_type (byte 1) of a TX header: no offload was negotiated, so both
/// must be 0.
fn check_tx_header(h: &[u8; HDR_LEN]) -> Result<(), VirtioBenchError> {
    if h[0] != 0 || h[1] != 0 {
        let what = "offload requested without negotiation";
        return Err(VirtioBenchError::BadChain { queue: "tx", what });
    }
    Ok(())
}

/// Sets up a device-side queue at the driver's addresses, event index negotiated.
pub(super) fn queue(
    mem: &GuestMemoryMmap,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
) -> Result<Queue, VirtioBenchError> {
    let mut q = Queue::new(size)?;
    q.try_set_size(size)?;
    q.try_set_desc_table_address(GuestAddress(desc))?;
    q.try_set_avail_ring_address(GuestAddress(avail))?;
    q.try_set_used_ring_address(GuestAddress(used))?;
    q.set_event_idx(true);
    q.set_ready(true);
    if !q.is_valid(mem) {
        return Err(VirtioBenchError::Setup("virtqueue rings outside guest memory".into()));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn segs(list: &[(u64, u32)]) -> Segs {
        let mut s = Segs { s: [(0, 0); MAX_SEGS], n: list.len(), total: 0 };
        for (i, &(a, l)) in list.iter().enumerate() {
            s.s[i] = (a, l);
            s.total += u64::from(l);
        }
        s
    }

    #[test]
    fn headers_and_frames_cross_descriptor_boundaries_anywhere() {
        let m = |n| GuestMemoryMmap::from_ranges(&[(GuestAddress(0), n)]).unwrap();
        let (a, b) = (m(0x4000), m(0x4000));
        let data: Vec<u8> = (0..100u8).collect();
        // Source: 5 + 30 + 65 bytes at scattered addresses; destination: 7 + 93.
        let src = segs(&[(0x100, 5), (0x900, 30), (0x2000, 65)]);
        let mut off = 0;
        for &(addr, len) in &src.s[..src.n] {
            a.write_slice(&data[off..off + len as usize], GuestAddress(addr)).unwrap();
            off += len as usize;
        }
        let dst = segs(&[(0x300, 7), (0x3000, 93)]);
        let (mut tc, mut rc) = (Cursor::new(&src), Cursor::new(&dst));
        let mut h = [0u8; HDR_LEN];
        header(&a, &mut tc, &mut h, false).unwrap();
        assert_eq!(h[..], data[..HDR_LEN]);
        let mut out = [0xeeu8; HDR_LEN];
        header(&b, &mut rc, &mut out, true).unwrap();
        copy(&a, &mut tc, &b, &mut rc, 100 - HDR_LEN).unwrap();
        let mut got = [0u8; 100];
        b.read_slice(&mut got[..7], GuestAddress(0x300)).unwrap();
        b.read_slice(&mut got[7..], GuestAddress(0x3000)).unwrap();
        assert_eq!(got[..HDR_LEN], [0xee; HDR_LEN]);
        assert_eq!(got[HDR_LEN..], data[HDR_LEN..]);
        // One byte more than the chain holds is an error, not a panic.
        let (mut tc, mut rc) = (Cursor::new(&src), Cursor::new(&dst));
        assert!(copy(&a, &mut tc, &b, &mut rc, 101).is_err());
    }
}
