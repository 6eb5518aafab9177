//! Recorded runs compared as variants (`wattlens compare a.wlt b.wlt …`): each trace is one run
//! of the same workload under one variant (an fp16 and an int8 build of a model, two versions
//! of a kernel). Per variant: the run's energy, time, mean power and energy-delay product, each
//! request path's mean energy and energy per token, and the energy of each op class and kernel.
//! Per variant against the first (the baseline): ratios with their 95% intervals, and the op
//! classes and kernels that make the difference, with the share of the difference they explain.
//!
//! Intervals: a run's energy is the counter's (exact but for its 1 mJ steps); a request's,
//! op's or kernel's is the attribution's. A variant of several runs takes the mean of each
//! figure, with the wider of the runs' own mean half-width and the t-interval of their spread;
//! with four runs or more, an A/A check compares its even runs with its odd ones, which a sound
//! comparison finds equal. Independent intervals combine in quadrature. One run per variant
//! says nothing about run-to-run spread.

use serde::Serialize;

use std::collections::{BTreeMap, HashMap};

use crate::attribution::{op_class_of, t_quantile_95, Attribution, EnergyEstimate};
use crate::intervals::Interval;
use crate::trace::{LaunchShape, Trace};

/// A signed energy with its 95% half-width, mJ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Delta {
    /// Point value, mJ.
    pub mj: f64,
    /// 95% half-width, mJ.
    pub half_mj: f64,
}

impl Delta {
    /// `b − a`, the half-widths in quadrature.
    fn between(a: &EnergyEstimate, b: &EnergyEstimate) -> Self {
        Self {
            mj: b.mj - a.mj,
            half_mj: a.half_mj().hypot(b.half_mj()),
        }
    }

    /// Whether the interval excludes zero.
    pub fn is_resolved(&self) -> bool {
        self.mj.abs() > self.half_mj
    }
}

/// A ratio with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// Point value.
    pub value: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Ratio {
    /// `b / a`, from the two estimates' relative half-widths in quadrature; `None` when `a`
    /// is not positive.
    pub fn of(b: &EnergyEstimate, a: &EnergyEstimate) -> Option<Self> {
        if a.mj <= 0.0 || b.mj < 0.0 {
            return None;
        }
        let value = b.mj / a.mj;
        let rel = (a.half_mj() / a.mj).hypot(if b.mj > 0.0 { b.half_mj() / b.mj } else { 0.0 });
        Some(Self {
            value,
            low: (value * (1.0 - rel)).max(0.0),
            high: value * (1.0 + rel),
        })
    }
}

/// One request path of a variant.
#[derive(Debug, Clone, Serialize)]
pub struct RequestMean {
    /// Range path.
    pub path: String,
    /// Instances.
    pub count: u64,
    /// Mean energy per instance.
    pub mean: EnergyEstimate,
    /// Energy per token, where tokens are known.
    pub per_token: Option<EnergyEstimate>,
}

/// A part of the run (an op class or a kernel signature) and its energy: dynamic plus its
/// static share.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// Op class label, or kernel name with its launch shape.
    pub name: String,
    /// Launches.
    pub launches: u64,
    /// Energy.
    pub energy: EnergyEstimate,
}

/// One variant: one run, or the mean of several.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// Its name.
    pub name: String,
    /// Runs it is the mean of.
    pub runs: usize,
    /// Its even runs' energy over its odd runs' (four runs or more): an A/A check, whose
    /// interval should hold 1.
    pub aa: Option<Ratio>,
    /// Energy the counter measured over the run.
    pub energy: EnergyEstimate,
    /// The run's length, s.
    pub time_s: f64,
    /// Mean power, W.
    pub mean_power_w: f64,
    /// Energy-delay product, J·s.
    pub edp_js: f64,
    /// Per request path.
    pub requests: Vec<RequestMean>,
    /// Per op class.
    pub ops: Vec<Part>,
    /// Per kernel signature.
    pub kernels: Vec<Part>,
    /// The accuracy metric its runs printed (`wattlens compare --metric`), where asked for.
    pub metric: Option<Metric>,
    /// The run-to-run spread of its time, mean power and energy-delay product; `None` for one
    /// run, which shows none.
    pub spread: Option<Spread>,
}

/// Time, mean power and energy-delay product over a variant's runs, each with the 95%
/// t-interval of their mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Run time, s.
    pub time_s: Metric,
    /// Mean power, W.
    pub mean_power_w: Metric,
    /// Energy-delay product, J·s.
    pub edp_js: Metric,
}

