//! MSI-X over vfio-user: one eventfd per vector, handed over by `VFIO_USER_DEVICE_SET_IRQS`.
//!
//! QEMU emulates the MSI-X table and PBA itself (the guest's table writes never reach the
//! server) and gives the device one eventfd per vector; the device raises vector `i` by writing
//! 1 to eventfd `i`, and QEMU delivers (or, if masked, marks pending) the message it holds in
//! its table. [`EventfdMsi`] is that side of the device: a [`MsiSink`] routing by vector number
//! (the message captured by the model at CREATE is ignored, see
//! [`PtnetDevice::set_external_msix`]).
//!
//! How QEMU (hw/vfio-user, with this crate's `max_msg_fds` of 1) drives it, and what we do:
//!
//! | `SET_IRQS` (index MSI-X, action TRIGGER) | meaning | here |
//! |---|---|---|
//! | DATA_EVENTFD, `count` fds | vectors `start..start+count` signal these fds | stored |
//! | DATA_EVENTFD, no fds, `count` > 0 | those vectors have no fd (QEMU's fd −1) | cleared |
//! | DATA_NONE, `count` = 0 | MSI-X disabled | all cleared |
//! | DATA_NONE, `count` > 0 | loopback: raise those vectors now | signalled |
//!
//! MASK/UNMASK actions are accepted and ignored: QEMU masks in its own table, and the ptnet
//! device does not honour per-vector masking anyway (§9 [inferred pitfall]).
//!
//! [`PtnetDevice::set_external_msix`]: crate::model::ptnet::PtnetDevice::set_external_msix

use crate::model::kloop::{MsiMessage, MsiSink};
use core::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// Why a vector update was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrqError {
    /// `start + count` exceeds the number of vectors.
    Range {
        /// First vector.
        start: u32,
        /// Number of vectors.
        count: u32,
        /// Vectors the device has.
        vectors: u32,
    },
    /// The number of fds is neither 0 nor `count`.
    FdCount {
        /// Vectors named.
        count: u32,
        /// Fds received.
        fds: usize,
    },
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range { start, count, vectors } => {
                write!(f, "vectors {start}+{count} outside the device's {vectors}")
            }
            Self::FdCount { count, fds } => write!(f, "{fds} fds for {count} vectors"),
        }
    }
}

impl std::error::Error for IrqError {}

impl From<IrqError> for std::io::Error {
    fn from(e: IrqError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
}

/// The device's MSI-X vectors as eventfds.
#[derive(Debug)]
pub struct EventfdMsi {
    vectors: RwLock<Vec<Option<File>>>,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl EventfdMsi {
    /// `n` vectors, none connected.
    pub fn new(n: u32) -> Self {
        Self {
            vectors: RwLock::new((0..n).map(|_| None).collect()),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Option<File>>> {
        self.vectors.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<File>>> {
        self.vectors.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of vectors.
    pub fn len(&self) -> u32 {
        self.read().len() as u32
    }

    /// `true` for a device without vectors.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn check(&self, start: u32, count: u32) -> Result<std::ops::Range<usize>, IrqError> {
        let vectors = self.len();
        match start.checked_add(count) {
            Some(end) if end <= vectors => Ok(start as usize..end as usize),
            _ => Err(IrqError::Range { start, count, vectors }),
        }
    }

    /// Connects vectors `start..start+fds.len()` to `fds`; with no fds, disconnects
    /// `start..start+count` instead. Fails (changing nothing) on a bad range or fd count.
    pub fn set(&self, start: u32, count: u32, fds: Vec<File>) -> Result<(), IrqError> {
        let range = self.check(start, count)?;
        if !fds.is_empty() && fds.len() != count as usize {
            return Err(IrqError::FdCount { count, fds: fds.len() });
        }
        let mut v = self.write();
        if fds.is_empty() {
            v[range].iter_mut().for_each(|s| *s = None);
        } else {
            for (slot, fd) in v[range].iter_mut().zip(fds) {
                *slot = Some(fd);
            }
        }
        Ok(())
    }

    /// Disconnects every vector.
    pub fn clear_all(&self) {
        self.write().iter_mut().for_each(|s| *s = None);
    }

    /// Raises vectors `start..start+count` now (`DATA_NONE` loopback).
    pub fn trigger(&self, start: u32, count: u32) -> Result<(), IrqError> {
        for i in self.check(start, count)? {
            self.signal(i);
        }
        Ok(())
    }

    /// `true` if vector `i` has an eventfd.
    pub fn is_connected(&self, i: u32) -> bool {
        self.read().get(i as usize).is_some_and(Option::is_some)
    }

    /// Number of vectors with an eventfd.
    pub fn connected(&self) -> u32 {
        self.read().iter().filter(|s| s.is_some()).count() as u32
    }

    /// Interrupts written to an eventfd.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Interrupts for a vector without an eventfd (or whose write failed): lost, as on a
    /// device whose MSI-X vector is not set up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn signal(&self, i: usize) {
        let v = self.read();
        let ok = match v.get(i).and_then(Option::as_ref) {
            // An eventfd adds the 8-byte value to its counter.
            Some(mut f) => f.write(&1u64.to_ne_bytes()).is_ok_and(|n| n == 8),
            None => false,
        };
        let c = if ok { &self.delivered } else { &self.dropped };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl MsiSink for EventfdMsi {
    fn deliver(&self, vector: u16, _msg: MsiMessage) {
        self.signal(vector as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// A stand-in for an eventfd: a socket pair (the device writes 8 bytes per interrupt).
    fn pair() -> (File, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (File::from(std::os::fd::OwnedFd::from(a)), b)
    }

    #[test]
    fn vectors_route_by_number() {
        let m = EventfdMsi::new(4);
        let (f1, mut r1) = pair();
        let (f2, mut r2) = pair();
        m.set(1, 2, vec![f1, f2]).unwrap();
        assert_eq!(m.connected(), 2);
        m.deliver(2, MsiMessage::default());
        m.deliver(0, MsiMessage::default());
        m.deliver(9, MsiMessage::default());
        let mut b = [0u8; 8];
        r2.read_exact(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 1);
        assert_eq!((m.delivered(), m.dropped()), (1, 2));
        m.trigger(1, 1).unwrap();
        r1.read_exact(&mut b).unwrap();
        m.set(1, 1, Vec::new()).unwrap();
        assert!(!m.is_connected(1) && m.is_connected(2));
        m.clear_all();
        assert_eq!(m.connected(), 0);
    }

    #[test]
    fn bad_updates_change_nothing() {
        let m = EventfdMsi::new(2);
        let (f, _r) = pair();
        assert!(matches!(m.set(1, 2, Vec::new()), Err(IrqError::Range { .. })));
        assert!(matches!(m.set(u32::MAX, 2, Vec::new()), Err(IrqError::Range { .. })));
        assert!(matches!(m.set(0, 2, vec![f]), Err(IrqError::FdCount { count: 2, fds: 1 })));
        assert!(m.trigger(2, 1).is_err());
        assert_eq!(m.connected(), 0);
    }
}
