//! Kernel replay in the attribution: which observations the profiler's own device work spoils,
//! what each signature drew in its replay, and whether those replays add up to what the
//! program drew in place (the replay closure).
//!
//! A replay (issue 7's `--measure-alone`, or `wattlens run --replay`) holds the program,
//! checkpoints device memory, runs one launch back to back for a burst, and restores the
//! memory. The burst is a [`SpanKind::Alone`] span; the episode around it is an
//! [`Annotation::ProfilerEpisode`]. The checkpoint's copies draw power that no span explains,
//! so a counter window or a sample that sees any of the episode outside the burst is left out.
//!
//! A replay runs warm and back to back, so it need not draw what the same kernel draws in
//! place. The closure measures that: over the program's steady stretches (counter windows
//! with program work and no episode), the energy the replayed powers predict against the
//! energy the counter measured above idle. Its distance from 1 is a systematic error common
//! to every replayed signature; it is carried into their intervals as a fully correlated term.

use serde::{Deserialize, Serialize};

use super::design::Design;
use super::linalg::t95;
use crate::intervals::Interval;
use crate::power::CounterWindow;
use crate::trace::{Annotation, LaunchShape, SpanKind, Trace};

/// How many sensor time constants back a sample still sees the power (e⁻⁵ < 1%).
const SAMPLE_REACH_TAUS: u64 = 5;

/// The profiler's own device work on one device: episodes, and the bursts inside them.
#[derive(Debug, Default)]
pub(crate) struct Episodes {
    /// Episodes, sorted and merged.
    held: Vec<Interval>,
    /// Bursts (the [`SpanKind::Alone`] spans), sorted.
    bursts: Vec<Interval>,
}

impl Episodes {
    /// The episodes and bursts of `device` in `trace`. A burst recorded without an episode
    /// (a runtime trace, whose replays checkpoint nothing) is its own episode; a burst in
    /// `unlike` is an episode without a burst (what it drew is explained by nothing).
    pub fn of(trace: &Trace, device: u32, unlike: &[UnlikeReplay]) -> Self {
        let mut held = Vec::new();
        let mut bursts = Vec::new();
        for s in trace
            .spans
            .iter()
            .filter(|s| s.device == device && matches!(s.kind, SpanKind::Alone { .. }))
        {
            held.push(Interval::new(s.start_ns, s.end_ns));
            if !unlike.iter().any(|u| u.span == s.id) {
                bursts.push(Interval::new(s.start_ns, s.end_ns));
            }
        }
        bursts.sort_unstable();
        held.extend(trace.annotations.iter().filter_map(|a| match *a {
            Annotation::ProfilerEpisode {
                device: d,
                from_ns,
                to_ns,
            } if d == device && to_ns >= from_ns => Some(Interval::new(from_ns, to_ns)),
            _ => None,
        }));
        Self {
            held: crate::intervals::union(held),
            bursts,
        }
    }

    /// True when no profiler work was recorded.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The episodes, sorted and disjoint: device time that is not the program's.
    pub fn held(&self) -> &[Interval] {
        &self.held
    }

    /// Total time the profiler held the device, ns.
    pub fn held_ns(&self) -> u64 {
        self.held.iter().map(|i| i.to_ns - i.from_ns).sum()
    }

    /// True when `[a, b]` overlaps an episode.
    pub fn touches(&self, a: u64, b: u64) -> bool {
        let i = self.held.partition_point(|h| h.to_ns <= a);
        self.held.get(i).is_some_and(|h| h.from_ns < b)
    }

    /// True when `[a, b]` lies inside one burst.
    fn inside_burst(&self, a: u64, b: u64) -> bool {
        let i = self.bursts.partition_point(|s| s.from_ns <= a);
        i > 0 && self.bursts[i - 1].to_ns >= b
    }

    /// True when an observation of `[a, b]` sees profiler work that no span explains: it
    /// touches an episode without lying inside a burst.
    pub fn spoils(&self, a: u64, b: u64) -> bool {
        self.touches(a, b) && !self.inside_burst(a, b)
    }

    /// `samples` less those whose reading could see profiler work outside a burst, through
    /// the sensor's response of time constant `tau_ns`.
    pub fn usable_samples(&self, samples: &[(u64, f64)], tau_ns: u64) -> Vec<(u64, f64)> {
        if self.is_empty() {
            return samples.to_vec();
        }
        let reach = SAMPLE_REACH_TAUS.saturating_mul(tau_ns);
        samples
            .iter()
            .copied()
            .filter(|&(t, _)| !self.spoils(t.saturating_sub(reach), t))
            .collect()
    }
}

