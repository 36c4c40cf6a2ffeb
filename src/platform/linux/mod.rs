//! The Linux platform: ptnetd as a userspace driver in a Linux guest (no netmap, no kernel
//! driver), through sysfs and procfs. Needs root.
//!
//! | what | how |
//! |---|---|
//! | find functions | `/sys/bus/pci/devices/*/{vendor,device,class}` ([`sysfs::scan`]) |
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

//!
//! | module | job |
//! |---|---|
//! | [`sysfs`] | PCI addresses, `resource` tables, id files, the scan for functions |
//! | [`mem`] | shared mappings, DMA pages and their physical addresses (pagemap) |
//! | [`function`] | one PCI function: config space, BARs, MSI-X enable |
//! | this module | the [`Platform`]: finding the NIC and its memdev, DMA, vectors, waiting |

pub mod function;
pub mod mem;
pub mod sysfs;
#[cfg(test)]
mod testutil;

pub use function::{msix_capability, LinuxFunction};
pub use mem::{alloc_dma_pages, keep_locked_pages_in_place};
pub use sysfs::{scan, Bdf, SYSFS_PCI_DEVICES};

use super::{Dma, Interrupt, MsiMessage, Platform, PlatformError};
use crate::abi::pci as ids;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sysfs::read_hex;

/// Longest wait of [`Platform::wait_interrupts`] (there are no interrupts to wait for).
pub const POLL_SLEEP: Duration = Duration::from_millis(1);
/// MSI address of [`LinuxPlatform::alloc_vectors`]: the x86 MSI window, physical destination
/// mode, destination APIC id 0xFE (no such CPU in a small guest, so the message is dropped).
pub const MSI_NOWHERE_ADDRESS: u64 = 0xfee0_0000 | 0xfe << 12;
/// First MSI data value (vector) of [`LinuxPlatform::alloc_vectors`]; fixed delivery, edge.
pub const MSI_FIRST_VECTOR: u32 = 0x40;

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
    use super::testutil::*;
    use super::*;

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
}
