//! Reports: what `demo` and `report` print, as tables, JSON or CSV.

pub mod csv;
pub mod html;
pub mod json;
pub mod parquet;
pub mod table;
pub mod units;
pub mod waste;

use std::collections::HashMap;

use wattlens_instrument::sim::SimRun;
use wattlens_instrument::{op_class_of, LaunchShape, OpClass, StrId};

pub use wattlens_instrument::report::{analyze, DeviceReport, Report};

/// Each span's op class, looked up once per name and kind (a trace of a million spans has a
/// few hundred signatures).
pub(crate) struct SpanClasses<'t> {
    trace: &'t wattlens_instrument::Trace,
    seen: HashMap<(StrId, &'static str), OpClass>,
}

impl<'t> SpanClasses<'t> {
    /// An empty cache over `trace`.
    pub(crate) fn new(trace: &'t wattlens_instrument::Trace) -> Self {
        Self {
            trace,
            seen: HashMap::new(),
        }
    }

    /// The op class of span `s`.
    pub(crate) fn of(&mut self, s: &wattlens_instrument::Span) -> OpClass {
        let trace = self.trace;
        *self
            .seen
            .entry((s.name, s.kind.label()))
            .or_insert_with(|| op_class_of(trace, trace.str(s.name), s.kind.label()))
    }
}

/// The simulator's true energy above idle per signature and per op class, for comparison.
#[derive(Debug, Default)]
pub struct Truth {
    by_signature: HashMap<(String, String, Option<LaunchShape>), f64>,
    by_op: HashMap<OpClass, f64>,
}

impl Truth {
    /// Collect the truth of a simulated run.
    pub fn from_sim(run: &SimRun) -> Self {
        let trace = &run.trace;
        let mut by_key: HashMap<(StrId, &'static str, Option<LaunchShape>), f64> = HashMap::new();
        for (span, &mj) in trace.spans.iter().zip(&run.truth.span_above_idle_mj) {
            if span.is_program_work() {
                *by_key
                    .entry((span.name, span.kind.label(), span.launch))
                    .or_default() += mj;
            }
        }
        let mut t = Self::default();
        for ((name, kind, launch), mj) in by_key {
            let name = trace.str(name);
            *t.by_op.entry(op_class_of(trace, name, kind)).or_default() += mj;
            t.by_signature
                .insert((name.to_owned(), kind.to_owned(), launch), mj);
        }
        t
    }

    /// True dynamic energy of a signature, mJ.
    pub fn signature_mj(&self, name: &str, kind: &str, launch: Option<LaunchShape>) -> Option<f64> {
        self.by_signature
            .get(&(name.to_owned(), kind.to_owned(), launch))
            .copied()
    }

    /// True dynamic energy of an op class, mJ.
    pub fn op_mj(&self, op: OpClass) -> Option<f64> {
        self.by_op.get(&op).copied()
    }
}
