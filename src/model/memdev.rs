//! The ptnetmap-memdev function (spec §2, §3.2): read-only registers describing a netmap
//! region, and BAR1 exposing the region itself (shared, no copy).

use super::memory::NetmapMemory;
use super::pci::{ConfigSpace, PciError};
use crate::abi::memdev::*;
use crate::abi::pci::{IO_BAR, MEM_BAR};
use crate::shm::Region;
use std::sync::{Arc, Mutex};

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

    /// BAR read: BAR0 registers; other BARs read all-ones (BAR1 is accessed by mapping it).
    pub fn bar_read(&self, bar: u8, off: u64, size: u8) -> u64 {
        match bar {
            IO_BAR => self.io_read(off as u32, size) as u64,
            MEM_BAR => {
                let r = self.mem.region();
                match size {
                    4 => r.try_load_u32(off as usize).map(u64::from).unwrap_or(u64::MAX),
                    8 => r.try_load_u64(off as usize).unwrap_or(u64::MAX),
                    _ => u64::MAX,
                }
            }
            _ => u64::MAX,
        }
    }

    /// BAR write: the registers are read-only; BAR1 writes go to the region.
    pub fn bar_write(&self, bar: u8, off: u64, size: u8, val: u64) {
        if bar == MEM_BAR {
            let r = self.mem.region();
            let _ = match size {
                4 => r.try_store_u32(off as usize, val as u32),
                8 => r.try_store_u64(off as usize, val),
                _ => Ok(()),
            };
        }
    }

    /// BAR1 as shared memory (what a guest maps, `MEMSIZE` bytes).
    pub fn bar1(&self) -> Region {
        self.mem.region().clone()
    }
}
