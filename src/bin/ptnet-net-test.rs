//! `ptnet-net-test`: UDP and TCP through the operating system's sockets (`std::net`), for the
//! test where Redox's own network stack (smolnetd) runs on ptnetd's `network` scheme: nothing on
//! that path is ours but ptnetd. Two VMs: one runs `serve`, the other `client`; each prints
//! `ptnet-net-test: ... PASS|FAIL` lines.
//!
//! * `prep` writes `/etc/net/ip_router` (smolnetd needs it before it starts);
//! * `addr CIDR` sets the address through `/scheme/netcfg` (retried while smolnetd comes up);
//! * `serve`: echoes UDP datagrams back to the peer until `--count` were echoed, then receives one
//!   TCP transfer (an 8-byte length, then the bytes) and answers with its SHA-256;
//! * `client`: sends `--count` numbered datagrams (a window in flight), checks every echo comes
//!   back once and intact (none lost), then sends `--bytes` over TCP and checks the digest.
//!
//! Redox quirks handled (`../shared/redox-kit/README.md`): an unconnected UDP socket reports the
//! sender as 0.0.0.0:0, so both sides `connect` to their peer; read and write timeouts are both
//! set (they are swapped there).

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "ptnet-net-test", version, about = "UDP/TCP checks over the OS network stack")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Writes /etc/net/ip_router (before smolnetd starts).
    Prep {
        /// The router address written to the file.
        #[arg(long, default_value = "10.0.2.2")]
        router: String,
    },
    /// Sets the interface address through /scheme/netcfg (e.g. 10.0.2.11/24).
    Addr {
        /// Address and prefix length.
        cidr: String,
        /// Seconds to keep retrying while /scheme/netcfg is not there yet.
        #[arg(long, default_value_t = 20)]
        wait: u64,
    },
    /// Echoes UDP datagrams, then sinks one TCP transfer and answers its SHA-256.
    Serve {
        /// Local UDP address; TCP listens on the next port (any address).
        #[arg(long)]
        bind: SocketAddr,
        /// The client's UDP address (the socket connects to it).
        #[arg(long)]
        peer: SocketAddr,
        /// Datagrams to echo before the TCP phase.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Seconds without traffic before giving up.
        #[arg(long, default_value_t = 120)]
        idle: u64,
        /// Receive the TCP transfer after the datagrams.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        tcp: bool,
    },
    /// Sends numbered datagrams and a TCP transfer to `serve`, checking what comes back.
    Client {
        /// Local UDP address.
        #[arg(long)]
        bind: SocketAddr,
        /// The server's UDP address (its TCP port is the next one).
        #[arg(long)]
        server: SocketAddr,
        /// Datagrams to have echoed (none may be lost).
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Datagrams in flight.
        #[arg(long, default_value_t = 8)]
        window: u64,
        /// Bytes of the TCP transfer (0: no TCP transfer).
        #[arg(long, default_value_t = 1 << 20)]
        bytes: u64,
        /// Seconds the whole client may take.
        #[arg(long, default_value_t = 150)]
        timeout: u64,
    },
}

const DGRAM: usize = 64;

fn datagram(seq: u64) -> [u8; DGRAM] {
    let mut d = [0u8; DGRAM];
    d[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in d.iter_mut().enumerate().skip(8) {
        *b = (seq as usize).wrapping_mul(7).wrapping_add(i) as u8;
    }
    d
}

fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn udp(bind: SocketAddr, peer: SocketAddr, t: Duration) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(bind)?;
    s.connect(peer)?;
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))?;
    Ok(s)
}

