//! The two PCI functions as vfio-user devices: [`PtnetBackend`] and [`MemdevBackend`]
//! implement the `vfio-user` crate's [`ServerBackend`] on top of the model's [`PtnetDevice`]
//! and [`MemdevDevice`] (the same objects the in-process tests drive).
//!
//! ## Regions (vfio-pci numbering: BAR0..BAR5 = 0..5, ROM 6, config 7, VGA 8)
//!
//! | function | region | size | flags | accesses |
//! |---|---|---|---|---|
//! | both | 7 config | 256 | R/W | any offset and length inside; aligned 1/2/4-byte accesses go to the model as one access, others byte by byte |
//! | ptnet | 0 BAR0 (I/O) | 256 | R/W | 1, 2, 4 bytes to `bar_read`/`bar_write` (the model applies E1/E12); 8 bytes as two dwords |
//! | ptnet | 2 BAR2 (MSI-X) | 4096 | R/W | 1, 2, 4, 8 bytes to the model's table (QEMU emulates table and PBA, so normally none arrive) |
//! | memdev | 0 BAR0 (I/O) | 128 | R/W | as ptnet BAR0; the registers are read-only |
//! | memdev | 1 BAR1 (netmap region) | next power of two ≥ MEMSIZE | R/W/MMAP, one sparse area | the memfd of the region, offset 0, MEMSIZE rounded up to a page: QEMU maps it into the guest, no message per access; one that arrives may have any length and offset (BAR1 is RAM, see [`MemdevDevice::bar1_read`]); bytes past MEMSIZE read all-ones, writes there are dropped |
//!
//! Every other region has size 0. An access outside its region, of length 0, or of a length the
//! region does not take is an error reply (EINVAL); it changes nothing. Accesses the model
//! defines as ignored (narrow or unaligned register accesses, writes to read-only registers)
//! succeed and are ignored, so a guest cannot make QEMU log an error per access.
//!
//! ## Interrupts
//!
//! ptnet: INTx (count 1, never raised; QEMU wires an eventfd because the pin is advertised),
//! MSI (0), MSI-X (one vector per ring, eventfds, see [`super::irq`]), ERR and REQ (0). memdev:
//! none. Any `SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER` on MSI-X switches the model to
//! "MSI-X enabled" ([`PtnetDevice::set_external_msix`]`(Some(true))`, QEMU sends one when the
//! guest sets the enable bit), `DATA_NONE` with count 0 back to disabled.
//!
//! ## Client gone
//!
//! [`Function::disconnect`] leaves the device as a fresh VM would find it: the host loop
//! stopped (by writing 0 to both CSB address pairs, which performs the model's implicit
//! DELETE), `PTFEAT` and `VNET_HDR_LEN` back to 0, device reset, no eventfds, MSI-X disabled,
//! no guest RAM. The port and its region are untouched.

use super::dma::{DmaSpace, MapOutcome};
use super::irq::EventfdMsi;
use crate::abi::pci::PTNET_IO_BAR_SIZE;
use crate::abi::pci::{IO_BAR, MEMDEV_IO_BAR_SIZE, MEM_BAR, MSIX_BAR, MSIX_BAR_SIZE};
use crate::abi::regs;
use crate::model::memdev::MemdevDevice;
use crate::model::pci::{ConfigSpace, CONFIG_SPACE_SIZE};
use crate::model::ptnet::PtnetDevice;
use std::fs::File;
use std::io;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_sparse_mmap_area, VFIO_IRQ_INFO_AUTOMASKED,
    VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX,
    VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, ServerBackend, ServerRegion, SparseArea};

/// Config space region index.
pub const CONFIG_REGION: u32 = VFIO_PCI_CONFIG_REGION_INDEX;
/// BAR0 region index (registers, both functions).
pub const BAR0_REGION: u32 = VFIO_PCI_BAR0_REGION_INDEX;
/// BAR1 region index (memdev: the netmap region).
pub const BAR1_REGION: u32 = VFIO_PCI_BAR1_REGION_INDEX;
/// BAR2 region index (ptnet: MSI-X table and PBA).
pub const BAR2_REGION: u32 = VFIO_PCI_BAR2_REGION_INDEX;
/// MSI-X interrupt index.
pub const MSIX_IRQ: u32 = VFIO_PCI_MSIX_IRQ_INDEX;
/// INTx interrupt index.
pub const INTX_IRQ: u32 = VFIO_PCI_INTX_IRQ_INDEX;
/// Largest single region access handled (the `max_data_xfer_size` the crate advertises).
pub const MAX_ACCESS: usize = 1 << 20;

