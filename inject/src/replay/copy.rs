//! A copy as its driver call gives it, to be repeated between buffers of ours: the direction,
//! the byte count and the content, never the program's own memory.
//!
//! A copy is replayed like a kernel so that the counter sees it alone: in a launch-bound
//! program copies are a large share of the busy time (the `generate` loop's key-value cache
//! and token copies), and the fit cannot tell them from the kernels they sit among. Unlike a
//! kernel's, a copy's replay needs no checkpoint: it writes only buffers of ours, filled with
//! the bytes the program's copy reads, since what a copy moves changes what it draws.

use cudarc::driver::sys;
use wattlens_instrument::trace::CopyDirection;

/// The largest copy replayed, bytes: its buffers are allocated for the replay (a model's
/// weights uploaded at start-up are not worth a second copy of them on the device).
pub const MAX_REPLAY_BYTES: usize = 256 << 20;

/// How a copy call lays out its parameters: every driver copy of one contiguous range begins
/// with the destination (8 bytes), the source (8) and the byte count (8); the asynchronous
/// ones then name the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyCall {
    /// The direction the call's name gives; `None` for `cuMemcpy[Async]`, which takes it from
    /// the pointers.
    pub direction: Option<CopyDirection>,
    /// Whether the call names a stream (at byte 24).
    pub with_stream: bool,
}

/// The copy call a driver callback name stands for, if it is one this module reads. The match
/// is exact: a call with another layout (`cuMemcpy2D`, `cuMemcpyPeer`, the 32-bit first
/// versions) must never be read as one of these.
pub fn copy_call(name: &str) -> Option<CopyCall> {
    let base = name
        .strip_suffix("_ptds")
        .or_else(|| name.strip_suffix("_ptsz"))
        .unwrap_or(name);
    let (direction, with_stream) = match base {
        "cuMemcpyHtoD_v2" => (Some(CopyDirection::HostToDevice), false),
        "cuMemcpyHtoDAsync_v2" => (Some(CopyDirection::HostToDevice), true),
        "cuMemcpyDtoH_v2" => (Some(CopyDirection::DeviceToHost), false),
        "cuMemcpyDtoHAsync_v2" => (Some(CopyDirection::DeviceToHost), true),
        "cuMemcpyDtoD_v2" => (Some(CopyDirection::DeviceToDevice), false),
        "cuMemcpyDtoDAsync_v2" => (Some(CopyDirection::DeviceToDevice), true),
        "cuMemcpy" => (None, false),
        "cuMemcpyAsync" => (None, true),
        _ => return None,
    };
    // The per-thread variants exist only as `_ptds` for the synchronous calls and `_ptsz` for
    // the asynchronous ones.
    let suffix_fits = if with_stream {
        !name.ends_with("_ptds")
    } else {
        !name.ends_with("_ptsz")
    };
    suffix_fits.then_some(CopyCall {
        direction,
        with_stream,
    })
}

/// One copy, read from its call.
#[derive(Debug, Clone, Copy)]
pub struct Copy {
    /// Which way.
    pub direction: CopyDirection,
    /// The program's source: a device address, or a host address as an integer.
    pub src: u64,
    /// Bytes.
    pub bytes: usize,
    /// The stream the program issued it on (null: the default stream).
    pub stream: sys::CUstream,
}

/// Where CUDA says an address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Host memory (page-locked, or unknown to CUDA: pageable).
    Host,
    /// Device memory.
    Device,
    /// Managed memory or an array: not replayed (where its pages are is not the copy's).
    Other,
}

/// Read the copy a callback's `params` describe, its direction from `memory` where the call
/// does not name it; `None` for an empty copy, one larger than [`MAX_REPLAY_BYTES`], or one
/// that touches managed memory.
///
/// # Safety
/// `params` must point to the parameter structure of a call of kind `call`, during the call.
pub unsafe fn read_copy(
    call: CopyCall,
    params: *const u8,
    memory: &dyn Fn(u64) -> Memory,
) -> Option<Copy> {
    if params.is_null() {
        return None;
    }
    // SAFETY: per the contract and the layout of `CopyCall`.
    let (dst, src, bytes, stream) = unsafe {
        (
            std::ptr::read_unaligned(params.cast::<u64>()),
            std::ptr::read_unaligned(params.add(8).cast::<u64>()),
            std::ptr::read_unaligned(params.add(16).cast::<usize>()),
            if call.with_stream {
                std::ptr::read_unaligned(params.add(24).cast::<sys::CUstream>())
            } else {
                std::ptr::null_mut()
            },
        )
    };
    if dst == 0 || src == 0 || bytes == 0 || bytes > MAX_REPLAY_BYTES {
        return None;
    }
    let direction = match call.direction {
        Some(d) => d,
        None => match (memory(src), memory(dst)) {
            (Memory::Host, Memory::Device) => CopyDirection::HostToDevice,
            (Memory::Device, Memory::Host) => CopyDirection::DeviceToHost,
            (Memory::Device, Memory::Device) => CopyDirection::DeviceToDevice,
            _ => return None,
        },
    };
    Some(Copy {
        direction,
        src,
        bytes,
        stream,
    })
}

