//! `ptnet-host`: the emulated hypervisor side for real VMs. Builds the netmap topology, creates
//! one ptnet NIC and one memdev per VM, and serves each on its own vfio-user socket.
//!
//! ```text
//!  QEMU vm0 ── DIR/vm0-ptnet.sock ── PtnetBackend ── PtnetDevice ── NmPort vm0 ─┐
//!           └─ DIR/vm0-memdev.sock ─ MemdevBackend ─ MemdevDevice (its region)   │ reflector,
//!  QEMU vm1 ── DIR/vm1-ptnet.sock ── ...                          NmPort vm1 ─┤ switch or
//!           └─ DIR/vm1-memdev.sock ─ ...                                       ┘ pipe
//! ```
//!
//! Backends ([`BackendKind`]):
//! * `reflector`: each VM's port sends every frame back to itself; one region per VM.
//! * `switch`: every VM's port on one VALE-like [`Switch`], one region per VM (isolation: the
//!   switch copies). `--sink` and `--source-pps` add one host endpoint to the switch: a
//!   [`Sink`] counting what reaches it, and/or a [`Source`] sending broadcast UDP frames from
//!   it (MAC [`SOURCE_MAC`]). `--reflect` adds a [`Reflect`] endpoint with MAC [`REFLECT_MAC`]
//!   (the guest self test's peer): what is sent to it goes back to its sender. With `--vnet`
//!   the host endpoints use 12-byte virtio-net headers. Guests on switch ports are offered
//!   `PTNETMAP_F_VNET_HDR` (as VALE ports are, §4).
//!
//! When the host stops it logs the counters of each host endpoint and of the switch:
//!
//! ```text
//! source: N frames sent (P pps)
//! sink: N frames, B bytes received
//! reflect 02:00:00:00:ff:02: queued=… reflected=… ignored=… queue_drops=… undelivered=… retries=…
//! switch vale0: in=… unicast=… flooded=… dropped=…
//! ```
//! * `pipe`: exactly two VMs joined by a netmap pipe (zero copy); both ports, and so both
//!   memdevs, share one region.
//!
//! VM `k` gets MAC 52:54:00:12:34:(56+k) and netmap memory id k+1 (1 for the pipe).
//! `--pcap` records VM 0's port.
//!
//! ## Serving
//!
//! One thread per socket runs the `vfio-user` crate's server loop (one client at a time). When
//! the client disconnects, the function is torn down ([`Function::disconnect`]) and the
//! thread waits for the next client on the same socket: **the host keeps serving after a VM
//! goes away**, until [`Host::shutdown`] (SIGINT/SIGTERM in the binary). A panic in the
//! crate's message parsing (it unwraps some client input) ends that connection only.
//! A stale socket file (nobody listening) is replaced; a live one is an error.

use super::backend::{Function, MemdevBackend, PtnetBackend};
use super::irq::EventfdMsi;
use crate::abi::pci::DEFAULT_MAC_PREFIX;
use crate::abi::regs;
use crate::model::apps::{udp_frames, Reflect, ReflectConfig, Sink, Source, SourceTarget};
use crate::model::memdev::MemdevDevice;
use crate::model::memory::{MemConfig, NetmapMemory};
use crate::model::pcap::PcapTap;
use crate::model::port::{NmPort, PipeEnd, PortSpec, Reflector};
use crate::model::ptnet::{Netdev, PtnetConfig, PtnetDevice};
use crate::model::switch::Switch;
use core::fmt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vfio_user::Server;
use vm_memory::GuestMemoryMmap;

/// How the VMs' ports are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Each port reflects its own traffic.
    Reflector,
    /// All ports on one VALE-like switch.
    Switch,
    /// Two ports joined by a netmap pipe.
    Pipe,
}

impl BackendKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reflector => "reflector",
            Self::Switch => "switch",
            Self::Pipe => "pipe",
        }
    }
}

