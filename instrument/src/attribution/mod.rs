//! Attribution: from a trace to joules per kernel signature and per operator class.
//!
//! 1. **Idle (static) power** is measured in the run itself: counter windows with no device
//!    work in them or in the [`SETTLE_NS`] before them, before the work; the level after the
//!    work (idle plus the thermal tail) is reported beside it.
//! 2. **Dynamic power per signature** (name + launch shape), tied across all its launches, by
//!    non-negative weighted least squares over every observation with work in reach: counter
//!    windows (exact integrals) and power samples (modelled through the sensor's first-order
//!    response). Concurrent spans each add their own term, so overlapping streams share.
//! 3. **Long spans** (at least [`LONG_SPAN_SAMPLE_PERIODS`] sample periods) are integrated
//!    directly from the samples with the sensor response undone (`∫s + τ·Δs`), minus what the
//!    concurrent spans drew; short spans get their signature's power × their duration.
//! 4. **Uncertainty**: the regression covariance plus the idle estimate's variance (and, for
//!    integrated spans, the sample noise), propagated to every span, signature, op class and
//!    region; every number gets a 95% CI and a [`Coverage`] label.
//! 5. **Static share**: idle power × each span's time, split evenly among concurrent spans.
//! 6. **Closure**: counter energy vs. idle + attributed dynamic energy.

mod design;
mod estimate;
mod idle;
mod light;
pub use idle::IdleSource;
pub use light::LIGHT_DEFINITION;
mod linalg;
pub mod profiler_cost;
mod regression;
mod replay;
mod requests;
mod rollup;
mod samples;
mod shares;

pub use estimate::{Coverage, EnergyEstimate, PowerEstimate};
pub use replay::{ReplayClosure, ReplayNoteEntry, ReplaySummary};
pub use requests::{
    clean_path, RangeEnergy, RequestEnergy, RequestReport, SplitRule, REQUEST_DEFINITION,
};

use serde::{Deserialize, Serialize};

use crate::intervals::Interval;
use crate::power::counter_windows;
use std::collections::BTreeMap;

use crate::trace::{LaunchShape, OpClass, PowerReading, SpanKind, StrId, Trace};
use design::Design;
use regression::Fit;
use rollup::{Rollup, SpanPart};

/// Windows this close after device work are not used for the idle baseline (sensor and
/// thermal settling), ns.
pub const SETTLE_NS: u64 = 100_000_000;

/// Quiet windows needed before the work to take the idle baseline from them alone.
pub const MIN_BASELINE_WINDOWS: usize = 3;

/// Spans at least this many sample periods long are integrated directly from the samples.
pub const LONG_SPAN_SAMPLE_PERIODS: u64 = 5;

/// Integration stops trusting the samples across a gap wider than this many sample periods.
pub const GAP_SAMPLE_PERIODS: u64 = 3;

/// Why a trace could not be attributed.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The device index is not in the trace.
    #[error("device {0} is not in the trace; pick one of the devices listed in its metadata")]
    NoSuchDevice(u32),
    /// Too few counter readings to form windows.
    #[error("device {0} has fewer than two energy-counter changes in the trace, so no energy can be measured; record for at least 200 ms")]
    NoCounter(u32),
    /// No window free of work to measure idle power in.
    #[error("device {0} has no idle counter window (no 100 ms without device work), so static power cannot be measured; leave the GPU idle for half a second before or after the work")]
    NoIdle(u32),
}

/// Energy of one kernel signature (or copy/memset label) on one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureEnergy {
    /// Kernel name or copy label.
    pub name: String,
    /// Span kind label: kernel, memcpy or memset.
    pub kind: String,
    /// Launch shape (kernels).
    pub launch: Option<LaunchShape>,
    /// Operator class.
    pub op_class: OpClass,
    /// Number of spans.
    pub launches: u64,
    /// Total busy time, ns.
    pub busy_ns: u64,
    /// Busy time inside counter windows, ns.
    pub covered_ns: u64,
    /// Dynamic power while running, above idle.
    pub dynamic_power: PowerEstimate,
    /// Dynamic energy of all its spans.
    pub dynamic: EnergyEstimate,
    /// Its share of static (idle) energy.
    pub static_share: EnergyEstimate,
    /// Dynamic plus static energy of one launch, on average.
    pub per_launch: EnergyEstimate,
    /// Launches the profiler replayed alone to measure this signature's power (kernel replay;
    /// not counted in `launches`), 0 where none.
    #[serde(default)]
    pub alone_launches: u64,
    /// Time those replays took on the device, ns.
    #[serde(default)]
    pub alone_ns: u64,
}

/// Energy of one operator class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpEnergy {
    /// Operator class.
    pub op_class: OpClass,
    /// Number of spans.
    pub launches: u64,
    /// Total busy time, ns.
    pub busy_ns: u64,
    /// Dynamic energy, with the covariance between its signatures accounted for.
    pub dynamic: EnergyEstimate,
    /// Share of static energy.
    pub static_share: EnergyEstimate,
}

/// Whether attributed energy adds up to what the counter measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Closure {
    /// The first counter change, ns (trace clock).
    #[serde(default)]
    pub start_ns: u64,
    /// Time from the first to the last counter change, ns.
    pub window_ns: u64,
    /// Energy the counter measured over that time, mJ.
    pub counter_mj: f64,
    /// Idle power × that time, mJ.
    pub idle_mj: f64,
    /// Attributed dynamic energy inside counter windows, mJ.
    pub dynamic_mj: f64,
    /// Dynamic energy of the profiler's own device work that no span prices (kernel replay's
    /// checkpoint copies, bursts left out as unlike the program's launches): what the counter
    /// windows that see it measured above idle and the attributed work in them, mJ.
    #[serde(default)]
    pub profiler_mj: f64,
    /// Counter − idle − dynamic − profiler, mJ (thermal tail, unmodelled work, estimation
    /// error).
    pub residual_mj: f64,
}

