//! Numbers with a confidence interval and a coverage label: the only kind wattlens prints.

use serde::{Deserialize, Serialize};

/// How well the sensors resolved a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coverage {
    /// 95% CI half-width within 10% of the value.
    Measured,
    /// 95% CI half-width within 50% of the value.
    Estimated,
    /// The CI is wider than that or reaches zero: only the upper bound is meaningful.
    Unresolved,
    /// No observation window covered it: no value.
    Uncovered,
}

impl Coverage {
    /// The label printed next to a number.
    pub fn label(&self) -> &'static str {
        match self {
            Coverage::Measured => "measured",
            Coverage::Estimated => "estimated",
            Coverage::Unresolved => "unresolved",
            Coverage::Uncovered => "uncovered",
        }
    }

    /// The label for a value and its 95% interval.
    pub fn classify(value: f64, low: f64, high: f64) -> Self {
        let half = (high - low) / 2.0;
        if !value.is_finite() || !half.is_finite() || value <= 0.0 || low <= 0.0 {
            Coverage::Unresolved
        } else if half <= 0.1 * value {
            Coverage::Measured
        } else if half <= 0.5 * value {
            Coverage::Estimated
        } else {
            Coverage::Unresolved
        }
    }
}

/// An energy with its 95% confidence interval, mJ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyEstimate {
    /// Point estimate, mJ.
    pub mj: f64,
    /// Lower end of the 95% CI, mJ.
    pub low_mj: f64,
    /// Upper end of the 95% CI, mJ.
    pub high_mj: f64,
    /// How well it is resolved.
    pub coverage: Coverage,
}

impl EnergyEstimate {
    /// An estimate from a value and a CI half-width, clamped at zero and labelled.
    pub fn from_half_width(mj: f64, half_mj: f64) -> Self {
        let low_mj = (mj - half_mj).max(0.0);
        let high_mj = mj + half_mj;
        Self {
            mj,
            low_mj,
            high_mj,
            coverage: Coverage::classify(mj, low_mj, high_mj),
        }
    }

    /// Nothing observed it.
    pub fn uncovered() -> Self {
        Self {
            mj: 0.0,
            low_mj: 0.0,
            high_mj: 0.0,
            coverage: Coverage::Uncovered,
        }
    }

    /// This estimate with no end above `max_mj` (what the board could have drawn at most),
    /// labelled again; unchanged when `max_mj` is `None`. A value past the cap is no
    /// measurement: it becomes the bound `[0, max]`, unresolved.
    pub fn capped_at(&self, max_mj: Option<f64>) -> Self {
        let (mj, low_mj, high_mj, coverage) =
            capped((self.mj, self.low_mj, self.high_mj, self.coverage), max_mj);
        Self {
            mj,
            low_mj,
            high_mj,
            coverage,
        }
    }

    /// The 95% half-width, mJ.
    pub fn half_mj(&self) -> f64 {
        (self.high_mj - self.low_mj) / 2.0
    }

    /// `self + other`, low ends added and high ends added: their errors are not independent
    /// (idle power enters both, or both come from one fit), and an interval cut at zero or at
    /// the board's cap is not symmetric about its value.
    pub fn plus_correlated(&self, other: &EnergyEstimate) -> Self {
        let (mj, low_mj, high_mj) = (
            self.mj + other.mj,
            self.low_mj + other.low_mj,
            self.high_mj + other.high_mj,
        );
        Self {
            mj,
            low_mj,
            high_mj,
            coverage: Coverage::classify(mj, low_mj, high_mj),
        }
    }

    /// Scale by a non-negative factor (a share, or 1/launches).
    pub fn scaled(&self, k: f64) -> Self {
        Self {
            mj: self.mj * k,
            low_mj: self.low_mj * k,
            high_mj: self.high_mj * k,
            coverage: self.coverage,
        }
    }
}

/// A power with its 95% confidence interval, mW.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerEstimate {
    /// Point estimate, mW.
    pub mw: f64,
    /// Lower end of the 95% CI, mW.
    pub low_mw: f64,
    /// Upper end of the 95% CI, mW.
    pub high_mw: f64,
    /// How well it is resolved.
    pub coverage: Coverage,
}

