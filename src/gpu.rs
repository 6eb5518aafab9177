//! The calibration session (`wattlens calibrate` and `validate`): the calibration kernels and
//! their buffers in a [`Profiler`] session timed with CUDA events, each launch tagged by the
//! caller; at the end, the profiler's trace and each tagged launch's times. The trace is built
//! by the profiler, as every other recording is.

use std::sync::Arc;

use cudarc::driver::{CudaStream, LaunchConfig};
use wattlens_instrument::power::nvml::ReadPlan;
use wattlens_instrument::power::SamplerReport;
use wattlens_instrument::trace::{DeviceInfo, LaunchShape, SpanKind, Trace};
use wattlens_instrument::SensorProfile;
use wattlens_kernels::calibration as k;
use wattlens_runtime::{
    CudaError, DeviceBuffer, Kernel, ProfiledArg, Profiler, ProfilerConfig, TimingChoice,
};

/// Why a GPU session failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// CUDA (or NVML, through the profiler) failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

/// What a finished session recorded.
#[derive(Debug)]
pub struct Finished {
    /// The trace: a kernel span per launch, the power readings, the clock evidence.
    pub trace: Trace,
    /// Each launch as (caller's tag, start, end) on the trace clock, in launch order.
    pub launches: Vec<(usize, u64, u64)>,
    /// What the sampler did and cost.
    pub sampler: SamplerReport,
}

/// A kernel the session can launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `spin_for` for this long, ns, on 4 blocks per SM.
    SpinFor(u64),
    /// `idle_for` for this long, ns.
    IdleFor(u64),
    /// `spin_fma` with this many iterations, on `blocks_per_sm` blocks per SM.
    SpinFma {
        /// Iterations of 256 FMA pairs.
        iters: u32,
        /// Blocks per SM.
        blocks_per_sm: u32,
    },
    /// `copy_f4` over the session's copy buffers.
    Copy,
    /// `sgemm_tiled` on the session's n×n matrices.
    Sgemm,
}

/// The calibration kernels and their buffers in a profiling session of one GPU.
pub struct CalibrationSession {
    prof: Profiler,
    stream: Arc<CudaStream>,
    kernels: [Kernel; 5],
    scratch: DeviceBuffer<f32>,
    copy_in: DeviceBuffer<f32>,
    copy_out: DeviceBuffer<f32>,
    gemm: [DeviceBuffer<f32>; 3],
    /// The caller's tag of each launch, in launch order.
    tags: Vec<usize>,
    /// The GPU.
    pub gpu: DeviceInfo,
    /// How the sampler reads the GPU (measured read costs and the counter stride).
    pub read_plans: Vec<ReadPlan>,
}

/// Floats in each copy buffer (1 GiB).
const COPY_FLOATS: usize = 1 << 28;
/// Edge of the GEMM matrices.
const GEMM_N: u32 = 2048;

impl CalibrationSession {
    /// Open CUDA device `ordinal` in a profiling session timed with CUDA events, with the
    /// power sampler reading it within `cpu_budget` (share of a core) under `profile`; load the
    /// kernels and allocate their buffers.
    ///
    /// # Errors
    /// [`GpuError`] without CUDA or NVML, or when loading fails.
    pub fn open(ordinal: usize, profile: SensorProfile, cpu_budget: f64) -> Result<Self, GpuError> {
        let prof = Profiler::start(ProfilerConfig {
            devices: vec![ordinal],
            timing: TimingChoice::Events,
            power: true,
            cpu_budget,
            profile,
            ..ProfilerConfig::default()
        })?;
        let gpu = prof
            .devices()
            .into_iter()
            .next()
            .ok_or_else(|| CudaError::Unavailable("the profiler opened no device".into()))?;
        let read_plans = prof.read_plans().to_vec();
        let stream = prof.context(0)?.default_stream();
        let module = prof.load_ptx(0, k::PTX)?;
        let f = |name: &str| prof.kernel(&module, name);
        let kernels = [
            f(k::SPIN_FOR)?,
            f(k::IDLE_FOR)?,
            f(k::SPIN_FMA)?,
            f(k::COPY_F4)?,
            f(k::SGEMM_TILED)?,
        ];
        let alloc = |n: usize| prof.alloc_zeros::<f32>(&stream, n);
        let n2 = (GEMM_N * GEMM_N) as usize;
        let (scratch, copy_in, copy_out) = (alloc(1024)?, alloc(COPY_FLOATS)?, alloc(COPY_FLOATS)?);
        let gemm = [alloc(n2)?, alloc(n2)?, alloc(n2)?];
        prof.synchronize(&stream)?;
        Ok(Self {
            prof,
            stream,
            kernels,
            scratch,
            copy_in,
            copy_out,
            gemm,
            tags: Vec::new(),
            gpu,
            read_plans,
        })
    }

    /// The trace clock.
    pub fn now_ns(&self) -> u64 {
        self.prof.now_ns()
    }

