//! [`CuptiApi`] over cudarc's CUPTI bindings: activity records for kernels, copies and
//! memsets, collected process-wide by CUPTI's buffer callbacks.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::cupti::sys as cupti;
use cudarc::driver::CudaContext;
use wattlens_instrument::trace::{CopyDirection, LaunchShape};

use crate::timing::{Activity, ActivityKind, CuptiApi, StreamKey, TimerError};

/// Size of each activity buffer handed to CUPTI, bytes.
const BUFFER_BYTES: usize = 8 << 20;
/// Alignment CUPTI requires of activity buffers.
const BUFFER_ALIGN: usize = 8;

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

fn check(what: &'static str, r: cupti::CUptiResult) -> Result<(), TimerError> {
    if r == cupti::CUptiResult::CUPTI_SUCCESS {
        Ok(())
    } else {
        Err(TimerError::Api {
            api: "CUPTI",
            what,
            message: format!("{r:?}"),
        })
    }
}

/// Activity kinds recorded. Runtime-API records are read for nothing but are needed: CUPTI
/// writes an external correlation record only beside an API record, and libraries (cuBLAS)
/// launch through the runtime API. wattlens' own launches use the driver API, so they add no
/// API records.
const KINDS: [cupti::CUpti_ActivityKind; 5] = [
    cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
    cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMCPY,
    cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMSET,
    cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
    cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_RUNTIME,
];

/// External correlation ids CUPTI reported, by CUPTI correlation id (kept while any session
/// lives, since an id's record and its kernels' records may come in different buffers).
static EXTERNAL: Mutex<Option<HashMap<u32, u64>>> = Mutex::new(None);

/// Mark the CUDA calls this thread makes from now on with external correlation id `id`, until
/// [`pop_external`].
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn push_external(id: u64) -> Result<(), TimerError> {
    // SAFETY: a plain CUPTI call with a valid kind; CUPTI is loaded (a `Cupti` exists).
    check("pushing an external correlation id", unsafe {
        cupti::cuptiActivityPushExternalCorrelationId(
            cupti::CUpti_ExternalCorrelationKind::CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
            id,
        )
    })
}

/// End the marking [`push_external`] began.
///
/// # Errors
/// [`TimerError::Api`] when CUPTI refuses.
pub(crate) fn pop_external() -> Result<(), TimerError> {
    let mut id = 0u64;
    // SAFETY: as in `push_external`; the out-pointer is valid.
    check("popping an external correlation id", unsafe {
        cupti::cuptiActivityPopExternalCorrelationId(
            cupti::CUpti_ExternalCorrelationKind::CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
            &mut id,
        )
    })
}

unsafe extern "C" fn buffer_requested(
    buffer: *mut *mut u8,
    size: *mut usize,
    max_records: *mut usize,
) {
    let Ok(layout) = Layout::from_size_align(BUFFER_BYTES, BUFFER_ALIGN) else {
        return;
    };
    // SAFETY: CUPTI passes valid out-pointers; the layout has a non-zero size. A null
    // allocation is reported to CUPTI as a zero-sized buffer, which makes it drop records.
    unsafe {
        let p = alloc(layout);
        *buffer = p;
        *size = if p.is_null() { 0 } else { BUFFER_BYTES };
        *max_records = 0;
    }
}

unsafe extern "C" fn buffer_completed(
    _ctx: cudarc::driver::sys::CUcontext,
    _stream_id: u32,
    buffer: *mut u8,
    _size: usize,
    valid: usize,
) {
    if buffer.is_null() {
        return;
    }
    let mut parsed = Vec::new();
    let mut record: *mut cupti::CUpti_Activity = std::ptr::null_mut();
    // SAFETY: `buffer` is one we allocated in `buffer_requested`, with `valid` bytes of
    // records written by CUPTI; each record pointer CUPTI returns points into it.
    unsafe {
        while cupti::cuptiActivityGetNextRecord(buffer, valid, &mut record)
            == cupti::CUptiResult::CUPTI_SUCCESS
        {
            if let Some(r) = parse(record) {
                parsed.push(r);
            }
        }
        if let Ok(layout) = Layout::from_size_align(BUFFER_BYTES, BUFFER_ALIGN) {
            dealloc(buffer, layout);
        }
    }
    lock(&RECORDS).extend(parsed);
}

