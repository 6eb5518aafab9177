//! Reading CUPTI activity records: one parser shared by the session's CUPTI timer and the
//! injection library, so both read the same layouts the same way.

use std::ffi::CStr;

use cudarc::cupti::sys as cupti;
use wattlens_instrument::trace::{CopyDirection, LaunchShape};

use super::activity_buffers::BufferPool;
pub use super::activity_buffers::MIN_BUFFER_BYTES;
use crate::timing::{Activity, ActivityKind};

/// The activity kinds of device work every recorder reads ([`drain_buffer`] parses them), by
/// the name the injection library's `WATTLENS_KINDS` gives them.
pub const WORK_KINDS: [(&str, cupti::CUpti_ActivityKind); 3] = [
    (
        "kernel",
        cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
    ),
    (
        "memcpy",
        cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMCPY,
    ),
    (
        "memset",
        cupti::CUpti_ActivityKind::CUPTI_ACTIVITY_KIND_MEMSET,
    ),
];

/// Buffers handed to CUPTI: 8 MiB each unless changed; at most 8, and 16 MiB, kept for reuse.
static POOL: BufferPool = BufferPool::new(8 << 20, 8);

/// Set the size of the buffers handed to CUPTI from now on. CUPTI's periodic (unforced) flush
/// returns only buffers whose records are all complete, so a busy GPU keeps its current buffer
/// back: smaller buffers bound how much a killed process loses.
pub fn set_buffer_bytes(bytes: usize) {
    POOL.set_buffer_bytes(bytes);
}

/// Allocate and touch `count` buffers ahead of CUPTI's requests (at most the pool's bound: 8
/// buffers, 16 MiB), so that its requests on the program's threads neither allocate nor fault
/// pages in.
/// Returns how many are ready.
pub fn prefill_buffers(count: usize) -> usize {
    POOL.prefill(count)
}

/// CUPTI's buffer-request callback: hands CUPTI a buffer, taken back by [`drain_buffer`].
///
/// # Safety
/// Called by CUPTI only, with valid out-pointers.
pub unsafe extern "C" fn buffer_requested(
    buffer: *mut *mut u8,
    size: *mut usize,
    max_records: *mut usize,
) {
    if buffer.is_null() || size.is_null() || max_records.is_null() {
        return;
    }
    // No panic may unwind into CUPTI: a failure hands CUPTI no buffer, so it drops records.
    let handed = std::panic::catch_unwind(|| POOL.take()).ok();
    let (ptr, bytes) = handed.map_or((std::ptr::null_mut(), 0), |h| (h.ptr, h.bytes));
    // SAFETY: CUPTI passes valid out-pointers (checked non-null). A null buffer is reported to
    // CUPTI as a zero-sized one, which makes it drop records.
    unsafe {
        *buffer = ptr;
        *size = bytes;
        *max_records = 0;
    }
}

/// Hand each record of a completed buffer to `each`, then give the buffer back for reuse.
///
/// # Safety
/// `buffer` must be null or one [`buffer_requested`] allocated with `size` bytes, holding
/// `valid` bytes of records CUPTI wrote; it must not be used afterwards.
pub unsafe fn drain_buffer(
    buffer: *mut u8,
    size: usize,
    valid: usize,
    mut each: impl FnMut(CuptiRecord),
) {
    if buffer.is_null() {
        return;
    }
    let mut record: *mut cupti::CUpti_Activity = std::ptr::null_mut();
    // SAFETY: per this function's contract; each record pointer CUPTI returns points into the
    // buffer, which is given back only after the last one is read.
    unsafe {
        while let Some(next) = super::cupti_result::next_record(buffer, valid, record) {
            record = next;
            if let Some(r) = parse(record) {
                each(r);
            }
        }
        POOL.give_back(buffer, size);
    }
}

/// One activity record, reduced to what wattlens reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CuptiRecord {
    /// A kernel, copy or memset.
    Work {
        /// CUDA device ordinal it ran on.
        device: u32,
        /// What ran, where and when (CUPTI timestamps).
        activity: Activity,
    },
    /// An external correlation id CUPTI attached to an API call.
    External {
        /// CUPTI's correlation id of the call.
        correlation: u32,
        /// The external id pushed around it.
        external: u64,
    },
}

fn c_string(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: CUPTI's strings are NUL-terminated and valid while their record is.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Direction of a CUPTI copy kind, where it maps onto one (host-to-host copies do not).
pub fn copy_direction(copy_kind: u8) -> Option<CopyDirection> {
    match copy_kind {
        1 => Some(CopyDirection::HostToDevice),
        2 => Some(CopyDirection::DeviceToHost),
        8 | 10 => Some(CopyDirection::DeviceToDevice),
        _ => None,
    }
}

/// One record, reduced; `None` for kinds wattlens does not read.
///
/// # Safety
/// `record` must point to a complete activity record from CUPTI.
pub unsafe fn parse(record: *const cupti::CUpti_Activity) -> Option<CuptiRecord> {
    use cupti::CUpti_ActivityKind as K;
    // The kind is read as a plain integer: an enum read of a value Rust does not know is UB.
    // SAFETY: every record starts with its 32-bit kind.
    let kind = unsafe { std::ptr::read_unaligned(record.cast::<u32>()) };
    if kind == K::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL as u32
        || kind == K::CUPTI_ACTIVITY_KIND_KERNEL as u32
    {
        // SAFETY: kernel records of this CUPTI use this layout (its fields up to `name` are
        // the same in every version since 4).
        let k = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityKernel10>()) };
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        let shape = LaunchShape {
            grid: [u(k.gridX), u(k.gridY), u(k.gridZ)],
            block: [u(k.blockX), u(k.blockY), u(k.blockZ)],
            shared_mem_bytes: u(k.dynamicSharedMemory),
        };
        return Some(CuptiRecord::Work {
            device: k.deviceId,
            activity: Activity {
                kind: ActivityKind::Kernel {
                    name: c_string(k.name),
                    shape,
                },
                stream_id: k.streamId,
                start_ns: k.start,
                end_ns: k.end,
                correlation_id: k.correlationId,
            },
        });
    }
    if kind == K::CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION as u32 {
        // SAFETY: external correlation records use this layout.
        let x = unsafe {
            std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityExternalCorrelation>())
        };
        return Some(CuptiRecord::External {
            correlation: x.correlationId,
            external: x.externalId,
        });
    }
    if kind == K::CUPTI_ACTIVITY_KIND_MEMCPY as u32 {
        // SAFETY: memcpy records of this CUPTI use this layout.
        let m = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityMemcpy6>()) };
        return Some(CuptiRecord::Work {
            device: m.deviceId,
            activity: Activity {
                kind: ActivityKind::Memcpy {
                    bytes: m.bytes,
                    direction: copy_direction(m.copyKind),
                },
                stream_id: m.streamId,
                start_ns: m.start,
                end_ns: m.end,
                correlation_id: m.correlationId,
            },
        });
    }
    if kind == K::CUPTI_ACTIVITY_KIND_MEMSET as u32 {
        // SAFETY: memset records of this CUPTI use this layout.
        let m = unsafe { std::ptr::read_unaligned(record.cast::<cupti::CUpti_ActivityMemset4>()) };
        return Some(CuptiRecord::Work {
            device: m.deviceId,
            activity: Activity {
                kind: ActivityKind::Memset {
                    bytes: m.bytes,
                    value: u8::try_from(m.value).unwrap_or(u8::MAX),
                },
                stream_id: m.streamId,
                start_ns: m.start,
                end_ns: m.end,
                correlation_id: m.correlationId,
            },
        });
    }
    None
}
