//! The simulated GPU's physical model: idle power and the thermal tail after load.

use serde::{Deserialize, Serialize};

/// Physical parameters of the simulated GPU (the sensor is in [`crate::SensorProfile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuModel {
    /// Marketing name reported by the simulated device.
    pub name: String,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Board power limit, mW.
    pub power_limit_mw: u32,
    /// Static (idle) power, mW.
    pub idle_mw: u32,
    /// Leakage that builds up with temperature, as a fraction of the dynamic power.
    pub thermal_gain: f64,
    /// Time constant of that build-up and of its decay after load, ns.
    pub thermal_tau_ns: u64,
}

impl GpuModel {
    /// An H200 as measured on 2026-11-22: idle 124 W; after a 1.5 s step of +246 W the capture
    /// idles about 3 W high at +0.2 s and 1.3 W high at +1 s, which gain 0.02, τ 2 s approximates.
    pub fn h200() -> Self {
        Self {
            name: "NVIDIA H200 (simulated)".to_owned(),
            sm_count: 132,
            power_limit_mw: 700_000,
            idle_mw: 124_000,
            thermal_gain: 0.02,
            thermal_tau_ns: 2_000_000_000,
        }
    }
}

impl Default for GpuModel {
    fn default() -> Self {
        Self::h200()
    }
}
