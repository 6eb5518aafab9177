//! Kernel replay in unmodified programs (`wattlens run --replay`): the heaviest kernel
//! signatures are each replayed alone, back to back, for a burst of several energy-counter
//! periods, inside a CUPTI checkpoint of device memory, so that the counter sees each kernel by
//! itself and the program still computes exactly what it would have.
//!
//! - [`plan`]: which signatures, by their share of the busy time, within the budget;
//! - [`gate`]: the program's other threads are held while a replay runs;
//! - [`launch`]: a launch read from its driver call, to be issued again;
//! - [`device`]: the checkpoint, the burst through a CUDA graph on a stream of ours, the restore.
//!
//! A replay happens in the driver callback of the program's launch, before the launch is
//! issued. The burst goes into the trace as an `alone` span, the time the program was held as
//! a profiler episode; what could not be replayed, and why, as replay notes.

pub mod copy;
pub mod device;
pub mod gate;
pub mod launch;
pub mod plan;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cudarc::cupti::sys as cupti;
use cudarc::driver::sys;
use wattlens_instrument::trace::LaunchShape;
use wattlens_instrument::Interval;

use crate::config::ReplaySettings;
use crate::state::lock;
use gate::{Gate, Passed};
use launch::{read_launch, read_memset, LaunchCall, MemsetCall};
use plan::{Claim, Plan, SigKey};

/// How long a replay waits for the program's other threads to leave their work calls.
const HOLD_WAIT: Duration = Duration::from_millis(200);
/// How long another thread waits at the gate beyond the burst before it goes on (and the
/// replay is thrown away): the checkpoint of 80 GB takes well under this.
const WAIT_BEYOND_BURST: Duration = Duration::from_secs(5);

/// A replay that ran, for the writer.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Device.
    pub device: u32,
    /// Correlation id of the program's launch call.
    pub correlation: u32,
    /// Kernel name as CUDA gives it (mangled), or the copy's span name.
    pub name: Arc<str>,
    /// Launch shape (kernels).
    pub shape: Option<LaunchShape>,
    /// The burst.
    pub burst: device::Burst,
    /// From when the program was held until it went on, on the trace clock.
    pub held_ns: Interval,
}

/// The process's replay state, once replay is on.
struct Replay {
    settings: ReplaySettings,
    plan: Mutex<Plan>,
    /// The plan's generation, read without its lock on every launch.
    generation: AtomicU64,
    gate: Gate,
    /// Activity kinds this process records, paused during a burst.
    kinds: Vec<cupti::CUpti_ActivityKind>,
    /// Stream captures under way in the process.
    captures: AtomicU32,
    /// Set after a failed restore: no more replays.
    broken: AtomicBool,
}

static REPLAY: OnceLock<Replay> = OnceLock::new();

thread_local! {
    /// Set while this thread replays: every callback its own CUDA calls raise is ignored.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// Kernel names by function handle, and the plan generation each signature was last
    /// looked at in: a launch of a signature the plan has not changed about costs one lookup.
    static SEEN: RefCell<ThreadCache> = RefCell::new(ThreadCache::default());
    /// The small memset this thread issued last, if its last work call was one: a counter
    /// reset the next launch on its stream needs ([`launch::Reset`]).
    static LAST_RESET: Cell<Option<launch::Reset>> = const { Cell::new(None) };
}

#[derive(Default)]
struct ThreadCache {
    names: HashMap<usize, Option<Arc<str>>>,
    devices: HashMap<usize, Option<u32>>,
    /// By function handle and shape, or by copy direction (a small integer no handle is) and
    /// no shape.
    looked: HashMap<(usize, Option<LaunchShape>), u64>,
}

/// Turn replay on with `settings`, pausing `kinds` of activity records during bursts.
pub fn enable(settings: ReplaySettings, kinds: Vec<cupti::CUpti_ActivityKind>) {
    let _ = REPLAY.set(Replay {
        settings,
        plan: Mutex::new(Plan::new(settings)),
        generation: AtomicU64::new(0),
        gate: Gate::default(),
        kinds,
        captures: AtomicU32::new(0),
        broken: AtomicBool::new(false),
    });
}

/// Whether replay is on.
pub fn enabled() -> bool {
    REPLAY.get().is_some()
}

/// Whether this thread is replaying (its own calls' callbacks are to be ignored).
pub fn suppressed() -> bool {
    REPLAYING.with(Cell::get)
}

/// A work-issuing driver call was entered on this thread.
pub fn enter_call() {
    if let Some(r) = REPLAY.get() {
        if r.gate.enter(r.settings.burst + WAIT_BEYOND_BURST) == Passed::GaveUp {
            crate::log("a thread waited too long for a kernel replay and went on; that replay is thrown away");
        }
    }
}

/// The work-issuing driver call entered last on this thread returned.
pub fn exit_call() {
    if let Some(r) = REPLAY.get() {
        r.gate.exit();
    }
}