/// One record, reduced; `None` for kinds this module does not read.
///
/// # Safety
/// `record` must point to a complete activity record from CUPTI.
unsafe fn parse(record: *const cupti::CUpti_Activity) -> Option<(u32, Activity)> {
    // The kind is read as a plain integer: an enum read of a value Rust does not know is UB.
    // SAFETY: every record starts with its 32-bit kind.
    let kind = unsafe { std::ptr::read_unaligned(record.cast::<u32>()) };
    if kind == cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL as u32
        || kind == cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_KERNEL as u32
    {
        // SAFETY: kernel records of this CUPTI use this layout (its fields up to `name` are
        // the same in every version since 4).
        let k = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityKernel10>()) };
        let name = if k.name.is_null() {
            String::new()
        } else {
            // SAFETY: CUPTI's name is a NUL-terminated string valid while the record is.
            unsafe { CStr::from_ptr(k.name) }
                .to_string_lossy()
                .into_owned()
        };
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        let shape = LaunchShape {
            grid: [u(k.gridX), u(k.gridY), u(k.gridZ)],
            block: [u(k.blockX), u(k.blockY), u(k.blockZ)],
            shared_mem_bytes: u(k.dynamicSharedMemory),
        };
        return Some((
            k.deviceId,
            Activity {
                kind: ActivityKind::Kernel { name, shape },
                stream_id: k.streamId,
                start_ns: k.start,
                end_ns: k.end,
                correlation_id: k.correlationId,
            },
        ));
    }
    if kind == cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION as u32 {
        // SAFETY: external correlation records use this layout.
        let x = unsafe {
            std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityExternalCorrelation>())
        };
        lock(&EXTERNAL)
            .get_or_insert_with(HashMap::new)
            .insert(x.correlationId, x.externalId);
        return None;
    }
    if kind == cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMCPY as u32 {
        // SAFETY: memcpy records of this CUPTI use this layout.
        let m = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityMemcpy6>()) };
        let direction = match m.copyKind {
            1 => Some(CopyDirection::HostToDevice),
            2 => Some(CopyDirection::DeviceToHost),
            8 | 10 => Some(CopyDirection::DeviceToDevice),
            _ => None,
        };
        return Some((
            m.deviceId,
            Activity {
                kind: ActivityKind::Memcpy {
                    bytes: m.bytes,
                    direction,
                },
                stream_id: m.streamId,
                start_ns: m.start,
                end_ns: m.end,
                correlation_id: m.correlationId,
            },
        ));
    }
    if kind == cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMSET as u32 {
        // SAFETY: memset records of this CUPTI use this layout.
        let m = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityMemset4>()) };
        return Some((
            m.deviceId,
            Activity {
                kind: ActivityKind::Memset { bytes: m.bytes },
                stream_id: m.streamId,
                start_ns: m.start,
                end_ns: m.end,
                correlation_id: m.correlationId,
            },
        ));
    }
    None
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
        // SAFETY: only probes for the library by name; cudarc panics on first use otherwise.
        if !unsafe { cupti::is_culib_present() } {
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
            // SAFETY: the callbacks match CUPTI's signatures and live for the whole process.
            unsafe {
                check(
                    "registering buffer callbacks",
                    cupti::cuptiActivityRegisterCallbacks(
                        Some(buffer_requested),
                        Some(buffer_completed),
                    ),
                )
                .and_then(|()| {
                    KINDS.iter().try_for_each(|&kind| {
                        check(
                            "enabling activity records",
                            cupti::cuptiActivityEnable(kind),
                        )
                    })
                })
            }
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
            // SAFETY: plain CUPTI calls with valid arguments; errors leave nothing to undo.
            unsafe {
                let _ = cupti::cuptiActivityFlushAll(1);
                for kind in KINDS {
                    let _ = cupti::cuptiActivityDisable(kind);
                }
            }
            lock(&RECORDS).clear();
            *lock(&EXTERNAL) = None;
        }
    }
}

impl CuptiApi for Cupti {
    fn timestamp_ns(&self) -> Result<u64, TimerError> {
        let mut t = 0u64;
        // SAFETY: a valid out-pointer.
        check("reading its clock", unsafe {
            cupti::cuptiGetTimestamp(&mut t)
        })?;
        Ok(t)
    }

    fn stream_id(&self, stream: &StreamKey) -> Result<u32, TimerError> {
        let mut id = 0u32;
        // SAFETY: the context is alive (held here) and `stream.raw` is a live stream of it,
        // held by the caller for this call; the out-pointer is valid.
        check("identifying a stream", unsafe {
            cupti::cuptiGetStreamIdEx(self.ctx.cu_ctx() as _, stream.raw as _, 0, &mut id)
        })?;
        Ok(id)
    }

    fn take(&self) -> Result<Vec<Activity>, TimerError> {
        // SAFETY: a plain CUPTI call; forced flush delivers partly filled buffers too.
        check("flushing records", unsafe {
            cupti::cuptiActivityFlushAll(1)
        })?;
        let mut all = lock(&RECORDS);
        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(d, _)| *d == self.ordinal);
        *all = rest;
        Ok(mine.into_iter().map(|(_, a)| a).collect())
    }

    fn external_ids(&self) -> HashMap<u32, u64> {
        lock(&EXTERNAL).clone().unwrap_or_default()
    }
}
