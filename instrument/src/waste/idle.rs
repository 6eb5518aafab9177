//! Idle gaps: stretches where the device ran nothing between two pieces of work, priced at the
//! measured idle power. The cause is read off the trace: a host synchronisation that ended
//! in the gap, a read-back to the host, or otherwise launch latency and host work. Time the
//! profiler held the program up is not the program's idle time.

use super::{is_readback, Context, Gap, Occurrence, WasteConfig, WasteKind, Wasted};

pub(super) fn detect(cx: &Context<'_>, config: &WasteConfig, out: &mut Vec<Occurrence>) {
    for g in &cx.gaps {
        let gap_ns = cx.program_idle_ns(g);
        if gap_ns >= config.min_idle_gap_ns && !cx.is_charged(g.next.id) {
            out.push(occurrence(cx, g, gap_ns));
        }
    }
}

/// Device idle time inside gaps between work that the profiler's own overhead caused, ns.
pub(super) fn profiler_idle_ns(cx: &Context<'_>) -> u64 {
    cx.gaps
        .iter()
        .map(|g| cx.overhead_within(g.from, g.to))
        .sum()
}

/// The occurrence for gap `g`, of which `gap_ns` is the program's.
fn occurrence(cx: &Context<'_>, g: &Gap<'_>, gap_ns: u64) -> Occurrence {
    let (mw, low, high) = cx.idle_mw;
    let j = |p: f64| p * gap_ns as f64 * 1e-9;
    // A wait that ended inside the gap: the host learned the GPU was done, then issued late.
    let (what, anchor, fix) = match cx.sync_in(g) {
        Some(s) => (
            "idle after a host synchronisation",
            s,
            "drop the synchronisation, or queue the next work before waiting",
        ),
        None if is_readback(g.prev) => (
            "idle while the host used data it read back",
            g.prev,
            "overlap the host's work with queued GPU work, or keep the data on the device",
        ),
        None => (
            "idle between launches (launch latency or host work)",
            g.next,
            "issue work ahead (CUDA graphs, fewer and larger launches, or another stream)",
        ),
    };
    Occurrence {
        kind: WasteKind::IdleGap,
        what: what.to_owned(),
        region: cx.trace.str(anchor.region).to_owned(),
        site: cx.trace.str(anchor.site).to_owned(),
        energy: (j(mw), j(low), j(high)),
        time_ns: gap_ns,
        spans: vec![g.prev.id, g.next.id],
        buffers: Vec::new(),
        wasted: Wasted::Interval(g.from, g.to),
        proof: format!(
            "the device ran nothing for {:.1} µs between {} and {}",
            gap_ns as f64 / 1e3,
            cx.name(g.prev),
            cx.name(g.next)
        ),
        fix: fix.to_owned(),
    }
}
