//! The energy counter's update grid: when it updates, fitted from reads that bracket a change,
//! and the read schedule that keeps the sampler locked to it while reading it sparingly.
//!
//! The counter updates on its own fixed period (100 ms on Hopper). A read returns the value of
//! the last update before it, so a window between two reads is an exact integral between two
//! *update instants*, not between the read times. Locating those instants turns sparse reads
//! into exact windows: reads back to back around an update bracket it to a few ms, and a
//! least-squares line through the brackets gives every update instant of the run.

use serde::{Deserialize, Serialize};

use crate::intervals::diff_ns;

/// Widest bracket (read-to-read time around a change) used to locate an update, as a fraction
/// of the period.
const MAX_BRACKET_FRACTION: f64 = 0.2;

/// One read of the energy counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterRead {
    /// When the read call started, trace clock ns.
    pub start_ns: u64,
    /// When it returned, trace clock ns.
    pub end_ns: u64,
    /// The value, mJ.
    pub energy_mj: u64,
}

/// The fitted update instants `anchor_ns + k · period_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CounterGrid {
    /// One update instant, trace clock ns.
    pub anchor_ns: u64,
    /// Update period, ns (fitted when the brackets span enough periods).
    pub period_ns: f64,
    /// How far an update may be from its fitted instant, ns (bracket half-widths and fit
    /// residuals).
    pub error_ns: f64,
    /// Standard uncertainty of a fitted update instant, ns: each bracket places its update
    /// uniformly within its width, and the fit averages the brackets.
    pub phase_sd_ns: f64,
    /// Brackets the fit rests on.
    pub brackets: usize,
}

impl CounterGrid {
    /// The index of the last update at or before `t_ns` (negative before the anchor).
    fn index_at(&self, t_ns: u64) -> i64 {
        (diff_ns(t_ns, self.anchor_ns) / self.period_ns).floor() as i64
    }

    /// The instant of update `k`, trace clock ns.
    fn instant(&self, k: i64) -> u64 {
        let offset_ns = (k as f64 * self.period_ns).round() as i64;
        self.anchor_ns.saturating_add_signed(offset_ns)
    }

    /// The last update at or before `t_ns`.
    pub fn update_at_or_before(&self, t_ns: u64) -> u64 {
        self.instant(self.index_at(t_ns))
    }

    /// The first update strictly after `t_ns`.
    pub fn update_after(&self, t_ns: u64) -> u64 {
        self.instant(self.index_at(t_ns) + 1)
    }

    /// The update whose value a read over [`start_ns`, `end_ns`] returned, or `None` when an
    /// update may fall inside the read (within the grid's error), so the value is ambiguous.
    pub fn snap(&self, start_ns: u64, end_ns: u64) -> Option<u64> {
        let u = self.update_at_or_before(start_ns);
        let next = self.update_after(start_ns);
        let margin = self.error_ns;
        let clear_of_prev = (start_ns - u.min(start_ns)) as f64 >= margin;
        let clear_of_next = diff_ns(next, end_ns) >= margin;
        (clear_of_prev && clear_of_next).then_some(u)
    }
}

/// How long before a predicted update a re-lock burst starts, ns.
fn relock_lead_ns(grid: &CounterGrid) -> f64 {
    (2.0 * grid.error_ns).max(grid.period_ns * 0.05)
}

/// A change of value between two reads close enough to locate the update between them. Its
/// middle is in ns after an origin of the caller's (the first read): as an absolute f64, a
/// trace-clock instant (~1.8e18 ns) is only resolved to 256 ns, and the fit would depend on
/// when the run happened.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bracket {
    mid_ns: f64,
    half_ns: f64,
}

fn bracket(
    prev: &CounterRead,
    cur: &CounterRead,
    period_ns: u64,
    origin_ns: u64,
) -> Option<Bracket> {
    if cur.energy_mj == prev.energy_mj || cur.start_ns < prev.start_ns {
        return None;
    }
    // The update fell after the value of `prev` was taken and before that of `cur`: somewhere
    // in [prev.start, cur.end].
    let width = (cur.end_ns - prev.start_ns) as f64;
    (width <= MAX_BRACKET_FRACTION * period_ns as f64).then_some(Bracket {
        mid_ns: (diff_ns(prev.start_ns, origin_ns) + diff_ns(cur.end_ns, origin_ns)) / 2.0,
        half_ns: width / 2.0,
    })
}

