//! The profiling session: RAII start and finish, owning the power sampler, the span recorder
//! and one timer per GPU, and producing a [`Trace`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::Ptx;
use wattlens_instrument::clock::{Clock, HostClock};
use wattlens_instrument::power::nvml::{open_nvml, DeviceSelection, ReadPlan};
use wattlens_instrument::power::{Sampler, SamplerReport};
use wattlens_instrument::trace::{
    AccessMode, DeviceInfo, KernelFacts, OpClass, PowerReading, RunMeta, SpanKind, StrId, Trace,
};
use wattlens_instrument::Interval;
use wattlens_instrument::SensorProfile;

use super::alone_state::{AloneReport, AloneState};
use super::cupti::Cupti;
use super::device::{ctx as driver_err, open_context};
use super::error::{Aborted, CudaError};
use super::events::CudaEvents;
use super::nvtx::{self, NvtxRange};
use crate::c_abi;
use crate::digest::ContentHash;
use crate::recorder::{OpDesc, Recorder};
use crate::timing::{CuptiTimer, EventTimer, Expect, OpTimer, StreamKey, TimerError, TimingMethod};

/// Which GPU timing method a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimingChoice {
    /// CUPTI activity records where libcupti loads, CUDA events otherwise.
    #[default]
    Auto,
    /// CUPTI only (fails where it cannot be used).
    Cupti,
    /// CUDA event pairs.
    Events,
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct ProfilerConfig {
    /// CUDA ordinals of the GPUs to profile; the trace's device `i` is `devices[i]`.
    pub devices: Vec<usize>,
    /// The GPU timing method.
    pub timing: TimingChoice,
    /// Run the NVML power sampler on the same GPUs (matched by UUID).
    pub power: bool,
    /// CPU budget of the sampler's NVML reads, share of a core.
    pub cpu_budget: f64,
    /// The sensor profile recorded in the trace and used by the sampler.
    pub profile: SensorProfile,
    /// How transferred content is hashed.
    pub content_hash: ContentHash,
    /// Kernel facts from the pass: access modes of each kernel's arguments.
    pub facts: Vec<KernelFacts>,
    /// The command line recorded in the trace.
    pub command: Vec<String>,
    /// Where an unfinished session writes its trace when dropped (a panic unwinding, say).
    pub trace_path: Option<PathBuf>,
    /// Launch-site labels (`file:line`) by the id the pass gave each site.
    pub site_labels: std::collections::BTreeMap<u64, String>,
    /// Replay the first launch of each kernel signature alone for this long, ns, so its power
    /// is measured by itself (kernel replay; see [`AloneReport`]); `None` replays nothing.
    /// Each replay holds the program up for that long, and pauses CUPTI's kernel records for
    /// the whole process: kernels another thread launches meanwhile are not timed.
    pub measure_alone_ns: Option<u64>,
}

impl ProfilerConfig {
    /// Take kernel facts and launch-site labels from a manifest the pass wrote.
    pub fn with_manifest(mut self, manifest: &wattlens_instrument::Manifest) -> Self {
        self.facts.extend(manifest.facts());
        for (key, site) in &manifest.sites {
            if let Ok(id) = u64::from_str_radix(key, 16) {
                self.site_labels.insert(id, site.label());
            }
        }
        self
    }
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        Self {
            devices: vec![0],
            timing: TimingChoice::Auto,
            power: true,
            cpu_budget: 0.008,
            profile: SensorProfile::default(),
            content_hash: ContentHash::Sampled,
            facts: Vec::new(),
            command: std::env::args().collect(),
            trace_path: None,
            site_labels: std::collections::BTreeMap::new(),
            measure_alone_ns: None,
        }
    }
}

/// A kernel ready for instrumented launches: its function, name, parameter sizes and the
/// access modes of its arguments.
pub struct Kernel {
    pub(crate) func: CudaFunction,
    pub(crate) name: Arc<str>,
    pub(crate) name_id: StrId,
    /// Size of each parameter in bytes, where the driver reports it.
    pub(crate) params: Option<Vec<usize>>,
    pub(crate) access: Vec<AccessMode>,
    pub(crate) op_class: OpClass,
}

