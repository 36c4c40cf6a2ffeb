//! Shared helpers of the driver tests: a VM per port with the driver bound through the sim
//! platform, pipes and ports, test frames, and a copy-path transfer loop.
#![allow(dead_code)]

use ptnetd::abi::netmap::NS_MOREFRAG;
use ptnetd::driver::copy::CopyError;
use ptnetd::driver::{DriverConfig, DriverError, Ptnet};
use ptnetd::model::memory::{MemConfig, NetmapMemory};
use ptnetd::model::port::{NmPort, PipeEnd, PortSpec};
use ptnetd::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use ptnetd::model::vm::Vm;
use ptnetd::nm::Slot;
use ptnetd::platform::sim::SimPlatform;
use ptnetd::ring;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const T: Duration = Duration::from_secs(20);

/// The driver with its polling fallback off (only interrupts wake a waiter): protocol tests
/// run this way, so that a lost wake-up stalls and fails instead of costing one interval.
pub fn strict(vnet_hdr: bool) -> DriverConfig {
    DriverConfig { vnet_hdr, poll_interval: None }
}

pub struct Nic {
    pub vm: Arc<Vm>,
    pub plat: SimPlatform,
    pub drv: Ptnet<SimPlatform>,
    pub dev: Arc<PtnetDevice>,
    pub port: Arc<NmPort>,
}

pub fn slot_of(vm: &Arc<Vm>, dev: &Arc<PtnetDevice>) -> u8 {
    vm.slot_of(dev).unwrap()
}

pub fn vm_for(port: &Arc<NmPort>) -> (Arc<Vm>, Arc<PtnetDevice>) {
    let vm = Vm::new(64).unwrap();
    let dev = vm.add_ptnet(Netdev::passthrough(port.clone()), PtnetConfig::default()).unwrap();
    (vm, dev)
}

pub fn attach(
    vm: &Arc<Vm>,
    dev: &Arc<PtnetDevice>,
    cfg: DriverConfig,
) -> Result<(SimPlatform, Ptnet<SimPlatform>), DriverError> {
    let mut plat = SimPlatform::new(vm.clone(), slot_of(vm, dev));
    let drv = Ptnet::attach(&mut plat, cfg)?;
    Ok((plat, drv))
}

pub fn nic(port: &Arc<NmPort>, cfg: DriverConfig) -> Nic {
    let (vm, dev) = vm_for(port);
    let (plat, drv) = attach(&vm, &dev, cfg).unwrap();
    Nic { vm, plat, drv, dev, port: port.clone() }
}

pub fn pipe(rings: u32, slots: u32) -> (Arc<NmPort>, Arc<NmPort>) {
    let mem =
        Arc::new(NetmapMemory::new(11, MemConfig::for_ports(2, 2 * rings, slots, 64)).unwrap());
    let a = NmPort::new(mem.clone(), &PortSpec::new("pipe{m", rings, slots)).unwrap();
    let b = NmPort::new(mem, &PortSpec::new("pipe}m", rings, slots)).unwrap();
    PipeEnd::connect(&a, &b).unwrap();
    (a, b)
}

pub fn port(mem_id: u16, rings: u32, slots: u32) -> Arc<NmPort> {
    let mem =
        Arc::new(NetmapMemory::new(mem_id, MemConfig::for_ports(1, 2 * rings, slots, 64)).unwrap());
    NmPort::new(mem, &PortSpec::new("p", rings, slots)).unwrap()
}

/// Netmap mode: writes `frame` into TX ring `i` of `drv` from slot `head`, one buffer per slot,
/// `NS_MOREFRAG` on every slot but the last (on every slot if `terminated` is false), without
/// publishing. Returns the slot after the chain.
pub fn fill_chain(
    drv: &Ptnet<SimPlatform>,
    i: u32,
    head: u32,
    frame: &[u8],
    terminated: bool,
) -> u32 {
    let info = drv.info();
    let bsz = info.buf_size as usize;
    let r = drv.ring(i).unwrap();
    let (n, view) = (r.num_slots(), &r.view);
    let chunks: Vec<&[u8]> = frame.chunks(bsz).collect();
    let mut h = head;
    for (k, chunk) in chunks.iter().enumerate() {
        let s = view.slot(h);
        let off = (info.buf_pool_ofs + s.buf_idx as u64 * bsz as u64) as usize;
        drv.region().write_bytes(off, chunk).unwrap();
        let last = k + 1 == chunks.len() && terminated;
        let flags = if last { 0 } else { NS_MOREFRAG };
        view.set_slot(h, Slot { buf_idx: s.buf_idx, len: chunk.len() as u16, flags });
        h = ring::next(h, n);
    }
    h
}

pub fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 3, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 3, 0xa]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[22..].iter_mut().enumerate() {
        *b = (seq as usize * 13 + i) as u8;
    }
    f
}

/// Moves `frames` from TX ring `tx` of `a` to RX ring `rx` of `b` with at most `window` in
/// flight, sending `batch` frames per flush. When nothing arrives it waits for `a`'s
/// interrupts if `a`'s ring was full and nothing could be sent, else for `b`'s (until the
/// deadline): with [`strict`] drivers a lost wake-up fails here.
pub fn transfer(
    a: &mut Nic,
    tx: u32,
    b: &mut Nic,
    rx: u32,
    frames: &[Vec<u8>],
    window: usize,
    batch: usize,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut i = 0;
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    let (mut progress, mut rounds) = (t0, 0u64);
    while got.len() < frames.len() {
        rounds += 1;
        let mut n = 0;
        let mut full = false;
        while i < frames.len() && i < got.len().saturating_add(window) && n < batch {
            match a.drv.send(tx, &frames[i], None) {
                Ok(()) => {
                    i += 1;
                    n += 1;
                }
                Err(CopyError::Full) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        a.drv.flush_tx(tx).unwrap();
        let mut any = false;
        while let Some(r) = b.drv.recv(rx, &mut buf).unwrap() {
            got.push(buf[..r.len].to_vec());
            any = true;
            progress = Instant::now();
        }
        b.drv.flush_rx(rx).unwrap();
        if !any {
            if t0.elapsed() >= T {
                // What each side last saw, to tell a guest that slept unarmed from a host
                // that stopped.
                let (ra, rb) = (a.drv.ring(tx).unwrap(), b.drv.ring(rx).unwrap());
                for (who, r, n) in [("tx", ra, &*a), ("rx", rb, &*b)] {
                    eprintln!(
                        "{who}: {:?} ktoa {:?} kern_need_kick {} atok {:?} appl_need_kick {} copy head {:?}",
                        r.k,
                        r.ktoa.appl_read(),
                        r.ktoa.kern_need_kick(),
                        r.atok.kern_read(),
                        r.atok.appl_need_kick(),
                        n.drv.copy_head(r.index)
                    );
                }
            }
            assert!(
                t0.elapsed() < T,
                "stalled: {} of {} ({i} sent, {rounds} rounds, last frame received {:?} ago)",
                got.len(),
                frames.len(),
                progress.elapsed()
            );
            let left = T.saturating_sub(t0.elapsed());
            if full && n == 0 {
                // A's ring is full and B has nothing: what unblocks is A's host taking its
                // frames, which raises A's TX interrupt (B's may never come: everything
                // delivered may already be read, and A's view of its ring is stale).
                a.drv.wait_work(&a.plat, left);
                b.drv.take_interrupts(false);
            } else {
                b.drv.wait_work(&b.plat, left);
                a.drv.take_interrupts(false);
            }
        }
    }
    got
}
