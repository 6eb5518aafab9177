//! The CUPTI boundary: loading libcupti, activity buffers, and the callbacks that keep each
//! thread's NVTX stack, tag API calls with their NVTX region, and announce new contexts.
//!
//! Every function CUPTI calls catches panics: a fault of ours must never unwind into CUDA or
//! take the program down.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;

use cudarc::cupti::sys as cupti;
use wattlens_instrument::clock::Clock;
use wattlens_instrument::Interval;
use wattlens_runtime::internal::cuda::cupti_records::{
    buffer_requested, drain_buffer, prefill_buffers, set_buffer_bytes, CuptiRecord, WORK_KINDS,
};
use wattlens_runtime::internal::cuda::cupti_result as cr;

use crate::config::Digests;
use crate::config::{Hooks, LaunchApi};
use crate::nvtx::{attr_message, c_text, pop_range, push_range, wide_text, Registered};
use crate::replay::copy::{copy_call, CopyCall};
use crate::replay::launch::{launch_call, memset_call, LaunchCall, MemsetCall};
use crate::state::{lock, shared, Completed};
use crate::syncs::HostSync;
use crate::thread::with_thread;
use crate::uploads::{read_params, upload_call, upload_digest, Upload, UploadCall};
use crate::InjectError;

/// Callback domains, as CUPTI numbers them (read as integers: an enum read of a value Rust
/// does not know would be undefined behaviour).
const DOMAIN_DRIVER: u32 = 1;
const DOMAIN_RUNTIME: u32 = 2;
const DOMAIN_RESOURCE: u32 = 3;
const DOMAIN_NVTX: u32 = 5;
/// `CUPTI_CBID_RESOURCE_CONTEXT_CREATED`.
const CONTEXT_CREATED: u32 = 1;
/// NVTX callback ids (`CUpti_nvtx_api_trace_cbid`).
const NVTX_PUSH_A: u32 = 8;
const NVTX_PUSH_W: u32 = 9;
const NVTX_PUSH_EX: u32 = 10;
const NVTX_POP: u32 = 11;
const NVTX_DOMAIN_PUSH_EX: u32 = 33;
const NVTX_DOMAIN_POP: u32 = 34;
/// Activity buffers allocated and touched at start-up: one being filled, about three more
/// waiting for the writer's next flush at the default size and a launch-bound rate.
const PREFILLED_BUFFERS: usize = 4;
/// Callback ids tried per API domain when looking for launches and copies by name.
const MAX_CBID: u32 = 2048;

/// What a synchronize call waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waits {
    /// A stream, its handle the call's first parameter; per-thread default stream semantics
    /// for the `_ptsz` variants.
    Stream { per_thread: bool },
    /// A context or an event.
    Other,
}

/// What an API callback was subscribed for.
#[derive(Debug, Clone, Copy, Default)]
struct Call {
    /// A host synchronisation, and what it waits on.
    waits: Option<Waits>,
    /// A copy whose content is hashed, and its parameter layout.
    upload: Option<UploadCall>,
    /// A launch, copy or memset tagged with its NVTX range.
    tags: bool,
    /// A driver call that issues work, passing kernel replay's gate ([`crate::replay::gate`]).
    gated: bool,
    /// A kernel launch kernel replay can read, and its parameter layout.
    launch: Option<LaunchCall>,
    /// An asynchronous memset kernel replay reads as a possible counter reset.
    memset: Option<MemsetCall>,
    /// A copy kernel replay can read, and its parameter layout.
    copy: Option<CopyCall>,
    /// A stream capture's beginning (`true`) or end, counted so that no replay runs during one.
    capture: Option<bool>,
}

/// What each subscribed API callback is for, by domain (driver, runtime) then callback id: one
/// lookup per callback. Set once, by [`subscribe`].
static CALLS: OnceLock<[Vec<Call>; 2]> = OnceLock::new();
/// How uploads are hashed; set once, by [`subscribe`].
static DIGESTS: OnceLock<Digests> = OnceLock::new();

/// The index of API domain `domain` (driver or runtime) in [`CALLS`].
fn api_index(domain: u32) -> Option<usize> {
    matches!(domain, DOMAIN_DRIVER | DOMAIN_RUNTIME).then(|| (domain - DOMAIN_DRIVER) as usize)
}

