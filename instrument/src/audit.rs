//! The audit's content facts (`wattlens run --audit`), joined to the trace they belong to.
//!
//! The audit (`wattlens_audit.py`, loaded into an unmodified PyTorch program) writes one JSON
//! line per operation it saw, one per tensor freed, and a summary at the end. It runs each
//! operation inside the NVTX range `wattlens.audit#SEQ` and its own digest work inside
//! `wattlens.audit.digest`, so the injection library's records carry those names in their
//! region paths. [`attach`] reads them back out: each operation learns its device work, the
//! audit's digest kernels are renamed [`DIGEST_KERNEL`] so that they are never taken for the
//! program's, the ranges leave the region paths, and the facts become annotations.

use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::trace::{
    Annotation, AuditOp, AuditRows, AuditSummary, AuditTensor, SpanKind, StrId, Trace,
};

/// The NVTX range name the audit runs its own digest work in.
pub const DIGEST_RANGE: &str = "wattlens.audit.digest";
/// The NVTX range name prefix of an audited operation on a CUDA device; its number among such
/// operations, modulo [`OP_RANGE_CYCLE`], follows. A number per operation would give every
/// operation a region path of its own, and the injection library keeps only 65,536 paths.
pub const OP_RANGE_PREFIX: &str = "wattlens.audit#";
/// How many operation range names the audit cycles through.
pub const OP_RANGE_CYCLE: u64 = 4096;
/// The name the audit's digest kernels get in the trace.
pub const DIGEST_KERNEL: &str = "wattlens:audit digest (the audit's own work)";

/// Why the facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The facts file could not be read.
    #[error("cannot read the audit's facts: {0}")]
    Io(#[from] std::io::Error),
}

/// What one process's audit recorded, as read from its facts file.
#[derive(Debug, Default)]
pub struct AuditFacts {
    /// Operations, in issue order.
    pub ops: Vec<AuditOp>,
    /// Each operation's number among those on a CUDA device, from 1 (`None` for the others):
    /// its range is named for it modulo [`OP_RANGE_CYCLE`].
    pub cuda_seq: Vec<Option<u64>>,
    /// Tensors freed.
    pub freed: Vec<TensorFreed>,
    /// The summary (absent when the process did not end normally).
    pub summary: Option<AuditSummary>,
    /// Lines that were not facts.
    pub unreadable_lines: u64,
    /// What the audit could not check, one sentence each.
    pub notes: Vec<String>,
}

/// A tensor the audit saw was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorFreed {
    /// The tensor ([`AuditTensor::tensor`]).
    pub tensor: u64,
    /// The last operation ([`AuditOp::seq`]) begun before it was freed.
    pub after_seq: u64,
}

impl TensorFreed {
    /// As the trace's annotation.
    pub fn annotation(self) -> Annotation {
        Annotation::AuditFreed {
            tensor: self.tensor,
            after_seq: self.after_seq,
        }
    }
}

/// One line of the facts file.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Op(OpLine),
    Free { free: u64, at: u64 },
    End { end: EndLine },
}

/// A tensor: `[tensor, storage, digest, bytes, device]`.
type TensorLine = (u64, u64, u64, u64, String);
/// A write: `[tensor, storage, before, after, bytes, device]`.
type WriteLine = (u64, u64, u64, u64, u64, String);

#[derive(Deserialize)]
struct OpLine {
    op: u64,
    name: String,
    at: (String, u64),
    id: String,
    #[serde(rename = "in")]
    inputs: Vec<TensorLine>,
    #[serde(rename = "out")]
    outputs: Vec<TensorLine>,
    #[serde(rename = "w")]
    writes: Vec<WriteLine>,
    #[serde(default)]
    rows: Option<(u64, u64, u64)>,
    #[serde(default)]
    random: bool,
    #[serde(default)]
    moves: bool,
    #[serde(default)]
    cs: Option<u64>,
}

#[derive(Deserialize)]
struct EndLine {
    ops: u64,
    audit_ns: u64,
    #[serde(default)]
    skipped: HashMap<String, u64>,
    /// Calls of `torch.compile` (and `Module.compile`) the program made.
    #[serde(default)]
    compiled: u64,
}

/// A device name as torch prints it (`cuda:1`, `cpu`) as a CUDA index, or `None` for host.
fn device_index(name: &str) -> Option<u32> {
    match name.strip_prefix("cuda") {
        Some("") => Some(0),
        Some(rest) => rest.strip_prefix(':').and_then(|i| i.parse().ok()),
        None => None,
    }
}

