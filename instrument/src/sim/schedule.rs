//! Turns a workload into timed spans on the simulated device, and derives nested regions.

use std::collections::BTreeMap;

use super::workload::{KernelSpec, WorkItem, Workload};
use crate::intervals::Interval;
use crate::trace::{CopyDirection, LaunchShape, OpClass, SpanKind, ALONE_REGION};

/// One scheduled interval, relative to the start of the simulation.
#[derive(Debug, Clone)]
pub(crate) struct Scheduled {
    pub kind: SpanKind,
    pub stream: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub name: String,
    pub launch: Option<LaunchShape>,
    pub region: String,
    pub dynamic_mw: u32,
    pub op_class: Option<OpClass>,
    /// The host call that issued it, ns from the start (program work only).
    pub host_call_ns: Option<Interval>,
}

/// The simulated host: where it is, and what issuing costs it ([`WorkItem::HostCost`]).
struct Host {
    now_ns: u64,
    issue_ns: u64,
    latency_ns: u64,
}

impl Host {
    /// Issue one piece of work: its call, and the earliest the device can start it.
    fn issue(&mut self) -> (Interval, u64) {
        let call = Interval::new(self.now_ns, self.now_ns + self.issue_ns);
        self.now_ns = call.to_ns;
        (call, call.from_ns + self.latency_ns)
    }
}

/// What [`schedule`] made of a workload.
pub(crate) struct Schedule {
    /// The spans, in time order: device work, syncs, and the profiler's own device work
    /// ([`SpanKind::Idle`] with [`CHECKPOINT`] as its name, which no trace span shows).
    pub spans: Vec<Scheduled>,
    /// The total simulated time, ns.
    pub total_ns: u64,
    /// Profiler episodes (kernel replays with their checkpoint), ns.
    pub episodes: Vec<Interval>,
}

/// The name of the profiler's checkpoint copies in a [`Schedule`].
pub(crate) const CHECKPOINT: &str = "wattlens:checkpoint";

/// Schedule every item.
pub(crate) fn schedule(w: &Workload) -> Schedule {
    let mut cursor: BTreeMap<u32, u64> = BTreeMap::new();
    let mut out = Vec::new();
    let start = w.lead_idle_ns;
    // Launches are asynchronous: the host only waits at syncs and read-backs, so a stream
    // first used now starts where the host is, not after the other streams' work.
    let mut host = Host {
        now_ns: start,
        issue_ns: 0,
        latency_ns: 0,
    };
    let mut episodes = Vec::new();
    for item in &w.items {
        match item {
            WorkItem::Replay(r) => {
                let at = all_idle_at(&cursor, start, host.now_ns);
                let end = burst_alone(
                    &mut out,
                    &r.kernel,
                    at,
                    (r.checkpoint_ns, r.checkpoint_mw),
                    r.warm_power_factor,
                );
                episodes.push(Interval::new(at, end));
                hold_until(&mut cursor, &mut host, r.kernel.stream, end);
            }
            WorkItem::Kernel(k) => {
                for _ in 0..k.count {
                    let (call, earliest) = host.issue();
                    let t = cursor.entry(k.stream).or_insert(call.from_ns);
                    let begin = (*t).max(earliest);
                    out.push(Scheduled {
                        kind: SpanKind::Kernel,
                        stream: k.stream,
                        start_ns: begin,
                        end_ns: begin + k.duration_ns,
                        name: k.name.clone(),
                        launch: Some(k.launch),
                        region: k.region.clone(),
                        dynamic_mw: k.dynamic_mw,
                        op_class: Some(k.op_class),
                        host_call_ns: Some(call),
                    });
                    *t = begin + k.duration_ns + k.gap_ns;
                }
            }
            WorkItem::Alone(k) => {
                // The host waits for the device, then launches the burst alone.
                let at = all_idle_at(&cursor, start, host.now_ns);
                let end = burst_alone(&mut out, k, at, (0, 0), 1.0);
                hold_until(&mut cursor, &mut host, k.stream, end);
            }
            WorkItem::Transfer(x) => {
                for _ in 0..x.count {
                    let (mut call, earliest) = host.issue();
                    let t = cursor.entry(x.stream).or_insert(call.from_ns);
                    let begin = (*t).max(earliest);
                    let end = begin + x.duration_ns;
                    // A copy to the host returns when its data has arrived.
                    if x.direction == CopyDirection::DeviceToHost {
                        call.to_ns = call.to_ns.max(end);
                        host.now_ns = call.to_ns;
                    }
                    out.push(Scheduled {
                        kind: SpanKind::Memcpy {
                            direction: x.direction,
                            bytes: x.bytes,
                            content_digest: None,
                        },
                        stream: x.stream,
                        start_ns: begin,
                        end_ns: end,
                        name: x.name.clone(),
                        launch: None,
                        region: x.region.clone(),
                        dynamic_mw: x.dynamic_mw,
                        op_class: None,
                        host_call_ns: Some(call),
                    });
                    *t = end;
                }
            }
            WorkItem::Gap {
                stream,
                duration_ns,
            } => {
                *cursor.entry(*stream).or_insert(host.now_ns) += duration_ns;
            }
            WorkItem::HostCost {
                issue_ns,
                latency_ns,
            } => {
                host.issue_ns = *issue_ns;
                host.latency_ns = *latency_ns;
            }
            WorkItem::Sync { host_ns, lead_ns } => {
                let t = cursor.values().copied().max().unwrap_or(start);
                // A host that issues in no time waits `lead_ns` before the device is done; one
                // that takes time arrives when it has issued everything.
                let arrive = if host.issue_ns > 0 {
                    host.now_ns
                } else {
                    t.saturating_sub(*lead_ns).max(start)
                };
                let ready = t.max(arrive);
                out.push(Scheduled {
                    kind: SpanKind::Sync,
                    stream: 0,
                    start_ns: arrive,
                    end_ns: ready + host_ns,
                    name: "host sync".to_owned(),
                    launch: None,
                    region: String::new(),
                    dynamic_mw: 0,
                    op_class: None,
                    host_call_ns: None,
                });
                for c in cursor.values_mut() {
                    *c = ready + host_ns;
                }
                host.now_ns = ready + host_ns;
            }
        }
    }
    let end = out
        .iter()
        .map(|s| s.end_ns)
        .max()
        .unwrap_or(start)
        .max(cursor.values().copied().max().unwrap_or(start));
    out.sort_by_key(|s| (s.start_ns, s.stream));
    Schedule {
        spans: out,
        total_ns: end + w.tail_idle_ns,
        episodes,
    }
}

