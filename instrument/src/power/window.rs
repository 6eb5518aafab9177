//! Energy-counter windows and mean power over an interval.

use serde::{Deserialize, Serialize};

use super::counter_grid::{fit_counter_grid, CounterRead};
use crate::trace::PowerReading;

/// The interval between two successive changes of the energy counter, and the energy in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CounterWindow {
    /// The update (or, without a fitted grid, the first read) that showed the earlier value,
    /// trace clock.
    pub start_ns: u64,
    /// The update (or first read) that showed the later value, trace clock.
    pub end_ns: u64,
    /// Energy between the two values, mJ.
    pub energy_mj: u64,
    /// Standard uncertainty of each edge's placement, ns (the fitted grid's, or a period's
    /// worth without one).
    pub edge_sd_ns: f64,
}

impl CounterWindow {
    /// Mean power over the window, W.
    pub fn power_w(&self) -> f64 {
        self.energy_mj as f64 / (self.end_ns - self.start_ns).max(1) as f64 * 1e6
    }
}

/// The reads of `device`'s energy counter, in time order.
pub fn counter_reads(readings: &[PowerReading], device: u32) -> Vec<CounterRead> {
    let mut reads: Vec<CounterRead> = readings
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Energy {
                device: d,
                ts_ns,
                read_ns,
                energy_mj,
            } if d == device => Some(CounterRead {
                start_ns: ts_ns,
                end_ns: ts_ns.saturating_add(u64::from(read_ns)),
                energy_mj,
            }),
            _ => None,
        })
        .collect();
    reads.sort_unstable_by_key(|r| (r.start_ns, r.energy_mj));
    reads
}

/// The windows between successive counter updates seen by `device`'s reads, in time order.
///
/// When reads bracket some updates closely (the sampler's lock bursts), the update grid is
/// fitted and every window spans exactly from one update instant to another; reads too close
/// to an update to say which value they saw are skipped. Otherwise each window runs from the
/// first read showing one value to the first read showing the next. A decrease (driver
/// reload or counter wrap) breaks the chain instead of producing a huge or negative window:
/// the difference is wrap-around safe by construction.
pub fn counter_windows(
    readings: &[PowerReading],
    device: u32,
    period_ns: u64,
) -> Vec<CounterWindow> {
    let reads = counter_reads(readings, device);
    let grid = fit_counter_grid(&reads, period_ns);
    // Without a grid an edge is wherever in the period the read happened to fall.
    let edge_sd_ns = grid.map_or(period_ns as f64 / 12f64.sqrt(), |g| g.phase_sd_ns);
    let mut changes: Vec<(u64, u64)> = Vec::new();
    for r in &reads {
        let at = match &grid {
            Some(g) => match g.snap(r.start_ns, r.end_ns) {
                Some(u) => u,
                None => continue,
            },
            None => r.start_ns,
        };
        if changes
            .last()
            .is_none_or(|&(t, e)| e != r.energy_mj && t != at)
        {
            changes.push((at, r.energy_mj));
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
                edge_sd_ns,
            })
        })
        .collect()
}

/// Mean power of `device` over [`start_ns`, `end_ns`] from the counter: first to last counter
/// change inside the interval. `None` with fewer than two changes inside.
pub fn mean_power_counter_w(
    readings: &[PowerReading],
    device: u32,
    period_ns: u64,
    start_ns: u64,
    end_ns: u64,
) -> Option<f64> {
    let inside: Vec<CounterWindow> = counter_windows(readings, device, period_ns)
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
