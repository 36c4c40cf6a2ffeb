//! `ptnet-smol`: a program with its own TCP/IP stack (smoltcp) on one of ptnetd's schemes
//! ([`ptnetd::app::smolpeer`]), one end of a checked TCP transfer per run.
//!
//! ```text
//! ptnet-smol receive --scheme netmap  --ip 10.0.0.2/24 --port 9 --bytes 4194304
//! ptnet-smol send    --scheme network --ip 10.0.0.1/24 --peer 10.0.0.2:9 --bytes 4194304
//! ptnet-smol model   --scheme-a network --scheme-b netmap --bytes 4194304    (host only)
//! ```
//! On Redox each end runs in its own VM, on the first `network.*_ptnet` scheme it finds (or
//! `--nic NAME`); `--scheme network` uses the frame-per-call device, `--scheme netmap` the
//! batched one on ring pair `--ring` (taken from the stack while it runs). `model` runs both
//! ends on two VMs of the embedded hypervisor's switch. The receiver checks every byte against
//! the stream pattern; both print the SHA-256 of what they moved, the rate and the scheme calls
//! per frame. Lines start with `smol:` and carry PASS or FAIL; exit status 1 on FAIL, 2 on a
//! usage error.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use ptnetd::app::smolpeer::{run, PeerConfig, PeerReport, Role, WaitDevice};
use ptnetd::client::smol::{NetmapDevice, NetworkDevice};
use ptnetd::client::{ClientError, Fd, Os};
use smoltcp::wire::Ipv4Address;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scheme {
    /// network.<nic>_ptnet, one frame per read/write
    Network,
    /// netmap.<nic>_ptnet, frames in place in the rings, one sync per batch
    Netmap,
}

#[derive(Parser, Debug)]
#[command(
    name = "ptnet-smol",
    version,
    about = "smoltcp over ptnetd's schemes: one end of a checked TCP transfer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ClapArgs, Debug, Clone)]
