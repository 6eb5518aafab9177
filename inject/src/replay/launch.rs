//! A kernel launch as the driver API callback sees it, read once so that it can be issued again
//! on another stream: the function, grid, block, shared memory, the parameters and the launch
//! attributes, exactly.

use std::ffi::c_void;

use cudarc::driver::sys;
use wattlens_instrument::trace::LaunchShape;

/// How a launch call lays out its parameters (CUPTI's `*_params` structures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchCall {
    /// `cuLaunchKernel[_ptsz]`: function, grid, block, shared memory, stream, parameters, extra.
    Plain,
    /// `cuLaunchCooperativeKernel[_ptsz]`: as [`LaunchCall::Plain`] without `extra`.
    Cooperative,
    /// `cuLaunchKernelEx[_ptsz]`: a `CUlaunchConfig`, the function, parameters, extra.
    Ex,
}

/// The launch call a driver callback name stands for, if it is one this module reads. The
/// match is exact: a call with another layout must never be read as one of these.
pub fn launch_call(name: &str) -> Option<LaunchCall> {
    match name {
        "cuLaunchKernel" | "cuLaunchKernel_ptsz" => Some(LaunchCall::Plain),
        "cuLaunchCooperativeKernel" | "cuLaunchCooperativeKernel_ptsz" => {
            Some(LaunchCall::Cooperative)
        }
        "cuLaunchKernelEx" | "cuLaunchKernelEx_ptsz" => Some(LaunchCall::Ex),
        _ => None,
    }
}

/// How an asynchronous memset call lays out its parameters (`cuMemsetD{8,16,32}Async[_ptsz]`:
/// the destination at 0, the value at 8, the element count at 16, the stream at 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemsetCall {
    /// Bytes.
    D8,
    /// 16-bit elements.
    D16,
    /// 32-bit elements.
    D32,
}

/// The memset call a driver callback name stands for, if it is one this module reads; exact,
/// as [`launch_call`].
pub fn memset_call(name: &str) -> Option<MemsetCall> {
    match name {
        "cuMemsetD8Async" | "cuMemsetD8Async_ptsz" => Some(MemsetCall::D8),
        "cuMemsetD16Async" | "cuMemsetD16Async_ptsz" => Some(MemsetCall::D16),
        "cuMemsetD32Async" | "cuMemsetD32Async_ptsz" => Some(MemsetCall::D32),
        _ => None,
    }
}

/// A memset a launch needs before it: a persistent or stream-K kernel (cuDNN's flash
/// attention, cuBLAS's cooperative GEMMs) takes its tiles from a counter the library zeroes on
/// the launch's stream just before each launch, so a replay that repeats the launch alone does
/// a fraction of the work (15× less seen on an H100). Repeating the memset with it repeats
/// the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// Element width.
    pub call: MemsetCall,
    /// Destination.
    pub dst: sys::CUdeviceptr,
    /// The value, in the element's low bits.
    pub value: u32,
    /// Elements.
    pub count: usize,
    /// The stream the program issued it on.
    pub stream: sys::CUstream,
}

/// The largest memset taken for a counter reset, bytes: a workspace of counters, not a buffer
/// (a larger memset is the program's own work, and repeating it would be measured as the
/// kernel's).
pub const MAX_RESET_BYTES: usize = 64 << 10;

impl Reset {
    /// Bytes written.
    pub fn bytes(&self) -> usize {
        let width = match self.call {
            MemsetCall::D8 => 1,
            MemsetCall::D16 => 2,
            MemsetCall::D32 => 4,
        };
        self.count.saturating_mul(width)
    }

