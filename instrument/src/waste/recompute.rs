//! Recomputation: a kernel launched again with the same launch shape, scalar arguments and
//! input buffer versions as an earlier launch, while every buffer the earlier one wrote still
//! holds what it wrote. Kernels are taken to be deterministic; launches with unknown access
//! modes or writes through pointer tables are left out.

use std::collections::HashMap;

use super::{Context, Evidence, Occurrence, WasteKind};
use crate::trace::{BufferVersion, LaunchShape, SpanKind};

type Key = (
    String,
    Option<LaunchShape>,
    u64,
    Vec<BufferVersion>,
    Vec<u64>,
);

pub(super) fn detect(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) {
    let mut seen: HashMap<Key, &crate::trace::Span> = HashMap::new();
    let mut skipped = 0usize;
    for s in cx.work.iter().filter(|s| s.kind == SpanKind::Kernel) {
        let name = cx.name(s);
        let opaque = cx
            .trace
            .facts_for(&name)
            .is_none_or(|f| f.writes_outside_args);
        if !s.unknown_access.is_empty() || opaque || s.writes.is_empty() {
            if s.reads.is_empty() && s.writes.is_empty() {
                // Work the session did not issue: nothing to compare.
                continue;
            }
            skipped += 1;
            continue;
        }
        let mut reads = s.reads.clone();
        reads.sort_by_key(|r| (r.buffer, r.version));
        let mut written: Vec<u64> = s.writes.iter().map(|w| w.buffer).collect();
        written.sort_unstable();
        let key = (name, s.launch, s.args_digest, reads, written);
        if let Some(first) = seen.get(&key) {
            // Intact: each output of the first launch is the version this one overwrites.
            let intact = s.writes.iter().all(|w| {
                first
                    .writes
                    .iter()
                    .any(|f| f.buffer == w.buffer && f.version.checked_add(1) == Some(w.version))
            });
            if intact {
                let inputs: Vec<String> = s
                    .reads
                    .iter()
                    .map(|r| format!("{} v{}", r.buffer, r.version))
                    .collect();
                let mut buffers = s.reads.clone();
                buffers.extend(first.writes.iter().copied());
                out.push(cx.occurrence(WasteKind::Recomputation, s, (cx.span_mj(s.id), s.duration_ns()), Evidence::new((vec![s.id, first.id], buffers), format!(
                        "{} ran again with the same shape, scalars and inputs (buffers {}) as span {}, whose output was still intact",
                        key.0,
                        inputs.join(", "),
                        first.id
                    ), format!(
                        "reuse the output of the earlier launch ({}) instead of recomputing it",
                        cx.trace.str(first.site)
                    ))));
            }
        }
        seen.insert(key, s);
    }
    if skipped > 0 {
        unchecked.push(format!(
            "{skipped} launches without kernel facts or with writes through pointer tables were not checked for recomputation"
        ));
    }
}
