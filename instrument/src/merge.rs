//! Merging the traces of several processes (torchrun ranks, say) into one trace per GPU, so
//! one attribution sees every process's work on each device.
//!
//! - **Devices** are matched by UUID; indices are renumbered in order of first appearance.
//! - **Spans** keep their times. Ids are renumbered, streams are made distinct per process
//!   (process k's stream s becomes `k << 32 | s`), and buffer ids likewise (`k << 40 | id`),
//!   so no two processes' streams or buffers are confused.
//! - **Power:** every process's sampler read the same sensors. Per device, the readings of the
//!   process that covered the longest time are kept whole, and the others' readings only
//!   outside that interval, so the energy counter stays one consistent series.
//! - **Clocks:** each process's trace clock is the host's; processes on one host agree to the
//!   host clock's precision.

use std::collections::HashMap;

use crate::intervals::Interval;
use crate::trace::{Annotation, BufferVersion, DeviceInfo, PowerReading, Span, StrId, Trace};

/// Why traces could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no traces were given; pass one or more .wlt files")]
    Empty,
    /// Traces from simulated and real GPUs.
    #[error("trace {0} comes from the simulated GPU and another from a real one; merge traces of one kind")]
    MixedKinds(usize),
}

/// `traces` with repeats of one run left out: a trace with the same host, command, start and
/// record counts as an earlier one is the same recording given twice (`report a.wlt a.wlt`, or
/// a copy of it), and merging it would double every launch. Also returns (index of each left
/// out, index of the trace it repeats).
pub fn distinct(traces: Vec<Trace>) -> (Vec<Trace>, Vec<(usize, usize)>) {
    type Identity = (String, Vec<String>, u64, usize, usize, usize);
    let identity = |t: &Trace| -> Identity {
        (
            t.meta.host.clone(),
            t.meta.command.clone(),
            t.meta.start_unix_ns,
            t.spans.len(),
            t.power.len(),
            t.annotations.len(),
        )
    };
    let mut seen: HashMap<Identity, usize> = HashMap::new();
    let mut kept = Vec::with_capacity(traces.len());
    let mut repeated = Vec::new();
    for (k, t) in traces.into_iter().enumerate() {
        match seen.get(&identity(&t)) {
            Some(&first) => repeated.push((k, first)),
            None => {
                seen.insert(identity(&t), k);
                kept.push(t);
            }
        }
    }
    (kept, repeated)
}

/// Merge `traces` (one per process) into one.
///
/// # Errors
/// [`MergeError`] for no traces, or a mix of simulated and real ones.
pub fn merge(traces: Vec<Trace>) -> Result<Trace, MergeError> {
    let mut it = traces.into_iter();
    let Some(first) = it.next() else {
        return Err(MergeError::Empty);
    };
    let rest: Vec<Trace> = it.collect();
    if rest.is_empty() {
        return Ok(first);
    }
    if let Some(k) = rest
        .iter()
        .position(|t| t.meta.simulated != first.meta.simulated)
    {
        return Err(MergeError::MixedKinds(k + 1));
    }
    let all: Vec<Trace> = std::iter::once(first).chain(rest).collect();
    let mut out = Trace::new(all[0].meta.clone());
    out.meta.devices.clear();
    out.meta.command = all
        .iter()
        .map(|t| t.meta.command.join(" "))
        .collect::<Vec<_>>();
    out.meta.start_unix_ns = all.iter().map(|t| t.meta.start_unix_ns).min().unwrap_or(0);
    let mut device_of_uuid: HashMap<String, u32> = HashMap::new();
    let mut next_id = 0u64;
    let primary = primary_readers(&all);
    for (k, t) in all.iter().enumerate() {
        let k64 = k as u64;
        let mut dev: HashMap<u32, u32> = HashMap::new();
        for d in &t.meta.devices {
            let n = out.meta.devices.len() as u32;
            let index = *device_of_uuid.entry(d.uuid.clone()).or_insert_with(|| {
                out.meta.devices.push(DeviceInfo {
                    index: n,
                    ..d.clone()
                });
                n
            });
            dev.insert(d.index, index);
        }
        let device = |d: u32| dev.get(&d).copied().unwrap_or(d);
        let mut strings: HashMap<StrId, StrId> = HashMap::new();
        let mut string = |out: &mut Trace, id: StrId| -> StrId {
            if id == StrId::NONE {
                return id;
            }
            *strings
                .entry(id)
                .or_insert_with(|| out.strings.id(t.str(id)))
        };
        let buffer = |b: BufferVersion| BufferVersion {
            buffer: k64 << 40 | b.buffer,
            version: b.version,
        };
        let mut span_ids: HashMap<u64, u64> = HashMap::new();
        for s in &t.spans {
            let id = next_id;
            next_id += 1;
            span_ids.insert(s.id, id);
            let span = Span {
                id,
                device: device(s.device),
                stream: k64 << 32 | s.stream,
                name: string(&mut out, s.name),
                region: string(&mut out, s.region),
                site: string(&mut out, s.site),
                reads: s.reads.iter().copied().map(buffer).collect(),
                writes: s.writes.iter().copied().map(buffer).collect(),
                unknown_access: s.unknown_access.iter().map(|b| k64 << 40 | b).collect(),
                ..s.clone()
            };
            out.spans.push(span);
        }
        for r in &t.power {
            let Some(uuid) = t
                .meta
                .devices
                .iter()
                .find(|d| d.index == r.device())
                .map(|d| &d.uuid)
            else {
                continue;
            };
            let keep = match primary.get(uuid) {
                Some(&(p, span)) => p == k || r.ts_ns() < span.from_ns || r.ts_ns() > span.to_ns,
                None => true,
            };
            if keep {
                out.power.push(r.with_device(device(r.device())));
            }
        }
        for f in &t.kernel_facts {
            if out.facts_for(&f.name).is_none() {
                out.kernel_facts.push(f.clone());
            }
        }
        for a in &t.alignments {
            let mut a = a.clone();
            a.device = device(a.device);
            out.alignments.push(a);
        }
        out.annotations.extend(
            t.annotations
                .iter()
                .filter_map(|a| annotation_of_process(a.clone(), k, &span_ids, &device)),
        );
    }
    out.spans.sort_by_key(|s| (s.start_ns, s.id));
    out.power.sort_by_key(PowerReading::ts_ns);
    Ok(out)
}

