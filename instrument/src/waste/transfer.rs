//! Redundant transfers: a host-to-device copy of content the destination already holds (the
//! same bytes copied to the same buffer with nothing written there since), or of content the
//! program read back from a buffer that still holds it (a device→host→device round trip).
//!
//! Content is compared by digest. Bit 0 of a digest says whether every byte was hashed; a
//! match of sampled digests is likely, not proven, and is only counted as unchecked.

use std::collections::HashMap;

use super::{Context, Occurrence, WasteKind};
use crate::trace::{CopyDirection, SpanKind};

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
                            cx.span_mj(s.id),
                            s.duration_ns(),
                            (vec![s.id], vec![*dst]),
                            proof,
                            fix,
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
    if sampled > 0 {
        unchecked.push(format!(
            "{sampled} host-to-device copies match content the device held by sampled digest only; hash content fully (ContentHash::Full) to prove them redundant"
        ));
    }
}
