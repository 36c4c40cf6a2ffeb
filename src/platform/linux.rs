//! The Linux platform: ptnetd as a userspace driver in a Linux guest (no netmap, no kernel
//! driver), through sysfs and procfs. Needs root.
//!
//! | what | how |
//! |---|---|
//! | find functions | `/sys/bus/pci/devices/*/{vendor,device,class}` ([`scan`]) |
//! | enable | write `1` to `<bdf>/enable` (I/O and memory decoding; the driver sets bus master) |
//! | config space | `pread`/`pwrite` of 4 bytes on `<bdf>/config` (root: beyond 64 bytes and writes) |
//! | I/O BAR | `pread`/`pwrite` of 4 bytes at the BAR offset on `<bdf>/resourceN` (the kernel does the `inl`/`outl`) |
//! | memory BAR | `mmap` of `<bdf>/resourceN` (**uncached**, see below) |
//! | MSI-X enable | the enable bit of the capability, written through config space |
//! | DMA | anonymous memory, `mlock`ed, physical addresses from `/proc/self/pagemap` ([`alloc_dma_pages`]) |
//! | interrupts | none: [`LinuxIrq::take`] is always `false`; the driver's polling fallback runs the rings |
//!
//! ## Memory type of BAR mappings
//! sysfs maps `resourceN` uncached (UC-) on x86; `resourceN_wc` (only offered for prefetchable
//! BARs, such as memdev BAR1) maps it write-combining. Spec §2 asks for a write-back mapping of
//! memdev BAR1, which sysfs cannot give. This backend uses `resourceN` (UC) on purpose: WC stores
//! are weakly ordered and only an `sfence` (or a locked instruction) drains them, while the
//! driver's store→store barrier ([`crate::shm::store_store`]) is a compiler fence on x86. With
//! WC, slot and buffer stores in the BAR could become visible to the host *after* the CSB head
//! that publishes them (the CSB is ordinary write-back RAM). UC stores are not reordered with
//! other stores, so the protocol's ordering holds. The cost is speed on real hardware; under
//! TCG memory types are not emulated at all, and KVM ignores the guest's PAT for RAM-backed BARs
//! without non-coherent DMA, so in practice the mapping is as fast as write-back there.
//!
//! ## DMA memory
//! The CSB must stay at the physical address handed to the device. The pages are anonymous,
//! private, `mlock`ed (never swapped), `MADV_NOHUGEPAGE` (khugepaged would move them into a huge
//! page) and `MADV_DONTFORK` (a fork would make the next write copy them). Compaction may still
//! migrate `mlock`ed pages unless `vm.compact_unevictable_allowed` is 0:
//! [`LinuxPlatform::new`] sets it ([`keep_locked_pages_in_place`]). Physically contiguous runs
//! of several pages are found by mapping a window of pages and looking for a run in their PFNs
//! (bounded retries), with one transparent huge page as the last resort ([`alloc_dma_pages`]).
//!
//! ## Interrupts
//! Userspace cannot receive MSIs without VFIO. The MSI-X table still has to be programmed and
//! enabled before CREATE (E6; QEMU and the vfio-user device model set up their vectors when
//! MSI-X is enabled), so [`LinuxPlatform::alloc_vectors`] hands out well-formed messages aimed
//! at a local APIC that does not exist (physical destination 0xFE, fixed delivery): QEMU and
//! KVM drop them without bothering the guest kernel. [`Platform::wait_interrupts`] sleeps at most
//! 1 ms, so the driver's `wait_work` polls every ring about once per millisecond.
#![allow(unsafe_code)]

use super::{BarSpace, Dma, Interrupt, MsiMessage, PciFunction, Platform, PlatformError};
use crate::abi::pci as ids;
use crate::shm::Region;
use core::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where Linux lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// The page map of this process.
pub const PAGEMAP: &str = "/proc/self/pagemap";
/// The sysctl that lets compaction migrate `mlock`ed pages.
pub const COMPACT_UNEVICTABLE: &str = "/proc/sys/vm/compact_unevictable_allowed";
/// Pagemap entry bit 63: the page is present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Pagemap entry bit 62: the page is swapped out (bits 0–54 are then a swap entry).
pub const PM_SWAPPED: u64 = 1 << 62;
/// Pagemap entry bits 0–54: the page frame number (0 without `CAP_SYS_ADMIN`).
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;
/// Longest wait of [`Platform::wait_interrupts`] (there are no interrupts to wait for).
pub const POLL_SLEEP: Duration = Duration::from_millis(1);
/// Windows of pages tried by [`alloc_dma_pages`] before it gives up.
pub const DMA_ATTEMPTS: usize = 16;
/// Pages per window (at least) in [`alloc_dma_pages`].
pub const DMA_WINDOW_PAGES: usize = 256;
/// MSI address of [`LinuxPlatform::alloc_vectors`]: the x86 MSI window, physical destination
/// mode, destination APIC id 0xFE (no such CPU in a small guest, so the message is dropped).
pub const MSI_NOWHERE_ADDRESS: u64 = 0xfee0_0000 | 0xfe << 12;
/// First MSI data value (vector) of [`LinuxPlatform::alloc_vectors`]; fixed delivery, edge.
pub const MSI_FIRST_VECTOR: u32 = 0x40;

const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn os(what: &'static str) -> impl Fn(std::io::Error) -> PlatformError {
    move |e| PlatformError::Os { what, errno: errno_of(&e) }
}

fn last_errno() -> i32 {
    errno_of(&std::io::Error::last_os_error())
}

/// The page size of this system.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

// ------------------------------------------------------------------------------------------
// Addresses and sysfs parsing (pure, unit-tested)

/// A PCI address, `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI domain (segment); Linux shows at least four hex digits.
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device, 0..32.
    pub device: u8,
    /// Function, 0..8.
    pub function: u8,
}