/// Annotation `a` of process `k` in the merged trace: its spans through `span_ids`, its
/// devices through `device`, and its buffers, passes, tensors and operations made unique to the
/// process; `None` where it names a span the process did not record.
fn annotation_of_process(
    a: Annotation,
    k: usize,
    span_ids: &HashMap<u64, u64>,
    device: &impl Fn(u32) -> u32,
) -> Option<Annotation> {
    let k64 = k as u64;
    Some(match a {
        Annotation::Buffer {
            id,
            device: d,
            bytes,
        } => Annotation::Buffer {
            id: k64 << 40 | id,
            device: device(d),
            bytes,
        },
        Annotation::Freed { id, at_ns } => Annotation::Freed {
            id: k64 << 40 | id,
            at_ns,
        },
        Annotation::Overhead {
            device: d,
            from_ns,
            to_ns,
        } => Annotation::Overhead {
            device: device(d),
            from_ns,
            to_ns,
        },
        Annotation::Padding {
            span,
            pass,
            padded,
            total,
        } => match span_ids.get(&span) {
            Some(&span) => Annotation::Padding {
                span,
                pass: pass_id(k, pass),
                padded,
                total,
            },
            None => return None,
        },
        Annotation::Pass {
            pass,
            padded_len,
            causal,
            rows,
        } => Annotation::Pass {
            pass: pass_id(k, pass),
            padded_len,
            causal,
            rows,
        },
        Annotation::CopyTarget { span, address } => match span_ids.get(&span) {
            Some(&span) => Annotation::CopyTarget { span, address },
            None => return None,
        },
        Annotation::Tokens { span, tokens } => match span_ids.get(&span) {
            Some(&span) => Annotation::Tokens { span, tokens },
            None => return None,
        },
        // Host time of one process: the clocks of one host are already aligned.
        cost @ Annotation::CallbackCost { .. } => cost,
        Annotation::AuditOp(op) => Annotation::AuditOp(Box::new(audit_op_of_process(
            *op,
            k64,
            |s| span_ids.get(&s).copied(),
            &device,
        ))),
        Annotation::AuditFreed { tensor, after_seq } => Annotation::AuditFreed {
            tensor: k64 << 40 | tensor,
            after_seq: k64 << 40 | after_seq,
        },
        summary @ (Annotation::AuditSummary(_) | Annotation::AuditNote(_)) => summary,
        Annotation::ProfilerEpisode {
            device: d,
            from_ns,
            to_ns,
        } => Annotation::ProfilerEpisode {
            device: device(d),
            from_ns,
            to_ns,
        },
        Annotation::ReplayNote {
            device: d,
            name,
            launch,
            busy_ppm,
            outcome,
        } => Annotation::ReplayNote {
            device: device(d),
            name,
            launch,
            busy_ppm,
            outcome,
        },
        // Each process's own release; the device's is the last of them (see
        // `Trace::released_at_ns`).
        Annotation::ReleasedAfter { device: d, at_ns } => Annotation::ReleasedAfter {
            device: device(d),
            at_ns,
        },
    })
}

