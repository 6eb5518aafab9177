//! The pipeline on the GPU: prefill of a right-padded batch, then greedy decode with a KV cache.
//! Every op runs in a region (`prefill`/`decode` → `layerN` → `norm`, `attention`, `mlp`;
//! `embedding`, `lm_head`), so energy rolls up per op.

use std::sync::Arc;

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::CudaStream;
use wattlens_runtime::PaddingMask;
use wattlens_runtime::{CudaError, DeviceBuffer, Profiler};

use super::{argmax, ModelConfig, Weights};

use crate::ops::{
    CachedPositions, Embeddings, KvCache, KvCacheMut, LayerNormWeights, MatmulF32, On, Ops,
};

/// A layer's LayerNorm weights as the kernels take them, from its (gamma, beta) pair.
fn norm_weights((gamma, beta): &(DeviceBuffer<f32>, DeviceBuffer<f32>)) -> LayerNormWeights<'_> {
    LayerNormWeights { gamma, beta }
}

/// One block's weights on the device.
struct DeviceLayer {
    ln1: (DeviceBuffer<f32>, DeviceBuffer<f32>),
    w_qkv: DeviceBuffer<f32>,
    w_o: DeviceBuffer<f32>,
    ln2: (DeviceBuffer<f32>, DeviceBuffer<f32>),
    w_fc: DeviceBuffer<f32>,
    w_proj: DeviceBuffer<f32>,
    /// KV cache, `[batch][heads][max_len][head_dim]` each.
    k_cache: DeviceBuffer<f32>,
    v_cache: DeviceBuffer<f32>,
}

/// Activations for one phase: buffers for up to `rows` token rows. Every kernel is given the
/// row count of its pass, so a pass over fewer rows touches only those.
struct Activations {
    /// Token rows the buffers hold; a pass may use fewer.
    rows: usize,
    x: DeviceBuffer<f32>,
    x_alt: DeviceBuffer<f32>,
    h: DeviceBuffer<f32>,
    qkv: DeviceBuffer<f32>,
    q: DeviceBuffer<f32>,
    o: DeviceBuffer<f32>,
    merged: DeviceBuffer<f32>,
    a: DeviceBuffer<f32>,
    f: DeviceBuffer<f32>,
    g: DeviceBuffer<f32>,
    /// Token ids, per row.
    ids: DeviceBuffer<i32>,
    /// First position, valid cache length and last row, per batch row.
    pos0: DeviceBuffer<i32>,
    klen: DeviceBuffer<i32>,
    last: DeviceBuffer<i32>,
    /// What `last` holds, so an unchanged value is not uploaded again (every decode step
    /// gathers rows 0..b; the waste detector flagged the repeated upload).
    last_host: Option<Vec<i32>>,
    /// Final hidden state and logits of each batch row's last token.
    hn: DeviceBuffer<f32>,
    logits: DeviceBuffer<f32>,
}

impl Activations {
    /// Buffers for `rows` token rows of a batch of `batch`; allocated once per phase, so a
    /// decode step only uploads its ids and positions.
    fn new(
        prof: &Profiler,
        s: &Arc<CudaStream>,
        (rows, batch): (usize, usize),
        cfg: &ModelConfig,
    ) -> Result<Self, CudaError> {
        let d = cfg.d_model;
        let z = |n: usize| prof.alloc_zeros::<f32>(s, n);
        let zi = |n: usize| prof.alloc_zeros::<i32>(s, n);
        Ok(Activations {
            ids: zi(rows)?,
            pos0: zi(batch)?,
            klen: zi(batch)?,
            last: zi(batch)?,
            last_host: None,
            hn: z(batch * d)?,
            logits: z(batch * cfg.vocab)?,
            rows,
            x: z(rows * d)?,
            x_alt: z(rows * d)?,
            h: z(rows * d)?,
            qkv: z(rows * 3 * d)?,
            q: z(rows * d)?,
            o: z(rows * d)?,
            merged: z(rows * d)?,
            a: z(rows * d)?,
            f: z(rows * 4 * d)?,
            g: z(rows * 4 * d)?,
        })
    }
}

