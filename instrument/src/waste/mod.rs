//! Waste detection: work a program could stop doing, proven from the trace and priced in
//! joules. Each detector looks for one kind of waste; a finding carries its energy (with a
//! CI, from the attribution), the time it took, the spans and buffer versions that prove it,
//! where it happened, and a one-line fix. Where the trace cannot prove something (unknown
//! access modes, work the session did not see, sampled digests), nothing is flagged and the
//! report says what it could not check.
//!
//! Definitions are in ARCHITECTURE.md ("What wasted means").

mod audit;
mod dead_write;
mod idle;
pub mod imbalance;
pub use idle::IdlePhases;
mod launch_cost;
mod padding;
mod prefix;
mod recompute;
mod time_saved;
mod transfer;
mod underfill;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::attribution::{Attribution, EnergyEstimate, PowerEstimate, SpanEnergy};
use crate::intervals::Interval;
use crate::trace::{Annotation, BufferVersion, PaddedUnits, Span, Trace};

/// A kind of waste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WasteKind {
    /// A write overwritten or freed before anything read it.
    DeadWrite,
    /// The same kernel on the same inputs while its earlier output was intact.
    Recomputation,
    /// A host-to-device copy of content the device already held.
    RedundantTransfer,
    /// An in-place write that left the content exactly as it was (found by `--audit`).
    SilentWrite,
    /// The GPU idle between dependent work.
    IdleGap,
    /// A long launch with fewer blocks than the GPU has SMs.
    UnderfilledLaunch,
    /// Work spent on padding rows.
    PaddingCompute,
    /// A GPU spinning in a collective while a slower rank catches up.
    LoadImbalance,
}

impl WasteKind {
    /// Label in tables.
    pub fn label(self) -> &'static str {
        match self {
            WasteKind::DeadWrite => "dead write",
            WasteKind::Recomputation => "recomputation",
            WasteKind::RedundantTransfer => "redundant transfer",
            WasteKind::SilentWrite => "silent write",
            WasteKind::IdleGap => "idle gap",
            WasteKind::UnderfilledLaunch => "under-filled launch",
            WasteKind::PaddingCompute => "padding compute",
            WasteKind::LoadImbalance => "load imbalance",
        }
    }
}

/// One finding: one kind of waste at one place (every occurrence there together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind.
    pub kind: WasteKind,
    /// Energy wasted, with its 95% CI.
    pub energy: EnergyEstimate,
    /// Device time wasted, ns.
    pub time_ns: u64,
    /// How much sooner the run would end without the wasted launches, ns, where the trace's
    /// host calls let its timeline be replayed without them (launches and copies wasted whole).
    #[serde(default)]
    pub run_saved_ns: Option<u64>,
    /// Occurrences grouped here.
    pub occurrences: u64,
    /// What was wasted (a kernel or copy name, or the cause of an idle gap).
    pub what: String,
    /// Region path, with layer-like numbers folded to `*` when occurrences span several.
    pub region: String,
    /// Launch site (`file:line`), or empty.
    pub site: String,
    /// The evidence: spans (the wasted one first in each occurrence, then the one proving it).
    pub spans: Vec<u64>,
    /// The evidence: buffer versions involved.
    pub buffers: Vec<BufferVersion>,
    /// The spans that are the waste (empty for idle gaps).
    pub wasted_spans: Vec<u64>,
    /// The idle intervals on the trace clock (idle gaps only).
    pub idle_intervals: Vec<Interval>,
    /// Why it is waste, for one occurrence.
    pub proof: String,
    /// What to do about it.
    pub fix: String,
}

/// Everything found on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasteReport {
    /// Device index.
    pub device: u32,
    /// Findings, most energy first.
    pub findings: Vec<Finding>,
    /// What could not be checked, one line each.
    pub unchecked: Vec<String>,
    /// Device idle time caused by the profiler's own overhead (content hashing), ns: not
    /// charged to the program.
    pub profiler_idle_ns: u64,
    /// The device's idle by phase; `None` without program work or counter readings.
    #[serde(default)]
    pub phases: Option<idle::IdlePhases>,
    /// What the audit (`wattlens run --audit`) saw and cost, where the run was audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditCost>,
}

/// What the audit of an audited run saw and cost ([`WasteReport::audit`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct AuditCost {
    /// Operations audited.
    pub ops: u64,
    /// Of which with device work recorded on this device.
    pub ops_on_device: u64,
    /// Host time the audit itself took (digests and bookkeeping), ns.
    pub audit_host_ns: u64,
    /// Device time of the audit's digest kernels, ns.
    pub digest_busy_ns: u64,
    /// The run's length on the trace clock (first to last record), ns.
    pub run_ns: u64,
    /// Busy time of the program's kernels and copies on this device (the audit's digests left
    /// out), ns.
    #[serde(default)]
    pub work_busy_ns: u64,
    /// Of it, the busy time of work that audited operations issued, ns. The rest ran outside
    /// every operation the audit saw (compiled graphs, CUDA graphs, extensions that launch
    /// kernels themselves) and was not checked.
    #[serde(default)]
    pub audited_busy_ns: u64,
}

impl AuditCost {
    /// The share of the program's device busy time that ran inside audited operations (1
    /// without any busy time).
    pub fn audited_share(&self) -> f64 {
        if self.work_busy_ns == 0 {
            return 1.0;
        }
        self.audited_busy_ns as f64 / self.work_busy_ns as f64
    }
}

impl WasteReport {
    /// Total energy of all findings, mJ (they do not overlap by construction, except padding
    /// and under-fill, which price different parts of a span).
    pub fn total_mj(&self) -> f64 {
        self.findings.iter().map(|f| f.energy.mj).sum()
    }
}

