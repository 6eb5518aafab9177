//! Redundant transfers: a host-to-device copy of content the destination already holds (the
//! same bytes copied to the same buffer with nothing written there since), or of content the
//! program read back from a buffer that still holds it (a device→host→device round trip).
//!
//! Content is compared by digest. Bit 0 of a digest says whether every byte was hashed; a
//! match of sampled digests is likely, not proven, and is only counted as unchecked.
//!
//! A trace of an unmodified program (`wattlens run`) knows no buffers: its uploads name the
//! device address they wrote ([`Annotation::CopyTarget`]) and its kernels list nothing they
//! touch. There an upload is proven redundant only when the same content was copied to the same
//! place and no work has run on the device since, since any kernel may have written there. An
//! upload that repeats what was copied there before, with work in between, is counted as
//! unchecked, with its bytes and energy: likely waste the trace cannot prove.

use std::collections::{BTreeMap, HashMap};

use super::{Context, Evidence, Occurrence, WasteKind};
use crate::trace::{Annotation, CopyDirection, Span, SpanKind};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Upload,
    Readback,
}

pub(super) fn detect(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) {
    // What each buffer is known to hold (from its start): (digest, bytes, how it became known).
    let mut content: HashMap<u64, (u64, u64, Source)> = HashMap::new();
    let mut sampled = 0usize;
    for s in &cx.work {
        if let SpanKind::Memcpy {
            direction,
            bytes,
            content_digest: Some(d),
        } = s.kind
        {
            match direction {
                CopyDirection::HostToDevice => {
                    let Some(dst) = s.writes.first() else {
                        continue;
                    };
                    let same = content
                        .get(&dst.buffer)
                        .is_some_and(|&(d0, b0, _)| d0 == d && b0 == bytes);
                    let readback = content
                        .iter()
                        .find(|(b, &(d0, b0, src))| {
                            **b != dst.buffer && d0 == d && b0 == bytes && src == Source::Readback
                        })
                        .map(|(b, _)| *b);
                    let why = match (same, readback) {
                        (false, None) => None,
                        _ if d & 1 == 1 => {
                            sampled += 1;
                            None
                        }
                        (true, _) => Some((
                            format!(
                                "{bytes} bytes copied to buffer {} (v{}), which already held exactly this content",
                                dst.buffer, dst.version
                            ),
                            "skip this upload: the buffer already holds the same content".to_owned(),
                        )),
                        (false, Some(src)) => Some((
                            format!(
                                "{bytes} bytes uploaded to buffer {} that were read back from buffer {src}, which still holds them",
                                dst.buffer
                            ),
                            format!(
                                "use buffer {src} on the device (or copy device-to-device) instead of the round trip through the host"
                            ),
                        )),
                    };
                    if let Some((proof, fix)) = why {
                        out.push(cx.occurrence(
                            WasteKind::RedundantTransfer,
                            s,
                            (cx.span_mj(s.id), s.duration_ns()),
                            Evidence::new((vec![s.id], vec![*dst]), proof, fix),
                        ));
                    }
                    content.insert(dst.buffer, (d, bytes, Source::Upload));
                    continue;
                }
                CopyDirection::DeviceToHost => {
                    if let Some(src) = s.reads.first() {
                        let known = content.get(&src.buffer).copied();
                        let source = match known {
                            Some((d0, _, Source::Upload)) if d0 == d => Source::Upload,
                            _ => Source::Readback,
                        };
                        content.insert(src.buffer, (d, bytes, source));
                    }
                    continue;
                }
                _ => {}
            }
        }
        // Any other write leaves the buffer's content unknown.
        for w in &s.writes {
            content.remove(&w.buffer);
        }
    }
    sampled += by_address(cx, out, unchecked);
    if sampled > 0 {
        unchecked.push(format!(
            "{sampled} host-to-device copies match content the device held by sampled digest only; hash content fully (ContentHash::Full, or WATTLENS_DIGESTS=full under `wattlens run`) to prove them redundant"
        ));
    }
}

/// Device address ranges and the content digest copied into each; ranges never overlap.
#[derive(Debug, Default)]
struct Places(BTreeMap<u64, (u64, u64)>);

impl Places {
    /// The digest of what was copied to exactly `[start, end)`, if that is a known range.
    fn exact(&self, start: u64, end: u64) -> Option<u64> {
        self.0
            .get(&start)
            .and_then(|&(e, digest)| (e == end).then_some(digest))
    }

