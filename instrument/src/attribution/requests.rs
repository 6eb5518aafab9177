//! Energy per request: every NVTX range instance (push/pop or start/end, on any thread) costs
//! the energy the GPU drew over its wall-clock window, as Zeus and the ML.ENERGY leaderboard
//! count it: the dynamic energy of the work that ran in the window, plus idle power × the
//! window's length (less the time the profiler held the program).
//!
//! Instances of one range that overlap (requests batched into shared forward steps) split each
//! shared stretch: by their token counts where every active instance has one, else equally, so
//! that the instances' energies add up to the stretch's. Nested ranges (prefill and decode
//! inside a request) are ranges of their own paths.
//!
//! The dynamic part is a roll-up of the work spans' signature-priced time and integrated
//! energy inside the window (spans cut at its edges count in proportion), so its interval
//! carries the fit's covariance, as an op class's does.

use serde::{Deserialize, Serialize};

use super::linalg::Square;
use super::profiler_cost::CostTimeline;
use super::regression::Joint;
use super::rollup::{Rollup, SpanPart};
use super::EnergyEstimate;
use crate::names::split_tokens;
use crate::trace::{Annotation, SpanKind, StrId, Trace};

/// How overlapping instances of one range split the stretches they shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitRule {
    /// No two instances overlapped: nothing was split.
    Alone,
    /// Every shared stretch was split by the instances' token counts.
    Tokens,
    /// Every shared stretch was split equally (token counts missing).
    Equal,
    /// Some stretches by tokens, some equally.
    Mixed,
}

impl SplitRule {
    /// One phrase for a report.
    pub fn describe(&self) -> &'static str {
        match self {
            SplitRule::Alone => "none overlapped",
            SplitRule::Tokens => "shared stretches split by tokens",
            SplitRule::Equal => "shared stretches split equally",
            SplitRule::Mixed => "shared stretches split by tokens where known, else equally",
        }
    }

    fn join(self, other: SplitRule) -> SplitRule {
        match (self, other) {
            (SplitRule::Alone, o) | (o, SplitRule::Alone) => o,
            (a, b) if a == b => a,
            _ => SplitRule::Mixed,
        }
    }
}

/// One range instance and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnergy {
    /// The range's span id.
    pub span: u64,
    /// The range's path, token counts left out of its name.
    pub path: String,
    /// Start, trace ns.
    pub start_ns: u64,
    /// End, trace ns.
    pub end_ns: u64,
    /// Tokens, where the program gave a count.
    pub tokens: Option<u64>,
    /// Profiler time inside the window, ns: the time it held the program (kernel replay,
    /// hashing) and its estimated recording cost on the launching thread; not charged.
    pub held_ns: u64,
    /// Dynamic energy of the work that ran in the window (its share of shared stretches).
    pub dynamic: EnergyEstimate,
    /// Idle power over the window (its share of shared stretches).
    pub idle: EnergyEstimate,
    /// The two together: what the request cost.
    pub total: EnergyEstimate,
}

/// The instances of one range path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeEnergy {
    /// The path, token counts left out of names.
    pub path: String,
    /// Instances.
    pub count: u64,
    /// Their wall time, ns (shared stretches counted once per instance).
    pub wall_ns: u64,
    /// Tokens of all instances, when every instance has a count.
    pub tokens: Option<u64>,
    /// Dynamic energy of all instances, with the fit's covariance.
    pub dynamic: EnergyEstimate,
    /// Idle power over all instances' windows.
    pub idle: EnergyEstimate,
    /// The two together.
    pub total: EnergyEstimate,
    /// Mean per instance.
    pub mean: EnergyEstimate,
    /// Median instance, with an interval from the order statistics of the instances' own
    /// interval ends.
    pub p50: EnergyEstimate,
    /// 90th percentile instance, likewise.
    pub p90: EnergyEstimate,
    /// Energy per token, when tokens are known.
    pub per_token: Option<EnergyEstimate>,
    /// How overlapping instances were split.
    pub split: SplitRule,
}

