//! Fit a [`SensorProfile`] from a calibration run: idle, a long step, a square wave and short
//! pulses of a full-chip load, with the sensors read densely.
//!
//! What is fitted: the samples' cadence, displacement, jitter and noise; the response time
//! constant (least squares on the step's rise); the counter's period (its update grid) and
//! resolution; the instant field's lag behind the step; idle power; the NVML read cost; and
//! how many samples the ring held at the first drain. The square wave's sample mean against its
//! counter mean shows the aliasing the profile exists to correct.

use serde::{Deserialize, Serialize};

use crate::attribution::samples_of;
use crate::intervals::Interval;
use crate::power::CounterWindow;
use crate::power::{counter_reads, counter_windows, fit_counter_grid};
use crate::sensor_profile::SensorProfile;
use crate::trace::{PowerReading, Trace};

/// CPU budget of the sampler during calibration (share of a core): dense reads for a short run.
pub const CALIBRATION_CPU_BUDGET: f64 = 0.05;

/// When each calibration phase ran, trace clock ns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPhases {
    /// The GPU idle (nothing launched).
    pub idle: Interval,
    /// The load held on.
    pub step: Interval,
    /// The square wave, from its first on-interval's start to its last off-interval's end.
    pub square: Interval,
    /// Each short pulse.
    pub pulses: Vec<Interval>,
}

/// The fitted profile and the evidence behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    /// The fitted profile.
    pub profile: SensorProfile,
    /// GPU model.
    pub gpu: String,
    /// Driver version.
    pub driver: String,
    /// Idle power, mW.
    pub idle_mw: f64,
    /// Steady power under the step load, mW.
    pub step_mw: f64,
    /// RMS error of the first-order response fit to the step's rise, mW.
    pub tau_fit_rms_mw: f64,
    /// Counter updates the grid fit rests on.
    pub counter_brackets: usize,
    /// Counter reads in the run.
    pub counter_reads: usize,
    /// Counter windows formed from them (reads snapped to the update grid).
    pub counter_windows: usize,
    /// The grid's error bound, ns.
    pub counter_grid_error_ns: f64,
    /// Mean power of the square wave from the samples, mW.
    pub square_samples_mw: f64,
    /// Mean power of the square wave from the counter, mW.
    pub square_counter_mw: f64,
    /// Mean excess energy of one pulse from the samples above idle, mJ.
    pub pulse_excess_samples_mj: f64,
}