fn serve(
    bind: SocketAddr,
    peer: SocketAddr,
    count: u64,
    idle: Duration,
    tcp: bool,
) -> Result<String, String> {
    let s = udp(bind, peer, Duration::from_millis(500)).map_err(|e| format!("udp socket: {e}"))?;
    let mut echoed = 0u64;
    let mut last = Instant::now();
    let mut buf = [0u8; 2048];
    while echoed < count {
        match s.recv(&mut buf) {
            Ok(n) => {
                s.send(&buf[..n]).map_err(|e| format!("udp send: {e}"))?;
                if buf[..n.min(8)] != u64::MAX.to_be_bytes() {
                    echoed += 1; // probes (the client's handshake) do not count
                }
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if last.elapsed() > idle {
                    return Err(format!("udp: idle after {echoed} datagrams"));
                }
            }
            Err(e) => return Err(format!("udp recv: {e}")),
        }
    }
    println!("ptnet-net-test: udp-echo PASS echoed={echoed}");
    if !tcp {
        return Ok("tcp not asked (--tcp false)".into());
    }
    let any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), bind.port() + 1);
    let l = TcpListener::bind(any).map_err(|e| format!("tcp bind {any}: {e}"))?;
    let (mut c, from) = l.accept().map_err(|e| format!("tcp accept: {e}"))?;
    let t = idle.min(Duration::from_secs(30));
    c.set_read_timeout(Some(t))
        .and_then(|()| c.set_write_timeout(Some(t)))
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 8];
    c.read_exact(&mut len).map_err(|e| format!("tcp length: {e}"))?;
    let len = u64::from_be_bytes(len);
    let mut h = Sha256::new();
    let mut left = len;
    while left > 0 {
        let k = (left as usize).min(buf.len());
        c.read_exact(&mut buf[..k])
            .map_err(|e| format!("tcp read ({} of {len}): {e}", len - left))?;
        h.update(&buf[..k]);
        left -= k as u64;
    }
    let d = h.finalize();
    c.write_all(&d).map_err(|e| format!("tcp digest: {e}"))?;
    Ok(format!("tcp-sink from {from}: {len} bytes, sha256 {}", hex(&d)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn udp_client(
    bind: SocketAddr,
    server: SocketAddr,
    count: u64,
    window: u64,
    end: Instant,
) -> Result<String, String> {
    let s =
        udp(bind, server, Duration::from_millis(200)).map_err(|e| format!("udp socket: {e}"))?;
    let mut buf = [0u8; 2048];
    // Handshake: a probe (sequence u64::MAX) until one comes back (ARP, the server starting).
    let probe = datagram(u64::MAX);
    let t0 = Instant::now();
    loop {
        if Instant::now() > end {
            return Err("udp: no answer to the probe".into());
        }
        let _ = s.send(&probe);
        if matches!(s.recv(&mut buf), Ok(n) if buf[..n] == probe[..]) {
            break;
        }
    }
    let setup = t0.elapsed();
    let mut seen = vec![false; count as usize];
    let (mut next, mut got) = (0u64, 0u64);
    let mut rtt_start = Instant::now();
    while got < count {
        while next < count && next < got + window {
            s.send(&datagram(next)).map_err(|e| format!("udp send {next}: {e}"))?;
            next += 1;
        }
        if Instant::now() > end {
            return Err(format!("udp: {got} of {count} echoed, {} lost", next - got));
        }
        match s.recv(&mut buf) {
            Ok(n) => {
                if n == DGRAM && buf[..8] != u64::MAX.to_be_bytes() {
                    let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                    if seq >= count || buf[..n] != datagram(seq)[..] {
                        return Err(format!("udp: corrupt echo (seq {seq}, {n} bytes)"));
                    }
                    if std::mem::replace(&mut seen[seq as usize], true) {
                        return Err(format!("udp: datagram {seq} echoed twice"));
                    }
                    got += 1;
                    rtt_start = Instant::now();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if rtt_start.elapsed() > Duration::from_secs(10) {
                    return Err(format!("udp: {} datagrams lost (none back for 10 s)", next - got));
                }
            }
            Err(e) => return Err(format!("udp recv: {e}")),
        }
    }
    Ok(format!("udp-echo PASS sent={count} echoed={got} lost=0 setup={setup:.2?}"))
}

fn tcp_client(server: SocketAddr, bytes: u64, end: Instant) -> Result<String, String> {
    let server = SocketAddr::new(server.ip(), server.port() + 1);
    let mut c = loop {
        match TcpStream::connect_timeout(&server, Duration::from_secs(5)) {
            Ok(c) => break c,
            Err(e) if Instant::now() > end => return Err(format!("tcp connect: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // A stalled transfer fails with the position it stalled at, well before the overall end.
    let t = end.saturating_duration_since(Instant::now()).min(Duration::from_secs(20));
    c.set_read_timeout(Some(t))
        .and_then(|()| c.set_write_timeout(Some(t)))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    c.write_all(&bytes.to_be_bytes()).map_err(|e| format!("tcp length: {e}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4096];
    let mut i = 0u64;
    while i < bytes {
        let k = ((bytes - i) as usize).min(buf.len());
        for (j, b) in buf[..k].iter_mut().enumerate() {
            *b = stream_byte(i + j as u64);
        }
        c.write_all(&buf[..k]).map_err(|e| format!("tcp write at {i}: {e}"))?;
        h.update(&buf[..k]);
        i += k as u64;
    }
    let mut d = [0u8; 32];
    c.read_exact(&mut d).map_err(|e| format!("tcp digest: {e}"))?;
    let el = t0.elapsed();
    if d[..] != h.finalize()[..] {
        return Err(format!("tcp: digest {} differs from the bytes sent", hex(&d)));
    }
    let kbit = bytes as f64 * 8.0 / el.as_secs_f64() / 1e3;
    Ok(format!("tcp PASS bytes={bytes} sha256 {} in {el:.2?} ({kbit:.0} kbit/s)", hex(&d)))
}

fn prep(router: &str) -> Result<String, String> {
    std::fs::create_dir_all("/etc/net").map_err(|e| format!("/etc/net: {e}"))?;
    std::fs::write("/etc/net/ip_router", format!("{router}\n"))
        .map_err(|e| format!("ip_router: {e}"))?;
    Ok(format!("/etc/net/ip_router = {router}"))
}

fn addr(cidr: &str, wait: Duration) -> Result<String, String> {
    let end = Instant::now() + wait;
    loop {
        match std::fs::write("/scheme/netcfg/ifaces/eth0/addr/set", cidr) {
            Ok(()) => return Ok(format!("eth0 {cidr}")),
            Err(e) if Instant::now() > end => return Err(format!("netcfg: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (what, r) = match args.cmd {
        Cmd::Prep { router } => ("prep", prep(&router)),
        Cmd::Addr { cidr, wait } => ("addr", addr(&cidr, Duration::from_secs(wait))),
        Cmd::Serve { bind, peer, count, idle, tcp } => {
            ("serve", serve(bind, peer, count, Duration::from_secs(idle), tcp))
        }
        Cmd::Client { bind, server, count, window, bytes, timeout } => {
            let end = Instant::now() + Duration::from_secs(timeout);
            match udp_client(bind, server, count, window, end) {
                Ok(s) if bytes == 0 => ("client", Ok(format!("{s}; tcp not asked (--bytes 0)"))),
                Ok(s) => {
                    println!("ptnet-net-test: {s}");
                    ("client", tcp_client(server, bytes, end))
                }
                Err(e) => ("client", Err(e)),
            }
        }
    };
    match r {
        Ok(s) => {
            println!("ptnet-net-test: {what} PASS {s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("ptnet-net-test: {what} FAIL {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client and server logic over the host's loopback (the same code runs on Redox).
    #[test]
    fn client_and_server_agree_over_loopback() {
        let srv: SocketAddr = "127.0.0.1:47011".parse().unwrap();
        let cli: SocketAddr = "127.0.0.1:47012".parse().unwrap();
        let h = std::thread::spawn(move || serve(srv, cli, 2000, Duration::from_secs(20), true));
        let end = Instant::now() + Duration::from_secs(30);
        let u = udp_client(cli, srv, 2000, 8, end).unwrap();
        assert!(u.contains("lost=0"), "{u}");
        let t = tcp_client(srv, 300_000, end).unwrap();
        let s = h.join().unwrap().unwrap();
        let digest = t.split("sha256 ").nth(1).unwrap().split(' ').next().unwrap();
        assert!(s.contains(digest) && s.contains("300000 bytes"), "{s} / {t}");
    }
}