impl Kernel {
    /// The kernel's symbol name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying cudarc function, for plain (uninstrumented) launches.
    pub fn function(&self) -> &CudaFunction {
        &self.func
    }

    /// Access mode of argument `i`: from the kernel facts, or unknown.
    pub(crate) fn access(&self, i: usize) -> AccessMode {
        self.access.get(i).copied().unwrap_or(AccessMode::Unknown)
    }
}

/// A device buffer with an identity the trace follows through versions.
pub struct DeviceBuffer<T> {
    pub(crate) slice: CudaSlice<T>,
    pub(crate) id: u64,
    pub(crate) device: u32,
    pub(crate) address: u64,
    pub(crate) rec: Weak<Mutex<Recorder>>,
}

impl<T> DeviceBuffer<T> {
    /// The buffer's id in the trace.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// True for an empty buffer.
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// The cudarc slice, for work the session need not see.
    pub fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }

    /// The cudarc slice, writable: for a library call made through [`Profiler::library`],
    /// which records the write (a write made any other way is invisible to the trace).
    pub fn slice_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.upgrade() {
            let mut rec = lock(&rec);
            rec.buffers.release(self.device, self.address);
            let at_ns = rec.now_ns();
            rec.annotations
                .push(wattlens_instrument::trace::Annotation::Freed { id: self.id, at_ns });
        }
    }
}

/// An open region; closes when dropped.
pub struct RegionGuard {
    rec: Arc<Mutex<Recorder>>,
    _nvtx: NvtxRange,
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        lock(&self.rec).pop_region();
    }
}

/// What a finished session hands over.
#[derive(Debug)]
pub struct Finished {
    /// The trace.
    pub trace: Trace,
    /// The timing method of each device.
    pub timing: Vec<TimingMethod>,
    /// Issued operations the timer never saw complete (0 in a healthy run).
    pub untimed: usize,
    /// CUPTI records of work the timer could not read (copies of no known direction), left
    /// out of the trace.
    pub unreadable: u64,
    /// What the power sampler did and cost, when it ran.
    pub sampler: Option<SamplerReport>,
    /// Which kernel signatures were measured alone ([`ProfilerConfig::measure_alone_ns`]).
    pub alone: AloneReport,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Device {
    ctx: Arc<CudaContext>,
    info: DeviceInfo,
}

pub(crate) struct Timers {
    timers: Vec<Box<dyn OpTimer>>,
    streams: HashMap<(u32, u64), u64>,
    failure: Option<CudaError>,
}

/// A profiling session over one or more GPUs.
pub struct Profiler {
    clock: Arc<HostClock>,
    pub(crate) rec: Arc<Mutex<Recorder>>,
    pub(crate) timers: Mutex<Timers>,
    devices: Vec<Device>,
    sampler: Option<Sampler>,
    /// How the sampler reads each GPU (measured read costs, the counter's stride).
    read_plans: Vec<ReadPlan>,
    start_unix_ns: u64,
    driver: Option<String>,
    pub(crate) config: ProfilerConfig,
    facts: HashMap<String, KernelFacts>,
    pub(crate) methods: Vec<TimingMethod>,
    pub(crate) alone: Mutex<AloneState>,
    done: bool,
}

fn timer_for(
    choice: TimingChoice,
    ctx: &Arc<CudaContext>,
    clock: Arc<HostClock>,
    device: u32,
) -> Result<Box<dyn OpTimer>, TimerError> {
    let cupti = || -> Result<Box<dyn OpTimer>, TimerError> {
        Ok(Box::new(CuptiTimer::new(
            Cupti::new(ctx.clone())?,
            clock.clone(),
            device,
        )?))
    };
    let events = || -> Result<Box<dyn OpTimer>, TimerError> {
        Ok(Box::new(EventTimer::new(
            CudaEvents::new(ctx.clone())?,
            clock.clone(),
            device,
        )?))
    };
    match choice {
        TimingChoice::Cupti => cupti(),
        TimingChoice::Events => events(),
        TimingChoice::Auto => cupti().or_else(|_| events()),
    }
}

impl Profiler {
    /// Start a session: open the GPUs, start their timers and the power sampler.
    ///
    /// # Errors
    /// [`CudaError`] without a usable driver or device, when the timing method cannot be
    /// used, or when power was asked for and NVML cannot read these GPUs.
    pub fn start(config: ProfilerConfig) -> Result<Self, CudaError> {
        if config.devices.is_empty() {
            return Err(CudaError::Unavailable(
                "the profiler was given no devices".into(),
            ));
        }
        let clock = Arc::new(HostClock::new());
        let start_unix_ns = clock.now_ns();
        let mut devices = Vec::new();
        let mut timers: Vec<Box<dyn OpTimer>> = Vec::new();
        for (i, &ordinal) in config.devices.iter().enumerate() {
            let (ctx, name, uuid, sm_count) = open_context(ordinal)?;
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            timers.push(timer_for(config.timing, &ctx, clock.clone(), index)?);
            devices.push(Device {
                ctx,
                info: DeviceInfo {
                    index,
                    name,
                    uuid,
                    sm_count,
                    power_limit_mw: 0,
                },
            });
        }
        let mut read_plans = Vec::new();
        let (sampler, mut driver) = if config.power {
            let uuids = devices.iter().map(|d| d.info.uuid.clone()).collect();
            let source = open_nvml(
                &DeviceSelection::Uuids(uuids),
                clock.clone(),
                config.profile.clone(),
                config.cpu_budget,
            )
            .map_err(|e| CudaError::Unavailable(format!("power readings: {e}")))?;
            let driver = source.driver().map(str::to_owned);
            read_plans = source.plans();
            let sampler = Sampler::start(source, clock.clone())
                .map_err(|e| CudaError::Unavailable(format!("power readings: {e}")))?;
            (Some(sampler), driver)
        } else {
            (None, None)
        };
        if driver.is_none() {
            driver = super::device::driver_version();
        }
        let mut recorder = Recorder::new(clock.clone());
        recorder.set_site_labels(config.site_labels.clone());
        let rec = Arc::new(Mutex::new(recorder));
        c_abi::activate(&rec);
        let facts = config
            .facts
            .iter()
            .map(|f| (f.name.clone(), f.clone()))
            .collect();
        let methods = timers.iter().map(|t| t.method()).collect();
        Ok(Self {
            clock,
            rec,
            timers: Mutex::new(Timers {
                timers,
                streams: HashMap::new(),
                failure: None,
            }),
            devices,
            sampler,
            read_plans,
            start_unix_ns,
            driver,
            config,
            facts,
            methods,
            alone: Mutex::default(),
            done: false,
        })
    }

