//! Idle gaps: stretches where the device ran nothing between two pieces of work, priced at the
//! measured idle power. The cause is read off the trace: a host synchronisation that ended
//! just before the gap, a read-back to the host, or otherwise launch latency and host work.

use super::{Context, Occurrence, WasteConfig, WasteKind, Wasted};
use crate::trace::{CopyDirection, Span, SpanKind};

pub(super) fn detect(cx: &Context<'_>, config: &WasteConfig, out: &mut Vec<Occurrence>) {
    let syncs: Vec<&Span> = cx
        .trace
        .spans
        .iter()
        .filter(|s| s.device == cx.device && s.kind == SpanKind::Sync)
        .collect();
    let mut busy_until = 0u64;
    let mut last: Option<&Span> = None;
    for s in &cx.work {
        if let Some(prev) = last {
            // Time the profiler held the program up is not the program's idle time.
            let gap_ns = s
                .start_ns
                .saturating_sub(busy_until)
                .saturating_sub(cx.overhead_within(busy_until, s.start_ns));
            if gap_ns >= config.min_idle_gap_ns && !cx.is_charged(s.id) {
                out.push(gap(cx, (busy_until, s.start_ns), gap_ns, (prev, s), &syncs));
            }
        }
        if s.end_ns >= busy_until {
            busy_until = s.end_ns;
            last = Some(s);
        }
    }
}

/// Device idle time inside gaps between work that the profiler's own overhead caused, ns.
pub(super) fn profiler_idle_ns(cx: &Context<'_>) -> u64 {
    let mut busy_until: Option<u64> = None;
    let mut total = 0;
    for s in &cx.work {
        if let Some(b) = busy_until {
            if s.start_ns > b {
                total += cx.overhead_within(b, s.start_ns);
            }
        }
        busy_until = Some(busy_until.map_or(s.end_ns, |b| b.max(s.end_ns)));
    }
    total
}

/// The occurrence for the gap `(from, to)` after `prev` and before `next`, of which `gap_ns`
/// is the program's (the rest was the profiler's overhead).
fn gap(
    cx: &Context<'_>,
    (from, to): (u64, u64),
    gap_ns: u64,
    (prev, next): (&Span, &Span),
    syncs: &[&Span],
) -> Occurrence {
    let (mw, low, high) = cx.idle_mw;
    let energy = (
        mw * gap_ns as f64 * 1e-9,
        low * gap_ns as f64 * 1e-9,
        high * gap_ns as f64 * 1e-9,
    );
    // A wait that ended inside the gap: the host learned the GPU was done, then issued late.
    let sync = syncs
        .iter()
        .filter(|s| s.end_ns >= from && s.end_ns <= to)
        .max_by_key(|s| s.end_ns);
    let (what, anchor, fix) = match (sync, prev.kind) {
        (Some(s), _) => (
            "idle after a host synchronisation".to_owned(),
            *s,
            "drop the synchronisation, or queue the next work before waiting",
        ),
        (
            None,
            SpanKind::Memcpy {
                direction: CopyDirection::DeviceToHost,
                ..
            },
        ) => (
            "idle while the host used data it read back".to_owned(),
            prev,
            "overlap the host's work with queued GPU work, or keep the data on the device",
        ),
        _ => (
            "idle between launches (launch latency or host work)".to_owned(),
            next,
            "issue work ahead (CUDA graphs, fewer and larger launches, or another stream)",
        ),
    };
    Occurrence {
        kind: WasteKind::IdleGap,
        what,
        region: cx.trace.str(anchor.region).to_owned(),
        site: cx.trace.str(anchor.site).to_owned(),
        energy,
        time_ns: gap_ns,
        spans: vec![prev.id, next.id],
        buffers: Vec::new(),
        wasted: Wasted::Interval(from, to),
        proof: format!(
            "the device ran nothing for {:.1} µs between {} and {}",
            gap_ns as f64 / 1e3,
            cx.name(prev),
            cx.name(next)
        ),
        fix: fix.to_owned(),
    }
}