/// Fit the grid through the brackets (their middles in ns after `origin_ns`); `None` without
/// any.
fn fit_brackets(
    brackets: &[Bracket],
    nominal_period_ns: u64,
    origin_ns: u64,
) -> Option<CounterGrid> {
    let first = brackets.first()?;
    let origin = first.mid_ns;
    let mut period = nominal_period_ns.max(1) as f64;
    let mut phase = 0.0;
    for _ in 0..3 {
        let n: Vec<f64> = brackets
            .iter()
            .map(|b| ((b.mid_ns - origin - phase) / period).round())
            .collect();
        let w: Vec<f64> = brackets
            .iter()
            .map(|b| 1.0 / b.half_ns.max(1.0).powi(2))
            .collect();
        let y: Vec<f64> = brackets.iter().map(|b| b.mid_ns - origin).collect();
        let sw: f64 = w.iter().sum();
        let span =
            n.iter().fold(0.0f64, |a, &b| a.max(b)) - n.iter().fold(0.0f64, |a, &b| a.min(b));
        if span >= 10.0 {
            // Weighted line y = phase + n · period.
            let nm = n.iter().zip(&w).map(|(n, w)| n * w).sum::<f64>() / sw;
            let ym = y.iter().zip(&w).map(|(y, w)| y * w).sum::<f64>() / sw;
            let sxx: f64 = n.iter().zip(&w).map(|(n, w)| w * (n - nm).powi(2)).sum();
            let sxy: f64 = (0..n.len()).map(|i| w[i] * (n[i] - nm) * (y[i] - ym)).sum();
            period = sxy / sxx;
            phase = ym - period * nm;
        } else {
            phase = (0..n.len())
                .map(|i| w[i] * (y[i] - n[i] * period))
                .sum::<f64>()
                / sw;
        }
    }
    // Error: the narrowest bracket's half-width or the 90th percentile of how far brackets
    // miss the line beyond their own width, whichever is larger. A stray bracket (a stale
    // value returned late) does not widen it for everyone.
    let narrowest = brackets
        .iter()
        .map(|b| b.half_ns)
        .fold(f64::INFINITY, f64::min);
    let mut misses: Vec<f64> = brackets
        .iter()
        .map(|b| {
            let r = b.mid_ns - origin - phase;
            ((r - (r / period).round() * period).abs() - b.half_ns).max(0.0)
        })
        .collect();
    misses.sort_by(f64::total_cmp);
    let typical_miss = misses[(misses.len() - 1) * 9 / 10];
    Some(CounterGrid {
        anchor_ns: origin_ns.saturating_add_signed((origin + phase).round() as i64),
        period_ns: period,
        error_ns: narrowest.max(typical_miss) + 200_000.0,
        phase_sd_ns: brackets.iter().map(|b| b.half_ns).sum::<f64>()
            / brackets.len() as f64
            / 3f64.sqrt()
            / (brackets.len() as f64).sqrt(),
        brackets: brackets.len(),
    })
}

/// Fit the update grid from reads in time order; `None` when no two reads bracket a change
/// closely enough.
pub fn fit_counter_grid(reads: &[CounterRead], nominal_period_ns: u64) -> Option<CounterGrid> {
    let origin_ns = reads.first()?.start_ns;
    let brackets: Vec<Bracket> = reads
        .windows(2)
        .filter_map(|w| bracket(&w[0], &w[1], nominal_period_ns, origin_ns))
        .collect();
    fit_brackets(&brackets, nominal_period_ns, origin_ns)
}

/// When to read the counter: lock onto its updates with a short burst of back-to-back reads,
/// then read once every `stride` updates just after the update, with a short re-lock burst
/// every `relock_every_ns` so period drift never accumulates.
#[derive(Debug, Clone)]
pub struct CounterScheduler {
    nominal_period_ns: u64,
    stride: u32,
    lead_ns: u64,
    relock_every_ns: u64,
    brackets: Vec<Bracket>,
    /// What the brackets' middles are measured from: the first read's start.
    origin_ns: Option<u64>,
    grid: Option<CounterGrid>,
    last: Option<CounterRead>,
    /// Brackets still wanted in the current burst, and when the burst gives up.
    burst: Option<(usize, u64)>,
    /// When the last burst ended.
    locked_at_ns: u64,
    /// The last update a tracking read was aimed at.
    last_target_ns: u64,
}

