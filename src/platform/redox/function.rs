//! A PCI function reached through its pcid channel: config space via `ReadConfig`/`WriteConfig`,
//! BARs via port I/O rights or mappings through the channel, MSI-X enable via `EnableFeature`.

use super::mem::{os, physmap, Mapping};
use super::wire::{self, bar_mmap_offset, ChannelIo, Feature, MemType, Request, Response};
use crate::platform::cfg::{self, BarInfo};
use crate::platform::{BarSpace, PciFunction, PlatformError};
use crate::shm::{Region, ShmError};
use libredox::Fd;
use std::sync::{Arc, Mutex, PoisonError};

/// A pcid channel: one request/reply at a time (a mutex serialises transactions).
pub(crate) struct Channel {
    fd: Fd,
    lock: Mutex<()>,
}

/// [`ChannelIo`] over a channel fd.
struct FdIo<'a>(&'a Fd);

impl ChannelIo for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, i32> {
        self.0.write(buf).map_err(|e| e.errno())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32> {
        self.0.read(buf).map_err(|e| e.errno())
    }
}

fn unexpected(what: &str, got: Response) -> PlatformError {
    PlatformError::Protocol(format!("pcid answered {what} with {got:?}"))
}

impl Channel {
    /// Takes ownership of a channel fd (closed on drop).
    pub(crate) fn new(fd: Fd) -> Self {
        Self { fd, lock: Mutex::new(()) }
    }

    /// The fd number (for `mmap` and `fpath`).
    pub(crate) fn raw(&self) -> usize {
        self.fd.raw()
    }

    /// One request and its reply.
    pub(crate) fn call(&self, req: Request) -> Result<Response, PlatformError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        wire::transact(&mut FdIo(&self.fd), &req)
    }

    /// `ReadConfig(offset)`.
    pub(crate) fn read_config(&self, offset: u16) -> Result<u32, PlatformError> {
        match self.call(Request::ReadConfig(offset))? {
            Response::ReadConfig(v) => Ok(v),
            other => Err(unexpected("ReadConfig", other)),
        }
    }

    /// `WriteConfig(offset, value)`.
    pub(crate) fn write_config(&self, offset: u16, value: u32) -> Result<(), PlatformError> {
        match self.call(Request::WriteConfig(offset, value))? {
            Response::WriteConfig => Ok(()),
            other => Err(unexpected("WriteConfig", other)),
        }
    }

    /// `EnableDevice`: bus master + memory + I/O decode (pcid also disables MSI/MSI-X).
    pub(crate) fn enable_device(&self) -> Result<(), PlatformError> {
        match self.call(Request::EnableDevice)? {
            Response::EnabledDevice => Ok(()),
            other => Err(unexpected("EnableDevice", other)),
        }
    }

    /// `EnableFeature(MsiX)`.
    pub(crate) fn enable_msix(&self) -> Result<(), PlatformError> {
        match self.call(Request::EnableFeature(Feature::MsiX))? {
            Response::FeatureEnabled(Feature::MsiX) => Ok(()),
            Response::Error(wire::ServerError::NonexistentFeature(_)) => {
                Err(PlatformError::Unsupported("MSI-X (no capability)"))
            }
            other => Err(unexpected("EnableFeature(MsiX)", other)),
        }
    }
}

/// What an enabled BAR is accessed through.
enum BarState {
    /// Not enabled: accesses read all-ones and write nothing.
    Off,
    /// I/O ports `base..base + size`.
    Io { base: u16, size: u32 },
    /// An uncached mapping; the BAR starts `offset` bytes into it.
    Mem { map: Mapping, offset: usize, size: u64 },
}

/// One PCI function owned through a pcid channel.
///
/// Guarantees of [`PciFunction`]: config accesses go through this function's own channel (pcid
/// addresses them); BAR accesses are 32-bit, bounds-checked against the BAR size, and read
/// all-ones / write nothing outside it or on a BAR that is not enabled.
///
/// BAR sizing (in [`PciFunction::enable_bar`] and [`PciFunction::map_bar`], once per BAR) turns
/// memory and I/O decoding off for its duration, as Linux does, so that the all-ones probe
/// address never decodes; do it during bring-up, not while the device is running.
pub struct RedoxFunction {
    // Field order = drop order: mappings go before the channel closes.
    bars: [BarState; 6],
    info: [Option<BarInfo>; 6],
    name: String,
    chan: Channel,
    mem_root: Option<Arc<Fd>>,
}

