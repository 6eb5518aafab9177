//! The replay itself, on the program's thread inside its launch call: wait for the device,
//! save a checkpoint of its memory, run the launch alone back to back for the burst through a
//! CUDA graph on a stream of ours, restore the memory, and let the program's launch go ahead
//! on the memory it would have seen.
//!
//! Every step that can fail says why in one phrase, which becomes the signature's skip
//! reason. Once the checkpoint is saved, every path restores it before returning.

use std::ffi::c_void;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cudarc::cupti::sys as cupti;
use cudarc::driver::sys;
use wattlens_runtime::internal::cuda::checkpoint::Checkpoint;
use wattlens_runtime::internal::cuda::cupti_result as cr;

use wattlens_instrument::trace::CopyDirection;

use super::copy::Copy;
use super::launch::{self, Launch};
use crate::state::lock;

/// The burst runs as graphs of launches that each take about this long, so that the host
/// checks the clock a few hundred times a burst at most.
const GRAPH_TARGET_NS: u64 = 4_000_000;
/// Launches in one graph at most.
const MAX_GRAPH_LAUNCHES: u64 = 2_000;
/// How long the single trial launch may take before the replay gives up on the kernel.
const TRIAL_LIMIT: Duration = Duration::from_secs(10);

/// What a replay measured.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// The burst on the device: from its first launch to its last, trace ns.
    pub start_ns: u64,
    /// End of the burst, trace ns.
    pub end_ns: u64,
    /// Launches in the burst.
    pub launches: u32,
    /// One launch alone, as the trial timed it, ns.
    pub trial_ns: u64,
}

/// Our stream on each context, created once: (context, stream).
static STREAMS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn ok(what: &str, r: sys::CUresult) -> Result<(), String> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed ({r:?})"))
    }
}

/// Whether `stream` is being captured into a CUDA graph.
///
/// # Safety
/// `stream` must be a live stream of the current context (or null).
pub unsafe fn capturing(stream: sys::CUstream) -> bool {
    let mut status: u32 = 0;
    // SAFETY: per the contract; the status is written as the enum's u32 and read as one.
    let r = unsafe { sys::cuStreamIsCapturing(stream, std::ptr::addr_of_mut!(status).cast()) };
    r != sys::CUresult::CUDA_SUCCESS || status != 0
}

/// Our stream on context `ctx`, created on first use.
///
/// # Safety
/// `ctx` must be the current context.
unsafe fn private_stream(ctx: sys::CUcontext) -> Result<sys::CUstream, String> {
    let mut streams = lock(&STREAMS);
    if let Some(&(_, s)) = streams.iter().find(|(c, _)| *c == ctx as usize) {
        return Ok(s as sys::CUstream);
    }
    let mut s: sys::CUstream = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; CU_STREAM_NON_BLOCKING = 1.
    ok("creating a stream", unsafe {
        sys::cuStreamCreate(&mut s, 1)
    })?;
    streams.push((ctx as usize, s as usize));
    Ok(s)
}

/// A CUDA event, destroyed when dropped.
struct Event(sys::CUevent);

impl Event {
    fn new() -> Result<Self, String> {
        let mut e: sys::CUevent = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; flags 0 (default, timed).
        ok("creating an event", unsafe {
            sys::cuEventCreate(&mut e, 0)
        })?;
        Ok(Self(e))
    }

    fn record(&self, stream: sys::CUstream) -> Result<(), String> {
        // SAFETY: a live event and stream.
        ok("recording an event", unsafe {
            sys::cuEventRecord(self.0, stream)
        })
    }

