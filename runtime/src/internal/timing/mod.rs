//! GPU start and end times of issued operations, behind one trait with two methods:
//!
//! - [`CuptiTimer`]: CUPTI's activity records (concurrent-kernel, memcpy, memset), matched to
//!   issued operations per stream in order. Measured on an H100, this adds about 1% to a
//!   workload of 5–50 µs kernels and reads kernel durations within 1 µs of `%globaltimer`.
//! - [`EventTimer`]: a pair of pooled CUDA events around each operation, resolved lazily. It
//!   needs only the driver, but each event costs about 1 µs of host time and 1–2 µs of GPU
//!   time, and its durations run about 5 µs long (BENCHMARKS.md); it is the fallback where
//!   libcupti cannot be loaded.
//!
//! Both map their clock onto the trace clock from bracketed calibration points taken at
//! start, at least once a second while operations are issued, and at finish.

mod cupti;
mod events;
pub mod fake;

pub use cupti::{work_span, Activity, ActivityKind, CuptiApi, CuptiTimer};
pub use events::{EventApi, EventTimer};

use std::sync::Arc;

use wattlens_instrument::trace::{ClockAlignment, LaunchShape, Span};

/// Seconds between calibration points while operations are issued, ns.
pub const CALIBRATION_PERIOD_NS: u64 = 1_000_000_000;

/// A stream as the timers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// Device index in the trace.
    pub device: u32,
    /// Session-wide stream ordinal (the span's `stream`).
    pub ordinal: u64,
    /// The driver's stream handle, as an integer (0 for the legacy default stream).
    pub raw: u64,
}

/// What an issued operation should look like in the GPU's own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A kernel: its name and shape.
    Kernel {
        /// Symbol name (shared with the kernel handle: no copy per launch).
        name: Arc<str>,
        /// Grid and block.
        shape: LaunchShape,
    },
    /// A copy of this many bytes.
    Memcpy {
        /// Bytes.
        bytes: u64,
    },
    /// A memset of this many bytes.
    Memset {
        /// Bytes.
        bytes: u64,
    },
}

/// GPU times of one issued operation on the trace clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTime {
    /// The operation's sequence number.
    pub seq: u64,
    /// Start, ns.
    pub start_ns: u64,
    /// End, ns.
    pub end_ns: u64,
}

/// An operation the session did not issue, as the timer saw it.
#[derive(Debug, Clone)]
pub struct ForeignOp {
    /// The span, with its name not yet interned.
    pub span: Span,
    /// Its name.
    pub name: String,
    /// The external correlation id it ran under: a [`crate::Profiler::library`] call's id.
    pub external: Option<u64>,
}

/// What a timer hands over at the end of a session.
#[derive(Debug, Default)]
pub struct TimingReport {
    /// Times of issued operations.
    pub times: Vec<OpTime>,
    /// Operations the GPU ran that the session did not issue (a library's kernels on a
    /// profiled stream).
    pub foreign: Vec<ForeignOp>,
    /// Records of work it could not read ([`work_span`]: a copy of no known
    /// direction), skipped.
    pub unreadable: u64,
    /// Clock evidence.
    pub alignments: Vec<ClockAlignment>,
}

/// Why a timer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The underlying API failed.
    #[error("{api} failed while {what}: {message}")]
    Api {
        /// `CUDA` or `CUPTI`.
        api: &'static str,
        /// What was being done.
        what: &'static str,
        /// The API's own message.
        message: String,
    },
    /// The method cannot be used here.
    #[error("{0}")]
    Unavailable(String),
}

/// How a session times the GPU's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMethod {
    /// CUPTI activity records.
    Cupti,
    /// CUDA event pairs around each operation.
    Events,
}

impl TimingMethod {
    /// Its name in reports.
    pub fn label(self) -> &'static str {
        match self {
            TimingMethod::Cupti => "cupti",
            TimingMethod::Events => "events",
        }
    }
}

/// Times issued operations on the GPU.
pub trait OpTimer: Send {
    /// The method.
    fn method(&self) -> TimingMethod;

    /// Called just before operation `seq` is enqueued on `stream`.
    ///
    /// # Errors
    /// [`TimerError`] when the API fails.
    fn before(&mut self, stream: &StreamKey, seq: u64) -> Result<(), TimerError>;

    /// Called just after operation `seq` was enqueued.
    ///
    /// # Errors
    /// [`TimerError`] when the API fails.
    fn after(&mut self, stream: &StreamKey, seq: u64, expect: Expect) -> Result<(), TimerError>;

    /// Resolve what has completed, without blocking (keeps resource use bounded).
    ///
    /// # Errors
    /// [`TimerError`] when the API fails (a kernel fault surfaces here).
    fn poll(&mut self) -> Result<(), TimerError>;

    /// Everything resolved, once the device has been synchronised.
    ///
    /// # Errors
    /// [`TimerError`] when the API fails; times resolved earlier are then still returned by
    /// [`OpTimer::salvage`].
    fn finish(&mut self) -> Result<TimingReport, TimerError>;

    /// What was resolved before a failure.
    fn salvage(&mut self) -> TimingReport;
}
