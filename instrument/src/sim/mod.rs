//! The simulated GPU: runs a [`Workload`] against a ground-truth power model and reports it
//! through sensors that behave like the H200's, deterministically under a seed.
//!
//! Everything it produces is marked simulated ([`crate::RunMeta::simulated`]). It is the
//! embedded default when no NVIDIA GPU is present, and the test bed for attribution: the
//! [`GroundTruth`] it returns says what the sensors should have seen.

mod demo;
mod gpu;
mod random;
mod rng;
mod schedule;
mod sensor;
mod signal;
mod workload;

pub use demo::demo_workload;
pub use gpu::GpuModel;
pub use random::{random_workload, LONG_MAX_NS, LONG_MIN_NS, SHORT_MAX_NS, SHORT_MIN_NS};
pub use rng::SimRng;
pub use signal::PowerSignal;
pub use workload::{KernelSpec, ReplaySpec, TransferSpec, WorkItem, Workload};

use std::collections::BTreeMap;

use crate::intervals::Interval;
use crate::sensor_profile::SensorProfile;
use crate::trace::{
    ClockAlignment, ClockSource, DeviceInfo, KernelFacts, RunMeta, Span, SpanKind, StrId, Trace,
};

/// Resolution of the ground-truth grid, ns.
pub const TRUTH_CELL_NS: u64 = 10_000;

/// A simulation's trace and the truth behind it.
#[derive(Debug, Clone)]
pub struct SimRun {
    /// What wattlens would have recorded.
    pub trace: Trace,
    /// What really happened.
    pub truth: GroundTruth,
}

/// The simulator's ground truth.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// Trace-clock time of relative time 0, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// True power over time.
    pub signal: PowerSignal,
    /// True idle power, mW.
    pub idle_mw: u32,
    /// True dynamic energy of each span from its own work alone (same order as the trace's
    /// spans), mJ.
    pub span_dynamic_mj: Vec<f64>,
    /// True energy above idle while each span ran: its own dynamic energy plus its share of
    /// the thermal leakage present then (what "dynamic" means once idle is measured), mJ.
    pub span_above_idle_mj: Vec<f64>,
    /// True update instant of each energy-counter reading, in reading order.
    pub counter_update_ns: Vec<u64>,
    /// Energy of the thermal tail (leakage above idle caused by load), mJ.
    pub thermal_mj: f64,
}

impl GroundTruth {
    /// True energy between two trace-clock instants, mJ.
    pub fn energy_between_mj(&self, t0_ns: u64, t1_ns: u64) -> f64 {
        let rel = |t: u64| t.saturating_sub(self.start_unix_ns);
        self.signal.energy_mj(rel(t1_ns)) - self.signal.energy_mj(rel(t0_ns))
    }
}

/// Run `workload` on the simulated GPU and record it as wattlens would, with the sampler on
/// its default CPU budget.
pub fn simulate(
    workload: &Workload,
    gpu: &GpuModel,
    profile: &SensorProfile,
    seed: u64,
    start_unix_ns: u64,
) -> SimRun {
    simulate_with_budget(
        workload,
        gpu,
        profile,
        seed,
        start_unix_ns,
        crate::power::nvml::DEFAULT_CPU_BUDGET,
    )
}

/// [`simulate`] with the sampler reading within `cpu_budget` (share of one core), as
/// `wattlens calibrate` does with its denser reads.
pub fn simulate_with_budget(
    workload: &Workload,
    gpu: &GpuModel,
    profile: &SensorProfile,
    seed: u64,
    start_unix_ns: u64,
    cpu_budget: f64,
) -> SimRun {
    let schedule::Schedule {
        spans: scheduled,
        total_ns,
        episodes,
    } = schedule::schedule(workload);
    let regions = schedule::derive_regions(&scheduled);
    let (signal, thermal_mj) = signal::PowerSignal::build(&scheduled, total_ns, gpu, TRUTH_CELL_NS);
    let mut rng = SimRng::new(seed);
    let sensors = sensor::read_sensors(&signal, profile, 0, start_unix_ns, cpu_budget, &mut rng);

    let meta = sim_meta(workload, gpu, profile, seed, start_unix_ns);
    let mut b = SimTraceBuilder {
        trace: Trace::new(meta),
        start_unix_ns,
        span_dynamic_mj: Vec::with_capacity(scheduled.len() + regions.len()),
        span_above_idle_mj: Vec::with_capacity(scheduled.len() + regions.len()),
        facts: BTreeMap::new(),
    };
    for s in &scheduled {
        // The profiler's own copies: power the sensors see, but no span.
        if !(s.kind == SpanKind::Idle && s.name == schedule::CHECKPOINT) {
            b.push_work(s, &signal);
        }
    }
    for r in &regions {
        b.push_region(r);
    }
    let SimTraceBuilder {
        mut trace,
        span_dynamic_mj,
        span_above_idle_mj,
        facts,
        ..
    } = b;
    trace.annotations.extend(
        episodes
            .iter()
            .map(|e| crate::trace::Annotation::ProfilerEpisode {
                device: 0,
                from_ns: start_unix_ns + e.from_ns,
                to_ns: start_unix_ns + e.to_ns,
            }),
    );
    trace.kernel_facts = facts.into_values().collect();
    trace.power = sensors.readings;
    trace.alignments.push(ClockAlignment {
        source: ClockSource::Simulated,
        device: 0,
        offset_ns: 0,
        drift_ppb: 0,
        error_bound_ns: 0,
        points: vec![(0, start_unix_ns), (total_ns, start_unix_ns + total_ns)],
    });
    let truth = GroundTruth {
        start_unix_ns,
        signal,
        idle_mw: gpu.idle_mw,
        span_dynamic_mj,
        span_above_idle_mj,
        counter_update_ns: sensors.counter_update_ns,
        thermal_mj,
    };
    SimRun { trace, truth }
}

