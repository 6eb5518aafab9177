//! The terminal report: per-kernel and per-op tables with 95% CIs and coverage labels.

use std::io::{self, Write};

use wattlens_instrument::footprint::Factors;
use wattlens_instrument::{Attribution, LaunchShape};

use super::units::{energy, joules, pct, power};
use super::{Report, Truth};

/// Write the tables of `report`; with `truth`, add the simulator's true energies beside them.
///
/// # Errors
/// The I/O error of `out`.
pub fn write(out: &mut dyn Write, report: &Report, truth: Option<&Truth>) -> io::Result<()> {
    let sim = if report.simulated { " [simulated]" } else { "" };
    if report.simulated {
        writeln!(
            out,
            "SIMULATED GPU: every number below comes from wattlens' built-in simulated GPU"
        )?;
        writeln!(
            out,
            "(sensor profile {}), not from hardware.",
            report.sensor_profile
        )?;
    }
    writeln!(out, "Energies are dynamic (above idle) with 95% CIs; '< X' means the sensors could not resolve it.")?;
    writeln!(
        out,
        "A kernel or op costs its dynamic energy plus a static share: idle power over its busy time."
    )?;
    if !report.simulated {
        writeln!(out, "Sensor profile: {}", report.sensor_profile)?;
    }
    for d in &report.devices {
        writeln!(out)?;
        match (&d.attribution, &d.problem) {
            (Some(a), _) => {
                device(out, &d.name, a, truth, sim)?;
                requests(out, a, sim)?;
                footprint(out, a, &report.footprint, sim)?;
            }
            (None, Some(p)) => writeln!(
                out,
                "GPU {} ({}){sim}: no attribution: {p}",
                d.index, d.name
            )?,
            (None, None) => {}
        }
    }
    if let Some(job) = &report.job {
        job_lines(out, job, sim)?;
    }
    Ok(())
}

/// Request paths listed in the whole-job view.
const JOB_TOP: usize = 12;

/// The whole job across its GPUs.
fn job_lines(
    out: &mut dyn Write,
    job: &wattlens_instrument::report::JobSummary,
    sim: &str,
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "Whole job{sim}: {} GPUs drew {} (their energy counters; idle {}). Each GPU has its own sensor: intervals add in quadrature.",
        job.gpus,
        energy(&job.energy),
        energy(&job.idle)
    )?;
    let mut requests: Vec<_> = job.requests.iter().filter(|r| r.gpus > 1).collect();
    requests.sort_by(|a, b| b.mean.mj.total_cmp(&a.mean.mj));
    if requests.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "Per request across GPUs (each range path's mean energy per instance, summed over the GPUs whose ranges carry it):"
    )?;
    for r in requests.iter().take(JOB_TOP) {
        writeln!(
            out,
            "  {:<36} {:>3} GPUs {:>6} instances  {:>22}{}",
            clip(&r.path, 36),
            r.gpus,
            r.count,
            energy(&r.mean),
            r.per_token
                .as_ref()
                .map_or(String::new(), |t| format!("  {}/token", energy(t)))
        )?;
    }
    if requests.len() > JOB_TOP {
        writeln!(out, "  ({} more paths in --json)", requests.len() - JOB_TOP)?;
    }
    Ok(())
}

/// A signature's coverage label, marked where it was measured alone.
fn coverage(s: &wattlens_instrument::attribution::SignatureEnergy) -> String {
    let label = s.dynamic.coverage.label();
    if s.alone_launches > 0 {
        format!("{label} [alone]")
    } else {
        label.to_owned()
    }
}

