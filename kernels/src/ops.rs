//! The operator kernels (`cuda/ops.cu`) with typed launchers that check every buffer's length
//! before anything is launched, so a wrong shape is an `Err`, never an out-of-bounds kernel.

use std::sync::Arc;

use cudarc::driver::{CudaStream, LaunchConfig};
use wattlens_runtime::{CudaError, DeviceBuffer, Kernel, ProfiledArg, Profiler};

/// PTX of `cuda/ops.cu` for sm_90 (clang-19 → wattlens pass → llc-19).
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/ops.ptx"));
/// The same kernels for sm_80 (A100 and later), PTX 8.0.
pub const PTX_SM80: &str = include_str!(concat!(env!("OUT_DIR"), "/ops_sm80.ptx"));

/// Largest head dimension `attn_fused` supports.
pub const MAX_HEAD_DIM: usize = 128;

/// The operator kernels of one device, loaded once.
pub struct Ops {
    matmul_f32_naive: Kernel,
    matmul_f32_tiled: Kernel,
    matmul_f32_reg: Kernel,
    matmul_bf16_mma: Kernel,
    matmul_bf16_tc: Kernel,
    matmul_int8_dp4a: Kernel,
    attn_scores: Kernel,
    softmax_rows: Kernel,
    attn_pv: Kernel,
    attn_fused: Kernel,
    layernorm: Kernel,
    rmsnorm: Kernel,
    gelu: Kernel,
    silu: Kernel,
    residual_add: Kernel,
    embedding_gather: Kernel,
    kv_append: Kernel,
    transpose: Kernel,
    embed_tokens: Kernel,
    split_heads: Kernel,
    merge_heads: Kernel,
    attn_cached: Kernel,
}

/// Where a launch goes: the profiling session that records it and the stream it runs on.
#[derive(Clone, Copy)]
pub struct On<'a> {
    /// The session.
    pub prof: &'a Profiler,
    /// The stream.
    pub stream: &'a Arc<CudaStream>,
}

/// An int8 matrix for [`Ops::matmul_int8`]: its values packed four per i32 and one fp32 scale
/// per row.
#[derive(Clone, Copy)]
pub struct Int8Matrix<'a> {
    /// The values, packed four per i32 (see [`crate::reference::pack_int8`]).
    pub packed: &'a DeviceBuffer<i32>,
    /// One scale per row.
    pub scales: &'a DeviceBuffer<f32>,
}

/// The inputs of an attention call over `[b][h][l][d]` tensors: queries, keys, values, and
/// each batch row's valid length.
#[derive(Clone, Copy)]
pub struct AttnInputs<'a> {
    /// Queries.
    pub q: &'a DeviceBuffer<f32>,
    /// Keys.
    pub k: &'a DeviceBuffer<f32>,
    /// Values.
    pub v: &'a DeviceBuffer<f32>,
    /// Valid length of each batch row.
    pub lens: &'a DeviceBuffer<i32>,
}

/// A LayerNorm's weights: scale and shift, one per column.
#[derive(Clone, Copy)]
pub struct LayerNormWeights<'a> {
    /// Scale.
    pub gamma: &'a DeviceBuffer<f32>,
    /// Shift.
    pub beta: &'a DeviceBuffer<f32>,
}

/// The embedding tables: one row per token id, and one per position.
#[derive(Clone, Copy)]
pub struct Embeddings<'a> {
    /// Token embeddings (`wte`).
    pub tokens: &'a DeviceBuffer<f32>,
    /// Position embeddings (`wpe`).
    pub positions: &'a DeviceBuffer<f32>,
}

/// A KV cache laid out `[b][h][max_len][hd]`, being written.
pub struct KvCacheMut<'a> {
    /// Keys.
    pub k: &'a mut DeviceBuffer<f32>,
    /// Values.
    pub v: &'a mut DeviceBuffer<f32>,
    /// Positions per row.
    pub max_len: usize,
}

