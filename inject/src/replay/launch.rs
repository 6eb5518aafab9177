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
                }
            }
        }
    };
    (!launch.func.is_null()).then_some(launch)
}

impl Launch {
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
