//! Energy-counter windows and mean power over an interval.

use serde::{Deserialize, Serialize};

use crate::trace::PowerReading;

/// The interval between two successive changes of the energy counter, and the energy in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CounterWindow {
    /// First read that showed the earlier value, trace clock.
    pub start_ns: u64,
    /// First read that showed the later value, trace clock.
    pub end_ns: u64,
    /// Energy between the two values, mJ.
    pub energy_mj: u64,
}

impl CounterWindow {
    /// Mean power over the window, W.
    pub fn power_w(&self) -> f64 {
        self.energy_mj as f64 / (self.end_ns - self.start_ns).max(1) as f64 * 1e6
    }
}

/// The windows between successive counter changes of `device`, in time order.
///
/// A decrease (driver reload or counter wrap) breaks the chain instead of producing a huge or
/// negative window: the difference is wrap-around safe by construction.
pub fn counter_windows(readings: &[PowerReading], device: u32) -> Vec<CounterWindow> {
    let mut changes: Vec<(u64, u64)> = Vec::new();
    let mut reads: Vec<(u64, u64)> = readings
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Energy {
                device: d,
                ts_ns,
                energy_mj,
                ..
            } if d == device => Some((ts_ns, energy_mj)),
            _ => None,
        })
        .collect();
    reads.sort_unstable();
    for (ts, e) in reads {
        if changes.last().is_none_or(|&(_, last)| last != e) {
            changes.push((ts, e));
        }
    }
    changes
        .windows(2)
        .filter_map(|w| {
            let energy_mj = w[1].1.checked_sub(w[0].1)?;
            (w[1].0 > w[0].0).then_some(CounterWindow {
                start_ns: w[0].0,
                end_ns: w[1].0,
                energy_mj,
            })
        })
        .collect()
}

/// Mean power of `device` over [`start_ns`, `end_ns`] from the counter: first to last counter
/// change inside the interval. `None` with fewer than two changes inside.
pub fn mean_power_counter_w(
    readings: &[PowerReading],
    device: u32,
    start_ns: u64,
    end_ns: u64,
) -> Option<f64> {
    let inside: Vec<CounterWindow> = counter_windows(readings, device)
        .into_iter()
        .filter(|w| w.start_ns >= start_ns && w.end_ns <= end_ns)
        .collect();
    let first = inside.first()?;
    let last = inside.last()?;
    let energy_mj: u64 = inside.iter().map(|w| w.energy_mj).sum();
    Some(energy_mj as f64 / (last.end_ns - first.start_ns).max(1) as f64 * 1e6)
}

/// Mean of the power samples of `device` with timestamps in [`start_ns`, `end_ns`], W.
pub fn mean_power_samples_w(
    readings: &[PowerReading],
    device: u32,
    start_ns: u64,
    end_ns: u64,
) -> Option<f64> {
    let (sum_mw, n) = readings
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Sample {
                device: d,
                ts_ns,
                power_mw,
                ..
            } if d == device && (start_ns..=end_ns).contains(&ts_ns) => Some(f64::from(power_mw)),
            _ => None,
        })
        .fold((0.0, 0u64), |(s, n), p| (s + p, n + 1));
    (n > 0).then(|| sum_mw / n as f64 / 1000.0)
}
