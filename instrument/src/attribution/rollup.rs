//! Sums of span energies (per signature, op class, region) with their joint uncertainty.

use super::linalg::Square;
use super::EnergyEstimate;

/// What a group of spans is made of: signature-priced busy time, and directly integrated
/// energy.
#[derive(Debug, Clone)]
pub(crate) struct Rollup {
    /// Busy seconds per signature of the spans priced at their signature's power.
    pub priced_s: Vec<f64>,
    /// Energy of the directly integrated spans, mJ.
    pub direct_mj: f64,
    /// Variance of `direct_mj`, mJ² (integrated spans' errors are independent).
    pub direct_var: f64,
    /// Whether any span was observed at all.
    pub covered: bool,
}

impl Rollup {
    /// An empty group over `p` signatures.
    pub fn new(p: usize) -> Self {
        Self {
            priced_s: vec![0.0; p],
            direct_mj: 0.0,
            direct_var: 0.0,
            covered: false,
        }
    }

    /// Add another group.
    pub fn add(&mut self, other: &Rollup) {
        for (a, b) in self.priced_s.iter_mut().zip(&other.priced_s) {
            *a += b;
        }
        self.direct_mj += other.direct_mj;
        self.direct_var += other.direct_var;
        self.covered |= other.covered;
    }

    /// The group's dynamic energy with its 95% CI: `bᵀβ + direct`, variance `bᵀΣb + Σ var`.
    pub fn estimate(&self, beta: &[f64], cov: &Square, t: f64) -> EnergyEstimate {
        if !self.covered {
            return EnergyEstimate::uncovered();
        }
        let nz: Vec<usize> = (0..self.priced_s.len())
            .filter(|&i| self.priced_s[i] > 0.0)
            .collect();
        let priced: f64 = nz.iter().map(|&i| beta[i] * self.priced_s[i]).sum();
        let var: f64 = nz
            .iter()
            .flat_map(|&i| nz.iter().map(move |&j| (i, j)))
            .map(|(i, j)| self.priced_s[i] * self.priced_s[j] * cov.at(i, j))
            .sum::<f64>()
            + self.direct_var;
        EnergyEstimate::from_half_width(priced + self.direct_mj, t * var.max(0.0).sqrt())
    }
}