impl CounterScheduler {
    /// A scheduler for a counter of nominal period `period_ns`, read every `stride` updates,
    /// `lead_ns` after the update, re-locked every `relock_every_ns`.
    pub fn new(period_ns: u64, stride: u32, lead_ns: u64, relock_every_ns: u64) -> Self {
        Self {
            nominal_period_ns: period_ns.max(1),
            stride: stride.max(1),
            lead_ns,
            relock_every_ns,
            brackets: Vec::new(),
            origin_ns: None,
            grid: None,
            last: None,
            // One bracket locks the phase; the re-lock bursts then fit the period.
            burst: Some((1, u64::MAX)),
            locked_at_ns: 0,
            last_target_ns: 0,
        }
    }

    /// Read every `stride` updates from now on (the read cost changed).
    pub fn set_stride(&mut self, stride: u32) {
        self.stride = stride.max(1);
    }

    /// The grid fitted so far.
    pub fn grid(&self) -> Option<CounterGrid> {
        self.grid
    }

    /// True while reading back to back to locate an update.
    pub fn bursting(&self) -> bool {
        self.burst.is_some()
    }

    /// When the next read should start, given that it is now `now_ns`.
    pub fn next_read_ns(&self, now_ns: u64) -> u64 {
        if self.burst.is_some() {
            return now_ns;
        }
        let Some(grid) = self.grid else {
            return now_ns;
        };
        let period = grid.period_ns;
        if now_ns.saturating_sub(self.locked_at_ns) >= self.relock_every_ns {
            // Start the re-lock burst a little before an update.
            // The next update's lead-in; inside it already, read now (the burst brackets it).
            let lead = relock_lead_ns(&grid) as u64;
            return grid.update_after(now_ns).saturating_sub(lead).max(now_ns);
        }
        // The stride-th update after the last one read; when that is already past, the read
        // is due now. (Never recomputed from `now`, or the target would run ahead of it.)
        let last = (diff_ns(self.last_target_ns, grid.anchor_ns) / period).round() as i64;
        let k = last + i64::from(self.stride);
        // Read late enough after the update that the read snaps to it unambiguously.
        grid.instant(k) + self.lead_ns.max((grid.error_ns * 1.5) as u64 + 1_000_000)
    }

