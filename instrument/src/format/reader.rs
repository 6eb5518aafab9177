//! Trace reader: strict, or recovering the readable prefix of a cut-short file.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::Path;

use serde::de::DeserializeOwned;

use super::span_codec::decode_span;
use super::{
    tag, EndMarker, Location, TraceError, FORMAT_MAJOR, HEADER_BYTES, MAGIC, MAX_RECORD_BYTES,
    OLDEST_MAJOR,
};
use crate::trace::{
    Annotation, ClockAlignment, KernelFacts, PowerReading, RunMeta, Span, StrId, Trace,
};

/// One decoded record.
#[derive(Debug)]
pub enum Record {
    /// A string definition.
    Str(StrId, String),
    /// A span.
    Span(Span),
    /// A power reading.
    Power(PowerReading),
    /// Kernel facts.
    Facts(KernelFacts),
    /// A clock alignment.
    Alignment(ClockAlignment),
    /// A buffer or padding annotation.
    Annotation(Annotation),
    /// The end marker.
    End,
    /// A record of a kind this build does not know (skipped).
    Unknown(u8),
}

/// Trailing bytes are counted up to this many (an endless input after the end marker must
/// not keep the reader busy).
pub const MAX_TRAILING_COUNT: u64 = 1 << 30;

/// Streams the records of a trace, validating each.
pub struct TraceReader<R: BufRead> {
    input: R,
    scratch: Vec<u8>,
    state: State,
}

/// Everything the reader knows besides its input, so records can be decoded straight out of
/// the input's buffer.
struct State {
    offset: u64,
    record: u64,
    meta: RunMeta,
    strings: u32,
    ended: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// Read the header and metadata record.
    ///
    /// # Errors
    /// [`TraceError::NotATrace`], [`TraceError::UnsupportedVersion`], or a truncation or
    /// corruption error naming the metadata record.
    pub fn new(mut input: R) -> Result<Self, TraceError> {
        let mut header = [0u8; HEADER_BYTES as usize];
        let n = read_full(&mut input, &mut header)?;
        let magic_part = n.min(MAGIC.len());
        if n == 0 || header[..magic_part] != MAGIC[..magic_part] {
            return Err(TraceError::NotATrace);
        }
        if n < HEADER_BYTES as usize {
            return Err(TraceError::Truncated {
                at: Location {
                    offset: 0,
                    record: 0,
                },
            });
        }
        let major = u16::from_le_bytes([header[8], header[9]]);
        let minor = u16::from_le_bytes([header[10], header[11]]);
        if !(OLDEST_MAJOR..=FORMAT_MAJOR).contains(&major) {
            return Err(TraceError::UnsupportedVersion {
                found_major: major,
                found_minor: minor,
                supported_major: FORMAT_MAJOR,
            });
        }
        let state = State {
            offset: HEADER_BYTES,
            record: 0,
            meta: RunMeta::default(),
            strings: 0,
            ended: false,
        };
        let mut r = Self {
            input,
            scratch: Vec::new(),
            state,
        };
        let at = r.state.here();
        match r.raw_slow()? {
            Some(tag::META) => r.state.meta = decode(&r.scratch, at)?,
            Some(t) => {
                return Err(corrupt(
                    at,
                    format!("the first record must be the run metadata, found tag {t}"),
                ))
            }
            None => return Err(TraceError::Truncated { at }),
        }
        Ok(r)
    }

    /// The run metadata.
    pub fn meta(&self) -> &RunMeta {
        &self.state.meta
    }

    /// Bytes after the end marker, read to the end of the input (counted up to
    /// `MAX_TRAILING_COUNT`): a trace file with another appended (`cat a.wlt a.wlt`) has
    /// them. 0 before the end marker was read.
    ///
    /// # Errors
    /// [`TraceError::Stream`] when the input cannot be read.
    pub fn trailing_bytes(&mut self) -> Result<u64, TraceError> {
        if !self.state.ended {
            return Ok(0);
        }
        std::io::copy(
            &mut (&mut self.input).take(MAX_TRAILING_COUNT),
            &mut std::io::sink(),
        )
        .map_err(TraceError::Stream)
    }

