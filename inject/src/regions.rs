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

/// Distinct region paths kept. A program that names every range uniquely (a request id in the
/// name) would otherwise grow the table without end: past this, a new name is folded into
/// [`FOLDED`] under its parent.
pub const MAX_PATHS: usize = 1 << 16;

/// Folded entries kept on top of [`MAX_PATHS`] (one per parent at most); past them, every new
/// name is folded into one top-level entry.
const MAX_FOLDS: usize = 1 << 10;

/// The name a folded range is recorded under.
pub const FOLDED: &str = "wattlens:other";

/// Longest range name kept, bytes; longer names are cut (at a character boundary).
pub const MAX_NAME_BYTES: usize = 256;

/// Parent id of a top-level range.
const ROOT: u32 = u32::MAX;

/// What region paths an id stands for: the shared table, or a copy of some of it.
pub trait Paths {
    /// (name, path) of `id`.
    fn get(&self, id: u32) -> Option<(Arc<str>, Arc<str>)>;
}

/// Region paths by id.
#[derive(Debug, Default)]
pub struct PathTable {
    ids: HashMap<(u32, Arc<str>), u32>,
    entries: Vec<(Arc<str>, Arc<str>)>,
    folded: u64,
}

impl PathTable {
    /// The id of range `name` opened inside `parent` (none for top level). Past
    /// [`MAX_PATHS`] distinct paths, a new name is folded into [`FOLDED`].
    pub fn intern(&mut self, parent: Option<u32>, name: &str) -> u32 {
        let name = clip(name, MAX_NAME_BYTES);
        let parent = parent.unwrap_or(ROOT);
        if let Some(&id) = self.ids.get(&(parent, Arc::<str>::from(name))) {
            return id;
        }
        if self.entries.len() < MAX_PATHS {
            return self.insert(parent, name);
        }
        self.folded += 1;
        if let Some(&id) = self.ids.get(&(parent, Arc::<str>::from(FOLDED))) {
            return id;
        }
        if self.entries.len() < MAX_PATHS + MAX_FOLDS {
            return self.insert(parent, FOLDED);
        }
        match self.ids.get(&(ROOT, Arc::<str>::from(FOLDED))) {
            Some(&id) => id,
            None => self.insert(ROOT, FOLDED),
        }
    }

    fn insert(&mut self, parent: u32, name: &str) -> u32 {
        let name: Arc<str> = Arc::from(name);
        let path: Arc<str> = match self.entries.get(parent as usize) {
            Some((_, parent_path)) => format!("{parent_path}/{name}").into(),
            None => name.clone(),
        };
        let id = u32::try_from(self.entries.len()).unwrap_or(ROOT - 1);
        self.entries.push((name.clone(), path));
        self.ids.insert((parent, name), id);
        id
    }

    /// Distinct paths kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no path was interned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pushes of a new name that were folded into [`FOLDED`].
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// A copy of the entries of `ids`, so that the table's lock need not be held while they
    /// are written out.
    pub fn snapshot(&self, ids: impl Iterator<Item = u32>) -> PathSnapshot {
        PathSnapshot(
            ids.filter_map(|id| Paths::get(self, id).map(|e| (id, e)))
                .collect(),
        )
    }
}

impl Paths for PathTable {
    fn get(&self, id: u32) -> Option<(Arc<str>, Arc<str>)> {
        self.entries.get(id as usize).cloned()
    }
}

/// Some entries of a [`PathTable`], copied out ([`PathTable::snapshot`]).
#[derive(Debug, Default)]
pub struct PathSnapshot(HashMap<u32, (Arc<str>, Arc<str>)>);

impl Paths for PathSnapshot {
    fn get(&self, id: u32) -> Option<(Arc<str>, Arc<str>)> {
        self.0.get(&id).cloned()
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    /// Tokens the program gave the range (an NVTX integer payload, or `tokens=N` in its
    /// message), if any.
    pub tokens: Option<u64>,
}

/// One thread's open ranges.
#[derive(Debug, Default)]
pub struct RegionStack {
    open: Vec<(u32, u64, Option<u64>)>,
    overflow: usize,
}

impl RegionStack {
    /// Open the range with path id `path` at `now_ns`, with `tokens` if the program gave a
    /// count.
    pub fn push(&mut self, path: u32, now_ns: u64, tokens: Option<u64>) {
        if self.open.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        self.open.push((path, now_ns, tokens));
    }

    /// Close the innermost range at `now_ns`; `None` for a pop with nothing open (a range
    /// pushed before wattlens attached) or one past the depth limit.
    pub fn pop(&mut self, now_ns: u64) -> Option<Closed> {
        if self.overflow > 0 {
            self.overflow -= 1;
            return None;
        }
        let (path, start_ns, tokens) = self.open.pop()?;
        Some(Closed {
            path,
            depth: u32::try_from(self.open.len()).unwrap_or(u32::MAX),
            start_ns,
            end_ns: now_ns.max(start_ns),
            tokens,
        })
    }

    /// The innermost open path id, if any.
    pub fn current(&self) -> Option<u32> {
        self.open.last().map(|&(p, _, _)| p)
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
        s.push(model, 10, None);
        let layer = t.intern(s.current(), "layer0");
        s.push(layer, 20, None);
        assert_eq!(
            &*Paths::get(&t, s.current().unwrap()).unwrap().1,
            "model/layer0"
        );
        let inner = s.pop(30).unwrap();
        assert_eq!(
            inner,
            Closed {
                path: layer,
                depth: 1,
                start_ns: 20,
                end_ns: 30,
                tokens: None
            }
        );
        assert_eq!(s.current(), Some(model));
        assert_eq!(s.pop(40).unwrap().depth, 0);
        assert_eq!(s.pop(50), None, "an unmatched pop is ignored");
        assert_eq!(t.intern(Some(model), "layer0"), layer, "interned once");
        assert_ne!(t.intern(None, "layer0"), layer, "same name, other parent");
    }

    #[test]
    fn a_million_unique_names_stay_within_the_table_cap_and_are_counted_as_folded() {
        let mut t = PathTable::default();
        let serve = t.intern(None, "serve");
        let mut last = 0;
        for i in 0..1_000_000u32 {
            last = t.intern(Some(serve), &format!("request {i}"));
        }
        assert!(t.len() <= MAX_PATHS + MAX_FOLDS, "{} entries", t.len());
        assert_eq!(t.folded(), 1_000_000 - (MAX_PATHS as u64 - 1));
        assert_eq!(&*Paths::get(&t, last).unwrap().1, "serve/wattlens:other");
        // Folds under every parent are bounded too.
        for i in 0..(2 * MAX_FOLDS) as u32 {
            let p = t.intern(None, &format!("p{i}"));
            t.intern(Some(p), "x");
        }
        assert!(t.len() <= MAX_PATHS + MAX_FOLDS + 1, "{}", t.len());
        let long = "é".repeat(400);
        let id = t.intern(None, &long);
        assert!(Paths::get(&t, id).unwrap().0.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn pushes_past_the_depth_limit_balance_their_pops() {
        let mut s = RegionStack::default();
        for i in 0..MAX_DEPTH + 3 {
            s.push(i as u32, i as u64, None);
        }
        assert!(s.full());
        assert_eq!(s.depth(), MAX_DEPTH + 3);
        for _ in 0..3 {
            assert_eq!(s.pop(100), None);
        }
        assert_eq!(s.pop(100).unwrap().depth as usize, MAX_DEPTH - 1);
    }
}