fn device(
    out: &mut dyn Write,
    name: &str,
    a: &Attribution,
    truth: Option<&Truth>,
    sim: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "GPU {} ({name}){sim}: idle power {} [{}], from {} quiet counter windows{}; {} windows with work",
        a.device,
        power(&a.idle_power),
        a.idle_power.coverage.label(),
        a.idle_windows,
        a.idle_source.describe(),
        a.regression_windows
    )?;
    if let Some(after) = &a.idle_after_power {
        writeln!(
            out,
            "  after the work the GPU drew {} while idle (idle + thermal tail)",
            power(after)
        )?;
    }
    writeln!(out)?;
    if a.light {
        return writeln!(
            out,
            "Light mode{sim}: the trace holds NVTX ranges and the sensors' readings, no kernel, copy or memset records; only requests are priced"
        );
    }
    let truth_head = if truth.is_some() {
        format!("  {:>12}", "true (sim)")
    } else {
        String::new()
    };
    signature_table(out, a, truth, (sim, &truth_head))?;
    op_table(out, a, truth, (sim, &truth_head))?;
    region_table(out, a, sim)?;
    replay(out, a, sim)?;
    closure_lines(out, a, sim)
}

/// The per-kernel table, with the simulator's truth beside each row where known.
fn signature_table(
    out: &mut dyn Write,
    a: &Attribution,
    truth: Option<&Truth>,
    (sim, truth_head): (&str, &str),
) -> io::Result<()> {
    writeln!(out, "Energy per kernel{sim}")?;
    writeln!(
        out,
        "{:<26} {:>12} {:>8} {:>10} {:>16} {:>20} {:>18} {:>20} {:<10}{truth_head}",
        "kernel",
        "grid x block",
        "launches",
        "time ms",
        "dyn power",
        "dynamic energy",
        "static share",
        "per launch",
        "coverage"
    )?;
    for s in &a.signatures {
        let t = truth
            .and_then(|t| t.signature_mj(&s.name, &s.kind, s.launch))
            .map_or(String::new(), |mj| format!("  {:>12}", joules(mj)));
        writeln!(
            out,
            "{:<26} {:>12} {:>8} {:>10.2} {:>16} {:>20} {:>18} {:>20} {:<10}{t}",
            clip(&s.name, 26),
            shape(s.launch, &s.kind),
            s.launches,
            s.busy_ns as f64 / 1e6,
            power(&s.dynamic_power),
            energy(&s.dynamic),
            energy(&s.static_share),
            energy(&s.per_launch),
            coverage(s),
        )?;
    }
    let replays: Vec<_> = a
        .signatures
        .iter()
        .filter(|s| s.alone_launches > 0)
        .collect();
    if !replays.is_empty() {
        writeln!(
            out,
            "[alone]: {} signatures' power measured by replaying their first launch alone ({} replays, {:.1} s of the run, not counted above)",
            replays.len(),
            replays.iter().map(|s| s.alone_launches).sum::<u64>(),
            replays.iter().map(|s| s.alone_ns).sum::<u64>() as f64 * 1e-9,
        )?;
    }
    Ok(())
}

/// The per-op-class table, with the simulator's truth beside each row where known.
fn op_table(
    out: &mut dyn Write,
    a: &Attribution,
    truth: Option<&Truth>,
    (sim, truth_head): (&str, &str),
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "Energy per op{sim}")?;
    writeln!(
        out,
        "{:<16} {:>8} {:>10} {:>20} {:>18} {:>7} {:<10}{truth_head}",
        "op", "launches", "time ms", "dynamic energy", "static share", "share", "coverage"
    )?;
    let total: f64 = a.ops.iter().map(|o| o.dynamic.mj + o.static_share.mj).sum();
    for o in &a.ops {
        let t = truth
            .and_then(|t| t.op_mj(o.op_class))
            .map_or(String::new(), |mj| format!("  {:>12}", joules(mj)));
        writeln!(
            out,
            "{:<16} {:>8} {:>10.2} {:>20} {:>18} {:>6.1}% {:<10}{t}",
            o.op_class.label(),
            o.launches,
            o.busy_ns as f64 / 1e6,
            energy(&o.dynamic),
            energy(&o.static_share),
            pct(total, o.dynamic.mj + o.static_share.mj),
            o.dynamic.coverage.label(),
        )?;
    }
    Ok(())
}

