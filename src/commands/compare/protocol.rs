//! The repetition protocol of `wattlens compare --variant` and `--ranges`: each command runs
//! under `wattlens run` (this same binary, as a child, so a failing command never takes the
//! comparison down), in rounds whose order rotates one place each round, after warm-up rounds
//! that are discarded, with a cool-down to the idle power before every run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wattlens_instrument::Trace;

use crate::error::CliError;

/// How many runs, and the wait between them.
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// Measured rounds.
    pub repeats: u32,
    /// Rounds run first and discarded (caches, clocks, the allocator's pools).
    pub warmup: u32,
    /// The longest wait for the GPU to return to its idle power before a run.
    pub cooldown_max: Duration,
}

/// One run in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Round, from 0 (warm-up rounds first).
    pub round: u32,
    /// Which variant.
    pub variant: usize,
    /// A warm-up run, discarded.
    pub warmup: bool,
}

/// Every run of `variants` variants: warm-up rounds, then measured rounds, each round every
/// variant once, in an order rotated one place from the round before, so that no variant
/// always follows the same one (nor always runs first, on the coolest GPU).
pub fn schedule(variants: usize, p: &Protocol) -> Vec<Slot> {
    let rounds = p.warmup + p.repeats;
    (0..rounds)
        .flat_map(|round| {
            (0..variants).map(move |k| Slot {
                round,
                variant: (k + round as usize) % variants.max(1),
                warmup: round < p.warmup,
            })
        })
        .collect()
}

/// Reads the GPUs' power, W, summed over the GPUs the commands can see.
pub trait PowerProbe {
    /// The power now, W; `None` when it cannot be read.
    fn power_w(&mut self) -> Option<f64>;
    /// Wait `d` (the fake in tests only counts it).
    fn sleep(&mut self, d: Duration);
}

/// How a cool-down went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoolDown {
    /// Time waited.
    pub waited: Duration,
    /// The power when the run started, W.
    pub start_w: f64,
    /// True when the power reached the idle level; false when the wait ran out first.
    pub reached: bool,
}

/// Poll period of the cool-down.
const POLL: Duration = Duration::from_millis(200);

/// The power a cooled GPU may draw: its idle power measured before the first run, with a
/// margin for the sensor's noise and the held-idle state (10%, plus 10 W).
pub fn idle_level_w(idle_w: f64) -> f64 {
    idle_w * 1.10 + 10.0
}

/// The idle power before any run: the least of the readings over `span` (a reader's first
/// readings, and any other process's burst, are above it).
pub fn measure_idle_w(probe: &mut dyn PowerProbe, span: Duration) -> Option<f64> {
    let polls = (span.as_millis() / POLL.as_millis()).max(1);
    let mut least: Option<f64> = None;
    for _ in 0..polls {
        if let Some(w) = probe.power_w() {
            least = Some(least.map_or(w, |l| l.min(w)));
        }
        probe.sleep(POLL);
    }
    least
}

/// Wait until the power is at `level_w` or below, for at most `max`.
pub fn cool_down(probe: &mut dyn PowerProbe, level_w: f64, max: Duration) -> Option<CoolDown> {
    let mut waited = Duration::ZERO;
    loop {
        let w = probe.power_w()?;
        if w <= level_w || waited >= max {
            return Some(CoolDown {
                waited,
                start_w: w,
                reached: w <= level_w,
            });
        }
        probe.sleep(POLL);
        waited += POLL;
    }
}

/// The GPUs' power from NVML.
pub struct NvmlProbe {
    source: Box<dyn wattlens_instrument::power::PowerSource>,
    clock: std::sync::Arc<wattlens_instrument::clock::HostClock>,
    readings: Vec<wattlens_instrument::trace::PowerReading>,
}

