//! Dead writes: a write whose version nothing reads before a covering overwrite or a free.
//!
//! Versions make this exact without timing: a version with no reader was never read. Access
//! modes are may-modes, so the overwrite must be shown to cover the first write: a copy or
//! memset of the whole buffer, or the same kernel with the same launch shape and scalar
//! arguments writing through its only written argument, with addresses that do not depend on
//! loaded data (not a gather/scatter, no pointer table).

use super::{Context, Evidence, Occurrence, WasteKind};
use crate::trace::{AccessMode, OpClass, Span, SpanKind};

/// Whether `second` overwrites every byte of buffer `buffer` that `first` wrote.
fn covers(cx: &Context<'_>, first: &Span, second: &Span, buffer: u64) -> bool {
    match (first.kind, second.kind) {
        (_, SpanKind::Memset { bytes, .. } | SpanKind::Memcpy { bytes, .. })
            if cx.sizes.get(&buffer).is_some_and(|&size| bytes >= size) =>
        {
            true
        }
        // Runtime copies and memsets start at the buffer's start.
        (
            SpanKind::Memset { bytes: a, .. } | SpanKind::Memcpy { bytes: a, .. },
            SpanKind::Memset { bytes: b, .. } | SpanKind::Memcpy { bytes: b, .. },
        ) => b >= a,
        (SpanKind::Kernel, SpanKind::Kernel) => {
            let name = cx.trace.str(first.name);
            let Some(facts) = cx.trace.facts_for(name) else {
                return false;
            };
            let written = facts
                .arg_access
                .iter()
                .filter(|m| matches!(m, AccessMode::Write | AccessMode::ReadWrite))
                .count();
            name == cx.trace.str(second.name)
                && first.launch == second.launch
                && first.args_digest == second.args_digest
                && !matches!(
                    facts.op_class,
                    OpClass::GatherScatter | OpClass::Unknown | OpClass::Communication
                )
                && !facts.writes_outside_args
                && facts.fields.is_empty()
                && written == 1
        }
        _ => false,
    }
}

fn same_inputs(first: &Span, second: &Span) -> bool {
    let sorted = |s: &Span| {
        let mut r = s.reads.clone();
        r.sort_by_key(|v| (v.buffer, v.version));
        r
    };
    first.kind == SpanKind::Kernel
        && first.name == second.name
        && first.launch == second.launch
        && first.args_digest == second.args_digest
        && sorted(first) == sorted(second)
}

pub(super) fn detect(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) {
    let writer = &cx.writer;
    let (mut uncovered, mut at_end, mut unseen) = (0usize, 0usize, 0usize);
    for first in &cx.work {
        for w in &first.writes {
            if first.unknown_access.contains(&w.buffer)
                || cx.readers.contains_key(&(w.buffer, w.version))
            {
                continue;
            }
            // Versions come from a trace file: the last one has no successor.
            let Some(next_version) = w.version.checked_add(1) else {
                continue;
            };
            let next = writer.get(&(w.buffer, next_version));
            let (proof_end, proof, evidence) = match next {
                Some(second) if second.unknown_access.contains(&w.buffer) => continue,
                // The same launch on the same inputs: the second one is the waste, and the
                // recomputation detector reports it (calling this one dead would count it twice).
                Some(second) if same_inputs(first, second) => continue,
                Some(second) if covers(cx, first, second, w.buffer) => (
                    second.end_ns,
                    format!(
                        "{} writes buffer {} v{}; {} overwrites all of it (v{}) before anything reads v{}",
                        cx.name(first),
                        w.buffer,
                        w.version,
                        cx.name(second),
                        next_version,
                        w.version
                    ),
                    vec![first.id, second.id],
                ),
                Some(_) => {
                    uncovered += 1;
                    continue;
                }
                None => match cx.freed.get(&w.buffer) {
                    Some(&at_ns) => (
                        at_ns,
                        format!(
                            "{} writes buffer {} v{}, which is freed before anything reads it",
                            cx.name(first),
                            w.buffer,
                            w.version
                        ),
                        vec![first.id],
                    ),
                    None => {
                        at_end += 1;
                        continue;
                    }
                },
            };
            if cx.unseen_work_between(first.start_ns, proof_end) {
                unseen += 1;
                continue;
            }
            let mut buffers = vec![*w];
            if evidence.len() == 2 {
                buffers.push(crate::trace::BufferVersion {
                    buffer: w.buffer,
                    version: next_version,
                });
            }
            let fix = match first.kind {
                SpanKind::Kernel => "remove this launch: nothing reads what it writes",
                _ => "drop this copy or fill: the buffer is overwritten or freed before it is read",
            };
            out.push(cx.occurrence(
                WasteKind::DeadWrite,
                first,
                (cx.span_mj(first.id), first.duration_ns()),
                Evidence::new((evidence, buffers), proof, fix.to_owned()),
            ));
        }
    }
    if uncovered > 0 {
        unchecked.push(format!(
            "{uncovered} writes were overwritten before any read by work not shown to cover them (a different kernel, or a buffer of unknown size); not called dead"
        ));
    }
    if at_end > 0 {
        unchecked.push(format!(
            "{at_end} writes were not read before the trace ended and their buffers were not freed in it; the program may read them later"
        ));
    }
    if unseen > 0 {
        unchecked.push(format!(
            "{unseen} unread writes had work the session did not issue (no buffer information) between them and their overwrite; not called dead"
        ));
    }
}