    /// The next record, `Ok(None)` after the end marker.
    ///
    /// # Errors
    /// [`TraceError::Truncated`], [`TraceError::Unfinished`] or [`TraceError::Corrupt`], each
    /// naming the record and byte offset.
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        if self.state.ended {
            return Ok(None);
        }
        let at = self.state.here();
        // Fast path: the whole record sits in the input buffer; decode it there.
        let buf = loop {
            match self.input.fill_buf() {
                Ok(b) => break b,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(TraceError::Stream(e)),
            }
        };
        if let Some((t, body, total)) = frame_in(buf) {
            let rec = self.state.decode(t, &buf[body..total - 4], at);
            self.input.consume(total);
            self.state.offset += total as u64;
            self.state.record += 1;
            return rec.map(Some);
        }
        // Slow path: records across the buffer's end, and every kind of damage.
        let Some(t) = self.raw_slow()? else {
            return Err(TraceError::Unfinished {
                records: self.state.record,
            });
        };
        self.state.decode(t, &self.scratch, at).map(Some)
    }

    /// Read one raw record byte by byte into `scratch`, returning its tag; `None` at a clean
    /// end of input.
    fn raw_slow(&mut self) -> Result<Option<u8>, TraceError> {
        let at = self.state.here();
        let mut t = [0u8; 1];
        if read_full(&mut self.input, &mut t)? == 0 {
            return Ok(None);
        }
        let mut len: u64 = 0;
        let mut len_bytes = 0u64;
        loop {
            let mut b = [0u8; 1];
            if read_full(&mut self.input, &mut b)? == 0 {
                return Err(TraceError::Truncated { at });
            }
            len_bytes += 1;
            if len_bytes > 10 {
                return Err(corrupt(
                    at,
                    "the record length is not a valid varint".to_owned(),
                ));
            }
            len |= u64::from(b[0] & 0x7f) << (7 * (len_bytes - 1));
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_RECORD_BYTES {
            return Err(corrupt(
                at,
                format!("record length {len} exceeds the {MAX_RECORD_BYTES}-byte limit"),
            ));
        }
        self.scratch.clear();
        // `take` reads only what is present: a lying length cannot allocate more than the input.
        let got = (&mut self.input).take(len).read_to_end(&mut self.scratch)? as u64;
        let mut crc = [0u8; 4];
        if got < len || read_full(&mut self.input, &mut crc)? < 4 {
            return Err(TraceError::Truncated { at });
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&t);
        h.update(&self.scratch);
        if h.finalize() != u32::from_le_bytes(crc) {
            return Err(corrupt(at, "checksum mismatch".to_owned()));
        }
        self.state.offset += 1 + len_bytes + len + 4;
        self.state.record += 1;
        Ok(Some(t[0]))
    }
}

impl State {
    fn here(&self) -> Location {
        Location {
            offset: self.offset,
            record: self.record,
        }
    }

    /// Decode and validate the payload of a record with tag `t` found at `at`.
    fn decode(&mut self, t: u8, payload: &[u8], at: Location) -> Result<Record, TraceError> {
        Ok(match t {
            tag::SPAN => {
                let span = decode_span(payload, self.meta.start_unix_ns)
                    .map_err(|reason| corrupt(at, reason.to_owned()))?;
                self.check_span(&span, at)?;
                Record::Span(span)
            }
            tag::POWER if !is_known_reading(payload) => Record::Unknown(t),
            tag::POWER => {
                let reading: PowerReading = decode(payload, at)?;
                self.check_device(reading.device(), at)?;
                Record::Power(reading)
            }
            tag::STRING => {
                let (id, text): (u32, String) = decode(payload, at)?;
                if id != self.strings {
                    return Err(corrupt(
                        at,
                        format!(
                            "string id {id} is out of sequence (expected {})",
                            self.strings
                        ),
                    ));
                }
                self.strings += 1;
                Record::Str(StrId(id), text)
            }
            tag::FACTS => Record::Facts(decode_facts(payload, at)?),
            tag::ALIGNMENT => Record::Alignment(decode(payload, at)?),
            // A kind of annotation added by a newer minor version is skipped, not an error.
            tag::ANNOTATION => match postcard::take_from_bytes::<Annotation>(payload) {
                Ok((a, _rest)) => Record::Annotation(a),
                Err(_) => Record::Unknown(tag::ANNOTATION),
            },
            tag::END => {
                let end: EndMarker = decode(payload, at)?;
                if end.records != at.record {
                    return Err(corrupt(
                        at,
                        format!(
                            "the end marker counts {} records, but {} precede it",
                            end.records, at.record
                        ),
                    ));
                }
                self.ended = true;
                Record::End
            }
            tag::META => return Err(corrupt(at, "a second metadata record".to_owned())),
            other => Record::Unknown(other),
        })
    }

