//! The NVML power source: the samples ring, the energy counter, the instant-power fields.
//!
//! Capabilities are detected once, when the source opens; a query a GPU does not support
//! becomes a flag, never an error. Reads are scheduled to fit a CPU budget: the ring is
//! drained in one call well before it overflows, and the energy counter (with the instant
//! fields, in the same call) is read every few updates, just after an update, keeping locked
//! to the update grid with short bursts (see [`CounterScheduler`]).

mod backend;
mod fake;
#[cfg(feature = "nvml")]
mod real;
mod selection;

pub use backend::{
    FieldValue, NvmlBackend, NvmlCallError, NvmlIdentity, FIELD_ENERGY, FIELD_POWER_INSTANT,
    SCOPE_GPU, SCOPE_MEMORY,
};
pub use fake::{FakeNvml, FakeNvmlDevice, FAKE_DRAIN_NS, FAKE_FIELD_READ_NS};
#[cfg(feature = "nvml")]
pub use real::RealNvml;
pub use selection::{resolve_selection, DeviceSelection};

use std::sync::Arc;

use super::{CounterRead, CounterScheduler, PowerError, PowerSource};
use crate::clock::Clock;
use crate::sensor_profile::SensorProfile;
use crate::trace::{ClockAlignment, ClockSource, DeviceInfo, PowerReading};

/// Share of one CPU core the sampler may use, by default.
pub const DEFAULT_CPU_BUDGET: f64 = 0.008;
/// The sampler's CPU budget while kernel replay runs (`wattlens run --replay`): enough to
/// read the energy counter at every update (a read costs up to 4.5 ms on an H100), so that
/// each replay burst of four counter periods holds whole counter windows. The program is held
/// during the bursts anyway, and replay is opt-in.
pub const REPLAY_CPU_BUDGET: f64 = 0.06;
/// Drain the samples ring this often, ns (the H200's ring holds about 2.4 s).
pub const DRAIN_PERIOD_NS: u64 = 1_000_000_000;
/// Read the counter this long after its update, ns: mid-period, as far from either update as
/// can be (the read snaps to the fitted grid, so staleness costs nothing). Measured on an
/// H100 under load: a read 5 ms after an update takes ~12 ms, one mid-period ~2.5 ms.
pub const READ_LEAD_NS: u64 = 50_000_000;
/// Re-lock onto the counter's updates this often, ns.
pub const RELOCK_EVERY_NS: u64 = 10_000_000_000;
/// Clock-alignment points kept per GPU; past this they are thinned out evenly.
const MAX_CLOCK_POINTS: usize = 1024;
/// Points the NVML→trace offset is fitted on.
const RECENT_CLOCK_POINTS: usize = 64;
/// A jump between consecutive samples wider than this many periods means lost samples.
pub const GAP_PERIODS: u64 = 3;

/// What one GPU's NVML offers, found once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// `nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)`.
    pub samples: bool,
    /// The total energy counter (field 83).
    pub energy: bool,
    /// Instant power of the whole GPU (field 186, GPU scope).
    pub instant: bool,
    /// Instant power of the memory (field 186, memory scope).
    pub memory_instant: bool,
}

/// How the sampler reads one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadPlan {
    /// CPU time of one field read measured at start-up, ns.
    pub field_read_ns: u64,
    /// CPU time of one ring drain measured at start-up, ns.
    pub drain_ns: u64,
    /// Read the counter every this many updates.
    pub counter_stride: u32,
}

impl ReadPlan {
    /// The sparsest plan that fits `budget` (share of a core): drains every
    /// [`DRAIN_PERIOD_NS`], a counter read every `stride` counter periods.
    pub fn fit(field_read_ns: u64, drain_ns: u64, counter_period_ns: u64, budget: f64) -> Self {
        let drain_share = drain_ns as f64 / DRAIN_PERIOD_NS as f64;
        // Re-lock bursts: about 4 reads each.
        let relock_share = 4.0 * field_read_ns as f64 / RELOCK_EVERY_NS as f64;
        let left = (budget - drain_share - relock_share).max(1e-6);
        let stride = (field_read_ns as f64 / (left * counter_period_ns.max(1) as f64)).ceil();
        Self {
            field_read_ns,
            drain_ns,
            counter_stride: stride.clamp(1.0, 50.0) as u32,
        }
    }
}

