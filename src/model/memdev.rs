//! The ptnetmap-memdev function (spec §2, §3.2): read-only registers describing a netmap
//! region, and BAR1 exposing the region itself (shared, no copy).
//!
//! Reading chosen: BAR1 is guest RAM in QEMU (`memory_region_init_ram_ptr`, §2), so accesses
//! through the BAR (rather than a mapping) take every width, 1, 2, 4 or 8 bytes, at any offset;
//! the part of the power-of-two BAR past `MEMSIZE` is unbacked and reads all-ones, writes there
//! are dropped.

use super::memory::NetmapMemory;
use super::pci::{ConfigSpace, PciError};
use crate::abi::memdev::*;
use crate::abi::pci::{IO_BAR, MEM_BAR};
use crate::shm::Region;
use std::sync::{Arc, Mutex};

/// All-ones of `size` bytes (1..=8), what an unbacked access reads.
fn ones(size: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8)))
}

/// The memdev PCI function of one netmap region.
#[derive(Debug)]
pub struct MemdevDevice {
    mem: Arc<NetmapMemory>,
    pci: Mutex<ConfigSpace>,
}

impl MemdevDevice {
    /// A memdev for `mem`; fails for regions above 2 GiB (E8).
    pub fn new(mem: Arc<NetmapMemory>) -> Result<Arc<Self>, PciError> {
        let pci = ConfigSpace::memdev(mem.layout().total)?;
        Ok(Arc::new(Self { mem, pci: Mutex::new(pci) }))
    }

    /// The region behind BAR1.
    pub fn memory(&self) -> &Arc<NetmapMemory> {
        &self.mem
    }

    /// Config space read.
    pub fn config_read(&self, off: u16, size: u8) -> u32 {
        self.pci.lock().unwrap_or_else(|e| e.into_inner()).read(off, size)
    }

    /// Config space write.
    pub fn config_write(&self, off: u16, size: u8, val: u32) {
        self.pci.lock().unwrap_or_else(|e| e.into_inner()).write(off, size, val)
    }

    /// Register read (32-bit; narrow reads return the low bytes of the register, as on ptnet).
    pub fn io_read(&self, off: u32, size: u8) -> u32 {
        let l = self.mem.layout();
        let v = match off & !3 {
            MEMSIZE_LO => l.total as u32,
            MEMSIZE_HI => (l.total >> 32) as u32,
            MEMID => self.mem.mem_id() as u32,
            IF_POOL_OFS => l.if_pool_ofs as u32,
            IF_POOL_OBJNUM => l.cfg.if_num,
            IF_POOL_OBJSZ => l.cfg.if_size,
            RING_POOL_OFS => l.ring_pool_ofs as u32,
            RING_POOL_OBJNUM => l.cfg.ring_num,
            RING_POOL_OBJSZ => l.cfg.ring_size,
            BUF_POOL_OFS => l.buf_pool_ofs as u32,
            BUF_POOL_OBJNUM => l.cfg.buf_num,
            BUF_POOL_OBJSZ => l.cfg.buf_size,
            _ => 0,
        };
        match size {
            4 if off.is_multiple_of(4) => v,
            1 => v & 0xff,
            2 => v & 0xffff,
            _ => 0,
        }
    }

    /// BAR read: BAR0 registers, BAR1 memory ([`MemdevDevice::bar1_read`]); other BARs read
    /// all-ones.
    pub fn bar_read(&self, bar: u8, off: u64, size: u8) -> u64 {
        match bar {
            IO_BAR => self.io_read(off as u32, size) as u64,
            MEM_BAR if matches!(size, 1 | 2 | 4 | 8) => {
                let mut b = [0u8; 8];
                self.bar1_read(off, &mut b[..size as usize]);
                u64::from_le_bytes(b)
            }
            _ => ones(size),
        }
    }

    /// BAR write: the registers are read-only; BAR1 writes go to the region
    /// ([`MemdevDevice::bar1_write`]).
    pub fn bar_write(&self, bar: u8, off: u64, size: u8, val: u64) {
        if bar == MEM_BAR && matches!(size, 1 | 2 | 4 | 8) {
            self.bar1_write(off, &val.to_le_bytes()[..size as usize]);
        }
    }

    /// Reads `dst.len()` bytes of BAR1 at `off`. BAR1 is RAM in QEMU (§2), so any width works at
    /// any offset: an aligned 2-, 4- or 8-byte access is one atomic load (no torn value while the
    /// host writes), anything else a byte copy. Bytes past `MEMSIZE` (the unbacked tail of the
    /// power-of-two BAR) read all-ones.
    pub fn bar1_read(&self, off: u64, dst: &mut [u8]) {
        let r = self.mem.region();
        dst.fill(0xff);
        let Ok(o) = usize::try_from(off) else { return };
        let n = dst.len();
        let atomic = match n {
            2 => r.try_load_u16(o).map(u64::from).ok(),
            4 => r.try_load_u32(o).map(u64::from).ok(),
            8 => r.try_load_u64(o).ok(),
            _ => None,
        };
        match atomic {
            Some(v) => dst.copy_from_slice(&v.to_le_bytes()[..n]),
            None => {
                let inside = r.len().saturating_sub(o).min(n);
                let _ = r.read_bytes(o, &mut dst[..inside]);
            }
        }
    }

    /// Writes `src` to BAR1 at `off`, shaped like [`MemdevDevice::bar1_read`]; bytes past
    /// `MEMSIZE` are dropped.
    pub fn bar1_write(&self, off: u64, src: &[u8]) {
        let r = self.mem.region();
        let Ok(o) = usize::try_from(off) else { return };
        let atomic = match *src {
            [a, b] => r.try_store_u16(o, u16::from_le_bytes([a, b])).is_ok(),
            [a, b, c, d] => r.try_store_u32(o, u32::from_le_bytes([a, b, c, d])).is_ok(),
            [a, b, c, d, e, f, g, h] => {
                r.try_store_u64(o, u64::from_le_bytes([a, b, c, d, e, f, g, h])).is_ok()
            }
            _ => false,
        };
        if !atomic {
            let inside = r.len().saturating_sub(o).min(src.len());
            let _ = r.write_bytes(o, &src[..inside]);
        }
    }

    /// BAR1 as shared memory (what a guest maps, `MEMSIZE` bytes).
    pub fn bar1(&self) -> Region {
        self.mem.region().clone()
    }
}
