//! Dynamic power per signature: non-negative least squares over two kinds of observation,
//! weighted by their own fitted noise (feasible generalised least squares):
//! - energy-counter windows: `ΔE − P_idle·Δt = Σ_s P_s · busy_s` (exact integrals, mJ);
//! - power samples: `s − P_idle = Σ_s P_s · k_s`, with `k_s` the signature's busy time seen
//!   through the sensor's response (smoothed averages, mW).
//!
//! The covariance includes the idle estimate's own uncertainty.

use super::design::Design;
use super::idle::IdleBaseline;
use super::linalg::{cholesky_inverse, nnls, t95, Square};
use super::samples::SampleRows;
use crate::power::CounterWindow;

/// The fitted dynamic powers and their uncertainty.
pub(crate) struct Fit {
    /// Dynamic power per signature, mW (0 where clamped).
    pub beta: Vec<f64>,
    /// Covariance of `beta`, mW²; clamped signatures carry only a marginal variance.
    pub cov: Square,
    /// The t quantile for a 95% interval at the fit's degrees of freedom.
    pub t: f64,
    /// Counter windows with work in them.
    pub counter_rows: usize,
    /// Samples with work in reach.
    pub sample_rows: usize,
    /// Residual standard deviation of the sample rows, mW (noise plus model error).
    pub sample_sd_mw: f64,
    /// The joint covariance of every signature, when some were clamped at zero.
    pub joint: Option<Joint>,
}

/// The model-based covariance of all signatures at once, for sums over signatures that always
/// run together (an unmodified program's steady mix): each alone is unresolved, but their sum
/// is pinned by the counter. The block-robust variances of single signatures keep only the
/// diagonal of the robust matrix where it is wider than the model's, which loses the strong
/// negative correlation of such signatures; this keeps it, widened by the largest
/// robust-to-model ratio. A vanishing ridge keeps the inverse finite; a sum the observations
/// do not pin shows up as one the ridge decides, and is not used.
pub(crate) struct Joint {
    /// (XᵀWX + εI)⁻¹, mW².
    pub inv: Square,
    /// The ridge ε.
    pub ridge: f64,
    /// ∂β/∂P_idle per signature (from the same inverse).
    pub idle_g: Vec<f64>,
    /// Variance of the idle power estimate, mW².
    pub idle_var: f64,
    /// How far the block-robust variances of the fitted signatures exceeded the model's
    /// (at least 1): the same widening is applied to sums.
    pub inflation: f64,
    /// A fully correlated error per signature (the replay closure's), standard deviation, mW.
    pub systematic_sd_mw: Vec<f64>,
}

impl Joint {
    /// Variance of `Σ b_i β_i`, mW²·s², or `None` when the observations do not pin that sum.
    pub fn variance(&self, b: &[(usize, f64)]) -> Option<f64> {
        let n = self.inv.n;
        let mut jb = vec![0.0; n];
        for &(j, bj) in b {
            for (i, v) in jb.iter_mut().enumerate() {
                *v += self.inv.at(i, j) * bj;
            }
        }
        let norm_b = b.iter().map(|&(_, x)| x * x).sum::<f64>().sqrt();
        // (I − A·J)b = εJb: what of b lies outside what the observations span.
        let outside = self.ridge * jb.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm_b.is_nan() || norm_b <= 0.0 || outside > 1e-3 * norm_b {
            return None;
        }
        let q: f64 = b.iter().map(|&(i, bi)| bi * jb[i]).sum();
        let gb: f64 = b.iter().map(|&(i, bi)| bi * self.idle_g[i]).sum();
        let sys: f64 = b
            .iter()
            .map(|&(i, bi)| bi * self.systematic_sd_mw.get(i).copied().unwrap_or(0.0))
            .sum();
        Some(self.inflation * q.max(0.0) + self.idle_var * gb * gb + sys * sys)
    }
}

