//! Each program thread's own recording state: its open NVTX ranges, its cache of path ids,
//! its depth inside synchronize calls, and the buffer the writer drains.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::regions::{PathTable, RegionStack};
use crate::state::{lock, shared, Pending, Shared};
use crate::syncs::SyncNesting;
use crate::uploads::LastUpload;

/// Path ids a thread caches at most.
pub const MAX_CACHED: usize = 4096;

/// A program thread's own state.
pub(crate) struct ThreadState {
    /// Open NVTX ranges.
    pub stack: RegionStack,
    /// Path ids this thread has seen, by parent id then name: a push looks up borrowed text.
    pub cache: HashMap<u32, HashMap<Box<str>, u32>>,
    /// Entries in `cache`.
    pub cached: usize,
    /// Depth inside synchronize calls.
    pub syncs: SyncNesting,
    /// The upload call this thread hashed last.
    pub last_upload: LastUpload,
    /// What the writer drains.
    pub pending: Arc<Mutex<Pending>>,
}

impl ThreadState {
    /// The id of range `name` inside `parent` (none for top level), from this thread's cache:
    /// the shared table, which the writer holds while it writes, is locked only for a path
    /// this thread has not seen.
    pub fn path_id(&mut self, paths: &Mutex<PathTable>, parent: Option<u32>, name: &str) -> u32 {
        let key = parent.unwrap_or(u32::MAX);
        if let Some(&id) = self.cache.get(&key).and_then(|m| m.get(name)) {
            return id;
        }
        let id = lock(paths).intern(parent, name);
        // Bounded: a thread that names every range anew starts its cache over.
        if self.cached >= MAX_CACHED {
            self.cache.clear();
            self.cached = 0;
        }
        self.cache
            .entry(key)
            .or_default()
            .insert(Box::from(name), id);
        self.cached += 1;
        id
    }
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
                cached: 0,
                syncs: SyncNesting::default(),
                last_upload: LastUpload::default(),
                pending: shared.register_thread(),
            });
            Some(f(state, shared))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_names_every_range_anew_keeps_a_bounded_cache() {
        let paths = Mutex::new(PathTable::default());
        let mut t = ThreadState {
            stack: RegionStack::default(),
            cache: HashMap::new(),
            cached: 0,
            syncs: SyncNesting::default(),
            last_upload: LastUpload::default(),
            pending: Arc::new(Mutex::new(Pending::default())),
        };
        for i in 0..100_000 {
            t.path_id(&paths, None, &format!("request {i}"));
            assert!(t.cached <= MAX_CACHED);
        }
        let again = t.path_id(&paths, None, "request 99999");
        assert_eq!(again, t.path_id(&paths, None, "request 99999"));
        assert!(t.cache.values().map(HashMap::len).sum::<usize>() <= MAX_CACHED);
    }
}