    /// Whether the destination is still live device memory that holds every byte written:
    /// the program may have freed it between its memset and its launch.
    pub fn target_is_live(&self) -> bool {
        let (mut start, mut size): (sys::CUdeviceptr, usize) = (0, 0);
        // SAFETY: valid out-pointers of the attributes' sizes (a CUdeviceptr, a size_t); an
        // address CUDA does not know is refused with an error code.
        let known = unsafe {
            sys::cuPointerGetAttribute(
                std::ptr::addr_of_mut!(start).cast(),
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
                self.dst,
            ) == sys::CUresult::CUDA_SUCCESS
                && sys::cuPointerGetAttribute(
                    std::ptr::addr_of_mut!(size).cast(),
                    sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_RANGE_SIZE,
                    self.dst,
                ) == sys::CUresult::CUDA_SUCCESS
        };
        let end = start.saturating_add(size as sys::CUdeviceptr);
        known
            && self.dst >= start
            && self.dst.saturating_add(self.bytes() as sys::CUdeviceptr) <= end
    }

    /// Issue this memset again on `stream`.
    ///
    /// # Safety
    /// The destination must still be the program's live device memory, with its context
    /// current.
    pub unsafe fn issue_on(&self, stream: sys::CUstream) -> sys::CUresult {
        // SAFETY: per the contract.
        unsafe {
            match self.call {
                MemsetCall::D8 => {
                    sys::cuMemsetD8Async(self.dst, self.value as u8, self.count, stream)
                }
                MemsetCall::D16 => {
                    sys::cuMemsetD16Async(self.dst, self.value as u16, self.count, stream)
                }
                MemsetCall::D32 => sys::cuMemsetD32Async(self.dst, self.value, self.count, stream),
            }
        }
    }
}

/// Read the memset a callback's `params` describe; `None` for one larger than
/// [`MAX_RESET_BYTES`].
///
/// # Safety
/// `params` must point to the parameter structure of a call of kind `call`, during the call.
pub unsafe fn read_memset(call: MemsetCall, params: *const u8) -> Option<Reset> {
    if params.is_null() {
        return None;
    }
    // SAFETY: per the contract and the layout above; the value is read at its own width.
    let reset = unsafe {
        Reset {
            call,
            dst: std::ptr::read_unaligned(params.cast::<sys::CUdeviceptr>()),
            value: match call {
                MemsetCall::D8 => u32::from(*params.add(8)),
                MemsetCall::D16 => u32::from(std::ptr::read_unaligned(params.add(8).cast::<u16>())),
                MemsetCall::D32 => u32_at(params, 8),
            },
            count: std::ptr::read_unaligned(params.add(16).cast::<usize>()),
            stream: ptr_at(params, 24),
        }
    };
    (reset.bytes() <= MAX_RESET_BYTES && reset.dst != 0).then_some(reset)
}

/// A launch attribute as CUDA lays it out (`CUlaunchAttribute`): an id, padding, and a 64-byte
/// value. Read as bytes, so that an id this build does not know stays defined.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct RawAttribute {
    /// `CUlaunchAttributeID`.
    pub id: u32,
    pad: [u8; 4],
    value: [u8; 64],
}

const _: () =
    assert!(std::mem::size_of::<RawAttribute>() == std::mem::size_of::<sys::CUlaunchAttribute>());

impl std::fmt::Debug for RawAttribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawAttribute({})", self.id)
    }
}

/// Attributes that name the program's own events: a replay must not record them.
const EVENT_ATTRIBUTES: [u32; 3] = [
    7,  // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT
    12, // CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT
    13, // CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE (graph nodes only)
];

/// One kernel launch, read from its call.
#[derive(Debug, Clone)]
pub struct Launch {
    /// How it was called.
    pub call: LaunchCall,
    /// The function.
    pub func: sys::CUfunction,
    /// Grid, block and dynamic shared memory.
    pub shape: LaunchShape,
    /// The stream the program launched it on.
    pub stream: sys::CUstream,
    /// The parameter array (valid during the call).
    pub params: *mut *mut c_void,
    /// The `extra` array (valid during the call), or null.
    pub extra: *mut *mut c_void,
    /// The launch attributes, less those that name the program's events.
    pub attributes: Vec<RawAttribute>,
    /// Whether it was launched cooperatively (by the call, or by an attribute).
    pub cooperative: bool,
    /// The memset the program issued just before it on its stream, repeated with it.
    pub reset: Option<Reset>,
}

