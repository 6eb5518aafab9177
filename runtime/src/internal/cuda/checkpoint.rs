//! CUPTI's checkpoint API: save a context's device memory and restore it exactly, so that a
//! kernel launch can be repeated for measurement and the program still sees the memory it
//! would have seen.
//!
//! The API (`cuptiCheckpointSave`, `cuptiCheckpointRestore`, `cuptiCheckpointFree`, C linkage)
//! lives in `libcheckpoint.so`, beside libcupti; cudarc does not bind it. Layered as cudarc
//! layers the driver: [`sys`] (the C layout and the loaded entry points), [`result`] (each call
//! as a `Result`), and the safe [`Checkpoint`], which frees its data when dropped.
//!
//! Measured on an H100 (CUDA 13.0, driver 580.159.04): with 1 GiB allocated a save takes
//! 1.4–2.1 ms and a restore 0.75 ms; with 8 GiB, 7.2 ms and 5.7 ms; restores are exact.

use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::driver::sys::CUcontext;

/// Why a checkpoint could not be taken or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The library is not there.
    #[error("CUPTI's checkpoint library (libcheckpoint.so) was not found beside libcupti ({0})")]
    NotFound(String),
    /// CUPTI refused a call.
    #[error("CUPTI refused to {what} a checkpoint (CUptiResult {code})")]
    Refused {
        /// save, restore or free.
        what: &'static str,
        /// CUPTI's result code.
        code: u32,
    },
}

pub mod sys {
    //! The C layout of `CUpti_Checkpoint` and the entry points, loaded once.

    use super::{c_void, CUcontext};

    /// `CUpti_Checkpoint` (cupti_checkpoint.h): 48 bytes on 64-bit targets.
    #[repr(C)]
    #[derive(Debug)]
    pub struct CUptiCheckpoint {
        /// Must be [`STRUCT_SIZE`].
        pub struct_size: usize,
        /// The context to save (the current one when null).
        pub ctx: CUcontext,
        /// Leave this much device memory free, MB.
        pub reserve_device_mb: usize,
        /// Leave this much host memory free, MB.
        pub reserve_host_mb: usize,
        /// Allow a save over an existing checkpoint.
        pub allow_overwrite: u8,
        /// `CUpti_CheckpointOptimizations` flags.
        pub optimizations: u8,
        /// CUPTI's own, null at first.
        pub p_priv: *mut c_void,
    }

    /// `CUpti_Checkpoint_STRUCT_SIZE`: the offset of `pPriv` plus its size.
    pub const STRUCT_SIZE: usize =
        std::mem::offset_of!(CUptiCheckpoint, p_priv) + std::mem::size_of::<*mut c_void>();

    const _: () = assert!(STRUCT_SIZE == 48);

    /// A checkpoint entry point: takes the handle, returns a `CUptiResult`.
    pub type Entry = unsafe extern "C" fn(*mut CUptiCheckpoint) -> u32;

    /// The three entry points.
    #[derive(Debug, Clone, Copy)]
    pub struct Api {
        /// `cuptiCheckpointSave`.
        pub save: Entry,
        /// `cuptiCheckpointRestore`.
        pub restore: Entry,
        /// `cuptiCheckpointFree`.
        pub free: Entry,
    }
}

/// The loaded API, or why it could not be loaded; tried once per process.
static API: OnceLock<Result<sys::Api, CheckpointError>> = OnceLock::new();

/// The checkpoint API, loaded from beside the libcupti this process uses (or `path`, tried
/// first, when given).
///
/// # Errors
/// [`CheckpointError::NotFound`] when no libcheckpoint.so offers the three entry points.
pub fn api(path: Option<&Path>) -> Result<sys::Api, CheckpointError> {
    API.get_or_init(|| load(path)).clone()
}