    /// Wait for the event, polling, at most `limit`; false when it did not complete.
    fn wait(&self, limit: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + limit;
        loop {
            // SAFETY: a live event.
            match unsafe { sys::cuEventQuery(self.0) } {
                sys::CUresult::CUDA_SUCCESS => return Ok(true),
                sys::CUresult::CUDA_ERROR_NOT_READY => {}
                r => return Err(format!("the replayed launch failed ({r:?})")),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Time from `self` to `later`, ns.
    fn ns_until(&self, later: &Event) -> Result<u64, String> {
        let mut ms = 0f32;
        // SAFETY: two completed events of one context and a valid out-pointer.
        ok("timing events", unsafe {
            sys::cuEventElapsedTime_v2(&mut ms, self.0, later.0)
        })?;
        Ok((f64::from(ms.max(0.0)) * 1e6) as u64)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by us, destroyed once.
        let _ = unsafe { sys::cuEventDestroy_v2(self.0) };
    }
}

/// Device work a burst repeats: a kernel launch, or a copy between buffers of ours.
trait Repeat {
    /// Issue the work once more on `stream` (ours).
    ///
    /// # Safety
    /// The buffers and parameters the work names must be live, its context current.
    unsafe fn issue_on(&self, stream: sys::CUstream) -> sys::CUresult;
}

impl Repeat for Launch {
    unsafe fn issue_on(&self, stream: sys::CUstream) -> sys::CUresult {
        // SAFETY: per the contract (inside the launch call, its parameter arrays live).
        unsafe { self.issue_with_reset_on(stream) }
    }
}

/// A graph of `n` issues of a piece of work (a launch after its counter reset, if it has one),
/// instantiated; destroyed when dropped.
struct Graph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
}

impl Graph {
    /// Capture `n` issues of `work` on `stream` (ours, idle) and instantiate them.
    ///
    /// # Safety
    /// As [`Repeat::issue_on`].
    unsafe fn capture(work: &dyn Repeat, stream: sys::CUstream, n: u64) -> Result<Self, String> {
        // SAFETY: our own idle stream; thread-local mode restricts only this thread, which
        // makes no unsafe call until the capture ends.
        ok("beginning a capture", unsafe {
            sys::cuStreamBeginCapture_v2(
                stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        })?;
        let mut issued = Ok(());
        for _ in 0..n {
            // SAFETY: per the contract.
            issued = ok("capturing the work", unsafe { work.issue_on(stream) });
            if issued.is_err() {
                break;
            }
        }
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        // SAFETY: ends the capture begun above, whatever happened in between.
        let ended = ok("ending the capture", unsafe {
            sys::cuStreamEndCapture(stream, &mut graph)
        });
        issued?;
        ended?;
        let mut exec: sys::CUgraphExec = std::ptr::null_mut();
        // SAFETY: a captured graph and a valid out-pointer.
        let r = unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0) };
        if let Err(e) = ok("instantiating the graph", r) {
            // SAFETY: ours, destroyed once.
            let _ = unsafe { sys::cuGraphDestroy(graph) };
            return Err(e);
        }
        Ok(Self { graph, exec })
    }

    fn launch(&self, stream: sys::CUstream) -> Result<(), String> {
        // SAFETY: an instantiated graph and our stream.
        ok("launching the graph", unsafe {
            sys::cuGraphLaunch(self.exec, stream)
        })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: ours, destroyed once.
        unsafe {
            let _ = sys::cuGraphExecDestroy(self.exec);
            let _ = sys::cuGraphDestroy(self.graph);
        }
    }
}

/// The activity kinds paused during a replay, resumed when dropped.
struct Paused(Vec<cupti::CUpti_ActivityKind>);

impl Paused {
    fn pause(kinds: &[cupti::CUpti_ActivityKind]) -> Self {
        for &k in kinds {
            let _ = cr::disable_activity(k, "pausing activity records for a replay");
        }
        Self(kinds.to_vec())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &k in &self.0 {
            let _ = cr::enable_activity(k, "resuming activity records after a replay");
        }
    }
}

/// Replay `launch` (context `ctx`, current) for `burst`, the device idle and the program's
/// other threads held (the caller holds the gate), with `kinds` of activity records paused.
/// `now_ns` reads the trace clock.
///
/// # Errors
/// Why it could not be replayed, in one phrase; the device memory is restored whatever
/// happened after the checkpoint, or the error says it could not be.
///
/// # Safety
/// Only inside the program's launch call (its parameter arrays are live), on its thread.
pub unsafe fn replay(
    launch: &Launch,
    ctx: sys::CUcontext,
    burst: Duration,
    kinds: &[cupti::CUpti_ActivityKind],
    now_ns: &dyn Fn() -> u64,
) -> Result<Burst, String> {
    // SAFETY: the launch's context is current in its call.
    ok("waiting for the device", unsafe { sys::cuCtxSynchronize() })?;
    let _paused = Paused::pause(kinds);
    // A counter reset whose target is gone is not repeated (the burst then does less work, and
    // the report leaves it out as unlike the program's launches).
    let checked;
    let launch = match &launch.reset {
        Some(r) if !r.target_is_live() => {
            checked = launch::Launch {
                reset: None,
                ..launch.clone()
            };
            &checked
        }
        _ => launch,
    };
    // SAFETY: the context is idle (synchronised) and the other threads are held.
    let mut checkpoint = unsafe { Checkpoint::save(ctx) }
        .map_err(|e| format!("the checkpoint of device memory failed: {e}"))?;
    // SAFETY: inside the launch call, its context current.
    let measured = unsafe { burst_of(launch, ctx, burst, now_ns) };
    // SAFETY: the context is idle again (the burst waited for its last launch, or failed).
    let idle = ok("waiting for the device", unsafe { sys::cuCtxSynchronize() });
    // SAFETY: as above.
    let restored = unsafe { checkpoint.restore() }.map_err(|e| {
        format!("device memory could not be restored after the replay ({e}); the program's results may differ")
    });
    // SAFETY: waits for the restore's copies.
    let settled = ok("waiting for the restore", unsafe {
        sys::cuCtxSynchronize()
    });
    restored?;
    idle?;
    settled?;
    measured
}

/// A copy repeated between buffers of ours, freed when dropped: a device buffer, and a
/// page-locked host buffer for a copy to or from the host (a graph takes no pageable copy; a
/// program's pageable copy that this makes much faster is left out as unlike it).
struct CopyBuffers {
    direction: CopyDirection,
    bytes: usize,
    device: sys::CUdeviceptr,
    /// The source of a device-to-device copy.
    device_src: sys::CUdeviceptr,
    host: *mut c_void,
}

impl CopyBuffers {
    /// Allocate the buffers `copy` needs, and fill its source with the bytes the program's
    /// copy reads (the context idle, so they are what it will read).
    ///
    /// # Safety
    /// The program's source must be live, its context current and idle.
    unsafe fn for_copy(copy: &Copy) -> Result<Self, String> {
        let mut b = Self {
            direction: copy.direction,
            bytes: copy.bytes,
            device: 0,
            device_src: 0,
            host: std::ptr::null_mut(),
        };
        let bytes = copy.bytes;
        let no_room = |what: &str| format!("no room for a {what} of {bytes} bytes to copy");
        // SAFETY (each allocation): valid out-pointers; what is allocated is freed on drop.
        if unsafe { sys::cuMemAlloc_v2(&mut b.device, bytes) } != sys::CUresult::CUDA_SUCCESS {
            return Err(no_room("device buffer"));
        }
        // SAFETY (each fill): the program's source is live and holds `bytes` (its own copy
        // reads them); ours were just allocated with that size.
        let filled = match copy.direction {
            CopyDirection::DeviceToDevice => {
                if unsafe { sys::cuMemAlloc_v2(&mut b.device_src, bytes) }
                    != sys::CUresult::CUDA_SUCCESS
                {
                    return Err(no_room("device buffer"));
                }
                unsafe { sys::cuMemcpyDtoD_v2(b.device_src, copy.src, bytes) }
            }
            CopyDirection::HostToDevice | CopyDirection::DeviceToHost => {
                if unsafe { sys::cuMemAllocHost_v2(&mut b.host, bytes) }
                    != sys::CUresult::CUDA_SUCCESS
                {
                    return Err(no_room("page-locked host buffer"));
                }
                if copy.direction == CopyDirection::HostToDevice {
                    // Through the device, so that an unreadable source is CUDA's error, not a
                    // fault in the program.
                    let r =
                        unsafe { sys::cuMemcpyHtoD_v2(b.device, copy.src as *const c_void, bytes) };
                    if r == sys::CUresult::CUDA_SUCCESS {
                        unsafe { sys::cuMemcpyDtoH_v2(b.host, b.device, bytes) }
                    } else {
                        r
                    }
                } else {
                    unsafe { sys::cuMemcpyDtoD_v2(b.device, copy.src, bytes) }
                }
            }
        };
        ok("filling the copy's source", filled)?;
        Ok(b)
    }
}

impl Repeat for CopyBuffers {
    unsafe fn issue_on(&self, stream: sys::CUstream) -> sys::CUresult {
        // SAFETY: our own live buffers of `bytes`, and our stream.
        unsafe {
            match self.direction {
                CopyDirection::HostToDevice => {
                    sys::cuMemcpyHtoDAsync_v2(self.device, self.host, self.bytes, stream)
                }
                CopyDirection::DeviceToHost => {
                    sys::cuMemcpyDtoHAsync_v2(self.host, self.device, self.bytes, stream)
                }
                CopyDirection::DeviceToDevice => {
                    sys::cuMemcpyDtoDAsync_v2(self.device, self.device_src, self.bytes, stream)
                }
            }
        }
    }
}

impl Drop for CopyBuffers {
    fn drop(&mut self) {
        // SAFETY: ours, freed once (a null or zero handle was never allocated).
        unsafe {
            if self.device != 0 {
                let _ = sys::cuMemFree_v2(self.device);
            }
            if self.device_src != 0 {
                let _ = sys::cuMemFree_v2(self.device_src);
            }
            if !self.host.is_null() {
                let _ = sys::cuMemFreeHost(self.host);
            }
        }
    }
}

/// Replay `copy` (context `ctx`, current) for `burst` between buffers of ours, the device
/// idle and the program's other threads held, with `kinds` of activity records paused. No
/// checkpoint: nothing of the program's is written.
///
/// # Errors
/// Why it could not be replayed, in one phrase.
///
/// # Safety
/// Only inside the program's copy call, on its thread (its source is live).
pub unsafe fn replay_copy(
    copy: &Copy,
    ctx: sys::CUcontext,
    burst: Duration,
    kinds: &[cupti::CUpti_ActivityKind],
    now_ns: &dyn Fn() -> u64,
) -> Result<Burst, String> {
    // SAFETY: the copy's context is current in its call.
    ok("waiting for the device", unsafe { sys::cuCtxSynchronize() })?;
    let _paused = Paused::pause(kinds);
    // SAFETY: per the contract; the context is idle.
    let buffers = unsafe { CopyBuffers::for_copy(copy) }?;
    // SAFETY: our buffers, the context current.
    let measured = unsafe { burst_of(&buffers, ctx, burst, now_ns) };
    // SAFETY: waits for our copies before the buffers are freed.
    let idle = ok("waiting for the device", unsafe { sys::cuCtxSynchronize() });
    drop(buffers);
    idle?;
    measured
}

/// The trial issue of `work`, then the burst.
///
/// # Safety
/// As [`replay`], or [`replay_copy`].
unsafe fn burst_of(
    work: &dyn Repeat,
    ctx: sys::CUcontext,
    burst: Duration,
    now_ns: &dyn Fn() -> u64,
) -> Result<Burst, String> {
    // SAFETY: the current context.
    let stream = unsafe { private_stream(ctx) }?;
    let (a, b) = (Event::new()?, Event::new()?);
    a.record(stream)?;
    // SAFETY: per the contract.
    ok("replaying the work", unsafe { work.issue_on(stream) })?;
    b.record(stream)?;
    if !b.wait(TRIAL_LIMIT)? {
        return Err(format!(
            "one launch alone did not finish within {} s (it may wait on other work)",
            TRIAL_LIMIT.as_secs()
        ));
    }
    let trial_ns = a.ns_until(&b)?.max(1);
    let per_graph = (GRAPH_TARGET_NS / trial_ns).clamp(1, MAX_GRAPH_LAUNCHES);
    // SAFETY: per the contract.
    let graph = unsafe { Graph::capture(work, stream, per_graph) }?;
    let burst_ns = burst.as_nanos() as u64;
    // Two graphs in flight at most, so that the burst ends close to its time.
    let marks = [Event::new()?, Event::new()?];
    let (first, last) = (Event::new()?, Event::new()?);
    first.record(stream)?;
    let host_start = now_ns();
    let mut graphs = 0u64;
    while now_ns().saturating_sub(host_start) < burst_ns {
        let mark = &marks[(graphs % 2) as usize];
        if graphs >= 2 && !mark.wait(TRIAL_LIMIT)? {
            return Err("a replay graph did not finish".to_owned());
        }
        graph.launch(stream)?;
        mark.record(stream)?;
        graphs += 1;
    }
    last.record(stream)?;
    if !last.wait(TRIAL_LIMIT)? {
        return Err("the replay burst did not finish".to_owned());
    }
    let end_ns = now_ns();
    let device_ns = first.ns_until(&last)?;
    let launches = graphs.saturating_mul(per_graph);
    Ok(Burst {
        start_ns: end_ns.saturating_sub(device_ns),
        end_ns,
        launches: u32::try_from(launches).unwrap_or(u32::MAX),
        trial_ns,
    })
}

/// The name CUDA gives `func` (mangled), if it can say. A launch may name a `CUkernel` (a
/// library kernel, CUDA 12's lazy loading) where a `CUfunction` is expected: its name is asked
/// for as such when the function's is refused.
///
/// # Safety
/// `func` must be a live function or kernel handle.
pub unsafe fn function_name(func: sys::CUfunction) -> Option<String> {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: per the contract, and a valid out-pointer.
    let mut r = unsafe { sys::cuFuncGetName(&mut name, func) };
    if r != sys::CUresult::CUDA_SUCCESS || name.is_null() {
        name = std::ptr::null();
        // SAFETY: as above; a handle that is not a kernel is refused with an error code.
        r = unsafe { sys::cuKernelGetName(&mut name, func.cast()) };
    }
    if r != sys::CUresult::CUDA_SUCCESS || name.is_null() {
        return None;
    }
    // SAFETY: CUDA's name of a live function is a NUL-terminated string it owns.
    Some(
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// CUPTI's device index of context `ctx`.
///
/// # Safety
/// `ctx` must be a live context.
pub unsafe fn device_of(ctx: sys::CUcontext) -> Option<u32> {
    // SAFETY: per the contract.
    unsafe { cr::device_id(ctx) }.ok()
}
