//! `ptnet-system`: the whole system on the embedded hypervisor ([`ptnetd::app::system`]): two
//! VMs with ptnetd's two schemes on the VALE-like switch, TCP over `network`, pkt-gen over
//! `netmap`, a mode switch during a transfer. Prints a report (or `--json`); exit status 1 if a
//! phase fails, 2 on a usage error.

#[cfg(not(target_os = "redox"))]
use clap::Parser;
#[cfg(not(target_os = "redox"))]
use ptnetd::app::system::{run, SystemConfig};
use std::process::ExitCode;
#[cfg(not(target_os = "redox"))]
use std::time::Duration;

/// The embedded hypervisor exists on the host only.
#[cfg(target_os = "redox")]
fn main() -> ExitCode {
    eprintln!("ptnet-system runs on the host (the embedded hypervisor); on Redox use ptnetd");
    ExitCode::from(2)
}

/// Two VMs with ptnetd's schemes on the embedded hypervisor, real traffic in both modes.
#[cfg(not(target_os = "redox"))]
#[derive(Parser, Debug)]
#[command(name = "ptnet-system", version)]
struct Args {
    /// MiB of the stack-mode TCP transfer.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    tcp_mib: u64,
    /// 60-byte frames of the zero-copy phase.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    zc_frames: u64,
    /// MiB of the TCP transfer during the mode switch.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    switch_mib: u64,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[cfg(not(target_os = "redox"))]
fn main() -> ExitCode {
    let a = Args::parse();
    let cfg = SystemConfig {
        tcp_bytes: (a.tcp_mib << 20) as usize,
        zc_frames: a.zc_frames,
        switch_bytes: (a.switch_mib << 20) as usize,
        phase_timeout: Duration::from_secs(300),
    };
    let json = a.json;
    let rep = match run(&cfg, &mut |l| {
        if !json {
            println!("{l}")
        }
    }) {
        Ok(r) => r,
        Err(e) => {
            println!("ptnet-system: FAIL {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&rep) {
            Ok(s) => println!("{s}"),
            Err(e) => println!("ptnet-system: FAIL json: {e}"),
        }
    } else {
        let v = |ok: bool| if ok { "PASS" } else { "FAIL" };
        for (k, m) in rep.vms.iter().enumerate() {
            println!(
                "vm{}        {} at {}, rings {}/{}",
                k + 1,
                m.mac,
                m.pci,
                m.tx_rings,
                m.rx_rings
            );
        }
        let s = &rep.stack;
        println!(
            "stack      {} bytes, sha256 match {}, {:.1} Mbit/s, {:.2} scheme calls/frame  {}",
            s.bytes_received,
            s.sha256_match,
            s.mbit_s,
            s.calls_per_frame,
            v(s.ok)
        );
        let z = &rep.zero_copy;
        println!(
            "zero-copy  sent {} received {} dropped {} duplicated {}, {:.3} Mpps  {}",
            z.frames_sent,
            z.frames_received,
            z.frames_dropped,
            z.frames_duplicated,
            z.mpps,
            v(z.ok)
        );
        let m = &rep.mode_switch;
        println!(
            "switch     {} bytes intact across {} switch(es)  {}",
            m.bytes,
            m.switches,
            v(m.ok)
        );
        let n = &rep.notifications;
        println!(
            "notify     {:.4} kicks/pkt, {:.4} interrupts/pkt",
            n.kicks_per_packet, n.interrupts_per_packet
        );
        println!("result     {}", v(rep.ok()));
    }
    if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
