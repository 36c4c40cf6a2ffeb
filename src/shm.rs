//! The one shared-memory accessor, and the barriers of spec §5.4.
//!
//! Memory that another party writes (the CSB, the netmap region, guest RAM seen by the device
//! model) is only ever touched through a [`Region`]: a bounds-checked window with 32/16/64-bit
//! relaxed atomic loads and stores, and byte copies through raw pointers. No `&`/`&mut` reference
//! into such memory is ever created, so the peer's concurrent writes cannot violate Rust's aliasing
//! rules. Ordering is explicit: accesses are `Relaxed` and the protocol orders them with the named
//! fences below, exactly where §5.4 puts `smp_wmb`/`smp_rmb`/`smp_mb`.
//!
//! ```text
//!   producer (e.g. guest publishing)        consumer (e.g. host reading)
//!   write slots/buffers                      load atok.head
//!   store_store()        ──── pairs ────►    load_load()
//!   store atok.cur                           load atok.cur
//!   store_store()                            load_load()
//!   store atok.head                          touch slots/buffers
//! ```
//!
//! Byte copies of packet buffers are not atomic: a buffer belongs to one side at a time by the
//! ring protocol, and a misbehaving peer that writes a buffer it does not own can only corrupt the
//! *contents* we copy, never our memory safety (no reference is formed, every range is checked).
#![allow(unsafe_code)]

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::any::Any;
use std::sync::Arc;

/// Errors of the shared-memory accessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmError {
    /// `offset + len` is outside the region.
    OutOfBounds {
        /// Requested offset.
        offset: usize,
        /// Requested length.
        len: usize,
        /// Size of the region.
        size: usize,
    },
    /// The offset is not aligned for the access width.
    Misaligned {
        /// Requested offset.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// Mapping shared memory failed (errno).
    Map(i32),
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfBounds { offset, len, size } => {
                write!(f, "range {offset:#x}+{len:#x} outside a region of {size:#x} bytes")
            }
            Self::Misaligned { offset, align } => {
                write!(f, "offset {offset:#x} not aligned to {align}")
            }
            Self::Map(e) => write!(f, "mapping shared memory failed: errno {e}"),
        }
    }
}

impl std::error::Error for ShmError {}

/// A window on memory shared with another party.
///
/// Cloning is cheap; every clone and sub-window keeps the backing mapping alive.
#[derive(Clone)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    _owner: Option<Arc<dyn Any + Send + Sync>>,
}

// SAFETY: a Region only hands out values (never references) and every access is atomic or a raw
// copy; the backing memory is valid for as long as any clone lives (owner Arc or the contract of
// `from_raw`). Sharing it between threads is the point of the type.
unsafe impl Send for Region {}
// SAFETY: as above: all methods take `&self` and perform atomic or raw-pointer accesses only.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({:p}, {:#x})", self.base, self.len)
    }
}