/// How a span's dynamic energy was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanMethod {
    /// Its signature's fitted power × its duration.
    Signature,
    /// Integrated from the samples with the sensor response undone (long spans).
    Integrated,
}

/// Energy of one span.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SpanEnergy {
    /// The span's id.
    pub span: u64,
    /// Dynamic energy above idle.
    pub dynamic: EnergyEstimate,
    /// Its share of static energy, mJ.
    pub static_mj: f64,
    /// How the dynamic energy was obtained.
    pub method: SpanMethod,
}

/// Energy of one region (a region path and everything under it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionEnergy {
    /// Region path, components joined by '/'.
    pub path: String,
    /// Work spans inside it.
    pub launches: u64,
    /// Busy time of those spans, ns.
    pub busy_ns: u64,
    /// Dynamic energy.
    pub dynamic: EnergyEstimate,
    /// Share of static energy.
    pub static_share: EnergyEstimate,
}

/// The attribution of one device's energy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attribution {
    /// Device index.
    pub device: u32,
    /// True when the trace came from the simulated GPU.
    pub simulated: bool,
    /// Static power measured in the run.
    pub idle_power: PowerEstimate,
    /// Counter windows used for idle.
    pub idle_windows: usize,
    /// Which quiet windows those were.
    #[serde(default)]
    pub idle_source: IdleSource,
    /// Power in the quiet windows after the work (idle plus the thermal tail), when the baseline
    /// came from before it.
    pub idle_after_power: Option<PowerEstimate>,
    /// Counter windows used in the regression.
    pub regression_windows: usize,
    /// Power samples used in the regression.
    pub regression_samples: usize,
    /// Gaps the power source reported (lost samples), on the trace clock.
    pub sensor_gaps: Vec<Interval>,
    /// Per signature, most energy first.
    pub signatures: Vec<SignatureEnergy>,
    /// Per operator class, most energy first.
    pub ops: Vec<OpEnergy>,
    /// Per region path (each prefix included), most energy first; a `*/NAME` entry sums every
    /// nested region named NAME, when NAME occurs under two or more paths (the per-op view).
    pub regions: Vec<RegionEnergy>,
    /// Work spans whose region path was deeper than [`MAX_REGION_DEPTH`]: they count in
    /// their path's prefixes down to that depth, not below.
    #[serde(default)]
    pub regions_folded: u64,
    /// Per work span, in trace order.
    pub spans: Vec<SpanEnergy>,
    /// The energy balance.
    pub closure: Closure,
    /// How much of the program's busy time carries a measured number.
    #[serde(default)]
    pub measured: MeasuredShare,
    /// Kernel replay: what it measured, what it cost, and whether it agrees with the program;
    /// `None` where the run replayed nothing.
    #[serde(default)]
    pub replay: Option<ReplaySummary>,
    /// The largest dynamic power the board can draw while it runs work: its enforced power
    /// limit less idle, or [`Attribution::busy_power_seen_mw`] where that is higher, mW; no
    /// interval reaches past it. `None` where the trace does not know the limit.
    #[serde(default)]
    pub board_cap_mw: Option<f64>,
    /// The most dynamic energy per busy second that the counter measured over a window in
    /// which the device was busy at least half the time, mW: the work there drew at least that
    /// on average. It passes the power limit less idle where the program leaves the GPU idle
    /// between kernels, since the limiter acts on a longer average (`torch_infer.py` on an
    /// H100, busy 66% of the time, drew 695 W above idle per busy second against a cap of
    /// 577 W). `None` without such a window.
    #[serde(default)]
    pub busy_power_seen_mw: Option<f64>,
    /// Energy per request: every range instance over its wall-clock window
    /// ([`REQUEST_DEFINITION`]).
    #[serde(default)]
    pub requests: RequestReport,
    /// A light trace (`wattlens run --light`): ranges and sensors only, so requests are priced
    /// from the energy counter and no kernel or op is.
    #[serde(default)]
    pub light: bool,
    /// What recording cost the program ([`profiler_cost`]).
    #[serde(default)]
    pub profiler_cost: profiler_cost::ProfilerCost,
}

/// The share of the program's busy time whose energy is labelled measured.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MeasuredShare {
    /// Of kernel busy time, in kernel signatures labelled measured (0..=1).
    pub kernel_busy: f64,
    /// Of all work's busy time, in op classes labelled measured (0..=1).
    pub op_busy: f64,
}

