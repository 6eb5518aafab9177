//! Instrumented kernel launches that read like cudarc's:
//! `profiler.launch(&stream, &kernel).arg(&x).arg(&mut y).arg(&n).launch(cfg)`.

use std::panic::Location;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchArgs, LaunchConfig, PushKernelArg};
use wattlens_instrument::trace::{AccessMode, LaunchShape, SpanKind};

use super::error::CudaError;
use super::profiler::{DeviceBuffer, Kernel, Profiler};
use super::scalar::{bytes_of, Scalar};
use crate::buffers::Touches;
use crate::digest::ArgDigest;
use crate::recorder::OpDesc;
use crate::timing::Expect;

/// One argument as the recorder sees it.
enum ArgInfo {
    /// Passed by value: its size in bytes.
    Scalar(usize),
    /// A device buffer: its id if the session issued it, else its address.
    Buffer { id: Option<u64>, address: u64 },
}

/// A kernel launch being built; pass arguments with [`ProfiledArg::arg`], then launch.
pub struct ProfiledLaunch<'a> {
    prof: &'a Profiler,
    stream: &'a Arc<CudaStream>,
    kernel: &'a Kernel,
    inner: LaunchArgs<'a>,
    digest: ArgDigest,
    args: Vec<ArgInfo>,
}

/// Pushing one argument onto a [`ProfiledLaunch`]: scalars by reference, buffers by
/// reference (read) or mutable reference (may be written).
pub trait ProfiledArg<T> {
    /// Push `arg` as the next kernel argument.
    fn arg(&mut self, arg: T) -> &mut Self;
}

impl<'a, 'b: 'a, T: Scalar> ProfiledArg<&'b T> for ProfiledLaunch<'a> {
    #[inline]
    fn arg(&mut self, arg: &'b T) -> &mut Self {
        self.digest.push(bytes_of(arg));
        self.args.push(ArgInfo::Scalar(std::mem::size_of::<T>()));
        self.inner.arg(arg);
        self
    }
}

impl<'a, 'b: 'a, T> ProfiledArg<&'b DeviceBuffer<T>> for ProfiledLaunch<'a> {
    #[inline]
    fn arg(&mut self, arg: &'b DeviceBuffer<T>) -> &mut Self {
        self.args.push(ArgInfo::Buffer {
            id: Some(arg.id),
            address: arg.address,
        });
        self.inner.arg(&arg.slice);
        self
    }
}

impl<'a, 'b: 'a, T> ProfiledArg<&'b mut DeviceBuffer<T>> for ProfiledLaunch<'a> {
    #[inline]
    fn arg(&mut self, arg: &'b mut DeviceBuffer<T>) -> &mut Self {
        self.args.push(ArgInfo::Buffer {
            id: Some(arg.id),
            address: arg.address,
        });
        self.inner.arg(&mut arg.slice);
        self
    }
}

impl<'a, 'b: 'a, T> ProfiledArg<&'b CudaSlice<T>> for ProfiledLaunch<'a> {
    #[inline]
    fn arg(&mut self, arg: &'b CudaSlice<T>) -> &mut Self {
        let (address, _sync) = arg.device_ptr(self.stream);
        self.args.push(ArgInfo::Buffer { id: None, address });
        self.inner.arg(arg);
        self
    }
}

impl<'a, 'b: 'a, T> ProfiledArg<&'b mut CudaSlice<T>> for ProfiledLaunch<'a> {
    #[inline]
    fn arg(&mut self, arg: &'b mut CudaSlice<T>) -> &mut Self {
        let address = {
            let (address, _sync) = arg.device_ptr(self.stream);
            address
        };
        self.args.push(ArgInfo::Buffer { id: None, address });
        self.inner.arg(arg);
        self
    }
}

impl Profiler {
    /// Start building an instrumented launch of `kernel` on `stream`.
    pub fn launch<'a>(
        &'a self,
        stream: &'a Arc<CudaStream>,
        kernel: &'a Kernel,
    ) -> ProfiledLaunch<'a> {
        ProfiledLaunch {
            prof: self,
            stream,
            kernel,
            inner: stream.launch_builder(&kernel.func),
            digest: ArgDigest::new(),
            args: Vec::with_capacity(8),
        }
    }
}

