//! Mapping a foreign clock (CUDA event time, CUPTI timestamps) onto the trace clock from
//! bracketed calibration points, with drift and an error bound.
//!
//! A point is a foreign time `x` observed between two trace-clock reads: the true trace time
//! lies within `half_width_ns` of their midpoint `y`. The map is the least-squares line
//! through the midpoints; its error bound is the largest `|residual| + half_width` over the
//! points (between points the linear map's error cannot exceed that of its neighbours).

use wattlens_instrument::trace::{ClockAlignment, ClockSource};

/// One calibration point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPoint {
    /// Foreign time, ns.
    pub foreign_ns: u64,
    /// Midpoint of the trace-clock bracket, ns.
    pub trace_ns: u64,
    /// Half the bracket's width, ns.
    pub half_width_ns: u64,
}

/// A fitted foreign → trace clock map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockMap {
    x0: u64,
    y0: i128,
    /// Slope minus one (drift), dimensionless.
    drift: f64,
    /// Bound on the map's error at the calibration points it kept, ns.
    pub error_bound_ns: u64,
    /// Calibration points left out as outliers.
    pub excluded: usize,
}

/// How many median residuals a point may miss the line by before it is left out.
pub const OUTLIER_FACTOR: f64 = 5.0;

impl ClockMap {
    /// The identity-slope map through one point (no drift).
    pub fn through(p: ClockPoint) -> Self {
        Self {
            x0: p.foreign_ns,
            y0: i128::from(p.trace_ns),
            drift: 0.0,
            error_bound_ns: p.half_width_ns,
            excluded: 0,
        }
    }

