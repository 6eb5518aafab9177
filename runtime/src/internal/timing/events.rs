//! Timing with pooled CUDA events: a pair around each operation, resolved lazily.
//!
//! Event times are relative to each other, and `cuEventElapsedTime` returns f32 ms, which is
//! coarse far from its reference. So every operation is measured from the latest calibration
//! event (taken at least once a second): a calibration event is recorded on an idle stream
//! between two trace-clock reads and waited for, giving a bracketed point; the calibration
//! events are chained by their elapsed times into one GPU time line, and the line is fitted
//! to the trace clock at finish.

use std::collections::VecDeque;
use std::sync::Arc;

use wattlens_instrument::clock::Clock;
use wattlens_instrument::trace::ClockSource;

use super::{OpTime, OpTimer, StreamKey, TimerError, TimingReport, CALIBRATION_PERIOD_NS};
use crate::clock_fit::{ClockMap, ClockPoint};

/// Longest wait for a calibration event before giving up, ns.
const CALIBRATION_TIMEOUT_NS: u64 = 1_000_000_000;
/// Operations between non-blocking resolution passes.
const POLL_EVERY: u64 = 64;
/// Events created when the timer starts (two per operation in flight).
const PREALLOCATED_EVENTS: usize = 4096;

/// The CUDA event calls the timer needs (a fake stands in for tests).
pub trait EventApi: Send {
    /// An event handle.
    type Event: Send;

    /// A new timing event.
    ///
    /// # Errors
    /// [`TimerError`] from the driver.
    fn create(&self) -> Result<Self::Event, TimerError>;

    /// Record `event` on `stream`.
    ///
    /// # Errors
    /// [`TimerError`] from the driver.
    fn record(&self, event: &Self::Event, stream: &StreamKey) -> Result<(), TimerError>;

    /// Record `event` on the API's own idle calibration stream.
    ///
    /// # Errors
    /// [`TimerError`] from the driver.
    fn record_calibration(&self, event: &Self::Event) -> Result<(), TimerError>;

    /// Whether `event` has completed.
    ///
    /// # Errors
    /// [`TimerError`] from the driver (a faulted context reports its fault here).
    fn query(&self, event: &Self::Event) -> Result<bool, TimerError>;

    /// Milliseconds from `a` to `b`, both completed.
    ///
    /// # Errors
    /// [`TimerError`] from the driver.
    fn elapsed_ms(&self, a: &Self::Event, b: &Self::Event) -> Result<f32, TimerError>;
}

struct Reference<E> {
    event: E,
    /// GPU time of this reference since the first one, ns.
    gpu_ns: f64,
}

struct Pending<E> {
    seq: u64,
    start: E,
    end: E,
    reference: usize,
}

/// Times operations with event pairs on one device.
pub struct EventTimer<A: EventApi> {
    api: A,
    clock: Arc<dyn Clock + Send + Sync>,
    device: u32,
    pool: Vec<A::Event>,
    refs: Vec<Reference<A::Event>>,
    points: Vec<ClockPoint>,
    open: Option<(u64, A::Event)>,
    pending: VecDeque<Pending<A::Event>>,
    /// (seq, start, end) in GPU ns since the first reference.
    resolved: Vec<(u64, f64, f64)>,
    last_calibration_ns: u64,
    issued: u64,
}

impl<A: EventApi> EventTimer<A> {
    /// A timer for `device`, calibrated once now.
    ///
    /// # Errors
    /// [`TimerError`] when the first calibration fails.
    pub fn new(
        api: A,
        clock: Arc<dyn Clock + Send + Sync>,
        device: u32,
    ) -> Result<Self, TimerError> {
        let mut t = Self {
            api,
            clock,
            device,
            pool: Vec::new(),
            refs: Vec::new(),
            points: Vec::new(),
            open: None,
            pending: VecDeque::new(),
            resolved: Vec::new(),
            last_calibration_ns: 0,
            issued: 0,
        };
        // Create events up front: creating one costs microseconds on the launch path.
        for _ in 0..PREALLOCATED_EVENTS {
            let e = t.api.create()?;
            t.pool.push(e);
        }
        t.calibrate()?;
        Ok(t)
    }

    fn event(&mut self) -> Result<A::Event, TimerError> {
        match self.pool.pop() {
            Some(e) => Ok(e),
            None => self.api.create(),
        }
    }

