//! The CPU reference: the same model, recomputed from scratch over each whole prefix (no KV
//! cache), in f64, so it checks the GPU pipeline's caching as well as its arithmetic.

use super::{ModelConfig, Weights};
use crate::reference::{gelu, layernorm, matmul};

/// Logits for the last position of each sequence, computed over the whole sequence.
pub fn logits_cpu(cfg: &ModelConfig, w: &Weights, sequence: &[i32]) -> Vec<f64> {
    let (d, h, n) = (cfg.d_model, cfg.heads, sequence.len());
    let hd = cfg.head_dim();
    let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    let mut x: Vec<f64> = Vec::with_capacity(n * d);
    for (t, &id) in sequence.iter().enumerate() {
        for j in 0..d {
            x.push(f64::from(w.wte[id as usize * d + j]) + f64::from(w.wpe[t * d + j]));
        }
    }
    for l in &w.layers {
        let hn = layernorm(&f32s(&x), &l.ln1.0, &l.ln1.1, n, d, 1e-5);
        let qkv = matmul(&f32s(&hn), &l.w_qkv, n, 3 * d, d);
        let mut merged = vec![0.0f64; n * d];
        let scale = 1.0 / (hd as f64).sqrt();
        for head in 0..h {
            for i in 0..n {
                let q = |t: usize, x: usize| qkv[t * 3 * d + head * hd + x];
                let k = |t: usize, x: usize| qkv[t * 3 * d + d + head * hd + x];
                let v = |t: usize, x: usize| qkv[t * 3 * d + 2 * d + head * hd + x];
                let s: Vec<f64> = (0..=i)
                    .map(|j| (0..hd).map(|x| q(i, x) * k(j, x)).sum::<f64>() * scale)
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let total: f64 = e.iter().sum();
                for x in 0..hd {
                    merged[i * d + head * hd + x] =
                        (0..=i).map(|j| e[j] * v(j, x)).sum::<f64>() / total;
                }
            }
        }
        let a = matmul(&f32s(&merged), &l.w_o, n, d, d);
        for (xi, ai) in x.iter_mut().zip(&a) {
            *xi += ai;
        }
        let hn = layernorm(&f32s(&x), &l.ln2.0, &l.ln2.1, n, d, 1e-5);
        let f = matmul(&f32s(&hn), &l.w_fc, n, 4 * d, d);
        let g = gelu(&f32s(&f));
        let p = matmul(&f32s(&g), &l.w_proj, n, d, 4 * d);
        for (xi, pi) in x.iter_mut().zip(&p) {
            *xi += pi;
        }
    }
    let last = f32s(&x[(n - 1) * d..]);
    let hn = layernorm(&last, &w.ln_f.0, &w.ln_f.1, 1, d, 1e-5);
    matmul(&f32s(&hn), &w.w_lm, 1, cfg.vocab, d)
}

/// The reference logits of every (step, row) of a generation, teacher-forced on the tokens the
/// GPU chose, computed on all cores.
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    /// `[step][row]` logits.
    pub logits: Vec<Vec<Vec<f64>>>,
}

impl ReferenceRun {
    /// Recompute every step's logits: `prompts[row]` followed by the first `step` generated
    /// tokens `generated[row]`.
    pub fn compute(
        cfg: &ModelConfig,
        w: &Weights,
        prompts: &[Vec<i32>],
        generated: &[Vec<i32>],
        steps: usize,
    ) -> Self {
        let jobs: Vec<(usize, usize)> = (0..steps)
            .flat_map(|s| (0..prompts.len()).map(move |r| (s, r)))
            .collect();
        let mut out = vec![vec![Vec::new(); prompts.len()]; steps];
        let results: Vec<((usize, usize), Vec<f64>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|&(s, r)| {
                    scope.spawn(move || {
                        let mut seq = prompts[r].clone();
                        seq.extend(&generated[r][..s]);
                        ((s, r), logits_cpu(cfg, w, &seq))
                    })
                })
                .collect();
            // A reference that panicked must not pass as an empty (error-free) one.
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for ((s, r), l) in results {
            out[s][r] = l;
        }
        ReferenceRun { logits: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_causal_and_deterministic() {
        let cfg = ModelConfig::tiny();
        let w = Weights::random(&cfg);
        let a = logits_cpu(&cfg, &w, &[3, 14, 15, 9]);
        assert_eq!(
            a,
            logits_cpu(&cfg, &Weights::random(&cfg), &[3, 14, 15, 9]),
            "seeded weights"
        );
        assert_eq!(a.len(), cfg.vocab);
        // Changing an earlier token changes the last logits; the model reads its context.
        let b = logits_cpu(&cfg, &w, &[4, 14, 15, 9]);
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-9));
        // Teacher-forced steps equal direct calls.
        let run = ReferenceRun::compute(&cfg, &w, &[vec![3, 14]], &[vec![15, 9]], 3);
        assert_eq!(run.logits[2][0], a);
    }
}
