//! CUPTI's result layer, as cudarc's `driver::result` is over `driver::sys`: every CUPTI call
//! wattlens makes, once, with CUPTI's status mapped to a [`CuptiError`] in one place. The
//! runtime's timer (`cuda::cupti`), the activity-record parser
//! ([`super::cupti_records`]) and the injection library build their safe layers on it.

use std::ffi::{c_void, CStr};

use cudarc::cupti::sys as cupti;
use cudarc::driver::sys::{CUcontext, CUstream};

pub use cupti::{
    CUpti_Activity as Activity, CUpti_ActivityKind as ActivityKind,
    CUpti_CallbackDomain as CallbackDomain, CUpti_CallbackFunc as CallbackFunc,
    CUpti_SubscriberHandle as Subscriber,
};

/// CUPTI refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CUPTI refused {what}: {status:?}")]
pub struct CuptiError {
    /// What was being done.
    pub what: &'static str,
    /// CUPTI's status.
    pub status: cupti::CUptiResult,
}

impl From<CuptiError> for crate::timing::TimerError {
    fn from(e: CuptiError) -> Self {
        Self::Api {
            api: "CUPTI",
            what: e.what,
            message: format!("{:?}", e.status),
        }
    }
}

/// `Ok` for CUPTI's success, else what was being done and the status: the one mapping.
fn result(what: &'static str, status: cupti::CUptiResult) -> Result<(), CuptiError> {
    if status == cupti::CUptiResult::CUPTI_SUCCESS {
        Ok(())
    } else {
        Err(CuptiError { what, status })
    }
}

/// The buffer-request callback CUPTI calls for an empty activity buffer.
pub type BufferRequested = unsafe extern "C" fn(*mut *mut u8, *mut usize, *mut usize);
/// The buffer-completed callback CUPTI calls with a buffer of records.
pub type BufferCompleted = unsafe extern "C" fn(CUcontext, u32, *mut u8, usize, usize);

/// Whether libcupti can be found by name (the bindings look it up on first use).
pub fn is_loadable() -> bool {
    // SAFETY: only probes for the library by name; cudarc panics on first use otherwise.
    unsafe { cupti::is_culib_present() }
}

/// Hand CUPTI the activity buffer callbacks (process-wide).
///
/// # Safety
/// The callbacks must follow CUPTI's buffer contract: `requested` hands out buffers that
/// stay valid until `completed` gives them back.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses (another tool may own the activity API).
pub unsafe fn register_buffer_callbacks(
    requested: BufferRequested,
    completed: BufferCompleted,
) -> Result<(), CuptiError> {
    // SAFETY: per this function's contract; the function types are CUPTI's.
    result("registering activity buffers", unsafe {
        cupti::cuptiActivityRegisterCallbacks(Some(requested), Some(completed))
    })
}

/// Start recording activity records of `kind`, for `what`.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn enable_activity(kind: ActivityKind, what: &'static str) -> Result<(), CuptiError> {
    // SAFETY: a plain CUPTI call with a valid kind.
    result(what, unsafe { cupti::cuptiActivityEnable(kind) })
}

/// Stop recording activity records of `kind`, for `what`.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn disable_activity(kind: ActivityKind, what: &'static str) -> Result<(), CuptiError> {
    // SAFETY: a plain CUPTI call with a valid kind.
    result(what, unsafe { cupti::cuptiActivityDisable(kind) })
}

/// Deliver CUPTI's buffers: completed ones only, or (`forced`) partly filled ones too.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn flush_all(forced: bool) -> Result<(), CuptiError> {
    // SAFETY: a plain CUPTI call.
    result("flushing records", unsafe {
        cupti::cuptiActivityFlushAll(u32::from(forced))
    })
}

/// CUPTI's clock, ns.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn timestamp_ns() -> Result<u64, CuptiError> {
    let mut t = 0u64;
    // SAFETY: a valid out-pointer.
    result("reading its clock", unsafe {
        cupti::cuptiGetTimestamp(&mut t)
    })?;
    Ok(t)
}

/// CUPTI's id of `stream` of context `ctx` (the legacy or per-thread default stream where
/// `stream` is null and `per_thread` says which).
///
/// # Safety
/// `ctx` must be a live context and `stream` a live stream of it (or null).
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub unsafe fn stream_id(
    ctx: CUcontext,
    stream: CUstream,
    per_thread: bool,
) -> Result<u32, CuptiError> {
    let mut id = 0u32;
    // SAFETY: per this function's contract, and a valid out-pointer.
    result("identifying a stream", unsafe {
        cupti::cuptiGetStreamIdEx(ctx.cast(), stream.cast(), u8::from(per_thread), &mut id)
    })?;
    Ok(id)
}

