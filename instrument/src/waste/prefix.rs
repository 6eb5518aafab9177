//! Recomputed prefixes: a pass of a causal model over token rows whose leading tokens an
//! earlier pass already ran, with the same weights. Position i of a causal model depends on
//! tokens 0..=i only, so every position inside the shared prefix comes out as before: decoding
//! without a KV cache is the common case. Passes, their tokens and causality come from the
//! program's declaration ([`crate::trace::Annotation::Pass`]); each launch's recomputed rows
//! (query–key pairs for attention) are priced like padding: their share of its dynamic energy,
//! and the time the same kernel over only the new rows would save.

use std::collections::{BTreeMap, HashMap};

use super::{Context, Evidence, Occurrence, WasteKind};
use crate::trace::{Annotation, OpClass};

struct Pass<'a> {
    padded_len: u64,
    causal: bool,
    rows: &'a [Vec<u32>],
    spans: Vec<u64>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> u64 {
    a.iter().zip(b).take_while(|(x, y)| x == y).count() as u64
}

/// One launch of a pass that recomputes rows an earlier pass ran.
pub(super) struct Recomputed {
    /// The launch.
    pub span: u64,
    /// Its recomputed units (rows, or query–key pairs for attention).
    pub wasted: f64,
    /// All its units.
    pub total: f64,
    /// The earlier pass.
    prev_pass: u32,
    /// The pass's recomputed rows and all its rows.
    rows: (f64, f64),
}

/// The launches of declared causal passes that recompute an earlier pass's rows.
pub(super) fn find(cx: &Context<'_>, unchecked: &mut Vec<String>) -> Vec<Recomputed> {
    let mut found = Vec::new();
    let mut passes: BTreeMap<u32, Pass<'_>> = BTreeMap::new();
    for a in &cx.trace.annotations {
        if let Annotation::Pass {
            pass,
            padded_len,
            causal,
            rows,
        } = a
        {
            passes.insert(
                *pass,
                Pass {
                    padded_len: *padded_len,
                    causal: *causal,
                    rows,
                    spans: Vec::new(),
                },
            );
        }
    }
    for a in &cx.trace.annotations {
        if let Annotation::Padding { span, pass, .. } = a {
            if cx.by_id.contains_key(span) {
                if let Some(p) = passes.get_mut(pass) {
                    p.spans.push(*span);
                }
            }
        }
    }
    let mut changed_weights = 0usize;
    let ids: Vec<u32> = passes.keys().copied().collect();
    for (k, &id) in ids.iter().enumerate() {
        let Some(prev_id) = k.checked_sub(1).map(|i| ids[i]) else {
            continue;
        };
        let (Some(p1), Some(p2)) = (passes.get(&prev_id), passes.get(&id)) else {
            continue;
        };
        if !(p1.causal && p2.causal) || p1.rows.len() != p2.rows.len() || p2.spans.is_empty() {
            continue;
        }
        let shared: Vec<u64> = p1
            .rows
            .iter()
            .zip(p2.rows)
            .map(|(a, b)| common_prefix(a, b))
            .collect();
        if shared.iter().all(|&c| c == 0) {
            continue;
        }
        if !same_weights(cx, &p1.spans, &p2.spans) {
            changed_weights += 1;
            continue;
        }
        let b = p2.rows.len() as u64;
        let len = p2.padded_len.max(1);
        // In f64: the counts come from a trace file and may be absurd, never an overflow.
        let (bf, lf) = (b as f64, len as f64);
        let rows = (shared.iter().map(|&c| c as f64).sum::<f64>(), bf * lf);
        let pairs = (
            shared.iter().map(|&c| (c as f64).powi(2)).sum::<f64>(),
            bf * lf * lf,
        );
        for &sid in &p2.spans {
            let Some(s) = cx.by_id.get(&sid) else {
                continue;
            };
            let class = crate::attribution::op_class_of(cx.trace, cx.trace.str(s.name), "kernel");
            let (wasted, total) = if class == OpClass::Attention {
                pairs
            } else {
                rows
            };
            found.push(Recomputed {
                span: sid,
                wasted,
                total,
                prev_pass: prev_id,
                rows,
            });
        }
    }
    if changed_weights > 0 {
        unchecked.push(format!(
            "{changed_weights} passes repeated an earlier pass's token prefix but read weights that changed in between; not called recomputation"
        ));
    }
    found
}

/// Price each recomputing launch `found` ([`Context::partial_mj`]) and report it.
pub(super) fn report(cx: &Context<'_>, found: &[Recomputed], out: &mut Vec<Occurrence>) {
    for r in found {
        let Some(s) = cx.by_id.get(&r.span) else {
            continue;
        };
        let (energy, time) = cx.partial_mj(s, r.wasted, r.total);
        out.push(cx.partial_occurrence(WasteKind::Recomputation, s, (energy, (s.duration_ns() as f64 * time) as u64), Evidence::new((vec![r.span], s.reads.clone()), format!(
                "a causal pass over tokens that pass {} already ran: {} of its {} rows recompute positions computed before, with the same weights",
                r.prev_pass, r.rows.0, r.rows.1
            ), "keep the earlier positions' keys and values (a KV cache) and run only the new tokens".into())));
    }
}

/// Whether every buffer both passes read, and neither wrote, was read at the same version, or
/// changed only through host uploads in between (the passes' token inputs, whose content the
/// declared tokens describe). A buffer a kernel rewrote between them (a weight update, say)
/// means the passes may not compute alike.
fn same_weights(cx: &Context<'_>, first: &[u64], second: &[u64]) -> bool {
    let reads = |spans: &[u64]| {
        let mut read: HashMap<u64, u32> = HashMap::new();
        let mut written = std::collections::HashSet::new();
        for s in spans.iter().filter_map(|id| cx.by_id.get(id)) {
            for r in &s.reads {
                read.entry(r.buffer).or_insert(r.version);
            }
            for w in &s.writes {
                written.insert(w.buffer);
            }
        }
        (read, written)
    };
    let (r1, w1) = reads(first);
    let (r2, w2) = reads(second);
    let uploaded_only = |b: u64, from: u32, to: u32| {
        (from + 1..=to).all(|v| {
            cx.writer.get(&(b, v)).is_some_and(|s| {
                matches!(
                    s.kind,
                    crate::trace::SpanKind::Memcpy {
                        direction: crate::trace::CopyDirection::HostToDevice,
                        ..
                    }
                )
            })
        })
    };
    r1.iter().all(|(b, v)| {
        w1.contains(b)
            || w2.contains(b)
            || r2
                .get(b)
                .is_none_or(|v2| v2 == v || (v2 > v && uploaded_only(*b, *v, *v2)))
    })
}
