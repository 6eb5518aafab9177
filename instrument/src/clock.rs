//! The trace clock, behind a trait so tests can drive time by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of trace-clock time: ns since the Unix epoch (see [`crate::trace`]).
pub trait Clock {
    /// Current time on the trace clock, ns since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The host clock: realtime read once at creation, advanced by the monotonic clock after that,
/// so a wall-clock step during a run cannot tear the timeline.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    anchor_unix_ns: u64,
    anchor: Instant,
}

impl HostClock {
    /// Anchor a new host clock to the current realtime.
    pub fn new() -> Self {
        let anchor_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            anchor_unix_ns,
            anchor: Instant::now(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.anchor_unix_ns.saturating_add(elapsed)
    }
}

/// A clock that only moves when told to: for tests of the logic above the clock.
#[derive(Debug, Default)]
pub struct FakeClock {
    now_ns: AtomicU64,
}

impl FakeClock {
    /// A fake clock reading `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        Self {
            now_ns: AtomicU64::new(start_ns),
        }
    }

    /// Move the clock forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.now_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}
