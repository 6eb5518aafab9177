//! How much sooner a run would end without some of its work: the device timeline replayed
//! without it, from the host calls that issued each piece of work.
//!
//! Between two points where the host waits for the device (a synchronisation, or a copy whose
//! call returns only once it has run), the host issues work and the device runs it in order on
//! each stream. Work that started after the device sat idle had just arrived: it started when
//! its call let it. Work that started right after earlier work was queued: it could have
//! started its launch latency after its call began. Without a wasted launch the host issues
//! everything after it sooner, by the time its call took, and the device runs each later piece
//! at the earliest those allow. The next wait ends sooner by what the replay gives, and so does
//! everything after it: the run's saving is the sum over the stretches between waits.
//!
//! A launch in a device-bound stretch saves its whole time; one in a launch-bound stretch saves
//! the host's call, since the slack after it absorbs its device time. The launch latency is the
//! median the trace shows for work that waited on the host; its 90th and 10th percentiles give
//! the saving's lower and upper bounds.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::intervals::{diff_ns, Interval};
use crate::trace::{Span, SpanKind};

/// The share of work spans that must carry their host calls for the timeline to be replayed.
const MIN_CALL_SHARE: f64 = 0.9;

/// A point where the host waited for the device.
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// When the host began to wait (its synchronisation or copy call began), ns.
    arrive_ns: u64,
    /// When it went on, ns.
    return_ns: u64,
    /// Index (in [`Timeline::ops`]) of the copy whose call waited; none for a synchronisation.
    op: Option<usize>,
}

/// A run's saving without some work, ns: the estimate and its bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Saving {
    /// At the median launch latency, ns.
    pub mid_ns: f64,
    /// At the 90th percentile (queued work can move up least), ns.
    pub low_ns: f64,
    /// At the 10th percentile, ns.
    pub high_ns: f64,
}

/// The device's work and the host's waits, ready to be replayed without some of the work.
pub(crate) struct Timeline<'a> {
    /// Work spans, by start.
    ops: Vec<&'a Span>,
    /// Position in `ops` of each span id.
    index: HashMap<u64, usize>,
    /// Idle on its stream before each work span (same order as `ops`), ns; none for the
    /// first on its stream.
    gap_ns: Vec<Option<u64>>,
    /// The host's waits, by return.
    waits: Vec<Wait>,
    /// The idle that remains between two pieces of work queued back to back, ns: the median
    /// gap the trace shows between work that did not wait for the host.
    queued_gap_ns: u64,
    /// A gap longer than this before a piece of work means it waited for the host, ns.
    waited_gap_ns: u64,
    /// Launch latency from a call's start to its work's start, ns: 10th, 50th and 90th
    /// percentiles over work that waited on the host (0 where none did).
    latency_ns: [u64; 3],
}

