//! ptnetd: the daemon entry point.
fn main() {
    #[cfg(not(target_os = "redox"))]
    env_logger::init();
    log::info!("ptnetd {}", env!("CARGO_PKG_VERSION"));
}
