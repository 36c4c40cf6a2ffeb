//! `ptnet-scheme-test`: a client of ptnetd's two schemes against a reflecting host port (every
//! frame sent comes back on the same ring), printing one PASS/FAIL line per check:
//!
//! * `stack`: `network.<name>_ptnet`: the MAC, `EAGAIN` on an empty non-blocking read, frames
//!   written and read back one per call (scheme-spec N3–N5, N8);
//! * `zerocopy`: `netmap.<name>_ptnet/0`: the geometry, the mapping, frames pushed and popped in
//!   place with `TXSYNC`/`RXSYNC` and readiness waits (M2–M6);
//! * `ownership`: a zero-copy client holds ring pair 0 while the stack client runs: a second
//!   open gets `EBUSY`, the stack keeps working on the other rings, and gets ring 0 back (M5);
//! * `eexist` (Redox only, in `all`): registering `network.<name>_ptnet` again, through the
//!   daemon's own registration function, fails with the clear "already registered" message
//!   the daemon logs when a dead instance left the name behind (the kernel answers `EEXIST`
//!   whether the holder is alive or dead).
//!
//! On Redox it uses the system's schemes (started from `init.rc` after pcid-spawner); on the host
//! `--model` runs the same checks against an embedded reflector through the in-process kernel.

use clap::Parser;
use ptnetd::client::{ClientError, EventFlags, Fd, NetmapPort, Os};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use syscall::error::{EAGAIN, EBUSY, ENETDOWN};
use syscall::flag::{O_NONBLOCK, O_RDWR};

/// Checks of ptnetd's schemes against a reflecting port.
#[derive(Parser, Debug)]
#[command(name = "ptnet-scheme-test", version)]
struct Args {
    /// Which checks: stack, zerocopy, ownership or all.
    #[arg(default_value = "all", value_parser = ["stack", "zerocopy", "ownership", "eexist", "all"])]
    check: String,
    /// PCI name of the NIC (e.g. pci-0000-00-03.0); default: the first `network.*_ptnet` scheme.
    #[arg(long)]
    name: Option<String>,
    /// Frames per check.
    #[arg(long, default_value_t = 1000)]
    frames: u64,
    /// Seconds a check may take before it fails.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Host only: run against an embedded reflector with this many ring pairs.
    #[cfg(not(target_os = "redox"))]
    #[arg(long)]
    model: Option<u32>,
}

const MAGIC: [u8; 2] = [0x88, 0xb5]; // IEEE local experimental ethertype

/// Frame `seq`: broadcast from `mac`, a length between 60 and 1514, contents from `seq`.
fn frame(mac: [u8; 6], seq: u64) -> Vec<u8> {
    let len = 60 + (seq as usize * 157) % (1514 - 60 + 1);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&MAGIC);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(22) {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

struct Ctx<'a, O: Os> {
    os: &'a O,
    name: String,
    frames: u64,
    deadline: Instant,
}