/// A KV cache laid out `[b][h][max_len][hd]`, being read.
#[derive(Clone, Copy)]
pub struct KvCache<'a> {
    /// Keys.
    pub k: &'a DeviceBuffer<f32>,
    /// Values.
    pub v: &'a DeviceBuffer<f32>,
    /// Positions per row.
    pub max_len: usize,
}

/// Where cached attention's queries sit: each batch row's first query position, and its number
/// of valid keys.
#[derive(Clone, Copy)]
pub struct CachedPositions<'a> {
    /// First query position of each batch row.
    pub query_start: &'a DeviceBuffer<i32>,
    /// Valid keys of each batch row.
    pub key_len: &'a DeviceBuffer<i32>,
}

/// `(batch, heads, tokens, head_dim)` of the decoder plumbing.
pub type HeadShape = (usize, usize, usize, usize);

/// Which fp32 matmul kernel to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulF32 {
    /// One thread per output, no reuse.
    Naive,
    /// 32×32 shared-memory tiles (good for few rows: decode).
    Tiled,
    /// 128×128 block tiles with 8×8 register tiles per thread (good for many rows).
    Register,
}

/// The shape of an attention call over `[b][h][l][d]` tensors.
pub use crate::reference::AttnShape;

fn check<T>(
    kernel: &str,
    what: &str,
    buf: &DeviceBuffer<T>,
    needed: usize,
) -> Result<(), CudaError> {
    if buf.len() >= needed {
        return Ok(());
    }
    Err(CudaError::Arguments {
        kernel: kernel.to_owned(),
        site: "wattlens_kernels::ops".to_owned(),
        problem: format!(
            "{what} holds {} elements but the shape needs {needed}",
            buf.len()
        ),
    })
}

fn shape_error(kernel: &str, problem: String) -> CudaError {
    CudaError::Arguments {
        kernel: kernel.to_owned(),
        site: "wattlens_kernels::ops".to_owned(),
        problem,
    }
}

/// A launch of `grid` blocks of `block` threads (x, y), no dynamic shared memory.
fn grid(grid: (u32, u32), block: (u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (block.0, block.1, 1),
        shared_mem_bytes: 0,
    }
}

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per).clamp(1, 1 << 20) as u32
}

fn i32_of(kernel: &str, what: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| shape_error(kernel, format!("{what} = {v} exceeds i32")))
}

impl Ops {
    /// Load the kernels on `device` of `prof`.
    ///
    /// # Errors
    /// [`CudaError`] when the PTX does not load or a kernel is missing.
    pub fn load(prof: &Profiler, device: usize) -> Result<Self, CudaError> {
        Self::load_from(prof, device, PTX)
    }

    /// Load the kernels from `ptx` (this module's [`PTX`] or [`PTX_SM80`]).
    ///
    /// # Errors
    /// [`CudaError`] when the PTX does not load or a kernel is missing.
    pub fn load_from(prof: &Profiler, device: usize, ptx: &str) -> Result<Self, CudaError> {
        let m = prof.load_ptx(device, ptx)?;
        let k = |name: &str| prof.kernel(&m, name);
        Ok(Ops {
            matmul_f32_naive: k("matmul_f32_naive")?,
            matmul_f32_tiled: k("matmul_f32_tiled")?,
            matmul_f32_reg: k("matmul_f32_reg")?,
            matmul_bf16_mma: k("matmul_bf16_mma")?,
            matmul_bf16_tc: k("matmul_bf16_tc")?,
            matmul_int8_dp4a: k("matmul_int8_dp4a")?,
            attn_scores: k("attn_scores")?,
            softmax_rows: k("softmax_rows")?,
            attn_pv: k("attn_pv")?,
            attn_fused: k("attn_fused")?,
            layernorm: k("layernorm")?,
            rmsnorm: k("rmsnorm")?,
            gelu: k("gelu")?,
            silu: k("silu")?,
            residual_add: k("residual_add")?,
            embedding_gather: k("embedding_gather")?,
            kv_append: k("kv_append")?,
            transpose: k("transpose")?,
            embed_tokens: k("embed_tokens")?,
            split_heads: k("split_heads")?,
            merge_heads: k("merge_heads")?,
            attn_cached: k("attn_cached")?,
        })
    }

