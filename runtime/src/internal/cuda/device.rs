//! A CUDA device through cudarc (driver API, loaded at run time): load PTX, launch kernels,
//! and time each launch with CUDA events mapped onto the trace clock.
//!
//! Event times are relative to each other. The timeline anchors them once per
//! [`Timeline::anchor`]: with the stream drained, the host reads the trace clock, records an
//! event and waits for it, so that event happened between the two host reads; its midpoint is
//! the anchor and half the interval its error bound.

use std::sync::Arc;

use cudarc::driver::{
    sys, CudaContext, CudaEvent, CudaFunction, CudaModule, CudaStream, DriverError,
};
use cudarc::nvrtc::Ptx;
use wattlens_instrument::clock::Clock;

use super::error::CudaError;

/// Attach what was being done to a driver error: the one mapping point.
pub(crate) fn ctx(what: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |source| CudaError::Driver { what, source }
}

/// One CUDA device with a stream.
pub struct CudaGpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Product name.
    pub name: String,
    /// UUID as NVML prints it (`GPU-…`).
    pub uuid: String,
    /// Streaming multiprocessors.
    pub sm_count: u32,
}

impl CudaGpu {
    /// Open CUDA device `ordinal`.
    ///
    /// # Errors
    /// [`CudaError::Unavailable`] without a driver or device.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        let (ctx, name, uuid, sm_count) = open_context(ordinal)?;
        let stream = ctx.default_stream();
        Ok(Self {
            ctx,
            stream,
            name,
            uuid,
            sm_count,
        })
    }

    /// The stream launches go to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Load a PTX module.
    ///
    /// # Errors
    /// [`CudaError::Driver`] when the driver rejects the PTX.
    pub fn load(&self, ptx: &str) -> Result<Arc<CudaModule>, CudaError> {
        self.ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(ctx("loading PTX"))
    }

    /// A kernel of a loaded module.
    ///
    /// # Errors
    /// [`CudaError::Driver`] when the module has no such kernel.
    pub fn function(
        &self,
        module: &Arc<CudaModule>,
        name: &str,
    ) -> Result<CudaFunction, CudaError> {
        module
            .load_function(name)
            .map_err(ctx("looking up a kernel"))
    }

    /// Wait for all work on the stream.
    ///
    /// # Errors
    /// [`CudaError::Driver`] when a kernel failed.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(ctx("synchronising the stream"))
    }

    /// A timing event recorded now on the stream.
    ///
    /// # Errors
    /// [`CudaError::Driver`] from the driver.
    pub fn record(&self) -> Result<CudaEvent, CudaError> {
        self.stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(ctx("recording an event"))
    }
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

/// Launches timed with events, resolved to trace-clock intervals.
pub struct Timeline {
    anchor: Option<(CudaEvent, u64, u64)>,
    pending: Vec<(usize, CudaEvent, CudaEvent)>,
    resolved: Vec<(usize, u64, u64)>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self {
            anchor: None,
            pending: Vec::new(),
            resolved: Vec::new(),
        }
    }

    /// Drain the stream and anchor event time to the trace clock (resolving what is pending).
    ///
    /// # Errors
    /// [`CudaError::Driver`] from the driver.
    pub fn anchor(&mut self, gpu: &CudaGpu, clock: &dyn Clock) -> Result<(), CudaError> {
        self.resolve()?;
        gpu.synchronize()?;
        let t0 = clock.now_ns();
        let e = gpu.record()?;
        e.synchronize()
            .map_err(ctx("waiting for the anchor event"))?;
        let t1 = clock.now_ns();
        self.anchor = Some((e, t0 / 2 + t1 / 2, (t1 - t0) / 2));
        Ok(())
    }

    /// Time one launch: `launch` runs between two recorded events; `tag` names it.
    ///
    /// # Errors
    /// [`CudaError`] from the launch or the events.
    pub fn time<F>(&mut self, gpu: &CudaGpu, tag: usize, launch: F) -> Result<(), CudaError>
    where
        F: FnOnce() -> Result<(), CudaError>,
    {
        let a = gpu.record()?;
        launch()?;
        let b = gpu.record()?;
        self.pending.push((tag, a, b));
        Ok(())
    }

    fn resolve(&mut self) -> Result<(), CudaError> {
        let Some((anchor, at_ns, _)) = &self.anchor else {
            if self.pending.is_empty() {
                return Ok(());
            }
            return Err(CudaError::Unavailable(
                "launches were timed before the timeline was anchored".into(),
            ));
        };
        for (tag, a, b) in self.pending.drain(..) {
            let s = anchor.elapsed_ms(&a).map_err(ctx("reading event times"))?;
            let e = anchor.elapsed_ms(&b).map_err(ctx("reading event times"))?;
            let to_ns = |ms: f32| (*at_ns as f64 + f64::from(ms) * 1e6).max(0.0) as u64;
            self.resolved.push((tag, to_ns(s), to_ns(e)));
        }
        Ok(())
    }

    /// Every timed launch as (tag, start, end) on the trace clock, in launch order, once the
    /// stream has drained.
    ///
    /// # Errors
    /// [`CudaError`] from the driver.
    pub fn finish(mut self, gpu: &CudaGpu) -> Result<Vec<(usize, u64, u64)>, CudaError> {
        gpu.synchronize()?;
        self.resolve()?;
        Ok(self.resolved)
    }

    /// Half-width of the last anchor's uncertainty, ns.
    pub fn anchor_error_ns(&self) -> u64 {
        self.anchor.as_ref().map_or(0, |a| a.2)
    }
}