impl<O: Os> Ctx<'_, O> {
    fn net(&self, path: &str, flags: usize) -> Result<Fd<'_, O>, ClientError> {
        Fd::open(self.os, &ptnetd::client::network_path(&self.name, path), flags)
    }

    fn late(&self, what: &str) -> Result<(), String> {
        if Instant::now() > self.deadline {
            return Err(format!("timed out: {what}"));
        }
        Ok(())
    }

    fn mac(&self) -> Result<[u8; 6], String> {
        let m = self.net("mac", 0).map_err(|e| format!("open mac: {e}"))?;
        let mut b = [0u8; 16];
        let n = m.read(&mut b).map_err(|e| format!("read mac: {e}"))?;
        if n != 6 {
            return Err(format!("mac read gave {n} bytes, not 6"));
        }
        Ok(b[..6].try_into().unwrap_or_default())
    }

    /// Reads one frame from a non-blocking data handle, waiting for `EVENT_READ` when empty.
    fn read_frame(&self, d: &Fd<'_, O>, buf: &mut [u8]) -> Result<usize, String> {
        loop {
            match d.read(buf) {
                Ok(n) => return Ok(n),
                Err(ClientError::Errno(EAGAIN)) => {
                    self.late("waiting for a reflected frame")?;
                    self.os
                        .wait_event(d.raw(), EventFlags::EVENT_READ, Duration::from_millis(200))
                        .map_err(|e| format!("wait: {e}"))?;
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Frames out and back through the stack, in batches of 16.
    fn round_trip_stack(
        &self,
        d: &Fd<'_, O>,
        mac: [u8; 6],
        first: u64,
        n: u64,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; 2048];
        let mut k = first;
        while k < first + n {
            let batch = (first + n - k).min(16);
            for s in k..k + batch {
                let f = frame(mac, s);
                let w = d.write(&f).map_err(|e| format!("write frame {s}: {e}"))?;
                if w != f.len() {
                    return Err(format!("write returned {w} for {} bytes", f.len()));
                }
            }
            for s in k..k + batch {
                let got = self.read_frame(d, &mut buf)?;
                let want = frame(mac, s);
                if buf[..got] != want[..] {
                    return Err(format!(
                        "frame {s}: {got} bytes back, not the {} sent",
                        want.len()
                    ));
                }
            }
            k += batch;
        }
        Ok(())
    }

    fn stack(&self) -> Result<String, String> {
        let mac = self.mac()?;
        let d = self.net("", O_RDWR | O_NONBLOCK).map_err(|e| format!("open network: {e}"))?;
        self.os.subscribe(d.raw(), EventFlags::EVENT_READ).map_err(|e| format!("fevent: {e}"))?;
        match d.read(&mut [0u8; 1514]) {
            Err(ClientError::Errno(EAGAIN)) => {}
            other => return Err(format!("empty non-blocking read gave {other:?}, not EAGAIN")),
        }
        self.round_trip_stack(&d, mac, 0, self.frames)?;
        Ok(format!("mac {mac:02x?} frames={} back intact", self.frames))
    }

    fn zero_copy(
        &self,
        mac: [u8; 6],
        p: &mut NetmapPort<'_, O>,
        first: u64,
        n: u64,
    ) -> Result<(), String> {
        let e = |w: &'static str| move |x: ClientError| format!("{w}: {x}");
        let mut buf = vec![0u8; 2048];
        let (mut sent, mut got) = (first, first);
        while got < first + n {
            self.late("zero-copy frames")?;
            p.txsync().map_err(e("txsync"))?;
            let tx = p.tx_ring(0).map_err(e("tx ring"))?;
            while sent < first + n
                && sent < got + 64
                && tx.push(&frame(mac, sent)).map_err(e("push"))?
            {
                sent += 1;
            }
            p.txsync().map_err(e("txsync"))?;
            p.rxsync().map_err(e("rxsync"))?;
            let rx = p.rx_ring(0).map_err(e("rx ring"))?;
            let mut any = false;
            while let Some(len) = rx.pop(&mut buf).map_err(e("pop"))? {
                let want = frame(mac, got);
                if buf[..len] != want[..] {
                    return Err(format!(
                        "zero-copy frame {got}: {len} bytes, not the {} sent",
                        want.len()
                    ));
                }
                got += 1;
                any = true;
            }
            if !any && got < sent {
                p.rxsync().map_err(e("rxsync"))?;
                p.wait(EventFlags::EVENT_READ, Duration::from_millis(200)).map_err(e("wait"))?;
            } else if !any {
                p.wait(EventFlags::EVENT_WRITE, Duration::from_millis(200)).map_err(e("wait"))?;
            }
        }
        p.rxsync().map_err(e("rxsync"))?; // release the last frames: a closed handle's unreleased
        Ok(()) // frames would go to the stack (scheme-spec M5.3)
    }

    fn zerocopy(&self) -> Result<String, String> {
        let mac = self.mac()?;
        let mut p = NetmapPort::open(self.os, &self.name, "0")
            .map_err(|e| format!("open netmap/0: {e}"))?;
        let i = *p.info();
        if (i.first_tx, i.last_tx, i.first_rx, i.last_rx) != (0, 1, 0, 1) {
            return Err(format!("netmap/0 bound {i:?}"));
        }
        self.zero_copy(mac, &mut p, 0, self.frames)?;
        Ok(format!(
            "mem {} bytes, rings {}/{} x {} slots, buf {} B, frames={} in place",
            i.mem_size, i.tx_rings, i.rx_rings, i.tx_slots, i.buf_size, self.frames
        ))
    }

    fn ownership(&self) -> Result<String, String> {
        let mac = self.mac()?;
        let d = self.net("", O_RDWR | O_NONBLOCK).map_err(|e| format!("open network: {e}"))?;
        self.os.subscribe(d.raw(), EventFlags::EVENT_READ).map_err(|e| format!("fevent: {e}"))?;
        let mut p = NetmapPort::open(self.os, &self.name, "0")
            .map_err(|e| format!("open netmap/0: {e}"))?;
        let rings = p.info().tx_rings;
        match NetmapPort::open(self.os, &self.name, "0") {
            Err(ClientError::Errno(EBUSY)) => {}
            other => {
                return Err(format!("second open of ring 0 gave {:?}, not EBUSY", other.err()))
            }
        }
        if rings < 2 {
            match d.write(&frame(mac, 0)) {
                Err(ClientError::Errno(ENETDOWN)) => {}
                other => {
                    return Err(format!("stack write with no ring gave {other:?}, not ENETDOWN"))
                }
            }
        } else {
            self.round_trip_stack(&d, mac, 10_000, self.frames / 2)?;
        }
        self.zero_copy(mac, &mut p, 20_000, self.frames / 2)?;
        drop(p);
        self.round_trip_stack(&d, mac, 30_000, self.frames / 2)?;
        // Ring 0 is free again (the close reaches the daemon asynchronously: retry a while).
        loop {
            match NetmapPort::open(self.os, &self.name, "0") {
                Ok(_) => break,
                Err(ClientError::Errno(EBUSY)) => self.late("ring 0 back after close")?,
                Err(e) => return Err(format!("reopen of ring 0: {e}")),
            }
        }
        Ok(format!("{rings} ring pairs: EBUSY, stack and zero-copy side by side, ring 0 back"))
    }
}

fn run<O: Os>(os: &O, name: String, args: &Args) -> bool {
    let timeout = Duration::from_secs(args.timeout);
    let mut ok = true;
    type Check<'c, O> = fn(&Ctx<'c, O>) -> Result<String, String>;
    let checks: [(&str, Check<'_, O>); 3] =
        [("stack", Ctx::stack), ("zerocopy", Ctx::zerocopy), ("ownership", Ctx::ownership)];
    for (what, f) in checks {
        if args.check != "all" && args.check != what {
            continue;
        }
        let ctx =
            Ctx { os, name: name.clone(), frames: args.frames, deadline: Instant::now() + timeout };
        match f(&ctx) {
            Ok(s) => println!("ptnet-scheme-test: {what} PASS {s}"),
            Err(e) => {
                println!("ptnet-scheme-test: {what} FAIL {e}");
                ok = false;
            }
        }
    }
    ok
}

#[cfg(target_os = "redox")]
fn main() -> ExitCode {
    let args = Args::parse();
    let name = match args.name.clone().or_else(first_ptnet) {
        Some(n) => n,
        None => {
            println!("ptnet-scheme-test: FAIL no network.*_ptnet scheme in /scheme");
            return ExitCode::FAILURE;
        }
    };
    let os = match ptnetd::client::redox::RedoxOs::new() {
        Ok(o) => o,
        Err(e) => {
            println!("ptnet-scheme-test: FAIL event queue: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = run(&os, name.clone(), &args);
    if args.check == "all" || args.check == "eexist" {
        match eexist(&name) {
            Ok(s) => println!("ptnet-scheme-test: eexist PASS {s}"),
            Err(e) => {
                println!("ptnet-scheme-test: eexist FAIL {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A second registration of the daemon's `network` scheme name must be refused as taken.
#[cfg(target_os = "redox")]
fn eexist(name: &str) -> Result<String, String> {
    use ptnetd::scheme::redox::{register_name, RegisterError};
    struct Nothing;
    impl redox_scheme::scheme::SchemeSync for Nothing {
        fn scheme_root(&mut self) -> syscall::Result<usize> {
            Ok(0)
        }
    }
    let scheme = format!("network.{name}_ptnet");
    let sock = redox_scheme::Socket::nonblock().map_err(|e| format!("scheme socket: {e}"))?;
    match register_name(&sock, &scheme, &mut Nothing) {
        Err(e @ RegisterError::Taken(_)) => {
            let msg = e.to_string();
            if msg.contains("already registered") && msg.contains(&scheme) {
                Ok(format!("the second registration is refused: {msg}"))
            } else {
                Err(format!("unclear message: {msg}"))
            }
        }
        Err(e) => Err(format!("not EEXIST: {e}")),
        Ok(()) => Err(format!("{scheme} registered a second time")),
    }
}

#[cfg(target_os = "redox")]
fn first_ptnet() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/scheme")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("network.")?.strip_suffix("_ptnet").map(String::from))
        .collect();
    names.sort();
    names.into_iter().next()
}

#[cfg(not(target_os = "redox"))]
fn main() -> ExitCode {
    let args = Args::parse();
    let Some(rings) = args.model else {
        eprintln!("ptnet-scheme-test: on the host, pass --model RINGS (on Redox it uses /scheme)");
        return ExitCode::from(2);
    };
    match model::run_against_reflector(rings, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("ptnet-scheme-test: FAIL {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "redox"))]
mod model {
    use super::{run, Args};
    use ptnetd::client::host::HostOs;

    /// The checks against ptnetd serving a model VM on a reflecting port of `rings` ring pairs.
    pub fn run_against_reflector(rings: u32, args: &Args) -> Result<bool, String> {
        let k = ptnetd::app::embedded::reflector_daemon(rings).map_err(|e| e.to_string())?;
        let name = k.name().to_string();
        let ok = run(&HostOs::new(vec![&k]), name, args);
        let s = k.snapshot();
        println!(
            "ptnet-scheme-test: daemon calls={} stack frames read={} written={} zero-copy syncs={} \
             wake-ups={}",
            s.scheme.calls, s.scheme.frames_read, s.scheme.frames_written, s.scheme.syncs, s.loops
        );
        if let Some(d) = k.stop() {
            d.shutdown().map_err(|e| format!("shutdown: {e}"))?;
        }
        Ok(ok)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use clap::Parser;

        fn args(v: &[&str]) -> Args {
            Args::parse_from(std::iter::once("ptnet-scheme-test").chain(v.iter().copied()))
        }

        #[test]
        fn every_check_passes_against_the_model_with_one_and_two_rings() {
            assert_eq!(run_against_reflector(1, &args(&["--frames", "300"])), Ok(true));
            assert_eq!(run_against_reflector(2, &args(&["--frames", "300"])), Ok(true));
        }
    }
}