/// What kernel replay measured, and how well it agrees with the program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// Signatures of the program with at least one replay.
    pub signatures: usize,
    /// Bursts.
    pub bursts: usize,
    /// Device time of the bursts, ns.
    pub burst_ns: u64,
    /// Time the profiler held the program for them (checkpoint, burst, restore), ns: what
    /// replay cost the run.
    pub held_ns: u64,
    /// Share of the program's device busy time (kernels, copies, memsets) in replayed
    /// signatures (0..=1).
    pub replayed_busy_share: f64,
    /// The replay closure, where the run had steady stretches to check it on.
    pub closure: Option<ReplayClosure>,
    /// Signatures that were not replayed, and why.
    pub notes: Vec<ReplayNoteEntry>,
}

/// A signature kernel replay did not measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayNoteEntry {
    /// Kernel name.
    pub name: String,
    /// Launch shape.
    pub launch: Option<LaunchShape>,
    /// Its share of the program's kernel busy time (0..=1).
    pub busy_share: f64,
    /// What happened, in one phrase.
    pub outcome: String,
}

/// Replayed powers against the program: over the counter windows of the program's steady
/// stretches, the dynamic energy the replays predict (each replayed signature's replay power
/// × its busy time there) against what the counter measured above idle less what the work
/// not replayed can have drawn there (anywhere in its interval).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReplayClosure {
    /// Counter windows used.
    pub windows: usize,
    /// Their total length, ns.
    pub window_ns: u64,
    /// Predicted dynamic energy, the work not replayed at the middle of its interval, mJ.
    pub predicted_mj: f64,
    /// Of which from replayed signatures, mJ.
    pub predicted_by_replays_mj: f64,
    /// The least the work not replayed can have drawn there, mJ.
    #[serde(default)]
    pub unreplayed_low_mj: f64,
    /// The most, mJ.
    #[serde(default)]
    pub unreplayed_high_mj: f64,
    /// Measured dynamic energy (counter − idle × time), mJ.
    pub measured_mj: f64,
    /// What the replays predict over what the counter leaves them (measured less the work not
    /// replayed, at the middle of its interval): a replayed signature draws its replay power
    /// over this in the program.
    pub ratio: f64,
    /// Lower end of the ratio's 95% CI (the work not replayed at its least).
    pub ratio_low: f64,
    /// Upper end of the ratio's 95% CI (the work not replayed at its most).
    pub ratio_high: f64,
    /// The relative error carried into every replayed signature's interval (95% half-width,
    /// as a share of its power): how far the program's power (replay power ÷ ratio) can lie
    /// from the replay's, by the ratio's interval.
    pub systematic: f64,
}

/// One replayed signature's power from its bursts' counter windows alone, mW per busy
/// second of the design (so per program launch), with its variance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayPower {
    pub mw: f64,
    pub var_mw2: f64,
}

/// The counter windows inside one signature's bursts, summed.
#[derive(Debug, Clone, Default)]
struct BurstWindows {
    /// Σ energy above idle, mJ.
    energy_mj: f64,
    /// Σ busy time of the design, s.
    busy_s: f64,
    /// Σ window length, s.
    window_s: f64,
    /// Each window's (energy above idle, busy time).
    rows: Vec<(f64, f64)>,
}