/// Thresholds of the detectors; a field missing where one is read takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WasteConfig {
    /// Shortest idle gap flagged, ns (launch latency alone is a few µs).
    pub min_idle_gap_ns: u64,
    /// Shortest launch whose under-fill is flagged, ns.
    pub min_underfilled_ns: u64,
    /// Longest idle wait before a wasted launch that is charged to it, ns: in a launch-bound
    /// stream the device waits for each launch to arrive, and a launch not made is a wait not
    /// taken. Waits after a synchronisation or a read-back are idle-gap findings instead.
    pub max_charged_wait_ns: u64,
    /// The device's idle between two launches queued back to back, ns: what remains of a gap
    /// after a synchronisation however far ahead the host runs. The smallest gap the trace
    /// shows is used where it is shorter.
    pub queued_gap_ns: u64,
    /// Shortest gap between work taken for a host-only stretch (loading, tokenising, Python
    /// between requests), ns: idle the GPU cannot be fed through, so not launch-bound waste.
    /// Launch latency and a decode step's host work are microseconds to a few milliseconds.
    pub host_only_gap_ns: u64,
}

impl Default for WasteConfig {
    fn default() -> Self {
        Self {
            min_idle_gap_ns: 5_000,
            host_only_gap_ns: 20_000_000,
            min_underfilled_ns: 20_000,
            max_charged_wait_ns: 100_000,
            queued_gap_ns: 1_000,
        }
    }
}

/// An energy with its 95% interval, mJ: what the detectors price before findings are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Mj {
    /// The estimate.
    pub mj: f64,
    /// The interval's lower end.
    pub low_mj: f64,
    /// The interval's upper end.
    pub high_mj: f64,
}

impl Mj {
    /// No energy.
    pub(crate) const ZERO: Self = Self::new(0.0, 0.0, 0.0);

    /// `mj` within `[low_mj, high_mj]`.
    pub(crate) const fn new(mj: f64, low_mj: f64, high_mj: f64) -> Self {
        Self {
            mj,
            low_mj,
            high_mj,
        }
    }

    /// This energy and an exactly known `mj` more.
    pub(crate) fn plus_exact(self, mj: f64) -> Self {
        Self::new(self.mj + mj, self.low_mj + mj, self.high_mj + mj)
    }

    /// This energy times `k`.
    pub(crate) fn scaled(self, k: f64) -> Self {
        Self::new(self.mj * k, self.low_mj * k, self.high_mj * k)
    }
}

impl std::ops::Add for Mj {
    type Output = Self;

    fn add(self, o: Self) -> Self {
        Self::new(
            self.mj + o.mj,
            self.low_mj + o.low_mj,
            self.high_mj + o.high_mj,
        )
    }
}

impl std::ops::AddAssign for Mj {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

/// The energy power `p` draws over `ns`, with its interval.
fn drawn_over(p: &PowerEstimate, ns: f64) -> Mj {
    let mj = |mw: f64| mw * ns * 1e-9;
    Mj::new(mj(p.mw), mj(p.low_mw), mj(p.high_mw))
}

/// A top-level region's dynamic energy and busy time: what a busy ns there costs.
#[derive(Debug, Clone, Copy)]
struct RegionRate {
    dynamic: Mj,
    busy_ns: f64,
}

impl RegionRate {
    /// The region's dynamic energy over `ns` of its busy time.
    fn over_ns(&self, ns: f64) -> Mj {
        self.dynamic.scaled(ns / self.busy_ns)
    }
}

/// One occurrence before grouping.
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    kind: WasteKind,
    what: String,
    region: String,
    site: String,
    energy: Mj,
    time_ns: u64,
    /// How much sooner the run would end without it, ns, where replayed.
    run_saved_ns: Option<f64>,
    /// Whether the wasted span is wasted whole (not padding or some of its rows).
    whole_launch: bool,
    spans: Vec<u64>,
    buffers: Vec<BufferVersion>,
    /// The wasted span, or the idle interval.
    wasted: Wasted,
    proof: String,
    fix: String,
}

/// What an occurrence rests on: the spans and buffer versions it cites, the proof in words, and
/// the fix.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    spans: Vec<u64>,
    buffers: Vec<BufferVersion>,
    proof: String,
    fix: String,
}

impl Evidence {
    /// Evidence of `spans` and `buffers`, with its `proof` and `fix`.
    pub(crate) fn new(
        (spans, buffers): (Vec<u64>, Vec<BufferVersion>),
        proof: String,
        fix: String,
    ) -> Self {
        Self {
            spans,
            buffers,
            proof,
            fix,
        }
    }
}

/// What exactly an occurrence wasted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wasted {
    /// A span (wholly or in part).
    Span(u64),
    /// Device time between spans.
    Idle(Interval),
}

/// The device idle from `from` to `to` (ns), after `prev` (the work that ended last) and
/// before `next`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap<'a> {
    from: u64,
    to: u64,
    prev: &'a Span,
    next: &'a Span,
}

/// An operation whose cost is fitted against size: a kernel name and the buffers it reads.
type OpKey<'a> = (&'a str, Vec<u64>);

/// A kernel, as far as its occupancy goes: its name, and its launch block and shared memory
/// (bytes) where known.
type Kernel<'a> = (&'a str, Option<([u32; 3], u32)>);

