//! [`Os`] on Redox: the real system calls (libredox), an event queue for readiness and a
//! `CLOCK_MONOTONIC` timer for timeouts. The mapping of the region is the one `unsafe` part.
#![allow(unsafe_code)]

use super::{ClientError, EventFlags, Os};
use crate::shm::Region;
use libredox::call::{mmap, munmap, MmapArgs};
use libredox::flag::{MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE};
use libredox::Fd;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syscall::data::{Event, TimeSpec};
use syscall::error::{EBADF, EIO};
use syscall::flag::CallFlags;

const TIMER: usize = usize::MAX;

fn os_err(e: libredox::error::Error) -> ClientError {
    ClientError::Errno(e.errno())
}

/// The client side of Redox: descriptors of this process, one event queue, one timer.
pub struct RedoxOs {
    queue: Fd,
    timer: Fd,
    fds: Mutex<HashMap<usize, Fd>>,
    pending: Mutex<HashMap<usize, EventFlags>>,
}

impl std::fmt::Debug for RedoxOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedoxOs(queue {})", self.queue.raw())
    }
}

impl RedoxOs {
    /// Opens the event queue and the timer.
    pub fn new() -> Result<Self, ClientError> {
        let queue = Fd::open("/scheme/event", (O_RDWR | O_CLOEXEC) as i32, 0).map_err(os_err)?;
        let timer = Fd::open("/scheme/time/4", (O_RDWR | O_CLOEXEC) as i32, 0).map_err(os_err)?;
        let os = Self { queue, timer, fds: Mutex::default(), pending: Mutex::default() };
        os.watch(os.timer.raw(), EventFlags::EVENT_READ, TIMER)?;
        Ok(os)
    }

    fn watch(&self, fd: usize, flags: EventFlags, data: usize) -> Result<(), ClientError> {
        let ev = Event { id: fd, flags, data };
        self.queue.write(&ev).map_err(os_err).map(|_| ())
    }

    fn with_fd<T>(
        &self,
        fd: usize,
        f: impl FnOnce(&Fd) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let t = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        f(t.get(&fd).ok_or(ClientError::Errno(EBADF))?)
    }

    fn arm(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut now = TimeSpec::default();
        self.timer.read(&mut now).map_err(os_err)?;
        let at = TimeSpec::from_nanos(now.to_nanos().saturating_add(timeout.as_nanos()));
        self.timer.write(&at).map_err(os_err).map(|_| ())
    }
}

struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, accessed only through `Region` (atomics and raw
// copies); the pointer is unmapped once, when the last owner drops.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` was returned by `mmap` and is unmapped exactly once, when no
        // region refers to it any more (this owner is dropped after every clone).
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl Os for RedoxOs {
    fn open(&self, path: &str, flags: usize) -> Result<usize, ClientError> {
        let fd = Fd::open(path, flags as i32 | O_CLOEXEC as i32, 0).map_err(os_err)?;
        let raw = fd.raw();
        self.fds.lock().unwrap_or_else(|e| e.into_inner()).insert(raw, fd);
        Ok(raw)
    }

    fn read(&self, fd: usize, buf: &mut [u8], offset: u64) -> Result<usize, ClientError> {
        self.with_fd(fd, |f| {
            if offset != 0 {
                syscall::lseek(f.raw(), offset as isize, syscall::SEEK_SET)
                    .map_err(|e| ClientError::Errno(e.errno))?;
            }
            f.read(buf).map_err(os_err)
        })
    }

    fn write(&self, fd: usize, buf: &[u8]) -> Result<usize, ClientError> {
        self.with_fd(fd, |f| f.write(buf).map_err(os_err))
    }

    fn call(&self, fd: usize, payload: &mut [u8], metadata: &[u64]) -> Result<usize, ClientError> {
        self.with_fd(fd, |f| f.call_rw(payload, CallFlags::empty(), metadata).map_err(os_err))
    }

    fn subscribe(&self, fd: usize, flags: EventFlags) -> Result<(), ClientError> {
        self.watch(fd, flags, fd)
    }

    fn wait_event(
        &self,
        fd: usize,
        flags: EventFlags,
        timeout: Duration,
    ) -> Result<EventFlags, ClientError> {
        let take = |p: &mut HashMap<usize, EventFlags>| super::take_pending(p, fd, flags);
        let got = take(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !got.is_empty() {
            return Ok(got);
        }
        self.arm(timeout)?;
        loop {
            let mut ev = Event::default();
            let n = self.queue.read(&mut ev).map_err(os_err)?;
            if n != std::mem::size_of::<Event>() {
                return Err(ClientError::Errno(EIO));
            }
            if ev.data == TIMER {
                return Ok(EventFlags::empty());
            }
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            *p.entry(ev.data).or_default() |= ev.flags;
            let got = take(&mut p);
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    fn mmap(&self, fd: usize, len: usize) -> Result<Region, ClientError> {
        let args = MmapArgs {
            addr: core::ptr::null_mut(),
            length: len,
            prot: PROT_READ | PROT_WRITE,
            flags: MAP_SHARED,
            fd,
            offset: 0,
        };
        // SAFETY: a fresh shared mapping chosen by the kernel (no fixed address), so it overlaps
        // nothing of ours; its ownership goes to `Mapping`, which unmaps it once.
        let ptr = unsafe { mmap(args) }.map_err(os_err)?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ClientError::Errno(EIO))?;
        let owner = Arc::new(Mapping { ptr, len });
        // SAFETY: `len` bytes at `ptr` are mapped read/write and page aligned, stay mapped while
        // `owner` lives (every clone of the region holds it), and are only accessed through
        // `Region` by this process (the daemon and the host are the other parties).
        Ok(unsafe { Region::from_raw(ptr, len, Some(owner)) })
    }

    fn close(&self, fd: usize) {
        let f = self.fds.lock().unwrap_or_else(|e| e.into_inner()).remove(&fd);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&fd);
        if let Some(f) = f {
            let _ = f.close();
        }
    }
}
