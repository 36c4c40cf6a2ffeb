//! The Redox platform: PCI functions through pcid, DMA through the memory scheme, MSI-X vectors
//! through the `irq:` scheme (spec/redox.md).
//!
//! | file | holds |
//! |---|---|
//! | [`wire`] | pure: pcid channel codec (bincode 1), PCI addresses, mmap offsets, MSI messages; unit-tested on the host |
//! | `function` | [`RedoxFunction`]: config space, BARs (port I/O, mappings), MSI-X enable |
//! | `mem` | mappings unmapped on drop, `physical@…` maps, DMA allocation and translation |
//! | `irq` | [`RedoxIrq`], vector reservation, the event-queue wait |
//! | `daemon` | [`notify_ready`], [`enter_null_namespace`] |
//!
//! ## Order of calls in the daemon
//! ```text
//! RedoxPlatform::new()            opens /scheme/memory/scheme-root, translation, /scheme/event,
//!                                 /scheme/time/4, /scheme/pci/access
//! primary(), find_functions()     pcid channels (PCID_CLIENT_CHANNEL, /scheme/pci/<addr>/channel)
//! alloc_vectors()                 /scheme/irq/bsp, /scheme/irq/cpu-XX/<n>
//! … register the schemes …
//! enter_null_namespace()          setrens(0, 0): no more path opens from here on
//! notify_ready()                  INIT_NOTIFY
//! alloc_dma(), BAR access, waits  work in the null namespace (fds and openat on held fds)
//! ```
#![allow(unsafe_code)]

mod daemon;
mod function;
mod irq;
mod mem;
pub mod wire;

pub use daemon::{enter_null_namespace, notify_ready};
pub use function::RedoxFunction;
pub use irq::RedoxIrq;

use crate::platform::{Dma, MsiMessage, PciFunction, Platform, PlatformError};
use function::Channel;
use irq::Waiter;
use libredox::errno::ENOLCK;
use libredox::flag::{O_CLOEXEC, O_RDWR};
use libredox::Fd;
use mem::{os, DmaAllocator};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{PciAddr, PciEntry, Request, Response};

/// The inherited `PCID_CLIENT_CHANNEL` fd is wrapped (and so closed) at most once per process.
static PRIMARY_TAKEN: AtomicBool = AtomicBool::new(false);

/// The Redox implementation of [`Platform`].
pub struct RedoxPlatform {
    dma: DmaAllocator,
    mem_root: Arc<Fd>,
    /// `/scheme/pci/access`: side-effect-free config reads of any function (root only).
    access: Option<Fd>,
    waiter: Option<Waiter>,
    bsp: Option<u32>,
    start: Instant,
}

impl std::fmt::Debug for RedoxPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedoxPlatform")
            .field("mem_root", &self.mem_root.raw())
            .field("access", &self.access.as_ref().map(Fd::raw))
            .field("events", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}

impl RedoxPlatform {
    /// Opens what the platform needs for the rest of its life (call before
    /// [`enter_null_namespace`]): the memory scheme root and its translation handle (required),
    /// the event queue and timer for [`Platform::wait_interrupts`] (without them waits become
    /// short sleeps) and `/scheme/pci/access` (optional, used to find functions without
    /// opening their channels).
    pub fn new() -> Result<Self, PlatformError> {
        let mem_root = Arc::new(
            Fd::open("/scheme/memory/scheme-root", O_CLOEXEC, 0)
                .map_err(os("open /scheme/memory/scheme-root"))?,
        );
        let dma = DmaAllocator::new(mem_root.clone())?;
        let waiter = Waiter::open()
            .inspect_err(|e| log::warn!("{e}: interrupt waits become short sleeps"))
            .ok();
        let access = Fd::open("/scheme/pci/access", O_RDWR | O_CLOEXEC, 0)
            .inspect_err(|e| log::debug!("/scheme/pci/access: {e}; scanning through channels"))
            .ok();
        Ok(Self { dma, mem_root, access, waiter, bsp: None, start: Instant::now() })
    }

    /// Reads a config dword of any function through `/scheme/pci/access` (a `call` with
    /// metadata `[1 = read, address | offset]`).
    fn access_read(access: &Fd, addr: PciAddr, offset: u16) -> Result<u32, PlatformError> {
        let mut value = [0u8; 4];
        access
            .call_rw(&mut value, syscall::CallFlags::empty(), &[1, addr.access_metadata(offset)])
            .map_err(os("pci access read"))?;
        Ok(u32::from_le_bytes(value))
    }

