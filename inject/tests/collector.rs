//! The collector on hand-made CUPTI records: spans, regions, clock mapping, and a trace that
//! is readable before it is closed.

use std::io::Write;
use std::sync::{Arc, Mutex};

use wattlens_inject::collect::{CallInfo, Collector};
use wattlens_inject::nvtx_ranges::MARK_TRACK;
use wattlens_inject::regions::{Closed, PathTable};
use wattlens_inject::syncs::HostSync;
use wattlens_inject::uploads::Upload;
use wattlens_instrument::format::{read_trace, read_trace_prefix};
use wattlens_instrument::trace::{
    Annotation, CopyDirection, DeviceInfo, LaunchShape, PowerReading, RunMeta, SpanKind, Trace,
};
use wattlens_instrument::{Interval, TraceWriter};
use wattlens_runtime::internal::clock_fit::ClockPoint;
use wattlens_runtime::internal::cuda::cupti_records::CuptiRecord;
use wattlens_runtime::internal::timing::{Activity, ActivityKind};

/// A writer whose bytes the test can read while the collector still holds it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// CUPTI's clock runs 1 000 000 ns behind the trace clock.
const OFFSET_NS: u64 = 1_000_000;
/// When the records were delivered, trace clock.
const NOW_NS: u64 = 30_000_000;

fn kernel(name: &str, start: u64, end: u64, correlation: u32) -> CuptiRecord {
    CuptiRecord::Work {
        device: 1,
        activity: Activity {
            kind: ActivityKind::Kernel {
                name: name.into(),
                shape: LaunchShape {
                    grid: [132, 1, 1],
                    block: [256, 1, 1],
                    shared_mem_bytes: 0,
                },
            },
            stream_id: 13,
            start_ns: start,
            end_ns: end,
            correlation_id: correlation,
        },
    }
}

fn collector(buf: &Shared) -> Collector<Shared> {
    let meta = RunMeta {
        command: vec!["python3".into(), "infer.py".into()],
        devices: (0..2)
            .map(|index| DeviceInfo {
                index,
                ..DeviceInfo::default()
            })
            .collect(),
        ..RunMeta::default()
    };
    let mut c = Collector::new(TraceWriter::new(buf.clone(), &meta).unwrap());
    for k in 0..3u64 {
        let foreign_ns = 10_000_000 + k * 500_000_000;
        c.calibrate(ClockPoint {
            foreign_ns,
            trace_ns: foreign_ns + OFFSET_NS,
            half_width_ns: 500,
        });
    }
    c
}

