//! The analysis of a trace, as every front end reports it: per device, the energy attribution
//! and the waste findings. The CLI only renders a [`Report`] (tables, JSON, CSV).

use serde::Serialize;

use crate::attribution::{attribute, Attribution, AttributionError, EnergyEstimate};
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
    /// The whole job, where two GPUs or more were attributed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSummary>,
    /// The footprint factors the report converts GPU energy with.
    pub footprint: Factors,
}

/// A job across its GPUs (ranks of `torchrun`, or one process on several cards): what their
/// energy counters measured together, and each request path's energy summed over the GPUs
/// that ran it. Each GPU has its own sensor, so their intervals add in quadrature.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// GPUs attributed.
    pub gpus: usize,
    /// What their counters measured, summed.
    pub energy: EnergyEstimate,
    /// Their idle power over the run, summed.
    pub idle: EnergyEstimate,
    /// Per request path, over the GPUs whose ranges carry it.
    pub requests: Vec<JobRequest>,
}

/// One request path across a job's GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct JobRequest {
    /// The range path.
    pub path: String,
    /// GPUs whose ranges carry it.
    pub gpus: usize,
    /// Instances on the GPU with the most (each rank runs every request of a tensor-parallel
    /// job).
    pub count: u64,
    /// Mean energy per instance, summed over the GPUs.
    pub mean: EnergyEstimate,
    /// Energy per token, summed over the GPUs, where every GPU knows the tokens.
    pub per_token: Option<EnergyEstimate>,
}

/// The sum of independent estimates: half-widths in quadrature.
fn sum_independent<'a>(estimates: impl Iterator<Item = &'a EnergyEstimate>) -> EnergyEstimate {
    let (mj, var) = estimates.fold((0.0, 0.0), |(mj, var), e| {
        (mj + e.mj, var + e.half_mj() * e.half_mj())
    });
    EnergyEstimate::from_half_width(mj, f64::sqrt(var))
}

impl JobSummary {
    /// The job of `attributions`; `None` for fewer than two.
    pub fn of(attributions: &[&Attribution]) -> Option<Self> {
        if attributions.len() < 2 {
            return None;
        }
        // The counter's 1 mJ steps at both ends of each GPU's run.
        let counters: Vec<EnergyEstimate> = attributions
            .iter()
            .map(|a| EnergyEstimate::from_half_width(a.closure.counter_mj, 1.0))
            .collect();
        let idles: Vec<EnergyEstimate> = attributions
            .iter()
            .map(|a| {
                let p = &a.idle_power;
                let k = a.closure.idle_mj / p.mw.max(f64::MIN_POSITIVE);
                EnergyEstimate::from_half_width(a.closure.idle_mj, k * (p.high_mw - p.low_mw) / 2.0)
            })
            .collect();
        let mut paths: Vec<&str> = attributions
            .iter()
            .flat_map(|a| a.requests.ranges.iter().map(|r| r.path.as_str()))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let requests = paths
            .into_iter()
            .map(|path| {
                let on: Vec<_> = attributions
                    .iter()
                    .filter_map(|a| a.requests.ranges.iter().find(|r| r.path == path))
                    .collect();
                let per_token = on
                    .iter()
                    .map(|r| r.per_token)
                    .collect::<Option<Vec<_>>>()
                    .map(|t| sum_independent(t.iter()));
                JobRequest {
                    path: path.to_owned(),
                    gpus: on.len(),
                    count: on.iter().map(|r| r.count).max().unwrap_or(0),
                    mean: sum_independent(on.iter().map(|r| &r.mean)),
                    per_token,
                }
            })
            .collect();
        Some(Self {
            gpus: attributions.len(),
            energy: sum_independent(counters.iter()),
            idle: sum_independent(idles.iter()),
            requests,
        })
    }
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
        let attributed: Vec<&Attribution> = devices
            .iter()
            .filter_map(|d| d.attribution.as_ref())
            .collect();
        let job = JobSummary::of(&attributed);
        let imbalance = crate::waste::imbalance::detect(trace, &attributed);
        for (device, finding) in imbalance {
            if let Some(w) = devices
                .iter_mut()
                .find(|d| d.index == device)
                .and_then(|d| d.waste.as_mut())
            {
                w.findings.push(finding);
                w.findings
                    .sort_by(|a, b| b.energy.mj.total_cmp(&a.energy.mj));
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
            job,
            footprint: Factors::default(),
        })
    }

    /// This report with the footprint factors `factors`.
    pub fn with_footprint(mut self, factors: Factors) -> Self {
        self.footprint = factors;
        self
    }
}