/// Attribute the energy of `device` in `trace`.
///
/// # Errors
/// [`AttributionError`] when the device is absent, or the counter or idle data is missing.
pub fn attribute(trace: &Trace, device: u32) -> Result<Attribution, AttributionError> {
    if !trace.meta.devices.iter().any(|d| d.index == device) {
        return Err(AttributionError::NoSuchDevice(device));
    }
    let profile = &trace.meta.sensor_profile;
    let obs = Observations::of(trace, device)?;
    let Observations {
        windows,
        work,
        episodes,
        design,
        light,
        ..
    } = &obs;
    let light = *light;
    let not_idle = not_idle(trace, episodes, light);
    let idle = idle::measure(
        trace,
        work,
        &not_idle,
        windows,
        trace.released_at_ns(device),
    )
    .ok_or(AttributionError::NoIdle(device))?;
    let samples = episodes.usable_samples(&samples_of(trace, device), profile.sample_tau_ns);
    let busy_power_seen_mw = busy_power_seen_mw(&obs, idle.power.mw);
    let board_cap_mw = board_cap_mw(trace, device, idle.power.low_mw)
        .map(|cap| busy_power_seen_mw.map_or(cap, |seen| cap.max(seen)));
    let rows = samples::sample_rows(
        trace,
        work,
        (&design.sig_of, &design.density),
        design.len(),
        &samples,
        profile.sample_tau_ns,
    );
    let Fitted {
        fit,
        replayed,
        replay_closure,
    } = fit_with_replays(trace, &obs, &idle, (&rows, &samples), board_cap_mw);
    let residuals = samples::residuals(&samples, &rows, &fit.beta, idle.power.mw);
    let (idle_power, idle_mw) = (idle.power, idle.power.mw);
    let idle_half_mw = (idle_power.high_mw - idle_power.low_mw) / 2.0;
    let covered_window = Interval::new(
        windows.first().map_or(0, |w| w.start_ns),
        windows.last().map_or(0, |w| w.end_ns),
    );

    let share_s = shares::concurrency_shares(trace, work);
    let PricedSpans {
        parts: span_parts,
        spans,
        dynamic_in_window_mj,
    } = price_spans(
        trace,
        &obs,
        (&fit, &residuals),
        (&share_s, idle_mw),
        covered_window,
    );

    // Roll the spans up by signature, op class and region.
    let rollups = Rollups {
        trace,
        obs: &obs,
        fit: &fit,
        parts: &span_parts,
        share_s: &share_s,
        idle: idle_power,
        power_cap_mw: power_caps(&fit, &replayed, board_cap_mw),
    };
    let class_of: Vec<OpClass> = design
        .keys
        .iter()
        .map(|&(name, kind, _)| op_class_of(trace, trace.str(name), kind))
        .collect();
    let mut signatures = rollups.signatures(&class_of);
    let mut ops = rollups.ops(&class_of, &signatures);
    let (mut regions, regions_folded) = rollups.regions();
    most_energy_first(&mut signatures, |s| (&s.dynamic, &s.static_share));
    most_energy_first(&mut ops, |o| (&o.dynamic, &o.static_share));
    most_energy_first(&mut regions, |r| (&r.dynamic, &r.static_share));

    let window_ns = covered_window.len_ns();
    let profiler_mj = profiler_energy_mj(trace, work, &spans, windows, episodes, idle_mw);
    let counter_mj: f64 = windows.iter().map(|w| w.energy_mj as f64).sum();
    let idle_mj = idle_mw * window_ns as f64 * 1e-9;
    let measured = measured_share(&signatures, &ops);
    let held = profiler_held(trace, device, episodes);
    let cost = profiler_cost::CostTimeline::of(trace, work);
    let profiler_cost = cost.summary(trace);
    let requests = if light {
        light::requests(trace, windows, (idle_mw, idle_half_mw))
    } else {
        requests::requests(
            trace,
            device,
            (work, &span_parts),
            (&held, &cost),
            &requests::FitView {
                beta: &fit.beta,
                cov: &fit.cov,
                t: fit.t,
                joint: fit.joint.as_ref(),
                idle_mw: (idle_mw, idle_half_mw),
            },
        )
    };
    let replay = (!episodes.is_empty())
        .then(|| replay_summary(trace, device, &obs, &signatures, replay_closure));
    Ok(Attribution {
        device,
        simulated: trace.meta.simulated,
        idle_power,
        idle_windows: idle.windows,
        idle_source: idle.source,
        idle_after_power: idle.after,
        regression_windows: fit.counter_rows,
        regression_samples: fit.sample_rows,
        sensor_gaps: sensor_gaps(trace, device),
        signatures,
        ops,
        regions,
        regions_folded,
        spans,
        closure: Closure {
            start_ns: covered_window.from_ns,
            window_ns,
            counter_mj,
            idle_mj,
            dynamic_mj: dynamic_in_window_mj,
            profiler_mj,
            residual_mj: counter_mj - idle_mj - dynamic_in_window_mj - profiler_mj,
        },
        measured,
        replay,
        board_cap_mw,
        busy_power_seen_mw,
        requests,
        light,
        profiler_cost,
    })
}

/// What attribution rests on for one device: the counter's windows, the work, the profiler's
/// own episodes, and the design of signatures over the windows the fit may use.
struct Observations {
    /// Every counter window.
    windows: Vec<crate::power::CounterWindow>,
    /// Replays that did other work than the launch in place, left out.
    unlike: Vec<replay::UnlikeReplay>,
    /// Indices into the trace's spans of the device's work (replays left out excluded).
    work: Vec<usize>,
    /// The profiler's own device work.
    episodes: replay::Episodes,
    /// The windows free of the profiler's own work outside bursts: the fit's.
    fit_windows: Vec<crate::power::CounterWindow>,
    /// Busy time of each signature in each fit window.
    design: Design,
    /// A light trace: ranges and sensors, no work records.
    light: bool,
}

impl Observations {
    /// The observations of `device` in `trace`.
    ///
    /// # Errors
    /// [`AttributionError::NoCounter`] without energy counter readings.
    fn of(trace: &Trace, device: u32) -> Result<Self, AttributionError> {
        let profile = &trace.meta.sensor_profile;
        let windows = counter_windows(&trace.power, device, profile.counter_period_ns);
        if windows.is_empty() {
            return Err(AttributionError::NoCounter(device));
        }
        // A replay that did other work than the launch in place (a kernel that keeps state
        // across launches) measures nothing of the program: it is left out, and said.
        let unlike = replay::unlike_replays(trace, device);
        let work: Vec<usize> = (0..trace.spans.len())
            .filter(|&i| trace.spans[i].device == device && trace.spans[i].is_device_work())
            .filter(|&i| !unlike.iter().any(|u| u.span == trace.spans[i].id))
            .collect();
        // Observations that see the profiler's own checkpoint copies, or a burst left out,
        // are not the program's.
        let episodes = replay::Episodes::of(trace, device, &unlike);
        let fit_windows: Vec<_> = windows
            .iter()
            .filter(|w| !episodes.spoils(w.start_ns, w.end_ns))
            .copied()
            .collect();
        let design = Design::build(trace, &work, &fit_windows);
        // A light trace (ranges and sensors, no work records): the ranges are the work, and
        // idle is what the GPU drew outside them.
        let light = work.is_empty()
            && trace
                .spans
                .iter()
                .any(|s| matches!(s.kind, SpanKind::Region { .. }) && s.end_ns > s.start_ns);
        Ok(Self {
            windows,
            unlike,
            work,
            episodes,
            fit_windows,
            design,
            light,
        })
    }
}

