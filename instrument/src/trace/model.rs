//! The in-memory trace: spans, power observations, kernel facts and run metadata.
//!
//! **The one clock.** Every `*_ns` timestamp in a trace is nanoseconds since the Unix epoch on
//! the host's realtime clock, as read through a monotonic clock anchored once at the start of the
//! run (see [`crate::clock::HostClock`]), so an NTP step during a run cannot tear the timeline.
//! NVML's sample timestamps are already µs on the host's realtime clock; CUDA event and CUPTI
//! times are converted at record time, and the evidence for each conversion is kept as a
//! [`ClockAlignment`].

use serde::{Deserialize, Serialize};

use super::strings::{StrId, StringTable};
use crate::intervals::Interval;
use crate::sensor_profile::SensorProfile;

/// A whole profiling run, as read from or written to a trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Trace {
    /// Who ran what, where, and whether it was simulated.
    pub meta: RunMeta,
    /// Interned strings (kernel names, region paths, launch sites) that spans refer to.
    pub strings: StringTable,
    /// Kernels, copies, memsets, regions and sync/idle spans, in record order.
    pub spans: Vec<Span>,
    /// Power-sensor readings of every device, exactly as read.
    pub power: Vec<PowerReading>,
    /// Static facts about kernels, from the LLVM pass or from the simulator's workload.
    pub kernel_facts: Vec<KernelFacts>,
    /// How each foreign clock was mapped onto the trace clock, with its error bound.
    pub alignments: Vec<ClockAlignment>,
    /// Buffer sizes and frees, and padding shares of spans (format 1.4).
    pub annotations: Vec<Annotation>,
}

/// The units (rows, or query–key pairs for attention) one launch computed under a declared
/// padding mask, and how many of them were padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaddedUnits {
    /// Padding units.
    pub padded: u64,
    /// All units.
    pub total: u64,
}

/// A fact about buffers or spans that no single span record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Annotation {
    /// A device buffer's size, recorded when it was allocated.
    Buffer {
        /// Buffer id (as in [`BufferVersion::buffer`]).
        id: u64,
        /// Device index.
        device: u32,
        /// Size, bytes.
        bytes: u64,
    },
    /// A buffer was freed (trace clock, host side: after every operation issued before).
    Freed {
        /// Buffer id.
        id: u64,
        /// When, ns.
        at_ns: u64,
    },
    /// Host time the profiler itself spent holding up the program (hashing copied content),
    /// so idle time it caused is not charged to the program.
    Overhead {
        /// Device the held-up work was bound for.
        device: u32,
        /// Start, ns (trace clock).
        from_ns: u64,
        /// End, ns.
        to_ns: u64,
    },
    /// Work span `span` computed `total` units (rows, or query-key pairs for attention), of
    /// which `padded` were padding, per the padding mask the program declared.
    Padding {
        /// Span id.
        span: u64,
        /// The sequence pass it ran in (see [`Annotation::Pass`]).
        pass: u32,
        /// Padding units.
        padded: u64,
        /// All units.
        total: u64,
    },
    /// A pass over a batch of token sequences, as the program declared it: each row's tokens
    /// (padding left out), the length rows are padded to, and whether the model is causal
    /// (position i's outputs depend on tokens 0..=i only).
    Pass {
        /// Pass number, from 1, in issue order.
        pass: u32,
        /// Rows are padded to this length.
        padded_len: u64,
        /// Causal model.
        causal: bool,
        /// Token ids of each row.
        rows: Vec<Vec<u32>>,
    },
    /// The device address a host-to-device copy wrote, in a trace that knows no buffers (an
    /// unmodified program's, recorded through CUPTI): waste analysis compares such uploads by
    /// place and content digest (format 2.2).
    CopyTarget {
        /// The copy's span id.
        span: u64,
        /// First device address written; the span's byte count gives the extent.
        address: u64,
    },
    /// The profiler held the program while it ran device work of its own on `device`: a kernel
    /// replay's checkpoint of device memory, its burst (an [`SpanKind::Alone`] span inside
    /// this interval) and the restore (format 2.3). Counter windows and power samples that see
    /// any of it outside the burst are left out of the fit and of the idle baseline, and the
    /// program is not charged for the time.
    ProfilerEpisode {
        /// Device.
        device: u32,
        /// When the profiler took the device, ns (trace clock).
        from_ns: u64,
        /// When it handed it back, ns.
        to_ns: u64,
    },
    /// Range span `span` (a request) produced or consumed `tokens` tokens, as the program
    /// gave them (an NVTX integer payload, or `tokens=N` in the message); format 2.3.
    Tokens {
        /// The range's span id.
        span: u64,
        /// Tokens.
        tokens: u64,
    },
    /// Host time the profiler's own callbacks (NVTX and CUDA API) took on the program's
    /// threads between `from_ns` and `to_ns`, in `calls` callbacks (format 2.4): the process's
    /// own cost, which lengthens a launch-bound request's wall time. CUPTI's record keeping is
    /// not in it.
    CallbackCost {
        /// Start of the interval, ns (trace clock).
        from_ns: u64,
        /// End of the interval, ns.
        to_ns: u64,
        /// Callbacks run in it.
        calls: u64,
        /// Host time they took, summed over threads, ns.
        host_ns: u64,
    },
    /// A kernel signature that kernel replay did not measure, and why (format 2.3).
    ReplayNote {
        /// Device.
        device: u32,
        /// Kernel name, as its spans carry it.
        name: String,
        /// Launch shape.
        launch: Option<LaunchShape>,
        /// Its share of the program's kernel busy time when the run ended, parts per million.
        busy_ppm: u32,
        /// What happened to it.
        outcome: ReplayOutcome,
    },
    /// One PyTorch operation that `wattlens run --audit` saw, with the content digests of what
    /// it read and wrote (format 2.5).
    AuditOp(Box<AuditOp>),
    /// A tensor the audit saw was freed (format 2.5).
    AuditFreed {
        /// The tensor ([`AuditTensor::tensor`]).
        tensor: u64,
        /// The last operation ([`AuditOp::seq`]) begun before it was freed.
        after_seq: u64,
    },
    /// What the audit of one process did and cost (format 2.5).
    AuditSummary(AuditSummary),
    /// Something the audit of one process could not check, in one sentence (format 2.6).
    AuditNote(String),
    /// The process that recorded this trace read `device` last at `at_ns`; the readings after
    /// it are `wattlens run`'s own, taken once the process had exited (format 2.7). A GPU just
    /// released draws more than one a process holds idle (2–4.5 W more on H100s, for seconds),
    /// so idle power is measured before this instant wherever the trace allows.
    ReleasedAfter {
        /// Device.
        device: u32,
        /// The process's last reading of the device, ns (trace clock).
        at_ns: u64,
    },
}

