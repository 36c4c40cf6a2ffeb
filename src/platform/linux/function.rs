//! A PCI function through sysfs: config space and I/O BARs by `pread`/`pwrite`, memory BARs
//! by `mmap` (uncached, see the module doc of [`super`]), MSI-X enable through config space.

use super::mem::Mapping;
use super::sysfs::{parse_resources, Bdf, Resource};
use super::{os, page_size};
use crate::platform::{BarSpace, PciFunction, PlatformError};
use crate::shm::Region;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
    pub(super) bdf: Bdf,
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

/// Offset of the MSI-X capability (id 0x11), found with [`crate::platform::cfg::msix`]'s bounded walk.
pub fn msix_capability<F: PciFunction>(f: &F) -> Option<u16> {
    crate::platform::cfg::msix(f).map(|m| m.offset)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::LinuxPlatform;
    use super::*;
    use crate::platform::Platform;

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
}