/// What the detectors share: the trace, span energies and buffer facts.
pub(crate) struct Context<'a> {
    trace: &'a Trace,
    device: u32,
    /// Work spans of the device, by start.
    work: Vec<&'a Span>,
    /// The same, by id.
    by_id: HashMap<u64, &'a Span>,
    /// The span that wrote each buffer version.
    writer: HashMap<(u64, u32), &'a Span>,
    /// Per operation (a kernel name and the buffers it reads), its launch time against its
    /// units (rows or query–key pairs), fitted over its launches under declared passes of
    /// different sizes: how much of a launch running fewer units would save.
    time_models: HashMap<OpKey<'a>, launch_cost::TimeModel>,
    /// The library call (its operation key) each library kernel under a declared pass ran in
    /// ([`library_calls`]): a library picks its kernels by shape, so its time is fitted per
    /// call, not per kernel.
    call_of: HashMap<u64, OpKey<'a>>,
    energy: HashMap<u64, &'a SpanEnergy>,
    /// Buffer sizes, bytes.
    sizes: HashMap<u64, u64>,
    /// Freed buffers.
    freed: HashMap<u64, u64>,
    /// Spans that read each buffer version.
    readers: HashMap<(u64, u32), Vec<u64>>,
    /// Idle power and its CI.
    idle: PowerEstimate,
    /// Dynamic power per busy ns of each top-level region, as (mJ, low, high) per ns: the price
    /// of a span whose own signature the sensors could not resolve.
    region_rate: HashMap<String, RegionRate>,
    /// The padded units of each span launched under a declared pass (padding mask).
    padding: HashMap<u64, PaddedUnits>,
    /// Units of each span that partial-waste findings (padding, recomputed rows) claim
    /// together: what dropping them all would save is shared between those findings.
    partial_units: HashMap<u64, f64>,
    /// Top-level regions whose busy time is mostly ([`MASKED_SHARE`]) launches under declared
    /// passes.
    masked_regions: std::collections::HashSet<String>,
    /// Every stretch the device ran nothing between two pieces of work, in time order.
    gaps: Vec<Gap<'a>>,
    /// Index in `gaps` of the gap before each work span that has one.
    gap_before: HashMap<u64, usize>,
    /// Spans whose wait a wasted launch has taken, so no idle-gap finding counts it again.
    charged: std::cell::RefCell<std::collections::HashSet<u64>>,
    config: WasteConfig,
    /// The idle that remains between two launches queued back to back, ns: the configured
    /// floor, or the smallest gap in the trace where that is shorter.
    queued_gap_ns: u64,
    /// Host synchronisations on the device, by end.
    syncs: Vec<&'a Span>,
    /// Host time the profiler itself spent holding up the program, (from, to) ns, sorted and
    /// disjoint.
    overhead: Vec<Interval>,
    /// The device timeline, for replays without wasted launches, where the trace has the host
    /// calls for it.
    timeline: Option<time_saved::Timeline<'a>>,
}

impl<'a> Context<'a> {
    fn new(trace: &'a Trace, attribution: &'a Attribution, config: WasteConfig) -> Self {
        let device = attribution.device;
        let work = program_work(trace, device);
        let BufferNotes {
            sizes,
            freed,
            held,
            padding,
        } = BufferNotes::of(trace, device);
        let gaps = gaps_between(&work);
        let queued_gap_ns = gaps
            .iter()
            .map(|g| g.to - g.from)
            .min()
            .map_or(config.queued_gap_ns, |m| m.min(config.queued_gap_ns));
        let gap_before = gaps
            .iter()
            .enumerate()
            .map(|(i, g)| (g.next.id, i))
            .collect();
        let mut syncs: Vec<&Span> = trace
            .spans
            .iter()
            .filter(|s| s.device == device && s.kind == crate::trace::SpanKind::Sync)
            .collect();
        syncs.sort_by_key(|s| (s.end_ns, s.id));
        let writer = work
            .iter()
            .flat_map(|s| s.writes.iter().map(move |w| ((w.buffer, w.version), *s)))
            .collect();
        let masked_regions = masked_regions(trace, &work, &padding);
        let partial_units = padding
            .iter()
            .map(|(&span, units)| (span, units.padded as f64))
            .collect();
        let call_of = library_calls(trace, &work, &padding);
        let timeline =
            time_saved::Timeline::new(&work, &syncs, (queued_gap_ns, config.queued_gap_ns));
        let mut cx = Self {
            timeline,
            call_of,
            partial_units,
            padding,
            masked_regions,
            time_models: HashMap::new(),
            writer,
            by_id: work.iter().map(|s| (s.id, *s)).collect(),
            region_rate: region_rates(attribution),
            gaps,
            gap_before,
            charged: std::cell::RefCell::default(),
            config,
            queued_gap_ns,
            syncs,
            overhead: profiler_held(trace, device, held),
            trace,
            device,
            readers: readers_of(&work),
            work,
            energy: attribution.spans.iter().map(|e| (e.span, e)).collect(),
            sizes,
            freed,
            idle: attribution.idle_power,
        };
        cx.time_models = cx.fit_time_models();
        cx
    }

    /// Fit each operation's launch time against the units it computed, over its launches under
    /// declared passes ([`launch_cost::TimeModel::fit`]). An operation is a kernel name and the
    /// buffers it reads: one kernel often serves several shapes (a matmul for each weight), and
    /// only launches of one shape differ by their units alone. Time, not energy, is fitted: it
    /// is measured per launch, where a launch's energy is an estimate that, for kernels the
    /// sensors cannot tell apart, swings between runs.
    fn fit_time_models(&self) -> HashMap<OpKey<'a>, launch_cost::TimeModel> {
        let mut samples: HashMap<OpKey<'a>, Vec<launch_cost::Sample>> = HashMap::new();
        // In launch order: the fit's sums, and so a near tie between models, do not depend on
        // a hash map's order. A library call's kernels make one sample: the call's busy time.
        let mut call: Option<(OpKey<'a>, launch_cost::Sample)> = None;
        for s in &self.work {
            let Some(units) = self.padding.get(&s.id) else {
                continue;
            };
            let units = units.total as f64;
            let ns = s.duration_ns() as f64;
            match self.call_of.get(&s.id) {
                Some(key) => {
                    match &mut call {
                        Some((k, sample)) if k == key && sample.units == units => sample.ns += ns,
                        _ => {
                            if let Some((k, sample)) = call.take() {
                                samples.entry(k).or_default().push(sample);
                            }
                            let grid = None;
                            call = Some((key.clone(), launch_cost::Sample { units, ns, grid }));
                        }
                    }
                    continue;
                }
                None => {
                    if let Some((k, sample)) = call.take() {
                        samples.entry(k).or_default().push(sample);
                    }
                }
            }
            samples
                .entry(self.op_key(s))
                .or_default()
                .push(launch_cost::Sample {
                    units,
                    ns,
                    grid: s.launch.map(|l| l.grid),
                });
        }
        if let Some((k, sample)) = call.take() {
            samples.entry(k).or_default().push(sample);
        }
        let sm_count = self
            .trace
            .meta
            .devices
            .iter()
            .find(|d| d.index == self.device)
            .map_or(0, |d| d.sm_count);
        // The operations of one kernel (a name and launch block) are fitted together: they
        // share the blocks an SM holds at once.
        let mut families: BTreeMap<Kernel<'a>, Vec<OpKey<'a>>> = BTreeMap::new();
        for s in &self.work {
            let op = self.op_key(s);
            if samples.contains_key(&op) {
                let shape = s.launch.filter(|_| !self.call_of.contains_key(&s.id));
                let family = (op.0, shape.map(|l| (l.block, l.shared_mem_bytes)));
                let ops = families.entry(family).or_default();
                if !ops.contains(&op) {
                    ops.push(op);
                }
            }
        }
        let mut models = HashMap::new();
        for ops in families.into_values() {
            let fitted = {
                let launches: Vec<&[launch_cost::Sample]> = ops
                    .iter()
                    .map(|op| samples.get(op).map_or(&[][..], Vec::as_slice))
                    .collect();
                launch_cost::TimeModel::fit_family(&launches, sm_count)
            };
            for (op, model) in ops.into_iter().zip(fitted) {
                if let Some(m) = model {
                    models.insert(op, m);
                }
            }
        }
        models
    }