impl Bdf {
    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), hex, case-insensitive, as sysfs names
    /// functions and `lspci` prints them. `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (rest, function) = s.rsplit_once('.')?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        let device = parts.pop()?;
        let bus = parts.pop()?;
        let domain = match parts.as_slice() {
            [] => "0",
            [d] => d,
            _ => return None,
        };
        let hex = |t: &str, max_len: usize| -> Option<u32> {
            let ok =
                !t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(t, 16).ok()).flatten()
        };
        let domain = hex(domain, 8)?;
        let bus = hex(bus, 2)? as u8;
        let device = hex(device, 2).filter(|&d| d < 32)? as u8;
        let function = hex(function, 1).filter(|&f| f < 8)? as u8;
        Some(Self { domain, bus, device, function })
    }

    /// The name used in logs and scheme names, as on Redox: `pci-0000-00-03.0`.
    pub fn name(&self) -> String {
        format!("pci-{:04x}-{:02x}-{:02x}.{}", self.domain, self.bus, self.device, self.function)
    }
}

impl fmt::Display for Bdf {
    /// The sysfs directory name: `0000:00:03.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.domain, self.bus, self.device, self.function)
    }
}

/// One line of a sysfs `resource` file: `start end flags`, each `0x%016llx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resource {
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
    /// Kernel `IORESOURCE_*` flags.
    pub flags: u64,
}

impl Resource {
    /// Size in bytes; 0 for an unused BAR.
    pub fn size(&self) -> u64 {
        if self.end > self.start || (self.end == self.start && self.start != 0) {
            self.end - self.start + 1
        } else {
            0
        }
    }

    /// The kind of space, `None` for an unused or unknown resource.
    pub fn space(&self) -> Option<BarSpace> {
        if self.size() == 0 {
            None
        } else if self.flags & IORESOURCE_IO != 0 {
            Some(BarSpace::Io)
        } else if self.flags & IORESOURCE_MEM != 0 {
            Some(BarSpace::Memory)
        } else {
            None
        }
    }
}

/// Parses a sysfs `resource` file: one [`Resource`] per line (BAR0..5, then the ROM and any
/// bridge windows). Malformed lines give an empty resource, so indices stay aligned.
pub fn parse_resources(text: &str) -> Vec<Resource> {
    let num = |t: &str| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok();
    text.lines()
        .map(|line| {
            let v: Vec<u64> = line.split_whitespace().filter_map(num).collect();
            match v.as_slice() {
                [start, end, flags, ..] => Resource { start: *start, end: *end, flags: *flags },
                _ => Resource::default(),
            }
        })
        .collect()
}

/// Parses a sysfs id or class file (`0x1b36\n`).
pub fn parse_hex_file(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

fn read_hex(path: &Path) -> Option<u32> {
    parse_hex_file(&std::fs::read_to_string(path).ok()?)
}

/// The functions under `root` (a `/sys/bus/pci/devices` directory) with this vendor and device
/// id, sorted by address. Entries that are not PCI addresses or lack id files are skipped.
pub fn scan(root: &Path, vendor: u16, device: u16) -> Result<Vec<Bdf>, PlatformError> {
    let dir = std::fs::read_dir(root).map_err(os("list PCI functions in sysfs"))?;
    let mut found: Vec<Bdf> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let bdf = Bdf::parse(e.file_name().to_str()?)?;
            let p = e.path();
            let ids = (read_hex(&p.join("vendor"))?, read_hex(&p.join("device"))?);
            (ids == (vendor as u32, device as u32)).then_some(bdf)
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

// ------------------------------------------------------------------------------------------
// Page map (pure parts unit-tested on synthetic buffers)

/// The PFN in a pagemap entry: `Some` only if the page is present, not swapped, and the PFN is
/// visible (the kernel reports 0 to processes without `CAP_SYS_ADMIN`).
pub fn pagemap_pfn(entry: u64) -> Option<u64> {
    let pfn = entry & PM_PFN_MASK;
    (entry & PM_PRESENT != 0 && entry & PM_SWAPPED == 0 && pfn != 0).then_some(pfn)
}

/// Decodes consecutive little-endian 8-byte pagemap entries (a trailing partial entry is
/// ignored).
pub fn parse_pagemap(bytes: &[u8]) -> Vec<Option<u64>> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            pagemap_pfn(u64::from_le_bytes(w))
        })
        .collect()
}

/// The first index `i` such that pages `i..i + pages` are present and physically consecutive
/// (`pfn[i + k] == pfn[i] + k`).
pub fn contiguous_run(pfns: &[Option<u64>], pages: usize) -> Option<usize> {
    if pages == 0 || pages > pfns.len() {
        return None;
    }
    let mut start = 0; // first page of the current run
    for (i, pfn) in pfns.iter().enumerate() {
        let Some(p) = *pfn else {
            start = i + 1;
            continue;
        };
        // Inside a run (i > start), page i - 1 is present.
        if i > start && pfns[i - 1].and_then(|q| q.checked_add(1)) != Some(p) {
            start = i;
        }
        if i + 1 - start >= pages {
            return Some(start);
        }
    }
    None
}

/// Reads the pagemap entries of `pages` pages starting at virtual address `virt` from `pagemap`
/// (a `/proc/<pid>/pagemap` file, or any file laid out like one).
pub fn read_pfns(
    pagemap: &File,
    virt: usize,
    pages: usize,
    page: usize,
) -> Result<Vec<Option<u64>>, PlatformError> {
    let mut buf = vec![0u8; pages * 8];
    let off = (virt / page) as u64 * 8;
    pagemap.read_exact_at(&mut buf, off).map_err(os("read /proc/self/pagemap"))?;
    Ok(parse_pagemap(&buf))
}

// ------------------------------------------------------------------------------------------
// Mappings

