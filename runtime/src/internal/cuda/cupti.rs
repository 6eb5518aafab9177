//! [`CuptiApi`] over cudarc's CUPTI bindings: activity records for kernels, copies and
//! memsets, collected process-wide by CUPTI's buffer callbacks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::CudaContext;

use super::cupti_records::{buffer_requested, drain_buffer, CuptiRecord, WORK_KINDS};
use super::cupti_result::{self as cr, ActivityKind};
use crate::timing::{Activity, CuptiApi, StreamKey, TimerError};

/// Records delivered by CUPTI, with the CUDA device ordinal each ran on.
static RECORDS: Mutex<Vec<(u32, Activity)>> = Mutex::new(Vec::new());
/// Live timers; CUPTI activity is enabled while this is above zero.
static USERS: Mutex<usize> = Mutex::new(0);
/// Devices a CUPTI session of this process is timing now: CUPTI's records carry no session, so
/// two sessions on one device could not tell theirs apart.
static ACTIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Activity kinds recorded. Runtime-API records are read for nothing but are needed: CUPTI
/// writes an external correlation record only beside an API record, and libraries (cuBLAS)
/// launch through the runtime API. wattlens' own launches use the driver API, so they add no
/// API records. Some library kernels are launched through the driver API (cuBLAS's CUTLASS
/// kernels, by `cuLaunchKernelEx`): driver-API records come on with a session's first
/// library call ([`record_driver_calls`]), so sessions that make none pay nothing for them.
const KINDS: [ActivityKind; 5] = [
    WORK_KINDS[0].1,
    WORK_KINDS[1].1,
    WORK_KINDS[2].1,
    ActivityKind::CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
    ActivityKind::CUPTI_ACTIVITY_KIND_RUNTIME,
];

/// Whether driver-API records are on ([`record_driver_calls`]).
static DRIVER_RECORDS: Mutex<bool> = Mutex::new(false);

/// Turn driver-API activity records on, once, so that library kernels launched through the
/// driver API get the external correlation id of the call that made them. Every driver call
/// of the process (wattlens' own launches included) then adds a record, so this waits for the
/// first library call. Off again when the last session ends.
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn record_driver_calls() -> Result<(), TimerError> {
    let mut on = lock(&DRIVER_RECORDS);
    if !*on {
        cr::enable_activity(
            ActivityKind::CUPTI_ACTIVITY_KIND_DRIVER,
            "enabling driver-API records",
        )?;
        *on = true;
    }
    Ok(())
}

/// External correlation ids CUPTI reported, by CUPTI correlation id (kept while any session
/// lives, since an id's record and its kernels' records may come in different buffers).
static EXTERNAL: Mutex<Option<HashMap<u32, u64>>> = Mutex::new(None);

/// Mark the CUDA calls this thread makes from now on with external correlation id `id`, until
/// [`pop_external`].
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn push_external(id: u64) -> Result<(), TimerError> {
    Ok(cr::push_external_correlation(id)?)
}

/// End the marking [`push_external`] began.
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn pop_external() -> Result<(), TimerError> {
    cr::pop_external_correlation()?;
    Ok(())
}

unsafe extern "C" fn buffer_completed(
    _ctx: cudarc::driver::sys::CUcontext,
    _stream_id: u32,
    buffer: *mut u8,
    size: usize,
    valid: usize,
) {
    let mut parsed = Vec::new();
    // SAFETY: CUPTI hands back a buffer from `buffer_requested` with `valid` bytes of records.
    unsafe {
        drain_buffer(buffer, size, valid, |r| match r {
            CuptiRecord::Work {
                device, activity, ..
            } => parsed.push((device, activity)),
            CuptiRecord::External {
                correlation,
                external,
            } => {
                lock(&EXTERNAL)
                    .get_or_insert_with(HashMap::new)
                    .insert(correlation, external);
            }
        });
    }
    lock(&RECORDS).extend(parsed);
}

/// CUPTI for one device; activity stays enabled while any instance lives.
pub(crate) struct Cupti {
    ctx: Arc<CudaContext>,
    ordinal: u32,
}

