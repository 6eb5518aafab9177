//! The HTML report (`wattlens report --html FILE`): one self-contained file that works offline.
//! Its charts are drawn by uPlot, vendored at build time (`build.rs`) and inlined with its
//! licence; the data goes in as JSON, reduced here so that a trace of a million spans still
//! draws at once: the timeline is cut into at most [`TIMELINE_BINS`] bins, and the kernel
//! table keeps the costliest [`TOP_KERNELS`].
//!
//! - a power timeline: NVML samples, the energy counter's power per window, and the attributed
//!   power stacked by op class over idle, with each op class's busy share under it (the kernel
//!   lanes, binned); the two zoom together;
//! - energy per op class, per kernel and per request path as bars with their 95% CI whiskers;
//!   a bound is drawn as a dashed bound, never as a bar;
//! - regions as an icicle; waste findings as sorted bars with their fixes;
//! - a measurement-quality panel: closure, the share of busy time measured, the sensor profile,
//!   idle power, the replay closure and the profiler's own cost.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};
use wattlens_instrument::power::counter_windows;
use wattlens_instrument::trace::Trace;
use wattlens_instrument::{Attribution, Coverage, EnergyEstimate};

use super::{DeviceReport, Report};

/// Bins of the power timeline at most.
pub const TIMELINE_BINS: usize = 2000;
/// Kernel signatures charted, costliest first.
pub const TOP_KERNELS: usize = 25;

const UPLOT_JS: &str = include_str!(concat!(
    env!("WATTLENS_UPLOT_DIR"),
    "/package/dist/uPlot.iife.min.js"
));
const UPLOT_CSS: &str = include_str!(concat!(
    env!("WATTLENS_UPLOT_DIR"),
    "/package/dist/uPlot.min.css"
));
const UPLOT_LICENSE: &str = include_str!(concat!(env!("WATTLENS_UPLOT_DIR"), "/package/LICENSE"));
const PAGE_JS: &str = include_str!("html_page.js");
const PAGE_CSS: &str = include_str!("html_page.css");

/// Why this build cannot write the HTML report, if it cannot: its charting library could not
/// be vendored when it was built.
pub fn unavailable() -> Option<&'static str> {
    option_env!("WATTLENS_UPLOT_MISSING")
}

/// Write the HTML report of `trace` and its `report`.
///
/// # Errors
/// The I/O error of `out`.
pub fn write(out: &mut dyn Write, trace: &Trace, report: &Report) -> io::Result<()> {
    let data = page_data(trace, report);
    // `</` cannot appear inside the script element that carries the data.
    let data = data.to_string().replace("</", "<\\/");
    let title = format!(
        "wattlens: {}",
        escape(&report.command.join(" "))
            .chars()
            .take(120)
            .collect::<String>()
    );
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\n<style>{UPLOT_CSS}\n{PAGE_CSS}</style></head>\n<body data-status=\"loading\">\n\
         <div id=\"wl-errors\"></div><div id=\"wl-root\"></div>\n\
         <script id=\"wl-data\" type=\"application/json\">{data}</script>\n\
         <script>/* uPlot {version}, vendored from the npm registry.\n{UPLOT_LICENSE}*/\n{UPLOT_JS}</script>\n\
         <script>{PAGE_JS}</script>\n</body></html>\n",
        version = env!("WATTLENS_UPLOT_VERSION"),
    )
}

/// HTML-escape `s` for text content.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Everything the page draws, as JSON.
fn page_data(trace: &Trace, report: &Report) -> Value {
    json!({
        "command": report.command.join(" "),
        "host": report.host,
        "simulated": report.simulated,
        "sensor_profile": report.sensor_profile,
        "spans": report.spans,
        "devices": report
            .devices
            .iter()
            .map(|d| device_data(trace, d))
            .collect::<Vec<_>>(),
    })
}

/// One estimate as the page reads it: value, interval, coverage; mJ.
fn est(e: &EnergyEstimate) -> Value {
    json!({"mj": e.mj, "low": e.low_mj, "high": e.high_mj, "coverage": e.coverage.label()})
}