    /// Least-squares fit through `points`, robust to a few bad points: a point whose
    /// residual exceeds [`OUTLIER_FACTOR`] times the median residual (plus its own
    /// half-width) is left out and the line refitted, for at most a tenth of the points.
    /// `None` without points.
    pub fn fit(points: &[ClockPoint]) -> Option<Self> {
        let mut kept: Vec<ClockPoint> = points.to_vec();
        let mut map = Self::fit_all(&kept)?;
        for _ in 0..points.len() / 10 {
            let resid = |m: &Self, p: &ClockPoint| {
                (i128::from(m.map_ns(p.foreign_ns)) - i128::from(p.trace_ns)).unsigned_abs() as f64
            };
            let mut r: Vec<f64> = kept.iter().map(|p| resid(&map, p)).collect();
            r.sort_by(f64::total_cmp);
            let median = r.get(r.len() / 2).copied().unwrap_or(0.0);
            let Some((worst, _)) = kept
                .iter()
                .enumerate()
                .map(|(i, p)| (i, resid(&map, p) - p.half_width_ns as f64))
                .filter(|&(_, excess)| excess > OUTLIER_FACTOR * median.max(1_000.0))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                break;
            };
            kept.remove(worst);
            map = Self::fit_all(&kept)?;
        }
        map.excluded = points.len() - kept.len();
        Some(map)
    }

    fn fit_all(points: &[ClockPoint]) -> Option<Self> {
        let first = *points.first()?;
        let x0 = first.foreign_ns;
        let y0 = i128::from(first.trace_ns);
        // Residual offsets relative to the unit-slope line through the first point.
        let rel: Vec<(f64, f64)> = points
            .iter()
            .map(|p| {
                let dx = (i128::from(p.foreign_ns) - i128::from(x0)) as f64;
                let dy = (i128::from(p.trace_ns) - y0) as f64;
                (dx, dy - dx)
            })
            .collect();
        let n = rel.len() as f64;
        let mx = rel.iter().map(|r| r.0).sum::<f64>() / n;
        let my = rel.iter().map(|r| r.1).sum::<f64>() / n;
        let sxx: f64 = rel.iter().map(|r| (r.0 - mx).powi(2)).sum();
        let sxy: f64 = rel.iter().map(|r| (r.0 - mx) * (r.1 - my)).sum();
        // Drift needs points spread over at least a millisecond to mean anything.
        let drift = if sxx > 1e12 { sxy / sxx } else { 0.0 };
        let intercept = my - drift * mx;
        let mut map = Self {
            x0,
            y0: y0 + intercept.round() as i128,
            drift,
            error_bound_ns: 0,
            excluded: 0,
        };
        map.error_bound_ns = points
            .iter()
            .map(|p| {
                let r = (map.map_ns(p.foreign_ns) as i128 - i128::from(p.trace_ns)).unsigned_abs();
                u64::try_from(r)
                    .unwrap_or(u64::MAX)
                    .saturating_add(p.half_width_ns)
            })
            .max()
            .unwrap_or(0);
        Some(map)
    }

    /// Trace time of foreign time `x`, ns.
    pub fn map_ns(&self, x: u64) -> u64 {
        let dx = i128::from(x) - i128::from(self.x0);
        self.at(dx, dx as f64)
    }

    /// Trace time of a foreign time given as a (fractional) offset from the first
    /// calibration point, ns: event elapsed times come this way.
    pub fn map_offset_ns(&self, offset_ns: f64) -> u64 {
        self.at(offset_ns.round() as i128, offset_ns)
    }

    fn at(&self, whole: i128, fractional: f64) -> u64 {
        let t = self.y0 + whole + (self.drift * fractional).round() as i128;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }

    /// Drift, parts per billion.
    pub fn drift_ppb(&self) -> i64 {
        (self.drift * 1e9).round() as i64
    }

    /// The evidence record for the trace.
    pub fn alignment(
        &self,
        source: ClockSource,
        device: u32,
        points: &[ClockPoint],
    ) -> ClockAlignment {
        // With the drift rounded to whole ppb, choose the offset that makes the stored formula
        // exact at the first point; elsewhere it is off by at most 0.5 ppb of the distance.
        let drift = self.drift_ppb() as f64 * 1e-9;
        let offset = self.y0 - i128::from(self.x0) - (drift * self.x0 as f64).round() as i128;
        ClockAlignment {
            source,
            device,
            offset_ns: i64::try_from(offset).unwrap_or(i64::MAX),
            drift_ppb: self.drift_ppb(),
            error_bound_ns: self.error_bound_ns,
            points: points.iter().map(|p| (p.foreign_ns, p.trace_ns)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(foreign_ns: u64, trace_ns: u64, half_width_ns: u64) -> ClockPoint {
        ClockPoint {
            foreign_ns,
            trace_ns,
            half_width_ns,
        }
    }

    #[test]
    fn recovers_offset_and_drift_of_a_realtime_like_clock() {
        // Foreign clock near the Unix epoch's ns (large values), trace = foreign − 1234 ns,
        // running 20 ppm slow; brackets of ±500 ns with alternating midpoint errors.
        let base = 1_795_325_001_385_570_367u64;
        let points: Vec<ClockPoint> = (0..61u64)
            .map(|i| {
                let x = base + i * 1_000_000_000;
                let truth = x - 1234 - i * 20_000;
                let jitter = if i % 2 == 0 { 300 } else { 0 };
                point(x, truth + jitter, 500)
            })
            .collect();
        let map = ClockMap::fit(&points).unwrap();
        assert!((map.drift_ppb() + 20_000).abs() < 50, "{}", map.drift_ppb());
        let mid = base + 30_500_000_000;
        let truth = mid - 1234 - 610_000;
        assert!((map.map_ns(mid) as i64 - truth as i64).abs() < 400);
        assert!(
            map.error_bound_ns >= 500 && map.error_bound_ns < 1000,
            "{}",
            map.error_bound_ns
        );
        let a = map.alignment(ClockSource::Cupti, 0, &points);
        assert_eq!(a.points.len(), 61);
        // The stored formula reproduces the map.
        let x = base + 10_000_000_000;
        let formula =
            a.offset_ns as i128 + x as i128 + (a.drift_ppb as f64 * 1e-9 * x as f64) as i128;
        assert!(
            (formula - i128::from(map.map_ns(x))).abs() < 2_000,
            "{formula}"
        );
    }

    #[test]
    fn one_point_or_a_short_span_fits_no_drift() {
        let map = ClockMap::fit(&[point(100, 5_000, 40)]).unwrap();
        assert_eq!(map.drift_ppb(), 0);
        assert_eq!(map.map_ns(150), 5_050);
        assert_eq!(map.error_bound_ns, 40);
        let map = ClockMap::fit(&[point(0, 10, 5), point(1000, 1020, 5)]).unwrap();
        assert_eq!(map.drift_ppb(), 0);
        assert!(ClockMap::fit(&[]).is_none());
    }

    #[test]
    fn a_bad_point_widens_the_bound() {
        let mut points: Vec<ClockPoint> = (0..10u64)
            .map(|i| point(i * 1_000_000_000, 7 + i * 1_000_000_000, 100))
            .collect();
        let good = ClockMap::fit(&points).unwrap().error_bound_ns;
        points[5].trace_ns += 80_000;
        // One bad point among ten is left out...
        let map = ClockMap::fit(&points).unwrap();
        assert_eq!(map.excluded, 1);
        assert!(
            good <= 110 && map.error_bound_ns <= 110,
            "{good} {}",
            map.error_bound_ns
        );
        // ...but when bad points are not rare, the bound says so.
        for i in [1, 3, 7] {
            points[i].trace_ns += 60_000 + 10_000 * i as u64;
        }
        let bad = ClockMap::fit(&points).unwrap();
        assert!(bad.error_bound_ns > 20_000, "{}", bad.error_bound_ns);
    }
}
