//! Attribution accuracy against the simulated GPU's ground truth, next to the naive method
//! (sample power × duration), for tests and for the table in BENCHMARKS.md.

use crate::attribution::{samples_of, Attribution, Coverage};
use crate::sim::{SimRun, LONG_MIN_NS, SHORT_MAX_NS, SHORT_MIN_NS};

/// Launches a short signature needs before its error is held to the target.
pub const MIN_SHORT_LAUNCHES: u64 = 200;

/// Errors of one attributed run against its truth.
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    /// |error| / truth of each span of at least 100 ms that the sensors resolved (labelled
    /// measured: 95% CI within ±10%).
    pub long_span: Vec<f64>,
    /// Spans of at least 100 ms left unresolved (reported only as a bound, with a CI).
    pub long_span_unresolved: usize,
    /// The same spans, naive method.
    pub long_span_naive: Vec<f64>,
    /// |error| / truth of each resolved (measured) signature with ≥ 200 launches, all
    /// 10 µs–20 ms.
    pub short_signature: Vec<f64>,
    /// Such signatures left unresolved.
    pub short_signature_unresolved: usize,
    /// Spans of at least 100 ms whose 95% CI holds the truth.
    pub span_ci_hits: usize,
    /// Spans of at least 100 ms checked.
    pub span_ci_total: usize,
    /// The same signatures, naive method.
    pub short_signature_naive: Vec<f64>,
    /// |counter − (idle + attributed)| / counter.
    pub closure: f64,
    /// Signatures (resolved or not) whose 95% CI holds the truth.
    pub ci_hits: usize,
    /// Signatures checked for CI coverage.
    pub ci_total: usize,
}

impl Accuracy {
    /// Add another run's errors and counts (the closure keeps the worst).
    pub fn absorb(&mut self, other: &Accuracy) {
        self.long_span.extend(&other.long_span);
        self.long_span_naive.extend(&other.long_span_naive);
        self.long_span_unresolved += other.long_span_unresolved;
        self.short_signature.extend(&other.short_signature);
        self.short_signature_naive
            .extend(&other.short_signature_naive);
        self.short_signature_unresolved += other.short_signature_unresolved;
        self.span_ci_hits += other.span_ci_hits;
        self.span_ci_total += other.span_ci_total;
        self.closure = self.closure.max(other.closure);
        self.ci_hits += other.ci_hits;
        self.ci_total += other.ci_total;
    }
}

/// Naive dynamic energy of a span: the mean sample power inside it (the nearest sample when
/// none falls inside) minus idle, times its duration, mJ. `samples` are in time order.
fn naive_mj(samples: &[(u64, f64)], idle_mw: f64, start_ns: u64, end_ns: u64) -> f64 {
    let lo = samples.partition_point(|&(t, _)| t < start_ns);
    let hi = samples.partition_point(|&(t, _)| t <= end_ns);
    let mw = if hi > lo {
        samples[lo..hi].iter().map(|&(_, p)| p).sum::<f64>() / (hi - lo) as f64
    } else {
        // None inside: the nearer of the neighbours of the midpoint (the earlier on a tie).
        let mid = start_ns / 2 + end_ns / 2;
        let k = samples.partition_point(|&(t, _)| t < mid);
        [k.checked_sub(1), Some(k)]
            .into_iter()
            .flatten()
            .filter_map(|i| samples.get(i))
            .min_by_key(|&&(t, _)| t.abs_diff(mid))
            .map_or(idle_mw, |&(_, p)| p)
    };
    (mw - idle_mw) * (end_ns - start_ns) as f64 * 1e-9
}

/// Compare `a` (device 0 of `run`) with the truth.
pub fn evaluate(run: &SimRun, a: &Attribution) -> Accuracy {
    let trace = &run.trace;
    let truth = &run.truth.span_above_idle_mj;
    let idle_mw = a.idle_power.mw;
    let mut acc = Accuracy::default();
    // Samples sorted once for the naive method's lookups.
    let samples = samples_of(trace, 0);
    for se in &a.spans {
        let Some(span) = trace.spans.get(se.span as usize) else {
            continue;
        };
        let t = truth[se.span as usize];
        if span.duration_ns() >= LONG_MIN_NS && t > 0.0 {
            acc.span_ci_total += 1;
            if se.dynamic.low_mj <= t && t <= se.dynamic.high_mj {
                acc.span_ci_hits += 1;
            }
            if se.dynamic.coverage != Coverage::Measured {
                acc.long_span_unresolved += 1;
                continue;
            }
            acc.long_span.push((se.dynamic.mj - t).abs() / t);
            let n = naive_mj(&samples, idle_mw, span.start_ns, span.end_ns);
            acc.long_span_naive.push((n - t).abs() / t);
        }
    }
    for s in &a.signatures {
        let members: Vec<usize> = trace
            .spans
            .iter()
            .enumerate()
            .filter(|(_, sp)| {
                sp.is_program_work() && trace.str(sp.name) == s.name && sp.launch == s.launch
            })
            .map(|(i, _)| i)
            .collect();
        let t: f64 = members.iter().map(|&i| truth[i]).sum();
        if t <= 0.0 {
            continue;
        }
        acc.ci_total += 1;
        if s.dynamic.low_mj <= t && t <= s.dynamic.high_mj {
            acc.ci_hits += 1;
        }
        let short = members
            .iter()
            .all(|&i| (SHORT_MIN_NS..=SHORT_MAX_NS).contains(&trace.spans[i].duration_ns()));
        if short && s.launches >= MIN_SHORT_LAUNCHES {
            if s.dynamic.coverage != Coverage::Measured {
                acc.short_signature_unresolved += 1;
                continue;
            }
            acc.short_signature.push((s.dynamic.mj - t).abs() / t);
            let n: f64 = members
                .iter()
                .map(|&i| {
                    naive_mj(
                        &samples,
                        idle_mw,
                        trace.spans[i].start_ns,
                        trace.spans[i].end_ns,
                    )
                })
                .sum();
            acc.short_signature_naive.push((n - t).abs() / t);
        }
    }
    let c = a.closure;
    acc.closure = c.residual_mj.abs() / c.counter_mj.max(1e-9);
    acc
}
