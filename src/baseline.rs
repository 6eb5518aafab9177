//! `wattlens run`'s own view of the GPUs' power once its command has exited. An unmodified
//! program may keep its GPU busy from its first CUDA call to its exit, leaving its trace no
//! quiet window to measure idle power in; these readings, added after each process's own,
//! give it some. They are taken after, not before: a GPU nobody holds sits in a deeper power
//! state (about 91 W on the H200, against 124 W held idle), so quiet time before the command
//! would understate the idle power of a GPU in use.

use std::sync::Arc;
use std::time::Duration;

use wattlens_instrument::clock::HostClock;
use wattlens_instrument::power::nvml::{open_nvml, DeviceSelection};
use wattlens_instrument::power::{PowerSource, Sampler};
use wattlens_instrument::trace::{DeviceInfo, PowerReading, RunMeta, Trace};
use wattlens_instrument::SensorProfile;

/// Quiet time read after the command ends: the 100 ms settling the attribution skips, the
/// reader's lock onto the energy counter's updates (about 100 ms of bursts), then several
/// counter windows. The windows seen after a command were up to 300 ms long: 1.2 s leaves at
/// least two quiet ones (0.7 s gave traces of crashed programs two to four).
pub const AFTER: Duration = Duration::from_millis(1200);

/// Share of a core the reader may spend: enough to read the energy counter at each of its
/// 100 ms updates (a read costs about 1.6 ms), so that the quiet time before and after gives
/// several idle windows. It runs in wattlens' own process, beside the command, not in it.
pub const CPU_BUDGET: f64 = 0.03;

/// NVML on every GPU `CUDA_VISIBLE_DEVICES` leaves visible (all without it), read by
/// wattlens itself within [`CPU_BUDGET`], on `clock`.
///
/// # Errors
/// A sentence saying why NVML cannot read the GPUs (no driver, no GPU).
pub fn open_visible_gpus(
    clock: Arc<HostClock>,
) -> Result<impl PowerSource + Send + 'static, String> {
    let selection = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => DeviceSelection::CudaVisible(v),
        Err(_) => DeviceSelection::All,
    };
    open_nvml(
        &selection,
        clock,
        SensorProfile::h200_2026_11_22(),
        CPU_BUDGET,
    )
    .map_err(|e| e.to_string())
}

/// A running reader of the GPUs the command can see.
pub struct Baseline {
    sampler: Sampler,
    devices: Vec<DeviceInfo>,
    start_unix_ns: u64,
}

impl Baseline {
    /// Start reading every GPU `CUDA_VISIBLE_DEVICES` leaves visible (all without it).
    ///
    /// # Errors
    /// A sentence saying why NVML cannot read the GPUs (no driver, no GPU).
    pub fn start() -> Result<Self, String> {
        let clock = Arc::new(HostClock::new());
        let source = open_visible_gpus(clock.clone())?;
        let devices = source.devices().to_vec();
        let start_unix_ns = wattlens_instrument::clock::Clock::now_ns(&*clock);
        let sampler = Sampler::start(source, clock).map_err(|e| e.to_string())?;
        Ok(Self {
            sampler,
            devices,
            start_unix_ns,
        })
    }

    /// Stop reading; the readings, as a trace with devices and power only.
    pub fn finish(self) -> Trace {
        let (mut power, report) = self.sampler.stop();
        power.sort_by_key(PowerReading::ts_ns);
        let mut t = Trace::new(RunMeta {
            tool_version: concat!("wattlens ", env!("CARGO_PKG_VERSION")).to_owned(),
            start_unix_ns: self.start_unix_ns,
            devices: self.devices,
            ..RunMeta::default()
        });
        t.power = power;
        t.alignments = report.alignments;
        t
    }
}