impl Fit {
    /// Add an error common to several signatures, `sd_mw[i]` (standard deviation, mW) for
    /// signature i, fully correlated between them: a rank-one term in the covariance, so sums
    /// over those signatures carry it whole.
    pub fn add_systematic(&mut self, sd_mw: &[f64]) {
        let p = self.cov.n;
        for i in 0..p.min(sd_mw.len()) {
            for j in 0..p.min(sd_mw.len()) {
                let add = sd_mw[i] * sd_mw[j];
                if add != 0.0 && self.cov.a[i * p + j].is_finite() {
                    self.cov.a[i * p + j] += add;
                }
            }
        }
        if let Some(j) = &mut self.joint {
            j.systematic_sd_mw = sd_mw.to_vec();
        }
    }
}

/// One observation: sparse x, y, and ∂y/∂P_idle.
struct Row {
    x: Vec<(usize, f64)>,
    y: f64,
    idle_sens: f64,
    group: usize,
    /// When the observation was made, trace ns (for the block-robust covariance).
    t_ns: u64,
}

/// Observations within one block of this length share their errors in the robust
/// covariance, ns.
const BLOCK_NS: u64 = 1_000_000_000;

/// Fit every signature's dynamic power from the counter windows and the sample rows.
pub(crate) fn fit(
    design: &Design,
    windows: &[CounterWindow],
    idle: &IdleBaseline,
    sample_rows: &SampleRows,
    samples: &[(u64, f64)],
    (sample_noise_mw, cap_mw): (f64, Option<f64>),
) -> Fit {
    let p = design.len();
    let (rows, counter_rows) = observation_rows(design, windows, idle, (sample_rows, samples));
    // Starting noise: the counter's 1 mJ steps plus 1% of a window's energy; the samples'
    // sensor noise.
    let mean_counter_mj = if counter_rows > 0 {
        rows[..counter_rows].iter().map(|r| r.y.abs()).sum::<f64>() / counter_rows as f64
    } else {
        0.0
    };
    let mut var = [
        1.0 + (0.01 * mean_counter_mj).powi(2),
        sample_noise_mw.max(1.0).powi(2),
    ];
    let normal = Normal::of(&rows, p);
    let (beta, passive) = reweighted_nnls(&rows, &normal, &mut var);
    // Residuals of neighbouring observations are correlated (drift the model does not carry,
    // such as the thermal tail): widen each group's variance by its effective-sample-size
    // factor (1+ρ)/(1−ρ), ρ its lag-1 residual autocorrelation (rows are in time order).
    for (g, v) in var.iter_mut().enumerate() {
        let res: Vec<f64> = rows
            .iter()
            .filter(|r| r.group == g)
            .map(|r| r.residual(&beta))
            .collect();
        *v *= inflation(&res);
    }
    let (ata, _, att) = normal.combine(&var);
    let df = rows.len().saturating_sub(passive.len());
    let (mut cov, inflation) =
        robust_covariance(&rows, (&beta, &passive), (&var, idle.var_mw2), (&ata, &att));
    for i in (0..p).filter(|i| !passive.contains(i)) {
        // Clamped at zero: only an upper bound from the marginal information.
        let info = ata.at(i, i);
        cov.a[i * p + i] = if info > 0.0 {
            1.0 / info
        } else {
            f64::INFINITY
        };
    }
    let joint = joint_inverse(&ata, &att, idle.var_mw2, inflation);
    if let Some(j) = &joint {
        let t = t95(df);
        let mut bounds = window_bounds(&rows[..counter_rows], p, idle.var_mw2, t);
        // No signature draws more than the board can.
        if let Some(cap) = cap_mw {
            bounds.iter_mut().for_each(|b| *b = b.min(cap));
        }
        widen_unpinned(&mut cov, &beta, j, &bounds, t);
    }
    Fit {
        beta,
        cov,
        joint,
        t: t95(df),
        counter_rows,
        sample_rows: rows.len() - counter_rows,
        sample_sd_mw: var[1].sqrt(),
    }
}

impl Row {
    /// The observation less what powers `beta` predict for it.
    fn residual(&self, beta: &[f64]) -> f64 {
        self.y - self.x.iter().map(|&(i, x)| beta[i] * x).sum::<f64>()
    }
}

