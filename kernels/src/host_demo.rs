//! The pass's host fixture (`passes/tests/fixtures/host/launch_demo.c`): a C program that
//! drives the CUDA driver API through dlopen, instrumented by the pass at build time with
//! regions (`prefill` by annotation, `decode_*` by pattern) and launch sites.

use std::ffi::{c_char, c_int, CString};

use wattlens_instrument::{Manifest, ManifestError};

/// The manifest the pass wrote for the fixture: its launch sites and regions.
pub const MANIFEST_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/host_manifest.json"));

#[link(name = "launch_demo", kind = "static")]
extern "C" {
    fn launch_demo_run(ptx: *const c_char) -> c_int;
}

/// The fixture's manifest.
///
/// # Errors
/// [`ManifestError::Invalid`] only if the build embedded a manifest this build cannot read.
pub fn manifest() -> Result<Manifest, ManifestError> {
    Manifest::from_json(MANIFEST_JSON)
}

/// Run the fixture: it loads `ptx` (which must define `saxpy`) and launches it four times
/// (two in `prefill`, one in each of two `decode_step` calls … see the source), on GPU 0's
/// primary context. Returns the program's status: 0 on success.
pub fn run(ptx: &str) -> i32 {
    let Ok(text) = CString::new(ptx) else {
        return -1;
    };
    // SAFETY: the fixture reads the NUL-terminated PTX text only during the call.
    unsafe { launch_demo_run(text.as_ptr()) }
}