    /// The operation span `s` performs, for fitting its cost against size.
    fn op_key(&self, s: &Span) -> OpKey<'a> {
        if let Some(call) = self.call_of.get(&s.id) {
            return call.clone();
        }
        let mut reads: Vec<u64> = s.reads.iter().map(|r| r.buffer).collect();
        reads.sort_unstable();
        reads.dedup();
        (self.trace.str(s.name), reads)
    }

    /// Add the units that recomputed-row findings claim of each span to those padding
    /// claims ([`Context::partial_units`]), before either is priced.
    fn claim_partial(&mut self, claims: impl Iterator<Item = (u64, f64)>) {
        for (span, units) in claims {
            *self.partial_units.entry(span).or_default() += units;
        }
    }

    /// What `wasted` of span `s`'s `total` units cost: (mJ, low, high) and the share of its
    /// time. Where several findings claim units of one launch (padding rows and recomputed
    /// rows), what dropping all their units would save is priced, and each gets its units'
    /// part of it: a launch's cost does not fall in proportion to its units, so prices of
    /// each alone would not add up.
    ///
    /// Dynamic energy follows the work: a launch over fewer units leaves SMs idle, and idle
    /// SMs draw no dynamic power. The work that would remain is the blocks the same kernel
    /// would still run, where its grid follows the units in tiles (a block over a partly
    /// filled tile runs the whole tile), else the units ([`launch_cost`]). Where declared
    /// passes make up most of the span's top-level region ([`Context::masked_regions`]), the
    /// dynamic energy is priced at that region's dynamic power per busy ns: the padding or
    /// recomputed rows then run through the region's kernels alike, and the sensors resolve a
    /// region's energy even where they split it between its kernels differently from run to
    /// run (kernels launched in lockstep). Elsewhere the span's own estimate prices it.
    ///
    /// Static energy follows time: running only the rest with the same kernel saves the share
    /// of time its operation's fitted launch time says, the units' share where no fit exists,
    /// and none where the grid changes in a way the units do not explain (how long the
    /// remaining blocks would take is unknown). The CI's upper end takes the units' share of
    /// time and of dynamic energy, as a kernel made for the smaller size would; its lower end
    /// takes the dynamic energy in proportion to time instead of work, as for a launch whose
    /// every SM stays busy.
    fn partial_mj(&self, s: &Span, wasted: f64, total: f64) -> (Mj, f64) {
        let claimed = self.partial_units.get(&s.id).copied().unwrap_or(0.0);
        let joint = claimed.max(wasted).min(total);
        if total <= 0.0 || joint <= 0.0 || wasted <= 0.0 {
            return (Mj::ZERO, 0.0);
        }
        let part = (wasted / joint).clamp(0.0, 1.0);
        let units = joint / total;
        let model = self.time_models.get(&self.op_key(s));
        let work = model.map_or(units, |m| m.work_share(joint, total));
        let time = match model {
            Some(m) => m.saved_share(joint, total),
            None => Some(units),
        };
        let (own, static_mj) = self.span_parts(s);
        let top = top_region(self.trace, s);
        let dynamic = match self.region_rate.get(top) {
            Some(rate) if self.masked_regions.contains(top) => rate.over_ns(s.duration_ns() as f64),
            _ => own,
        };
        let time_mid = time.unwrap_or(0.0);
        (
            Mj::new(
                part * (dynamic.mj * work + static_mj * time_mid),
                part * (dynamic.low_mj * time.map_or(work, |t| work.min(t)) + static_mj * time_mid),
                part * (dynamic.high_mj * units + static_mj * time_mid.max(units)),
            ),
            part * time_mid,
        )
    }

    /// Energy of span `id`: dynamic plus its static share. Where the
    /// span's own dynamic energy is unresolved, its top-level region's dynamic power per busy
    /// ns prices it instead (each busy ns there costs alike, as far as the sensors can tell),
    /// held under the span's own upper bound: a kernel the sensors bound below its region's
    /// average is cheaper than that average.
    fn span_mj(&self, id: u64) -> Mj {
        let Some(s) = self.by_id.get(&id) else {
            return Mj::ZERO;
        };
        let (dynamic, static_mj) = self.span_parts(s);
        dynamic.plus_exact(static_mj)
    }

    /// Span `s`'s dynamic energy, priced as [`Context::span_mj`] says, and its static share,
    /// mJ.
    fn span_parts(&self, s: &Span) -> (Mj, f64) {
        let Some(e) = self.energy.get(&s.id) else {
            return (Mj::ZERO, 0.0);
        };
        let own = Mj::new(e.dynamic.mj, e.dynamic.low_mj, e.dynamic.high_mj);
        let dynamic = match (
            e.dynamic.coverage,
            self.region_rate.get(top_region(self.trace, s)),
        ) {
            (crate::attribution::Coverage::Unresolved, Some(rate)) => {
                priced_at_rate(own, rate.over_ns(s.duration_ns() as f64).mj)
            }
            _ => own,
        };
        (dynamic, e.static_mj)
    }

    /// The idle wait before span `s` that a wasted launch is charged for: its energy and ns, or
    /// zeros. Only a short wait with no synchronisation ending in it, after work that
    /// was not a read-back.
    fn charge_wait(&self, s: &Span) -> (Mj, u64) {
        let none = (Mj::ZERO, 0);
        let Some(g) = self.gap_before.get(&s.id).and_then(|&i| self.gaps.get(i)) else {
            return none;
        };
        let ns = self.program_idle_ns(g);
        if self.sync_in(g).is_some() || is_readback(g.prev) || ns > self.config.max_charged_wait_ns
        {
            return none;
        }
        self.charged.borrow_mut().insert(s.id);
        (drawn_over(&self.idle, ns as f64), ns)
    }

    /// The last host synchronisation that ended inside gap `g`, if any.
    fn sync_in(&self, g: &Gap<'_>) -> Option<&'a Span> {
        self.syncs_in(g).max_by_key(|s| s.end_ns)
    }

    /// The host synchronisations that ended inside gap `g`.
    fn syncs_in<'s>(&'s self, g: &'s Gap<'_>) -> impl Iterator<Item = &'a Span> + 's {
        let first = self.syncs.partition_point(|s| s.end_ns < g.from);
        self.syncs[first..]
            .iter()
            .take_while(move |s| s.end_ns <= g.to)
            .copied()
    }

    /// How long the host waited from `since_ns` on in the synchronisations that ended inside
    /// gap `g`, ns (their union, less the profiler's own overhead in it): host time that,
    /// without them, would have gone to issuing the next work sooner.
    fn host_wait_ns(&self, g: &Gap<'_>, since_ns: u64) -> u64 {
        let waits = self
            .syncs_in(g)
            .map(|s| Interval::new(s.start_ns.max(since_ns), s.end_ns))
            .filter(|i| i.from_ns < i.to_ns)
            .collect();
        crate::intervals::union(waits)
            .into_iter()
            .map(|i| {
                i.len_ns()
                    .saturating_sub(self.overhead_within(i.from_ns, i.to_ns))
            })
            .sum()
    }

    /// The program's share of gap `g`, ns: its length less the profiler's overhead inside it.
    fn program_idle_ns(&self, g: &Gap<'_>) -> u64 {
        (g.to - g.from).saturating_sub(self.overhead_within(g.from, g.to))
    }

    /// How much of `(from, to)` the profiler's own overhead covers, ns.
    fn overhead_within(&self, from: u64, to: u64) -> u64 {
        crate::intervals::covered_ns(&self.overhead, from, to)
    }

    /// Whether the wait before span `id` was charged to a wasted launch.
    fn is_charged(&self, id: u64) -> bool {
        self.charged.borrow().contains(&id)
    }

    /// Static share of span `id`, mJ.
    fn static_mj(&self, id: u64) -> f64 {
        self.energy.get(&id).map_or(0.0, |e| e.static_mj)
    }

    fn name(&self, s: &Span) -> String {
        self.trace.str(s.name).to_owned()
    }

    /// An occurrence about span `s` with the given kind, its energy and time (ns), and its
    /// evidence. A launch wasted whole (dead write, recomputation, redundant
    /// transfer) also wasted the wait for it to arrive, which is added.
    fn occurrence(
        &self,
        kind: WasteKind,
        s: &Span,
        (energy, time_ns): (Mj, u64),
        evidence: Evidence,
    ) -> Occurrence {
        let whole_launch = matches!(
            kind,
            WasteKind::DeadWrite | WasteKind::Recomputation | WasteKind::RedundantTransfer
        );
        let (energy, time_ns) = if whole_launch {
            let (wait, ns) = self.charge_wait(s);
            (energy + wait, time_ns + ns)
        } else {
            (energy, time_ns)
        };
        Occurrence {
            whole_launch,
            ..self.partial_occurrence(kind, s, (energy, time_ns), evidence)
        }
    }

    /// An occurrence about part of span `s` (padding or recomputed rows): the launch still
    /// runs, so the wait for it to arrive is not charged.
    fn partial_occurrence(
        &self,
        kind: WasteKind,
        s: &Span,
        (energy, time_ns): (Mj, u64),
        evidence: Evidence,
    ) -> Occurrence {
        Occurrence {
            kind,
            what: self.name(s),
            region: self.trace.str(s.region).to_owned(),
            site: self.trace.str(s.site).to_owned(),
            energy,
            time_ns,
            run_saved_ns: None,
            whole_launch: false,
            spans: evidence.spans,
            buffers: evidence.buffers,
            wasted: Wasted::Span(s.id),
            proof: evidence.proof,
            fix: evidence.fix,
        }
    }

    /// Work the session did not issue (no buffer information) between `from` and `to` ns.
    fn unseen_work_between(&self, from: u64, to: u64) -> bool {
        self.work.iter().any(|s| {
            s.start_ns < to
                && s.end_ns > from
                && s.reads.is_empty()
                && s.writes.is_empty()
                && self
                    .trace
                    .str(s.name)
                    .contains("not issued through wattlens")
        })
    }
}

