//! Memory: shared mappings of sysfs files and anonymous pages, and DMA memory at known
//! physical addresses from `/proc/self/pagemap` (see the module doc of [`super`], "DMA memory").

use super::{last_errno, os, page_size};
use crate::platform::{Dma, PlatformError};
use crate::shm::Region;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;

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
/// Windows of pages tried by [`alloc_dma_pages`] before it gives up.
pub const DMA_ATTEMPTS: usize = 16;
/// Pages per window (at least) in [`alloc_dma_pages`].
pub const DMA_WINDOW_PAGES: usize = 256;

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

/// A mapping of this process, unmapped (and unlocked) on drop. Only its address is stored:
/// the memory is touched through [`Region`]s or the volatile BAR accessors.
#[derive(Debug)]
pub(super) struct Mapping {
    pub(super) addr: usize,
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
    pub(super) fn file(file: &File, len: usize) -> Result<Self, PlatformError> {
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
    pub(super) fn into_region(self, len: usize) -> Result<Region, PlatformError> {
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
/// A system-wide change: [`super::LinuxPlatform::new`] makes it, tests do not.
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

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

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