impl Region {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads and writes, 8-byte aligned, and stay mapped for as
    /// long as any clone of the returned region lives (keep it alive through `owner`, or guarantee
    /// it by other means). It must only be accessed through `Region`s or by the other party
    /// (never through Rust references) while any clone lives.
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        owner: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        Self { base: ptr, len, _owner: owner }
    }

    /// Allocates `len` bytes of zeroed, page-aligned, shareable memory (a memfd on Linux, so a
    /// later transport can hand the same pages to another process).
    pub fn alloc(len: usize) -> Result<Self, ShmError> {
        let m = Arc::new(Mapping::new(len)?);
        let ptr = m.ptr;
        // SAFETY: the mapping is `len` bytes, page aligned, read/write, and owned by the Arc
        // stored in the region; nobody holds references into it.
        Ok(unsafe { Self::from_raw(ptr, len, Some(m)) })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` for an empty window.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address, for identity checks and logs only (never dereferenced outside this module).
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The memfd behind this region, if it was made by [`Region::alloc`] (for transports that
    /// export the memory to another process).
    pub fn memfd(&self) -> Option<i32> {
        self._owner.as_ref()?.downcast_ref::<Mapping>().map(|m| m.fd)
    }

    #[inline]
    fn check(&self, offset: usize, len: usize, align: usize) -> Result<(), ShmError> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.len) {
            return Err(ShmError::OutOfBounds { offset, len, size: self.len });
        }
        if !(self.base.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(ShmError::Misaligned { offset, align });
        }
        Ok(())
    }

    /// A sub-window `offset..offset+len`.
    pub fn sub(&self, offset: usize, len: usize) -> Result<Region, ShmError> {
        self.check(offset, len, 1)?;
        // SAFETY: in bounds (checked above), so the pointer is non-null and inside the mapping.
        let base = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) };
        Ok(Region { base, len, _owner: self._owner.clone() })
    }

    /// The same window, also keeping `token` alive: the token is dropped when the last clone or
    /// sub-window of the returned region is (a platform uses this to learn when the guest let
    /// go of memory it allocated).
    pub fn with_token(&self, token: Arc<dyn Any + Send + Sync>) -> Region {
        let owner: Arc<dyn Any + Send + Sync> = Arc::new((self._owner.clone(), token));
        Region { base: self.base, len: self.len, _owner: Some(owner) }
    }

    fn at(&self, offset: usize) -> *mut u8 {
        // SAFETY: callers checked `offset` with `check`, so the result is inside the mapping.
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// Relaxed 32-bit load.
    pub fn try_load_u32(&self, offset: usize) -> Result<u32, ShmError> {
        self.check(offset, 4, 4)?;
        // SAFETY: in bounds and 4-aligned (checked); valid for the region's lifetime; only atomic
        // accesses or the peer touch it.
        Ok(unsafe { AtomicU32::from_ptr(self.at(offset).cast()) }.load(Ordering::Relaxed))
    }

    /// Relaxed 32-bit store.
    pub fn try_store_u32(&self, offset: usize, v: u32) -> Result<(), ShmError> {
        self.check(offset, 4, 4)?;
        // SAFETY: as in `try_load_u32`.
        unsafe { AtomicU32::from_ptr(self.at(offset).cast()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Relaxed 16-bit load.
    pub fn try_load_u16(&self, offset: usize) -> Result<u16, ShmError> {
        self.check(offset, 2, 2)?;
        // SAFETY: in bounds and 2-aligned (checked); see `try_load_u32`.
        Ok(unsafe { AtomicU16::from_ptr(self.at(offset).cast()) }.load(Ordering::Relaxed))
    }

    /// Relaxed 16-bit store.
    pub fn try_store_u16(&self, offset: usize, v: u16) -> Result<(), ShmError> {
        self.check(offset, 2, 2)?;
        // SAFETY: in bounds and 2-aligned (checked); see `try_load_u32`.
        unsafe { AtomicU16::from_ptr(self.at(offset).cast()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Relaxed 64-bit load.
    pub fn try_load_u64(&self, offset: usize) -> Result<u64, ShmError> {
        self.check(offset, 8, 8)?;
        // SAFETY: in bounds and 8-aligned (checked); see `try_load_u32`.
        Ok(unsafe { AtomicU64::from_ptr(self.at(offset).cast()) }.load(Ordering::Relaxed))
    }

    /// Relaxed 64-bit store.
    pub fn try_store_u64(&self, offset: usize, v: u64) -> Result<(), ShmError> {
        self.check(offset, 8, 8)?;
        // SAFETY: in bounds and 8-aligned (checked); see `try_load_u32`.
        unsafe { AtomicU64::from_ptr(self.at(offset).cast()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// 32-bit load for offsets the caller has already proven valid (a typed view checked its
    /// length at construction). An invalid offset reads 0 instead of panicking.
    pub fn load_u32(&self, offset: usize) -> u32 {
        self.try_load_u32(offset).unwrap_or(0)
    }

    /// 32-bit store for proven offsets; an invalid offset drops the write.
    pub fn store_u32(&self, offset: usize, v: u32) {
        let _ = self.try_store_u32(offset, v);
    }

    /// 16-bit load for proven offsets; an invalid offset reads 0.
    pub fn load_u16(&self, offset: usize) -> u16 {
        self.try_load_u16(offset).unwrap_or(0)
    }

    /// 16-bit store for proven offsets; an invalid offset drops the write.
    pub fn store_u16(&self, offset: usize, v: u16) {
        let _ = self.try_store_u16(offset, v);
    }

    /// 64-bit load for proven offsets; an invalid offset reads 0.
    pub fn load_u64(&self, offset: usize) -> u64 {
        self.try_load_u64(offset).unwrap_or(0)
    }

    /// 64-bit store for proven offsets; an invalid offset drops the write.
    pub fn store_u64(&self, offset: usize, v: u64) {
        let _ = self.try_store_u64(offset, v);
    }

    /// Copies `dst.len()` bytes from `offset` out of the region.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), ShmError> {
        self.check(offset, dst.len(), 1)?;
        // SAFETY: the source range is in bounds (checked); `dst` is our own exclusive buffer and
        // cannot overlap shared memory we never hand out references to.
        unsafe { core::ptr::copy_nonoverlapping(self.at(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// `N` bytes from `offset`, as an array (a fixed-size copy the compiler turns into a few
    /// loads, where [`Region::read_bytes`] calls `memcpy`).
    #[inline]
    pub fn read_array<const N: usize>(&self, offset: usize) -> Result<[u8; N], ShmError> {
        self.check(offset, N, 1)?;
        let mut out = [0u8; N];
        // SAFETY: the source range is in bounds (checked); `out` is our own local array.
        unsafe { core::ptr::copy_nonoverlapping(self.at(offset), out.as_mut_ptr(), N) };
        Ok(out)
    }

    /// Copies `src` into the region at `offset`.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), ShmError> {
        self.check(offset, src.len(), 1)?;
        // SAFETY: the destination range is in bounds (checked); `src` is a Rust slice, which
        // cannot point into shared memory (no references into it exist).
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), self.at(offset), src.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), ShmError> {
        self.check(offset, len, 1)?;
        // SAFETY: in bounds (checked).
        unsafe { core::ptr::write_bytes(self.at(offset), byte, len) };
        Ok(())
    }

    /// The `n` 64-bit words at `offset` as a [`Words`] array: bounds and 8-byte alignment are
    /// checked here, once, so each later access costs one index compare.
    pub fn words(&self, offset: usize, n: usize) -> Result<Words, ShmError> {
        let len = n.checked_mul(8).ok_or(ShmError::OutOfBounds {
            offset,
            len: usize::MAX,
            size: self.len,
        })?;
        self.check(offset, len, 8)?;
        let base = self.at(offset).cast::<u64>();
        // SAFETY: `at` of a checked offset is inside the mapping, so non-null.
        let base = unsafe { NonNull::new_unchecked(base) };
        Ok(Words { base, n, _region: self.clone() })
    }

    /// Copies `len` bytes from `src[src_off..]` to `dst[dst_off..]` (the two may be the same
    /// region; overlapping ranges are handled).
    pub fn copy(
        src: &Region,
        src_off: usize,
        dst: &Region,
        dst_off: usize,
        len: usize,
    ) -> Result<(), ShmError> {
        src.check(src_off, len, 1)?;
        dst.check(dst_off, len, 1)?;
        // SAFETY: both ranges are in bounds of live mappings (checked); `copy` tolerates overlap.
        unsafe { core::ptr::copy(src.at(src_off), dst.at(dst_off), len) };
        Ok(())
    }
}

#[cfg(not(target_os = "redox"))]
mod guest {
    use super::*;
    use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

    impl Region {
        /// A window on `len` bytes of guest RAM at guest-physical `gpa`, kept alive by `mem`.
        /// Fails (never panics) when the range is unmapped, crosses a region boundary, or is
        /// not 8-byte aligned.
        pub fn from_guest(
            mem: &Arc<GuestMemoryMmap>,
            gpa: u64,
            len: usize,
        ) -> Result<Region, ShmError> {
            let oob = ShmError::OutOfBounds { offset: gpa as usize, len, size: 0 };
            let r = mem.find_region(GuestAddress(gpa)).ok_or(oob)?;
            let raddr = r.to_region_addr(GuestAddress(gpa)).ok_or(oob)?;
            let slice = r.get_slice(raddr, len).map_err(|_| oob)?;
            let ptr = slice.ptr_guard_mut().as_ptr();
            if !(ptr as usize).is_multiple_of(8) {
                return Err(ShmError::Misaligned { offset: gpa as usize, align: 8 });
            }
            let ptr = NonNull::new(ptr).ok_or(oob)?;
            let owner: Arc<dyn Any + Send + Sync> = mem.clone();
            // SAFETY: vm-memory guarantees the slice is valid for `len` bytes while the
            // GuestMemoryMmap lives; the Arc kept in the region keeps it alive. Guest RAM is
            // only accessed through regions or by the guest.
            Ok(unsafe { Region::from_raw(ptr, len, Some(owner)) })
        }
    }
}

/// An anonymous shared mapping backed by a memfd.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: i32,
}

// SAFETY: the mapping is plain memory; the struct only owns it (pointer + fd) and frees it on drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; no interior state besides the immutable pointer and fd.
unsafe impl Sync for Mapping {}

#[cfg(target_os = "linux")]
impl Mapping {
    fn new(len: usize) -> Result<Self, ShmError> {
        let len = len.max(1);
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: plain FFI call with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"ptnet-shm".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(ShmError::Map(errno()));
        }
        // SAFETY: fd is a valid memfd we own.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            let e = errno();
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            return Err(ShmError::Map(e));
        }
        // SAFETY: mapping a fresh memfd of `len` bytes; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = errno();
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            return Err(ShmError::Map(e));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(ShmError::Map(0))?;
        Ok(Self { ptr, len, fd })
    }
}

#[cfg(not(target_os = "linux"))]
impl Mapping {
    fn new(len: usize) -> Result<Self, ShmError> {
        let layout =
            std::alloc::Layout::from_size_align(len.max(1), 4096).map_err(|_| ShmError::Map(22))?;
        // SAFETY: non-zero size layout.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or(ShmError::Map(12))?;
        Ok(Self { ptr, len: len.max(1), fd: -1 })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: unmapping our own mapping and closing our own fd; no region refers to it
        // any more (the last Arc is being dropped).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
            libc::close(self.fd);
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: same layout as the allocation in `new`.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                std::alloc::Layout::from_size_align_unchecked(self.len, 4096),
            )
        }
    }
}

/// st-st barrier (`smp_wmb`, `atomic_thread_fence_rel`): orders earlier stores before later
/// stores. Pairs with [`load_load`] on the reading side (§5.4 rules 1, 2).
#[inline]
pub fn store_store() {
    fence(Ordering::Release);
}

/// ld-ld barrier (`smp_rmb`, `atomic_thread_fence_acq`): orders earlier loads before later loads
/// (and before later stores). Pairs with [`store_store`] on the writing side (§5.4 rules 1, 2).
#[inline]
pub fn load_load() {
    fence(Ordering::Acquire);
}

/// st-ld (full) barrier (`smp_mb`): orders earlier stores before later loads. Used between
/// setting a need_kick flag and re-reading the peer's indices (§5.4 rule 3), and between
/// publishing one's own indices and reading the peer's need_kick flag (errata E7).
#[inline]
pub fn store_load() {
    fence(Ordering::SeqCst);
}

/// `n` 8-aligned 64-bit words of a [`Region`], checked once when made ([`Region::words`]): for
/// hot loops over an array a typed view already proved in bounds (a netmap ring's slots). Each
/// access ([`Words::borrow`], then [`WordsRef`]) is one compare of the index against `n` and one
/// relaxed atomic access; an index out of range reads 0 and drops a store, like
/// [`Region::load_u64`]. Keeps the mapping alive.
#[derive(Clone)]
pub struct Words {
    base: NonNull<u64>,
    n: usize,
    _region: Region,
}

// SAFETY: as for `Region` (which it holds, keeping the mapping alive): only values are handed
// out, every access is atomic.
unsafe impl Send for Words {}
// SAFETY: as above; all methods take `&self` and perform atomic accesses only.
unsafe impl Sync for Words {}

impl fmt::Debug for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Words({:p}, {})", self.base, self.n)
    }
}

impl Words {
    /// The words borrowed for a loop: a copyable pointer and length, so the loop keeps them in
    /// registers. All accesses go through it.
    #[inline]
    pub fn borrow(&self) -> WordsRef<'_> {
        WordsRef { base: self.base, n: self.n, _words: core::marker::PhantomData }
    }
}

/// [`Words`] borrowed ([`Words::borrow`]): the same accesses, from a `Copy` value.
#[derive(Clone, Copy, Debug)]
pub struct WordsRef<'a> {
    base: NonNull<u64>,
    n: usize,
    _words: core::marker::PhantomData<&'a Words>,
}

impl WordsRef<'_> {
    /// Relaxed load of word `i` (0 if `i` is out of range).
    #[inline]
    pub fn load(self, i: usize) -> u64 {
        if i < self.n {
            // SAFETY: `i < n` and the `n` words were checked in bounds and 8-aligned when the
            // `Words` were made; the borrow keeps them (and so the mapping) alive; only atomic
            // accesses or the peer touch them.
            unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(i)) }.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Relaxed store of word `i` (dropped if `i` is out of range).
    #[inline]
    pub fn store(self, i: usize, v: u64) {
        if i < self.n {
            // SAFETY: as in `load`.
            unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(i)) }.store(v, Ordering::Relaxed);
        }
    }

    /// Relaxed 32-bit store of bytes 4..8 of word `i` (dropped if `i` is out of range).
    #[inline]
    pub fn store_upper_u32(self, i: usize, v: u32) {
        if i < self.n {
            // SAFETY: as in `load`; bytes 4..8 of an 8-aligned word are 4-aligned and inside it.
            let p = unsafe { self.base.as_ptr().add(i).cast::<u32>().add(1) };
            // SAFETY: `p` is in bounds and 4-aligned (above).
            unsafe { AtomicU32::from_ptr(p) }.store(v, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_and_alignment_checked() {
        let r = Region::alloc(64).unwrap();
        assert_eq!(r.len(), 64);
        r.try_store_u32(60, 0xdead_beef).unwrap();
        assert_eq!(r.try_load_u32(60), Ok(0xdead_beef));
        assert!(matches!(r.try_load_u32(61), Err(ShmError::OutOfBounds { .. })));
        assert!(matches!(r.try_load_u32(2), Err(ShmError::Misaligned { .. })));
        assert!(matches!(r.try_load_u64(60), Err(ShmError::OutOfBounds { .. })));
        assert!(matches!(r.try_load_u32(usize::MAX - 1), Err(ShmError::OutOfBounds { .. })));
        assert_eq!(r.load_u32(64), 0, "an unproven offset reads 0 instead of panicking");
        r.store_u32(64, 1); // dropped, no panic
        r.try_store_u16(6, 0x1234).unwrap();
        assert_eq!(r.load_u16(6), 0x1234);
        r.try_store_u64(8, u64::MAX - 1).unwrap();
        assert_eq!(r.load_u64(8), u64::MAX - 1);
    }

    #[test]
    fn words_are_checked_once_and_indexed_in_range() {
        let r = Region::alloc(64).unwrap();
        assert!(matches!(r.words(4, 2), Err(ShmError::Misaligned { .. })));
        assert!(matches!(r.words(8, 8), Err(ShmError::OutOfBounds { .. })));
        assert!(matches!(r.words(8, usize::MAX), Err(ShmError::OutOfBounds { .. })));
        let words = r.words(8, 7).unwrap();
        let w = words.borrow();
        w.store(6, 0x1122_3344_5566_7788);
        assert_eq!(r.load_u64(56), 0x1122_3344_5566_7788, "word 6 is bytes 56..64");
        assert_eq!(w.load(6), 0x1122_3344_5566_7788);
        w.store_upper_u32(6, 0xaabb_ccdd);
        assert_eq!(r.load_u32(60), 0xaabb_ccdd, "the upper half is bytes 4..8 of the word");
        assert_eq!(r.load_u32(56), 0x5566_7788, "the lower half is untouched");
        w.store(7, 1); // out of range: dropped
        w.store_upper_u32(7, 1);
        assert_eq!(w.load(7), 0, "an index out of range reads 0");
        assert_eq!(r.load_u64(0), 0, "nothing was written before the window");
        drop(r);
        let w = words.borrow();
        assert_eq!(w.load(0), 0, "the words keep the mapping alive");
        w.store(0, 5);
        assert_eq!(w.load(0), 5);
    }

    #[test]
    fn sub_windows_share_memory_and_keep_it_alive() {
        let r = Region::alloc(4096).unwrap();
        let s = r.sub(1024, 64).unwrap();
        drop(r);
        s.store_u32(0, 7);
        let mut b = [0u8; 4];
        s.read_bytes(0, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 7);
        assert!(s.sub(60, 8).is_err());
        assert!(s.read_bytes(62, &mut [0u8; 4]).is_err());
        s.write_bytes(52, b"twelve bytes").unwrap();
        assert_eq!(s.read_array::<12>(52), Ok(*b"twelve bytes"));
        assert!(matches!(s.read_array::<12>(53), Err(ShmError::OutOfBounds { .. })));
        assert!(s.read_array::<4>(usize::MAX - 1).is_err());
    }

    #[test]
    fn copies_between_and_within_regions() {
        let a = Region::alloc(128).unwrap();
        let b = Region::alloc(128).unwrap();
        a.write_bytes(0, b"hello world").unwrap();
        Region::copy(&a, 0, &b, 100, 11).unwrap();
        let mut out = [0u8; 11];
        b.read_bytes(100, &mut out).unwrap();
        assert_eq!(&out, b"hello world");
        Region::copy(&a, 0, &a, 3, 11).unwrap();
        let mut out = [0u8; 14];
        a.read_bytes(0, &mut out).unwrap();
        assert_eq!(&out, b"helhello world");
        assert!(Region::copy(&a, 120, &b, 0, 11).is_err());
        a.fill(0, 128, 0xa5).unwrap();
        assert_eq!(a.load_u32(124), 0xa5a5_a5a5);
        assert!(a.memfd().is_some());
    }
}
