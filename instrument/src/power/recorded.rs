//! A power source that plays back readings produced earlier (simulated or captured).

use super::{PowerError, PowerSource};
use crate::sensor_profile::SensorProfile;
use crate::trace::{DeviceInfo, PowerReading};

/// Plays back a time-ordered list of readings as their timestamps come due.
#[derive(Debug, Clone)]
pub struct RecordedSource {
    devices: Vec<DeviceInfo>,
    profile: SensorProfile,
    simulated: bool,
    readings: Vec<PowerReading>,
    next: usize,
}

impl RecordedSource {
    /// A source that releases `readings` (sorted here by timestamp) as time passes.
    pub fn new(
        devices: Vec<DeviceInfo>,
        profile: SensorProfile,
        simulated: bool,
        mut readings: Vec<PowerReading>,
    ) -> Self {
        readings.sort_by_key(PowerReading::ts_ns);
        Self {
            devices,
            profile,
            simulated,
            readings,
            next: 0,
        }
    }
}

impl PowerSource for RecordedSource {
    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn profile(&self) -> &SensorProfile {
        &self.profile
    }

    fn simulated(&self) -> bool {
        self.simulated
    }

    fn poll(&mut self, now_ns: u64, out: &mut Vec<PowerReading>) -> Result<(), PowerError> {
        let due = self.readings[self.next..].partition_point(|r| r.ts_ns() <= now_ns);
        out.extend_from_slice(&self.readings[self.next..self.next + due]);
        self.next += due;
        Ok(())
    }
}