/// Sort `rows` by their energy, dynamic plus static (as `energy` gives them), most first.
fn most_energy_first<T>(rows: &mut [T], energy: impl Fn(&T) -> (&EnergyEstimate, &EnergyEstimate)) {
    let total = |r: &T| {
        let (dynamic, static_share) = energy(r);
        dynamic.mj + static_share.mj
    };
    rows.sort_by(|a, b| total(b).total_cmp(&total(a)));
}

/// The time the profiler held `device` for its own work (replays, content hashing), sorted and
/// disjoint: not charged to a request.
fn profiler_held(trace: &Trace, device: u32, episodes: &replay::Episodes) -> Vec<Interval> {
    crate::intervals::union(
        episodes
            .held()
            .iter()
            .copied()
            .chain(trace.annotations.iter().filter_map(|a| match *a {
                crate::trace::Annotation::Overhead {
                    device: d,
                    from_ns,
                    to_ns,
                } if d == device && to_ns >= from_ns => Some(Interval::new(from_ns, to_ns)),
                _ => None,
            }))
            .collect(),
    )
}

/// What kernel replay measured on `device`: the replayed signatures, their bursts, what the
/// replays cost the run, the closure, and what was not replayed.
fn replay_summary(
    trace: &Trace,
    device: u32,
    obs: &Observations,
    signatures: &[SignatureEnergy],
    closure: Option<ReplayClosure>,
) -> ReplaySummary {
    let program_busy_ns: u64 = signatures.iter().map(|s| s.busy_ns).sum();
    let replayed: Vec<&SignatureEnergy> =
        signatures.iter().filter(|s| s.alone_launches > 0).collect();
    ReplaySummary {
        signatures: replayed.len(),
        bursts: obs
            .work
            .iter()
            .filter(|&&i| matches!(trace.spans[i].kind, SpanKind::Alone { .. }))
            .count(),
        burst_ns: replayed.iter().map(|s| s.alone_ns).sum(),
        held_ns: obs.episodes.held_ns(),
        replayed_busy_share: share(replayed.iter().map(|s| s.busy_ns).sum(), program_busy_ns),
        closure,
        notes: replay::notes(trace, device, &obs.unlike),
    }
}

/// The stretches the power samples of `device` were lost.
fn sensor_gaps(trace: &Trace, device: u32) -> Vec<Interval> {
    trace
        .power
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Lost {
                device: d,
                from_ns,
                to_ns,
            } if d == device => Some(Interval::new(from_ns, to_ns)),
            _ => None,
        })
        .collect()
}

/// The most each signature can draw, mW: the board's cap, which makes bounds physical; or, for
/// a signature the counter measured alone to within ±50%, the upper end of that power where it
/// is higher. A board draws above its enforced limit over 100 ms windows (the limit holds on
/// average): an H100 limited to 700 W drew 733-771 W in replays of cuBLAS kernels.
fn power_caps(fit: &Fit, replayed: &[bool], board_cap_mw: Option<f64>) -> Vec<Option<f64>> {
    (0..fit.beta.len())
        .map(|s| {
            let cap = board_cap_mw?;
            let half = fit.t * fit.cov.at(s, s).max(0.0).sqrt();
            Some(if replayed[s] && half <= 0.5 * fit.beta[s] {
                cap.max(fit.beta[s] + half)
            } else {
                cap
            })
        })
        .collect()
}

/// A group of work spans rolled up: their energy terms, launches, busy time, and busy seconds
/// of static share.
struct Group {
    rollup: Rollup,
    launches: u64,
    busy_ns: u64,
    static_s: f64,
}

/// Rolls priced spans up into signatures, op classes and regions, each with its CI from the
/// fit and its static share, and capped at what the board can draw.
struct Rollups<'a> {
    trace: &'a Trace,
    obs: &'a Observations,
    fit: &'a Fit,
    parts: &'a [SpanPart],
    share_s: &'a [f64],
    idle: PowerEstimate,
    power_cap_mw: Vec<Option<f64>>,
}