/// Why a calibration run could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// A phase had too few readings of some kind.
    #[error("the {0} phase has too few {1} readings to fit; the GPU's NVML may not report them")]
    TooFew(&'static str, &'static str),
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (m, sd)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Fit the profile of `device` from a calibration `trace` whose phases ran at `phases`.
///
/// # Errors
/// [`CalibrationError`] when a phase lacks samples or counter reads.
pub fn fit_profile(
    trace: &Trace,
    device: u32,
    phases: &CalibrationPhases,
) -> Result<Calibration, CalibrationError> {
    let base = &trace.meta.sensor_profile;
    let samples = samples_of(trace, device);
    let cadence = Cadence::of(&samples)?;
    let windows = counter_windows(&trace.power, device, base.counter_period_ns);
    let idle = Idle::of(&samples, &windows, phases.idle)?;
    let step = Step::of(&samples, phases.step, idle.samples_mw, base.sample_tau_ns)?;
    // Counter: the update grid and the resolution (gcd of the increments).
    let reads = counter_reads(&trace.power, device);
    let grid = fit_counter_grid(&reads, base.counter_period_ns)
        .ok_or(CalibrationError::TooFew("whole", "energy-counter"))?;
    let resolution = windows.iter().fold(0u64, |g, w| gcd(g, w.energy_mj)).max(1);
    let crossing = instant_crossing_ns(trace, device, phases.step.from_ns, (idle.mw, step.mw));
    let read_cost = {
        let mut v: Vec<f64> = reads
            .iter()
            .map(|r| (r.end_ns - r.start_ns) as f64)
            .collect();
        median(&mut v)
    };
    // The ring: how many samples the first drain returned (those older than the first read).
    let first_read = reads.first().map_or(0, |r| r.start_ns);
    let ring = samples.iter().filter(|s| s.0 < first_read).count() as u32;
    let (square_samples_mw, square_counter_mw) = square_wave(&samples, &windows, phases.square);
    let excess = pulse_excess_mj(&samples, &phases.pulses, (cadence.period, idle.samples_mw));
    let lag = crossing.unwrap_or(base.instant_lag_max_ns);
    let profile = SensorProfile {
        name: format!(
            "{} driver {} (calibrated)",
            trace
                .meta
                .devices
                .first()
                .map_or("GPU", |d| d.name.as_str()),
            trace.meta.driver.clone().unwrap_or_default()
        ),
        sample_period_ns: cadence.period as u64,
        sample_displaced_fraction: cadence.displaced_fraction,
        sample_displacement_min_ns: cadence.displacement_ns.0 as u64,
        sample_displacement_max_ns: cadence.displacement_ns.1 as u64,
        sample_jitter_sd_ns: (cadence.regular_sd / 2f64.sqrt()) as u64,
        sample_tau_ns: step.tau_ns as u64,
        sample_noise_sd_mw: idle.noise_sd_mw,
        sample_ring_capacity: if ring > 0 {
            ring
        } else {
            base.sample_ring_capacity
        },
        counter_period_ns: grid.period_ns.round() as u64,
        counter_resolution_mj: resolution,
        instant_period_ns: grid.period_ns.round() as u64,
        instant_lag_min_ns: lag.saturating_sub(grid.period_ns as u64),
        instant_lag_max_ns: lag,
        instant_window_ns: base.instant_window_ns,
        nvml_read_cost_ns: read_cost as u64,
    };
    Ok(Calibration {
        profile,
        gpu: trace
            .meta
            .devices
            .first()
            .map_or_else(String::new, |d| d.name.clone()),
        driver: trace.meta.driver.clone().unwrap_or_default(),
        idle_mw: idle.mw,
        step_mw: step.mw,
        tau_fit_rms_mw: step.fit_rms_mw,
        counter_brackets: grid.brackets,
        counter_reads: reads.len(),
        counter_windows: windows.len(),
        counter_grid_error_ns: grid.error_ns,
        square_samples_mw,
        square_counter_mw,
        pulse_excess_samples_mj: excess.iter().sum::<f64>() / excess.len().max(1) as f64,
    })
}

/// Settling time before a phase's plateau is read, ns.
const SETTLE_NS: u64 = 300_000_000;

/// The samples in `[a, b)`.
fn samples_in_range(samples: &[(u64, f64)], a: u64, b: u64) -> Vec<(u64, f64)> {
    samples
        .iter()
        .copied()
        .filter(|&(t, _)| t >= a && t < b)
        .collect()
}

/// The sample cadence: the median interval, and the samples displaced from it.
struct Cadence {
    /// The median interval between samples, ns.
    period: f64,
    /// Share of intervals shortened by a displaced sample (more than 25% early).
    displaced_fraction: f64,
    /// How far displaced samples came early, 5th and 95th percentiles, ns.
    displacement_ns: (f64, f64),
    /// Spread of the regular intervals, ns.
    regular_sd: f64,
}

impl Cadence {
    fn of(samples: &[(u64, f64)]) -> Result<Self, CalibrationError> {
        let mut intervals: Vec<f64> = samples
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) as f64)
            .collect();
        if intervals.len() < 20 {
            return Err(CalibrationError::TooFew("whole", "sample"));
        }
        let period = median(&mut intervals);
        let regular: Vec<f64> = intervals
            .iter()
            .copied()
            .filter(|&d| (d - period).abs() <= 0.25 * period)
            .collect();
        // A displaced sample makes one short interval before it and one long after: count the
        // short ones.
        let displaced: Vec<f64> = intervals
            .iter()
            .copied()
            .filter(|&d| d < 0.75 * period)
            .collect();
        let mut offsets: Vec<f64> = displaced.iter().map(|d| (d - period).abs()).collect();
        offsets.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            offsets
                .get(((offsets.len().saturating_sub(1)) as f64 * q) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let (_, regular_sd) = mean_sd(&regular);
        Ok(Self {
            period,
            displaced_fraction: displaced.len() as f64 / intervals.len() as f64,
            displacement_ns: (pick(0.05), pick(0.95)),
            regular_sd,
        })
    }
}

