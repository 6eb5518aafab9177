//! Idle gaps: stretches where the device ran nothing between two pieces of work, priced at the
//! measured idle power. The cause is read off the trace: a host synchronisation that ended
//! in the gap, a read-back to the host, or otherwise launch latency and host work. Time the
//! profiler held the program up is not the program's idle time.
//!
//! A synchronisation is charged only the idle it caused. Without its waits the host would
//! have issued its work as much sooner as it had waited since it last needed data it read
//! back, and the device would have started each piece of work that much sooner, but never
//! closer to the previous one than the queued launch gap. Replaying the gaps so gives what the
//! waits cost; the rest of each gap keeps its own cause (host work, launch latency, work on
//! read-back data). Waiting for a read-back's copy to end is not such a wait: the host needed
//! the data.

use super::{is_readback, Context, Gap, Occurrence, WasteConfig, WasteKind, Wasted};
use crate::trace::Span;

pub(super) fn detect(cx: &Context<'_>, config: &WasteConfig, out: &mut Vec<Occurrence>) {
    // Replay the device without the synchronisations. `credit` is how much sooner the host
    // would be issuing work (the waits it would not have made, since it last had to wait for
    // data it read back); `shift` is how much sooner the device would be running it. A gap
    // shrinks by as much as the host is ahead of the device there, down to the queued floor.
    let (mut credit, mut shift) = (0u64, 0u64);
    let mut last_sync = None;
    for g in &cx.gaps {
        if cx.is_charged(g.next.id) {
            continue;
        }
        let gap_ns = cx.program_idle_ns(g);
        let readback = is_readback(g.prev);
        if readback {
            // The host needed the data: it resumes when the copy ends, `shift` sooner.
            credit = shift;
        }
        if let Some(s) = cx.sync_in(g) {
            // After a read-back, waiting for the copy to end was needed (an asynchronous copy
            // and then a synchronize, as `tensor.item()` does); only waiting beyond it was not.
            let since_ns = if readback { g.from } else { 0 };
            credit += cx.host_wait_ns(g, since_ns);
            last_sync = Some(s);
        }
        let saved_ns = gap_ns
            .saturating_sub(cx.queued_gap_ns)
            .min(credit.saturating_sub(shift));
        shift += saved_ns;
        if gap_ns < config.min_idle_gap_ns {
            continue;
        }
        let rest = if readback {
            Cause::Readback
        } else {
            Cause::Launch
        };
        // What the waits cost is flagged whole; what remains (host work, launch latency),
        // where it is itself long enough to matter.
        let rest_ns = gap_ns - saved_ns;
        if let (Some(s), true) = (last_sync, saved_ns > 0) {
            out.push(occurrence(cx, g, Cause::Sync(s), (g.from, saved_ns)));
        }
        if rest_ns >= config.min_idle_gap_ns {
            out.push(occurrence(cx, g, rest, (g.from + saved_ns, rest_ns)));
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

/// Why the device sat idle.
#[derive(Clone, Copy)]
enum Cause<'a> {
    /// Waits that the host need not have made: this synchronisation, or earlier ones that
    /// left the host behind.
    Sync(&'a Span),
    /// The host was using data it had just read back.
    Readback,
    /// Launch latency or host work.
    Launch,
}

/// The occurrence for `ns` of gap `g`'s program idle, caused by `cause`, counted from `from`.
fn occurrence(
    cx: &Context<'_>,
    g: &Gap<'_>,
    cause: Cause<'_>,
    (from, ns): (u64, u64),
) -> Occurrence {
    let (mw, low, high) = cx.idle_mw;
    let j = |p: f64| p * ns as f64 * 1e-9;
    let (what, anchor, fix) = match cause {
        Cause::Sync(s) => (
            "idle after a host synchronisation",
            s,
            "drop the synchronisation, or queue the next work before waiting",
        ),
        Cause::Readback => (
            "idle while the host used data it read back",
            g.prev,
            "overlap the host's work with queued GPU work, or keep the data on the device",
        ),
        Cause::Launch => (
            "idle between launches (launch latency or host work)",
            g.next,
            "issue work ahead (CUDA graphs, fewer and larger launches, or another stream)",
        ),
    };
    let gap = format!(
        "the device ran nothing for {:.1} µs between {} and {}",
        cx.program_idle_ns(g) as f64 / 1e3,
        cx.name(g.prev),
        cx.name(g.next)
    );
    let proof = match cause {
        Cause::Sync(_) => format!(
            "{gap}; without the host's waits in synchronisations (here or since its last read-back) the device would have started the next work {:.1} µs sooner",
            ns as f64 / 1e3,
        ),
        _ => gap,
    };
    Occurrence {
        kind: WasteKind::IdleGap,
        what: what.to_owned(),
        region: cx.trace.str(anchor.region).to_owned(),
        site: cx.trace.str(anchor.site).to_owned(),
        energy: (j(mw), j(low), j(high)),
        time_ns: ns,
        run_saved_ns: None,
        whole_launch: false,
        spans: vec![g.prev.id, g.next.id],
        buffers: Vec::new(),
        wasted: Wasted::Interval(from, from + ns),
        proof,
        fix: fix.to_owned(),
    }
}
