//! Turning what CUPTI, NVTX and NVML delivered into trace records, written as they come so
//! that a crash leaves a readable prefix. Nothing here touches CUDA: the hooks feed it, and
//! tests feed it by hand.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::sync::Arc;

use wattlens_instrument::format::{TraceError, TraceWriter};
use wattlens_instrument::trace::{
    Annotation, ClockSource, CopyDirection, LaunchShape, PowerReading, ReplayOutcome, Span,
    SpanKind, StrId, ALONE_REGION,
};
use wattlens_instrument::Interval;
use wattlens_runtime::internal::clock_fit::{ClockMap, ClockPoint};
use wattlens_runtime::internal::cuda::cupti_records::CuptiRecord;
use wattlens_runtime::internal::timing::{work_span, ActivityKind};

use crate::demangle::display_name;
use crate::nvtx_ranges::MARK_TRACK;
use crate::regions::{Closed, Paths};
use crate::replay::Replayed;
use crate::syncs::HostSync;
use crate::uploads::Upload;

/// Calibration points the clock map is fitted over: the most recent ones, so a long run's
/// fit stays cheap and follows slow drift.
const FIT_WINDOW: usize = 40;

/// How far past the flush a mapped end may fall before it is taken as invalid (the clock
/// map's error is microseconds), ns.
const CLOCK_SLACK_NS: u64 = 100_000_000;

/// What was written, for the closing log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Kernel spans.
    pub kernels: u64,
    /// Kernel spans whose launch was tagged with an NVTX range.
    pub kernels_in_ranges: u64,
    /// Copy spans.
    pub copies: u64,
    /// Memset spans.
    pub memsets: u64,
    /// Host synchronisation spans.
    pub syncs: u64,
    /// NVTX range spans (push/pop and start/end).
    pub regions: u64,
    /// NVTX marks.
    pub marks: u64,
    /// Power readings.
    pub readings: u64,
    /// Records left out: host-to-host copies, records with no or impossible timestamps.
    pub skipped: u64,
    /// Host-to-device copies whose content was hashed at their call.
    pub hashed_uploads: u64,
    /// Time the program was held up checking and hashing them, ns.
    pub hashing_ns: u64,
    /// Kernel replays recorded.
    pub replays: u64,
    /// Time kernel replays held the program, ns.
    pub replay_held_ns: u64,
    /// The library's own callbacks run on the program's threads.
    pub callbacks: u64,
    /// Host time they took, ns.
    pub callback_ns: u64,
}

/// What the API callbacks learned about the call that issued a record's work, by the call's
/// correlation id; and who wants to know each kernel's busy time.
pub trait CallInfo {
    /// The NVTX path the call was made in, if a range was open.
    fn region(&mut self, correlation: u32) -> Option<Arc<str>>;
    /// The upload the call made, if its content was hashed.
    fn upload(&mut self, correlation: u32) -> Option<Upload>;
    /// A kernel (with its shape) or a copy of the program ran on `device` for `busy_ns`, under
    /// the name its span carries (kernel replay's plan counts it).
    fn work(&mut self, _device: u32, _name: &str, _shape: Option<LaunchShape>, _busy_ns: u64) {}
}

/// The stream number kernel replay's bursts are recorded on (no CUPTI stream has it).
pub const REPLAY_STREAM: u64 = u32::MAX as u64 - 1;

/// A region lookup alone: calls whose uploads were not hashed.
impl<F: FnMut(u32) -> Option<Arc<str>>> CallInfo for F {
    fn region(&mut self, correlation: u32) -> Option<Arc<str>> {
        self(correlation)
    }

    fn upload(&mut self, _correlation: u32) -> Option<Upload> {
        None
    }
}

/// Writes one process's trace from the records it is handed.
pub struct Collector<W: Write> {
    out: TraceWriter<W>,
    next_id: u64,
    /// CUDA devices that ran work, for the clock alignment records.
    devices: BTreeSet<u32>,
    names: HashMap<String, StrId>,
    points: VecDeque<ClockPoint>,
    /// Every point, thinned to one a second or so, for the alignment record.
    evidence: Vec<ClockPoint>,
    map: Option<ClockMap>,
    counts: Counts,
    /// Replays whose program launch has no span yet, by its correlation id: the burst's span
    /// names that launch as the one it replayed.
    replays: HashMap<u32, Replayed>,
}

impl<W: Write> Collector<W> {
    /// A collector writing through `out` (header and metadata already written).
    pub fn new(out: TraceWriter<W>) -> Self {
        Self {
            out,
            next_id: 1,
            devices: BTreeSet::new(),
            names: HashMap::new(),
            points: VecDeque::new(),
            evidence: Vec::new(),
            map: None,
            counts: Counts::default(),
            replays: HashMap::new(),
        }
    }

