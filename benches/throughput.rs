//! `cargo bench --bench throughput`: every scenario of [`ptnetd::app::bench`] in one process
//! run, interleaved; a table on stdout, `target/bench/throughput.json` (one row per scenario ×
//! host mode × batch × frame length) and `target/bench/throughput.svg` (Mpps against batch).
//! `BENCH_QUICK=1`: a short run (60-byte frames, batches 1 and 256). Exit status 1 if a cell
//! failed. `BENCH_REPLOT=<throughput.json>` redraws the table and plot of an earlier run. See
//! BENCHMARKS.md.

use plotters::prelude::*;
use ptnetd::app::bench::{self, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(json) = std::env::var_os("BENCH_REPLOT") {
        return replot(Path::new(&json));
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let cells = bench::plan(quick);
    let rounds = if quick { 1 } else { bench::ROUNDS };
    let t0 = std::time::Instant::now();
    eprintln!(
        "throughput: {} cells x {rounds} round(s){}",
        cells.len(),
        if quick { " (BENCH_QUICK)" } else { "" }
    );
    println!("{}", bench::table_header());
    let (mut rows, mut failed) = (Vec::new(), 0);
    for c in (0..rounds).flat_map(|_| &cells) {
        match bench::run_cell(c) {
            Ok(r) => {
                println!("{}", bench::table_line(&r));
                rows.push(r);
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{:<16} {:<6} {:>5} {:>5} FAILED: {e}",
                    c.scenario.name(),
                    c.host_mode.name(),
                    c.batch,
                    c.frame_len
                );
            }
        }
    }
    let rows = bench::best_of_rounds(rows);
    println!(
        "\nthroughput: best of {rounds} round(s), sorted ({:.0} s)\n{}",
        t0.elapsed().as_secs_f64(),
        bench::table(&rows)
    );
    println!("\n{}", targets(&rows));
    let dir = bench::out_dir();
    let json = dir.join("throughput.json");
    if let Err(e) = bench::write_json(&rows, &json) {
        eprintln!("throughput: writing {}: {e}", json.display());
        return ExitCode::FAILURE;
    }
    let svg = dir.join("throughput.svg");
    if let Err(e) = plot(&rows, &svg) {
        eprintln!("throughput: drawing {}: {e}", svg.display());
        return ExitCode::FAILURE;
    }
    println!("throughput: wrote {} and {}", json.display(), svg.display());
    if failed > 0 {
        eprintln!("throughput: {failed} cell(s) failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `BENCH_REPLOT=<rows.json>`: the table, targets and plot of an earlier run, without running.
fn replot(json: &Path) -> ExitCode {
    let rows: Vec<Row> = match std::fs::read_to_string(json)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("throughput: reading {}: {e}", json.display());
            return ExitCode::FAILURE;
        }
    };
    println!("{}\n\n{}", bench::table(&rows), targets(&rows));
    let svg = bench::out_dir().join("throughput.svg");
    if let Err(e) = std::fs::create_dir_all(bench::out_dir())
        .map_err(|e| e.into())
        .and_then(|()| plot(&rows, &svg))
    {
        eprintln!("throughput: drawing {}: {e}", svg.display());
        return ExitCode::FAILURE;
    }
    println!("throughput: wrote {}", svg.display());
    ExitCode::SUCCESS
}

/// The targets against this run (reported, not asserted: the machine is shared).
fn targets(rows: &[Row]) -> String {
    // Host modes by transport: Redox's IPC (the daemon thread) and inline (the caller's thread).
    const IPC: &[&str] = &["kloop", "direct", "-"];
    const INLINE: &[&str] = &["kloop+inline", "direct+inline"];
    let best = |s: &str, modes: &[&str], min_batch: u64| {
        rows.iter()
            .filter(|r| r.scenario == s && r.frame_len == 60 && r.batch >= min_batch)
            .filter(|r| modes.contains(&r.host_mode.as_str()))
            .map(|r| r.mpps)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut out = String::from("targets (60-byte frames, this run):");
    let spsc = best("spsc-ceiling", IPC, 256);
    let at = |s: &str, m: &[&str]| {
        rows.iter()
            .filter(|r| r.scenario == s && r.frame_len == 60 && r.batch == 256)
            .filter(|r| m.contains(&r.host_mode.as_str()))
            .map(|r| r.mpps)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
    };
    let virtio = at("virtio-baseline", IPC);
    for (t, modes) in [("ipc", IPC), ("inline", INLINE)] {
        if let (Some(p), Some(s)) = (best("zc-pipe", modes, 256), spsc) {
            out += &format!(
                "\n  zc-pipe ({t}) batch>=256: {p:.2} Mpps vs 46 Mpps: {}; vs 0.5 x spsc-ceiling ({:.1}): {}",
                verdict(p >= 46.0),
                0.5 * s,
                verdict(p >= 0.5 * s)
            );
        }
        if let Some(sw) = best("zc-switch", modes, 256) {
            out += &format!(
                "\n  zc-switch ({t}) batch>=256: {sw:.2} Mpps vs 20 Mpps: {}",
                verdict(sw >= 20.0)
            );
            if let (Some(s), Some(v)) = (at("zc-switch", modes), virtio) {
                out += &format!(
                    "\n  zc-switch ({t}) / virtio-baseline at batch 256: {s:.2} / {v:.3} = {:.1}x vs 5x: {}",
                    s / v,
                    verdict(s >= 5.0 * v)
                );
            }
        }
    }
    // Kicks + interrupts per packet: the worst row at batch >= 256 (both frame lengths) per
    // zero-copy scenario and host mode, and the batch-1 figure beside it.
    out += "\n  kicks+interrupts per packet (worst at batch>=256, both frame lengths, vs 0.01; batch 1):";
    for s in ["zc-tx", "zc-rx", "zc-pipe", "zc-switch", "virtio-baseline"] {
        for m in IPC.iter().chain(INLINE) {
            // The row with the most kicks + interrupts among those `keep` takes.
            let total = |r: &Row| r.kicks_per_packet + r.interrupts_per_packet;
            let worst = |keep: &dyn Fn(&Row) -> bool| {
                rows.iter()
                    .filter(|r| r.scenario == s && r.host_mode == *m && keep(r))
                    .max_by(|a, b| total(a).total_cmp(&total(b)))
            };
            if let Some(r) = worst(&|r| r.batch >= 256) {
                let w = total(r);
                let one =
                    worst(&|r| r.batch == 1).map_or("-".into(), |x| format!("{:.3}", total(x)));
                out += &format!("\n    {s} ({m}): {w:.4}: {}; batch 1: {one}", verdict(w <= 0.01));
                // Who pays in the worst row: sender's and receiver's kicks + interrupts.
                if let (Some(k), Some(i)) =
                    (r.sender_kicks_per_packet, r.sender_interrupts_per_packet)
                {
                    let (rk, ri) = (r.kicks_per_packet - k, r.interrupts_per_packet - i);
                    out += &format!(
                        " (batch {}, {} B: sender {k:.4} kicks + {i:.4} irqs, receiver {rk:.4} + {ri:.4})",
                        r.batch, r.frame_len
                    );
                }
            }
        }
    }
    let calls = |s: &str| {
        rows.iter()
            .filter(|r| r.scenario == s && r.frame_len == 60)
            .map(|r| (r.batch, r.scheme_calls_per_frame, r.mpps))
            .collect::<Vec<_>>()
    };
    let (net, nm) = (calls("stack-network"), calls("stack-netmap"));
    if let (Some(n), Some(m)) = (net.first(), nm.iter().max_by_key(|x| x.0)) {
        out += &format!(
            "\n  stack: network device {:.3} Mpps, {:.2} calls/frame; netmap device (batch {}) {:.3} Mpps, {:.3} calls/frame: {:.1}x fewer vs 10x: {}",
            n.2,
            n.1,
            m.0,
            m.2,
            m.1,
            n.1 / m.1.max(1e-9),
            verdict(n.1 >= 10.0 * m.1)
        );
    }
    out
}

/// Mpps against batch (both axes logarithmic), one panel per frame length, a line per
/// scenario and host mode.
fn plot(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let lens: Vec<usize> = {
        let mut v: Vec<usize> = rows.iter().map(|r| r.frame_len).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let root = SVGBackend::new(path, (1100, 560 * lens.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((lens.len().max(1), 1));
    let names: Vec<String> = {
        let mut v: Vec<String> = rows.iter().map(label).collect();
        v.sort();
        v.dedup();
        v
    };
    for (panel, &len) in panels.iter().zip(&lens) {
        // The chart on the left, its legend in a column of its own on the right.
        let (area, legend) = panel.split_horizontally(880);
        let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.frame_len == len && r.mpps > 0.0) {
            series.entry(label(r)).or_default().push((r.batch, r.mpps));
        }
        let all = series.values().flatten().map(|p| p.1);
        let lo = all.clone().fold(f64::MAX, f64::min).min(1.0) / 2.0;
        let hi = all.fold(0.0, f64::max).max(1.0) * 2.0;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("Mpps against batch, {len}-byte frames"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((1u64..600u64).log_scale(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("batch (frames per sync)")
            .y_desc("Mpps (received)")
            .draw()?;
        for (k, (name, mut pts)) in series.into_iter().enumerate() {
            pts.sort_by_key(|p| p.0);
            let i = names.iter().position(|n| *n == name).unwrap_or(0);
            let color = Palette99::pick(i).to_rgba();
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            let y = 60 + 20 * k as i32;
            legend.draw(&PathElement::new(vec![(4, y), (28, y)], color.stroke_width(3)))?;
            legend.draw(&Text::new(name, (34, y - 7), ("sans-serif", 14)))?;
        }
    }
    root.present()?;
    Ok(())
}

fn label(r: &Row) -> String {
    if r.host_mode == "-" {
        r.scenario.clone()
    } else {
        format!("{} ({})", r.scenario, r.host_mode)
    }
}