impl Metric {
    /// The half-width of its interval relative to its mean (0 for a mean of 0).
    pub fn relative_half(&self) -> f64 {
        if self.mean.abs() > 0.0 {
            (self.high - self.low) / 2.0 / self.mean.abs()
        } else {
            0.0
        }
    }
}

/// A number each run of a variant printed (perplexity, max error): its mean over the runs that
/// printed it, with the t-interval of their spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metric {
    /// Mean.
    pub mean: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Runs that printed it.
    pub runs: usize,
}

impl Metric {
    /// The summary of `values`; `None` for none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_quantile_95(n - 1) * (var / n as f64).sqrt()
        } else {
            0.0
        };
        Some(Self {
            mean,
            low: mean - half,
            high: mean + half,
            runs: n,
        })
    }
}

impl Variant {
    /// One run of `name` that drew `energy` over `time_s`, its mean power and energy-delay
    /// product derived from them; parts and requests empty.
    fn one_run(name: &str, energy: EnergyEstimate, time_s: f64) -> Self {
        Self {
            name: name.to_owned(),
            runs: 1,
            aa: None,
            energy,
            time_s,
            mean_power_w: if time_s > 0.0 {
                energy.mj / 1e3 / time_s
            } else {
                0.0
            },
            edp_js: energy.mj / 1e3 * time_s,
            requests: Vec::new(),
            ops: Vec::new(),
            kernels: Vec::new(),
            metric: None,
            spread: None,
        }
    }

    /// The variant `name` of one device's attribution.
    pub fn of(name: &str, a: &Attribution) -> Self {
        let c = &a.closure;
        // The counter's 1 mJ steps, at both ends of the run.
        let energy = EnergyEstimate::from_half_width(c.counter_mj, 1.0);
        Self {
            requests: a
                .requests
                .ranges
                .iter()
                .map(|r| RequestMean {
                    path: r.path.clone(),
                    count: r.count,
                    mean: r.mean,
                    per_token: r.per_token,
                })
                .collect(),
            ops: a
                .ops
                .iter()
                .map(|o| Part {
                    name: o.op_class.label().to_owned(),
                    launches: o.launches,
                    energy: o.dynamic.plus_correlated(&o.static_share),
                })
                .chain(std::iter::once(idle_outside_work(a)))
                .collect(),
            kernels: a
                .signatures
                .iter()
                .map(|s| Part {
                    name: kernel_key(&s.name, s.launch),
                    launches: s.launches,
                    energy: s.dynamic.plus_correlated(&s.static_share),
                })
                .collect(),
            ..Self::one_run(name, energy, c.window_ns as f64 * 1e-9)
        }
    }
}

