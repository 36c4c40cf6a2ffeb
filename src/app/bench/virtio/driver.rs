//! The guest side: a split-virtqueue driver written to virtio 1.2 §2.7 over vm-memory's
//! accessors (no `unsafe`), and the two guest "vCPUs": VM A's virtio-net transmit path and VM
//! B's receive path.
//!
//! Who writes what (§2.7.5–§2.7.8, §2.7.10):
//!
//! ```text
//!   descriptor table   driver writes, device reads      addr, len, flags, next (16 bytes)
//!   avail.idx/ring     driver writes, device reads      ring entries, then idx (Release)
//!   avail.used_event   driver writes, device reads      "interrupt me when used passes this"
//!   used.idx/ring      device writes, driver reads      idx read with Acquire, then entries
//!   used.avail_event   device writes, driver reads      "kick me when avail passes this"
//!
//!   driver publish:  ring[..] = ids; store avail.idx (Release); fence(SeqCst); load avail_event
//!   device re-arm:   store avail_event;                 fence(SeqCst); load avail.idx
//! ```
//! The two SeqCst fences pair (the virtio-queue `enable_notification` side and [`DriverQueue::publish`]),
//! so either the device sees the new avail.idx or the driver sees the new avail_event and
//! kicks. The same holds for [`DriverQueue::arm`] against the device's `needs_notification`.

use super::{Fault, Link, VirtioBenchError, HDR_LEN, SEQ_OFF};
use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

/// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable (§2.7.5).
pub(super) const DESC_F_WRITE: u16 = 2;
/// Stride of the per-descriptor buffers.
pub(super) const BUF_STRIDE: u64 = 2048;
/// Length of an RX buffer as posted: header plus the largest Ethernet frame.
pub(super) const RX_BUF_LEN: u32 = (HDR_LEN + super::MAX_FRAME) as u32;

const PAGE: u64 = 4096;

/// Where one split virtqueue and its buffers sit in a VM's memory (the driver chooses; the
/// device is told the three ring addresses, as through the common configuration's
/// queue_desc/queue_driver/queue_device).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub bufs: u64,
    pub end: u64,
}

impl Layout {
    /// Descriptor table at 0, the avail ring right after it (§2.7: 16- and 2-byte aligned), the
    /// used ring on its own page so that the two sides do not share its cache lines, then one
    /// buffer per descriptor.
    pub fn new(size: u16) -> Self {
        let q = u64::from(size);
        let desc = 0;
        let avail = desc + 16 * q;
        let used = (avail + 6 + 2 * q).next_multiple_of(PAGE);
        let bufs = (used + 6 + 8 * q).next_multiple_of(PAGE);
        Self { size, desc, avail, used, bufs, end: bufs + q * BUF_STRIDE }
    }
    pub fn buf(&self, id: u16) -> u64 {
        self.bufs + u64::from(id) * BUF_STRIDE
    }
    fn desc_at(&self, id: u16) -> usize {
        (self.desc + 16 * u64::from(id)) as usize
    }
    fn avail_slot(&self, i: Wrapping<u16>) -> usize {
        (self.avail + 4 + 2 * u64::from(i.0 % self.size)) as usize
    }
    fn avail_idx(&self) -> usize {
        (self.avail + 2) as usize
    }
    fn used_event(&self) -> usize {
        (self.avail + 4 + 2 * u64::from(self.size)) as usize
    }
    fn used_idx(&self) -> usize {
        (self.used + 2) as usize
    }
    fn used_slot(&self, i: Wrapping<u16>) -> usize {
        (self.used + 4 + 8 * u64::from(i.0 % self.size)) as usize
    }
    fn avail_event(&self) -> usize {
        (self.used + 4 + 8 * u64::from(self.size)) as usize
    }
}

