//! `ptnet-pktgen`: netmap's pkt-gen, for ptnetd's zero-copy scheme ([`ptnetd::app::pktgen`]).
//!
//! ```text
//! ptnet-pktgen -i netmap:pci-0000-00-03.0-0 -f txrx -n 100000     # ring pair 0, against a reflector
//! ptnet-pktgen -i netmap:pci-0000-00-03.0-0/T -f tx -l 1514 -R 100000
//! ptnet-pktgen -i netmap:pci-0000-00-03.0-0/R -f rx -d 10
//! ptnet-pktgen -i netmap:pci-0000-00-03.0-0 -f ping -n 1000
//! ```
//! `-i netmap:NAME` binds every ring, `NAME-K` ring pair K, a `/T` or `/R` suffix one direction
//! (scheme-spec M2). On the host, `--model RINGS` runs against an embedded reflecting port.

use clap::{Parser, ValueEnum};
use ptnetd::app::pktgen::{run, Function, PktgenConfig};
use ptnetd::client::{ClientError, Fd, NetmapPort, Os};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Func {
    Tx,
    Rx,
    Txrx,
    Ping,
}

/// pkt-gen for ptnetd's netmap scheme.
#[derive(Parser, Debug)]
#[command(name = "ptnet-pktgen", version)]
struct Args {
    /// Interface: netmap:NAME[-RING][/T|/R] (NAME: the NIC's PCI name, e.g. pci-0000-00-03.0).
    #[arg(short = 'i', long = "interface")]
    interface: Option<String>,
    /// Function.
    #[arg(short = 'f', long, value_enum, default_value = "txrx")]
    function: Func,
    /// Frame length in bytes (60..=1514).
    #[arg(short = 'l', long, default_value_t = 60)]
    len: usize,
    /// Frames per sync.
    #[arg(short = 'b', long, default_value_t = 64)]
    batch: u32,
    /// Frames per second to send (0: as fast as possible).
    #[arg(short = 'R', long, default_value_t = 0)]
    rate: u64,
    /// Frames to send or expect (0: until the duration ends).
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: u64,
    /// Longest run in seconds.
    #[arg(short = 'd', long, default_value_t = 60)]
    duration: u64,
    /// Host only: run against an embedded reflecting port with this many ring pairs.
    #[cfg(not(target_os = "redox"))]
    #[arg(long)]
    model: Option<u32>,
}

/// `netmap:NAME[-RING][/T|/R]` → (PCI name, binding path).
fn parse_interface(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("netmap:")?;
    let (name_ring, dir) = match rest.split_once('/') {
        Some((a, d)) => (a, format!("/{d}")),
        None => (rest, String::new()),
    };
    // The PCI name holds dashes too (pci-0000-00-03.0): a ring suffix follows its function
    // number, after the one dot.
    let dot = name_ring.find('.')?;
    let (name, ring) = match name_ring[dot..].split_once('-') {
        Some((f, r)) => (name_ring[..dot + f.len()].to_string(), r.to_string()),
        None => (name_ring.to_string(), "all".to_string()),
    };
    Some((name, format!("{ring}{dir}")))
}

fn mac_of<O: Os>(os: &O, name: &str) -> Result<[u8; 6], ClientError> {
    let f = Fd::open(os, &ptnetd::client::network_path(name, "mac"), 0)?;
    let mut m = [0u8; 6];
    f.read(&mut m)?;
    Ok(m)
}

fn go<O: Os>(os: &O, name: &str, path: &str, a: &Args) -> bool {
    let cfg = PktgenConfig {
        function: match a.function {
            Func::Tx => Function::Tx,
            Func::Rx => Function::Rx,
            Func::Txrx => Function::TxRx,
            Func::Ping => Function::Ping,
        },
        len: a.len,
        batch: a.batch,
        rate: a.rate,
        count: a.count,
        duration: Duration::from_secs(a.duration),
        per_second: true,
    };
    let r = mac_of(os, name).and_then(|mac| Ok((mac, NetmapPort::open(os, name, path)?)));
    let (mac, mut port) = match r {
        Ok(v) => v,
        Err(e) => {
            println!("pkt-gen: FAIL opening netmap:{name} ({path}): {e}");
            return false;
        }
    };
    match run(&mut port, mac, &cfg, &mut |l| println!("{l}")) {
        Ok(rep) => {
            let exact = match cfg.function {
                Function::TxRx | Function::Ping => rep.received == rep.sent && rep.lost == 0,
                Function::Rx => rep.lost == 0 && rep.duplicated == 0,
                Function::Tx => rep.sent == cfg.count || cfg.count == 0,
            };
            let verdict = if exact { "PASS" } else { "FAIL" };
            println!("pkt-gen: {:?} {verdict} {rep}", a.function);
            exact
        }
        Err(e) => {
            println!("pkt-gen: {:?} FAIL {e}", a.function);
            false
        }
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    #[cfg(not(target_os = "redox"))]
    if let Some(rings) = a.model {
        let k = match ptnetd::app::embedded::reflector_daemon(rings) {
            Ok(k) => k,
            Err(e) => {
                println!("pkt-gen: FAIL model: {e}");
                return ExitCode::FAILURE;
            }
        };
        let path = a.interface.as_deref().and_then(parse_interface).map_or("0".into(), |(_, p)| p);
        let name = k.name().to_string();
        let ok = go(&ptnetd::client::host::HostOs::new(vec![&k]), &name, &path, &a);
        return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let Some((name, path)) = a.interface.as_deref().and_then(parse_interface) else {
        eprintln!("ptnet-pktgen: -i netmap:NAME[-RING][/T|/R] is required (try --help)");
        return ExitCode::from(2);
    };
    #[cfg(target_os = "redox")]
    {
        match ptnetd::client::redox::RedoxOs::new() {
            Ok(os) => {
                if go(&os, &name, &path, &a) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                println!("pkt-gen: FAIL event queue: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "redox"))]
    {
        let _ = (name, path);
        eprintln!("ptnet-pktgen: on the host, pass --model RINGS (on Redox it uses /scheme)");
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        let p = |s: &str| parse_interface(s);
        assert_eq!(p("netmap:pci-0000-00-03.0"), Some(("pci-0000-00-03.0".into(), "all".into())));
        assert_eq!(p("netmap:pci-0000-00-03.0-1"), Some(("pci-0000-00-03.0".into(), "1".into())));
        assert_eq!(
            p("netmap:pci-0000-00-03.0-0/T"),
            Some(("pci-0000-00-03.0".into(), "0/T".into()))
        );
        assert_eq!(
            p("netmap:pci-0000-00-03.0/R"),
            Some(("pci-0000-00-03.0".into(), "all/R".into()))
        );
        assert_eq!(p("eth0"), None);
    }
}