impl Rollups<'_> {
    /// Work span `w` (an index into the observations' work) is the program's: the profiler's
    /// bursts of launches measured alone inform the fit and the closure, not the rollups.
    fn program(&self, w: usize) -> bool {
        self.trace.spans[self.obs.work[w]].is_program_work()
    }

    /// The spans `members` rolled up.
    fn group(&self, members: impl Iterator<Item = usize>) -> Group {
        let mut g = Group {
            rollup: Rollup::new(self.obs.design.len()),
            launches: 0,
            busy_ns: 0,
            static_s: 0.0,
        };
        for w in members {
            g.rollup.add_span(&self.parts[w]);
            g.launches += 1;
            g.busy_ns += self.trace.spans[self.obs.work[w]].duration_ns();
            g.static_s += self.share_s[w];
        }
        g
    }

    /// The group's dynamic energy with its CI.
    fn dynamic(&self, g: &Group) -> EnergyEstimate {
        let fit = self.fit;
        g.rollup
            .estimate(&fit.beta, &fit.cov, fit.t, fit.joint.as_ref())
    }

    /// Idle power over `static_s` busy seconds, with its CI.
    fn static_estimate(&self, static_s: f64) -> EnergyEstimate {
        let half_mw = (self.idle.high_mw - self.idle.low_mw) / 2.0;
        EnergyEstimate::from_half_width(self.idle.mw * static_s, half_mw * static_s)
    }

    /// The most the spans `members` can draw together, mJ.
    fn group_cap_mj(&self, members: &[usize]) -> Option<f64> {
        members.iter().try_fold(0.0, |acc, &w| {
            let busy_s = self.trace.spans[self.obs.work[w]].duration_ns() as f64 * 1e-9;
            self.power_cap_mw[self.obs.design.sig_of[w]].map(|c| acc + c * busy_s)
        })
    }

    /// Each signature with program work: its power, energy and launches, and what replays
    /// measured of it.
    fn signatures(&self, class_of: &[OpClass]) -> Vec<SignatureEnergy> {
        let (trace, design, fit) = (self.trace, &self.obs.design, self.fit);
        let p = design.len();
        let mut members_of: Vec<Vec<usize>> = vec![Vec::new(); p];
        let mut alone_of: Vec<(u64, u64)> = vec![(0, 0); p];
        for (w, &s) in design.sig_of.iter().enumerate() {
            match trace.spans[self.obs.work[w]].kind {
                SpanKind::Alone { launches, .. } => {
                    alone_of[s].0 += u64::from(launches);
                    alone_of[s].1 += trace.spans[self.obs.work[w]].duration_ns();
                }
                _ => members_of[s].push(w),
            }
        }
        (0..p)
            .filter(|&i| !members_of[i].is_empty())
            .map(|i| {
                let (name, kind, launch) = design.keys[i];
                let name = trace.str(name).to_owned();
                let g = self.group(members_of[i].iter().copied());
                let dynamic = self.dynamic(&g);
                let dynamic_power = if design.covered_ns[i] == 0 && !g.rollup.covered {
                    PowerEstimate {
                        mw: 0.0,
                        low_mw: 0.0,
                        high_mw: 0.0,
                        coverage: Coverage::Uncovered,
                    }
                } else {
                    PowerEstimate::from_half_width(fit.beta[i], fit.t * fit.cov.at(i, i).sqrt())
                };
                let cap = self.power_cap_mw[i];
                let dynamic_power = dynamic_power.capped_at(cap);
                let dynamic = dynamic.capped_at(cap.map(|c| c * g.busy_ns as f64 * 1e-9));
                let static_share = self.static_estimate(g.static_s);
                let per_launch = per_launch(&dynamic, &static_share, g.launches);
                SignatureEnergy {
                    op_class: class_of[i],
                    name,
                    kind: kind.to_owned(),
                    launch,
                    launches: g.launches,
                    busy_ns: g.busy_ns,
                    covered_ns: design.covered_ns[i],
                    dynamic_power,
                    dynamic,
                    static_share,
                    per_launch,
                    alone_launches: alone_of[i].0,
                    alone_ns: alone_of[i].1,
                }
            })
            .collect()
    }

    /// Each op class of `signatures`: the program's work of its signatures rolled up.
    fn ops(&self, class_of: &[OpClass], signatures: &[SignatureEnergy]) -> Vec<OpEnergy> {
        let mut classes: Vec<OpClass> = signatures.iter().map(|s| s.op_class).collect();
        classes.sort_unstable();
        classes.dedup();
        classes
            .into_iter()
            .map(|class| {
                let members: Vec<usize> = (0..self.obs.work.len())
                    .filter(|&w| self.program(w) && class_of[self.obs.design.sig_of[w]] == class)
                    .collect();
                let g = self.group(members.iter().copied());
                OpEnergy {
                    op_class: class,
                    launches: g.launches,
                    busy_ns: g.busy_ns,
                    dynamic: self.dynamic(&g).capped_at(self.group_cap_mj(&members)),
                    static_share: self.static_estimate(g.static_s),
                }
            })
            .collect()
    }

    /// Each region path of the program's work, and how many paths were folded into their
    /// ancestors.
    fn regions(&self) -> (Vec<RegionEnergy>, u64) {
        let mut by_region: BTreeMap<StrId, Vec<usize>> = BTreeMap::new();
        for (w, &i) in self.obs.work.iter().enumerate() {
            let region = self.trace.spans[i].region;
            if region != StrId::NONE && self.program(w) {
                by_region.entry(region).or_default().push(w);
            }
        }
        let (region_members, folded) = region_groups(self.trace, &by_region);
        let regions = region_members
            .into_iter()
            .map(|(path, members)| {
                let cap = self.group_cap_mj(&members);
                let g = self.group(members.into_iter());
                RegionEnergy {
                    path,
                    launches: g.launches,
                    busy_ns: g.busy_ns,
                    dynamic: self.dynamic(&g).capped_at(cap),
                    static_share: self.static_estimate(g.static_s),
                }
            })
            .collect();
        (regions, folded)
    }
}

/// Every work span priced: its signature-priced busy time and directly integrated energy
/// (`parts`, for the rollups), its dynamic and static energy, and the dynamic energy of all of
/// them inside the counter's window, mJ.
struct PricedSpans {
    parts: Vec<SpanPart>,
    spans: Vec<SpanEnergy>,
    dynamic_in_window_mj: f64,
}

