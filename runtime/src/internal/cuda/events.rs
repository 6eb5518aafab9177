//! [`EventApi`] over cudarc: timing events, recorded with the driver's own calls.

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaEvent};

use crate::timing::{EventApi, StreamKey, TimerError};

/// CUDA events of one context, with an idle non-blocking stream for calibration (a raw
/// stream, so cudarc does not switch the context into its multi-stream tracking mode).
pub(crate) struct CudaEvents {
    ctx: Arc<CudaContext>,
    calibration: sys::CUstream,
}

// SAFETY: a CUstream handle may be used from any thread of the process.
unsafe impl Send for CudaEvents {}

impl Drop for CudaEvents {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the stream was created by `new` and is destroyed once, here.
            let _ = unsafe { result::stream::destroy(self.calibration) };
        }
    }
}

fn api(what: &'static str) -> impl FnOnce(result::DriverError) -> TimerError {
    move |e| TimerError::Api {
        api: "CUDA",
        what,
        message: e.to_string(),
    }
}

impl CudaEvents {
    /// Events on `ctx`.
    ///
    /// # Errors
    /// [`TimerError`] when the calibration stream cannot be created.
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Result<Self, TimerError> {
        ctx.bind_to_thread().map_err(api("binding the context"))?;
        let calibration = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(api("creating the calibration stream"))?;
        Ok(Self { ctx, calibration })
    }
}

impl EventApi for CudaEvents {
    type Event = CudaEvent;

    fn create(&self) -> Result<CudaEvent, TimerError> {
        self.ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(api("creating an event"))
    }

    fn record(&self, event: &CudaEvent, stream: &StreamKey) -> Result<(), TimerError> {
        // SAFETY: `stream.raw` is the handle of a stream the caller holds alive for this call
        // (the launch path passes its `&CudaStream`), in the event's context.
        unsafe { result::event::record(event.cu_event(), stream.raw as sys::CUstream) }
            .map_err(api("recording an event"))
    }

    fn record_calibration(&self, event: &CudaEvent) -> Result<(), TimerError> {
        // SAFETY: both handles are alive: the event is borrowed, the stream owned here.
        unsafe { result::event::record(event.cu_event(), self.calibration) }
            .map_err(api("recording a calibration event"))
    }

    fn query(&self, event: &CudaEvent) -> Result<bool, TimerError> {
        event.try_is_complete().map_err(api("querying an event"))
    }

    fn elapsed_ms(&self, a: &CudaEvent, b: &CudaEvent) -> Result<f32, TimerError> {
        a.elapsed_ms(b).map_err(api("reading event times"))
    }
}
