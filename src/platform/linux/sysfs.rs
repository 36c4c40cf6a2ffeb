//! sysfs: PCI addresses, `resource` tables and id files, and the scan for functions by ids
//! (pure parsing, unit-tested on fake trees).

use super::os;
use crate::platform::{BarSpace, PlatformError};
use core::fmt;
use std::path::Path;

const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;

/// Where Linux lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// A PCI address, `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI domain (segment); Linux shows at least four hex digits.
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device, 0..32.
    pub device: u8,
    /// Function, 0..8.
    pub function: u8,
}

impl Bdf {
    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), hex, case-insensitive, as sysfs names
    /// functions and `lspci` prints them. `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (rest, function) = s.rsplit_once('.')?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        let device = parts.pop()?;
        let bus = parts.pop()?;
        let domain = match parts.as_slice() {
            [] => "0",
            [d] => d,
            _ => return None,
        };
        let hex = |t: &str, max_len: usize| -> Option<u32> {
            let ok =
                !t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(t, 16).ok()).flatten()
        };
        let domain = hex(domain, 8)?;
        let bus = hex(bus, 2)? as u8;
        let device = hex(device, 2).filter(|&d| d < 32)? as u8;
        let function = hex(function, 1).filter(|&f| f < 8)? as u8;
        Some(Self { domain, bus, device, function })
    }

    /// The name used in logs and scheme names, as on Redox: `pci-0000-00-03.0`.
    pub fn name(&self) -> String {
        format!("pci-{:04x}-{:02x}-{:02x}.{}", self.domain, self.bus, self.device, self.function)
    }
}

impl fmt::Display for Bdf {
    /// The sysfs directory name: `0000:00:03.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.domain, self.bus, self.device, self.function)
    }
}

/// One line of a sysfs `resource` file: `start end flags`, each `0x%016llx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resource {
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
    /// Kernel `IORESOURCE_*` flags.
    pub flags: u64,
}

impl Resource {
    /// Size in bytes; 0 for an unused BAR.
    pub fn size(&self) -> u64 {
        if self.end > self.start || (self.end == self.start && self.start != 0) {
            self.end - self.start + 1
        } else {
            0
        }
    }

    /// The kind of space, `None` for an unused or unknown resource.
    pub fn space(&self) -> Option<BarSpace> {
        if self.size() == 0 {
            None
        } else if self.flags & IORESOURCE_IO != 0 {
            Some(BarSpace::Io)
        } else if self.flags & IORESOURCE_MEM != 0 {
            Some(BarSpace::Memory)
        } else {
            None
        }
    }
}

/// Parses a sysfs `resource` file: one [`Resource`] per line (BAR0..5, then the ROM and any
/// bridge windows). Malformed lines give an empty resource, so indices stay aligned.
pub fn parse_resources(text: &str) -> Vec<Resource> {
    let num = |t: &str| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok();
    text.lines()
        .map(|line| {
            let v: Vec<u64> = line.split_whitespace().filter_map(num).collect();
            match v.as_slice() {
                [start, end, flags, ..] => Resource { start: *start, end: *end, flags: *flags },
                _ => Resource::default(),
            }
        })
        .collect()
}

/// Parses a sysfs id or class file (`0x1b36\n`).
pub fn parse_hex_file(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

pub(super) fn read_hex(path: &Path) -> Option<u32> {
    parse_hex_file(&std::fs::read_to_string(path).ok()?)
}

/// The functions under `root` (a `/sys/bus/pci/devices` directory) with this vendor and device
/// id, sorted by address. Entries that are not PCI addresses or lack id files are skipped.
pub fn scan(root: &Path, vendor: u16, device: u16) -> Result<Vec<Bdf>, PlatformError> {
    let dir = std::fs::read_dir(root).map_err(os("list PCI functions in sysfs"))?;
    let mut found: Vec<Bdf> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let bdf = Bdf::parse(e.file_name().to_str()?)?;
            let p = e.path();
            let ids = (read_hex(&p.join("vendor"))?, read_hex(&p.join("device"))?);
            (ids == (vendor as u32, device as u32)).then_some(bdf)
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_parsing() {
        let b = Bdf::parse("0000:00:03.0").unwrap();
        assert_eq!(b, Bdf { domain: 0, bus: 0, device: 3, function: 0 });
        assert_eq!(b.to_string(), "0000:00:03.0");
        assert_eq!(b.name(), "pci-0000-00-03.0");
        assert_eq!(
            Bdf::parse("00:1f.7"),
            Some(Bdf { domain: 0, bus: 0, device: 0x1f, function: 7 })
        );
        assert_eq!(Bdf::parse(" 0001:AB:1E.2\n").unwrap().to_string(), "0001:ab:1e.2");
        assert_eq!(Bdf::parse("10000:00:00.0").unwrap().domain, 0x10000, "VMD domains");
        for bad in [
            "",
            "0000:00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "0:0:0:0.0",
            "x0:00.0",
            "000:0g:00.0",
            "0000:100:00.0",
            "0000:00:03.00",
            ":00.0",
            "00:.0",
        ] {
            assert_eq!(Bdf::parse(bad), None, "{bad:?}");
        }
        let mut v = [Bdf::parse("00:04.0").unwrap(), Bdf::parse("00:03.1").unwrap()];
        v.sort();
        assert_eq!(v[0].to_string(), "0000:00:03.1");
    }

    #[test]
    fn resource_parsing() {
        let text = "0x000000000000c000 0x000000000000c0ff 0x0000000000040101\n\
                    0x00000000fe000000 0x00000000fe7fffff 0x000000000014220c\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    garbage\n";
        let r = parse_resources(text);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].size(), r[0].space()), (256, Some(BarSpace::Io)));
        assert_eq!((r[1].size(), r[1].space()), (8 << 20, Some(BarSpace::Memory)));
        assert_eq!((r[2].size(), r[2].space()), (0, None));
        assert_eq!(r[3], Resource::default());
        assert_eq!(parse_hex_file("0x1b36\n"), Some(0x1b36));
        assert_eq!(parse_hex_file("0x020000"), Some(0x020000));
        assert_eq!(parse_hex_file("zz"), None);
    }
}