/// `vring_need_event` (§2.7.10): has the index moved from `old` to `new` across `event`?
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The driver's half of one split virtqueue, event index negotiated. Every value read from
/// the device (used ids and lengths) is validated before use. The guest reaches its memory
/// through one `VolatileSlice` over the whole of it (a guest's plain loads and stores, bounds
/// checked), not through the host's per-access region lookup.
pub(super) struct DriverQueue<'m> {
    mem: VolatileSlice<'m>,
    pub l: Layout,
    name: &'static str,
    /// Next avail slot to fill (shadow of avail.idx plus what is not published yet).
    avail_idx: Wrapping<u16>,
    /// avail.idx as last published.
    published: Wrapping<u16>,
    /// Next used slot to read.
    last_used: Wrapping<u16>,
    /// used.idx as last read.
    used_seen: Wrapping<u16>,
    /// Descriptors the device owns.
    in_flight: Vec<bool>,
    /// Descriptors the driver owns.
    pub free: Vec<u16>,
}

impl<'m> DriverQueue<'m> {
    pub fn new(
        mem: &'m GuestMemoryMmap,
        l: Layout,
        name: &'static str,
    ) -> Result<Self, VirtioBenchError> {
        Ok(Self {
            mem: mem.get_slice(GuestAddress(0), l.end as usize)?,
            l,
            name,
            avail_idx: Wrapping(0),
            published: Wrapping(0),
            last_used: Wrapping(0),
            used_seen: Wrapping(0),
            in_flight: vec![false; usize::from(l.size)],
            free: (0..l.size).rev().collect(),
        })
    }

    /// Puts descriptor `id` (one buffer, no chaining) with `len` and `flags` in the next avail
    /// slot; not visible to the device before [`publish`](Self::publish).
    pub fn add(&mut self, id: u16, len: u32, flags: u16) -> Result<(), VirtioBenchError> {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&self.l.buf(id).to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        self.mem.write_slice(&d, self.l.desc_at(id))?;
        self.put_avail(id)?;
        self.in_flight[usize::from(id)] = true;
        Ok(())
    }

    /// Writes `head` into the next avail slot as is (a fault may pass a bad one).
    pub fn put_avail(&mut self, head: u16) -> Result<(), VirtioBenchError> {
        self.mem.store(head.to_le(), self.l.avail_slot(self.avail_idx), Ordering::Relaxed)?;
        self.avail_idx += 1;
        Ok(())
    }

    /// Publishes the added entries (avail.idx, Release) and returns whether the device asked
    /// for a kick (avail_event crossed, §2.7.10). Pairs with the device's
    /// `enable_notification`.
    pub fn publish(&mut self) -> Result<bool, VirtioBenchError> {
        self.publish_as(self.avail_idx)
    }

    /// [`publish`](Self::publish) with an explicit index (a fault may pass a bad one).
    pub fn publish_as(&mut self, idx: Wrapping<u16>) -> Result<bool, VirtioBenchError> {
        let old = self.published;
        if idx == old {
            return Ok(false);
        }
        self.mem.store(idx.0.to_le(), self.l.avail_idx(), Ordering::Release)?;
        self.published = idx;
        // Orders the avail.idx store before the avail_event load (pairs with the device's
        // store of avail_event then load of avail.idx).
        fence(Ordering::SeqCst);
        let event = u16::from_le(self.mem.load(self.l.avail_event(), Ordering::Relaxed)?);
        Ok(need_event(event, idx.0, old.0))
    }

    /// How many used entries are waiting (used.idx read with Acquire, so the entries and the
    /// buffers they name are visible).
    pub fn used_pending(&mut self) -> Result<u16, VirtioBenchError> {
        self.used_seen =
            Wrapping(u16::from_le(self.mem.load(self.l.used_idx(), Ordering::Acquire)?));
        let n = (self.used_seen - self.last_used).0;
        if n > self.l.size {
            return Err(VirtioBenchError::BadUsed { queue: self.name, id: u32::from(n) });
        }
        Ok(n)
    }

    /// Takes the next used entry: (descriptor id, length written). Only after
    /// [`used_pending`](Self::used_pending) said it is there.
    pub fn take_used(&mut self) -> Result<(u16, u32), VirtioBenchError> {
        let mut e = [0u8; 8];
        self.mem.read_slice(&mut e, self.l.used_slot(self.last_used))?;
        let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let ok = usize::try_from(id).ok().filter(|&i| self.in_flight.get(i) == Some(&true));
        let Some(i) = ok else {
            return Err(VirtioBenchError::BadUsed { queue: self.name, id });
        };
        self.in_flight[i] = false;
        self.last_used += 1;
        Ok((i as u16, len))
    }

