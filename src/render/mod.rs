//! Reports: what `demo` and `report` print, as tables, JSON or CSV.

pub mod csv;
pub mod json;
pub mod table;
pub mod units;
pub mod waste;

use std::collections::HashMap;

use serde::Serialize;
use wattlens_instrument::footprint::Factors;
use wattlens_instrument::sim::SimRun;
use wattlens_instrument::waste::{detect as detect_waste, WasteConfig, WasteReport};
use wattlens_instrument::{
    attribute, op_class_of, Attribution, LaunchShape, OpClass, StrId, Trace,
};

use crate::error::CliError;

/// The report of one trace: an attribution per device.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when the data came from the simulated GPU.
    pub simulated: bool,
    /// The version of wattlens that recorded the trace.
    pub recorded_by: String,
    /// The profiled command.
    pub command: Vec<String>,
    /// The host it ran on.
    pub host: String,
    /// The sensor profile in force.
    pub sensor_profile: String,
    /// Spans in the trace.
    pub spans: usize,
    /// Power readings in the trace.
    pub power_readings: usize,
    /// One entry per device.
    pub devices: Vec<DeviceReport>,
    /// The footprint factors the report converts GPU energy with.
    pub footprint: Factors,
}

/// The report of one device.
#[derive(Debug, Serialize)]
pub struct DeviceReport {
    /// Device index.
    pub index: u32,
    /// Device name.
    pub name: String,
    /// The energy attribution, when the device had enough data.
    pub attribution: Option<Attribution>,
    /// Why there is no attribution.
    pub problem: Option<String>,
    /// Waste findings, when the device was attributed.
    pub waste: Option<WasteReport>,
}

impl Report {
    /// The waste reports of every attributed device.
    pub fn waste(&self) -> Vec<WasteReport> {
        self.devices
            .iter()
            .filter_map(|d| d.waste.clone())
            .collect()
    }

    /// Attribute every device of `trace`.
    ///
    /// # Errors
    /// The first device's [`CliError::Attribution`] when no device could be attributed.
    pub fn build(trace: &Trace) -> Result<Self, CliError> {
        let mut devices = Vec::new();
        let mut first_err = None;
        for d in &trace.meta.devices {
            let (attribution, problem) = match attribute(trace, d.index) {
                Ok(a) => (Some(a), None),
                Err(e) => {
                    let text = e.to_string();
                    first_err.get_or_insert(e);
                    (None, Some(text))
                }
            };
            let waste = attribution
                .as_ref()
                .map(|a| detect_waste(trace, a, &WasteConfig::default()));
            devices.push(DeviceReport {
                index: d.index,
                name: d.name.clone(),
                attribution,
                problem,
                waste,
            });
        }
        if devices.iter().all(|d| d.attribution.is_none()) {
            if let Some(e) = first_err {
                return Err(e.into());
            }
        }
        Ok(Self {
            simulated: trace.meta.simulated,
            recorded_by: trace.meta.tool_version.clone(),
            command: trace.meta.command.clone(),
            host: trace.meta.host.clone(),
            sensor_profile: trace.meta.sensor_profile.name.clone(),
            spans: trace.spans.len(),
            power_readings: trace.power.len(),
            devices,
            footprint: Factors::default(),
        })
    }

    /// This report with the footprint factors `factors`.
    pub fn with_footprint(mut self, factors: Factors) -> Self {
        self.footprint = factors;
        self
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