    /// The CUDA context of trace device `device`.
    ///
    /// # Errors
    /// [`CudaError::ForeignDevice`] for an index the session does not have.
    pub fn context(&self, device: usize) -> Result<&Arc<CudaContext>, CudaError> {
        self.devices
            .get(device)
            .map(|d| &d.ctx)
            .ok_or_else(|| CudaError::ForeignDevice(format!("the session has no device {device}")))
    }

    /// The session's GPUs: name, UUID and SMs of each trace device.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.devices.iter().map(|d| d.info.clone()).collect()
    }

    /// How the power sampler reads each GPU (measured read costs, the energy counter's
    /// stride); empty without power readings.
    pub fn read_plans(&self) -> &[ReadPlan] {
        &self.read_plans
    }

    /// The timing method of each device (`"cupti"` or `"events"`).
    pub fn timing(&self) -> &[TimingMethod] {
        &self.methods
    }

    /// The trace clock, ns since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Load a PTX module on trace device `device`.
    ///
    /// # Errors
    /// [`CudaError::Driver`] when the driver rejects the PTX.
    pub fn load_ptx(&self, device: usize, ptx: &str) -> Result<Arc<CudaModule>, CudaError> {
        self.context(device)?
            .load_module(Ptx::from_src(ptx))
            .map_err(driver_err("loading PTX"))
    }

