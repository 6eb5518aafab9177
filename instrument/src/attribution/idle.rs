//! The idle (static) power baseline, measured in the run's quiet counter windows.

use super::linalg::t95;
use super::{PowerEstimate, MIN_BASELINE_WINDOWS, SETTLE_NS};
use crate::intervals::Interval;
use crate::power::CounterWindow;
use crate::trace::Trace;
use serde::{Deserialize, Serialize};

/// Idle power and what it rests on.
pub(crate) struct IdleBaseline {
    /// Idle power with its 95% CI.
    pub power: PowerEstimate,
    /// Variance of the idle estimate, mW².
    pub var_mw2: f64,
    /// Windows it was measured in.
    pub windows: usize,
    /// Which quiet windows those were.
    pub source: IdleSource,
    /// Power in the quiet windows after the work, when the baseline came from before it.
    pub after: Option<PowerEstimate>,
}

/// Which quiet counter windows the idle power was measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdleSource {
    /// Before the program's first GPU work.
    BeforeWork,
    /// While the program held the GPU with no work on it (between or after its work, before
    /// it exited).
    WhileHeld,
    /// Some after the program exited: too few quiet windows while it held the GPU.
    AfterRelease,
    /// The run's quiet windows, the trace not saying when the program exited (format < 2.7).
    #[default]
    Quiet,
}

impl IdleSource {
    /// Where the windows were, as a phrase that follows "from N quiet counter windows".
    pub fn describe(self) -> &'static str {
        match self {
            Self::BeforeWork => " before the first GPU work",
            Self::WhileHeld => " while the program held the GPU",
            Self::AfterRelease => ", some after the program exited (a GPU just released draws 2–4.5 W more than one held idle; the interval allows for it)",
            Self::Quiet => "",
        }
    }
}

/// Measure idle power in windows with no work in them or in the settling time before them,
/// while the program held the GPU: those before the work when there are enough (windows after
/// it carry the thermal tail, which is reported separately), else those up to
/// `released_ns` (when the program exited, [`Trace::released_at_ns`]), else all of them.
/// `held` (the profiler's own device work, such as kernel replay's checkpoint copies) counts
/// as work. `None` when there is no quiet window.
pub(crate) fn measure(
    trace: &Trace,
    work: &[usize],
    held: &[Interval],
    windows: &[CounterWindow],
    released_ns: Option<u64>,
) -> Option<IdleBaseline> {
    let busy = merged_busy(trace, work, held);
    let first_work_ns = busy.first().map_or(u64::MAX, |b| b.from_ns);
    let quiet: Vec<&CounterWindow> = windows.iter().filter(|w| is_quiet(&busy, w)).collect();
    let held_quiet: Vec<&CounterWindow> = quiet
        .iter()
        .copied()
        .filter(|w| released_ns.is_none_or(|r| w.end_ns <= r))
        .collect();
    let (before, after): (Vec<&CounterWindow>, Vec<&CounterWindow>) =
        quiet.iter().partition(|w| w.end_ns <= first_work_ns);
    let (baseline, source) = if before.len() >= MIN_BASELINE_WINDOWS {
        (&before, IdleSource::BeforeWork)
    } else if released_ns.is_none() {
        (&quiet, IdleSource::Quiet)
    } else if held_quiet.len() >= MIN_BASELINE_WINDOWS {
        (&held_quiet, IdleSource::WhileHeld)
    } else {
        (&quiet, IdleSource::AfterRelease)
    };
    let (mut power, mut var_mw2) = estimate(baseline)?;
    if let (IdleSource::AfterRelease, Some(r)) = (source, released_ns) {
        (power, var_mw2) = allow_for_release(power, var_mw2, baseline, r);
    }
    let after = if source == IdleSource::BeforeWork {
        estimate(&after).map(|e| e.0)
    } else {
        None
    };
    Some(IdleBaseline {
        power,
        var_mw2,
        windows: baseline.len(),
        source,
        after,
    })
}

/// How much more than one held idle a GPU just released may draw, mW: 2.2–4.4 W for seconds
/// after each of five programs on H100s (none seen after a sixth).
pub(crate) const RELEASED_EXCESS_MW: f64 = 4_500.0;

/// An idle `power` (and its variance, mW²) measured in `windows` of which those ending after
/// `released_ns` saw the GPU released: their excess, anywhere from nothing to
/// [`RELEASED_EXCESS_MW`] in proportion to their time, is taken as a uniform bias, so the
/// estimate moves down by half its largest value and its interval widens by as much.
fn allow_for_release(
    power: PowerEstimate,
    var_mw2: f64,
    windows: &[&CounterWindow],
    released_ns: u64,
) -> (PowerEstimate, f64) {
    let seconds = |w: &&CounterWindow| (w.end_ns - w.start_ns) as f64 * 1e-9;
    let total_s: f64 = windows.iter().map(seconds).sum();
    let released_s: f64 = windows
        .iter()
        .filter(|w| w.end_ns > released_ns)
        .map(seconds)
        .sum();
    if total_s <= 0.0 {
        return (power, var_mw2);
    }
    let bias_mw = RELEASED_EXCESS_MW * released_s / total_s;
    let half_mw = power.high_mw - power.mw + bias_mw / 2.0;
    (
        PowerEstimate::from_half_width(power.mw - bias_mw / 2.0, half_mw),
        var_mw2 + bias_mw * bias_mw / 12.0,
    )
}

/// Idle power (ratio of energy to time) over `windows` and the variance of that mean, mW².
fn estimate(windows: &[&CounterWindow]) -> Option<(PowerEstimate, f64)> {
    let first = windows.first()?;
    let mw = windows.iter().map(|w| w.energy_mj as f64).sum::<f64>()
        / windows
            .iter()
            .map(|w| (w.end_ns - w.start_ns) as f64 * 1e-9)
            .sum::<f64>();
    let var = if windows.len() > 1 {
        let n = windows.len() as f64;
        let m = windows.iter().map(|w| w.power_w()).sum::<f64>() / n;
        windows
            .iter()
            .map(|w| (w.power_w() - m).powi(2))
            .sum::<f64>()
            / (n - 1.0)
            * 1e6
            / n
    } else {
        0.0
    };
    // Floor: the counter's 1 mJ steps at the two ends and the placement of the two edges of
    // the whole baseline (window errors telescope when windows are contiguous).
    let total_s: f64 = windows
        .iter()
        .map(|w| (w.end_ns - w.start_ns) as f64 * 1e-9)
        .sum();
    let edge_mj = mw * first.edge_sd_ns * 1e-9;
    let floor = (2.0 * (1.0 / 12.0) + 2.0 * edge_mj * edge_mj) / (total_s * total_s);
    let var = var.max(floor);
    let t = t95(windows.len().saturating_sub(1).max(1));
    Some((PowerEstimate::from_half_width(mw, t * var.sqrt()), var))
}

/// The union of the device-work intervals and `held`, sorted and disjoint.
fn merged_busy(trace: &Trace, work: &[usize], held: &[Interval]) -> Vec<Interval> {
    crate::intervals::union(
        work.iter()
            .map(|&i| Interval::new(trace.spans[i].start_ns, trace.spans[i].end_ns))
            .chain(held.iter().copied())
            .collect(),
    )
}

/// True when no work overlaps the window or the settling time before it.
fn is_quiet(busy: &[Interval], w: &CounterWindow) -> bool {
    let from = w.start_ns.saturating_sub(SETTLE_NS);
    let i = busy.partition_point(|b| b.to_ns <= from);
    busy.get(i).is_none_or(|b| b.from_ns >= w.end_ns)
}