impl Variant {
    /// The variant `name` of several runs: each figure's mean, with the wider of the runs' own
    /// mean half-width and the t-interval of their spread; parts a run lacks count as zero
    /// there. `None` for no runs.
    pub fn of_runs(name: &str, runs: &[Variant]) -> Option<Self> {
        let first = runs.first()?;
        if runs.len() == 1 {
            return Some(Self {
                name: name.to_owned(),
                ..first.clone()
            });
        }
        let n = runs.len() as f64;
        let mean_f = |f: &dyn Fn(&Variant) -> f64| runs.iter().map(f).sum::<f64>() / n;
        let each =
            |f: &dyn Fn(&Variant) -> f64| Metric::of(&runs.iter().map(f).collect::<Vec<_>>());
        let energy = combine(&runs.iter().map(|r| r.energy).collect::<Vec<_>>());
        let time_s = mean_f(&|r| r.time_s);
        let parts = |of: &dyn Fn(&Variant) -> &Vec<Part>| -> Vec<Part> {
            let mut names: Vec<String> = runs
                .iter()
                .flat_map(|r| of(r).iter().map(|p| p.name.clone()))
                .collect();
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .map(|name| {
                    let found: Vec<Option<&Part>> = runs
                        .iter()
                        .map(|r| of(r).iter().find(|p| p.name == name))
                        .collect();
                    let energies: Vec<EnergyEstimate> = found
                        .iter()
                        .map(|p| p.map_or(EnergyEstimate::from_half_width(0.0, 0.0), |p| p.energy))
                        .collect();
                    let launches = found
                        .iter()
                        .map(|p| p.map_or(0, |p| p.launches))
                        .sum::<u64>()
                        / runs.len() as u64;
                    Part {
                        name,
                        launches,
                        energy: combine(&energies),
                    }
                })
                .collect()
        };
        let requests = first
            .requests
            .iter()
            .filter_map(|r| {
                let all: Vec<&RequestMean> = runs
                    .iter()
                    .filter_map(|v| v.requests.iter().find(|q| q.path == r.path))
                    .collect();
                (all.len() == runs.len()).then(|| RequestMean {
                    path: r.path.clone(),
                    count: all.iter().map(|q| q.count).sum(),
                    mean: combine(&all.iter().map(|q| q.mean).collect::<Vec<_>>()),
                    per_token: all
                        .iter()
                        .map(|q| q.per_token)
                        .collect::<Option<Vec<_>>>()
                        .map(|t| combine(&t)),
                })
            })
            .collect();
        let halves = |parity: usize| -> Vec<EnergyEstimate> {
            runs.iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == parity)
                .map(|(_, r)| r.energy)
                .collect()
        };
        let aa = (runs.len() >= 4)
            .then(|| Ratio::of(&combine(&halves(0)), &combine(&halves(1))))
            .flatten();
        Some(Self {
            name: name.to_owned(),
            runs: runs.len(),
            aa,
            energy,
            time_s,
            mean_power_w: mean_f(&|r| r.mean_power_w),
            edp_js: mean_f(&|r| r.edp_js),
            requests,
            ops: parts(&|r| &r.ops),
            kernels: parts(&|r| &r.kernels),
            metric: None,
            spread: Some(Spread {
                time_s: each(&|r| r.time_s)?,
                mean_power_w: each(&|r| r.mean_power_w)?,
                edp_js: each(&|r| r.edp_js)?,
            }),
        })
    }
}

/// The part that holds a run's idle energy outside its work's busy time, beside its op
/// classes (which hold the static share of their busy time): a variant that runs longer, or
/// with more gaps, pays it.
pub const IDLE_OUTSIDE_PART: &str = "idle outside the work";

/// Idle power over the run's time that no op's static share covers.
fn idle_outside_work(a: &Attribution) -> Part {
    let shares: f64 = a.ops.iter().map(|o| o.static_share.mj).sum();
    let mj = (a.closure.idle_mj - shares).max(0.0);
    let p = &a.idle_power;
    let half = if p.mw > 0.0 {
        mj * (p.high_mw - p.low_mw) / 2.0 / p.mw
    } else {
        0.0
    };
    Part {
        name: IDLE_OUTSIDE_PART.to_owned(),
        launches: 0,
        energy: EnergyEstimate::from_half_width(mj, half),
    }
}

/// The kernels of `v` whose names `matches` takes, summed: launches per run and energy per
/// launch (half-widths added: one fit prices them). `None` when none matches or none launched.
pub fn per_launch(v: &Variant, matches: impl Fn(&str) -> bool) -> Option<(u64, EnergyEstimate)> {
    let zero = EnergyEstimate::from_half_width(0.0, 0.0);
    let (launches, energy) = v
        .kernels
        .iter()
        .filter(|k| matches(&k.name))
        .fold((0u64, zero), |(n, e), k| {
            (n + k.launches, e.plus_correlated(&k.energy))
        });
    (launches > 0).then(|| (launches, energy.scaled(1.0 / launches as f64)))
}

/// Whether the range path `path` is the range `name`: the whole path, or its last component.
pub fn is_range(path: &str, name: &str) -> bool {
    path == name || path.rsplit('/').next() == Some(name)
}

/// The part that holds a range's idle power over its wall time, beside its op classes.
pub const RANGE_IDLE_PART: &str = "idle over the wall time";