/// Read a `u32` at byte `at` of `p`.
///
/// # Safety
/// `p + at .. p + at + 4` must be readable.
unsafe fn u32_at(p: *const u8, at: usize) -> u32 {
    // SAFETY: per the contract.
    unsafe { std::ptr::read_unaligned(p.add(at).cast::<u32>()) }
}

/// Read a pointer at byte `at` of `p`.
///
/// # Safety
/// `p + at .. p + at + 8` must be readable.
unsafe fn ptr_at<T>(p: *const u8, at: usize) -> *mut T {
    // SAFETY: per the contract.
    unsafe { std::ptr::read_unaligned(p.add(at).cast::<*mut T>()) }
}

/// Grid, block and shared memory: seven `u32` from byte `at`.
///
/// # Safety
/// The 28 bytes from `p + at` must be readable.
unsafe fn shape_at(p: *const u8, at: usize) -> LaunchShape {
    // SAFETY: per the contract.
    let v = |i: usize| unsafe { u32_at(p, at + 4 * i) };
    LaunchShape {
        grid: [v(0), v(1), v(2)],
        block: [v(3), v(4), v(5)],
        shared_mem_bytes: v(6),
    }
}

/// Read the launch a callback's `params` describe.
///
/// # Safety
/// `params` must point to the parameter structure of a call of kind `call`, during the call.
pub unsafe fn read_launch(call: LaunchCall, params: *const u8) -> Option<Launch> {
    if params.is_null() {
        return None;
    }
    // SAFETY (all reads): the layouts of cuLaunchKernel_params (f at 0; seven u32 from 8;
    // hStream at 40; kernelParams at 48; extra at 56), cuLaunchCooperativeKernel_params (the
    // same without extra) and cuLaunchKernelEx_params (config at 0, f at 8, kernelParams at
    // 16, extra at 24), with CUlaunchConfig (seven u32 from 0, hStream at 32, attrs at 40,
    // numAttrs at 48).
    let launch = unsafe {
        match call {
            LaunchCall::Plain | LaunchCall::Cooperative => Launch {
                call,
                func: ptr_at(params, 0),
                shape: shape_at(params, 8),
                stream: ptr_at(params, 40),
                params: ptr_at(params, 48),
                extra: if call == LaunchCall::Plain {
                    ptr_at(params, 56)
                } else {
                    std::ptr::null_mut()
                },
                attributes: Vec::new(),
                cooperative: call == LaunchCall::Cooperative,
                reset: None,
            },
            LaunchCall::Ex => {
                let config: *const u8 = ptr_at(params, 0);
                if config.is_null() {
                    return None;
                }
                let attrs: *const RawAttribute = ptr_at(config, 40);
                let count = u32_at(config, 48) as usize;
                let all: &[RawAttribute] = if attrs.is_null() || count == 0 || count > 64 {
                    &[]
                } else {
                    std::slice::from_raw_parts(attrs, count)
                };
                // CU_LAUNCH_ATTRIBUTE_COOPERATIVE with a non-zero value.
                let cooperative = all
                    .iter()
                    .any(|a| a.id == 2 && a.value[..4] != [0, 0, 0, 0]);
                Launch {
                    call,
                    func: ptr_at(params, 8),
                    shape: shape_at(config, 0),
                    stream: ptr_at(config, 32),
                    params: ptr_at(params, 16),
                    extra: ptr_at(params, 24),
                    attributes: all
                        .iter()
                        .filter(|a| !EVENT_ATTRIBUTES.contains(&a.id))
                        .copied()
                        .collect(),
                    cooperative,
                    reset: None,
                }
            }
        }
    };
    (!launch.func.is_null()).then_some(launch)
}