/// One GPU the source reads.
struct Gpu {
    info: DeviceInfo,
    nvml_index: u32,
    caps: Capabilities,
    plan: ReadPlan,
    scheduler: CounterScheduler,
    next_drain_ns: u64,
    last_sample_us: u64,
    last_sample_ns: Option<u64>,
    last_good_ns: u64,
    lost: bool,
    /// (NVML ns, trace ns, half the read's duration) for the clock alignment.
    points: Vec<(u64, u64, u64)>,
}

/// Power readings of one or more GPUs through NVML.
pub struct NvmlSource<B: NvmlBackend> {
    backend: B,
    clock: Arc<dyn Clock + Send + Sync>,
    profile: SensorProfile,
    gpus: Vec<Gpu>,
    infos: Vec<DeviceInfo>,
    driver: Option<String>,
    /// Offset from NVML's µs clock to the trace clock, ns (re-fitted as points arrive).
    offset_ns: i64,
    /// Share of one core the reads may use.
    cpu_budget: f64,
}

fn backend_error(e: &NvmlCallError) -> PowerError {
    match e {
        NvmlCallError::Library(why) => PowerError::Unavailable(format!(
            "NVML could not be loaded ({why}); install the NVIDIA driver, or run `wattlens demo --simulate` to use the simulated GPU"
        )),
        other => PowerError::Backend {
            backend: "NVML",
            reason: other.to_string(),
        },
    }
}

impl<B: NvmlBackend> NvmlSource<B> {
    /// Open the GPUs in `selection`, detect what each supports and plan the reads within
    /// `cpu_budget` (share of one core).
    ///
    /// # Errors
    /// [`PowerError::Unavailable`] without NVML or without any GPU; [`PowerError::Backend`]
    /// when a selected GPU cannot be opened.
    pub fn open(
        mut backend: B,
        selection: &DeviceSelection,
        clock: Arc<dyn Clock + Send + Sync>,
        profile: SensorProfile,
        cpu_budget: f64,
    ) -> Result<Self, PowerError> {
        let count = backend.device_count().map_err(|e| backend_error(&e))?;
        let mut identities = Vec::with_capacity(count as usize);
        for i in 0..count {
            identities.push(backend.identity(i).map_err(|e| backend_error(&e))?);
        }
        let chosen = resolve_selection(selection, &identities)?;
        let driver = backend.driver_version().ok();
        let mut gpus = Vec::with_capacity(chosen.len());
        for (trace_index, nvml_index) in chosen.into_iter().enumerate() {
            let id = &identities[nvml_index as usize];
            let (caps, plan) = probe(&mut backend, nvml_index, &*clock, &profile, cpu_budget);
            let info = DeviceInfo {
                index: trace_index as u32,
                name: id.name.clone(),
                uuid: id.uuid.clone(),
                sm_count: id.sm_count,
                power_limit_mw: id.power_limit_mw.unwrap_or(0),
            };
            gpus.push(Gpu {
                info,
                nvml_index,
                caps,
                plan,
                scheduler: CounterScheduler::new(
                    profile.counter_period_ns,
                    plan.counter_stride,
                    READ_LEAD_NS,
                    RELOCK_EVERY_NS,
                ),
                next_drain_ns: 0,
                last_sample_us: 0,
                last_sample_ns: None,
                last_good_ns: clock.now_ns(),
                lost: false,
                points: Vec::new(),
            });
        }
        let infos = gpus.iter().map(|g| g.info.clone()).collect();
        Ok(Self {
            backend,
            clock,
            profile,
            gpus,
            infos,
            driver,
            offset_ns: 0,
            cpu_budget,
        })
    }

    /// The driver version NVML reported.
    pub fn driver(&self) -> Option<&str> {
        self.driver.as_deref()
    }

    /// What each opened GPU supports, in trace-index order.
    pub fn capabilities(&self) -> Vec<Capabilities> {
        self.gpus.iter().map(|g| g.caps).collect()
    }

    /// The read plan of each opened GPU, in trace-index order.
    pub fn plans(&self) -> Vec<ReadPlan> {
        self.gpus.iter().map(|g| g.plan).collect()
    }

    fn to_trace_ns(&self, nvml_us: u64) -> u64 {
        (nvml_us as i64 * 1000 + self.offset_ns).max(0) as u64
    }

