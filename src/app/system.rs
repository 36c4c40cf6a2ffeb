//! The whole system on the embedded hypervisor (issue 10's main job, being built): two VMs on
//! the VALE-like switch, each with ptnetd serving its two schemes behind the in-process kernel,
//! and real traffic through the same scheme code Redox runs:
//!
//! * **stack**: a TCP transfer between two smoltcp stacks, each on its VM's `network` scheme,
//!   checked by SHA-256;
//! * **zero copy**: [`super::pktgen`] sender on VM A, receiver on VM B over `netmap`, every
//!   frame counted (received + dropped by the switch = sent, none duplicated);
//! * **mode switch**: while a TCP transfer runs, a zero-copy client on VM B takes its RX ring 0
//!   from the stack and gives it back; the transfer completes intact.
//!
//! [`run`] returns a [`SystemReport`] (serialisable to JSON) with per-phase figures and
//! verdicts.

use super::embedded::{vm_on_port, NicPlace};
use super::pktgen::{self, Function, PktgenConfig};
use crate::client::host::HostOs;
use crate::client::smol::NetworkDevice;
use crate::client::NetmapPort;
use crate::driver::{DriverConfig, Ptnet};
use crate::model::memory::{MemConfig, NetmapMemory};
use crate::model::port::{NmPort, PortSpec};
use crate::model::switch::Switch;
use crate::platform::sim::SimPlatform;
use crate::scheme::host::{HostConfig, HostKernel};
use crate::scheme::Daemon;
use serde::Serialize;
use sha2::{Digest, Sha256};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Bytes of the stack-mode TCP transfer.
    pub tcp_bytes: usize,
    /// 60-byte frames of the zero-copy phase.
    pub zc_frames: u64,
    /// Bytes of the TCP transfer during the mode switch.
    pub switch_bytes: usize,
    /// Longest a phase may take.
    pub phase_timeout: Duration,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            tcp_bytes: 64 << 20,
            zc_frames: 10_000_000,
            switch_bytes: 16 << 20,
            phase_timeout: Duration::from_secs(120),
        }
    }
}

/// One VM as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VmReport {
    /// MAC address.
    pub mac: String,
    /// PCI name.
    pub pci: String,
    /// TX rings.
    pub tx_rings: u32,
    /// RX rings.
    pub rx_rings: u32,
    /// Negotiated features.
    pub features: u32,
    /// virtio-net header length.
    pub vnet_hdr_len: u32,
}

/// The stack-mode phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackReport {
    /// Bytes the sender wrote.
    pub bytes_sent: u64,
    /// Bytes the receiver read.
    pub bytes_received: u64,
    /// SHA-256 of both equal.
    pub sha256_match: bool,
    /// Throughput.
    pub mbit_s: f64,
    /// Frames through the `network` schemes (both directions, both VMs).
    pub frames: u64,
    /// Scheme calls per frame of the two smoltcp devices.
    pub calls_per_frame: f64,
    /// Verdict.
    pub ok: bool,
}

/// The zero-copy phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZeroCopyReport {
    /// Frames sent by VM A.
    pub frames_sent: u64,
    /// Frames received intact by VM B.
    pub frames_received: u64,
    /// Frames the switch dropped (VM B's ring full, as VALE drops).
    pub frames_dropped: u64,
    /// Frames received twice.
    pub frames_duplicated: u64,
    /// Receive rate.
    pub mpps: f64,
    /// Verdict: received + dropped = sent, none duplicated.
    pub ok: bool,
}

/// The mode-switch phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModeSwitchReport {
    /// Bytes moved by the TCP transfer.
    pub bytes: u64,
    /// Times the zero-copy client took ring 0 and gave it back.
    pub switches: u32,
    /// Verdict: the transfer completed with equal SHA-256.
    pub ok: bool,
}

/// Kicks and interrupts over the whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Notifications {
    /// Kicks per packet moved (both VMs).
    pub kicks_per_packet: f64,
    /// Interrupts per packet moved (both VMs).
    pub interrupts_per_packet: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemReport {
    /// The two VMs.
    pub vms: Vec<VmReport>,
    /// Stack mode.
    pub stack: StackReport,
    /// Zero copy.
    pub zero_copy: ZeroCopyReport,
    /// Mode switch.
    pub mode_switch: ModeSwitchReport,
    /// Notifications.
    pub notifications: Notifications,
}

