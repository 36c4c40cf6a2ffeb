//! The two schemes ptnetd exports for one ptnet NIC (normative text: `scheme-spec/`):
//! `network.<pci-name>_ptnet` (stack mode, [`network`], `network.md`) and
//! `netmap.<pci-name>_ptnet` (zero-copy mode, [`netmap`], `netmap.md`), over one [`Daemon`]
//! that owns the driver and arbitrates ring ownership between the stack and zero-copy clients.
//!
//! Both schemes are plain [`redox_scheme::scheme::SchemeSync`] implementations ([`NetworkView`]
//! and [`NetmapView`], thin views of the daemon). Requests reach them through redox-scheme's own
//! decoding and dispatch in [`server::Server`], on Redox (from the scheme sockets) and on the host
//! (from the in-process transport [`host`], which plays the kernel's part): the code that runs in
//! the tests is the code that runs on Redox. Errors are typed below this module and become errno
//! values only here ([`Errno`]).

pub mod netmap;
pub mod network;
pub mod server;

#[cfg(not(target_os = "redox"))]
pub mod host;
#[cfg(target_os = "redox")]
pub mod redox;

use crate::driver::copy::CopyError;
use crate::driver::{DriverError, Ptnet};
use crate::platform::Platform;
use std::collections::BTreeMap;
use std::fmt;
use syscall::error::{Error, Result, EBADF, EINVAL, EIO, ENETDOWN};

pub use netmap::NetmapView;
pub use network::NetworkView;

/// Which of the two schemes a request or handle belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Which {
    /// `network.<pci-name>_ptnet` (stack mode).
    Network,
    /// `netmap.<pci-name>_ptnet` (zero-copy mode).
    Netmap,
}

impl Which {
    /// The scheme name for the device called `pci_name` (scheme-spec N1, M1).
    pub fn scheme_name(self, pci_name: &str) -> String {
        match self {
            Self::Network => format!("network.{pci_name}_ptnet"),
            Self::Netmap => format!("netmap.{pci_name}_ptnet"),
        }
    }
}

/// An errno value with the reason it was chosen (for logs): the one place where typed errors
/// become errno values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::new(e.0)
    }
}

impl From<DriverError> for Errno {
    fn from(e: DriverError) -> Self {
        Errno(match e {
            DriverError::NotRunning => ENETDOWN,
            DriverError::NoRing(_) => EINVAL,
            _ => EIO,
        })
    }
}

pub(crate) fn driver_err(e: DriverError) -> Error {
    log::warn!("ptnetd: driver error: {e}");
    Errno::from(e).into()
}

pub(crate) fn copy_err(e: CopyError) -> Error {
    match e {
        CopyError::Driver(d) => driver_err(d),
        other => {
            log::warn!("ptnetd: copy path: {other}");
            Error::new(EIO)
        }
    }
}

/// What a handle id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handle {
    /// The root of a scheme (the capability `openat` works on).
    Root(Which),
    /// `network` data handle (frames).
    NetData {
        /// Asked for `EVENT_READ` through `fevent`.
        read_events: bool,
    },
    /// `network` `mac` handle.
    NetMac,
    /// A bound `netmap` handle.
    Netmap(netmap::Binding),
}

impl Handle {
    fn which(&self) -> Which {
        match self {
            Self::Root(w) => *w,
            Self::NetData { .. } | Self::NetMac => Which::Network,
            Self::Netmap(_) => Which::Netmap,
        }
    }
}

/// Who uses a ring (scheme-spec M5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The stack (`network` scheme, copy path).
    Stack,
    /// The `netmap` handle with this id.
    Client(usize),
}

/// Counters of the scheme layer (what the benchmarks and the main job report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemeStats {
    /// Requests handled, both schemes (one per scheme call a client makes).
    pub calls: u64,
    /// Frames returned by `network` reads.
    pub frames_read: u64,
    /// Frames accepted by `network` writes.
    pub frames_written: u64,
    /// Zero-copy syncs (`TXSYNC`/`RXSYNC` calls).
    pub syncs: u64,
    /// Zero-copy syncs refused because the client's ring or slots were invalid.
    pub bad_syncs: u64,
    /// Events posted to clients.
    pub events: u64,
}

/// The daemon state behind both schemes: the driver, the platform it runs on, the open handles
/// and the ring owners.
pub struct Daemon<P: Platform> {
    plat: P,
    nic: Ptnet<P>,
    handles: BTreeMap<usize, Handle>,
    next_id: usize,
    owners: Vec<Owner>,
    stack: network::StackState,
    stats: SchemeStats,
    /// Rings whose interrupts were taken since the last end of batch (bit i: ring i; the
    /// polling fallback sets all): the rings a readiness check may sync (netmap.md M6).
    signalled: u64,
}

impl<P: Platform> fmt::Debug for Daemon<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Daemon({}, {} handles)", self.nic.info().name, self.handles.len())
    }
}