/// Requests of one device: per range path, and every instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestReport {
    /// Per range path, most energy first.
    pub ranges: Vec<RangeEnergy>,
    /// Every instance, in start order.
    pub instances: Vec<RequestEnergy>,
}

/// What a request's definition says, for every report that shows one.
pub const REQUEST_DEFINITION: &str = "A request (an NVTX range instance) costs the energy the GPU drew over its wall-clock window: the dynamic energy of the work that ran in it, plus idle power × its wall time, less the profiler's own time in it (what it held the program for, and its estimated recording cost); instances of one range that overlap split each shared stretch by tokens where every one has a count, else equally.";

/// The work spans of one signature on one stream, in time order, with running sums of their
/// roll-up parts: the part of a window is two binary searches.
struct Lane {
    sig: usize,
    starts: Vec<u64>,
    ends: Vec<u64>,
    /// Running sums (from 0) of priced seconds, direct energy and its variance.
    priced: Vec<f64>,
    direct: Vec<f64>,
    var: Vec<f64>,
    covered: bool,
}

impl Lane {
    /// This lane's roll-up inside `[a, b]`, added to `r`.
    fn add_window(&self, a: u64, b: u64, r: &mut Rollup) {
        let i0 = self.ends.partition_point(|&e| e <= a);
        let i1 = self.starts.partition_point(|&s| s < b);
        if i0 >= i1 {
            return;
        }
        let mut priced = self.priced[i1] - self.priced[i0];
        let mut direct = self.direct[i1] - self.direct[i0];
        let var = self.var[i1] - self.var[i0];
        // Spans cut at the window's edges count in proportion.
        for (k, cut_ns) in [
            (i0, a.saturating_sub(self.starts[i0])),
            (i1 - 1, self.ends[i1 - 1].saturating_sub(b)),
        ] {
            let d = self.ends[k].saturating_sub(self.starts[k]);
            if cut_ns > 0 && d > 0 {
                let f = (cut_ns as f64 / d as f64).min(1.0);
                priced -= (self.priced[k + 1] - self.priced[k]) * f;
                direct -= (self.direct[k + 1] - self.direct[k]) * f;
            }
        }
        r.priced_s[self.sig] += priced.max(0.0);
        r.direct_mj += direct.max(0.0);
        r.direct_var += var.max(0.0);
        r.covered |= self.covered;
    }
}

/// The fit, as a request's roll-up is estimated with it.
pub(crate) struct FitView<'a> {
    pub beta: &'a [f64],
    pub cov: &'a Square,
    pub t: f64,
    pub joint: Option<&'a Joint>,
    /// Idle power and its 95% half-width, mW.
    pub idle_mw: (f64, f64),
}

/// One range instance before its energy.
pub(crate) struct Instance {
    pub span: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub tokens: Option<u64>,
}

