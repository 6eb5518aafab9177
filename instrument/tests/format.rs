//! The trace file format: round trips, cut-short and corrupt input, forward compatibility.

use proptest::prelude::*;
use wattlens_instrument::format::{self, read_trace, read_trace_prefix, TraceError, HEADER_BYTES};
use wattlens_instrument::*;

use crate::common::{encode, meta, raw_record, trace};

fn one_span_trace() -> Trace {
    let mut t = Trace::new(meta(1));
    let name = t.strings.id("k");
    for i in 0..3u64 {
        t.spans.push(Span {
            id: i,
            kind: SpanKind::Kernel,
            device: 0,
            stream: 7,
            start_ns: 10 + i,
            end_ns: 20 + i,
            name,
            launch: None,
            args_digest: 0,
            reads: vec![],
            writes: vec![],
            region: StrId::NONE,
            site: StrId::NONE,
            unknown_access: Vec::new(),
            host_call_ns: None,
        });
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(t in trace()) {
        let bytes = encode(&t);
        let back = read_trace(&bytes[..]).unwrap();
        prop_assert_eq!(back, t);
    }

    #[test]
    fn every_truncation_is_a_clear_error_and_leaves_a_valid_prefix(t in trace(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&t);
        let cut = cut.index(bytes.len());
        let err = read_trace(&bytes[..cut]).unwrap_err();
        if cut == 0 {
            prop_assert!(matches!(err, TraceError::NotATrace));
        } else {
            prop_assert!(err.is_truncation(), "cut at {}: {}", cut, err);
        }
        if let Ok(rec) = read_trace_prefix(&bytes[..cut]) {
            prop_assert!(rec.stopped.is_some());
            prop_assert!(rec.trace.spans.len() <= t.spans.len());
            prop_assert_eq!(&rec.trace.spans[..], &t.spans[..rec.trace.spans.len()]);
            prop_assert_eq!(&rec.trace.power[..], &t.power[..rec.trace.power.len()]);
        }
    }

    #[test]
    fn any_corrupted_byte_is_detected(t in trace(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = encode(&t);
        let i = at.index(bytes.len());
        // Bytes 10..12 are the minor version: readers accept any minor version by design.
        prop_assume!(!(10..12).contains(&i));
        bytes[i] ^= flip;
        prop_assert!(read_trace(&bytes[..]).is_err(), "flipping byte {} went unnoticed", i);
    }

    #[test]
    fn any_minor_version_is_read(t in trace(), minor in any::<u16>()) {
        let mut bytes = encode(&t);
        bytes[10..12].copy_from_slice(&minor.to_le_bytes());
        prop_assert_eq!(read_trace(&bytes[..]).unwrap(), t);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_trace(&bytes[..]);
        let mut with_header = b"WATTLENS\x01\x00\x00\x00".to_vec();
        with_header.extend_from_slice(&bytes);
        prop_assert!(read_trace(&with_header[..]).is_err());
    }
}

#[test]
fn errors_name_the_record_and_byte_offset() {
    let bytes = encode(&one_span_trace());
    let cut = bytes.len() - 10;
    let msg = read_trace(&bytes[..cut]).unwrap_err().to_string();
    assert!(msg.contains("record") && msg.contains("at byte"), "{msg}");
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 30] ^= 0x40;
    let msg = read_trace(&bad[..]).unwrap_err().to_string();
    assert!(msg.starts_with("the trace is corrupt at record"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_trace_says_so() {
    assert!(matches!(
        read_trace(&b"PK\x03\x04 some zip"[..]),
        Err(TraceError::NotATrace)
    ));
    assert!(matches!(read_trace(&b""[..]), Err(TraceError::NotATrace)));
    let err = read_trace(&b"WATTLENS\x03\x00\x00\x00"[..]).unwrap_err();
    assert!(
        matches!(err, TraceError::UnsupportedVersion { found_major: 3, .. }),
        "{err}"
    );
}

#[test]
fn a_writer_that_never_finished_leaves_a_readable_prefix() {
    let t = one_span_trace();
    let mut bytes = encode(&t);
    // The end marker is 7 bytes (tag, length, 1-byte count, CRC): without it, the file is what a
    // writer killed between records leaves behind.
    bytes.truncate(bytes.len() - 7);
    let err = read_trace(&bytes[..]).unwrap_err();
    assert!(
        matches!(err, TraceError::Unfinished { records: 5 }),
        "{err}"
    );
    let rec = read_trace_prefix(&bytes[..]).unwrap();
    assert_eq!(rec.trace.spans, t.spans);
    assert!(rec.stopped.is_some_and(|e| e.is_truncation()));
}

#[test]
fn unknown_records_and_appended_fields_are_ignored() {
    let t = one_span_trace();
    let full = encode(&t);
    // Rebuild: header + meta + string, then an unknown record, then a span with extra trailing
    // bytes (a field a newer minor version appended), then the rest.
    let mut bytes = full[..HEADER_BYTES as usize].to_vec();
    let meta = postcard::to_allocvec(&t.meta).unwrap();
    raw_record(&mut bytes, 1, &meta);
    raw_record(&mut bytes, 2, &postcard::to_allocvec(&(0u32, "k")).unwrap());
    raw_record(&mut bytes, 200, b"from the future");
    for s in &t.spans {
        let mut payload = Vec::new();
        format::encode_span(s, t.meta.start_unix_ns, &mut payload);
        payload.extend_from_slice(&[9, 9, 9]);
        raw_record(&mut bytes, 3, &payload);
    }
    raw_record(&mut bytes, 7, &postcard::to_allocvec(&6u64).unwrap());
    let back = read_trace(&bytes[..]).unwrap();
    assert_eq!(back.spans, t.spans);
}

#[test]
fn a_huge_declared_length_is_rejected_without_allocating_it() {
    let mut bytes = encode(&Trace::new(meta(1)));
    bytes.truncate(bytes.len() - 7); // drop the end marker (tag, len, 1-byte payload, crc)
    bytes.push(3);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let err = read_trace(&bytes[..]).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    // A length within the limit but beyond the input is a truncation, read as it arrives.
    let mut short = encode(&Trace::new(meta(1)));
    short.truncate(short.len() - 7);
    short.extend_from_slice(&[3, 0x80, 0x80, 0x80, 0x04]);
    assert!(read_trace(&short[..]).unwrap_err().is_truncation());
}

#[test]
fn references_are_validated() {
    let mut t = one_span_trace();
    t.spans[1].name = StrId(5);
    let msg = read_trace(&encode(&t)[..]).unwrap_err().to_string();
    assert!(msg.contains("string 5 before it is defined"), "{msg}");
    let mut t = one_span_trace();
    t.spans[0].device = 3;
    let msg = read_trace(&encode(&t)[..]).unwrap_err().to_string();
    assert!(msg.contains("device 3"), "{msg}");
    let mut t = one_span_trace();
    t.spans[2].end_ns = 1;
    let msg = read_trace(&encode(&t)[..]).unwrap_err().to_string();
    assert!(msg.contains("ends"), "{msg}");
}

#[test]
fn a_text_defined_twice_keeps_both_ids() {
    let mut t = one_span_trace();
    let twin = t.strings.push("k");
    assert_eq!(twin, StrId(1));
    t.spans[2].name = twin;
    t.spans[1].region = t.strings.push("layer0");
    let back = read_trace(&encode(&t)[..]).unwrap();
    assert_eq!(back.strings.len(), 3);
    assert_eq!(back, t);
    assert_eq!(back.str(back.spans[1].region), "layer0");
}

#[test]
fn annotations_round_trip_and_an_unknown_kind_is_skipped() {
    let mut t = one_span_trace();
    t.annotations = vec![
        Annotation::Buffer {
            id: 3,
            device: 0,
            bytes: 4096,
        },
        Annotation::Pass {
            pass: 1,
            padded_len: 4,
            causal: true,
            rows: vec![vec![1, 2, 3], vec![4]],
        },
        Annotation::Padding {
            span: 1,
            pass: 1,
            padded: 3,
            total: 8,
        },
        Annotation::Overhead {
            device: 0,
            from_ns: 10,
            to_ns: 20,
        },
        Annotation::Freed { id: 3, at_ns: 30 },
        Annotation::CopyTarget {
            span: 1,
            address: 0x7f00_2000_0000,
        },
        Annotation::AuditOp(Box::new(AuditOp {
            seq: 7,
            name: "aten::addmm".into(),
            module: "Conv1D#4".into(),
            ordinal: 2,
            identity: 0xfeed,
            random: false,
            moves_data: false,
            spans: vec![1],
            inputs: vec![AuditTensor {
                tensor: 1,
                storage: 0x7f00,
                digest: u64::MAX,
                bytes: 64,
                device: None,
            }],
            outputs: Vec::new(),
            writes: vec![(
                AuditTensor {
                    tensor: 2,
                    storage: 0x7f40,
                    digest: 3,
                    bytes: 64,
                    device: Some(1),
                },
                3,
            )],
            rows: Some(AuditRows {
                matched: 3,
                total: 4,
                previous: 5,
            }),
        })),
        Annotation::AuditFreed {
            tensor: 1,
            after_seq: 7,
        },
        Annotation::AuditSummary(AuditSummary {
            ops: 7,
            audit_host_ns: 100,
            digest_spans: 2,
            digest_busy_ns: 50,
            skipped: vec![("inside a CUDA graph capture".into(), 3)],
            unreadable_lines: 1,
        }),
        Annotation::AuditNote("the program called torch.compile 1 time(s)".into()),
        Annotation::ReleasedAfter {
            device: 0,
            at_ns: 5_000,
        },
    ];
    assert_eq!(
        read_trace(&encode(&t)[..]).unwrap().annotations,
        t.annotations
    );
    // A kind a newer minor version adds (variant 99, past every kind this build knows) is
    // skipped, not an error.
    let full = encode(&one_span_trace());
    let mut bytes = full[..HEADER_BYTES as usize].to_vec();
    raw_record(&mut bytes, 1, &postcard::to_allocvec(&t.meta).unwrap());
    raw_record(&mut bytes, 8, &[99, 1, 2, 3]);
    raw_record(&mut bytes, 7, &postcard::to_allocvec(&2u64).unwrap());
    let back = read_trace(&bytes[..]).unwrap();
    assert!(back.annotations.is_empty());
}

#[test]
fn a_version_1_file_still_reads() {
    let t = one_span_trace();
    let mut bytes = encode(&t);
    // A version-1 writer wrote the same records under major version 1.
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    let back = read_trace(&bytes[..]).unwrap();
    assert_eq!(back.spans, t.spans);
}
