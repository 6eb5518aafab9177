//! What the library's own callbacks cost the program's threads: each NVTX handler and CUPTI
//! callback is timed, and the writer records the sums per flush cycle
//! ([`wattlens_instrument::trace::Annotation::CallbackCost`]), so that a report can say how
//! much the profiler lengthened the program's requests.
//!
//! Two monotonic clock reads per callback (about 40 ns on the VMs, BENCHMARKS.md) are the
//! price of knowing it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

static CALLS: AtomicU64 = AtomicU64::new(0);
static HOST_NS: AtomicU64 = AtomicU64::new(0);

/// Run callback body `f`, adding its host time to the process's sums.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> R {
    let began = Instant::now();
    let out = f();
    let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
    CALLS.fetch_add(1, Ordering::Relaxed);
    HOST_NS.fetch_add(ns, Ordering::Relaxed);
    out
}

/// Callbacks run so far and the host time they took, ns.
pub(crate) fn totals() -> Totals {
    Totals {
        calls: CALLS.load(Ordering::Relaxed),
        host_ns: HOST_NS.load(Ordering::Relaxed),
    }
}

/// Running sums of the callbacks' cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Callbacks run.
    pub calls: u64,
    /// Host time they took, ns.
    pub host_ns: u64,
}

impl Totals {
    /// What ran between `earlier` and these sums.
    pub fn since(self, earlier: Totals) -> Totals {
        Totals {
            calls: self.calls.saturating_sub(earlier.calls),
            host_ns: self.host_ns.saturating_sub(earlier.host_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_bodies_add_their_calls_and_time() {
        let before = totals();
        let v = timed(|| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            7
        });
        assert_eq!(v, 7);
        let d = totals().since(before);
        assert!(d.calls >= 1);
        assert!(d.host_ns >= 2_000_000, "{d:?}");
        assert_eq!(before.since(totals()), Totals::default());
    }
}