/// A mapping of this process, unmapped (and unlocked) on drop. Only its address is stored:
/// the memory is touched through [`Region`]s or the volatile BAR accessors.
#[derive(Debug)]
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// Anonymous private read/write memory of `len` bytes (whole pages).
    fn anon(len: usize) -> Result<Self, PlatformError> {
        // SAFETY: no MAP_FIXED: the kernel picks a fresh range, so nothing is replaced.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p.is_null() {
            return Err(PlatformError::Os { what: "mmap DMA memory", errno: last_errno() });
        }
        Ok(Self { addr: p as usize, len })
    }

    /// `len` bytes (whole pages) of `file` from offset 0, shared, read/write.
    fn file(file: &File, len: usize) -> Result<Self, PlatformError> {
        use std::os::fd::AsRawFd;
        // SAFETY: no MAP_FIXED (fresh range); the fd is valid for the call; the mapping
        // outlives the fd, which is allowed.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED || p.is_null() {
            return Err(PlatformError::Os { what: "mmap PCI resource", errno: last_errno() });
        }
        Ok(Self { addr: p as usize, len })
    }

    fn advise(&self, advice: libc::c_int) {
        // SAFETY: advice on our own mapping; it changes no memory contents.
        if unsafe { libc::madvise(self.addr as *mut libc::c_void, self.len, advice) } != 0 {
            log::debug!("madvise({advice}) on DMA memory: errno {}", last_errno());
        }
    }

    /// Pins the pages for DMA: not inherited by forks, locked in RAM, each page written once
    /// (so it is a private page of its own, not the shared zero page). With `huge`, asks for a
    /// transparent huge page first; without, forbids them (khugepaged would move the pages).
    fn pin(&self, page: usize, huge: bool) -> Result<(), PlatformError> {
        self.advise(if huge { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE });
        self.advise(libc::MADV_DONTFORK);
        // SAFETY: locking our own mapping.
        if unsafe { libc::mlock(self.addr as *mut libc::c_void, self.len) } != 0 {
            return Err(PlatformError::Os { what: "mlock DMA memory", errno: last_errno() });
        }
        for off in (0..self.len).step_by(page) {
            // SAFETY: `addr + off` is inside our read/write mapping and page aligned; nothing
            // else refers to this memory yet.
            unsafe { core::ptr::write_volatile((self.addr + off) as *mut u64, 0) };
        }
        Ok(())
    }

    /// Keeps pages `first..first + pages` and unmaps the rest.
    fn trim(self, first: usize, pages: usize, page: usize) -> Self {
        let (addr, len) = (self.addr, self.len);
        core::mem::forget(self);
        let keep = addr + first * page;
        let keep_len = pages * page;
        for (a, l) in [(addr, first * page), (keep + keep_len, addr + len - keep - keep_len)] {
            if l > 0 {
                // SAFETY: `a..a+l` is a part of our own mapping that nothing refers to.
                unsafe { libc::munmap(a as *mut libc::c_void, l) };
            }
        }
        Self { addr: keep, len: keep_len }
    }

    /// A region on the first `len` bytes that keeps the mapping alive.
    fn into_region(self, len: usize) -> Result<Region, PlatformError> {
        if len > self.len {
            return Err(PlatformError::Shm(crate::shm::ShmError::OutOfBounds {
                offset: 0,
                len,
                size: self.len,
            }));
        }
        let ptr = NonNull::new(self.addr as *mut u8)
            .ok_or(PlatformError::Os { what: "mmap", errno: libc::EINVAL })?;
        let owner: Arc<dyn std::any::Any + Send + Sync> = Arc::new(self);
        // SAFETY: `ptr..ptr+len` lies in a live read/write mapping (checked above) that is page
        // aligned; `owner`, kept by the region and all its clones, unmaps it only when the last
        // one is dropped; nothing in this process holds a reference into it.
        Ok(unsafe { Region::from_raw(ptr, len, Some(owner)) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range this value owns (mmap'ed or trimmed to), unmapped once;
        // munmap also drops any mlock.
        if unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) } != 0 {
            log::warn!("munmap({:#x}, {:#x}): errno {}", self.addr, self.len, last_errno());
        }
    }
}

/// Size of an x86-64 transparent huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// Allocates `len` bytes (rounded up to pages) of zeroed, `mlock`ed, physically contiguous
/// memory and its physical address, reading PFNs from `/proc/self/pagemap` (root only).
///
/// One page is always contiguous. For more, each attempt maps a window of
/// `max(DMA_WINDOW_PAGES, 16 × pages)` pages, pins it, and keeps the first physically
/// consecutive run (the rest is unmapped at once); windows without a run stay mapped until the
/// call ends so the next attempt gets other pages. After [`DMA_ATTEMPTS`] windows it tries one
/// transparent huge page (2 MiB, physically contiguous, if THP is not `never`) and keeps the
/// pages it needs from it; then it gives up.
pub fn alloc_dma_pages(len: usize) -> Result<Dma, PlatformError> {
    alloc_dma_with(len, DMA_ATTEMPTS)
}

/// [`alloc_dma_pages`] with `attempts` windows before the huge page.
fn alloc_dma_with(len: usize, attempts: usize) -> Result<Dma, PlatformError> {
    let page = page_size();
    let pages = len.max(1).div_ceil(page);
    let pagemap = File::open(PAGEMAP).map_err(os("open /proc/self/pagemap"))?;
    let window = if pages == 1 { 1 } else { pages.saturating_mul(16).max(DMA_WINDOW_PAGES) };
    let attempts = if pages == 1 { attempts.max(1) } else { attempts };
    let mut failed = Vec::new();
    for attempt in 0..=attempts {
        let huge = attempt == attempts;
        if huge && (pages == 1 || pages * page > HUGE_PAGE) {
            break;
        }
        let (m, window) = if huge {
            (huge_page_mapping(page)?, HUGE_PAGE / page)
        } else {
            let bytes = window
                .checked_mul(page)
                .ok_or(PlatformError::Os { what: "DMA allocation size", errno: libc::EINVAL })?;
            (Mapping::anon(bytes)?, window)
        };
        m.pin(page, huge)?;
        let pfns = read_pfns(&pagemap, m.addr, window, page)?;
        if pfns.iter().all(Option::is_none) {
            return Err(PlatformError::Unsupported(
                "physical addresses: /proc/self/pagemap shows no PFNs (needs CAP_SYS_ADMIN)",
            ));
        }
        let Some(first) = contiguous_run(&pfns, pages) else {
            log::debug!("DMA attempt {attempt}: no {pages} contiguous pages in {window}");
            failed.push(m);
            continue;
        };
        let m = m.trim(first, pages, page);
        if huge {
            m.advise(libc::MADV_NOHUGEPAGE); // the rest of the huge page is gone: stay small
        }
        // Re-read after trimming: the pages must not have moved.
        let again = read_pfns(&pagemap, m.addr, pages, page)?;
        if again.as_slice() != &pfns[first..first + pages] {
            failed.push(m);
            continue;
        }
        let phys = pfns[first].unwrap_or(0) * page as u64;
        log::debug!("DMA: {pages} pages at phys {phys:#x}, virt {:#x}", m.addr);
        let region = m.into_region(pages * page)?;
        return Ok(Dma { region, phys });
    }
    Err(PlatformError::NotFound(format!(
        "{pages} physically contiguous pages (tried {attempts} windows of {window} pages \
         and a huge page)"
    )))
}

