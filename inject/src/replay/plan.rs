//! Which kernel and copy signatures to replay, within the budget: the heaviest first, once their weight
//! is known.
//!
//! The writer counts each signature's busy time from the kernel and copy records; every flush it ranks
//! the signatures not yet replayed by that busy time and marks as wanted as many of the
//! heaviest as the budget left can pay for. A launch of a wanted signature is then replayed
//! (a signature at most once). Nothing here touches CUDA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wattlens_instrument::trace::{LaunchShape, ReplayOutcome};

use crate::config::ReplaySettings;

/// Signatures with less than this share of the busy time are not replayed: too little energy
/// to be worth 0.4 s of the program's time.
pub const MIN_SHARE: f64 = 0.001;

/// What a replay costs beyond its burst before any has been timed: the checkpoint's save and
/// restore, the synchronisations, and the capture of the launch graph.
const FIRST_OVERHEAD: Duration = Duration::from_millis(60);

/// A signature: device, kernel name as CUDA reports it (mangled) and launch shape, or a copy's
/// span name and no shape.
pub type SigKey = (u32, Arc<str>, Option<LaunchShape>);

/// Where a signature stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Heavy enough, and within the budget: its next launch is replayed.
    Wanted,
    /// A thread is replaying it now.
    Claimed,
    /// Replayed.
    Done,
    /// Could not be replayed safely, for this reason.
    Skipped(String),
}

/// The replay plan of one process.
#[derive(Debug)]
pub struct Plan {
    settings: ReplaySettings,
    busy_ns: HashMap<SigKey, u64>,
    total_busy_ns: u64,
    state: HashMap<SigKey, State>,
    /// Time replays have held the program so far, ns.
    spent_ns: u64,
    /// Replays done.
    done: u32,
    /// Bumped whenever the wanted set may have changed: threads re-check their cached answers.
    generation: u64,
}

/// What the plan said about a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Replay it now (the caller must report back through [`Plan::finish`]).
    Replay,
    /// Not now.
    Pass,
}

impl Plan {
    /// An empty plan that may spend `settings`.
    pub fn new(settings: ReplaySettings) -> Self {
        Self {
            settings,
            busy_ns: HashMap::new(),
            total_busy_ns: 0,
            state: HashMap::new(),
            spent_ns: 0,
            done: 0,
            generation: 1,
        }
    }

    /// The generation of the wanted set.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Count `busy_ns` of the program's device time for `key`.
    pub fn observe(&mut self, key: &SigKey, busy_ns: u64) {
        self.total_busy_ns = self.total_busy_ns.saturating_add(busy_ns);
        if let Some(b) = self.busy_ns.get_mut(key) {
            *b = b.saturating_add(busy_ns);
        } else {
            self.busy_ns.insert(key.clone(), busy_ns);
        }
    }

    /// What one more replay is expected to cost, ns: the mean of those done, else the burst
    /// and a first guess at the rest.
    fn cost_ns(&self) -> u64 {
        if self.done > 0 {
            self.spent_ns / u64::from(self.done)
        } else {
            (self.settings.burst + FIRST_OVERHEAD).as_nanos() as u64
        }
    }

    /// Budget left, ns.
    pub fn left_ns(&self) -> u64 {
        (self.settings.budget.as_nanos() as u64).saturating_sub(self.spent_ns)
    }

    /// Rank the signatures not yet replayed by busy time and want as many of the heaviest
    /// (each at least [`MIN_SHARE`]) as the budget left pays for.
    pub fn refresh(&mut self) {
        let slots = (self.left_ns() / self.cost_ns().max(1)) as usize;
        let mut open: Vec<(&SigKey, u64)> = self
            .busy_ns
            .iter()
            .filter(|(k, &b)| {
                matches!(self.state.get(*k), None | Some(State::Wanted))
                    && self.share(b) >= MIN_SHARE
            })
            .map(|(k, &b)| (k, b))
            .collect();
        // Heaviest first; ties by name so that the plan does not depend on hash order.
        open.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let wanted: Vec<SigKey> = open.iter().take(slots).map(|(k, _)| (*k).clone()).collect();
        let before: Vec<SigKey> = self.wanted_keys();
        self.state.retain(|_, s| *s != State::Wanted);
        for k in wanted {
            self.state.insert(k, State::Wanted);
        }
        let mut after = self.wanted_keys();
        let mut before = before;
        before.sort();
        after.sort();
        if before != after {
            self.generation += 1;
        }
    }

