//! How long a launch would take over fewer units (rows, or query–key pairs for attention), and
//! how much of its work would remain: the counterfactual behind partial waste (padding,
//! recomputed prefixes). Fitted per operation over its launches under declared passes of
//! different sizes.
//!
//! Models of launch time against units, chosen by how the grid follows the units:
//! - **waves**, where the grid grows with the units along one dimension (a tile of rows per
//!   block row): the launch runs in waves of as many blocks as the GPU holds at once, and takes
//!   a fixed time plus a time per wave. Fewer units give fewer blocks, but never less than one
//!   wave: a GEMM over 8 rows in 128-row tiles still takes a whole wave. Its work is its
//!   blocks: a block over a partly filled tile runs the whole tile.
//! - **linear**, where the grid stays the same (or is not known): a fixed time plus a time per
//!   unit, which may be zero where the launches show that time does not follow the units.
//! - **unexplained**, where the grid changes with the size but not as one tile of units per
//!   block (an attention grid that follows query rows, priced in query–key pairs): how many
//!   blocks the remaining units would launch, and so how long they would take, is unknown.
//!
//! Each answers "the same kernel over only the remaining units". A kernel made for the smaller
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
    /// `fixed + per_unit × units` (`per_unit` may be 0).
    Linear { fixed_ns: f64, per_unit_ns: f64 },
    /// The grid changes with the size in a way the units do not explain.
    Unexplained,
}

/// Most blocks of one launch an SM is taken to hold at once, when fitting waves.
const MAX_BLOCKS_PER_SM: u32 = 32;

/// How an operation's grid follows its units.
#[derive(Debug, Clone, Copy)]
enum GridRule {
    /// The same grid for every launch, or grids not known.
    Fixed,
    /// One dimension is `⌈units / tile⌉`; the others multiply to `other_blocks`.
    Tiled { tile: f64, other_blocks: f64 },
    /// The grid changes, but not so.
    Unexplained,
}

impl TimeModel {
    /// The model that fits `samples` best ([`TimeModel::fit_family`] of one operation).
    #[cfg(test)]
    pub fn fit(samples: &[Sample], sm_count: u32) -> Option<TimeModel> {
        Self::fit_family(&[samples], sm_count).pop().flatten()
    }