const PAGE: u64 = 4096;

/// One PCI function served over a vfio-user socket.
pub trait Function: ServerBackend + Send {
    /// Short name for logs (`vm0-ptnet`).
    fn name(&self) -> &str;
    /// The region table to serve (all of vfio-pci's nine regions).
    fn regions(&self) -> Vec<ServerRegion>;
    /// The interrupt table (all of vfio-pci's five indexes).
    fn irqs(&self) -> Vec<IrqInfo>;
    /// The client disconnected: drop everything it gave us (see the module doc).
    fn disconnect(&mut self);
    /// What happened on this function so far, for the log (empty if nothing to say).
    fn summary(&self) -> String {
        String::new()
    }
}

fn einval(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// Checks that `[offset, offset+len)` is a non-empty part of a region of `size` bytes.
fn check_range(region: u32, offset: u64, len: usize, size: u64) -> io::Result<()> {
    if len == 0 || len > MAX_ACCESS {
        return Err(einval(format!("region {region}: access of {len} bytes")));
    }
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(einval(format!(
            "region {region}: access {offset:#x}+{len} outside its {size:#x} bytes"
        ))),
    }
}

fn put(data: &mut [u8], v: u64) {
    let n = data.len().min(8);
    data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
}

fn get(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Config space read of any length inside the 256 bytes.
fn config_read(read: impl Fn(u16, u8) -> u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
    check_range(CONFIG_REGION, offset, data.len(), CONFIG_SPACE_SIZE as u64)?;
    let (off, len) = (offset as usize, data.len());
    if matches!(len, 1 | 2 | 4) && off.is_multiple_of(len) {
        put(data, read(off as u16, len as u8).into());
    } else {
        for (i, b) in data.iter_mut().enumerate() {
            *b = read((off + i) as u16, 1) as u8;
        }
    }
    Ok(())
}

/// Config space write of any length inside the 256 bytes.
fn config_write(write: impl Fn(u16, u8, u32), offset: u64, data: &[u8]) -> io::Result<()> {
    check_range(CONFIG_REGION, offset, data.len(), CONFIG_SPACE_SIZE as u64)?;
    let (off, len) = (offset as usize, data.len());
    if matches!(len, 1 | 2 | 4) && off.is_multiple_of(len) {
        write(off as u16, len as u8, get(data) as u32);
    } else {
        for (i, b) in data.iter().enumerate() {
            write((off + i) as u16, 1, u32::from(*b));
        }
    }
    Ok(())
}

/// An I/O BAR read: 1, 2, 4 bytes as one access, 8 as two dwords (low first).
fn io_read(
    region: u32,
    size: u64,
    read: impl Fn(u64, u8) -> u64,
    offset: u64,
    data: &mut [u8],
) -> io::Result<()> {
    check_range(region, offset, data.len(), size)?;
    let v = match data.len() {
        n @ (1 | 2 | 4) => read(offset, n as u8),
        8 => (read(offset, 4) & 0xffff_ffff) | (read(offset + 4, 4) << 32),
        n => return Err(einval(format!("region {region}: {n}-byte access"))),
    };
    put(data, v);
    Ok(())
}

/// An I/O BAR write, shaped like [`io_read`].
fn io_write(
    region: u32,
    size: u64,
    write: impl Fn(u64, u8, u64),
    offset: u64,
    data: &[u8],
) -> io::Result<()> {
    check_range(region, offset, data.len(), size)?;
    let v = get(data);
    match data.len() {
        n @ (1 | 2 | 4) => write(offset, n as u8, v),
        8 => {
            write(offset, 4, v & 0xffff_ffff);
            write(offset + 4, 4, v >> 32);
        }
        n => return Err(einval(format!("region {region}: {n}-byte access"))),
    }
    Ok(())
}

fn region_info(index: u32, size: u64, flags: u32) -> ServerRegion {
    ServerRegion {
        region_info: vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags,
            index,
            cap_offset: 0,
            size,
            offset: 0,
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

/// vfio-pci's nine regions, all empty except `defined`.
fn region_table(defined: Vec<ServerRegion>) -> Vec<ServerRegion> {
    let mut t: Vec<ServerRegion> =
        (0..VFIO_PCI_NUM_REGIONS).map(|i| region_info(i, 0, 0)).collect();
    for r in defined {
        let i = r.region_info.index as usize;
        t[i] = r;
    }
    t
}

/// vfio-pci's five interrupt indexes, all empty except `defined` (`(index, count, flags)`).
fn irq_table(defined: &[(u32, u32, u32)]) -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| {
            let (count, flags) =
                defined.iter().find(|d| d.0 == index).map(|d| (d.1, d.2)).unwrap_or((0, 0));
            IrqInfo { index, count, flags }
        })
        .collect()
}

const RW: u32 = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

/// The ptnet NIC as a vfio-user device.
pub struct PtnetBackend {
    name: String,
    dev: Arc<PtnetDevice>,
    msi: Arc<EventfdMsi>,
    dma: DmaSpace,
}

impl PtnetBackend {
    /// Serves `dev`, whose interrupts go to `msi` (the sink `dev` was created with, with one
    /// vector per ring). Puts the device in "external MSI-X, disabled" mode.
    pub fn new(name: &str, dev: Arc<PtnetDevice>, msi: Arc<EventfdMsi>) -> Self {
        dev.set_external_msix(Some(false));
        Self { name: name.into(), dev, msi, dma: DmaSpace::new() }
    }

    /// The device.
    pub fn device(&self) -> &Arc<PtnetDevice> {
        &self.dev
    }

    /// The interrupt sink.
    pub fn msi(&self) -> &Arc<EventfdMsi> {
        &self.msi
    }

    /// The DMA-mapped guest RAM.
    pub fn dma(&self) -> &DmaSpace {
        &self.dma
    }

    fn set_msix(&mut self, flags: u32, start: u32, count: u32, fds: Vec<File>) -> io::Result<()> {
        if flags & VFIO_IRQ_SET_ACTION_TYPE_MASK != VFIO_IRQ_SET_ACTION_TRIGGER {
            return Ok(()); // mask/unmask: QEMU masks in its own table (module doc)
        }
        match flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_EVENTFD => {
                self.msi.set(start, count, fds)?;
                self.dev.set_external_msix(Some(true));
            }
            VFIO_IRQ_SET_DATA_NONE if count == 0 => {
                self.msi.clear_all();
                self.dev.set_external_msix(Some(false));
            }
            VFIO_IRQ_SET_DATA_NONE => self.msi.trigger(start, count)?,
            _ => return Err(einval(format!("{}: set_irqs data type {flags:#x}", self.name))),
        }
        log::debug!(
            "{}: msi-x {start}+{count} ({} of {} vectors connected)",
            self.name,
            self.msi.connected(),
            self.msi.len()
        );
        Ok(())
    }
}