    fn wanted_keys(&self) -> Vec<SigKey> {
        self.state
            .iter()
            .filter(|(_, s)| **s == State::Wanted)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn share(&self, busy_ns: u64) -> f64 {
        if self.total_busy_ns == 0 {
            0.0
        } else {
            busy_ns as f64 / self.total_busy_ns as f64
        }
    }

    /// The share of the busy time counted so far that `key` took.
    pub fn share_of(&self, key: &SigKey) -> f64 {
        self.share(self.busy_ns.get(key).copied().unwrap_or(0))
    }

    /// Whether a launch of `key` is to be replayed now; a yes claims it.
    pub fn claim(&mut self, key: &SigKey) -> Claim {
        match self.state.get_mut(key) {
            Some(s @ State::Wanted) if self.spent_ns < self.settings.budget.as_nanos() as u64 => {
                *s = State::Claimed;
                Claim::Replay
            }
            _ => Claim::Pass,
        }
    }

    /// A claimed replay of `key` ended after holding the program `held_ns`: replayed, or
    /// skipped for `Err(reason)`.
    pub fn finish(&mut self, key: &SigKey, held_ns: u64, outcome: Result<(), String>) {
        self.spent_ns = self.spent_ns.saturating_add(held_ns);
        let state = match outcome {
            Ok(()) => {
                self.done += 1;
                State::Done
            }
            Err(why) => State::Skipped(why),
        };
        self.state.insert(key.clone(), state);
        self.generation += 1;
    }

    /// Replays done.
    pub fn replays(&self) -> u32 {
        self.done
    }

    /// The signatures that were not replayed though heavy enough, or were skipped, each with
    /// its busy share (parts per million) and why, heaviest first; at the end of the run.
    pub fn notes(&self) -> Vec<(SigKey, u32, ReplayOutcome)> {
        let exhausted = self.left_ns() < self.cost_ns();
        let mut notes: Vec<(SigKey, u32, ReplayOutcome)> = self
            .busy_ns
            .iter()
            .filter_map(|(k, &b)| {
                let outcome = match self.state.get(k) {
                    Some(State::Done | State::Claimed) => return None,
                    Some(State::Skipped(why)) => ReplayOutcome::Skipped(why.clone()),
                    _ if self.share(b) < MIN_SHARE => return None,
                    Some(State::Wanted) if !exhausted => ReplayOutcome::NotSeenAgain,
                    _ => ReplayOutcome::CutOff,
                };
                Some((k.clone(), (self.share(b) * 1e6).round() as u32, outcome))
            })
            .collect();
        notes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        notes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(name: &str) -> SigKey {
        (
            0,
            Arc::from(name),
            Some(LaunchShape {
                grid: [1, 1, 1],
                block: [128, 1, 1],
                shared_mem_bytes: 0,
            }),
        )
    }

    fn plan(budget_ms: u64) -> Plan {
        Plan::new(ReplaySettings {
            budget: Duration::from_millis(budget_ms),
            burst: Duration::from_millis(400),
        })
    }

    #[test]
    fn the_heaviest_signatures_the_budget_pays_for_are_wanted_once() {
        // Budget for two replays of 0.46 s.
        let mut p = plan(1000);
        for (name, us) in [("a", 500), ("b", 300), ("c", 199)] {
            p.observe(&key(name), us * 1000);
        }
        p.observe(&key("tiny"), 500);
        p.refresh();
        assert_eq!(p.claim(&key("c")), Claim::Pass, "third by weight");
        assert_eq!(p.claim(&key("a")), Claim::Replay);
        assert_eq!(p.claim(&key("a")), Claim::Pass, "claimed once");
        p.finish(&key("a"), 450_000_000, Ok(()));
        assert_eq!(p.claim(&key("b")), Claim::Replay);
        p.finish(&key("b"), 450_000_000, Err("it was captured".into()));
        p.refresh();
        assert_eq!(p.claim(&key("c")), Claim::Pass, "the budget is spent");
        let notes = p.notes();
        let names: Vec<(&str, &ReplayOutcome)> = notes.iter().map(|(k, _, o)| (&*k.1, o)).collect();
        assert_eq!(
            names,
            vec![
                ("b", &ReplayOutcome::Skipped("it was captured".into())),
                ("c", &ReplayOutcome::CutOff),
            ],
            "a was replayed; tiny is below the threshold"
        );
        assert_eq!(notes[1].1, 199_100, "c's busy share, ppm");
    }

    #[test]
    fn a_wanted_signature_never_launched_again_is_named_so() {
        let mut p = plan(30_000);
        p.observe(&key("prefill_only"), 1000);
        let g = p.generation();
        p.refresh();
        assert!(p.generation() > g, "threads must look again");
        let g = p.generation();
        p.refresh();
        assert_eq!(p.generation(), g, "nothing changed");
        assert_eq!(p.notes()[0].2, ReplayOutcome::NotSeenAgain);
    }

    #[test]
    fn the_cost_of_a_replay_follows_those_done() {
        let mut p = plan(10_000);
        p.observe(&key("a"), 1);
        p.refresh();
        assert_eq!(p.claim(&key("a")), Claim::Replay);
        p.finish(&key("a"), 2_000_000_000, Ok(()));
        // 8 s left at 2 s a replay: four more at most.
        for i in 0..10 {
            p.observe(&key(&format!("k{i}")), 10);
        }
        p.refresh();
        let wanted = (0..10)
            .filter(|i| p.claim(&key(&format!("k{i}"))) == Claim::Replay)
            .count();
        assert_eq!(wanted, 4);
        assert_eq!(p.replays(), 1);
    }
}
