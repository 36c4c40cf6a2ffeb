//! `ptnet-bench`: the throughput benchmark of [`ptnetd::app::bench`] from a plain binary, for
//! profilers (`perf record`, `valgrind --tool=callgrind`). With `--scenario` it runs one cell
//! and prints its row; without, the whole plan (as `cargo bench --bench throughput` does, minus
//! the plot). Exit status 1 if a cell failed, 2 on a usage error.

#[cfg(not(target_os = "redox"))]
use clap::Parser;
use std::process::ExitCode;

/// The embedded hypervisor exists on the host only.
#[cfg(target_os = "redox")]
fn main() -> ExitCode {
    eprintln!("ptnet-bench runs on the host (the embedded hypervisor)");
    ExitCode::from(2)
}

/// One cell of the throughput benchmark, or all of them.
#[cfg(not(target_os = "redox"))]
#[derive(Parser, Debug)]
#[command(name = "ptnet-bench", version)]
struct Args {
    /// The short plan (BENCH_QUICK's), or short cells with --scenario.
    #[arg(long)]
    quick: bool,
    /// Run only this scenario (spsc-ceiling, zc-tx, zc-rx, zc-pipe, zc-switch, stack-network,
    /// stack-netmap, virtio-baseline).
    #[arg(long)]
    scenario: Option<String>,
    /// Host mode of a ptnet scenario: kloop or direct.
    #[arg(long, default_value = "kloop")]
    host_mode: String,
    /// Frames per sync.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=512))]
    batch: u64,
    /// Frame length in bytes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(60..=1514))]
    frame_len: u64,
    /// Send exactly this many frames (default: as many as the cell's time allows).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    frames: Option<u64>,
    /// Print JSON rows instead of the table.
    #[arg(long)]
    json: bool,
}

#[cfg(not(target_os = "redox"))]
fn main() -> ExitCode {
    use ptnetd::app::bench::{self, Cell, HostMode, Load, Scenario};
    use std::time::Duration;
    let a = Args::parse();
    let cells = match &a.scenario {
        None => bench::plan(a.quick),
        Some(name) => {
            let Some(scenario) = Scenario::parse(name) else {
                eprintln!("ptnet-bench: no scenario {name}");
                return ExitCode::from(2);
            };
            let host_mode = if scenario.has_host_mode() {
                match HostMode::parse(&a.host_mode) {
                    Some(m) if m != HostMode::None => m,
                    _ => {
                        eprintln!("ptnet-bench: host mode is kloop or direct");
                        return ExitCode::from(2);
                    }
                }
            } else {
                HostMode::None
            };
            let load = match a.frames {
                Some(n) => Load::frames(n),
                None => Load::time(Duration::from_millis(if a.quick { 150 } else { 1000 })),
            };
            vec![Cell {
                scenario,
                host_mode,
                batch: a.batch,
                frame_len: a.frame_len as usize,
                load,
            }]
        }
    };
    let mut rows = Vec::new();
    let mut failed = false;
    if !a.json {
        println!("{}", bench::table_header());
    }
    for c in &cells {
        match bench::run_cell(c) {
            Ok(r) => {
                if !a.json {
                    println!("{}", bench::table_line(&r));
                }
                rows.push(r);
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "ptnet-bench: {} {} batch {}: {e}",
                    c.scenario,
                    c.host_mode.name(),
                    c.batch
                );
            }
        }
    }
    if a.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("ptnet-bench: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