/// What API callback `cbid` of `domain` was subscribed for.
fn api_call(domain: u32, cbid: u32) -> Option<Call> {
    let by_id = CALLS.get()?.get(api_index(domain)?)?;
    by_id.get(cbid as usize).copied()
}

/// Make libcupti loadable: reuse one already in the process, else load `path` so that the
/// bindings (which look it up by name) find it.
///
/// # Errors
/// [`InjectError::NoCupti`] when no libcupti can be loaded.
pub(crate) fn load_cupti(path: Option<&Path>) -> Result<(), InjectError> {
    if let Some(path) = path {
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
            // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the life
            // of the process (never closed), as CUPTI must stay loaded.
            let _ = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        }
    }
    if cr::is_loadable() {
        Ok(())
    } else {
        Err(InjectError::NoCupti(
            path.map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none named; set WATTLENS_CUPTI)".into()),
        ))
    }
}

unsafe extern "C" fn buffer_completed(
    _ctx: cudarc::driver::sys::CUcontext,
    _stream_id: u32,
    buffer: *mut u8,
    size: usize,
    valid: usize,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| match shared() {
        // Kept for the writer to read: CUPTI waits on this callback.
        Some(s) if valid > 0 && !buffer.is_null() => lock(&s.buffers).push(Completed {
            buffer,
            size,
            valid,
        }),
        // SAFETY: CUPTI hands back a buffer from `buffer_requested`; nothing else holds it.
        _ => unsafe { drain_buffer(buffer, size, valid, |_| {}) },
    }));
}

/// Read the records of buffers CUPTI completed, and free them.
pub(crate) fn read_buffers(buffers: Vec<Completed>) -> Vec<CuptiRecord> {
    let mut records = Vec::new();
    for b in buffers {
        // SAFETY: each buffer was handed back by CUPTI with `valid` bytes of records, and is
        // read and freed once, here.
        unsafe { drain_buffer(b.buffer, b.size, b.valid, |r| records.push(r)) };
    }
    records
}

/// Register the activity buffers, `buffer_bytes` each, and enable the CUPTI kinds named in
/// `kinds` (of kernel, memcpy, memset; `sync` is a callback, see [`subscribe`]).
///
/// # Errors
/// [`InjectError::Cupti`] when CUPTI refuses (another tool may own it).
pub(crate) fn enable_activity(kinds: &[String], buffer_bytes: usize) -> Result<(), InjectError> {
    // Small buffers (1 MiB by default): a periodic flush returns every full buffer, so at most
    // about one buffer's records (a few thousand) wait in CUPTI when the process is killed.
    set_buffer_bytes(buffer_bytes);
    // CUPTI asks for buffers on the launching thread: have them ready, mapped and touched.
    prefill_buffers(PREFILLED_BUFFERS);
    // SAFETY: the callbacks follow CUPTI's buffer contract and live for the whole process.
    unsafe { cr::register_buffer_callbacks(buffer_requested, buffer_completed) }?;
    for kind in activity_kinds(kinds) {
        cr::enable_activity(kind, "enabling activity records")?;
    }
    Ok(())
}

/// The CUPTI activity kinds `kinds` (as `WATTLENS_KINDS` names them) stand for.
pub(crate) fn activity_kinds(kinds: &[String]) -> Vec<cupti::CUpti_ActivityKind> {
    WORK_KINDS
        .iter()
        .filter(|(name, _)| kinds.iter().any(|k| k == name))
        .map(|&(_, kind)| kind)
        .collect()
}

/// Deliver CUPTI's buffers: completed ones only, or (`forced`, at exit) all of them.
pub(crate) fn flush(forced: bool) {
    let _ = cr::flush_all(forced);
}

/// CUPTI's clock, ns.
pub(crate) fn timestamp_ns() -> Option<u64> {
    cr::timestamp_ns().ok()
}

/// What an API callback of this name waits on, if it is a host synchronisation.
fn waits_on(name: &str) -> Option<Waits> {
    if !name.contains("Synchronize") {
        return None;
    }
    Some(if name.contains("StreamSynchronize") {
        Waits::Stream {
            per_thread: name.contains("_ptsz") || name.contains("_ptds"),
        }
    } else {
        Waits::Other
    })
}

/// Whether an API callback of this name issues GPU work a kernel/copy/memset record will
/// report.
fn issues_work(name: &str) -> bool {
    ["Launch", "Memcpy", "Memset"]
        .iter()
        .any(|w| name.contains(w))
}

