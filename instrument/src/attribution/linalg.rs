//! Small dense linear algebra for the attribution regression (p is tens, not thousands).

/// A row-major square matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Square {
    pub n: usize,
    pub a: Vec<f64>,
}

impl Square {
    pub fn zeros(n: usize) -> Self {
        Self {
            n,
            a: vec![0.0; n * n],
        }
    }

    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }

    /// The sub-matrix on the index set `idx`.
    pub fn sub(&self, idx: &[usize]) -> Self {
        let mut s = Self::zeros(idx.len());
        for (r, &i) in idx.iter().enumerate() {
            for (c, &j) in idx.iter().enumerate() {
                s.a[r * s.n + c] = self.at(i, j);
            }
        }
        s
    }

    /// Cholesky factor L (lower, row-major), or `None` if not positive definite.
    pub fn cholesky(&self) -> Option<Vec<f64>> {
        let n = self.n;
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let mut s = self.at(i, j);
                for k in 0..j {
                    s -= l[i * n + k] * l[j * n + k];
                }
                if i == j {
                    if s <= 0.0 || !s.is_finite() {
                        return None;
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        Some(l)
    }
}

/// Solve (L Lᵀ) x = b given the Cholesky factor.
pub(crate) fn cholesky_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// The inverse of an SPD matrix from its Cholesky factor.
pub(crate) fn cholesky_inverse(l: &[f64], n: usize) -> Square {
    let mut inv = Square::zeros(n);
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        for (i, v) in cholesky_solve(l, n, &e).into_iter().enumerate() {
            inv.a[i * n + j] = v;
        }
    }
    inv
}