/// The fit's observations in time order within each group: one per counter window with work
/// (group 0; energy above idle, mJ), then one per sample row (group 1; power above idle, mW);
/// and how many are counter windows.
fn observation_rows(
    design: &Design,
    windows: &[CounterWindow],
    idle: &IdleBaseline,
    (sample_rows, samples): (&SampleRows, &[(u64, f64)]),
) -> (Vec<Row>, usize) {
    let mut rows: Vec<Row> = Vec::new();
    for (k, w) in windows.iter().enumerate() {
        let x: Vec<(usize, f64)> = design.x[k]
            .iter()
            .enumerate()
            .filter(|(_, &b)| b > 0.0)
            .map(|(i, &b)| (i, b))
            .collect();
        if x.is_empty() {
            continue;
        }
        let t = (w.end_ns - w.start_ns) as f64 * 1e-9;
        rows.push(Row {
            x,
            y: w.energy_mj as f64 - idle.power.mw * t,
            idle_sens: t,
            group: 0,
            t_ns: w.start_ns,
        });
    }
    let counter_rows = rows.len();
    for (r, &j) in sample_rows.sample.iter().enumerate() {
        rows.push(Row {
            x: sample_rows.x[r].clone(),
            y: samples[j].1 - idle.power.mw,
            idle_sens: 1.0,
            group: 1,
            t_ns: samples[j].0,
        });
    }
    (rows, counter_rows)
}

/// Each group's Gram matrix XᵀX, XᵀY and Xᵀ(∂y/∂idle), built once: a round of the fit only
/// reweights them.
struct Normal {
    gram: [Square; 2],
    xty: [Vec<f64>; 2],
    xtt: [Vec<f64>; 2],
}

impl Normal {
    /// The normal equations' parts of `rows` over `p` signatures.
    fn of(rows: &[Row], p: usize) -> Self {
        let mut gram = [Square::zeros(p), Square::zeros(p)];
        let mut xty = [vec![0.0; p], vec![0.0; p]];
        let mut xtt = [vec![0.0; p], vec![0.0; p]];
        for r in rows {
            let (g, xy, xt) = (&mut gram[r.group], &mut xty[r.group], &mut xtt[r.group]);
            for (a, &(i, xi)) in r.x.iter().enumerate() {
                xy[i] += xi * r.y;
                xt[i] += xi * r.idle_sens;
                for &(j, xj) in &r.x[a..] {
                    g.a[i * p + j] += xi * xj;
                }
            }
        }
        for g in &mut gram {
            for i in 0..p {
                for j in 0..i {
                    // Rows list each signature once, so one triangle holds each pair once; fold
                    // whichever triangle got it into both.
                    let v = g.a[i * p + j] + g.a[j * p + i];
                    g.a[i * p + j] = v;
                    g.a[j * p + i] = v;
                }
            }
        }
        Self { gram, xty, xtt }
    }

    /// Signatures.
    fn len(&self) -> usize {
        self.xty[0].len()
    }

    /// XᵀWX, XᵀWy and XᵀW(∂y/∂idle), each group weighted by the inverse of its `var`.
    fn combine(&self, var: &[f64; 2]) -> (Square, Vec<f64>, Vec<f64>) {
        let p = self.len();
        let mut ata = Square::zeros(p);
        let (mut atb, mut att) = (vec![0.0; p], vec![0.0; p]);
        for (g, v) in var.iter().enumerate() {
            let w = 1.0 / v;
            for (a, b) in ata.a.iter_mut().zip(&self.gram[g].a) {
                *a += w * b;
            }
            for i in 0..p {
                atb[i] += w * self.xty[g][i];
                att[i] += w * self.xtt[g][i];
            }
        }
        (ata, atb, att)
    }
}

/// Non-negative least squares over `rows`, three rounds, each group's noise (`var`, updated)
/// re-estimated from its residuals between rounds: the powers, and the signatures left free
/// (the passive set).
fn reweighted_nnls(rows: &[Row], normal: &Normal, var: &mut [f64; 2]) -> (Vec<f64>, Vec<usize>) {
    let p = normal.len();
    let mut beta = vec![0.0; p];
    let mut passive = Vec::new();
    for _round in 0..3 {
        if p == 0 {
            break;
        }
        let (ata, atb, _) = normal.combine(var);
        (beta, passive) = nnls(&ata, &atb);
        let mut rss = [0.0f64; 2];
        let mut n = [0usize; 2];
        for r in rows {
            rss[r.group] += r.residual(&beta).powi(2);
            n[r.group] += 1;
        }
        let share = |g: usize| n[g] as f64 / rows.len().max(1) as f64;
        for (g, v) in var.iter_mut().enumerate() {
            if n[g] > 0 {
                let dof = (n[g] as f64 - passive.len() as f64 * share(g)).max(1.0);
                *v = (rss[g] / dof).max(1.0);
            }
        }
    }
    (beta, passive)
}