impl Variant {
    /// The instances of range `name` in one run as a variant of their own (`wattlens compare
    /// --ranges`): per instance, its energy as a request costs it, its wall time, mean power
    /// and energy-delay product; and the op classes and kernels whose work ran inside the
    /// instances, per instance, with the idle over their wall time as one more op part, so that
    /// the parts add up to the instance's energy. Sums inside a variant add half-widths (they
    /// share the fit and the idle power). `None` when no instance of `name` is there.
    pub fn of_range(name: &str, trace: &Trace, a: &Attribution) -> Option<Self> {
        let ranges: Vec<_> = a
            .requests
            .ranges
            .iter()
            .filter(|r| is_range(&r.path, name))
            .collect();
        let count: u64 = ranges.iter().map(|r| r.count).sum();
        if count == 0 {
            return None;
        }
        let per = 1.0 / count as f64;
        let zero = EnergyEstimate::from_half_width(0.0, 0.0);
        let sum = |f: &dyn Fn(&crate::attribution::RangeEnergy) -> EnergyEstimate| {
            ranges
                .iter()
                .fold(zero, |acc, r| acc.plus_correlated(&f(r)))
        };
        let energy = sum(&|r| r.total).scaled(per);
        let idle = sum(&|r| r.idle).scaled(per);
        let time_s = ranges.iter().map(|r| r.wall_ns).sum::<u64>() as f64 * 1e-9 * per;
        let tokens: Option<u64> = ranges.iter().map(|r| r.tokens).sum();
        let per_token = tokens
            .filter(|&t| t > 0)
            .map(|t| sum(&|r| r.total).scaled(1.0 / t as f64));
        let windows = crate::intervals::union(
            a.requests
                .instances
                .iter()
                .filter(|r| is_range(&r.path, name))
                .map(|r| Interval::new(r.start_ns, r.end_ns))
                .collect(),
        );
        let inside = |t_ns: u64| {
            let i = windows.partition_point(|w| w.from_ns <= t_ns);
            i > 0 && t_ns <= windows[i - 1].to_ns
        };
        let index: HashMap<u64, usize> = trace
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut ops: BTreeMap<String, (u64, EnergyEstimate)> = BTreeMap::new();
        let mut kernels: BTreeMap<String, (u64, EnergyEstimate)> = BTreeMap::new();
        for e in &a.spans {
            let Some(span) = index.get(&e.span).map(|&i| &trace.spans[i]) else {
                continue;
            };
            if !inside(span.start_ns / 2 + span.end_ns / 2) {
                continue;
            }
            let name = trace.str(span.name);
            let energy = e
                .dynamic
                .plus_correlated(&EnergyEstimate::from_half_width(e.static_mj, 0.0));
            let op = op_class_of(trace, name, span.kind.label())
                .label()
                .to_owned();
            for (map, key) in [
                (&mut ops, op),
                (&mut kernels, kernel_key(name, span.launch)),
            ] {
                let entry = map.entry(key).or_insert((0, zero));
                *entry = (entry.0 + 1, entry.1.plus_correlated(&energy));
            }
        }
        ops.insert(RANGE_IDLE_PART.to_owned(), (0, idle.scaled(count as f64)));
        let parts = |map: BTreeMap<String, (u64, EnergyEstimate)>| -> Vec<Part> {
            map.into_iter()
                .map(|(name, (launches, e))| Part {
                    name,
                    launches: launches / count,
                    energy: e.scaled(per),
                })
                .collect()
        };
        Some(Self {
            requests: vec![RequestMean {
                path: name.to_owned(),
                count,
                mean: energy,
                per_token,
            }],
            ops: parts(ops),
            kernels: parts(kernels),
            ..Self::one_run(name, energy, time_s)
        })
    }
}

/// The mean of `estimates`, with the wider of their mean half-width and the t-interval of
/// their spread.
fn combine(estimates: &[EnergyEstimate]) -> EnergyEstimate {
    let n = estimates.len().max(1) as f64;
    let mean = estimates.iter().map(|e| e.mj).sum::<f64>() / n;
    let own = estimates.iter().map(EnergyEstimate::half_mj).sum::<f64>() / n;
    let spread = if estimates.len() > 1 {
        let var = estimates.iter().map(|e| (e.mj - mean).powi(2)).sum::<f64>() / (n - 1.0);
        t_quantile_95(estimates.len() - 1) * (var / n).sqrt()
    } else {
        0.0
    };
    EnergyEstimate::from_half_width(mean, own.max(spread))
}

/// A kernel signature's name in the comparison: its name and launch shape.
fn kernel_key(name: &str, launch: Option<LaunchShape>) -> String {
    match launch {
        Some(l) => format!("{name} ({}x{})", l.blocks(), l.threads_per_block()),
        None => name.to_owned(),
    }
}

/// One part's difference between a variant and the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct PartDiff {
    /// The part.
    pub name: String,
    /// Variant − baseline.
    pub delta: Delta,
    /// Launches in the baseline and in the variant.
    pub launches: (u64, u64),
}