    /// Drain new samples of GPU `k`; record a gap when the ring overflowed.
    fn drain(&mut self, k: usize, out: &mut Vec<PowerReading>) -> Result<(), NvmlCallError> {
        let (nvml_index, since) = (self.gpus[k].nvml_index, self.gpus[k].last_sample_us);
        let samples = match self.backend.power_samples(nvml_index, since) {
            Ok(s) => s,
            Err(NvmlCallError::NotFound) => Vec::new(),
            Err(e) => return Err(e),
        };
        let gap_ns = GAP_PERIODS * self.profile.sample_period_ns;
        let device = self.gpus[k].info.index;
        for (ts_us, power_mw) in samples {
            if ts_us <= self.gpus[k].last_sample_us {
                continue;
            }
            let ts_ns = self.to_trace_ns(ts_us);
            if let Some(prev) = self.gpus[k].last_sample_ns {
                if ts_ns.saturating_sub(prev) > gap_ns {
                    out.push(PowerReading::Lost {
                        device,
                        from_ns: prev,
                        to_ns: ts_ns,
                    });
                }
            }
            out.push(PowerReading::Sample {
                device,
                ts_ns,
                raw_ts_us: ts_us,
                power_mw,
            });
            let g = &mut self.gpus[k];
            g.last_sample_us = ts_us;
            g.last_sample_ns = Some(ts_ns);
        }
        Ok(())
    }

    /// Read the counter and instant fields of GPU `k` in one call.
    fn read_fields(&mut self, k: usize, out: &mut Vec<PowerReading>) -> Result<(), NvmlCallError> {
        let caps = self.gpus[k].caps;
        let mut fields = Vec::with_capacity(3);
        if caps.energy {
            fields.push((FIELD_ENERGY, SCOPE_GPU));
        }
        if caps.instant {
            fields.push((FIELD_POWER_INSTANT, SCOPE_GPU));
        }
        if caps.memory_instant {
            fields.push((FIELD_POWER_INSTANT, SCOPE_MEMORY));
        }
        if fields.is_empty() {
            return Ok(());
        }
        let t0 = self.clock.now_ns();
        let values = self
            .backend
            .field_values(self.gpus[k].nvml_index, &fields)?;
        let t1 = self.clock.now_ns();
        let read_ns = u32::try_from(t1.saturating_sub(t0)).unwrap_or(u32::MAX);
        self.adapt_plan(k, t1.saturating_sub(t0));
        let device = self.gpus[k].info.index;
        // One clock point per read: NVML stamps every field of a call alike.
        if let Some(ts_us) = values.iter().map(|v| v.ts_us).find(|&t| t > 0) {
            let points = &mut self.gpus[k].points;
            if points.len() >= MAX_CLOCK_POINTS {
                // Thin out evenly rather than grow: the evidence keeps its whole span.
                let mut i = 0;
                points.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
            }
            points.push((ts_us as u64 * 1000, t0 / 2 + t1 / 2, (t1 - t0) / 2));
        }
        for v in values {
            let Ok(value) = v.value else { continue };
            match (v.field, v.scope) {
                (FIELD_ENERGY, _) => {
                    out.push(PowerReading::Energy {
                        device,
                        ts_ns: t0,
                        read_ns,
                        energy_mj: value,
                    });
                    self.gpus[k].scheduler.observe(CounterRead {
                        start_ns: t0,
                        end_ns: t1,
                        energy_mj: value,
                    });
                }
                (FIELD_POWER_INSTANT, SCOPE_MEMORY) => out.push(PowerReading::MemoryInstant {
                    device,
                    ts_ns: t0,
                    read_ns,
                    power_mw: u32::try_from(value).unwrap_or(u32::MAX),
                }),
                (FIELD_POWER_INSTANT, _) => out.push(PowerReading::Instant {
                    device,
                    ts_ns: t0,
                    read_ns,
                    power_mw: u32::try_from(value).unwrap_or(u32::MAX),
                }),
                _ => {}
            }
        }
        self.refit_offset();
        Ok(())
    }

    /// Follow the read cost as it changes (reads cost several times more while the GPU is
    /// busy): a moving average of the read's wall time, which bounds its CPU time, re-fits
    /// the stride so the sampler stays within its budget.
    fn adapt_plan(&mut self, k: usize, read_ns: u64) {
        let g = &mut self.gpus[k];
        let avg = (g.plan.field_read_ns * 7 + read_ns) / 8;
        g.plan = ReadPlan::fit(
            avg.max(1),
            g.plan.drain_ns,
            self.profile.counter_period_ns,
            self.cpu_budget,
        );
        g.scheduler.set_stride(g.plan.counter_stride);
    }

