//! Waste proven from content in an unmodified PyTorch program (`wattlens run --audit`): the
//! audit's facts per operation ([`AuditOp`]) and the energy of the device work each one
//! issued.
//!
//! - **Recomputation:** an operation with the same operator, arguments and input contents as an
//!   earlier one, whose outputs are all still held (not freed) and unchanged (nothing wrote
//!   their memory since). Operators that draw random numbers are left out.
//! - **Redundant upload:** the same, for a copy from host memory to a device: the content is
//!   already on the device in a tensor the program still holds.
//! - **Prefix recomputation:** rows of an output equal to rows that the same operation at the
//!   same place in the model, with the same parameter content, produced in its previous call
//!   (a decode step without a KV cache). The audit counts them only where the call has more
//!   rows than its previous one and reproduces at least half of that one's rows: a decode step
//!   with a cache repeats a row whenever a token repeats in a model whose positions enter later
//!   (rotary embeddings), and recomputes no prefix. The rows' share of the operation's work is
//!   priced.
//! - **Silent write:** an operation that wrote a tensor in place and left its content exactly as
//!   it was; a copy from host memory that did so is a redundant upload, proven by the device's
//!   own content.
//!
//! Every comparison is of full-content digests, computed by the audit on the device.

use std::collections::{HashMap, HashSet};

use super::{AuditCost, Context, Evidence, Mj, Occurrence, WasteKind};
use crate::audit::DIGEST_KERNEL;
use crate::trace::{Annotation, AuditOp, AuditSummary, OpClass};

/// What an operation is for grouping: its operator, and the kind of module it ran in.
fn label(op: &AuditOp) -> String {
    let module = op.module.split('#').next().unwrap_or("");
    if module.is_empty() {
        op.name.clone()
    } else {
        format!("{} in {module}", op.name)
    }
}

/// A copy from host memory onto a device.
fn is_upload(op: &AuditOp) -> bool {
    let from_host = op.inputs.iter().any(|t| t.device.is_none());
    let to_device = op
        .outputs
        .iter()
        .chain(op.writes.iter().map(|(t, _)| t))
        .any(|t| t.device.is_some());
    from_host && to_device && (op.name.contains("copy") || op.name.starts_with("aten::to"))
}

/// The audit's facts in `cx`'s trace: its operations with device work on `cx`'s device, in
/// issue order; every tensor freed, with the last operation begun before; its summaries and
/// notes.
struct Facts<'t> {
    ops: Vec<&'t AuditOp>,
    freed: HashMap<u64, u64>,
    summaries: Vec<&'t AuditSummary>,
    notes: Vec<&'t str>,
}

fn facts<'t>(cx: &Context<'t>) -> Facts<'t> {
    let mut f = Facts {
        ops: Vec::new(),
        freed: HashMap::new(),
        summaries: Vec::new(),
        notes: Vec::new(),
    };
    for a in &cx.trace.annotations {
        match a {
            Annotation::AuditOp(op) => f.ops.push(op),
            Annotation::AuditFreed { tensor, after_seq } => {
                f.freed.insert(*tensor, *after_seq);
            }
            Annotation::AuditSummary(s) => f.summaries.push(s),
            Annotation::AuditNote(n) => f.notes.push(n),
            _ => {}
        }
    }
    f.ops.sort_by_key(|o| o.seq);
    f
}

/// The occurrence of `op` (all its device work on `cx`'s device), of `wasted` of its `total`
/// units (its whole work where equal).
fn occurrence(
    cx: &Context<'_>,
    kind: WasteKind,
    op: &AuditOp,
    (wasted, total): (f64, f64),
    (proof, fix): (String, String),
) -> Option<Occurrence> {
    let spans: Vec<_> = op
        .spans
        .iter()
        .filter_map(|id| cx.by_id.get(id).copied())
        .collect();
    let first = spans.first()?;
    let (mut energy, mut time_ns) = (Mj::ZERO, 0.0);
    for s in &spans {
        let (mj, time_share) = if wasted >= total {
            (cx.span_mj(s.id), 1.0)
        } else {
            let attention =
                crate::attribution::op_class_of(cx.trace, cx.trace.str(s.name), "kernel")
                    == OpClass::Attention;
            // Attention over a recomputed prefix of k of n rows redoes k² of n² query-key pairs.
            let (w, t) = if attention {
                (wasted * wasted / total.max(1.0), total)
            } else {
                (wasted, total)
            };
            cx.partial_mj(s, w, t)
        };
        energy += mj;
        time_ns += s.duration_ns() as f64 * time_share;
    }
    let mut o = cx.partial_occurrence(
        kind,
        first,
        (energy, time_ns as u64),
        Evidence::new((op.spans.clone(), Vec::new()), proof, fix),
    );
    o.what = label(op);
    Some(o)
}

