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
    let clock = SimClock {
        device,
        start_unix_ns,
        total_ns,
    };
    // The random draws come in this order (samples, counter, instant field, reads), so that a
    // seed gives the same run.
    let mut readings = sample_ring(signal, profile, &clock, rng);
    let counter = EnergyCounter::new(signal, profile, total_ns, rng);
    let instant = instant_updates(signal, profile, total_ns, rng);
    readings.extend(sampler_reads(
        profile,
        &clock,
        cpu_budget,
        (&counter, &instant),
        rng,
    ));
    let counter_update_ns = counter
        .update_ns
        .iter()
        .map(|u| start_unix_ns + u)
        .collect();
    readings.sort_by_key(PowerReading::ts_ns);
    SensorOutput {
        readings,
        counter_update_ns,
    }
}

/// Where the simulated run sits: its device, where its zero lies on the trace clock, and its
/// length, ns.
struct SimClock {
    device: u32,
    start_unix_ns: u64,
    total_ns: u64,
}

/// The samples ring: a grid of the sample period with displaced entries and small jitter, each
/// the smoothed power plus noise.
fn sample_ring(
    signal: &PowerSignal,
    profile: &SensorProfile,
    clock: &SimClock,
    rng: &mut SimRng,
) -> Vec<PowerReading> {
    let smoothed = signal.smoothed_mw(profile.sample_tau_ns);
    let mut readings = Vec::new();
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
        if t >= clock.total_ns {
            break;
        }
        last = t;
        let k = ((t / signal.cell_ns) as usize).min(smoothed.len() - 1);
        let mw = (smoothed[k] + rng.normal() * profile.sample_noise_sd_mw)
            .round()
            .max(0.0) as u32;
        let ts_ns = clock.start_unix_ns + t;
        readings.push(PowerReading::Sample {
            device: clock.device,
            ts_ns,
            raw_ts_us: ts_ns / 1000,
            power_mw: mw,
        });
    }
    readings
}

/// The energy counter: an exact integral, updated on its own period, floored to its
/// resolution, from a random base.
struct EnergyCounter<'s> {
    signal: &'s PowerSignal,
    base_mj: u64,
    resolution_mj: u64,
    /// When it updates, ns from the start.
    update_ns: Vec<u64>,
}

impl<'s> EnergyCounter<'s> {
    fn new(
        signal: &'s PowerSignal,
        profile: &SensorProfile,
        total_ns: u64,
        rng: &mut SimRng,
    ) -> Self {
        let base_mj = 2_000_000 + rng.next_u64() % 1_000_000;
        let period = profile.counter_period_ns.max(1);
        let first_update = (rng.unit() * period as f64) as u64;
        Self {
            signal,
            base_mj,
            resolution_mj: profile.counter_resolution_mj.max(1),
            update_ns: (0..)
                .map(|k| first_update + k * period)
                .take_while(|&u| u < total_ns)
                .collect(),
        }
    }

    /// Its value at `t` ns from the start; `None` before its first update.
    fn at(&self, t: u64) -> Option<u64> {
        let k = self.update_ns.partition_point(|&u| u <= t);
        let u = *self.update_ns.get(k.checked_sub(1)?)?;
        let res = self.resolution_mj;
        Some(self.base_mj + (self.signal.energy_mj(u) as u64 / res) * res)
    }
}

/// The instant power field's updates, (ns from the start, mW): the mean over a short window, a
/// random lag behind, on its own period.
fn instant_updates(
    signal: &PowerSignal,
    profile: &SensorProfile,
    total_ns: u64,
    rng: &mut SimRng,
) -> Vec<(u64, u32)> {
    let iperiod = profile.instant_period_ns.max(1);
    let mut updates: Vec<(u64, u32)> = Vec::new();
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
        updates.push((u, mw));
        u += iperiod;
    }
    updates
}

/// The sampler's reads of the counter and the instant field, both in one call, on the schedule
/// the real sampler keeps (which runs on the trace clock; the signal on time since the start).
fn sampler_reads(
    profile: &SensorProfile,
    clock: &SimClock,
    cpu_budget: f64,
    (counter, instant): (&EnergyCounter<'_>, &[(u64, u32)]),
    rng: &mut SimRng,
) -> Vec<PowerReading> {
    let (device, start_unix_ns) = (clock.device, clock.start_unix_ns);
    let cperiod = profile.counter_period_ns.max(1);
    let cost = profile.nvml_read_cost_ns.max(1);
    let plan = ReadPlan::fit(cost, cost / 4, cperiod, cpu_budget);
    let mut scheduler =
        CounterScheduler::new(cperiod, plan.counter_stride, READ_LEAD_NS, RELOCK_EVERY_NS);
    let read_ns = cost.min(u64::from(u32::MAX)) as u32;
    let end_abs = start_unix_ns + clock.total_ns;
    let mut readings = Vec::new();
    let mut now = start_unix_ns;
    loop {
        let start = scheduler.next_read_ns(now).max(now);
        let end = start + cost;
        if end >= end_abs {
            break;
        }
        // NVML takes the value somewhere inside the call.
        let at = start - start_unix_ns + (rng.unit() * cost as f64) as u64;
        if let Some(energy_mj) = counter.at(at) {
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
        let k = instant.partition_point(|&(u, _)| u <= at);
        if let Some(&(_, power_mw)) = k.checked_sub(1).and_then(|k| instant.get(k)) {
            readings.push(PowerReading::Instant {
                device,
                ts_ns: start,
                read_ns,
                power_mw,
            });
        }
        now = end;
    }
    readings
}