/// Planted waste: each switch adds one kind of waste the waste detector should find.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waste {
    /// Recompute every earlier token at each decode step instead of using the KV cache.
    pub no_kv_cache: bool,
    /// Upload every weight again before each decode step.
    pub reupload_weights: bool,
    /// Run an extra up-projection per layer whose output is overwritten unread.
    pub dead_kernel: bool,
    /// Extra runs of the pre-MLP LayerNorm on the same input, per layer and pass (0: none).
    pub duplicate_layernorm: u32,
    /// Synchronise the host with the GPU after every kernel.
    pub sync_every_kernel: bool,
    /// Pad the prefill to this many tokens (a fixed bucket) instead of the longest prompt; 0
    /// pads to the longest. The prompts and their results stay the same.
    pub pad_prefill_to: usize,
}

/// Which code runs the pipeline's matmuls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MatmulBackend {
    /// wattlens' own kernels (register-tiled for prefill, 32×32 tiles for decode).
    #[default]
    Own,
    /// cuBLAS `sgemm` (fp32), recorded through [`Profiler::library`]; needs CUPTI timing.
    Cublas,
}

/// The pipeline's fp32 matmul, on either backend.
struct Matmul<'a> {
    ops: &'a Ops,
    blas: Option<&'a CudaBlas>,
}

impl Matmul<'_> {
    /// C (m×n) = A (m×k) · B (k×n), row-major, with `kind` choosing our own kernel.
    #[track_caller]
    fn run(
        &self,
        on: On<'_>,
        kind: MatmulF32,
        a: &DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
        c: &mut DeviceBuffer<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let Some(blas) = self.blas else {
            return self.ops.matmul_f32(on, kind, a, b, c, (m, n, k));
        };
        if a.len() < m * k || b.len() < k * n || c.len() < m * n {
            return Err(usage(format!(
                "cuBLAS sgemm of {m}×{k} by {k}×{n} got buffers of {}, {} and {} elements",
                a.len(),
                b.len(),
                c.len()
            )));
        }
        let dim = |v: usize| i32::try_from(v).map_err(|_| usage(format!("{v} exceeds i32")));
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B first, leading dimensions n, k, n.
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: dim(n)?,
            n: dim(m)?,
            k: dim(k)?,
            alpha: 1.0f32,
            lda: dim(n)?,
            ldb: dim(k)?,
            beta: 0.0f32,
            ldc: dim(n)?,
        };
        let touched = ([a.id(), b.id()], [c.id()]);
        on.prof
            .library(on.stream, "cublas_sgemm", (&touched.0, &touched.1), || {
                // SAFETY: the buffers hold k·n, m·k and m·n elements (checked above), as the
                // column-major config reads and writes them.
                unsafe { blas.gemm(cfg, b.slice(), a.slice(), c.slice_mut()) }
            })?
            .map_err(|e| CudaError::Unavailable(format!("cuBLAS sgemm failed: {e:?}")))
    }
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated tokens per row.
    pub tokens: Vec<Vec<i32>>,
    /// Logits per step and row (step 0 from the prefill).
    pub logits: Vec<Vec<Vec<f32>>>,
}

/// The model on one GPU, ready to generate for batches of up to `batch` rows.
pub struct Decoder<'p> {
    prof: &'p Profiler,
    stream: Arc<CudaStream>,
    ops: Ops,
    cfg: ModelConfig,
    batch: usize,
    wte: DeviceBuffer<f32>,
    wpe: DeviceBuffer<f32>,
    layers: Vec<DeviceLayer>,
    ln_f: (DeviceBuffer<f32>, DeviceBuffer<f32>),
    w_lm: DeviceBuffer<f32>,
    waste: Waste,
    host_weights: Arc<Weights>,
    blas: Option<CudaBlas>,
    /// The matmul kernel of passes under 128 rows (decode steps with a cache).
    decode_matmul: MatmulF32,
}