/// When every stream has finished and the host is there: where the profiler's own device
/// work (a replay) can start alone.
fn all_idle_at(cursor: &BTreeMap<u32, u64>, start: u64, host_now_ns: u64) -> u64 {
    cursor
        .values()
        .copied()
        .max()
        .unwrap_or(start)
        .max(host_now_ns)
}

/// Every stream, and the host, wait until `end` (the profiler held the device alone).
fn hold_until(cursor: &mut BTreeMap<u32, u64>, host: &mut Host, stream: u32, end: u64) {
    for c in cursor.values_mut() {
        *c = end;
    }
    cursor.insert(stream, end);
    host.now_ns = end;
}

/// Schedule `k` replayed alone from `at`: its `count` launches back to back as one burst
/// drawing `warm` times its power (idle between launches), inside a checkpoint's save and
/// restore of `checkpoint_ns` each at `checkpoint_mw` (none when 0). Returns the end.
fn burst_alone(
    out: &mut Vec<Scheduled>,
    k: &KernelSpec,
    at: u64,
    (checkpoint_ns, checkpoint_mw): (u64, u32),
    warm: f64,
) -> u64 {
    let cycle = k.duration_ns + k.gap_ns;
    let burst = (cycle * u64::from(k.count)).saturating_sub(k.gap_ns);
    let duty = k.duration_ns as f64 / cycle.max(1) as f64;
    let checkpoint = |at: u64| Scheduled {
        kind: SpanKind::Idle,
        stream: k.stream,
        start_ns: at,
        end_ns: at + checkpoint_ns,
        name: CHECKPOINT.to_owned(),
        launch: None,
        region: String::new(),
        dynamic_mw: checkpoint_mw,
        op_class: None,
        host_call_ns: None,
    };
    if checkpoint_ns > 0 {
        out.push(checkpoint(at));
    }
    let burst_at = at + checkpoint_ns;
    out.push(Scheduled {
        kind: SpanKind::Alone {
            launches: k.count,
            of: 0,
        },
        stream: k.stream,
        start_ns: burst_at,
        end_ns: burst_at + burst,
        name: k.name.clone(),
        launch: Some(k.launch),
        region: ALONE_REGION.to_owned(),
        dynamic_mw: (f64::from(k.dynamic_mw) * duty * warm).round() as u32,
        op_class: Some(k.op_class),
        host_call_ns: None,
    });
    if checkpoint_ns > 0 {
        out.push(checkpoint(burst_at + burst));
    }
    burst_at + burst + checkpoint_ns
}

/// A region derived from the region paths of consecutive work on one stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DerivedRegion {
    pub stream: u32,
    pub name: String,
    pub parent: String,
    pub depth: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Nested regions: a region spans the contiguous run of work whose path contains it.
pub(crate) fn derive_regions(spans: &[Scheduled]) -> Vec<DerivedRegion> {
    let mut by_stream: BTreeMap<u32, Vec<&Scheduled>> = BTreeMap::new();
    for s in spans
        .iter()
        .filter(|s| !matches!(s.kind, SpanKind::Sync | SpanKind::Idle))
    {
        by_stream.entry(s.stream).or_default().push(s);
    }
    let mut out = Vec::new();
    for (stream, list) in by_stream {
        let mut open: Vec<(String, u64, u64)> = Vec::new();
        let close =
            |open: &mut Vec<(String, u64, u64)>, keep: usize, out: &mut Vec<DerivedRegion>| {
                while open.len() > keep {
                    let depth = open.len() - 1;
                    let parent = open[..depth]
                        .iter()
                        .map(|o| o.0.as_str())
                        .collect::<Vec<_>>()
                        .join("/");
                    if let Some((name, start_ns, end_ns)) = open.pop() {
                        out.push(DerivedRegion {
                            stream,
                            name,
                            parent,
                            depth: depth as u32,
                            start_ns,
                            end_ns,
                        });
                    }
                }
            };
        for s in list {
            let parts: Vec<&str> = s.region.split('/').filter(|p| !p.is_empty()).collect();
            let common = open
                .iter()
                .zip(&parts)
                .take_while(|(o, p)| o.0 == **p)
                .count();
            close(&mut open, common, &mut out);
            for p in &parts[common..] {
                open.push(((*p).to_owned(), s.start_ns, s.end_ns));
            }
            for o in &mut open {
                o.2 = o.2.max(s.end_ns);
            }
        }
        close(&mut open, 0, &mut out);
    }
    out
}
