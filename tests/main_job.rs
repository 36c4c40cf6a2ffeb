//! The main job (`cargo run --release`, i.e. `ptnetd` with no mode option) as a user runs it,
//! at small sizes: `--json` parsed and asserted key by key, the `--pcap` file read back with
//! the `pcap-file` reader (every TCP byte of both transfers checked against the stream pattern,
//! the zero-copy frames counted) and by tshark where it is installed (no malformed frame, no
//! expert error, a stack-mode TCP stream without retransmissions or lost segments).

use pcap_file::pcap::PcapReader;
use ptnetd::app::pktgen;
use ptnetd::app::system::{stream_byte, PCAP_ZC_FRAMES, TCP_PORT};
use ptnetd::model::pcap::{tshark_verify, PcapTapError};
use serde_json::Value;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TCP_MIB: u64 = 2;
const SWITCH_MIB: u64 = 1;
const ZC_FRAMES: u64 = 30_000;

fn ptnetd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptnetd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ptnetd")
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("ptnetd-main-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The A→B payload of each TCP connection (by source port), placed by sequence number; a
/// retransmitted segment must carry the same bytes as the first copy.
#[derive(Default)]
struct Streams {
    /// source port → (initial sequence number, payload bytes by offset).
    conns: BTreeMap<u16, (u32, BTreeMap<u32, Vec<u8>>)>,
    zero_copy: u64,
    frames: u64,
}

fn read_capture(path: &Path) -> Streams {
    let mut r =
        PcapReader::new(std::fs::File::open(path).expect("open pcap")).expect("pcap header");
    let mut s = Streams::default();
    while let Some(p) = r.next_packet() {
        let p = p.expect("a pcap record");
        s.frames += 1;
        assert_eq!(p.orig_len as usize, p.data.len(), "no frame is cut");
        if pktgen::parse(&p.data).is_some() {
            s.zero_copy += 1;
            continue;
        }
        let eth = EthernetFrame::new_checked(&p.data[..]).expect("an Ethernet frame");
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            continue; // ARP
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
        assert!(ip.verify_checksum(), "IPv4 checksum of frame {}", s.frames);
        assert_eq!(ip.next_header(), IpProtocol::Tcp, "frame {}", s.frames);
        let tcp = TcpPacket::new_checked(ip.payload()).expect("a TCP segment");
        if tcp.dst_port() != TCP_PORT {
            continue; // B → A: ACKs
        }
        let (isn, data) =
            s.conns.entry(tcp.src_port()).or_insert((tcp.seq_number().0 as u32, BTreeMap::new()));
        if tcp.syn() {
            *isn = tcp.seq_number().0 as u32;
            continue;
        }
        if tcp.payload().is_empty() {
            continue;
        }
        let off = (tcp.seq_number().0 as u32).wrapping_sub(isn.wrapping_add(1));
        // A retransmission may carry more or fewer bytes from the same offset (it can be cut
        // or coalesced differently); the bytes both copies hold must agree. Keep the longer.
        let new = tcp.payload();
        match data.get_mut(&off) {
            Some(old) => {
                let n = old.len().min(new.len());
                assert_eq!(old[..n], new[..n], "a retransmission with other bytes at offset {off}");
                if new.len() > old.len() {
                    *old = new.to_vec();
                }
            }
            None => {
                data.insert(off, new.to_vec());
            }
        }
    }
    s
}

/// The bytes of one connection in order: they must cover 0..len without a hole and match the
/// stream pattern.
fn check_stream(data: &BTreeMap<u32, Vec<u8>>, len: usize) {
    let mut next = 0usize;
    for (&off, seg) in data {
        let off = off as usize;
        assert!(off <= next, "a hole in the capture at {next}..{off}");
        for (k, &b) in seg.iter().enumerate() {
            assert_eq!(b, stream_byte(off + k), "byte {}", off + k);
        }
        next = next.max(off + seg.len());
    }
    assert_eq!(next, len, "the capture holds the whole stream");
}

fn f(v: &Value, path: &str) -> f64 {
    let mut x = v;
    for k in path.split('.') {
        x = &x[k];
    }
    x.as_f64().unwrap_or_else(|| panic!("{path} is not a number: {x}"))
}

#[test]
fn main_job_json_and_pcap() {
    let pcap = TempFile::new("run.pcap");
    let p = pcap.0.to_str().unwrap();
    let (tcp, zc, sw) = (TCP_MIB.to_string(), ZC_FRAMES.to_string(), SWITCH_MIB.to_string());
    let args = ["--tcp-mib", &tcp, "--zc-frames", &zc, "--switch-mib", &sw, "--json", "--pcap", p];
    let o = ptnetd(&args);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let j: Value = serde_json::from_str(&out).expect("stdout is one JSON object");

    // vms
    let vms = j["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 2);
    for (v, mac) in vms.iter().zip(["52:54:00:12:34:56", "52:54:00:12:34:57"]) {
        assert_eq!(v["mac"], mac);
        for k in ["tx_rings", "rx_rings", "features", "vnet_hdr_len"] {
            assert!(v[k].is_u64(), "vms[].{k}: {v}");
        }
        assert!(v["tx_rings"].as_u64().unwrap() >= 2, "{v}");
    }
    // stack
    let bytes = (TCP_MIB << 20) as f64;
    assert_eq!(j["stack"]["sha256_match"], true);
    assert_eq!((f(&j, "stack.bytes_sent"), f(&j, "stack.bytes_received")), (bytes, bytes));
    assert!(f(&j, "stack.mbit_s") > 0.0);
    assert_eq!(j["stack"]["ok"], true);
    // Each stack packet is copied by the sending ptnetd, the switch and the receiving ptnetd
    // (fewer only for a packet the switch dropped).
    let g = f(&j, "stack.guest_copies_per_packet");
    assert!(g > 1.5 && g <= 2.0, "stack guest copies {g}");
    assert!(f(&j, "stack.copies_per_packet") > 2.5, "{}", j["stack"]);
    // zero_copy
    let (sent, got, dropped) = (
        f(&j, "zero_copy.frames_sent"),
        f(&j, "zero_copy.frames_received"),
        f(&j, "zero_copy.frames_dropped"),
    );
    assert_eq!((sent, got + dropped), (ZC_FRAMES as f64, ZC_FRAMES as f64), "{}", j["zero_copy"]);
    assert!(f(&j, "zero_copy.mpps") > 0.0);
    assert_eq!(f(&j, "zero_copy.guest_copies_per_packet"), 0.0, "zero copy in the guests");
    let host = f(&j, "zero_copy.host_copies_per_packet") * f(&j, "zero_copy.packets");
    assert!(
        (host - got).abs() < 0.5,
        "the switch copied each delivered frame once: {host} vs {got}"
    );
    // mode_switch, notifications
    assert_eq!(j["mode_switch"]["ok"], true, "{}", j["mode_switch"]);
    assert_eq!(f(&j, "mode_switch.bytes"), (SWITCH_MIB << 20) as f64);
    let kpp = f(&j, "notifications.kicks_per_packet");
    let ipp = f(&j, "notifications.interrupts_per_packet");
    assert!(kpp > 0.0 && kpp < 1.0 && ipp > 0.0, "{}", j["notifications"]);

    // The capture, by the pcap-file reader.
    let s = read_capture(&pcap.0);
    assert_eq!(s.frames as f64, f(&j, "pcap.frames"));
    assert_eq!(s.zero_copy, PCAP_ZC_FRAMES.min(ZC_FRAMES));
    assert_eq!(s.zero_copy as f64, f(&j, "pcap.zero_copy_frames"));
    assert_eq!(f(&j, "pcap.zero_copy_skipped"), ZC_FRAMES.saturating_sub(PCAP_ZC_FRAMES) as f64);
    let conns: Vec<_> = s.conns.values().collect();
    assert_eq!(conns.len(), 2, "one connection per transfer");
    check_stream(&conns[0].1, (TCP_MIB << 20) as usize);
    check_stream(&conns[1].1, (SWITCH_MIB << 20) as usize);

    // The capture, by tshark.
    let t = match tshark_verify(&pcap.0) {
        Err(PcapTapError::ToolMissing) if std::env::var_os("PTNET_REQUIRE_TSHARK").is_none() => {
            eprintln!("tshark not installed: skipped the tshark checks");
            return;
        }
        r => r.expect("tshark reads the capture"),
    };
    assert_eq!(t.frames, s.frames);
    assert_eq!((t.malformed, t.expert_errors), (0, 0), "{t:?}");
    // Plain tshark, as a user runs it (no decode-as): no malformed frame either.
    let plain = Command::new("tshark")
        .args(["-n", "-r", p, "-Y", "_ws.malformed || _ws.expert.severity >= error"])
        .output()
        .unwrap();
    assert!(plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "", "tshark finds errors");
    // The stack phase's stream lost nothing on the way (no segment missing from the capture,
    // none out of order); the mode switch's has the retransmissions of the frames the
    // zero-copy client took. Retransmissions alone are not counted against the stack phase: on
    // a loaded machine the receiving application falls behind, its window fills, and the part
    // of a segment beyond the window is sent again (seen: "Window Full", then a fast
    // retransmission of the 12 bytes past the window, no frame lost).
    let flagged = |stream: u32, what: &str| {
        let filter = format!("tcp.stream=={stream} && ({what})");
        let o = Command::new("tshark").args(["-n", "-r", p, "-Y", &filter]).output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let lost =
        "tcp.analysis.lost_segment || tcp.analysis.out_of_order || tcp.analysis.ack_lost_segment";
    assert_eq!(flagged(0, lost), 0, "the stack-mode stream lost no segment");
    assert_eq!(f(&j, "stack.switch_dropped"), 0.0, "the switch dropped no stack-mode frame");
    let taken = f(&j, "mode_switch.frames_taken") as usize;
    let resent = flagged(1, &format!("tcp.analysis.retransmission || {lost}"));
    assert!(
        taken > 0 && resent >= 1,
        "the frames taken at the switch were retransmitted: {taken} taken, {resent} resent"
    );
}

#[test]
fn main_job_errors() {
    // A pcap that cannot be created: a clear message and exit status 1, nothing on stdout.
    let o = ptnetd(&["--tcp-mib", "1", "--pcap", "/nonexistent-dir/x.pcap"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ptnetd: FAIL pcap /nonexistent-dir/x.pcap"), "{err}");
    assert!(o.stdout.is_empty());
    // Bad sizes: exit 2 naming the option.
    for (args, says) in [
        (&["--tcp-mib", "0"][..], "--tcp-mib"),
        (&["--zc-frames", "x"], "--zc-frames"),
        (&["--switch-mib", "5000"], "--switch-mib"),
        (&["--json", "--selftest", "5"], "cannot be used with"),
        (&["--json=1"], "--json"),
        (&["--frames", "5"], "--driver-demo"),
    ] {
        let o = ptnetd(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says}: {err}");
        assert!(o.stdout.is_empty());
    }
}