/// Find the waste the audit's facts prove (see the module's documentation).
pub(super) fn detect(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) {
    let f = facts(cx);
    if f.ops.is_empty() && f.summaries.is_empty() {
        return;
    }
    // Work the detectors before found wasted whole (an upload proven redundant from the
    // trace alone) is not found again.
    let claimed: HashSet<u64> = out
        .iter()
        .filter(|o| o.whole_launch)
        .filter_map(|o| match o.wasted {
            super::Wasted::Span(id) => Some(id),
            super::Wasted::Idle(..) => None,
        })
        .collect();
    let mut found = Vec::new();
    repeated(cx, &f, &mut found);
    silent_writes(cx, &f, &mut found);
    for op in &f.ops {
        prefix_rows(cx, op, &mut found);
    }
    out.extend(
        found
            .into_iter()
            .filter(|o| !o.spans.iter().any(|s| claimed.contains(s))),
    );
    if !f.summaries.is_empty() {
        unchecked.push(
            "padding: the audit does not know which rows of an operation are padding (declare a padding mask through the runtime to have it priced)".to_owned(),
        );
    }
    unchecked.extend(f.notes.iter().map(|n| (*n).to_owned()));
    for s in &f.summaries {
        for (why, n) in &s.skipped {
            unchecked.push(format!("{n} operations were not audited: {why}"));
        }
        if s.unreadable_lines > 0 {
            unchecked.push(format!(
                "{} lines of the audit's facts could not be read (a process cut off?); the operations they described were not checked",
                s.unreadable_lines
            ));
        }
    }
    let unmapped = f
        .ops
        .iter()
        .filter(|o| o.spans.iter().all(|s| !cx.by_id.contains_key(s)))
        .count();
    if unmapped > 0 {
        unchecked.push(format!(
            "{unmapped} audited operations issued no device work the trace recorded on GPU {} (host operations, or work of another device); they are not priced",
            cx.device
        ));
    }
}

/// The note for the device busy time that ran outside every audited operation, if any.
pub(super) fn unaudited_note(cost: &AuditCost, device: u32) -> Option<String> {
    (cost.audited_busy_ns < cost.work_busy_ns).then(|| {
        format!(
            "{:.1}% of the program's device busy time on GPU {device} ran outside every operation the audit saw (compiled graphs, CUDA graphs, extensions that launch kernels themselves); that work was not checked",
            100.0 * (1.0 - cost.audited_share())
        )
    })
}

/// Recomputation and repeated uploads: an operation equal to an earlier one whose outputs are
/// still held and unchanged.
fn repeated(cx: &Context<'_>, f: &Facts<'_>, out: &mut Vec<Occurrence>) {
    type Key<'o> = (&'o str, u64, Vec<u64>);
    let mut seen: HashMap<Key<'_>, &AuditOp> = HashMap::new();
    // The last operation that wrote or made each storage.
    let mut last_write: HashMap<u64, u64> = HashMap::new();
    for op in &f.ops {
        let comparable = !op.random
            && !op.inputs.is_empty()
            && !op.outputs.is_empty()
            && (!op.moves_data || is_upload(op));
        let key: Key<'_> = (
            op.name.as_str(),
            op.identity,
            op.inputs.iter().map(|t| t.digest).collect(),
        );
        if comparable {
            if let Some(first) = seen.get(&key) {
                // Held past this operation: a loop variable replaced by its recomputed value
                // (freed right after) was not kept, and need not have been.
                let held = first.outputs.iter().all(|o| {
                    f.freed.get(&o.tensor).is_none_or(|&after| after > op.seq)
                        && last_write.get(&o.storage) == Some(&first.seq)
                });
                if held {
                    let (kind, proof, fix) = if is_upload(op) {
                        (
                            WasteKind::RedundantTransfer,
                            format!(
                                "operation {} uploaded the same {} bytes that operation {} uploaded, whose device copy the program still held unchanged",
                                op.seq,
                                op.inputs.iter().map(|t| t.bytes).sum::<u64>(),
                                first.seq
                            ),
                            "keep the tensor on the device and reuse it instead of uploading it again".to_owned(),
                        )
                    } else {
                        (
                            WasteKind::Recomputation,
                            format!(
                                "operation {} ran {} with the same arguments on the same input contents as operation {}, whose outputs the program still held unchanged",
                                op.seq, op.name, first.seq
                            ),
                            "reuse the earlier result instead of computing it again".to_owned(),
                        )
                    };
                    out.extend(occurrence(cx, kind, op, (1.0, 1.0), (proof, fix)));
                }
            }
        }
        for t in op.outputs.iter().chain(op.writes.iter().map(|(t, _)| t)) {
            last_write.insert(t.storage, op.seq);
        }
        if comparable {
            // The latest of equal operations: a chain of repeats each compares with the last.
            seen.insert(key, op);
        }
    }
}