impl RedoxFunction {
    /// Wraps an open channel. `mem_root` (the memory scheme root) enables the
    /// `/scheme/memory/physical@…` fallback for BAR mappings.
    pub(crate) fn new(chan: Channel, name: String, mem_root: Option<Arc<Fd>>) -> Self {
        Self { bars: std::array::from_fn(|_| BarState::Off), info: [None; 6], name, chan, mem_root }
    }

    /// Sends pcid's `EnableDevice` (bus master, memory and I/O decode). pcid-spawner already did
    /// this for the primary function and [`super::RedoxPlatform::find_functions`] does it for
    /// the functions it opens. It also disables MSI-X: never call it after [`Self::enable_msix`].
    pub fn enable_device(&self) -> Result<(), PlatformError> {
        self.chan.enable_device()
    }

    /// The pcid channel fd number (for logs).
    pub fn channel_fd(&self) -> usize {
        self.chan.raw()
    }

    fn bar_index(&self, bar: u8) -> Result<usize, PlatformError> {
        match usize::from(bar) {
            i @ 0..6 => Ok(i),
            _ => Err(PlatformError::NotFound(format!("{}: BAR{bar}", self.name))),
        }
    }

    /// Decodes (and sizes) BAR `i` once, with decoding off during the probe.
    fn bar_info(&mut self, i: usize) -> Result<BarInfo, PlatformError> {
        if let Some(info) = self.info[i] {
            return Ok(info);
        }
        let command = self.chan.read_config(0x04)? & 0xffff;
        // Memory and I/O space enable off (bits 1 and 0); status bits written as 0 (RW1C: no-op).
        self.chan.write_config(0x04, command & !0b11)?;
        let info = cfg::bar(self, i as u8);
        self.chan.write_config(0x04, command)?;
        let info = info.ok_or_else(|| {
            PlatformError::NotFound(format!("{}: BAR{i} not implemented or malformed", self.name))
        })?;
        log::debug!("{}: BAR{i} = {info:?}", self.name);
        self.info[i] = Some(info);
        Ok(info)
    }

