//! The analysis of a trace, as every front end reports it: per device, the energy attribution
//! and the waste findings. The CLI only renders a [`Report`] (tables, JSON, CSV).

use serde::Serialize;

use crate::attribution::{attribute, Attribution, AttributionError};
use crate::footprint::Factors;
use crate::trace::Trace;
use crate::waste::{detect as detect_waste, WasteConfig, WasteReport};

/// Analyse `trace`: attribute every device's energy and find its waste.
///
/// # Errors
/// The first device's [`AttributionError`] when no device could be attributed.
pub fn analyze(trace: &Trace) -> Result<Report, AttributionError> {
    Report::build(trace)
}

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

    /// Attribute every device of `trace` and find its waste: [`analyze`].
    ///
    /// # Errors
    /// The first device's [`AttributionError`] when no device could be attributed.
    pub fn build(trace: &Trace) -> Result<Self, AttributionError> {
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
                return Err(e);
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
