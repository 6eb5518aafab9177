//! The demo inference pipeline: a decoder-only transformer (GPT-2-small shapes by default) with
//! seeded random weights, run as prefill then greedy decode with a KV cache over a padded
//! batch, every op a region; and a CPU reference of the same model.

mod cpu;
mod gpu;
mod weights;

pub use cpu::{logits_cpu, ReferenceRun};
pub use gpu::{Decoder, Generation, MatmulBackend, Waste};
pub use weights::{LayerWeights, Weights};

/// Shapes of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Attention heads (d_model a multiple of it; head dimension ≤ 128).
    pub heads: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Longest sequence (positions and KV-cache slots).
    pub max_len: usize,
    /// Seed of the random weights.
    pub seed: u64,
}

impl ModelConfig {
    /// GPT-2 small: 12 layers, d = 768, 12 heads, 50,257 tokens, 1,024 positions.
    pub fn gpt2_small() -> Self {
        ModelConfig {
            layers: 12,
            d_model: 768,
            heads: 12,
            vocab: 50_257,
            max_len: 1024,
            seed: 2026,
        }
    }

    /// A model small enough for CPU-only tests.
    pub fn tiny() -> Self {
        ModelConfig {
            layers: 2,
            d_model: 64,
            heads: 4,
            vocab: 97,
            max_len: 32,
            seed: 7,
        }
    }

    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }
}

/// Index of the largest logit (the greedy next token).
pub fn argmax(logits: &[f32]) -> i32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as i32
}