    /// A model for each operation of one kernel (the launches of each in `ops`): waves where
    /// the grid follows the units and waves fit better than a line, a line where the grid
    /// stays, "unexplained" where it changes otherwise; `None` for an operation with fewer
    /// than three distinct sizes. The blocks an SM holds at once belong to the kernel (its
    /// registers, shared memory and block size), so its operations share one count: the one
    /// that fits them best together. One operation's sizes may leave it open (every count
    /// splits them into the same waves), where another's pin it down.
    pub fn fit_family(ops: &[&[Sample]], sm_count: u32) -> Vec<Option<TimeModel>> {
        let rules: Vec<Option<GridRule>> = ops
            .iter()
            .map(|samples| {
                let mut sizes: Vec<f64> = samples.iter().map(|s| s.units).collect();
                sizes.sort_by(f64::total_cmp);
                sizes.dedup();
                (sizes.len() >= 3).then(|| grid_rule(samples))
            })
            .collect();
        let tiled = |rule: &Option<GridRule>| match *rule {
            Some(GridRule::Tiled {
                tile, other_blocks, ..
            }) => Some((tile, other_blocks)),
            _ => None,
        };
        let waves_at = |samples: &[Sample], other_blocks: f64, tile: f64, wave_blocks: f64| {
            let waves: Vec<f64> = samples
                .iter()
                .map(|s| (other_blocks * tiles(s.units, tile) / wave_blocks).ceil())
                .collect();
            nonnegative_line(waves.into_iter().zip(samples.iter().map(|s| s.ns)))
        };
        let wave_blocks = (sm_count > 0)
            .then(|| {
                (1..=MAX_BLOCKS_PER_SM)
                    .filter_map(|per_sm| {
                        let wave_blocks = f64::from(sm_count) * f64::from(per_sm);
                        let mut any = false;
                        let mut sse = 0.0;
                        for (samples, rule) in ops.iter().zip(&rules) {
                            if let Some((tile, other)) = tiled(rule) {
                                sse += waves_at(samples, other, tile, wave_blocks)?.sse;
                                any = true;
                            }
                        }
                        any.then_some((wave_blocks, sse))
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(w, _)| w)
            })
            .flatten();
        ops.iter()
            .zip(&rules)
            .map(|(samples, rule)| {
                let rule = (*rule)?;
                if matches!(rule, GridRule::Unexplained) {
                    return Some(TimeModel::Unexplained);
                }
                let linear = nonnegative_line(samples.iter().map(|s| (s.units, s.ns)))?;
                let as_line = TimeModel::Linear {
                    fixed_ns: linear.intercept,
                    per_unit_ns: linear.slope,
                };
                let waves = match (tiled(&Some(rule)), wave_blocks) {
                    (Some((tile, other_blocks)), Some(wave_blocks)) => {
                        waves_at(samples, other_blocks, tile, wave_blocks)
                            .filter(|l| l.slope > 0.0 && l.sse < linear.sse)
                            .map(|l| TimeModel::Waves {
                                fixed_ns: l.intercept,
                                per_wave_ns: l.slope,
                                wave_blocks,
                                units_per_tile: tile,
                                other_blocks,
                            })
                    }
                    _ => None,
                };
                Some(waves.unwrap_or(as_line))
            })
            .collect()
    }

    /// Predicted time over `units`, ns (`None` where the model cannot say).
    fn ns(&self, units: f64) -> Option<f64> {
        match *self {
            TimeModel::Linear {
                fixed_ns,
                per_unit_ns,
            } => Some(fixed_ns + per_unit_ns * units),
            TimeModel::Waves {
                fixed_ns,
                per_wave_ns,
                wave_blocks,
                units_per_tile,
                other_blocks,
            } => {
                let blocks = other_blocks * tiles(units, units_per_tile);
                Some(fixed_ns + per_wave_ns * (blocks / wave_blocks).ceil())
            }
            TimeModel::Unexplained => None,
        }
    }

    /// The share of a launch over `total` units that running only `total − wasted` of them
    /// would save, in 0..=1 (all of it when nothing would remain to run); `None` where the
    /// model cannot say.
    pub fn saved_share(&self, wasted: f64, total: f64) -> Option<f64> {
        let kept = (total - wasted).max(0.0);
        if kept <= 0.0 {
            return Some(1.0);
        }
        let whole = self.ns(total)?;
        if whole <= 0.0 {
            return Some(0.0);
        }
        Some(((whole - self.ns(kept)?) / whole).clamp(0.0, 1.0))
    }

    /// The share of a launch's work (and so of its dynamic energy) that running only
    /// `total − wasted` of its `total` units would leave undone: its blocks' share where the
    /// grid follows the units in tiles, else the units' share.
    pub fn work_share(&self, wasted: f64, total: f64) -> f64 {
        let units = if total > 0.0 {
            (wasted / total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        match *self {
            TimeModel::Waves { units_per_tile, .. } if total > 0.0 => {
                let kept = (total - wasted).max(0.0);
                if kept <= 0.0 {
                    return 1.0;
                }
                (1.0 - tiles(kept, units_per_tile) / tiles(total, units_per_tile)).clamp(0.0, units)
            }
            _ => units,
        }
    }
}

/// Tiles of `tile` units that `units` fill, at least one.
fn tiles(units: f64, tile: f64) -> f64 {
    ((units / tile) - 1e-9).ceil().max(1.0)
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
    Some(with_sse(points, intercept, slope))
}

/// `intercept + slope × x` and its sum of squared residuals over `points`.
fn with_sse(points: impl Iterator<Item = (f64, f64)>, intercept: f64, slope: f64) -> Line {
    let sse = points
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    Line {
        intercept,
        slope,
        sse,
    }
}

/// The least-squares line with neither a negative intercept (a launch takes no less than
/// nothing) nor a negative slope (more units take no less time): through the origin where the
/// free line's intercept falls below zero, flat where time does not grow with `x` (or every
/// `x` is alike). `None` for no points.
fn nonnegative_line(points: impl Iterator<Item = (f64, f64)>) -> Option<Line> {
    let points: Vec<(f64, f64)> = points.collect();
    if points.is_empty() {
        return None;
    }
    let it = || points.iter().copied();
    let flat = || {
        let mean = it().map(|(_, y)| y).sum::<f64>() / points.len() as f64;
        with_sse(it(), mean, 0.0)
    };
    Some(match line(it()) {
        Some(l) if l.slope >= 0.0 && l.intercept >= 0.0 => l,
        Some(l) if l.slope > 0.0 => {
            let sxx: f64 = it().map(|(x, _)| x * x).sum();
            let sxy: f64 = it().map(|(x, y)| x * y).sum();
            if sxx > 0.0 && sxy > 0.0 {
                with_sse(it(), 0.0, sxy / sxx)
            } else {
                flat()
            }
        }
        _ => flat(),
    })
}

/// How `samples`' grids follow their units.
fn grid_rule(samples: &[Sample]) -> GridRule {
    let Some(grids) = samples.iter().map(|s| s.grid).collect::<Option<Vec<_>>>() else {
        return GridRule::Fixed;
    };
    let Some(&first) = grids.first() else {
        return GridRule::Fixed;
    };
    let varying: Vec<usize> = (0..3)
        .filter(|&d| grids.iter().any(|g| g[d] != first[d]))
        .collect();
    let dim = match varying[..] {
        [] => return GridRule::Fixed,
        [dim] => dim,
        _ => return GridRule::Unexplained,
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
            .all(|(s, g)| tiles(s.units, tile) == f64::from(g[dim]));
    if consistent {
        GridRule::Tiled { tile, other_blocks }
    } else {
        GridRule::Unexplained
    }
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
        let share = m.saved_share(1672.0, 1680.0).expect("a share");
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
        let share = m.saved_share(3000.0, 6000.0).expect("a share");
        assert!((share - 90_000.0 / 220_000.0).abs() < 1e-9);
        assert_eq!(m.saved_share(6000.0, 6000.0), Some(1.0));
        // The grid does not change, so the work is the units.
        assert_eq!(m.work_share(3000.0, 6000.0), 0.5);
    }

    #[test]
    fn too_few_sizes_give_no_model_and_a_flat_time_saves_none() {
        let two: Vec<Sample> = [736, 816, 736].into_iter().map(gemm).collect();
        assert_eq!(TimeModel::fit(&two, 132), None);
        // Time that does not grow with the units: dropping units saves none of it.
        let flat: Vec<Sample> = (1..=4)
            .map(|k| Sample {
                units: f64::from(k),
                ns: 10_000.0 - f64::from(k),
                grid: None,
            })
            .collect();
        let m = TimeModel::fit(&flat, 132).expect("fits");
        assert!(
            matches!(m, TimeModel::Linear { per_unit_ns, .. } if per_unit_ns == 0.0),
            "{m:?}"
        );
        assert_eq!(m.saved_share(3.0, 4.0), Some(0.0));
    }

    #[test]
    fn a_tiled_launchs_work_is_its_blocks() {
        let samples: Vec<Sample> = (736..=1680).step_by(80).map(gemm).collect();
        let m = TimeModel::fit(&samples, 132).expect("fits");
        // 1680 rows are 14 tiles; 8 rows still run one of them whole.
        let share = m.work_share(1672.0, 1680.0);
        assert!((share - 13.0 / 14.0).abs() < 1e-12, "{share}");
        // Never more than the units' share, and all of it when nothing remains.
        assert!(m.work_share(100.0, 1680.0) <= 100.0 / 1680.0);
        assert_eq!(m.work_share(1680.0, 1680.0), 1.0);
    }

    /// A 128-row-tiled GEMM over `cols` column tiles on 132 SMs that hold one block each: one
    /// wave takes 132 µs, two 262 µs, three 395 µs (a later wave costs a little more), and
    /// every other size 2 µs more.
    fn gemm_of(cols: u32, rows: u32) -> Sample {
        let tiles = rows.div_ceil(128);
        let waves = (cols * tiles).div_ceil(132);
        let wave_ns = [132_000.0, 262_000.0, 395_000.0];
        let jitter = if rows % 160 == 0 { 2_000.0 } else { 0.0 };
        Sample {
            units: f64::from(rows),
            ns: wave_ns[waves as usize - 1] + jitter,
            grid: Some([cols, tiles, 1]),
        }
    }

    #[test]
    fn operations_of_one_kernel_share_the_blocks_an_sm_holds() {
        // 24 column tiles over 6 to 14 row tiles: 144 to 336 blocks, 2 or 3 waves. Taking two
        // blocks an SM splits them into the same groups (1 or 2 waves of 264), and fits them
        // better: a line through 2 and 3 waves crosses zero below nothing, one through 1 and
        // 2 does not. Alone, the wide launches say 8 rows take 262 µs.
        let wide: Vec<Sample> = (736..=1680).step_by(80).map(|r| gemm_of(24, r)).collect();
        // 18 column tiles over the same rows: 108 to 252 blocks, 1 or 2 waves, which only one
        // block an SM explains.
        let narrow: Vec<Sample> = (736..=1680).step_by(80).map(|r| gemm_of(18, r)).collect();
        // 8 rows of the wide one: one tile, 24 blocks, one wave.
        let error = |m: &TimeModel| {
            let whole = 395_000.0;
            let share = m.saved_share(1672.0, 1680.0).expect("a share");
            (share - (whole - 132_000.0) / whole).abs()
        };
        let alone = TimeModel::fit(&wide, 132).expect("fits");
        let models = TimeModel::fit_family(&[&wide, &narrow], 132);
        let together = models[0].expect("fits");
        assert!(
            matches!(together, TimeModel::Waves { wave_blocks, .. } if wave_blocks == 132.0),
            "{together:?}"
        );
        assert!(error(&together) < 0.02, "{together:?}");
        assert!(error(&alone) > 0.2, "{alone:?}");
    }

    #[test]
    fn a_grid_the_units_do_not_explain_leaves_the_time_unknown() {
        // Attention: three blocks per query row, priced in query–key pairs (rows²).
        let samples: Vec<Sample> = (92..=210)
            .step_by(10)
            .map(|rows: u32| Sample {
                units: f64::from(rows * rows),
                ns: 20_000.0 + 4.0 * f64::from(rows * rows),
                grid: Some([3 * rows, 1, 1]),
            })
            .collect();
        let m = TimeModel::fit(&samples, 132).expect("a model");
        assert_eq!(m, TimeModel::Unexplained);
        assert_eq!(m.saved_share(1000.0, 40_000.0), None);
        assert_eq!(m.work_share(1000.0, 40_000.0), 0.025);
    }
}
