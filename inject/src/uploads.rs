//! Host-to-device copies hashed at their call, so that waste analysis can find the same content
//! copied to the same device address again (a redundant or likely redundant transfer).
//!
//! The content is read on the program's thread when the API call is entered, before the copy
//! is issued, from the host memory the call names. Only the source of a copy to the device is
//! read: the driver's `cuMemcpyHtoD*`, its generic `cuMemcpy[Async]`, and the runtime's
//! `cudaMemcpy[Async]` with `cudaMemcpyHostToDevice`, and only when CUDA does not know the
//! source as device or managed memory. The cost is bounded: whole up to [`WHOLE_LIMIT_BYTES`], about 20 µs; 65
//! chunks of 4 KiB above it (BENCHMARKS.md, content digests).

use crate::config::Digests;
use wattlens_instrument::Interval;
use wattlens_runtime::internal::digest::{bounded_digest, SAMPLE_BYTES};

/// Uploads up to this size are hashed whole by default (what a sampled digest reads anyway),
/// bytes; larger ones from samples.
pub const WHOLE_LIMIT_BYTES: usize = SAMPLE_BYTES;

/// The digest of `bytes` in hashing mode `mode` (whole up to [`WHOLE_LIMIT_BYTES`] in the
/// bounded mode); bit 0 set when it was computed from samples.
pub fn upload_digest(mode: Digests, bytes: &[u8]) -> Option<u64> {
    match mode {
        Digests::Off => None,
        Digests::Bounded => Some(bounded_digest(bytes, WHOLE_LIMIT_BYTES)),
        Digests::Full => Some(bounded_digest(bytes, usize::MAX)),
    }
}

/// One hashed upload, as the callback of its call recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    /// Correlation id of the call (CUPTI's copy record carries it).
    pub correlation: u32,
    /// First device address written.
    pub address: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Content digest ([`upload_digest`]).
    pub digest: u64,
    /// When the source check and hashing began and ended, on the trace clock: time the
    /// program was held up.
    pub hashed_ns: Interval,
}

/// How an upload call lays out its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadCall {
    /// `cuMemcpyHtoD[Async]_v2[_ptds|_ptsz]` and `cuMemcpy[Async][_ptds|_ptsz]`: destination,
    /// source, byte count (, stream).
    Driver,
    /// `cudaMemcpy[Async][_ptds|_ptsz]`: destination, source, count, kind (, stream); a copy
    /// only when the kind is `cudaMemcpyHostToDevice`.
    Runtime,
}

/// `cudaMemcpyHostToDevice`.
pub const RUNTIME_HOST_TO_DEVICE: i32 = 1;

/// The upload call an API callback name stands for, if it is one whose parameters this module
/// reads. The match is exact: a call with another layout (`cudaMemcpy2D`, `cuMemcpyHtoD`'s
/// 32-bit first version, `cudaMemcpyToSymbol`) must never be read as one of these.
pub fn upload_call(name: &str) -> Option<UploadCall> {
    // The generic copies (`cuMemcpy[Async]`, the direction from the pointers) share the
    // layout; their source is read only when CUDA does not know it as device memory.
    const DRIVER: [&str; 8] = [
        "cuMemcpyHtoD_v2",
        "cuMemcpyHtoDAsync_v2",
        "cuMemcpyHtoD_v2_ptds",
        "cuMemcpyHtoDAsync_v2_ptsz",
        "cuMemcpy",
        "cuMemcpyAsync",
        "cuMemcpy_ptds",
        "cuMemcpyAsync_ptsz",
    ];
    const RUNTIME: [&str; 4] = [
        "cudaMemcpy",
        "cudaMemcpyAsync",
        "cudaMemcpy_ptds",
        "cudaMemcpyAsync_ptsz",
    ];
    if DRIVER.contains(&name) {
        return Some(UploadCall::Driver);
    }
    // CUPTI names runtime callbacks with the version that introduced them: `cudaMemcpy_v3020`.
    let base = match name.rsplit_once("_v") {
        Some((base, version))
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    };
    RUNTIME.contains(&base).then_some(UploadCall::Runtime)
}