    /// C (m×n) = A (m×k) · B (k×n), row-major fp32.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small for the shape; launch errors.
    pub fn matmul_f32(
        &self,
        on: On<'_>,
        kind: MatmulF32,
        a: &DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
        c: &mut DeviceBuffer<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let (kernel, cfg) = match kind {
            MatmulF32::Naive => (
                &self.matmul_f32_naive,
                grid((blocks(n, 16), blocks(m, 16)), (16, 16)),
            ),
            MatmulF32::Tiled => (
                &self.matmul_f32_tiled,
                grid((blocks(n, 32), blocks(m, 32)), (32, 8)),
            ),
            MatmulF32::Register => (
                &self.matmul_f32_reg,
                grid((blocks(n, 128), blocks(m, 128)), (256, 1)),
            ),
        };
        let name = kernel.name().to_owned();
        check(&name, "A", a, m * k)?;
        check(&name, "B", b, k * n)?;
        check(&name, "C", c, m * n)?;
        let (mi, ni, ki) = (
            i32_of(&name, "m", m)?,
            i32_of(&name, "n", n)?,
            i32_of(&name, "k", k)?,
        );
        // SAFETY: the buffers hold m·k, k·n and m·n elements (checked above), and the kernel's
        // signature is (const float*, const float*, float*, int, int, int).
        unsafe {
            on.prof
                .launch(on.stream, kernel)
                .arg(a)
                .arg(b)
                .arg(c)
                .arg(&mi)
                .arg(&ni)
                .arg(&ki)
                .launch(cfg)
        }
    }

    /// C (m×n, fp32) = A (m×k, bf16 bits) · B on tensor cores, with B given transposed as Bt
    /// (n×k, bf16 bits). m a multiple of 16, n of 8, k of 16.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] for a shape that is not a multiple of the tile or a buffer too small.
    pub fn matmul_bf16(
        &self,
        on: On<'_>,
        a: &DeviceBuffer<u16>,
        bt: &DeviceBuffer<u16>,
        c: &mut DeviceBuffer<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let name = "matmul_bf16_mma";
        if m % 16 != 0 || n % 8 != 0 || k % 16 != 0 {
            return Err(shape_error(
                name,
                format!("m={m}, n={n}, k={k} must be multiples of 16, 8 and 16"),
            ));
        }
        check(name, "A", a, m * k)?;
        check(name, "Bt", bt, n * k)?;
        check(name, "C", c, m * n)?;
        // Shapes that fill 128×128×32 block tiles take the shared-memory kernel.
        let staged = m % 128 == 0 && n % 128 == 0 && k % 32 == 0;
        let (kernel, cfg) = if staged {
            (
                &self.matmul_bf16_tc,
                grid(((n / 128) as u32, (m / 128) as u32), (128, 1)),
            )
        } else {
            let tiles = (m / 16) * (n / 8);
            (&self.matmul_bf16_mma, grid((blocks(tiles, 4), 1), (128, 1)))
        };
        let (mi, ni, ki) = (
            i32_of(name, "m", m)?,
            i32_of(name, "n", n)?,
            i32_of(name, "k", k)?,
        );
        // SAFETY: shapes are tile multiples of the chosen kernel and the buffers hold m·k,
        // n·k and m·n elements.
        unsafe {
            on.prof
                .launch(on.stream, kernel)
                .arg(a)
                .arg(bt)
                .arg(c)
                .arg(&mi)
                .arg(&ni)
                .arg(&ki)
                .launch(cfg)
        }
    }