impl ServerBackend for PtnetBackend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let d = &self.dev;
        match region {
            CONFIG_REGION => config_read(|o, s| d.config_read(o, s), offset, data),
            BAR0_REGION => io_read(
                region,
                PTNET_IO_BAR_SIZE.into(),
                |o, s| d.bar_read(IO_BAR, o, s),
                offset,
                data,
            ),
            BAR2_REGION => {
                check_range(region, offset, data.len(), MSIX_BAR_SIZE.into())?;
                match data.len() {
                    n @ (1 | 2 | 4 | 8) => put(data, d.bar_read(MSIX_BAR, offset, n as u8)),
                    n => return Err(einval(format!("region {region}: {n}-byte access"))),
                }
                Ok(())
            }
            _ => Err(einval(format!("{}: no region {region}", self.name))),
        }
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let d = &self.dev;
        match region {
            CONFIG_REGION => config_write(|o, s, v| d.config_write(o, s, v), offset, data),
            BAR0_REGION => io_write(
                region,
                PTNET_IO_BAR_SIZE.into(),
                |o, s, v| d.bar_write(IO_BAR, o, s, v),
                offset,
                data,
            ),
            BAR2_REGION => {
                check_range(region, offset, data.len(), MSIX_BAR_SIZE.into())?;
                match data.len() {
                    n @ (1 | 2 | 4 | 8) => d.bar_write(MSIX_BAR, offset, n as u8, get(data)),
                    n => return Err(einval(format!("region {region}: {n}-byte access"))),
                }
                Ok(())
            }
            _ => Err(einval(format!("{}: no region {region}", self.name))),
        }
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        let r = self.dma.map(flags, offset, address, size, fd);
        match &r {
            Ok(MapOutcome::Mapped) => {
                self.dev.set_ram(self.dma.memory());
                log::debug!("{}: dma map {address:#x}+{size:#x} (offset {offset:#x})", self.name);
            }
            Ok(o) => log::debug!("{}: dma map {address:#x}+{size:#x} not used: {o:?}", self.name),
            Err(e) => log::warn!("{}: dma map {address:#x}+{size:#x} refused: {e}", self.name),
        }
        r.map(|_| ()).map_err(Into::into)
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        match self.dma.unmap(flags, address, size) {
            Ok(n) => {
                if n > 0 {
                    self.dev.set_ram(self.dma.memory());
                }
                log::debug!("{}: dma unmap {address:#x}+{size:#x}: {n} removed", self.name);
                Ok(())
            }
            Err(e) => {
                log::warn!("{}: dma unmap {address:#x}+{size:#x} refused: {e}", self.name);
                Err(e.into())
            }
        }
    }

    fn reset(&mut self) -> io::Result<()> {
        log::debug!("{}: device reset", self.name);
        self.dev.reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        match index {
            INTX_IRQ => Ok(()), // advertised pin, never raised (§9): keep nothing
            MSIX_IRQ => self.set_msix(flags, start, count, fds),
            _ => Err(einval(format!("{}: no interrupts at index {index}", self.name))),
        }
    }
}