impl NvmlProbe {
    /// Open NVML on the GPUs `CUDA_VISIBLE_DEVICES` leaves visible.
    ///
    /// # Errors
    /// A sentence saying why NVML cannot read them.
    pub fn open() -> Result<Self, String> {
        let clock = std::sync::Arc::new(wattlens_instrument::clock::HostClock::new());
        let source = crate::baseline::open_visible_gpus(clock.clone())?;
        Ok(Self {
            source: Box::new(source),
            clock,
            readings: Vec::new(),
        })
    }
}

impl PowerProbe for NvmlProbe {
    fn power_w(&mut self) -> Option<f64> {
        use wattlens_instrument::clock::Clock;
        use wattlens_instrument::trace::PowerReading;
        self.readings.clear();
        let now = self.clock.now_ns();
        self.source.flush(now, &mut self.readings).ok()?;
        // The latest sample of each device, summed.
        let mut latest: std::collections::BTreeMap<u32, (u64, u32)> = Default::default();
        for r in &self.readings {
            if let PowerReading::Sample {
                device,
                ts_ns,
                power_mw,
                ..
            } = r
            {
                let e = latest.entry(*device).or_insert((*ts_ns, *power_mw));
                if *ts_ns >= e.0 {
                    *e = (*ts_ns, *power_mw);
                }
            }
        }
        (!latest.is_empty()).then(|| latest.values().map(|&(_, mw)| f64::from(mw) / 1e3).sum())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// One recorded run: its trace and what the command printed.
pub struct Recorded {
    /// The run's trace (its processes' traces merged).
    pub trace: Trace,
    /// The command's standard output.
    pub stdout: String,
}

/// The `wattlens run` flags every run of a comparison gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFlags {
    /// `--replay`.
    pub replay: bool,
}

/// Run `argv` under `wattlens run`, writing its trace to `output` and its standard output
/// beside it (`.out`); the command's standard error passes through.
///
/// # Errors
/// [`CliError::Usage`] when the command cannot start (the shell's 126 or 127) or left no
/// trace because it never used the GPU; [`CliError::Setup`] when this binary cannot be run
/// again; [`CliError::ChildExit`] with the command's code when it failed.
pub fn record(argv: &[String], output: &Path, flags: RunFlags) -> Result<Recorded, CliError> {
    let command = argv.join(" ");
    // A trace left by an earlier comparison in the same folder must not stand in for this run.
    for stale in traces_of(output) {
        std::fs::remove_file(&stale).map_err(|source| CliError::WriteFile {
            path: stale.clone(),
            source,
        })?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Setup(format!("cannot find the wattlens binary to run: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--no-report").arg("-o").arg(output);
    if flags.replay {
        cmd.arg("--replay");
    }
    cmd.arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Setup(format!("cannot run wattlens again: {e}")))?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let mut bytes = Vec::new();
        // A read error leaves what was read: the metric is looked for in it.
        let _ = pipe.read_to_end(&mut bytes);
        stdout = String::from_utf8_lossy(&bytes).into_owned();
    }
    let status = child
        .wait()
        .map_err(|e| CliError::Setup(format!("cannot wait for wattlens run: {e}")))?;
    let out_path = output.with_extension("out");
    std::fs::write(&out_path, &stdout).map_err(|source| CliError::WriteFile {
        path: out_path.clone(),
        source,
    })?;
    match crate::child::exit_code(status) {
        0 => {}
        126 | 127 => {
            return Err(CliError::Usage(format!(
                "`{command}` cannot start (command not found or not executable); check the command"
            )))
        }
        code => return Err(CliError::ChildExit(code)),
    }
    let paths = traces_of(output);
    if paths.is_empty() {
        return Err(CliError::Usage(format!(
            "`{command}` ran but used no GPU that wattlens could record, so there is nothing to compare"
        )));
    }
    let mut traces = Vec::with_capacity(paths.len());
    for p in &paths {
        traces.push(super::super::load_trace(p)?);
    }
    let (traces, _) = wattlens_instrument::merge::distinct(traces);
    let trace = wattlens_instrument::merge::merge(traces)?;
    Ok(Recorded { trace, stdout })
}

/// The trace `wattlens run -o output` left: the file itself, or one per CUDA process.
fn traces_of(output: &Path) -> Vec<PathBuf> {
    if output.is_file() {
        return vec![output.to_path_buf()];
    }
    let dir = output.parent().unwrap_or(Path::new("."));
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| super::super::run::is_process_trace(&stem, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The number `metric` captures in `stdout`: its last match's first group, or the whole match
/// without groups. `None` when it does not match or the capture is not a number.
pub fn metric_value(metric: &regex_lite::Regex, stdout: &str) -> Option<f64> {
    let caps = metric.captures_iter(stdout).last()?;
    let text = caps.get(1).or_else(|| caps.get(0))?.as_str();
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rounds_rotate_and_warm_up_comes_first() {
        let p = Protocol {
            repeats: 2,
            warmup: 1,
            cooldown_max: Duration::ZERO,
        };
        let s = schedule(3, &p);
        assert_eq!(s.len(), 9);
        let order: Vec<usize> = s.iter().map(|x| x.variant).collect();
        assert_eq!(order, vec![0, 1, 2, 1, 2, 0, 2, 0, 1]);
        assert!(s[..3].iter().all(|x| x.warmup) && s[3..].iter().all(|x| !x.warmup));
        // Each variant once per round, and each first once over three rounds.
        for round in 0..3 {
            let mut r: Vec<usize> = s[round * 3..round * 3 + 3]
                .iter()
                .map(|x| x.variant)
                .collect();
            r.sort_unstable();
            assert_eq!(r, vec![0, 1, 2]);
        }
    }

    struct Fake {
        readings: Vec<f64>,
        slept: Duration,
    }

    impl PowerProbe for Fake {
        fn power_w(&mut self) -> Option<f64> {
            if self.readings.len() > 1 {
                Some(self.readings.remove(0))
            } else {
                self.readings.first().copied()
            }
        }
        fn sleep(&mut self, d: Duration) {
            self.slept += d;
        }
    }

    #[test]
    fn cool_down_waits_for_the_idle_level_and_no_longer_than_its_limit() {
        let mut p = Fake {
            readings: vec![300.0, 250.0, 180.0, 120.0, 100.0],
            slept: Duration::ZERO,
        };
        let c = cool_down(&mut p, idle_level_w(90.0), Duration::from_secs(10)).unwrap();
        assert!(c.reached);
        assert_eq!(c.start_w, 100.0);
        assert_eq!(c.waited, POLL * 4);
        let mut hot = Fake {
            readings: vec![400.0],
            slept: Duration::ZERO,
        };
        let c = cool_down(&mut hot, 100.0, Duration::from_secs(1)).unwrap();
        assert!(!c.reached);
        assert_eq!(c.waited, Duration::from_secs(1));
        assert_eq!(hot.slept, Duration::from_secs(1));
    }

    #[test]
    fn the_idle_power_is_the_least_reading() {
        let mut p = Fake {
            readings: vec![130.0, 95.0, 110.0, 97.0, 99.0],
            slept: Duration::ZERO,
        };
        assert_eq!(measure_idle_w(&mut p, Duration::from_secs(1)), Some(95.0));
    }

    #[test]
    fn the_metric_is_the_last_match_of_its_group() {
        let re = regex_lite::Regex::new(r"ppl=([0-9.eE+-]+)").unwrap();
        assert_eq!(metric_value(&re, "ppl=3.5\nstep\nppl=2.25\n"), Some(2.25));
        assert_eq!(metric_value(&re, "nothing here"), None);
        let whole = regex_lite::Regex::new(r"[0-9]+\.[0-9]+").unwrap();
        assert_eq!(metric_value(&whole, "max error 0.0125"), Some(0.0125));
        let bad = regex_lite::Regex::new(r"err=(\S+)").unwrap();
        assert_eq!(metric_value(&bad, "err=nan?"), None);
    }
}