    /// C (m×n) = diag(sa)·(A·B)·diag(sb) in int8: A (m×k, scales sa) and Bt (n×k, scales sb)
    /// packed four per i32 (see [`crate::reference::pack_int8`]); k a multiple of 4.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] for k not a multiple of 4 or a buffer too small.
    pub fn matmul_int8(
        &self,
        on: On<'_>,
        a: Int8Matrix<'_>,
        bt: Int8Matrix<'_>,
        c: &mut DeviceBuffer<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let name = "matmul_int8_dp4a";
        let (a4, sa, bt4, sb) = (a.packed, a.scales, bt.packed, bt.scales);
        if k % 4 != 0 {
            return Err(shape_error(name, format!("k={k} must be a multiple of 4")));
        }
        let k4 = k / 4;
        check(name, "A", a4, m * k4)?;
        check(name, "Bt", bt4, n * k4)?;
        check(name, "sa", sa, m)?;
        check(name, "sb", sb, n)?;
        check(name, "C", c, m * n)?;
        let cfg = grid((blocks(n, 16), blocks(m, 16)), (16, 16));
        let (mi, ni, ki) = (
            i32_of(name, "m", m)?,
            i32_of(name, "n", n)?,
            i32_of(name, "k4", k4)?,
        );
        // SAFETY: the buffers hold the elements the shape needs (checked above).
        unsafe {
            on.prof
                .launch(on.stream, &self.matmul_int8_dp4a)
                .arg(a4)
                .arg(bt4)
                .arg(sa)
                .arg(sb)
                .arg(c)
                .arg(&mi)
                .arg(&ni)
                .arg(&ki)
                .launch(cfg)
        }
    }

    fn attn_check(
        &self,
        name: &str,
        s: AttnShape,
        bufs: &[(&str, usize)],
        lens: &DeviceBuffer<i32>,
    ) -> Result<(i32, i32, i32, i32, i32), CudaError> {
        let n = s.b * s.h * s.l * s.d;
        for (what, len) in bufs {
            if *len < n {
                return Err(shape_error(
                    name,
                    format!("{what} holds {len} elements but the shape needs {n}"),
                ));
            }
        }
        check(name, "lens", lens, s.b)?;
        Ok((
            i32_of(name, "b", s.b)?,
            i32_of(name, "h", s.h)?,
            i32_of(name, "l", s.l)?,
            i32_of(name, "d", s.d)?,
            i32::from(s.causal),
        ))
    }

