//! Each program thread's own recording state: its open NVTX ranges, its cache of path ids,
//! its depth inside synchronize calls, and the buffer the writer drains.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::regions::RegionStack;
use crate::state::{shared, Pending, Shared};
use crate::syncs::SyncNesting;
use crate::uploads::LastUpload;

/// A program thread's own state.
pub(crate) struct ThreadState {
    /// Open NVTX ranges.
    pub stack: RegionStack,
    /// Path ids this thread has seen, by parent id then name: a push looks up borrowed text.
    pub cache: HashMap<u32, HashMap<Box<str>, u32>>,
    /// Depth inside synchronize calls.
    pub syncs: SyncNesting,
    /// The upload call this thread hashed last.
    pub last_upload: LastUpload,
    /// What the writer drains.
    pub pending: Arc<Mutex<Pending>>,
}

thread_local! {
    static THREAD: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's state (created on first use); `None` inside a nested callback
/// or before the library started.
pub(crate) fn with_thread<R>(f: impl FnOnce(&mut ThreadState, &'static Shared) -> R) -> Option<R> {
    let shared = shared()?;
    THREAD
        .try_with(|t| {
            let mut t = t.try_borrow_mut().ok()?;
            let state = t.get_or_insert_with(|| ThreadState {
                stack: RegionStack::default(),
                cache: HashMap::new(),
                syncs: SyncNesting::default(),
                last_upload: LastUpload::default(),
                pending: shared.register_thread(),
            });
            Some(f(state, shared))
        })
        .ok()
        .flatten()
}