/// A variant against the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The variant.
    pub variant: String,
    /// The baseline.
    pub baseline: String,
    /// Run energy, variant over baseline.
    pub energy: Option<Ratio>,
    /// Run time, variant over baseline.
    pub time_ratio: f64,
    /// The same with its 95% interval, where both variants have several runs.
    pub time: Option<Ratio>,
    /// Per request path both runs have: mean energy, variant over baseline.
    pub requests: Vec<(String, Ratio)>,
    /// Per op class, largest difference first.
    pub ops: Vec<PartDiff>,
    /// Per kernel signature, largest difference first.
    pub kernels: Vec<PartDiff>,
    /// The run energy's difference.
    pub total: Delta,
    /// The share of that difference the op classes' differences add up to, with the idle
    /// outside the work (the rest is what the attribution left unexplained).
    pub explained: f64,
}

/// `variant` against `baseline`.
pub fn verdict(baseline: &Variant, variant: &Variant) -> Verdict {
    let total = Delta::between(&baseline.energy, &variant.energy);
    let ops = diffs(&baseline.ops, &variant.ops);
    let explained = if total.mj.abs() > 0.0 {
        ops.iter().map(|d| d.delta.mj).sum::<f64>() / total.mj
    } else {
        0.0
    };
    Verdict {
        variant: variant.name.clone(),
        baseline: baseline.name.clone(),
        energy: Ratio::of(&variant.energy, &baseline.energy),
        time_ratio: if baseline.time_s > 0.0 {
            variant.time_s / baseline.time_s
        } else {
            0.0
        },
        time: match (&baseline.spread, &variant.spread) {
            (Some(a), Some(b)) if a.time_s.mean > 0.0 => {
                let value = b.time_s.mean / a.time_s.mean;
                let rel = a.time_s.relative_half().hypot(b.time_s.relative_half());
                Some(Ratio {
                    value,
                    low: (value * (1.0 - rel)).max(0.0),
                    high: value * (1.0 + rel),
                })
            }
            _ => None,
        },
        requests: baseline
            .requests
            .iter()
            .filter_map(|a| {
                let b = variant.requests.iter().find(|b| b.path == a.path)?;
                Some((a.path.clone(), Ratio::of(&b.mean, &a.mean)?))
            })
            .collect(),
        ops,
        kernels: diffs(&baseline.kernels, &variant.kernels),
        total,
        explained,
    }
}

