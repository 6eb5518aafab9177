//! Power sources (the hardware boundary) and the window arithmetic over their readings.

mod counter_grid;
mod cpu_time;
pub mod nvml;
mod recorded;
mod sampler;
mod window;

pub use counter_grid::{fit_counter_grid, CounterGrid, CounterRead, CounterScheduler};
pub use cpu_time::thread_cpu_ns;
pub use recorded::RecordedSource;
pub use sampler::{Sampler, SamplerReport};
pub use window::{
    counter_reads, counter_windows, mean_power_counter_w, mean_power_samples_w, CounterWindow,
};

use crate::sensor_profile::SensorProfile;
use crate::trace::{ClockAlignment, DeviceInfo, PowerReading};

/// Why a power source could not deliver readings.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The backend is compiled out of this build.
    #[error(
        "the {0} power source is not enabled in this build; rebuild wattlens with its feature"
    )]
    NotEnabled(&'static str),
    /// No power data can be had: no driver, no GPU, or nothing selected.
    #[error("{0}")]
    Unavailable(String),
    /// A GPU stopped answering mid-run; readings up to then are kept.
    #[error("GPU {device} ({name}) was lost mid-run (fallen off the bus or reset); readings up to that moment are kept")]
    DeviceLost {
        /// Trace device index.
        device: u32,
        /// Product name.
        name: String,
    },
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
    /// Like [`PowerSource::poll`], but read everything now regardless of schedule (at stop).
    ///
    /// # Errors
    /// [`PowerError`] when the backend cannot be read.
    fn flush(&mut self, now_ns: u64, out: &mut Vec<PowerReading>) -> Result<(), PowerError> {
        self.poll(now_ns, out)
    }
    /// When the source next has something to read, trace clock.
    fn next_poll_ns(&self, now_ns: u64) -> u64 {
        now_ns + 50_000_000
    }
    /// The evidence mapping the source's clock onto the trace clock.
    fn alignments(&self) -> Vec<ClockAlignment> {
        Vec::new()
    }
}
