//! Host synchronisations (`cudaStreamSynchronize`, `cuCtxSynchronize`, event waits), timed by
//! the API callbacks around them rather than by CUPTI's synchronisation records.
//!
//! CUPTI's `SYNCHRONIZATION` activity kind slows every synchronize: on an H200 it made a
//! launch-bound PyTorch loop, which synchronizes once per 2 ms step, 17% slower (BENCHMARKS.md,
//! issue 8). The callbacks' enter and exit times on the host are what that record reports.
//! A runtime call reaches the driver's, and both fire callbacks, so only the outermost
//! synchronize of a thread is kept.

/// One host wait, on the trace clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSync {
    /// CUDA device ordinal of the context waited on.
    pub device: u32,
    /// CUPTI's id of the stream waited on; `u32::MAX` for a context-wide or event wait.
    pub stream: u32,
    /// When the call was entered, trace clock ns.
    pub start_ns: u64,
    /// When it returned, trace clock ns.
    pub end_ns: u64,
}

/// One thread's depth inside synchronize calls, so that the runtime call and the driver call
/// it makes are one wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncNesting {
    depth: u32,
}

impl SyncNesting {
    /// A synchronize call was entered.
    pub fn enter(&mut self) {
        self.depth = self.depth.saturating_add(1);
    }

    /// A synchronize call returned; true when it was the outermost one (the wait to record).
    /// An exit with nothing entered (a call made before wattlens attached) is not recorded.
    pub fn exit(&mut self) -> bool {
        match self.depth.checked_sub(1) {
            Some(d) => {
                self.depth = d;
                d == 0
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_sync_and_the_driver_sync_inside_it_are_one_wait() {
        let mut n = SyncNesting::default();
        n.enter(); // cudaStreamSynchronize
        n.enter(); // cuStreamSynchronize, made by the runtime
        assert!(!n.exit());
        assert!(n.exit());
        // A driver-only call later stands alone.
        n.enter();
        assert!(n.exit());
    }

    #[test]
    fn an_exit_without_an_enter_is_not_a_wait() {
        let mut n = SyncNesting::default();
        assert!(!n.exit());
        n.enter();
        assert!(n.exit());
    }
}
