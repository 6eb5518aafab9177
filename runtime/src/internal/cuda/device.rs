//! Opening a CUDA device through cudarc (driver API, loaded at run time): its context, name,
//! UUID and SM count, and the driver's version.

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, DriverError};

use super::error::CudaError;

/// Attach what was being done to a driver error: the one mapping point.
pub(crate) fn ctx(what: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |source| CudaError::Driver { what, source }
}

/// Open CUDA device `ordinal`: its context, name, UUID (NVML's spelling) and SM count.
///
/// # Errors
/// [`CudaError::Unavailable`] without a driver, [`CudaError::NoSuchDevice`] for a bad ordinal.
pub(crate) fn open_context(
    ordinal: usize,
) -> Result<(Arc<CudaContext>, String, String, u32), CudaError> {
    // cudarc panics when the library cannot be loaded: look for it first.
    // SAFETY: this only tries to open the library by its candidate names; loading libcuda
    // runs no initialisation that could conflict with anything in this process.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::Unavailable(
            "libcuda.so (the NVIDIA driver) is not installed".into(),
        ));
    }
    let count = CudaContext::device_count().map_err(|e| CudaError::Unavailable(e.to_string()))?;
    if ordinal >= usize::try_from(count).unwrap_or(0) {
        return Err(CudaError::NoSuchDevice { ordinal, count });
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| CudaError::Unavailable(e.to_string()))?;
    let name = ctx.name().map_err(ctx_err("reading the device name"))?;
    let uuid = ctx.uuid().map_err(ctx_err("reading the device UUID"))?;
    let sm_count = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(ctx_err("reading the SM count"))?;
    Ok((
        ctx,
        name,
        format_uuid(&uuid.bytes),
        u32::try_from(sm_count).unwrap_or(0),
    ))
}

fn ctx_err(what: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    ctx(what)
}

/// The CUDA driver's version as `CUDA X.Y`, or none when the driver does not say. Call it
/// only where libcuda is known to load (a device was opened, or CUDA called us): cudarc's
/// loader panics otherwise.
pub fn driver_version() -> Option<String> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: a valid out-pointer; cuDriverGetVersion needs no context and no cuInit.
    let r = unsafe { sys::cuDriverGetVersion(&mut v) };
    (r == sys::CUresult::CUDA_SUCCESS).then(|| format!("CUDA {}.{}", v / 1000, (v % 1000) / 10))
}

/// Format a 16-byte UUID as NVML does: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(b: &[std::ffi::c_char; 16]) -> String {
    let h: Vec<String> = b.iter().map(|&c| format!("{:02x}", c as u8)).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}