impl Function for PtnetBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn regions(&self) -> Vec<ServerRegion> {
        region_table(vec![
            region_info(BAR0_REGION, PTNET_IO_BAR_SIZE.into(), RW),
            region_info(BAR2_REGION, MSIX_BAR_SIZE.into(), RW),
            region_info(CONFIG_REGION, CONFIG_SPACE_SIZE as u64, RW),
        ])
    }

    fn irqs(&self) -> Vec<IrqInfo> {
        let pin = self.dev.config_read(0x3d, 1) != 0;
        let intx = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        irq_table(&[
            (INTX_IRQ, u32::from(pin), if pin { intx } else { 0 }),
            (MSIX_IRQ, self.msi.len(), VFIO_IRQ_INFO_EVENTFD),
        ])
    }

    fn summary(&self) -> String {
        let n = self.msi.len();
        let rings: Vec<String> = (0..n)
            .filter_map(|i| self.dev.counters(i).map(|c| (i, c)))
            .map(|(i, c)| {
                let kind = if i < self.dev.port().num_tx_rings() { "tx" } else { "rx" };
                format!("{kind}{i}: {} frames {} kicks {} irqs", c.packets, c.kicks, c.interrupts)
            })
            .collect();
        format!(
            "{}; eventfd writes {} (lost {})",
            rings.join(", "),
            self.msi.delivered(),
            self.msi.dropped()
        )
    }

    fn disconnect(&mut self) {
        for reg in [
            regs::CSB_GH_BAH,
            regs::CSB_GH_BAL,
            regs::CSB_HG_BAH,
            regs::CSB_HG_BAL,
            regs::VNET_HDR_LEN,
            regs::PTFEAT,
        ] {
            self.dev.bar_write(IO_BAR, reg.into(), 4, 0);
        }
        self.dev.reset();
        self.msi.clear_all();
        self.dev.set_external_msix(Some(false));
        self.dma.clear();
        self.dev.set_ram(self.dma.memory());
    }
}

/// The memdev as a vfio-user device.
pub struct MemdevBackend {
    name: String,
    dev: Arc<MemdevDevice>,
    bar1_size: u64,
    memfd: i32,
}

/// Why a memdev cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemdevError {
    /// The region is not backed by a memfd (only [`crate::shm::Region::alloc`] regions are).
    NoMemfd,
    /// The region cannot be a BAR (errata E8).
    Bar(crate::model::pci::PciError),
}

impl core::fmt::Display for MemdevError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMemfd => write!(f, "netmap region has no memfd to share"),
            Self::Bar(e) => write!(f, "memdev bar1: {e}"),
        }
    }
}

impl std::error::Error for MemdevError {}

