//! Merging per-process traces: one GPU's work split over two processes merges back into a
//! trace that attributes like the whole.

use wattlens_instrument::merge::{add_power_after, merge, MergeError};
use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
use wattlens_instrument::trace::{Annotation, AuditOp, AuditTensor, Trace};
use wattlens_instrument::{attribute, SensorProfile};

/// The demo workload (a compute stream and a copy stream) as one process, and as two: one per
/// stream, each with its own sampler's readings of the same GPU (the second sampler started
/// later).
fn split() -> (Trace, Trace, Trace) {
    let run = simulate(
        &demo_workload(20),
        &GpuModel::h200(),
        &SensorProfile::h200_2026_11_22(),
        3,
        1_700_000_000_000_000_000,
    );
    let whole = run.trace;
    let part = |stream: u64, from_ns: u64| {
        let mut t = whole.clone();
        t.spans.retain(|s| s.stream == stream);
        t.power.retain(|r| r.ts_ns() >= from_ns);
        let first = t.spans.first().map_or(0, |s| s.id);
        t.annotations = vec![
            Annotation::Buffer {
                id: 1,
                device: 0,
                bytes: 64,
            },
            // As `wattlens run` writes for an upload: it names the span by its id.
            Annotation::CopyTarget {
                span: first,
                address: 0x7f00_0000_0000 + stream,
            },
            // As `wattlens run --audit` adds: an operation of each process names its kernels.
            Annotation::AuditOp(Box::new(AuditOp {
                seq: 1,
                name: "aten::addmm".into(),
                module: String::new(),
                ordinal: 0,
                identity: 9,
                random: false,
                moves_data: false,
                spans: vec![first],
                inputs: vec![AuditTensor {
                    tensor: 1,
                    storage: 0x7f00,
                    digest: 5,
                    bytes: 64,
                    device: Some(0),
                }],
                outputs: Vec::new(),
                writes: Vec::new(),
                rows: None,
            })),
        ];
        t
    };
    let later = whole.meta.start_unix_ns + 2_000_000_000;
    let a = part(0, 0);
    let b = part(1, later);
    assert!(!a.spans.is_empty() && !b.spans.is_empty());
    (whole, a, b)
}

