//! Comparing kernel variants measured with the repetition harness ([`crate::repeat`]): per
//! variant, the energy, time, power and energy-delay product of one launch with 95% CIs over
//! batches, the accuracy over trials, and the energy ratio between two variants with a CI.
//!
//! Energy here is what a launch costs while it holds the GPU: its dynamic energy plus the idle
//! power over its duration (a slower variant pays more static energy; Zeus reports the same).

use serde::{Deserialize, Serialize};

use crate::attribution::t_quantile_95;
use crate::repeat::{Batch, BatchEnergy};

/// A median with a 95% CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Median over the samples.
    pub median: f64,
    /// Lower end of the 95% CI.
    pub low: f64,
    /// Upper end of the 95% CI.
    pub high: f64,
}

impl Stat {
    /// The median of `v` with a t-interval on its mean as the CI half-width (infinite for one
    /// sample).
    pub fn of(v: &[f64]) -> Self {
        let (median, half) = median_and_half_width(v);
        Self {
            median,
            low: median - half,
            high: median + half,
        }
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() < 2 {
        f64::INFINITY
    } else {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (mean, sd)
}

fn median_and_half_width(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    };
    if n < 2 {
        return (median, f64::INFINITY);
    }
    let (_, sd) = mean_sd(&s);
    (median, t_quantile_95(n - 1) * sd / (n as f64).sqrt())
}

/// Accuracy of a variant against an fp64 reference, one value per trial on fresh inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracySample {
    /// ‖out − ref‖₂ / ‖ref‖₂ per trial.
    pub rel_l2: Vec<f64>,
    /// max |out − ref| / max |ref| per trial.
    pub max_rel: Vec<f64>,
}

/// What one variant measured.
#[derive(Debug, Clone, Copy)]
pub struct VariantInput<'a> {
    /// Label, e.g. `matmul bf16`.
    pub name: &'a str,
    /// Floating-point (or integer) operations of one launch, when defined.
    pub flops_per_launch: Option<f64>,
    /// The batches as run.
    pub batches: &'a [Batch],
    /// What [`crate::repeat::analyze`] measured per batch (same order).
    pub energies: &'a [BatchEnergy],
    /// Accuracy trials, when measured.
    pub accuracy: Option<&'a AccuracySample>,
}

/// One variant's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// Label.
    pub name: String,
    /// Launches measured.
    pub launches: u64,
    /// Operations per launch, when defined.
    pub flops_per_launch: Option<f64>,
    /// Duration of one launch, ns.
    pub time_ns: Stat,
    /// Energy of one launch (dynamic + idle over its duration), mJ.
    pub energy_mj: Stat,
    /// Dynamic energy of one launch (above idle), mJ.
    pub dynamic_mj: Stat,
    /// Energy per GFLOP, mJ, when the operations are known.
    pub energy_per_gflop_mj: Option<Stat>,
    /// Mean board power while it runs, W.
    pub power_w: Stat,
    /// Energy-delay product of one launch, mJ·ms.
    pub edp_mj_ms: Stat,
    /// Relative L2 error, when measured.
    pub rel_l2: Option<Stat>,
    /// Worst max-relative error over the trials, when measured.
    pub max_rel: Option<f64>,
    /// Energy of one launch per batch, mJ (the samples behind `energy_mj`).
    pub batch_energy_mj: Vec<f64>,
}

/// Why variants could not be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// The batches and their energies do not pair up.
    #[error("{name}: {batches} batches but {energies} batch energies; analyse the batches that were run")]
    Mismatch {
        /// Variant.
        name: String,
        /// Batches run.
        batches: usize,
        /// Energies given.
        energies: usize,
    },
    /// Fewer than two batches: no CI.
    #[error("{0}: at least two batches are needed for a confidence interval; run more batches")]
    TooFewBatches(String),
}