fn usage(problem: String) -> CudaError {
    CudaError::Arguments {
        kernel: "pipeline".into(),
        site: "wattlens_kernels::pipeline".into(),
        problem,
    }
}

impl<'p> Decoder<'p> {
    /// Upload `weights` (for `cfg`) to device 0 of `prof`, with KV caches for `batch` rows.
    ///
    /// # Errors
    /// [`CudaError`] when an allocation or copy fails, or the head dimension exceeds 128.
    pub fn new(
        prof: &'p Profiler,
        cfg: ModelConfig,
        weights: Arc<Weights>,
        batch: usize,
    ) -> Result<Self, CudaError> {
        if cfg.head_dim() > crate::ops::MAX_HEAD_DIM
            || cfg.head_dim() % 32 != 0
            || cfg.d_model % cfg.heads != 0
        {
            return Err(usage(format!(
                "d_model {} and {} heads give an unsupported head dimension",
                cfg.d_model, cfg.heads
            )));
        }
        let stream = prof.context(0)?.default_stream();
        let ops = Ops::load(prof, 0)?;
        let _r = prof.region("load_weights");
        let up = |v: &[f32]| prof.upload(&stream, v);
        let cache = batch * cfg.max_len * cfg.d_model;
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in &weights.layers {
            layers.push(DeviceLayer {
                ln1: (up(&l.ln1.0)?, up(&l.ln1.1)?),
                w_qkv: up(&l.w_qkv)?,
                w_o: up(&l.w_o)?,
                ln2: (up(&l.ln2.0)?, up(&l.ln2.1)?),
                w_fc: up(&l.w_fc)?,
                w_proj: up(&l.w_proj)?,
                k_cache: prof.alloc_zeros::<f32>(&stream, cache)?,
                v_cache: prof.alloc_zeros::<f32>(&stream, cache)?,
            });
        }
        Ok(Decoder {
            wte: up(&weights.wte)?,
            wpe: up(&weights.wpe)?,
            ln_f: (up(&weights.ln_f.0)?, up(&weights.ln_f.1)?),
            w_lm: up(&weights.w_lm)?,
            layers,
            prof,
            stream,
            ops,
            cfg,
            batch,
            waste: Waste::default(),
            host_weights: weights,
            blas: None,
            decode_matmul: MatmulF32::Tiled,
        })
    }