/// One PyTorch (aten) operation of an audited run, as its content facts ([`Annotation::AuditOp`]).
/// Digests are 64-bit multilinear hashes of the whole content, computed on the tensor's own
/// device; equal digests of unequal contents occur with probability at most 2⁻⁴⁶.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditOp {
    /// Sequence number in the process, from 1, in issue order.
    pub seq: u64,
    /// Operator name (`aten::addmm`).
    pub name: String,
    /// Where in the model: the module instance it ran in (`GPT2MLP#7`, "" outside modules).
    pub module: String,
    /// Its position among the operations of that module's forward call, from 1.
    pub ordinal: u64,
    /// Digest of the operator and every argument but tensor contents (scalars, shapes,
    /// strides, types, devices): two operations with the same identity and the same input
    /// contents compute the same thing.
    pub identity: u64,
    /// The operator draws random numbers: equal inputs need not give equal outputs.
    pub random: bool,
    /// The operator moves, rearranges or fills data (a copy, a concatenation, an index, a
    /// fill) rather than computing it: a repeat is a copy, not recomputation.
    pub moves_data: bool,
    /// The program's device work the operation issued (span ids).
    pub spans: Vec<u64>,
    /// Tensor inputs, as read.
    pub inputs: Vec<AuditTensor>,
    /// Newly made outputs.
    pub outputs: Vec<AuditTensor>,
    /// Tensors written in place: each with its digest before ([`AuditTensor::digest`]) and
    /// after.
    pub writes: Vec<(AuditTensor, u64)>,
    /// Rows of the first output (its last dimension) equal to rows that the same operation at
    /// the same place, with the same parameter content, produced in its previous call.
    pub rows: Option<AuditRows>,
}

/// A tensor in an [`AuditOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTensor {
    /// Tensor id, unique within the process (a tensor object, not its memory).
    pub tensor: u64,
    /// Address of its storage: tensors sharing memory share it.
    pub storage: u64,
    /// Content digest.
    pub digest: u64,
    /// Size, bytes.
    pub bytes: u64,
    /// CUDA device index, or `None` for host memory.
    pub device: Option<u32>,
}