fn tensor((tensor, storage, digest, bytes, device): TensorLine) -> AuditTensor {
    AuditTensor {
        tensor,
        storage,
        digest,
        bytes,
        device: device_index(&device),
    }
}

impl OpLine {
    fn into_op(self) -> AuditOp {
        AuditOp {
            seq: self.op,
            name: self.name,
            module: self.at.0,
            ordinal: self.at.1,
            identity: u64::from_str_radix(&self.id, 16).unwrap_or(0),
            random: self.random,
            moves_data: self.moves,
            spans: Vec::new(),
            inputs: self.inputs.into_iter().map(tensor).collect(),
            outputs: self.outputs.into_iter().map(tensor).collect(),
            writes: self
                .writes
                .into_iter()
                .map(|(t, storage, before, after, bytes, device)| {
                    (tensor((t, storage, before, bytes, device)), after)
                })
                .collect(),
            rows: self.rows.map(|(matched, total, previous)| AuditRows {
                matched: matched.min(total),
                total,
                previous,
            }),
        }
    }
}

/// Read a facts file. A line that is not a fact (a process cut off mid-line, say) is counted
/// and skipped: the facts before it stand.
///
/// # Errors
/// [`AuditError::Io`] when reading fails.
pub fn read_facts(input: impl BufRead) -> Result<AuditFacts, AuditError> {
    let mut facts = AuditFacts::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Op(op)) => {
                facts.cuda_seq.push(op.cs);
                facts.ops.push(op.into_op());
            }
            Ok(Line::Free { free, at }) => facts.freed.push(TensorFreed {
                tensor: free,
                after_seq: at,
            }),
            Ok(Line::End { end }) => {
                let mut skipped: Vec<(String, u64)> = end.skipped.into_iter().collect();
                skipped.sort();
                facts.summary = Some(AuditSummary {
                    ops: end.ops,
                    audit_host_ns: end.audit_ns,
                    skipped,
                    ..AuditSummary::default()
                });
                if end.compiled > 0 {
                    facts.notes.push(format!(
                        "the program called torch.compile {} time(s); under the audit its compiled code ran eagerly (TorchDynamo compiles nothing while a dispatch mode is active), so the findings describe the eager operations, and a run without --audit runs other kernels",
                        end.compiled
                    ));
                }
            }
            Err(_) => facts.unreadable_lines += 1,
        }
    }
    Ok(facts)
}

/// What a region path says about the audit: the operation range it ran in (its number modulo
/// [`OP_RANGE_CYCLE`]), whether it is the audit's own digest work, and the path without the
/// audit's ranges.
struct AuditPath {
    op_cycle: Option<u64>,
    digest: bool,
    rest: String,
}

fn audit_path(path: &str) -> Option<AuditPath> {
    if !path.contains(DIGEST_RANGE) && !path.contains(OP_RANGE_PREFIX) {
        return None;
    }
    let (mut op_cycle, mut digest) = (None, false);
    let mut rest = Vec::new();
    for part in path.split('/') {
        if part == DIGEST_RANGE {
            digest = true;
        } else if let Some(n) = part.strip_prefix(OP_RANGE_PREFIX) {
            op_cycle = n
                .parse::<u64>()
                .ok()
                .map(|n| n % OP_RANGE_CYCLE)
                .or(op_cycle);
        } else {
            rest.push(part);
        }
    }
    Some(AuditPath {
        op_cycle,
        digest,
        rest: rest.join("/"),
    })
}

/// The operation number, among those on a CUDA device, nearest `near` that is `cycle` modulo
/// [`OP_RANGE_CYCLE`]: work runs in about the order it was issued, so the operation of a
/// kernel is the one of its range name closest to the last one seen.
fn nearest_in_cycle(cycle: u64, near: u64) -> u64 {
    let n = OP_RANGE_CYCLE;
    let base = near - near % n + cycle;
    [base.checked_sub(n), Some(base), base.checked_add(n)]
        .into_iter()
        .flatten()
        .filter(|&s| s >= 1)
        .min_by_key(|&s| s.abs_diff(near))
        .unwrap_or(base)
}