impl PowerEstimate {
    /// An estimate from a value and a CI half-width, clamped at zero and labelled.
    pub fn from_half_width(mw: f64, half_mw: f64) -> Self {
        let low_mw = (mw - half_mw).max(0.0);
        let high_mw = mw + half_mw;
        Self {
            mw,
            low_mw,
            high_mw,
            coverage: Coverage::classify(mw, low_mw, high_mw),
        }
    }

    /// This estimate with no end above `max_mw`, labelled again; unchanged when `max_mw` is
    /// `None`.
    pub fn capped_at(&self, max_mw: Option<f64>) -> Self {
        let (mw, low_mw, high_mw, coverage) =
            capped((self.mw, self.low_mw, self.high_mw, self.coverage), max_mw);
        Self {
            mw,
            low_mw,
            high_mw,
            coverage,
        }
    }
}

/// (value, low, high, coverage) with no end above `max`, labelled again: a value at or past
/// the cap measured nothing and becomes the bound `[0, max]`, unresolved. Unchanged without a
/// finite, non-negative `max`, or when nothing reaches it.
fn capped(
    (value, low, high, coverage): (f64, f64, f64, Coverage),
    max: Option<f64>,
) -> (f64, f64, f64, Coverage) {
    let Some(max) = max.filter(|m| m.is_finite() && *m >= 0.0) else {
        return (value, low, high, coverage);
    };
    if coverage == Coverage::Uncovered || high <= max {
        return (value, low, high, coverage);
    }
    if value >= max {
        return (max, 0.0, max, Coverage::Unresolved);
    }
    let low = low.min(max);
    (value, low, max, Coverage::classify(value, low, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_follows_relative_width() {
        assert_eq!(
            EnergyEstimate::from_half_width(100.0, 5.0).coverage,
            Coverage::Measured
        );
        assert_eq!(
            EnergyEstimate::from_half_width(100.0, 30.0).coverage,
            Coverage::Estimated
        );
        assert_eq!(
            EnergyEstimate::from_half_width(100.0, 80.0).coverage,
            Coverage::Unresolved
        );
        let reaches_zero = EnergyEstimate::from_half_width(10.0, 12.0);
        assert_eq!(reaches_zero.low_mj, 0.0);
        assert_eq!(reaches_zero.coverage, Coverage::Unresolved);
    }

    #[test]
    fn a_cap_lowers_only_the_ends_above_it() {
        let wide = PowerEstimate::from_half_width(40_000.0, 90_000_000.0);
        let capped = wide.capped_at(Some(575_000.0));
        assert_eq!(capped.high_mw, 575_000.0);
        assert_eq!(capped.mw, 40_000.0);
        assert_eq!(capped.coverage, Coverage::Unresolved, "still only a bound");
        let narrow = PowerEstimate::from_half_width(100_000.0, 5_000.0);
        assert_eq!(narrow.capped_at(Some(575_000.0)), narrow);
        assert_eq!(wide.capped_at(None), wide);
        let e = EnergyEstimate::from_half_width(10.0, 50.0).capped_at(Some(30.0));
        assert_eq!((e.low_mj, e.high_mj), (0.0, 30.0));
        assert_eq!(
            EnergyEstimate::uncovered().capped_at(Some(1.0)),
            EnergyEstimate::uncovered()
        );
        // A fit that puts a signature at or past the board's limit measured nothing: it is a
        // bound, never a zero-width "measured" interval at the cap.
        let past = PowerEstimate::from_half_width(600_000.0, 10_000.0).capped_at(Some(563_800.0));
        assert_eq!((past.low_mw, past.high_mw), (0.0, 563_800.0));
        assert_eq!(past.coverage, Coverage::Unresolved);
    }

    /// A sum's interval is the sum of the intervals: a part cut at zero does not pull the
    /// sum's low end below what the other part certainly holds.
    #[test]
    fn a_correlated_sum_adds_the_ends_of_its_parts() {
        let cut_at_zero = EnergyEstimate::from_half_width(1.0, 3.0);
        assert_eq!((cut_at_zero.low_mj, cut_at_zero.high_mj), (0.0, 4.0));
        let idle = EnergyEstimate::from_half_width(10.0, 1.0);
        let sum = cut_at_zero.plus_correlated(&idle);
        assert_eq!((sum.mj, sum.low_mj, sum.high_mj), (11.0, 9.0, 15.0));
        assert_eq!(sum.coverage, Coverage::Estimated);
    }
}