    /// Record a read (in time order) and update the plan.
    pub fn observe(&mut self, read: CounterRead) {
        let now = read.end_ns;
        if let Some(prev) = self.last {
            let origin_ns = *self.origin_ns.get_or_insert(prev.start_ns);
            if let Some(b) = bracket(&prev, &read, self.nominal_period_ns, origin_ns) {
                self.brackets.push(b);
                if let Some((want, _)) = self.burst.as_mut() {
                    *want = want.saturating_sub(1);
                }
                self.grid = fit_brackets(&self.brackets, self.nominal_period_ns, origin_ns);
            }
        }
        self.last = Some(read);
        match self.burst {
            Some((0, _)) => {
                self.burst = None;
                self.locked_at_ns = now;
                self.last_target_ns = self.grid.map_or(now, |g| g.update_at_or_before(now));
            }
            Some((want, deadline)) if deadline == u64::MAX => {
                // Give up on a burst after three periods (a counter that stopped moving).
                self.burst = Some((want, read.start_ns + 3 * self.nominal_period_ns));
            }
            Some((_, deadline)) if now >= deadline => {
                self.burst = None;
                self.locked_at_ns = now;
                self.last_target_ns = now;
            }
            Some(_) => {}
            None => {
                let Some(grid) = self.grid else {
                    self.burst = Some((2, u64::MAX));
                    return;
                };
                let due = now.saturating_sub(self.locked_at_ns) >= self.relock_every_ns;
                // Burst only from a read aimed just before an update (see `next_read_ns`).
                let before_update = (grid.update_after(read.start_ns) - read.start_ns) as f64
                    <= relock_lead_ns(&grid) + 1_000_000.0;
                if due && before_update {
                    self.burst = Some((1, u64::MAX));
                } else {
                    self.last_target_ns = grid.update_at_or_before(read.start_ns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that updates every `period` from `phase`, adding 10 mJ each time.
    fn value_at(t: u64, phase: u64, period: u64) -> u64 {
        if t < phase {
            0
        } else {
            ((t - phase) / period + 1) * 10
        }
    }

    /// Drive the scheduler as the sampler does: wake at most every 50 ms, ask what is due,
    /// read only when it is due now. Returns the reads.
    fn like_the_sampler(stride: u32, seconds: u64) -> (Vec<CounterRead>, CounterScheduler, u64) {
        let (phase, period, cost) = (1_795_320_400_037_300_000u64, 100_000_000u64, 2_400_000u64);
        let mut s = CounterScheduler::new(100_000_000, stride, 4_000_000, 5_000_000_000);
        let mut now = phase - 50_000_000;
        let mut reads = Vec::new();
        while now < phase + seconds * 1_000_000_000 {
            let due = s.next_read_ns(now);
            if now >= due {
                let read = CounterRead {
                    start_ns: now,
                    end_ns: now + cost,
                    energy_mj: value_at(now + cost / 2, phase, period),
                };
                s.observe(read);
                reads.push(read);
                now += cost;
            } else {
                now = due.min(now + 50_000_000);
            }
        }
        (reads, s, phase)
    }

    #[test]
    fn the_sampler_loop_reads_every_stride_and_relocks() {
        for stride in [1u32, 7, 50] {
            let (reads, s, phase) = like_the_sampler(stride, 21);
            let late = reads
                .iter()
                .filter(|r| r.start_ns > phase + 1_000_000_000)
                .count();
            // 20 s of tracking reads, one per `stride` updates, plus the re-lock bursts.
            let expected = 200 / stride as usize;
            assert!(
                late >= expected * 9 / 10,
                "stride {stride}: {late} reads, expected {expected}"
            );
            assert!(
                s.grid().unwrap().brackets >= 5,
                "stride {stride}: {:?}",
                s.grid()
            );
            // Tracking reads snap to an update.
            let grid = fit_counter_grid(&reads, 100_000_000).unwrap();
            let snapped = reads
                .iter()
                .filter(|r| grid.snap(r.start_ns, r.end_ns).is_some())
                .count();
            assert!(
                snapped * 10 >= reads.len() * 6,
                "stride {stride}: {snapped}/{}",
                reads.len()
            );
        }
    }

    #[test]
    fn scheduler_locks_tracks_and_reads_sparingly() {
        let (phase, period, cost) = (37_300_000u64, 100_020_000u64, 3_900_000u64);
        let mut s = CounterScheduler::new(100_000_000, 5, 4_000_000, 5_000_000_000);
        let mut now = 0u64;
        let mut reads = Vec::new();
        while now < 30_000_000_000 {
            let start = s.next_read_ns(now).max(now);
            let end = start + cost;
            let read = CounterRead {
                start_ns: start,
                end_ns: end,
                energy_mj: value_at(start + cost / 2, phase, period),
            };
            s.observe(read);
            reads.push(read);
            now = end;
        }
        let grid = s.grid().unwrap();
        // The fitted period and phase match the counter's.
        assert!(
            (grid.period_ns - period as f64).abs() < 20_000.0,
            "{grid:?}"
        );
        let k = (29_000_000_000 - phase) / period;
        let truth = phase + k * period;
        let fitted = grid.update_at_or_before(truth + period / 2);
        assert!(fitted.abs_diff(truth) < 3_000_000, "{fitted} vs {truth}");
        // One read per five updates, a first burst of at most two periods, ~4 reads per re-lock.
        let budget = 30_000 / 500 + 2 * (100_000_000 / cost) as usize + 6 * 4;
        assert!(
            reads.len() <= budget,
            "{} reads, budget {budget}",
            reads.len()
        );
        // Every snapped read belongs to the update it claims.
        let fit = fit_counter_grid(&reads, 100_000_000).unwrap();
        let mut snapped = 0;
        for r in &reads {
            if let Some(u) = fit.snap(r.start_ns, r.end_ns) {
                match (r.energy_mj / 10).checked_sub(1) {
                    Some(k) => {
                        let true_update = phase + k * period;
                        assert!(u.abs_diff(true_update) < 3_000_000, "{u} vs {true_update}");
                    }
                    None => assert!(u < phase, "a read before the first update snapped to {u}"),
                }
                snapped += 1;
            }
        }
        assert!(snapped > reads.len() / 2);
    }
}
