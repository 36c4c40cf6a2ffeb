//! `ptnet-host`: serves netmap ptnet NICs (and their memdevs) to QEMU VMs over vfio-user.
//! See `ptnet-host --help` ([`ptnetd::app::cli::PtnetHostArgs`]) and [`ptnetd::model::vfio`].
//!
//! Exit status: 0 after SIGINT/SIGTERM (sockets removed), 1 when the host cannot start, 2 on a
//! command-line error.

#[cfg(not(target_os = "redox"))]
fn main() {
    std::process::exit(host::main());
}

/// The device model is a host-side program; Redox builds only `ptnetd`.
#[cfg(target_os = "redox")]
fn main() {
    eprintln!("ptnet-host runs on the development host only");
    std::process::exit(2);
}

#[cfg(not(target_os = "redox"))]
mod host {
    use ptnetd::app::cli::PtnetHostArgs;
    use ptnetd::model::vfio::Host;
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    pub fn main() -> i32 {
        let cfg = PtnetHostArgs::from_env().config();
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
        // Registered before any thread exists; the handler only writes to a pipe.
        let mut signals = match Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                log::error!("installing signal handlers: {e}");
                return 1;
            }
        };
        let host = match Host::start(cfg) {
            Ok(h) => h,
            Err(e) => {
                log::error!("{e}");
                return 1;
            }
        };
        log::info!("serving; SIGINT or SIGTERM stops");
        let sig = signals.forever().next().unwrap_or(SIGTERM);
        log::info!("signal {sig}: shutting down");
        host.shutdown();
        0
    }
}
