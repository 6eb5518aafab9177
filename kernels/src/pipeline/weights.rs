//! Seeded random weights (GPT-2's initialisation scale), generated on the host.

use wattlens_instrument::sim::SimRng;

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

/// Values for a weight matrix: uniform with GPT-2's standard deviation 0.02 (half-width
/// 0.02·√3).
fn matrix(rng: &mut SimRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.uniform(-0.0346, 0.0346) as f32)
        .collect()
}

/// Values within ±0.1 of `centre` (LayerNorm gains and biases).
fn around(rng: &mut SimRng, centre: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| centre + rng.uniform(-0.1, 0.1) as f32)
        .collect()
}

impl Weights {
    /// Random weights for `cfg`, the same for the same seed.
    pub fn random(cfg: &ModelConfig) -> Self {
        let d = cfg.d_model;
        let rng = &mut SimRng::new(cfg.seed);
        let layers = (0..cfg.layers)
            .map(|_| LayerWeights {
                ln1: (around(rng, 1.0, d), around(rng, 0.0, d)),
                w_qkv: matrix(rng, d * 3 * d),
                w_o: matrix(rng, d * d),
                ln2: (around(rng, 1.0, d), around(rng, 0.0, d)),
                w_fc: matrix(rng, d * 4 * d),
                w_proj: matrix(rng, 4 * d * d),
            })
            .collect();
        Weights {
            wte: matrix(rng, cfg.vocab * d),
            wpe: matrix(rng, cfg.max_len * d),
            layers,
            ln_f: (around(rng, 1.0, d), around(rng, 0.0, d)),
            w_lm: matrix(rng, d * cfg.vocab),
        }
    }
}
