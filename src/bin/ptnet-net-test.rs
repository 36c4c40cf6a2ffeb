//! `ptnet-net-test`: UDP and TCP through the operating system's sockets (`std::net`), for the
//! test where Redox's own network stack (smolnetd) runs on ptnetd's `network` scheme: nothing on
//! that path is ours but ptnetd. Two VMs: one runs `serve`, the other `client`; each prints
//! `ptnet-net-test: ... PASS|FAIL` lines.
//!
//! * `prep` writes `/etc/net/ip_router` (smolnetd needs it before it starts);
//! * `addr CIDR` sets the address through `/scheme/netcfg` (retried while smolnetd comes up);
//! * `serve`: echoes UDP datagrams back to the peer until `--count` were echoed, then receives one
//!   TCP transfer and answers with its SHA-256;
//! * `client`: sends `--count` numbered datagrams (a window in flight), checks every echo comes
//!   back once and intact (none lost), then sends `--bytes` over TCP and checks the digest.
//!
//! The TCP transfer works around three faults of the kit's smolnetd (Redox `base`,
//! `netstack/src/scheme/`; details in `ci/redox/README.md`, "TCP through smolnetd"):
//! * `tcp.rs`, `write_buf`: a write is answered with its full length as soon as the socket's
//!   send buffer (65,535 bytes) has *any* room, but only what fits is queued (`send_slice`'s
//!   shorter count is ignored): the rest is dropped without an error. So the client writes in
//!   blocks the server acknowledges (one byte each) and keeps at most `--in-flight` blocks
//!   unacknowledged: an acknowledgement carries the TCP ACK of the bytes before it, so they have
//!   left the send buffer and a whole block fits. `--block 0` streams without acknowledgements,
//!   as a plain `write_all` program does, and shows the fault: the server checks the stream (a
//!   known pseudo-random pattern) as it reads it and reports the offset and size of a hole;
//! * `tcp.rs`, `read_buf`: a read on a connection still in its handshake (accepted in
//!   SYN-RECEIVED, connecting in SYN-SENT) returns 0 bytes, end of file; a blocking write waits
//!   for the handshake. So each side writes first: the client its header (the length and the
//!   block size, 8 bytes each, big-endian), the server a ready byte;
//! * `socket.rs`, `on_close`: a closed socket is removed with what it still holds, unsent bytes
//!   included. So the server keeps the connection after its SHA-256 until the client says it
//!   has it (a last byte), for a few seconds at most.
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
        /// TCP block size: the server acknowledges each block (0: stream without
        /// acknowledgements, which the kit's smolnetd can truncate; see the module doc).
        #[arg(long, default_value_t = 16_000)]
        block: u64,
        /// TCP blocks written and not yet acknowledged, at most.
        #[arg(long, default_value_t = 4)]
        in_flight: u64,
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

/// Byte `i` of the TCP stream: splitmix64 of `i / 8`, byte `i % 8` of it. Random enough that 32
/// bytes locate their offset in the stream (the server measures holes with it).
fn stream_byte(i: u64) -> u8 {
    let mut z = (i >> 3).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> ((i & 7) * 8)) as u8
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
    tcp_sink(&l, idle.min(Duration::from_secs(30)))
}

