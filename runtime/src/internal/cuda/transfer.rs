//! Instrumented allocations, copies and memsets: bytes, direction, buffer identity and
//! versions, and a content digest of what crossed the bus (what redundant-transfer
//! detection compares).

use std::panic::Location;
use std::sync::Arc;

use cudarc::driver::{result, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits};
use wattlens_instrument::trace::{AccessMode, Annotation, CopyDirection, SpanKind, StrId};

use super::error::CudaError;
use super::profiler::{lock, DeviceBuffer, Profiler};
use super::scalar::{slice_bytes, Scalar};
use crate::buffers::Touches;
use crate::digest::content_digest;
use crate::recorder::{OpDesc, Recorder};
use crate::timing::Expect;

fn transfer_err(what: &'static str, site: String) -> impl FnOnce(result::DriverError) -> CudaError {
    move |e| CudaError::Transfer {
        what,
        site,
        problem: e.to_string(),
    }
}

/// An error unless `len` elements fit a destination of `room`.
fn fits(what: &'static str, site: &str, len: usize, room: usize) -> Result<(), CudaError> {
    if len <= room {
        return Ok(());
    }
    Err(CudaError::Transfer {
        what,
        site: site.to_owned(),
        problem: format!("{len} elements do not fit a destination of {room}"),
    })
}

impl Profiler {
    /// Record the host time since `from_ns` as the profiler's own overhead (over 2 µs).
    fn note_overhead(&self, stream: &CudaStream, from_ns: u64) {
        let to_ns = self.now_ns();
        if to_ns.saturating_sub(from_ns) > 2_000 {
            if let Ok(device) = self.device_of(stream) {
                lock(&self.rec).annotations.push(Annotation::Overhead {
                    device,
                    from_ns,
                    to_ns,
                });
            }
        }
    }

    /// A buffer holding a copy of `src`, allocated without the zero-fill of
    /// [`Profiler::alloc_zeros`] (which a full upload would overwrite unread: a dead write).
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when the allocation or the copy fails.
    #[track_caller]
    pub fn upload<T: Scalar + DeviceRepr>(
        &self,
        stream: &Arc<CudaStream>,
        src: &[T],
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let caller = Location::caller();
        let mut buf = self.alloc_uninit(stream, src.len(), caller)?;
        self.htod_at(stream, src, &mut buf, caller)?;
        Ok(buf)
    }

    fn site_of(&self, caller: &'static Location<'static>) -> (StrId, String) {
        let mut rec = lock(&self.rec);
        let id = rec.site(caller);
        let text = rec.strings.get(id).unwrap_or_default().to_owned();
        (id, text)
    }

