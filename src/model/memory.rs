//! The host netmap memory region (spec §7.1, §3.2): three contiguous pools (netmap_if objects,
//! ring objects, packet buffers) in one shareable mapping, exported as memdev BAR1.
//!
//! ```text
//! offset 0              if pool    (if_num   × if_size)
//! offset ring_pool_ofs  ring pool  (ring_num × ring_size)
//! offset buf_pool_ofs   buf pool   (buf_num  × buf_size); buffers 0 and 1 reserved
//! ```
//!
//! Several ports may share one region (a pipe pair always does); the memdev's `MEMID` names it.
//! Regions above 2 GiB are refused (errata E8).

use crate::abi::netmap::{ring_size, DEFAULT_BUF_SIZE, FIRST_BUF_IDX, NM_CACHE_ALIGN};
use crate::abi::pci::MEMDEV_MAX_REGION;
use crate::shm::{Region, ShmError};
use core::fmt;
use std::sync::Mutex;

/// Errors of the region allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemError {
    /// The configuration does not make a valid region.
    BadConfig(&'static str),
    /// The region would exceed what memdev BAR1 can carry (E8).
    TooLarge(u64),
    /// A pool is exhausted.
    Exhausted(&'static str),
    /// Mapping failed.
    Shm(ShmError),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig(s) => write!(f, "bad netmap memory configuration: {s}"),
            Self::TooLarge(n) => write!(f, "netmap region of {n} bytes exceeds 2 GiB (errata E8)"),
            Self::Exhausted(p) => write!(f, "netmap {p} pool exhausted"),
            Self::Shm(e) => write!(f, "netmap region: {e}"),
        }
    }
}

impl std::error::Error for MemError {}

/// Pool sizes of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemConfig {
    /// Number of netmap_if objects.
    pub if_num: u32,
    /// Size of one netmap_if object.
    pub if_size: u32,
    /// Number of ring objects.
    pub ring_num: u32,
    /// Size of one ring object.
    pub ring_size: u32,
    /// Number of packet buffers (including the two reserved ones).
    pub buf_num: u32,
    /// Buffer size.
    pub buf_size: u32,
}

impl MemConfig {
    /// A region sized for `ports` ports of `rings` rings (TX + RX) of at most `slots` slots
    /// each, with one buffer per slot plus `extra_bufs`.
    pub fn for_ports(ports: u32, rings: u32, slots: u32, extra_bufs: u32) -> Self {
        let ring_size = ring_size(slots).next_multiple_of(NM_CACHE_ALIGN) as u32;
        let ring_num = ports * rings;
        Self {
            if_num: ports.max(1),
            if_size: 1024,
            ring_num: ring_num.max(1),
            ring_size,
            buf_num: ring_num * slots + extra_bufs + FIRST_BUF_IDX,
            buf_size: DEFAULT_BUF_SIZE,
        }
    }
}

/// Offsets and sizes of the three pools, as the memdev registers report them (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLayout {
    /// Pool sizes.
    pub cfg: MemConfig,
    /// `IF_POOL_OFS` (always 0).
    pub if_pool_ofs: u64,
    /// `RING_POOL_OFS`.
    pub ring_pool_ofs: u64,
    /// `BUF_POOL_OFS`.
    pub buf_pool_ofs: u64,
    /// `MEMSIZE`.
    pub total: u64,
}

impl PoolLayout {
    /// Computes the layout; refuses empty pools, misaligned objects and regions > 2 GiB.
    pub fn new(cfg: MemConfig) -> Result<Self, MemError> {
        if cfg.if_num == 0 || cfg.ring_num == 0 || cfg.buf_num <= FIRST_BUF_IDX {
            return Err(MemError::BadConfig("empty pool"));
        }
        if cfg.if_size < 64 || !cfg.if_size.is_multiple_of(8) {
            return Err(MemError::BadConfig("if_size must be a multiple of 8, at least 64"));
        }
        if cfg.ring_size < ring_size(2) as u32
            || !cfg.ring_size.is_multiple_of(NM_CACHE_ALIGN as u32)
        {
            return Err(MemError::BadConfig("ring_size must be a multiple of 128 holding 2 slots"));
        }
        if !(64..=65536).contains(&cfg.buf_size) || !cfg.buf_size.is_multiple_of(64) {
            return Err(MemError::BadConfig("buf_size must be a multiple of 64 in 64..=65536"));
        }
        let if_bytes = cfg.if_num as u64 * cfg.if_size as u64;
        let ring_pool_ofs = if_bytes.next_multiple_of(4096);
        let ring_bytes = cfg.ring_num as u64 * cfg.ring_size as u64;
        let buf_pool_ofs = (ring_pool_ofs + ring_bytes).next_multiple_of(4096);
        let total = buf_pool_ofs + cfg.buf_num as u64 * cfg.buf_size as u64;
        if total > MEMDEV_MAX_REGION {
            return Err(MemError::TooLarge(total));
        }
        Ok(Self { cfg, if_pool_ofs: 0, ring_pool_ofs, buf_pool_ofs, total })
    }
}

struct Pools {
    next_if: u32,
    next_ring: u32,
    free_bufs: Vec<u32>,
}

/// One netmap memory region with its allocator.
pub struct NetmapMemory {
    region: Region,
    mem_id: u16,
    layout: PoolLayout,
    pools: Mutex<Pools>,
}

impl fmt::Debug for NetmapMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetmapMemory")
            .field("mem_id", &self.mem_id)
            .field("layout", &self.layout)
            .finish()
    }
}