/// Receives one TCP transfer on `l` (header, blocks acknowledged, the stream checked), answers
/// its SHA-256. `t`: the longest wait for any one read or write.
fn tcp_sink(l: &TcpListener, t: Duration) -> Result<String, String> {
    let (mut c, from) = l.accept().map_err(|e| format!("tcp accept: {e}"))?;
    let mut buf = [0u8; 2048];
    c.set_read_timeout(Some(t))
        .and_then(|()| c.set_write_timeout(Some(t)))
        .map_err(|e| e.to_string())?;
    // smolnetd answers a read on a connection still in its handshake with 0 bytes (end of
    // file); a blocking write waits for the handshake. So the server writes first.
    c.write_all(&[READY]).map_err(|e| format!("tcp ready: {e}"))?;
    let mut head = [0u8; TCP_HEADER as usize];
    c.read_exact(&mut head).map_err(|e| format!("tcp header: {e}"))?;
    let len = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
    let block = u64::from_be_bytes(head[8..].try_into().unwrap_or_default());
    let mut h = Sha256::new();
    let mut check = StreamCheck::default();
    let (mut off, mut in_block, mut acks) = (0u64, 0u64, 0u64);
    while off < len {
        let mut k = (len - off).min(buf.len() as u64);
        if block > 0 {
            k = k.min(block - in_block);
        }
        let k = k as usize;
        c.read_exact(&mut buf[..k]).map_err(|e| {
            format!(
                "tcp read ({off} of {len} bytes, {acks} blocks acknowledged): {e}{}",
                check.note()
            )
        })?;
        check.feed(off, &buf[..k]);
        if let Some(hole) = check.hole() {
            return Err(format!("tcp: {hole} (after {off} of {len} bytes read)"));
        }
        h.update(&buf[..k]);
        off += k as u64;
        in_block += k as u64;
        if block > 0 && (in_block == block || off == len) {
            c.write_all(&[acks as u8]).map_err(|e| format!("tcp ack {acks}: {e}"))?;
            acks += 1;
            in_block = 0;
        }
    }
    let d = h.finalize();
    c.write_all(&d).map_err(|e| format!("tcp digest: {e}"))?;
    // smolnetd drops a closed socket with whatever it still holds (the digest, if not sent
    // yet): keep the connection until the client says it has the digest (it checks it). Not
    // hearing that is no failure here: the client's own verdict says whether the digest came.
    c.set_read_timeout(Some(t.min(LINGER)))
        .and_then(|()| c.set_write_timeout(Some(t.min(LINGER))))
        .map_err(|e| e.to_string())?;
    let mut done = [0u8; 1];
    let confirmed = match c.read_exact(&mut done) {
        Ok(()) if done[0] == DONE => "the client has it".to_string(),
        Ok(()) => format!("the client answered {:#04x}", done[0]),
        Err(e) => format!("no word from the client ({e})"),
    };
    Ok(format!(
        "tcp-sink from {from}: {len} bytes in blocks of {block} ({acks} acknowledged), sha256 {} \
         ({confirmed})",
        hex(&d)
    ))
}

/// Checks the received TCP stream against the client's pattern ([`stream_byte`]): the first
/// offset where it differs, and, once enough bytes after it arrived, where the pattern resumes
/// (bytes missing from the stream, as the kit's smolnetd drops them).
#[derive(Default)]
struct StreamCheck {
    /// First offset whose byte differs from the pattern, and the bytes received from there.
    off_pattern: Option<(u64, Vec<u8>)>,
}

/// Received bytes after the first difference that are matched against later stream offsets.
const HOLE_PROBE: usize = 32;
/// How far ahead (bytes) a resumption of the pattern is looked for.
const HOLE_SEARCH: u64 = 1 << 20;

impl StreamCheck {
    fn feed(&mut self, off: u64, data: &[u8]) {
        match &mut self.off_pattern {
            None => {
                if let Some(i) = (0..data.len()).find(|&i| data[i] != stream_byte(off + i as u64)) {
                    let tail = &data[i..data.len().min(i + HOLE_PROBE)];
                    self.off_pattern = Some((off + i as u64, tail.to_vec()));
                }
            }
            Some((_, got)) if got.len() < HOLE_PROBE => {
                let n = (HOLE_PROBE - got.len()).min(data.len());
                got.extend_from_slice(&data[..n]);
            }
            Some(_) => {}
        }
    }

    /// The difference, once it can be described (at least [`HOLE_PROBE`] bytes after it).
    fn hole(&self) -> Option<String> {
        match &self.off_pattern {
            Some((at, got)) if got.len() >= HOLE_PROBE => Some(describe_hole(*at, got)),
            _ => None,
        }
    }

    /// For an error message: what the check saw so far.
    fn note(&self) -> String {
        match &self.off_pattern {
            None => "; every byte so far as sent".into(),
            Some((at, got)) => format!("; {}", describe_hole(*at, got)),
        }
    }
}

