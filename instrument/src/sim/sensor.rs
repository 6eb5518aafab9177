//! The simulated NVML sensors: samples ring, energy counter and instant-power field.

use super::rng::SimRng;
use super::signal::PowerSignal;
use crate::sensor_profile::SensorProfile;
use crate::trace::PowerReading;

/// Delay between a counter/field update and the poller's read of it, at most, ns.
const READ_DELAY_MAX_NS: f64 = 2_000_000.0;

/// Readings of one simulated device, plus the true update instant of each counter reading.
pub(crate) struct SensorOutput {
    pub readings: Vec<PowerReading>,
    pub counter_update_ns: Vec<u64>,
}

/// Produce every reading the sensors of `device` would report over the signal's duration.
///
/// `start_unix_ns` places relative time on the trace clock. Samples read the smoothed signal;
/// the counter is the exact integral, floored to its resolution; the field averages a short
/// window a random lag ago. A poller reads each counter/field update once, shortly after it.
pub(crate) fn read_sensors(
    signal: &PowerSignal,
    profile: &SensorProfile,
    device: u32,
    start_unix_ns: u64,
    rng: &mut SimRng,
) -> SensorOutput {
    let total_ns = signal.power_mw.len() as u64 * signal.cell_ns;
    let smoothed = signal.smoothed_mw(profile.sample_tau_ns);
    let mut readings = Vec::new();

    // Samples ring: a 20 ms grid with displaced entries and small jitter.
    let period = profile.sample_period_ns.max(1) as f64;
    let mut n = 0u64;
    let phase = rng.uniform(0.0, period);
    let mut last = 0u64;
    loop {
        let mut t = phase + n as f64 * period + rng.normal() * profile.sample_jitter_sd_ns as f64;
        if rng.unit() < profile.sample_displaced_fraction {
            t -= rng.uniform(
                profile.sample_displacement_min_ns as f64,
                profile.sample_displacement_max_ns as f64,
            );
        }
        n += 1;
        if t < 0.0 || (t as u64) <= last && n > 1 {
            continue;
        }
        let t = t as u64;
        if t >= total_ns {
            break;
        }
        last = t;
        let k = ((t / signal.cell_ns) as usize).min(smoothed.len() - 1);
        let mw = (smoothed[k] + rng.normal() * profile.sample_noise_sd_mw)
            .round()
            .max(0.0) as u32;
        let ts_ns = start_unix_ns + t;
        readings.push(PowerReading::Sample {
            device,
            ts_ns,
            raw_ts_us: ts_ns / 1000,
            power_mw: mw,
        });
    }

    // Energy counter: an exact integral, updated on its own period, floored to its resolution.
    let res = profile.counter_resolution_mj.max(1);
    let base_mj = 2_000_000 + rng.next_u64() % 1_000_000;
    let read_ns = profile.nvml_read_cost_ns.min(u64::from(u32::MAX)) as u32;
    let mut counter_update_ns = Vec::new();
    let cperiod = profile.counter_period_ns.max(1);
    let mut u = (rng.unit() * cperiod as f64) as u64;
    while u < total_ns {
        let exact_mj = signal.energy_mj(u);
        let energy_mj = base_mj + (exact_mj as u64 / res) * res;
        let ts_ns = start_unix_ns + u + rng.uniform(0.0, READ_DELAY_MAX_NS) as u64;
        readings.push(PowerReading::Energy {
            device,
            ts_ns,
            read_ns,
            energy_mj,
        });
        counter_update_ns.push(start_unix_ns + u);
        u += cperiod;
    }

    // Instant field: the mean over a short window, a random lag behind.
    let iperiod = profile.instant_period_ns.max(1);
    let mut u = (rng.unit() * iperiod as f64) as u64;
    while u < total_ns {
        let lag = rng.uniform(
            profile.instant_lag_min_ns as f64,
            profile.instant_lag_max_ns as f64,
        ) as u64;
        let t1 = u.saturating_sub(lag);
        let mw = signal
            .mean_mw(t1.saturating_sub(profile.instant_window_ns), t1)
            .round()
            .max(0.0) as u32;
        let ts_ns = start_unix_ns + u + rng.uniform(0.0, READ_DELAY_MAX_NS) as u64;
        readings.push(PowerReading::Instant {
            device,
            ts_ns,
            read_ns,
            power_mw: mw,
        });
        u += iperiod;
    }
    readings.sort_by_key(PowerReading::ts_ns);
    SensorOutput {
        readings,
        counter_update_ns,
    }
}