#[test]
fn two_processes_on_one_gpu_merge_into_one_attribution_like_the_whole() {
    let (whole, a, b) = split();
    let merged = merge(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(merged.meta.devices.len(), 1);
    assert_eq!(merged.spans.len(), a.spans.len() + b.spans.len());
    let streams: std::collections::BTreeSet<u64> = merged.spans.iter().map(|s| s.stream).collect();
    assert!(
        streams.contains(&0) && streams.contains(&(1 << 32 | 1)),
        "{streams:?}"
    );
    let ids: std::collections::BTreeSet<u64> = merged.spans.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), merged.spans.len());
    // The longer sampler's readings are kept whole; nothing is duplicated.
    assert_eq!(merged.power.len(), whole.power.len());
    let buffers: Vec<u64> = merged
        .annotations
        .iter()
        .filter_map(|a| match a {
            Annotation::Buffer { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(buffers, vec![1, 1 << 40 | 1]);
    // Each copy target still names its own span, under the span's merged id.
    for (part, stream) in [(&a, 0u64), (&b, 1)] {
        let original = &part.spans[0];
        let target = merged
            .annotations
            .iter()
            .find_map(|x| match *x {
                Annotation::CopyTarget { span, address }
                    if address == 0x7f00_0000_0000 + stream =>
                {
                    Some(span)
                }
                _ => None,
            })
            .unwrap();
        let span = merged.spans.iter().find(|s| s.id == target).unwrap();
        assert_eq!(
            (span.start_ns, span.end_ns, merged.str(span.name)),
            (original.start_ns, original.end_ns, part.str(original.name))
        );
    }
    // Each process's audited operation keeps its kernels; its ids stay apart from the other's.
    let ops: Vec<&AuditOp> = merged
        .annotations
        .iter()
        .filter_map(|a| match a {
            Annotation::AuditOp(op) => Some(op.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(ops.len(), 2);
    assert_ne!(ops[0].seq, ops[1].seq);
    assert_ne!(ops[0].inputs[0].tensor, ops[1].inputs[0].tensor);
    assert_ne!(ops[0].inputs[0].storage, ops[1].inputs[0].storage);
    for (op, part) in ops.iter().zip([&a, &b]) {
        let span = merged.spans.iter().find(|s| s.id == op.spans[0]).unwrap();
        assert_eq!(span.start_ns, part.spans[0].start_ns);
    }
    let (w, m) = (
        attribute(&whole, 0).unwrap(),
        attribute(&merged, 0).unwrap(),
    );
    assert_eq!(w.closure.counter_mj, m.closure.counter_mj);
    let rel = (m.closure.dynamic_mj - w.closure.dynamic_mj).abs() / w.closure.dynamic_mj;
    assert!(
        rel < 0.01,
        "dynamic {} vs {}",
        m.closure.dynamic_mj,
        w.closure.dynamic_mj
    );
}

#[test]
fn nothing_or_a_mix_of_simulated_and_real_traces_is_refused() {
    assert_eq!(merge(Vec::new()).unwrap_err(), MergeError::Empty);
    let (_, a, mut b) = split();
    b.meta.simulated = false;
    assert_eq!(merge(vec![a, b]).unwrap_err(), MergeError::MixedKinds(1));
}

#[test]
fn a_reader_after_the_process_gives_it_quiet_windows() {
    let (whole, _, _) = split();
    let work_to = whole.spans.iter().map(|s| s.end_ns).max().unwrap();
    // The process read power until its work ended: no quiet window after it, and the one
    // before it is the only baseline.
    let mut process = whole.clone();
    process.power.retain(|r| r.ts_ns() <= work_to);
    let before_only = attribute(&process, 0).unwrap();
    // Another reader saw the same GPU (by UUID) as its device 1, all along.
    let mut extra = Trace::new(whole.meta.clone());
    let mut other = whole.meta.devices[0].clone();
    other.uuid = "GPU-another".into();
    let mut same = whole.meta.devices[0].clone();
    same.index = 1;
    extra.meta.devices = vec![other, same];
    extra.power = whole.power.iter().map(|r| r.with_device(1)).collect();
    let own = process.power.len();
    let own_last_ns = process.power.iter().map(|r| r.ts_ns()).max();
    let added = add_power_after(&mut process, &extra);
    assert_eq!(
        added,
        whole.power.len() - own,
        "only what came after its own"
    );
    assert_eq!(
        process.power, whole.power,
        "its own readings, then the reader's: the whole series"
    );
    let (w, p) = (
        attribute(&whole, 0).unwrap(),
        attribute(&process, 0).unwrap(),
    );
    assert_eq!(w.closure.counter_mj, p.closure.counter_mj);
    assert!(
        p.closure.counter_mj > before_only.closure.counter_mj,
        "the windows after count"
    );
    assert_eq!(
        process.released_at_ns(0),
        own_last_ns,
        "where its own readings end is marked"
    );
    // A trace with no readings of its own takes them all, and has no release to mark.
    let mut bare = whole.clone();
    bare.power.clear();
    assert_eq!(add_power_after(&mut bare, &extra), whole.power.len());
    assert_eq!(bare.released_at_ns(0), None);
}

/// The process's readings run from 0.8 s before its first work (too short a stretch for the
/// idle power alone) to `hold_ns` after its last; a reader after it sees the GPU draw
/// `extra_mw` more once it is released (as H100s do for seconds).
fn held_then_released(whole: &Trace, extra_mw: u64, hold_ns: u64) -> Trace {
    use wattlens_instrument::trace::PowerReading;
    let work_from = whole.spans.iter().map(|s| s.start_ns).min().unwrap() - 800_000_000;
    let release_ns = whole.spans.iter().map(|s| s.end_ns).max().unwrap() + hold_ns;
    let mut process = whole.clone();
    process
        .power
        .retain(|r| (work_from..=release_ns).contains(&r.ts_ns()));
    let mut reader = Trace::new(whole.meta.clone());
    reader.power = whole
        .power
        .iter()
        .map(|&r| match r {
            PowerReading::Energy {
                device,
                ts_ns,
                read_ns,
                energy_mj,
            } => PowerReading::Energy {
                device,
                ts_ns,
                read_ns,
                // mW × ns = 1e-9 mJ
                energy_mj: energy_mj + extra_mw * ts_ns.saturating_sub(release_ns) / 1_000_000_000,
            },
            other => other,
        })
        .collect();
    add_power_after(&mut process, &reader);
    process
}

const SECOND: u64 = 1_000_000_000;

#[test]
fn idle_is_measured_while_the_program_held_the_gpu_not_once_it_had_exited() {
    use wattlens_instrument::attribution::IdleSource;
    let (whole, _, _) = split();
    let held = attribute(&held_then_released(&whole, 0, SECOND), 0).unwrap();
    let released = held_then_released(&whole, 4_000, SECOND);
    let a = attribute(&released, 0).unwrap();
    assert_eq!(a.idle_source, IdleSource::WhileHeld);
    assert!(a.idle_windows >= 3, "{} windows", a.idle_windows);
    assert_eq!(
        a.idle_power.mw, held.idle_power.mw,
        "what the GPU drew once released does not move the idle power"
    );
    // A trace that does not say when the process exited (format < 2.7) takes every quiet
    // window, and the released GPU's extra draw with them.
    let mut unmarked = released.clone();
    unmarked
        .annotations
        .retain(|x| !matches!(x, Annotation::ReleasedAfter { .. }));
    let u = attribute(&unmarked, 0).unwrap();
    assert_eq!(u.idle_source, IdleSource::Quiet);
    assert!(
        u.idle_power.mw > a.idle_power.mw + 1_000.0,
        "{} mW against {} mW",
        u.idle_power.mw,
        a.idle_power.mw
    );
}

/// Two ranks on two GPUs (one simulated run each, the second's GPU another UUID) merge into a
/// job of two GPUs: its energy is both counters' sum, and a request path both ranks carry
/// costs both GPUs' energy, its interval both intervals in quadrature.
#[test]
fn two_ranks_on_two_gpus_merge_into_a_job_with_requests_across_them() {
    use wattlens_instrument::report::analyze;
    let rank = |seed: u64, uuid: &str| {
        let mut t = simulate(
            &demo_workload(4),
            &GpuModel::h200(),
            &SensorProfile::h200_2026_11_22(),
            seed,
            1_700_000_000_000_000_000,
        )
        .trace;
        t.meta.devices[0].uuid = uuid.into();
        t
    };
    let job = merge(vec![rank(1, "GPU-rank0"), rank(2, "GPU-rank1")]).unwrap();
    assert_eq!(job.meta.devices.len(), 2);
    let report = analyze(&job).unwrap();
    let summary = report.job.as_ref().expect("a job of two GPUs");
    assert_eq!(summary.gpus, 2);
    let a: Vec<_> = report
        .devices
        .iter()
        .map(|d| d.attribution.as_ref().unwrap())
        .collect();
    let counters = a[0].closure.counter_mj + a[1].closure.counter_mj;
    assert!((summary.energy.mj - counters).abs() < 1e-6);
    let layer: Vec<_> = a
        .iter()
        .map(|x| {
            x.requests
                .ranges
                .iter()
                .find(|r| r.path == "decode/layer0")
                .unwrap()
        })
        .collect();
    let both = summary
        .requests
        .iter()
        .find(|r| r.path == "decode/layer0")
        .unwrap();
    assert_eq!((both.gpus, both.count), (2, layer[0].count));
    assert!((both.mean.mj - (layer[0].mean.mj + layer[1].mean.mj)).abs() < 1e-6);
    let quadrature = layer[0].mean.half_mj().hypot(layer[1].mean.half_mj());
    assert!((both.mean.half_mj() - quadrature).abs() < 1e-6 * quadrature.max(1.0));
    // One GPU: no job view, and its JSON does not name one.
    let single = analyze(&rank(1, "GPU-rank0")).unwrap();
    assert!(single.job.is_none());
    assert!(!serde_json::to_string(&single).unwrap().contains("\"job\""));
}

/// A process that exits right after its work leaves too few quiet windows while it held the
/// GPU: idle then comes from those after it too, and its interval allows for what a released
/// GPU draws more, so that it still holds the idle power of the GPU held.
#[test]
fn idle_measured_after_the_program_exited_allows_for_the_released_gpus_excess() {
    use wattlens_instrument::attribution::IdleSource;
    let (whole, _, _) = split();
    let held = attribute(&held_then_released(&whole, 0, SECOND), 0).unwrap();
    let truth_mw = held.idle_power.mw;
    let a = attribute(&held_then_released(&whole, 4_000, SECOND / 4), 0).unwrap();
    assert_eq!(a.idle_source, IdleSource::AfterRelease);
    let p = a.idle_power;
    assert!(
        p.low_mw <= truth_mw && truth_mw <= p.high_mw,
        "{truth_mw} mW held, against [{}, {}] mW",
        p.low_mw,
        p.high_mw
    );
    // The same windows, the trace not saying when the process exited: the released GPU's
    // excess moves the estimate further from the held idle.
    let mut unmarked = held_then_released(&whole, 4_000, SECOND / 4);
    unmarked
        .annotations
        .retain(|x| !matches!(x, Annotation::ReleasedAfter { .. }));
    let u = attribute(&unmarked, 0).unwrap().idle_power;
    assert!(
        (p.mw - truth_mw).abs() < (u.mw - truth_mw).abs(),
        "{} mW with the allowance, {} mW without, {truth_mw} mW held",
        p.mw,
        u.mw
    );
}