/// The program's work on `device` (the profiler's own left out), by start.
fn program_work(trace: &Trace, device: u32) -> Vec<&Span> {
    let mut work: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| s.device == device && s.is_program_work())
        .collect();
    work.sort_by_key(|s| (s.start_ns, s.id));
    work
}

/// What the trace's annotations say of `device`'s buffers and of the profiler's own time.
struct BufferNotes {
    /// Buffer sizes, bytes.
    sizes: HashMap<u64, u64>,
    /// When each freed buffer was freed, ns.
    freed: HashMap<u64, u64>,
    /// Host time the profiler held the program (its overhead and its replay episodes), ns.
    held: Vec<Interval>,
    /// The padded units of each span launched under a declared pass.
    padding: HashMap<u64, PaddedUnits>,
}

impl BufferNotes {
    fn of(trace: &Trace, device: u32) -> Self {
        let mut notes = Self {
            sizes: HashMap::new(),
            freed: HashMap::new(),
            held: Vec::new(),
            padding: HashMap::new(),
        };
        for a in &trace.annotations {
            match *a {
                Annotation::Buffer { id, bytes, .. } => {
                    notes.sizes.insert(id, bytes);
                }
                Annotation::Freed { id, at_ns } => {
                    notes.freed.insert(id, at_ns);
                }
                Annotation::Overhead {
                    device: d,
                    from_ns,
                    to_ns,
                } if d == device => notes.held.push(Interval::new(from_ns, to_ns)),
                Annotation::Padding {
                    span,
                    padded,
                    total,
                    ..
                } if total > 0 => {
                    notes.padding.insert(span, PaddedUnits { padded, total });
                }
                // The program was held while the profiler replayed a kernel: not its idle.
                Annotation::ProfilerEpisode {
                    device: d,
                    from_ns,
                    to_ns,
                } if d == device => notes.held.push(Interval::new(from_ns, to_ns)),
                Annotation::Padding { .. }
                | Annotation::Overhead { .. }
                | Annotation::ProfilerEpisode { .. }
                | Annotation::ReplayNote { .. }
                | Annotation::CallbackCost { .. }
                | Annotation::AuditOp(_)
                | Annotation::AuditFreed { .. }
                | Annotation::AuditSummary(_)
                | Annotation::AuditNote(_)
                | Annotation::ReleasedAfter { .. }
                | Annotation::Tokens { .. }
                | Annotation::Pass { .. }
                | Annotation::CopyTarget { .. } => {}
            }
        }
        notes
    }
}