impl Launch {
    /// Issue this launch again on `stream`, after its counter reset if it has one.
    ///
    /// # Safety
    /// As [`Launch::issue_on`].
    pub unsafe fn issue_with_reset_on(&self, stream: sys::CUstream) -> sys::CUresult {
        if let Some(reset) = &self.reset {
            // SAFETY: per the contract; the program's memset target is live during its launch.
            let r = unsafe { reset.issue_on(stream) };
            if r != sys::CUresult::CUDA_SUCCESS {
                return r;
            }
        }
        // SAFETY: per the contract.
        unsafe { self.issue_on(stream) }
    }

    /// Issue this launch again on `stream`, with the same function, shape, parameters and
    /// attributes.
    ///
    /// # Safety
    /// Only during the program's call (its parameter arrays are live), with the launch's
    /// context current.
    pub unsafe fn issue_on(&self, stream: sys::CUstream) -> sys::CUresult {
        let s = self.shape;
        // SAFETY: per the contract; the arrays are the program's own for this launch.
        unsafe {
            match self.call {
                LaunchCall::Plain => sys::cuLaunchKernel(
                    self.func,
                    s.grid[0],
                    s.grid[1],
                    s.grid[2],
                    s.block[0],
                    s.block[1],
                    s.block[2],
                    s.shared_mem_bytes,
                    stream,
                    self.params,
                    self.extra,
                ),
                LaunchCall::Cooperative => sys::cuLaunchCooperativeKernel(
                    self.func,
                    s.grid[0],
                    s.grid[1],
                    s.grid[2],
                    s.block[0],
                    s.block[1],
                    s.block[2],
                    s.shared_mem_bytes,
                    stream,
                    self.params,
                ),
                LaunchCall::Ex => {
                    let mut attributes = self.attributes.clone();
                    let config = sys::CUlaunchConfig {
                        gridDimX: s.grid[0],
                        gridDimY: s.grid[1],
                        gridDimZ: s.grid[2],
                        blockDimX: s.block[0],
                        blockDimY: s.block[1],
                        blockDimZ: s.block[2],
                        sharedMemBytes: s.shared_mem_bytes,
                        hStream: stream,
                        attrs: if attributes.is_empty() {
                            std::ptr::null_mut()
                        } else {
                            attributes.as_mut_ptr().cast()
                        },
                        numAttrs: attributes.len() as u32,
                    };
                    sys::cuLaunchKernelEx(&config, self.func, self.params, self.extra)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_launch_calls_with_known_layouts_are_read() {
        assert_eq!(launch_call("cuLaunchKernel"), Some(LaunchCall::Plain));
        assert_eq!(launch_call("cuLaunchKernelEx_ptsz"), Some(LaunchCall::Ex));
        assert_eq!(
            launch_call("cuLaunchCooperativeKernel"),
            Some(LaunchCall::Cooperative)
        );
        for other in [
            "cuLaunchGrid",
            "cuGraphLaunch",
            "cuLaunchHostFunc",
            "cudaLaunchKernel",
        ] {
            assert_eq!(launch_call(other), None, "{other}");
        }
    }

    #[test]
    fn small_async_memsets_are_read_as_counter_resets() {
        assert_eq!(memset_call("cuMemsetD32Async"), Some(MemsetCall::D32));
        assert_eq!(memset_call("cuMemsetD8Async_ptsz"), Some(MemsetCall::D8));
        for other in ["cuMemsetD8_v2", "cuMemsetD2D8Async", "cudaMemsetAsync"] {
            assert_eq!(memset_call(other), None, "{other}");
        }
        let params = |value: u32, count: usize| {
            let mut p = [0u8; 32];
            p[0..8].copy_from_slice(&0xdead_0000usize.to_ne_bytes());
            p[8..12].copy_from_slice(&value.to_ne_bytes());
            p[16..24].copy_from_slice(&count.to_ne_bytes());
            p[24..32].copy_from_slice(&0x55usize.to_ne_bytes());
            p
        };
        let p = params(0x0102_0304, 1);
        // SAFETY: 32 bytes laid out as cuMemsetD32Async_params.
        let r = unsafe { read_memset(MemsetCall::D32, p.as_ptr()) }.unwrap();
        assert_eq!(
            (r.dst, r.value, r.count, r.bytes()),
            (0xdead_0000, 0x0102_0304, 1, 4)
        );
        assert_eq!(r.stream as usize, 0x55);
        // SAFETY: as above; a byte memset reads the low byte only.
        let r = unsafe { read_memset(MemsetCall::D8, p.as_ptr()) }.unwrap();
        assert_eq!(r.value, u32::from(0x0102_0304u32.to_ne_bytes()[0]));
        // A buffer's memset is the program's work, not a counter reset.
        let big = params(0, MAX_RESET_BYTES / 4 + 1);
        // SAFETY: as above.
        assert!(unsafe { read_memset(MemsetCall::D32, big.as_ptr()) }.is_none());
    }

    #[test]
    fn a_plain_launch_is_read_from_its_parameter_layout() {
        let mut args = [std::ptr::null_mut::<c_void>(); 2];
        let mut p = [0u8; 64];
        p[0..8].copy_from_slice(&0x1234usize.to_ne_bytes());
        for (i, v) in [4u32, 2, 1, 256, 1, 1, 1024].iter().enumerate() {
            p[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_ne_bytes());
        }
        p[40..48].copy_from_slice(&0x77usize.to_ne_bytes());
        p[48..56].copy_from_slice(&(args.as_mut_ptr() as usize).to_ne_bytes());
        // SAFETY: a 64-byte buffer laid out as cuLaunchKernel_params.
        let l = unsafe { read_launch(LaunchCall::Plain, p.as_ptr()) }.unwrap();
        assert_eq!(l.func as usize, 0x1234);
        assert_eq!(l.shape.grid, [4, 2, 1]);
        assert_eq!(l.shape.block, [256, 1, 1]);
        assert_eq!(l.shape.shared_mem_bytes, 1024);
        assert_eq!(l.stream as usize, 0x77);
        assert_eq!(l.params, args.as_mut_ptr());
        assert!(l.extra.is_null() && !l.cooperative);
    }

    #[test]
    fn an_ex_launch_keeps_its_attributes_but_not_the_programs_events() {
        let attr = |id: u32, v: u32| {
            let mut value = [0u8; 64];
            value[..4].copy_from_slice(&v.to_ne_bytes());
            RawAttribute {
                id,
                pad: [0; 4],
                value,
            }
        };
        // Cluster dims, cooperative, a completion event.
        let mut attrs = [attr(4, 2), attr(2, 1), attr(12, 9)];
        let mut config = [0u8; 56];
        for (i, v) in [132u32, 1, 1, 384, 1, 1, 0].iter().enumerate() {
            config[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        config[40..48].copy_from_slice(&(attrs.as_mut_ptr() as usize).to_ne_bytes());
        config[48..52].copy_from_slice(&3u32.to_ne_bytes());
        let mut p = [0u8; 32];
        p[0..8].copy_from_slice(&(config.as_ptr() as usize).to_ne_bytes());
        p[8..16].copy_from_slice(&0x99usize.to_ne_bytes());
        // SAFETY: buffers laid out as cuLaunchKernelEx_params and CUlaunchConfig.
        let l = unsafe { read_launch(LaunchCall::Ex, p.as_ptr()) }.unwrap();
        assert_eq!(l.func as usize, 0x99);
        assert_eq!(l.shape.grid, [132, 1, 1]);
        assert_eq!(
            l.attributes.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![4, 2]
        );
        assert!(l.cooperative);
    }
}
