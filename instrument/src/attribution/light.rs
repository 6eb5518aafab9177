//! Requests of a light trace (`wattlens run --light`: NVTX ranges and the sensors, no work
//! records). A request still costs the energy the GPU drew over its window; with no kernels to
//! price, the energy counter prices the windows directly.
//!
//! Per nesting depth, the counter windows inside the ranges' stretch are regressed on the
//! instance-seconds each range path holds in them, the seconds no range of that depth holds
//! priced at the idle power measured outside the ranges: `E_w − P_idle · g_w = Σ_k P_k · t_kw`.
//! `P_k` is the GPU's mean power while an instance of path `k` runs (idle included), so an
//! instance costs `P_k` × its wall time, and the fit's covariance gives the interval. Counter
//! windows are exact integrals, so a request shorter than a window is priced without bias when
//! its kind recurs in windows of different mixes; a single window's uniform split would charge
//! it its neighbours' power. The stretches between requests are short (the host's time between
//! them): a free power for them is barely determined and took energy from the requests' powers
//! in the simulator (−1.6% and −5.4%), so they are held at idle, and the interval assumes so.
//!
//! Instances of one path that overlap hold the GPU together: each instance-second costs
//! `P_k`, which splits a shared stretch equally.

use std::collections::BTreeMap;

use super::linalg::{cholesky_inverse, cholesky_solve, t95, Square};
use super::requests::{
    instances_by_path, overlapping, summarize, Instance, RequestEnergy, RequestReport, SplitRule,
};
use super::EnergyEstimate;
use crate::intervals::Interval;
use crate::power::CounterWindow;
use crate::trace::Trace;

/// How a light trace prices a request, for every report of one.
pub const LIGHT_DEFINITION: &str = "Light mode (ranges and sensors only): each range path's mean power while an instance runs is fitted from the energy counter's windows (idle included; the time between requests held at the idle power measured outside them), and an instance costs that power × its wall time; the part above the idle power measured outside the ranges is its dynamic energy. Its interval is the fit's, which assumes each path draws one mean power. No kernel or op is priced.";

/// The requests of a trace without work records, priced from `windows` (the counter's); the
/// idle part of each is `idle_mw` (and its 95% half-width) over its wall time, the rest
/// dynamic.
pub(crate) fn requests(
    trace: &Trace,
    windows: &[CounterWindow],
    (idle_mw, idle_half_mw): (f64, f64),
) -> RequestReport {
    let by_path = instances_by_path(trace);
    let mut by_depth: BTreeMap<usize, Vec<(String, Vec<Instance>)>> = BTreeMap::new();
    for (path, instances) in by_path {
        by_depth
            .entry(path.matches('/').count())
            .or_default()
            .push((path, instances));
    }
    let mut report = RequestReport::default();
    for (_, paths) in by_depth {
        let powers = powers_with_edge_error(&paths, windows, idle_mw);
        for ((path, instances), power) in paths.into_iter().zip(powers) {
            let split = if overlapping(&instances) {
                SplitRule::Equal
            } else {
                SplitRule::Alone
            };
            let priced = |wall_s: f64| match power {
                Some((mw, half_mw)) => {
                    EnergyEstimate::from_half_width(mw * wall_s, half_mw * wall_s)
                }
                None => EnergyEstimate::uncovered(),
            };
            let idle = |wall_s: f64| {
                EnergyEstimate::from_half_width(idle_mw * wall_s, idle_half_mw * wall_s)
            };
            let entries: Vec<RequestEnergy> = instances
                .iter()
                .map(|i| {
                    let wall_s = (i.end_ns - i.start_ns) as f64 * 1e-9;
                    let total = priced(wall_s);
                    RequestEnergy {
                        span: i.span,
                        path: path.clone(),
                        start_ns: i.start_ns,
                        end_ns: i.end_ns,
                        tokens: i.tokens,
                        held_ns: 0,
                        dynamic: above(&total, &idle(wall_s)),
                        idle: idle(wall_s),
                        total,
                    }
                })
                .collect();
            let wall_s: f64 = entries
                .iter()
                .map(|e| (e.end_ns - e.start_ns) as f64 * 1e-9)
                .sum();
            let path_total = priced(wall_s);
            let dynamic = above(&path_total, &idle(wall_s));
            let mut row = summarize(path, &entries, (dynamic, idle(wall_s)), split);
            // The path's interval is the fit's, not the sum of its parts' half-widths.
            row.total = path_total;
            row.mean = path_total.scaled(1.0 / row.count.max(1) as f64);
            row.per_token = row.tokens.map(|t| path_total.scaled(1.0 / t as f64));
            report.ranges.push(row);
            report.instances.extend(entries);
        }
    }
    report.sorted()
}

/// `total − idle`: what the request drew above idle, with the two half-widths added.
fn above(total: &EnergyEstimate, idle: &EnergyEstimate) -> EnergyEstimate {
    if total.coverage == super::Coverage::Uncovered {
        return EnergyEstimate::uncovered();
    }
    EnergyEstimate::from_half_width(
        (total.mj - idle.mj).max(0.0),
        total.half_mj() + idle.half_mj(),
    )
}