/// The power each signature drew in its bursts: the counter windows that lie wholly inside a
/// burst of it. `None` for a signature without such a window.
pub(crate) fn replay_powers(
    trace: &Trace,
    work: &[usize],
    design: &Design,
    windows: &[CounterWindow],
    (idle_mw, idle_var_mw2): (f64, f64),
) -> Vec<Option<ReplayPower>> {
    let p = design.len();
    let mut acc: Vec<BurstWindows> = vec![BurstWindows::default(); p];
    for (w, &i) in work.iter().enumerate() {
        let span = &trace.spans[i];
        if !matches!(span.kind, SpanKind::Alone { .. }) {
            continue;
        }
        let s = design.sig_of[w];
        let first = windows.partition_point(|win| win.start_ns < span.start_ns);
        for (k, win) in windows.iter().enumerate().skip(first) {
            if win.end_ns > span.end_ns {
                break;
            }
            let x = design.x[k][s];
            // Only this burst ran in the window.
            let others: f64 = design.x[k].iter().sum::<f64>() - x;
            if x <= 0.0 || others > 1e-9 * x {
                continue;
            }
            let dt = (win.end_ns - win.start_ns) as f64 * 1e-9;
            let y = win.energy_mj as f64 - idle_mw * dt;
            let a = &mut acc[s];
            a.energy_mj += y;
            a.busy_s += x;
            a.window_s += dt;
            a.rows.push((y, x));
        }
    }
    acc.into_iter()
        .map(|w| {
            let (sy, sx, st, rows) = (w.energy_mj, w.busy_s, w.window_s, w.rows);
            if sx <= 0.0 || rows.is_empty() {
                return None;
            }
            let mw = sy / sx;
            let n = rows.len() as f64;
            // Scatter of the windows about the ratio, or the counter's 1 mJ steps alone.
            let scatter = if rows.len() > 1 {
                rows.iter().map(|&(y, x)| (y - mw * x).powi(2)).sum::<f64>() / (n - 1.0) * n
            } else {
                0.0
            };
            let quantum = 2.0 / 12.0 * n;
            let var = (scatter.max(quantum) + idle_var_mw2 * st * st) / (sx * sx);
            Some(ReplayPower { mw, var_mw2: var })
        })
        .collect()
}

/// The replay closure over `windows` that hold program work and touch no episode;
/// `unreplayed` gives each signature's power interval from the fit (low, high; mW, cut at
/// the board's cap), for those without a replay power. The work not replayed enters as its
/// whole interval, not its fitted value: a signature seen in only a window or two (a copy
/// whose shape changes every few decode steps) takes up those windows' misfit at tens of kW,
/// and priced at that it would hide a shortfall of the replays in the very check meant to
/// show it. `None` where the work not replayed could account for everything measured.
pub(crate) fn closure(
    design: &Design,
    windows: &[CounterWindow],
    episodes: &Episodes,
    replay: &[Option<ReplayPower>],
    unreplayed: &[(f64, f64)],
    (idle_mw, idle_var_mw2): (f64, f64),
) -> Option<ReplayClosure> {
    let p = design.len();
    let mut busy_s = vec![0.0f64; p];
    let (mut measured, mut dt_total, mut n, mut window_ns) = (0.0f64, 0.0f64, 0usize, 0u64);
    for (k, w) in windows.iter().enumerate() {
        if design.x[k].iter().all(|&x| x <= 0.0) || episodes.touches(w.start_ns, w.end_ns) {
            continue;
        }
        for (s, &x) in design.x[k].iter().enumerate() {
            busy_s[s] += x;
        }
        let dt = (w.end_ns - w.start_ns) as f64 * 1e-9;
        measured += w.energy_mj as f64 - idle_mw * dt;
        dt_total += dt;
        window_ns += w.end_ns - w.start_ns;
        n += 1;
    }
    let (mut by_replays, mut var_pred, mut other_low, mut other_high) = (0.0, 0.0, 0.0, 0.0);
    for s in (0..p).filter(|&s| busy_s[s] > 0.0) {
        match replay.get(s).copied().flatten() {
            Some(r) => {
                by_replays += r.mw * busy_s[s];
                var_pred += r.var_mw2 * busy_s[s] * busy_s[s];
            }
            None => {
                let (low, high) = unreplayed.get(s).copied().unwrap_or((0.0, f64::INFINITY));
                other_low += low.clamp(0.0, high) * busy_s[s];
                other_high += high * busy_s[s];
            }
        }
    }
    // What the counter leaves the replays: the measured energy less the work not replayed,
    // at its least and at its most.
    let (left_most, left_least) = (measured - other_low, measured - other_high);
    if n == 0 || by_replays <= 0.0 || left_least <= 0.0 || !left_least.is_finite() {
        return None;
    }
    let var_meas = idle_var_mw2 * dt_total * dt_total + 2.0 / 12.0 * n as f64;
    let rel_var = var_pred / (by_replays * by_replays) + var_meas / (left_least * left_least);
    let half = t95(n.saturating_sub(1).max(1)) * rel_var.max(0.0).sqrt();
    let ratio = by_replays / (measured - (other_low + other_high) / 2.0);
    let low = (by_replays / left_most * (1.0 - half)).max(0.0);
    let high = by_replays / left_least * (1.0 + half);
    Some(ReplayClosure {
        windows: n,
        window_ns,
        predicted_mj: by_replays + (other_low + other_high) / 2.0,
        predicted_by_replays_mj: by_replays,
        unreplayed_low_mj: other_low,
        unreplayed_high_mj: other_high,
        measured_mj: measured,
        ratio,
        ratio_low: low,
        ratio_high: high,
        systematic: systematic(low, high),
    })
}

