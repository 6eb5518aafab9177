//! The regression's design: each signature, and its busy time inside each counter window.

use std::collections::HashMap;

use crate::power::CounterWindow;
use crate::trace::{LaunchShape, StrId, Trace};

/// Key of a signature: name, span-kind label and launch shape.
pub(crate) type SigKey = (StrId, &'static str, Option<LaunchShape>);

/// Signatures of the device-work spans and their busy time per counter window.
pub(crate) struct Design {
    /// The signatures, in first-seen order.
    pub keys: Vec<SigKey>,
    /// Signature index of each work span.
    pub sig_of: Vec<usize>,
    /// Busy seconds of each signature (column) inside each window (row).
    pub x: Vec<Vec<f64>>,
    /// Busy time inside counter windows per signature, ns.
    pub covered_ns: Vec<u64>,
}

impl Design {
    /// Build the design for the spans `work` (indices into `trace.spans`) over `windows`.
    pub fn build(trace: &Trace, work: &[usize], windows: &[CounterWindow]) -> Self {
        let mut keys: Vec<SigKey> = Vec::new();
        let mut index: HashMap<SigKey, usize> = HashMap::new();
        let sig_of: Vec<usize> = work
            .iter()
            .map(|&i| {
                let s = &trace.spans[i];
                let key = (s.name, s.kind.label(), s.launch);
                *index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        let p = keys.len();
        let mut x = vec![vec![0.0f64; p]; windows.len()];
        let mut covered_ns = vec![0u64; p];
        for (&i, &s) in work.iter().zip(&sig_of) {
            let span = &trace.spans[i];
            let first = windows.partition_point(|w| w.end_ns <= span.start_ns);
            for (k, w) in windows.iter().enumerate().skip(first) {
                if w.start_ns >= span.end_ns {
                    break;
                }
                let overlap = span.end_ns.min(w.end_ns) - span.start_ns.max(w.start_ns);
                x[k][s] += overlap as f64 * 1e-9;
                covered_ns[s] += overlap;
            }
        }
        Self {
            keys,
            sig_of,
            x,
            covered_ns,
        }
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}