/// Whether a driver callback of this name begins (`true`) or ends a stream capture.
fn capture_edge(name: &str) -> Option<bool> {
    if name.starts_with("cuStreamBeginCapture") {
        Some(true)
    } else if name.starts_with("cuStreamEndCapture") {
        Some(false)
    } else {
        None
    }
}

/// What the callbacks were enabled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscribed {
    /// API callbacks enabled (launches, copies, memsets of both APIs).
    pub api_callbacks: u32,
}

/// Subscribe to NVTX (for NVTX routed to CUPTI), context creation, the launch/copy/memset
/// calls of the `launch_api` API(s) (for [`Hooks::All`]), the synchronize calls of both (when
/// `syncs`), the copy calls of the `upload_api` API(s) (unless `digests` is off), and, for
/// kernel replay (`replay`), every work-issuing driver call and the stream captures.
///
/// # Errors
/// [`InjectError::Cupti`] when CUPTI refuses the subscription (one subscriber per process).
pub(crate) fn subscribe(
    hooks: Hooks,
    (launch_api, upload_api): (LaunchApi, LaunchApi),
    (syncs, replay): (bool, bool),
    digests: Digests,
) -> Result<Subscribed, InjectError> {
    if hooks == Hooks::None {
        return Ok(Subscribed { api_callbacks: 0 });
    }
    let _ = DIGESTS.set(digests);
    type RawCallback = unsafe extern "C" fn(*mut c_void, u32, u32, *const c_void);
    let raw: RawCallback = on_callback;
    // SAFETY: the callback type differs from CUPTI's only in reading the domain enum as its
    // underlying u32, which has the same ABI.
    let callback: cupti::CUpti_CallbackFunc = Some(unsafe {
        std::mem::transmute::<
            RawCallback,
            unsafe extern "C" fn(
                *mut c_void,
                cupti::CUpti_CallbackDomain,
                cupti::CUpti_CallbackId,
                *const c_void,
            ),
        >(raw)
    });
    use cupti::CUpti_CallbackDomain as D;
    // SAFETY: the callback reads each domain's data as CUPTI defines it and lives for the
    // process, as does the subscriber.
    let sub = unsafe { cr::subscribe(callback) }?;
    // SAFETY: a subscriber from `subscribe`.
    unsafe {
        cr::enable_domain(sub, D::CUPTI_CB_DOMAIN_NVTX, "enabling NVTX callbacks")?;
        cr::enable_callback(
            sub,
            D::CUPTI_CB_DOMAIN_RESOURCE,
            CONTEXT_CREATED,
            "enabling context callbacks",
        )?;
    }
    let mut api_callbacks = 0;
    let mut calls = [
        vec![Call::default(); MAX_CBID as usize],
        vec![Call::default(); MAX_CBID as usize],
    ];
    let hashing = hooks == Hooks::All && digests != Digests::Off;
    let replay = replay && hooks == Hooks::All;
    let domains = if hooks == Hooks::All || syncs {
        vec![
            D::CUPTI_CB_DOMAIN_RUNTIME_API,
            D::CUPTI_CB_DOMAIN_DRIVER_API,
        ]
    } else {
        Vec::new()
    };
    for domain in domains {
        for cbid in 1..MAX_CBID {
            let Some(name) = cr::callback_name(domain, cbid) else {
                continue;
            };
            let name = name.to_string_lossy();
            let of = |api: LaunchApi| match api {
                LaunchApi::Both => true,
                LaunchApi::Runtime => domain == D::CUPTI_CB_DOMAIN_RUNTIME_API,
                LaunchApi::Driver => domain == D::CUPTI_CB_DOMAIN_DRIVER_API,
            };
            let driver = domain == D::CUPTI_CB_DOMAIN_DRIVER_API;
            let call = Call {
                waits: waits_on(&name).filter(|_| syncs),
                upload: upload_call(&name).filter(|_| hashing && of(upload_api)),
                tags: hooks == Hooks::All && of(launch_api) && issues_work(&name),
                gated: replay && driver && issues_work(&name),
                launch: launch_call(&name).filter(|_| replay && driver),
                memset: memset_call(&name).filter(|_| replay && driver),
                copy: copy_call(&name).filter(|_| replay && driver),
                capture: capture_edge(&name).filter(|_| replay && driver),
            };
            let wanted = call.waits.is_some()
                || call.upload.is_some()
                || call.tags
                || call.gated
                || call.capture.is_some();
            // SAFETY: a subscriber from `subscribe`.
            if wanted
                && unsafe { cr::enable_callback(sub, domain, cbid, "enabling an API callback") }
                    .is_ok()
            {
                let by_id = api_index(domain as u32).and_then(|d| calls.get_mut(d));
                if let Some(slot) = by_id.and_then(|t| t.get_mut(cbid as usize)) {
                    *slot = call;
                }
                if call.tags {
                    api_callbacks += 1;
                }
            }
        }
    }
    let _ = CALLS.set(calls);
    Ok(Subscribed { api_callbacks })
}