/// Dynamic plus static, the cost the tables name.
fn cost(dynamic: &EnergyEstimate, static_share: &EnergyEstimate) -> Value {
    let bound = dynamic.coverage == Coverage::Unresolved;
    json!({
        "mj": dynamic.mj + static_share.mj,
        "low": dynamic.low_mj + static_share.low_mj,
        "high": dynamic.high_mj + static_share.high_mj,
        "coverage": if bound { "unresolved" } else { dynamic.coverage.label() },
    })
}

fn device_data(trace: &Trace, d: &DeviceReport) -> Value {
    let Some(a) = &d.attribution else {
        return json!({"index": d.index, "name": d.name, "problem": d.problem});
    };
    let mut kernels: Vec<_> = a.signatures.iter().collect();
    kernels.sort_by(|x, y| {
        (y.dynamic.high_mj + y.static_share.mj).total_cmp(&(x.dynamic.high_mj + x.static_share.mj))
    });
    let findings: Vec<Value> = d
        .waste
        .iter()
        .flat_map(|w| &w.findings)
        .map(|f| {
            json!({"kind": f.kind.label(), "what": f.what, "energy": est(&f.energy),
                   "times": f.occurrences, "fix": f.fix})
        })
        .collect();
    json!({
        "index": d.index,
        "name": d.name,
        "quality": quality(a),
        "timeline": timeline(trace, a),
        "ops": a.ops.iter().map(|o| json!({
            "name": o.op_class.label(), "cost": cost(&o.dynamic, &o.static_share),
            "busy_ms": o.busy_ns as f64 * 1e-6})).collect::<Vec<_>>(),
        "kernels": kernels.iter().take(TOP_KERNELS).map(|s| json!({
            "name": s.name, "kind": s.kind,
            "op": s.op_class.label(), "launches": s.launches,
            "cost": cost(&s.dynamic, &s.static_share)})).collect::<Vec<_>>(),
        "requests": a.requests.ranges.iter().map(|g| json!({
            "name": g.path, "count": g.count, "mean": est(&g.mean)})).collect::<Vec<_>>(),
        "regions": a.regions.iter().map(|r| json!({
            "path": r.path, "cost": cost(&r.dynamic, &r.static_share)})).collect::<Vec<_>>(),
        "waste": findings,
    })
}

/// The measurement-quality panel's numbers.
fn quality(a: &Attribution) -> Value {
    let c = &a.closure;
    json!({
        "counter_j": c.counter_mj * 1e-3,
        "idle_j": c.idle_mj * 1e-3,
        "dynamic_j": c.dynamic_mj * 1e-3,
        "profiler_j": c.profiler_mj * 1e-3,
        "residual_pct": if c.counter_mj > 0.0 { 100.0 * c.residual_mj / c.counter_mj } else { 0.0 },
        "kernel_measured_pct": 100.0 * a.measured.kernel_busy,
        "op_measured_pct": 100.0 * a.measured.op_busy,
        "idle_w": a.idle_power.mw * 1e-3,
        "idle_half_w": (a.idle_power.high_mw - a.idle_power.low_mw) * 0.5e-3,
        "replay_closure": a.replay.as_ref().and_then(|r| r.closure).map(|c| json!({
            "ratio": c.ratio, "low": c.ratio_low, "high": c.ratio_high})),
        "profiler_slowdown_pct": 100.0 * a.profiler_cost.slowdown(),
    })
}