/// Largest number of VMs one host serves.
pub const MAX_VMS: u32 = 64;
/// Largest number of rings per direction (TX + RX ≤ the 32 kick registers, §3.1).
pub const MAX_RINGS_PER_DIR: u32 = regs::MAX_RINGS / 2;
/// Accepted ring sizes.
pub const SLOTS_RANGE: std::ops::RangeInclusive<u32> = 8..=16384;
/// Source MAC of the host source endpoint.
pub const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x01];
/// MAC address of the host reflect endpoint: the guest self test's peer.
pub const REFLECT_MAC: [u8; 6] = crate::frame::PEER_MAC;
/// Length of the frames the source sends.
pub const SOURCE_FRAME_LEN: usize = 60;
/// Virtio-net header length of the host endpoint with `--vnet`.
pub const VNET_HDR_LEN: u32 = 12;

/// Everything `ptnet-host` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Where the sockets go.
    pub socket_dir: PathBuf,
    /// Number of VMs.
    pub vms: u32,
    /// How their ports are connected.
    pub backend: BackendKind,
    /// Rings per direction per port.
    pub rings: u32,
    /// Slots per ring.
    pub slots: u32,
    /// Host switch endpoint with virtio-net headers.
    pub vnet: bool,
    /// Record VM 0's port here.
    pub pcap: Option<PathBuf>,
    /// Host source rate on the switch (0 = as fast as possible).
    pub source_pps: Option<u64>,
    /// Host sink on the switch.
    pub sink: bool,
    /// Host reflect endpoint on the switch.
    pub reflect: bool,
}

impl HostConfig {
    /// Defaults for `vms` VMs on `backend` with sockets in `socket_dir`: 1 ring of 256 slots.
    pub fn new(socket_dir: impl Into<PathBuf>, vms: u32, backend: BackendKind) -> Self {
        Self {
            socket_dir: socket_dir.into(),
            vms,
            backend,
            rings: 1,
            slots: 256,
            vnet: false,
            pcap: None,
            source_pps: None,
            sink: false,
            reflect: false,
        }
    }

    /// Checks the combination of settings.
    pub fn validate(&self) -> Result<(), HostError> {
        let bad = |s: String| Err(HostError::Config(s));
        if !(1..=MAX_VMS).contains(&self.vms) {
            return bad(format!("--vms {}: expected 1..={MAX_VMS}", self.vms));
        }
        if self.backend == BackendKind::Pipe && self.vms != 2 {
            return bad(format!("--backend pipe joins exactly 2 vms, not {}", self.vms));
        }
        if !(1..=MAX_RINGS_PER_DIR).contains(&self.rings) {
            return bad(format!("--rings {}: expected 1..={MAX_RINGS_PER_DIR}", self.rings));
        }
        if !SLOTS_RANGE.contains(&self.slots) {
            let (lo, hi) = (SLOTS_RANGE.start(), SLOTS_RANGE.end());
            return bad(format!("--slots {}: expected {lo}..={hi}", self.slots));
        }
        if self.backend != BackendKind::Switch {
            for (set, flag) in [
                (self.sink, "--sink"),
                (self.source_pps.is_some(), "--source-pps"),
                (self.reflect, "--reflect"),
                (self.vnet, "--vnet"),
            ] {
                if set {
                    return bad(format!("{flag} needs --backend switch (a host endpoint on it)"));
                }
            }
        }
        Ok(())
    }

    /// The two socket paths of VM `k`: `(ptnet, memdev)`.
    pub fn socket_paths(&self, k: u32) -> (PathBuf, PathBuf) {
        (
            self.socket_dir.join(format!("vm{k}-ptnet.sock")),
            self.socket_dir.join(format!("vm{k}-memdev.sock")),
        )
    }
}

