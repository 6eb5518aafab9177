//! Kernels that check the runtime on a real GPU (sources in `cuda/runtime_checks.cu`).

/// PTX of `cuda/runtime_checks.cu` for sm_90.
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/runtime_checks.ptx"));
/// The same kernels for sm_80 (A100 and later), PTX 8.0.
pub const PTX_SM80: &str = include_str!(concat!(env!("OUT_DIR"), "/runtime_checks_sm80.ptx"));

/// `stamped_spin(u64 *stamps, u64 duration_ns)`: spins, stamping first start and last end
/// with `%globaltimer` into `stamps[0]` (min) and `stamps[1]` (max).
pub const STAMPED_SPIN: &str = "stamped_spin";
/// `empty_kernel()`: does nothing.
pub const EMPTY_KERNEL: &str = "empty_kernel";
/// `saxpy(float a, const float *x, float *y, u64 n)`: y = a·x + y.
pub const SAXPY: &str = "saxpy";
/// `fault_write(float *p)`: writes through `p` (an invalid address makes it fault).
pub const FAULT_WRITE: &str = "fault_write";

/// Every kernel the PTX defines.
pub const KERNELS: &[&str] = &[STAMPED_SPIN, EMPTY_KERNEL, SAXPY, FAULT_WRITE];