impl SystemReport {
    /// Every phase passed.
    pub fn ok(&self) -> bool {
        self.stack.ok && self.zero_copy.ok && self.mode_switch.ok
    }
}

struct Vm {
    k: HostKernel<SimPlatform>,
    mac: [u8; 6],
}

const MACS: [[u8; 6]; 2] = [[0x52, 0x54, 0, 0x12, 0x34, 0x56], [0x52, 0x54, 0, 0x12, 0x34, 0x57]];

fn vm(sw: &Arc<Switch>, n: usize) -> Result<(Vm, VmReport), String> {
    let mem = NetmapMemory::new(20 + n as u16, MemConfig::for_ports(1, 4, 1024, 64))
        .map_err(|e| e.to_string())?;
    let port = NmPort::new(Arc::new(mem), &PortSpec::new(&format!("vm{}", n + 1), 2, 1024))
        .map_err(|e| e.to_string())?;
    sw.attach_port(&port);
    let place = NicPlace { mac: Some(MACS[n]), slot: Some(3 + n as u8) };
    let (_dev, mut plat) = vm_on_port(port, place).map_err(|e| e.to_string())?;
    let nic = Ptnet::attach(&mut plat, DriverConfig::default()).map_err(|e| e.to_string())?;
    let i = nic.info().clone();
    let m = i.mac;
    let rep = VmReport {
        mac: format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        pci: i.name.clone(),
        tx_rings: i.tx_rings,
        rx_rings: i.rx_rings,
        features: i.features,
        vnet_hdr_len: i.vnet_hdr_len,
    };
    let irq = plat.vm().irq().clone();
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || irq.wake());
    let k = HostKernel::spawn(Daemon::new(plat, nic), wake, HostConfig::default());
    Ok((Vm { k, mac: MACS[n] }, rep))
}

fn stream_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

fn iface<D: smoltcp::phy::Device>(dev: &mut D, mac: [u8; 6], ip: [u8; 4]) -> Interface {
    let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut i = Interface::new(cfg, dev, SmolInstant::now());
    i.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24));
    });
    i
}

fn tcp_socket() -> tcp::Socket<'static> {
    let buf = || tcp::SocketBuffer::new(vec![0; 512 * 1024]);
    tcp::Socket::new(buf(), buf())
}

/// What a TCP transfer between two smoltcp stacks did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpOutcome {
    /// Bytes the sender handed to its socket.
    pub sent: u64,
    /// Bytes the receiver read.
    pub received: u64,
    /// SHA-256 of both equal.
    pub sha256_match: bool,
    /// Seconds it took.
    pub secs: f64,
}