/// Idle power in the idle phase.
struct Idle {
    /// From the counter windows inside the phase (after settling), else the samples, mW.
    mw: f64,
    /// The samples' mean there, mW.
    samples_mw: f64,
    /// The samples' spread there: the sensor's noise, mW.
    noise_sd_mw: f64,
}

impl Idle {
    fn of(
        samples: &[(u64, f64)],
        windows: &[CounterWindow],
        idle: Interval,
    ) -> Result<Self, CalibrationError> {
        let (i0, i1) = (idle.from_ns + SETTLE_NS, idle.to_ns);
        let idle_samples: Vec<f64> = samples_in_range(samples, i0, i1)
            .iter()
            .map(|s| s.1)
            .collect();
        if idle_samples.len() < 5 {
            return Err(CalibrationError::TooFew("idle", "sample"));
        }
        let (samples_mw, noise_sd_mw) = mean_sd(&idle_samples);
        let idle_windows: Vec<_> = windows
            .iter()
            .filter(|w| w.start_ns >= i0 && w.end_ns <= i1)
            .collect();
        let mw = if idle_windows.is_empty() {
            samples_mw
        } else {
            idle_windows.iter().map(|w| w.energy_mj as f64).sum::<f64>()
                / idle_windows
                    .iter()
                    .map(|w| (w.end_ns - w.start_ns) as f64 * 1e-9)
                    .sum::<f64>()
        };
        Ok(Self {
            mw,
            samples_mw,
            noise_sd_mw,
        })
    }
}

/// The step phase: its plateau, and the sensor time constant that best fits the rise.
struct Step {
    /// The plateau after settling, mW.
    mw: f64,
    /// The best-fitting time constant, ns.
    tau_ns: f64,
    /// The fit's RMS error over the rise, mW.
    fit_rms_mw: f64,
}

impl Step {
    fn of(
        samples: &[(u64, f64)],
        Interval {
            from_ns: s0,
            to_ns: s1,
        }: Interval,
        idle_s_mw: f64,
        default_tau_ns: u64,
    ) -> Result<Self, CalibrationError> {
        let plateau: Vec<f64> = samples_in_range(samples, s0 + SETTLE_NS, s1)
            .iter()
            .map(|s| s.1)
            .collect();
        if plateau.len() < 5 {
            return Err(CalibrationError::TooFew("step", "sample"));
        }
        let step_mw = plateau.iter().sum::<f64>() / plateau.len() as f64;
        let rise = samples_in_range(samples, s0, s0 + 200_000_000);
        let amp = step_mw - idle_s_mw;
        let sse = |tau: f64| -> f64 {
            rise.iter()
                .map(|&(t, p)| {
                    let model = idle_s_mw + amp * (1.0 - (-((t - s0) as f64) / tau).exp());
                    (p - model).powi(2)
                })
                .sum()
        };
        let mut best = (f64::INFINITY, default_tau_ns as f64);
        let mut tau = 1_000_000.0;
        while tau <= 100_000_000.0 {
            let e = sse(tau);
            if e < best.0 {
                best = (e, tau);
            }
            tau += 250_000.0;
        }
        Ok(Self {
            mw: step_mw,
            tau_ns: best.1,
            fit_rms_mw: (best.0 / rise.len().max(1) as f64).sqrt(),
        })
    }
}

/// When, after the step began at `s0`, the instant power field first showed half the step
/// from `idle_mw` to `step_mw`, ns.
fn instant_crossing_ns(
    trace: &Trace,
    device: u32,
    s0: u64,
    (idle_mw, step_mw): (f64, f64),
) -> Option<u64> {
    let half = idle_mw + (step_mw - idle_mw) / 2.0;
    trace
        .power
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Instant {
                device: d,
                ts_ns,
                read_ns,
                power_mw,
            } if d == device && ts_ns >= s0 && f64::from(power_mw) >= half => {
                Some(ts_ns.saturating_add(u64::from(read_ns) / 2) - s0)
            }
            _ => None,
        })
        .min()
}

