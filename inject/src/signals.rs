//! Getting the trace to disk however the process ends. The writer thread flushes on a timer
//! (what a SIGKILL leaves); on SIGINT, SIGTERM, SIGHUP, SIGQUIT and on crashes (SIGSEGV,
//! SIGBUS, SIGFPE, SIGILL, SIGABRT) a handler asks it to flush, waits a bounded time, then
//! hands the signal to whoever handled it before. Everything a handler does is
//! async-signal-safe: atomics, `write`, `nanosleep`, `sigaction`, `raise`.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::InjectError;

/// Signals whose arrival flushes the trace.
const SIGNALS: [c_int; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGABRT,
];
/// Signals the writer's threads block, so that a process-directed one reaches a program
/// thread (a handler run on the writer thread would wait for itself).
const ASYNC_SIGNALS: [c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
/// How long a handler waits for the flush before passing the signal on.
pub(crate) const HANDLER_WAIT: Duration = Duration::from_secs(2);

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static OWNER_PID: AtomicI32 = AtomicI32::new(0);
static REQUESTED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static FORCED: AtomicBool = AtomicBool::new(false);
static PREVIOUS: OnceLock<Vec<(c_int, libc::sigaction)>> = OnceLock::new();

/// Create the pipe that wakes the writer; returns its read end.
///
/// # Errors
/// [`InjectError::Os`] when the pipe cannot be made.
pub(crate) fn wake_pipe() -> Result<c_int, InjectError> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: a valid two-element out-array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(InjectError::Os(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    WAKE_FD.store(fds[1], Ordering::SeqCst);
    // SAFETY: getpid cannot fail.
    OWNER_PID.store(unsafe { libc::getpid() }, Ordering::SeqCst);
    Ok(fds[0])
}

/// Wake the writer now (async-signal-safe).
pub(crate) fn wake() {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write of one byte from a valid buffer; a full pipe already means "awake".
        let _ = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// True in the process that loaded the library (not in a child forked from it, which has no
/// writer thread).
pub(crate) fn in_owner() -> bool {
    // SAFETY: getpid cannot fail.
    OWNER_PID.load(Ordering::SeqCst) == unsafe { libc::getpid() }
}

/// The flush generation asked for so far, and whether a forced flush was asked for.
pub(crate) fn requested() -> (u64, bool) {
    (
        REQUESTED.load(Ordering::SeqCst),
        FORCED.load(Ordering::SeqCst),
    )
}

/// The writer finished a flush that covered requests up to `generation`.
pub(crate) fn flushed(generation: u64) {
    DONE.fetch_max(generation, Ordering::SeqCst);
}

/// Ask the writer to flush and wait up to `wait` for it (async-signal-safe). True when it
/// flushed in time.
pub(crate) fn flush_and_wait(forced: bool, wait: Duration) -> bool {
    if forced {
        FORCED.store(true, Ordering::SeqCst);
    }
    let generation = REQUESTED.fetch_add(1, Ordering::SeqCst) + 1;
    wake();
    let step = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    for _ in 0..wait.as_millis() {
        if DONE.load(Ordering::SeqCst) >= generation {
            return true;
        }
        // SAFETY: a valid timespec; an interrupted sleep just ends early.
        unsafe { libc::nanosleep(&step, std::ptr::null_mut()) };
    }
    DONE.load(Ordering::SeqCst) >= generation
}

/// Block the asynchronous signals in the calling thread (and the threads it starts).
pub(crate) fn block_in_this_thread() {
    // SAFETY: a zeroed sigset is initialised by sigemptyset before use; valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in ASYNC_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Install the handlers, remembering the ones they replace.
pub(crate) fn install() {
    let mut previous = Vec::new();
    for sig in SIGNALS {
        // SAFETY: sigaction with a zeroed struct is a valid query; ours has a valid handler
        // and an initialised mask.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue; // the program ignores it: so do we
            }
            previous.push((sig, old));
        }
    }
    let previous = PREVIOUS.get_or_init(|| previous);
    for (sig, _) in previous {
        // SAFETY: as above.
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_signal as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut ours.sa_mask);
            libc::sigaction(*sig, &ours, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    if in_owner() {
        let fatal = !ASYNC_SIGNALS.contains(&sig);
        flush_and_wait(fatal, HANDLER_WAIT);
    }
    let previous = PREVIOUS
        .get()
        .and_then(|p| p.iter().find(|(s, _)| *s == sig))
        .map(|(_, a)| *a);
    match previous {
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL => {
            if prev.sa_sigaction == libc::SIG_IGN {
                return;
            }
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this
                // signature.
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler takes the signal number only.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // The default action: restore it and deliver the signal again (it arrives when
            // this handler returns; a fault re-faults at the same instruction).
            // SAFETY: valid sigaction and raise calls.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut dfl.sa_mask);
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
                libc::raise(sig);
            }
        }
    }
}