/// The (destination, source, byte count) of an upload call's parameters, or `None` when the
/// call is not a host-to-device copy.
///
/// # Safety
/// `params` must point to the parameter structure of a call of kind `call`.
pub unsafe fn read_params(call: UploadCall, params: *const u8) -> Option<(u64, *const u8, usize)> {
    if params.is_null() {
        return None;
    }
    // SAFETY: both layouts begin with three 8-byte fields (destination, source, count); the
    // runtime's fourth is the copy kind, an int.
    let (dst, src, count) = unsafe {
        (
            std::ptr::read_unaligned(params.cast::<u64>()),
            std::ptr::read_unaligned(params.add(8).cast::<*const u8>()),
            std::ptr::read_unaligned(params.add(16).cast::<usize>()),
        )
    };
    if call == UploadCall::Runtime {
        // SAFETY: per the layout above.
        let kind = unsafe { std::ptr::read_unaligned(params.add(24).cast::<i32>()) };
        if kind != RUNTIME_HOST_TO_DEVICE {
            return None;
        }
    }
    (dst != 0 && !src.is_null() && count > 0).then_some((dst, src, count))
}

/// The last upload each thread hashed, so that a runtime call and the driver call it makes are
/// hashed once.
#[derive(Debug, Default, Clone, Copy)]
pub struct LastUpload(Option<u32>);

impl LastUpload {
    /// True when the call with `correlation` was hashed already.
    pub fn seen(&self, correlation: u32) -> bool {
        self.0 == Some(correlation)
    }

    /// Remember that the call with `correlation` was hashed.
    pub fn remember(&mut self, correlation: u32) {
        self.0 = Some(correlation);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_calls_with_a_known_layout_are_uploads() {
        for name in [
            "cuMemcpyHtoD_v2",
            "cuMemcpyHtoDAsync_v2_ptsz",
            "cuMemcpyAsync",
        ] {
            assert_eq!(upload_call(name), Some(UploadCall::Driver), "{name}");
        }
        for name in [
            "cudaMemcpy_v3020",
            "cudaMemcpyAsync_v3020",
            "cudaMemcpy_ptds_v7000",
            "cudaMemcpyAsync_ptsz_v7000",
            "cudaMemcpyAsync",
        ] {
            assert_eq!(upload_call(name), Some(UploadCall::Runtime), "{name}");
        }
        for name in [
            "cuMemcpyHtoD",
            "cuMemcpyHtoA_v2",
            "cuMemcpyDtoHAsync_v2",
            "cuMemcpy2DAsync_v2",
            "cudaMemcpy2D_v3020",
            "cudaMemcpyToSymbol_v3020",
            "cudaMemcpyPeerAsync_v4000",
            "cudaMemcpyAsync_v",
            "cudaMemcpy_vX",
        ] {
            assert_eq!(upload_call(name), None, "{name}");
        }
    }

    #[repr(C)]
    struct RuntimeParams {
        dst: u64,
        src: *const u8,
        count: usize,
        kind: i32,
        stream: u64,
    }

    #[test]
    fn runtime_copies_are_read_only_when_they_go_host_to_device() {
        let host = [1u8, 2, 3];
        let mut p = RuntimeParams {
            dst: 0x7f00_0000_1000,
            src: host.as_ptr(),
            count: 3,
            kind: RUNTIME_HOST_TO_DEVICE,
            stream: 0,
        };
        let read = |p: &RuntimeParams| {
            // SAFETY: a runtime copy's parameter layout.
            unsafe { read_params(UploadCall::Runtime, (p as *const RuntimeParams).cast()) }
        };
        assert_eq!(read(&p), Some((0x7f00_0000_1000, host.as_ptr(), 3)));
        p.kind = 2; // device to host
        assert_eq!(read(&p), None);
        p.kind = 4; // cudaMemcpyDefault: the direction is not known from the call
        assert_eq!(read(&p), None);
        p.kind = RUNTIME_HOST_TO_DEVICE;
        p.count = 0;
        assert_eq!(read(&p), None);
        // SAFETY: a null pointer is refused before anything is read.
        assert_eq!(
            unsafe { read_params(UploadCall::Driver, std::ptr::null()) },
            None
        );
    }

    #[test]
    fn a_runtime_call_and_its_driver_call_are_hashed_once_and_modes_differ_in_reach() {
        let mut last = LastUpload::default();
        assert!(!last.seen(9));
        last.remember(9);
        assert!(last.seen(9), "the driver call inside the runtime call");
        assert!(!last.seen(10));
        let big = vec![5u8; 2 * WHOLE_LIMIT_BYTES];
        assert_eq!(upload_digest(Digests::Off, &big), None);
        assert_eq!(
            upload_digest(Digests::Bounded, &big).unwrap() & 1,
            1,
            "sampled"
        );
        assert_eq!(upload_digest(Digests::Full, &big).unwrap() & 1, 0, "whole");
        assert_eq!(
            upload_digest(Digests::Bounded, &big[..1000]).unwrap() & 1,
            0
        );
    }
}