/// [`fit_powers`], with the interval widened by what the counter windows' edge placement can
/// move the fit: refitted with every edge shifted a standard uncertainty earlier and later,
/// the farther result's distance is added to the half-width. (A misplaced edge moves energy
/// between neighbouring stretches, which the fit's scatter does not show as a bias.)
fn powers_with_edge_error(
    paths: &[(String, Vec<Instance>)],
    windows: &[CounterWindow],
    idle_mw: f64,
) -> Vec<Option<(f64, f64)>> {
    let centre = fit_powers(paths, windows, idle_mw);
    let n = windows.len().max(1) as f64;
    let sd_ns = (windows.iter().map(|w| w.edge_sd_ns).sum::<f64>() / n).round() as i64;
    let shifted = |by: i64| -> Vec<Option<(f64, f64)>> {
        let moved: Vec<CounterWindow> = windows
            .iter()
            .map(|w| CounterWindow {
                start_ns: w.start_ns.saturating_add_signed(by),
                end_ns: w.end_ns.saturating_add_signed(by),
                ..*w
            })
            .collect();
        fit_powers(paths, &moved, idle_mw)
    };
    let (early, late) = (shifted(-sd_ns), shifted(sd_ns));
    centre
        .into_iter()
        .enumerate()
        .map(|(k, c)| {
            let (mw, half) = c?;
            let moved = [&early, &late]
                .iter()
                .filter_map(|v| v.get(k).copied().flatten())
                .map(|(m, _)| (m - mw).abs())
                .fold(0.0, f64::max);
            Some((mw, half + moved))
        })
        .collect()
}

/// Each path's mean power while an instance runs, mW, with its 95% half-width, fitted over the
/// counter windows that lie inside the stretch from the first instance's start to the last
/// one's end, the time between instances at `idle_mw`; `None` for every path when the fit is
/// not determined (no more windows than paths, or paths no window tells apart).
fn fit_powers(
    paths: &[(String, Vec<Instance>)],
    windows: &[CounterWindow],
    idle_mw: f64,
) -> Vec<Option<(f64, f64)>> {
    let p = paths.len();
    let none = vec![None; p];
    let lo = paths
        .iter()
        .flat_map(|(_, v)| v.iter().map(|i| i.start_ns))
        .min();
    let hi = paths
        .iter()
        .flat_map(|(_, v)| v.iter().map(|i| i.end_ns))
        .max();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return none;
    };
    let held = crate::intervals::union(
        paths
            .iter()
            .flat_map(|(_, v)| v.iter().map(|i| Interval::new(i.start_ns, i.end_ns)))
            .collect(),
    );
    let rows: Vec<(Vec<f64>, f64)> = windows
        .iter()
        .filter(|w| w.start_ns >= lo && w.end_ns <= hi && w.end_ns > w.start_ns)
        .map(|w| {
            let x: Vec<f64> = paths
                .iter()
                .map(|(_, instances)| {
                    instances
                        .iter()
                        .map(|i| overlap_s(i.start_ns, i.end_ns, w))
                        .sum()
                })
                .collect();
            let in_ranges: f64 = held.iter().map(|i| overlap_s(i.from_ns, i.to_ns, w)).sum();
            let gap_s = ((w.end_ns - w.start_ns) as f64 * 1e-9 - in_ranges).max(0.0);
            (x, w.energy_mj as f64 - idle_mw * gap_s)
        })
        .collect();
    let n = rows.len();
    if n <= p {
        return none;
    }
    let mut xtx = Square::zeros(p);
    let mut xty = vec![0.0; p];
    for (x, y) in &rows {
        for i in 0..p {
            xty[i] += x[i] * y;
            for j in 0..p {
                xtx.a[i * p + j] += x[i] * x[j];
            }
        }
    }
    let Some(l) = xtx.cholesky() else {
        return none;
    };
    let beta = cholesky_solve(&l, p, &xty);
    let inv = cholesky_inverse(&l, p);
    let dof = n - p;
    let ssr: f64 = rows
        .iter()
        .map(|(x, y)| {
            let fit: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
            (y - fit).powi(2)
        })
        .sum();
    // The counter's 1 mJ steps bound the scatter from below.
    let s2 = (ssr / dof as f64).max(1.0 / 12.0);
    let t = t95(dof);
    (0..p)
        .map(|i| {
            let var = s2 * inv.at(i, i);
            (beta[i] > 0.0 && var.is_finite()).then(|| (beta[i], t * var.sqrt()))
        })
        .collect()
}

/// Seconds of `[a, b]` inside window `w`.
fn overlap_s(a: u64, b: u64, w: &CounterWindow) -> f64 {
    b.min(w.end_ns).saturating_sub(a.max(w.start_ns)) as f64 * 1e-9
}