/// The costliest regions.
fn region_table(out: &mut dyn Write, a: &Attribution, sim: &str) -> io::Result<()> {
    if !a.regions.is_empty() {
        writeln!(out)?;
        let shown = a.regions.len().min(MAX_REGIONS);
        writeln!(
            out,
            "Energy per region{sim} (top {shown} of {})",
            a.regions.len()
        )?;
        writeln!(
            out,
            "{:<34} {:>8} {:>10} {:>20} {:>18} {:<10}",
            "region", "launches", "time ms", "dynamic energy", "static share", "coverage"
        )?;
        for r in a.regions.iter().take(MAX_REGIONS) {
            writeln!(
                out,
                "{:<34} {:>8} {:>10.2} {:>20} {:>18} {:<10}",
                clip(&r.path, 34),
                r.launches,
                r.busy_ns as f64 / 1e6,
                energy(&r.dynamic),
                energy(&r.static_share),
                r.dynamic.coverage.label(),
            )?;
        }
    }
    Ok(())
}

/// What the fit rests on, the closure against the energy counter, and the measured share.
fn closure_lines(out: &mut dyn Write, a: &Attribution, sim: &str) -> io::Result<()> {
    let c = &a.closure;
    writeln!(out)?;
    writeln!(
        out,
        "Observations{sim}: {} counter windows and {} power samples in the fit; {} spans integrated directly{}",
        a.regression_windows,
        a.regression_samples,
        a.spans
            .iter()
            .filter(|s| s.method == wattlens_instrument::attribution::SpanMethod::Integrated)
            .count(),
        if a.sensor_gaps.is_empty() {
            String::new()
        } else {
            format!(
                "; {} gap(s) in the sensor data (lost samples), nothing inside them is attributed from samples",
                a.sensor_gaps.len()
            )
        }
    )?;
    writeln!(
        out,
        "Closure{sim}: the energy counter measured {} over {:.2} s = idle {} + attributed dynamic {}{} + unattributed {} ({:+.2}%)",
        joules(c.counter_mj),
        c.window_ns as f64 / 1e9,
        joules(c.idle_mj),
        joules(c.dynamic_mj),
        if c.profiler_mj == 0.0 {
            String::new()
        } else {
            format!(
                " + the profiler's own device work (replay checkpoints, replays left out) {}",
                joules(c.profiler_mj)
            )
        },
        joules(c.residual_mj),
        pct(c.counter_mj, c.residual_mj)
    )?;
    writeln!(
        out,
        "Measured{sim}: {:.1}% of kernel busy time and {:.1}% of op-class busy time carry a number labelled measured (95% CI within ±10%){}",
        100.0 * a.measured.kernel_busy,
        100.0 * a.measured.op_busy,
        match (a.board_cap_mw, a.busy_power_seen_mw) {
            (Some(cap), Some(seen)) if seen >= cap => format!(
                "; no bound exceeds {:.0} W, the most the counter measured above idle per busy second (past the board's power limit less idle: the limiter acts on a longer average, and the GPU idles between kernels)",
                cap / 1000.0
            ),
            (Some(cap), _) => format!(
                "; no bound exceeds the board's power limit less idle, {:.0} W",
                cap / 1000.0
            ),
            (None, _) => String::new(),
        }
    )?;
    if a.replay.is_none() && !a.light && a.measured.kernel_busy < REPLAY_HINT_BELOW {
        writeln!(
            out,
            "  kernels that always run together cannot be told apart by the power sensors: `wattlens run --replay -- CMD` measures each heavy signature alone (about 0.45 s each, within --replay-budget, {} s by default; the program's results do not change)",
            wattlens_inject_config::DEFAULT_REPLAY_BUDGET_MS / 1000
        )?;
    }
    Ok(())
}

/// Below this share of kernel busy time measured, a run without kernel replay is told how to
/// measure the rest.
const REPLAY_HINT_BELOW: f64 = 0.9;

