//! The span record codec, the hot path of writing and reading a trace.
//!
//! A span is, in order: id, kind tag and payload, device, stream (LEB128 varints); start as a
//! zigzag varint of its offset from the run's start; duration (end − start, wrapping) as a
//! varint; name; launch (0, or 1 and seven varints); the args digest as 8 little-endian
//! bytes (a hash: varints would make it longer); reads and writes (a count, then buffer and
//! version varints); region and site as id + 1, with 0 for none; the buffers of unknown access
//! mode (a count, then buffer varints; absent in the oldest files); since format 2.1, the host
//! call that issued the span (0, or 1, the call's start as a zigzag varint of its offset from
//! the span's start, and its duration as a varint; absent in older files). Trailing bytes are
//! fields of a newer minor version and are ignored.

use crate::intervals::Interval;
use crate::trace::{BufferVersion, CopyDirection, LaunchShape, Span, SpanKind, StrId};

/// What is wrong with a span record (static, so the happy path returns small values).
pub(crate) type Bad = &'static str;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, id: StrId) {
    put(out, if id.is_some() { u64::from(id.0) + 1 } else { 0 });
}

fn put_buffers(out: &mut Vec<u8>, list: &[BufferVersion]) {
    put(out, list.len() as u64);
    for b in list {
        put(out, b.buffer);
        put(out, u64::from(b.version));
    }
}