/// Errors of `ptnet-host`.
#[derive(Debug)]
pub enum HostError {
    /// Bad settings.
    Config(String),
    /// Building the model failed.
    Model(String),
    /// A file system operation failed.
    Io {
        /// What was done.
        what: String,
        /// The error.
        err: std::io::Error,
    },
    /// The socket exists and someone listens on it.
    SocketInUse(PathBuf),
    /// Binding a socket failed.
    Bind {
        /// The socket.
        path: PathBuf,
        /// The error.
        err: vfio_user::Error,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(s) => f.write_str(s),
            Self::Model(s) => write!(f, "device model: {s}"),
            Self::Io { what, err } => write!(f, "{what}: {err}"),
            Self::SocketInUse(p) => write!(f, "{} is in use by another server", p.display()),
            Self::Bind { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for HostError {}

fn model_err(e: impl fmt::Display) -> HostError {
    HostError::Model(e.to_string())
}

/// The devices of one VM.
#[derive(Debug, Clone)]
pub struct VmDevices {
    /// Its ptnet NIC.
    pub ptnet: Arc<PtnetDevice>,
    /// Its memdev.
    pub memdev: Arc<MemdevDevice>,
    /// The NIC's interrupt sink.
    pub msi: Arc<EventfdMsi>,
    /// Its host port.
    pub port: Arc<NmPort>,
}

/// The built model: VMs' devices, ports and host endpoints.
pub struct Topology {
    /// Per VM, by index.
    pub vms: Vec<VmDevices>,
    /// The switch (`switch` backend).
    pub switch: Option<Arc<Switch>>,
    /// The host sink (`--sink`).
    pub sink: Option<Arc<Sink>>,
    /// The host reflect endpoint (`--reflect`).
    pub reflect: Option<Arc<Reflect>>,
    /// The pcap tap (`--pcap`).
    pub tap: Option<Arc<PcapTap>>,
    source: Option<Source>,
    source_pps: u64,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology").field("vms", &self.vms.len()).finish()
    }
}

impl Topology {
    /// Builds ports, devices and host endpoints for `cfg` (validated first).
    pub fn build(cfg: &HostConfig) -> Result<Self, HostError> {
        cfg.validate()?;
        let (rings, slots) = (cfg.rings, cfg.slots);
        let spec = |name: String| PortSpec::new(&name, rings, slots);
        let mut ports = Vec::new();
        match cfg.backend {
            BackendKind::Pipe => {
                let cfgm = MemConfig::for_ports(2, 2 * rings, slots, 64);
                let mem = Arc::new(NetmapMemory::new(1, cfgm).map_err(model_err)?);
                let a = NmPort::new(mem.clone(), &spec("pipe{0".into())).map_err(model_err)?;
                let b = NmPort::new(mem, &spec("pipe}0".into())).map_err(model_err)?;
                PipeEnd::connect(&a, &b).map_err(model_err)?;
                ports.extend([a, b]);
            }
            _ => {
                for k in 0..cfg.vms {
                    let cfgm = MemConfig::for_ports(1, 2 * rings, slots, 64);
                    let mem = NetmapMemory::new(k as u16 + 1, cfgm).map_err(model_err)?;
                    let name = match cfg.backend {
                        BackendKind::Switch => format!("vale0:vm{k}"),
                        _ => format!("vm{k}"),
                    };
                    ports.push(NmPort::new(Arc::new(mem), &spec(name)).map_err(model_err)?);
                }
            }
        }
        let mut topo = Self::empty();
        match cfg.backend {
            BackendKind::Reflector => {
                for p in &ports {
                    p.set_backend(Reflector::new(p));
                }
            }
            BackendKind::Switch => {
                let sw = Switch::new("vale0");
                for p in &ports {
                    sw.attach_port(p);
                }
                let hdr = if cfg.vnet { VNET_HDR_LEN } else { 0 };
                if cfg.reflect {
                    let rcfg = ReflectConfig { hdr_len: hdr, ..ReflectConfig::new(REFLECT_MAC) };
                    let r = Reflect::attach(&sw, rcfg).map_err(|err| HostError::Io {
                        what: "spawning the reflect thread".into(),
                        err,
                    })?;
                    let mac = crate::frame::mac_string(REFLECT_MAC);
                    log::info!("{}: reflect endpoint {mac} on port {}", sw.name(), r.port_no());
                    topo.reflect = Some(r);
                }
                if cfg.sink || cfg.source_pps.is_some() {
                    let sink = Sink::new(hdr);
                    let no = sw.attach(sink.clone());
                    log::info!(
                        "{}: host endpoint on port {no}:{}{}",
                        sw.name(),
                        if cfg.sink { " sink" } else { "" },
                        match cfg.source_pps {
                            Some(0) => " source (as fast as possible)".to_string(),
                            Some(pps) => format!(" source ({pps} pps broadcasts)"),
                            None => String::new(),
                        }
                    );
                    if let Some(pps) = cfg.source_pps {
                        let gen = udp_frames(SOURCE_MAC, [0xff; 6], SOURCE_FRAME_LEN);
                        let target = SourceTarget::Switch { sw: sw.clone(), no, hdr_len: hdr };
                        topo.source = Some(Source::start(target, gen, None, pps));
                        topo.source_pps = pps;
                    }
                    if cfg.sink {
                        topo.sink = Some(sink);
                    }
                }
                topo.switch = Some(sw);
            }
            BackendKind::Pipe => {}
        }
        if let Some(path) = &cfg.pcap {
            let tap = Arc::new(PcapTap::create(path).map_err(model_err)?);
            ports[0].set_tap(Some(tap.clone()));
            topo.tap = Some(tap);
        }
        for (k, port) in ports.into_iter().enumerate() {
            let n = port.num_tx_rings() + port.num_rx_rings();
            let msi = Arc::new(EventfdMsi::new(n));
            let mut mac = [0u8; 6];
            mac[..5].copy_from_slice(&DEFAULT_MAC_PREFIX);
            mac[5] = 0x56 + k as u8;
            let pcfg = PtnetConfig { mac: Some(mac), ..PtnetConfig::default() };
            let ram = Arc::new(GuestMemoryMmap::new());
            let ptnet = PtnetDevice::new(Netdev::passthrough(port.clone()), ram, msi.clone(), pcfg)
                .map_err(model_err)?;
            let memdev = MemdevDevice::new(port.mem().clone()).map_err(model_err)?;
            topo.vms.push(VmDevices { ptnet, memdev, msi, port });
        }
        Ok(topo)
    }

    /// Stops every host loop (a BAL write performs DELETE), the source, and flushes the tap.
    pub fn stop(&mut self) {
        for vm in &self.vms {
            for reg in [regs::CSB_GH_BAL, regs::CSB_HG_BAL] {
                vm.ptnet.bar_write(crate::abi::pci::IO_BAR, reg.into(), 4, 0);
            }
        }
        if let Some(s) = self.source.take() {
            let n = s.stop();
            let pps = self.source_pps;
            let rate = if pps == 0 { "as fast as possible".into() } else { format!("{pps} pps") };
            log::info!("source: {n} frames sent ({rate})");
        }
        if let Some(s) = &self.sink {
            let (f, b) = (s.frames.load(Ordering::Relaxed), s.bytes.load(Ordering::Relaxed));
            log::info!("sink: {f} frames, {b} bytes received");
        }
        if let Some(r) = &self.reflect {
            r.stop();
            let mac = crate::frame::mac_string(r.config().mac);
            log::info!("reflect {mac}: {}", r.stats.summary());
        }
        if let Some(sw) = &self.switch {
            let st = &sw.stats;
            let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            log::info!(
                "switch {}: in={} unicast={} flooded={} dropped={}",
                sw.name(),
                g(&st.frames_in),
                g(&st.unicast),
                g(&st.flooded),
                g(&st.dropped)
            );
        }
        if let Some(t) = &self.tap {
            if let Err(e) = t.flush() {
                log::warn!("pcap {}: {e}", t.path().display());
            }
            log::info!("pcap {}: {} frames", t.path().display(), t.frames());
        }
    }
}

/// Binds a vfio-user server at `path`, replacing a stale socket file.
pub fn bind(path: &Path, f: &dyn Function) -> Result<Server, HostError> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        let stale = md.file_type().is_socket() && UnixStream::connect(path).is_err();
        if !stale {
            return Err(HostError::SocketInUse(path.into()));
        }
        std::fs::remove_file(path).map_err(|err| HostError::Io {
            what: format!("removing stale socket {}", path.display()),
            err,
        })?;
    }
    Server::new(path, true, f.irqs(), f.regions())
        .map_err(|err| HostError::Bind { path: path.into(), err })
}