    /// Record `digest` copied to `[start, end)`; ranges it overlaps are no longer known.
    fn put(&mut self, start: u64, end: u64, digest: u64) {
        let overlapped: Vec<u64> = self
            .0
            .range(..end.max(start.saturating_add(1)))
            .rev()
            .take_while(|(_, &(e, _))| e > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapped {
            self.0.remove(&s);
        }
        self.0.insert(start, (end, digest));
    }
}

/// Uploads identified by device address (a trace with no buffers): proven redundant when
/// nothing ran since the same content was copied to the same place; repeats with work in
/// between are reported as unchecked. Returns the matches by sampled digest alone.
fn by_address(cx: &Context<'_>, out: &mut Vec<Occurrence>, unchecked: &mut Vec<String>) -> usize {
    let targets: HashMap<u64, u64> = cx
        .trace
        .annotations
        .iter()
        .filter_map(|a| match *a {
            Annotation::CopyTarget { span, address } => Some((span, address)),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return 0;
    }
    // What each place holds for certain (nothing ran since), and what was last copied there.
    let mut held = Places::default();
    let mut copied = Places::default();
    let mut sampled = 0usize;
    let (mut repeats, mut repeat_bytes, mut repeat_mj) = (0usize, 0u64, 0.0f64);
    for s in &cx.work {
        let upload = match (s.kind, targets.get(&s.id)) {
            (
                SpanKind::Memcpy {
                    direction: CopyDirection::HostToDevice,
                    bytes,
                    content_digest: Some(d),
                },
                Some(&address),
            ) => Some((address, address.saturating_add(bytes), bytes, d)),
            _ => None,
        };
        let Some((start, end, bytes, d)) = upload else {
            // A read-back writes no device memory; any other work that lists no buffers may
            // have written anywhere.
            let reads_only = matches!(
                s.kind,
                SpanKind::Memcpy {
                    direction: CopyDirection::DeviceToHost,
                    ..
                }
            );
            if !reads_only && s.reads.is_empty() && s.writes.is_empty() {
                held.0.clear();
            }
            continue;
        };
        if held.exact(start, end) == Some(d) {
            if d & 1 == 1 {
                sampled += 1;
            } else {
                out.push(proven_at(cx, s, start, bytes));
            }
        } else if copied.exact(start, end) == Some(d) {
            repeats += 1;
            repeat_bytes = repeat_bytes.saturating_add(bytes);
            repeat_mj += cx.span_mj(s.id).mj;
        }
        held.put(start, end, d);
        copied.put(start, end, d);
    }
    if repeats > 0 {
        unchecked.push(format!(
            "{repeats} host-to-device copies ({:.1} MiB, {:.3} J) repeat content copied to the same device address before; kernels whose buffer accesses are unknown ran in between, so they are not proven redundant (if nothing writes there, upload once)",
            repeat_bytes as f64 / f64::from(1u32 << 20),
            repeat_mj / 1e3
        ));
    }
    sampled
}

/// The finding for upload `s` of `bytes` to `address`, which already held its content.
fn proven_at(cx: &Context<'_>, s: &Span, address: u64, bytes: u64) -> Occurrence {
    cx.occurrence(WasteKind::RedundantTransfer, s, (cx.span_mj(s.id), s.duration_ns()), Evidence::new((vec![s.id], Vec::new()), format!(
            "{bytes} bytes copied to device address {address:#x}, which already held exactly this content: it was copied there before, and no work ran on the device since"
        ), "skip this upload: the device already holds the same content there".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::Places;

    #[test]
    fn a_copy_over_part_of_a_place_forgets_what_it_held() {
        let mut p = Places::default();
        p.put(100, 200, 7);
        p.put(300, 400, 8);
        assert_eq!(p.exact(100, 200), Some(7));
        assert_eq!(p.exact(100, 150), None, "another extent is another place");
        p.put(150, 160, 9);
        assert_eq!(p.exact(100, 200), None, "overwritten in part");
        assert_eq!(p.exact(150, 160), Some(9));
        assert_eq!(p.exact(300, 400), Some(8), "untouched");
        p.put(0, 1000, 1);
        assert_eq!(p.0.len(), 1, "one copy over everything");
        p.put(1000, 1100, 2);
        assert_eq!(p.exact(0, 1000), Some(1), "adjacent, not overlapping");
        p.put(u64::MAX, u64::MAX, 3);
        assert_eq!(
            p.exact(u64::MAX, u64::MAX),
            Some(3),
            "no overflow at the top"
        );
    }
}
