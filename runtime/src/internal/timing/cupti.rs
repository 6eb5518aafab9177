//! Timing from CUPTI activity records, matched to issued operations per stream in order.
//!
//! CUPTI stamps each kernel, copy and memset on the GPU and reports them in its own
//! timestamp domain (`cuptiGetTimestamp`), which is mapped onto the trace clock from
//! bracketed reads. Records arrive per stream in stream order, so the n-th issued operation
//! on a stream is the n-th record of that stream, checked by kind, shape and size; a record
//! that matches nothing issued is an operation the session did not issue (a library kernel on
//! a profiled stream) and is kept as such, never guessed into a span.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use wattlens_instrument::clock::Clock;
use wattlens_instrument::trace::{ClockSource, CopyDirection, LaunchShape, Span, SpanKind, StrId};

use super::{
    Expect, ForeignOp, OpTime, OpTimer, StreamKey, TimerError, TimingReport, CALIBRATION_PERIOD_NS,
};
use crate::clock_fit::{ClockMap, ClockPoint};

/// How far ahead in a stream's queue a record may match (records CUPTI dropped are skipped).
const LOOKAHEAD: usize = 8;

/// What kind of work one activity record describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityKind {
    /// A kernel.
    Kernel {
        /// Symbol name.
        name: String,
        /// Grid and block (dynamic shared memory as reported).
        shape: LaunchShape,
    },
    /// A copy.
    Memcpy {
        /// Bytes.
        bytes: u64,
        /// Direction, where CUPTI's copy kind maps onto one.
        direction: Option<CopyDirection>,
    },
    /// A memset.
    Memset {
        /// Bytes.
        bytes: u64,
        /// The byte value it wrote (CUPTI's value, `u8::MAX` where it does not fit a byte).
        value: u8,
    },
}

/// What a work record becomes in a trace: its span kind, launch shape and label (the kernel's
/// name, `memcpy HtoD|DtoH|DtoD`, or `memset`). One policy for every recorder (the runtime's
/// CUPTI timer and the injection library): a copy whose direction CUPTI's copy kind does not
/// give (host to host, or a kind this build does not know) is `None`, to be skipped and
/// counted, never guessed.
pub fn work_span(kind: &ActivityKind) -> Option<(SpanKind, Option<LaunchShape>, &str)> {
    Some(match kind {
        ActivityKind::Kernel { name, shape } => (SpanKind::Kernel, Some(*shape), name.as_str()),
        ActivityKind::Memcpy { bytes, direction } => {
            let direction = (*direction)?;
            let label = direction.span_name();
            let kind = SpanKind::Memcpy {
                direction,
                bytes: *bytes,
                content_digest: None,
            };
            (kind, None, label)
        }
        ActivityKind::Memset { bytes, value } => (
            SpanKind::Memset {
                bytes: *bytes,
                value: *value,
            },
            None,
            "memset",
        ),
    })
}

/// One CUPTI activity record, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// What ran.
    pub kind: ActivityKind,
    /// CUPTI's stream id.
    pub stream_id: u32,
    /// Start, CUPTI timestamp ns.
    pub start_ns: u64,
    /// End, CUPTI timestamp ns.
    pub end_ns: u64,
    /// CUPTI's correlation id of the API call that issued it (0 when unknown).
    pub correlation_id: u32,
}

/// The CUPTI calls the timer needs (a fake stands in for tests).
pub trait CuptiApi: Send {
    /// CUPTI's current timestamp, ns.
    ///
    /// # Errors
    /// [`TimerError`] from CUPTI.
    fn timestamp_ns(&self) -> Result<u64, TimerError>;

    /// CUPTI's id of `stream`.
    ///
    /// # Errors
    /// [`TimerError`] from CUPTI.
    fn stream_id(&self, stream: &StreamKey) -> Result<u32, TimerError>;