/// The power timeline of `a`'s device, binned.
fn timeline(trace: &Trace, a: &Attribution) -> Value {
    let device = a.device;
    let (mut t0, mut t1) = (u64::MAX, 0u64);
    let mut widen = |a: u64, b: u64| {
        t0 = t0.min(a);
        t1 = t1.max(b);
    };
    // NVML samples in W, and the counter's windows between its steps (never between two
    // reads of one step).
    let samples: Vec<(u64, f64)> = wattlens_instrument::attribution::samples_of(trace, device)
        .into_iter()
        .map(|(t, mw)| (t, mw * 1e-3))
        .collect();
    let windows = counter_windows(
        &trace.power,
        device,
        trace.meta.sensor_profile.counter_period_ns,
    );
    for &(t, _) in &samples {
        widen(t, t);
    }
    for w in &windows {
        widen(w.start_ns, w.end_ns);
    }
    let spans = &trace.spans;
    for s in spans
        .iter()
        .filter(|s| s.device == device && s.is_program_work())
    {
        widen(s.start_ns, s.end_ns);
    }
    if t1 <= t0 {
        return json!(null);
    }
    let n = TIMELINE_BINS;
    let bin_ns = ((t1 - t0) as f64 / n as f64).max(1.0);
    let bin_of = |t: u64| (((t.saturating_sub(t0)) as f64 / bin_ns) as usize).min(n - 1);
    // Each interval's share of each bin it overlaps, as (bin, ns).
    let spread = |a: u64, b: u64, f: &mut dyn FnMut(usize, f64)| {
        let (first, last) = (bin_of(a), bin_of(b));
        for k in first..=last {
            let lo = t0 as f64 + k as f64 * bin_ns;
            let ns = (b as f64).min(lo + bin_ns) - (a as f64).max(lo);
            if ns > 0.0 {
                f(k, ns);
            }
        }
    };
    let mut sample_sum = vec![(0.0f64, 0u32); n];
    for &(t, w) in &samples {
        let k = bin_of(t);
        sample_sum[k].0 += w;
        sample_sum[k].1 += 1;
    }
    let mut counter_w_ns = vec![0.0f64; n];
    let mut counter_ns = vec![0.0f64; n];
    for w in windows.iter().filter(|w| w.end_ns > w.start_ns) {
        let watts = w.power_w();
        spread(w.start_ns, w.end_ns, &mut |k, ns| {
            counter_w_ns[k] += watts * ns;
            counter_ns[k] += ns;
        });
    }
    // Attributed dynamic energy and busy time by op class, per bin.
    let energy: std::collections::HashMap<u64, f64> =
        a.spans.iter().map(|s| (s.span, s.dynamic.mj)).collect();
    let mut classes = super::SpanClasses::new(trace);
    let mut by_class: BTreeMap<&'static str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for s in spans
        .iter()
        .filter(|s| s.device == device && s.is_program_work())
    {
        let class = classes.of(s).label();
        let (mj, busy) = by_class
            .entry(class)
            .or_insert_with(|| (vec![0.0; n], vec![0.0; n]));
        let e = energy.get(&s.id).copied().unwrap_or(0.0);
        let d = s.duration_ns().max(1) as f64;
        spread(s.start_ns, s.end_ns.max(s.start_ns + 1), &mut |k, ns| {
            mj[k] += e * ns / d;
            busy[k] += ns;
        });
    }
    let bin_ms = bin_ns * 1e-6;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let idle_w = a.idle_power.mw * 1e-3;
    let mut stacked = vec![idle_w; n];
    let mut layers = Vec::new();
    for (class, (mj, busy)) in &by_class {
        for k in 0..n {
            stacked[k] += mj[k] / bin_ms;
        }
        layers.push(json!({
            "name": class,
            "top_w": stacked.iter().map(|&w| round(w)).collect::<Vec<_>>(),
            "busy": busy.iter().map(|&b| round(b / bin_ns)).collect::<Vec<_>>(),
        }));
    }
    json!({
        "t_s": (0..n).map(|k| ((k as f64 + 0.5) * bin_ns * 1e-3).round() * 1e-6).collect::<Vec<_>>(),
        "sample_w": sample_sum.iter().map(|&(s, c)| (c > 0).then(|| round(s / f64::from(c)))).collect::<Vec<_>>(),
        "counter_w": counter_w_ns.iter().zip(&counter_ns).map(|(&e, &ns)| (ns > 0.0).then(|| round(e / ns))).collect::<Vec<_>>(),
        "idle_w": round(idle_w),
        "layers": layers,
    })
}