/// The most, as a share of a replay power, by which the program's power (replay power ÷
/// ratio) lies from it for a ratio in `[low, high]`; a ratio interval that reaches zero
/// leaves the replays uninformative: [`UNINFORMATIVE`].
fn systematic(low: f64, high: f64) -> f64 {
    let up = if low > 1.0 / UNINFORMATIVE {
        1.0 / low - 1.0
    } else {
        UNINFORMATIVE
    };
    let down = if high > 0.0 { 1.0 - 1.0 / high } else { 0.0 };
    up.max(down).max(0.0)
}

/// The relative error of a replay power that a closure reaching zero leaves: no information.
const UNINFORMATIVE: f64 = 1e6;

/// A replay launch takes at most this many times less, or more, than the same launch in place
/// before the replay is taken for other work: a replay runs warm (its inputs in L2), which
/// speeds a launch up by at most the L2-to-memory bandwidth ratio (2–3× on Hopper); a kernel
/// that keeps state across launches (a tile counter of a persistent or stream-K kernel, seen
/// in cuDNN's flash attention and cuBLAS's cooperative GEMMs at 11–14×) does far less.
pub const UNLIKE_REPLAY_RATIO: f64 = 4.0;

/// A burst whose launches did other work than the program's.
#[derive(Debug, Clone)]
pub(crate) struct UnlikeReplay {
    /// The burst's span id.
    pub span: u64,
    /// Kernel name.
    pub name: String,
    /// Launch shape.
    pub launch: Option<LaunchShape>,
    /// One replayed launch's time over one launch's in place (median).
    pub ratio: f64,
}

