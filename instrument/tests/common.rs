//! Shared builders and proptest strategies.

use proptest::prelude::*;
use wattlens_instrument::*;

/// A one-device metadata block.
pub fn meta(devices: u32) -> RunMeta {
    RunMeta {
        tool_version: "test".into(),
        simulated: true,
        host: "h".into(),
        command: vec!["t".into()],
        start_unix_ns: 1_000,
        driver: Some("580.159.04".into()),
        devices: (0..devices)
            .map(|i| DeviceInfo {
                index: i,
                name: format!("gpu{i}"),
                uuid: format!("GPU-{i}"),
                sm_count: 132,
                power_limit_mw: 700_000,
            })
            .collect(),
        sensor_profile: SensorProfile::default(),
    }
}

fn kind() -> impl Strategy<Value = SpanKind> {
    prop_oneof![
        Just(SpanKind::Kernel),
        (0u8..3, any::<u64>(), proptest::option::of(any::<u64>())).prop_map(
            |(d, bytes, content_digest)| SpanKind::Memcpy {
                direction: [
                    CopyDirection::HostToDevice,
                    CopyDirection::DeviceToHost,
                    CopyDirection::DeviceToDevice
                ][d as usize],
                bytes,
                content_digest
            }
        ),
        (any::<u64>(), any::<u8>()).prop_map(|(bytes, value)| SpanKind::Memset { bytes, value }),
        (0u32..8).prop_map(|depth| SpanKind::Region { depth }),
        Just(SpanKind::Sync),
        Just(SpanKind::Idle),
        (any::<u32>(), any::<u64>()).prop_map(|(launches, of)| SpanKind::Alone { launches, of }),
    ]
}

fn buffers() -> impl Strategy<Value = Vec<BufferVersion>> {
    proptest::collection::vec(
        (any::<u64>(), any::<u32>())
            .prop_map(|(buffer, version)| BufferVersion { buffer, version }),
        0..4,
    )
}

fn span(devices: u32, strings: u32) -> impl Strategy<Value = Span> {
    let sid = move || prop_oneof![Just(StrId::NONE), (0..strings).prop_map(StrId)];
    (
        (
            any::<u64>(),
            kind(),
            0..devices,
            any::<u64>(),
            any::<u64>(),
            0u64..1 << 40,
        ),
        (
            0..strings,
            proptest::option::of((any::<[u32; 3]>(), any::<[u32; 3]>(), any::<u32>())),
            any::<u64>(),
        ),
        (
            buffers(),
            buffers(),
            sid(),
            sid(),
            proptest::collection::vec(any::<u64>(), 0..3),
        ),
        proptest::option::of((any::<u64>(), 0u64..1 << 40)),
    )
        .prop_map(
            |(
                (id, kind, device, stream, start_ns, len),
                (name, launch, args_digest),
                (reads, writes, region, site, unknown_access),
                call,
            )| Span {
                id,
                kind,
                device,
                stream,
                start_ns,
                end_ns: start_ns.saturating_add(len),
                name: StrId(name),
                launch: launch.map(|(grid, block, shared_mem_bytes)| LaunchShape {
                    grid,
                    block,
                    shared_mem_bytes,
                }),
                args_digest,
                reads,
                writes,
                region,
                site,
                unknown_access,
                host_call_ns: call.map(|(from, len)| Interval::new(from, from.saturating_add(len))),
            },
        )
}

fn reading(devices: u32) -> impl Strategy<Value = PowerReading> {
    prop_oneof![
        (0..devices, any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(device, ts_ns, raw_ts_us, power_mw)| PowerReading::Sample {
                device,
                ts_ns,
                raw_ts_us,
                power_mw
            }
        ),
        (0..devices, any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
            |(device, ts_ns, read_ns, energy_mj)| PowerReading::Energy {
                device,
                ts_ns,
                read_ns,
                energy_mj
            }
        ),
        (0..devices, any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(device, ts_ns, read_ns, power_mw)| PowerReading::Instant {
                device,
                ts_ns,
                read_ns,
                power_mw
            }
        ),
    ]
}

fn facts() -> impl Strategy<Value = KernelFacts> {
    let access = prop_oneof![
        Just(AccessMode::Read),
        Just(AccessMode::Write),
        Just(AccessMode::ReadWrite),
        Just(AccessMode::None),
        Just(AccessMode::Unknown)
    ];
    (
        "[a-z_]{1,12}",
        0usize..9,
        proptest::collection::vec(access.clone(), 0..5),
        proptest::option::of(("[0-9K*+]{1,6}", "[0-9K*+]{1,6}")),
        proptest::collection::vec((0u32..4, 0u64..64, access), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(name, op, arg_access, cost, fields, writes_outside_args)| KernelFacts {
                name,
                op_class: OpClass::ALL[op],
                arg_access,
                cost: cost.map(|(f, b)| StaticCost {
                    flops_per_thread: f,
                    global_bytes_per_thread: b,
                }),
                fields: fields
                    .into_iter()
                    .map(|(arg, offset_bytes, mode)| FieldAccess {
                        arg,
                        offset_bytes,
                        mode,
                    })
                    .collect(),
                writes_outside_args,
            },
        )
}

/// Arbitrary valid traces: every reference resolves.
pub fn trace() -> impl Strategy<Value = Trace> {
    (
        1u32..4,
        proptest::collection::btree_set("\\PC{0,24}", 1..12),
    )
        .prop_flat_map(|(devices, texts)| {
            let n = texts.len() as u32;
            (
                Just(devices),
                Just(texts),
                proptest::collection::vec(span(devices, n), 0..40),
                proptest::collection::vec(reading(devices), 0..40),
                proptest::collection::vec(facts(), 0..4),
            )
                .prop_map(|(devices, texts, spans, power, kernel_facts)| {
                    let mut t = Trace::new(meta(devices));
                    for s in &texts {
                        t.strings.intern(s);
                    }
                    t.spans = spans;
                    t.power = power;
                    t.kernel_facts = kernel_facts;
                    t.alignments.push(ClockAlignment {
                        source: ClockSource::Nvml,
                        device: 0,
                        offset_ns: -5,
                        drift_ppb: 12,
                        error_bound_ns: 300,
                        points: vec![(1, 2), (3, 4)],
                    });
                    t
                })
        })
}

/// Encode a trace to bytes.
pub fn encode(t: &Trace) -> Vec<u8> {
    format::TraceWriter::write_trace(Vec::new(), t).unwrap()
}

/// Append a record by hand: tag, LEB128 length, payload, CRC32 of tag+payload.
pub fn raw_record(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    let mut n = payload.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(&[tag]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
}