/// `got`: the bytes received from stream offset `at` on, where the first differs from the pattern.
fn describe_hole(at: u64, got: &[u8]) -> String {
    let resumes = (1..=HOLE_SEARCH)
        .find(|&k| got.iter().enumerate().all(|(j, &b)| b == stream_byte(at + k + j as u64)));
    match resumes {
        Some(k) if got.len() >= 8 => format!(
            "stream broken at offset {at}: the bytes from there are those sent from offset {}, \
             {k} bytes missing",
            at + k
        ),
        _ => format!(
            "stream broken at offset {at}: byte {:#04x}, sent {:#04x}",
            got[0],
            stream_byte(at)
        ),
    }
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

/// The kit's smolnetd TCP send buffer (Redox `base`, `netstack/src/scheme/tcp.rs`,
/// `new_socket`: `vec![0; 0xffff]`): written bytes beyond its free room are dropped.
const SMOLNETD_TCP_SEND_BUFFER: u64 = 0xffff;
/// The transfer's header: the length and the block size.
const TCP_HEADER: u64 = 16;
/// The server's first byte (the handshake is over); the client's last (it has the digest).
const READY: u8 = 0x52;
const DONE: u8 = 0x44;
/// How long the server keeps the connection after the digest, waiting for [`DONE`].
const LINGER: Duration = Duration::from_secs(5);

fn tcp_client(
    server: SocketAddr,
    bytes: u64,
    block: u64,
    in_flight: u64,
    end: Instant,
) -> Result<String, String> {
    // Before block b is written, blocks up to b - in_flight were acknowledged: the send buffer
    // holds at most in_flight - 1 blocks (and the header), so a whole block fits.
    if block > 0 && (in_flight == 0 || in_flight * block + TCP_HEADER > SMOLNETD_TCP_SEND_BUFFER) {
        return Err(format!(
            "--block {block} x --in-flight {in_flight} (+{TCP_HEADER}) does not fit smolnetd's \
             {SMOLNETD_TCP_SEND_BUFFER}-byte TCP send buffer (or --in-flight is 0)"
        ));
    }
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
    let mut head = [0u8; TCP_HEADER as usize];
    head[..8].copy_from_slice(&bytes.to_be_bytes());
    head[8..].copy_from_slice(&block.to_be_bytes());
    // A blocking write waits for the handshake (a read might not: see `tcp_sink`).
    c.write_all(&head).map_err(|e| format!("tcp header: {e}"))?;
    let mut ready = [0u8; 1];
    c.read_exact(&mut ready).map_err(|e| format!("tcp ready: {e}"))?;
    if ready[0] != READY {
        return Err(format!("tcp: the server began with {:#04x}", ready[0]));
    }
    let chunk = if block > 0 { block } else { 4096 };
    let blocks = bytes.div_ceil(chunk);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; chunk as usize];
    let (mut i, mut acked) = (0u64, 0u64);
    // The server's acknowledgement of block `acked` (its index, modulo 256).
    let ack = |c: &mut TcpStream, acked: &mut u64, written: u64| -> Result<(), String> {
        let mut a = [0u8; 1];
        c.read_exact(&mut a)
            .map_err(|e| format!("tcp ack {acked} ({written} of {bytes} bytes written): {e}"))?;
        if a[0] != *acked as u8 {
            return Err(format!(
                "tcp: acknowledgement {:#04x}, expected {:#04x}",
                a[0], *acked as u8
            ));
        }
        *acked += 1;
        Ok(())
    };
    for b in 0..blocks {
        while block > 0 && b >= acked + in_flight {
            ack(&mut c, &mut acked, i)?;
        }
        let k = (bytes - i).min(chunk) as usize;
        for (j, x) in buf[..k].iter_mut().enumerate() {
            *x = stream_byte(i + j as u64);
        }
        c.write_all(&buf[..k]).map_err(|e| format!("tcp write at {i}: {e}"))?;
        h.update(&buf[..k]);
        i += k as u64;
    }
    while block > 0 && acked < blocks {
        ack(&mut c, &mut acked, i)?;
    }
    let mut d = [0u8; 32];
    c.read_exact(&mut d).map_err(|e| format!("tcp digest: {e}"))?;
    let el = t0.elapsed();
    c.write_all(&[DONE]).map_err(|e| format!("tcp done: {e}"))?;
    if d[..] != h.finalize()[..] {
        return Err(format!("tcp: digest {} differs from the bytes sent", hex(&d)));
    }
    let kbit = bytes as f64 * 8.0 / el.as_secs_f64() / 1e3;
    Ok(format!(
        "tcp PASS bytes={bytes} block={block} in-flight={in_flight} sha256 {} in {el:.2?} ({kbit:.0} kbit/s)",
        hex(&d)
    ))
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
        Cmd::Client { bind, server, count, window, bytes, block, in_flight, timeout } => {
            let end = Instant::now() + Duration::from_secs(timeout);
            match udp_client(bind, server, count, window, end) {
                Ok(s) if bytes == 0 => ("client", Ok(format!("{s}; tcp not asked (--bytes 0)"))),
                Ok(s) => {
                    println!("ptnet-net-test: {s}");
                    ("client", tcp_client(server, bytes, block, in_flight, end))
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
        let t = tcp_client(srv, 300_000, 16_000, 4, end).unwrap();
        let s = h.join().unwrap().unwrap();
        let digest = t.split("sha256 ").nth(1).unwrap().split(' ').next().unwrap();
        assert!(s.contains(digest) && s.contains("300000 bytes"), "{s} / {t}");
        assert!(s.contains("(19 acknowledged)"), "{s}"); // 18 blocks of 16000, one of 12000
        assert!(s.contains("(the client has it)"), "{s}");
    }

    /// One TCP transfer with these block settings through `tcp_sink` on `port + 1`.
    fn transfer(port: u16, bytes: u64, block: u64, in_flight: u64) -> (String, String) {
        let srv: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let l = TcpListener::bind(SocketAddr::new(srv.ip(), port + 1)).unwrap();
        let h = std::thread::spawn(move || tcp_sink(&l, Duration::from_secs(20)));
        let end = Instant::now() + Duration::from_secs(30);
        let t = tcp_client(srv, bytes, block, in_flight, end).unwrap();
        (t, h.join().unwrap().unwrap())
    }

    #[test]
    fn streaming_and_odd_blocks_are_checked_alike() {
        let (t, s) = transfer(47021, 100_001, 0, 4);
        assert!(t.contains("block=0") && s.contains("100001 bytes in blocks of 0 (0 "), "{s}");
        let (t, s) = transfer(47023, 100_001, 1000, 1);
        assert!(t.contains("block=1000") && s.contains("(101 acknowledged)"), "{s}");
        let (t, s) = transfer(47025, 5, 16_000, 4);
        assert!(t.contains("bytes=5") && s.contains("(1 acknowledged)"), "{s}");
    }

    #[test]
    fn blocks_that_do_not_fit_smolnetds_send_buffer_are_refused() {
        let srv: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let end = Instant::now() + Duration::from_secs(1);
        for (block, in_flight) in [(16_000, 5), (65_535, 1), (1000, 0)] {
            let e = tcp_client(srv, 1, block, in_flight, end).unwrap_err();
            assert!(e.contains("does not fit"), "{e}");
        }
    }

    /// What the server reports when bytes are missing from the stream, as smolnetd drops them.
    #[test]
    fn a_hole_in_the_stream_is_located_and_measured() {
        let sent: Vec<u8> = (0..200_000u64).map(stream_byte).collect();
        let mut got = sent[..70_000].to_vec();
        got.extend_from_slice(&sent[73_096..]); // 3,096 bytes of one write dropped
        let mut c = StreamCheck::default();
        for (n, chunk) in got.chunks(2048).enumerate() {
            assert!(c.hole().is_none() || n * 2048 > 70_000);
            c.feed((n * 2048) as u64, chunk);
        }
        let hole = c.hole().unwrap();
        assert!(hole.contains("at offset 70000") && hole.contains("3096 bytes missing"), "{hole}");

        let mut c = StreamCheck::default();
        c.feed(0, &sent);
        assert!(c.hole().is_none() && c.note().contains("as sent"));

        let mut bad = sent[..1000].to_vec();
        bad[500] ^= 0xff;
        let mut c = StreamCheck::default();
        c.feed(0, &bad);
        let hole = c.hole().unwrap();
        assert!(hole.contains("at offset 500: byte"), "{hole}");
    }
}