/// Each part of either run, variant − baseline (a part one run lacks counts as zero there),
/// largest difference first.
fn diffs(baseline: &[Part], variant: &[Part]) -> Vec<PartDiff> {
    let zero = EnergyEstimate::from_half_width(0.0, 0.0);
    let mut names: Vec<&str> = baseline
        .iter()
        .chain(variant)
        .map(|p| p.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let find = |parts: &[Part], n: &str| -> (EnergyEstimate, u64) {
        parts
            .iter()
            .find(|p| p.name == n)
            .map_or((zero, 0), |p| (p.energy, p.launches))
    };
    let mut out: Vec<PartDiff> = names
        .into_iter()
        .map(|n| {
            let (a, la) = find(baseline, n);
            let (b, lb) = find(variant, n);
            PartDiff {
                name: n.to_owned(),
                delta: Delta::between(&a, &b),
                launches: (la, lb),
            }
        })
        .collect();
    out.sort_by(|x, y| y.delta.mj.abs().total_cmp(&x.delta.mj.abs()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, mj: f64, half: f64) -> Part {
        Part {
            name: name.into(),
            launches: 10,
            energy: EnergyEstimate::from_half_width(mj, half),
        }
    }

    fn variant(name: &str, total_mj: f64, ops: Vec<Part>) -> Variant {
        Variant {
            name: name.into(),
            runs: 1,
            aa: None,
            energy: EnergyEstimate::from_half_width(total_mj, 1.0),
            time_s: 2.0,
            mean_power_w: total_mj / 2e3,
            edp_js: total_mj / 1e3 * 2.0,
            requests: vec![RequestMean {
                path: "request".into(),
                count: 4,
                mean: EnergyEstimate::from_half_width(total_mj / 4.0, total_mj / 400.0),
                per_token: None,
            }],
            ops,
            kernels: Vec::new(),
            metric: None,
            spread: None,
        }
    }

    #[test]
    fn the_difference_is_named_by_op_and_its_explained_share_adds_up() {
        let base = variant(
            "fp16",
            100_000.0,
            vec![
                part("matmul", 60_000.0, 600.0),
                part("norm", 5_000.0, 500.0),
            ],
        );
        let int8 = variant(
            "int8",
            130_000.0,
            vec![
                part("matmul", 50_000.0, 500.0),
                part("norm", 5_100.0, 500.0),
                part("elementwise", 36_000.0, 400.0),
            ],
        );
        let v = verdict(&base, &int8);
        assert_eq!(
            v.ops[0].name, "elementwise",
            "the dequantise kernels, largest first"
        );
        assert!((v.ops[0].delta.mj - 36_000.0).abs() < 1e-9);
        assert!(v.ops[0].delta.is_resolved());
        let norm = v.ops.iter().find(|d| d.name == "norm").unwrap();
        assert!(!norm.delta.is_resolved(), "100 mJ ± 707 mJ says nothing");
        assert!((v.explained - 26_100.0 / 30_000.0).abs() < 1e-9);
        let r = v.energy.unwrap();
        assert!((r.value - 1.3).abs() < 1e-9 && r.low < 1.3 && r.high > 1.3);
        assert_eq!(v.requests.len(), 1);
        assert!((v.requests[0].1.value - 1.3).abs() < 1e-9);
    }

    #[test]
    fn time_power_and_edp_carry_their_run_to_run_spread_into_the_verdict() {
        let runs = |name: &str, times: &[f64]| {
            let each: Vec<Variant> = times
                .iter()
                .map(|&t| Variant {
                    time_s: t,
                    mean_power_w: 100.0 / t,
                    edp_js: 100.0 * t,
                    ..variant(name, 100_000.0, Vec::new())
                })
                .collect();
            Variant::of_runs(name, &each).unwrap()
        };
        let a = runs("a", &[2.0, 2.2, 1.8]);
        let b = runs("b", &[4.0, 4.4, 3.6]);
        let s = a.spread.unwrap();
        assert!((s.time_s.mean - 2.0).abs() < 1e-12);
        // t(2) = 4.303 × sd 0.2 / √3.
        assert!((s.time_s.high - s.time_s.mean - 4.303 * 0.2 / 3f64.sqrt()).abs() < 1e-3);
        assert!(s.mean_power_w.low < s.mean_power_w.mean && s.edp_js.runs == 3);
        let v = verdict(&a, &b);
        let t = v.time.unwrap();
        assert!(
            (t.value - 2.0).abs() < 1e-12 && t.low < 2.0 && 2.0 < t.high,
            "{t:?}"
        );
        // One run shows no spread, and the verdict's time then has no interval.
        let one = Variant::of_runs("c", &[variant("c", 1.0, Vec::new())]).unwrap();
        assert!(one.spread.is_none() && verdict(&one, &b).time.is_none());
    }

    #[test]
    fn energy_per_launch_of_the_named_kernels() {
        let mut v = variant("int8", 100_000.0, Vec::new());
        v.kernels = vec![
            part("dequant_a (64x128)", 4_000.0, 400.0),
            part("dequant_b (32x128)", 2_000.0, 200.0),
            part("gemm (132x384)", 50_000.0, 500.0),
        ];
        let (n, e) = per_launch(&v, |k| k.starts_with("dequant")).unwrap();
        assert_eq!(n, 20);
        assert!((e.mj - 300.0).abs() < 1e-9);
        assert!((e.half_mj() - 30.0).abs() < 1e-9);
        assert!(per_launch(&v, |k| k.contains("softmax")).is_none());
    }

    #[test]
    fn repeated_runs_give_a_spread_interval_and_an_a_a_check() {
        let runs: Vec<Variant> = [100_000.0, 104_000.0, 98_000.0, 102_000.0]
            .iter()
            .map(|&mj| variant("fp16", mj, vec![part("matmul", mj * 0.6, 600.0)]))
            .collect();
        let v = Variant::of_runs("fp16", &runs).unwrap();
        assert_eq!(v.runs, 4);
        assert!((v.energy.mj - 101_000.0).abs() < 1e-9);
        // The runs' spread (sd 2582 mJ) dominates their own 1 mJ: t(3) × sd / 2.
        let half = (v.energy.high_mj - v.energy.low_mj) / 2.0;
        assert!((half - 3.182 * 2582.0 / 2.0).abs() < 10.0, "{half}");
        let aa = v.aa.unwrap();
        assert!(aa.low <= 1.0 && 1.0 <= aa.high, "{aa:?}");
        assert_eq!(v.ops[0].name, "matmul");
        assert!(v.requests[0].count == 16);
        assert!(Variant::of_runs("x", &[]).is_none());
    }
}