/// Price each work span at its signature's power; a span long enough for the samples to
/// resolve adds its share of the samples' `residuals` against the fit (response-corrected,
/// split among concurrent spans by their predicted energy). Its static share is idle power
/// over its share of the busy time (`share_s`, seconds).
fn price_spans(
    trace: &Trace,
    obs: &Observations,
    (fit, residuals): (&Fit, &[(u64, f64)]),
    (share_s, idle_mw): (&[f64], f64),
    covered_window: Interval,
) -> PricedSpans {
    let (work, design) = (&obs.work, &obs.design);
    let profile = &trace.meta.sensor_profile;
    let (beta, cov, t) = (fit.beta.as_slice(), &fit.cov, fit.t);
    let long_ns = LONG_SPAN_SAMPLE_PERIODS * profile.sample_period_ns.max(1);
    let max_gap_ns = GAP_SAMPLE_PERIODS * profile.sample_period_ns.max(1);
    let tau_s = profile.sample_tau_ns as f64 * 1e-9;
    let period_s = profile.sample_period_ns as f64 * 1e-9;
    let mut by_start: Vec<usize> = (0..work.len()).collect();
    by_start.sort_unstable_by_key(|&w| trace.spans[work[w]].start_ns);
    let max_dur = work
        .iter()
        .map(|&i| trace.spans[i].duration_ns())
        .max()
        .unwrap_or(0);
    let mut parts: Vec<SpanPart> = Vec::with_capacity(work.len());
    let mut spans = Vec::with_capacity(work.len());
    let mut dynamic_in_window_mj = 0.0;
    for (w, &i) in work.iter().enumerate() {
        let span = &trace.spans[i];
        let s = design.sig_of[w];
        let dur = span.duration_ns();
        let dur_s = dur as f64 * 1e-9;
        let mut r = SpanPart {
            sig: s,
            priced_s: dur_s * design.density[w],
            direct_mj: 0.0,
            direct_var: 0.0,
            covered: design.covered_ns[s] > 0 || dur >= long_ns,
        };
        // Long spans: the signature's power plus the directly integrated (response-corrected)
        // residual of the samples against the model, this span's share of it.
        let residual = (dur >= long_ns)
            .then(|| {
                samples::deconvolved_energy_mj(
                    residuals,
                    span.start_ns,
                    span.end_ns,
                    profile.sample_tau_ns,
                    max_gap_ns,
                )
            })
            .flatten();
        let method = match residual {
            Some(res_mj) => {
                // Concurrent spans take their share of the residual by predicted energy.
                let own_mj = beta[s] * r.priced_s;
                let mut others_mj = 0.0;
                let lo = by_start.partition_point(|&x| {
                    trace.spans[work[x]].start_ns.saturating_add(max_dur) <= span.start_ns
                });
                for &x in &by_start[lo..] {
                    let o = &trace.spans[work[x]];
                    if o.start_ns >= span.end_ns {
                        break;
                    }
                    if x == w || o.end_ns <= span.start_ns {
                        continue;
                    }
                    let ov =
                        (o.end_ns.min(span.end_ns) - o.start_ns.max(span.start_ns)) as f64 * 1e-9;
                    others_mj += beta[design.sig_of[x]] * ov * design.density[x];
                }
                let share = if own_mj + others_mj > 0.0 {
                    own_mj / (own_mj + others_mj)
                } else {
                    1.0
                };
                let noise = fit.sample_sd_mw.powi(2);
                r.direct_mj = share * res_mj;
                r.direct_var =
                    share * share * (noise * period_s * dur_s + 2.0 * noise * tau_s * tau_s);
                SpanMethod::Integrated
            }
            None => SpanMethod::Signature,
        };
        let dynamic = r.estimate(beta, cov, t);
        let inside = covered_window.overlap_ns(span.start_ns, span.end_ns) as f64;
        if inside > 0.0 && dur > 0 {
            dynamic_in_window_mj += dynamic.mj * inside / dur as f64;
        }
        spans.push(SpanEnergy {
            span: span.id,
            dynamic,
            static_mj: idle_mw * share_s[w],
            method,
        });
        parts.push(r);
    }
    PricedSpans {
        parts,
        spans,
        dynamic_in_window_mj,
    }
}

/// The fit, with its replay closure where the run replayed kernels.
struct Fitted {
    /// Each signature's power, its covariance and the quantile for its intervals.
    fit: Fit,
    /// Signatures the counter measured alone, in replay bursts.
    replayed: Vec<bool>,
    /// Whether the replays add up to what the program drew in place.
    replay_closure: Option<ReplayClosure>,
}

/// Fit each signature's power to the counter windows and the samples (`rows` over `samples`),
/// no signature above `board_cap_mw`; then check the replays against the program, and carry
/// the closure's distance from 1 into every replayed signature's interval, as an error common
/// to all of them.
fn fit_with_replays(
    trace: &Trace,
    obs: &Observations,
    idle: &idle::IdleBaseline,
    (rows, samples): (&samples::SampleRows, &[(u64, f64)]),
    board_cap_mw: Option<f64>,
) -> Fitted {
    let design = &obs.design;
    let noise_sd_mw = trace.meta.sensor_profile.sample_noise_sd_mw;
    let mut fit = regression::fit(
        design,
        &obs.fit_windows,
        idle,
        rows,
        samples,
        (noise_sd_mw, board_cap_mw),
    );
    let checked = replay_closure(
        trace,
        &obs.work,
        design,
        &obs.fit_windows,
        &obs.episodes,
        idle,
        &unreplayed_intervals(&fit, board_cap_mw),
    );
    let mut replayed = vec![false; design.len()];
    let replay_closure = checked.map(|(closure, powers)| {
        for (s, r) in replayed.iter_mut().enumerate() {
            *r = powers.get(s).copied().flatten().is_some();
        }
        let sd: Vec<f64> = (0..design.len())
            .map(|s| match powers.get(s).copied().flatten() {
                Some(_) => closure.systematic * fit.beta[s].max(0.0) / fit.t,
                None => 0.0,
            })
            .collect();
        fit.add_systematic(&sd);
        closure
    });
    Fitted {
        fit,
        replayed,
        replay_closure,
    }
}