    fn check_device(&self, device: u32, at: Location) -> Result<(), TraceError> {
        if (device as usize) < self.meta.devices.len() {
            Ok(())
        } else {
            Err(corrupt(
                at,
                format!(
                    "device {device} is not among the {} devices in the metadata",
                    self.meta.devices.len()
                ),
            ))
        }
    }

    fn check_span(&self, span: &Span, at: Location) -> Result<(), TraceError> {
        self.check_device(span.device, at)?;
        if span.end_ns < span.start_ns {
            return Err(corrupt(
                at,
                format!(
                    "span {} ends ({}) before it starts ({})",
                    span.id, span.end_ns, span.start_ns
                ),
            ));
        }
        for (what, id) in [
            ("name", span.name),
            ("region", span.region),
            ("launch site", span.site),
        ] {
            if id.is_some() && id.0 >= self.strings {
                return Err(corrupt(
                    at,
                    format!(
                        "span {} uses {what} string {} before it is defined",
                        span.id, id.0
                    ),
                ));
            }
        }
        if !span.name.is_some() {
            return Err(corrupt(at, format!("span {} has no name", span.id)));
        }
        Ok(())
    }
}

/// A whole, checksum-valid record at the start of `buf`: (tag, payload start, record length).
/// `None` when it is incomplete, oversized or damaged (the slow path says which).
fn frame_in(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (len_bytes, len) = varint_in(buf.get(1..)?)?;
    let body = 1 + len_bytes;
    let total = body.checked_add(len)?.checked_add(4)?;
    if len as u64 > MAX_RECORD_BYTES || buf.len() < total {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..1]);
    h.update(&buf[body..total - 4]);
    let crc = u32::from_le_bytes([
        buf[total - 4],
        buf[total - 3],
        buf[total - 2],
        buf[total - 1],
    ]);
    (h.finalize() == crc).then_some((buf[0], body, total))
}

/// A trace recovered from a possibly cut-short file.
#[derive(Debug)]
pub struct Recovered {
    /// Everything readable.
    pub trace: Trace,
    /// Why reading stopped before a proper end, if it did.
    pub stopped: Option<TraceError>,
    /// Bytes after the end marker (another trace appended, say): ignored.
    pub trailing_bytes: u64,
}

/// Read a complete trace; any truncation or corruption is an error.
///
/// # Errors
/// Any [`TraceError`]; each names the record and byte offset where reading failed.
pub fn read_trace<R: BufRead>(input: R) -> Result<Trace, TraceError> {
    let rec = read_trace_prefix(input)?;
    match rec.stopped {
        Some(e) => Err(e),
        None => Ok(rec.trace),
    }
}

/// Read as much of a trace as is intact: everything before the first bad or missing record.
///
/// # Errors
/// Only when not even the header and metadata are readable.
pub fn read_trace_prefix<R: BufRead>(input: R) -> Result<Recovered, TraceError> {
    let mut reader = TraceReader::new(input)?;
    let mut trace = Trace::new(reader.meta().clone());
    let stopped = loop {
        match reader.next_record() {
            Ok(Some(Record::Str(_, text))) => {
                trace.strings.push(&text);
            }
            Ok(Some(Record::Span(s))) => trace.spans.push(s),
            Ok(Some(Record::Power(p))) => trace.power.push(p),
            Ok(Some(Record::Facts(f))) => trace.kernel_facts.push(f),
            Ok(Some(Record::Alignment(a))) => trace.alignments.push(a),
            Ok(Some(Record::Annotation(a))) => trace.annotations.push(a),
            Ok(Some(Record::Unknown(_))) => {}
            Ok(Some(Record::End)) | Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let trailing_bytes = match stopped {
        None => reader.trailing_bytes()?,
        Some(_) => 0,
    };
    Ok(Recovered {
        trace,
        stopped,
        trailing_bytes,
    })
}

/// Open and read `path`, recovering the readable prefix of a cut-short file.
///
/// # Errors
/// [`TraceError::Io`] when the file cannot be opened, or a header/metadata error.
pub fn read_trace_file(path: &Path) -> Result<Recovered, TraceError> {
    let file = File::open(path).map_err(|source| TraceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut rec = read_trace_prefix(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| e.with_path(path))?;
    rec.stopped = rec.stopped.map(|e| e.with_path(path));
    Ok(rec)
}

/// A complete LEB128 length at the start of `b`: (bytes used, value); `None` if incomplete,
/// over-long or too large for this platform.
fn varint_in(b: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 1, usize::try_from(v).ok()?));
        }
    }
    None
}