    /// Maps `len` bytes of memory BAR `i` (at bus address `address`, `size` bytes) with cache
    /// type `ty`: through the pcid channel (`mmap(offset = bir << 61 | memtype << 59)`), else
    /// through `/scheme/memory/physical@…` (older pcid without channel mmap, and BARs smaller
    /// than a page). Returns the mapping and the offset of the BAR inside it.
    fn map_memory(
        &self,
        i: usize,
        address: u64,
        size: u64,
        len: usize,
        ty: MemType,
    ) -> Result<(Mapping, usize), PlatformError> {
        let mut first_err = None;
        if size >= wire::PAGE_SIZE as u64 && address.is_multiple_of(wire::PAGE_SIZE as u64) {
            match Mapping::map(self.chan.raw(), bar_mmap_offset(i as u8, ty), len, true) {
                Ok(map) => return Ok((map, 0)),
                Err(errno) => {
                    log::info!(
                        "{}: mapping BAR{i} through pcid failed (errno {errno}); trying physical@{}",
                        self.name,
                        ty.suffix()
                    );
                    first_err = Some(errno);
                }
            }
        }
        if let Some(root) = &self.mem_root {
            match physmap(root, address, len, ty) {
                Ok(m) => return Ok(m),
                Err(errno) => {
                    first_err.get_or_insert(errno);
                }
            }
        }
        Err(PlatformError::Os {
            what: "map BAR",
            errno: first_err.unwrap_or(libredox::errno::ENODEV),
        })
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod port {
    //! Port I/O. The kernel grants the I/O bitmap to the calling *thread* (`context::current()`
    //! in its proc scheme), so rights are acquired once per thread, on first use.
    use super::os;
    use crate::platform::PlatformError;
    use std::cell::Cell;
    use syscall::io::{Io, Pio};

    thread_local! {
        static RIGHTS: Cell<bool> = const { Cell::new(false) };
    }

    extern "C" {
        /// relibc: the fd of the current thread's proc-scheme handle.
        fn redox_cur_thrfd_v0() -> usize;
    }

    /// `dup(thread fd, "open_via_dup")`, then `call(ProcSchemeVerb::Iopl)` (spec/redox.md §4).
    fn acquire() -> Result<(), PlatformError> {
        // SAFETY: a relibc export that takes no arguments and returns this thread's fd number;
        // it has no preconditions.
        let thread_fd = unsafe { redox_cur_thrfd_v0() };
        let kernel_fd = libredox::call::dup(thread_fd, b"open_via_dup")
            .map(libredox::Fd::new)
            .map_err(os("open thread handle for iopl"))?;
        kernel_fd
            .call_wo(&[], syscall::CallFlags::empty(), &[syscall::ProcSchemeVerb::Iopl as u64])
            .map_err(os("acquire port I/O rights"))?;
        Ok(())
    }

    /// Acquires port I/O rights for this thread if it has none yet.
    pub(super) fn ensure() -> Result<(), PlatformError> {
        if RIGHTS.with(Cell::get) {
            return Ok(());
        }
        acquire()?;
        RIGHTS.with(|r| r.set(true));
        log::debug!("port I/O rights acquired for {:?}", std::thread::current().id());
        Ok(())
    }

    /// `inl`, if this thread may do port I/O.
    pub(super) fn read(port: u16) -> Option<u32> {
        match ensure() {
            Ok(()) => Some(Pio::<u32>::new(port).read()),
            Err(e) => {
                log::error!("port read {port:#x}: {e}");
                None
            }
        }
    }

    /// `outl`, if this thread may do port I/O.
    pub(super) fn write(port: u16, value: u32) {
        match ensure() {
            Ok(()) => Pio::<u32>::new(port).write(value),
            Err(e) => log::error!("port write {port:#x}: {e}"),
        }
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
mod port {
    //! No port I/O outside x86.
    use crate::platform::PlatformError;

    pub(super) fn ensure() -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported("port I/O on this architecture"))
    }
    pub(super) fn read(_port: u16) -> Option<u32> {
        None
    }
    pub(super) fn write(_port: u16, _value: u32) {}
}

impl PciFunction for RedoxFunction {
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Returns all-ones (and logs) for a misaligned or out-of-range offset or a channel error.
    fn config_read(&self, offset: u16) -> u32 {
        if !offset.is_multiple_of(4) || offset >= 4096 {
            log::warn!("{}: config read at bad offset {offset:#x}", self.name);
            return u32::MAX;
        }
        self.chan.read_config(offset).unwrap_or_else(|e| {
            log::error!("{}: config read {offset:#x}: {e}", self.name);
            u32::MAX
        })
    }

    fn config_write(&self, offset: u16, value: u32) {
        if !offset.is_multiple_of(4) || offset >= 4096 {
            log::warn!("{}: config write at bad offset {offset:#x} dropped", self.name);
            return;
        }
        if let Err(e) = self.chan.write_config(offset, value) {
            log::error!("{}: config write {offset:#x} = {value:#x}: {e}", self.name);
        }
    }

    /// I/O BAR: acquires port I/O rights (for the calling thread; other threads acquire theirs
    /// on first access). Memory BAR: maps it uncacheable.
    fn enable_bar(&mut self, bar: u8) -> Result<BarSpace, PlatformError> {
        let i = self.bar_index(bar)?;
        match self.bars[i] {
            BarState::Io { .. } => return Ok(BarSpace::Io),
            BarState::Mem { .. } => return Ok(BarSpace::Memory),
            BarState::Off => {}
        }
        match self.bar_info(i)? {
            BarInfo::Io { size } => {
                let base = self.chan.read_config(0x10 + 4 * i as u16)? & 0xffff_fffc;
                if base == 0 || u64::from(base) + u64::from(size) > 0x1_0000 {
                    return Err(PlatformError::NotFound(format!(
                        "{}: I/O BAR{i} at {base:#x}+{size:#x} unassigned or beyond 64 KiB",
                        self.name
                    )));
                }
                port::ensure()?;
                log::info!("{}: BAR{i} ports {base:#x}+{size:#x}", self.name);
                self.bars[i] = BarState::Io { base: base as u16, size };
                Ok(BarSpace::Io)
            }
            BarInfo::Memory { address, size, .. } => {
                let len = usize::try_from(size)
                    .map_err(|_| PlatformError::Unsupported("BAR larger than the address space"))?;
                if address == 0 {
                    return Err(PlatformError::NotFound(format!(
                        "{}: memory BAR{i} unassigned",
                        self.name
                    )));
                }
                let (map, offset) = self.map_memory(i, address, size, len, MemType::Uncacheable)?;
                log::info!(
                    "{}: BAR{i} {address:#x}+{size:#x} mapped uncached at {:#x}",
                    self.name,
                    map.addr() + offset
                );
                self.bars[i] = BarState::Mem { map, offset, size };
                Ok(BarSpace::Memory)
            }
        }
    }

    fn bar_read32(&self, bar: u8, offset: u32) -> u32 {
        match self.bars.get(usize::from(bar)) {
            Some(&BarState::Io { base, size }) if wire::access_in_bar(offset, size.into()) => {
                // In range: base + size <= 0x1_0000 was checked when the BAR was enabled.
                port::read(base + offset as u16).unwrap_or(u32::MAX)
            }
            Some(BarState::Mem { map, offset: start, size })
                if wire::access_in_bar(offset, *size) =>
            {
                let addr = map.addr() + start + offset as usize;
                // SAFETY: `addr` is 4-aligned (BAR start and offset are) and `addr..addr+4` lies
                // inside the BAR, which lies inside `map`, a live uncached mapping owned by
                // `self`. Device memory is only accessed with volatile loads and stores.
                unsafe { core::ptr::read_volatile(addr as *const u32) }
            }
            _ => {
                log::debug!("{}: BAR{bar} read at {offset:#x} outside an enabled BAR", self.name);
                u32::MAX
            }
        }
    }

    fn bar_write32(&self, bar: u8, offset: u32, value: u32) {
        match self.bars.get(usize::from(bar)) {
            Some(&BarState::Io { base, size }) if wire::access_in_bar(offset, size.into()) => {
                port::write(base + offset as u16, value)
            }
            Some(BarState::Mem { map, offset: start, size })
                if wire::access_in_bar(offset, *size) =>
            {
                let addr = map.addr() + start + offset as usize;
                // SAFETY: as in `bar_read32`: 4-aligned, inside the BAR inside a live mapping
                // owned by `self`, and only ever accessed volatilely.
                unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
            }
            _ => log::debug!("{}: BAR{bar} write at {offset:#x} dropped", self.name),
        }
    }

    /// Maps `len` bytes of memory BAR `bar` write-back (memtype 0 through the channel, or
    /// `physical@wb`); the region keeps its own mapping alive and unmaps it when its last clone
    /// is dropped.
    fn map_bar(&mut self, bar: u8, len: usize) -> Result<Region, PlatformError> {
        let i = self.bar_index(bar)?;
        let BarInfo::Memory { address, size, .. } = self.bar_info(i)? else {
            return Err(PlatformError::Unsupported("map_bar on an I/O BAR"));
        };
        if len == 0 || len as u64 > size {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            return Err(PlatformError::Shm(ShmError::OutOfBounds { offset: 0, len, size }));
        }
        if address == 0 {
            return Err(PlatformError::NotFound(format!(
                "{}: memory BAR{i} unassigned",
                self.name
            )));
        }
        let (map, offset) = self.map_memory(i, address, size, len, MemType::WriteBack)?;
        log::info!(
            "{}: BAR{i} {address:#x}+{len:#x} mapped write-back at {:#x}",
            self.name,
            map.addr() + offset
        );
        map.into_region(offset, len)
    }

    fn enable_msix(&mut self) -> Result<(), PlatformError> {
        self.chan.enable_msix()?;
        log::info!("{}: MSI-X enabled through pcid", self.name);
        Ok(())
    }
}

impl std::fmt::Debug for RedoxFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedoxFunction")
            .field("name", &self.name)
            .field("channel_fd", &self.chan.raw())
            .finish_non_exhaustive()
    }
}