fn load(path: Option<&Path>) -> Result<sys::Api, CheckpointError> {
    let mut tried: Vec<PathBuf> = path.map(Path::to_path_buf).into_iter().collect();
    if let Some(dir) = cupti_dir() {
        tried.push(dir.join("libcheckpoint.so"));
    }
    tried.push(PathBuf::from("libcheckpoint.so"));
    for candidate in &tried {
        if let Some(api) = open(candidate) {
            return Ok(api);
        }
    }
    Err(CheckpointError::NotFound(format!(
        "tried {}",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The folder of the libcupti loaded in this process.
fn cupti_dir() -> Option<PathBuf> {
    let name = CString::new("cuptiGetVersion").ok()?;
    // SAFETY: dlsym over every loaded object with a valid NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: a zeroed Dl_info is a valid out-value; `sym` is an address in a loaded object.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::dladdr(sym, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr's file name is a NUL-terminated string owned by the loader.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    Path::new(file.to_str().ok()?)
        .parent()
        .map(Path::to_path_buf)
}

/// The entry points of the library at `path`, if it loads and has them all. The library stays
/// loaded for the life of the process.
fn open(path: &Path) -> Option<sys::Api> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: dlopen with a valid path; the handle is never closed.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return None;
    }
    let entry = |name: &str| -> Option<sys::Entry> {
        let n = CString::new(name).ok()?;
        // SAFETY: a live handle and a NUL-terminated name.
        let f = unsafe { libc::dlsym(handle, n.as_ptr()) };
        // SAFETY: the three entry points take a `CUpti_Checkpoint*` and return a CUptiResult
        // (an enum of C int size, read as u32 so that any value is defined).
        (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, sys::Entry>(f) })
    };
    Some(sys::Api {
        save: entry("cuptiCheckpointSave")?,
        restore: entry("cuptiCheckpointRestore")?,
        free: entry("cuptiCheckpointFree")?,
    })
}

pub mod result {
    //! Each entry point as a `Result`.

    use super::{sys, CheckpointError};

    fn check(what: &'static str, code: u32) -> Result<(), CheckpointError> {
        if code == 0 {
            Ok(())
        } else {
            Err(CheckpointError::Refused { what, code })
        }
    }

    /// Save the device memory of `handle`'s context.
    ///
    /// # Safety
    /// `handle` must be a valid, initialised checkpoint handle of a live context, used by one
    /// thread at a time, with no work of that context running.
    ///
    /// # Errors
    /// [`CheckpointError::Refused`] with CUPTI's code.
    pub unsafe fn save(
        api: &sys::Api,
        handle: &mut sys::CUptiCheckpoint,
    ) -> Result<(), CheckpointError> {
        // SAFETY: per the contract.
        check("save", unsafe { (api.save)(handle) })
    }

    /// Restore the memory saved in `handle`.
    ///
    /// # Safety
    /// As [`save`], after a successful save.
    ///
    /// # Errors
    /// [`CheckpointError::Refused`] with CUPTI's code.
    pub unsafe fn restore(
        api: &sys::Api,
        handle: &mut sys::CUptiCheckpoint,
    ) -> Result<(), CheckpointError> {
        // SAFETY: per the contract.
        check("restore", unsafe { (api.restore)(handle) })
    }

    /// Free what `handle` saved.
    ///
    /// # Safety
    /// As [`save`].
    ///
    /// # Errors
    /// [`CheckpointError::Refused`] with CUPTI's code.
    pub unsafe fn free(
        api: &sys::Api,
        handle: &mut sys::CUptiCheckpoint,
    ) -> Result<(), CheckpointError> {
        // SAFETY: per the contract.
        check("free", unsafe { (api.free)(handle) })
    }
}

/// A saved copy of one context's device memory, freed when dropped.
#[derive(Debug)]
pub struct Checkpoint {
    api: sys::Api,
    handle: Box<sys::CUptiCheckpoint>,
}

impl Checkpoint {
    /// Save the device memory of context `ctx`.
    ///
    /// # Safety
    /// `ctx` must be a live context with no work running (the caller synchronised it), and no
    /// other thread may launch work into it until the checkpoint is dropped.
    ///
    /// # Errors
    /// [`CheckpointError`] when the library is missing or CUPTI refuses (the memory does not
    /// fit, for one).
    pub unsafe fn save(ctx: CUcontext) -> Result<Self, CheckpointError> {
        let api = api(None)?;
        let mut handle = Box::new(sys::CUptiCheckpoint {
            struct_size: sys::STRUCT_SIZE,
            ctx,
            reserve_device_mb: 0,
            reserve_host_mb: 0,
            allow_overwrite: 0,
            optimizations: 0,
            p_priv: std::ptr::null_mut(),
        });
        // SAFETY: a fresh, initialised handle; per the contract for the context.
        unsafe { result::save(&api, &mut handle) }?;
        Ok(Self { api, handle })
    }

    /// Put the saved memory back.
    ///
    /// # Safety
    /// No work of the context may be running.
    ///
    /// # Errors
    /// [`CheckpointError::Refused`] when CUPTI refuses.
    pub unsafe fn restore(&mut self) -> Result<(), CheckpointError> {
        // SAFETY: saved successfully (the constructor); per the contract for the context.
        unsafe { result::restore(&self.api, &mut self.handle) }
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        // SAFETY: the handle was saved and is freed once, here.
        let _ = unsafe { result::free(&self.api, &mut self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clear_error() {
        let err = load(Some(Path::new("/no/such/libcheckpoint.so")));
        // Without CUDA (CI) nothing is found; with it, the library may well be found.
        if let Err(e) = err {
            let text = e.to_string();
            assert!(
                text.contains("libcheckpoint.so") && text.contains("/no/such"),
                "{text}"
            );
        }
    }
}