/// Serves `f` on `server` until `stop` is set: one client after the other.
pub fn serve(server: Server, mut f: Box<dyn Function>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let backend: &mut dyn vfio_user::ServerBackend = &mut *f;
            server.run(backend)
        }));
        if stop.load(Ordering::Acquire) {
            f.disconnect();
            break;
        }
        let summary = f.summary();
        if !summary.is_empty() {
            log::info!("{}: {summary}", f.name());
        }
        match r {
            Ok(Ok(())) => log::info!("{}: client disconnected", f.name()),
            Ok(Err(e)) => log::warn!("{}: connection ended: {e}", f.name()),
            Err(_) => log::error!("{}: malformed client message; connection dropped", f.name()),
        }
        f.disconnect();
        if t0.elapsed() < Duration::from_millis(10) {
            std::thread::sleep(Duration::from_millis(10)); // no busy loop on a failing accept
        }
    }
}

/// A running `ptnet-host`.
pub struct Host {
    cfg: HostConfig,
    topo: Topology,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({} vms, {})", self.topo.vms.len(), self.cfg.socket_dir.display())
    }
}

impl Host {
    /// Builds the topology, binds every socket and starts serving.
    pub fn start(cfg: HostConfig) -> Result<Self, HostError> {
        let mut topo = Topology::build(&cfg)?;
        std::fs::create_dir_all(&cfg.socket_dir).map_err(|err| HostError::Io {
            what: format!("creating {}", cfg.socket_dir.display()),
            err,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut host = Self { cfg, topo: Topology::empty(), stop, threads: Vec::new() };
        let mut servers = Vec::new();
        for (k, vm) in topo.vms.iter().enumerate() {
            let (pp, mp) = host.cfg.socket_paths(k as u32);
            let p: Box<dyn Function> = Box::new(PtnetBackend::new(
                &format!("vm{k}-ptnet"),
                vm.ptnet.clone(),
                vm.msi.clone(),
            ));
            let m: Box<dyn Function> = Box::new(
                MemdevBackend::new(&format!("vm{k}-memdev"), vm.memdev.clone())
                    .map_err(model_err)?,
            );
            for (path, f) in [(pp.clone(), p), (mp.clone(), m)] {
                match bind(&path, &*f) {
                    Ok(s) => servers.push((s, f)),
                    Err(e) => {
                        drop(servers); // removes the sockets bound so far
                        topo.stop();
                        return Err(e);
                    }
                }
            }
            let l = vm.port.mem().layout();
            log::info!(
                "vm{k}: ptnet {} memdev {} | port {} ({}), {}x{} slots, mac {}, memid {}, region {} KiB",
                pp.display(),
                mp.display(),
                vm.port.name(),
                host.cfg.backend.name(),
                host.cfg.rings,
                host.cfg.slots,
                mac_string(&vm.ptnet),
                vm.port.mem().mem_id(),
                l.total >> 10
            );
        }
        for (server, f) in servers {
            let stop = host.stop.clone();
            let name = f.name().to_string();
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || serve(server, f, stop))
                .map_err(|err| HostError::Io { what: "spawning a server thread".into(), err })?;
            host.threads.push(h);
        }
        host.topo = topo;
        Ok(host)
    }

    /// The settings.
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    /// The model behind the sockets.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Stops serving: host loops and source stopped, tap flushed, idle server threads ended,
    /// sockets removed. Threads still talking to a client end when it disconnects.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        self.topo.stop();
        let paths: Vec<PathBuf> = (0..self.topo.vms.len() as u32)
            .flat_map(|k| {
                let (a, b) = self.cfg.socket_paths(k);
                [a, b]
            })
            .collect();
        for p in &paths {
            let _ = UnixStream::connect(p); // wakes a thread waiting in accept
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Topology {
    fn empty() -> Self {
        Self {
            vms: Vec::new(),
            switch: None,
            sink: None,
            reflect: None,
            tap: None,
            source: None,
            source_pps: 0,
        }
    }
}

fn mac_string(dev: &PtnetDevice) -> String {
    let lo = dev.io_read(regs::MAC_LO, 4).to_be_bytes();
    let hi = dev.io_read(regs::MAC_HI, 4).to_be_bytes();
    crate::frame::mac_string([hi[2], hi[3], lo[0], lo[1], lo[2], lo[3]])
}