#[test]
fn records_become_spans_with_regions_on_the_trace_clock() {
    let buf = Shared::default();
    let mut c = collector(&buf);
    let records = vec![
        kernel(
            "_ZN2at6native18elementwise_kernelILi128ELi4EEEviT_",
            20_000_000,
            20_050_000,
            41,
        ),
        kernel("ampere_sgemm_128x64_nn", 20_100_000, 20_400_000, 42),
        CuptiRecord::Work {
            device: 1,
            activity: Activity {
                kind: ActivityKind::Memcpy {
                    bytes: 4096,
                    direction: Some(CopyDirection::HostToDevice),
                },
                stream_id: 13,
                start_ns: 19_000_000,
                end_ns: 19_010_000,
                correlation_id: 40,
            },
        },
        CuptiRecord::Work {
            device: 1,
            activity: Activity {
                kind: ActivityKind::Memcpy {
                    bytes: 64,
                    direction: None,
                },
                stream_id: 13,
                start_ns: 19_020_000,
                end_ns: 19_030_000,
                correlation_id: 43,
            },
        },
        CuptiRecord::Work {
            device: 1,
            activity: Activity {
                kind: ActivityKind::Memset {
                    bytes: 512,
                    value: 0xff,
                },
                stream_id: 13,
                start_ns: 19_040_000,
                end_ns: 19_041_000,
                correlation_id: 44,
            },
        },
        kernel("never_finished", 0, 0, 45),
        // Taken by a forced flush while it ran: its end is garbage, past the delivery.
        kernel("cut_short", 20_500_000, 900_000_000_000, 46),
    ];
    let mut regions = |id: u32| (id == 42).then(|| Arc::<str>::from("model/layer0/mlp"));
    c.records(records, NOW_NS, &mut regions).unwrap();
    let mut paths = PathTable::default();
    let model = paths.intern(None, "model");
    let layer = paths.intern(Some(model), "layer0");
    let mlp = paths.intern(Some(layer), "mlp");
    let closed = |path| Closed {
        path,
        depth: 2,
        start_ns: 21_000_000,
        end_ns: 21_500_000,
        tokens: None,
    };
    // A path id the table never gave is skipped, not written under a made-up name.
    c.regions(&[closed(mlp), closed(mlp + 100)], &paths, 0)
        .unwrap();
    // A mark: a zero-length region span on its own track.
    let tick = paths.intern(None, "tick");
    let instant = Closed {
        path: tick,
        depth: 0,
        start_ns: 21_200_000,
        end_ns: 21_200_000,
        tokens: None,
    };
    c.regions(&[instant], &paths, MARK_TRACK).unwrap();
    assert_eq!(c.counts().marks, 1);
    // A host wait timed by the callbacks: already on the trace clock, not mapped again.
    let waited = HostSync {
        device: 1,
        stream: u32::MAX,
        start_ns: 22_000_000,
        end_ns: 22_300_000,
    };
    c.syncs(&[waited]).unwrap();
    c.power(
        1,
        &[PowerReading::Sample {
            device: 0,
            ts_ns: 21_000_000,
            raw_ts_us: 21_000,
            power_mw: 300_000,
        }],
    )
    .unwrap();
    let counts = c.counts();
    assert_eq!(
        (
            counts.kernels,
            counts.copies,
            counts.memsets,
            counts.syncs,
            counts.regions
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(
        counts.kernels_in_ranges, 1,
        "only the sgemm was launched in a range"
    );
    assert_eq!(
        counts.skipped, 3,
        "a host-to-host copy, a kernel with no times, one ending after its delivery"
    );
    c.finish(&[]).unwrap();

    let trace: Trace = read_trace(&buf.0.lock().unwrap()[..]).unwrap();
    let kernels: Vec<_> = trace
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Kernel)
        .collect();
    assert_eq!(
        trace.str(kernels[0].name),
        "at::native::elementwise_kernel<128, 4>"
    );
    assert_eq!(kernels[0].start_ns, 20_000_000 + OFFSET_NS);
    assert_eq!(kernels[0].end_ns, 20_050_000 + OFFSET_NS);
    assert_eq!(kernels[0].device, 1);
    assert_eq!(kernels[0].stream, 13);
    assert_eq!(trace.str(kernels[0].region), "");
    assert_eq!(trace.str(kernels[1].region), "model/layer0/mlp");
    assert_eq!(kernels[1].launch.unwrap().grid, [132, 1, 1]);
    let memset = trace
        .spans
        .iter()
        .find(|s| matches!(s.kind, SpanKind::Memset { .. }))
        .unwrap();
    assert_eq!(
        memset.kind,
        SpanKind::Memset {
            bytes: 512,
            value: 0xff
        }
    );
    let host_sync = trace
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Sync)
        .unwrap();
    assert_eq!(
        (
            host_sync.device,
            host_sync.stream,
            host_sync.start_ns,
            host_sync.end_ns
        ),
        (1, u64::from(u32::MAX), 22_000_000, 22_300_000)
    );
    let region = trace
        .spans
        .iter()
        .find(|s| matches!(s.kind, SpanKind::Region { depth: 2 }))
        .unwrap();
    assert_eq!(
        (trace.str(region.name), trace.str(region.region)),
        ("mlp", "model/layer0/mlp")
    );
    assert_eq!(region.stream, 0, "push/pop ranges on region track 0");
    let mark = trace
        .spans
        .iter()
        .find(|s| trace.str(s.name) == "tick")
        .unwrap();
    assert_eq!(
        (mark.kind, mark.stream, mark.start_ns, mark.end_ns),
        (
            SpanKind::Region { depth: 0 },
            MARK_TRACK,
            21_200_000,
            21_200_000
        )
    );
    assert_eq!(trace.power.len(), 1);
    assert_eq!(
        trace.power[0].device(),
        1,
        "readings carry the CUDA ordinal"
    );
    assert_eq!(
        trace.alignments.len(),
        1,
        "CUPTI clock evidence for device 1"
    );
    let mut ids: Vec<u64> = trace.spans.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), trace.spans.len(), "span ids are unique");
}

/// Uploads hashed by the callbacks, by correlation id; taken once, as the writer does.
struct Hashed(Vec<Upload>);

impl CallInfo for Hashed {
    fn region(&mut self, _correlation: u32) -> Option<Arc<str>> {
        None
    }

    fn upload(&mut self, correlation: u32) -> Option<Upload> {
        let i = self.0.iter().position(|u| u.correlation == correlation)?;
        Some(self.0.remove(i))
    }
}

fn copy(direction: CopyDirection, bytes: u64, start: u64, correlation: u32) -> CuptiRecord {
    CuptiRecord::Work {
        device: 1,
        activity: Activity {
            kind: ActivityKind::Memcpy {
                bytes,
                direction: Some(direction),
            },
            stream_id: 13,
            start_ns: start,
            end_ns: start + 10_000,
            correlation_id: correlation,
        },
    }
}

