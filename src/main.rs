//! ptnetd: the daemon entry point, a thin shell over [`ptnetd::app`].
//!
//! | where | command | what |
//! |---|---|---|
//! | host | `ptnetd [--json] [--pcap FILE]` | the main job on the embedded device model ([`ptnetd::app::system`]): two VMs with ptnetd's two schemes, TCP over `network`, pkt-gen over `netmap`, a mode switch; a report or one JSON object |
//! | host | `ptnetd --driver-demo` | the driver-level demo ([`ptnetd::app::demo`]): verified traffic between two VMs through the copy path, no schemes |
//! | host | `ptnetd --selftest N` | the zero-copy self test ([`ptnetd::selftest`]) against an in-process model VM whose port reflects every frame |
//! | Linux guest | `ptnetd --linux [--pci BDF] [--selftest N]` | the driver on a real ptnet NIC through sysfs ([`ptnetd::platform::linux`]): attach, start line, optional self test, shutdown |
//! | Redox | `ptnetd` (from pcid-spawner) | attach, both schemes registered, null namespace, readiness; serve `network.*`/`netmap.*` until the device goes away; shutdown |
//! | Redox | `ptnetd --selftest N` | attach, readiness, the self test, shutdown |
//!
//! The command line is [`ptnetd::app::cli::PtnetdArgs`] (`--help` lists everything). Exit status:
//! 0 on success, 1 on failure (any check of the main job), 2 on a usage error. Logs go to stderr: `env_logger` on the host
//! (`RUST_LOG`, default `info`; `warn` for the main job, whose output is its progress and
//! report), the crate's own logger on Redox. Lines whose message starts
//! with `ptnetd: ` (the start line, the self-test verdict) are printed bare on the host, so
//! scripts can match them at line start.

use ptnetd::app::cli::{Mode, PtnetdArgs};
use std::process::ExitCode;

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(not(target_os = "redox"))]
fn main() -> ExitCode {
    use ptnetd::app::{demo, drive, embedded, progress, system};
    let args = PtnetdArgs::from_env();
    // The main job's own output is its progress and report: the daemons' info lines (handles
    // bound and closed) only with RUST_LOG=info.
    init_logging(if matches!(args.mode(), Mode::System { .. }) { "warn" } else { "info" });
    log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
    match args.mode() {
        Mode::ModelSelftest { slots, opts } => {
            exit(embedded::model_selftest(opts.selftest.unwrap_or(0), slots, &opts))
        }
        #[cfg(target_os = "linux")]
        Mode::Linux { pci, opts } => {
            match ptnetd::platform::linux::LinuxPlatform::new(pci.as_deref()) {
                Ok(mut plat) => exit(drive(&mut plat, &opts, || {})),
                Err(e) => {
                    log::error!("linux platform: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        Mode::Linux { .. } => {
            log::error!("--linux: this build is not for Linux");
            ExitCode::FAILURE
        }
        Mode::System { cfg, json } => {
            let mut p = progress::for_stderr();
            match system::run(&cfg, p.as_mut()) {
                Ok(report) if json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => {
                        println!("{s}");
                        exit(report.ok())
                    }
                    Err(e) => {
                        eprintln!("ptnetd: json: {e}");
                        ExitCode::FAILURE
                    }
                },
                Ok(report) => {
                    println!("{report}");
                    exit(report.ok())
                }
                Err(e) => {
                    eprintln!("ptnetd: FAIL {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Mode::Demo(cfg) => match demo::run(&cfg) {
            Ok(report) => {
                println!("{report}");
                exit(report.is_clean())
            }
            Err(e) => {
                eprintln!("ptnetd: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The host logger: `env_logger` with `RUST_LOG` (default `level`); messages starting with
/// `ptnetd: ` bare, others as `[LEVEL target] message`.
#[cfg(not(target_os = "redox"))]
fn init_logging(level: &str) {
    use std::io::Write;
    let env = env_logger::Env::default().default_filter_or(level);
    env_logger::Builder::from_env(env)
        .format(|buf, r| {
            let msg = r.args().to_string();
            if msg.starts_with("ptnetd: ") {
                writeln!(buf, "{msg}")
            } else {
                writeln!(buf, "[{} {}] {msg}", r.level(), r.target())
            }
        })
        .init();
}

#[cfg(target_os = "redox")]
fn main() -> ExitCode {
    use ptnetd::platform::redox::{notify_ready, RedoxPlatform};
    let Mode::Daemon(opts) = PtnetdArgs::from_env().mode();
    ptnetd::logger::init();
    log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
    let mut plat = match RedoxPlatform::new() {
        Ok(p) => p,
        Err(e) => {
            log::error!("redox platform: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opts.selftest.is_none() {
        // The daemon: both schemes, until the device goes away.
        return exit(ptnetd::app::daemon::run(plat, opts.vnet));
    }
    let ok = ptnetd::app::drive(&mut plat, &opts, || {
        if let Err(e) = notify_ready() {
            log::warn!("readiness: {e}");
        }
    });
    exit(ok)
}
