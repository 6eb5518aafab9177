//! The sensor profile: every parameter of how a GPU's power sensors report, in one type.
//!
//! The simulated GPU produces readings from it, attribution corrects for it, and
//! `wattlens calibrate` (a later issue) fits it on real hardware.

use serde::{Deserialize, Serialize};

/// How one GPU's NVML power sensors sample, smooth, quantise and lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorProfile {
    /// Where the numbers come from, e.g. "h200-2026-11-22 (measured)".
    pub name: String,
    /// Nominal period of the samples ring, ns.
    pub sample_period_ns: u64,
    /// Share of samples whose timestamp is displaced off the nominal grid (0..=1).
    pub sample_displaced_fraction: f64,
    /// Smallest displacement of a displaced sample, ns.
    pub sample_displacement_min_ns: u64,
    /// Largest displacement of a displaced sample, ns.
    pub sample_displacement_max_ns: u64,
    /// Standard deviation of the small timestamp jitter every sample has, ns.
    pub sample_jitter_sd_ns: u64,
    /// Time constant of the first-order response the samples see, ns.
    pub sample_tau_ns: u64,
    /// Standard deviation of the additive noise on each sample, mW.
    pub sample_noise_sd_mw: f64,
    /// Number of samples the ring buffer holds before it overwrites.
    pub sample_ring_capacity: u32,
    /// Update period of the energy counter, ns.
    pub counter_period_ns: u64,
    /// Resolution of the energy counter, mJ.
    pub counter_resolution_mj: u64,
    /// Update period of the instant-power field, ns.
    pub instant_period_ns: u64,
    /// Shortest lag of the instant-power field behind the true power, ns.
    pub instant_lag_min_ns: u64,
    /// Longest lag of the instant-power field behind the true power, ns.
    pub instant_lag_max_ns: u64,
    /// Width of the window the instant-power field averages over, ns.
    pub instant_window_ns: u64,
    /// CPU time of one NVML read on the measuring host, ns.
    pub nvml_read_cost_ns: u64,
}

impl SensorProfile {
    /// The profile measured on one H200 (driver 580.159.04) on 2026-11-22.
    ///
    /// Source: `data/h200-sensor-2026-11-22/`. Cadence 20.0 ms median with about 20% of
    /// samples displaced by 8.7–11.5 ms (the 10 ms/30 ms interval pairs); the step and 5 ms
    /// pulse responses both fit a first-order response with τ ≈ 17 ms; idle sample noise
    /// σ ≈ 0.46 W; counter every 100 ms in 1 mJ steps; field 186 every ~100 ms, 50–100 ms late;
    /// 1.6 ms of CPU per NVML read.
    pub fn h200_2026_11_22() -> Self {
        Self {
            name: "h200-2026-11-22 (measured)".to_owned(),
            sample_period_ns: 20_000_000,
            sample_displaced_fraction: 0.2,
            sample_displacement_min_ns: 8_500_000,
            sample_displacement_max_ns: 11_500_000,
            sample_jitter_sd_ns: 300_000,
            sample_tau_ns: 17_000_000,
            sample_noise_sd_mw: 460.0,
            sample_ring_capacity: 119,
            counter_period_ns: 100_000_000,
            counter_resolution_mj: 1,
            instant_period_ns: 100_000_000,
            instant_lag_min_ns: 50_000_000,
            instant_lag_max_ns: 100_000_000,
            instant_window_ns: 10_000_000,
            nvml_read_cost_ns: 1_600_000,
        }
    }
}

impl Default for SensorProfile {
    fn default() -> Self {
        Self::h200_2026_11_22()
    }
}