impl<P: Platform> Daemon<P> {
    /// A daemon serving `nic` (already brought up on `plat`). Every ring starts with the stack.
    pub fn new(plat: P, nic: Ptnet<P>) -> Self {
        let owners = vec![Owner::Stack; nic.num_rings() as usize];
        let stack = network::StackState::new(&nic);
        Self {
            plat,
            nic,
            handles: BTreeMap::new(),
            next_id: 1,
            owners,
            stack,
            stats: SchemeStats::default(),
            signalled: 0,
        }
    }

    /// The driver.
    pub fn nic(&self) -> &Ptnet<P> {
        &self.nic
    }

    /// The driver, mutable (tests and tools; the schemes keep their own state consistent).
    pub fn nic_mut(&mut self) -> &mut Ptnet<P> {
        &mut self.nic
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.plat
    }

    /// The scheme name of `which` for this device.
    pub fn scheme_name(&self, which: Which) -> String {
        which.scheme_name(&self.nic.info().name)
    }

    /// Counters.
    pub fn stats(&self) -> SchemeStats {
        self.stats
    }

    /// Who uses ring `i` (TX-then-RX numbering).
    pub fn owner(&self, i: u32) -> Option<Owner> {
        self.owners.get(i as usize).copied()
    }

    /// Shuts the device down (§11: DELETE, then the CSB addresses cleared, then freed).
    pub fn shutdown(self) -> std::result::Result<(), DriverError> {
        self.nic.shutdown()
    }

    fn insert(&mut self, h: Handle) -> usize {
        let id = self.next_id;
        self.next_id += 1; // never reused (scheme-spec N2)
        self.handles.insert(id, h);
        id
    }

    fn root(&mut self, which: Which) -> usize {
        if let Some((id, _)) = self.handles.iter().find(|(_, h)| **h == Handle::Root(which)) {
            return *id;
        }
        self.insert(Handle::Root(which))
    }

    fn handle(&self, which: Which, id: usize) -> Result<&Handle> {
        match self.handles.get(&id) {
            Some(h) if h.which() == which => Ok(h),
            _ => Err(Error::new(EBADF)),
        }
    }

    /// The checks every open of `which` starts with (N2, M2): root callers only, relative to
    /// the scheme's root handle.
    fn check_open(&self, which: Which, dir: usize, ctx: &redox_scheme::CallerCtx) -> Result<()> {
        if ctx.uid != 0 || self.handles.get(&dir) != Some(&Handle::Root(which)) {
            return Err(Error::new(syscall::error::EACCES));
        }
        Ok(())
    }

    /// `fpath` (N6, M7): `/scheme/<name>/<path>`, truncated to `buf`; returns the count.
    fn fpath(&self, which: Which, path: &str, buf: &mut [u8]) -> usize {
        let s = format!("/scheme/{}/{path}", self.scheme_name(which));
        let n = s.len().min(buf.len());
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        n
    }

    /// A handle was closed (explicitly or because its process died): its rings go back to the
    /// stack (scheme-spec M5.1, M5.3).
    pub fn close(&mut self, id: usize) {
        if matches!(self.handles.get(&id), Some(Handle::Root(_))) {
            return; // roots live as long as the daemon
        }
        if let Some(Handle::Netmap(b)) = self.handles.remove(&id) {
            netmap::unbind(self, id, &b);
        }
    }

    /// Takes pending interrupts (or, with `poll`, treats every ring as signalled); returns the
    /// mask of rings whose host indices may have moved.
    pub fn take_interrupts(&mut self, poll: bool) -> u64 {
        let m = self.nic.take_interrupts(poll);
        self.signalled |= m;
        m
    }

    /// End of a batch of requests (scheme-spec N5, N8, M6): publishes the stack's frames and
    /// collects the readiness events to post, as `(scheme, handle id, flags)`.
    pub fn end_of_batch(&mut self, events: &mut Vec<(Which, usize, usize)>) {
        network::flush(self);
        network::events(self, events);
        netmap::events(self, events);
        self.signalled = 0;
        self.stats.events += events.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names_follow_the_spec() {
        assert_eq!(
            Which::Network.scheme_name("pci-0000-00-03.0"),
            "network.pci-0000-00-03.0_ptnet"
        );
        assert_eq!(Which::Netmap.scheme_name("pci-0000-00-03.0"), "netmap.pci-0000-00-03.0_ptnet");
        assert!(!Which::Netmap.scheme_name("x").starts_with("network"));
    }

    #[test]
    fn driver_errors_map_to_errno() {
        assert_eq!(Errno::from(DriverError::NotRunning), Errno(ENETDOWN));
        assert_eq!(Errno::from(DriverError::NoRing(3)), Errno(EINVAL));
        assert_eq!(Errno::from(DriverError::BadLayout("x".into())), Errno(EIO));
    }
}
