//! What the callbacks hand to the writer thread: the one piece of process-wide state.
//!
//! Callbacks run on the program's threads, on its hot path (every launch, every NVTX push),
//! so each thread appends to its own buffer under its own lock, which only the writer ever
//! contends for; the region path table is shared but is touched only for paths a thread has
//! not seen yet.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wattlens_instrument::clock::HostClock;

use crate::regions::{Closed, PathTable};
use crate::syncs::HostSync;
use crate::uploads::Upload;

/// What one program thread recorded since the writer last looked.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// (correlation id of an API call, path id of the range it was made in).
    pub correlations: Vec<(u32, u32)>,
    /// Push/pop ranges closed.
    pub closed: Vec<Closed>,
    /// Start/end ranges ended on this thread.
    pub unnested: Vec<Closed>,
    /// Marks.
    pub marks: Vec<Closed>,
    /// Host waits that returned.
    pub syncs: Vec<HostSync>,
    /// Host-to-device copies hashed at their call.
    pub uploads: Vec<Upload>,
    /// Kernel replays that ran.
    pub replays: Vec<crate::replay::Replayed>,
    /// Records left out because the writer had not drained this buffer for
    /// [`MAX_PENDING`] of them (its output stalled).
    pub dropped: u64,
}

/// Records of one kind a thread queues at most between two drains: when the trace's output
/// stalls (a FIFO nobody reads, a hung filesystem), the writer stops draining, and the
/// program's threads must neither wait for it nor grow our memory without end. At 16 bytes a
/// correlation, 1 Mi of them is 16 MiB per thread.
pub(crate) const MAX_PENDING: usize = 1 << 20;

impl Pending {
    /// Queue `x` on the list `list` picks, or count it dropped when that list is full.
    pub(crate) fn queue<T>(&mut self, list: fn(&mut Pending) -> &mut Vec<T>, x: T) {
        let v = list(self);
        if v.len() < MAX_PENDING {
            v.push(x);
        } else {
            self.dropped += 1;
        }
    }
}

/// An activity buffer CUPTI handed back, not yet read: the writer reads it, so CUPTI's
/// completion callback returns at once.
pub(crate) struct Completed {
    /// The buffer, allocated by `buffer_requested`.
    pub buffer: *mut u8,
    /// Its size, bytes.
    pub size: usize,
    /// Bytes of records in it.
    pub valid: usize,
}

// SAFETY: once CUPTI hands a buffer back it is ours alone; only the writer thread reads and
// frees it.
unsafe impl Send for Completed {}

/// Queues filled by CUPTI's callbacks and drained by the writer.
pub(crate) struct Shared {
    /// The trace clock.
    pub clock: Arc<HostClock>,
    /// Activity buffers CUPTI delivered.
    pub buffers: Mutex<Vec<Completed>>,
    /// Region paths by id.
    pub paths: Mutex<PathTable>,
    /// Every program thread's buffer.
    pub threads: Mutex<Vec<Arc<Mutex<Pending>>>>,
    /// Devices that got a context, not yet seen by the writer.
    pub new_devices: Mutex<Vec<u32>>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Lock `m`, taking over a lock a panicking thread left behind.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared state, once [`init`] ran.
pub(crate) fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

/// Create the shared state (once per process) on `clock`.
pub(crate) fn init(clock: Arc<HostClock>) -> &'static Shared {
    SHARED.get_or_init(|| Shared {
        clock,
        buffers: Mutex::new(Vec::new()),
        paths: Mutex::new(PathTable::default()),
        threads: Mutex::new(Vec::new()),
        new_devices: Mutex::new(Vec::new()),
    })
}

impl Shared {
    /// The entries of path `ids`, copied out, and how many pushes the table folded: the
    /// table's lock is held only for the copy, so that a program thread pushing a range name
    /// never waits on the writer's disk I/O.
    pub fn paths_for(&self, ids: impl Iterator<Item = u32>) -> (crate::regions::PathSnapshot, u64) {
        let table = lock(&self.paths);
        (table.snapshot(ids), table.folded())
    }

    /// A new buffer for a program thread, registered for the writer.
    pub fn register_thread(&self) -> Arc<Mutex<Pending>> {
        let p = Arc::new(Mutex::new(Pending::default()));
        lock(&self.threads).push(p.clone());
        p
    }