impl Cupti {
    /// Enable CUPTI activity (once per process) for device `ctx`.
    ///
    /// # Errors
    /// [`TimerError::Unavailable`] when libcupti cannot be loaded or another session of this
    /// process is timing the same GPU with CUPTI; [`TimerError::Api`] when CUPTI refuses
    /// (another tool may own it).
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Result<Self, TimerError> {
        if !cr::is_loadable() {
            return Err(TimerError::Unavailable(
                "libcupti.so is not on the library path (it ships with the CUDA toolkit, under extras/CUPTI/lib64)".into(),
            ));
        }
        let ordinal = u32::try_from(ctx.ordinal()).unwrap_or(u32::MAX);
        {
            let mut active = lock(&ACTIVE);
            if active.contains(&ordinal) {
                return Err(TimerError::Unavailable(format!(
                    "another wattlens session in this process is timing GPU {ordinal} with CUPTI, whose records cannot be split between sessions; finish that session first, or time this one with CUDA events"
                )));
            }
            active.push(ordinal);
        }
        let mut users = lock(&USERS);
        let enabled = if *users == 0 {
            // SAFETY: the callbacks follow CUPTI's buffer contract and live for the whole
            // process.
            unsafe { cr::register_buffer_callbacks(buffer_requested, buffer_completed) }
                .and_then(|()| {
                    KINDS.iter().try_for_each(|&kind| {
                        cr::enable_activity(kind, "enabling activity records")
                    })
                })
                .map_err(TimerError::from)
        } else {
            Ok(())
        };
        if let Err(e) = enabled {
            lock(&ACTIVE).retain(|&d| d != ordinal);
            return Err(e);
        }
        *users += 1;
        Ok(Self { ctx, ordinal })
    }
}

impl Drop for Cupti {
    fn drop(&mut self) {
        lock(&ACTIVE).retain(|&d| d != self.ordinal);
        let mut users = lock(&USERS);
        *users = users.saturating_sub(1);
        if *users == 0 {
            // Errors leave nothing to undo.
            let _ = cr::flush_all(true);
            for kind in KINDS {
                let _ = cr::disable_activity(kind, "disabling activity records");
            }
            let mut driver = lock(&DRIVER_RECORDS);
            if *driver {
                let _ = cr::disable_activity(
                    ActivityKind::CUPTI_ACTIVITY_KIND_DRIVER,
                    "disabling driver-API records",
                );
                *driver = false;
            }
            drop(driver);
            lock(&RECORDS).clear();
            *lock(&EXTERNAL) = None;
        }
    }
}

impl CuptiApi for Cupti {
    fn timestamp_ns(&self) -> Result<u64, TimerError> {
        Ok(cr::timestamp_ns()?)
    }

    fn stream_id(&self, stream: &StreamKey) -> Result<u32, TimerError> {
        // SAFETY: the context is alive (held here) and `stream.raw` is a live stream of it,
        // held by the caller for this call.
        Ok(unsafe { cr::stream_id(self.ctx.cu_ctx(), stream.raw as _, false) }?)
    }

    fn take(&self) -> Result<Vec<Activity>, TimerError> {
        // A forced flush delivers partly filled buffers too.
        cr::flush_all(true)?;
        let mut all = lock(&RECORDS);
        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(d, _)| *d == self.ordinal);
        *all = rest;
        Ok(mine.into_iter().map(|(_, a)| a).collect())
    }

    fn external_ids(&self) -> HashMap<u32, u64> {
        lock(&EXTERNAL).clone().unwrap_or_default()
    }
}

/// Kernel (and driver-API) activity records held off while the profiler replays a kernel
/// alone ([`pause_kernel_records`]); [`KernelRecordsPaused::resume`] turns them back on.
pub(crate) struct KernelRecordsPaused {
    driver: bool,
    resumed: bool,
}

/// Deliver every record so far, then stop recording kernels (and driver-API calls, where on)
/// until [`KernelRecordsPaused::resume`]: a replay's launches are not the program's, and one
/// record each would swamp the buffers. The caller has waited for the device, so no kernel of
/// the program is in flight.
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn pause_kernel_records() -> Result<KernelRecordsPaused, TimerError> {
    let driver = *lock(&DRIVER_RECORDS);
    cr::flush_all(true)?;
    cr::disable_activity(
        ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
        "pausing kernel records",
    )?;
    if driver {
        cr::disable_activity(
            ActivityKind::CUPTI_ACTIVITY_KIND_DRIVER,
            "pausing driver-API records",
        )?;
    }
    Ok(KernelRecordsPaused {
        driver,
        resumed: false,
    })
}

impl KernelRecordsPaused {
    /// Record kernels (and driver-API calls) again.
    ///
    /// # Errors
    /// [`TimerError::Api`] when CUPTI refuses.
    pub(crate) fn resume(mut self) -> Result<(), TimerError> {
        self.resumed = true;
        Self::enable(self.driver)
    }

    fn enable(driver: bool) -> Result<(), TimerError> {
        cr::enable_activity(
            ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
            "resuming kernel records",
        )?;
        if driver {
            cr::enable_activity(
                ActivityKind::CUPTI_ACTIVITY_KIND_DRIVER,
                "resuming driver-API records",
            )?;
        }
        Ok(())
    }
}

impl Drop for KernelRecordsPaused {
    fn drop(&mut self) {
        // A replay that failed part-way still turns the records back on.
        if !self.resumed {
            if let Err(e) = Self::enable(self.driver) {
                eprintln!("wattlens: {e}");
            }
        }
    }
}