/// The run metadata of a simulated run of `workload` on `gpu`.
fn sim_meta(
    workload: &Workload,
    gpu: &GpuModel,
    profile: &SensorProfile,
    seed: u64,
    start_unix_ns: u64,
) -> RunMeta {
    RunMeta {
        tool_version: concat!("wattlens-instrument ", env!("CARGO_PKG_VERSION")).to_owned(),
        simulated: true,
        host: "simulated-gpu".to_owned(),
        command: vec!["simulate".to_owned(), workload.name.clone()],
        start_unix_ns,
        driver: None,
        devices: vec![DeviceInfo {
            index: 0,
            name: gpu.name.clone(),
            uuid: format!("GPU-SIMULATED-{seed:016x}"),
            sm_count: gpu.sm_count,
            power_limit_mw: gpu.power_limit_mw,
        }],
        sensor_profile: profile.clone(),
    }
}

/// A simulated run's trace as its spans are added, with each span's true energies beside it.
struct SimTraceBuilder {
    trace: Trace,
    /// Where the simulated clock's zero lies on the trace clock, ns.
    start_unix_ns: u64,
    /// Per span: its own dynamic power × duration, mJ.
    span_dynamic_mj: Vec<f64>,
    /// Per span: the energy above idle the signal drew while it ran, mJ.
    span_above_idle_mj: Vec<f64>,
    /// Per kernel name: its facts (its op class).
    facts: BTreeMap<String, KernelFacts>,
}

impl SimTraceBuilder {
    /// The id the next span gets.
    fn next_id(&self) -> u64 {
        self.trace.spans.len() as u64
    }

    /// Simulated instant `t_ns` on the trace clock.
    fn at(&self, t_ns: u64) -> u64 {
        self.start_unix_ns + t_ns
    }

    /// Add scheduled work `s`: a kernel, copy, sync or replay burst.
    fn push_work(&mut self, s: &schedule::Scheduled, signal: &signal::PowerSignal) {
        let region = if s.region.is_empty() {
            StrId::NONE
        } else {
            self.trace.strings.id(&s.region)
        };
        let name = self.trace.strings.id(&s.name);
        if let Some(op_class) = s.op_class {
            self.facts
                .entry(s.name.clone())
                .or_insert_with(|| KernelFacts {
                    op_class,
                    ..KernelFacts::unknown(&s.name, 0)
                });
        }
        // A burst measured alone replays the last launch of its kernel.
        let kind = match s.kind {
            SpanKind::Alone { launches, .. } => SpanKind::Alone {
                launches,
                of: self
                    .trace
                    .spans
                    .iter()
                    .rev()
                    .find(|p| p.kind == SpanKind::Kernel && p.name == name && p.launch == s.launch)
                    .map_or(u64::MAX, |p| p.id),
            },
            k => k,
        };
        let span = Span {
            launch: s.launch,
            region,
            host_call_ns: s
                .host_call_ns
                .map(|c| Interval::new(self.at(c.from_ns), self.at(c.to_ns))),
            ..Span::new(
                self.next_id(),
                kind,
                (0, u64::from(s.stream)),
                name,
                (self.at(s.start_ns), self.at(s.end_ns)),
            )
        };
        self.trace.spans.push(span);
        self.span_dynamic_mj
            .push(f64::from(s.dynamic_mw) * s.end_ns.saturating_sub(s.start_ns) as f64 * 1e-9);
        self.span_above_idle_mj.push(signal.above_idle_mj(
            s.start_ns,
            s.end_ns,
            f64::from(s.dynamic_mw),
        ));
    }

    /// Add region `r`, whose region is its own full path, as the runtime and `wattlens run`
    /// record it.
    fn push_region(&mut self, r: &schedule::DerivedRegion) {
        let name = self.trace.strings.id(&r.name);
        let region = if r.parent.is_empty() {
            name
        } else {
            self.trace.strings.id(&format!("{}/{}", r.parent, r.name))
        };
        let span = Span {
            region,
            ..Span::new(
                self.next_id(),
                SpanKind::Region { depth: r.depth },
                (0, u64::from(r.stream)),
                name,
                (self.at(r.start_ns), self.at(r.end_ns)),
            )
        };
        self.trace.spans.push(span);
        self.span_dynamic_mj.push(0.0);
        self.span_above_idle_mj.push(0.0);
    }
}