/// Prefix recomputation: rows equal to rows the previous call at the same place produced.
fn prefix_rows(cx: &Context<'_>, op: &AuditOp, out: &mut Vec<Occurrence>) {
    let Some(rows) = op.rows else {
        return;
    };
    if rows.matched == 0 || rows.total == 0 {
        return;
    }
    let proof = format!(
        "{} of the {} output rows of operation {} ({}) equal rows that its previous call at the same place in the model (operation {}) produced, with the same parameters",
        rows.matched, rows.total, op.seq, op.name, rows.previous
    );
    let fix = "keep the earlier positions' results (a KV cache, `use_cache=True`) and run only the new rows".to_owned();
    out.extend(occurrence(
        cx,
        WasteKind::Recomputation,
        op,
        (rows.matched as f64, rows.total as f64),
        (proof, fix),
    ));
}

/// Operators whose output holds whatever the memory held before: its content is not the
/// program's, and writing over it is never silent on purpose.
fn leaves_memory_as_it_was(name: &str) -> bool {
    matches!(
        name,
        "aten::empty" | "aten::empty_like" | "aten::empty_strided" | "aten::new_empty"
    )
}

/// Silent writes, and uploads the destination already held: an operation that wrote tensors in
/// place and left each exactly as it was, where what each held before was the program's own
/// content (made or written by an operation the audit saw), not uninitialised memory.
fn silent_writes(cx: &Context<'_>, f: &Facts<'_>, out: &mut Vec<Occurrence>) {
    let mut known = std::collections::HashSet::new();
    for op in &f.ops {
        let bytes: u64 = op.writes.iter().map(|(t, _)| t.bytes).sum();
        let silent = !op.writes.is_empty()
            && bytes > 0
            && op
                .writes
                .iter()
                .all(|(t, after)| t.digest == *after && known.contains(&t.storage));
        if silent {
            out.extend(silent_write(cx, op, bytes));
        }
        for t in &op.outputs {
            // Memory handed out again holds nothing of the program's until written.
            if leaves_memory_as_it_was(&op.name) {
                known.remove(&t.storage);
            } else {
                known.insert(t.storage);
            }
        }
        known.extend(op.writes.iter().map(|(t, _)| t.storage));
    }
}

/// The finding of silent write `op` of `bytes`.
fn silent_write(cx: &Context<'_>, op: &AuditOp, bytes: u64) -> Option<Occurrence> {
    let (kind, proof, fix) = if is_upload(op) {
        (
            WasteKind::RedundantTransfer,
            format!(
                "operation {} ({}) copied {bytes} bytes from host memory into device memory that already held exactly these bytes",
                op.seq, op.name
            ),
            "skip this upload: the device already holds the same content (load the weights once)".to_owned(),
        )
    } else {
        (
            WasteKind::SilentWrite,
            format!(
                "operation {} ({}) rewrote {bytes} bytes in place and left them exactly as they were",
                op.seq, op.name
            ),
            "drop the write: it changes nothing".to_owned(),
        )
    };
    occurrence(cx, kind, op, (1.0, 1.0), (proof, fix))
}

/// The busy time of the program's device work (the audit's digests left out), and of the part
/// that audited operations issued, ns.
fn audited_busy_ns(cx: &Context<'_>, f: &Facts<'_>) -> (u64, u64) {
    let issued: HashSet<u64> = f.ops.iter().flat_map(|o| o.spans.iter().copied()).collect();
    let digest = cx.trace.strings.find(DIGEST_KERNEL);
    let (mut all, mut audited) = (0u64, 0u64);
    for s in cx.work.iter().filter(|s| Some(s.name) != digest) {
        all += s.duration_ns();
        if issued.contains(&s.id) {
            audited += s.duration_ns();
        }
    }
    (all, audited)
}

/// What the audit saw and cost, where the trace was audited.
pub(super) fn cost(cx: &Context<'_>) -> Option<AuditCost> {
    let f = facts(cx);
    if f.summaries.is_empty() {
        return None;
    }
    let (first, last) = cx.trace.spans.iter().fold((u64::MAX, 0), |(a, b), s| {
        (a.min(s.start_ns), b.max(s.end_ns))
    });
    let (work_busy_ns, audited_busy_ns) = audited_busy_ns(cx, &f);
    Some(AuditCost {
        work_busy_ns,
        audited_busy_ns,
        ops: f.summaries.iter().map(|s| s.ops).sum(),
        ops_on_device: f
            .ops
            .iter()
            .filter(|o| o.spans.iter().any(|s| cx.by_id.contains_key(s)))
            .count() as u64,
        audit_host_ns: f.summaries.iter().map(|s| s.audit_host_ns).sum(),
        digest_busy_ns: f.summaries.iter().map(|s| s.digest_busy_ns).sum(),
        run_ns: last.saturating_sub(first),
    })
}