#[test]
fn a_hashed_upload_carries_its_digest_its_destination_and_the_time_hashing_took() {
    let buf = Shared::default();
    let mut c = collector(&buf);
    let hashed = |correlation, bytes| Upload {
        correlation,
        address: 0x7f00_4000_0000,
        bytes,
        digest: 0xABC0,
        hashed_ns: Interval::new(18_000_000, 18_004_000),
    };
    let mut calls = Hashed(vec![
        hashed(50, 4096),
        // The record says 8192 bytes: not this call's copy, so no digest is claimed.
        hashed(51, 4096),
    ]);
    let records = vec![
        copy(CopyDirection::HostToDevice, 4096, 19_000_000, 50),
        copy(CopyDirection::HostToDevice, 8192, 19_100_000, 51),
        copy(CopyDirection::HostToDevice, 4096, 19_200_000, 52),
        copy(CopyDirection::DeviceToHost, 4096, 19_300_000, 53),
    ];
    c.records(records, NOW_NS, &mut calls).unwrap();
    assert_eq!(c.counts().hashed_uploads, 1);
    assert_eq!(c.counts().hashing_ns, 4_000);
    c.finish(&[]).unwrap();
    let trace: Trace = read_trace(&buf.0.lock().unwrap()[..]).unwrap();
    let digests: Vec<Option<u64>> = trace
        .spans
        .iter()
        .map(|s| match s.kind {
            SpanKind::Memcpy { content_digest, .. } => content_digest,
            _ => None,
        })
        .collect();
    assert_eq!(digests, vec![Some(0xABC0), None, None, None]);
    let first = trace.spans[0].id;
    assert_eq!(
        trace.annotations,
        vec![
            Annotation::CopyTarget {
                span: first,
                address: 0x7f00_4000_0000
            },
            Annotation::Overhead {
                device: 1,
                from_ns: 18_000_000,
                to_ns: 18_004_000
            },
        ]
    );
}

#[test]
fn a_trace_cut_off_after_a_flush_is_readable_up_to_it() {
    let buf = Shared::default();
    let mut c = collector(&buf);
    let mut none = |_: u32| None;
    c.records(
        vec![kernel("k1", 20_000_000, 20_100_000, 1)],
        NOW_NS,
        &mut none,
    )
    .unwrap();
    c.flush().unwrap();
    // The process is killed here: the collector never finishes.
    let bytes = buf.0.lock().unwrap().clone();
    let recovered = read_trace_prefix(&bytes[..]).unwrap();
    assert!(
        recovered.stopped.is_some(),
        "no end marker: the reader says so"
    );
    assert_eq!(recovered.trace.spans.len(), 1);
    assert_eq!(recovered.trace.meta.command, vec!["python3", "infer.py"]);
    // A cut in the middle of a record keeps the records before it.
    let recovered = read_trace_prefix(&bytes[..bytes.len() - 3]).unwrap();
    assert_eq!(recovered.trace.spans.len(), 0);
    assert_eq!(recovered.trace.meta.command, vec!["python3", "infer.py"]);
}

#[test]
fn records_before_any_clock_point_are_counted_not_guessed() {
    let buf = Shared::default();
    let meta = RunMeta::default();
    let mut c = Collector::new(TraceWriter::new(buf.clone(), &meta).unwrap());
    let mut none = |_: u32| None;
    c.records(vec![kernel("k", 5, 10, 1)], NOW_NS, &mut none)
        .unwrap();
    assert_eq!(c.counts().kernels, 0);
    assert_eq!(c.counts().skipped, 1);
}

/// A plan's busy-time counter fed by the collector.
#[derive(Default)]
struct Busy(Vec<(u32, String, u64)>);

impl CallInfo for Busy {
    fn region(&mut self, _correlation: u32) -> Option<Arc<str>> {
        None
    }
    fn upload(&mut self, _correlation: u32) -> Option<Upload> {
        None
    }
    fn work(&mut self, device: u32, name: &str, _shape: Option<LaunchShape>, busy_ns: u64) {
        self.0.push((device, name.to_owned(), busy_ns));
    }
}

