//! Errors of reading and writing trace files.

use std::path::PathBuf;

/// Where in a trace file something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Byte offset of the record's first byte.
    pub offset: u64,
    /// Index of the record (0 is the metadata record).
    pub record: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} at byte {}", self.record, self.offset)
    }
}

/// Why a trace could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened, read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An I/O error on a stream with no path.
    #[error("trace I/O failed: {0}")]
    Stream(#[from] std::io::Error),
    /// The input does not start with the trace header.
    #[error("this is not a wattlens trace (it does not start with the WATTLENS header); pass a .wlt file written by wattlens")]
    NotATrace,
    /// The trace was written by an incompatible format version.
    #[error("the trace uses format version {found_major}.{found_minor}, but this wattlens reads versions 1.x to {supported_major}.x; use a matching wattlens release")]
    UnsupportedVersion {
        /// Major version in the file.
        found_major: u16,
        /// Minor version in the file.
        found_minor: u16,
        /// The newest major version this build reads.
        supported_major: u16,
    },
    /// The input ends inside a record: the writer was stopped mid-write.
    #[error("the trace ends in the middle of {at}; the writer was probably killed, and the records before it are readable")]
    Truncated {
        /// The record that is cut off.
        at: Location,
    },
    /// The input ends on a record boundary but without the end marker.
    #[error("the trace stops after {records} records without its end marker; the writer did not finish, and the records before it are readable")]
    Unfinished {
        /// Number of complete records.
        records: u64,
    },
    /// A record failed its checksum or could not be decoded.
    #[error("the trace is corrupt at {at}: {reason}")]
    Corrupt {
        /// The bad record.
        at: Location,
        /// What is wrong with it.
        reason: String,
    },
    /// A value could not be encoded (should not happen for well-formed values).
    #[error("cannot encode a trace record: {0}")]
    Encode(String),
}

impl TraceError {
    /// Attach a path to a bare stream error.
    pub fn with_path(self, path: &std::path::Path) -> Self {
        match self {
            TraceError::Stream(source) => TraceError::Io {
                path: path.to_owned(),
                source,
            },
            other => other,
        }
    }

    /// True when the error only means the trace lacks its tail (a readable prefix exists).
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            TraceError::Truncated { .. } | TraceError::Unfinished { .. }
        )
    }
}