/// An anonymous mapping of exactly one huge page's size, aligned to it.
fn huge_page_mapping(page: usize) -> Result<Mapping, PlatformError> {
    let m = Mapping::anon(2 * HUGE_PAGE)?;
    let first = (m.addr.next_multiple_of(HUGE_PAGE) - m.addr) / page;
    Ok(m.trim(first, HUGE_PAGE / page, page))
}

/// Sets `vm.compact_unevictable_allowed` to 0 if it is 1, so that compaction does not migrate
/// `mlock`ed DMA pages behind the device's back. Returns `true` if the setting now forbids it.
/// A system-wide change: [`LinuxPlatform::new`] makes it, tests do not.
pub fn keep_locked_pages_in_place() -> bool {
    match std::fs::read_to_string(COMPACT_UNEVICTABLE) {
        Ok(v) if v.trim() == "0" => true,
        Ok(_) => match std::fs::write(COMPACT_UNEVICTABLE, "0") {
            Ok(()) => {
                log::info!("vm.compact_unevictable_allowed set to 0: DMA pages stay in place");
                true
            }
            Err(e) => {
                log::warn!("{COMPACT_UNEVICTABLE}: {e}: compaction may move the CSB pages");
                false
            }
        },
        Err(e) => {
            log::debug!("{COMPACT_UNEVICTABLE}: {e}");
            false
        }
    }
}

// ------------------------------------------------------------------------------------------
// PCI functions

/// How an enabled BAR is reached.
#[derive(Debug)]
enum BarAccess {
    /// `pread`/`pwrite` on `resourceN` (the kernel does the port I/O).
    Io(File),
    /// A mapping of `resourceN`.
    Mem(Mapping),
}

#[derive(Debug)]
struct EnabledBar {
    access: BarAccess,
    size: u64,
    space: BarSpace,
}

/// A PCI function reached through sysfs.
#[derive(Debug)]
pub struct LinuxFunction {
    bdf: Bdf,
    dir: PathBuf,
    config: File,
    resources: Vec<Resource>,
    bars: [Option<EnabledBar>; 6],
}

impl LinuxFunction {
    /// Opens function `bdf` under `root`: writes `1` to its `enable` file (a failure is logged:
    /// the function may already be enabled), opens `config` read/write (read-only if that is
    /// refused) and reads `resource`.
    pub fn open(root: &Path, bdf: Bdf) -> Result<Self, PlatformError> {
        let dir = root.join(bdf.to_string());
        if !dir.is_dir() {
            return Err(PlatformError::NotFound(format!("{}", dir.display())));
        }
        if let Err(e) = std::fs::write(dir.join("enable"), "1") {
            log::warn!("{bdf}: enable: {e}");
        }
        let path = dir.join("config");
        let config = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("{}: {e}: config space read-only", path.display());
                File::open(&path).map_err(os("open PCI config space"))?
            }
        };
        let resources = std::fs::read_to_string(dir.join("resource"))
            .map(|t| parse_resources(&t))
            .unwrap_or_else(|e| {
                log::warn!("{bdf}: resource: {e}");
                Vec::new()
            });
        Ok(Self { bdf, dir, config, resources, bars: Default::default() })
    }

    /// The address.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// BAR `bar` as the kernel assigned it (`None` if unused).
    pub fn resource(&self, bar: u8) -> Option<Resource> {
        self.resources.get(bar as usize).copied().filter(|r| r.space().is_some())
    }

    fn resource_file(&self, bar: u8) -> Result<File, PlatformError> {
        let path = self.dir.join(format!("resource{bar}"));
        OpenOptions::new().read(true).write(true).open(&path).map_err(os("open PCI resource"))
    }

    fn enabled(&self, bar: u8, offset: u32) -> Option<&EnabledBar> {
        let b = self.bars.get(bar as usize)?.as_ref()?;
        let fits = offset.is_multiple_of(4) && offset as u64 + 4 <= b.size;
        fits.then_some(b)
    }
}

impl PciFunction for LinuxFunction {
    fn name(&self) -> String {
        self.bdf.name()
    }

    /// All-ones if the read fails or is short (beyond the config file, or past 64 bytes for
    /// non-root, which the kernel answers with zeros instead).
    fn config_read(&self, offset: u16) -> u32 {
        let mut b = [0u8; 4];
        match self.config.read_at(&mut b, offset as u64) {
            Ok(4) => u32::from_le_bytes(b),
            Ok(n) => {
                log::debug!("{}: config read at {offset:#x}: {n} bytes", self.bdf);
                u32::MAX
            }
            Err(e) => {
                log::debug!("{}: config read at {offset:#x}: {e}", self.bdf);
                u32::MAX
            }
        }
    }

    fn config_write(&self, offset: u16, value: u32) {
        match self.config.write_at(&value.to_le_bytes(), offset as u64) {
            Ok(4) => {}
            Ok(n) => log::warn!("{}: config write at {offset:#x}: {n} bytes", self.bdf),
            Err(e) => log::warn!("{}: config write at {offset:#x}: {e}", self.bdf),
        }
    }