    /// Flush CUPTI's buffers and take every record delivered so far.
    ///
    /// # Errors
    /// [`TimerError`] from CUPTI.
    fn take(&self) -> Result<Vec<Activity>, TimerError>;

    /// External correlation ids seen so far, by CUPTI correlation id.
    fn external_ids(&self) -> HashMap<u32, u64>;
}

/// Times operations on one device from CUPTI records.
pub struct CuptiTimer<A: CuptiApi> {
    api: A,
    clock: Arc<dyn Clock + Send + Sync>,
    device: u32,
    points: Vec<ClockPoint>,
    stream_ids: HashMap<u64, (u32, StreamKey)>,
    queues: HashMap<u32, VecDeque<(u64, Expect)>>,
    last_calibration_ns: u64,
}

impl<A: CuptiApi> CuptiTimer<A> {
    /// A timer for `device`, calibrated once now.
    ///
    /// # Errors
    /// [`TimerError`] when CUPTI's clock cannot be read.
    pub fn new(
        api: A,
        clock: Arc<dyn Clock + Send + Sync>,
        device: u32,
    ) -> Result<Self, TimerError> {
        let mut t = Self {
            api,
            clock,
            device,
            points: Vec::new(),
            stream_ids: HashMap::new(),
            queues: HashMap::new(),
            last_calibration_ns: 0,
        };
        t.calibrate()?;
        Ok(t)
    }

    fn calibrate(&mut self) -> Result<(), TimerError> {
        // Keep the tightest of a few brackets: a preempted read only widens its own.
        let mut best: Option<ClockPoint> = None;
        for _ in 0..5 {
            let t0 = self.clock.now_ns();
            let x = self.api.timestamp_ns()?;
            let t1 = self.clock.now_ns();
            let p = ClockPoint {
                foreign_ns: x,
                trace_ns: t0 / 2 + t1 / 2,
                half_width_ns: t1.saturating_sub(t0).div_ceil(2),
            };
            if best.is_none_or(|b| p.half_width_ns < b.half_width_ns) {
                best = Some(p);
            }
        }
        if let Some(p) = best {
            self.points.push(p);
        }
        self.last_calibration_ns = self.clock.now_ns();
        Ok(())
    }

    fn matches(expect: &Expect, kind: &ActivityKind) -> bool {
        match (expect, kind) {
            (Expect::Kernel { name, shape }, ActivityKind::Kernel { name: n, shape: s }) => {
                **name == **n && shape.grid == s.grid && shape.block == s.block
            }
            (Expect::Memcpy { bytes }, ActivityKind::Memcpy { bytes: b, .. })
            | (Expect::Memset { bytes }, ActivityKind::Memset { bytes: b, .. }) => bytes == b,
            _ => false,
        }
    }

    fn report(&mut self, records: Vec<Activity>) -> TimingReport {
        let Some(map) = ClockMap::fit(&self.points) else {
            return TimingReport::default();
        };
        let mut by_stream: HashMap<u32, Vec<Activity>> = HashMap::new();
        for r in records {
            by_stream.entry(r.stream_id).or_default().push(r);
        }
        let ordinal_of: HashMap<u32, u64> = self
            .stream_ids
            .values()
            .map(|(id, key)| (*id, key.ordinal))
            .collect();
        let external = self.api.external_ids();
        let mut report = TimingReport::default();
        for (stream_id, mut recs) in by_stream {
            recs.sort_by_key(|r| (r.start_ns, r.end_ns));
            let queue = self.queues.entry(stream_id).or_default();
            for r in recs {
                let hit = queue
                    .iter()
                    .take(LOOKAHEAD)
                    .position(|(_, e)| Self::matches(e, &r.kind));
                let (start_ns, end_ns) = (map.map_ns(r.start_ns), map.map_ns(r.end_ns));
                match hit {
                    Some(k) => {
                        queue.drain(..k);
                        if let Some((seq, _)) = queue.pop_front() {
                            report.times.push(OpTime {
                                seq,
                                start_ns,
                                end_ns,
                            });
                        }
                    }
                    None => {
                        let stream = ordinal_of
                            .get(&stream_id)
                            .copied()
                            .unwrap_or(u64::from(stream_id));
                        let Some((span, name)) =
                            foreign_span(&r, self.device, stream, start_ns, end_ns)
                        else {
                            report.unreadable += 1;
                            continue;
                        };
                        report.foreign.push(ForeignOp {
                            span,
                            name,
                            external: external.get(&r.correlation_id).copied(),
                        });
                    }
                }
            }
        }
        report.alignments = vec![map.alignment(ClockSource::Cupti, self.device, &self.points)];
        report
    }
}