    /// The NVML→trace offset: the median over the most recent alignment points of all GPUs
    /// (the host clocks may be slewed; old points say less about now).
    fn refit_offset(&mut self) {
        let mut d: Vec<i64> = self
            .gpus
            .iter()
            .flat_map(|g| g.points[g.points.len().saturating_sub(RECENT_CLOCK_POINTS)..].iter())
            .map(|&(n, t, _)| t as i64 - n as i64)
            .collect();
        if d.is_empty() {
            return;
        }
        d.sort_unstable();
        self.offset_ns = d[d.len() / 2];
    }

    fn poll_gpu(
        &mut self,
        k: usize,
        now_ns: u64,
        force: bool,
        out: &mut Vec<PowerReading>,
    ) -> Result<(), NvmlCallError> {
        if self.gpus[k].caps.samples && (force || now_ns >= self.gpus[k].next_drain_ns) {
            self.drain(k, out)?;
            self.gpus[k].next_drain_ns = now_ns + DRAIN_PERIOD_NS;
        }
        let due = self.gpus[k].scheduler.next_read_ns(now_ns);
        if force || now_ns >= due {
            // During a lock burst the scheduler asks for the next read at once: the caller
            // polls again immediately (see `next_poll_ns`).
            self.read_fields(k, out)?;
        }
        self.gpus[k].last_good_ns = now_ns;
        Ok(())
    }
}

/// Find what GPU `nvml_index` supports and what its reads cost.
fn probe<B: NvmlBackend>(
    backend: &mut B,
    nvml_index: u32,
    clock: &dyn Clock,
    profile: &SensorProfile,
    budget: f64,
) -> (Capabilities, ReadPlan) {
    let samples = matches!(
        backend.power_samples(nvml_index, 0),
        Ok(_) | Err(NvmlCallError::NotFound)
    );
    // Time a second drain of a full ring: the first call can carry NVML's one-off set-up.
    let t0 = clock.now_ns();
    let _ = backend.power_samples(nvml_index, 0);
    let drain_ns = clock.now_ns() - t0;
    let fields = [
        (FIELD_ENERGY, SCOPE_GPU),
        (FIELD_POWER_INSTANT, SCOPE_GPU),
        (FIELD_POWER_INSTANT, SCOPE_MEMORY),
    ];
    let values = backend
        .field_values(nvml_index, &fields)
        .unwrap_or_default();
    // Time a second read: the first can carry NVML's one-off set-up.
    let t1 = clock.now_ns();
    let _ = backend.field_values(nvml_index, &fields);
    let t2 = clock.now_ns();
    let ok = |f: u32, s: u32| {
        values
            .iter()
            .any(|v| v.field == f && v.scope == s && v.value.is_ok())
    };
    let caps = Capabilities {
        samples,
        energy: ok(FIELD_ENERGY, SCOPE_GPU),
        instant: ok(FIELD_POWER_INSTANT, SCOPE_GPU),
        memory_instant: ok(FIELD_POWER_INSTANT, SCOPE_MEMORY),
    };
    let plan = ReadPlan::fit(
        (t2 - t1).max(1),
        drain_ns.max(1),
        profile.counter_period_ns,
        budget,
    );
    (caps, plan)
}

impl<B: NvmlBackend> PowerSource for NvmlSource<B> {
    fn devices(&self) -> &[DeviceInfo] {
        &self.infos
    }

    fn profile(&self) -> &SensorProfile {
        &self.profile
    }

    fn simulated(&self) -> bool {
        false
    }

    fn poll(&mut self, now_ns: u64, out: &mut Vec<PowerReading>) -> Result<(), PowerError> {
        self.poll_all(now_ns, false, out)
    }

    fn flush(&mut self, now_ns: u64, out: &mut Vec<PowerReading>) -> Result<(), PowerError> {
        self.poll_all(now_ns, true, out)
    }

    fn next_poll_ns(&self, now_ns: u64) -> u64 {
        self.gpus
            .iter()
            .filter(|g| !g.lost)
            .flat_map(|g| {
                let drain = if g.caps.samples {
                    g.next_drain_ns
                } else {
                    u64::MAX
                };
                let read = if g.caps.energy || g.caps.instant {
                    g.scheduler.next_read_ns(now_ns)
                } else {
                    u64::MAX
                };
                [drain, read]
            })
            .min()
            .unwrap_or(now_ns + DRAIN_PERIOD_NS)
    }