/// The requests of `device`: every range instance of `trace` priced over its window from the
/// program's work spans (`work`, with roll-up parts `parts`), less `held` (the time the
/// profiler held the program) and what `cost` estimates recording cost it, with `fit`.
pub(crate) fn requests(
    trace: &Trace,
    device: u32,
    (work, parts): (&[usize], &[SpanPart]),
    (held, cost): (&[crate::intervals::Interval], &CostTimeline),
    fit: &FitView<'_>,
) -> RequestReport {
    let p = fit.beta.len();
    let lanes = lanes(trace, device, work, parts);
    let by_path = instances_by_path(trace);
    let window = |a: u64, b: u64| -> Rollup {
        let mut r = Rollup::new(p);
        for l in &lanes {
            l.add_window(a, b, &mut r);
        }
        r
    };
    let (idle_mw, idle_half_mw) = fit.idle_mw;
    let mut report = RequestReport::default();
    for (path, instances) in by_path {
        let (shares, split) = shares(&instances, &window, p);
        let mut path_rollup = Rollup::new(p);
        let (mut path_idle_s, mut path_cost_half_s) = (0.0, 0.0);
        let mut entries = Vec::with_capacity(instances.len());
        for (inst, (rollup, wall_s)) in instances.iter().zip(shares) {
            // The profiler's time in the window: replays it held the program for, and what
            // recording cost the launching thread (estimated, with its uncertainty).
            let window_ns = (inst.end_ns - inst.start_ns).max(1) as f64;
            let (cost_ns, cost_half_ns) = cost.within(inst.start_ns, inst.end_ns);
            let not_charged_ns =
                (crate::intervals::covered_ns(held, inst.start_ns, inst.end_ns) as f64 + cost_ns)
                    .min(window_ns);
            let held_ns = not_charged_ns as u64;
            let idle_s = (wall_s * (1.0 - not_charged_ns / window_ns)).max(0.0);
            let cost_half_s = wall_s * cost_half_ns / window_ns;
            path_rollup.add(&rollup);
            path_idle_s += idle_s;
            path_cost_half_s += cost_half_s;
            let dynamic = rollup.estimate(fit.beta, fit.cov, fit.t, fit.joint);
            let idle = EnergyEstimate::from_half_width(
                idle_mw * idle_s,
                idle_half_mw * idle_s + idle_mw * cost_half_s,
            );
            entries.push(RequestEnergy {
                span: inst.span,
                path: path.clone(),
                start_ns: inst.start_ns,
                end_ns: inst.end_ns,
                tokens: inst.tokens,
                held_ns,
                total: dynamic.plus_correlated(&idle),
                dynamic,
                idle,
            });
        }
        let dynamic = path_rollup.estimate(fit.beta, fit.cov, fit.t, fit.joint);
        let idle = EnergyEstimate::from_half_width(
            idle_mw * path_idle_s,
            idle_half_mw * path_idle_s + idle_mw * path_cost_half_s,
        );
        report
            .ranges
            .push(summarize(path, &entries, (dynamic, idle), split));
        report.instances.extend(entries);
    }
    report.sorted()
}

impl RequestReport {
    /// Ranges most energy first, instances in start order.
    pub(crate) fn sorted(mut self) -> Self {
        self.ranges
            .sort_by(|a, b| b.total.mj.total_cmp(&a.total.mj));
        self.instances.sort_by_key(|e| (e.start_ns, e.span));
        self
    }
}

/// Every range instance of `trace` by path (token counts out of names), each path's in start
/// order.
pub(crate) fn instances_by_path(
    trace: &Trace,
) -> std::collections::BTreeMap<String, Vec<Instance>> {
    let tokens = token_counts(trace);
    let mut by_path: std::collections::BTreeMap<String, Vec<Instance>> = Default::default();
    for s in &trace.spans {
        if !matches!(s.kind, SpanKind::Region { .. }) || s.end_ns <= s.start_ns {
            continue;
        }
        let raw = if s.region == StrId::NONE {
            trace.str(s.name)
        } else {
            trace.str(s.region)
        };
        let (path, in_name) = clean_path(raw);
        by_path.entry(path).or_default().push(Instance {
            span: s.id,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            tokens: tokens.get(&s.id).copied().or(in_name),
        });
    }
    for instances in by_path.values_mut() {
        instances.sort_by_key(|i| (i.start_ns, i.span));
    }
    by_path
}