/// A work-issuing driver call other than a launch was entered on this thread: a memset of
/// layout `memset` with `params` is remembered as the next launch's possible counter reset;
/// any other call forgets it.
///
/// # Safety
/// `params` must be the call's parameter structure, during the call, when `memset` is given.
pub unsafe fn other_work(memset: Option<MemsetCall>, params: *const u8) {
    if REPLAY.get().is_none() {
        return;
    }
    // SAFETY: per the contract.
    let reset = memset.and_then(|m| unsafe { read_memset(m, params) });
    // A thread being torn down has no such state left: nothing to remember.
    let _ = LAST_RESET.try_with(|r| r.set(reset));
}

/// A stream capture began (`true`) or ended.
pub fn capture(began: bool) {
    if let Some(r) = REPLAY.get() {
        if began {
            r.captures.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = r
                .captures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }
}

/// Count `busy_ns` of the program's device time for a signature: a kernel's, or a copy's (no
/// shape). The writer, per record.
pub fn observe(device: u32, name: &str, shape: Option<LaunchShape>, busy_ns: u64) {
    if let Some(r) = REPLAY.get() {
        lock(&r.plan).observe(&(device, Arc::from(name), shape), busy_ns);
    }
}

/// Re-rank the signatures (the writer, every flush).
pub fn refresh() {
    if let Some(r) = REPLAY.get() {
        let mut plan = lock(&r.plan);
        plan.refresh();
        r.generation.store(plan.generation(), Ordering::Release);
    }
}

/// What the plan left unreplayed, at the end of the run.
pub fn notes() -> Vec<(SigKey, u32, wattlens_instrument::trace::ReplayOutcome)> {
    REPLAY
        .get()
        .map(|r| lock(&r.plan).notes())
        .unwrap_or_default()
}

/// A launch call of layout `call` was entered with `params` in context `ctx`: replay it first
/// if the plan wants its signature. Returns what ran, for the trace.
///
/// # Safety
/// `params` must be the call's parameter structure, during the call, and `ctx` its context.
pub unsafe fn on_launch(
    call: LaunchCall,
    params: *const u8,
    ctx: sys::CUcontext,
    correlation: u32,
    now_ns: &dyn Fn() -> u64,
) -> Option<Replayed> {
    // A memset belongs to the launch right after it, on its stream, if to any.
    let reset = LAST_RESET.try_with(Cell::take).ok().flatten();
    let r = active(ctx)?;
    // SAFETY: per the contract.
    let mut launch = unsafe { read_launch(call, params) }?;
    launch.reset = reset.filter(|m| m.stream == launch.stream);
    if !first_look(r, (launch.func as usize, Some(launch.shape))) {
        return None;
    }
    let (name, device) = SEEN.with(|s| {
        let mut s = s.borrow_mut();
        let name = s
            .names
            .entry(launch.func as usize)
            // SAFETY: the function of a launch in progress is live.
            .or_insert_with(|| unsafe { device::function_name(launch.func) }.map(Arc::from))
            .clone();
        (name, device_cached(&mut s, ctx))
    });
    let key: SigKey = (device?, name?, Some(launch.shape));
    let check = Check {
        cooperative: launch.cooperative && launch.call == LaunchCall::Cooperative,
        stream: launch.stream,
    };
    replay_signature(r, key, correlation, now_ns, check, || {
        // SAFETY: per the contract; the other threads are held.
        unsafe { device::replay(&launch, ctx, r.settings.burst, &r.kinds, now_ns) }
    })
}

/// A copy call of layout `call` was entered with `params` in context `ctx`: replay the copy
/// first, between buffers of ours, if the plan wants its signature (its direction). Returns
/// what ran, for the trace.
///
/// # Safety
/// `params` must be the call's parameter structure, during the call, and `ctx` its context.
pub unsafe fn on_copy(
    call: copy::CopyCall,
    params: *const u8,
    ctx: sys::CUcontext,
    correlation: u32,
    now_ns: &dyn Fn() -> u64,
) -> Option<Replayed> {
    let r = active(ctx)?;
    // SAFETY: per the contract.
    let c = unsafe { copy::read_copy(call, params, &copy::memory_of) }?;
    if !first_look(r, (c.direction as usize, None)) {
        return None;
    }
    let device = SEEN.with(|s| device_cached(&mut s.borrow_mut(), ctx));
    let key: SigKey = (device?, Arc::from(c.direction.span_name()), None);
    let check = Check {
        cooperative: false,
        stream: c.stream,
    };
    replay_signature(r, key, correlation, now_ns, check, || {
        // SAFETY: per the contract; the other threads are held.
        unsafe { device::replay_copy(&c, ctx, r.settings.burst, &r.kinds, now_ns) }
    })
}

/// The replay state, where replay is on, has not been turned off by a failed restore, and the
/// call has a context.
fn active(ctx: sys::CUcontext) -> Option<&'static Replay> {
    REPLAY
        .get()
        .filter(|r| !r.broken.load(Ordering::Relaxed) && !ctx.is_null())
}

