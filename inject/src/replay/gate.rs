//! Holding the program's other threads while one thread replays a kernel: the device must run
//! the burst alone, and no work of theirs may go unrecorded while the kernel records are
//! paused.
//!
//! Every work-issuing driver call (launch, copy, memset) passes the gate at entry and leaves it
//! at exit: its thread counts as in flight in between. A replay takes the gate only once no
//! other thread is in flight, and a thread that arrives while it is taken waits until it is
//! released. Both waits are bounded, so that no thread is held without end: a replay gives up
//! when other threads keep issuing, and a thread that waits past its bound goes on and marks
//! the replay as disturbed, so that it is thrown away.
//!
//! The protocol: an arriving thread first counts itself in flight, then looks at the flag; a
//! replay first sets the flag, then waits for the count. With sequentially consistent
//! atomics one of them sees the other, so no work slips past a replay.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::state::lock;

thread_local! {
    /// Nesting depth of work-issuing calls on this thread (a runtime call makes a driver call).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The gate of one process.
#[derive(Debug, Default)]
pub struct Gate {
    taken: AtomicBool,
    in_flight: AtomicU32,
    /// Set when a thread went on while the gate was taken.
    disturbed: AtomicBool,
    released: Mutex<()>,
    wake: Condvar,
}

/// How a thread got through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// Nothing held it (or it was already inside a call).
    Clear,
    /// It waited for a replay to end.
    Waited,
    /// It waited its whole bound and went on while the replay still ran.
    GaveUp,
}

impl Gate {
    /// A work-issuing call was entered on this thread: wait, at most `bound`, while another
    /// thread holds the gate.
    pub fn enter(&self, bound: Duration) -> Passed {
        let depth = DEPTH.with(|d| {
            let v = d.get().saturating_add(1);
            d.set(v);
            v
        });
        if depth > 1 {
            return Passed::Clear;
        }
        let mut waited = false;
        let deadline = Instant::now() + bound;
        loop {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.taken.load(Ordering::SeqCst) {
                return if waited {
                    Passed::Waited
                } else {
                    Passed::Clear
                };
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            waited = true;
            let now = Instant::now();
            if now >= deadline {
                self.disturbed.store(true, Ordering::SeqCst);
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                return Passed::GaveUp;
            }
            let guard = lock(&self.released);
            if self.taken.load(Ordering::SeqCst) {
                // Woken by the release, or at the deadline; spurious wake-ups just loop.
                let _ = self.wake.wait_timeout(guard, deadline - now);
            }
        }
    }

    /// The call entered through [`Gate::enter`] returned.
    pub fn exit(&self) {
        let depth = DEPTH.with(|d| {
            let v = d.get().saturating_sub(1);
            d.set(v);
            v
        });
        if depth == 0 {
            // Never below zero, even if an exit came without its entry.
            let _ = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// Take the gate for a replay from inside this thread's own work call: wait, at most
    /// `bound`, until no other thread is in flight. `None` when another replay holds it or
    /// other threads stayed in flight.
    pub fn hold(&self, bound: Duration) -> Option<Held<'_>> {
        if self.taken.swap(true, Ordering::SeqCst) {
            return None;
        }
        self.disturbed.store(false, Ordering::SeqCst);
        let own = u32::from(DEPTH.with(Cell::get) > 0);
        let deadline = Instant::now() + bound;
        while self.in_flight.load(Ordering::SeqCst) > own {
            if Instant::now() >= deadline {
                self.release();
                return None;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Some(Held { gate: self })
    }

    fn release(&self) {
        let _guard = lock(&self.released);
        self.taken.store(false, Ordering::SeqCst);
        self.wake.notify_all();
    }
}

/// The gate, taken; released when dropped.
#[derive(Debug)]
pub struct Held<'a> {
    gate: &'a Gate,
}

impl Held<'_> {
    /// Whether another thread went on while the gate was taken (its work may have run
    /// during the replay, unrecorded).
    pub fn disturbed(&self) -> bool {
        self.gate.disturbed.load(Ordering::SeqCst)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn no_work_call_runs_while_a_replay_holds_the_gate() {
        let gate = Arc::new(Gate::default());
        let inside = Arc::new(AtomicU64::new(0));
        let overlaps = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicU64::new(0));
        // Four threads issue work calls in a loop.
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (gate, inside, stop) = (gate.clone(), inside.clone(), stop.clone());
                let running = running.clone();
                std::thread::spawn(move || {
                    let mut calls = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        gate.enter(Duration::from_secs(10));
                        inside.fetch_add(1, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        gate.exit();
                        if calls == 0 {
                            running.fetch_add(1, Ordering::SeqCst);
                        }
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        // The replays start once every worker is calling: on a loaded machine the threads may
        // not have run at all by then otherwise, and the test would check nothing.
        let since = std::time::Instant::now();
        while running.load(Ordering::SeqCst) < 4 && since.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
        // A fifth replays, from inside a work call of its own, twenty times.
        let mut holds = 0;
        for _ in 0..20 {
            assert_eq!(gate.enter(Duration::from_secs(10)), Passed::Clear);
            if let Some(held) = gate.hold(Duration::from_secs(5)) {
                holds += 1;
                for _ in 0..200 {
                    if inside.load(Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::yield_now();
                }
                assert!(!held.disturbed());
            }
            gate.exit();
        }
        stop.store(true, Ordering::SeqCst);
        let calls: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(holds >= 15, "{holds} of 20 replays got the gate");
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        assert!(calls > 0);
    }

    #[test]
    fn waits_are_bounded_and_a_thread_that_gives_up_disturbs_the_replay() {
        let gate = Arc::new(Gate::default());
        let held = gate.hold(Duration::from_secs(1)).unwrap();
        assert!(
            gate.hold(Duration::from_millis(1)).is_none(),
            "one replay at a time"
        );
        let g = gate.clone();
        let t = std::thread::spawn(move || {
            let passed = g.enter(Duration::from_millis(20));
            g.exit();
            passed
        });
        assert_eq!(t.join().unwrap(), Passed::GaveUp);
        assert!(held.disturbed());
        drop(held);
        // A thread in flight keeps a replay from starting, within the replay's bound.
        let g = gate.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let (tx2, rx2) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            g.enter(Duration::from_secs(1));
            tx.send(()).unwrap();
            rx2.recv().unwrap();
            g.exit();
        });
        rx.recv().unwrap();
        assert!(gate.hold(Duration::from_millis(10)).is_none());
        tx2.send(()).unwrap();
        t.join().unwrap();
        assert!(gate.hold(Duration::from_millis(100)).is_some());
    }
}