    /// The functions pcid lists in `/scheme/pci`, in either entry format, each with its name as
    /// listed (paths under it must use that name).
    fn list_functions() -> Result<Vec<PciEntry>, PlatformError> {
        let dir = std::fs::read_dir("/scheme/pci").map_err(|e| PlatformError::Os {
            what: "list /scheme/pci",
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        let mut entries: Vec<PciEntry> =
            dir.filter_map(|entry| PciEntry::parse(entry.ok()?.file_name().to_str()?)).collect();
        entries.sort_unstable();
        log::debug!("/scheme/pci: {:?}", entries.iter().map(|e| &e.name).collect::<Vec<_>>());
        Ok(entries)
    }

    /// Which of `addrs` have `id` (vendor | device << 16), by side-effect-free access reads.
    /// `None` if the access handle is missing or gave nothing plausible (then every function's
    /// channel is tried instead).
    fn filter_by_access(&self, entries: &[PciEntry], id: u32) -> Option<Vec<PciEntry>> {
        let access = self.access.as_ref()?;
        let mut plausible = false;
        let mut matches = Vec::new();
        for entry in entries {
            match Self::access_read(access, entry.addr, 0) {
                Ok(v) if v & 0xffff != 0xffff && v & 0xffff != 0 => {
                    plausible = true;
                    if v == id {
                        matches.push(entry.clone());
                    }
                }
                Ok(_) => {}
                Err(e) => log::debug!("{}: {e}", entry.name),
            }
        }
        plausible.then_some(matches)
    }

    /// The address of the function behind `chan`, found among the `/scheme/pci` entries by
    /// comparing ids, class, BARs and subsystem ids read through the access handle. `None` if
    /// that is impossible or ambiguous.
    fn identify(&self, chan: &Channel) -> Option<PciAddr> {
        const OFFSETS: [u16; 9] = [0x00, 0x08, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x2c];
        let access = self.access.as_ref()?;
        let ours: Vec<u32> =
            OFFSETS.iter().map(|&o| chan.read_config(o).ok()).collect::<Option<_>>()?;
        let mut found = None;
        for entry in Self::list_functions().ok()? {
            let theirs: Option<Vec<u32>> =
                OFFSETS.iter().map(|&o| Self::access_read(access, entry.addr, o).ok()).collect();
            if theirs.as_ref() == Some(&ours) {
                if found.is_some() {
                    return None;
                }
                found = Some(entry.addr);
            }
        }
        found
    }

    /// The name of the primary function: from `fpath` on the channel if it names the address,
    /// else by identification through `/scheme/pci/access`, else
    /// `pci-unknown-VVVV-DDDD-<BAR0>` (unique per device, not an address).
    fn primary_name(&self, chan: &Channel) -> String {
        let mut buf = [0u8; 256];
        if let Ok(n) = libredox::call::fpath(chan.raw(), &mut buf) {
            let path = String::from_utf8_lossy(&buf[..n.min(buf.len())]);
            if let Some(addr) = PciAddr::from_path(&path) {
                return addr.name();
            }
            log::debug!("fpath of the pcid channel is {path:?}: no address in it");
        }
        if let Some(addr) = self.identify(chan) {
            return addr.name();
        }
        let id = chan.read_config(0).unwrap_or(u32::MAX);
        let bar0 = chan.read_config(0x10).unwrap_or(u32::MAX);
        let name = format!("pci-unknown-{:04x}-{:04x}-{bar0:08x}", id & 0xffff, id >> 16);
        log::warn!("PCI address of the primary function unknown; calling it {name}");
        name
    }
}

impl RedoxPlatform {
    /// Adds `fd` (a scheme socket) to the events [`Platform::wait_interrupts`] wakes on, so one
    /// wait serves interrupts and scheme requests (the daemon's event loop).
    pub fn watch_fd(&self, fd: usize) -> Result<(), PlatformError> {
        match &self.waiter {
            Some(w) => w.subscribe(fd, usize::MAX - 1 - fd),
            None => Err(PlatformError::Unsupported("no event queue")),
        }
    }
}

impl Platform for RedoxPlatform {
    type Function = RedoxFunction;
    type Irq = RedoxIrq;

    /// The function in `PCID_CLIENT_CHANNEL` (an fd inherited from pcid-spawner, which already
    /// sent `EnableDevice`). Only one call per process succeeds.
    fn primary(&mut self) -> Result<RedoxFunction, PlatformError> {
        let value = std::env::var("PCID_CLIENT_CHANNEL").map_err(|_| {
            PlatformError::NotFound("PCID_CLIENT_CHANNEL (not started by pcid-spawner?)".into())
        })?;
        let raw: usize = value.trim().parse().map_err(|_| {
            PlatformError::Protocol(format!("PCID_CLIENT_CHANNEL={value:?} is not an fd number"))
        })?;
        if PRIMARY_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(PlatformError::NotFound("PCID_CLIENT_CHANNEL already taken".into()));
        }
        let chan = Channel::new(Fd::new(raw));
        // A first transaction proves the fd is a live channel.
        chan.read_config(0)?;
        let name = self.primary_name(&chan);
        log::info!("{name}: primary function on pcid channel fd {raw}");
        Ok(RedoxFunction::new(chan, name, Some(self.mem_root.clone())))
    }

    /// Opens `/scheme/pci/<entry>/channel` of every other function with these ids, `<entry>`
    /// being the name exactly as `/scheme/pci` lists it (either pcid format). Candidates are
    /// picked with `/scheme/pci/access` reads when available (opening a channel enables the
    /// function in pcid, so unrelated functions are better left closed); otherwise every
    /// function's channel is opened and its ids read (`ReadConfig(0)`). Functions in use (ours
    /// included) answer `ENOLCK` and are skipped. Each match gets `EnableDevice`, as
    /// pcid-spawner does.
    fn find_functions(
        &mut self,
        vendor: u16,
        device: u16,
    ) -> Result<Vec<RedoxFunction>, PlatformError> {
        let id = u32::from(vendor) | u32::from(device) << 16;
        let all = Self::list_functions()?;
        let candidates = self.filter_by_access(&all, id).unwrap_or(all);
        let mut found = Vec::new();
        for entry in candidates {
            let path = entry.channel_path();
            let fd = match Fd::open(&path, O_RDWR | O_CLOEXEC, 0) {
                Ok(fd) => fd,
                Err(e) if e.errno() == ENOLCK => {
                    log::debug!("{path}: in use");
                    continue;
                }
                Err(e) => {
                    log::debug!("{path}: {e}");
                    continue;
                }
            };
            let chan = Channel::new(fd);
            match chan.read_config(0) {
                Ok(v) if v == id => {}
                Ok(_) => continue,
                Err(e) => {
                    log::warn!("{path}: {e}");
                    continue;
                }
            }
            match chan.call(Request::EnableDevice) {
                Ok(Response::EnabledDevice) => {}
                Ok(other) => log::warn!("{path}: EnableDevice answered {other:?}"),
                Err(e) => log::warn!("{path}: EnableDevice: {e}"),
            }
            let name = entry.addr.name();
            log::info!("{name}: {vendor:04x}:{device:04x} opened through {path}");
            found.push(RedoxFunction::new(chan, name, Some(self.mem_root.clone())));
        }
        Ok(found)
    }

    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError> {
        self.dma.alloc(len)
    }

    /// Reserves `n` vectors on the bootstrap processor (before `setrens`), each with its MSI
    /// message (`0xFEE0_0000 | lapic << 12`, data = vector), and subscribes them to the wait.
    fn alloc_vectors(
        &mut self,
        function: &RedoxFunction,
        n: u16,
    ) -> Result<Vec<(MsiMessage, RedoxIrq)>, PlatformError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let bsp = match self.bsp {
            Some(b) => b,
            None => *self.bsp.insert(irq::read_bsp_apic_id()?),
        };
        let vectors = irq::reserve_vectors(bsp, n)?;
        if let Some(waiter) = &self.waiter {
            for (i, (_, irq)) in vectors.iter().enumerate() {
                waiter.subscribe(irq.raw_fd(), i)?;
            }
        }
        log::info!(
            "{}: {n} vectors on CPU {bsp:#x}: {:?}",
            function.name(),
            vectors.iter().map(|(_, irq)| irq.vector()).collect::<Vec<_>>()
        );
        Ok(vectors)
    }

    /// Blocks on the event queue (every reserved vector plus a monotonic timer for `timeout`);
    /// without one, sleeps at most 1 ms.
    fn wait_interrupts(&self, timeout: Duration) {
        match &self.waiter {
            Some(waiter) => waiter.wait(timeout),
            None => std::thread::sleep(timeout.min(Duration::from_millis(1))),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}