/// The spans that read each buffer version.
fn readers_of(work: &[&Span]) -> HashMap<(u64, u32), Vec<u64>> {
    let mut readers: HashMap<(u64, u32), Vec<u64>> = HashMap::new();
    for s in work {
        for r in &s.reads {
            readers.entry((r.buffer, r.version)).or_default().push(s.id);
        }
    }
    readers
}

/// Every stretch the device ran nothing between two pieces of `work` (by start), in time
/// order.
fn gaps_between<'a>(work: &[&'a Span]) -> Vec<Gap<'a>> {
    let mut gaps = Vec::new();
    let mut last: Option<&Span> = None;
    for &s in work {
        match last {
            Some(prev) if s.start_ns > prev.end_ns => gaps.push(Gap {
                from: prev.end_ns,
                to: s.start_ns,
                prev,
                next: s,
            }),
            _ => {}
        }
        if last.is_none_or(|l| s.end_ns >= l.end_ns) {
            last = Some(s);
        }
    }
    gaps
}

/// The time the profiler held the program on `device`: `held` (its overhead and episodes)
/// and its bursts of kernels replayed alone, sorted and disjoint.
fn profiler_held(trace: &Trace, device: u32, mut held: Vec<Interval>) -> Vec<Interval> {
    held.extend(
        trace
            .spans
            .iter()
            .filter(|s| {
                s.device == device && matches!(s.kind, crate::trace::SpanKind::Alone { .. })
            })
            .map(|s| Interval::new(s.start_ns, s.end_ns)),
    );
    crate::intervals::union(held)
}

/// Each top-level region's dynamic energy and busy time: its dynamic energy is resolved even
/// where the kernels inside it, launched in lockstep, cannot be told apart.
fn region_rates(attribution: &Attribution) -> HashMap<String, RegionRate> {
    attribution
        .regions
        .iter()
        .filter(|r| !r.path.contains('/') && r.busy_ns > 0)
        .map(|r| {
            (
                r.path.clone(),
                RegionRate {
                    dynamic: Mj::new(r.dynamic.mj, r.dynamic.low_mj, r.dynamic.high_mj),
                    busy_ns: r.busy_ns as f64,
                },
            )
        })
        .collect()
}

/// The share of a top-level region's busy time that launches under declared passes must make
/// up for the region's rate to price their padding and recomputed rows.
const MASKED_SHARE: f64 = 0.9;

/// The top-level region span `s` ran in ("" outside regions).
fn top_region<'t>(trace: &'t Trace, s: &Span) -> &'t str {
    trace.str(s.region).split('/').next().unwrap_or("")
}