/// A TCP transfer of `bytes` from a smoltcp stack on device `da` (MAC `macs[0]`, 10.0.0.1) to
/// one on `db` (`macs[1]`, 10.0.0.2); `between` runs after each poll of both (flush batched
/// devices, switch modes), with the bytes received so far.
pub fn tcp_over<DA: smoltcp::phy::Device, DB: smoltcp::phy::Device>(
    da: &mut DA,
    db: &mut DB,
    macs: [[u8; 6]; 2],
    bytes: usize,
    timeout: Duration,
    between: &mut dyn FnMut(&mut DA, &mut DB, usize),
) -> Result<TcpOutcome, String> {
    let mut ia = iface(da, macs[0], [10, 0, 0, 1]);
    let mut ib = iface(db, macs[1], [10, 0, 0, 2]);
    let (mut sa, mut sb) = (SocketSet::new(vec![]), SocketSet::new(vec![]));
    let ha = sa.add(tcp_socket());
    let hb = sb.add(tcp_socket());
    sb.get_mut::<tcp::Socket>(hb).listen(5000).map_err(|e| e.to_string())?;
    sa.get_mut::<tcp::Socket>(ha)
        .connect(ia.context(), (Ipv4Address::new(10, 0, 0, 2), 5000), 49152)
        .map_err(|e| e.to_string())?;
    let (mut sent, mut got) = (0usize, 0usize);
    let (mut hs, mut hr) = (Sha256::new(), Sha256::new());
    let t0 = Instant::now();
    while got < bytes {
        if t0.elapsed() > timeout {
            return Err(format!("tcp stalled: sent {sent} received {got} of {bytes}"));
        }
        let now = SmolInstant::now();
        ia.poll(now, da, &mut sa);
        ib.poll(now, db, &mut sb);
        between(da, db, got);
        let s = sa.get_mut::<tcp::Socket>(ha);
        if s.can_send() && sent < bytes {
            sent += s
                .send(|buf| {
                    let n = buf.len().min(bytes - sent);
                    for (k, x) in buf[..n].iter_mut().enumerate() {
                        *x = stream_byte(sent + k);
                    }
                    hs.update(&buf[..n]);
                    (n, n)
                })
                .map_err(|e| e.to_string())?;
        }
        let r = sb.get_mut::<tcp::Socket>(hb);
        if r.can_recv() {
            got += r
                .recv(|buf| {
                    hr.update(&*buf);
                    (buf.len(), buf.len())
                })
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(TcpOutcome {
        sent: sent as u64,
        received: got as u64,
        sha256_match: hs.finalize() == hr.finalize(),
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// [`tcp_over`] the two VMs' `network` schemes; `during` runs once per loop (the mode switch).
/// Returns the outcome, the frames moved and the scheme calls per frame.
fn tcp_transfer(
    a: &Vm,
    b: &Vm,
    bytes: usize,
    timeout: Duration,
    during: &mut dyn FnMut(usize),
) -> Result<(TcpOutcome, u64, f64), String> {
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let mut da = NetworkDevice::open(&oa, a.k.name()).map_err(|e| e.to_string())?;
    let mut db = NetworkDevice::open(&ob, b.k.name()).map_err(|e| e.to_string())?;
    let o =
        tcp_over(&mut da, &mut db, [a.mac, b.mac], bytes, timeout, &mut |_, _, got| during(got))?;
    let stats = [da.stats(), db.stats()];
    let frames = stats.iter().map(|s| s.rx_frames.get() + s.tx_frames.get()).sum::<u64>();
    let calls = stats.iter().map(|s| s.calls.get()).sum::<u64>();
    Ok((o, frames, calls as f64 / frames.max(1) as f64))
}

/// Runs the three phases; `progress` gets a line per phase.
pub fn run(cfg: &SystemConfig, progress: &mut dyn FnMut(&str)) -> Result<SystemReport, String> {
    let sw = Switch::new("vale0");
    let (a, ra) = vm(&sw, 0)?;
    let (b, rb) = vm(&sw, 1)?;
    let mut rep = SystemReport { vms: vec![ra, rb], ..SystemReport::default() };

    progress("system: stack mode: TCP over the network schemes");
    let (o, frames, cpf) = tcp_transfer(&a, &b, cfg.tcp_bytes, cfg.phase_timeout, &mut |_| {})
        .map_err(|e| format!("stack phase: {e}"))?;
    let (sent, got, eq, secs) = (o.sent, o.received, o.sha256_match, o.secs);
    rep.stack = StackReport {
        bytes_sent: sent,
        bytes_received: got,
        sha256_match: eq,
        mbit_s: got as f64 * 8.0 / secs / 1e6,
        frames,
        calls_per_frame: cpf,
        ok: eq && got == cfg.tcp_bytes as u64,
    };

    progress("system: zero copy: pkt-gen A -> switch -> B over the netmap schemes");
    let (oa, ob) = (HostOs::new(vec![&a.k]), HostOs::new(vec![&b.k]));
    let drops0 = sw.stats.dropped.load(Ordering::Relaxed);
    let pcfg = |function| PktgenConfig {
        function,
        count: cfg.zc_frames,
        len: 60,
        batch: 256,
        duration: cfg.phase_timeout,
        ..PktgenConfig::default()
    };
    let mut rxp = NetmapPort::open(&ob, b.k.name(), "1/R").map_err(|e| e.to_string())?;
    let mut txp = NetmapPort::open(&oa, a.k.name(), "1/T").map_err(|e| e.to_string())?;
    let (tx, rx) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut c = pcfg(Function::Rx);
            c.duration = cfg.phase_timeout;
            pktgen::run(&mut rxp, MACS[1], &c, &mut |_| {})
        });
        let tx = pktgen::run(&mut txp, MACS[0], &pcfg(Function::Tx), &mut |_| {});
        (tx, h.join())
    });
    let tx = tx.map_err(|e| e.to_string())?;
    let rx = rx.map_err(|_| "receiver panicked".to_string())?.map_err(|e| e.to_string())?;
    let dropped = sw.stats.dropped.load(Ordering::Relaxed) - drops0;
    rep.zero_copy = ZeroCopyReport {
        frames_sent: tx.sent,
        frames_received: rx.received,
        frames_dropped: dropped,
        frames_duplicated: rx.duplicated,
        mpps: rx.pps() / 1e6,
        ok: rx.received + dropped == tx.sent && rx.duplicated == 0,
    };
    drop((rxp, txp));

    progress("system: mode switch: a zero-copy client takes B's RX ring 0 during a TCP transfer");
    let mut switches = 0u32;
    let mut held: Option<NetmapPort<'_, HostOs<'_, SimPlatform>>> = None;
    let step = (cfg.switch_bytes / 4).max(1);
    let mut taken = Instant::now();
    let r = tcp_transfer(&a, &b, cfg.switch_bytes, cfg.phase_timeout, &mut |got| {
        // Taken once a quarter has arrived, given back HOLD later: frames the switch puts on
        // ring 0 meanwhile go to the client, and TCP retransmits them once the ring is back.
        const HOLD: Duration = Duration::from_millis(50);
        if got >= step && switches == 0 && held.is_none() {
            held = NetmapPort::open(&ob, b.k.name(), "0/R").ok();
            switches += held.is_some() as u32;
            taken = Instant::now();
        } else if held.is_some() && taken.elapsed() >= HOLD {
            held = None; // the ring goes back to the stack
        }
        if let Some(p) = &held {
            // The client drains what arrives on its ring (the stack's TCP frames among them:
            // TCP retransmits them once the ring is back).
            let _ = p.rxsync();
            if let Ok(r) = p.rx_ring(0) {
                let mut buf = [0u8; 2048];
                while let Ok(Some(_)) = r.pop(&mut buf) {}
            }
        }
    });
    drop(held);
    let (o, ..) = r.map_err(|e| format!("mode-switch phase: {e}"))?;
    let (got, eq) = (o.received, o.sha256_match);
    rep.mode_switch = ModeSwitchReport {
        bytes: got,
        switches,
        ok: eq && got == cfg.switch_bytes as u64 && switches > 0,
    };

    let (mut kicks, mut irqs, mut pkts) = (0u64, 0u64, 0u64);
    for v in [&a, &b] {
        for r in v.k.snapshot().rings {
            kicks += r.kicks;
            irqs += r.interrupts;
            pkts += r.frames;
        }
    }
    let pkts = (pkts + rep.zero_copy.frames_sent + rep.zero_copy.frames_received).max(1) as f64;
    rep.notifications = Notifications {
        kicks_per_packet: kicks as f64 / pkts,
        interrupts_per_packet: irqs as f64 / pkts,
    };
    for v in [a, b] {
        if let Some(d) = v.k.stop() {
            d.shutdown().map_err(|e| e.to_string())?;
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_phases_pass_at_small_sizes_and_report_json() {
        let cfg = SystemConfig {
            tcp_bytes: 1 << 20,
            zc_frames: 50_000,
            switch_bytes: 1 << 20,
            phase_timeout: Duration::from_secs(60),
        };
        let rep = run(&cfg, &mut |_| {}).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(j["vms"][0]["mac"], "52:54:00:12:34:56");
        assert_eq!(j["vms"][1]["mac"], "52:54:00:12:34:57");
        assert_eq!(j["stack"]["sha256_match"], true);
        assert_eq!(j["stack"]["bytes_received"], 1 << 20);
        let zc = &j["zero_copy"];
        let (s, r, d) = (
            zc["frames_sent"].as_u64().unwrap(),
            zc["frames_received"].as_u64().unwrap(),
            zc["frames_dropped"].as_u64().unwrap(),
        );
        assert_eq!((s, r + d), (50_000, 50_000), "{zc}");
        assert_eq!(j["mode_switch"]["ok"], true, "{}", j["mode_switch"]);
        assert!(rep.ok(), "{rep:?}");
        assert!(j["notifications"]["kicks_per_packet"].as_f64().unwrap() < 1.0);
    }
}