    /// The launch shape of a kernel on this GPU.
    pub fn shape(&self, l: Launch) -> LaunchShape {
        Self::shape_for(l, self.gpu.sm_count)
    }

    /// The launch shape of a kernel on a GPU with `sm_count` SMs.
    pub fn shape_for(l: Launch, sm_count: u32) -> LaunchShape {
        let sm = sm_count.max(1);
        let (grid, block) = match l {
            Launch::SpinFor(_) => ([sm * 4, 1, 1], [256, 1, 1]),
            Launch::IdleFor(_) => ([1, 1, 1], [1, 1, 1]),
            Launch::SpinFma { blocks_per_sm, .. } => ([sm * blocks_per_sm, 1, 1], [256, 1, 1]),
            Launch::Copy => ([sm * 8, 1, 1], [256, 1, 1]),
            Launch::Sgemm => {
                let g = GEMM_N / k::SGEMM_TILE;
                ([g, g, 1], [k::SGEMM_TILE, k::SGEMM_TILE, 1])
            }
        };
        LaunchShape {
            grid,
            block,
            shared_mem_bytes: 0,
        }
    }

    /// The kernel name of a launch.
    pub fn name(l: Launch) -> &'static str {
        match l {
            Launch::SpinFor(_) => k::SPIN_FOR,
            Launch::IdleFor(_) => k::IDLE_FOR,
            Launch::SpinFma { .. } => k::SPIN_FMA,
            Launch::Copy => k::COPY_F4,
            Launch::Sgemm => k::SGEMM_TILED,
        }
    }

    /// Queue one launch, timed; `tag` is returned with its times by
    /// [`CalibrationSession::finish`].
    ///
    /// # Errors
    /// [`GpuError::Cuda`] when the launch fails.
    pub fn launch(&mut self, l: Launch, tag: usize) -> Result<(), GpuError> {
        let shape = self.shape(l);
        let cfg = LaunchConfig {
            grid_dim: (shape.grid[0], shape.grid[1], shape.grid[2]),
            block_dim: (shape.block[0], shape.block[1], shape.block[2]),
            shared_mem_bytes: 0,
        };
        let (prof, s, kernels) = (&self.prof, &self.stream, &self.kernels);
        let n4 = (COPY_FLOATS / 4) as u64;
        let n_i32 = GEMM_N as i32;
        // SAFETY: each argument list matches the kernel's C signature in
        // kernels/cuda/calibration.cu, and every buffer is large enough for its grid.
        unsafe {
            match l {
                Launch::SpinFor(ns) => prof
                    .launch(s, &kernels[0])
                    .arg(&self.scratch)
                    .arg(&ns)
                    .launch(cfg),
                Launch::IdleFor(ns) => prof.launch(s, &kernels[1]).arg(&ns).launch(cfg),
                Launch::SpinFma { iters, .. } => prof
                    .launch(s, &kernels[2])
                    .arg(&self.scratch)
                    .arg(&iters)
                    .launch(cfg),
                Launch::Copy => prof
                    .launch(s, &kernels[3])
                    .arg(&self.copy_in)
                    .arg(&mut self.copy_out)
                    .arg(&n4)
                    .launch(cfg),
                Launch::Sgemm => prof
                    .launch(s, &kernels[4])
                    .arg(&self.gemm[0])
                    .arg(&self.gemm[1])
                    .arg(&self.gemm[2])
                    .arg(&n_i32)
                    .launch(cfg),
            }
        }?;
        self.tags.push(tag);
        Ok(())
    }

    /// Wait for the GPU, then let it idle for `ns` on the host (no kernel held).
    ///
    /// # Errors
    /// [`GpuError::Cuda`] when queued work failed.
    pub fn host_idle(&mut self, ns: u64) -> Result<(), GpuError> {
        self.prof.synchronize(&self.stream)?;
        std::thread::sleep(std::time::Duration::from_nanos(ns));
        Ok(())
    }

    /// Stop the session: the profiler's trace (recording `command`), each launch's (tag,
    /// start, end) in launch order, and the sampler's report.
    ///
    /// # Errors
    /// [`GpuError::Cuda`] when the queued work failed.
    pub fn finish(self, command: Vec<String>) -> Result<Finished, GpuError> {
        let Self { prof, tags, .. } = self;
        let finished = prof.finish().map_err(|a| a.error)?;
        let mut trace = finished.trace;
        trace.meta.command = command;
        // One stream: the kernels ran in launch order (the buffers' memsets are not launches).
        let mut kernels: Vec<(u64, u64)> = trace
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .map(|s| (s.start_ns, s.end_ns))
            .collect();
        kernels.sort_unstable();
        let launches = tags
            .into_iter()
            .zip(kernels)
            .map(|(tag, (start, end))| (tag, start, end))
            .collect();
        Ok(Finished {
            trace,
            launches,
            sampler: finished.sampler.unwrap_or_default(),
        })
    }
}