/// Per device (by UUID): the process whose readings of it are kept whole (the one that read it
/// longest) and the interval they cover; other processes' readings inside it are dropped.
fn primary_readers(all: &[Trace]) -> HashMap<String, (usize, Interval)> {
    let mut primary: HashMap<String, (usize, Interval)> = HashMap::new();
    for (k, t) in all.iter().enumerate() {
        for d in &t.meta.devices {
            let Some(span) = covered(t, d.index) else {
                continue;
            };
            let better = primary
                .get(&d.uuid)
                .is_none_or(|&(_, best)| span.len_ns() > best.len_ns());
            if better {
                primary.insert(d.uuid.clone(), (k, span));
            }
        }
    }
    primary
}

/// The interval trace `t`'s own readings of device `index` cover, if it has any.
fn covered(t: &Trace, index: u32) -> Option<Interval> {
    let mut ts = t
        .power
        .iter()
        .filter(|r| r.device() == index)
        .map(PowerReading::ts_ns);
    let first = ts.next()?;
    let (lo, hi) = ts.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x)));
    Some(Interval::new(lo, hi))
}

/// Add the power readings `extra` holds of `trace`'s GPUs (matched by UUID) from after the
/// last reading the trace has of each: another reader, such as `wattlens run` watching the
/// GPUs once its command has exited, gives a trace whose process kept its GPU busy to the
/// end the quiet windows it needs for idle power. Readings from before the process's own are
/// not taken: a GPU nobody holds sits in a deeper power state than one a process holds idle.
/// A device the trace has no readings of takes all of them. Where readings follow the
/// process's own, an [`Annotation::ReleasedAfter`] marks where its own end. Returns how many
/// readings were added.
pub fn add_power_after(trace: &mut Trace, extra: &Trace) -> usize {
    let mut added = 0;
    for d in &trace.meta.devices {
        let Some(theirs) = extra.meta.devices.iter().find(|e| e.uuid == d.uuid) else {
            continue;
        };
        let last = covered(trace, d.index).map(|span| span.to_ns);
        let new: Vec<PowerReading> = extra
            .power
            .iter()
            .filter(|r| r.device() == theirs.index && last.is_none_or(|hi| r.ts_ns() > hi))
            .map(|r| r.with_device(d.index))
            .collect();
        if let (Some(at_ns), false) = (last, new.is_empty()) {
            trace.annotations.push(Annotation::ReleasedAfter {
                device: d.index,
                at_ns,
            });
        }
        added += new.len();
        trace.power.extend(new);
    }
    trace.power.sort_by_key(PowerReading::ts_ns);
    added
}

/// Audit facts of process `k` with its ids made unique in the merged trace: operations and
/// tensors by `k` in their high bits, storage addresses likewise, spans through `span`, and
/// devices through `device`.
fn audit_op_of_process(
    mut op: crate::trace::AuditOp,
    k: u64,
    span: impl Fn(u64) -> Option<u64>,
    device: &impl Fn(u32) -> u32,
) -> crate::trace::AuditOp {
    let tensor = |t: &mut crate::trace::AuditTensor| {
        t.tensor |= k << 40;
        t.storage |= k << 56;
        t.device = t.device.map(device);
    };
    op.seq |= k << 40;
    op.spans = op.spans.iter().filter_map(|&s| span(s)).collect();
    op.inputs.iter_mut().for_each(tensor);
    op.outputs.iter_mut().for_each(tensor);
    op.writes.iter_mut().for_each(|(t, _)| tensor(t));
    if let Some(r) = op.rows.as_mut() {
        r.previous |= k << 40;
    }
    op
}

/// A pass number unique across processes (process k's passes in their own range).
fn pass_id(k: usize, pass: u32) -> u32 {
    u32::try_from(k)
        .unwrap_or(u32::MAX)
        .saturating_mul(1 << 20)
        .saturating_add(pass)
}