impl<'a> Timeline<'a> {
    /// The timeline of `work` (one device's program work, by start) and the host's `syncs`,
    /// with `queued_gap_ns` of idle between work queued back to back and gaps over twice
    /// `floor_gap_ns` taken as waits for the host; none where too few spans carry their host
    /// calls to replay it (traces of programs the runtime did not issue, or written before
    /// host calls were recorded).
    pub(crate) fn new(
        work: &[&'a Span],
        syncs: &[&'a Span],
        (queued_gap_ns, floor_gap_ns): (u64, u64),
    ) -> Option<Self> {
        let with_call = work.iter().filter(|s| s.host_call_ns.is_some()).count();
        if work.is_empty() || (with_call as f64) < MIN_CALL_SHARE * work.len() as f64 {
            return None;
        }
        let ops = work.to_vec();
        let index = ops.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let mut last_end: HashMap<u64, u64> = HashMap::new();
        let gap_ns = ops
            .iter()
            .map(|s| {
                let prev = last_end.insert(s.stream, s.end_ns)?;
                Some(s.start_ns.saturating_sub(prev))
            })
            .collect();
        let mut waits: Vec<Wait> = syncs
            .iter()
            .map(|s| Wait {
                arrive_ns: s.start_ns,
                return_ns: s.end_ns,
                op: None,
            })
            .collect();
        waits.extend(ops.iter().enumerate().filter_map(|(i, s)| {
            let Interval {
                from_ns: from,
                to_ns: to,
            } = s.host_call_ns?;
            is_blocking(s).then_some(Wait {
                arrive_ns: from,
                return_ns: to,
                op: Some(i),
            })
        }));
        waits.sort_by_key(|w| (w.return_ns, w.arrive_ns));
        let mut timeline = Self {
            ops,
            index,
            gap_ns,
            waits,
            queued_gap_ns,
            waited_gap_ns: floor_gap_ns.max(queued_gap_ns).saturating_mul(2),
            latency_ns: [0; 3],
        };
        timeline.latency_ns = timeline.latencies();
        timeline.queued_gap_ns = timeline.queued_gap().unwrap_or(queued_gap_ns);
        Some(timeline)
    }

    /// The median gap between work on one stream that did not wait for the host, ns.
    fn queued_gap(&self) -> Option<u64> {
        let mut gaps: Vec<u64> = self
            .gap_ns
            .iter()
            .flatten()
            .copied()
            .filter(|&gap| gap <= self.waited_gap_ns)
            .collect();
        if gaps.is_empty() {
            return None;
        }
        let mid = gaps.len() / 2;
        Some(*gaps.select_nth_unstable(mid).1)
    }

    /// Launch latencies of work that started after an idle wait: (10th, 50th, 90th)
    /// percentiles, ns.
    fn latencies(&self) -> [u64; 3] {
        let mut seen = Vec::new();
        for (s, gap) in self.ops.iter().zip(&self.gap_ns) {
            let waited = gap.is_none_or(|g| g > self.waited_gap_ns);
            if let (true, Some(Interval { from_ns: from, .. })) = (waited, s.host_call_ns) {
                if s.kind == SpanKind::Kernel && s.start_ns >= from {
                    seen.push(s.start_ns - from);
                }
            }
        }
        if seen.is_empty() {
            return [0; 3];
        }
        seen.sort_unstable();
        let at = |q: f64| seen[((seen.len() - 1) as f64 * q).round() as usize];
        [at(0.1), at(0.5), at(0.9)]
    }

    /// How much sooner the run would end without the spans `removed` (ids; unknown ones are
    /// ignored), and each one's part of it (in proportion to its device time and host call):
    /// where several go together (one finding's launches), what dropping them all saves is
    /// not the sum of what each alone saves.
    pub(crate) fn shares(&self, removed: &[u64]) -> HashMap<u64, Saving> {
        let set: HashSet<usize> = removed
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        let mut stretches: BTreeMap<(Option<usize>, Option<usize>), Vec<usize>> = BTreeMap::new();
        for &i in &set {
            stretches.entry(self.stretch(i, &set)).or_default().push(i);
        }
        let mut out = HashMap::new();
        for ((lo, hi), mut ids) in stretches {
            ids.sort_unstable();
            let saved = |latency_ns: u64| self.replay(lo, hi, &set, latency_ns);
            let [fast, median, slow] = self.latency_ns;
            let (mid, a, b) = (saved(median), saved(slow), saved(fast));
            let weight = |i: usize| {
                let s = self.ops[i];
                s.duration_ns() as f64 + self.host_cost_ns(s, median)
            };
            let total: f64 = ids.iter().map(|&i| weight(i)).sum();
            for &i in &ids {
                let part = if total > 0.0 {
                    weight(i) / total
                } else {
                    1.0 / ids.len() as f64
                };
                out.insert(
                    self.ops[i].id,
                    Saving {
                        mid_ns: part * mid,
                        low_ns: part * a.min(b).min(mid),
                        high_ns: part * a.max(b).max(mid),
                    },
                );
            }
        }
        out
    }

    /// The waits (indices in `waits`) before and after work `i` that `removed` leaves in place:
    /// the stretch of the timeline it ran in.
    fn stretch(&self, i: usize, removed: &HashSet<usize>) -> (Option<usize>, Option<usize>) {
        let start = self.ops[i].start_ns;
        let split = self.waits.partition_point(|w| w.return_ns <= start);
        let kept = |w: &Wait| w.op.is_none_or(|o| !removed.contains(&o));
        let lo = self.waits[..split].iter().rposition(kept);
        let hi = self.waits[split..].iter().position(kept).map(|k| split + k);
        (lo, hi)
    }

    /// Host time the call of `s` took that dropping it would give back, ns: the whole call of
    /// a launch; of a copy the host waited through, the part from when its work could have
    /// started on (the wait for earlier work stays).
    fn host_cost_ns(&self, s: &Span, latency_ns: u64) -> f64 {
        match s.host_call_ns {
            Some(call) if is_blocking(s) => call
                .to_ns
                .saturating_sub(call.from_ns.max(s.start_ns.saturating_sub(latency_ns)))
                as f64,
            Some(call) => call.len_ns() as f64,
            None => 0.0,
        }
    }

    /// How much sooner the wait `hi` (or the run's end) comes in the stretch after wait `lo`
    /// when the work `removed` is not done, with launch latency `latency_ns`, ns: the replay
    /// with it less the replay without it, so that what the model gets wrong about the work
    /// that stays cancels out.
    fn replay(
        &self,
        lo: Option<usize>,
        hi: Option<usize>,
        removed: &HashSet<usize>,
        latency_ns: u64,
    ) -> f64 {
        let floor = lo.map_or(0, |w| self.waits[w].return_ns);
        let hi = hi.map(|w| self.waits[w]);
        let first = self.ops.partition_point(|s| s.start_ns < floor);
        let last = hi.map_or(self.ops.len(), |w| {
            self.ops.partition_point(|s| s.start_ns < w.return_ns)
        });
        let range = first..last.max(first);
        let start_ns = self.stretch_start_ns(range.clone(), floor);
        let with = self.host_goes_on(range.clone(), start_ns, hi, &HashSet::new(), latency_ns);
        let without = self.host_goes_on(range, start_ns, hi, removed, latency_ns);
        (with - without).max(0.0)
    }

    /// Where the stretch of work `range` starts: at the wait before it (`floor`), or, after
    /// none (`floor` 0), at its first call or work.
    fn stretch_start_ns(&self, range: std::ops::Range<usize>, floor: u64) -> u64 {
        if floor > 0 {
            return floor;
        }
        range
            .map(|i| {
                let s = self.ops[i];
                s.host_call_ns
                    .map_or(s.start_ns, |c| c.from_ns.min(s.start_ns))
            })
            .min()
            .unwrap_or(0)
    }

    /// When the host goes on past wait `hi` (or the run ends), ns after `start_ns` (where the
    /// stretch starts, [`Self::stretch_start_ns`]), in a replay of the work `range` (indices in
    /// `ops`) without the work `removed`, with launch latency `latency_ns`.
    fn host_goes_on(
        &self,
        range: std::ops::Range<usize>,
        start_ns: u64,
        hi: Option<Wait>,
        removed: &HashSet<usize>,
        latency_ns: u64,
    ) -> f64 {
        // The host calls not made, by when they were: everything the host did after one of
        // them, it does sooner by its cost.
        let mut dropped: Vec<(u64, f64)> = range
            .clone()
            .filter(|i| removed.contains(i))
            .map(|i| {
                let s = self.ops[i];
                let at = s.host_call_ns.map_or(s.start_ns, |c| c.from_ns);
                (at, self.host_cost_ns(s, latency_ns))
            })
            .collect();
        dropped.sort_by_key(|d| d.0);
        let mut sums = Vec::with_capacity(dropped.len());
        let mut acc = 0.0;
        for d in &dropped {
            acc += d.1;
            sums.push(acc);
        }
        let sooner = |t: u64| match dropped.partition_point(|d| d.0 < t) {
            0 => 0.0,
            n => sums[n - 1],
        };
        let q = self.queued_gap_ns as f64;
        // Instants are ns after the stretch's start: as absolute f64s (~1.8e18 ns) they would
        // be rounded to 256 ns, by an amount that depends on when the run happened.
        let rel = |t_ns: u64| diff_ns(t_ns, start_ns);
        // Per stream: the replayed end of its last kept work.
        let mut ends: Vec<(u64, f64)> = Vec::new();
        let (mut done_old, mut done_new) = (0.0f64, 0.0f64);
        let mut waited_in: Option<(f64, f64)> = None;
        let mut host_end = start_ns;
        for i in range {
            let s = self.ops[i];
            host_end = host_end.max(s.host_call_ns.map_or(s.start_ns, |c| c.to_ns));
            done_old = done_old.max(rel(s.end_ns));
            if removed.contains(&i) {
                continue;
            }
            // As soon as its call (made sooner by the calls dropped before it) lets it, and
            // never later than it did start.
            let at = s.host_call_ns.map_or(s.start_ns, |c| c.from_ns);
            let earliest = match s.host_call_ns {
                Some(Interval { from_ns: from, .. }) => {
                    rel(from.saturating_add(latency_ns).min(s.start_ns))
                }
                None => 0.0,
            } - sooner(at);
            // Work that was queued keeps the gap it had; work that waited for the host keeps
            // the usual gap of queued work, should it now be queued.
            let queued = |g: u64| if g <= self.waited_gap_ns { g as f64 } else { q };
            let slot = ends.iter().position(|e| e.0 == s.stream);
            let begin = match slot {
                Some(k) => earliest.max(ends[k].1 + self.gap_ns[i].map_or(0.0, queued)),
                None => earliest,
            };
            let end = begin + s.duration_ns() as f64;
            match slot {
                Some(k) => ends[k].1 = end,
                None => ends.push((s.stream, end)),
            }
            done_new = done_new.max(end);
            if hi.and_then(|w| w.op) == Some(i) {
                waited_in = Some((rel(s.end_ns), end));
            }
        }
        match hi {
            Some(w) => {
                // The host waits for the copy it is in, or for everything in the stretch at a
                // synchronisation; after that, as long as it did.
                let (old, new) = waited_in.unwrap_or((done_old, done_new));
                let arrive = rel(w.arrive_ns);
                let wake = (rel(w.return_ns) - arrive.max(old)).max(0.0);
                (arrive - sooner(w.arrive_ns)).max(new) + wake
            }
            // The run ends when the host has issued everything and the device has run it.
            None => (rel(host_end) - sooner(u64::MAX)).max(done_new),
        }
    }
}

/// Whether the call that issued `s` returned only once `s` had run: a copy the host waited
/// through (launches never wait; a short kernel may end before its call returns).
fn is_blocking(s: &Span) -> bool {
    matches!(s.kind, SpanKind::Memcpy { .. } | SpanKind::Memset { .. })
        && s.host_call_ns.is_some_and(|call| call.to_ns >= s.end_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{CopyDirection, StrId};

    /// A kernel on stream 0 from `start` to `end`, issued by a call from `call.0` to `call.1`.
    fn kernel(id: u64, (start, end): (u64, u64), call: (u64, u64)) -> Span {
        Span {
            host_call_ns: Some(call.into()),
            ..Span::new(id, SpanKind::Kernel, (0, 0), StrId(0), (start, end))
        }
    }

    /// A read-back whose call waits until it has run.
    fn readback(id: u64, (start, end): (u64, u64), call_from: u64) -> Span {
        Span {
            host_call_ns: Some(Interval::new(call_from, end + 2_000)),
            ..Span::new(
                id,
                SpanKind::Memcpy {
                    direction: CopyDirection::DeviceToHost,
                    bytes: 4,
                    content_digest: None,
                },
                (0, 0),
                StrId(0),
                (start, end),
            )
        }
    }

    fn saved(spans: &[Span], removed: &[u64]) -> f64 {
        let work: Vec<&Span> = spans.iter().collect();
        let t = Timeline::new(&work, &[], (1_000, 1_000)).unwrap();
        t.shares(removed).values().map(|s| s.mid_ns).sum()
    }

    #[test]
    fn a_queued_launch_saves_its_device_time_and_a_waited_for_one_its_host_call() {
        // Device-bound: the host issues four 100 µs kernels in 20 µs, then reads back.
        let busy = [
            kernel(0, (10_000, 110_000), (0, 5_000)),
            kernel(1, (111_000, 211_000), (5_000, 10_000)),
            kernel(2, (212_000, 312_000), (10_000, 15_000)),
            kernel(3, (313_000, 413_000), (15_000, 20_000)),
            readback(4, (414_000, 415_000), 20_000),
        ];
        let s = saved(&busy, &[1]);
        assert!((s - 101_000.0).abs() < 1.0, "{s}");
        // Launch-bound: 20 µs calls, 2 µs kernels, each started 5 µs after its call.
        let idle: Vec<Span> = (0..4)
            .map(|k| {
                kernel(
                    k,
                    (k * 20_000 + 5_000, k * 20_000 + 7_000),
                    (k * 20_000, (k + 1) * 20_000),
                )
            })
            .chain([readback(4, (85_000, 86_000), 80_000)])
            .collect();
        let s = saved(&idle, &[1]);
        assert!((s - 20_000.0).abs() < 1.0, "{s}");
        // Without the read-back the run's end is where both are done; the same holds.
        let s = saved(&idle[..4], &[1]);
        assert!((s - 20_000.0).abs() < 1.0, "{s}");
    }

    #[test]
    fn slack_after_a_long_launch_absorbs_part_of_it() {
        // A 100 µs kernel, then ten 2 µs kernels issued every 20 µs: the first few were queued
        // behind the long one, the rest waited on the host. Without the long kernel the
        // queued ones start as soon as they were issued, and the run ends as before.
        let mut spans = vec![kernel(0, (5_000, 105_000), (0, 20_000))];
        let mut device = 105_000;
        for k in 1..=10u64 {
            let call = (k * 20_000, (k + 1) * 20_000);
            let start = device.max(call.0 + 5_000) + 1_000;
            spans.push(kernel(k, (start, start + 2_000), call));
            device = start + 2_000;
        }
        spans.push(readback(11, (226_000, 227_000), 220_000));
        let s = saved(&spans, &[0]);
        assert!(s < 21_000.0, "the slack absorbs the kernel: {s}");
        // With nothing after it, its whole time is saved.
        let s = saved(&spans[..1], &[0]);
        assert!((s - 105_000.0).abs() < 1.0, "{s}");
    }

    #[test]
    fn launches_removed_together_share_what_dropping_them_all_saves() {
        // Two 50 µs kernels queued between two others: together they save 100 µs (and 1 µs
        // gaps), each half of it.
        let spans = [
            kernel(0, (10_000, 60_000), (0, 5_000)),
            kernel(1, (61_000, 111_000), (5_000, 10_000)),
            kernel(2, (112_000, 162_000), (10_000, 15_000)),
            kernel(3, (163_000, 213_000), (15_000, 20_000)),
            readback(4, (214_000, 215_000), 20_000),
        ];
        let work: Vec<&Span> = spans.iter().collect();
        let t = Timeline::new(&work, &[], (1_000, 1_000)).unwrap();
        let shares = t.shares(&[1, 2]);
        let total: f64 = shares.values().map(|s| s.mid_ns).sum();
        assert!((total - 102_000.0).abs() < 1.0, "{total}");
        assert!((shares[&1].mid_ns - shares[&2].mid_ns).abs() < 1.0);
    }

    #[test]
    fn without_host_calls_there_is_no_timeline() {
        let spans = [Span::new(0, SpanKind::Kernel, (0, 0), StrId(0), (0, 10))];
        let work: Vec<&Span> = spans.iter().collect();
        assert!(Timeline::new(&work, &[], (1_000, 1_000)).is_none());
    }
}
