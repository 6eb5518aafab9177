//! Sums of span energies (per signature, op class, region) with their joint uncertainty.

use super::linalg::Square;
use super::regression::Joint;
use super::EnergyEstimate;

/// One span's part: its signature-priced busy time and its directly integrated energy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanPart {
    /// Its signature.
    pub sig: usize,
    /// Busy seconds priced at the signature's power.
    pub priced_s: f64,
    /// Directly integrated energy, mJ.
    pub direct_mj: f64,
    /// Variance of `direct_mj`, mJ².
    pub direct_var: f64,
    /// Whether it was observed at all.
    pub covered: bool,
}

impl SpanPart {
    /// The span's dynamic energy with its 95% CI.
    pub fn estimate(&self, beta: &[f64], cov: &Square, t: f64) -> EnergyEstimate {
        if !self.covered {
            return EnergyEstimate::uncovered();
        }
        let var = self.priced_s * self.priced_s * cov.at(self.sig, self.sig) + self.direct_var;
        EnergyEstimate::from_half_width(
            beta[self.sig] * self.priced_s + self.direct_mj,
            t * var.max(0.0).sqrt(),
        )
    }
}

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
    pub fn add(&mut self, o: &Rollup) {
        self.add_scaled(o, 1.0);
    }

    /// Add `share` (0..=1) of another group: a share of what ran in a stretch.
    pub fn add_scaled(&mut self, o: &Rollup, share: f64) {
        for (a, b) in self.priced_s.iter_mut().zip(&o.priced_s) {
            *a += b * share;
        }
        self.direct_mj += o.direct_mj * share;
        self.direct_var += o.direct_var * share * share;
        self.covered |= o.covered;
    }

    /// Add one span.
    pub fn add_span(&mut self, s: &SpanPart) {
        self.priced_s[s.sig] += s.priced_s;
        self.direct_mj += s.direct_mj;
        self.direct_var += s.direct_var;
        self.covered |= s.covered;
    }

    /// The group's dynamic energy with its 95% CI: `bᵀβ + direct`, variance `bᵀΣb + Σ var`.
    /// A group of several signatures takes its variance from `joint` where the observations
    /// pin its sum.
    pub fn estimate(
        &self,
        beta: &[f64],
        cov: &Square,
        t: f64,
        joint: Option<&Joint>,
    ) -> EnergyEstimate {
        if !self.covered {
            return EnergyEstimate::uncovered();
        }
        let nz: Vec<usize> = (0..self.priced_s.len())
            .filter(|&i| self.priced_s[i] > 0.0)
            .collect();
        let priced: f64 = nz.iter().map(|&i| beta[i] * self.priced_s[i]).sum();
        let pinned = joint.filter(|_| nz.len() > 1).and_then(|j| {
            let b: Vec<(usize, f64)> = nz.iter().map(|&i| (i, self.priced_s[i])).collect();
            j.variance(&b)
        });
        if let Some(v) = pinned {
            return EnergyEstimate::from_half_width(
                priced + self.direct_mj,
                t * (v + self.direct_var).max(0.0).sqrt(),
            );
        }
        let var: f64 = nz
            .iter()
            .flat_map(|&i| nz.iter().map(move |&j| (i, j)))
            .map(|(i, j)| self.priced_s[i] * self.priced_s[j] * cov.at(i, j))
            .sum::<f64>()
            + self.direct_var;
        EnergyEstimate::from_half_width(priced + self.direct_mj, t * var.max(0.0).sqrt())
    }
}
