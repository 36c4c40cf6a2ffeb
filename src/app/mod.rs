//! Applications: what the binaries run, above both sides of the layering. They use the guest
//! side (the [`driver`](crate::driver), the [`selftest`](crate::selftest)) and, on the host,
//! the device model (`crate::model`), which meet only through the platform the driver runs on
//! (`crate::platform::sim` for the embedded model). Nothing below imports this module.
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the command lines of `ptnetd` and `ptnet-host` (clap) |
//! | [`drive`] | attach the driver, run the self test if asked, shut down: the self-test modes |
//! | `daemon` | (Redox) the plain daemon: both schemes served until the device goes away |
//! | `embedded` | (host) model VMs with the driver on [`SimPlatform`](crate::platform::sim::SimPlatform), the self test against a reflector |
//! | `system` | (host) the main job: two VMs with ptnetd's schemes, TCP over `network`, pkt-gen over `netmap`, a mode switch |
//! | `progress` | (host) progress of the main job: bars on a terminal, lines otherwise |
//! | `demo` | (host) `ptnetd --driver-demo`: verified VM-to-VM traffic through the driver's copy path, no schemes |
//! | [`pktgen`] | the pkt-gen-like generator/sink/pinger on the zero-copy scheme (`ptnet-pktgen`) |
//! | [`smolpeer`] | one end of a TCP transfer on its own smoltcp stack over either scheme (`ptnet-smol`) |
//! | `bench` | (host) the throughput benchmark's scenarios, rows and plan (`cargo bench --bench throughput`, `ptnet-bench`; BENCHMARKS.md) |

#[cfg(not(target_os = "redox"))]
pub mod bench;
pub mod cli;
#[cfg(target_os = "redox")]
pub mod daemon;
#[cfg(not(target_os = "redox"))]
pub mod demo;
#[cfg(not(target_os = "redox"))]
pub mod embedded;
pub mod pktgen;
#[cfg(not(target_os = "redox"))]
pub mod progress;
pub mod smolpeer;
#[cfg(not(target_os = "redox"))]
pub mod system;

use crate::driver::{DriverConfig, Ptnet};
use crate::platform::Platform;
use std::time::Duration;

/// What the driver is asked to do once attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveOpts {
    /// Run the self test with this many frames.
    pub selftest: Option<u64>,
    /// Negotiate the virtio-net header.
    pub vnet: bool,
    /// Bound of the self test.
    pub timeout: Duration,
}

impl Default for DriveOpts {
    fn default() -> Self {
        Self { selftest: None, vnet: false, timeout: cli::DEFAULT_TIMEOUT }
    }
}

/// Attaches the driver on `plat` (which logs the start line `ptnetd: <info>`), calls
/// `attached`, runs the self test if asked, and shuts down. `true` if everything succeeded.
pub fn drive<P: Platform>(plat: &mut P, opts: &DriveOpts, attached: impl FnOnce()) -> bool {
    let cfg = DriverConfig { vnet_hdr: opts.vnet, ..DriverConfig::default() };
    let mut drv = match Ptnet::attach(plat, cfg) {
        Ok(d) => d,
        Err(e) => {
            log::error!("attach failed: {e}");
            return false;
        }
    };
    attached();
    let ok = opts
        .selftest
        .is_none_or(|n| crate::selftest::run(&mut drv, plat, n, opts.timeout).passed());
    match drv.shutdown() {
        Ok(()) => ok,
        Err(e) => {
            log::error!("shutdown failed: {e}");
            false
        }
    }
}