    /// A kernel of a loaded module, with its parameter sizes and its facts (when given).
    ///
    /// # Errors
    /// [`CudaError::Driver`] when the module has no such kernel.
    pub fn kernel(&self, module: &Arc<CudaModule>, name: &str) -> Result<Kernel, CudaError> {
        if name.contains('\0') {
            return Err(CudaError::Arguments {
                kernel: name.replace('\0', "\\0"),
                site: String::new(),
                problem: "a kernel name cannot contain a NUL byte".into(),
            });
        }
        let func = module
            .load_function(name)
            .map_err(driver_err("looking up a kernel"))?;
        let params = param_sizes(&func);
        let access = self
            .facts
            .get(name)
            .map(|f| f.arg_access.clone())
            .unwrap_or_default();
        let op_class = self
            .facts
            .get(name)
            .map_or(OpClass::Unknown, |f| f.op_class);
        let name_id = lock(&self.rec).intern(name);
        Ok(Kernel {
            func,
            name: name.into(),
            name_id,
            params,
            access,
            op_class,
        })
    }

    /// Declare the padding of the work issued from now on (`None` to clear): per batch row, its
    /// valid length out of `padded_len`. Each kernel launched meanwhile records the share of its
    /// rows (query–key pairs, for attention) that is padding, which the waste analysis prices.
    /// Declare it only around work that runs over the padded rows.
    pub fn set_padding(&self, mask: Option<crate::recorder::PaddingMask>) {
        lock(&self.rec).set_padding(mask);
    }

    /// Open a region named `name` (nested inside the current one) until the guard drops;
    /// also an NVTX range where NVTX is available.
    pub fn region(&self, name: &str) -> RegionGuard {
        lock(&self.rec).push_region(name);
        RegionGuard {
            rec: self.rec.clone(),
            _nvtx: nvtx::range(name),
        }
    }

    /// Whether regions are also emitted as NVTX ranges (libnvToolsExt loaded).
    pub fn nvtx_enabled(&self) -> bool {
        nvtx::available()
    }

    /// Trace index of the device `stream` belongs to.
    pub(crate) fn device_of(&self, stream: &CudaStream) -> Result<u32, CudaError> {
        let ordinal = stream.context().ordinal();
        self.devices
            .iter()
            .position(|d| d.ctx.ordinal() == ordinal)
            .map(|i| i as u32)
            .ok_or_else(|| {
                CudaError::ForeignDevice(format!(
                    "a stream of CUDA device {ordinal} was used, which this session does not profile"
                ))
            })
    }

    /// Run one operation: timer before, `run`, timer after, then record it.
    pub(crate) fn issue<R, B>(
        &self,
        stream: &CudaStream,
        expect: Expect,
        run: R,
        build: B,
    ) -> Result<u64, CudaError>
    where
        R: FnOnce() -> Result<(), CudaError>,
        B: FnOnce(&mut Recorder, u32, u64) -> OpDesc,
    {
        let call_from_ns = self.clock.now_ns();
        let device = self.device_of(stream)?;
        let mut t = lock(&self.timers);
        let raw = stream.cu_stream() as u64;
        let next = t.streams.len() as u64;
        let ordinal = *t.streams.entry((device, raw)).or_insert(next);
        let key = StreamKey {
            device,
            ordinal,
            raw,
        };
        let seq = lock(&self.rec).issued() as u64;
        let Some(timer) = t.timers.get_mut(device as usize) else {
            return Err(CudaError::ForeignDevice(format!(
                "no timer for device {device}"
            )));
        };
        timer.before(&key, seq).map_err(CudaError::Timer)?;
        run()?;
        timer.after(&key, seq, expect).map_err(CudaError::Timer)?;
        let mut rec = lock(&self.rec);
        let desc = build(&mut rec, device, ordinal);
        let seq = rec.issue(desc);
        rec.set_host_call(seq, Interval::new(call_from_ns, self.clock.now_ns()));
        Ok(seq)
    }