/// One range path's row: its instances' count, wall time, tokens and quantiles, with the
/// path's dynamic and idle energy (`parts`, whose intervals the caller knows how to add).
pub(crate) fn summarize(
    path: String,
    entries: &[RequestEnergy],
    (dynamic, idle): (EnergyEstimate, EnergyEstimate),
    split: SplitRule,
) -> RangeEnergy {
    let total = dynamic.plus_correlated(&idle);
    let count = entries.len() as u64;
    let tokens: Option<u64> = entries
        .iter()
        .map(|e| e.tokens)
        .sum::<Option<u64>>()
        .filter(|&t| t > 0);
    let totals: Vec<EnergyEstimate> = entries.iter().map(|e| e.total).collect();
    RangeEnergy {
        path,
        count,
        wall_ns: entries.iter().map(|e| e.end_ns - e.start_ns).sum(),
        tokens,
        mean: total.scaled(1.0 / count.max(1) as f64),
        p50: quantile(&totals, 0.5),
        p90: quantile(&totals, 0.9),
        per_token: tokens.map(|t| total.scaled(1.0 / t as f64)),
        dynamic,
        idle,
        total,
        split,
    }
}

/// Whether any two instances (sorted by start) overlap: one starts before the furthest end so
/// far (a long early instance may reach past several later ones).
pub(crate) fn overlapping(instances: &[Instance]) -> bool {
    let mut reach = 0u64;
    instances.iter().any(|i| {
        let o = i.start_ns < reach;
        reach = reach.max(i.end_ns);
        o
    })
}

/// Each instance's share of the work and of the wall time over its window: its own window
/// where it overlapped no other instance, else its share of every stretch it shared.
fn shares(
    instances: &[Instance],
    window: &dyn Fn(u64, u64) -> Rollup,
    p: usize,
) -> (Vec<(Rollup, f64)>, SplitRule) {
    if !overlapping(instances) {
        let own = instances
            .iter()
            .map(|i| {
                (
                    window(i.start_ns, i.end_ns),
                    (i.end_ns - i.start_ns) as f64 * 1e-9,
                )
            })
            .collect();
        return (own, SplitRule::Alone);
    }
    let mut out: Vec<(Rollup, f64)> = (0..instances.len())
        .map(|_| (Rollup::new(p), 0.0))
        .collect();
    let mut cuts: Vec<u64> = instances
        .iter()
        .flat_map(|i| [i.start_ns, i.end_ns])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut rule = SplitRule::Alone;
    let mut first = 0usize;
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        while first < instances.len() && instances[first].end_ns <= a {
            first += 1;
        }
        let active: Vec<usize> = (first..instances.len())
            .take_while(|&k| instances[k].start_ns < b)
            .filter(|&k| instances[k].start_ns <= a && instances[k].end_ns >= b)
            .collect();
        if active.is_empty() {
            continue;
        }
        let by_tokens = active
            .iter()
            .all(|&k| instances[k].tokens.is_some_and(|t| t > 0));
        let weights: Vec<f64> = active
            .iter()
            .map(|&k| match (by_tokens, instances[k].tokens) {
                (true, Some(t)) => t as f64,
                _ => 1.0,
            })
            .collect();
        let sum_w: f64 = weights.iter().sum();
        if active.len() > 1 {
            rule = rule.join(if by_tokens {
                SplitRule::Tokens
            } else {
                SplitRule::Equal
            });
        }
        let stretch = window(a, b);
        let len_s = (b - a) as f64 * 1e-9;
        for (&k, w) in active.iter().zip(weights) {
            let share = w / sum_w;
            out[k].0.add_scaled(&stretch, share);
            out[k].1 += len_s * share;
        }
    }
    (out, rule)
}