unsafe extern "C" fn on_callback(_user: *mut c_void, domain: u32, cbid: u32, data: *const c_void) {
    // SAFETY: CUPTI's arguments, passed on.
    crate::cost::timed(|| unsafe { on_callback_body(domain, cbid, data) });
}

/// [`on_callback`]'s work, timed there.
///
/// # Safety
/// `data` must be CUPTI's callback data for `domain` and `cbid` (or null).
unsafe fn on_callback_body(domain: u32, cbid: u32, data: *const c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // A kernel replay's own CUDA calls are not the program's.
        if data.is_null() || crate::replay::suppressed() {
            return;
        }
        match domain {
            // SAFETY: CUPTI passes this domain's data type.
            DOMAIN_DRIVER | DOMAIN_RUNTIME => unsafe { on_api(domain, cbid, data.cast()) },
            // SAFETY: as above.
            DOMAIN_NVTX => unsafe { on_nvtx(cbid, data.cast()) },
            // SAFETY: as above.
            DOMAIN_RESOURCE if cbid == CONTEXT_CREATED => unsafe { on_context(data.cast()) },
            _ => {}
        }
    }));
}

/// An API call is entered or left: a synchronize is timed; an upload's content is hashed; for
/// a call that issues work, the NVTX region it runs in is remembered.
///
/// # Safety
/// `data` must be CUPTI's callback data of an API callback.
unsafe fn on_api(domain: u32, cbid: u32, data: *const cupti::CUpti_CallbackData) {
    let Some(call) = api_call(domain, cbid) else {
        return;
    };
    // SAFETY: per the contract; the site is read as an integer.
    let (site, correlation) = unsafe {
        (
            std::ptr::read(std::ptr::addr_of!((*data).callbackSite).cast::<u32>()),
            (*data).correlationId,
        )
    };
    if let Some(waits) = call.waits {
        // SAFETY: per the contract.
        unsafe { on_sync(site == 0, waits, data) };
        return;
    }
    if let Some(began) = call.capture {
        // Counted once the call returned (the return value is valid at exit only), and a
        // beginning only if it succeeded.
        // SAFETY: per the contract; at exit the return value is the call's CUresult.
        if site != 0 && (!began || unsafe { returned_success(data) }) {
            crate::replay::capture(began);
        }
        return;
    }
    if call.gated {
        if site == 0 {
            crate::replay::enter_call();
        } else {
            crate::replay::exit_call();
        }
    }
    if site != 0 {
        return;
    }
    if call.gated && call.launch.is_none() {
        // SAFETY: per the contract; `memset` is this call's parameter layout.
        unsafe { crate::replay::other_work(call.memset, (*data).functionParams.cast()) };
    }
    if let Some(launch) = call.launch {
        // SAFETY: per the contract; `launch` is this call's parameter layout.
        unsafe { on_work(Work::Launch(launch), correlation, data) };
    }
    if let Some(copy) = call.copy {
        // SAFETY: per the contract; `copy` is this call's parameter layout.
        unsafe { on_work(Work::Copy(copy), correlation, data) };
    }
    if let Some(upload) = call.upload {
        // SAFETY: per the contract; `upload` is this call's parameter layout.
        unsafe { on_upload(upload, correlation, data) };
    }
    if call.tags {
        with_thread(|t, _| {
            if let Some(path) = t.stack.current() {
                lock(&t.pending).queue(|p| &mut p.correlations, (correlation, path));
            }
        });
    }
}