    /// Everything the threads recorded since the last call. `spares` holds one emptied buffer
    /// per thread, kept by the caller between calls: each thread's buffer is swapped with its
    /// spare under the lock and read outside it, so a program thread never waits for the copy,
    /// and the vectors change hands without being freed or grown again on the program's side.
    pub fn take_pending(&self, spares: &mut Vec<Pending>) -> Pending {
        let threads: Vec<Arc<Mutex<Pending>>> = lock(&self.threads).clone();
        if spares.len() < threads.len() {
            spares.resize_with(threads.len(), Pending::default);
        }
        let mut all = Pending::default();
        for (t, spare) in threads.iter().zip(spares.iter_mut()) {
            std::mem::swap(&mut *lock(t), spare);
            // `append` leaves the spare empty with its capacity, ready for the next swap.
            all.correlations.append(&mut spare.correlations);
            all.closed.append(&mut spare.closed);
            all.unnested.append(&mut spare.unnested);
            all.marks.append(&mut spare.marks);
            all.syncs.append(&mut spare.syncs);
            all.uploads.append(&mut spare.uploads);
            all.replays.append(&mut spare.replays);
            all.dropped += std::mem::take(&mut spare.dropped);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_state() -> Shared {
        Shared {
            clock: Arc::new(HostClock::new()),
            buffers: Mutex::new(Vec::new()),
            paths: Mutex::new(PathTable::default()),
            threads: Mutex::new(Vec::new()),
            new_devices: Mutex::new(Vec::new()),
        }
    }

    /// A trace output that blocks (a FIFO nobody reads, a stalled network filesystem) until
    /// released.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl std::io::Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_program_thread_naming_ranges_never_waits_on_a_stalled_trace_output() {
        use crate::collect::Collector;
        use crate::regions::Closed;
        use wattlens_instrument::trace::{DeviceInfo, RunMeta};
        use wattlens_instrument::TraceWriter;
        let s = Arc::new(shared_state());
        let first = lock(&s.paths).intern(None, "request 0");
        let (release, stalled) = std::sync::mpsc::channel();
        let (writing, started) = std::sync::mpsc::channel();
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || {
                let meta = RunMeta {
                    devices: vec![DeviceInfo::default()],
                    ..RunMeta::default()
                };
                // The header goes through before the stall: one release.
                let out = std::io::BufWriter::with_capacity(1, Stalled(stalled));
                let (paths, _) = s.paths_for([first].into_iter());
                writing.send(()).unwrap();
                let w = TraceWriter::new(out, &meta);
                let closed = Closed {
                    path: first,
                    depth: 0,
                    start_ns: 1,
                    end_ns: 2,
                    tokens: None,
                };
                if let Ok(w) = w {
                    let mut c = Collector::new(w);
                    let _ = c.regions(&[closed], &paths, 0);
                }
            })
        };
        started.recv().unwrap();
        // The writer is (or is about to be) stuck in its write; the table is free.
        for i in 1..1000 {
            let table = s.paths.try_lock();
            assert!(
                table.is_ok(),
                "the path table is free while the output stalls"
            );
            drop(table);
            lock(&s.paths).intern(None, &format!("request {i}"));
        }
        assert_eq!(lock(&s.paths).len(), 1000);
        drop(release);
        writer.join().unwrap();
    }

    #[test]
    fn a_thread_queues_a_bounded_number_of_records_while_nothing_drains_it() {
        let s = shared_state();
        let t = s.register_thread();
        for i in 0..(MAX_PENDING as u32 + 500) {
            lock(&t).queue(|p| &mut p.correlations, (i, 1));
        }
        let all = s.take_pending(&mut Vec::new());
        assert_eq!(all.correlations.len(), MAX_PENDING);
        assert_eq!(all.dropped, 500, "counted, and said at exit");
        assert_eq!(lock(&t).dropped, 0, "the count is taken with the records");
    }

    #[test]
    fn taking_keeps_every_record_in_order_and_hands_the_capacity_back() {
        let s = shared_state();
        let a = s.register_thread();
        let b = s.register_thread();
        let mut spares = Vec::new();
        for round in 0..3u32 {
            for i in 0..100 {
                lock(&a).correlations.push((round * 1000 + i, 1));
            }
            lock(&b).correlations.push((round, 2));
            let all = s.take_pending(&mut spares);
            let expected: Vec<(u32, u32)> = (0..100)
                .map(|i| (round * 1000 + i, 1))
                .chain([(round, 2)])
                .collect();
            assert_eq!(all.correlations, expected, "round {round}");
            assert!(lock(&a).correlations.is_empty(), "taken records are gone");
        }
        // After the first round the thread writes into a vector that already grew.
        assert!(
            lock(&a).correlations.capacity() >= 100,
            "the thread's buffer keeps its capacity across swaps"
        );
        assert_eq!(spares.len(), 2);
    }
}