/// The program's work spans of `device` by signature and stream, each lane in time order.
fn lanes(trace: &Trace, device: u32, work: &[usize], parts: &[SpanPart]) -> Vec<Lane> {
    /// A span of a lane: start, end, roll-up part.
    type LaneSpan<'a> = (u64, u64, &'a SpanPart);
    let mut by_lane: std::collections::BTreeMap<(usize, u64), Vec<LaneSpan<'_>>> =
        Default::default();
    for (w, &i) in work.iter().enumerate() {
        let s = &trace.spans[i];
        if s.device != device || !s.is_program_work() {
            continue;
        }
        let Some(part) = parts.get(w) else {
            continue;
        };
        by_lane
            .entry((part.sig, s.stream))
            .or_default()
            .push((s.start_ns, s.end_ns, part));
    }
    by_lane
        .into_iter()
        .map(|((sig, _), mut spans)| {
            spans.sort_by_key(|s| s.0);
            let mut lane = Lane {
                sig,
                starts: Vec::with_capacity(spans.len()),
                ends: Vec::with_capacity(spans.len()),
                priced: vec![0.0],
                direct: vec![0.0],
                var: vec![0.0],
                covered: false,
            };
            // Ends stay sorted even if spans of a lane overlap (a hostile trace).
            let mut last_end = 0u64;
            for (start, end, part) in spans {
                last_end = last_end.max(end);
                lane.starts.push(start);
                lane.ends.push(last_end);
                let next = |v: &Vec<f64>, x: f64| v.last().copied().unwrap_or(0.0) + x;
                lane.priced.push(next(&lane.priced, part.priced_s));
                lane.direct.push(next(&lane.direct, part.direct_mj));
                lane.var.push(next(&lane.var, part.direct_var));
                lane.covered |= part.covered;
            }
            lane
        })
        .collect()
}

/// Token counts the trace gives range spans by annotation.
fn token_counts(trace: &Trace) -> std::collections::HashMap<u64, u64> {
    trace
        .annotations
        .iter()
        .filter_map(|a| match *a {
            Annotation::Tokens { span, tokens } => Some((span, tokens)),
            _ => None,
        })
        .collect()
}

/// A path with `tokens=N` taken out of each component, and the count its last component gave.
pub fn clean_path(raw: &str) -> (String, Option<u64>) {
    let mut tokens = None;
    let parts: Vec<String> = raw
        .split('/')
        .map(|c| {
            let (name, t) = split_tokens(c);
            tokens = t;
            name
        })
        .collect();
    (parts.join("/"), tokens)
}