/// Whether the call whose exit callback `data` is returned `CUDA_SUCCESS`.
///
/// # Safety
/// `data` must be CUPTI's callback data of a driver call, at its exit.
unsafe fn returned_success(data: *const cupti::CUpti_CallbackData) -> bool {
    // SAFETY: per the contract; the driver's return value is a CUresult, read as its u32.
    let ret = unsafe { (*data).functionReturnValue }.cast::<u32>();
    // SAFETY: non-null at exit, per CUPTI.
    !ret.is_null() && unsafe { *ret } == 0
}

/// A call kernel replay may repeat, and its parameter layout.
#[derive(Debug, Clone, Copy)]
enum Work {
    Launch(LaunchCall),
    Copy(CopyCall),
}

/// A launch or copy call was entered: kernel replay replays it first if its plan wants the
/// signature, and the burst is queued for the writer.
///
/// # Safety
/// `data` must be CUPTI's callback data of a call whose parameters are laid out as `work`.
unsafe fn on_work(work: Work, correlation: u32, data: *const cupti::CUpti_CallbackData) {
    let Some(s) = shared() else {
        return;
    };
    // SAFETY: per the contract.
    let (params, context) = unsafe { ((*data).functionParams.cast::<u8>(), (*data).context) };
    let now = || s.clock.now_ns();
    // SAFETY: per the contract; the context is the call's.
    let replayed = unsafe {
        match work {
            Work::Launch(l) => {
                crate::replay::on_launch(l, params, context.cast(), correlation, &now)
            }
            Work::Copy(c) => crate::replay::on_copy(c, params, context.cast(), correlation, &now),
        }
    };
    if let Some(r) = replayed {
        with_thread(|t, _| {
            lock(&t.pending).queue(|p| &mut p.replays, r);
        });
    }
}

/// A host-to-device copy call was entered: hash the host memory it copies from, once per call
/// (a runtime call and the driver call it makes share a correlation id).
///
/// # Safety
/// `data` must be CUPTI's callback data of a call whose parameters are laid out as `call`.
unsafe fn on_upload(call: UploadCall, correlation: u32, data: *const cupti::CUpti_CallbackData) {
    let Some(&digests) = DIGESTS.get() else {
        return;
    };
    // SAFETY: per the contract.
    let params = unsafe { (*data).functionParams }.cast::<u8>();
    // SAFETY: per the contract.
    let Some((address, src, bytes)) = (unsafe { read_params(call, params) }) else {
        return;
    };
    with_thread(|t, s| {
        if t.last_upload.seen(correlation) {
            return;
        }
        let from_ns = s.clock.now_ns();
        if !host_memory(src) {
            return;
        }
        t.last_upload.remember(correlation);
        // SAFETY: the call copies `bytes` from host memory at `src` (its contract, and CUDA
        // does not know `src` as device or managed memory), which it reads before returning or,
        // asynchronously, after: the program keeps it unchanged and mapped until then.
        let content = unsafe { std::slice::from_raw_parts(src, bytes) };
        let Some(digest) = upload_digest(digests, content) else {
            return;
        };
        let to_ns = s.clock.now_ns();
        let upload = Upload {
            correlation,
            address,
            bytes: bytes as u64,
            digest,
            hashed_ns: Interval::new(from_ns, to_ns.max(from_ns)),
        };
        lock(&t.pending).queue(|p| &mut p.uploads, upload);
    });
}

/// True unless CUDA knows `p` as device or managed memory: pinned host memory, or pageable
/// memory CUDA has not registered (which it refuses to describe).
fn host_memory(p: *const u8) -> bool {
    use cudarc::driver::sys;
    let mut kind: u32 = 0;
    // SAFETY: a valid out-pointer of the attribute's size (an unsigned int); the driver is
    // loaded, since it called us.
    let r = unsafe {
        sys::cuPointerGetAttribute(
            std::ptr::addr_of_mut!(kind).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            p as sys::CUdeviceptr,
        )
    };
    match r {
        sys::CUresult::CUDA_SUCCESS => kind == sys::CUmemorytype::CU_MEMORYTYPE_HOST as u32,
        sys::CUresult::CUDA_ERROR_INVALID_VALUE => true,
        _ => false,
    }
}

