//! What recording cost the program: the injection library's callbacks, timed in the process
//! ([`Annotation::CallbackCost`]), and CUPTI's own work per activity record, which nothing in
//! the process can time and is priced at [`CUPTI_RECORD_COST_NS`].
//!
//! On a launch-bound program the profiler's time on the launching thread lengthens the run, and
//! a request's wall time with it: the GPU then idles longer inside the request than it would
//! without wattlens. A request is charged without that estimated time (as without the time a
//! kernel replay held the program).

use serde::{Deserialize, Serialize};

use crate::trace::{Annotation, Trace};

/// CUPTI's cost per activity record on the program's launching thread, ns: the slowdown of a
/// launch-bound `transformers` loop under `wattlens run` (kernel, copy and memset records,
/// callbacks on) less the library's own timed callbacks, per record, on an H100 with driver
/// 580.159.04 (BENCHMARKS.md, profiler overhead). Other GPUs and drivers differ.
pub const CUPTI_RECORD_COST_NS: f64 = 2_350.0;
/// The relative uncertainty of [`CUPTI_RECORD_COST_NS`] (95%): the spread of the A/B runs it
/// comes from.
pub const CUPTI_RECORD_COST_REL: f64 = 0.25;

/// How the injection library names itself in a trace's metadata.
pub const INJECTION_LIBRARY: &str = "wattlens-inject";

/// The profiler's cost over a run, for the report.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProfilerCost {
    /// Callbacks the library ran on the program's threads.
    pub callbacks: u64,
    /// Their host time, ns (measured).
    pub callback_ns: u64,
    /// Activity records of the program's work.
    pub records: u64,
    /// CUPTI's estimated time for them, ns ([`CUPTI_RECORD_COST_NS`] each).
    pub record_ns: f64,
    /// The trace's wall time from its first to its last record, ns.
    pub wall_ns: u64,
}

impl ProfilerCost {
    /// The estimated slowdown: profiler time over the program's own time (0..).
    pub fn slowdown(&self) -> f64 {
        let cost = self.callback_ns as f64 + self.record_ns;
        let own = self.wall_ns as f64 - cost;
        if own > 0.0 {
            cost / own
        } else {
            0.0
        }
    }
}

/// Where the profiler spent its time: the work records' start times and the callbacks'
/// intervals, so that any window's share is two binary searches and a short scan.
pub(crate) struct CostTimeline {
    /// Host call times of the program's work records, sorted, ns.
    records: Vec<u64>,
    /// (from, to, host ns, calls) of each callback-cost interval, sorted.
    callbacks: Vec<(u64, u64, u64, u64)>,
}

impl CostTimeline {
    /// The timeline of `trace`'s device work spans `work`. Only the injection library's
    /// records came through CUPTI's activity buffers on the program's threads (the runtime's
    /// and the simulator's did not).
    pub fn of(trace: &Trace, work: &[usize]) -> Self {
        let through_cupti = trace.meta.tool_version.starts_with(INJECTION_LIBRARY);
        let mut records: Vec<u64> = work
            .iter()
            .map(|&i| &trace.spans[i])
            .filter(|s| through_cupti && s.is_program_work())
            .map(|s| s.host_call_ns.map_or(s.start_ns, |c| c.from_ns))
            .collect();
        records.sort_unstable();
        let mut callbacks: Vec<(u64, u64, u64, u64)> = trace
            .annotations
            .iter()
            .filter_map(|a| match *a {
                Annotation::CallbackCost {
                    from_ns,
                    to_ns,
                    host_ns,
                    calls,
                } if to_ns > from_ns => Some((from_ns, to_ns, host_ns, calls)),
                _ => None,
            })
            .collect();
        callbacks.sort_unstable();
        Self { records, callbacks }
    }

    /// The run's totals.
    pub fn summary(&self, trace: &Trace) -> ProfilerCost {
        let (first, last) = trace.spans.iter().fold((u64::MAX, 0u64), |(a, b), s| {
            (a.min(s.start_ns), b.max(s.end_ns))
        });
        ProfilerCost {
            callbacks: self.callbacks.iter().map(|c| c.3).sum(),
            callback_ns: self.callbacks.iter().map(|c| c.2).sum(),
            records: self.records.len() as u64,
            record_ns: self.records.len() as f64 * CUPTI_RECORD_COST_NS,
            wall_ns: last.saturating_sub(first),
        }
    }

    /// The profiler's estimated time inside `[a, b]`, ns, and its 95% half-width: the records
    /// issued in it at [`CUPTI_RECORD_COST_NS`], plus the callbacks' time of each interval in
    /// proportion to its overlap.
    pub fn within(&self, a: u64, b: u64) -> (f64, f64) {
        let n = self.records.partition_point(|&t| t < b) - self.records.partition_point(|&t| t < a);
        let record_ns = n as f64 * CUPTI_RECORD_COST_NS;
        let first = self.callbacks.partition_point(|c| c.1 <= a);
        let callback_ns: f64 = self.callbacks[first..]
            .iter()
            .take_while(|c| c.0 < b)
            .map(|&(from, to, ns, _)| {
                let inside = to.min(b).saturating_sub(from.max(a));
                ns as f64 * inside as f64 / (to - from) as f64
            })
            .sum();
        (record_ns + callback_ns, record_ns * CUPTI_RECORD_COST_REL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_its_records_cost_and_its_share_of_the_callbacks() {
        let t = CostTimeline {
            records: vec![10, 20, 30, 40],
            callbacks: vec![(0, 100, 1_000, 10), (100, 200, 500, 5)],
        };
        let (ns, half) = t.within(15, 35);
        // Two records, and 20% of the first interval's callbacks.
        assert!(
            (ns - (2.0 * CUPTI_RECORD_COST_NS + 200.0)).abs() < 1e-9,
            "{ns}"
        );
        assert!((half - 2.0 * CUPTI_RECORD_COST_NS * CUPTI_RECORD_COST_REL).abs() < 1e-9);
        let (ns, _) = t.within(50, 150);
        assert!((ns - (500.0 + 250.0)).abs() < 1e-9, "{ns}");
        assert_eq!(t.within(300, 400), (0.0, 0.0));
    }
}