/// What is not idle on the device: the profiler's episodes, and in a light trace the ranges
/// too (they stand for the work).
fn not_idle(trace: &Trace, episodes: &replay::Episodes, light: bool) -> Vec<Interval> {
    if !light {
        return episodes.held().to_vec();
    }
    crate::intervals::union(
        episodes
            .held()
            .iter()
            .copied()
            .chain(
                trace
                    .spans
                    .iter()
                    .filter(|s| matches!(s.kind, SpanKind::Region { .. }))
                    .map(|s| Interval::new(s.start_ns, s.end_ns)),
            )
            .collect(),
    )
}

/// Region paths deeper than this many components are rolled up at this depth: a program that
/// nests NVTX ranges thousands deep (or names them with many `/`) must not make the report
/// quadratic in the depth.
pub const MAX_REGION_DEPTH: usize = 32;

/// The work spans (indices into `work`) of every region path and each of its prefixes, from
/// the spans of each distinct region (`by_region`); and `*/NAME`, every nested region named
/// NAME, where NAME occurs under two or more paths (the per-op view of a model whose layers
/// each hold `attention`, `mlp`, … regions). Prefixes stop at [`MAX_REGION_DEPTH`]; the second
/// value counts the spans whose path was cut there.
fn region_groups(
    trace: &Trace,
    by_region: &BTreeMap<StrId, Vec<usize>>,
) -> (BTreeMap<String, Vec<usize>>, u64) {
    let mut prefixes: BTreeMap<String, Vec<StrId>> = BTreeMap::new();
    let mut leaves: BTreeMap<&str, (std::collections::BTreeSet<&str>, Vec<StrId>)> =
        BTreeMap::new();
    let mut folded = 0u64;
    for (&region, members) in by_region {
        let path = trace.str(region);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_REGION_DEPTH {
            folded += members.len() as u64;
        }
        if parts.len() >= 2 {
            if let Some(leaf) = path.rsplit('/').next().filter(|l| !l.is_empty()) {
                let e = leaves.entry(leaf).or_default();
                e.0.insert(path);
                e.1.push(region);
            }
        }
        let mut prefix = String::new();
        for part in parts.iter().take(MAX_REGION_DEPTH) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            prefixes.entry(prefix.clone()).or_default().push(region);
        }
    }
    let spans_of = |regions: &[StrId]| -> Vec<usize> {
        regions
            .iter()
            .filter_map(|r| by_region.get(r))
            .flatten()
            .copied()
            .collect()
    };
    let mut groups: BTreeMap<String, Vec<usize>> = prefixes
        .iter()
        .map(|(path, regions)| (path.clone(), spans_of(regions)))
        .collect();
    for (leaf, (paths, regions)) in leaves {
        if paths.len() >= 2 {
            groups.insert(format!("*/{leaf}"), spans_of(&regions));
        }
    }
    (groups, folded)
}

/// The dynamic energy of the profiler's own device work that no span prices: over the counter
/// windows that touch a profiler episode, the energy above idle less the attributed dynamic
/// energy of the spans in them (each in proportion to its overlap), mJ.
fn profiler_energy_mj(
    trace: &Trace,
    work: &[usize],
    spans: &[SpanEnergy],
    windows: &[crate::power::CounterWindow],
    episodes: &replay::Episodes,
    idle_mw: f64,
) -> f64 {
    let touched: Vec<&crate::power::CounterWindow> = windows
        .iter()
        .filter(|w| episodes.touches(w.start_ns, w.end_ns))
        .collect();
    if touched.is_empty() {
        return 0.0;
    }
    let mut above_idle: f64 = touched
        .iter()
        .map(|w| w.energy_mj as f64 - idle_mw * (w.end_ns - w.start_ns) as f64 * 1e-9)
        .sum();
    for (&i, e) in work.iter().zip(spans) {
        let span = &trace.spans[i];
        let dur = span.duration_ns();
        if dur == 0 {
            continue;
        }
        let first = touched.partition_point(|w| w.end_ns <= span.start_ns);
        for w in touched[first..]
            .iter()
            .take_while(|w| w.start_ns < span.end_ns)
        {
            let inside = span.end_ns.min(w.end_ns) - span.start_ns.max(w.start_ns);
            above_idle -= e.dynamic.mj * inside as f64 / dur as f64;
        }
    }
    above_idle
}

/// `part` over `whole` (0 when `whole` is 0).
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The share of kernel busy time in signatures labelled measured, and of all busy time in
/// op classes labelled measured.
fn measured_share(signatures: &[SignatureEnergy], ops: &[OpEnergy]) -> MeasuredShare {
    let kernels = || {
        signatures
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel.label())
    };
    let measured = |c: Coverage| c == Coverage::Measured;
    MeasuredShare {
        kernel_busy: share(
            kernels()
                .filter(|s| measured(s.dynamic.coverage))
                .map(|s| s.busy_ns)
                .sum(),
            kernels().map(|s| s.busy_ns).sum(),
        ),
        op_busy: share(
            ops.iter()
                .filter(|o| measured(o.dynamic.coverage))
                .map(|o| o.busy_ns)
                .sum(),
            ops.iter().map(|o| o.busy_ns).sum(),
        ),
    }
}

/// Dynamic plus static energy of one of `launches` launches: its interval runs from both
/// low ends to both high ends (a dynamic energy cut at the board's cap is no longer
/// symmetric), and it is no better resolved than the dynamic energy.
fn per_launch(
    dynamic: &EnergyEstimate,
    static_share: &EnergyEstimate,
    launches: u64,
) -> EnergyEstimate {
    let n = launches.max(1) as f64;
    let (mj, low_mj, high_mj) = (
        (dynamic.mj + static_share.mj) / n,
        (dynamic.low_mj + static_share.low_mj) / n,
        (dynamic.high_mj + static_share.high_mj) / n,
    );
    let coverage = match dynamic.coverage {
        c @ (Coverage::Unresolved | Coverage::Uncovered) => c,
        _ => Coverage::classify(mj, low_mj, high_mj),
    };
    EnergyEstimate {
        mj,
        low_mj,
        high_mj,
        coverage,
    }
}