/// A synchronize call was entered (`entered`) or returned: the outermost one of a thread is
/// recorded as a host wait, timed by the two callbacks.
///
/// # Safety
/// `data` must be CUPTI's callback data of the synchronize call `waits` describes.
unsafe fn on_sync(entered: bool, waits: Waits, data: *const cupti::CUpti_CallbackData) {
    // SAFETY: per the contract; CUPTI keeps this slot for the call from entry to exit.
    let slot = unsafe { (*data).correlationData };
    if slot.is_null() {
        return;
    }
    if entered {
        with_thread(|t, s| {
            t.syncs.enter();
            // SAFETY: the slot is CUPTI's, valid for this call (checked non-null above).
            unsafe { *slot = s.clock.now_ns() };
        });
        return;
    }
    with_thread(|t, s| {
        if !t.syncs.exit() {
            return;
        }
        let end_ns = s.clock.now_ns();
        // SAFETY: written at entry to this same call.
        let start_ns = unsafe { *slot };
        // SAFETY: per the contract.
        let context = unsafe { (*data).context };
        if context.is_null() {
            return;
        }
        // SAFETY: a context the call ran in (still live: the call is returning).
        let Ok(device) = (unsafe { cr::device_id(context as _) }) else {
            return;
        };
        let stream = match waits {
            // SAFETY: the stream variants' parameters start with the stream handle.
            Waits::Stream { per_thread } => unsafe { stream_id(data, context, per_thread) },
            Waits::Other => None,
        };
        let wait = HostSync {
            device,
            stream: stream.unwrap_or(u32::MAX),
            start_ns,
            end_ns: end_ns.max(start_ns),
        };
        lock(&t.pending).queue(|p| &mut p.syncs, wait);
    });
}

/// CUPTI's id of the stream a stream-synchronize call waited on.
///
/// # Safety
/// `data` must be callback data of a call whose parameters start with a stream handle, and
/// `context` its live context.
unsafe fn stream_id(
    data: *const cupti::CUpti_CallbackData,
    context: cudarc::driver::sys::CUcontext,
    per_thread: bool,
) -> Option<u32> {
    // SAFETY: per the contract.
    let params = unsafe { (*data).functionParams }.cast::<*mut c_void>();
    if params.is_null() {
        return None;
    }
    // SAFETY: the first parameter is the stream handle (null for the default stream).
    let stream = unsafe { *params };
    // SAFETY: a live context and stream.
    unsafe { cr::stream_id(context, stream as _, per_thread) }.ok()
}

/// An NVTX range was pushed or popped on this thread (NVTX routed to CUPTI, when the user
/// pointed `NVTX_INJECTION64_PATH` at libcupti rather than at this library).
///
/// # Safety
/// `data` must be CUPTI's NVTX callback data for callback `cbid`.
unsafe fn on_nvtx(cbid: u32, data: *const cupti::CUpti_NvtxData) {
    // SAFETY: per the contract.
    let params = unsafe { (*data).functionParams }.cast::<*const c_void>();
    if params.is_null() && !matches!(cbid, NVTX_POP | NVTX_DOMAIN_POP) {
        return;
    }
    // CUPTI's registered-string handles are its own, not text.
    let text = Registered::Opaque;
    let name = match cbid {
        // SAFETY: nvtxRangePushA_params { const char* message }.
        NVTX_PUSH_A => unsafe { c_text((*params).cast()) },
        // SAFETY: nvtxRangePushW_params { const wchar_t* message }.
        NVTX_PUSH_W => unsafe { wide_text((*params).cast()) },
        // SAFETY: nvtxRangePushEx_params { const nvtxEventAttributes_t* eventAttrib }.
        NVTX_PUSH_EX => unsafe { attr_message((*params).cast(), text) },
        // SAFETY: nvtxDomainRangePushEx_params { nvtxDomainHandle_t domain; eventAttrib }.
        NVTX_DOMAIN_PUSH_EX => unsafe { attr_message((*params.add(1)).cast(), text) },
        NVTX_POP | NVTX_DOMAIN_POP => {
            pop_range();
            return;
        }
        _ => return,
    };
    push_range(name, None);
}

/// A context was created: tell the writer which device to read power from.
///
/// # Safety
/// `data` must be CUPTI's resource callback data.
unsafe fn on_context(data: *const cupti::CUpti_ResourceData) {
    // SAFETY: the context CUPTI reports is live during its creation callback.
    if let Ok(device) = unsafe { cr::device_id((*data).context as _) } {
        if let Some(s) = shared() {
            lock(&s.new_devices).push(device);
            crate::signals::wake();
        }
    }
}
