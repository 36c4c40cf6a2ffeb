//! The stack-mode copy path (spec §8.5): the driver acts as a netmap application on the shared
//! rings, copying whole frames in and out of netmap buffers for the netstack's one-frame
//! read/write contract.
//!
//! Publish policy: TX publishes head (and kicks if the host asks) every [`BATCH`] frames and at
//! the end of a burst ([`Ptnet::flush_tx`]); RX releases slots every [`BATCH`] frames and at
//! the end of a burst ([`Ptnet::flush_rx`]).
//!
//! Readings: the TX space check uses the slots this frame needs instead of FreeBSD's
//! `min_tx_space` (sized for unknown 64 KiB skbs; a ring smaller than 34 slots would never send);
//! an incomplete RX chain at the end of the available slots is rewound and retried (E5), with
//! interrupts re-armed so its end wakes us; an unterminated chain filling the whole ring is
//! dropped (the host cannot add its end before we release a slot). "Nothing now" (`Full`,
//! `None`) is only ever answered after re-arming and re-reading the host's indices, validated
//! (§5.4 rule 3), with everything filled published or everything consumed released: the host's
//! next publication then always interrupts. Buffer indices and lengths in slots are validated
//! before every copy (the host can write anything there).

use super::{DriverError, Ptnet};
use crate::abi::csb::{NAF_FORCE_READ, NAF_FORCE_RECLAIM};
use crate::abi::netmap::{NETMAP_MAX_FRAGS, NS_MOREFRAG};
use crate::abi::vnet::VirtioNetHdr;
use crate::csb::fence_then_read_flag;
use crate::nm::Slot;
use crate::platform::Platform;
use crate::ring;
use core::fmt;

/// Frames between two publications (FreeBSD `PTNET_TX_BATCH`).
pub const BATCH: u32 = 64;

/// Per-ring copy-path state: the driver's private head (never read back from shared memory).
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyState {
    head: u32,
    unpublished: u32,
    valid: bool,
}

