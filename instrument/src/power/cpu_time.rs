//! CPU time of the calling thread, for measuring the sampler's cost.

/// User plus system CPU time the calling thread has used, ns (`getrusage(RUSAGE_THREAD)`);
/// `None` where the platform does not report it.
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` for the duration of the call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        if rc != 0 {
            return None;
        }
        let ns = |tv: libc::timeval| {
            u64::try_from(tv.tv_sec).unwrap_or(0) * 1_000_000_000
                + u64::try_from(tv.tv_usec).unwrap_or(0) * 1000
        };
        Some(ns(usage.ru_utime) + ns(usage.ru_stime))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
