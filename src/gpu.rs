//! A measured session on a real GPU: the calibration kernels loaded, launches timed with
//! CUDA events, and the NVML sampler running beside them; at the end, a trace.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use wattlens_instrument::clock::{Clock, HostClock};
use wattlens_instrument::power::nvml::{open_nvml, DeviceSelection, ReadPlan};
use wattlens_instrument::power::{PowerError, Sampler, SamplerReport};
use wattlens_instrument::trace::{
    ClockAlignment, ClockSource, DeviceInfo, LaunchShape, PowerReading, RunMeta, Span, SpanKind,
    Trace,
};
use wattlens_instrument::SensorProfile;
use wattlens_kernels::calibration as k;
use wattlens_runtime::internal::cuda::{CudaError, CudaGpu, Timeline};

/// Why a GPU session failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// CUDA failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// NVML failed.
    #[error(transparent)]
    Power(#[from] PowerError),
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

/// A GPU with the calibration kernels, a timeline and a running sampler.
pub struct GpuSession {
    /// The device.
    pub gpu: CudaGpu,
    clock: Arc<HostClock>,
    sampler: Option<Sampler>,
    readings: Vec<PowerReading>,
    timeline: Timeline,
    funcs: [CudaFunction; 5],
    scratch: CudaSlice<f32>,
    copy_in: CudaSlice<f32>,
    copy_out: CudaSlice<f32>,
    gemm: [CudaSlice<f32>; 3],
    /// Launches so far: (what, tag for the caller).
    launches: Vec<(Launch, usize)>,
    start_unix_ns: u64,
    driver: Option<String>,
    profile: SensorProfile,
    /// How the sampler reads the GPU (measured read costs and the counter stride).
    pub read_plans: Vec<ReadPlan>,
}

/// Floats in each copy buffer (1 GiB).
const COPY_FLOATS: usize = 1 << 28;
/// Edge of the GEMM matrices.
const GEMM_N: u32 = 2048;

impl GpuSession {
    /// Open CUDA device `ordinal`, load the kernels, allocate buffers and start the sampler on
    /// the same GPU (matched by UUID), reading NVML within `cpu_budget` (share of a core).
    ///
    /// # Errors
    /// [`GpuError`] without CUDA or NVML, or when loading fails.
    pub fn open(ordinal: usize, profile: SensorProfile, cpu_budget: f64) -> Result<Self, GpuError> {
        let gpu = CudaGpu::open(ordinal)?;
        let module = gpu.load(k::PTX)?;
        let f = |name: &str| gpu.function(&module, name);
        let funcs = [
            f(k::SPIN_FOR)?,
            f(k::IDLE_FOR)?,
            f(k::SPIN_FMA)?,
            f(k::COPY_F4)?,
            f(k::SGEMM_TILED)?,
        ];
        let s = gpu.stream().clone();
        let alloc = |n: usize| {
            s.alloc_zeros::<f32>(n).map_err(|source| CudaError::Driver {
                what: "allocating buffers",
                source,
            })
        };
        let n2 = (GEMM_N * GEMM_N) as usize;
        let (scratch, copy_in, copy_out) = (alloc(1024)?, alloc(COPY_FLOATS)?, alloc(COPY_FLOATS)?);
        let gemm = [alloc(n2)?, alloc(n2)?, alloc(n2)?];
        let clock = Arc::new(HostClock::new());
        let source = open_nvml(
            &DeviceSelection::Uuids(vec![gpu.uuid.clone()]),
            clock.clone(),
            profile.clone(),
            cpu_budget,
        )?;
        let driver = source.driver().map(str::to_owned);
        let read_plans = source.plans();
        let start_unix_ns = clock.now_ns();
        let sampler = Sampler::start(source, clock.clone())?;
        let mut timeline = Timeline::new();
        timeline.anchor(&gpu, &*clock)?;
        Ok(Self {
            gpu,
            clock,
            sampler: Some(sampler),
            readings: Vec::new(),
            timeline,
            funcs,
            scratch,
            copy_in,
            copy_out,
            gemm,
            launches: Vec::new(),
            start_unix_ns,
            driver,
            profile,
            read_plans,
        })
    }

    /// The trace clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
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

    /// Queue one launch, timed; `tag` is returned with its times by [`GpuSession::finish`].
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
        let stream = self.gpu.stream().clone();
        let (funcs, scratch) = (&self.funcs, &self.scratch);
        let (cin, cout, gemm, n) = (&self.copy_in, &mut self.copy_out, &self.gemm, GEMM_N);
        let n4 = (COPY_FLOATS / 4) as u64;
        let n_i32 = n as i32;
        let run = || -> Result<(), CudaError> {
            let err = |source| CudaError::Driver {
                what: "launching a kernel",
                source,
            };
            // SAFETY: each argument list matches the kernel's C signature in
            // kernels/cuda/calibration.cu, and every buffer is large enough for its grid.
            unsafe {
                match l {
                    Launch::SpinFor(ns) => stream
                        .launch_builder(&funcs[0])
                        .arg(scratch)
                        .arg(&ns)
                        .launch(cfg)
                        .map(|_| ()),
                    Launch::IdleFor(ns) => stream
                        .launch_builder(&funcs[1])
                        .arg(&ns)
                        .launch(cfg)
                        .map(|_| ()),
                    Launch::SpinFma { iters, .. } => stream
                        .launch_builder(&funcs[2])
                        .arg(scratch)
                        .arg(&iters)
                        .launch(cfg)
                        .map(|_| ()),
                    Launch::Copy => stream
                        .launch_builder(&funcs[3])
                        .arg(cin)
                        .arg(cout)
                        .arg(&n4)
                        .launch(cfg)
                        .map(|_| ()),
                    Launch::Sgemm => stream
                        .launch_builder(&funcs[4])
                        .arg(&gemm[0])
                        .arg(&gemm[1])
                        .arg(&gemm[2])
                        .arg(&n_i32)
                        .launch(cfg)
                        .map(|_| ()),
                }
                .map_err(err)
            }
        };
        let id = self.launches.len();
        self.timeline.time(&self.gpu, id, run)?;
        self.launches.push((l, tag));
        Ok(())
    }

    /// Wait for the GPU, then let it idle for `ns` on the host (no kernel held).
    ///
    /// # Errors
    /// [`GpuError::Cuda`] when queued work failed.
    pub fn host_idle(&mut self, ns: u64) -> Result<(), GpuError> {
        self.timeline.anchor(&self.gpu, &*self.clock)?;
        std::thread::sleep(std::time::Duration::from_nanos(ns));
        self.timeline.anchor(&self.gpu, &*self.clock)?;
        self.pull();
        Ok(())
    }

    /// Move readings the sampler delivered into the session (bounded memory in the sampler).
    fn pull(&mut self) {
        if let Some(s) = &self.sampler {
            s.drain(&mut self.readings);
        }
    }

    /// Stop everything and build the trace: one kernel span per launch (named by kernel, with
    /// its shape), the power readings and the clock evidence. Returns each launch's
    /// (tag, start, end) too, and the sampler's report.
    ///
    /// # Errors
    /// [`GpuError::Cuda`] when the queued work failed.
    pub fn finish(mut self, command: Vec<String>) -> Result<Finished, GpuError> {
        self.gpu.synchronize()?;
        let anchor_err = self.timeline.anchor_error_ns();
        let times = std::mem::take(&mut self.timeline).finish(&self.gpu)?;
        // Let the sensors see the tail before stopping.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (rest, report) = match self.sampler.take() {
            Some(s) => s.stop(),
            None => (Vec::new(), SamplerReport::default()),
        };
        self.pull();
        self.readings.extend(rest);
        let meta = RunMeta {
            tool_version: concat!("wattlens ", env!("CARGO_PKG_VERSION")).to_owned(),
            simulated: false,
            host: RunMeta::this_host(),
            command,
            start_unix_ns: self.start_unix_ns,
            driver: self.driver.clone(),
            devices: vec![DeviceInfo {
                index: 0,
                name: self.gpu.name.clone(),
                uuid: self.gpu.uuid.clone(),
                sm_count: self.gpu.sm_count,
                power_limit_mw: 0,
            }],
            sensor_profile: self.profile.clone(),
        };
        let mut trace = Trace::new(meta);
        let mut tagged = Vec::with_capacity(times.len());
        for &(id, s, e) in &times {
            let Some(&(l, tag)) = self.launches.get(id) else {
                continue;
            };
            let name = trace.strings.id(Self::name(l));
            let shape = self.shape(l);
            trace.spans.push(Span {
                launch: Some(shape),
                ..Span::new(id as u64, SpanKind::Kernel, (0, 0), name, (s, e.max(s)))
            });
            tagged.push((tag, s, e));
        }
        self.readings.sort_by_key(PowerReading::ts_ns);
        trace.power = std::mem::take(&mut self.readings);
        trace.alignments.extend(report.alignments.iter().cloned());
        trace.alignments.push(ClockAlignment {
            source: ClockSource::CudaEvents,
            device: 0,
            offset_ns: 0,
            drift_ppb: 0,
            error_bound_ns: anchor_err,
            points: Vec::new(),
        });
        Ok(Finished {
            trace,
            launches: tagged,
            sampler: report,
        })
    }
}
