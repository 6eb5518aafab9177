//! The trace file format: versioned, append-only, checksummed records.
//!
//! A file is an 12-byte header (`WATTLENS`, major and minor version as little-endian u16)
//! followed by records. Each record is a tag byte, its payload length as a LEB128 varint, the
//! payload (postcard; spans use the compact codec in [`encode_span`]), and a CRC32 of tag and payload (little-endian u32). The first record is
//! the run metadata; the last is the end marker, so a file without it is known to be cut short.
//! Every record stands alone, so a crash or SIGKILL leaves a prefix that [`read_trace_prefix`]
//! recovers.
//!
//! **Compatibility.** Readers skip records with unknown tags and ignore payload bytes after the
//! fields they know, so a newer minor version may add record kinds and append fields. Removing
//! or reordering fields, or adding enum variants, bumps the major version.
//!
//! **Hostile input.** Record payloads are capped at [`MAX_RECORD_BYTES`] and read as the bytes
//! arrive, so memory stays proportional to the input actually present; every string id, device
//! index and span interval is validated before the record is accepted.

mod error;
mod reader;
mod span_codec;
mod writer;

pub use error::{Location, TraceError};
pub use reader::{read_trace, read_trace_file, read_trace_prefix, Record, Recovered, TraceReader};
pub use span_codec::encode_span;
pub use writer::TraceWriter;

/// The 8 magic bytes every trace starts with.
pub const MAGIC: &[u8; 8] = b"WATTLENS";
/// The format major version this build writes, and the newest it reads (2 added
/// [`SpanKind::Alone`](crate::trace::SpanKind::Alone)).
pub const FORMAT_MAJOR: u16 = 2;
/// The oldest format major version this build reads (every version-1 file is a valid
/// version-2 file without [`SpanKind::Alone`](crate::trace::SpanKind::Alone) spans).
pub const OLDEST_MAJOR: u16 = 1;
/// The format minor version this build writes (1 appended each span's host call, 2 added
/// [`Annotation::CopyTarget`](crate::trace::Annotation::CopyTarget), 3 kernel replay's
/// [`Annotation::ProfilerEpisode`](crate::trace::Annotation::ProfilerEpisode) and
/// [`Annotation::ReplayNote`](crate::trace::Annotation::ReplayNote), 4 the profiler's own
/// [`Annotation::CallbackCost`](crate::trace::Annotation::CallbackCost), 5 the audit's
/// [`Annotation::AuditOp`](crate::trace::Annotation::AuditOp),
/// [`Annotation::AuditFreed`](crate::trace::Annotation::AuditFreed) and
/// [`Annotation::AuditSummary`](crate::trace::Annotation::AuditSummary), 6
/// [`Annotation::AuditNote`](crate::trace::Annotation::AuditNote), 7
/// [`Annotation::ReleasedAfter`](crate::trace::Annotation::ReleasedAfter); older readers skip
/// them).
pub const FORMAT_MINOR: u16 = 7;
/// Largest record payload accepted, bytes.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// Length of the file header, bytes.
pub const HEADER_BYTES: u64 = 12;

/// Record tags. Values are part of the format and never reused.
pub(crate) mod tag {
    pub const META: u8 = 1;
    pub const STRING: u8 = 2;
    pub const SPAN: u8 = 3;
    pub const POWER: u8 = 4;
    pub const FACTS: u8 = 5;
    pub const ALIGNMENT: u8 = 6;
    pub const END: u8 = 7;
    pub const ANNOTATION: u8 = 8;
}

/// Payload of the end marker: counts that let a reader check it saw everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct EndMarker {
    pub records: u64,
}