/// Rows of an operation's output that its previous call at the same place already produced
/// ([`AuditOp::rows`]). Constant rows, and rows that repeat within the output, never count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRows {
    /// Rows equal to one of the previous call's.
    pub matched: u64,
    /// All rows.
    pub total: u64,
    /// The previous call ([`AuditOp::seq`]).
    pub previous: u64,
}

/// What the audit of one process did ([`Annotation::AuditSummary`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditSummary {
    /// Operations audited.
    pub ops: u64,
    /// Host time the audit itself took (digests and bookkeeping), ns.
    pub audit_host_ns: u64,
    /// The audit's own device work (its digest kernels), spans.
    pub digest_spans: u64,
    /// Device time of those, ns.
    pub digest_busy_ns: u64,
    /// Operations not audited, by reason.
    pub skipped: Vec<(String, u64)>,
    /// Fact lines that could not be read.
    pub unreadable_lines: u64,
}

/// Why kernel replay did not measure a signature ([`Annotation::ReplayNote`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplayOutcome {
    /// Replaying it could not be done safely; the reason, in one phrase.
    Skipped(String),
    /// Wanted, but the replay budget ran out first.
    CutOff,
    /// Wanted, but no launch call of it came after its weight was known (kernels of a CUDA
    /// graph, or of a phase that ended).
    NotSeenAgain,
}

impl ReplayOutcome {
    /// One phrase for a report.
    pub fn describe(&self) -> String {
        match self {
            ReplayOutcome::Skipped(why) => format!("skipped: {why}"),
            ReplayOutcome::CutOff => "cut off: the replay budget ran out".to_owned(),
            ReplayOutcome::NotSeenAgain => {
                "not replayed: no launch call of it came after its weight was known (a CUDA graph's kernel, or one of a phase that ended)".to_owned()
            }
        }
    }
}

impl Trace {
    /// An empty trace carrying the given metadata.
    pub fn new(meta: RunMeta) -> Self {
        Self {
            meta,
            ..Self::default()
        }
    }

    /// The text behind an interned string id (empty for [`StrId::NONE`] or an unknown id).
    pub fn str(&self, id: StrId) -> &str {
        self.strings.get(id).unwrap_or("")
    }

    /// The kernel facts recorded for `name`, if any.
    pub fn facts_for(&self, name: &str) -> Option<&KernelFacts> {
        self.kernel_facts.iter().find(|f| f.name == name)
    }

    /// When the last process holding `device` read it last ([`Annotation::ReleasedAfter`]),
    /// ns; `None` where no readings were taken after a process exited.
    pub fn released_at_ns(&self, device: u32) -> Option<u64> {
        self.annotations
            .iter()
            .filter_map(|a| match a {
                Annotation::ReleasedAfter { device: d, at_ns } if *d == device => Some(*at_ns),
                _ => None,
            })
            .max()
    }
}

/// Run metadata: the header of every trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunMeta {
    /// The wattlens version that wrote the trace.
    pub tool_version: String,
    /// True when the power data came from the built-in simulated GPU, not hardware.
    pub simulated: bool,
    /// Host name of the machine that ran the workload.
    pub host: String,
    /// The profiled command line, or the built-in workload's name.
    pub command: Vec<String>,
    /// Wall-clock start of the run, ns since the Unix epoch (trace clock).
    pub start_unix_ns: u64,
    /// GPU driver version, where known.
    pub driver: Option<String>,
    /// The GPUs the run observed.
    pub devices: Vec<DeviceInfo>,
    /// The sensor model in force (measured, fitted by `wattlens calibrate`, or simulated).
    pub sensor_profile: SensorProfile,
}

impl RunMeta {
    /// This machine's host name (from `/etc/hostname`), or empty when it cannot be read.
    pub fn this_host() -> String {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    }
}

/// One GPU as seen by the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeviceInfo {
    /// Index of the device inside this trace; spans and readings refer to it.
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H200".
    pub name: String,
    /// NVML/CUDA UUID, the stable identity across CUDA_VISIBLE_DEVICES remapping.
    pub uuid: String,
    /// Number of streaming multiprocessors, where known (0 if unknown).
    pub sm_count: u32,
    /// Board power limit in mW, where known (0 if unknown).
    pub power_limit_mw: u32,
}