/// Summarise one variant.
///
/// # Errors
/// [`CompareError`] when batches and energies differ in number or fewer than two were run.
pub fn summarize(v: &VariantInput<'_>) -> Result<VariantSummary, CompareError> {
    if v.batches.len() != v.energies.len() {
        return Err(CompareError::Mismatch {
            name: v.name.to_owned(),
            batches: v.batches.len(),
            energies: v.energies.len(),
        });
    }
    if v.batches.len() < 2 {
        return Err(CompareError::TooFewBatches(v.name.to_owned()));
    }
    let mut time_ns = Vec::new();
    let mut energy = Vec::new();
    let mut dynamic = Vec::new();
    let mut power = Vec::new();
    let mut edp = Vec::new();
    for (b, e) in v.batches.iter().zip(v.energies) {
        let n = b.launches.max(1) as f64;
        // Wall time per launch: the GPU is held for all of it, launch gaps included.
        let t_ns = b.end_ns.saturating_sub(b.start_ns) as f64 / n;
        let total = e.dynamic_per_launch_mj + e.idle_mw * t_ns * 1e-9;
        time_ns.push(t_ns);
        dynamic.push(e.dynamic_per_launch_mj);
        energy.push(total);
        power.push(e.busy_mw / 1e3);
        edp.push(total * t_ns * 1e-6);
    }
    let per_gflop = v
        .flops_per_launch
        .filter(|f| *f > 0.0)
        .map(|f| Stat::of(&energy.iter().map(|e| e / (f / 1e9)).collect::<Vec<_>>()));
    let launches = v.batches.iter().map(|b| b.launches).sum();
    Ok(VariantSummary {
        name: v.name.to_owned(),
        launches,
        flops_per_launch: v.flops_per_launch,
        time_ns: Stat::of(&time_ns),
        energy_mj: Stat::of(&energy),
        dynamic_mj: Stat::of(&dynamic),
        energy_per_gflop_mj: per_gflop,
        power_w: Stat::of(&power),
        edp_mj_ms: Stat::of(&edp),
        rel_l2: v.accuracy.map(|a| Stat::of(&a.rel_l2)),
        max_rel: v
            .accuracy
            .and_then(|a| a.max_rel.iter().copied().reduce(f64::max)),
        batch_energy_mj: energy,
    })
}

/// A ratio of `a` to `b` with a 95% CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Ratio of the means.
    pub ratio: f64,
    /// Lower end of the 95% CI.
    pub low: f64,
    /// Upper end of the 95% CI.
    pub high: f64,
}

/// The ratio of the mean energy of `a` to that of `b` (per operation when `per_flop` and both
/// know their operations, else per launch), with a 95% CI from the delta method on the log
/// ratio and the smaller sample's degrees of freedom. `None` when either has fewer than two
/// batches or a non-positive mean.
pub fn energy_ratio(a: &VariantSummary, b: &VariantSummary, per_flop: bool) -> Option<Ratio> {
    let scale = match (per_flop, a.flops_per_launch, b.flops_per_launch) {
        (true, Some(fa), Some(fb)) if fa > 0.0 && fb > 0.0 => fb / fa,
        (true, _, _) => return None,
        (false, _, _) => 1.0,
    };
    let (x, y) = (&a.batch_energy_mj, &b.batch_energy_mj);
    if x.len() < 2 || y.len() < 2 {
        return None;
    }
    let ((mx, sx), (my, sy)) = (mean_sd(x), mean_sd(y));
    if mx <= 0.0 || my <= 0.0 {
        return None;
    }
    let se = ((sx / mx).powi(2) / x.len() as f64 + (sy / my).powi(2) / y.len() as f64).sqrt();
    let t = t_quantile_95(x.len().min(y.len()) - 1);
    let ratio = mx / my * scale;
    Some(Ratio {
        ratio,
        low: ratio * (-t * se).exp(),
        high: ratio * (t * se).exp(),
    })
}

/// `x` with two decimals, or three significant digits below 0.1.
fn sig(x: f64) -> String {
    let decimals = if x > 0.0 && x < 0.1 {
        (2.0 - x.log10().floor()) as usize
    } else {
        2
    };
    format!("{x:.decimals$}")
}