/// Append the encoding of `span` to `out`; `base_ns` is the run's start (`RunMeta::start_unix_ns`).
pub fn encode_span(span: &Span, base_ns: u64, out: &mut Vec<u8>) {
    put(out, span.id);
    match span.kind {
        SpanKind::Kernel => put(out, 0),
        SpanKind::Memcpy {
            direction,
            bytes,
            content_digest,
        } => {
            put(out, 1);
            put(out, direction as u64);
            put(out, bytes);
            match content_digest {
                Some(d) => {
                    out.push(1);
                    out.extend_from_slice(&d.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        SpanKind::Memset { bytes, value } => {
            put(out, 2);
            put(out, bytes);
            out.push(value);
        }
        SpanKind::Region { depth } => {
            put(out, 3);
            put(out, u64::from(depth));
        }
        SpanKind::Sync => put(out, 4),
        SpanKind::Idle => put(out, 5),
        SpanKind::Alone { launches, of } => {
            put(out, 6);
            put(out, u64::from(launches));
            put(out, of);
        }
    }
    put(out, u64::from(span.device));
    put(out, span.stream);
    put(out, zigzag(span.start_ns.wrapping_sub(base_ns) as i64));
    put(out, span.end_ns.wrapping_sub(span.start_ns));
    put(out, u64::from(span.name.0));
    match span.launch {
        Some(l) => {
            out.push(1);
            for v in l
                .grid
                .iter()
                .chain(&l.block)
                .chain(std::iter::once(&l.shared_mem_bytes))
            {
                put(out, u64::from(*v));
            }
        }
        None => out.push(0),
    }
    out.extend_from_slice(&span.args_digest.to_le_bytes());
    put_buffers(out, &span.reads);
    put_buffers(out, &span.writes);
    put_str(out, span.region);
    put_str(out, span.site);
    put(out, span.unknown_access.len() as u64);
    for &b in &span.unknown_access {
        put(out, b);
    }
    match span.host_call_ns {
        Some(Interval {
            from_ns: from,
            to_ns: to,
        }) => {
            out.push(1);
            put(out, zigzag(from.wrapping_sub(span.start_ns) as i64));
            put(out, to.wrapping_sub(from));
        }
        None => out.push(0),
    }
}

/// `v` as a zigzag varint value (small magnitudes of either sign stay small).
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Bad> {
        let v = *self.b.get(self.i).ok_or("the span record ends early")?;
        self.i += 1;
        Ok(v)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Bad> {
        let rest = self.b.get(self.i..).unwrap_or_default();
        let mut v: u64 = 0;
        for (k, &byte) in rest.iter().take(10).enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * k);
            if byte < 0x80 {
                if k == 9 && byte > 1 {
                    break;
                }
                self.i += k + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() < 10 {
            "the span record ends early"
        } else {
            "a span field is not a valid 64-bit varint"
        })
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Bad> {
        u32::try_from(self.u64()?).map_err(|_| "a 32-bit span field is out of range")
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, Bad> {
        let bytes = self
            .b
            .get(self.i..self.i + 8)
            .ok_or("the span record ends early")?;
        self.i += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(a))
    }

    fn flag(&mut self) -> Result<bool, Bad> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("an option tag is neither 0 nor 1"),
        }
    }

    fn str_id(&mut self) -> Result<StrId, Bad> {
        Ok(match self.u32()? {
            0 => StrId::NONE,
            n => StrId(n - 1),
        })
    }

    fn buffers(&mut self) -> Result<Vec<BufferVersion>, Bad> {
        let n = self.u64()?;
        // Each entry takes at least two bytes: never reserve more than the record can hold.
        if n > (self.b.len() - self.i) as u64 / 2 {
            return Err("a buffer list claims more entries than the record holds");
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(BufferVersion {
                buffer: self.u64()?,
                version: self.u32()?,
            });
        }
        Ok(v)
    }
}

/// Decode one span record; `base_ns` is the run's start.
pub(crate) fn decode_span(payload: &[u8], base_ns: u64) -> Result<Span, Bad> {
    let mut c = Cursor { b: payload, i: 0 };
    let id = c.u64()?;
    let kind = match c.u32()? {
        0 => SpanKind::Kernel,
        1 => {
            let direction = match c.u32()? {
                0 => CopyDirection::HostToDevice,
                1 => CopyDirection::DeviceToHost,
                2 => CopyDirection::DeviceToDevice,
                _ => return Err("unknown copy direction"),
            };
            let bytes = c.u64()?;
            let content_digest = if c.flag()? { Some(c.fixed64()?) } else { None };
            SpanKind::Memcpy {
                direction,
                bytes,
                content_digest,
            }
        }
        2 => SpanKind::Memset {
            bytes: c.u64()?,
            value: c.byte()?,
        },
        3 => SpanKind::Region { depth: c.u32()? },
        4 => SpanKind::Sync,
        5 => SpanKind::Idle,
        6 => SpanKind::Alone {
            launches: c.u32()?,
            of: c.u64()?,
        },
        _ => return Err("unknown span kind"),
    };
    let device = c.u32()?;
    let stream = c.u64()?;
    let start_ns = base_ns.wrapping_add(unzigzag(c.u64()?) as u64);
    let end_ns = start_ns.wrapping_add(c.u64()?);
    let name = StrId(c.u32()?);
    let launch = if c.flag()? {
        let grid = [c.u32()?, c.u32()?, c.u32()?];
        let block = [c.u32()?, c.u32()?, c.u32()?];
        Some(LaunchShape {
            grid,
            block,
            shared_mem_bytes: c.u32()?,
        })
    } else {
        None
    };
    let args_digest = c.fixed64()?;
    let reads = c.buffers()?;
    let writes = c.buffers()?;
    let region = c.str_id()?;
    let site = c.str_id()?;
    let unknown_access = if c.i < c.b.len() {
        let n = c.u64()?;
        if n > (c.b.len() - c.i) as u64 {
            return Err("an unknown-access list claims more entries than the record holds");
        }
        (0..n).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let host_call_ns = if c.i < c.b.len() && c.flag()? {
        let from = start_ns.wrapping_add(unzigzag(c.u64()?) as u64);
        let to = from
            .checked_add(c.u64()?)
            .ok_or("a host call ends past the end of time")?;
        Some((from, to))
    } else {
        None
    };
    Ok(Span {
        id,
        kind,
        device,
        stream,
        start_ns,
        end_ns,
        name,
        launch,
        args_digest,
        reads,
        writes,
        region,
        site,
        unknown_access,
        host_call_ns: host_call_ns.map(Interval::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_written_before_host_calls_reads_without_one() {
        let span = Span {
            host_call_ns: Some(Interval::new(1_000, 1_500)),
            ..Span::new(3, SpanKind::Kernel, (0, 1), StrId(0), (2_000, 2_400))
        };
        let mut bytes = Vec::new();
        encode_span(&span, 500, &mut bytes);
        assert_eq!(decode_span(&bytes, 500), Ok(span.clone()));
        // A 2.0 writer stopped after the unknown-access list: the call's flag, a zigzag
        // offset (−1000 → 1999, two bytes) and a duration (500, two bytes).
        let old = &bytes[..bytes.len() - 5];
        let back = decode_span(old, 500).unwrap();
        assert_eq!(back.host_call_ns, None);
        assert_eq!(
            back,
            Span {
                host_call_ns: None,
                ..span
            }
        );
    }
}
