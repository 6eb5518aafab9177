//! The calibration kernels: a full-chip FMA spin, an idle kernel, a bandwidth-bound copy and
//! a tiled fp32 GEMM (sources in `cuda/calibration.cu`).

/// PTX of `cuda/calibration.cu` for sm_90.
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/calibration.ptx"));
/// The same kernels for sm_80 (A100 and later), PTX 8.0.
pub const PTX_SM80: &str = include_str!(concat!(env!("OUT_DIR"), "/calibration_sm80.ptx"));

/// `spin_for(float *out, u64 duration_ns)`: FMA chains on every thread until the time is up.
pub const SPIN_FOR: &str = "spin_for";
/// `spin_fma(float *out, u32 iters)`: a fixed amount of FMA work per thread.
pub const SPIN_FMA: &str = "spin_fma";
/// `idle_for(u64 duration_ns)`: one thread sleeping; the GPU is held but idle.
pub const IDLE_FOR: &str = "idle_for";
/// `copy_f4(const float4 *in, float4 *out, u64 n)`: a grid-stride copy.
pub const COPY_F4: &str = "copy_f4";
/// `sgemm_tiled(const float *A, const float *B, float *C, int n)`: C = A·B, 32×32 tiles.
pub const SGEMM_TILED: &str = "sgemm_tiled";
/// Tile edge of `sgemm_tiled`: n must be a multiple, and blocks are TILE×TILE threads.
pub const SGEMM_TILE: u32 = 32;

/// Every kernel the PTX defines.
pub const KERNELS: &[&str] = &[SPIN_FOR, SPIN_FMA, IDLE_FOR, COPY_F4, SGEMM_TILED];