    /// Make a library call (cuBLAS, say) whose kernels the session should record: they run
    /// under an external correlation id, so CUPTI's records of them take the current region,
    /// the caller's site, and the buffer touches given here (`reads` and `writes` are buffer
    /// ids, from [`DeviceBuffer::id`]). `call` must issue its work on `stream`.
    ///
    /// # Errors
    /// [`CudaError::Unavailable`] when this GPU is not timed with CUPTI (only CUPTI sees a
    /// library's kernels; `call` is not made then); [`CudaError::Timer`] when CUPTI refuses
    /// the correlation id or driver-API records.
    #[track_caller]
    pub fn library<R>(
        &self,
        stream: &CudaStream,
        name: &str,
        (reads, writes): (&[u64], &[u64]),
        call: impl FnOnce() -> R,
    ) -> Result<R, CudaError> {
        let caller = std::panic::Location::caller();
        let device = self.device_of(stream)?;
        if self.methods.get(device as usize) != Some(&TimingMethod::Cupti) {
            return Err(CudaError::Unavailable(format!(
                "{name} runs library kernels that only CUPTI can see, and this session times GPU {device} with CUDA events; make libcupti loadable (it ships under extras/CUPTI/lib64) or call the library outside the session"
            )));
        }
        let id = {
            let mut rec = lock(&self.rec);
            let site = rec.site(caller);
            let mut touches = crate::buffers::Touches::default();
            for &b in reads {
                rec.buffers.touch(b, AccessMode::Read, &mut touches);
            }
            for &b in writes {
                rec.buffers.touch(b, AccessMode::Write, &mut touches);
            }
            rec.begin_library(name, touches, site)
        };
        super::cupti::record_driver_calls().map_err(CudaError::Timer)?;
        super::cupti::push_external(id).map_err(CudaError::Timer)?;
        // Popped on every exit, a panic in `call` included, so later work is not marked.
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                if let Err(e) = super::cupti::pop_external() {
                    eprintln!("wattlens: {e}");
                }
            }
        }
        let pop = Pop;
        let out = call();
        drop(pop);
        Ok(out)
    }

    /// Wait for all work on `stream`.
    ///
    /// # Errors
    /// [`CudaError::Kernel`] naming the most recent kernel issued, when a kernel faulted.
    #[track_caller]
    pub fn synchronize(&self, stream: &CudaStream) -> Result<(), CudaError> {
        let caller = std::panic::Location::caller();
        let start_ns = self.clock.now_ns();
        stream.synchronize().map_err(|e| self.fault(e))?;
        let end_ns = self.clock.now_ns();
        // The wait goes into the trace: idle-gap analysis names it as the cause of the gap
        // that follows. A stream of a device the session does not profile is only waited on.
        let Ok(device) = self.device_of(stream) else {
            return Ok(());
        };
        let ordinal = self.stream_ordinal(device, stream);
        let mut rec = lock(&self.rec);
        let site = rec.site(caller);
        rec.add_sync(device, ordinal, (start_ns, end_ns), site);
        Ok(())
    }

    /// The trace's ordinal of `stream` on `device`, `u64::MAX` for one nothing was issued on.
    pub(crate) fn stream_ordinal(&self, device: u32, stream: &CudaStream) -> u64 {
        let t = lock(&self.timers);
        t.streams
            .get(&(device, stream.cu_stream() as u64))
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// A fault reported by the driver, attributed to the most recently issued kernel.
    pub(crate) fn fault(&self, e: result::DriverError) -> CudaError {
        let rec = lock(&self.rec);
        let last = (0..rec.issued() as u64)
            .rev()
            .filter_map(|s| rec.op(s))
            .find(|s| s.kind == SpanKind::Kernel);
        match last {
            Some(s) => CudaError::Kernel {
                kernel: format!(
                    "{} (the most recent kernel issued; the fault may be in an earlier one still running)",
                    rec.strings.get(s.name).unwrap_or("?")
                ),
                site: rec.strings.get(s.site).unwrap_or("unknown site").to_owned(),
                message: e.to_string(),
            },
            None => CudaError::Driver {
                what: "synchronising",
                source: e,
            },
        }
    }

    /// Stop the session and build the trace.
    ///
    /// # Errors
    /// [`Aborted`] when the GPU reported a fault or timing failed; it holds the trace
    /// recorded up to then.
    pub fn finish(mut self) -> Result<Finished, Aborted> {
        self.done = true;
        let (finished, error) = self.conclude();
        match error {
            None => Ok(finished),
            Some(error) => Err(Aborted {
                trace: Box::new(finished.trace),
                error,
            }),
        }
    }

    fn conclude(&mut self) -> (Finished, Option<CudaError>) {
        c_abi::deactivate(&self.rec);
        let mut error = lock(&self.timers).failure.take();
        for d in &self.devices {
            if let Err(e) = d.ctx.synchronize() {
                error.get_or_insert_with(|| self.fault(e));
            }
        }
        let mut reports = Vec::new();
        {
            let mut t = lock(&self.timers);
            for timer in &mut t.timers {
                match timer.finish() {
                    Ok(r) => reports.push(r),
                    Err(e) => {
                        error.get_or_insert(CudaError::Timer(e));
                        reports.push(timer.salvage());
                    }
                }
            }
        }
        // Let the power sensors see the tail before stopping.
        let (readings, sampler) = match self.sampler.take() {
            Some(s) => {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let (r, report) = s.stop();
                (r, Some(report))
            }
            None => (Vec::new(), None),
        };
        let mut rec = lock(&self.rec);
        let mut alignments = Vec::new();
        let mut unreadable = 0;
        for report in reports {
            unreadable += report.unreadable;
            for t in report.times {
                rec.set_times(t.seq, t.start_ns, t.end_ns);
            }
            for f in report.foreign {
                let mut span = f.span;
                let label = match f.external.and_then(|e| rec.library_name(e)) {
                    Some(call) => format!("{} (in {call})", f.name),
                    None => format!("{} (not issued through wattlens)", f.name),
                };
                span.name = rec.intern(&label);
                rec.add_foreign(span, f.external);
            }
            alignments.extend(report.alignments);
        }
        rec.attach_unclaimed_sites();
        // Name the first kernel that never completed: the earliest candidate for a fault.
        if let (Some(first), Some(CudaError::Kernel { kernel, site, .. })) =
            (rec.first_untimed(SpanKind::Kernel), &mut error)
        {
            let name = rec.strings.get(first.name).unwrap_or("?");
            *kernel = format!("{name} (the first kernel that did not complete)");
            *site = rec
                .strings
                .get(first.site)
                .unwrap_or("unknown site")
                .to_owned();
        }
        let (spans, untimed) = rec.take_spans();
        let strings = std::mem::take(&mut rec.strings);
        let annotations = std::mem::take(&mut rec.annotations);
        drop(rec);
        let meta = RunMeta {
            tool_version: concat!("wattlens-runtime ", env!("CARGO_PKG_VERSION")).to_owned(),
            simulated: false,
            host: RunMeta::this_host(),
            command: self.config.command.clone(),
            start_unix_ns: self.start_unix_ns,
            driver: self.driver.clone(),
            devices: self.devices.iter().map(|d| d.info.clone()).collect(),
            sensor_profile: self.config.profile.clone(),
        };
        let mut trace = Trace::new(meta);
        trace.strings = strings;
        trace.spans = spans;
        let mut readings: Vec<PowerReading> = readings;
        readings.sort_by_key(PowerReading::ts_ns);
        trace.power = readings;
        trace.kernel_facts = self.config.facts.clone();
        trace.alignments = alignments;
        trace.annotations = annotations;
        if let Some(s) = &sampler {
            trace.alignments.extend(s.alignments.iter().cloned());
        }
        (
            Finished {
                trace,
                timing: self.methods.clone(),
                untimed,
                unreadable,
                sampler,
                alone: lock(&self.alone).report.clone(),
            },
            error,
        )
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let (finished, _) = self.conclude();
        if let Some(path) = self.config.trace_path.clone() {
            if let Ok(file) = std::fs::File::create(&path) {
                let _ = wattlens_instrument::TraceWriter::write_trace(
                    std::io::BufWriter::new(file),
                    &finished.trace,
                );
            }
        }
    }
}

/// Parameter sizes of `func`, where the driver can report them (CUDA 12.4 and later).
fn param_sizes(func: &CudaFunction) -> Option<Vec<usize>> {
    let mut sizes = Vec::new();
    for i in 0..4096usize {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: a live function handle and valid out-pointers; an index past the last
        // parameter returns an error, which ends the loop.
        let r = unsafe { sys::cuFuncGetParamInfo(func.cu_function(), i, &mut offset, &mut size) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return if i == 0 && r != sys::CUresult::CUDA_ERROR_INVALID_VALUE {
                None
            } else {
                Some(sizes)
            };
        }
        sizes.push(size);
    }
    Some(sizes)
}