/// One interval of device activity or host-visible structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Unique id of the span within its trace (evidence in findings refers to it).
    pub id: u64,
    /// What happened.
    pub kind: SpanKind,
    /// Device index (see [`DeviceInfo::index`]).
    pub device: u32,
    /// The stream the work ran on, as a key: equal for the work of one stream of one device
    /// within a trace, and nothing more (each recorder picks its keys: the runtime numbers the
    /// streams it times, the injection library takes CUPTI's stream ids, the simulator its
    /// ordinals; merging traces keeps them apart per process). Analysis only compares keys.
    /// For a region span, its track instead: 0 for push/pop ranges,
    /// [`START_END_RANGE_STREAM`] and [`MARK_STREAM`].
    pub stream: u64,
    /// Start on the trace clock, ns since the Unix epoch.
    pub start_ns: u64,
    /// End on the trace clock, ns since the Unix epoch; never before `start_ns`.
    pub end_ns: u64,
    /// Kernel name, copy label or region name.
    pub name: StrId,
    /// Grid, block and shared memory of a kernel launch.
    pub launch: Option<LaunchShape>,
    /// Digest of the scalar (non-buffer) arguments; 0 when there are none.
    pub args_digest: u64,
    /// Buffers read, each with the version it had when read.
    pub reads: Vec<BufferVersion>,
    /// Buffers written, each with the version the write produced.
    pub writes: Vec<BufferVersion>,
    /// The region path the span ran in ("decoder/layer3/attention"), or none; for a region
    /// span, its own full path.
    pub region: StrId,
    /// The launch site ("src/model.rs:120"), or none.
    pub site: StrId,
    /// Buffers the span touched whose access mode is unknown (no kernel facts): they are listed
    /// in both `reads` and `writes`, so that waste analysis can say it is guessing.
    #[serde(default)]
    pub unknown_access: Vec<u64>,
    /// Host time of the call that issued the work, on the trace clock, where
    /// recorded: from the moment the profiler took the launch or copy until it returned (the
    /// driver call and the profiler's bookkeeping of it). Waste analysis replays the timeline
    /// without a wasted launch from it ([`crate::waste`]).
    #[serde(default)]
    pub host_call_ns: Option<Interval>,
}

impl Span {
    /// A span of `kind` from `start_ns` to `end_ns`, with no launch shape, scalars, buffers,
    /// region or site yet (set those fields after, or with struct update syntax).
    pub fn new(
        id: u64,
        kind: SpanKind,
        (device, stream): (u32, u64),
        name: StrId,
        when: impl Into<Interval>,
    ) -> Self {
        let Interval {
            from_ns: start_ns,
            to_ns: end_ns,
        } = when.into();
        Self {
            id,
            kind,
            device,
            stream,
            start_ns,
            end_ns,
            name,
            launch: None,
            args_digest: 0,
            reads: Vec::new(),
            writes: Vec::new(),
            region: StrId::NONE,
            site: StrId::NONE,
            unknown_access: Vec::new(),
            host_call_ns: None,
        }
    }

    /// Duration in ns (zero for an inverted span, which the reader rejects anyway).
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// True for spans during which the device does work (kernels, copies, memsets, and the
    /// profiler's own [`SpanKind::Alone`] bursts).
    pub fn is_device_work(&self) -> bool {
        matches!(
            self.kind,
            SpanKind::Kernel
                | SpanKind::Memcpy { .. }
                | SpanKind::Memset { .. }
                | SpanKind::Alone { .. }
        )
    }

    /// True for device work the program itself did: [`Span::is_device_work`] less the
    /// profiler's [`SpanKind::Alone`] bursts.
    pub fn is_program_work(&self) -> bool {
        self.is_device_work() && !matches!(self.kind, SpanKind::Alone { .. })
    }
}

/// The region path of the profiler's [`SpanKind::Alone`] bursts.
pub const ALONE_REGION: &str = "wattlens:alone";

/// How long a profiling session that measures kernels alone replays each signature by
/// default, ns: four energy-counter periods, so that at least three whole counter windows
/// see the kernel by itself.
pub const ALONE_BURST_NS: u64 = 400_000_000;

/// The region-span stream of NVTX start/end ranges (`nvtxRangeStart`/`End`, which may end on
/// another thread); push/pop ranges and the runtime's regions use stream 0.
pub const START_END_RANGE_STREAM: u64 = 1;
/// The region-span stream of NVTX marks (zero-length region spans).
pub const MARK_STREAM: u64 = 2;

