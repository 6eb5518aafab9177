//! A simulated GPU behind the timers' traits: streams that run operations in order on a GPU
//! clock that drifts against the host's, CUDA-event semantics, CUPTI-style records, and
//! injectable faults. It lets the timing and matching logic be tested without a GPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wattlens_instrument::clock::{Clock, FakeClock};

use super::{Activity, ActivityKind, CuptiApi, EventApi, Expect, StreamKey, TimerError};

/// Host time one event query takes on the fake, ns (so spinning on a query advances time).
pub const QUERY_NS: u64 = 1_000;
/// Delay from enqueueing on an idle stream to the operation's start, GPU ns.
pub const LAUNCH_LATENCY_NS: u64 = 3_000;

#[derive(Debug, Default)]
struct State {
    busy_until: HashMap<u64, u64>,
    events: Vec<Option<u64>>,
    activities: Vec<Activity>,
    /// Truth: (stream raw, start, end) in GPU ns of each enqueued operation.
    truth: Vec<(u64, u64, u64)>,
    drop_records: Vec<usize>,
    fault_after: Option<usize>,
    enqueued: usize,
    /// The external correlation id pushed now, and every id each correlation id ran under.
    external_now: Option<u64>,
    external: HashMap<u32, u64>,
}

/// The simulated device (cheap to clone; clones share state).
#[derive(Debug, Clone)]
pub struct FakeGpu {
    clock: Arc<FakeClock>,
    /// GPU ns = host ns · (1 + drift) + offset.
    drift: f64,
    offset_ns: i64,
    state: Arc<Mutex<State>>,
}

