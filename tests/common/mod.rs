//! The guest-side script of the conformance and traffic tests lives in the library
//! ([`ptnetd::model::script`]): a minimal guest that drives the device model only through raw
//! config-space and register accesses and raw CSB/ring memory (spec §6, §8.2–8.4). This module
//! re-exports it and adds the test-only conveniences: a logger, and infallible wrappers that
//! panic on a [`ScriptError`] where the library returns it.
#![allow(dead_code)]

pub use ptnetd::model::script::*;

/// A test frame ([`ptnetd::frame`]) of `len` bytes (at least 60).
pub fn make_frame(dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    ptnetd::frame::build(dst, src, seq, len)
}

/// The sequence number of an intact test frame ([`ptnetd::frame::check`]).
pub fn check_frame(f: &[u8]) -> Option<u64> {
    ptnetd::frame::check(f).seq()
}

use ptnetd::model::ptnet::PtnetDevice;
use ptnetd::model::vm::{PciFunction, Vm};
use std::sync::Arc;
use std::time::Duration;

/// Installs the test logger (once; later calls do nothing).
pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// [`try_find`], panicking on error.
#[track_caller]
pub fn find(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> (PciFunction, PciFunction) {
    try_find(vm, dev).unwrap_or_else(|e| panic!("find: {e}"))
}

/// [`try_vm_with_port`], panicking on error.
#[track_caller]
pub fn vm_with_port(rings: u32, slots: u32) -> VmWithPort {
    try_vm_with_port(rings, slots).unwrap_or_else(|e| panic!("vm_with_port: {e}"))
}

/// The [`Guest`] operations under their short names, panicking on a [`ScriptError`]. With
/// `use common::*` in scope, `Guest::attach(..)` and `g.txsync(..)` resolve to these.
pub trait GuestTestExt: Sized {
    /// [`Guest::try_attach`].
    fn attach(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>, o: &Opts) -> Self;
    /// [`Guest::try_shutdown`].
    fn shutdown(&self);
    /// [`Guest::try_txsync`].
    fn txsync(&mut self, i: u32, flags: u32);
    /// [`Guest::try_rxsync`].
    fn rxsync(&mut self, j: u32);
    /// [`Guest::try_put_tx`].
    fn put_tx(&mut self, i: u32, frame: &[u8]) -> bool;
    /// [`Guest::try_get_rx`].
    fn get_rx(&mut self, j: u32) -> Option<Vec<u8>>;
    /// [`Guest::try_poll_until`] with an infallible condition.
    fn poll_until(&mut self, timeout: Duration, cond: impl FnMut(&mut Guest) -> bool) -> bool;
    /// [`Guest::tx_ring`].
    fn tx(&self, i: u32) -> &GRing;
    /// [`Guest::rx_ring`].
    fn rx(&self, j: u32) -> &GRing;
}

impl GuestTestExt for Guest {
    #[track_caller]
    fn attach(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>, o: &Opts) -> Self {
        Guest::try_attach(vm, dev, o).unwrap_or_else(|e| panic!("attach: {e}"))
    }
    #[track_caller]
    fn shutdown(&self) {
        self.try_shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"))
    }
    #[track_caller]
    fn txsync(&mut self, i: u32, flags: u32) {
        self.try_txsync(i, flags).unwrap_or_else(|e| panic!("txsync: {e}"))
    }
    #[track_caller]
    fn rxsync(&mut self, j: u32) {
        self.try_rxsync(j).unwrap_or_else(|e| panic!("rxsync: {e}"))
    }
    #[track_caller]
    fn put_tx(&mut self, i: u32, frame: &[u8]) -> bool {
        self.try_put_tx(i, frame).unwrap_or_else(|e| panic!("put_tx: {e}"))
    }
    #[track_caller]
    fn get_rx(&mut self, j: u32) -> Option<Vec<u8>> {
        self.try_get_rx(j).unwrap_or_else(|e| panic!("get_rx: {e}"))
    }
    #[track_caller]
    fn poll_until(&mut self, timeout: Duration, mut cond: impl FnMut(&mut Guest) -> bool) -> bool {
        self.try_poll_until(timeout, |g| Ok(cond(g))).unwrap_or_else(|e| panic!("poll: {e}"))
    }
    #[track_caller]
    fn tx(&self, i: u32) -> &GRing {
        self.tx_ring(i).unwrap_or_else(|| panic!("no tx ring {i}"))
    }
    #[track_caller]
    fn rx(&self, j: u32) -> &GRing {
        self.rx_ring(j).unwrap_or_else(|| panic!("no rx ring {j}"))
    }
}
