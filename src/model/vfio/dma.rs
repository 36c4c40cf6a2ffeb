//! Guest RAM as a vfio-user device sees it: one shared mapping per DMA-map message.
//!
//! QEMU announces every piece of guest RAM with `VFIO_USER_DMA_MAP` (guest-physical address,
//! size, and a file descriptor plus offset when the RAM is backed by one; with
//! `-object memory-backend-memfd,share=on` it always is). [`DmaSpace`] maps each such piece
//! `MAP_SHARED` with `vm-memory` and keeps the set as one [`GuestMemoryMmap`], rebuilt on every
//! map and unmap; the ptnet device gets the new one through [`PtnetDevice::set_ram`]. A CSB
//! address outside these mappings is then refused by the model itself.
//!
//! What is refused (an error reply, nothing mapped), so a bad message cannot make the server
//! touch memory it does not own or die of `SIGBUS`:
//! * a zero size, an address or offset range that overflows 64 bits, an offset not aligned to
//!   a page (mmap could not map it);
//! * a range reaching past the end of the file (a later access there would raise `SIGBUS`):
//!   the file's size is checked with `fstat` before mapping;
//! * a range overlapping an existing mapping, or more than [`MAX_DMA_REGIONS`] mappings;
//! * an unmap that cuts a mapping in two (only whole mappings are unmapped), and the dirty-page
//!   log request (`GET_DIRTY_PAGE_INFO`, not supported).
//!
//! What is accepted but not mapped (a success reply): RAM without a file descriptor (the server
//! would need `DMA_READ`/`DMA_WRITE` messages, which the `vfio-user` crate does not offer) and
//! read-only RAM (the device model writes the CSB, so it only uses writable RAM). Both are
//! logged.
//!
//! [`PtnetDevice::set_ram`]: crate::model::ptnet::PtnetDevice::set_ram

use core::fmt;
use std::fs::File;
use std::sync::Arc;
use vfio_user::{DmaMapFlags, DmaUnmapFlags};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap};

/// Most mappings one device accepts (QEMU sends a handful: RAM below and above 4 GiB, ...).
pub const MAX_DMA_REGIONS: usize = 256;

/// Alignment required of a DMA-map file offset (the host page size on x86-64).
pub const DMA_OFFSET_ALIGN: u64 = 4096;

/// Why a DMA map or unmap was refused.
#[derive(Debug)]
pub enum DmaError {
    /// A zero-sized map.
    Empty,
    /// `address + size` or `offset + size` overflows.
    Overflow {
        /// Guest-physical address.
        address: u64,
        /// File offset.
        offset: u64,
        /// Size.
        size: u64,
    },
    /// The file offset is not page aligned.
    Unaligned(u64),
    /// The range reaches past the end of the file.
    BeyondFile {
        /// File offset.
        offset: u64,
        /// Size.
        size: u64,
        /// The file's size.
        file_len: u64,
    },
    /// The range overlaps an existing mapping.
    Overlap {
        /// Guest-physical address.
        address: u64,
        /// Size.
        size: u64,
    },
    /// Already [`MAX_DMA_REGIONS`] mappings.
    TooMany,
    /// An unmap would cut a mapping in two.
    PartialUnmap {
        /// Guest-physical address.
        address: u64,
        /// Size.
        size: u64,
    },
    /// A flag the server does not implement.
    Unsupported(&'static str),
    /// `fstat` of the file failed.
    Io(std::io::Error),
    /// `mmap` failed.
    Map(String),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "dma map of zero bytes"),
            Self::Overflow { address, offset, size } => write!(
                f,
                "dma range overflows: address {address:#x}, offset {offset:#x}, size {size:#x}"
            ),
            Self::Unaligned(o) => write!(f, "dma file offset {o:#x} not page aligned"),
            Self::BeyondFile { offset, size, file_len } => write!(
                f,
                "dma range {offset:#x}+{size:#x} reaches past the end of the {file_len:#x}-byte file"
            ),
            Self::Overlap { address, size } => {
                write!(f, "dma range {address:#x}+{size:#x} overlaps an existing mapping")
            }
            Self::TooMany => write!(f, "more than {MAX_DMA_REGIONS} dma mappings"),
            Self::PartialUnmap { address, size } => {
                write!(f, "dma unmap {address:#x}+{size:#x} would split a mapping")
            }
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::Io(e) => write!(f, "dma file: {e}"),
            Self::Map(e) => write!(f, "mapping dma file: {e}"),
        }
    }
}

impl std::error::Error for DmaError {}