    /// What was written so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Add a CUPTI-clock calibration point and refit the map.
    pub fn calibrate(&mut self, point: ClockPoint) {
        self.points.push_back(point);
        if self.points.len() > FIT_WINDOW {
            self.points.pop_front();
        }
        if self
            .evidence
            .last()
            .is_none_or(|p| point.trace_ns.saturating_sub(p.trace_ns) >= 1_000_000_000)
        {
            self.evidence.push(point);
        }
        let window: Vec<ClockPoint> = self.points.iter().copied().collect();
        self.map = ClockMap::fit(&window).or(self.map);
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn name(&mut self, raw: &str) -> Result<StrId, TraceError> {
        if let Some(&id) = self.names.get(raw) {
            return Ok(id);
        }
        let id = self.out.intern(&display_name(raw))?;
        self.names.insert(raw.to_owned(), id);
        Ok(id)
    }

    /// Write CUPTI's records, delivered by `now_ns` (trace clock), as spans; `calls` gives the
    /// NVTX path of the API call with a correlation id, where one was open, and the content an
    /// upload carried, where it was hashed (with the device address it wrote, as an annotation,
    /// and the time hashing held the program up). Records of work still running when a forced
    /// flush took them (at a crash) carry no valid end: one that ends after `now_ns` is left
    /// out, not written as a span that never ends.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn records(
        &mut self,
        records: Vec<CuptiRecord>,
        now_ns: u64,
        calls: &mut dyn CallInfo,
    ) -> Result<(), TraceError> {
        let Some(map) = self.map else {
            self.counts.skipped += records.len() as u64;
            return Ok(());
        };
        // Work still running when a forced flush took it (at a crash) has no valid end.
        let ended = |start: u64, end: u64| {
            start != 0 && end >= start && map.map_ns(end) <= now_ns.saturating_add(CLOCK_SLACK_NS)
        };
        for record in records {
            match record {
                CuptiRecord::Work { device, activity } => {
                    self.devices.insert(device);
                    if !ended(activity.start_ns, activity.end_ns) {
                        self.counts.skipped += 1;
                        continue;
                    }
                    let Some((mut kind, launch, label)) = work_span(&activity.kind) else {
                        self.counts.skipped += 1;
                        continue;
                    };
                    let mut upload = None;
                    let busy_ns = map
                        .map_ns(activity.end_ns)
                        .saturating_sub(map.map_ns(activity.start_ns));
                    match (&activity.kind, &mut kind) {
                        (ActivityKind::Kernel { name, shape }, _) => {
                            self.counts.kernels += 1;
                            calls.work(device, name, Some(*shape), busy_ns);
                        }
                        (
                            ActivityKind::Memcpy { bytes, .. },
                            SpanKind::Memcpy {
                                direction,
                                content_digest,
                                ..
                            },
                        ) => {
                            self.counts.copies += 1;
                            calls.work(device, label, None, busy_ns);
                            upload = (*direction == CopyDirection::HostToDevice)
                                .then(|| calls.upload(activity.correlation_id))
                                .flatten()
                                .filter(|u| u.bytes == *bytes);
                            *content_digest = upload.map(|u| u.digest);
                        }
                        _ => self.counts.memsets += 1,
                    }
                    let name = self.name(label)?;
                    let mut span = Span::new(
                        self.id(),
                        kind,
                        (device, u64::from(activity.stream_id)),
                        name,
                        (map.map_ns(activity.start_ns), map.map_ns(activity.end_ns)),
                    );
                    span.launch = launch;
                    if let Some(path) = calls.region(activity.correlation_id) {
                        span.region = self.out.intern(&path)?;
                        if span.kind == SpanKind::Kernel {
                            self.counts.kernels_in_ranges += 1;
                        }
                    }
                    self.out.span(&span)?;
                    if matches!(span.kind, SpanKind::Kernel | SpanKind::Memcpy { .. }) {
                        if let Some(r) = self.replays.remove(&activity.correlation_id) {
                            self.burst(&r, span.id)?;
                        }
                    }
                    if let Some(u) = upload {
                        self.counts.hashed_uploads += 1;
                        self.out.annotation(&Annotation::CopyTarget {
                            span: span.id,
                            address: u.address,
                        })?;
                        let Interval { from_ns, to_ns } = u.hashed_ns;
                        self.counts.hashing_ns += u.hashed_ns.len_ns();
                        if to_ns > from_ns {
                            self.out.annotation(&Annotation::Overhead {
                                device,
                                from_ns,
                                to_ns,
                            })?;
                        }
                    }
                }
                CuptiRecord::External { .. } => {}
            }
        }
        Ok(())
    }