    /// I/O BARs: opens `resourceN` for 4-byte `pread`/`pwrite`. Memory BARs: maps the whole
    /// `resourceN` (uncached, see the module doc).
    fn enable_bar(&mut self, bar: u8) -> Result<BarSpace, PlatformError> {
        if let Some(b) = self.bars.get(bar as usize).and_then(Option::as_ref) {
            return Ok(b.space);
        }
        let r = self
            .resource(bar)
            .filter(|_| bar < 6)
            .ok_or_else(|| PlatformError::NotFound(format!("{}: BAR{bar}", self.bdf)))?;
        let space = r.space().unwrap_or(BarSpace::Memory);
        let file = self.resource_file(bar)?;
        let access = match space {
            BarSpace::Io => BarAccess::Io(file),
            BarSpace::Memory => {
                let len = usize::try_from(r.size())
                    .ok()
                    .and_then(|s| s.checked_next_multiple_of(page_size()))
                    .ok_or(PlatformError::Unsupported("BAR larger than the address space"))?;
                BarAccess::Mem(Mapping::file(&file, len)?)
            }
        };
        log::debug!("{}: BAR{bar} {space:?}, {} bytes", self.bdf, r.size());
        self.bars[bar as usize] = Some(EnabledBar { access, size: r.size(), space });
        Ok(space)
    }

    fn bar_read32(&self, bar: u8, offset: u32) -> u32 {
        let Some(b) = self.enabled(bar, offset) else { return u32::MAX };
        match &b.access {
            BarAccess::Io(f) => {
                let mut v = [0u8; 4];
                match f.read_at(&mut v, offset as u64) {
                    Ok(4) => u32::from_le_bytes(v),
                    _ => u32::MAX,
                }
            }
            // SAFETY: `offset + 4 <= size <= mapping length` and 4-aligned (checked by
            // `enabled`); the mapping lives as long as `self`; a volatile read of device memory.
            BarAccess::Mem(m) => unsafe {
                u32::from_le(core::ptr::read_volatile((m.addr + offset as usize) as *const u32))
            },
        }
    }

    fn bar_write32(&self, bar: u8, offset: u32, value: u32) {
        let Some(b) = self.enabled(bar, offset) else { return };
        match &b.access {
            BarAccess::Io(f) => {
                if let Err(e) = f.write_at(&value.to_le_bytes(), offset as u64) {
                    log::warn!("{}: BAR{bar} write at {offset:#x}: {e}", self.bdf);
                }
            }
            // SAFETY: as in `bar_read32`: in bounds, aligned, mapped; a volatile write.
            BarAccess::Mem(m) => unsafe {
                core::ptr::write_volatile((m.addr + offset as usize) as *mut u32, value.to_le())
            },
        }
    }

    /// Maps `len` bytes of memory BAR `bar` from `resourceN` (uncached: see the module doc for
    /// why not `resourceN_wc`).
    fn map_bar(&mut self, bar: u8, len: usize) -> Result<Region, PlatformError> {
        let r = self
            .resource(bar)
            .filter(|r| r.space() == Some(BarSpace::Memory))
            .ok_or(PlatformError::Unsupported("bar is not memory"))?;
        if len == 0 || len as u64 > r.size() {
            return Err(PlatformError::Unsupported("mapping length outside the BAR"));
        }
        let file = self.resource_file(bar)?;
        let rounded = len
            .checked_next_multiple_of(page_size())
            .ok_or(PlatformError::Unsupported("mapping length"))?;
        let m = Mapping::file(&file, rounded)?;
        log::debug!("{}: BAR{bar}: {len:#x} bytes mapped at {:#x}", self.bdf, m.addr);
        m.into_region(len)
    }

    /// Sets the enable bit of the MSI-X capability (found with a bounded walk) and checks that
    /// it reads back set.
    fn enable_msix(&mut self) -> Result<(), PlatformError> {
        let cap = msix_capability(self)
            .ok_or_else(|| PlatformError::NotFound("msi-x capability".into()))?;
        let hdr = self.config_read(cap);
        self.config_write(cap, hdr | 1 << 31);
        if self.config_read(cap) & 1 << 31 == 0 {
            return Err(PlatformError::Unsupported("msi-x enable bit does not stick (root?)"));
        }
        Ok(())
    }
}

/// Offset of the MSI-X capability (id 0x11), found with [`cfg::msix`]'s bounded walk.
pub fn msix_capability<F: PciFunction>(f: &F) -> Option<u16> {
    crate::platform::cfg::msix(f).map(|m| m.offset)
}

// ------------------------------------------------------------------------------------------
// The platform

/// An interrupt handle that never fires (this backend polls).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxIrq;

impl Interrupt for LinuxIrq {
    fn take(&self) -> bool {
        false
    }
}

/// The Linux implementation of [`Platform`].
#[derive(Debug)]
pub struct LinuxPlatform {
    root: PathBuf,
    primary: Bdf,
    t0: Instant,
}

impl LinuxPlatform {
    /// The platform for the ptnet NIC at `pci` (`DDDD:BB:DD.F` or `BB:DD.F`), or for the first
    /// 1b36:000d function with a network class (else the first 1b36:000d function: the
    /// driver's probe then explains why it is not a ptnet NIC). Also makes compaction leave
    /// `mlock`ed pages alone ([`keep_locked_pages_in_place`]).
    pub fn new(pci: Option<&str>) -> Result<Self, PlatformError> {
        let me = Self::with_sysfs(Path::new(SYSFS_PCI_DEVICES), pci)?;
        keep_locked_pages_in_place();
        Ok(me)
    }

    /// As [`LinuxPlatform::new`] with another sysfs devices directory (tests use a tree they
    /// build), without changing any system setting.
    pub fn with_sysfs(root: &Path, pci: Option<&str>) -> Result<Self, PlatformError> {
        let primary = match pci {
            Some(s) => {
                let bdf = Bdf::parse(s).ok_or_else(|| {
                    PlatformError::NotFound(format!("'{s}' is not a PCI address (DDDD:BB:DD.F)"))
                })?;
                if !root.join(bdf.to_string()).is_dir() {
                    return Err(PlatformError::NotFound(format!("{bdf} under {}", root.display())));
                }
                bdf
            }
            None => {
                let cands = scan(root, ids::VENDOR_ID, ids::PTNET_DEVICE_ID)?;
                let network = |b: &Bdf| {
                    read_hex(&root.join(b.to_string()).join("class")).is_some_and(|c| c >> 16 == 2)
                };
                cands.iter().copied().find(network).or(cands.first().copied()).ok_or_else(|| {
                    PlatformError::NotFound(format!(
                        "no {:04x}:{:04x} function under {}",
                        ids::VENDOR_ID,
                        ids::PTNET_DEVICE_ID,
                        root.display()
                    ))
                })?
            }
        };
        Ok(Self { root: root.to_path_buf(), primary, t0: Instant::now() })
    }

