//! Buffer identity and versions: every device buffer gets an id, and its version bumps on
//! every write (kernel writes by access mode, copies into it, memsets). Spans record the
//! versions they read and wrote; that is what waste detection reasons over.

use std::collections::HashMap;

use wattlens_instrument::trace::{AccessMode, BufferVersion};

/// Ids and versions of the buffers a session has seen.
#[derive(Debug, Default)]
pub struct BufferTable {
    /// Version of buffer `id` at index `id - 1`.
    versions: Vec<u32>,
    /// Live buffers by (device, base address).
    by_address: HashMap<(u32, u64), u64>,
}

/// What one operation did to buffers: the span's `reads`, `writes` and `unknown_access`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touches {
    /// Versions read.
    pub reads: Vec<BufferVersion>,
    /// Versions written (the new ones).
    pub writes: Vec<BufferVersion>,
    /// Buffers whose access mode was unknown (also in `reads` and `writes`).
    pub unknown: Vec<u64>,
}

impl BufferTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new buffer at `address` on `device`, version 0; the address now names it.
    pub fn register(&mut self, device: u32, address: u64) -> u64 {
        self.versions.push(0);
        let id = self.versions.len() as u64;
        self.by_address.insert((device, address), id);
        id
    }

    /// The buffer at `address`, registering it on first sight (a buffer allocated outside
    /// the session).
    pub fn id_at(&mut self, device: u32, address: u64) -> u64 {
        match self.by_address.get(&(device, address)) {
            Some(&id) => id,
            None => self.register(device, address),
        }
    }

    /// Forget the address of a freed buffer (its id stays in the trace, never reused).
    pub fn release(&mut self, device: u32, address: u64) {
        self.by_address.remove(&(device, address));
    }

    /// The current version of `id` (0 for an id this table never issued).
    pub fn version(&self, id: u64) -> u32 {
        self.slot(id).map_or(0, |v| *v)
    }

    fn slot(&self, id: u64) -> Option<&u32> {
        self.versions.get(usize::try_from(id).ok()?.checked_sub(1)?)
    }

    /// Record that an operation used buffer `id` in `mode`.
    pub fn touch(&mut self, id: u64, mode: AccessMode, out: &mut Touches) {
        let read = |t: &Self| BufferVersion {
            buffer: id,
            version: t.version(id),
        };
        match mode {
            AccessMode::None => {}
            AccessMode::Read => out.reads.push(read(self)),
            AccessMode::Write => out.writes.push(self.bump(id)),
            AccessMode::ReadWrite => {
                out.reads.push(read(self));
                out.writes.push(self.bump(id));
            }
            AccessMode::Unknown => {
                out.reads.push(read(self));
                out.writes.push(self.bump(id));
                out.unknown.push(id);
            }
        }
    }

    fn bump(&mut self, id: u64) -> BufferVersion {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.versions.get_mut(i));
        let version = match slot {
            Some(v) => {
                *v = v.saturating_add(1);
                *v
            }
            None => 1,
        };
        BufferVersion {
            buffer: id,
            version,
        }
    }

    /// Buffers issued so far.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// True before any buffer was seen.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_on_writes_only_and_ids_outlive_addresses() {
        let mut t = BufferTable::new();
        let a = t.register(0, 0x1000);
        let mut touches = Touches::default();
        t.touch(a, AccessMode::Read, &mut touches);
        t.touch(a, AccessMode::Write, &mut touches);
        t.touch(a, AccessMode::ReadWrite, &mut touches);
        t.touch(a, AccessMode::None, &mut touches);
        let v = |version| BufferVersion { buffer: a, version };
        assert_eq!(touches.reads, vec![v(0), v(1)]);
        assert_eq!(touches.writes, vec![v(1), v(2)]);
        assert!(touches.unknown.is_empty());

        // Same address on another device is another buffer; a freed address gets a new id.
        assert_ne!(t.id_at(1, 0x1000), a);
        assert_eq!(t.id_at(0, 0x1000), a);
        t.release(0, 0x1000);
        let b = t.id_at(0, 0x1000);
        assert_ne!(b, a);
        assert_eq!(t.version(b), 0);
    }

    #[test]
    fn unknown_access_is_read_and_written_and_flagged() {
        let mut t = BufferTable::new();
        let a = t.register(0, 1);
        let mut touches = Touches::default();
        t.touch(a, AccessMode::Unknown, &mut touches);
        assert_eq!(touches.reads[0].version, 0);
        assert_eq!(touches.writes[0].version, 1);
        assert_eq!(touches.unknown, vec![a]);
    }
}