/// Non-negative least squares on the normal equations (Lawson–Hanson active set):
/// minimise ‖Xβ − y‖² subject to β ≥ 0, given `ata` = XᵀX and `atb` = Xᵀy.
/// Returns β and the passive set (indices with β > 0).
pub(crate) fn nnls(ata: &Square, atb: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let p = ata.n;
    let mut x = vec![0.0; p];
    let mut passive: Vec<usize> = Vec::new();
    let scale = (0..p)
        .map(|i| ata.at(i, i))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let tol = 1e-10 * scale;
    let gradient = |x: &[f64]| -> Vec<f64> {
        (0..p)
            .map(|i| atb[i] - (0..p).map(|j| ata.at(i, j) * x[j]).sum::<f64>())
            .collect()
    };
    for _ in 0..3 * p + 3 {
        let w = gradient(&x);
        let candidate = (0..p)
            .filter(|j| {
                !passive.contains(j)
                    && w[*j] > tol * x.iter().map(|v| v.abs()).sum::<f64>().max(1.0)
            })
            .max_by(|&a, &b| w[a].total_cmp(&w[b]));
        let Some(j) = candidate else { break };
        passive.push(j);
        // Each pass of the inner loop drops at least one index (the one that blocked the
        // step), so it ends within |passive| passes.
        loop {
            let sub = ata.sub(&passive);
            let Some(l) = sub.cholesky() else {
                passive.retain(|&k| k != j);
                return (x, passive);
            };
            let b: Vec<f64> = passive.iter().map(|&i| atb[i]).collect();
            let z = cholesky_solve(&l, passive.len(), &b);
            if z.iter().all(|&v| v > 0.0) {
                for (k, &i) in passive.iter().enumerate() {
                    x[i] = z[k];
                }
                break;
            }
            // Step towards z until the first coefficient reaches zero; that one leaves the
            // passive set exactly, not by rounding (which could leave it at 1e-300 and loop).
            let mut alpha = 1.0f64;
            let mut blocking = None;
            for (k, &i) in passive.iter().enumerate() {
                if z[k] <= 0.0 {
                    // x[i] ≥ 0 ≥ z[k]: a step in [0, 1]; 0 where both are zero.
                    let gap = x[i] - z[k];
                    let a = if gap > 0.0 { x[i] / gap } else { 0.0 };
                    if blocking.is_none() || a < alpha {
                        alpha = a;
                        blocking = Some(i);
                    }
                }
            }
            for (k, &i) in passive.iter().enumerate() {
                x[i] += alpha * (z[k] - x[i]);
            }
            if let Some(b) = blocking {
                x[b] = 0.0;
            }
            passive.retain(|&i| x[i] > 0.0);
            for (i, v) in x.iter_mut().enumerate() {
                if !passive.contains(&i) {
                    *v = 0.0;
                }
            }
            if passive.is_empty() {
                break;
            }
        }
    }
    passive.sort_unstable();
    (x, passive)
}

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub(crate) fn t95(df: usize) -> f64 {
    const SMALL: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    match df {
        0 => f64::INFINITY,
        1..=10 => SMALL[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_equations(x: &[Vec<f64>], y: &[f64]) -> (Square, Vec<f64>) {
        let p = x[0].len();
        let mut ata = Square::zeros(p);
        let mut atb = vec![0.0; p];
        for (row, yi) in x.iter().zip(y) {
            for i in 0..p {
                atb[i] += row[i] * yi;
                for j in 0..p {
                    ata.a[i * p + j] += row[i] * row[j];
                }
            }
        }
        (ata, atb)
    }

    #[test]
    fn nnls_recovers_exact_positive_solution() {
        let x = vec![
            vec![1.0, 0.0, 2.0],
            vec![0.0, 1.0, 1.0],
            vec![1.0, 1.0, 0.0],
            vec![2.0, 0.5, 1.0],
        ];
        let beta = [3.0, 1.5, 0.25];
        let y: Vec<f64> = x
            .iter()
            .map(|r| r.iter().zip(&beta).map(|(a, b)| a * b).sum())
            .collect();
        let (ata, atb) = normal_equations(&x, &y);
        let (got, passive) = nnls(&ata, &atb);
        assert_eq!(passive, vec![0, 1, 2]);
        for (g, b) in got.iter().zip(beta) {
            assert!((g - b).abs() < 1e-9, "{got:?}");
        }
    }

    #[test]
    fn nnls_clamps_a_negative_coefficient_to_zero() {
        // Unconstrained least squares would make the second coefficient negative.
        let x = vec![vec![1.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        let y = vec![1.0, 2.0, -1.0];
        let (ata, atb) = normal_equations(&x, &y);
        let (got, passive) = nnls(&ata, &atb);
        assert_eq!(passive, vec![0]);
        assert_eq!(got[1], 0.0);
        assert!((got[0] - 1.5).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn cholesky_inverse_inverts() {
        let m = Square {
            n: 2,
            a: vec![4.0, 1.0, 1.0, 3.0],
        };
        let l = m.cholesky().unwrap();
        let inv = cholesky_inverse(&l, 2);
        let expect = [3.0 / 11.0, -1.0 / 11.0, -1.0 / 11.0, 4.0 / 11.0];
        for (g, e) in inv.a.iter().zip(expect) {
            assert!((g - e).abs() < 1e-12);
        }
        assert!(Square {
            n: 2,
            a: vec![1.0, 2.0, 2.0, 1.0]
        }
        .cholesky()
        .is_none());
    }

    #[test]
    fn t_quantile_decreases_towards_normal() {
        assert!(t95(1) > t95(5) && t95(5) > t95(30) && t95(30) > 1.96);
        assert!(t95(0).is_infinite());
    }

    /// Normal equations from a real H200 demo trace (25 signatures, f64 bits in hex) on which
    /// the active-set loop used to cycle forever: a blocked coefficient stepped to about zero
    /// but stayed positive by rounding, so it never left the passive set.
    const CYCLING_CASE: &str = include_str!("nnls_cycling_case.txt");

    #[test]
    fn nnls_ends_and_meets_the_optimality_conditions_where_rounding_used_to_make_it_cycle() {
        let mut lines = CYCLING_CASE.lines();
        let p: usize = lines.next().unwrap().parse().unwrap();
        let v: Vec<f64> = lines
            .map(|l| f64::from_bits(u64::from_str_radix(l, 16).unwrap()))
            .collect();
        assert_eq!(v.len(), p * p + p);
        let ata = Square {
            n: p,
            a: v[..p * p].to_vec(),
        };
        let atb = v[p * p..].to_vec();
        // In a thread, so that a regression fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (a, b) = (ata.clone(), atb.clone());
        std::thread::spawn(move || {
            let _ = tx.send(nnls(&a, &b));
        });
        let (x, passive) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("nnls did not finish within 60 s");
        assert!(!passive.is_empty());
        // Karush–Kuhn–Tucker: β ≥ 0; the gradient Xᵀy − XᵀXβ vanishes on the passive set and
        // is not positive off it (relative to the problem's scale).
        let scale = (0..p).map(|i| atb[i].abs()).fold(0.0, f64::max);
        for i in 0..p {
            let g = atb[i] - (0..p).map(|j| ata.at(i, j) * x[j]).sum::<f64>();
            assert!(x[i] >= 0.0, "β[{i}] = {}", x[i]);
            if passive.contains(&i) {
                assert!(x[i] > 0.0);
                assert!(g.abs() <= 1e-6 * scale, "gradient {g} at passive {i}");
            } else {
                assert_eq!(x[i], 0.0);
                assert!(g <= 1e-6 * scale, "gradient {g} at clamped {i}");
            }
        }
    }
}