/// The kind of a span, with its kind-specific payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKind {
    /// A kernel launch.
    Kernel,
    /// A memory copy.
    Memcpy {
        /// Which way the bytes went.
        direction: CopyDirection,
        /// Bytes copied.
        bytes: u64,
        /// Fast hash of the copied content (sampled for large buffers), where computed.
        content_digest: Option<u64>,
    },
    /// A memset.
    Memset {
        /// Bytes set.
        bytes: u64,
        /// The byte value written.
        value: u8,
    },
    /// An operator region (NVTX range or `profiler.region`), nested by its region path.
    Region {
        /// Nesting depth, 0 for a top-level region.
        depth: u32,
    },
    /// The host waited on the device (stream/device/event synchronisation).
    Sync,
    /// The device was idle while held (between dependent work).
    Idle,
    /// The profiler replayed one kernel launch `launches` times back to back, alone on the
    /// device, to measure its power (kernel replay); not the program's work. The span has the
    /// kernel's name and launch shape and covers the whole burst.
    Alone {
        /// Launches in the burst.
        launches: u32,
        /// Id of the program's launch that was replayed (its arguments and inputs).
        of: u64,
    },
}

impl SpanKind {
    /// Short lower-case label used in reports and exports.
    pub fn label(&self) -> &'static str {
        match self {
            SpanKind::Kernel => "kernel",
            SpanKind::Memcpy { .. } => "memcpy",
            SpanKind::Memset { .. } => "memset",
            SpanKind::Region { .. } => "region",
            SpanKind::Sync => "sync",
            SpanKind::Idle => "idle",
            SpanKind::Alone { .. } => "alone",
        }
    }
}

/// Direction of a memory copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyDirection {
    /// Host to device.
    HostToDevice,
    /// Device to host.
    DeviceToHost,
    /// Device to device (same or peer GPU).
    DeviceToDevice,
}

impl CopyDirection {
    /// The name a copy's spans carry: `memcpy HtoD`, `memcpy DtoH` or `memcpy DtoD`, whoever
    /// recorded it (a replay of a copy joins the program's copies of that name).
    pub fn span_name(self) -> &'static str {
        match self {
            CopyDirection::HostToDevice => "memcpy HtoD",
            CopyDirection::DeviceToHost => "memcpy DtoH",
            CopyDirection::DeviceToDevice => "memcpy DtoD",
        }
    }
}

/// Launch configuration of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LaunchShape {
    /// Grid dimensions in blocks.
    pub grid: [u32; 3],
    /// Block dimensions in threads.
    pub block: [u32; 3],
    /// Dynamic shared memory per block, bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchShape {
    /// Blocks in the grid (saturating: a hostile trace's three dimensions overflow 64 bits).
    pub fn blocks(&self) -> u64 {
        self.grid
            .iter()
            .fold(1u64, |p, &g| p.saturating_mul(u64::from(g)))
    }

    /// Threads in a block.
    pub fn threads_per_block(&self) -> u64 {
        self.block
            .iter()
            .fold(1u64, |p, &b| p.saturating_mul(u64::from(b)))
    }
}

/// A buffer identity with a version: the input of waste detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BufferVersion {
    /// Buffer id, unique within the run.
    pub buffer: u64,
    /// Version; bumps on every write.
    pub version: u32,
}

/// One power-sensor reading, exactly as read from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerReading {
    /// An entry of the NVML samples ring (`nvmlDeviceGetSamples`, total power).
    Sample {
        /// Device index.
        device: u32,
        /// The sample's time on the trace clock.
        ts_ns: u64,
        /// The sample's own timestamp as NVML reported it (µs since the Unix epoch).
        raw_ts_us: u64,
        /// Reported power, mW.
        power_mw: u32,
    },
    /// A read of the cumulative energy counter (`nvmlDeviceGetTotalEnergyConsumption`).
    Energy {
        /// Device index.
        device: u32,
        /// When the read started, trace clock.
        ts_ns: u64,
        /// How long the read call took, ns (the value belongs somewhere in that interval).
        read_ns: u32,
        /// Counter value, mJ since driver load.
        energy_mj: u64,
    },
    /// A read of the instant-power field (NVML field 186).
    Instant {
        /// Device index.
        device: u32,
        /// When the read started, trace clock.
        ts_ns: u64,
        /// How long the read call took, ns.
        read_ns: u32,
        /// Reported power, mW.
        power_mw: u32,
    },
    /// A read of the memory's instant power (NVML field 186, memory scope), where offered.
    MemoryInstant {
        /// Device index.
        device: u32,
        /// When the read started, trace clock.
        ts_ns: u64,
        /// How long the read call took, ns.
        read_ns: u32,
        /// Reported power, mW.
        power_mw: u32,
    },
    /// Readings the source knows it lost (the samples ring overflowed, or a read failed).
    Lost {
        /// Device index.
        device: u32,
        /// Last good reading before the gap, trace clock.
        from_ns: u64,
        /// First good reading after the gap, trace clock.
        to_ns: u64,
    },
}