#[test]
fn a_replay_is_an_alone_span_of_the_launch_it_replayed_inside_a_profiler_episode() {
    use wattlens_inject::replay::{device::Burst, Replayed};
    use wattlens_instrument::trace::ReplayOutcome;
    let buf = Shared::default();
    let mut c = collector(&buf);
    let shape = LaunchShape {
        grid: [132, 1, 1],
        block: [256, 1, 1],
        shared_mem_bytes: 0,
    };
    let replayed = |correlation: u32, start_ns: u64| Replayed {
        device: 1,
        correlation,
        name: Arc::from("ampere_sgemm_128x64_nn"),
        shape: Some(shape),
        burst: Burst {
            start_ns,
            end_ns: start_ns + 400_000_000,
            launches: 2000,
            trial_ns: 200_000,
        },
        held_ns: Interval::new(start_ns - 5_000_000, start_ns + 405_000_000),
    };
    // Replayed inside the launch call, before its record comes; another replay's launch never
    // leaves one.
    c.replays(vec![replayed(42, 100_000_000), replayed(77, 600_000_000)])
        .unwrap();
    let mut busy = Busy::default();
    c.records(
        vec![kernel("ampere_sgemm_128x64_nn", 20_100_000, 20_400_000, 42)],
        NOW_NS,
        &mut busy,
    )
    .unwrap();
    assert_eq!(
        busy.0,
        vec![(1, "ampere_sgemm_128x64_nn".to_owned(), 300_000)]
    );
    let notes = vec![(
        (1, Arc::<str>::from("_Z6reducePf"), Some(shape)),
        12_000,
        ReplayOutcome::Skipped("launched inside a stream capture".into()),
    )];
    c.replay_notes(&notes).unwrap();
    assert_eq!(c.counts().replays, 2);
    assert_eq!(c.counts().replay_held_ns, 2 * 410_000_000);
    c.finish(&[]).unwrap();
    let t = read_trace(&buf.0.lock().unwrap()[..]).unwrap();
    let kernel_id = t
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Kernel)
        .unwrap()
        .id;
    let bursts: Vec<_> = t
        .spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Alone { .. }))
        .collect();
    assert_eq!(bursts.len(), 2);
    assert_eq!(
        bursts[0].kind,
        SpanKind::Alone {
            launches: 2000,
            of: kernel_id
        }
    );
    assert_eq!(
        bursts[1].kind,
        SpanKind::Alone {
            launches: 2000,
            of: 0
        },
        "no record"
    );
    assert_eq!(bursts[0].launch, Some(shape));
    assert_eq!(t.str(bursts[0].name), "ampere_sgemm_128x64_nn");
    assert_eq!(t.str(bursts[0].region), "wattlens:alone");
    assert!(!bursts[0].is_program_work());
    let episodes: Vec<_> = t
        .annotations
        .iter()
        .filter(|a| matches!(a, Annotation::ProfilerEpisode { .. }))
        .collect();
    assert_eq!(episodes.len(), 2);
    assert!(t.annotations.iter().any(|a| matches!(
        a,
        Annotation::ReplayNote { name, busy_ppm: 12_000, .. } if name == "reduce"
    )));
}

#[test]
fn a_replayed_copy_is_an_alone_span_of_the_copy_and_copies_count_in_the_plan() {
    use wattlens_inject::replay::{device::Burst, Replayed};
    let buf = Shared::default();
    let mut c = collector(&buf);
    c.replays(vec![Replayed {
        device: 1,
        correlation: 9,
        name: Arc::from(CopyDirection::DeviceToDevice.span_name()),
        shape: None,
        burst: Burst {
            start_ns: 50_000_000,
            end_ns: 450_000_000,
            launches: 80_000,
            trial_ns: 4_000,
        },
        held_ns: Interval::new(45_000_000, 455_000_000),
    }])
    .unwrap();
    let mut busy = Busy::default();
    c.records(
        vec![
            copy(CopyDirection::DeviceToDevice, 1 << 20, 20_100_000, 9),
            copy(CopyDirection::HostToDevice, 64, 20_200_000, 10),
        ],
        NOW_NS,
        &mut busy,
    )
    .unwrap();
    let names: Vec<&str> = busy.0.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["memcpy DtoD", "memcpy HtoD"],
        "both copies weigh in the plan"
    );
    c.finish(&[]).unwrap();
    let t = read_trace(&buf.0.lock().unwrap()[..]).unwrap();
    let copy_id = t
        .spans
        .iter()
        .find(|s| t.str(s.name) == "memcpy DtoD" && s.is_program_work())
        .unwrap()
        .id;
    let burst = t
        .spans
        .iter()
        .find(|s| matches!(s.kind, SpanKind::Alone { .. }))
        .unwrap();
    assert_eq!(
        burst.kind,
        SpanKind::Alone {
            launches: 80_000,
            of: copy_id
        }
    );
    assert_eq!(t.str(burst.name), "memcpy DtoD");
    assert_eq!(burst.launch, None, "a copy has no launch shape");
}
