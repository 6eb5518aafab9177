//! wattlens-instrument owns everything about a wattlens run that needs no GPU: the trace model
//! and its versioned, crash-safe file format; the power sources behind the [`PowerSource`]
//! trait (NVML, the simulated GPU, replay of captured sensor data) and the sampler thread; the
//! trace clock; the repetition harness; the attribution of energy to spans with confidence intervals; and the
//! Chrome/Perfetto export. All of it is pure Rust and testable on a machine without a GPU.

pub mod accuracy;
pub mod attribution;
pub mod audit;
pub mod calibrate;
pub mod clock;
pub mod compare;
pub mod compare_runs;
pub mod footprint;
pub mod format;
pub mod intervals;
pub mod manifest;
pub mod merge;
pub mod names;
pub mod perfetto;
pub mod power;
pub mod repeat;
pub mod replay;
pub mod report;
pub mod sensor_profile;
pub mod sim;
pub mod trace;
pub mod waste;

pub use attribution::{
    attribute, op_class_of, Attribution, AttributionError, Coverage, EnergyEstimate, PowerEstimate,
    MAX_REGION_DEPTH,
};
pub use format::{read_trace, read_trace_file, read_trace_prefix, TraceError, TraceWriter};
pub use intervals::Interval;
pub use manifest::{LaunchSite, Manifest, ManifestError};
pub use power::{PowerError, PowerSource};
pub use sensor_profile::SensorProfile;
pub use trace::*;
