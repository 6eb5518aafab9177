//! Power sources (the hardware boundary) and the window arithmetic over their readings.

mod recorded;
mod window;

pub use recorded::RecordedSource;
pub use window::{counter_windows, mean_power_counter_w, mean_power_samples_w, CounterWindow};

use crate::sensor_profile::SensorProfile;
use crate::trace::{DeviceInfo, PowerReading};

/// Why a power source could not deliver readings.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The backend is compiled out of this build.
    #[error(
        "the {0} power source is not enabled in this build; rebuild wattlens with its feature"
    )]
    NotEnabled(&'static str),
    /// The backend failed at run time.
    #[error("the {backend} power source failed: {reason}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Something that reports a GPU's power: NVML, the simulated GPU, or a replayed capture.
pub trait PowerSource {
    /// The devices this source observes, indexed as in the trace.
    fn devices(&self) -> &[DeviceInfo];
    /// The sensor model of this source.
    fn profile(&self) -> &SensorProfile;
    /// True when the readings do not come from hardware in this run.
    fn simulated(&self) -> bool;
    /// Append every reading that has become available up to `now_ns` (trace clock) to `out`.
    ///
    /// # Errors
    /// [`PowerError`] when the backend cannot be read.
    fn poll(&mut self, now_ns: u64, out: &mut Vec<PowerReading>) -> Result<(), PowerError>;
}