/// One line saying how `a` compares with `b`: the energy ratio per FLOP (per launch when the
/// operations are unknown) with its CI, and both variants' worst errors where measured.
pub fn verdict(a: &VariantSummary, b: &VariantSummary) -> String {
    let (r, unit) = match energy_ratio(a, b, true) {
        Some(r) => (Some(r), "per FLOP"),
        None => (energy_ratio(a, b, false), "per launch"),
    };
    let head = match r {
        Some(r) => format!(
            "{} uses {}× the energy of {} {unit} (95% CI {}–{})",
            a.name,
            sig(r.ratio),
            b.name,
            sig(r.low),
            sig(r.high)
        ),
        None => format!(
            "{} vs {}: too few batches for an energy ratio",
            a.name, b.name
        ),
    };
    let err = |v: &VariantSummary| v.max_rel.map(|e| format!("{e:.1e}"));
    match (err(a), err(b)) {
        (Some(ea), Some(eb)) => {
            format!(
                "{head}; max relative error {ea} ({}) vs {eb} ({})",
                a.name, b.name
            )
        }
        _ => format!("{head}; accuracy not measured"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::sim::SimRng;

    fn batches(n: usize, launch_ns: u64, launches: u64) -> Vec<Batch> {
        (0..n as u64)
            .map(|k| {
                let start_ns = 1_000_000_000 * (k + 1);
                Batch {
                    start_ns,
                    end_ns: start_ns + launch_ns * launches,
                    launches,
                    gap_start_ns: start_ns - 500_000_000,
                    kernel_ns: None,
                }
            })
            .collect()
    }

    /// Batch energies around a true dynamic energy per launch, with relative noise `sd`.
    fn energies(rng: &mut SimRng, n: usize, dynamic_mj: f64, sd: f64) -> Vec<BatchEnergy> {
        (0..n)
            .map(|_| BatchEnergy {
                idle_mw: 100_000.0,
                busy_mw: 400_000.0,
                dynamic_per_launch_mj: dynamic_mj * (1.0 + sd * rng.normal()),
            })
            .collect()
    }

    #[test]
    fn a_launch_costs_its_dynamic_energy_plus_idle_power_over_its_wall_time() {
        let b = batches(3, 1_000_000, 1000);
        let e = [BatchEnergy {
            idle_mw: 100_000.0,
            busy_mw: 400_000.0,
            dynamic_per_launch_mj: 300.0,
        }; 3];
        let s = summarize(&VariantInput {
            name: "k",
            flops_per_launch: Some(2e9),
            batches: &b,
            energies: &e,
            accuracy: None,
        })
        .unwrap();
        // 1 ms at 100 W idle adds 100 mJ.
        assert!((s.energy_mj.median - 400.0).abs() < 1e-9);
        assert!((s.time_ns.median - 1e6).abs() < 1e-6);
        assert!((s.energy_per_gflop_mj.unwrap().median - 200.0).abs() < 1e-9);
        assert!((s.edp_mj_ms.median - 400.0).abs() < 1e-9);
        assert!((s.power_w.median - 400.0).abs() < 1e-9);
    }

    #[test]
    fn the_ratio_ci_covers_the_true_ratio_about_95_percent_of_the_time() {
        let mut rng = SimRng::new(3);
        let (mut covered, trials) = (0, 400);
        for _ in 0..trials {
            let b = batches(5, 1_000_000, 1000);
            let ea = energies(&mut rng, 5, 120.0, 0.03);
            let eb = energies(&mut rng, 5, 300.0, 0.05);
            let sum = |e: &[BatchEnergy]| {
                summarize(&VariantInput {
                    name: "v",
                    flops_per_launch: Some(1e9),
                    batches: &b,
                    energies: e,
                    accuracy: None,
                })
                .unwrap()
            };
            // True totals: dynamic + 100 mJ of idle per launch.
            let truth = (120.0 + 100.0) / (300.0 + 100.0);
            let r = energy_ratio(&sum(&ea), &sum(&eb), true).unwrap();
            assert!(r.low < r.ratio && r.ratio < r.high);
            if (r.low..=r.high).contains(&truth) {
                covered += 1;
            }
        }
        let share = f64::from(covered) / f64::from(trials);
        assert!((0.90..=0.99).contains(&share), "coverage {share}");
    }

    #[test]
    fn per_flop_ratios_scale_by_the_work_and_the_verdict_names_both_errors() {
        let b = batches(4, 1_000_000, 100);
        let mut rng = SimRng::new(9);
        let acc = |e: f64| AccuracySample {
            rel_l2: vec![e, e * 1.1, e * 0.9],
            max_rel: vec![e * 4.0, e * 5.0, e * 3.0],
        };
        let (ea, eb) = (
            energies(&mut rng, 4, 100.0, 0.0),
            energies(&mut rng, 4, 100.0, 0.0),
        );
        let (aa, ab) = (acc(1e-3), acc(1e-7));
        let a = summarize(&VariantInput {
            name: "int8",
            flops_per_launch: Some(4e9),
            batches: &b,
            energies: &ea,
            accuracy: Some(&aa),
        })
        .unwrap();
        let bb = summarize(&VariantInput {
            name: "bf16",
            flops_per_launch: Some(1e9),
            batches: &b,
            energies: &eb,
            accuracy: Some(&ab),
        })
        .unwrap();
        // Same energy per launch, four times the work: a quarter of the energy per FLOP.
        let r = energy_ratio(&a, &bb, true).unwrap();
        assert!((r.ratio - 0.25).abs() < 1e-12);
        assert!((energy_ratio(&a, &bb, false).unwrap().ratio - 1.0).abs() < 1e-12);
        let v = verdict(&a, &bb);
        assert!(
            v.starts_with("int8 uses 0.25× the energy of bf16 per FLOP (95% CI"),
            "{v}"
        );
        assert!(
            v.ends_with("max relative error 5.0e-3 (int8) vs 5.0e-7 (bf16)"),
            "{v}"
        );
    }

    #[test]
    fn one_batch_is_refused_rather_than_given_an_empty_ci() {
        let b = batches(1, 1_000, 10);
        let e = [BatchEnergy {
            idle_mw: 1.0,
            busy_mw: 2.0,
            dynamic_per_launch_mj: 1.0,
        }];
        let input = VariantInput {
            name: "k",
            flops_per_launch: None,
            batches: &b,
            energies: &e,
            accuracy: None,
        };
        assert_eq!(
            summarize(&input),
            Err(CompareError::TooFewBatches("k".into()))
        );
        let short = VariantInput {
            energies: &[],
            ..input
        };
        assert!(matches!(
            summarize(&short),
            Err(CompareError::Mismatch { .. })
        ));
    }
}