/// The square wave's mean power by the samples and by the counter, mW.
fn square_wave(
    samples: &[(u64, f64)],
    windows: &[CounterWindow],
    Interval {
        from_ns: q0,
        to_ns: q1,
    }: Interval,
) -> (f64, f64) {
    let sq: Vec<f64> = samples_in_range(samples, q0, q1)
        .iter()
        .map(|s| s.1)
        .collect();
    let square_samples_mw = sq.iter().sum::<f64>() / sq.len().max(1) as f64;
    let sq_windows: Vec<_> = windows
        .iter()
        .filter(|w| w.start_ns >= q0 && w.end_ns <= q1)
        .collect();
    let square_counter_mw = sq_windows.iter().map(|w| w.energy_mj as f64).sum::<f64>()
        / sq_windows
            .iter()
            .map(|w| (w.end_ns - w.start_ns) as f64 * 1e-9)
            .sum::<f64>()
            .max(1e-9);
    (square_samples_mw, square_counter_mw)
}

/// Each pulse's excess sample energy above the samples' idle in the 300 ms after its start
/// (from one sample period before), mJ.
fn pulse_excess_mj(
    samples: &[(u64, f64)],
    pulses: &[Interval],
    (period, idle_s_mw): (f64, f64),
) -> Vec<f64> {
    pulses
        .iter()
        .map(|pulse| {
            let a = pulse.from_ns;
            let s = samples_in_range(samples, a.saturating_sub(period as u64), a + 300_000_000);
            s.windows(2)
                .map(|w| ((w[0].1 + w[1].1) / 2.0 - idle_s_mw) * (w[1].0 - w[0].0) as f64 * 1e-9)
                .sum()
        })
        .collect()
}

/// The file name a profile is saved under: GPU model and driver, lower-case, safe characters.
pub use crate::sensor_profile::profile_file_name;

/// One step of the calibration run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalibrationStep {
    /// Nothing runs, ns.
    Idle(u64),
    /// The full-chip load runs, ns.
    On(u64),
}

/// Which phase a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhaseKind {
    /// Idle baseline.
    Idle,
    /// The long step.
    Step,
    /// Square wave.
    Square,
    /// Short pulses.
    Pulse,
    /// Gaps between phases.
    Rest,
}

/// The calibration run, about 12 s: 2 s idle, a 2.5 s step, 1.2 s rest, a 2 s square wave of
/// 10 ms on / 10 ms off, 1.2 s rest, three 5 ms pulses 0.8 s apart, 0.8 s rest.
pub fn calibration_plan() -> Vec<(PhaseKind, CalibrationStep)> {
    const MS: u64 = 1_000_000;
    let mut plan = vec![
        (PhaseKind::Idle, CalibrationStep::Idle(2000 * MS)),
        (PhaseKind::Step, CalibrationStep::On(2500 * MS)),
        (PhaseKind::Rest, CalibrationStep::Idle(1200 * MS)),
    ];
    for _ in 0..100 {
        plan.push((PhaseKind::Square, CalibrationStep::On(10 * MS)));
        plan.push((PhaseKind::Square, CalibrationStep::Idle(10 * MS)));
    }
    plan.push((PhaseKind::Rest, CalibrationStep::Idle(1200 * MS)));
    for _ in 0..3 {
        plan.push((PhaseKind::Pulse, CalibrationStep::On(5 * MS)));
        plan.push((PhaseKind::Rest, CalibrationStep::Idle(800 * MS)));
    }
    plan
}

/// The phases from the executed plan: each step's kind, and when it ran on the trace clock.
pub fn phases_from(executed: &[(PhaseKind, CalibrationStep, Interval)]) -> CalibrationPhases {
    let mut p = CalibrationPhases::default();
    for &(kind, step, when) in executed {
        match (kind, step) {
            (PhaseKind::Idle, _) => p.idle = when,
            (PhaseKind::Step, _) => p.step = when,
            (PhaseKind::Square, _) => {
                p.square = if p.square == Interval::default() {
                    when
                } else {
                    Interval::new(
                        p.square.from_ns.min(when.from_ns),
                        p.square.to_ns.max(when.to_ns),
                    )
                };
            }
            (PhaseKind::Pulse, CalibrationStep::On(_)) => p.pulses.push(when),
            _ => {}
        }
    }
    p
}