    /// Asks for an interrupt once `n` (≥ 1) more entries are used (used_event, §2.7.10), then
    /// re-checks: `true` if entries arrived meanwhile (no need to sleep). Pairs with the
    /// device's `needs_notification`.
    pub fn arm(&mut self, n: u16) -> Result<bool, VirtioBenchError> {
        let event = self.last_used + Wrapping(n.max(1) - 1);
        self.mem.store(event.0.to_le(), self.l.used_event(), Ordering::Relaxed)?;
        // Orders the used_event store before the used.idx load.
        fence(Ordering::SeqCst);
        Ok(self.used_pending()? > 0)
    }
}

/// What a driver thread reports.
#[derive(Debug, Default)]
pub(super) struct DriverStats {
    pub frames: u64,
    pub kicks: u64,
    pub finished: Option<Instant>,
}

/// Prefills every TX buffer once with a frame template: virtio_net_hdr_v1 (zeros: no
/// offloads negotiated, §5.1.6), then an Ethernet header, then a zero payload.
pub(super) fn prefill_tx(
    mem: &GuestMemoryMmap,
    l: &Layout,
    frame_len: usize,
) -> Result<(), VirtioBenchError> {
    let mut f = vec![0u8; HDR_LEN + frame_len];
    let eth = &mut f[HDR_LEN..];
    eth[0..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x00, 0x00, 0x0b]);
    eth[6..12].copy_from_slice(&[0x52, 0x54, 0x00, 0x00, 0x00, 0x0a]);
    eth[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    for id in 0..l.size {
        mem.write_slice(&f, GuestAddress(l.buf(id)))?;
    }
    Ok(())
}

/// VM A: builds its queue's driver side (in its own thread: a `VolatileSlice` stays with one
/// thread) and sends `frames` frames in batches of `batch`, each with its sequence number written
/// into the prefilled buffer, then one publish and one kick decision per batch. Waits for TX
/// completions only when a batch does not fit, asking for one interrupt when it will.
pub(super) fn tx_vcpu(
    mem: &GuestMemoryMmap,
    l: Layout,
    link: &Link,
    batch: usize,
    frame_len: usize,
    frames: u64,
) -> Result<DriverStats, VirtioBenchError> {
    let q = &mut DriverQueue::new(mem, l, "tx")?;
    let hdr = [0u8; HDR_LEN];
    let len = (HDR_LEN + frame_len) as u32;
    let mut st = DriverStats::default();
    let mut progress = Instant::now();
    while st.frames < frames {
        for _ in 0..q.used_pending()? {
            let (id, _) = q.take_used()?;
            q.free.push(id);
        }
        let want = (frames - st.frames).min(batch as u64) as usize;
        if q.free.len() < want {
            let seen = link.a_irq.generation();
            let short = (want - q.free.len()) as u16;
            if !q.arm(short)? {
                link.wait("VM A driver", &link.a_irq, seen, progress, true)?;
            }
            continue;
        }
        progress = Instant::now();
        for _ in 0..want {
            let Some(id) = q.free.pop() else { break };
            let buf = q.l.buf(id) as usize;
            // The header is written per frame, as a driver does; the frame is built in place.
            q.mem.write_slice(&hdr, buf)?;
            q.mem.write_obj(st.frames.to_le(), buf + HDR_LEN + SEQ_OFF)?;
            match link.fault {
                Some(Fault::HeadOutOfRange { at }) if at == st.frames => {
                    q.put_avail(q.l.size + 3)?;
                }
                _ => q.add(id, len, 0)?,
            }
            st.frames += 1;
        }
        let kick = match link.fault {
            Some(Fault::AvailOverrun) => {
                let bad = q.avail_idx + Wrapping(q.l.size + 1);
                q.publish_as(bad)?
            }
            _ => q.publish()?,
        };
        if kick && link.fault != Some(Fault::NoKick) {
            link.dev_wake.notify();
            st.kicks += 1;
        }
    }
    st.finished = Some(Instant::now());
    Ok(st)
}

