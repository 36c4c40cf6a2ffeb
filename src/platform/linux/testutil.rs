//! Fake sysfs trees for the tests of [`super::sysfs`] and [`super::function`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ptnetd-linux-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake sysfs function: ids, class, a 256-byte config space with an MSI-X capability at
/// 0x40, an I/O BAR0 of 256 bytes and memory BARs 1 (8 KiB) and 2 (4 KiB) as plain files.
pub fn fake_function(root: &Path, bdf: &str, vendor: u16, device: u16, class: u32) {
    let d = root.join(bdf);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
    std::fs::write(d.join("device"), format!("{device:#06x}\n")).unwrap();
    std::fs::write(d.join("class"), format!("{class:#08x}\n")).unwrap();
    std::fs::write(d.join("enable"), "0\n").unwrap();
    let mut cfg = vec![0u8; 256];
    cfg[0..2].copy_from_slice(&vendor.to_le_bytes());
    cfg[2..4].copy_from_slice(&device.to_le_bytes());
    cfg[6] = 0x10; // status: capability list
    cfg[9..12].copy_from_slice(&class.to_le_bytes()[..3]);
    cfg[0x34] = 0x40;
    cfg[0x40..0x44].copy_from_slice(&(0x11u32 | 3 << 16).to_le_bytes()); // MSI-X, 4 entries
    std::fs::write(d.join("config"), &cfg).unwrap();
    let res = [
        (0xc000u64, 0xc0ffu64, 0x40101u64),
        (0xfe00_0000, 0xfe00_1fff, 0x14_2208),
        (0xfe00_2000, 0xfe00_2fff, 0x4_0200),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
    ];
    let text: String =
        res.iter().map(|(s, e, f)| format!("{s:#018x} {e:#018x} {f:#018x}\n")).collect();
    std::fs::write(d.join("resource"), text).unwrap();
    std::fs::write(d.join("resource0"), vec![0u8; 256]).unwrap();
    std::fs::write(d.join("resource1"), vec![0u8; 8192]).unwrap();
    std::fs::write(d.join("resource2"), vec![0u8; 4096]).unwrap();
}

pub fn fake_tree(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    fake_function(&t.0, "0000:00:03.0", 0x1b36, 0x000d, 0x0c0330); // qemu-xhci: same ids
    fake_function(&t.0, "0000:00:04.0", 0x1b36, 0x000d, 0x020000); // ptnet
    fake_function(&t.0, "0000:00:05.0", 0x1b36, 0x000c, 0x00ff00); // memdev
    fake_function(&t.0, "0000:00:06.0", 0x1b36, 0x000c, 0x00ff00); // another memdev
    fake_function(&t.0, "0000:00:01.0", 0x8086, 0x100e, 0x020000);
    std::fs::create_dir_all(t.0.join("not-a-function")).unwrap();
    t
}
