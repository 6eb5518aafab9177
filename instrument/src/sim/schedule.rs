//! Turns a workload into timed spans on the simulated device, and derives nested regions.

use std::collections::BTreeMap;

use super::workload::{KernelSpec, TransferSpec, WorkItem, Workload};
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
    let start = w.lead_idle_ns;
    let mut sc = Scheduler {
        cursor: BTreeMap::new(),
        out: Vec::new(),
        start,
        // Launches are asynchronous: the host only waits at syncs and read-backs, so a stream
        // first used now starts where the host is, not after the other streams' work.
        host: Host {
            now_ns: start,
            issue_ns: 0,
            latency_ns: 0,
        },
        episodes: Vec::new(),
    };
    for item in &w.items {
        match item {
            WorkItem::Replay(r) => {
                let at = sc.all_idle_at();
                let checkpoint = (r.checkpoint_ns, r.checkpoint_mw);
                let end = burst_alone(&mut sc.out, &r.kernel, at, checkpoint, r.warm_power_factor);
                sc.episodes.push(Interval::new(at, end));
                sc.hold_until(r.kernel.stream, end);
            }
            WorkItem::Kernel(k) => sc.kernels(k),
            WorkItem::Alone(k) => {
                // The host waits for the device, then launches the burst alone.
                let at = sc.all_idle_at();
                let end = burst_alone(&mut sc.out, k, at, (0, 0), 1.0);
                sc.hold_until(k.stream, end);
            }
            WorkItem::Transfer(x) => sc.transfers(x),
            WorkItem::Gap {
                stream,
                duration_ns,
            } => {
                *sc.cursor.entry(*stream).or_insert(sc.host.now_ns) += duration_ns;
            }
            WorkItem::HostCost {
                issue_ns,
                latency_ns,
            } => {
                sc.host.issue_ns = *issue_ns;
                sc.host.latency_ns = *latency_ns;
            }
            WorkItem::Sync { host_ns, lead_ns } => sc.sync(*host_ns, *lead_ns),
        }
    }
    sc.finish(w.tail_idle_ns)
}

/// The schedule as it is built: where each stream and the host are.
struct Scheduler {
    /// Per stream, when its next work can start, ns.
    cursor: BTreeMap<u32, u64>,
    out: Vec<Scheduled>,
    /// The end of the lead idle, ns.
    start: u64,
    host: Host,
    episodes: Vec<Interval>,
}

impl Scheduler {
    /// When every stream has finished and the host is there: where the profiler's own device
    /// work (a replay) can start alone.
    fn all_idle_at(&self) -> u64 {
        self.cursor
            .values()
            .copied()
            .max()
            .unwrap_or(self.start)
            .max(self.host.now_ns)
    }

    /// Every stream, and the host, wait until `end` (the profiler held the device alone).
    fn hold_until(&mut self, stream: u32, end: u64) {
        for c in self.cursor.values_mut() {
            *c = end;
        }
        self.cursor.insert(stream, end);
        self.host.now_ns = end;
    }

    /// `k`'s launches, each issued by the host and started when its stream is free.
    fn kernels(&mut self, k: &KernelSpec) {
        for _ in 0..k.count {
            let (call, earliest) = self.host.issue();
            let t = self.cursor.entry(k.stream).or_insert(call.from_ns);
            let begin = (*t).max(earliest);
            self.out.push(Scheduled {
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

    /// `x`'s copies; the host waits for each copy to the host until its data has arrived.
    fn transfers(&mut self, x: &TransferSpec) {
        for _ in 0..x.count {
            let (mut call, earliest) = self.host.issue();
            let t = self.cursor.entry(x.stream).or_insert(call.from_ns);
            let begin = (*t).max(earliest);
            let end = begin + x.duration_ns;
            if x.direction == CopyDirection::DeviceToHost {
                call.to_ns = call.to_ns.max(end);
                self.host.now_ns = call.to_ns;
            }
            self.out.push(Scheduled {
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

    /// A host synchronisation: the host waits for every stream, then spends `host_ns`.
    fn sync(&mut self, host_ns: u64, lead_ns: u64) {
        let t = self.cursor.values().copied().max().unwrap_or(self.start);
        // A host that issues in no time waits `lead_ns` before the device is done; one that
        // takes time arrives when it has issued everything.
        let arrive = if self.host.issue_ns > 0 {
            self.host.now_ns
        } else {
            t.saturating_sub(lead_ns).max(self.start)
        };
        let ready = t.max(arrive);
        self.out.push(Scheduled {
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
        for c in self.cursor.values_mut() {
            *c = ready + host_ns;
        }
        self.host.now_ns = ready + host_ns;
    }

    /// The schedule, in time order, with `tail_idle_ns` of idle after the last work.
    fn finish(mut self, tail_idle_ns: u64) -> Schedule {
        let start = self.start;
        let end = self
            .out
            .iter()
            .map(|s| s.end_ns)
            .max()
            .unwrap_or(start)
            .max(self.cursor.values().copied().max().unwrap_or(start));
        self.out.sort_by_key(|s| (s.start_ns, s.stream));
        Schedule {
            spans: self.out,
            total_ns: end + tail_idle_ns,
            episodes: self.episodes,
        }
    }
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
