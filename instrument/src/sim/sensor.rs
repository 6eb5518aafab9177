//! The simulated NVML sensors: samples ring, energy counter and instant-power field.

use super::rng::SimRng;
use super::signal::PowerSignal;
use crate::power::nvml::{ReadPlan, READ_LEAD_NS, RELOCK_EVERY_NS};
use crate::power::{CounterRead, CounterScheduler};
use crate::sensor_profile::SensorProfile;
use crate::trace::PowerReading;

/// Readings of one simulated device, plus the true update instant of each counter reading.
pub(crate) struct SensorOutput {
    pub readings: Vec<PowerReading>,
    pub counter_update_ns: Vec<u64>,
}

/// Produce every reading the sensors of `device` would report over the signal's duration.
///
/// `start_unix_ns` places relative time on the trace clock. Samples read the smoothed signal;
/// the counter is the exact integral, floored to its resolution; the field averages a short
/// window a random lag ago. The counter and field are read together on the real sampler's
/// schedule ([`CounterScheduler`]), each read taking the profile's NVML read cost.
pub(crate) fn read_sensors(
    signal: &PowerSignal,
    profile: &SensorProfile,
    device: u32,
    start_unix_ns: u64,
    cpu_budget: f64,
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
    let cperiod = profile.counter_period_ns.max(1);
    let first_update = (rng.unit() * cperiod as f64) as u64;
    let counter_update_ns: Vec<u64> = (0..)
        .map(|k| first_update + k * cperiod)
        .take_while(|&u| u < total_ns)
        .collect();
    let counter_at = |t: u64| -> Option<u64> {
        let k = counter_update_ns.partition_point(|&u| u <= t);
        let u = *counter_update_ns.get(k.checked_sub(1)?)?;
        Some(base_mj + (signal.energy_mj(u) as u64 / res) * res)
    };

    // Instant field: the mean over a short window, a random lag behind, on its own period.
    let iperiod = profile.instant_period_ns.max(1);
    let mut instant_updates: Vec<(u64, u32)> = Vec::new();
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
        instant_updates.push((u, mw));
        u += iperiod;
    }

    // The sampler reads both in one call, on the schedule the real sampler keeps.
    let cost = profile.nvml_read_cost_ns.max(1);
    let plan = ReadPlan::fit(cost, cost / 4, cperiod, cpu_budget);
    let mut scheduler =
        CounterScheduler::new(cperiod, plan.counter_stride, READ_LEAD_NS, RELOCK_EVERY_NS);
    let read_ns = cost.min(u64::from(u32::MAX)) as u32;
    // The scheduler runs on the trace clock; the signal on time since the start.
    let end_abs = start_unix_ns + total_ns;
    let mut now = start_unix_ns;
    loop {
        let start = scheduler.next_read_ns(now).max(now);
        let end = start + cost;
        if end >= end_abs {
            break;
        }
        // NVML takes the value somewhere inside the call.
        let at = start - start_unix_ns + (rng.unit() * cost as f64) as u64;
        if let Some(energy_mj) = counter_at(at) {
            readings.push(PowerReading::Energy {
                device,
                ts_ns: start,
                read_ns,
                energy_mj,
            });
            scheduler.observe(CounterRead {
                start_ns: start,
                end_ns: end,
                energy_mj,
            });
        }
        let k = instant_updates.partition_point(|&(u, _)| u <= at);
        if let Some(&(_, power_mw)) = k.checked_sub(1).and_then(|k| instant_updates.get(k)) {
            readings.push(PowerReading::Instant {
                device,
                ts_ns: start,
                read_ns,
                power_mw,
            });
        }
        now = end;
    }
    let counter_update_ns = counter_update_ns
        .into_iter()
        .map(|u| start_unix_ns + u)
        .collect();
    readings.sort_by_key(PowerReading::ts_ns);
    SensorOutput {
        readings,
        counter_update_ns,
    }
}
