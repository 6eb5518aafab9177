//! wattlens' CUPTI injection library, for programs nobody will rewrite to profile them.
//!
//! `wattlens run -- CMD` starts CMD with `CUDA_INJECTION64_PATH` naming this library; CUDA
//! loads it in every process that initialises the driver and calls [`InitializeInjection`].
//! From then on:
//! - CUPTI activity records (kernels with their grid, block and shared memory; copies;
//!   memsets) are collected in CUPTI's buffers;
//! - host synchronisations are timed by the callbacks around them ([`syncs`]);
//! - the library is NVTX's injection library too (`NVTX_INJECTION64_PATH`): each thread's
//!   push/pop ranges are kept by [`nvtx`]'s handlers, and a callback on each launch, copy and
//!   memset call tags it with the innermost open range, by correlation id;
//! - host-to-device copies are hashed at their call ([`uploads`]), so that waste analysis can
//!   find the same content copied to the same place again;
//! - an NVML sampler reads the power of each GPU the process opens a context on;
//! - a writer thread flushes all of it to `WATTLENS_OUTPUT.[rankR.]pidP.wlt` every
//!   500 ms, on SIGINT/SIGTERM/SIGHUP/SIGQUIT and crashes, and closes the trace at exit.
//!
//! It must never crash or hang its host: every entry point catches panics, errors are one
//! `wattlens:` line on stderr, and the program carries on.

pub mod collect;
/// The settings, parsed in their own crate (which `wattlens run` links to check them).
pub use wattlens_inject_config as config;
mod cost;
pub mod demangle;
mod hooks;
pub mod nvtx;
pub mod nvtx_ranges;
pub mod regions;
pub mod replay;
mod signals;
mod state;
pub mod syncs;
mod thread;
mod threads_cpu;
pub mod uploads;
mod writer;

use std::ffi::c_int;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wattlens_instrument::clock::{Clock, HostClock};

use crate::config::Hooks;

pub use config::{Config, ConfigError};

// The smallest activity buffer the settings accept is the smallest the buffer pool hands out.
const _: () = assert!(
    config::MIN_BUFFER_KIB << 10
        == wattlens_runtime::internal::cuda::cupti_records::MIN_BUFFER_BYTES as u64
);

/// Why the library could not record a process.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The environment was unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// libcupti could not be loaded.
    #[error("cannot load libcupti (tried {0}); it ships with the CUDA toolkit under extras/CUPTI/lib64 or targets/<arch>/lib: name it with WATTLENS_CUPTI or `wattlens run --cupti PATH`")]
    NoCupti(String),
    /// CUPTI refused a call.
    #[error("CUPTI refused {what} ({message}); another profiler (Nsight, torch.profiler) may be attached to this process")]
    Cupti {
        /// What was being done.
        what: &'static str,
        /// CUPTI's result code.
        message: String,
    },
    /// The operating system refused something.
    #[error("{0}")]
    Os(String),
}

impl From<wattlens_runtime::internal::cuda::cupti_result::CuptiError> for InjectError {
    fn from(e: wattlens_runtime::internal::cuda::cupti_result::CuptiError) -> Self {
        Self::Cupti {
            what: e.what,
            message: format!("{:?}", e.status),
        }
    }
}

/// Write one `wattlens:` line on stderr (never panics, even with stderr closed).
pub(crate) fn log(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "wattlens: {msg}");
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Set everything up in the calling (CUDA-initialising) thread.
///
/// # Errors
/// [`InjectError`] when the process cannot be recorded; it then runs unrecorded.
fn start() -> Result<(), InjectError> {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() }.unsigned_abs();
    config::check_unicode(std::env::vars_os())?;
    let config = Config::from_env(|k| std::env::var(k).ok(), pid)?;
    hooks::load_cupti(config.cupti.as_deref())?;
    let clock = Arc::new(HostClock::new());
    let start_unix_ns = clock.now_ns();
    let shared = state::init(clock);
    let wake_fd = signals::wake_pipe()?;
    hooks::enable_activity(&config.kinds, config.buffer_bytes)?;
    let syncs = config.kinds.iter().any(|k| k == "sync");
    if config.hooks != Hooks::None {
        nvtx::enable();
    }
    let digests = if config.hooks == Hooks::All {
        config.digests
    } else {
        config::Digests::Off
    };
    let apis = (config.launch_api, config.upload_api);
    if let Some(settings) = config.replay {
        replay::enable(settings, hooks::activity_kinds(&config.kinds));
    }
    match hooks::subscribe(config.hooks, apis, (syncs, config.replay.is_some()), digests) {
        Err(e) => log(format!(
            "{e}; kernels are recorded, but not the NVTX ranges they ran in"
        )),
        Ok(s) if config.hooks == Hooks::All && s.api_callbacks == 0 => log(
            "CUPTI offered no launch, copy or memset callbacks; kernels are recorded, but not the NVTX ranges they ran in",
        ),
        Ok(_) => {}
    }
    writer::start(config, shared, wake_fd, start_unix_ns)?;
    signals::install();
    // SAFETY: registers a plain extern "C" function that lives as long as the process (CUDA
    // never unloads an injection library).
    if unsafe { libc::atexit(at_exit) } != 0 {
        log("cannot register the exit handler; the trace will lack its last half second");
    }
    Ok(())
}

extern "C" fn at_exit() {
    let _ = catch_unwind(|| {
        if signals::in_owner() {
            writer::stop();
        }
    });
}

/// The entry point CUDA calls in each process when `CUDA_INJECTION64_PATH` names this
/// library. It always reports success (1), so that CUDA initialises normally whether or not
/// recording could start.
#[no_mangle]
pub extern "C" fn InitializeInjection() -> c_int {
    if STARTED.swap(true, Ordering::SeqCst) {
        return 1;
    }
    match catch_unwind(AssertUnwindSafe(start)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log(format!("{e}; the program runs without wattlens")),
        Err(_) => log("internal error while attaching; the program runs without wattlens"),
    }
    1
}

/// The entry point NVTX calls when `NVTX_INJECTION64_PATH` names this library (once per
/// library that embeds NVTX): it fills NVTX's push/pop slots with [`nvtx`]'s handlers.
/// Returns 1 when they were filled, 0 when NVTX offered no table for them.
///
/// # Safety
/// `get_export_table` must be NVTX's export-table function (or null).
#[no_mangle]
pub unsafe extern "C" fn InitializeInjectionNvtx2(get_export_table: nvtx::GetExportTable) -> c_int {
    // SAFETY: per the contract.
    catch_unwind(|| unsafe { nvtx::initialize(get_export_table) }).unwrap_or(0)
}