    /// The address of the NIC this platform was made for.
    pub fn primary_bdf(&self) -> Bdf {
        self.primary
    }
}

impl Platform for LinuxPlatform {
    type Function = LinuxFunction;
    type Irq = LinuxIrq;

    fn primary(&mut self) -> Result<LinuxFunction, PlatformError> {
        LinuxFunction::open(&self.root, self.primary)
    }

    fn find_functions(
        &mut self,
        vendor: u16,
        device: u16,
    ) -> Result<Vec<LinuxFunction>, PlatformError> {
        let mut found = Vec::new();
        for bdf in scan(&self.root, vendor, device)? {
            if bdf == self.primary {
                continue;
            }
            match LinuxFunction::open(&self.root, bdf) {
                Ok(f) => found.push(f),
                Err(e) => log::warn!("{bdf}: {e}"),
            }
        }
        Ok(found)
    }

    fn alloc_dma(&mut self, len: usize) -> Result<Dma, PlatformError> {
        alloc_dma_pages(len)
    }

    /// `n` handles that never fire, with messages aimed at no CPU (see the module doc).
    fn alloc_vectors(
        &mut self,
        function: &LinuxFunction,
        n: u16,
    ) -> Result<Vec<(MsiMessage, LinuxIrq)>, PlatformError> {
        if n > 0xc0 {
            return Err(PlatformError::NotFound("free interrupt vectors".into()));
        }
        log::debug!("{}: {n} MSI-X vectors, polled (no interrupts on Linux)", function.bdf);
        Ok((0..n as u32)
            .map(|i| {
                (MsiMessage { address: MSI_NOWHERE_ADDRESS, data: MSI_FIRST_VECTOR + i }, LinuxIrq)
            })
            .collect())
    }