/// What VM B saw of the sequence.
#[derive(Debug, Default)]
pub(super) struct RxStats {
    pub drv: DriverStats,
    pub lost: u64,
    pub out_of_order: u64,
}

/// VM B: builds its queue's driver side, posts every RX buffer, then receives until the last sequence number arrives,
/// checking each frame's length and sequence number, reposting buffers `batch` at a time (and
/// all it holds before it sleeps, so the device never starves while B has buffers in hand).
pub(super) fn rx_vcpu(
    mem: &GuestMemoryMmap,
    l: Layout,
    link: &Link,
    batch: usize,
    frame_len: usize,
    frames: u64,
) -> Result<RxStats, VirtioBenchError> {
    let q = &mut DriverQueue::new(mem, l, "rx")?;
    let buf_len = if link.fault == Some(Fault::ShortRxBuffer) { 8 } else { RX_BUF_LEN };
    let mut st = RxStats::default();
    let mut hold: Vec<u16> = Vec::with_capacity(usize::from(q.l.size));
    hold.append(&mut q.free);
    repost(q, link, &mut hold, buf_len, &mut st.drv)?;
    let want_len = (HDR_LEN + frame_len) as u32;
    let (mut expect, mut progress) = (0u64, Instant::now());
    while expect < frames {
        let n = q.used_pending()?;
        if n == 0 {
            repost(q, link, &mut hold, buf_len, &mut st.drv)?;
            let seen = link.b_irq.generation();
            if !q.arm(1)? {
                link.wait("VM B driver", &link.b_irq, seen, progress, true)?;
            }
            continue;
        }
        progress = Instant::now();
        for _ in 0..n {
            let (id, len) = q.take_used()?;
            if len != want_len {
                return Err(VirtioBenchError::BadLength { got: len, want: want_len });
            }
            let seq_at = q.l.buf(id) as usize + HDR_LEN + SEQ_OFF;
            let seq = u64::from_le(q.mem.read_obj::<u64>(seq_at)?);
            if seq == expect {
                st.drv.frames += 1;
                expect += 1;
            } else if seq > expect {
                st.lost += seq - expect;
                expect = seq + 1;
            } else {
                st.out_of_order += 1;
            }
            hold.push(id);
            if hold.len() >= batch {
                repost(q, link, &mut hold, buf_len, &mut st.drv)?;
            }
        }
    }
    st.drv.finished = Some(Instant::now());
    Ok(st)
}

/// Posts the held RX buffers, one publish and one kick decision.
fn repost(
    q: &mut DriverQueue<'_>,
    link: &Link,
    hold: &mut Vec<u16>,
    buf_len: u32,
    st: &mut DriverStats,
) -> Result<(), VirtioBenchError> {
    for id in hold.drain(..) {
        q.add(id, buf_len, DESC_F_WRITE)?;
    }
    if q.publish()? && link.fault != Some(Fault::NoKick) {
        link.dev_wake.notify();
        st.kicks += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_follows_the_spec_formula() {
        // Crossed: old < event + 1 <= new.
        assert!(need_event(5, 6, 5));
        assert!(need_event(5, 10, 0));
        assert!(!need_event(5, 5, 0));
        assert!(!need_event(10, 20, 11));
        // Wrapping.
        assert!(need_event(0xffff, 2, 0xfff0));
    }

    #[test]
    fn the_layout_keeps_the_spec_alignment_and_separates_the_used_ring() {
        for size in [1u16, 256, 1024, 4096] {
            let l = Layout::new(size);
            assert_eq!(l.desc % 16, 0);
            assert_eq!(l.avail % 2, 0);
            assert_eq!(l.used % 4096, 0);
            assert!(l.avail + 6 + 2 * u64::from(size) <= l.used);
            assert!(l.used + 6 + 8 * u64::from(size) <= l.bufs);
            assert_eq!(l.end, l.bufs + u64::from(size) * BUF_STRIDE);
        }
    }
}