struct Common {
    /// The scheme the stack runs on
    #[arg(long, value_enum, default_value = "network")]
    scheme: Scheme,
    /// The NIC's PCI name (e.g. pci-0000-00-03.0) [default: the first network.*_ptnet scheme]
    #[arg(long)]
    nic: Option<String>,
    /// With --scheme netmap: the ring pair to bind
    #[arg(long, default_value_t = 0)]
    ring: u32,
    /// Our address and prefix length
    #[arg(long, value_parser = cidr)]
    ip: (Ipv4Address, u8),
    /// Bytes of the transfer
    #[arg(long, default_value_t = 4 << 20)]
    bytes: u64,
    /// Longest the transfer may take, in seconds
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Accept one connection and read the transfer, checking every byte
    Receive {
        #[command(flatten)]
        common: Common,
        /// TCP port to listen on
        #[arg(long, default_value_t = 9)]
        port: u16,
    },
    /// Connect, send the transfer, close
    Send {
        #[command(flatten)]
        common: Common,
        /// The receiver, ADDR:PORT
        #[arg(long, value_parser = endpoint)]
        peer: (Ipv4Address, u16),
    },
    /// Host only: both ends on two VMs of the embedded hypervisor's switch (A sends to B)
    Model {
        /// Scheme of VM A (the sender)
        #[arg(long, value_enum, default_value = "network")]
        scheme_a: Scheme,
        /// Scheme of VM B (the receiver)
        #[arg(long, value_enum, default_value = "netmap")]
        scheme_b: Scheme,
        /// Bytes of the transfer
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        /// Longest the transfer may take, in seconds
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn cidr(s: &str) -> Result<(Ipv4Address, u8), String> {
    let (a, p) = s.split_once('/').ok_or("expected ADDR/PREFIX, e.g. 10.0.0.1/24")?;
    let a: std::net::Ipv4Addr = a.parse().map_err(|e| format!("{a}: {e}"))?;
    let p: u8 = p.parse().ok().filter(|p| (1..=32).contains(p)).ok_or("prefix 1..=32")?;
    Ok((a, p))
}

fn endpoint(s: &str) -> Result<(Ipv4Address, u16), String> {
    let e: std::net::SocketAddrV4 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    Ok((*e.ip(), e.port()))
}

fn mac_of<O: Os>(os: &O, name: &str) -> Result<[u8; 6], ClientError> {
    let f = Fd::open(os, &ptnetd::client::network_path(name, "mac"), 0)?;
    let mut m = [0u8; 6];
    f.read(&mut m)?;
    Ok(m)
}

/// One end on `os`: opens the device the scheme asks for and runs the peer.
fn peer<O: Os>(
    os: &O,
    nic: &str,
    scheme: Scheme,
    ring: u32,
    mk: impl FnOnce([u8; 6]) -> PeerConfig,
) -> Result<PeerReport, String> {
    let cfg = mk(mac_of(os, nic).map_err(|e| format!("mac of {nic}: {e}"))?);
    fn go<D: WaitDevice>(d: &mut D, cfg: &PeerConfig) -> Result<PeerReport, String> {
        run(d, cfg).map_err(|e| e.to_string())
    }
    match scheme {
        Scheme::Network => {
            let mut d = NetworkDevice::open(os, nic).map_err(|e| format!("network.{nic}: {e}"))?;
            go(&mut d, &cfg)
        }
        Scheme::Netmap => {
            let mut d =
                NetmapDevice::open(os, nic, ring).map_err(|e| format!("netmap.{nic}: {e}"))?;
            go(&mut d, &cfg)
        }
    }
}

/// Prints the verdict line; `true` if the end passed.
fn verdict(what: &str, scheme: Scheme, r: Result<PeerReport, String>, want: u64) -> bool {
    match r {
        Ok(rep) if rep.bytes == want && rep.bad_bytes == 0 => {
            println!("smol: {what} over {scheme:?} PASS {rep}");
            true
        }
        Ok(rep) => {
            println!("smol: {what} over {scheme:?} FAIL {} bad bytes; {rep}", rep.bad_bytes);
            false
        }
        Err(e) => {
            println!("smol: {what} over {scheme:?} FAIL {e}");
            false
        }
    }
}

fn config(c: &Common, role: Role) -> impl FnOnce([u8; 6]) -> PeerConfig + '_ {
    move |mac| PeerConfig {
        mac,
        ip: c.ip,
        role,
        bytes: c.bytes,
        timeout: Duration::from_secs(c.timeout),
    }
}

fn one_end<O: Os>(os: &O, cmd: &Cmd, nic: &str) -> bool {
    match cmd {
        Cmd::Receive { common: c, port } => {
            let r = peer(os, nic, c.scheme, c.ring, config(c, Role::Receive { port: *port }));
            verdict("receive", c.scheme, r, c.bytes)
        }
        Cmd::Send { common: c, peer: p } => {
            let r = peer(os, nic, c.scheme, c.ring, config(c, Role::Send { peer: *p }));
            verdict("send", c.scheme, r, c.bytes)
        }
        Cmd::Model { .. } => unreachable!("handled by model()"),
    }
}

#[cfg(not(target_os = "redox"))]
fn model(a: Scheme, b: Scheme, bytes: u64, timeout: u64) -> bool {
    use ptnetd::app::embedded::switched_vm;
    use ptnetd::client::host::HostOs;
    use ptnetd::model::switch::Switch;
    let sw = Switch::new("vale0");
    let vms = switched_vm(&sw, 0, 1).and_then(|va| Ok((va, switched_vm(&sw, 1, 1)?)));
    let (va, vb) = match vms {
        Ok(v) => v,
        Err(e) => {
            println!("smol: FAIL model: {e}");
            return false;
        }
    };
    let (oa, ob) = (HostOs::new(vec![&va.kernel]), HostOs::new(vec![&vb.kernel]));
    let (na, nb) = (va.info.name.clone(), vb.info.name.clone());
    let cfg = |mac, ip, role| PeerConfig {
        mac,
        ip: (ip, 24),
        role,
        bytes,
        timeout: Duration::from_secs(timeout),
    };
    let ip_b = Ipv4Address::new(10, 0, 0, 2);
    let (ra, rb) = std::thread::scope(|s| {
        let hb = s.spawn(|| peer(&ob, &nb, b, 0, |m| cfg(m, ip_b, Role::Receive { port: 9 })));
        let ra = peer(&oa, &na, a, 0, |m| {
            cfg(m, Ipv4Address::new(10, 0, 0, 1), Role::Send { peer: (ip_b, 9) })
        });
        (ra, hb.join().unwrap_or_else(|_| Err("the receiver panicked".into())))
    });
    let ok_a = verdict("send", a, ra, bytes);
    let ok_b = verdict("receive", b, rb, bytes);
    for v in [va, vb] {
        if let Some(d) = v.kernel.stop() {
            if let Err(e) = d.shutdown() {
                println!("smol: FAIL shutdown: {e}");
                return false;
            }
        }
    }
    ok_a && ok_b
}

/// The first `network.<name>_ptnet` under `/scheme`.
#[cfg(target_os = "redox")]
fn find_nic() -> Option<String> {
    std::fs::read_dir("/scheme").ok()?.flatten().find_map(|e| {
        let n = e.file_name().into_string().ok()?;
        Some(n.strip_prefix("network.")?.strip_suffix("_ptnet")?.to_string())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match &cli.cmd {
        #[cfg(not(target_os = "redox"))]
        Cmd::Model { scheme_a, scheme_b, bytes, timeout } => {
            model(*scheme_a, *scheme_b, *bytes, *timeout)
        }
        #[cfg(target_os = "redox")]
        Cmd::Model { .. } => {
            eprintln!("ptnet-smol: model runs on the host (the embedded hypervisor)");
            return ExitCode::from(2);
        }
        #[cfg(not(target_os = "redox"))]
        Cmd::Receive { .. } | Cmd::Send { .. } => {
            let _ = one_end::<ptnetd::client::host::HostOs<'_, ptnetd::platform::sim::SimPlatform>>;
            eprintln!("ptnet-smol: receive/send run on Redox; on the host use `model`");
            return ExitCode::from(2);
        }
        #[cfg(target_os = "redox")]
        Cmd::Receive { common, .. } | Cmd::Send { common, .. } => {
            let Some(nic) = common.nic.clone().or_else(find_nic) else {
                println!("smol: FAIL no network.*_ptnet scheme under /scheme");
                return ExitCode::FAILURE;
            };
            match ptnetd::client::redox::RedoxOs::new() {
                Ok(os) => one_end(&os, &cli.cmd, &nic),
                Err(e) => {
                    println!("smol: FAIL event queue: {e}");
                    false
                }
            }
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
