//! NVTX start/end ranges and marks: ranges that need not nest and may end on another thread
//! than the one that started them (`nvtxRangeStart*`/`nvtxRangeEnd`), and instants
//! (`nvtxMark*`). They go on the timeline as region spans of their own tracks
//! ([`START_END_TRACK`], [`MARK_TRACK`]); work is tagged only with push/pop ranges, which nest
//! per thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use wattlens_instrument::clock::Clock;

use crate::regions::Closed;
use crate::state::lock;
use crate::thread::with_thread;

/// The region track (span stream) of start/end ranges; push/pop ranges use track 0.
pub const START_END_TRACK: u64 = wattlens_instrument::trace::START_END_RANGE_STREAM;
/// The region track of marks, zero-length region spans.
pub const MARK_TRACK: u64 = wattlens_instrument::trace::MARK_STREAM;
/// Ranges kept open at most; a start beyond them is not recorded (its end is ignored).
pub const MAX_OPEN: usize = 65_536;

/// An open start/end range: path id, start ns, tokens.
type Open = (u32, u64, Option<u64>);

/// Open start/end ranges by the id handed to the program.
fn open() -> &'static Mutex<HashMap<u64, Open>> {
    static OPEN: OnceLock<Mutex<HashMap<u64, Open>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The next range id; 0 is never handed out (NVTX's "no range").
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Start a range named `name` (with an integer `payload`, if the program gave one); the id its
/// end will name, or 0 when it is not recorded.
pub(crate) fn start_range(name: &str, payload: Option<u64>) -> u64 {
    let (name, tokens) = crate::nvtx::named_tokens(name, payload);
    with_thread(|t, s| {
        let path = t.path_id(&s.paths, None, &name);
        let now_ns = s.clock.now_ns();
        let mut open = lock(open());
        if open.len() >= MAX_OPEN {
            return 0;
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        open.insert(id, (path, now_ns, tokens));
        id
    })
    .unwrap_or(0)
}

/// End range `id`, on whichever thread; an id never handed out is ignored.
pub(crate) fn end_range(id: u64) {
    let Some((path, start_ns, tokens)) = lock(open()).remove(&id) else {
        return;
    };
    with_thread(|t, s| {
        let closed = Closed {
            path,
            depth: 0,
            start_ns,
            end_ns: s.clock.now_ns().max(start_ns),
            tokens,
        };
        lock(&t.pending).queue(|p| &mut p.unnested, closed);
    });
}

/// Record a mark named `name` now.
pub(crate) fn mark(name: &str) {
    with_thread(|t, s| {
        let path = t.path_id(&s.paths, None, name);
        let now_ns = s.clock.now_ns();
        let closed = Closed {
            path,
            depth: 0,
            start_ns: now_ns,
            end_ns: now_ns,
            tokens: None,
        };
        lock(&t.pending).queue(|p| &mut p.marks, closed);
    });
}
