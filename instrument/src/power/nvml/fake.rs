//! A scripted NVML for tests: GPUs whose power is a function of time on a shared clock.

use std::sync::Arc;

use super::backend::{
    FieldValue, NvmlBackend, NvmlCallError, NvmlIdentity, FIELD_ENERGY, FIELD_POWER_INSTANT,
    SCOPE_GPU, SCOPE_MEMORY,
};
use crate::clock::{Clock, FakeClock};
use crate::intervals::Interval;

/// One fake GPU: constant power, a 20 ms sample ring, a 100 ms counter.
#[derive(Debug, Clone)]
pub struct FakeNvmlDevice {
    /// Identity NVML reports.
    pub identity: NvmlIdentity,
    /// Power it draws, mW.
    pub power_mw: u32,
    /// Whether it reports samples / energy / instant / memory power.
    pub supports: [bool; 4],
    /// From this trace time on, every call fails with `GpuLost`.
    pub lost_after_ns: Option<u64>,
    /// Samples in this trace-time interval are missing (a ring overflow).
    pub missing_samples: Option<Interval>,
}

impl FakeNvmlDevice {
    /// A GPU that supports everything but memory power, drawing `power_mw`.
    pub fn new(index: u32, uuid: &str, power_mw: u32) -> Self {
        Self {
            identity: NvmlIdentity {
                nvml_index: index,
                name: "Fake GPU".to_owned(),
                uuid: uuid.to_owned(),
                power_limit_mw: Some(700_000),
                sm_count: 132,
            },
            power_mw,
            supports: [true, true, true, false],
            lost_after_ns: None,
            missing_samples: None,
        }
    }
}

/// Sample period of the fake ring, ns.
const FAKE_SAMPLE_NS: u64 = 20_000_000;
/// Update period of the fake counter, ns.
const FAKE_COUNTER_NS: u64 = 100_000_000;
/// Entries the fake ring holds.
const FAKE_RING: u64 = 119;

/// CPU time one fake field read takes, ns (as measured on an H100 host).
pub const FAKE_FIELD_READ_NS: u64 = 3_900_000;
/// CPU time one fake ring drain takes, ns.
pub const FAKE_DRAIN_NS: u64 = 350_000;

/// A scripted NVML over a shared fake clock (trace clock = NVML's clock here); each call
/// moves the clock on by what the real call costs.
pub struct FakeNvml {
    devices: Vec<FakeNvmlDevice>,
    clock: Arc<FakeClock>,
    /// Calls made so far, for tests that count reads.
    pub calls: u64,
}

impl FakeNvml {
    /// A fake NVML with these GPUs, reading and advancing time on `clock`.
    pub fn new(devices: Vec<FakeNvmlDevice>, clock: Arc<FakeClock>) -> Self {
        Self {
            devices,
            clock,
            calls: 0,
        }
    }

    fn device(&self, i: u32) -> Result<&FakeNvmlDevice, NvmlCallError> {
        let d = self
            .devices
            .get(i as usize)
            .ok_or_else(|| NvmlCallError::Other(format!("no GPU {i}")))?;
        match d.lost_after_ns {
            Some(t) if self.clock.now_ns() >= t => Err(NvmlCallError::GpuLost),
            _ => Ok(d),
        }
    }
}

impl NvmlBackend for FakeNvml {
    fn device_count(&self) -> Result<u32, NvmlCallError> {
        Ok(self.devices.len() as u32)
    }

    fn identity(&self, nvml_index: u32) -> Result<NvmlIdentity, NvmlCallError> {
        Ok(self.device(nvml_index)?.identity.clone())
    }

    fn driver_version(&self) -> Result<String, NvmlCallError> {
        Ok("fake-1.0".to_owned())
    }

    fn power_samples(
        &mut self,
        nvml_index: u32,
        since_us: u64,
    ) -> Result<Vec<(u64, u32)>, NvmlCallError> {
        self.calls += 1;
        self.clock.advance(FAKE_DRAIN_NS);
        let now = self.clock.now_ns();
        let d = self.device(nvml_index)?;
        if !d.supports[0] {
            return Err(NvmlCallError::NotSupported);
        }
        let newest = now / FAKE_SAMPLE_NS;
        let oldest = newest.saturating_sub(FAKE_RING - 1);
        let out: Vec<(u64, u32)> = (oldest..=newest)
            .map(|k| k * FAKE_SAMPLE_NS)
            .filter(|&t| t / 1000 > since_us)
            .filter(|&t| d.missing_samples.is_none_or(|gap| !gap.contains_ns(t)))
            .map(|t| (t / 1000, d.power_mw))
            .collect();
        if out.is_empty() {
            Err(NvmlCallError::NotFound)
        } else {
            Ok(out)
        }
    }

    fn field_values(
        &mut self,
        nvml_index: u32,
        fields: &[(u32, u32)],
    ) -> Result<Vec<FieldValue>, NvmlCallError> {
        self.calls += 1;
        self.clock.advance(FAKE_FIELD_READ_NS / 2);
        let now = self.clock.now_ns();
        self.clock.advance(FAKE_FIELD_READ_NS / 2);
        let d = self.device(nvml_index)?;
        let last_update = now / FAKE_COUNTER_NS * FAKE_COUNTER_NS;
        let energy_mj = (u128::from(d.power_mw) * u128::from(last_update) / 1_000_000_000) as u64;
        Ok(fields
            .iter()
            .map(|&(field, scope)| FieldValue {
                field,
                scope,
                ts_us: (now / 1000) as i64,
                value: match (field, scope) {
                    (FIELD_ENERGY, _) if d.supports[1] => Ok(energy_mj),
                    (FIELD_POWER_INSTANT, SCOPE_GPU) if d.supports[2] => Ok(u64::from(d.power_mw)),
                    (FIELD_POWER_INSTANT, SCOPE_MEMORY) if d.supports[3] => {
                        Ok(u64::from(d.power_mw / 10))
                    }
                    _ => Err(NvmlCallError::NotSupported),
                },
            })
            .collect())
    }
}