impl MemdevBackend {
    /// Serves `dev`; its region must be a memfd (shared with the guest through BAR1).
    pub fn new(name: &str, dev: Arc<MemdevDevice>) -> Result<Self, MemdevError> {
        let memfd = dev.bar1().memfd().ok_or(MemdevError::NoMemfd)?;
        let total = dev.memory().layout().total;
        let cs = ConfigSpace::memdev(total).map_err(MemdevError::Bar)?;
        let bar1_size = cs.bar_def(MEM_BAR).map(|b| b.size()).unwrap_or(0);
        Ok(Self { name: name.into(), dev, bar1_size, memfd })
    }

    /// The device.
    pub fn device(&self) -> &Arc<MemdevDevice> {
        &self.dev
    }

    /// Size of BAR1 (a power of two ≥ MEMSIZE).
    pub fn bar1_size(&self) -> u64 {
        self.bar1_size
    }

    /// The mmap-able part of BAR1: MEMSIZE rounded up to a page (the last page is partly past
    /// the end of the memfd, which a shared mapping reads as zeroes).
    pub fn mmap_size(&self) -> u64 {
        (self.dev.bar1().len() as u64).next_multiple_of(PAGE).min(self.bar1_size)
    }

    /// BAR1 accesses that reach the server (QEMU maps the memfd, so normally none do): any
    /// length inside the BAR, as [`MemdevDevice::bar1_read`] and [`MemdevDevice::bar1_write`]
    /// define it (QEMU's BAR1 is RAM: every width, any offset; all-ones past MEMSIZE).
    fn bar1_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        check_range(BAR1_REGION, offset, data.len(), self.bar1_size)?;
        self.dev.bar1_read(offset, data);
        Ok(())
    }

    fn bar1_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range(BAR1_REGION, offset, data.len(), self.bar1_size)?;
        self.dev.bar1_write(offset, data);
        Ok(())
    }
}

impl ServerBackend for MemdevBackend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let d = &self.dev;
        match region {
            CONFIG_REGION => config_read(|o, s| d.config_read(o, s), offset, data),
            BAR0_REGION => io_read(
                region,
                MEMDEV_IO_BAR_SIZE.into(),
                |o, s| d.bar_read(IO_BAR, o, s),
                offset,
                data,
            ),
            BAR1_REGION => self.bar1_read(offset, data),
            _ => Err(einval(format!("{}: no region {region}", self.name))),
        }
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let d = &self.dev;
        match region {
            CONFIG_REGION => config_write(|o, s, v| d.config_write(o, s, v), offset, data),
            BAR0_REGION => io_write(
                region,
                MEMDEV_IO_BAR_SIZE.into(),
                |o, s, v| d.bar_write(IO_BAR, o, s, v),
                offset,
                data,
            ),
            BAR1_REGION => self.bar1_write(offset, data),
            _ => Err(einval(format!("{}: no region {region}", self.name))),
        }
    }

    /// The memdev does no DMA: maps are accepted and their fds closed.
    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        _offset: u64,
        _address: u64,
        _size: u64,
        _fd: Option<File>,
    ) -> io::Result<()> {
        Ok(())
    }

    fn dma_unmap(&mut self, _flags: DmaUnmapFlags, _address: u64, _size: u64) -> io::Result<()> {
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        // The model has no memdev reset: clear the command register, the only state a guest
        // changes that matters (QEMU emulates the BAR registers itself).
        self.dev.config_write(0x04, 2, 0);
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        _flags: u32,
        _start: u32,
        _count: u32,
        _fds: Vec<File>,
    ) -> io::Result<()> {
        Err(einval(format!("{}: no interrupts (index {index})", self.name)))
    }
}

impl Function for MemdevBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn regions(&self) -> Vec<ServerRegion> {
        let mut bar1 = region_info(BAR1_REGION, self.bar1_size, RW | VFIO_REGION_INFO_FLAG_MMAP);
        bar1.sparse_areas = vec![SparseArea {
            area: vfio_region_sparse_mmap_area { offset: 0, size: self.mmap_size() },
        }];
        bar1.mmap_fd = Some(self.memfd);
        region_table(vec![
            region_info(BAR0_REGION, MEMDEV_IO_BAR_SIZE.into(), RW),
            bar1,
            region_info(CONFIG_REGION, CONFIG_SPACE_SIZE as u64, RW),
        ])
    }

    fn irqs(&self) -> Vec<IrqInfo> {
        irq_table(&[])
    }

    fn disconnect(&mut self) {
        let _ = ServerBackend::reset(self);
    }
}