/// Where CUDA says `address` lives (the current context's view).
pub fn memory_of(address: u64) -> Memory {
    let mut kind: u32 = 0;
    // SAFETY: a valid out-pointer of the attribute's size (a CUmemorytype, read as its u32);
    // an address CUDA does not know is refused with an error code.
    let r = unsafe {
        sys::cuPointerGetAttribute(
            std::ptr::addr_of_mut!(kind).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            address,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        // Pageable host memory is unknown to CUDA.
        return Memory::Host;
    }
    let mut managed: u32 = 0;
    // SAFETY: as above (a bool attribute, read as a u32 the driver writes in part or whole).
    let r = unsafe {
        sys::cuPointerGetAttribute(
            std::ptr::addr_of_mut!(managed).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_IS_MANAGED,
            address,
        )
    };
    if r == sys::CUresult::CUDA_SUCCESS && managed & 0xff != 0 {
        return Memory::Other;
    }
    match kind {
        1 => Memory::Host,   // CU_MEMORYTYPE_HOST
        2 => Memory::Device, // CU_MEMORYTYPE_DEVICE
        _ => Memory::Other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_contiguous_copy_calls_are_read() {
        let htod = copy_call("cuMemcpyHtoDAsync_v2_ptsz").unwrap();
        assert_eq!(htod.direction, Some(CopyDirection::HostToDevice));
        assert!(htod.with_stream);
        let generic = copy_call("cuMemcpy_ptds").unwrap();
        assert_eq!(generic.direction, None);
        assert!(!generic.with_stream);
        for other in [
            "cuMemcpy2DAsync_v2",
            "cuMemcpyPeerAsync",
            "cuMemcpyHtoD",
            "cuMemcpyAsync_ptds",
            "cuMemcpyDtoD_v2_ptsz",
            "cuMemcpy3D_v2",
            "cudaMemcpyAsync",
        ] {
            assert_eq!(copy_call(other), None, "{other}");
        }
    }

    fn params(dst: u64, src: u64, bytes: usize, stream: usize) -> [u64; 4] {
        [dst, src, bytes as u64, stream as u64]
    }

    #[test]
    fn a_generic_copy_takes_its_direction_from_the_pointers() {
        let call = copy_call("cuMemcpyAsync").unwrap();
        let p = params(0x7f00_0000_1000, 0x1000, 4096, 0x55);
        let memory = |a: u64| {
            if a >= 0x7f00_0000_0000 {
                Memory::Device
            } else {
                Memory::Host
            }
        };
        // SAFETY: a parameter block of the asynchronous layout.
        let c = unsafe { read_copy(call, p.as_ptr().cast(), &memory) }.unwrap();
        assert_eq!(c.direction, CopyDirection::HostToDevice);
        assert_eq!((c.src, c.bytes, c.stream as usize), (0x1000, 4096, 0x55));
        let managed = |_: u64| Memory::Other;
        // SAFETY: as above.
        assert!(unsafe { read_copy(call, p.as_ptr().cast(), &managed) }.is_none());
    }

    #[test]
    fn empty_and_oversized_copies_are_not_replayed() {
        let call = copy_call("cuMemcpyDtoD_v2").unwrap();
        let device = |_: u64| Memory::Device;
        for bytes in [0, MAX_REPLAY_BYTES + 1] {
            let p = params(0x2000, 0x1000, bytes, 0);
            // SAFETY: a parameter block of the synchronous layout (the stream is not read).
            assert!(unsafe { read_copy(call, p.as_ptr().cast(), &device) }.is_none());
        }
        let p = params(0x2000, 0x1000, 64, 0x99);
        // SAFETY: as above.
        let c = unsafe { read_copy(call, p.as_ptr().cast(), &device) }.unwrap();
        assert!(c.stream.is_null(), "a synchronous copy names no stream");
        assert_eq!(c.direction.span_name(), "memcpy DtoD");
    }
}
