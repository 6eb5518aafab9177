//! NVTX ranges for regions, so Nsight Systems and other tools see them too. NVTX is emitted
//! only where libnvToolsExt loads; otherwise regions are recorded in the trace alone.

use std::sync::OnceLock;

use cudarc::nvtx;

/// Whether libnvToolsExt can be loaded (probed once).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: only probes for the library by its candidate names.
    *AVAILABLE.get_or_init(|| unsafe { nvtx::sys::is_culib_present() })
}

/// An open NVTX range (ends on drop), or nothing where NVTX is unavailable.
pub(crate) struct NvtxRange(#[allow(dead_code)] Option<nvtx::Range>);

/// Open an NVTX range named `name`.
pub(crate) fn range(name: &str) -> NvtxRange {
    if !available() {
        return NvtxRange(None);
    }
    // cudarc panics on interior NULs: replace them.
    let clean = name.replace('\0', " ");
    NvtxRange(Some(nvtx::Event::message(clean).range()))
}
