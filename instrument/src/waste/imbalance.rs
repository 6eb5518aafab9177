//! Load imbalance across ranks, in a job of several GPUs: NCCL runs collectives in the same
//! order on every rank, and a collective ends on every rank once the last has joined it, so
//! a rank that reaches its k-th collective early spins in the kernel until the last one starts
//! its own. That wait is the waste: priced at what the waiting GPU drew in it (the collective
//! kernel's dynamic power over the wait, and idle power), on the waiting GPU.
//!
//! The ranks' spans are on one timeline: processes on one host read one host clock, and each
//! maps CUPTI's timestamps onto it.

use std::collections::HashMap;

use super::{Finding, WasteKind};
use crate::attribution::{op_class_of, Attribution, EnergyEstimate};
use crate::intervals::Interval;
use crate::trace::{OpClass, SpanKind, Trace};

/// Waits shorter than this are not counted: clock alignment across processes and launch
/// jitter reach a few µs.
pub const MIN_WAIT_NS: u64 = 10_000;

/// One collective kernel of one rank.
#[derive(Debug, Clone, Copy)]
struct Collective {
    /// Index of its span in the trace.
    span: usize,
    /// Its start, ns.
    start_ns: u64,
    /// Its end, ns.
    end_ns: u64,
}

/// One device's collectives, in start order.
fn collectives(trace: &Trace, device: u32) -> Vec<Collective> {
    let mut out: Vec<Collective> = trace
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.device == device && s.kind == SpanKind::Kernel)
        .filter(|(_, s)| {
            op_class_of(trace, trace.str(s.name), s.kind.label()) == OpClass::Communication
        })
        .map(|(i, s)| Collective {
            span: i,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
        })
        .collect();
    out.sort_by_key(|c| c.start_ns);
    out
}

/// The load-imbalance finding of each device of `attributions` that waited in collectives,
/// with its device index. Nothing for fewer than two devices with collectives.
pub fn detect(trace: &Trace, attributions: &[&Attribution]) -> Vec<(u32, Finding)> {
    let ranks: Vec<(&Attribution, Vec<Collective>)> = attributions
        .iter()
        .map(|a| (*a, collectives(trace, a.device)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if ranks.len() < 2 {
        return Vec::new();
    }
    let matched = ranks.iter().map(|(_, c)| c.len()).min().unwrap_or(0);
    let mut findings = Vec::new();
    for (a, own) in &ranks {
        let energy_of: HashMap<u64, &crate::attribution::SpanEnergy> =
            a.spans.iter().map(|e| (e.span, e)).collect();
        let idle = &a.idle_power;
        let zero = EnergyEstimate::from_half_width(0.0, 0.0);
        let (mut energy, mut time_ns, mut waits) = (zero, 0u64, 0u64);
        let (mut spans, mut intervals) = (Vec::new(), Vec::new());
        for (k, c) in own.iter().enumerate().take(matched) {
            let (i, start, end) = (c.span, c.start_ns, c.end_ns);
            let last = ranks
                .iter()
                .map(|(_, c)| c[k].start_ns)
                .max()
                .unwrap_or(start);
            let wait = last.saturating_sub(start).min(end.saturating_sub(start));
            if wait < MIN_WAIT_NS {
                continue;
            }
            let span = &trace.spans[i];
            let share = wait as f64 / span.duration_ns().max(1) as f64;
            let dynamic = energy_of
                .get(&span.id)
                .map_or(zero, |e| e.dynamic.scaled(share));
            let wait_s = wait as f64 * 1e-9;
            let static_part = EnergyEstimate::from_half_width(
                idle.mw * wait_s,
                (idle.high_mw - idle.low_mw) / 2.0 * wait_s,
            );
            energy = energy.plus_correlated(&dynamic.plus_correlated(&static_part));
            time_ns += wait;
            waits += 1;
            spans.push(span.id);
            intervals.push(Interval::new(start, start + wait));
        }
        if waits == 0 {
            continue;
        }
        let name = trace.str(trace.spans[own[0].span].name).to_owned();
        findings.push((
            a.device,
            Finding {
                kind: WasteKind::LoadImbalance,
                energy,
                time_ns,
                run_saved_ns: None,
                occurrences: waits,
                what: format!("waiting in collectives for slower ranks ({name})"),
                region: String::new(),
                site: String::new(),
                wasted_spans: spans.clone(),
                spans,
                buffers: Vec::new(),
                idle_intervals: intervals,
                proof: format!(
                    "in {waits} of {matched} collectives this GPU started its collective kernel before the last rank started its own, {:.1} µs earlier on average, and spun until it did (the k-th collective of every rank is one collective: NCCL runs them in the same order everywhere)",
                    time_ns as f64 / waits as f64 / 1e3
                ),
                fix: "balance the ranks' work before each collective (the slowest rank sets the pace): even shards, the same batch per rank, no host work on one rank only".into(),
            },
        ));
    }
    findings
}
