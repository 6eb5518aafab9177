//! Incremental trace writer.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::span_codec::encode_span;
use super::{tag, EndMarker, TraceError, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};
use crate::trace::{
    Annotation, ClockAlignment, KernelFacts, PowerReading, RunMeta, Span, StrId, StringTable, Trace,
};

/// Writes a trace record by record; whatever was flushed survives a crash as a readable prefix.
pub struct TraceWriter<W: Write> {
    out: W,
    scratch: Vec<u8>,
    strings: StringTable,
    records: u64,
    base_ns: u64,
}

impl TraceWriter<BufWriter<File>> {
    /// Create (or truncate) `path` and write the header and metadata.
    ///
    /// # Errors
    /// [`TraceError::Io`] when the file cannot be created or written.
    pub fn create(path: &Path, meta: &RunMeta) -> Result<Self, TraceError> {
        let file = File::create(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::new(BufWriter::with_capacity(1 << 16, file), meta).map_err(|e| e.with_path(path))
    }
}

impl<W: Write> TraceWriter<W> {
    /// Start a trace on `out`: header, then the metadata record.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when `out` fails.
    pub fn new(mut out: W, meta: &RunMeta) -> Result<Self, TraceError> {
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_MAJOR.to_le_bytes())?;
        out.write_all(&FORMAT_MINOR.to_le_bytes())?;
        let mut w = Self {
            out,
            scratch: Vec::with_capacity(256),
            strings: StringTable::default(),
            records: 0,
            base_ns: meta.start_unix_ns,
        };
        w.record(tag::META, meta)?;
        Ok(w)
    }

    /// The id of `text`, writing a string record the first time it is seen.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn intern(&mut self, text: &str) -> Result<StrId, TraceError> {
        let (id, new) = self.strings.intern(text);
        if new {
            self.record(tag::STRING, &(id.0, text))?;
        }
        Ok(id)
    }

    /// Append one span. Its string ids must come from [`TraceWriter::intern`].
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn span(&mut self, span: &Span) -> Result<(), TraceError> {
        self.scratch.clear();
        encode_span(span, self.base_ns, &mut self.scratch);
        self.emit(tag::SPAN)
    }

    /// Append one power reading.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn power(&mut self, reading: &PowerReading) -> Result<(), TraceError> {
        self.record(tag::POWER, reading)
    }

    /// Append the facts of one kernel.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn facts(&mut self, facts: &KernelFacts) -> Result<(), TraceError> {
        self.record(tag::FACTS, facts)
    }

    /// Append one annotation.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn annotation(&mut self, annotation: &Annotation) -> Result<(), TraceError> {
        self.record(tag::ANNOTATION, annotation)
    }

    /// Append one clock alignment.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn alignment(&mut self, alignment: &ClockAlignment) -> Result<(), TraceError> {
        self.record(tag::ALIGNMENT, alignment)
    }

    /// Push buffered records to the OS, so they survive a crash of this process.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        Ok(self.out.flush()?)
    }

    /// Write the end marker, flush, and hand back the output.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn finish(mut self) -> Result<W, TraceError> {
        let end = EndMarker {
            records: self.records,
        };
        self.record(tag::END, &end)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Write a whole in-memory trace to `out`, ending it properly.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when `out` fails.
    pub fn write_trace(out: W, trace: &Trace) -> Result<W, TraceError> {
        let mut w = Self::new(out, &trace.meta)?;
        w.write_body(trace, |_| {})?;
        w.finish()
    }

    /// Append the strings, facts, alignments, spans and readings of `trace`, with spans (at
    /// their end) and readings interleaved in time as a live session writes them, so a cut
    /// anywhere leaves both up to that time. Each list keeps its own order. `progress` gets
    /// the number of spans and readings written so far.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the output fails.
    pub fn write_body(
        &mut self,
        trace: &Trace,
        mut progress: impl FnMut(u64),
    ) -> Result<(), TraceError> {
        for (_, text) in trace.strings.iter() {
            // Every entry, duplicates included, so the ids in the file are the trace's ids.
            let id = self.strings.push(text);
            self.record(tag::STRING, &(id.0, text))?;
        }
        for facts in &trace.kernel_facts {
            self.facts(facts)?;
        }
        for alignment in &trace.alignments {
            self.alignment(alignment)?;
        }
        for annotation in &trace.annotations {
            self.annotation(annotation)?;
        }
        let (mut s, mut p) = (trace.spans.iter().peekable(), trace.power.iter().peekable());
        let mut done = 0u64;
        loop {
            let span_first = match (s.peek(), p.peek()) {
                (Some(span), Some(reading)) => span.end_ns <= reading.ts_ns(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if span_first {
                if let Some(span) = s.next() {
                    self.span(span)?;
                }
            } else if let Some(reading) = p.next() {
                self.power(reading)?;
            }
            done += 1;
            if done % 65_536 == 0 {
                progress(done);
            }
        }
        Ok(())
    }

    fn record<T: Serialize + ?Sized>(&mut self, tag: u8, value: &T) -> Result<(), TraceError> {
        self.scratch.clear();
        self.scratch = postcard::to_extend(value, std::mem::take(&mut self.scratch))
            .map_err(|e| TraceError::Encode(e.to_string()))?;
        self.emit(tag)
    }

    /// Frame the payload in `scratch` as one record: tag, length, payload, CRC.
    fn emit(&mut self, tag: u8) -> Result<(), TraceError> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[tag]);
        crc.update(&self.scratch);
        let mut head = [0u8; 11];
        head[0] = tag;
        let n = 1 + encode_varint(self.scratch.len() as u64, &mut head[1..]);
        self.out.write_all(&head[..n])?;
        self.out.write_all(&self.scratch)?;
        self.out.write_all(&crc.finalize().to_le_bytes())?;
        self.records += 1;
        Ok(())
    }
}

/// LEB128-encode `v` into `buf`, returning the number of bytes used (at most 10).
fn encode_varint(mut v: u64, buf: &mut [u8]) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}