    /// Unfused attention: scores = scale·QKᵀ (masked) into `scores` (b·h·l·l), softmax in
    /// place, then O = P·V. Three kernels.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn attention_unfused(
        &self,
        on: On<'_>,
        AttnInputs { q, k, v, lens }: AttnInputs<'_>,
        o: &mut DeviceBuffer<f32>,
        scores: &mut DeviceBuffer<f32>,
        s: AttnShape,
        scale: f32,
    ) -> Result<(), CudaError> {
        let (b, h, l, d, causal) = self.attn_check(
            "attn_scores",
            s,
            &[
                ("Q", q.len()),
                ("K", k.len()),
                ("V", v.len()),
                ("O", o.len()),
            ],
            lens,
        )?;
        let rows = s.b * s.h * s.l;
        check("attn_scores", "scores", scores, rows * s.l)?;
        let cfg = |n: usize| grid((blocks(n, 256), 1), (256, 1));
        let rows_i = i32_of("softmax_rows", "rows", rows)?;
        let bh = b * h;
        // SAFETY (three launches): every buffer holds what the shape needs (checked above) and
        // the arguments follow the kernels' signatures in ops.cu.
        unsafe {
            on.prof
                .launch(on.stream, &self.attn_scores)
                .arg(q)
                .arg(k)
                .arg(&mut *scores)
                .arg(lens)
                .arg(&b)
                .arg(&h)
                .arg(&l)
                .arg(&d)
                .arg(&causal)
                .arg(&scale)
                .launch(cfg(rows * s.l))?;
            let sm = grid((blocks(rows, 4), 1), (128, 1));
            on.prof
                .launch(on.stream, &self.softmax_rows)
                .arg(&mut *scores)
                .arg(&rows_i)
                .arg(&l)
                .launch(sm)?;
            on.prof
                .launch(on.stream, &self.attn_pv)
                .arg(&*scores)
                .arg(v)
                .arg(o)
                .arg(&bh)
                .arg(&l)
                .arg(&d)
                .launch(cfg(rows * s.d))
        }
    }

    /// Fused, flash-style attention (online softmax), one kernel; d ≤ [`MAX_HEAD_DIM`].
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when d is too large or a buffer too small; launch errors.
    pub fn attention_fused(
        &self,
        on: On<'_>,
        AttnInputs { q, k, v, lens }: AttnInputs<'_>,
        o: &mut DeviceBuffer<f32>,
        s: AttnShape,
        scale: f32,
    ) -> Result<(), CudaError> {
        if s.d > MAX_HEAD_DIM {
            return Err(shape_error(
                "attn_fused",
                format!("head dimension {} exceeds {MAX_HEAD_DIM}", s.d),
            ));
        }
        let (b, h, l, d, causal) = self.attn_check(
            "attn_fused",
            s,
            &[
                ("Q", q.len()),
                ("K", k.len()),
                ("V", v.len()),
                ("O", o.len()),
            ],
            lens,
        )?;
        let cfg = grid((blocks(s.b * s.h * s.l, 64), 1), (64, 1));
        // SAFETY: the buffers hold the shape (checked above); d ≤ MAX_D of the kernel.
        unsafe {
            on.prof
                .launch(on.stream, &self.attn_fused)
                .arg(q)
                .arg(k)
                .arg(v)
                .arg(o)
                .arg(lens)
                .arg(&b)
                .arg(&h)
                .arg(&l)
                .arg(&d)
                .arg(&causal)
                .arg(&scale)
                .launch(cfg)
        }
    }

    /// Row softmax in place over `rows` rows of `n`.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when the buffer is too small; launch errors.
    pub fn softmax(
        &self,
        on: On<'_>,
        x: &mut DeviceBuffer<f32>,
        rows: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        check("softmax_rows", "X", x, rows * n)?;
        let (r, ni) = (
            i32_of("softmax_rows", "rows", rows)?,
            i32_of("softmax_rows", "n", n)?,
        );
        let cfg = grid((blocks(rows, 4), 1), (128, 1));
        // SAFETY: X holds rows·n elements.
        unsafe {
            on.prof
                .launch(on.stream, &self.softmax_rows)
                .arg(x)
                .arg(&r)
                .arg(&ni)
                .launch(cfg)
        }
    }

    /// LayerNorm over rows of `d`: Y = (X − mean)/σ · gamma + beta.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn layernorm(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        LayerNormWeights { gamma, beta }: LayerNormWeights<'_>,
        y: &mut DeviceBuffer<f32>,
        rows: usize,
        d: usize,
    ) -> Result<(), CudaError> {
        let name = "layernorm";
        check(name, "X", x, rows * d)?;
        check(name, "gamma", gamma, d)?;
        check(name, "beta", beta, d)?;
        check(name, "Y", y, rows * d)?;
        let (r, di) = (i32_of(name, "rows", rows)?, i32_of(name, "d", d)?);
        let cfg = grid((blocks(rows, 4), 1), (128, 1));
        // SAFETY: the buffers hold the shape (checked above).
        unsafe {
            on.prof
                .launch(on.stream, &self.layernorm)
                .arg(x)
                .arg(gamma)
                .arg(beta)
                .arg(y)
                .arg(&r)
                .arg(&di)
                .arg(&1e-5f32)
                .launch(cfg)
        }
    }

    /// RMSNorm over rows of `d`: Y = X / rms(X) · w.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn rmsnorm(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        w: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        rows: usize,
        d: usize,
    ) -> Result<(), CudaError> {
        let name = "rmsnorm";
        check(name, "X", x, rows * d)?;
        check(name, "w", w, d)?;
        check(name, "Y", y, rows * d)?;
        let (r, di) = (i32_of(name, "rows", rows)?, i32_of(name, "d", d)?);
        let cfg = grid((blocks(rows, 4), 1), (128, 1));
        // SAFETY: the buffers hold the shape (checked above).
        unsafe {
            on.prof
                .launch(on.stream, &self.rmsnorm)
                .arg(x)
                .arg(w)
                .arg(y)
                .arg(&r)
                .arg(&di)
                .arg(&1e-5f32)
                .launch(cfg)
        }
    }

    fn unary(
        &self,
        on: On<'_>,
        kernel: &Kernel,
        x: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        check(kernel.name(), "X", x, n)?;
        check(kernel.name(), "Y", y, n)?;
        // SAFETY: X and Y hold at least n elements (checked above).
        unsafe {
            on.prof
                .launch(on.stream, kernel)
                .arg(x)
                .arg(y)
                .arg(&(n as u64))
                .launch(LaunchConfig::for_num_elems(n as u32))
        }
    }

    /// Y = GELU(X) (tanh form), over the first `n` elements (the rest of Y is left as is).
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when X or Y holds fewer than `n`; launch errors.
    pub fn gelu(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        self.unary(on, &self.gelu, x, y, n)
    }

    /// Y = SiLU(X), over all of X.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when Y is smaller than X; launch errors.
    pub fn silu(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
    ) -> Result<(), CudaError> {
        self.unary(on, &self.silu, x, y, x.len())
    }

    /// Y = X + R, over the first `n` elements (the rest of Y is left as is).
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when X, R or Y holds fewer than `n`; launch errors.
    pub fn residual_add(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        r: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        check("residual_add", "X", x, n)?;
        check("residual_add", "R", r, n)?;
        check("residual_add", "Y", y, n)?;
        // SAFETY: X, R and Y hold at least n elements (checked above).
        unsafe {
            on.prof
                .launch(on.stream, &self.residual_add)
                .arg(x)
                .arg(r)
                .arg(y)
                .arg(&(n as u64))
                .launch(LaunchConfig::for_num_elems(n as u32))
        }
    }

    /// `out[t] = table[ids[t]]` for every id, rows of `d`. Ids must be valid rows of the table.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn embedding(
        &self,
        on: On<'_>,
        ids: &DeviceBuffer<i32>,
        table: &DeviceBuffer<f32>,
        out: &mut DeviceBuffer<f32>,
        d: usize,
    ) -> Result<(), CudaError> {
        let ntok = ids.len();
        check("embedding_gather", "out", out, ntok * d)?;
        check("embedding_gather", "table", table, d)?;
        let (t, di) = (
            i32_of("embedding_gather", "tokens", ntok)?,
            i32_of("embedding_gather", "d", d)?,
        );
        let cfg = grid((ntok.max(1) as u32, 1), (128, 1));
        // SAFETY: out holds ntok·d elements; the ids index rows of the table (the caller's
        // contract, as in every embedding lookup).
        unsafe {
            on.prof
                .launch(on.stream, &self.embedding_gather)
                .arg(ids)
                .arg(table)
                .arg(out)
                .arg(&t)
                .arg(&di)
                .launch(cfg)
        }
    }

    /// `cache[b][h][pos[b]] = knew[b][h]` for a cache laid out `[b][h][max_len][d]`; positions
    /// outside 0..max_len are skipped by the kernel.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn kv_append(
        &self,
        on: On<'_>,
        knew: &DeviceBuffer<f32>,
        cache: &mut DeviceBuffer<f32>,
        pos: &DeviceBuffer<i32>,
        (b, h, d): (usize, usize, usize),
        max_len: usize,
    ) -> Result<(), CudaError> {
        let name = "kv_append";
        check(name, "knew", knew, b * h * d)?;
        check(name, "cache", cache, b * h * max_len * d)?;
        check(name, "pos", pos, b)?;
        let (bi, hi, di, li) = (
            i32_of(name, "b", b)?,
            i32_of(name, "h", h)?,
            i32_of(name, "d", d)?,
            i32_of(name, "max_len", max_len)?,
        );
        let cfg = grid(((b * h).max(1) as u32, 1), (128, 1));
        // SAFETY: the buffers hold the shape (checked above); the kernel skips bad positions.
        unsafe {
            on.prof
                .launch(on.stream, &self.kv_append)
                .arg(knew)
                .arg(cache)
                .arg(pos)
                .arg(&bi)
                .arg(&hi)
                .arg(&di)
                .arg(&li)
                .launch(cfg)
        }
    }

    /// out (cols×rows) = inᵀ for in (rows×cols).
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn transpose(
        &self,
        on: On<'_>,
        x: &DeviceBuffer<f32>,
        out: &mut DeviceBuffer<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        check("transpose", "in", x, rows * cols)?;
        check("transpose", "out", out, rows * cols)?;
        let (r, c) = (
            i32_of("transpose", "rows", rows)?,
            i32_of("transpose", "cols", cols)?,
        );
        let cfg = grid((blocks(cols, 32), blocks(rows, 32)), (32, 8));
        // SAFETY: both buffers hold rows·cols elements.
        unsafe {
            on.prof
                .launch(on.stream, &self.transpose)
                .arg(x)
                .arg(out)
                .arg(&r)
                .arg(&c)
                .launch(cfg)
        }
    }

    /// `x[b·T+t] = wte[ids[b·T+t]] + wpe[pos0[b] + t]`, rows of `d`.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn embed_tokens(
        &self,
        on: On<'_>,
        ids: &DeviceBuffer<i32>,
        pos0: &DeviceBuffer<i32>,
        Embeddings {
            tokens: wte,
            positions: wpe,
        }: Embeddings<'_>,
        out: &mut DeviceBuffer<f32>,
        (b, t, d): (usize, usize, usize),
    ) -> Result<(), CudaError> {
        let name = "embed_tokens";
        check(name, "ids", ids, b * t)?;
        check(name, "pos0", pos0, b)?;
        check(name, "wte", wte, d)?;
        check(name, "wpe", wpe, t * d)?;
        check(name, "out", out, b * t * d)?;
        let (bi, ti, di) = (
            i32_of(name, "b", b)?,
            i32_of(name, "t", t)?,
            i32_of(name, "d", d)?,
        );
        let cfg = grid(((b * t).max(1) as u32, 1), (128, 1));
        // SAFETY: the buffers hold the shape (checked above); ids and positions index the
        // tables (the caller's contract).
        unsafe {
            on.prof
                .launch(on.stream, &self.embed_tokens)
                .arg(ids)
                .arg(pos0)
                .arg(wte)
                .arg(wpe)
                .arg(out)
                .arg(&bi)
                .arg(&ti)
                .arg(&di)
                .launch(cfg)
        }
    }

    /// Split rows `[b·t][3·h·hd]` into q `[b][h][t][hd]` and the caches at `pos0[b] + t`.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn split_heads(
        &self,
        on: On<'_>,
        qkv: &DeviceBuffer<f32>,
        q: &mut DeviceBuffer<f32>,
        cache: KvCacheMut<'_>,
        pos0: &DeviceBuffer<i32>,
        (b, h, t, hd): HeadShape,
    ) -> Result<(), CudaError> {
        let KvCacheMut {
            k: k_cache,
            v: v_cache,
            max_len,
        } = cache;
        let name = "split_heads";
        check(name, "qkv", qkv, b * t * 3 * h * hd)?;
        check(name, "q", q, b * h * t * hd)?;
        check(name, "k_cache", k_cache, b * h * max_len * hd)?;
        check(name, "v_cache", v_cache, b * h * max_len * hd)?;
        check(name, "pos0", pos0, b)?;
        let v = [
            i32_of(name, "b", b)?,
            i32_of(name, "t", t)?,
            i32_of(name, "h", h)?,
            i32_of(name, "hd", hd)?,
            i32_of(name, "max_len", max_len)?,
        ];
        let cfg = grid(((b * t).max(1) as u32, 1), (256, 1));
        // SAFETY: the buffers hold the shape (checked above); positions past max_len are skipped.
        unsafe {
            on.prof
                .launch(on.stream, &self.split_heads)
                .arg(qkv)
                .arg(q)
                .arg(k_cache)
                .arg(v_cache)
                .arg(pos0)
                .arg(&v[0])
                .arg(&v[1])
                .arg(&v[2])
                .arg(&v[3])
                .arg(&v[4])
                .launch(cfg)
        }
    }

    /// Causal attention of q `[b][h][t][hd]` over the caches: query t at position
    /// `qpos0[b] + t` sees keys up to it among the `klen[b]` valid ones.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when hd exceeds [`MAX_HEAD_DIM`] or a buffer is too small.
    pub fn attention_cached(
        &self,
        on: On<'_>,
        q: &DeviceBuffer<f32>,
        KvCache {
            k: k_cache,
            v: v_cache,
            max_len,
        }: KvCache<'_>,
        o: &mut DeviceBuffer<f32>,
        CachedPositions {
            query_start: qpos0,
            key_len: klen,
        }: CachedPositions<'_>,
        (b, h, t, hd): HeadShape,
    ) -> Result<(), CudaError> {
        let name = "attn_cached";
        if hd > MAX_HEAD_DIM || hd % 32 != 0 {
            return Err(shape_error(
                name,
                format!("head dimension {hd} must be a multiple of 32 up to {MAX_HEAD_DIM}"),
            ));
        }
        check(name, "q", q, b * h * t * hd)?;
        check(name, "k_cache", k_cache, b * h * max_len * hd)?;
        check(name, "v_cache", v_cache, b * h * max_len * hd)?;
        check(name, "o", o, b * h * t * hd)?;
        check(name, "qpos0", qpos0, b)?;
        check(name, "klen", klen, b)?;
        let v = [
            i32_of(name, "b", b)?,
            i32_of(name, "h", h)?,
            i32_of(name, "t", t)?,
            i32_of(name, "hd", hd)?,
            i32_of(name, "max_len", max_len)?,
        ];
        let scale = 1.0 / (hd as f32).sqrt();
        // One warp per query, four per block.
        let cfg = grid((blocks(b * h * t, 4), 1), (128, 1));
        // SAFETY: the buffers hold the shape (checked above); the kernel bounds keys by
        // max_len and the query's position.
        unsafe {
            on.prof
                .launch(on.stream, &self.attn_cached)
                .arg(q)
                .arg(k_cache)
                .arg(v_cache)
                .arg(o)
                .arg(qpos0)
                .arg(klen)
                .arg(&v[0])
                .arg(&v[1])
                .arg(&v[2])
                .arg(&v[3])
                .arg(&v[4])
                .arg(&scale)
                .launch(cfg)
        }
    }

    /// o `[b][h][t][hd]` → rows `[b·t][h·hd]`.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] when a buffer is too small; launch errors.
    pub fn merge_heads(
        &self,
        on: On<'_>,
        o: &DeviceBuffer<f32>,
        out: &mut DeviceBuffer<f32>,
        (b, h, t, hd): HeadShape,
    ) -> Result<(), CudaError> {
        let name = "merge_heads";
        check(name, "o", o, b * h * t * hd)?;
        check(name, "out", out, b * h * t * hd)?;
        let v = [
            i32_of(name, "b", b)?,
            i32_of(name, "t", t)?,
            i32_of(name, "h", h)?,
            i32_of(name, "hd", hd)?,
        ];
        let cfg = grid(((b * t).max(1) as u32, 1), (256, 1));
        // SAFETY: both buffers hold b·h·t·hd elements.
        unsafe {
            on.prof
                .launch(on.stream, &self.merge_heads)
                .arg(o)
                .arg(out)
                .arg(&v[0])
                .arg(&v[1])
                .arg(&v[2])
                .arg(&v[3])
                .launch(cfg)
        }
    }
}