/// A record of work wattlens did not issue as a span of its own, with its label; `None` for
/// one [`work_span`] cannot read.
fn foreign_span(
    r: &Activity,
    device: u32,
    stream: u64,
    start_ns: u64,
    end_ns: u64,
) -> Option<(Span, String)> {
    let (kind, launch, label) = work_span(&r.kind)?;
    let span = Span {
        launch,
        ..Span::new(
            0,
            kind,
            (device, stream),
            StrId::NONE,
            (start_ns, end_ns.max(start_ns)),
        )
    };
    Some((span, label.to_owned()))
}

impl<A: CuptiApi> OpTimer for CuptiTimer<A> {
    fn method(&self) -> super::TimingMethod {
        super::TimingMethod::Cupti
    }

    fn before(&mut self, _stream: &StreamKey, _seq: u64) -> Result<(), TimerError> {
        if self.clock.now_ns().saturating_sub(self.last_calibration_ns) >= CALIBRATION_PERIOD_NS {
            self.calibrate()?;
        }
        Ok(())
    }

    fn after(&mut self, stream: &StreamKey, seq: u64, expect: Expect) -> Result<(), TimerError> {
        let id = match self.stream_ids.get(&stream.raw) {
            Some((id, _)) => *id,
            None => {
                let id = self.api.stream_id(stream)?;
                self.stream_ids.insert(stream.raw, (id, *stream));
                id
            }
        };
        self.queues.entry(id).or_default().push_back((seq, expect));
        Ok(())
    }

    fn poll(&mut self) -> Result<(), TimerError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<TimingReport, TimerError> {
        self.calibrate()?;
        let records = self.api.take()?;
        Ok(self.report(records))
    }

    fn salvage(&mut self) -> TimingReport {
        let records = self.api.take().unwrap_or_default();
        self.report(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_policy_maps_every_work_record() {
        let copy = |direction| ActivityKind::Memcpy {
            bytes: 64,
            direction,
        };
        let upload = copy(Some(CopyDirection::HostToDevice));
        let (kind, launch, label) = work_span(&upload).unwrap_or((SpanKind::Kernel, None, ""));
        assert_eq!(label, "memcpy HtoD");
        assert!(launch.is_none());
        assert!(matches!(
            kind,
            SpanKind::Memcpy {
                direction: CopyDirection::HostToDevice,
                bytes: 64,
                content_digest: None
            }
        ));
        // A copy of no known direction is skipped, never guessed as device to device.
        assert!(work_span(&copy(None)).is_none());
        // A memset keeps the value it wrote.
        let memset = ActivityKind::Memset {
            bytes: 4,
            value: 0xab,
        };
        assert!(matches!(
            work_span(&memset),
            Some((
                SpanKind::Memset {
                    bytes: 4,
                    value: 0xab
                },
                None,
                "memset"
            ))
        ));
        let shape = LaunchShape {
            grid: [4, 1, 1],
            block: [128, 1, 1],
            shared_mem_bytes: 0,
        };
        let kernel = ActivityKind::Kernel {
            name: "gemm".into(),
            shape,
        };
        assert!(matches!(
            work_span(&kernel),
            Some((SpanKind::Kernel, Some(s), "gemm")) if s == shape
        ));
    }
}