impl From<DmaError> for std::io::Error {
    fn from(e: DmaError) -> Self {
        let kind = match e {
            DmaError::Unsupported(_) => std::io::ErrorKind::Unsupported,
            DmaError::Io(ref io) => io.kind(),
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// What became of an accepted map request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapOutcome {
    /// Mapped; guest RAM changed.
    Mapped,
    /// No file descriptor came with it: not reachable by this server.
    NoFd,
    /// Read-only RAM: not used by the device.
    ReadOnly,
}

/// The DMA-mapped guest RAM of one device.
pub struct DmaSpace {
    regions: Vec<Arc<GuestRegionMmap>>,
    mem: Arc<GuestMemoryMmap>,
}

impl fmt::Debug for DmaSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges().iter().map(|(a, s)| format!("{a:#x}+{s:#x}"))).finish()
    }
}

impl Default for DmaSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaSpace {
    /// No guest RAM.
    pub fn new() -> Self {
        Self { regions: Vec::new(), mem: Arc::new(GuestMemoryMmap::new()) }
    }

    /// The current guest RAM (a new `Arc` after every change; windows made from an older one
    /// keep their mappings alive).
    pub fn memory(&self) -> Arc<GuestMemoryMmap> {
        self.mem.clone()
    }

    /// The mapped ranges `(guest-physical address, size)`, by address.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.regions.iter().map(|r| (r.start_addr().0, r.len())).collect()
    }

    /// Handles `VFIO_USER_DMA_MAP` (see the module doc for what is refused or skipped).
    pub fn map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> Result<MapOutcome, DmaError> {
        if size == 0 {
            return Err(DmaError::Empty);
        }
        let (Some(last), Some(file_end)) =
            (address.checked_add(size - 1), offset.checked_add(size))
        else {
            return Err(overflow_of(address, offset, size));
        };
        let Some(file) = fd else {
            return Ok(MapOutcome::NoFd);
        };
        if !flags.contains(DmaMapFlags::READ_WRITE) {
            return Ok(MapOutcome::ReadOnly);
        }
        if !offset.is_multiple_of(DMA_OFFSET_ALIGN) {
            return Err(DmaError::Unaligned(offset));
        }
        let file_len = file.metadata().map_err(DmaError::Io)?.len();
        if file_end > file_len {
            return Err(DmaError::BeyondFile { offset, size, file_len });
        }
        if self.regions.iter().any(|r| r.start_addr().0 <= last && address <= r.last_addr().0) {
            return Err(DmaError::Overlap { address, size });
        }
        if self.regions.len() >= MAX_DMA_REGIONS {
            return Err(DmaError::TooMany);
        }
        let len = usize::try_from(size).map_err(|_| overflow_of(address, offset, size))?;
        let region = GuestRegionMmap::from_range(
            GuestAddress(address),
            len,
            Some(FileOffset::new(file, offset)),
        )
        .map_err(|e| DmaError::Map(e.to_string()))?;
        let mut regions = self.regions.clone();
        regions.push(Arc::new(region));
        regions.sort_by_key(|r| r.start_addr());
        self.install(regions)?;
        Ok(MapOutcome::Mapped)
    }

    /// Handles `VFIO_USER_DMA_UNMAP`: removes every mapping inside `[address, address+size)`
    /// (all of them with `UNMAP_ALL`); returns how many were removed. An unmap of a range with
    /// no mapping succeeds and removes nothing (as the kernel's type-1 IOMMU does).
    pub fn unmap(
        &mut self,
        flags: DmaUnmapFlags,
        address: u64,
        size: u64,
    ) -> Result<usize, DmaError> {
        if flags.contains(DmaUnmapFlags::GET_DIRTY_PAGE_INFO) {
            return Err(DmaError::Unsupported("dirty page logging"));
        }
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            let n = self.regions.len();
            self.clear();
            return Ok(n);
        }
        if size == 0 {
            return Ok(0);
        }
        let last = address.checked_add(size - 1).ok_or_else(|| overflow_of(address, 0, size))?;
        let mut keep = Vec::with_capacity(self.regions.len());
        let mut removed = 0;
        for r in &self.regions {
            let (s, e) = (r.start_addr().0, r.last_addr().0);
            if s >= address && e <= last {
                removed += 1;
            } else if s <= last && address <= e {
                return Err(DmaError::PartialUnmap { address, size });
            } else {
                keep.push(r.clone());
            }
        }
        if removed > 0 {
            self.install(keep)?;
        }
        Ok(removed)
    }

    /// Forgets every mapping (the client went away).
    pub fn clear(&mut self) {
        self.regions.clear();
        self.mem = Arc::new(GuestMemoryMmap::new());
    }

    fn install(&mut self, regions: Vec<Arc<GuestRegionMmap>>) -> Result<(), DmaError> {
        let mem = if regions.is_empty() {
            GuestMemoryMmap::new()
        } else {
            GuestMemoryMmap::from_arc_regions(regions.clone())
                .map_err(|e| DmaError::Map(e.to_string()))?
        };
        self.regions = regions;
        self.mem = Arc::new(mem);
        Ok(())
    }
}

