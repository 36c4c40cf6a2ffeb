//! The plain daemon on Redox (`ptnetd` from pcid-spawner, no self test): attach the driver,
//! register both schemes, enter the null namespace, signal readiness, serve until the device
//! goes away, shut down (`../shared/spec/redox.md` §1.3, §1.8; scheme-spec N1, M1).

use crate::driver::{DriverConfig, Ptnet};
use crate::platform::redox::{enter_null_namespace, notify_ready, RedoxPlatform};
use crate::scheme::server::Server;
use crate::scheme::{redox, Daemon};
use std::time::Duration;

/// Polling fallback of the event loop (lost interrupts cost at most this; the device's
/// presence is checked as often).
pub const POLL: Duration = Duration::from_millis(100);

/// Runs the daemon; `true` on a clean end (the device went away and was let go cleanly).
pub fn run(mut plat: RedoxPlatform, vnet: bool) -> bool {
    let cfg = DriverConfig { vnet_hdr: vnet, ..DriverConfig::default() };
    let nic = match Ptnet::attach(&mut plat, cfg) {
        Ok(d) => d,
        Err(e) => {
            log::error!("attach failed: {e}");
            return false;
        }
    };
    let mut server = Server::new(Daemon::new(plat, nic));
    let socks = match redox::register(&mut server) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            shutdown(server);
            return false;
        }
    };
    if let Err(e) = enter_null_namespace().and_then(|()| notify_ready()) {
        log::error!("{e}");
        shutdown(server);
        return false;
    }
    let served = match redox::serve(&mut server, &socks, POLL) {
        Ok(()) => true,
        Err(e) => {
            log::error!("{e}");
            false
        }
    };
    shutdown(server) && served
}

fn shutdown(server: Server<RedoxPlatform>) -> bool {
    match server.into_daemon().shutdown() {
        Ok(()) => true,
        Err(e) => {
            log::error!("shutdown failed: {e}");
            false
        }
    }
}