/// The covariance of the free (passive) signatures' powers, block-robust, with the idle
/// estimate's variance (`idle_var`, mW²) carried through how each power moves with idle; and
/// how far the robust variances exceed the model's (≥ 1). The clamped signatures' entries
/// are left at zero.
///
/// Errors the model does not carry (drift, the thermal tail, a signature whose power varies)
/// are correlated within a block of time: the sandwich A⁻¹(Σ_b g_b g_bᵀ)A⁻¹ with g_b the
/// block's weighted score. Each coefficient's variance is then the larger of the two,
/// keeping the correlations of the model.
fn robust_covariance(
    rows: &[Row],
    (beta, passive): (&[f64], &[usize]),
    (var, idle_var): (&[f64; 2], f64),
    (ata, att): (&Square, &[f64]),
) -> (Square, f64) {
    let p = beta.len();
    let mut cov = Square::zeros(p);
    let mut inflation = 1.0f64;
    let Some(l) = ata.sub(passive).cholesky() else {
        return (cov, inflation);
    };
    let inv = cholesky_inverse(&l, passive.len());
    // How each passive coefficient moves when idle power moves: −(XᵀWX)⁻¹XᵀWt.
    let g: Vec<f64> = (0..passive.len())
        .map(|r| {
            (0..passive.len())
                .map(|c| inv.at(r, c) * att[passive[c]])
                .sum()
        })
        .collect();
    let k = passive.len();
    let pos: Vec<Option<usize>> = (0..p)
        .map(|i| passive.iter().position(|&x| x == i))
        .collect();
    let mut meat = vec![0.0f64; k * k];
    // Blocks start at the first observation, not at whole seconds of the clock: a report must
    // not depend on when in a second the run began.
    let t0_ns = rows.iter().map(|r| r.t_ns).min().unwrap_or(0);
    let mut blocks: Vec<(u64, usize, usize)> = rows
        .iter()
        .enumerate()
        .map(|(n, r)| ((r.t_ns - t0_ns) / BLOCK_NS, r.group, n))
        .collect();
    blocks.sort_unstable();
    let mut score = vec![0.0f64; k];
    let mut flush = |score: &mut Vec<f64>| {
        for a in 0..k {
            if score[a] != 0.0 {
                for b in 0..k {
                    meat[a * k + b] += score[a] * score[b];
                }
            }
        }
        score.iter_mut().for_each(|v| *v = 0.0);
    };
    let mut current = None;
    for &(b, g, n) in &blocks {
        if current != Some((b, g)) {
            flush(&mut score);
            current = Some((b, g));
        }
        let r = &rows[n];
        let e = r.residual(beta) / var[r.group];
        for &(i, x) in &r.x {
            if let Some(a) = pos[i] {
                score[a] += x * e;
            }
        }
    }
    flush(&mut score);
    let n_obs = rows.len() as f64;
    let small = n_obs / (n_obs - k as f64).max(1.0);
    // R = A⁻¹ M A⁻¹ in full, so sums over correlated signatures are robust too.
    let mut im = vec![0.0f64; k * k];
    for a in 0..k {
        for d in 0..k {
            im[a * k + d] = (0..k).map(|c| inv.at(a, c) * meat[c * k + d]).sum();
        }
    }
    let robust = |a: usize, b: usize| -> f64 {
        (0..k).map(|d| im[a * k + d] * inv.at(d, b)).sum::<f64>() * small
    };
    for (r, &i) in passive.iter().enumerate() {
        for (c, &j) in passive.iter().enumerate() {
            let mut v = robust(r, c);
            if r == c {
                // Never below the model's own variance.
                if inv.at(r, r) > 0.0 {
                    inflation = inflation.max(v / inv.at(r, r));
                }
                v = v.max(inv.at(r, r));
            }
            cov.a[i * p + j] = v + idle_var * g[r] * g[c];
        }
    }
    (cov, inflation)
}

