//! Interned strings: kernel names, region paths and launch sites repeat millions of times.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Id of an interned string; [`StrId::NONE`] means "no string".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StrId(pub u32);

impl StrId {
    /// The absent string (no region, no launch site).
    pub const NONE: StrId = StrId(u32::MAX);

    /// True unless this is [`StrId::NONE`].
    pub fn is_some(self) -> bool {
        self != StrId::NONE
    }
}

/// A table of interned strings, ids assigned densely from 0 in insertion order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StringTable {
    texts: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, StrId>,
}

impl PartialEq for StringTable {
    fn eq(&self, other: &Self) -> bool {
        self.texts == other.texts
    }
}

impl StringTable {
    /// The id of `text`, adding it if new. Returns whether it was new.
    pub fn intern(&mut self, text: &str) -> (StrId, bool) {
        if let Some(&id) = self.index.get(text) {
            return (id, false);
        }
        let id = StrId(self.texts.len() as u32);
        self.texts.push(text.to_owned());
        self.index.insert(text.to_owned(), id);
        (id, true)
    }

    /// Append `text` under the next id even if it is already present (a file may define the
    /// same text twice; ids must stay as the file defines them). Lookups find the first id.
    pub fn push(&mut self, text: &str) -> StrId {
        let id = StrId(self.texts.len() as u32);
        self.texts.push(text.to_owned());
        self.index.entry(text.to_owned()).or_insert(id);
        id
    }

    /// Shorthand for [`StringTable::intern`] that drops the "new" flag.
    pub fn id(&mut self, text: &str) -> StrId {
        self.intern(text).0
    }

    /// The id of `text` if it is interned (without adding it).
    pub fn find(&self, text: &str) -> Option<StrId> {
        self.index.get(text).copied()
    }

    /// The text of `id`, if defined.
    pub fn get(&self, id: StrId) -> Option<&str> {
        self.texts.get(id.0 as usize).map(String::as_str)
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when no string is interned.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// All strings in id order.
    pub fn iter(&self) -> impl Iterator<Item = (StrId, &str)> {
        self.texts
            .iter()
            .enumerate()
            .map(|(i, s)| (StrId(i as u32), s.as_str()))
    }
}