    /// A zeroed buffer of `len` elements on `stream`'s device; the zeroing is recorded as a
    /// memset (version 1).
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when the allocation or memset fails (out of memory, say).
    #[track_caller]
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let mut buf = self.alloc_uninit(stream, len, Location::caller())?;
        self.memset_at(stream, &mut buf, 0, Location::caller())?;
        Ok(buf)
    }

    /// A registered buffer of `len` elements whose content is undefined until written; every
    /// caller writes all of it before the buffer is handed out.
    fn alloc_uninit<T: DeviceRepr>(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
        caller: &'static Location<'static>,
    ) -> Result<DeviceBuffer<T>, CudaError> {
        let (_, site_text) = self.site_of(caller);
        let device = self.device_of(stream)?;
        // SAFETY: the callers (alloc_zeros, upload) write every element before returning the
        // buffer, so nothing can read it uninitialised.
        let slice = unsafe { stream.alloc::<T>(len) }.map_err(transfer_err(
            "allocating a device buffer",
            format!(
                "{site_text} ({} bytes)",
                len.saturating_mul(std::mem::size_of::<T>())
            ),
        ))?;
        let address = {
            let (address, _sync) = slice.device_ptr(stream);
            address
        };
        let id = {
            let mut rec = lock(&self.rec);
            let id = rec.buffers.register(device, address);
            rec.annotations
                .push(wattlens_instrument::trace::Annotation::Buffer {
                    id,
                    device,
                    bytes: (len * std::mem::size_of::<T>()) as u64,
                });
            id
        };
        Ok(DeviceBuffer {
            slice,
            id,
            device,
            address,
            rec: Arc::downgrade(&self.rec),
        })
    }

    /// Set every byte of `dst` to `value`.
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when the driver fails.
    #[track_caller]
    pub fn memset<T>(
        &self,
        stream: &Arc<CudaStream>,
        dst: &mut DeviceBuffer<T>,
        value: u8,
    ) -> Result<(), CudaError> {
        self.memset_at(stream, dst, value, Location::caller())
    }

    fn memset_at<T>(
        &self,
        stream: &Arc<CudaStream>,
        dst: &mut DeviceBuffer<T>,
        value: u8,
        caller: &'static Location<'static>,
    ) -> Result<(), CudaError> {
        let (site, site_text) = self.site_of(caller);
        let bytes = dst.slice.num_bytes();
        let (ptr, id) = (dst.address, dst.id);
        self.issue(
            stream,
            Expect::Memset {
                bytes: bytes as u64,
            },
            || {
                // SAFETY: `ptr` is the start of `dst`, `bytes` long, alive for this call.
                unsafe { result::memset_d8_async(ptr, value, bytes, stream.cu_stream()) }
                    .map_err(transfer_err("memset", site_text))
            },
            |rec, device, stream| {
                op(
                    rec,
                    device,
                    stream,
                    "memset",
                    site,
                    SpanKind::Memset {
                        bytes: bytes as u64,
                        value,
                    },
                    &[(id, AccessMode::Write)],
                )
            },
        )?;
        Ok(())
    }

    /// Copy `src` from the host into `dst` (the first `src.len()` elements).
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when `src` is longer than `dst` or the driver fails.
    #[track_caller]
    pub fn htod<T: Scalar>(
        &self,
        stream: &Arc<CudaStream>,
        src: &[T],
        dst: &mut DeviceBuffer<T>,
    ) -> Result<(), CudaError> {
        self.htod_at(stream, src, dst, Location::caller())
    }

    fn htod_at<T: Scalar>(
        &self,
        stream: &Arc<CudaStream>,
        src: &[T],
        dst: &mut DeviceBuffer<T>,
        caller: &'static Location<'static>,
    ) -> Result<(), CudaError> {
        let (site, site_text) = self.site_of(caller);
        fits("host-to-device copy", &site_text, src.len(), dst.len())?;
        let bytes = std::mem::size_of_val(src) as u64;
        let hash_from_ns = self.now_ns();
        let digest = content_digest(slice_bytes(src), self.config.content_hash);
        self.note_overhead(stream, hash_from_ns);
        let id = dst.id;
        let slice = &mut dst.slice;
        self.issue(
            stream,
            Expect::Memcpy { bytes },
            || {
                stream
                    .memcpy_htod(src, slice)
                    .map_err(transfer_err("host-to-device copy", site_text))
            },
            |rec, device, stream| {
                op(
                    rec,
                    device,
                    stream,
                    CopyDirection::HostToDevice.span_name(),
                    site,
                    SpanKind::Memcpy {
                        direction: CopyDirection::HostToDevice,
                        bytes,
                        content_digest: digest,
                    },
                    &[(id, AccessMode::Write)],
                )
            },
        )?;
        Ok(())
    }

    /// Copy `src` to the host into `dst` (the first `src.len()` elements); returns when the
    /// data has arrived.
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when `dst` is shorter than `src` or the driver fails.
    #[track_caller]
    pub fn dtoh<T: Scalar>(
        &self,
        stream: &Arc<CudaStream>,
        src: &DeviceBuffer<T>,
        dst: &mut [T],
    ) -> Result<(), CudaError> {
        let (site, site_text) = self.site_of(Location::caller());
        fits("device-to-host copy", &site_text, src.len(), dst.len())?;
        let bytes = src.slice.num_bytes() as u64;
        let id = src.id;
        let dst_view = &mut dst[..src.len()];
        let seq = self.issue(
            stream,
            Expect::Memcpy { bytes },
            || {
                stream
                    .memcpy_dtoh(&src.slice, dst_view)
                    .map_err(transfer_err("device-to-host copy", site_text.clone()))?;
                // A pageable destination makes the copy synchronous in cudarc, but make sure.
                stream
                    .synchronize()
                    .map_err(transfer_err("device-to-host copy", site_text))
            },
            |rec, device, stream| {
                op(
                    rec,
                    device,
                    stream,
                    CopyDirection::DeviceToHost.span_name(),
                    site,
                    SpanKind::Memcpy {
                        direction: CopyDirection::DeviceToHost,
                        bytes,
                        content_digest: None,
                    },
                    &[(id, AccessMode::Read)],
                )
            },
        )?;
        // The content is on the host now: digest it into the recorded span. The GPU may idle
        // meanwhile; that time is the profiler's, recorded as such.
        let hash_from_ns = self.now_ns();
        let digest = content_digest(slice_bytes(&dst[..src.len()]), self.config.content_hash);
        self.note_overhead(stream, hash_from_ns);
        lock(&self.rec).set_content_digest(seq, digest);
        Ok(())
    }

    /// Copy `src` into `dst` on the device.
    ///
    /// # Errors
    /// [`CudaError::Transfer`] when `src` is longer than `dst` or the driver fails.
    #[track_caller]
    pub fn dtod<T>(
        &self,
        stream: &Arc<CudaStream>,
        src: &DeviceBuffer<T>,
        dst: &mut DeviceBuffer<T>,
    ) -> Result<(), CudaError> {
        let (site, site_text) = self.site_of(Location::caller());
        fits("device-to-device copy", &site_text, src.len(), dst.len())?;
        let bytes = src.slice.num_bytes() as u64;
        let (src_id, dst_id) = (src.id, dst.id);
        let slice = &mut dst.slice;
        self.issue(
            stream,
            Expect::Memcpy { bytes },
            || {
                stream
                    .memcpy_dtod(&src.slice, slice)
                    .map_err(transfer_err("device-to-device copy", site_text))
            },
            |rec, device, stream| {
                op(
                    rec,
                    device,
                    stream,
                    CopyDirection::DeviceToDevice.span_name(),
                    site,
                    SpanKind::Memcpy {
                        direction: CopyDirection::DeviceToDevice,
                        bytes,
                        content_digest: None,
                    },
                    &[(src_id, AccessMode::Read), (dst_id, AccessMode::Write)],
                )
            },
        )?;
        Ok(())
    }
}

/// The description of a copy or memset touching `buffers`.
fn op(
    rec: &mut Recorder,
    device: u32,
    stream: u64,
    label: &str,
    site: StrId,
    kind: SpanKind,
    buffers: &[(u64, AccessMode)],
) -> OpDesc {
    let mut touches = Touches::default();
    for &(id, mode) in buffers {
        rec.buffers.touch(id, mode, &mut touches);
    }
    OpDesc {
        device,
        stream,
        kind,
        name: rec.intern(label),
        launch: None,
        args_digest: 0,
        touches,
        site,
        padding_op: None,
    }
}