impl FakeGpu {
    /// A fake GPU on `clock` whose own clock runs `drift` fast and `offset_ns` ahead.
    pub fn new(clock: Arc<FakeClock>, drift: f64, offset_ns: i64) -> Self {
        Self {
            clock,
            drift,
            offset_ns,
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GPU time at host time `host_ns`.
    pub fn gpu_at(&self, host_ns: u64) -> u64 {
        (host_ns as f64 * (1.0 + self.drift) + self.offset_ns as f64).round() as u64
    }

    /// Host (trace) time of GPU time `gpu_ns`: the truth timers should recover.
    pub fn host_at(&self, gpu_ns: u64) -> u64 {
        ((gpu_ns as f64 - self.offset_ns as f64) / (1.0 + self.drift)).round() as u64
    }

    fn now_gpu(&self) -> u64 {
        self.gpu_at(self.clock.now_ns())
    }

    fn check(&self, s: &State) -> Result<(), TimerError> {
        match s.fault_after {
            Some(n) if s.enqueued > n => Err(TimerError::Api {
                api: "CUDA",
                what: "running the fake GPU",
                message: "an illegal memory access was encountered".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Run one operation on `stream` for `duration_ns` of GPU time; returns its true
    /// (start, end) on the host clock.
    ///
    /// # Errors
    /// [`TimerError`] once an injected fault has happened.
    pub fn enqueue(
        &self,
        stream: &StreamKey,
        expect: &Expect,
        duration_ns: u64,
    ) -> Result<(u64, u64), TimerError> {
        let now = self.now_gpu();
        let mut s = self.state();
        self.check(&s)?;
        let busy = s.busy_until.get(&stream.raw).copied().unwrap_or(0);
        let start = busy.max(now + LAUNCH_LATENCY_NS);
        let end = start + duration_ns;
        s.busy_until.insert(stream.raw, end);
        s.truth.push((stream.raw, start, end));
        let index = s.enqueued;
        s.enqueued += 1;
        if !s.drop_records.contains(&index) {
            let kind = match expect.clone() {
                Expect::Kernel { name, shape } => ActivityKind::Kernel {
                    name: name.to_string(),
                    shape,
                },
                Expect::Memcpy { bytes } => ActivityKind::Memcpy {
                    bytes,
                    direction: None,
                },
                Expect::Memset { bytes } => ActivityKind::Memset { bytes, value: 0 },
            };
            let correlation_id = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if let Some(ext) = s.external_now {
                s.external.insert(correlation_id, ext);
            }
            s.activities.push(Activity {
                kind,
                stream_id: stream.raw as u32 + 100,
                start_ns: start,
                end_ns: end,
                correlation_id,
            });
        }
        Ok((self.host_at(start), self.host_at(end)))
    }

    /// Push (`Some`) or pop (`None`) an external correlation id, as CUPTI's
    /// `cuptiActivityPushExternalCorrelationId` does for the calls that follow.
    pub fn set_external(&self, id: Option<u64>) {
        self.state().external_now = id;
    }

    /// Let CUPTI lose the record of the `index`-th enqueued operation.
    pub fn drop_record(&self, index: usize) {
        self.state().drop_records.push(index);
    }

    /// Fail every call once `n` operations have been enqueued (a sticky kernel fault).
    pub fn fault_after(&self, n: usize) {
        self.state().fault_after = Some(n);
    }

    /// Advance the host clock until every stream has drained.
    pub fn drain(&self) {
        let last = self.state().busy_until.values().copied().max().unwrap_or(0);
        let now = self.clock.now_ns();
        let host_end = self.host_at(last);
        if host_end > now {
            self.clock.advance(host_end - now + 1);
        }
    }
}

impl EventApi for FakeGpu {
    type Event = usize;

    fn create(&self) -> Result<usize, TimerError> {
        let mut s = self.state();
        s.events.push(None);
        Ok(s.events.len() - 1)
    }

    fn record(&self, event: &usize, stream: &StreamKey) -> Result<(), TimerError> {
        let now = self.now_gpu();
        let mut s = self.state();
        self.check(&s)?;
        let at = s.busy_until.get(&stream.raw).copied().unwrap_or(0).max(now);
        if let Some(slot) = s.events.get_mut(*event) {
            *slot = Some(at);
        }
        Ok(())
    }

    fn record_calibration(&self, event: &usize) -> Result<(), TimerError> {
        let at = self.now_gpu() + 2_000;
        let mut s = self.state();
        self.check(&s)?;
        if let Some(slot) = s.events.get_mut(*event) {
            *slot = Some(at);
        }
        Ok(())
    }

    fn query(&self, event: &usize) -> Result<bool, TimerError> {
        self.clock.advance(QUERY_NS);
        let now = self.now_gpu();
        let s = self.state();
        self.check(&s)?;
        Ok(s.events
            .get(*event)
            .copied()
            .flatten()
            .is_some_and(|t| t <= now))
    }

    fn elapsed_ms(&self, a: &usize, b: &usize) -> Result<f32, TimerError> {
        let s = self.state();
        self.check(&s)?;
        let get = |e: &usize| s.events.get(*e).copied().flatten();
        match (get(a), get(b)) {
            (Some(a), Some(b)) => Ok(((b as f64 - a as f64) / 1e6) as f32),
            _ => Err(TimerError::Unavailable(
                "an event was never recorded".into(),
            )),
        }
    }
}

impl CuptiApi for FakeGpu {
    fn timestamp_ns(&self) -> Result<u64, TimerError> {
        let t = self.now_gpu();
        self.clock.advance(200);
        Ok(t)
    }

    fn stream_id(&self, stream: &StreamKey) -> Result<u32, TimerError> {
        Ok(stream.raw as u32 + 100)
    }

    fn take(&self) -> Result<Vec<Activity>, TimerError> {
        let now = self.now_gpu();
        let mut s = self.state();
        let (done, later): (Vec<_>, Vec<_>) = s.activities.drain(..).partition(|a| a.end_ns <= now);
        s.activities = later;
        Ok(done)
    }

    fn external_ids(&self) -> HashMap<u32, u64> {
        self.state().external.clone()
    }
}