    /// Take a bracketed calibration point.
    fn calibrate(&mut self) -> Result<(), TimerError> {
        let e = self.event()?;
        let t0 = self.clock.now_ns();
        self.api.record_calibration(&e)?;
        while !self.api.query(&e)? {
            if self.clock.now_ns().saturating_sub(t0) > CALIBRATION_TIMEOUT_NS {
                return Err(TimerError::Unavailable(
                    "a calibration event did not complete within 1 s".into(),
                ));
            }
            std::hint::spin_loop();
        }
        let t1 = self.clock.now_ns();
        let gpu_ns = match self.refs.last() {
            Some(prev) => prev.gpu_ns + f64::from(self.api.elapsed_ms(&prev.event, &e)?) * 1e6,
            None => 0.0,
        };
        self.points.push(ClockPoint {
            foreign_ns: gpu_ns.max(0.0).round() as u64,
            trace_ns: t0 / 2 + t1 / 2,
            half_width_ns: (t1 - t0).div_ceil(2),
        });
        self.refs.push(Reference { event: e, gpu_ns });
        self.last_calibration_ns = t1;
        Ok(())
    }

    fn resolve_ready(&mut self, block: bool) -> Result<(), TimerError> {
        while let Some(p) = self.pending.front() {
            if !block && !self.api.query(&p.end)? {
                break;
            }
            let r = self.refs.get(p.reference).ok_or_else(|| {
                TimerError::Unavailable("an operation refers to a missing calibration".into())
            })?;
            let start = r.gpu_ns + f64::from(self.api.elapsed_ms(&r.event, &p.start)?) * 1e6;
            let dur = f64::from(self.api.elapsed_ms(&p.start, &p.end)?) * 1e6;
            self.resolved.push((p.seq, start, start + dur.max(0.0)));
            if let Some(p) = self.pending.pop_front() {
                self.pool.push(p.start);
                self.pool.push(p.end);
            }
        }
        Ok(())
    }

    fn report(&self) -> TimingReport {
        let Some(map) = ClockMap::fit(&self.points) else {
            return TimingReport::default();
        };
        // GPU ns are measured from the first reference, which is the map's first point.
        let offset0 = self.points.first().map_or(0.0, |p| p.foreign_ns as f64);
        TimingReport {
            times: self
                .resolved
                .iter()
                .map(|&(seq, s, e)| OpTime {
                    seq,
                    start_ns: map.map_offset_ns(s - offset0),
                    end_ns: map.map_offset_ns(e - offset0),
                })
                .collect(),
            foreign: Vec::new(),
            unreadable: 0,
            alignments: vec![map.alignment(ClockSource::CudaEvents, self.device, &self.points)],
        }
    }

    /// Calibration points taken so far.
    pub fn points(&self) -> &[ClockPoint] {
        &self.points
    }
}

impl<A: EventApi> OpTimer for EventTimer<A> {
    fn method(&self) -> super::TimingMethod {
        super::TimingMethod::Events
    }

    fn before(&mut self, stream: &StreamKey, seq: u64) -> Result<(), TimerError> {
        self.issued += 1;
        if self.issued % POLL_EVERY == 0 {
            self.resolve_ready(false)?;
            if self.clock.now_ns().saturating_sub(self.last_calibration_ns) >= CALIBRATION_PERIOD_NS
            {
                self.calibrate()?;
            }
        }
        let e = self.event()?;
        self.api.record(&e, stream)?;
        self.open = Some((seq, e));
        Ok(())
    }

    fn after(
        &mut self,
        stream: &StreamKey,
        seq: u64,
        _expect: super::Expect,
    ) -> Result<(), TimerError> {
        let Some((open_seq, start)) = self.open.take() else {
            return Err(TimerError::Unavailable(
                "an operation ended that never started".into(),
            ));
        };
        if open_seq != seq {
            self.pool.push(start);
            return Err(TimerError::Unavailable(format!(
                "operation {seq} ended while {open_seq} was open"
            )));
        }
        let end = self.event()?;
        self.api.record(&end, stream)?;
        self.pending.push_back(Pending {
            seq,
            start,
            end,
            reference: self.refs.len().saturating_sub(1),
        });
        Ok(())
    }

    fn poll(&mut self) -> Result<(), TimerError> {
        self.resolve_ready(false)
    }

    fn finish(&mut self) -> Result<TimingReport, TimerError> {
        if let Some((_, e)) = self.open.take() {
            self.pool.push(e);
        }
        self.resolve_ready(true)?;
        self.calibrate()?;
        Ok(self.report())
    }

    fn salvage(&mut self) -> TimingReport {
        self.report()
    }
}
