//! [`Os`] on the host: Redox paths and descriptors over the in-process kernel
//! ([`HostKernel`]) of one or more daemons, so client code runs unchanged on Redox and here.

use super::{ClientError, EventFlags, Os};
use crate::platform::Platform;
use crate::scheme::host::HostKernel;
use crate::scheme::Which;
use crate::shm::Region;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use syscall::error::{EBADF, ENOENT};
use syscall::flag::{MapFlags, O_FCNTL_MASK};

#[derive(Debug, Clone, Copy)]
struct Entry {
    k: usize,
    which: Which,
    id: usize,
    fcntl: usize,
}

/// The host's "operating system" for clients: the schemes of the given daemons.
#[derive(Debug)]
pub struct HostOs<'a, P: Platform + Send + 'static> {
    kernels: Vec<&'a HostKernel<P>>,
    uid: u32,
    fds: Mutex<(usize, HashMap<usize, Entry>)>,
    ready: Mutex<HashMap<usize, EventFlags>>,
}

impl<'a, P: Platform + Send + 'static> HostOs<'a, P> {
    /// Clients of `kernels`' schemes, as root.
    pub fn new(kernels: Vec<&'a HostKernel<P>>) -> Self {
        Self::with_uid(kernels, 0)
    }

    /// Clients running as user `uid`.
    pub fn with_uid(kernels: Vec<&'a HostKernel<P>>, uid: u32) -> Self {
        Self { kernels, uid, fds: Mutex::new((3, HashMap::new())), ready: Mutex::default() }
    }

    fn entry(&self, fd: usize) -> Result<(Entry, &'a HostKernel<P>), ClientError> {
        let t = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        let e = *t.1.get(&fd).ok_or(ClientError::Errno(EBADF))?;
        Ok((e, self.kernels[e.k]))
    }

    fn resolve(&self, path: &str) -> Option<(usize, Which, String)> {
        let rest = path.strip_prefix("/scheme/")?;
        let (name, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let (which, pci) = if let Some(n) = name.strip_prefix("network.") {
            (Which::Network, n)
        } else {
            (Which::Netmap, name.strip_prefix("netmap.")?)
        };
        let pci = pci.strip_suffix("_ptnet")?;
        let k = self.kernels.iter().position(|k| k.name() == pci)?;
        Some((k, which, sub.to_string()))
    }
}

impl<P: Platform + Send + 'static> Os for HostOs<'_, P> {
    fn open(&self, path: &str, flags: usize) -> Result<usize, ClientError> {
        let (k, which, sub) = self.resolve(path).ok_or(ClientError::Errno(ENOENT))?;
        let id = self.kernels[k].open(which, &sub, flags, self.uid)?;
        let mut t = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        let fd = t.0;
        t.0 += 1;
        t.1.insert(fd, Entry { k, which, id, fcntl: flags & O_FCNTL_MASK });
        Ok(fd)
    }

    fn read(&self, fd: usize, buf: &mut [u8], offset: u64) -> Result<usize, ClientError> {
        let (e, k) = self.entry(fd)?;
        Ok(k.read(e.which, e.id, buf, offset, e.fcntl)?)
    }

    fn write(&self, fd: usize, buf: &[u8]) -> Result<usize, ClientError> {
        let (e, k) = self.entry(fd)?;
        Ok(k.write(e.which, e.id, buf, e.fcntl)?)
    }

    fn call(&self, fd: usize, payload: &mut [u8], metadata: &[u64]) -> Result<usize, ClientError> {
        let (e, k) = self.entry(fd)?;
        Ok(k.call(e.which, e.id, payload, metadata)?)
    }

    fn subscribe(&self, fd: usize, flags: EventFlags) -> Result<(), ClientError> {
        let (e, k) = self.entry(fd)?;
        let now = k.fevent(e.which, e.id, flags)?;
        // As Redox's kernel does: flags ready at subscription are an event already.
        if !now.is_empty() {
            *self.ready.lock().unwrap_or_else(|e| e.into_inner()).entry(fd).or_default() |= now;
        }
        Ok(())
    }

    fn wait_event(
        &self,
        fd: usize,
        flags: EventFlags,
        timeout: Duration,
    ) -> Result<EventFlags, ClientError> {
        let got = super::take_pending(
            &mut self.ready.lock().unwrap_or_else(|e| e.into_inner()),
            fd,
            flags,
        );
        if !got.is_empty() {
            return Ok(got);
        }
        let (e, k) = self.entry(fd)?;
        Ok(k.wait_event(e.which, e.id, flags, timeout))
    }

    fn mmap(&self, fd: usize, len: usize) -> Result<Region, ClientError> {
        let (e, k) = self.entry(fd)?;
        let f = MapFlags::MAP_SHARED | MapFlags::PROT_READ | MapFlags::PROT_WRITE;
        Ok(k.mmap(e.which, e.id, 0, len, f)?)
    }

    fn close(&self, fd: usize) {
        let e = self.fds.lock().unwrap_or_else(|e| e.into_inner()).1.remove(&fd);
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).remove(&fd);
        if let Some(e) = e {
            self.kernels[e.k].close(e.which, e.id);
        }
    }
}