impl PowerReading {
    /// Device index of the reading.
    pub fn device(&self) -> u32 {
        match *self {
            PowerReading::Sample { device, .. }
            | PowerReading::Energy { device, .. }
            | PowerReading::Instant { device, .. }
            | PowerReading::MemoryInstant { device, .. }
            | PowerReading::Lost { device, .. } => device,
        }
    }

    /// The same reading, of device index `device` (when traces are merged and renumbered).
    pub fn with_device(mut self, device: u32) -> Self {
        match &mut self {
            PowerReading::Sample { device: d, .. }
            | PowerReading::Energy { device: d, .. }
            | PowerReading::Instant { device: d, .. }
            | PowerReading::MemoryInstant { device: d, .. }
            | PowerReading::Lost { device: d, .. } => *d = device,
        }
        self
    }

    /// Timestamp of the reading on the trace clock.
    pub fn ts_ns(&self) -> u64 {
        match *self {
            PowerReading::Sample { ts_ns, .. }
            | PowerReading::Energy { ts_ns, .. }
            | PowerReading::Instant { ts_ns, .. }
            | PowerReading::MemoryInstant { ts_ns, .. } => ts_ns,
            PowerReading::Lost { from_ns, .. } => from_ns,
        }
    }
}

/// The operator class of a kernel, the unit of the per-op roll-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpClass {
    /// Matrix multiplication (GEMM, batched GEMM).
    Matmul,
    /// Attention (fused or its parts).
    Attention,
    /// Softmax and other reductions.
    Softmax,
    /// Element-wise maps (activations, residual adds).
    Elementwise,
    /// Layer/RMS normalisation.
    Norm,
    /// Gathers and scatters (embedding lookups, KV-cache appends).
    GatherScatter,
    /// Copies and transfers, kernel-based or DMA.
    Copy,
    /// Collective communication.
    Communication,
    /// Not classified.
    Unknown,
    /// Sorts, scans, top-k and stream compaction (cub's, PyTorch's sampling and `nonzero`);
    /// last, so that the older classes keep their encoding.
    SortScan,
}

impl OpClass {
    /// Every class, in declaration order.
    pub const ALL: [OpClass; 10] = [
        OpClass::Matmul,
        OpClass::Attention,
        OpClass::Softmax,
        OpClass::Elementwise,
        OpClass::Norm,
        OpClass::GatherScatter,
        OpClass::Copy,
        OpClass::Communication,
        OpClass::Unknown,
        OpClass::SortScan,
    ];

    /// The class a label names: any [`OpClass::label`], or `gather`, `scatter`, `reduction`,
    /// `transfer`; case-insensitive.
    pub fn from_label(label: &str) -> Option<OpClass> {
        let label = label.trim().to_ascii_lowercase();
        match label.as_str() {
            "gather" | "scatter" | "gatherscatter" => Some(OpClass::GatherScatter),
            "reduction" => Some(OpClass::Softmax),
            "sort" | "scan" | "topk" | "sort/scan" => Some(OpClass::SortScan),
            "transfer" => Some(OpClass::Copy),
            _ => OpClass::ALL.into_iter().find(|c| c.label() == label),
        }
    }

    /// Short lower-case label used in reports.
    pub fn label(&self) -> &'static str {
        match self {
            OpClass::Matmul => "matmul",
            OpClass::Attention => "attention",
            OpClass::Softmax => "softmax",
            OpClass::Elementwise => "elementwise",
            OpClass::Norm => "norm",
            OpClass::GatherScatter => "gather/scatter",
            OpClass::Copy => "copy",
            OpClass::Communication => "communication",
            OpClass::Unknown => "unknown",
            OpClass::SortScan => "sort_scan",
        }
    }
}

