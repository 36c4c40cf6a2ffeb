//! Memory: mappings of this process (unmapped on drop), physical mappings through the memory
//! scheme, and DMA allocation (spec/redox.md §1.5, §1.6).
//!
//! All memory handles are opened with `openat` on the memory scheme root, which is opened once
//! by [`super::RedoxPlatform::new`]; `openat` on an fd already held keeps working after
//! `setrens(0, 0)`.

use super::wire::{round_up_page, MemType, PAGE_SIZE};
use crate::platform::{Dma, PlatformError};
use crate::shm::{Region, ShmError};
use libredox::call::{mmap, munmap, MmapArgs};
use libredox::errno::EINVAL;
use libredox::flag::{MAP_PRIVATE, MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE};
use libredox::Fd;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Converts a libredox error into a [`PlatformError::Os`].
pub(crate) fn os(what: &'static str) -> impl Fn(libredox::error::Error) -> PlatformError {
    move |e| PlatformError::Os { what, errno: e.errno() }
}

/// A read/write mapping in this address space, unmapped on drop.
///
/// Holds the address as an integer: the mapping is only ever touched through a [`Region`] or
/// through the bounds-checked volatile accessors of the BAR code.
#[derive(Debug)]
pub(crate) struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes (rounded up to pages) of `fd` at `offset`, read/write, shared
    /// (`MAP_SHARED`) or private (`MAP_PRIVATE`). Errors are errno values.
    pub(crate) fn map(fd: usize, offset: u64, len: usize, shared: bool) -> Result<Self, i32> {
        let len = round_up_page(len).filter(|&l| l > 0).ok_or(EINVAL)?;
        let args = MmapArgs {
            addr: core::ptr::null_mut(),
            length: len,
            prot: PROT_READ | PROT_WRITE,
            flags: if shared { MAP_SHARED } else { MAP_PRIVATE },
            fd,
            offset,
        };
        // SAFETY: no MAP_FIXED: the kernel picks a fresh range of the address space, so no
        // existing mapping (and no memory a Rust object lives in) is replaced or aliased.
        let ptr = unsafe { mmap(args) }.map_err(|e| e.errno())?;
        if ptr.is_null() {
            return Err(EINVAL);
        }
        Ok(Self { addr: ptr as usize, len })
    }

    /// First byte of the mapping.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// Mapped length (whole pages).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A shared-memory window on `offset..offset + len` of this mapping that keeps the mapping
    /// alive (it is unmapped when the last clone of the region is dropped).
    pub(crate) fn into_region(self, offset: usize, len: usize) -> Result<Region, PlatformError> {
        let size = self.len;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(PlatformError::Shm(ShmError::OutOfBounds { offset, len, size }));
        }
        if !offset.is_multiple_of(8) {
            return Err(PlatformError::Shm(ShmError::Misaligned { offset, align: 8 }));
        }
        let ptr = NonNull::new((self.addr + offset) as *mut u8)
            .ok_or(PlatformError::Shm(ShmError::Map(EINVAL)))?;
        let owner: Arc<dyn Any + Send + Sync> = Arc::new(self);
        // SAFETY: `ptr..ptr+len` lies inside a live read/write mapping (checked above) that is
        // page aligned, so `ptr` is 8-aligned (offset checked). The mapping is owned by `owner`,
        // which the region and all its clones keep alive; nothing else in this process holds a
        // reference into it (it was just created and only its address is stored).
        Ok(unsafe { Region::from_raw(ptr, len, Some(owner)) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr..addr+len` is exactly the range our `mmap` returned, and it is unmapped
        // once: every user of it (regions, BAR accessors) holds this value alive, so none is left.
        if let Err(e) = unsafe { munmap(self.addr as *mut (), self.len) } {
            log::warn!("munmap({:#x}, {:#x}) failed: {e}", self.addr, self.len);
        }
    }
}

/// Maps `len` bytes of physical memory at `phys` with cache type `ty` through
/// `/scheme/memory/physical@<ty>` (root only). Returns the mapping and the offset of `phys`
/// inside it (`phys` need not be page aligned). Errors are errno values.
pub(crate) fn physmap(
    root: &Fd,
    phys: u64,
    len: usize,
    ty: MemType,
) -> Result<(Mapping, usize), i32> {
    let in_page = (phys % PAGE_SIZE as u64) as usize;
    let total = len.checked_add(in_page).ok_or(EINVAL)?;
    let fd = root
        .openat(&format!("physical@{}", ty.suffix()), O_RDWR | O_CLOEXEC, 0)
        .map_err(|e| e.errno())?;
    let map = Mapping::map(fd.raw(), phys - in_page as u64, total, true)?;
    Ok((map, in_page))
}

/// The memory-scheme path for DMA memory: x86 DMA is cache coherent (write-back); other
/// architectures get uncached memory, as the Redox drivers do.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const DMA_PATH: &str = "zeroed@wb?phys_contiguous";
#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
const DMA_PATH: &str = "zeroed@uc?phys_contiguous";

/// Allocates zeroed, physically contiguous memory and translates it to physical addresses.
pub(crate) struct DmaAllocator {
    root: Arc<Fd>,
    translation: Fd,
}

impl DmaAllocator {
    /// Opens the `translation` handle on the memory scheme root.
    pub(crate) fn new(root: Arc<Fd>) -> Result<Self, PlatformError> {
        let translation =
            root.openat("translation", O_CLOEXEC, 0).map_err(os("open memory translation"))?;
        Ok(Self { root, translation })
    }

    /// Physical address of the byte at `virt` in this address space.
    fn translate(&self, virt: usize) -> Result<u64, PlatformError> {
        let mut buf = virt.to_ne_bytes();
        self.translation
            .call_ro(&mut buf, syscall::CallFlags::empty(), &[])
            .map_err(os("virtual-to-physical translation"))?;
        Ok(usize::from_ne_bytes(buf) as u64)
    }

    /// `len` bytes rounded up to pages: `openat(root, "zeroed@wb?phys_contiguous")`, `mmap`
    /// `MAP_PRIVATE`, then the physical address of every page is checked to be contiguous.
    pub(crate) fn alloc(&self, len: usize) -> Result<Dma, PlatformError> {
        let len = round_up_page(len.max(1))
            .ok_or(PlatformError::Os { what: "DMA allocation size", errno: EINVAL })?;
        let fd =
            self.root.openat(DMA_PATH, O_RDWR | O_CLOEXEC, 0).map_err(os("open DMA memory"))?;
        let map = Mapping::map(fd.raw(), 0, len, false)
            .map_err(|errno| PlatformError::Os { what: "map DMA memory", errno })?;
        drop(fd);
        let phys = self.translate(map.addr())?;
        for page in 1..len / PAGE_SIZE {
            let at = self.translate(map.addr() + page * PAGE_SIZE)?;
            if at != phys + (page * PAGE_SIZE) as u64 {
                log::error!("DMA memory not contiguous: page {page} at {at:#x}, base {phys:#x}");
                return Err(PlatformError::Unsupported("physically contiguous DMA memory"));
            }
        }
        log::debug!("DMA: {len:#x} bytes at phys {phys:#x}, virt {:#x}", map.addr());
        let len = map.len();
        Ok(Dma { region: map.into_region(0, len)?, phys })
    }
}
