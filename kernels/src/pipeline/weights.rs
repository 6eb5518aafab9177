//! Seeded random weights (GPT-2's initialisation scale), generated on the host.

use super::ModelConfig;

/// One transformer block's weights; matrices row-major `[in][out]`.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Pre-attention LayerNorm gain and bias.
    pub ln1: (Vec<f32>, Vec<f32>),
    /// Q, K, V projection, `[d][3d]`.
    pub w_qkv: Vec<f32>,
    /// Attention output projection, `[d][d]`.
    pub w_o: Vec<f32>,
    /// Pre-MLP LayerNorm gain and bias.
    pub ln2: (Vec<f32>, Vec<f32>),
    /// MLP up projection, `[d][4d]`.
    pub w_fc: Vec<f32>,
    /// MLP down projection, `[4d][d]`.
    pub w_proj: Vec<f32>,
}

/// All weights of the model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embeddings, `[vocab][d]`.
    pub wte: Vec<f32>,
    /// Position embeddings, `[max_len][d]`.
    pub wpe: Vec<f32>,
    /// The blocks.
    pub layers: Vec<LayerWeights>,
    /// Final LayerNorm gain and bias.
    pub ln_f: (Vec<f32>, Vec<f32>),
    /// Output projection, `[d][vocab]`.
    pub w_lm: Vec<f32>,
}

/// A small, fast, seeded generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values uniform with GPT-2's standard deviation 0.02 (half-width 0.02·√3).
    fn matrix(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next() * 0.0346).collect()
    }

    fn around(&mut self, centre: f32, n: usize) -> Vec<f32> {
        (0..n).map(|_| centre + self.next() * 0.1).collect()
    }
}

impl Weights {
    /// Random weights for `cfg`, the same for the same seed.
    pub fn random(cfg: &ModelConfig) -> Self {
        let d = cfg.d_model;
        let mut rng = Rng(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let layers = (0..cfg.layers)
            .map(|_| LayerWeights {
                ln1: (rng.around(1.0, d), rng.around(0.0, d)),
                w_qkv: rng.matrix(d * 3 * d),
                w_o: rng.matrix(d * d),
                ln2: (rng.around(1.0, d), rng.around(0.0, d)),
                w_fc: rng.matrix(d * 4 * d),
                w_proj: rng.matrix(4 * d * d),
            })
            .collect();
        Weights {
            wte: rng.matrix(cfg.vocab * d),
            wpe: rng.matrix(cfg.max_len * d),
            layers,
            ln_f: (rng.around(1.0, d), rng.around(0.0, d)),
            w_lm: rng.matrix(d * cfg.vocab),
        }
    }
}