    /// Sleeps for `timeout`, at most [`POLL_SLEEP`].
    fn wait_interrupts(&self, timeout: Duration) {
        std::thread::sleep(timeout.min(POLL_SLEEP));
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "ptnetd-linux-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake sysfs function: ids, class, a 256-byte config space with an MSI-X capability at
    /// 0x40, an I/O BAR0 of 256 bytes and memory BARs 1 (8 KiB) and 2 (4 KiB) as plain files.
    fn fake_function(root: &Path, bdf: &str, vendor: u16, device: u16, class: u32) {
        let d = root.join(bdf);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
        std::fs::write(d.join("device"), format!("{device:#06x}\n")).unwrap();
        std::fs::write(d.join("class"), format!("{class:#08x}\n")).unwrap();
        std::fs::write(d.join("enable"), "0\n").unwrap();
        let mut cfg = vec![0u8; 256];
        cfg[0..2].copy_from_slice(&vendor.to_le_bytes());
        cfg[2..4].copy_from_slice(&device.to_le_bytes());
        cfg[6] = 0x10; // status: capability list
        cfg[9..12].copy_from_slice(&class.to_le_bytes()[..3]);
        cfg[0x34] = 0x40;
        cfg[0x40..0x44].copy_from_slice(&(0x11u32 | 3 << 16).to_le_bytes()); // MSI-X, 4 entries
        std::fs::write(d.join("config"), &cfg).unwrap();
        let res = [
            (0xc000u64, 0xc0ffu64, 0x40101u64),
            (0xfe00_0000, 0xfe00_1fff, 0x14_2208),
            (0xfe00_2000, 0xfe00_2fff, 0x4_0200),
            (0, 0, 0),
            (0, 0, 0),
            (0, 0, 0),
            (0, 0, 0),
        ];
        let text: String =
            res.iter().map(|(s, e, f)| format!("{s:#018x} {e:#018x} {f:#018x}\n")).collect();
        std::fs::write(d.join("resource"), text).unwrap();
        std::fs::write(d.join("resource0"), vec![0u8; 256]).unwrap();
        std::fs::write(d.join("resource1"), vec![0u8; 8192]).unwrap();
        std::fs::write(d.join("resource2"), vec![0u8; 4096]).unwrap();
    }

    fn fake_tree(tag: &str) -> TempDir {
        let t = TempDir::new(tag);
        fake_function(&t.0, "0000:00:03.0", 0x1b36, 0x000d, 0x0c0330); // qemu-xhci: same ids
        fake_function(&t.0, "0000:00:04.0", 0x1b36, 0x000d, 0x020000); // ptnet
        fake_function(&t.0, "0000:00:05.0", 0x1b36, 0x000c, 0x00ff00); // memdev
        fake_function(&t.0, "0000:00:06.0", 0x1b36, 0x000c, 0x00ff00); // another memdev
        fake_function(&t.0, "0000:00:01.0", 0x8086, 0x100e, 0x020000);
        std::fs::create_dir_all(t.0.join("not-a-function")).unwrap();
        t
    }

    #[test]
    fn bdf_parsing() {
        let b = Bdf::parse("0000:00:03.0").unwrap();
        assert_eq!(b, Bdf { domain: 0, bus: 0, device: 3, function: 0 });
        assert_eq!(b.to_string(), "0000:00:03.0");
        assert_eq!(b.name(), "pci-0000-00-03.0");
        assert_eq!(
            Bdf::parse("00:1f.7"),
            Some(Bdf { domain: 0, bus: 0, device: 0x1f, function: 7 })
        );
        assert_eq!(Bdf::parse(" 0001:AB:1E.2\n").unwrap().to_string(), "0001:ab:1e.2");
        assert_eq!(Bdf::parse("10000:00:00.0").unwrap().domain, 0x10000, "VMD domains");
        for bad in [
            "",
            "0000:00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "0:0:0:0.0",
            "x0:00.0",
            "000:0g:00.0",
            "0000:100:00.0",
            "0000:00:03.00",
            ":00.0",
            "00:.0",
        ] {
            assert_eq!(Bdf::parse(bad), None, "{bad:?}");
        }
        let mut v = [Bdf::parse("00:04.0").unwrap(), Bdf::parse("00:03.1").unwrap()];
        v.sort();
        assert_eq!(v[0].to_string(), "0000:00:03.1");
    }

    #[test]
    fn resource_parsing() {
        let text = "0x000000000000c000 0x000000000000c0ff 0x0000000000040101\n\
                    0x00000000fe000000 0x00000000fe7fffff 0x000000000014220c\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    garbage\n";
        let r = parse_resources(text);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].size(), r[0].space()), (256, Some(BarSpace::Io)));
        assert_eq!((r[1].size(), r[1].space()), (8 << 20, Some(BarSpace::Memory)));
        assert_eq!((r[2].size(), r[2].space()), (0, None));
        assert_eq!(r[3], Resource::default());
        assert_eq!(parse_hex_file("0x1b36\n"), Some(0x1b36));
        assert_eq!(parse_hex_file("0x020000"), Some(0x020000));
        assert_eq!(parse_hex_file("zz"), None);
    }

    #[test]
    fn pagemap_parsing() {
        assert_eq!(pagemap_pfn(PM_PRESENT | 0x1234), Some(0x1234));
        assert_eq!(pagemap_pfn(0xa100_0000_0023_efa2), Some(0x23efa2), "flags ignored");
        assert_eq!(pagemap_pfn(0x1234), None, "not present");
        assert_eq!(pagemap_pfn(PM_PRESENT), None, "PFN hidden (no CAP_SYS_ADMIN)");
        assert_eq!(pagemap_pfn(PM_PRESENT | PM_SWAPPED | 5), None, "swap entry");
        assert_eq!(pagemap_pfn(PM_PRESENT | (1 << 55) | PM_PFN_MASK), Some(PM_PFN_MASK));
        let entries = [PM_PRESENT | 10, PM_PRESENT | 12, 0, PM_PRESENT | 20, PM_PRESENT | 21];
        let mut bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        bytes.extend_from_slice(&[1, 2, 3]); // a partial entry is ignored
        let pfns = parse_pagemap(&bytes);
        assert_eq!(pfns, vec![Some(10), Some(12), None, Some(20), Some(21)]);
        assert_eq!(contiguous_run(&pfns, 1), Some(0));
        assert_eq!(contiguous_run(&pfns, 2), Some(3));
        assert_eq!(contiguous_run(&pfns, 3), None);
        assert_eq!(contiguous_run(&pfns, 0), None);
        let run = [Some(7), Some(8), Some(9), Some(11)];
        assert_eq!(contiguous_run(&run, 3), Some(0));
        assert_eq!(contiguous_run(&[None, Some(1), Some(2)], 2), Some(1));
        assert_eq!(contiguous_run(&[Some(5), Some(5), Some(6)], 2), Some(1), "same pfn twice");
        assert_eq!(contiguous_run(&[Some(u64::MAX), Some(0)], 2), None);
    }

    #[test]
    fn pagemap_reads_from_a_synthetic_file() {
        let t = TempDir::new("pagemap");
        let path = t.0.join("pagemap");
        let mut bytes = vec![0u8; 8 * 16];
        for (i, pfn) in [(4usize, 100u64), (5, 101), (6, 102)] {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&(PM_PRESENT | pfn).to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let pfns = read_pfns(&f, 4 * 4096 + 17, 3, 4096).unwrap();
        assert_eq!(pfns, vec![Some(100), Some(101), Some(102)]);
        assert!(read_pfns(&f, 15 * 4096, 2, 4096).is_err(), "past the end");
    }

    #[test]
    fn scanning_a_sysfs_tree() {
        let t = fake_tree("scan");
        let ptnet = scan(&t.0, 0x1b36, 0x000d).unwrap();
        let names: Vec<String> = ptnet.iter().map(Bdf::to_string).collect();
        assert_eq!(names, ["0000:00:03.0", "0000:00:04.0"]);
        assert_eq!(scan(&t.0, 0x1b36, 0x0001).unwrap(), vec![]);
        assert!(scan(&t.0.join("missing"), 0x1b36, 0x000d).is_err());
        // The primary: the network-class function, not the xHCI with the same ids.
        let mut p = LinuxPlatform::with_sysfs(&t.0, None).unwrap();
        assert_eq!(p.primary_bdf().to_string(), "0000:00:04.0");
        let md = p.find_functions(0x1b36, 0x000c).unwrap();
        let names: Vec<String> = md.iter().map(|f| f.bdf().to_string()).collect();
        assert_eq!(names, ["0000:00:05.0", "0000:00:06.0"]);
        assert_eq!(std::fs::read_to_string(t.0.join("0000:00:05.0/enable")).unwrap(), "1");
        let own = p.find_functions(0x1b36, 0x000d).unwrap();
        assert_eq!(own.len(), 1, "the primary is not listed");
        assert_eq!(own[0].bdf().to_string(), "0000:00:03.0");
        // An explicit address, in both spellings; bad or absent ones are errors.
        let p = LinuxPlatform::with_sysfs(&t.0, Some("00:03.0")).unwrap();
        assert_eq!(p.primary_bdf().to_string(), "0000:00:03.0");
        assert!(matches!(
            LinuxPlatform::with_sysfs(&t.0, Some("0000:00:09.0")),
            Err(PlatformError::NotFound(_))
        ));
        assert!(matches!(
            LinuxPlatform::with_sysfs(&t.0, Some("nonsense")),
            Err(PlatformError::NotFound(_))
        ));
        let empty = TempDir::new("empty");
        assert!(matches!(
            LinuxPlatform::with_sysfs(&empty.0, None),
            Err(PlatformError::NotFound(_))
        ));
    }

    #[test]
    fn config_space_and_bars_through_files() {
        let t = fake_tree("cfg");
        let mut p = LinuxPlatform::with_sysfs(&t.0, Some("0000:00:04.0")).unwrap();
        let mut f = p.primary().unwrap();
        assert_eq!(f.name(), "pci-0000-00-04.0");
        assert_eq!(std::fs::read_to_string(t.0.join("0000:00:04.0/enable")).unwrap(), "1");
        assert_eq!(f.config_read(0), 0x000d_1b36);
        f.config_write(0x04, f.config_read(0x04) | 7);
        assert_eq!(f.config_read(0x04) & 0xffff, 7);
        let raw = std::fs::read(t.0.join("0000:00:04.0/config")).unwrap();
        assert_eq!(raw[4], 7, "written through to the file");
        assert_eq!(f.config_read(0x100), u32::MAX, "beyond the config space");
        // The driver's view through pci_types.
        assert_eq!(crate::platform::cfg::ids(&f), (0x1b36, 0x000d));
        assert_eq!(crate::platform::cfg::class(&f), (2, 0, 0));
        // MSI-X.
        assert_eq!(msix_capability(&f), Some(0x40));
        f.enable_msix().unwrap();
        assert_eq!(f.config_read(0x40) >> 31, 1);
        // I/O BAR0 through pread/pwrite; bounds and alignment checked.
        assert_eq!(f.bar_read32(0, 0), u32::MAX, "not enabled yet");
        assert_eq!(f.enable_bar(0).unwrap(), BarSpace::Io);
        assert_eq!(f.enable_bar(0).unwrap(), BarSpace::Io, "idempotent");
        f.bar_write32(0, 0x80, 0xdead_beef);
        assert_eq!(f.bar_read32(0, 0x80), 0xdead_beef);
        let raw = std::fs::read(t.0.join("0000:00:04.0/resource0")).unwrap();
        assert_eq!(&raw[0x80..0x84], &0xdead_beefu32.to_le_bytes());
        f.bar_write32(0, 0x100, 1);
        f.bar_write32(0, 0x82, 1);
        assert_eq!(f.bar_read32(0, 0x100), u32::MAX);
        assert_eq!(f.bar_read32(0, 0xfc), 0);
        assert_eq!(std::fs::metadata(t.0.join("0000:00:04.0/resource0")).unwrap().len(), 256);
        // Memory BAR2 mapped (the MSI-X table); writes reach the file.
        assert_eq!(f.enable_bar(2).unwrap(), BarSpace::Memory);
        f.bar_write32(2, 8, 0x4041);
        assert_eq!(f.bar_read32(2, 8), 0x4041);
        assert_eq!(f.bar_read32(2, 4096), u32::MAX);
        assert!(f.enable_bar(3).is_err(), "unused BAR");
        assert!(f.enable_bar(7).is_err());
        // map_bar: memory only, within the BAR.
        let r = f.map_bar(1, 8192).unwrap();
        r.store_u32(4096, 0x1234_5678);
        let again = f.map_bar(1, 4096 + 8).unwrap();
        assert_eq!(again.load_u32(4096), 0x1234_5678, "one shared mapping of the file");
        assert!(f.map_bar(1, 8193).is_err());
        assert!(f.map_bar(1, 0).is_err());
        assert!(f.map_bar(0, 16).is_err(), "I/O BAR");
        drop((r, again, f));
        let raw = std::fs::read(t.0.join("0000:00:04.0/resource1")).unwrap();
        assert_eq!(&raw[4096..4100], &0x1234_5678u32.to_le_bytes());
        assert_eq!(std::fs::read(t.0.join("0000:00:04.0/resource2")).unwrap()[8], 0x41);
    }

    #[test]
    fn vectors_never_fire_and_waits_are_short() {
        let t = fake_tree("irq");
        let mut p = LinuxPlatform::with_sysfs(&t.0, None).unwrap();
        let f = p.primary().unwrap();
        let v = p.alloc_vectors(&f, 3).unwrap();
        assert_eq!(v.len(), 3);
        for (i, (m, irq)) in v.iter().enumerate() {
            assert_eq!(m.address, 0xfeefe000);
            assert_eq!(m.data, 0x40 + i as u32);
            assert!(!irq.take());
        }
        assert!(p.alloc_vectors(&f, 0x100).is_err());
        let t0 = p.now();
        p.wait_interrupts(Duration::from_secs(5));
        let waited = p.now() - t0;
        assert!(waited >= POLL_SLEEP && waited < Duration::from_millis(500), "{waited:?}");
    }

    /// Runs on this host when /proc/self/pagemap shows PFNs (root); otherwise checks the error.
    #[test]
    fn dma_allocation_on_this_host() {
        let pfns_visible = {
            let f = File::open(PAGEMAP).ok();
            let probe = 0u64;
            let virt = &probe as *const u64 as usize;
            f.and_then(|f| read_pfns(&f, virt, 1, page_size()).ok()).is_some_and(|v| v[0].is_some())
        };
        if !pfns_visible {
            let e = alloc_dma_pages(8192).unwrap_err();
            assert!(matches!(e, PlatformError::Unsupported(_) | PlatformError::Os { .. }), "{e}");
            return;
        }
        let page = page_size();
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| !s.contains("[never]"));
        let cases = [(1, DMA_ATTEMPTS), (4096, 0), (8192, DMA_ATTEMPTS), (8192, 0), (3 * 4096, 0)];
        for (len, attempts) in cases {
            if attempts == 0 && len > page && !thp {
                assert!(matches!(alloc_dma_with(len, 0), Err(PlatformError::NotFound(_))));
                continue;
            }
            let d = alloc_dma_with(len, attempts).unwrap();
            let pages = len.div_ceil(page);
            assert_eq!(d.region.len(), pages * page);
            assert_eq!(d.phys % page as u64, 0);
            assert_eq!(d.region.addr() % page, 0);
            for off in (0..d.region.len()).step_by(8) {
                assert_eq!(d.region.load_u64(off), 0, "zeroed");
            }
            d.region.store_u64(page - 8, 0x0123_4567_89ab_cdef);
            assert_eq!(d.region.load_u64(page - 8), 0x0123_4567_89ab_cdef);
            let f = File::open(PAGEMAP).unwrap();
            let pfns = read_pfns(&f, d.region.addr(), pages, page).unwrap();
            for (k, pfn) in pfns.iter().enumerate() {
                assert_eq!(*pfn, Some(d.phys / page as u64 + k as u64), "page {k} in place");
            }
        }
    }
}