/// The largest dynamic power `device` can draw: its enforced power limit less the lower end
/// of the idle power, mW; `None` where the trace does not know the limit.
fn board_cap_mw(trace: &Trace, device: u32, idle_low_mw: f64) -> Option<f64> {
    let limit = trace
        .meta
        .devices
        .iter()
        .find(|d| d.index == device)?
        .power_limit_mw;
    (limit > 0).then(|| (f64::from(limit) - idle_low_mw).max(0.0))
}

/// A window counts towards [`Attribution::busy_power_seen_mw`] when the device was busy at
/// least this share of it: in a window of little work, what the GPU draws between launches to
/// stay awake would dominate.
const BUSY_POWER_MIN_SHARE: f64 = 0.5;

/// The most dynamic energy per busy second over the fit's windows busy at least
/// [`BUSY_POWER_MIN_SHARE`] of the time, with idle power `idle_mw`, mW.
fn busy_power_seen_mw(obs: &Observations, idle_mw: f64) -> Option<f64> {
    obs.fit_windows
        .iter()
        .zip(&obs.design.x)
        .filter_map(|(w, x)| {
            let dt_s = (w.end_ns - w.start_ns) as f64 * 1e-9;
            let busy_s: f64 = x.iter().sum();
            (dt_s > 0.0 && busy_s >= BUSY_POWER_MIN_SHARE * dt_s)
                .then(|| (w.energy_mj as f64 - idle_mw * dt_s) / busy_s)
        })
        .filter(|mw| mw.is_finite())
        .max_by(f64::total_cmp)
}

/// Each signature's power interval from the fit (low, high; mW), cut at zero and at the
/// board's cap `cap_mw` as the report cuts it (a value past the cap is the bound [0, cap]).
fn unreplayed_intervals(fit: &Fit, cap_mw: Option<f64>) -> Vec<(f64, f64)> {
    (0..fit.beta.len())
        .map(|s| {
            let half = fit.t * fit.cov.at(s, s).max(0.0).sqrt();
            let p = PowerEstimate::from_half_width(fit.beta[s], half).capped_at(cap_mw);
            (p.low_mw, p.high_mw)
        })
        .collect()
}

/// The replay closure of `device`'s replays, and each signature's replay power; `None` where
/// nothing was replayed or no steady stretch holds replayed kernels. `unreplayed` (the fit's
/// power intervals, mW) bounds the signatures without a replay.
fn replay_closure(
    trace: &Trace,
    work: &[usize],
    design: &Design,
    windows: &[crate::power::CounterWindow],
    episodes: &replay::Episodes,
    idle: &idle::IdleBaseline,
    unreplayed: &[(f64, f64)],
) -> Option<(ReplayClosure, Vec<Option<replay::ReplayPower>>)> {
    if episodes.is_empty() {
        return None;
    }
    let idle = (idle.power.mw, idle.var_mw2);
    let powers = replay::replay_powers(trace, work, design, windows, idle);
    let closure = replay::closure(design, windows, episodes, &powers, unreplayed, idle)?;
    Some((closure, powers))
}

/// The power samples of `device` in time order, as (trace ns, mW), duplicates dropped.
pub fn samples_of(trace: &Trace, device: u32) -> Vec<(u64, f64)> {
    samples_in(&trace.power, device)
}

/// [`samples_of`] over a list of readings.
pub fn samples_in(readings: &[PowerReading], device: u32) -> Vec<(u64, f64)> {
    samples::device_samples(readings, device)
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile_95(df: usize) -> f64 {
    linalg::t95(df)
}

/// Operator class of a signature (name and span-kind label): from the kernel facts, else from
/// the kernel's name ([`crate::names`]: cuBLAS, CUTLASS, flash attention, PyTorch, NCCL),
/// else unknown for kernels; copy for copies and memsets.
pub fn op_class_of(trace: &Trace, name: &str, kind: &str) -> OpClass {
    match trace.facts_for(name) {
        Some(f) => f.op_class,
        None if kind == SpanKind::Kernel.label() => {
            crate::names::class_from_name(name).unwrap_or(OpClass::Unknown)
        }
        None => OpClass::Copy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dynamic energy cut at the board's cap (its point near the cap, its low end at zero)
    /// gives a per-launch energy that is a bound too, ending at the cap plus static share, not
    /// a symmetric interval around the point.
    #[test]
    fn a_capped_dynamic_energy_gives_a_per_launch_bound() {
        let capped = EnergyEstimate::from_half_width(20_000.0, 30_000.0).capped_at(Some(23_600.0));
        assert_eq!(capped.coverage, Coverage::Unresolved);
        let static_share = EnergyEstimate::from_half_width(4_880.0, 30.0);
        let p = per_launch(&capped, &static_share, 10);
        assert_eq!(p.coverage, Coverage::Unresolved);
        assert!(
            (p.high_mj - (23_600.0 + 4_910.0) / 10.0).abs() < 1e-9,
            "{p:?}"
        );
        assert!((p.low_mj - 485.0).abs() < 1e-9, "{p:?}");
        // A resolved one keeps the symmetric interval it had.
        let measured = EnergyEstimate::from_half_width(20_000.0, 500.0);
        let q = per_launch(&measured, &static_share, 10);
        assert_eq!(q.coverage, Coverage::Measured);
        assert!(
            (q.mj - 2_488.0).abs() < 1e-9 && (q.half_mj() - 53.0).abs() < 1e-9,
            "{q:?}"
        );
    }
}