/// The CUDA device ordinal of context `ctx`.
///
/// # Safety
/// `ctx` must be a live context.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub unsafe fn device_id(ctx: CUcontext) -> Result<u32, CuptiError> {
    let mut device = 0u32;
    // SAFETY: per this function's contract, and a valid out-pointer.
    result("identifying a context's device", unsafe {
        cupti::cuptiGetDeviceId(ctx.cast(), &mut device)
    })?;
    Ok(device)
}

/// Mark the CUDA calls this thread makes from now on with external correlation id `id`.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn push_external_correlation(id: u64) -> Result<(), CuptiError> {
    // SAFETY: a plain CUPTI call with a valid kind.
    result("pushing an external correlation id", unsafe {
        cupti::cuptiActivityPushExternalCorrelationId(
            cupti::CUpti_ExternalCorrelationKind::CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
            id,
        )
    })
}

/// End the marking [`push_external_correlation`] began; the id it pushed.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub fn pop_external_correlation() -> Result<u64, CuptiError> {
    let mut id = 0u64;
    // SAFETY: a plain CUPTI call with a valid kind and out-pointer.
    result("popping an external correlation id", unsafe {
        cupti::cuptiActivityPopExternalCorrelationId(
            cupti::CUpti_ExternalCorrelationKind::CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
            &mut id,
        )
    })?;
    Ok(id)
}

/// Subscribe `callback` to CUPTI's callback API (one subscriber per process).
///
/// # Safety
/// `callback` must read each callback's data as its domain defines it, and stay valid while
/// the subscriber lives.
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses (another subscriber exists).
pub unsafe fn subscribe(callback: CallbackFunc) -> Result<Subscriber, CuptiError> {
    let mut sub: Subscriber = std::ptr::null_mut();
    // SAFETY: per this function's contract, and a valid out-pointer.
    result("subscribing to callbacks", unsafe {
        cupti::cuptiSubscribe(&mut sub, callback, std::ptr::null_mut::<c_void>())
    })?;
    Ok(sub)
}

/// Turn on every callback of `domain` for subscriber `sub`, for `what`.
///
/// # Safety
/// `sub` must come from [`subscribe`].
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses.
pub unsafe fn enable_domain(
    sub: Subscriber,
    domain: CallbackDomain,
    what: &'static str,
) -> Result<(), CuptiError> {
    // SAFETY: per this function's contract.
    result(what, unsafe { cupti::cuptiEnableDomain(1, sub, domain) })
}

/// Turn on callback `cbid` of `domain` for subscriber `sub`, for `what`.
///
/// # Safety
/// `sub` must come from [`subscribe`].
///
/// # Errors
/// [`CuptiError`] when CUPTI refuses (an id the domain lacks, say).
pub unsafe fn enable_callback(
    sub: Subscriber,
    domain: CallbackDomain,
    cbid: u32,
    what: &'static str,
) -> Result<(), CuptiError> {
    // SAFETY: per this function's contract.
    result(what, unsafe {
        cupti::cuptiEnableCallback(1, sub, domain, cbid)
    })
}

/// The name of callback `cbid` of `domain`, where it has one.
pub fn callback_name(domain: CallbackDomain, cbid: u32) -> Option<&'static CStr> {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: a valid out-pointer; an unknown id is refused with an error code.
    let status = unsafe { cupti::cuptiGetCallbackName(domain, cbid, &mut name) };
    if result("naming a callback", status).is_err() || name.is_null() {
        return None;
    }
    // SAFETY: CUPTI's callback names are static NUL-terminated strings.
    Some(unsafe { CStr::from_ptr(name) })
}

/// The record after `record` in `valid` bytes of activity `buffer` (the first where `record`
/// is null), or `None` at the end.
///
/// # Safety
/// `buffer` must hold `valid` bytes of records CUPTI delivered, and `record` be null or a
/// record this function returned for the same buffer.
pub unsafe fn next_record(
    buffer: *mut u8,
    valid: usize,
    record: *mut Activity,
) -> Option<*mut Activity> {
    let mut next = record;
    // SAFETY: per this function's contract, and a valid out-pointer.
    let status = unsafe { cupti::cuptiActivityGetNextRecord(buffer, valid, &mut next) };
    (status == cupti::CUptiResult::CUPTI_SUCCESS && !next.is_null()).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_what_was_being_done_and_the_status() {
        let e = result(
            "enabling activity records",
            cupti::CUptiResult::CUPTI_ERROR_NOT_INITIALIZED,
        )
        .unwrap_err();
        assert_eq!(e.what, "enabling activity records");
        assert!(e.to_string().contains("CUPTI_ERROR_NOT_INITIALIZED"), "{e}");
        assert!(result("x", cupti::CUptiResult::CUPTI_SUCCESS).is_ok());
    }
}
