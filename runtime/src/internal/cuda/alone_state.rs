//! What a session's kernel replays have met and done: the state [`super::profiler::Profiler`]
//! holds and the report it returns. The replays themselves are [`super::alone`]'s.

use std::collections::{HashMap, HashSet};

use wattlens_instrument::trace::{LaunchShape, StrId};

/// Launch shapes of one kernel replayed at most: a program whose shapes change every step (a
/// decoder without a KV cache, a server's varying batches) would otherwise be held up for a
/// burst at every new shape.
pub(crate) const MAX_SHAPES_PER_KERNEL: u32 = 4;

/// The signatures a session has met, and what it did with them.
#[derive(Debug, Default)]
pub(crate) struct AloneState {
    seen: HashSet<(StrId, LaunchShape)>,
    /// Shapes of each kernel met so far.
    shapes: HashMap<StrId, u32>,
    pub report: AloneReport,
}

/// What a session's kernel replays covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AloneReport {
    /// Kernel signatures measured alone (kernel names; one per launch shape).
    pub measured: Vec<String>,
    /// Signatures that were not, each as "name: reason".
    pub skipped: Vec<String>,
}

impl AloneState {
    /// Whether a launch of kernel `name` (id `name_id`) with `shape` is the first of its
    /// signature and within the kernel's [`MAX_SHAPES_PER_KERNEL`]; the first shape over that
    /// is reported as skipped.
    pub(crate) fn admit(&mut self, (name_id, name): (StrId, &str), shape: LaunchShape) -> bool {
        if !self.seen.insert((name_id, shape)) {
            return false;
        }
        let shapes = self.shapes.entry(name_id).or_default();
        *shapes += 1;
        if *shapes == MAX_SHAPES_PER_KERNEL + 1 {
            self.report.skipped.push(format!(
                "{name}: launch shapes after its first {MAX_SHAPES_PER_KERNEL} not replayed, so that a program whose shapes keep changing is not held up at each"
            ));
        }
        *shapes <= MAX_SHAPES_PER_KERNEL
    }
}