/// The `q` quantile of `values` (nearest rank), with a distribution-free 95% interval: the
/// order statistics of the low and high ends at ranks `n·q ∓ 1.96·√(n·q·(1−q))`.
fn quantile(values: &[EnergyEstimate], q: f64) -> EnergyEstimate {
    if values.is_empty() {
        return EnergyEstimate::uncovered();
    }
    let n = values.len();
    let rank = |x: f64| (x.round().max(0.0) as usize).min(n - 1);
    let spread = 1.96 * (n as f64 * q * (1.0 - q)).sqrt();
    let centre = (n as f64 * q).ceil() - 1.0;
    let mut mids: Vec<f64> = values.iter().map(|v| v.mj).collect();
    let mut lows: Vec<f64> = values.iter().map(|v| v.low_mj).collect();
    let mut highs: Vec<f64> = values.iter().map(|v| v.high_mj).collect();
    for v in [&mut mids, &mut lows, &mut highs] {
        v.sort_by(f64::total_cmp);
    }
    let mj = mids[rank(centre)];
    let low_mj = lows[rank((centre - spread).floor())].min(mj);
    let high_mj = highs[rank((centre + spread).ceil())].max(mj);
    EnergyEstimate {
        mj,
        low_mj,
        high_mj,
        coverage: super::Coverage::classify(mj, low_mj, high_mj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(span: u64, start_ns: u64, end_ns: u64, tokens: Option<u64>) -> Instance {
        Instance {
            span,
            start_ns,
            end_ns,
            tokens,
        }
    }

    /// A device that draws 1 W of dynamic power on signature 0 at every instant: a window's
    /// priced seconds are its length.
    fn uniform(a: u64, b: u64) -> Rollup {
        let mut r = Rollup::new(1);
        r.priced_s[0] = (b - a) as f64 * 1e-9;
        r.covered = true;
        r
    }

    #[test]
    fn overlapping_instances_split_shared_stretches_by_tokens_and_add_up() {
        // Three requests of one range on several threads: a alone, then a and b together,
        // then all three, then c alone.
        let instances = [
            inst(1, 0, 400, Some(10)),
            inst(2, 100, 400, Some(30)),
            inst(3, 300, 600, Some(20)),
        ];
        let (got, rule) = shares(&instances, &uniform, 1);
        assert_eq!(rule, SplitRule::Tokens);
        let s: Vec<f64> = got.iter().map(|(r, _)| r.priced_s[0] * 1e9).collect();
        // [0,100) a; [100,300) a:b = 10:30; [300,400) a:b:c = 10:30:20; [400,600) c.
        let want = [
            100.0 + 200.0 * 0.25 + 100.0 / 6.0,
            200.0 * 0.75 + 100.0 * 0.5,
            100.0 / 3.0 + 200.0,
        ];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{s:?} vs {want}");
        }
        assert!(
            (s.iter().sum::<f64>() - 600.0).abs() < 1e-6,
            "the window's whole"
        );
        let wall: f64 = got.iter().map(|(_, w)| w * 1e9).sum();
        assert!((wall - 600.0).abs() < 1e-6);
    }

    #[test]
    fn without_token_counts_shares_are_equal_and_the_rule_says_so() {
        let instances = [inst(1, 0, 100, None), inst(2, 0, 100, Some(5))];
        let (got, rule) = shares(&instances, &uniform, 1);
        assert_eq!(rule, SplitRule::Equal);
        assert!((got[0].0.priced_s[0] - got[1].0.priced_s[0]).abs() < 1e-12);
        let alone = [inst(1, 0, 100, None), inst(2, 100, 200, None)];
        let (_, rule) = shares(&alone, &uniform, 1);
        assert_eq!(rule, SplitRule::Alone);
        // A long first instance overlapping a later, non-adjacent one is still seen.
        let nested = [
            inst(1, 0, 1000, Some(1)),
            inst(2, 10, 20, Some(1)),
            inst(3, 500, 600, Some(1)),
        ];
        let (got, rule) = shares(&nested, &uniform, 1);
        assert_eq!(rule, SplitRule::Tokens);
        let total: f64 = got.iter().map(|(r, _)| r.priced_s[0] * 1e9).sum();
        assert!((total - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn token_counts_leave_names_and_a_lane_prices_cut_spans_in_proportion() {
        assert_eq!(
            clean_path("serve/request tokens=64/decode tokens=63"),
            ("serve/request/decode".to_owned(), Some(63))
        );
        assert_eq!(clean_path("step"), ("step".to_owned(), None));
        let lane = Lane {
            sig: 0,
            starts: vec![0, 100],
            ends: vec![50, 200],
            priced: vec![0.0, 5.0, 15.0],
            direct: vec![0.0, 0.0, 0.0],
            var: vec![0.0, 0.0, 0.0],
            covered: true,
        };
        let mut r = Rollup::new(1);
        lane.add_window(25, 150, &mut r);
        // Half of the first span and half of the second.
        assert!((r.priced_s[0] - 7.5).abs() < 1e-9, "{}", r.priced_s[0]);
        let mut none = Rollup::new(1);
        lane.add_window(60, 90, &mut none);
        assert_eq!(none.priced_s[0], 0.0);
    }

    #[test]
    fn quantiles_carry_the_spread_of_the_instances() {
        let values: Vec<EnergyEstimate> = (1..=100)
            .map(|k| EnergyEstimate::from_half_width(k as f64, 1.0))
            .collect();
        let p50 = quantile(&values, 0.5);
        assert_eq!(p50.mj, 50.0);
        assert!(p50.low_mj < 50.0 && p50.high_mj > 50.0);
        assert!(p50.low_mj >= 38.0 && p50.high_mj <= 62.0, "{p50:?}");
        let p90 = quantile(&values, 0.9);
        assert_eq!(p90.mj, 90.0);
        assert_eq!(
            quantile(&[], 0.5).coverage,
            super::super::Coverage::Uncovered
        );
    }
}