/// What recording cost the program, and what that means for the request energies.
fn profiler_cost(
    out: &mut dyn Write,
    c: &wattlens_instrument::attribution::profiler_cost::ProfilerCost,
    sim: &str,
) -> io::Result<()> {
    if c.callbacks == 0 && c.records == 0 {
        return Ok(());
    }
    let records = if c.records == 0 {
        "no activity records".to_owned()
    } else {
        format!(
            "CUPTI's {} records an estimated {:.1} ms ({:.2} µs each, measured on an H100; other GPUs differ)",
            c.records,
            c.record_ns * 1e-6,
            wattlens_instrument::attribution::profiler_cost::CUPTI_RECORD_COST_NS * 1e-3
        )
    };
    writeln!(
        out,
        "Profiler's cost{sim}: its callbacks took {:.1} ms of the program's threads ({} calls, measured), {records}: the program ran an estimated {:.1}% slower, and each request is charged without its share of that time",
        c.callback_ns as f64 * 1e-6,
        c.callbacks,
        100.0 * c.slowdown()
    )
}

/// Range paths listed in the request table; the JSON report has them all.
const MAX_RANGES: usize = 12;
/// Single requests listed, the most costly first; the JSON and CSV reports have them all.
const TOP_REQUESTS: usize = 5;

/// Energy per request: per range path, and the costliest instances.
fn requests(out: &mut dyn Write, a: &Attribution, sim: &str) -> io::Result<()> {
    let r = &a.requests;
    if r.ranges.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "Energy per request{sim} (top {} of {} ranges)",
        r.ranges.len().min(MAX_RANGES),
        r.ranges.len()
    )?;
    writeln!(
        out,
        "{}",
        wattlens_instrument::attribution::REQUEST_DEFINITION
    )?;
    if a.light {
        writeln!(
            out,
            "{}",
            wattlens_instrument::attribution::LIGHT_DEFINITION
        )?;
    }
    profiler_cost(out, &a.profiler_cost, sim)?;
    writeln!(
        out,
        "{:<30} {:>7} {:>9} {:>18} {:>18} {:>18} {:>8} {:>18}  split",
        "range", "count", "wall s", "mean", "p50", "p90", "tokens", "per token"
    )?;
    for g in r.ranges.iter().take(MAX_RANGES) {
        writeln!(
            out,
            "{:<30} {:>7} {:>9.3} {:>18} {:>18} {:>18} {:>8} {:>18}  {}",
            clip(&g.path, 30),
            g.count,
            g.wall_ns as f64 * 1e-9,
            energy(&g.mean),
            energy(&g.p50),
            energy(&g.p90),
            g.tokens.map_or("-".to_owned(), |t| t.to_string()),
            g.per_token.as_ref().map_or("-".to_owned(), energy),
            g.split.describe()
        )?;
    }
    let mut top: Vec<_> = r.instances.iter().collect();
    top.sort_by(|x, y| y.total.mj.total_cmp(&x.total.mj));
    writeln!(out, "Costliest requests{sim}:")?;
    for e in top.iter().take(TOP_REQUESTS) {
        writeln!(
            out,
            "  {:<30} span {:>8}  wall {:>9.2} ms  tokens {:>6}  {} (dynamic {}, idle {})",
            clip(&e.path, 30),
            e.span,
            (e.end_ns - e.start_ns) as f64 * 1e-6,
            e.tokens.map_or("-".to_owned(), |t| t.to_string()),
            energy(&e.total),
            energy(&e.dynamic),
            energy(&e.idle)
        )?;
    }
    Ok(())
}

