//! The sampler: a background thread that polls a power source on its own schedule, counts
//! its own CPU time, and hands readings over without ever losing what it already read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{thread_cpu_ns, PowerError, PowerSource};
use crate::clock::Clock;
use crate::trace::{ClockAlignment, PowerReading};

/// Longest the sampler sleeps at once, ns. A stop wakes it at once, so this only bounds how
/// stale a schedule can get; every wake-up costs CPU, so it is long.
const MAX_SLEEP_NS: u64 = 250_000_000;

/// What the sampler did and what it cost.
#[derive(Debug, Clone, Default)]
pub struct SamplerReport {
    /// CPU time of the sampler thread, ns (`None` where the platform cannot say).
    pub cpu_ns: Option<u64>,
    /// Wall time from start to stop, ns.
    pub wall_ns: u64,
    /// Polls made.
    pub polls: u64,
    /// Readings delivered.
    pub readings: u64,
    /// Readings the source reported lost (gap records).
    pub gaps: u64,
    /// Errors met, each once, in order (a lost GPU, a failed read).
    pub errors: Vec<String>,
    /// The clock alignments the source fitted.
    pub alignments: Vec<ClockAlignment>,
}

impl SamplerReport {
    /// CPU time as a share of one core over the run (0.01 = 1%).
    pub fn cpu_share(&self) -> Option<f64> {
        self.cpu_ns.map(|c| c as f64 / self.wall_ns.max(1) as f64)
    }
}

/// A running sampler thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    rx: Receiver<Vec<PowerReading>>,
    handle: Option<JoinHandle<SamplerReport>>,
}

impl Sampler {
    /// Start polling `source` on a new thread, timing with `clock`.
    ///
    /// # Errors
    /// [`PowerError::Backend`] when the thread cannot be spawned.
    pub fn start<S>(mut source: S, clock: Arc<dyn Clock + Send + Sync>) -> Result<Self, PowerError>
    where
        S: PowerSource + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("wattlens-sampler".to_owned())
            .spawn(move || {
                let cpu0 = thread_cpu_ns();
                let t0 = clock.now_ns();
                let mut report = SamplerReport::default();
                let mut buf = Vec::new();
                let note = |e: PowerError, report: &mut SamplerReport| {
                    let msg = e.to_string();
                    if !report.errors.contains(&msg) {
                        report.errors.push(msg);
                    }
                };
                loop {
                    let stopping = flag.load(Ordering::Acquire);
                    let now = clock.now_ns();
                    let result = if stopping {
                        source.flush(now, &mut buf)
                    } else {
                        source.poll(now, &mut buf)
                    };
                    report.polls += 1;
                    if let Err(e) = result {
                        note(e, &mut report);
                    }
                    if !buf.is_empty() {
                        report.readings += buf.len() as u64;
                        report.gaps += buf
                            .iter()
                            .filter(|r| matches!(r, PowerReading::Lost { .. }))
                            .count() as u64;
                        // A closed receiver only means nobody wants more readings.
                        let _ = tx.send(std::mem::take(&mut buf));
                    }
                    if stopping {
                        break;
                    }
                    let now = clock.now_ns();
                    let wait = source
                        .next_poll_ns(now)
                        .saturating_sub(now)
                        .min(MAX_SLEEP_NS);
                    if wait > 0 {
                        std::thread::park_timeout(Duration::from_nanos(wait));
                    }
                }
                report.wall_ns = clock.now_ns().saturating_sub(t0);
                report.cpu_ns = match (cpu0, thread_cpu_ns()) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                    _ => None,
                };
                report.alignments = source.alignments();
                report
            })
            .map_err(|e| PowerError::Backend {
                backend: "sampler",
                reason: format!("cannot start the sampler thread: {e}"),
            })?;
        Ok(Self {
            stop,
            rx,
            handle: Some(handle),
        })
    }

    /// Move every reading delivered so far into `out`.
    pub fn drain(&self, out: &mut Vec<PowerReading>) {
        while let Ok(batch) = self.rx.try_recv() {
            out.extend(batch);
        }
    }

    /// Stop after one last full read, and return the remaining readings and the report.
    pub fn stop(mut self) -> (Vec<PowerReading>, SamplerReport) {
        self.stop.store(true, Ordering::Release);
        let report = match self.handle.take() {
            Some(h) => {
                h.thread().unpark();
                h.join().unwrap_or_else(|_| SamplerReport {
                    errors: vec!["the sampler thread panicked; readings up to then are kept".into()],
                    ..SamplerReport::default()
                })
            }
            None => SamplerReport::default(),
        };
        let mut rest = Vec::new();
        self.drain(&mut rest);
        (rest, report)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