    /// Record kernel replays: the time each held the program as a profiler episode now, its
    /// burst as an `alone` span once the program's launch it replayed has its span.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn replays(&mut self, replays: Vec<Replayed>) -> Result<(), TraceError> {
        for r in replays {
            self.counts.replays += 1;
            let Interval { from_ns, to_ns } = r.held_ns;
            self.counts.replay_held_ns += r.held_ns.len_ns();
            self.out.annotation(&Annotation::ProfilerEpisode {
                device: r.device,
                from_ns,
                to_ns,
            })?;
            self.replays.insert(r.correlation, r);
        }
        Ok(())
    }

    /// Write replay `r`'s burst as an `alone` span of the launch with span id `of` (0 when
    /// its record never came).
    fn burst(&mut self, r: &Replayed, of: u64) -> Result<(), TraceError> {
        let name = self.name(&r.name)?;
        let mut span = Span::new(
            self.id(),
            SpanKind::Alone {
                launches: r.burst.launches,
                of,
            },
            (r.device, REPLAY_STREAM),
            name,
            (r.burst.start_ns, r.burst.end_ns.max(r.burst.start_ns)),
        );
        span.launch = r.shape;
        span.region = self.out.intern(ALONE_REGION)?;
        self.devices.insert(r.device);
        self.out.span(&span)
    }

    /// Write kernel replay's notes: the signatures it did not measure, and why.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn replay_notes(
        &mut self,
        notes: &[(crate::replay::plan::SigKey, u32, ReplayOutcome)],
    ) -> Result<(), TraceError> {
        for ((device, name, shape), busy_ppm, outcome) in notes {
            self.out.annotation(&Annotation::ReplayNote {
                device: *device,
                name: display_name(name),
                launch: *shape,
                busy_ppm: *busy_ppm,
                outcome: outcome.clone(),
            })?;
        }
        Ok(())
    }

    /// Write closed NVTX ranges as region spans on region track `track` (0 for push/pop
    /// ranges, [`crate::nvtx_ranges::START_END_TRACK`], [`MARK_TRACK`] for marks, which are
    /// zero-length), with host
    /// times already on the trace clock, named through `paths`; a range whose path id the
    /// table lacks is skipped.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn regions(
        &mut self,
        closed: &[Closed],
        paths: &dyn Paths,
        track: u64,
    ) -> Result<(), TraceError> {
        for r in closed {
            let Some((name, path)) = paths.get(r.path) else {
                continue;
            };
            if track == MARK_TRACK {
                self.counts.marks += 1;
            } else {
                self.counts.regions += 1;
            }
            let name = self.out.intern(&name)?;
            let span = Span {
                region: self.out.intern(&path)?,
                ..Span::new(
                    self.id(),
                    SpanKind::Region { depth: r.depth },
                    (0, track),
                    name,
                    (r.start_ns, r.end_ns),
                )
            };
            self.out.span(&span)?;
            if let Some(tokens) = r.tokens {
                self.out.annotation(&Annotation::Tokens {
                    span: span.id,
                    tokens,
                })?;
            }
        }
        Ok(())
    }

    /// Record what the library's own callbacks cost the program's threads between `from_ns`
    /// and `to_ns` (trace clock): `calls` callbacks that took `host_ns` in all.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn callback_cost(
        &mut self,
        Interval { from_ns, to_ns }: Interval,
        calls: u64,
        host_ns: u64,
    ) -> Result<(), TraceError> {
        self.counts.callbacks += calls;
        self.counts.callback_ns += host_ns;
        self.out.annotation(&Annotation::CallbackCost {
            from_ns,
            to_ns,
            calls,
            host_ns,
        })
    }

    /// Write host waits (already on the trace clock) as sync spans.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn syncs(&mut self, syncs: &[HostSync]) -> Result<(), TraceError> {
        if syncs.is_empty() {
            return Ok(());
        }
        let name = self.out.intern("synchronize")?;
        for s in syncs {
            self.counts.syncs += 1;
            let span = Span::new(
                self.id(),
                SpanKind::Sync,
                (s.device, u64::from(s.stream)),
                name,
                (s.start_ns, s.end_ns),
            );
            self.out.span(&span)?;
        }
        Ok(())
    }

    /// Write power readings of CUDA device `device` (a sampler's own index is replaced).
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn power(&mut self, device: u32, readings: &[PowerReading]) -> Result<(), TraceError> {
        for r in readings {
            self.counts.readings += 1;
            self.out.power(&(*r).with_device(device))?;
        }
        Ok(())
    }

    /// Push everything written so far to the file.
    ///
    /// # Errors
    /// [`TraceError`] when the file cannot be written.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.out.flush()
    }

    /// Write the clock evidence (CUPTI's, and `more` from the samplers) and the end marker.
    ///
    /// # Errors
    /// [`TraceError`] when the trace cannot be written.
    pub fn finish(
        mut self,
        more: &[wattlens_instrument::trace::ClockAlignment],
    ) -> Result<W, TraceError> {
        // Bursts whose program launch left no record (lost at a crash, or still running).
        let mut left: Vec<Replayed> = self.replays.drain().map(|(_, r)| r).collect();
        left.sort_by_key(|r| r.burst.start_ns);
        for r in &left {
            self.burst(r, 0)?;
        }
        if let Some(map) = self.map {
            for &device in &self.devices {
                self.out
                    .alignment(&map.alignment(ClockSource::Cupti, device, &self.evidence))?;
            }
        }
        for a in more {
            self.out.alignment(a)?;
        }
        self.out.finish()
    }
}
