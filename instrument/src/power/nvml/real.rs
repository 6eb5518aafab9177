//! The NVML backend over `nvml-wrapper`, which loads `libnvidia-ml` at run time.

use std::mem;

use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlFieldValue_t, nvmlSample_t, nvmlValueType_t, nvmlValue_t,
};

use super::backend::{FieldValue, NvmlBackend, NvmlCallError, NvmlIdentity};

/// Entries asked of the samples ring per call (the ring holds about 120 on Hopper).
const SAMPLE_BUFFER: usize = 1024;
/// `NVML_TOTAL_POWER_SAMPLES`.
const TOTAL_POWER_SAMPLES: u32 = 0;

/// Map every NVML error onto what the sampler acts on: the one place this happens.
pub(crate) fn map_error(e: NvmlError) -> NvmlCallError {
    match e {
        NvmlError::NotSupported => NvmlCallError::NotSupported,
        NvmlError::NotFound => NvmlCallError::NotFound,
        NvmlError::GpuLost => NvmlCallError::GpuLost,
        NvmlError::LibloadingError(e) => NvmlCallError::Library(e.to_string()),
        NvmlError::FailedToLoadSymbol(s) => NvmlCallError::Library(s),
        NvmlError::LibraryNotFound | NvmlError::DriverNotLoaded => {
            NvmlCallError::Library(e.to_string())
        }
        other => NvmlCallError::Other(other.to_string()),
    }
}

/// A device handle that may move to the sampler thread.
#[derive(Clone, Copy)]
struct Handle(nvmlDevice_t);

// SAFETY: NVML device handles are opaque identifiers that NVML documents as usable from any
// thread; the library is thread-safe.
unsafe impl Send for Handle {}

/// The real NVML, initialised once.
pub struct RealNvml {
    nvml: Nvml,
    handles: Vec<Option<Handle>>,
}

impl RealNvml {
    /// Load `libnvidia-ml` and initialise it.
    ///
    /// # Errors
    /// [`NvmlCallError::Library`] when there is no driver; others from `nvmlInit`.
    pub fn open() -> Result<Self, NvmlCallError> {
        let nvml = Nvml::init().map_err(map_error)?;
        let count = nvml.device_count().map_err(map_error)?;
        let handles = (0..count)
            .map(|i| {
                nvml.device_by_index(i).ok().map(|d| {
                    // SAFETY: the handle stays valid while `nvml` is initialised, which it is
                    // for as long as `self` lives.
                    Handle(unsafe { d.handle() })
                })
            })
            .collect();
        Ok(Self { nvml, handles })
    }

    fn handle(&self, i: u32) -> Result<nvmlDevice_t, NvmlCallError> {
        self.handles
            .get(i as usize)
            .copied()
            .flatten()
            .map(|h| h.0)
            .ok_or_else(|| NvmlCallError::Other(format!("no GPU with NVML index {i}")))
    }
}

/// Read an NVML value union as an unsigned integer, by its type tag.
fn value_u64(ty: nvmlValueType_t, v: nvmlValue_t) -> Option<u64> {
    // SAFETY: the tag says which member NVML wrote; each arm reads only that member.
    unsafe {
        match ty {
            0 => Some(v.dVal.max(0.0) as u64),
            1 => Some(u64::from(v.uiVal)),
            2 => Some(v.ulVal),
            3 => Some(v.ullVal),
            4 => u64::try_from(v.sllVal).ok(),
            5 => u64::try_from(v.siVal).ok(),
            6 => Some(u64::from(v.usVal)),
            _ => None,
        }
    }
}

impl NvmlBackend for RealNvml {
    fn device_count(&self) -> Result<u32, NvmlCallError> {
        self.nvml.device_count().map_err(map_error)
    }

    fn identity(&self, nvml_index: u32) -> Result<NvmlIdentity, NvmlCallError> {
        let d = self.nvml.device_by_index(nvml_index).map_err(map_error)?;
        Ok(NvmlIdentity {
            nvml_index,
            name: d.name().map_err(map_error)?,
            uuid: d.uuid().map_err(map_error)?,
            power_limit_mw: d.enforced_power_limit().ok(),
            sm_count: 0,
        })
    }

    fn driver_version(&self) -> Result<String, NvmlCallError> {
        self.nvml.sys_driver_version().map_err(map_error)
    }

    fn power_samples(
        &mut self,
        nvml_index: u32,
        since_us: u64,
    ) -> Result<Vec<(u64, u32)>, NvmlCallError> {
        let h = self.handle(nvml_index)?;
        let sym = self
            .nvml
            .lib()
            .nvmlDeviceGetSamples
            .as_ref()
            .map_err(|e| NvmlCallError::Library(e.to_string()))?;
        // SAFETY: an all-zero sample is a valid value of this plain C struct.
        let mut buf: Vec<nvmlSample_t> = vec![unsafe { mem::zeroed() }; SAMPLE_BUFFER];
        let mut count = SAMPLE_BUFFER as u32;
        let mut ty: nvmlValueType_t = 0;
        // SAFETY: `h` is a live handle, `buf` holds `count` entries, and the out-pointers are
        // valid for the duration of the call.
        let code = unsafe {
            sym(
                h,
                TOTAL_POWER_SAMPLES,
                since_us,
                &mut ty,
                &mut count,
                buf.as_mut_ptr(),
            )
        };
        nvml_try(code).map_err(map_error)?;
        Ok(buf
            .iter()
            .take((count as usize).min(SAMPLE_BUFFER))
            .filter_map(|s| {
                let mw = value_u64(ty, s.sampleValue)?;
                Some((s.timeStamp, u32::try_from(mw).unwrap_or(u32::MAX)))
            })
            .collect())
    }

    fn field_values(
        &mut self,
        nvml_index: u32,
        fields: &[(u32, u32)],
    ) -> Result<Vec<FieldValue>, NvmlCallError> {
        let h = self.handle(nvml_index)?;
        let sym = self
            .nvml
            .lib()
            .nvmlDeviceGetFieldValues
            .as_ref()
            .map_err(|e| NvmlCallError::Library(e.to_string()))?;
        let mut raw: Vec<nvmlFieldValue_t> = fields
            .iter()
            .map(|&(field, scope)| {
                // SAFETY: an all-zero field value is a valid value of this plain C struct.
                let mut v: nvmlFieldValue_t = unsafe { mem::zeroed() };
                v.fieldId = field;
                v.scopeId = scope;
                v
            })
            .collect();
        let n =
            i32::try_from(raw.len()).map_err(|_| NvmlCallError::Other("too many fields".into()))?;
        // SAFETY: `h` is a live handle and `raw` holds `n` initialised entries for NVML to fill.
        let code = unsafe { sym(h, n, raw.as_mut_ptr()) };
        nvml_try(code).map_err(map_error)?;
        Ok(raw
            .iter()
            .map(|v| FieldValue {
                field: v.fieldId,
                scope: v.scopeId,
                ts_us: v.timestamp,
                value: nvml_try(v.nvmlReturn).map_err(map_error).and_then(|()| {
                    value_u64(v.valueType, v.value)
                        .ok_or_else(|| NvmlCallError::Other("unexpected value type".into()))
                }),
            })
            .collect())
    }
}