/// Join `facts` to `trace`: each operation's device work by the range it ran in, the audit's
/// digest kernels renamed [`DIGEST_KERNEL`], the audit's ranges out of the region spans and
/// paths, and the facts added as annotations.
pub fn attach(trace: &mut Trace, facts: AuditFacts) {
    let mut summary = facts.summary.unwrap_or_default();
    summary.unreadable_lines = facts.unreadable_lines;
    let mut ops = facts.ops;
    let by_cuda_seq: HashMap<u64, usize> = facts
        .cuda_seq
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (c, i)))
        .collect();
    let digest_name = trace.strings.id(DIGEST_KERNEL);
    let mut held = Vec::new();
    trace.spans.retain(|s| {
        if !matches!(s.kind, SpanKind::Region { .. }) {
            return true;
        }
        match trace.strings.get(s.name) {
            // The host time the audit's digests took: idle it caused is not the program's.
            Some(DIGEST_RANGE) => {
                held.push(Annotation::Overhead {
                    device: s.device,
                    from_ns: s.start_ns,
                    to_ns: s.end_ns,
                });
                false
            }
            Some(n) => !n.starts_with(OP_RANGE_PREFIX),
            None => true,
        }
    });
    trace.annotations.extend(held);
    let mut paths: HashMap<StrId, Option<(Option<u64>, bool, StrId)>> = HashMap::new();
    // The program's work in an operation range: (start, span index, the range's number).
    let mut in_ops: Vec<(u64, usize, u64)> = Vec::new();
    for i in 0..trace.spans.len() {
        let region = trace.spans[i].region;
        let parsed = match paths.get(&region) {
            Some(p) => *p,
            None => {
                let p = audit_path(trace.str(region))
                    .map(|a| (a.op_cycle, a.digest, trace.strings.id(&a.rest)));
                paths.insert(region, p);
                p
            }
        };
        let Some((op_cycle, digest, rest)) = parsed else {
            continue;
        };
        let span = &mut trace.spans[i];
        span.region = rest;
        if !span.is_program_work() {
            continue;
        }
        if digest {
            span.name = digest_name;
            summary.digest_spans += 1;
            summary.digest_busy_ns += span.duration_ns();
        } else if let Some(c) = op_cycle {
            in_ops.push((span.start_ns, i, c));
        }
    }
    in_ops.sort_unstable();
    let mut last = 1u64;
    for (_, i, cycle) in in_ops {
        let seq = nearest_in_cycle(cycle, last);
        if let Some(&k) = by_cuda_seq.get(&seq) {
            ops[k].spans.push(trace.spans[i].id);
            last = seq;
        }
    }
    trace
        .annotations
        .extend(ops.into_iter().map(|o| Annotation::AuditOp(Box::new(o))));
    trace
        .annotations
        .extend(facts.freed.into_iter().map(TensorFreed::annotation));
    trace.annotations.push(Annotation::AuditSummary(summary));
    trace
        .annotations
        .extend(facts.notes.into_iter().map(Annotation::AuditNote));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{RunMeta, Span};

    #[test]
    fn device_names_map_to_cuda_indices_and_host() {
        assert_eq!(device_index("cuda:0"), Some(0));
        assert_eq!(device_index("cuda:3"), Some(3));
        assert_eq!(device_index("cuda"), Some(0));
        assert_eq!(device_index("cpu"), None);
        assert_eq!(device_index("cudax"), None);
    }

    #[test]
    fn facts_are_read_and_a_cut_line_is_counted_not_fatal() {
        let text = concat!(
            r#"{"op":1,"name":"aten::addmm","at":["GPT2MLP#3",2],"id":"00ff","in":[[1,4096,7,64,"cuda:0"]],"out":[[2,8192,9,64,"cuda:0"]],"w":[],"rows":[3,4,0]}"#,
            "\n",
            r#"{"free":1,"at":1}"#,
            "\n",
            r#"{"op":2,"name":"aten::copy_","at":["",0],"id":"01","in":[[3,1,5,8,"cpu"]],"out":[],"w":[[4,2,5,5,8,"cuda:0"]]}"#,
            "\n",
            r#"{"end":{"ops":2,"audit_ns":1500,"skipped":{"inside a CUDA graph capture":4}}}"#,
            "\n",
            r#"{"op":3,"name":"aten::mm","at":["#,
        );
        let f = read_facts(text.as_bytes()).unwrap();
        assert_eq!(f.ops.len(), 2);
        assert_eq!(f.unreadable_lines, 1);
        let op = &f.ops[0];
        assert_eq!(
            (op.module.as_str(), op.ordinal, op.identity),
            ("GPT2MLP#3", 2, 0xff)
        );
        assert_eq!(op.inputs[0].device, Some(0));
        assert_eq!(
            op.rows,
            Some(AuditRows {
                matched: 3,
                total: 4,
                previous: 0
            })
        );
        assert_eq!(f.ops[1].writes[0].0.digest, 5);
        assert_eq!(f.ops[1].writes[0].1, 5);
        assert_eq!(f.ops[1].inputs[0].device, None);
        assert_eq!(
            f.freed,
            vec![TensorFreed {
                tensor: 1,
                after_seq: 1
            }]
        );
        let s = f.summary.unwrap();
        assert_eq!((s.ops, s.audit_host_ns), (2, 1500));
        assert_eq!(
            s.skipped,
            vec![("inside a CUDA graph capture".to_owned(), 4)]
        );
        assert!(f.notes.is_empty(), "{:?}", f.notes);
    }

    /// A program that compiles with torch.compile runs eagerly under the audit; the trace
    /// says so, for the report's notes.
    #[test]
    fn a_program_that_called_torch_compile_gets_a_note_in_its_trace() {
        let text = r#"{"end":{"ops":0,"audit_ns":0,"skipped":{},"compiled":2}}"#;
        let f = read_facts(text.as_bytes()).unwrap();
        let mut t = Trace::new(RunMeta::default());
        attach(&mut t, f);
        let notes: Vec<&String> = t
            .annotations
            .iter()
            .filter_map(|a| match a {
                Annotation::AuditNote(n) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("torch.compile 2 time(s)") && notes[0].contains("eagerly"));
    }

    #[test]
    fn a_range_number_maps_to_the_operation_nearest_the_last_one() {
        let n = OP_RANGE_CYCLE;
        assert_eq!(nearest_in_cycle(5, 1), 5);
        assert_eq!(nearest_in_cycle(3, n + 1), n + 3);
        // Just past a wrap: range 2 after operation n - 1 is operation n + 2.
        assert_eq!(nearest_in_cycle(2, n - 1), n + 2);
        // Work of an earlier operation seen late maps back, not a whole cycle ahead.
        assert_eq!(nearest_in_cycle(n - 1, n + 3), n - 1);
        assert_eq!(nearest_in_cycle(0, 1), n, "operations are numbered from 1");
    }

    #[test]
    fn attach_gives_each_operation_its_kernels_and_renames_the_audits_own() {
        let mut t = Trace::new(RunMeta::default());
        let gemm = t.strings.id("sm90_gemm");
        let reduce = t.strings.id("reduce_kernel");
        let op_path = t.strings.id("request/wattlens.audit#7");
        let digest_path = t.strings.id("request/wattlens.audit.digest");
        let op_range = t.strings.id("wattlens.audit#7");
        let digest_range = t.strings.id(DIGEST_RANGE);
        let request = t.strings.id("request");
        t.spans = vec![
            Span {
                region: request,
                ..Span::new(1, SpanKind::Region { depth: 0 }, (0, 0), request, (0, 100))
            },
            Span {
                region: op_path,
                ..Span::new(2, SpanKind::Region { depth: 1 }, (0, 0), op_range, (10, 20))
            },
            Span {
                region: digest_path,
                ..Span::new(
                    6,
                    SpanKind::Region { depth: 1 },
                    (0, 0),
                    digest_range,
                    (5, 8),
                )
            },
            Span {
                region: digest_path,
                ..Span::new(3, SpanKind::Kernel, (0, 7), reduce, (5, 8))
            },
            Span {
                region: op_path,
                ..Span::new(4, SpanKind::Kernel, (0, 7), gemm, (10, 20))
            },
            Span {
                region: request,
                ..Span::new(5, SpanKind::Kernel, (0, 7), reduce, (30, 40))
            },
        ];
        let facts = read_facts(
            r#"{"op":7,"name":"aten::mm","at":["",0],"id":"1","in":[],"out":[],"w":[],"cs":7}"#
                .as_bytes(),
        )
        .unwrap();
        attach(&mut t, facts);
        let ids: Vec<u64> = t.spans.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1, 3, 4, 5], "the audit's range spans are gone");
        assert!(t.annotations.iter().any(|a| matches!(
            a,
            Annotation::Overhead {
                from_ns: 5,
                to_ns: 8,
                ..
            }
        )));
        assert!(t.spans.iter().all(|s| t.str(s.region) == "request"));
        assert_eq!(t.str(t.spans[1].name), DIGEST_KERNEL);
        assert_eq!(t.str(t.spans[2].name), "sm90_gemm");
        assert_eq!(t.str(t.spans[3].name), "reduce_kernel", "the program's own");
        let op = t.annotations.iter().find_map(|a| match a {
            Annotation::AuditOp(o) => Some(o),
            _ => None,
        });
        assert_eq!(op.map(|o| o.spans.clone()), Some(vec![4]));
        let summary = t.annotations.iter().find_map(|a| match a {
            Annotation::AuditSummary(s) => Some(s),
            _ => None,
        });
        assert_eq!(
            summary.map(|s| (s.digest_spans, s.digest_busy_ns)),
            Some((1, 3))
        );
    }
}