    /// Run the matmuls of the next generations on `backend`.
    ///
    /// # Errors
    /// [`CudaError::Unavailable`] when cuBLAS cannot be loaded or initialised.
    pub fn set_matmul_backend(&mut self, backend: MatmulBackend) -> Result<(), CudaError> {
        self.blas = match backend {
            MatmulBackend::Own => None,
            MatmulBackend::Cublas => {
                // SAFETY: only probes for the library by name; cudarc panics on first use
                // otherwise.
                if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                    return Err(CudaError::Unavailable(
                        "libcublas.so is not on the library path; it ships with the CUDA toolkit (targets/x86_64-linux/lib)".into(),
                    ));
                }
                Some(CudaBlas::new(self.stream.clone()).map_err(|e| {
                    CudaError::Unavailable(format!(
                        "cuBLAS could not start ({e:?}); libcublas ships with the CUDA toolkit"
                    ))
                })?)
            }
        };
        Ok(())
    }

    /// Plant waste in the next generations.
    pub fn set_waste(&mut self, waste: Waste) {
        self.waste = waste;
    }

    /// Run passes of fewer than 128 rows (cached decode steps) with `kind` instead of the
    /// 32×32 tiles: with [`MatmulF32::Register`], every pass uses the same matmul kernel, so a
    /// cached run differs from one without a cache by its rows alone.
    pub fn set_decode_matmul(&mut self, kind: MatmulF32) {
        self.decode_matmul = kind;
    }

    /// Upload every weight again (the `reupload_weights` waste).
    fn reupload(&mut self) -> Result<(), CudaError> {
        let _r = self.prof.region("load_weights");
        let weights = self.host_weights.clone();
        let (prof, s) = (self.prof, &self.stream);
        for (l, w) in self.layers.iter_mut().zip(&weights.layers) {
            for (dst, src) in [
                (&mut l.ln1.0, &w.ln1.0),
                (&mut l.ln1.1, &w.ln1.1),
                (&mut l.w_qkv, &w.w_qkv),
                (&mut l.w_o, &w.w_o),
                (&mut l.ln2.0, &w.ln2.0),
                (&mut l.ln2.1, &w.ln2.1),
                (&mut l.w_fc, &w.w_fc),
                (&mut l.w_proj, &w.w_proj),
            ] {
                prof.htod(s, src, dst)?;
            }
        }
        prof.htod(s, &weights.wte, &mut self.wte)?;
        prof.htod(s, &weights.wpe, &mut self.wpe)?;
        prof.htod(s, &weights.w_lm, &mut self.w_lm)?;
        Ok(())
    }

    /// One forward pass over `batch·t` token rows (the first rows of `act`) at positions
    /// `pos0[b] + t`, with `klen[b]` valid cache entries after it; returns the logits of rows
    /// `last[b]`.
    fn forward(
        &mut self,
        act: &mut Activations,
        ids: &[i32],
        pos0: &[i32],
        klen: &[i32],
        last: &[i32],
        t: usize,
    ) -> Result<Vec<Vec<f32>>, CudaError> {
        let (prof, ops) = (self.prof, &self.ops);
        let mm_run = Matmul {
            ops,
            blas: self.blas.as_ref(),
        };
        let s = &self.stream.clone();
        let on = On { prof, stream: s };
        let cfg = self.cfg;
        let waste = self.waste;
        let (b, d) = (pos0.len(), cfg.d_model);
        let rows = b * t;
        if rows > act.rows {
            return Err(usage(format!(
                "{rows} token rows exceed the {} the activations hold",
                act.rows
            )));
        }
        // Register tiles pay off once there are enough rows to fill them (prefill); decode
        // steps use the small tiles.
        let mm = if rows >= 128 {
            MatmulF32::Register
        } else {
            self.decode_matmul
        };
        let shape_bht = (b, cfg.heads, t, cfg.head_dim());
        prof.htod(s, ids, &mut act.ids)?;
        prof.htod(s, pos0, &mut act.pos0)?;
        prof.htod(s, klen, &mut act.klen)?;
        if act.last_host.as_deref() != Some(last) {
            prof.htod(s, last, &mut act.last)?;
            act.last_host = Some(last.to_vec());
        }
        // A multi-token pass runs over right-padded rows: declare them, so each kernel over
        // them records its padding share (the lm_head below gathers only real rows).
        prof.set_padding((t > 1).then(|| {
            PaddingMask {
                lens: klen
                    .iter()
                    .map(|&l| u64::try_from(l).unwrap_or(0))
                    .collect(),
                padded_len: t as u64,
                tokens: ids
                    .chunks(t)
                    .zip(klen)
                    .map(|(row, &len)| {
                        row.iter()
                            .take(usize::try_from(len).unwrap_or(0))
                            .map(|&id| u32::try_from(id).unwrap_or(u32::MAX))
                            .collect()
                    })
                    .collect(),
                causal: true,
            }
        }));
        let sync = || -> Result<(), CudaError> {
            if waste.sync_every_kernel {
                prof.synchronize(s)?;
            }
            Ok(())
        };
        {
            let _r = prof.region("embedding");
            let tables = Embeddings {
                tokens: &self.wte,
                positions: &self.wpe,
            };
            ops.embed_tokens(on, &act.ids, &act.pos0, tables, &mut act.x, (b, t, d))?;
            sync()?;
        }
        for (i, l) in self.layers.iter_mut().enumerate() {
            let _layer = prof.region(&format!("layer{i}"));
            {
                let _r = prof.region("norm");
                ops.layernorm(on, &act.x, norm_weights(&l.ln1), &mut act.h, rows, d)?;
                sync()?;
            }
            {
                let _r = prof.region("attention");
                mm_run.run(on, mm, &act.h, &l.w_qkv, &mut act.qkv, (rows, 3 * d, d))?;
                sync()?;
                let cache = KvCacheMut {
                    k: &mut l.k_cache,
                    v: &mut l.v_cache,
                    max_len: cfg.max_len,
                };
                ops.split_heads(on, &act.qkv, &mut act.q, cache, &act.pos0, shape_bht)?;
                sync()?;
                let cache = KvCache {
                    k: &l.k_cache,
                    v: &l.v_cache,
                    max_len: cfg.max_len,
                };
                let positions = CachedPositions {
                    query_start: &act.pos0,
                    key_len: &act.klen,
                };
                ops.attention_cached(on, &act.q, cache, &mut act.o, positions, shape_bht)?;
                sync()?;
                ops.merge_heads(on, &act.o, &mut act.merged, shape_bht)?;
                sync()?;
                mm_run.run(on, mm, &act.merged, &l.w_o, &mut act.a, (rows, d, d))?;
                sync()?;
                ops.residual_add(on, &act.x, &act.a, &mut act.x_alt, rows * d)?;
                sync()?;
                std::mem::swap(&mut act.x, &mut act.x_alt);
            }
            {
                let _r = prof.region("norm");
                ops.layernorm(on, &act.x, norm_weights(&l.ln2), &mut act.h, rows, d)?;
                sync()?;
                for _ in 0..waste.duplicate_layernorm {
                    ops.layernorm(on, &act.x, norm_weights(&l.ln2), &mut act.h, rows, d)?;
                    sync()?;
                }
            }
            {
                let _r = prof.region("mlp");
                if waste.dead_kernel {
                    // Written, then overwritten by the real up-projection before any read.
                    mm_run.run(on, mm, &act.x, &l.w_fc, &mut act.f, (rows, 4 * d, d))?;
                    sync()?;
                }
                mm_run.run(on, mm, &act.h, &l.w_fc, &mut act.f, (rows, 4 * d, d))?;
                sync()?;
                ops.gelu(on, &act.f, &mut act.g, rows * 4 * d)?;
                sync()?;
                mm_run.run(on, mm, &act.g, &l.w_proj, &mut act.a, (rows, d, 4 * d))?;
                sync()?;
                ops.residual_add(on, &act.x, &act.a, &mut act.x_alt, rows * d)?;
                sync()?;
                std::mem::swap(&mut act.x, &mut act.x_alt);
            }
        }
        {
            let _r = prof.region("norm");
            ops.layernorm(on, &act.x, norm_weights(&self.ln_f), &mut act.h, rows, d)?;
            sync()?;
        }
        prof.set_padding(None);
        {
            let _r = prof.region("lm_head");
            ops.embedding(on, &act.last, &act.h, &mut act.hn, d)?;
            sync()?;
            mm_run.run(
                on,
                MatmulF32::Tiled,
                &act.hn,
                &self.w_lm,
                &mut act.logits,
                (b, cfg.vocab, d),
            )?;
            sync()?;
        }
        let mut host = vec![0f32; b * cfg.vocab];
        prof.dtoh(s, &act.logits, &mut host)?;
        Ok(host.chunks(cfg.vocab).map(<[f32]>::to_vec).collect())
    }

    /// Prefill `prompts` (right-padded to the longest, or to the planted bucket), then decode
    /// `steps − 1` more tokens greedily; returns the `steps` chosen tokens and their logits per
    /// row.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] for an empty or oversized batch, an empty prompt, a token out of
    /// the vocabulary or a sequence longer than `max_len`; any CUDA error.
    pub fn generate(
        &mut self,
        prompts: &[Vec<i32>],
        steps: usize,
    ) -> Result<Generation, CudaError> {
        let b = prompts.len();
        let t = prompts
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(self.waste.pad_prefill_to);
        if steps == 0 {
            return Err(usage("at least one step is needed".into()));
        }
        if b == 0 || b > self.batch || prompts.iter().any(Vec::is_empty) {
            return Err(usage(format!(
                "a batch of 1..={} non-empty prompts is needed, got {b}",
                self.batch
            )));
        }
        if t + steps > self.cfg.max_len {
            return Err(usage(format!(
                "{t} prompt tokens + {steps} steps exceed max_len {}",
                self.cfg.max_len
            )));
        }
        if prompts
            .iter()
            .flatten()
            .any(|&id| id < 0 || id as usize >= self.cfg.vocab)
        {
            return Err(usage(format!(
                "a token is outside the vocabulary of {}",
                self.cfg.vocab
            )));
        }
        let mut lens: Vec<i32> = prompts.iter().map(|p| p.len() as i32).collect();
        let mut out = Generation {
            tokens: vec![Vec::new(); b],
            logits: Vec::new(),
        };
        let mut next: Vec<i32>;
        {
            let _r = self.prof.region("prefill");
            let mut ids = vec![0i32; b * t];
            for (r, p) in prompts.iter().enumerate() {
                ids[r * t..r * t + p.len()].copy_from_slice(p);
            }
            let last: Vec<i32> = (0..b).map(|r| (r * t) as i32 + lens[r] - 1).collect();
            let mut act = Activations::new(self.prof, &self.stream, (b * t, b), &self.cfg)?;
            let logits = self.forward(&mut act, &ids, &vec![0; b], &lens, &last, t)?;
            next = logits.iter().map(|l| argmax(l)).collect();
            out.logits.push(logits);
        }
        let mut act = Activations::new(self.prof, &self.stream, (b, b), &self.cfg)?;
        // Without the cache every step reruns the whole sequence: its activations are
        // allocated once, for the longest one, so that the planted waste is the recomputation
        // alone (no allocations or fills per step).
        let mut full = if self.waste.no_kv_cache {
            Some(Activations::new(
                self.prof,
                &self.stream,
                (b * (t + steps), b),
                &self.cfg,
            )?)
        } else {
            None
        };
        for _ in 1..steps {
            for (r, tok) in next.iter().enumerate() {
                out.tokens[r].push(*tok);
            }
            let _r = self.prof.region("decode");
            if self.waste.reupload_weights {
                self.reupload()?;
            }
            let klen: Vec<i32> = lens.iter().map(|l| l + 1).collect();
            let logits = if let Some(full) = full.as_mut() {
                // Recompute the whole sequence, prompt and generated tokens, every step.
                let t_now = klen.iter().copied().max().unwrap_or(1) as usize;
                let mut ids = vec![0i32; b * t_now];
                for (r, p) in prompts.iter().enumerate() {
                    let row = &mut ids[r * t_now..(r + 1) * t_now];
                    row[..p.len()].copy_from_slice(p);
                    row[p.len()..p.len() + out.tokens[r].len()].copy_from_slice(&out.tokens[r]);
                }
                let last: Vec<i32> = (0..b).map(|r| (r * t_now) as i32 + klen[r] - 1).collect();
                self.forward(full, &ids, &vec![0; b], &klen, &last, t_now)?
            } else {
                let last: Vec<i32> = (0..b as i32).collect();
                self.forward(&mut act, &next, &lens, &klen, &last, 1)?
            };
            next = logits.iter().map(|l| argmax(l)).collect();
            out.logits.push(logits);
            lens = klen;
        }
        for (r, tok) in next.iter().enumerate() {
            out.tokens[r].push(*tok);
        }
        Ok(out)
    }
}