impl ProfiledLaunch<'_> {
    /// Launch the kernel, recording it.
    ///
    /// # Safety
    /// As for cudarc's `LaunchArgs::launch`: the arguments must match the kernel's parameters
    /// and the kernel must stay within its buffers. Where the driver reports parameter sizes
    /// (CUDA 12.4+), a wrong count or size is caught here as an error instead.
    ///
    /// # Errors
    /// [`CudaError::Arguments`] for arguments that do not match the kernel's parameters;
    /// [`CudaError::Kernel`] when the driver rejects the launch; [`CudaError::Timer`] when
    /// timing fails.
    #[track_caller]
    pub unsafe fn launch(&mut self, cfg: LaunchConfig) -> Result<(), CudaError> {
        let caller = Location::caller();
        let prof = self.prof;
        let kernel = self.kernel;
        let site = super::profiler::lock(&prof.rec).site(caller);
        let site_text = || {
            super::profiler::lock(&prof.rec)
                .strings
                .get(site)
                .unwrap_or_default()
                .to_owned()
        };
        if let Some(problem) = self.check_args() {
            return Err(CudaError::Arguments {
                kernel: kernel.name.to_string(),
                site: site_text(),
                problem,
            });
        }
        let shape = LaunchShape {
            grid: [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2],
            block: [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2],
            shared_mem_bytes: cfg.shared_mem_bytes,
        };
        let expect = Expect::Kernel {
            name: kernel.name.clone(),
            shape,
        };
        let inner = &mut self.inner;
        let args = &self.args;
        let digest = self.digest.finish();
        let mut once = || {
            // SAFETY: the caller upholds cudarc's launch contract (this fn's # Safety); a
            // replay launches the same kernel with the same arguments again.
            unsafe { inner.launch(cfg) }
                .map(|_| ())
                .map_err(|e| CudaError::Kernel {
                    kernel: kernel.name.to_string(),
                    site: site_text(),
                    message: e.to_string(),
                })
        };
        // Pointer arguments and their modes, for the replay's hazard check (only when asked).
        let replaying = prof.config.measure_alone_ns.is_some();
        let mut buffers: Vec<(u64, AccessMode)> = Vec::new();
        let seq = prof.issue(self.stream, expect, &mut once, |rec, device, stream| {
            let mut touches = Touches::default();
            for (i, a) in args.iter().enumerate() {
                if let ArgInfo::Buffer { id, address } = a {
                    let id = id.unwrap_or_else(|| rec.buffers.id_at(device, *address));
                    rec.buffers.touch(id, kernel.access(i), &mut touches);
                    if replaying {
                        buffers.push((id, kernel.access(i)));
                    }
                }
            }
            OpDesc {
                device,
                stream,
                kind: SpanKind::Kernel,
                name: kernel.name_id,
                launch: Some(shape),
                args_digest: digest,
                touches,
                site,
                padding_op: Some(kernel.op_class),
            }
        })?;
        prof.measure_alone(self.stream, (kernel, shape), (seq, &buffers), once)
    }

    /// What is wrong with the arguments, judged by the driver's parameter sizes.
    fn check_args(&self) -> Option<String> {
        let params = self.kernel.params.as_ref()?;
        if params.len() != self.args.len() {
            return Some(format!(
                "it takes {} parameters but {} arguments were passed",
                params.len(),
                self.args.len()
            ));
        }
        for (i, (a, &size)) in self.args.iter().zip(params).enumerate() {
            let got = match a {
                ArgInfo::Scalar(n) => *n,
                ArgInfo::Buffer { .. } => std::mem::size_of::<u64>(),
            };
            if got != size {
                return Some(format!(
                    "parameter {i} is {size} bytes but the argument passed is {got} bytes"
                ));
            }
        }
        None
    }
}