/// Whether this thread looks at the work `local` (a function and shape, or a copy direction)
/// for the first time since the plan last changed: one lookup per call otherwise.
fn first_look(r: &Replay, local: (usize, Option<LaunchShape>)) -> bool {
    let generation = r.generation.load(Ordering::Acquire);
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        let fresh = s.looked.get(&local) != Some(&generation);
        if fresh {
            s.looked.insert(local, generation);
        }
        fresh
    })
}

/// CUPTI's device index of context `ctx`, cached per thread.
fn device_cached(s: &mut ThreadCache, ctx: sys::CUcontext) -> Option<u32> {
    *s.devices
        .entry(ctx as usize)
        // SAFETY: the context of a call in progress is live.
        .or_insert_with(|| unsafe { device::device_of(ctx) })
}

/// What decides whether a claimed piece of work may be replayed at all.
struct Check {
    /// Launched through `cuLaunchCooperativeKernel`, which a graph cannot take.
    cooperative: bool,
    /// The stream the program issued it on.
    stream: sys::CUstream,
}

/// Claim `key` from the plan and, if it is wanted, replay it through `run` (the device work,
/// the other threads held); report the outcome to the plan and on stderr.
fn replay_signature(
    r: &Replay,
    key: SigKey,
    correlation: u32,
    now_ns: &dyn Fn() -> u64,
    check: Check,
    run: impl FnOnce() -> Result<device::Burst, String>,
) -> Option<Replayed> {
    if lock(&r.plan).claim(&key) != Claim::Replay {
        return None;
    }
    let from_ns = now_ns();
    let outcome = replay_claimed(r, &check, run);
    let to_ns = now_ns();
    let held_ns = to_ns.saturating_sub(from_ns);
    let mut plan = lock(&r.plan);
    let finished = |plan: &mut Plan, outcome: Result<(), String>| {
        plan.finish(&key, held_ns, outcome);
        r.generation.store(plan.generation(), Ordering::Release);
    };
    match outcome {
        Ok(burst) => {
            finished(&mut plan, Ok(()));
            let shape = key
                .2
                .map(|s| format!(" ({}x{})", s.blocks(), s.threads_per_block()))
                .unwrap_or_default();
            crate::log(format!(
                "replayed {}{shape}, {:.1}% of busy time: {} issues in {:.2} s; {:.1} s of the replay budget left",
                short(&key.1),
                100.0 * plan.share_of(&key),
                burst.launches,
                burst.end_ns.saturating_sub(burst.start_ns) as f64 * 1e-9,
                plan.left_ns() as f64 * 1e-9,
            ));
            Some(Replayed {
                device: key.0,
                correlation,
                name: key.1.clone(),
                shape: key.2,
                burst,
                held_ns: Interval::new(from_ns, to_ns.max(from_ns)),
            })
        }
        Err(why) => {
            if why.contains("could not be restored") {
                r.broken.store(true, Ordering::Relaxed);
                crate::log(format!(
                    "{why}; kernel replay is off for the rest of the run"
                ));
            }
            finished(&mut plan, Err(why));
            None
        }
    }
}

/// Replay claimed work: check that it may be, hold the other threads, run it.
fn replay_claimed(
    r: &Replay,
    check: &Check,
    run: impl FnOnce() -> Result<device::Burst, String>,
) -> Result<device::Burst, String> {
    if check.cooperative {
        // Graphs take cooperative kernels as nodes with the attribute; a plain cooperative
        // launch call cannot be captured as one.
        return Err(
            "cooperative launches through cuLaunchCooperativeKernel are not replayed".into(),
        );
    }
    // SAFETY: the call's own stream, live during the call.
    if unsafe { device::capturing(check.stream) } {
        return Err("issued inside a stream capture (a CUDA graph being recorded)".into());
    }
    if r.captures.load(Ordering::SeqCst) > 0 {
        return Err("a stream capture was under way when it was issued".into());
    }
    let held = r
        .gate
        .hold(HOLD_WAIT)
        .ok_or_else(|| "other threads kept issuing work, so it could not run alone".to_owned())?;
    REPLAYING.with(|f| f.set(true));
    let result = run();
    REPLAYING.with(|f| f.set(false));
    let disturbed = held.disturbed();
    drop(held);
    if disturbed {
        return Err("another thread's work ran during the burst".into());
    }
    result
}

/// The readable part of a kernel name, for progress lines.
fn short(name: &str) -> String {
    let shown = crate::demangle::display_name(name);
    let mut s: String = shown.chars().take(60).collect();
    if shown.chars().count() > 60 {
        s.push('~');
    }
    s
}
