//! Daemon life cycle (spec/redox.md §1.8): readiness to the spawner, and the null namespace.

use super::mem::os;
use crate::platform::PlatformError;
use libredox::Fd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the `INIT_NOTIFY` fd has been written and closed (it must not be closed twice: the
/// number may belong to another file by then).
static NOTIFIED: AtomicBool = AtomicBool::new(false);

/// Tells the spawner (init for `notify` services, pcid-spawner for PCI drivers) that the daemon
/// is ready: writes one `0` byte to the fd named by the `INIT_NOTIFY` environment variable and
/// closes it. Call it after every scheme is registered; the spawner blocks until then.
///
/// Without `INIT_NOTIFY` (started by hand or from a legacy init script) this logs and returns
/// `Ok`. A second call does nothing.
pub fn notify_ready() -> Result<(), PlatformError> {
    let value = match std::env::var("INIT_NOTIFY") {
        Ok(v) => v,
        Err(_) => {
            log::info!("INIT_NOTIFY not set (started by hand?): no readiness to signal");
            return Ok(());
        }
    };
    if NOTIFIED.swap(true, Ordering::SeqCst) {
        log::debug!("readiness already signalled");
        return Ok(());
    }
    let raw: usize = value.trim().parse().map_err(|_| {
        PlatformError::Protocol(format!("INIT_NOTIFY={value:?} is not an fd number"))
    })?;
    let fd = Fd::new(raw);
    let written = fd.write(&[0]).map_err(os("write INIT_NOTIFY"))?;
    fd.close().map_err(os("close INIT_NOTIFY"))?;
    if written != 1 {
        return Err(PlatformError::Protocol(format!("INIT_NOTIFY took {written} bytes")));
    }
    log::info!("readiness signalled");
    Ok(())
}

/// Enters the null namespace (`setrens(0, 0)`): from now on no path can be opened and no scheme
/// registered; fds already held (and `openat` on them) keep working. Call it after every
/// `/scheme/...` open: pcid channels, irq vectors, schemes, [`super::RedoxPlatform::new`].
pub fn enter_null_namespace() -> Result<(), PlatformError> {
    libredox::call::setrens(0, 0).map_err(os("setrens(0, 0)"))?;
    log::info!("entered the null namespace");
    Ok(())
}
