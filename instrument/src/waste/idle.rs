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

use serde::{Deserialize, Serialize};

use super::{
    drawn_over, is_readback, Context, Gap, Mj, Occurrence, WasteConfig, WasteKind, Wasted,
};
use crate::attribution::EnergyEstimate;
use crate::intervals::Interval;
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
        if gap_ns >= config.host_only_gap_ns {
            // A host-only stretch (loading, tokenising, Python): not launch-bound idle, and
            // whatever the host waited for before it is long past.
            (credit, shift, last_sync) = (0, 0, None);
            continue;
        }
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

/// The device's idle by phase: only the steady stretches' idle between dependent work is
/// launch-bound waste (the idle-gap findings); the rest is reported for what it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdlePhases {
    /// Before the program's first work, from the first counter reading, ns.
    pub startup_ns: u64,
    /// After its last work, to its last recorded event, ns.
    pub teardown_ns: u64,
    /// Gaps between work of at least [`WasteConfig::host_only_gap_ns`], where the host did
    /// something else than feed the GPU: how many.
    pub host_only_stretches: u64,
    /// Their idle time, ns.
    pub host_only_ns: u64,
    /// The rest of the run: from the first work to the last, less the host-only stretches, ns.
    pub steady_ns: u64,
    /// Idle power over the start-up.
    pub startup: EnergyEstimate,
    /// Idle power over the tear-down.
    pub teardown: EnergyEstimate,
    /// Idle power over the host-only stretches.
    pub host_only: EnergyEstimate,
    /// The steady stretches' energy: idle power over them plus the attributed dynamic energy
    /// of the work, which runs in them.
    pub steady: EnergyEstimate,
    /// The longest host-only stretch, ns.
    pub longest_host_only_ns: u64,
    /// The shortest gap taken for a host-only stretch, ns.
    pub host_only_gap_ns: u64,
}

/// Split the device's idle into start-up, tear-down, host-only stretches and the steady
/// stretches between; `covered` runs from the counter's first reading to its last, `dynamic` the
/// attributed dynamic energy.
pub(super) fn phases(
    cx: &Context<'_>,
    config: &WasteConfig,
    covered: Interval,
    dynamic: Mj,
) -> Option<IdlePhases> {
    let first = cx.work.first()?.start_ns;
    let last = cx.work.iter().map(|s| s.end_ns).max()?;
    let (mut n, mut host_ns, mut longest) = (0u64, 0u64, 0u64);
    for g in &cx.gaps {
        let ns = cx.program_idle_ns(g);
        if ns >= config.host_only_gap_ns {
            n += 1;
            host_ns += ns;
            longest = longest.max(ns);
        }
    }
    // The program's last recorded event (a range, a host wait) ends its tear-down: readings
    // after it are `wattlens run`'s own quiet baseline.
    let program_end = cx
        .trace
        .spans
        .iter()
        .map(|s| s.end_ns)
        .max()
        .unwrap_or(last)
        .clamp(last, covered.to_ns.max(last));
    let startup_ns = first.saturating_sub(covered.from_ns);
    let teardown_ns = program_end.saturating_sub(last);
    let steady_ns = last.saturating_sub(first).saturating_sub(host_ns);
    let p = &cx.idle;
    let idle_half_width_mw = (p.high_mw - p.low_mw) / 2.0;
    let at_idle = |ns: u64| {
        let s = ns as f64 * 1e-9;
        EnergyEstimate::from_half_width(p.mw * s, idle_half_width_mw * s)
    };
    let s = steady_ns as f64 * 1e-9;
    let steady = EnergyEstimate::from_half_width(
        p.mw * s + dynamic.mj,
        idle_half_width_mw * s + (dynamic.high_mj - dynamic.low_mj) / 2.0,
    );
    Some(IdlePhases {
        startup_ns,
        teardown_ns,
        host_only_stretches: n,
        host_only_ns: host_ns,
        steady_ns,
        startup: at_idle(startup_ns),
        teardown: at_idle(teardown_ns),
        host_only: at_idle(host_ns),
        steady,
        longest_host_only_ns: longest,
        host_only_gap_ns: config.host_only_gap_ns,
    })
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
        energy: drawn_over(&cx.idle, ns as f64),
        time_ns: ns,
        run_saved_ns: None,
        whole_launch: false,
        spans: vec![g.prev.id, g.next.id],
        buffers: Vec::new(),
        wasted: Wasted::Idle(Interval::new(from, from + ns)),
        proof,
        fix: fix.to_owned(),
    }
}
