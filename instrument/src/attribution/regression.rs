//! Dynamic power per signature: non-negative least squares over the counter windows, with a
//! covariance that includes the idle estimate's own uncertainty.

use super::design::Design;
use super::idle::IdleBaseline;
use super::linalg::{cholesky_inverse, nnls, t95, Square};
use crate::power::CounterWindow;

/// The fitted dynamic powers and their uncertainty.
pub(crate) struct Fit {
    /// Dynamic power per signature, mW (0 where clamped).
    pub beta: Vec<f64>,
    /// Covariance of `beta`, mW²; clamped signatures carry only a marginal variance.
    pub cov: Square,
    /// The t quantile for a 95% interval at the fit's degrees of freedom.
    pub t: f64,
    /// Windows with work in them (the rows of the fit).
    pub rows: usize,
}

/// Fit `ΔE − P_idle·Δt = Σ_s P_s · busy_s` over every window with work in it.
pub(crate) fn fit(design: &Design, windows: &[CounterWindow], idle: &IdleBaseline) -> Fit {
    let p = design.len();
    let x = &design.x;
    let rows: Vec<usize> = (0..windows.len())
        .filter(|&k| x[k].iter().any(|&b| b > 0.0))
        .collect();
    let mut ata = Square::zeros(p);
    let mut atb = vec![0.0; p];
    let mut att = vec![0.0; p];
    let mut ys = Vec::with_capacity(rows.len());
    for &k in &rows {
        let w = &windows[k];
        let t = (w.end_ns - w.start_ns) as f64 * 1e-9;
        let y = w.energy_mj as f64 - idle.power.mw * t;
        ys.push(y);
        for i in 0..p {
            atb[i] += x[k][i] * y;
            att[i] += x[k][i] * t;
            for j in 0..p {
                ata.a[i * p + j] += x[k][i] * x[k][j];
            }
        }
    }
    let (beta, passive) = if p > 0 {
        nnls(&ata, &atb)
    } else {
        (Vec::new(), Vec::new())
    };
    let rss: f64 = rows
        .iter()
        .zip(&ys)
        .map(|(&k, y)| (y - (0..p).map(|i| x[k][i] * beta[i]).sum::<f64>()).powi(2))
        .sum();
    let df = rows.len().saturating_sub(passive.len());
    let sigma2 = if df > 0 {
        rss / df as f64
    } else {
        f64::INFINITY
    };
    let mut cov = Square::zeros(p);
    if let Some(l) = ata.sub(&passive).cholesky() {
        let inv = cholesky_inverse(&l, passive.len());
        // How each passive coefficient moves when idle power moves: −(XᵀX)⁻¹Xᵀt.
        let g: Vec<f64> = (0..passive.len())
            .map(|r| {
                (0..passive.len())
                    .map(|c| inv.at(r, c) * att[passive[c]])
                    .sum()
            })
            .collect();
        for (r, &i) in passive.iter().enumerate() {
            for (c, &j) in passive.iter().enumerate() {
                cov.a[i * p + j] = sigma2 * inv.at(r, c) + idle.var_mw2 * g[r] * g[c];
            }
        }
    }
    for i in (0..p).filter(|i| !passive.contains(i)) {
        // Clamped at zero: only an upper bound from the marginal information.
        let info = ata.at(i, i);
        cov.a[i * p + i] = if info > 0.0 {
            sigma2 / info
        } else {
            f64::INFINITY
        };
    }
    Fit {
        beta,
        cov,
        t: t95(df),
        rows: rows.len(),
    }
}