impl NetmapMemory {
    /// Allocates a zeroed region with the given pools.
    pub fn new(mem_id: u16, cfg: MemConfig) -> Result<Self, MemError> {
        let layout = PoolLayout::new(cfg)?;
        let region = Region::alloc(layout.total as usize).map_err(MemError::Shm)?;
        let free_bufs = (FIRST_BUF_IDX..cfg.buf_num).rev().collect();
        let pools = Mutex::new(Pools { next_if: 0, next_ring: 0, free_bufs });
        Ok(Self { region, mem_id, layout, pools })
    }

    /// The whole region (memdev BAR1).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Host allocator id (`MEMID` / `HOSTMEMID`).
    pub fn mem_id(&self) -> u16 {
        self.mem_id
    }

    /// Pool layout.
    pub fn layout(&self) -> &PoolLayout {
        &self.layout
    }

    /// Buffer size.
    pub fn buf_size(&self) -> u32 {
        self.layout.cfg.buf_size
    }

    /// Number of buffers (indices `0..buf_num`; 0 and 1 reserved).
    pub fn buf_num(&self) -> u32 {
        self.layout.cfg.buf_num
    }

    /// `true` if `idx` names an allocatable buffer (E9: `idx < 2` or `idx ≥ buf_num` is bad).
    pub fn buf_valid(&self, idx: u32) -> bool {
        (FIRST_BUF_IDX..self.buf_num()).contains(&idx)
    }

    /// Byte offset of buffer `idx` in the region, `None` for a bad index.
    pub fn buf_offset(&self, idx: u32) -> Option<usize> {
        self.buf_valid(idx)
            .then(|| (self.layout.buf_pool_ofs + idx as u64 * self.buf_size() as u64) as usize)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pools> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allocates one netmap_if object; returns its offset.
    pub fn alloc_if(&self) -> Result<u64, MemError> {
        let mut p = self.lock();
        if p.next_if >= self.layout.cfg.if_num {
            return Err(MemError::Exhausted("if"));
        }
        p.next_if += 1;
        Ok(self.layout.if_pool_ofs + (p.next_if - 1) as u64 * self.layout.cfg.if_size as u64)
    }

    /// Allocates one ring object able to hold `num_slots` slots; returns its offset.
    pub fn alloc_ring(&self, num_slots: u32) -> Result<u64, MemError> {
        if ring_size(num_slots) > self.layout.cfg.ring_size as usize {
            return Err(MemError::BadConfig("ring larger than the ring object size"));
        }
        let mut p = self.lock();
        if p.next_ring >= self.layout.cfg.ring_num {
            return Err(MemError::Exhausted("ring"));
        }
        p.next_ring += 1;
        Ok(self.layout.ring_pool_ofs + (p.next_ring - 1) as u64 * self.layout.cfg.ring_size as u64)
    }

    /// Allocates `n` buffers.
    pub fn alloc_bufs(&self, n: usize) -> Result<Vec<u32>, MemError> {
        let mut p = self.lock();
        if p.free_bufs.len() < n {
            return Err(MemError::Exhausted("buffer"));
        }
        let at = p.free_bufs.len() - n;
        Ok(p.free_bufs.split_off(at))
    }

    /// Number of free buffers.
    pub fn free_bufs(&self) -> usize {
        self.lock().free_bufs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §7.1: pools contiguous in offset order, buffers 0 and 1 reserved.
    #[test]
    fn layout_is_contiguous_and_reserves_two_buffers() {
        let m = NetmapMemory::new(7, MemConfig::for_ports(2, 4, 256, 64)).unwrap();
        let l = *m.layout();
        assert_eq!(l.if_pool_ofs, 0);
        assert!(l.ring_pool_ofs >= l.cfg.if_num as u64 * l.cfg.if_size as u64);
        assert!(l.buf_pool_ofs >= l.ring_pool_ofs + l.cfg.ring_num as u64 * l.cfg.ring_size as u64);
        assert_eq!(l.total, l.buf_pool_ofs + l.cfg.buf_num as u64 * 2048);
        assert_eq!(m.region().len() as u64, l.total);
        assert!(!m.buf_valid(0) && !m.buf_valid(1) && m.buf_valid(2));
        assert!(!m.buf_valid(l.cfg.buf_num));
        assert_eq!(m.buf_offset(2), Some(l.buf_pool_ofs as usize + 4096));
        let bufs = m.alloc_bufs(10).unwrap();
        assert!(bufs.iter().all(|&b| m.buf_valid(b)));
        assert_eq!(m.mem_id(), 7);
    }

    /// Errata E8: regions above 2 GiB are refused.
    #[test]
    fn regions_above_two_gib_are_refused() {
        let cfg =
            MemConfig { buf_num: 1 << 20, buf_size: 4096, ..MemConfig::for_ports(1, 2, 64, 0) };
        assert!(matches!(PoolLayout::new(cfg), Err(MemError::TooLarge(_))));
    }

    #[test]
    fn pools_run_out_cleanly() {
        let m = NetmapMemory::new(1, MemConfig::for_ports(1, 2, 64, 0)).unwrap();
        m.alloc_if().unwrap();
        assert_eq!(m.alloc_if(), Err(MemError::Exhausted("if")));
        m.alloc_ring(64).unwrap();
        m.alloc_ring(64).unwrap();
        assert_eq!(m.alloc_ring(64), Err(MemError::Exhausted("ring")));
        assert!(m.alloc_ring(4096).is_err());
        assert!(m.alloc_bufs(1_000_000).is_err());
        assert!(NetmapMemory::new(
            1,
            MemConfig { buf_size: 100, ..MemConfig::for_ports(1, 2, 64, 0) }
        )
        .is_err());
    }
}