/// The inverse of the whole (lightly ridged) normal matrix `ata`, for the CIs of sums over
/// signatures the fit cannot tell apart; `None` for a single signature or a singular matrix.
fn joint_inverse(ata: &Square, att: &[f64], idle_var: f64, inflation: f64) -> Option<Joint> {
    let p = att.len();
    if p <= 1 {
        return None;
    }
    let max_diag = (0..p).map(|i| ata.at(i, i)).fold(0.0f64, f64::max);
    let ridge = 1e-9 * max_diag;
    let mut a = ata.clone();
    for i in 0..p {
        a.a[i * p + i] += ridge;
    }
    a.cholesky().filter(|_| ridge > 0.0).map(|l| {
        let inv = cholesky_inverse(&l, p);
        let idle_g = (0..p)
            .map(|i| (0..p).map(|j| inv.at(i, j) * att[j]).sum())
            .collect();
        Joint {
            inv,
            ridge,
            idle_g,
            idle_var,
            inflation,
            systematic_sd_mw: Vec::new(),
        }
    })
}

/// Each signature's dynamic power if it had drawn all the dynamic energy of the counter
/// windows it ran in (every other signature at zero), with the idle estimate's 95% margin,
/// mW: an upper bound that holds because no signature draws less than idle. Infinite where
/// it never ran inside a window.
fn window_bounds(counter: &[Row], p: usize, idle_var_mw2: f64, t: f64) -> Vec<f64> {
    let (mut energy_mj, mut busy_s, mut span_s) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    for r in counter {
        for &(i, x) in &r.x {
            energy_mj[i] += r.y.max(0.0);
            busy_s[i] += x;
            span_s[i] += r.idle_sens;
        }
    }
    (0..p)
        .map(|i| {
            if busy_s[i] > 0.0 {
                (energy_mj[i] + t * idle_var_mw2.sqrt() * span_s[i]) / busy_s[i]
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// NNLS's passive set is one vertex of what the observations allow: where signatures always
/// run together, the fit zeroes some and hands their energy to others, and the covariance of
/// the passive set alone treats those zeros as known (as the marginal information of a zeroed
/// one treats the others as known). So every signature takes the wider of that variance and
/// its marginal one in the joint fit, where a signature the observations do not pin on its
/// own gets the ridge's vast variance. An interval that then reaches zero (unresolved) and
/// passes the signature's window bound ends at that bound, or at twice its value if higher.
fn widen_unpinned(cov: &mut Square, beta: &[f64], joint: &Joint, window_bound_mw: &[f64], t: f64) {
    let p = cov.n;
    for i in 0..p {
        let g = joint.idle_g[i];
        let mut v = joint.inv.at(i, i).max(0.0) + joint.idle_var * g * g;
        let sd = v.sqrt();
        if beta[i] - t * sd <= 0.0 && beta[i] + t * sd > window_bound_mw[i] {
            let bound = window_bound_mw[i];
            let high = if bound.is_finite() { bound } else { 0.0 };
            v = ((high.max(2.0 * beta[i]) - beta[i]) / t).powi(2);
        }
        if v > cov.a[i * p + i] {
            cov.a[i * p + i] = v;
        }
    }
}

/// The variance inflation (1+ρ)/(1−ρ) for residuals with lag-1 autocorrelation ρ (ρ ≤ 0
/// gives 1; ρ is capped at 0.98).
fn inflation(res: &[f64]) -> f64 {
    if res.len() < 3 {
        return 1.0;
    }
    let m = res.iter().sum::<f64>() / res.len() as f64;
    let c0: f64 = res.iter().map(|r| (r - m).powi(2)).sum();
    let c1: f64 = res.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum();
    if c0 <= 0.0 {
        return 1.0;
    }
    let rho = (c1 / c0).clamp(0.0, 0.98);
    (1.0 + rho) / (1.0 - rho)
}
