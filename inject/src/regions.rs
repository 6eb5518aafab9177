//! NVTX push/pop ranges: a table of region paths ("model/layer3/mlp") by small id, and each
//! thread's stack of open ranges.
//!
//! NVTX push/pop ranges nest per thread, so each application thread keeps its own stack; the
//! innermost open path is the region of whatever CUDA work that thread issues. Paths are
//! interned once, so a push costs a lookup, not an allocation.

use std::collections::HashMap;
use std::sync::Arc;

/// Deepest nesting recorded; deeper pushes are counted so that their pops balance.
pub const MAX_DEPTH: usize = 64;

/// Parent id of a top-level range.
const ROOT: u32 = u32::MAX;

/// Region paths by id.
#[derive(Debug, Default)]
pub struct PathTable {
    ids: HashMap<(u32, Arc<str>), u32>,
    entries: Vec<(Arc<str>, Arc<str>)>,
}

impl PathTable {
    /// The id of range `name` opened inside `parent` (none for top level).
    pub fn intern(&mut self, parent: Option<u32>, name: &str) -> u32 {
        let key = (parent.unwrap_or(ROOT), Arc::<str>::from(name));
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let path: Arc<str> = match parent.and_then(|p| self.entries.get(p as usize)) {
            Some((_, parent_path)) => format!("{parent_path}/{name}").into(),
            None => key.1.clone(),
        };
        let id = u32::try_from(self.entries.len()).unwrap_or(ROOT - 1);
        self.entries.push((key.1.clone(), path));
        self.ids.insert(key, id);
        id
    }

    /// (name, path) of `id`.
    pub fn get(&self, id: u32) -> Option<(Arc<str>, Arc<str>)> {
        self.entries.get(id as usize).cloned()
    }
}

/// A range that was closed, by path id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Path id.
    pub path: u32,
    /// Nesting depth, 0 for a top-level range.
    pub depth: u32,
    /// Push time, trace clock ns.
    pub start_ns: u64,
    /// Pop time, trace clock ns.
    pub end_ns: u64,
}

/// One thread's open ranges.
#[derive(Debug, Default)]
pub struct RegionStack {
    open: Vec<(u32, u64)>,
    overflow: usize,
}

impl RegionStack {
    /// Open the range with path id `path` at `now_ns`.
    pub fn push(&mut self, path: u32, now_ns: u64) {
        if self.open.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        self.open.push((path, now_ns));
    }

    /// Close the innermost range at `now_ns`; `None` for a pop with nothing open (a range
    /// pushed before wattlens attached) or one past the depth limit.
    pub fn pop(&mut self, now_ns: u64) -> Option<Closed> {
        if self.overflow > 0 {
            self.overflow -= 1;
            return None;
        }
        let (path, start_ns) = self.open.pop()?;
        Some(Closed {
            path,
            depth: u32::try_from(self.open.len()).unwrap_or(u32::MAX),
            start_ns,
            end_ns: now_ns.max(start_ns),
        })
    }

    /// The innermost open path id, if any.
    pub fn current(&self) -> Option<u32> {
        self.open.last().map(|&(p, _)| p)
    }

    /// How many ranges are open, those past the depth limit included.
    pub fn depth(&self) -> usize {
        self.open.len() + self.overflow
    }

    /// True when pushing now would go past [`MAX_DEPTH`].
    pub fn full(&self) -> bool {
        self.open.len() >= MAX_DEPTH
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nests_paths_and_closes_innermost_first() {
        let mut t = PathTable::default();
        let mut s = RegionStack::default();
        assert_eq!(s.current(), None);
        let model = t.intern(s.current(), "model");
        s.push(model, 10);
        let layer = t.intern(s.current(), "layer0");
        s.push(layer, 20);
        assert_eq!(&*t.get(s.current().unwrap()).unwrap().1, "model/layer0");
        let inner = s.pop(30).unwrap();
        assert_eq!(
            inner,
            Closed {
                path: layer,
                depth: 1,
                start_ns: 20,
                end_ns: 30
            }
        );
        assert_eq!(s.current(), Some(model));
        assert_eq!(s.pop(40).unwrap().depth, 0);
        assert_eq!(s.pop(50), None, "an unmatched pop is ignored");
        assert_eq!(t.intern(Some(model), "layer0"), layer, "interned once");
        assert_ne!(t.intern(None, "layer0"), layer, "same name, other parent");
    }

    #[test]
    fn pushes_past_the_depth_limit_balance_their_pops() {
        let mut s = RegionStack::default();
        for i in 0..MAX_DEPTH + 3 {
            s.push(i as u32, i as u64);
        }
        assert!(s.full());
        assert_eq!(s.depth(), MAX_DEPTH + 3);
        for _ in 0..3 {
            assert_eq!(s.pop(100), None);
        }
        assert_eq!(s.pop(100).unwrap().depth as usize, MAX_DEPTH - 1);
    }
}