/// The bursts of `device` whose launches took [`UNLIKE_REPLAY_RATIO`] times less or more than
/// the program's own launches of the same signature.
pub(crate) fn unlike_replays(trace: &Trace, device: u32) -> Vec<UnlikeReplay> {
    use std::collections::HashMap;
    let mut in_place: HashMap<(crate::trace::StrId, Option<LaunchShape>), Vec<u64>> =
        HashMap::new();
    for s in trace
        .spans
        .iter()
        .filter(|s| s.device == device && s.is_program_work())
    {
        in_place
            .entry((s.name, s.launch))
            .or_default()
            .push(s.duration_ns());
    }
    let median = |v: &mut Vec<u64>| -> Option<u64> {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let medians: HashMap<_, u64> = in_place
        .into_iter()
        .filter_map(|(k, mut v)| median(&mut v).filter(|&m| m > 0).map(|m| (k, m)))
        .collect();
    trace
        .spans
        .iter()
        .filter(|s| s.device == device)
        .filter_map(|s| match s.kind {
            SpanKind::Alone { launches, .. } if launches > 0 => {
                let typical = *medians.get(&(s.name, s.launch))?;
                let ratio = s.duration_ns() as f64 / f64::from(launches) / typical as f64;
                (!(1.0 / UNLIKE_REPLAY_RATIO..=UNLIKE_REPLAY_RATIO).contains(&ratio)).then(|| {
                    UnlikeReplay {
                        span: s.id,
                        name: trace.str(s.name).to_owned(),
                        launch: s.launch,
                        ratio,
                    }
                })
            }
            _ => None,
        })
        .collect()
}

/// The kernel-replay notes of `device` in `trace`, with their busy shares, and one for each
/// replay left out as `unlike`.
pub(crate) fn notes(trace: &Trace, device: u32, unlike: &[UnlikeReplay]) -> Vec<ReplayNoteEntry> {
    let mut out: Vec<ReplayNoteEntry> = unlike
        .iter()
        .map(|u| ReplayNoteEntry {
            name: u.name.clone(),
            launch: u.launch,
            busy_share: 0.0,
            outcome: if u.ratio < 1.0 {
                format!(
                    "replayed, but a launch ran {:.0}× faster alone than in place (the kernel keeps state across launches, such as a tile counter, so repeats did less work); its replay is not used",
                    1.0 / u.ratio
                )
            } else {
                format!(
                    "replayed, but a launch ran {:.1}× slower alone than in place; its replay is not used",
                    u.ratio
                )
            },
        })
        .collect();
    out.extend(trace.annotations.iter().filter_map(|a| match a {
        Annotation::ReplayNote {
            device: d,
            name,
            launch,
            busy_ppm,
            outcome,
        } if *d == device => Some(ReplayNoteEntry {
            name: name.clone(),
            launch: *launch,
            busy_share: f64::from(*busy_ppm) * 1e-6,
            outcome: outcome.describe(),
        }),
        _ => None,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{RunMeta, Span, StrId};

    fn trace_with(episode: (u64, u64), burst: (u64, u64)) -> Trace {
        let mut t = Trace::new(RunMeta::default());
        t.spans.push(Span::new(
            1,
            SpanKind::Alone {
                launches: 10,
                of: 0,
            },
            (0, 0),
            StrId::NONE,
            burst,
        ));
        t.annotations.push(Annotation::ProfilerEpisode {
            device: 0,
            from_ns: episode.0,
            to_ns: episode.1,
        });
        t
    }

    #[test]
    fn observations_that_see_the_checkpoint_are_spoiled_and_those_inside_the_burst_are_not() {
        let e = Episodes::of(&trace_with((100, 1000), (200, 900)), 0, &[]);
        assert!(!e.spoils(0, 100), "before the episode");
        assert!(e.spoils(50, 150), "sees the checkpoint");
        assert!(e.spoils(150, 300), "straddles the burst's start");
        assert!(!e.spoils(200, 900), "the whole burst");
        assert!(!e.spoils(300, 400), "inside the burst");
        assert!(e.spoils(850, 950), "sees the restore");
        assert!(!e.spoils(1000, 1100), "after");
        assert!(e.touches(850, 950) && !e.touches(1000, 1100));
        assert_eq!(e.held_ns(), 900);
        // Samples: one reading at t sees back 5τ.
        let samples: Vec<(u64, f64)> = [120, 450, 930, 2000].iter().map(|&t| (t, 1.0)).collect();
        let kept = e.usable_samples(&samples, 20);
        assert_eq!(
            kept.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![450, 2000],
            "a sample sees the restore for 5τ after it"
        );
    }

    #[test]
    fn a_replay_that_did_less_work_than_the_launch_in_place_is_left_out_and_named() {
        let mut t = trace_with((0, 3_000_000), (100_000, 1_800_000));
        let name = t.strings.push("flash_fprop");
        t.spans[0].name = name;
        // 1,000 replays in 1.7 ms: 1.7 µs each, against 26 µs in place.
        t.spans[0].kind = SpanKind::Alone {
            launches: 1000,
            of: 0,
        };
        for k in 0..5u64 {
            let start = 10_000_000 + k * 100_000;
            t.spans.push(Span::new(
                10 + k,
                SpanKind::Kernel,
                (0, 7),
                name,
                (start, start + 26_000),
            ));
        }
        let unlike = unlike_replays(&t, 0);
        assert_eq!(unlike.len(), 1);
        assert!((unlike[0].ratio - 1.7 / 26.0).abs() < 1e-3, "{unlike:?}");
        let n = notes(&t, 0, &unlike);
        assert!(
            n[0].outcome.contains("15× faster alone"),
            "{}",
            n[0].outcome
        );
        // A warm replay twice as fast is the same work.
        t.spans[0].end_ns = t.spans[0].start_ns + 13_000_000;
        assert!(unlike_replays(&t, 0).is_empty());
    }

    #[test]
    fn a_runtime_burst_without_an_episode_is_its_own() {
        let mut t = trace_with((0, 0), (200, 900));
        t.annotations.clear();
        let e = Episodes::of(&t, 0, &[]);
        assert_eq!(e.held(), &[Interval::new(200, 900)]);
        assert!(!e.spoils(300, 400));
        assert!(e.spoils(100, 300));
        assert!(Episodes::of(&t, 1, &[]).is_empty(), "another device");
        // A burst left out spoils what it overlaps, as a checkpoint does.
        let unlike = [UnlikeReplay {
            span: 1,
            name: String::new(),
            launch: None,
            ratio: 0.07,
        }];
        let e = Episodes::of(&t, 0, &unlike);
        assert!(e.spoils(300, 400));
        assert_eq!(e.held(), &[Interval::new(200, 900)]);
    }
}