/// The footprint of the run's GPU energy, per range and per token, for the factors set.
fn footprint(out: &mut dyn Write, a: &Attribution, f: &Factors, sim: &str) -> io::Result<()> {
    if !f.any() {
        return Ok(());
    }
    writeln!(out)?;
    let mut factors = Vec::new();
    if let Some(p) = f.pue {
        factors.push(format!("PUE {p}"));
    }
    if let Some(c) = f.carbon_g_per_kwh {
        factors.push(format!("{c} g CO2e/kWh"));
    }
    if let Some(w) = f.wue_l_per_kwh {
        factors.push(format!("WUE {w} L/kWh"));
    }
    writeln!(
        out,
        "Footprint{sim} ({}; the GPU only, not the host's CPUs, memory or network):",
        factors.join(", ")
    )?;
    let line = |label: &str, mj: f64| -> String {
        let fp = f.of(mj);
        let mut parts = vec![format!("{} GPU", sig(fp.gpu_wh, "Wh"))];
        if let Some(x) = fp.facility_wh {
            parts.push(format!("{} at the facility", sig(x, "Wh")));
        }
        if let Some(x) = fp.co2e_g {
            parts.push(format!("{} CO2e", sig(x, "g")));
        }
        if let Some(x) = fp.water_l {
            parts.push(format!("{} of water", sig(x, "L")));
        }
        format!("  {label:<38} {}", parts.join(", "))
    };
    writeln!(out, "{}", line("the run (counter)", a.closure.counter_mj))?;
    for g in a.requests.ranges.iter().take(MAX_RANGES) {
        writeln!(
            out,
            "{}",
            line(&format!("per {}", clip(&g.path, 30)), g.mean.mj)
        )?;
        if let Some(t) = &g.per_token {
            writeln!(
                out,
                "{}",
                line(&format!("per token of {}", clip(&g.path, 24)), t.mj)
            )?;
        }
    }
    Ok(())
}

/// `x` with three significant digits and `unit`, in plain or scientific notation.
fn sig(x: f64, unit: &str) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("0 {unit}");
    }
    let e = x.abs().log10().floor() as i32;
    if (-3..6).contains(&e) {
        let decimals = (2 - e).max(0) as usize;
        format!("{x:.decimals$} {unit}")
    } else {
        format!("{x:.2e} {unit}")
    }
}

/// Signatures left unreplayed listed in the table; the JSON report has them all.
const MAX_REPLAY_NOTES: usize = 8;

/// What kernel replay measured, cost and left out, and its closure against the program.
fn replay(out: &mut dyn Write, a: &Attribution, sim: &str) -> io::Result<()> {
    let Some(r) = &a.replay else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "Kernel replay{sim}: {} signatures replayed alone ({:.1}% of the program's busy time), {} bursts of {:.1} s in all; replay held the program {:.1} s",
        r.signatures,
        100.0 * r.replayed_busy_share,
        r.bursts,
        r.burst_ns as f64 * 1e-9,
        r.held_ns as f64 * 1e-9
    )?;
    match &r.closure {
        Some(c) => writeln!(
            out,
            "Replay closure{sim}: over {:.1} s of the program's steady stretches, replayed powers predict {} of the {} the counter measured above idle, less {} to {} for the work not replayed: ratio {:.3} [{:.3}, {:.3}]; replayed kernels' intervals carry ±{:.1}% for it",
            c.window_ns as f64 * 1e-9,
            joules(c.predicted_by_replays_mj),
            joules(c.measured_mj),
            if c.unreplayed_low_mj > 0.0 {
                joules(c.unreplayed_low_mj)
            } else {
                "0 J".to_owned()
            },
            joules(c.unreplayed_high_mj),
            c.ratio,
            c.ratio_low,
            c.ratio_high,
            100.0 * c.systematic
        )?,
        None => writeln!(
            out,
            "Replay closure{sim}: not checked (no counter window of the program's own work, free of replays, holds replayed kernels, or the work not replayed there could have drawn all of it)"
        )?,
    }
    for n in r.notes.iter().take(MAX_REPLAY_NOTES) {
        writeln!(
            out,
            "  {} ({}, {:.1}% of busy time): {}",
            clip(&n.name, 40),
            shape(n.launch, "kernel"),
            100.0 * n.busy_share,
            n.outcome
        )?;
    }
    if r.notes.len() > MAX_REPLAY_NOTES {
        writeln!(
            out,
            "  … and {} more signatures not replayed (all in the JSON report)",
            r.notes.len() - MAX_REPLAY_NOTES
        )?;
    }
    Ok(())
}

/// Regions listed in the table; the JSON report has them all.
const MAX_REGIONS: usize = 15;

fn shape(launch: Option<LaunchShape>, kind: &str) -> String {
    match launch {
        Some(l) => format!("{}x{}", l.blocks(), l.threads_per_block()),
        None => kind.to_owned(),
    }
}

/// `s` cut to `n` characters, its end marked `~`.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}