/// How a kernel uses one pointer argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessMode {
    /// Only loads.
    Read,
    /// Only stores.
    Write,
    /// Loads and stores.
    ReadWrite,
    /// Neither.
    None,
    /// The analysis could not decide; never treated as "read".
    Unknown,
}

impl AccessMode {
    /// The mode of an argument used both ways: `Read` joined with `Write` is `ReadWrite`,
    /// anything joined with `Unknown` is `Unknown`, `None` is the identity.
    pub fn join(self, other: AccessMode) -> AccessMode {
        use AccessMode::*;
        match (self, other) {
            (Unknown, _) | (_, Unknown) => Unknown,
            (None, m) | (m, None) => m,
            (Read, Read) => Read,
            (Write, Write) => Write,
            _ => ReadWrite,
        }
    }

    /// Lower-case label used in manifests and metadata (`read`, `write`, `readwrite`, `none`, `unknown`).
    pub fn label(self) -> &'static str {
        match self {
            AccessMode::Read => "read",
            AccessMode::Write => "write",
            AccessMode::ReadWrite => "readwrite",
            AccessMode::None => "none",
            AccessMode::Unknown => "unknown",
        }
    }

    /// Whether the kernel may change the memory (`Write`, `ReadWrite` or `Unknown`).
    pub fn may_write(self) -> bool {
        matches!(
            self,
            AccessMode::Write | AccessMode::ReadWrite | AccessMode::Unknown
        )
    }
}

/// Facts about one kernel that only static analysis can give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelFacts {
    /// Kernel (symbol) name.
    pub name: String,
    /// Operator class.
    pub op_class: OpClass,
    /// Access mode of each argument, in parameter order (scalars are [`AccessMode::None`]).
    pub arg_access: Vec<AccessMode>,
    /// Static cost per thread, where derivable.
    pub cost: Option<StaticCost>,
    /// Accesses through pointers held in by-value struct arguments (format 1.3).
    #[serde(default)]
    pub fields: Vec<FieldAccess>,
    /// True when the kernel may store through pointers derived from no argument (pointer
    /// tables, integers made into pointers): buffers that are not arguments may change, and
    /// every argument not marked `noalias` is [`AccessMode::Unknown`] unless it is written (format 1.3).
    #[serde(default)]
    pub writes_outside_args: bool,
}

impl KernelFacts {
    /// Facts that claim nothing: every argument unknown, class unknown, no cost.
    pub fn unknown(name: &str, args: usize) -> Self {
        KernelFacts {
            name: name.to_owned(),
            op_class: OpClass::Unknown,
            arg_access: vec![AccessMode::Unknown; args],
            cost: None,
            fields: Vec::new(),
            writes_outside_args: false,
        }
    }
}

/// How a kernel uses a pointer stored inside one of its by-value struct arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldAccess {
    /// Index of the struct argument.
    pub arg: u32,
    /// Byte offset of the pointer field inside the struct.
    pub offset_bytes: u64,
    /// How the memory the field points to is used.
    pub mode: AccessMode,
}

/// Static cost of one thread of a kernel, as expressions over its scalar arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticCost {
    /// Floating-point operations per thread, e.g. `"2*K"`.
    pub flops_per_thread: String,
    /// Global-memory bytes per thread, e.g. `"8*K+4"`.
    pub global_bytes_per_thread: String,
}

/// Which foreign clock an alignment maps onto the trace clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockSource {
    /// NVML sample timestamps (µs, host realtime).
    Nvml,
    /// CUDA event elapsed times.
    CudaEvents,
    /// CUPTI's activity timestamps.
    Cupti,
    /// The simulator's own clock (exact by construction).
    Simulated,
}

/// Evidence for mapping a foreign clock onto the trace clock: `trace = offset + (1+drift)·t`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockAlignment {
    /// The clock being mapped.
    pub source: ClockSource,
    /// Device index, for per-device clocks.
    pub device: u32,
    /// Offset added to the foreign time, ns.
    pub offset_ns: i64,
    /// Fitted drift, parts per billion.
    pub drift_ppb: i64,
    /// Bound on the mapping error, ns.
    pub error_bound_ns: u64,
    /// Calibration points (foreign ns, trace ns) the fit used.
    pub points: Vec<(u64, u64)>,
}
