//! How long a launch would take over fewer units (rows, or query–key pairs for attention): the
//! counterfactual behind partial waste (padding, recomputed prefixes). Fitted per operation over
//! its launches under declared passes of different sizes.
//!
//! Two models of launch time against units:
//! - **waves**, where the grid grows with the units along one dimension (a tile of rows per
//!   block row): the launch runs in waves of as many blocks as the GPU holds at once, and takes
//!   a fixed time plus a time per wave. Fewer units give fewer blocks, but never less than one
//!   wave: a GEMM over 8 rows in 128-row tiles still takes a whole wave.
//! - **linear**, elsewhere: a fixed time plus a time per unit.
//!
//! Either answers "the same kernel over only the remaining units". A kernel made for the smaller
//! size may be faster; that is the upper end of a finding's CI, not its estimate.

/// One launch of an operation: its units, its time and its grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Units the launch computed (rows, or query–key pairs).
    pub units: f64,
    /// Its duration, ns.
    pub ns: f64,
    /// Its grid, where known.
    pub grid: Option<[u32; 3]>,
}

/// Launch time against units, for one operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TimeModel {
    /// `fixed + per_wave × ⌈blocks / wave_blocks⌉`, with `blocks = other_blocks ×
    /// ⌈units / units_per_tile⌉`.
    Waves {
        fixed_ns: f64,
        per_wave_ns: f64,
        wave_blocks: f64,
        units_per_tile: f64,
        other_blocks: f64,
    },
    /// `fixed + per_unit × units`.
    Linear { fixed_ns: f64, per_unit_ns: f64 },
}

/// Most blocks of one launch an SM is taken to hold at once, when fitting waves.
const MAX_BLOCKS_PER_SM: u32 = 32;

impl TimeModel {
    /// The model that fits `samples` best: waves where the grid follows the units and waves
    /// fit better than a line, else a line; `None` with fewer than three distinct sizes, or
    /// where the fit says a unit costs nothing or a launch costs less than nothing.
    pub fn fit(samples: &[Sample], sm_count: u32) -> Option<TimeModel> {
        let mut sizes: Vec<f64> = samples.iter().map(|s| s.units).collect();
        sizes.sort_by(f64::total_cmp);
        sizes.dedup();
        if sizes.len() < 3 {
            return None;
        }
        let linear = line(samples.iter().map(|s| (s.units, s.ns)))
            .filter(|l| l.slope > 0.0 && l.intercept >= 0.0)
            .map(|l| {
                let model = TimeModel::Linear {
                    fixed_ns: l.intercept,
                    per_unit_ns: l.slope,
                };
                (model, l.sse)
            });
        let waves = fit_waves(samples, sm_count);
        match (linear, waves) {
            (Some((l, l_sse)), Some((w, w_sse))) => Some(if w_sse < l_sse { w } else { l }),
            (l, w) => l.or(w).map(|(m, _)| m),
        }
    }

    /// Predicted time over `units`, ns.
    fn ns(&self, units: f64) -> f64 {
        match *self {
            TimeModel::Linear {
                fixed_ns,
                per_unit_ns,
            } => fixed_ns + per_unit_ns * units,
            TimeModel::Waves {
                fixed_ns,
                per_wave_ns,
                wave_blocks,
                units_per_tile,
                other_blocks,
            } => {
                let blocks = other_blocks * (units / units_per_tile).ceil();
                fixed_ns + per_wave_ns * (blocks / wave_blocks).ceil()
            }
        }
    }

    /// The share of a launch over `total` units that running only `total − wasted` of them
    /// would save, in 0..=1 (all of it when nothing would remain to run).
    pub fn saved_share(&self, wasted: f64, total: f64) -> f64 {
        let kept = (total - wasted).max(0.0);
        if kept <= 0.0 {
            return 1.0;
        }
        let whole = self.ns(total);
        if whole <= 0.0 {
            return 0.0;
        }
        ((whole - self.ns(kept)) / whole).clamp(0.0, 1.0)
    }
}

/// A least-squares line and its sum of squared residuals.
struct Line {
    intercept: f64,
    slope: f64,
    sse: f64,
}