/// The library call each library kernel under a declared pass ran in, as an operation key:
/// the call's name and every buffer the call read. A library kernel is named
/// `KERNEL (in CALL)` by the runtime; a call's kernels run back to back in launch order, with
/// the same call name, site, region and pass, so each maximal run of such kernels is one call.
/// Its buffer touches sit on its last kernel.
fn library_calls<'a>(
    trace: &'a Trace,
    work: &[&'a Span],
    padding: &HashMap<u64, PaddedUnits>,
) -> HashMap<u64, OpKey<'a>> {
    let mut out = HashMap::new();
    let call_name = |s: &Span| {
        let name = trace.str(s.name);
        name.rsplit_once(" (in ")
            .and_then(|(_, call)| call.strip_suffix(')'))
            .filter(|_| padding.contains_key(&s.id))
    };
    let mut run: Vec<&Span> = Vec::new();
    let flush = |run: &mut Vec<&'a Span>, out: &mut HashMap<u64, OpKey<'a>>| {
        let Some(first) = run.first() else {
            return;
        };
        let Some(name) = call_name(first) else {
            run.clear();
            return;
        };
        let mut reads: Vec<u64> = run
            .iter()
            .flat_map(|s| s.reads.iter().map(|r| r.buffer))
            .collect();
        reads.sort_unstable();
        reads.dedup();
        for s in run.drain(..) {
            out.insert(s.id, (name, reads.clone()));
        }
    };
    for &s in work {
        let same_call = run.last().is_some_and(|last| {
            call_name(last).is_some()
                && call_name(last) == call_name(s)
                && last.site == s.site
                && last.region == s.region
                && padding.get(&last.id) == padding.get(&s.id)
                && last.writes.is_empty()
        });
        if !same_call {
            flush(&mut run, &mut out);
        }
        if call_name(s).is_some() {
            run.push(s);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The top-level regions whose work spans' busy time is at least [`MASKED_SHARE`] launches
/// under declared passes (those in `padding`).
fn masked_regions(
    trace: &Trace,
    work: &[&Span],
    padding: &HashMap<u64, PaddedUnits>,
) -> std::collections::HashSet<String> {
    let mut busy: HashMap<&str, (u64, u64)> = HashMap::new();
    for s in work {
        let (all, under) = busy.entry(top_region(trace, s)).or_default();
        *all += s.duration_ns();
        if padding.contains_key(&s.id) {
            *under += s.duration_ns();
        }
    }
    busy.into_iter()
        .filter(|&(top, (all, under))| {
            !top.is_empty() && all > 0 && under as f64 >= MASKED_SHARE * all as f64
        })
        .map(|(top, _)| top.to_owned())
        .collect()
}

/// Whether `s` is a copy to the host (after which the host works on what it read).
fn is_readback(s: &Span) -> bool {
    matches!(
        s.kind,
        crate::trace::SpanKind::Memcpy {
            direction: crate::trace::CopyDirection::DeviceToHost,
            ..
        }
    )
}

/// `path` with every run of digits replaced by `*` (layer3 → layer*).
fn fold_digits(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('*');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The leading path components `a` and `b` share.
fn common_prefix(a: &str, b: &str) -> String {
    a.split('/')
        .zip(b.split('/'))
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect::<Vec<_>>()
        .join("/")
}

/// What groups occurrences into one finding: kind, what, site and folded region.
type GroupKey = (WasteKind, String, String, String);

/// The finding occurrence `o` goes into ([`group`]).
fn group_key(o: &Occurrence) -> GroupKey {
    // Idle gaps group by cause and site alone: the work that waited varies.
    let region_key = if o.kind == WasteKind::IdleGap {
        String::new()
    } else {
        fold_digits(&o.region)
    };
    (o.kind, o.what.clone(), o.site.clone(), region_key)
}

/// Price the static share of launches and copies wasted whole by the time the run would save
/// without them, where the trace's host calls let the timeline be replayed
/// ([`time_saved`]): each finding's launches are dropped together, and the replay's saving,
/// at the device's idle power, replaces the launches' share of idle power over their own
/// time and the waits before them. A launch in a launch-bound stretch saves only its host
/// call, however long it ran; one in a device-bound stretch saves its whole time.
fn price_by_time_saved(cx: &Context<'_>, occurrences: &mut [Occurrence]) {
    let Some(timeline) = &cx.timeline else {
        return;
    };
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, o) in occurrences.iter().enumerate() {
        if o.whole_launch {
            groups.entry(group_key(o)).or_default().push(i);
        }
    }
    for members in groups.values() {
        let ids: Vec<u64> = members
            .iter()
            .filter_map(|&i| match occurrences[i].wasted {
                Wasted::Span(id) => Some(id),
                Wasted::Idle(..) => None,
            })
            .collect();
        let shares = timeline.shares(&ids);
        for &i in members {
            let o = &mut occurrences[i];
            let Wasted::Span(id) = o.wasted else {
                continue;
            };
            let (Some(saved), Some(s)) = (shares.get(&id), cx.by_id.get(&id)) else {
                continue;
            };
            let (dynamic, _) = cx.span_parts(s);
            let at_idle = |mw: f64, ns: f64| mw * ns * 1e-9;
            let p = &cx.idle;
            o.energy = dynamic
                + Mj::new(
                    at_idle(p.mw, saved.mid_ns),
                    at_idle(p.low_mw, saved.low_ns),
                    at_idle(p.high_mw, saved.high_ns),
                );
            o.time_ns = s.duration_ns();
            o.run_saved_ns = Some(saved.mid_ns);
        }
    }
}

/// Group occurrences by kind, what, site and folded region; sum their energy (the CI bounds
/// add, since span estimates of one signature move together) and time.
fn group(occurrences: Vec<Occurrence>) -> Vec<Finding> {
    let mut groups: BTreeMap<GroupKey, Finding> = BTreeMap::new();
    for o in occurrences {
        let f = groups.entry(group_key(&o)).or_insert_with(|| Finding {
            kind: o.kind,
            energy: EnergyEstimate::from_half_width(0.0, 0.0),
            time_ns: 0,
            run_saved_ns: None,
            occurrences: 0,
            what: o.what.clone(),
            region: o.region.clone(),
            site: o.site.clone(),
            spans: Vec::new(),
            buffers: Vec::new(),
            wasted_spans: Vec::new(),
            idle_intervals: Vec::new(),
            proof: o.proof.clone(),
            fix: o.fix.clone(),
        });
        if f.region != o.region {
            f.region = if o.kind == WasteKind::IdleGap {
                common_prefix(&f.region, &o.region)
            } else {
                fold_digits(&o.region)
            };
        }
        let (mj, low, high) = (
            f.energy.mj + o.energy.mj,
            f.energy.low_mj + o.energy.low_mj,
            f.energy.high_mj + o.energy.high_mj,
        );
        f.energy = EnergyEstimate {
            mj,
            low_mj: low,
            high_mj: high,
            coverage: crate::attribution::Coverage::classify(mj, low, high),
        };
        f.time_ns += o.time_ns;
        if let Some(ns) = o.run_saved_ns {
            f.run_saved_ns = Some(f.run_saved_ns.unwrap_or(0) + ns.round() as u64);
        }
        f.occurrences += 1;
        f.spans.extend(o.spans);
        f.buffers.extend(o.buffers);
        match o.wasted {
            Wasted::Span(id) => f.wasted_spans.push(id),
            Wasted::Idle(i) => f.idle_intervals.push(i),
        }
    }
    let mut findings: Vec<Finding> = groups.into_values().collect();
    findings.sort_by(|a, b| b.energy.mj.total_cmp(&a.energy.mj));
    findings
}

/// Find the waste on `attribution.device` of `trace`.
pub fn detect(trace: &Trace, attribution: &Attribution, config: &WasteConfig) -> WasteReport {
    let mut cx = Context::new(trace, attribution, *config);
    let mut occurrences = Vec::new();
    let mut unchecked = Vec::new();
    dead_write::detect(&cx, &mut occurrences, &mut unchecked);
    recompute::detect(&cx, &mut occurrences, &mut unchecked);
    let recomputed = prefix::find(&cx, &mut unchecked);
    cx.claim_partial(recomputed.iter().map(|r| (r.span, r.wasted)));
    prefix::report(&cx, &recomputed, &mut occurrences);
    transfer::detect(&cx, &mut occurrences, &mut unchecked);
    audit::detect(&cx, &mut occurrences, &mut unchecked);
    // After the launch detectors: the waits they were charged are not idle findings again.
    idle::detect(&cx, config, &mut occurrences);
    underfill::detect(&cx, config, &mut occurrences);
    padding::detect(&cx, &mut occurrences, &mut unchecked);
    price_by_time_saved(&cx, &mut occurrences);
    let unknown: usize = cx
        .work
        .iter()
        .filter(|s| !s.unknown_access.is_empty())
        .count();
    if unknown > 0 {
        unchecked.push(format!(
            "{unknown} launches had buffers with unknown access modes (no kernel facts); they were taken to read and write them, so no write they made was called dead and nothing they read was called unread"
        ));
    }
    let profiler_idle_ns = idle::profiler_idle_ns(&cx);
    if profiler_idle_ns > 0 {
        unchecked.push(format!(
            "{:.1} ms of device idle time was wattlens' own content hashing, not the program's; it is not counted",
            profiler_idle_ns as f64 / 1e6
        ));
    }
    let audit = audit::cost(&cx);
    unchecked.extend(
        audit
            .as_ref()
            .and_then(|a| audit::unaudited_note(a, cx.device)),
    );
    let c = &attribution.closure;
    let covered = (c.window_ns > 0).then_some(Interval::new(c.start_ns, c.start_ns + c.window_ns));
    // The attributed dynamic energy is uncertain by at most what the closure left unexplained.
    let spread = c.residual_mj.abs();
    let phases = covered.and_then(|covered| {
        idle::phases(
            &cx,
            config,
            covered,
            Mj::new(c.dynamic_mj, c.dynamic_mj - spread, c.dynamic_mj + spread),
        )
    });
    WasteReport {
        device: cx.device,
        findings: group(occurrences),
        unchecked,
        profiler_idle_ns,
        phases,
        audit,
    }
}

/// The dynamic energy of an unresolved span at its region's rate (`at_rate_mj`: the region's
/// dynamic energy over the span's duration), held under the span's `own` upper bound. The region's rate is only a
/// guess at what the span itself drew, so the CI is the span's own: a narrow kernel in a
/// region of wide ones draws far less than the region's average, and the sensors cannot say.
fn priced_at_rate(own: Mj, at_rate_mj: f64) -> Mj {
    let mid = at_rate_mj.min(own.high_mj);
    Mj::new(mid, own.low_mj.clamp(0.0, mid), own.high_mj.max(mid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_library_kernels_is_one_call_until_one_carries_its_output() {
        let mut trace = Trace::default();
        let mut id = 0;
        let mut span = |trace: &mut Trace, name: &str, writes: &[u64], reads: &[u64]| {
            id += 1;
            let (name, _) = trace.strings.intern(name);
            let mut s = Span::new(
                id,
                crate::trace::SpanKind::Kernel,
                (0, 0),
                name,
                (id * 10, id * 10 + 5),
            );
            let v = |b: &u64| BufferVersion {
                buffer: *b,
                version: 1,
            };
            s.writes = writes.iter().map(v).collect();
            s.reads = reads.iter().map(v).collect();
            trace.spans.push(s);
            id
        };
        // Call 1: a memset and a GEMM, then a split-K reduction that carries the output; an own
        // kernel; calls 2 and 3 back to back (each carries its output); a library kernel with
        // no padding declared (not a call under a pass).
        let one = [
            span(
                &mut trace,
                "memset (not issued by wattlens) (in gemm)",
                &[],
                &[],
            ),
            span(&mut trace, "sgemm_big (in gemm)", &[], &[]),
            span(&mut trace, "reduce (in gemm)", &[10], &[1, 2]),
        ];
        let own = span(&mut trace, "gelu", &[11], &[10]);
        let two = span(&mut trace, "sgemm_small (in gemm)", &[12], &[11, 3]);
        let three = span(&mut trace, "sgemm_small (in gemm)", &[13], &[12, 4]);
        let unmasked = span(&mut trace, "sgemm_small (in gemm)", &[14], &[13, 5]);
        let padding: HashMap<u64, PaddedUnits> = [one[0], one[1], one[2], own, two, three]
            .into_iter()
            .map(|s| {
                let units = PaddedUnits {
                    padded: 2,
                    total: 8,
                };
                (s, units)
            })
            .collect();
        let work: Vec<&Span> = trace.spans.iter().collect();
        let calls = library_calls(&trace, &work, &padding);
        for s in one {
            assert_eq!(calls.get(&s), Some(&("gemm", vec![1, 2])), "span {s}");
        }
        assert_eq!(calls.get(&two), Some(&("gemm", vec![3, 11])));
        assert_eq!(calls.get(&three), Some(&("gemm", vec![4, 12])));
        assert!(!calls.contains_key(&own) && !calls.contains_key(&unmasked));
    }

    #[test]
    fn an_unresolved_span_is_priced_at_its_regions_rate_under_its_own_bound() {
        // Region: 40 µW per ns (40 W); span of 1000 ns.
        let rate = 40e-6;
        // Its own bound (0.06 mJ: 60 W over the 1000 ns) is above the region's price: the rate
        // stands, and the CI is the span's own, not the region's.
        let Mj {
            mj: mid,
            low_mj: low,
            high_mj: high,
        } = priced_at_rate(Mj::new(0.01, 0.0, 0.06), rate * 1000.0);
        assert!((mid - 0.04).abs() < 1e-12 && low == 0.0);
        assert!((high - 0.06).abs() < 1e-12);
        // Its own bound (28 W) is below the region's price: held at the bound, with the
        // span's own CI below it.
        let Mj {
            mj: mid,
            low_mj: low,
            high_mj: high,
        } = priced_at_rate(Mj::new(0.01, 0.002, 0.028), rate * 1000.0);
        assert!((mid - 0.028).abs() < 1e-12, "{mid}");
        assert!((low - 0.002).abs() < 1e-12 && (high - 0.028).abs() < 1e-12);
    }

    #[test]
    fn digits_fold_to_one_star_per_run() {
        assert_eq!(fold_digits("decode/layer11/mlp"), "decode/layer*/mlp");
        assert_eq!(fold_digits("a1b22c"), "a*b*c");
        assert_eq!(fold_digits(""), "");
    }

    #[test]
    fn common_prefixes_stop_at_the_first_different_component() {
        assert_eq!(
            common_prefix("decode/layer1/mlp", "decode/layer2/mlp"),
            "decode"
        );
        assert_eq!(common_prefix("a/b", "a/b"), "a/b");
        assert_eq!(common_prefix("a", "b"), "");
    }
}
