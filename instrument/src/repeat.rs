//! The repetition harness (after Yang, Adamek & Armour, SC24, and Kernel Tuner's continuous
//! observer): repeat a kernel in batches that each cover many counter periods, separated by
//! idle gaps that shift each batch's phase against the counter and let the GPU cool to its
//! baseline; discard each batch's rise; report the median per launch with a CI.
//!
//! [`plan`] says what to run; the caller runs it on the GPU and hands the batch times back with
//! the power readings to [`analyze`].

use serde::{Deserialize, Serialize};

use crate::attribution::{EnergyEstimate, PowerEstimate};
use crate::sensor_profile::SensorProfile;
use crate::trace::PowerReading;

/// How to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RepeatConfig {
    /// Length of each batch, ns (at least several counter periods).
    pub batch_ns: u64,
    /// Batches (trials).
    pub batches: u32,
    /// Idle gap before each batch, ns (cool-down and a fresh baseline), before the phase shift.
    pub gap_ns: u64,
    /// Start of each batch discarded as the rise, ns.
    pub rise_ns: u64,
}

impl Default for RepeatConfig {
    fn default() -> Self {
        Self {
            batch_ns: 1_200_000_000,
            batches: 5,
            gap_ns: 600_000_000,
            rise_ns: 200_000_000,
        }
    }
}

/// The idle gap before each batch, ns: the base gap plus a shift of k/batches of a counter
/// period, so the batches sample every phase of the counter.
pub fn plan(config: &RepeatConfig, counter_period_ns: u64) -> Vec<u64> {
    (0..config.batches)
        .map(|k| {
            config.gap_ns + counter_period_ns * u64::from(k) / u64::from(config.batches.max(1))
        })
        .collect()
}

/// One batch as run: when it started and ended on the trace clock, and how many launches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// First launch's start, trace ns.
    pub start_ns: u64,
    /// Last launch's end, trace ns.
    pub end_ns: u64,
    /// Launches in the batch.
    pub launches: u64,
    /// Start of the idle gap before it, trace ns.
    pub gap_start_ns: u64,
    /// Summed duration of its launches, ns, when each was timed (for the mean launch time;
    /// energy per launch is always the batch's energy over its launches, since the GPU stays
    /// at power through the few µs between back-to-back launches).
    pub kernel_ns: Option<u64>,
}

/// What one batch measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchEnergy {
    /// Idle power in the settled end of the gap before it, mW.
    pub idle_mw: f64,
    /// Steady power in the batch after the rise and the sensor's lag, mW.
    pub busy_mw: f64,
    /// Dynamic energy per launch, mJ.
    pub dynamic_per_launch_mj: f64,
}

/// The harness's result for one kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepeatResult {
    /// Every batch.
    pub batches: Vec<BatchEnergy>,
    /// Median dynamic power above idle, with a 95% CI over batches.
    pub dynamic_power: PowerEstimate,
    /// Median dynamic energy per launch, with a 95% CI over batches.
    pub dynamic_per_launch: EnergyEstimate,
    /// Dynamic plus idle energy per launch (the launch holding the whole GPU).
    pub total_per_launch: EnergyEstimate,
    /// Mean launch duration, ns (kernel time when the batches carry it).
    pub launch_ns: f64,
    /// Dynamic energy per GFLOP (median and 95% CI over batches), when the work per launch
    /// was given.
    pub dynamic_per_gflop: Option<EnergyEstimate>,
}

/// Why a repetition could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum RepeatError {
    /// A batch or gap had too few samples.
    #[error("batch {0} has too few power samples in it or in the gap before it; lengthen the batches or the gaps")]
    TooFewSamples(usize),
    /// Nothing ran.
    #[error("no batches were run")]
    NoBatches,
}

fn mean_samples_mw(samples: &[(u64, f64)], a: u64, b: u64) -> Option<f64> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| (a..b).contains(t))
        .map(|&(_, p)| p)
        .collect();
    (v.len() >= 2).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The median and a 95% CI of the median-ish centre of `v` (t-interval on the mean, centred
/// on the median).
fn median_ci(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    if n < 2 {
        return (median, f64::INFINITY);
    }
    let mean = s.iter().sum::<f64>() / n as f64;
    let sd = (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    (
        median,
        crate::attribution::t_quantile_95(n - 1) * sd / (n as f64).sqrt(),
    )
}

/// Analyse batches run per [`plan`] from the device's power readings; `flops_per_launch`, when
/// known, adds the energy per GFLOP.
///
/// # Errors
/// [`RepeatError`] when a batch is not covered by samples.
pub fn analyze(
    readings: &[PowerReading],
    device: u32,
    profile: &SensorProfile,
    batches: &[Batch],
    config: &RepeatConfig,
    flops_per_launch: Option<f64>,
) -> Result<RepeatResult, RepeatError> {
    if batches.is_empty() {
        return Err(RepeatError::NoBatches);
    }
    let samples = crate::attribution::samples_in(readings, device);
    let tau = profile.sample_tau_ns as f64;
    let mut out = Vec::with_capacity(batches.len());
    for (k, b) in batches.iter().enumerate() {
        let gap = b.start_ns.saturating_sub(b.gap_start_ns);
        let idle = mean_samples_mw(&samples, b.start_ns - gap * 2 / 5, b.start_ns)
            .ok_or(RepeatError::TooFewSamples(k))?;
        // Steady part, with the sensor's lag: samples trail the power by about τ.
        let lag = tau as u64;
        let from = (b.start_ns + config.rise_ns).min(b.end_ns);
        let busy =
            mean_samples_mw(&samples, from + lag, b.end_ns).ok_or(RepeatError::TooFewSamples(k))?;
        let dur_s = (b.end_ns - b.start_ns) as f64 * 1e-9;
        out.push(BatchEnergy {
            idle_mw: idle,
            busy_mw: busy,
            dynamic_per_launch_mj: (busy - idle) * dur_s / b.launches.max(1) as f64,
        });
    }
    let launches: u64 = batches.iter().map(|b| b.launches).sum();
    let busy_ns: u64 = batches
        .iter()
        .map(|b| b.kernel_ns.unwrap_or(b.end_ns - b.start_ns))
        .sum();
    let launch_ns = busy_ns as f64 / launches.max(1) as f64;
    let (p, p_half) = median_ci(
        &out.iter()
            .map(|b| b.busy_mw - b.idle_mw)
            .collect::<Vec<_>>(),
    );
    let (e, e_half) = median_ci(
        &out.iter()
            .map(|b| b.dynamic_per_launch_mj)
            .collect::<Vec<_>>(),
    );
    let (i, i_half) = median_ci(&out.iter().map(|b| b.idle_mw).collect::<Vec<_>>());
    let idle_per_launch = i * launch_ns * 1e-9;
    Ok(RepeatResult {
        batches: out,
        dynamic_power: PowerEstimate::from_half_width(p, p_half),
        dynamic_per_launch: EnergyEstimate::from_half_width(e, e_half),
        total_per_launch: EnergyEstimate::from_half_width(
            e + idle_per_launch,
            e_half + i_half * launch_ns * 1e-9,
        ),
        launch_ns,
        dynamic_per_gflop: flops_per_launch
            .filter(|&f| f > 0.0)
            .map(|f| EnergyEstimate::from_half_width(e * 1e9 / f, e_half * 1e9 / f)),
    })
}