fn line(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<Line> {
    let n = points.clone().count() as f64;
    if n < 2.0 {
        return None;
    }
    let (mx, my) = points
        .clone()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxx: f64 = points.clone().map(|(x, _)| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.clone().map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse = points
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    Some(Line {
        intercept,
        slope,
        sse,
    })
}

/// Waves fitted to `samples`, and their sum of squared residuals: where every launch has a
/// grid, exactly one grid dimension changes, and it is `⌈units / tile⌉` for one tile size.
/// The blocks an SM holds at once are unknown; each count up to [`MAX_BLOCKS_PER_SM`] is tried
/// and the best fit kept.
fn fit_waves(samples: &[Sample], sm_count: u32) -> Option<(TimeModel, f64)> {
    if sm_count == 0 {
        return None;
    }
    let grids: Vec<[u32; 3]> = samples.iter().map(|s| s.grid).collect::<Option<_>>()?;
    let first = *grids.first()?;
    let varying: Vec<usize> = (0..3)
        .filter(|&d| grids.iter().any(|g| g[d] != first[d]))
        .collect();
    let [dim] = varying[..] else {
        return None;
    };
    let other_blocks: f64 = (0..3)
        .filter(|&d| d != dim)
        .map(|d| f64::from(first[d].max(1)))
        .product();
    // The tile: ⌈u / tile⌉ = g means u / g ≤ tile, so the largest u / g is the smallest tile
    // that fits them all; check that it gives every launch its grid.
    let tile = samples
        .iter()
        .zip(&grids)
        .map(|(s, g)| s.units / f64::from(g[dim].max(1)))
        .fold(0.0, f64::max);
    let consistent = tile > 0.0
        && samples
            .iter()
            .zip(&grids)
            .all(|(s, g)| ((s.units / tile) - 1e-9).ceil() == f64::from(g[dim]));
    if !consistent {
        return None;
    }
    let blocks: Vec<f64> = grids
        .iter()
        .map(|g| other_blocks * f64::from(g[dim]))
        .collect();
    (1..=MAX_BLOCKS_PER_SM)
        .filter_map(|per_sm| {
            let wave_blocks = f64::from(sm_count) * f64::from(per_sm);
            let waves: Vec<f64> = blocks.iter().map(|b| (b / wave_blocks).ceil()).collect();
            let l = line(waves.iter().copied().zip(samples.iter().map(|s| s.ns)))?;
            (l.slope > 0.0 && l.intercept >= 0.0).then_some((
                TimeModel::Waves {
                    fixed_ns: l.intercept,
                    per_wave_ns: l.slope,
                    wave_blocks,
                    units_per_tile: tile,
                    other_blocks,
                },
                l.sse,
            ))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 128-row-tiled GEMM over 18 column tiles on 132 SMs, one block per SM: 160 µs a wave.
    fn gemm(rows: u32) -> Sample {
        let tiles = rows.div_ceil(128);
        let waves = (18 * tiles).div_ceil(132);
        Sample {
            units: f64::from(rows),
            ns: 5_000.0 + 160_000.0 * f64::from(waves),
            grid: Some([18, tiles, 1]),
        }
    }

    #[test]
    fn a_tiled_launch_over_fewer_rows_still_takes_a_whole_wave() {
        let samples: Vec<Sample> = (736..=1680).step_by(80).map(gemm).collect();
        let m = TimeModel::fit(&samples, 132).expect("fits");
        assert!(matches!(m, TimeModel::Waves { .. }), "{m:?}");
        // 1680 rows: 14 tiles, 252 blocks, 2 waves; 8 rows: 1 tile, one wave.
        let share = m.saved_share(1672.0, 1680.0);
        let truth = 160_000.0 / 325_000.0;
        assert!((share - truth).abs() < 1e-6, "{share} vs {truth}");
        // A line through the same launches would keep less than a wave (an intercept below
        // it) and call more of the launch saved.
        let l = line(samples.iter().map(|s| (s.units, s.ns))).expect("line");
        let linear_share = l.slope * 1672.0 / (l.intercept + l.slope * 1680.0);
        assert!(linear_share > share + 0.05, "{linear_share} vs {share}");
    }

    #[test]
    fn work_that_grows_with_its_units_fits_a_line() {
        // A grid that does not follow the units (a persistent kernel, say).
        let samples: Vec<Sample> = (1..=6)
            .map(|k| Sample {
                units: f64::from(k * 1000),
                ns: 40_000.0 + 30.0 * f64::from(k * 1000),
                grid: Some([132, 1, 1]),
            })
            .collect();
        let m = TimeModel::fit(&samples, 132).expect("fits");
        let TimeModel::Linear {
            fixed_ns,
            per_unit_ns,
        } = m
        else {
            panic!("{m:?}");
        };
        assert!((fixed_ns - 40_000.0).abs() < 1e-6 && (per_unit_ns - 30.0).abs() < 1e-9);
        assert!((m.saved_share(3000.0, 6000.0) - 90_000.0 / 220_000.0).abs() < 1e-9);
        assert_eq!(m.saved_share(6000.0, 6000.0), 1.0);
    }

    #[test]
    fn too_few_sizes_or_a_free_unit_give_no_model() {
        let two: Vec<Sample> = [736, 816, 736].into_iter().map(gemm).collect();
        assert_eq!(TimeModel::fit(&two, 132), None);
        let flat: Vec<Sample> = (1..=4)
            .map(|k| Sample {
                units: f64::from(k),
                ns: 10_000.0 - f64::from(k),
                grid: None,
            })
            .collect();
        assert_eq!(TimeModel::fit(&flat, 132), None);
    }
}