/// Facts as written by format 1.2 and earlier, before `fields` and `writes_outside_args`.
#[derive(serde::Deserialize)]
struct FactsV1_2 {
    name: String,
    op_class: crate::trace::OpClass,
    arg_access: Vec<crate::trace::AccessMode>,
    cost: Option<crate::trace::StaticCost>,
}

/// Decode a facts record of any 1.x minor version.
fn decode_facts(payload: &[u8], at: Location) -> Result<KernelFacts, TraceError> {
    if let Ok((facts, _rest)) = postcard::take_from_bytes::<KernelFacts>(payload) {
        return Ok(facts);
    }
    let old: FactsV1_2 = decode(payload, at)?;
    Ok(KernelFacts {
        name: old.name,
        op_class: old.op_class,
        arg_access: old.arg_access,
        cost: old.cost,
        fields: Vec::new(),
        writes_outside_args: false,
    })
}

fn decode<T: DeserializeOwned>(payload: &[u8], at: Location) -> Result<T, TraceError> {
    // Trailing bytes are fields appended by a newer minor version: ignored by design.
    postcard::take_from_bytes(payload)
        .map(|(v, _rest)| v)
        .map_err(|e| corrupt(at, format!("undecodable payload ({e})")))
}

fn corrupt(at: Location, reason: String) -> TraceError {
    TraceError::Corrupt { at, reason }
}

/// Fill `buf` as far as the input allows; returns the number of bytes read.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, TraceError> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(TraceError::Stream(e)),
        }
    }
    Ok(n)
}

/// Number of [`PowerReading`] kinds this build knows; a later minor version may add more.
const KNOWN_READING_KINDS: u8 = 5;

/// True unless the payload is a reading kind added by a later minor version (its postcard
/// variant index, the first byte, is past the ones this build knows), which readers skip.
fn is_known_reading(payload: &[u8]) -> bool {
    payload.first().is_none_or(|&v| v < KNOWN_READING_KINDS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::trace::{AccessMode, FieldAccess, OpClass, StaticCost};

    #[derive(serde::Serialize)]
    struct OldFacts {
        name: String,
        op_class: OpClass,
        arg_access: Vec<AccessMode>,
        cost: Option<StaticCost>,
    }

    #[test]
    fn facts_written_by_format_1_2_still_decode() {
        let at = Location {
            record: 0,
            offset: 0,
        };
        let old = OldFacts {
            name: "k".into(),
            op_class: OpClass::Norm,
            arg_access: vec![AccessMode::Read, AccessMode::Write],
            cost: None,
        };
        let facts = decode_facts(&postcard::to_stdvec(&old).unwrap(), at).unwrap();
        assert_eq!(facts.op_class, OpClass::Norm);
        assert_eq!(facts.arg_access, vec![AccessMode::Read, AccessMode::Write]);
        assert!(facts.fields.is_empty() && !facts.writes_outside_args);
        let new = KernelFacts {
            fields: vec![FieldAccess {
                arg: 0,
                offset_bytes: 8,
                mode: AccessMode::Write,
            }],
            writes_outside_args: true,
            ..facts
        };
        assert_eq!(
            decode_facts(&postcard::to_stdvec(&new).unwrap(), at).unwrap(),
            new
        );
    }
}