/// Errors of the copy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// No room in the TX ring now (wait for the TX interrupt).
    Full,
    /// The frame can never fit (needs more slots than the ring has).
    TooLong(usize),
    /// The caller's buffer is smaller than the received frame (the frame was dropped).
    BufferTooSmall {
        /// Frame length.
        len: usize,
    },
    /// A slot holds a bad buffer index or length (host misbehaviour; frame dropped).
    BadSlot(Slot),
    /// A driver error.
    Driver(DriverError),
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(f, "tx ring full"),
            Self::TooLong(n) => write!(f, "frame of {n} bytes does not fit the ring"),
            Self::BufferTooSmall { len } => write!(f, "received frame of {len} bytes too large"),
            Self::BadSlot(s) => write!(f, "bad slot: buffer {} len {}", s.buf_idx, s.len),
            Self::Driver(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CopyError {}

impl From<DriverError> for CopyError {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

/// A received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the caller's buffer (header excluded).
    pub len: usize,
    /// The virtio-net header, when the port uses one.
    pub hdr: Option<VirtioNetHdr>,
}

impl<P: Platform> Ptnet<P> {
    fn copy_state(&mut self, i: u32) -> Result<CopyState, DriverError> {
        let r = self.ring_mut(i)?;
        let head = r.k.rhead;
        let c = self.copy.get_mut(i as usize).ok_or(DriverError::NoRing(i))?;
        if !c.valid {
            *c = CopyState { head, unpublished: 0, valid: true };
        }
        Ok(*c)
    }

    fn buf_off(&self, s: Slot, max_len: usize) -> Result<usize, CopyError> {
        let ok = (2..self.info.buf_num).contains(&s.buf_idx) && (s.len as usize) <= max_len;
        if !ok {
            return Err(CopyError::BadSlot(s));
        }
        Ok((self.info.buf_pool_ofs + s.buf_idx as u64 * self.info.buf_size as u64) as usize)
    }

    /// Copies one frame into TX ring `i`, with `hdr` (or a zeroed header) in front when the
    /// port uses virtio-net headers (§8.5 TX 1–3). Publishes every [`BATCH`] frames.
    pub fn send(
        &mut self,
        i: u32,
        frame: &[u8],
        hdr: Option<&VirtioNetHdr>,
    ) -> Result<(), CopyError> {
        let mut c = self.copy_state(i)?;
        let hl = self.info.vnet_hdr_len as usize;
        let bsz = self.info.buf_size as usize;
        let total = hl + frame.len();
        let need = total.div_ceil(bsz).max(1) as u32;
        let r = self.ring_mut(i)?;
        if !r.tx {
            return Err(CopyError::Driver(DriverError::NoRing(i)));
        }
        let n = r.num_slots();
        if need >= n {
            return Err(CopyError::TooLong(frame.len()));
        }
        if ring::space(c.head, r.k.rtail, n) < need {
            let _ = r.sync_tail();
            if ring::space(c.head, r.k.rtail, n) < need
                && !r.rearm_sync_tail(|r| ring::space(c.head, r.k.rtail, n) >= need)
            {
                self.copy[i as usize] = c;
                self.flush_tx(i)?; // let the host see what we have before we sleep
                return Err(CopyError::Full);
            }
        }
        // Validate every slot we are about to fill before touching any buffer.
        let view = self.rings[i as usize].view.clone();
        let mut offs = [(0usize, 0u32); NETMAP_MAX_FRAGS];
        if need as usize > offs.len() {
            return Err(CopyError::TooLong(frame.len()));
        }
        let mut h = c.head;
        for o in offs.iter_mut().take(need as usize) {
            let s = view.slot(h); // copied once: the validated index is the one written back
            let off = self.buf_off(Slot { len: 0, ..s }, bsz).inspect_err(|_| {
                self.rings[i as usize].stats.errors += 1;
            })?;
            *o = (off, s.buf_idx);
            h = ring::next(h, n);
        }
        let region = &self.region;
        let mut pos = 0usize; // position in header+frame
        let mut h = c.head;
        for (k, &(off, buf_idx)) in offs.iter().take(need as usize).enumerate() {
            let chunk = (total - pos).min(bsz);
            let mut written = 0;
            if pos < hl {
                let mut hb = [0u8; 12];
                if let Some(v) = hdr {
                    v.emit(&mut hb);
                }
                let hk = (hl - pos).min(chunk);
                region
                    .write_bytes(off, &hb[pos..pos + hk])
                    .map_err(|e| DriverError::BadLayout(e.to_string()))?;
                written = hk;
            }
            let fpos = pos + written - hl;
            let fk = chunk - written;
            region
                .write_bytes(off + written, &frame[fpos..fpos + fk])
                .map_err(|e| DriverError::BadLayout(e.to_string()))?;
            let flags = if k + 1 < need as usize { NS_MOREFRAG } else { 0 };
            view.set_slot(h, Slot { buf_idx, len: chunk as u16, flags });
            pos += chunk;
            h = ring::next(h, n);
        }
        c.head = h;
        c.unpublished += 1;
        let st = &mut self.rings[i as usize].stats;
        st.frames += 1;
        st.bytes += frame.len() as u64;
        self.copy[i as usize] = c;
        if c.unpublished >= BATCH {
            self.flush_tx(i)?;
        }
        Ok(())
    }

    /// End of a TX burst (§8.5 TX 4): publish head/cur, kick with `NAF_FORCE_RECLAIM` if the
    /// host asks for kicks.
    pub fn flush_tx(&mut self, i: u32) -> Result<(), DriverError> {
        self.publish(i, NAF_FORCE_RECLAIM, false).map(|_| ())
    }

    /// The "ring update" of both directions: if our private head moved past what the host saw,
    /// set head = cur = it (shared ring, rhead/rcur), publish cur then head (§5.4 rule 1), and
    /// kick with `flags` if `kern_need_kick` reads 1 after the E7 fence. With nothing new it
    /// still kicks (if asked) when the caller would block (`wouldblock`, RX: §8.3 step 5) or,
    /// on TX, while the host has not consumed everything (§8.2 step 5). `true` if it kicked.
    fn publish(&mut self, i: u32, flags: u32, wouldblock: bool) -> Result<bool, DriverError> {
        let mut c = self.copy_state(i)?;
        let r = self.ring_mut(i)?;
        if c.unpublished == 0 && c.head == r.k.rhead {
            // Nothing new. §8.2 step 5: a TX sync still kicks while the host has not consumed
            // everything published (`rhead != hwcur`) and asks for kicks. With direct TX
            // (`klooptx=off`) a host that held frames back (its peer was full) processes them
            // only at a kick; its completion raises our TX interrupt but nothing else, so without
            // this kick the last frames of a stream would wait forever.
            let pending = wouldblock || r.tx && r.ktoa.appl_read().0 != r.k.rhead;
            if pending && fence_then_read_flag(|| r.ktoa.kern_need_kick()) != 0 {
                r.atok.set_sync_flags(flags);
                r.stats.kicks += 1;
                self.kick(i);
                return Ok(true);
            }
            return Ok(false);
        }
        r.k.rhead = c.head;
        r.k.rcur = c.head;
        r.view.set_head(c.head);
        r.view.set_cur(c.head);
        r.atok.appl_publish_head_cur(c.head, c.head);
        let kick = fence_then_read_flag(|| r.ktoa.kern_need_kick()) != 0;
        if kick {
            r.atok.set_sync_flags(flags);
            r.stats.kicks += 1;
        }
        c.unpublished = 0;
        self.copy[i as usize] = c;
        if kick {
            self.kick(i);
        }
        Ok(kick)
    }

    /// The copy path's private head of ring `i`: the next slot it fills (TX) or reads (RX).
    /// Slots between the published head and this one are filled but unpublished (TX) or
    /// consumed but unreleased (RX). `None` before the first copy on the ring.
    pub fn copy_head(&self, i: u32) -> Option<u32> {
        self.copy.get(i as usize).filter(|c| c.valid).map(|c| c.head)
    }

    /// Free TX slots of ring `i` after a tail sync. When the answer can still grow (some slots
    /// are with the host), the ring is left armed and unpublished frames are published, so a
    /// caller that waits because the answer is too small is woken when it grows (§5.4 rule 3):
    /// the answer is the one re-read after arming.
    pub fn tx_space(&mut self, i: u32) -> Result<u32, DriverError> {
        let c = self.copy_state(i)?;
        let r = self.ring_mut(i)?;
        if !r.tx {
            return Err(DriverError::NoRing(i));
        }
        let n = r.num_slots();
        let _ = r.sync_tail();
        if ring::space(c.head, r.k.rtail, n) < n - 1 {
            let drained = r.rearm_sync_tail(|r| ring::space(c.head, r.k.rtail, n) == n - 1);
            if !drained {
                self.flush_tx(i)?;
            }
        }
        let r = self.ring_mut(i)?;
        Ok(ring::space(c.head, r.k.rtail, n))
    }

    /// Receives one frame from RX ring `i` (TX-then-RX numbering) into `buf` (§8.5 RX 1–3).
    /// `Ok(None)`: nothing complete available; the ring is then armed (`appl_need_kick = 1`,
    /// so the host's next publication interrupts) and every consumed slot is released.
    /// Releases slots to the host every [`BATCH`] frames.
    pub fn recv(&mut self, i: u32, buf: &mut [u8]) -> Result<Option<Received>, CopyError> {
        let mut c = self.copy_state(i)?;
        let hl = self.info.vnet_hdr_len as usize;
        let bsz = self.info.buf_size as usize;
        let r = self.ring_mut(i)?;
        if r.tx {
            return Err(CopyError::Driver(DriverError::NoRing(i)));
        }
        let n = r.num_slots();
        // Find a complete chain in [head, rtail): as last seen, after a tail sync, and after
        // re-arming (E5: an incomplete chain counts as nothing). Only the last step may answer
        // "nothing", and then the ring is armed and what we consumed is released, with a kick
        // if the host asks for one (§8.3 step 5, wouldblock). In direct mode (`klooprx=off`)
        // that kick is what runs the host's RX processing, in place: what it published is
        // looked for once more before answering "nothing".
        let mut chain = [Slot::default(); NETMAP_MAX_FRAGS];
        let mut kicked = false;
        let slots = loop {
            let r = self.ring_mut(i)?;
            let mut slots = Self::chain_len(r, c.head, &mut chain);
            if slots.is_none() {
                let _ = r.sync_tail();
                slots = Self::chain_len(r, c.head, &mut chain);
            }
            if slots.is_none() {
                r.rearm_sync_tail(|r| {
                    slots = Self::chain_len(r, c.head, &mut chain);
                    slots.is_some()
                });
            }
            if let Some(s) = slots {
                break s;
            }
            self.copy[i as usize] = c;
            if kicked || !self.publish(i, NAF_FORCE_READ, true)? {
                return Ok(None); // armed, consumed slots released: the host interrupts
            }
            kicked = true;
            c = self.copy_state(i)?;
        };
        c.head = ring::add(c.head, slots, n);
        c.unpublished += 1;
        self.copy[i as usize] = c;
        let res = self.copy_out(&chain[..slots as usize], hl, bsz, buf);
        if res.is_err() {
            self.rings[i as usize].stats.errors += 1;
        }
        if c.unpublished >= BATCH {
            self.flush_rx(i)?;
        }
        let got = res?;
        let st = &mut self.rings[i as usize].stats;
        st.frames += 1;
        st.bytes += got.len as u64;
        Ok(Some(got))
    }

    /// Length in slots of the complete chain starting at `head`, if one is available. The
    /// slots are copied once into `chain` (the host may rewrite them at any time; only these
    /// copies are validated and used).
    fn chain_len(
        r: &super::ring::GuestRing,
        head: u32,
        chain: &mut [Slot; NETMAP_MAX_FRAGS],
    ) -> Option<u32> {
        let n = r.num_slots();
        let avail = ring::dist(head, r.k.rtail, n);
        let mut h = head;
        for (k, c) in chain.iter_mut().enumerate().take(avail as usize) {
            *c = r.view.slot(h);
            if c.flags & NS_MOREFRAG == 0 {
                return Some(k as u32 + 1);
            }
            h = ring::next(h, n);
        }
        if avail as usize >= NETMAP_MAX_FRAGS || avail + 1 == n {
            // Over-long (dropped by copy_out), or unterminated in a full ring: the host cannot
            // add a slot until we release one, so waiting would stall the ring for good.
            return Some(avail.min(NETMAP_MAX_FRAGS as u32));
        }
        None // empty, or incomplete chain (E5): retry later
    }

    fn copy_out(
        &self,
        chain: &[Slot],
        hl: usize,
        bsz: usize,
        buf: &mut [u8],
    ) -> Result<Received, CopyError> {
        let slots = chain.len();
        let mut skip = hl; // header bytes still to strip
        let mut hb = [0u8; 12];
        let mut out = 0usize;
        let mut total = 0usize;
        for (k, &s) in chain.iter().enumerate() {
            let off = self.buf_off(s, bsz)?;
            let len = s.len as usize;
            if k == 0 && len < hl {
                return Err(CopyError::BadSlot(s)); // the header must be in the first slot
            }
            if k + 1 == slots && s.flags & NS_MOREFRAG != 0 {
                return Err(CopyError::TooLong(total + len));
            }
            let hk = skip.min(len);
            if hk > 0 {
                self.region
                    .read_bytes(off, &mut hb[hl - skip..hl - skip + hk])
                    .map_err(|e| DriverError::BadLayout(e.to_string()))?;
                skip -= hk;
            }
            let body = len - hk;
            total += body;
            if out + body <= buf.len() {
                self.region
                    .read_bytes(off + hk, &mut buf[out..out + body])
                    .map_err(|e| DriverError::BadLayout(e.to_string()))?;
                out += body;
            }
        }
        if total > buf.len() {
            return Err(CopyError::BufferTooSmall { len: total });
        }
        let hdr = (hl > 0).then(|| VirtioNetHdr::parse(&hb)).flatten();
        Ok(Received { len: out, hdr })
    }

    /// End of an RX burst (§8.5 RX 3): release consumed slots (head = cur = our head, rule 1)
    /// and kick with `NAF_FORCE_READ` if the host asks for kicks.
    pub fn flush_rx(&mut self, i: u32) -> Result<(), DriverError> {
        self.publish(i, NAF_FORCE_READ, false).map(|_| ())
    }
}

impl<P: Platform> Ptnet<P> {
    /// Slots of RX ring `i` the copy path has not consumed yet, after reading the host's tail
    /// (§8.4): non-zero means a frame is (or is being) received. Does not consume anything.
    pub fn rx_pending(&mut self, i: u32) -> Result<u32, DriverError> {
        let c = self.copy_state(i)?;
        let r = self.ring_mut(i)?;
        if r.tx {
            return Err(DriverError::NoRing(i));
        }
        let _ = r.sync_tail();
        Ok(ring::dist(c.head, r.k.rtail, r.num_slots()))
    }

    /// `ptnet_sync_tail` (§8.4) of ring `i`: reads the host's indices (validated) and sets
    /// `tail = hwtail` in the shared ring. Used by zero-copy users to reclaim completed slots.
    pub fn sync_tail(&mut self, i: u32) -> Result<(), DriverError> {
        self.ring_mut(i)?.sync_tail().map_err(DriverError::from)
    }

    /// netmap's poll of ring `i` for a user that waits on it (`netmap_poll`): a sync with the
    /// values of the user's last sync (nothing new is published), which kicks if the host asks
    /// for kicks and the ring has pending slots or would block (§8.2 step 5, §8.3 step 5), then
    /// a tail sync. In direct mode (§8.6 "Direct modes") the host moves slots only inside a kick
    /// and an interrupt only says that a backend event happened, so a waiter that just re-read
    /// the tail would sleep through it; the kick is processed before the register write
    /// returns, and the tail sync after it sees what it moved.
    pub fn poll_sync(&mut self, i: u32) -> Result<(), DriverError> {
        let r = self.ring_mut(i)?;
        let (tx, head, cur) = (r.tx, r.k.rhead, r.k.rcur);
        if tx {
            self.txsync(i, head, cur, 0)?;
        } else {
            self.rxsync(i, head, cur, 0)?;
        }
        self.sync_tail(i)
    }

    /// Ends the copy path's use of ring `i` before another user (a zero-copy client) takes it
    /// (scheme-spec `netmap.md` M5.2): TX publishes every frame copied so far; RX releases the
    /// slots already consumed and leaves unread frames in the ring. The copy path resumes from
    /// the ring's validated head (`rhead`) the next time it is used, so no frame is lost or
    /// repeated across the hand-over.
    pub fn release_copy(&mut self, i: u32) -> Result<(), DriverError> {
        let tx = self.ring_mut(i)?.tx;
        if tx {
            self.flush_tx(i)?;
        } else {
            self.flush_rx(i)?;
        }
        if let Some(c) = self.copy.get_mut(i as usize) {
            c.valid = false;
        }
        Ok(())
    }
}