fn overflow_of(address: u64, offset: u64, size: u64) -> DmaError {
    DmaError::Overflow { address, offset, size }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Region;

    /// An unlinked temporary file of `len` bytes (stands in for QEMU's memfd).
    pub(crate) fn ram_file(len: u64) -> File {
        let dir = std::env::temp_dir();
        let name = format!("ptnet-dma-{}-{:?}", std::process::id(), std::thread::current().id());
        let path = dir.join(name);
        let f =
            File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f.set_len(len).unwrap();
        f
    }

    const RW: DmaMapFlags = DmaMapFlags::READ_WRITE;

    #[test]
    fn map_builds_guest_memory_and_unmap_removes_it() {
        let mut d = DmaSpace::new();
        let f = ram_file(1 << 20);
        let (g, h) = (f.try_clone().unwrap(), f.try_clone().unwrap());
        assert_eq!(d.map(RW, 0, 0x10_0000, 0x8_0000, Some(f)).unwrap(), MapOutcome::Mapped);
        assert_eq!(d.map(RW, 0x8_0000, 0x20_0000, 0x8_0000, Some(g)).unwrap(), MapOutcome::Mapped);
        assert_eq!(d.ranges(), vec![(0x10_0000, 0x8_0000), (0x20_0000, 0x8_0000)]);
        let mem = d.memory();
        let a = Region::from_guest(&mem, 0x10_0000 + 0x8_0000 - 8, 16);
        assert!(a.is_err(), "crosses the end of the first mapping");
        // The mapping is shared: a write through it is in the file at the map's offset.
        let a = Region::from_guest(&mem, 0x20_0010, 64).unwrap();
        a.store_u32(0, 0xdead_beef);
        let mut b = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(&h, &mut b, 0x8_0010).unwrap();
        assert_eq!(u32::from_ne_bytes(b), 0xdead_beef);
        assert_eq!(d.unmap(DmaUnmapFlags::empty(), 0x10_0000, 0x8_0000).unwrap(), 1);
        assert_eq!(d.ranges(), vec![(0x20_0000, 0x8_0000)]);
        assert!(Region::from_guest(&d.memory(), 0x10_0000, 8).is_err());
        // The old window stays valid (it holds the old memory).
        assert_eq!(a.load_u32(0), 0xdead_beef);
        assert_eq!(d.unmap(DmaUnmapFlags::empty(), 0x90_0000, 0x1000).unwrap(), 0);
        assert_eq!(d.unmap(DmaUnmapFlags::UNMAP_ALL, 0, 0).unwrap(), 1);
        assert!(d.ranges().is_empty());
    }

    #[test]
    fn bad_maps_are_refused() {
        let mut d = DmaSpace::new();
        let f = || Some(ram_file(0x4000));
        assert!(matches!(d.map(RW, 0, 0, 0, f()), Err(DmaError::Empty)));
        assert!(matches!(d.map(RW, 0, u64::MAX, 2, f()), Err(DmaError::Overflow { .. })));
        assert!(matches!(d.map(RW, u64::MAX, 0, 2, f()), Err(DmaError::Overflow { .. })));
        assert!(matches!(d.map(RW, 12, 0, 0x1000, f()), Err(DmaError::Unaligned(12))));
        assert!(matches!(d.map(RW, 0x1000, 0, 0x4000, f()), Err(DmaError::BeyondFile { .. })));
        assert!(matches!(d.map(RW, 0, 0, 1 << 40, f()), Err(DmaError::BeyondFile { .. })));
        assert_eq!(d.map(RW, 0, 0, 0x1000, None).unwrap(), MapOutcome::NoFd);
        assert_eq!(d.map(DmaMapFlags::READ, 0, 0, 0x1000, f()).unwrap(), MapOutcome::ReadOnly);
        assert!(d.ranges().is_empty());
        d.map(RW, 0, 0x1_0000, 0x2000, f()).unwrap();
        assert!(matches!(d.map(RW, 0, 0x1_1000, 0x2000, f()), Err(DmaError::Overlap { .. })));
        assert!(matches!(d.map(RW, 0, 0xf000, 0x2000, f()), Err(DmaError::Overlap { .. })));
        assert!(matches!(
            d.unmap(DmaUnmapFlags::empty(), 0x1_0000, 0x1000),
            Err(DmaError::PartialUnmap { .. })
        ));
        assert!(matches!(
            d.unmap(DmaUnmapFlags::GET_DIRTY_PAGE_INFO, 0x1_0000, 0x2000),
            Err(DmaError::Unsupported(_))
        ));
        assert_eq!(d.ranges(), vec![(0x1_0000, 0x2000)]);
    }

    #[test]
    fn mapping_count_is_bounded() {
        let mut d = DmaSpace::new();
        let f = ram_file(0x1000);
        for i in 0..MAX_DMA_REGIONS as u64 {
            d.map(RW, 0, i * 0x1000, 0x1000, Some(f.try_clone().unwrap())).unwrap();
        }
        let r = d.map(RW, 0, 1 << 40, 0x1000, Some(f));
        assert!(matches!(r, Err(DmaError::TooMany)));
    }
}