    fn alignments(&self) -> Vec<ClockAlignment> {
        self.gpus
            .iter()
            .filter(|g| !g.points.is_empty())
            .map(|g| {
                let worst = g
                    .points
                    .iter()
                    .map(|&(n, t, half)| {
                        (t as i64 - (n as i64 + self.offset_ns)).unsigned_abs() + half
                    })
                    .max()
                    .unwrap_or(0);
                // Keep the evidence small: at most 64 points, evenly spread.
                let step = g.points.len().div_ceil(64).max(1);
                ClockAlignment {
                    source: ClockSource::Nvml,
                    device: g.info.index,
                    offset_ns: self.offset_ns,
                    drift_ppb: 0,
                    error_bound_ns: worst + 1000,
                    points: g
                        .points
                        .iter()
                        .step_by(step)
                        .map(|&(n, t, _)| (n, t))
                        .collect(),
                }
            })
            .collect()
    }
}

impl<B: NvmlBackend> NvmlSource<B> {
    fn poll_all(
        &mut self,
        now_ns: u64,
        force: bool,
        out: &mut Vec<PowerReading>,
    ) -> Result<(), PowerError> {
        let mut failure = None;
        for k in 0..self.gpus.len() {
            if self.gpus[k].lost {
                continue;
            }
            if let Err(e) = self.poll_gpu(k, now_ns, force, out) {
                let g = &mut self.gpus[k];
                let device = g.info.index;
                if e == NvmlCallError::GpuLost {
                    g.lost = true;
                    out.push(PowerReading::Lost {
                        device,
                        from_ns: g.last_good_ns,
                        to_ns: u64::MAX,
                    });
                    failure = Some(PowerError::DeviceLost {
                        device,
                        name: g.info.name.clone(),
                    });
                } else {
                    failure = Some(PowerError::Backend {
                        backend: "NVML",
                        reason: format!("device {device}: {e}"),
                    });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Open the real NVML for the GPUs in `selection`, reading within `cpu_budget` (share of a
/// core; [`DEFAULT_CPU_BUDGET`] for profiling runs).
///
/// # Errors
/// [`PowerError::Unavailable`] without a driver or GPU, [`PowerError::NotEnabled`] when this
/// build has no NVML support.
#[cfg(feature = "nvml")]
pub fn open_nvml(
    selection: &DeviceSelection,
    clock: Arc<dyn Clock + Send + Sync>,
    profile: SensorProfile,
    cpu_budget: f64,
) -> Result<NvmlSource<RealNvml>, PowerError> {
    let backend = RealNvml::open().map_err(|e| backend_error(&e))?;
    NvmlSource::open(backend, selection, clock, profile, cpu_budget)
}

/// The enforced power limit of each GPU named by UUID (in that order), mW, as NVML reports
/// it: `None` for a GPU NVML does not list or whose limit it cannot read.
pub fn power_limits_mw<B: NvmlBackend>(backend: &B, uuids: &[String]) -> Vec<Option<u32>> {
    let count = backend.device_count().unwrap_or(0);
    let ids: Vec<NvmlIdentity> = (0..count)
        .filter_map(|i| backend.identity(i).ok())
        .collect();
    uuids
        .iter()
        .map(|u| {
            ids.iter()
                .find(|id| !u.is_empty() && id.uuid == *u)
                .and_then(|id| id.power_limit_mw)
        })
        .collect()
}

/// [`power_limits_mw`] of the real NVML; all `None` without it.
#[cfg(feature = "nvml")]
pub fn real_power_limits_mw(uuids: &[String]) -> Vec<Option<u32>> {
    match RealNvml::open() {
        Ok(backend) => power_limits_mw(&backend, uuids),
        Err(_) => vec![None; uuids.len()],
    }
}

/// [`power_limits_mw`] of the real NVML (compiled out of this build: all `None`).
#[cfg(not(feature = "nvml"))]
pub fn real_power_limits_mw(uuids: &[String]) -> Vec<Option<u32>> {
    vec![None; uuids.len()]
}

/// Open the real NVML (compiled out of this build: always an error).
///
/// # Errors
/// Always [`PowerError::NotEnabled`].
#[cfg(not(feature = "nvml"))]
pub fn open_nvml(
    _selection: &DeviceSelection,
    _clock: Arc<dyn Clock + Send + Sync>,
    _profile: SensorProfile,
    _cpu_budget: f64,
) -> Result<NvmlSource<FakeNvml>, PowerError> {
    Err(PowerError::NotEnabled("NVML"))
}
