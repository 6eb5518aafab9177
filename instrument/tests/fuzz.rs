//! Fuzzing, as a proptest harness that CI runs for a bounded number of cases (cargo-fuzz needs
//! a nightly toolchain the CI machine does not have). Cases that ever failed are kept in
//! `fuzz.proptest-regressions` beside this file and run first.
//!
//! - **Decoders past the checksum:** random bytes never get past the CRC, so a record of a
//!   real trace is mutated and its CRC fixed; whatever the reader accepts then goes through
//!   the whole analysis.
//! - **Analysis on hostile but valid traces:** extreme timestamps, sizes, counts, depths and
//!   streams through attribution, waste, merge and the Perfetto writer.
//!
//! The property is always the same: no panic, and an answer (an error is an answer).
//! `WATTLENS_FUZZ_CASES` sets the number of cases per target (CI's default below).

use std::sync::OnceLock;

use proptest::prelude::*;
use wattlens_instrument::format::{read_trace_prefix, HEADER_BYTES};
use wattlens_instrument::sim::{simulate, GpuModel, KernelSpec, TransferSpec, WorkItem, Workload};
use wattlens_instrument::waste::{detect, WasteConfig};
use wattlens_instrument::*;

use crate::common::raw_record;

/// Cases per target: enough to cover every record kind several times, within CI's minute.
fn cases() -> u32 {
    std::env::var("WATTLENS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A small real trace, encoded: the seed every decoder case mutates.
fn seed() -> &'static (Trace, Vec<u8>) {
    static SEED: OnceLock<(Trace, Vec<u8>)> = OnceLock::new();
    SEED.get_or_init(|| {
        let run = simulate(
            &small_workload(),
            &GpuModel::h200(),
            &SensorProfile::default(),
            7,
            1_800_000_000_000_000_000,
        );
        let mut t = run.trace;
        t.annotations.push(Annotation::ProfilerEpisode {
            device: 0,
            from_ns: t.meta.start_unix_ns,
            to_ns: t.meta.start_unix_ns + 1000,
        });
        let mut bytes = Vec::new();
        TraceWriter::write_trace(&mut bytes, &t).unwrap();
        (t, bytes)
    })
}

/// A decode loop of a few hundred launches, a copy and a sync per step, with idle before and
/// after: every record kind, in a trace small enough to analyse hundreds of times.
fn small_workload() -> Workload {
    let shape = LaunchShape {
        grid: [64, 1, 1],
        block: [256, 1, 1],
        shared_mem_bytes: 0,
    };
    let kernel = |name: &str, region: &str, duration_ns: u64, dynamic_mw: u32| {
        WorkItem::Kernel(KernelSpec {
            name: name.into(),
            op_class: OpClass::Matmul,
            stream: 0,
            duration_ns,
            dynamic_mw,
            launch: shape,
            region: region.into(),
            count: 1,
            gap_ns: 5_000,
        })
    };
    let mut items = Vec::new();
    for _ in 0..150 {
        items.push(WorkItem::Transfer(TransferSpec {
            name: "memcpy HtoD".into(),
            stream: 1,
            direction: CopyDirection::HostToDevice,
            bytes: 4096,
            duration_ns: 20_000,
            dynamic_mw: 30_000,
            region: "step/input".into(),
            count: 1,
        }));
        items.push(kernel("mm", "step/layer/mlp", 2_000_000, 200_000));
        items.push(kernel("ln", "step/layer/norm", 50_000, 40_000));
        items.push(WorkItem::Sync {
            host_ns: 100_000,
            lead_ns: 0,
        });
    }
    Workload {
        name: "fuzz seed".into(),
        lead_idle_ns: 2_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    }
}

/// The records of an encoded trace: (start, tag, payload range) after the header.
fn frames(bytes: &[u8]) -> Vec<(usize, u8, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = HEADER_BYTES as usize;
    while at < bytes.len() {
        let tag = bytes[at];
        let (mut len, mut shift, mut i) = (0usize, 0, at + 1);
        loop {
            let b = bytes[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push((at, tag, i..i + len));
        at = i + len + 4;
    }
    out
}

/// One edit of a payload.
#[derive(Debug, Clone)]
enum Edit {
    /// XOR a byte.
    Flip(prop::sample::Index, u8),
    /// Set 8 bytes to an extreme value (a varint or fixed field becoming huge, zero, max).
    Extreme(prop::sample::Index, u64),
    /// Cut the payload short.
    Cut(prop::sample::Index),
    /// Append bytes.
    Append(Vec<u8>),
    /// Repeat a slice of it (a count larger than what follows).
    Repeat(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let extreme = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(u32::MAX as u64),
        any::<u64>()
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<prop::sample::Index>(), extreme).prop_map(|(i, v)| Edit::Extreme(i, v)),
        any::<prop::sample::Index>().prop_map(Edit::Cut),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Edit::Append),
        (any::<prop::sample::Index>(), 1u8..8).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(payload: &mut Vec<u8>, e: &Edit) {
    if payload.is_empty() {
        payload.push(0);
    }
    match e {
        Edit::Flip(i, b) => {
            let k = i.index(payload.len());
            payload[k] ^= b;
        }
        Edit::Extreme(i, v) => {
            let k = i.index(payload.len());
            for (j, byte) in v.to_le_bytes().iter().enumerate() {
                if let Some(p) = payload.get_mut(k + j) {
                    *p = *byte;
                }
            }
        }
        Edit::Cut(i) => payload.truncate(i.index(payload.len())),
        Edit::Append(bytes) => payload.extend_from_slice(bytes),
        Edit::Repeat(i, n) => {
            let k = i.index(payload.len());
            let piece = payload[k..].to_vec();
            for _ in 0..*n {
                payload.extend_from_slice(&piece);
            }
        }
    }
}

/// Everything the analysis does with a trace; none of it may panic.
fn analyse(trace: &Trace) {
    let mut findings = Vec::new();
    for d in &trace.meta.devices {
        if let Ok(a) = attribute(trace, d.index) {
            findings.push(detect(trace, &a, &WasteConfig::default()));
        }
    }
    let _ = perfetto::export_with_findings(trace, &findings, std::io::sink());
    let (distinct, _) = merge::distinct(vec![trace.clone(), trace.clone()]);
    let _ = merge::merge(distinct);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/fuzz.proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// A record of a real trace, mutated and re-checksummed: the reader rejects it or
    /// accepts it, and what it accepts is analysed without a panic.
    #[test]
    fn decoders_past_the_checksum(record in any::<prop::sample::Index>(),
                                  edits in proptest::collection::vec(edit(), 1..4)) {
        let (_, bytes) = seed();
        let frames = frames(bytes);
        let (start, tag, payload) = frames[record.index(frames.len())].clone();
        let mut p = bytes[payload.clone()].to_vec();
        for e in &edits {
            apply(&mut p, e);
        }
        let mut out = bytes[..start].to_vec();
        raw_record(&mut out, tag, &p);
        out.extend_from_slice(&bytes[payload.end + 4..]);
        if let Ok(rec) = read_trace_prefix(&out[..]) {
            analyse(&rec.trace);
        }
    }

    /// Valid traces with extreme values: every analysis still answers.
    #[test]
    fn analysis_of_hostile_but_valid_traces(
        shift in prop_oneof![Just(0u64), Just(u64::MAX / 2), Just(u64::MAX - 10_000_000_000), any::<u64>()],
        grid in prop_oneof![Just(u32::MAX), Just(0u32), any::<u32>()],
        stream in prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
        depth in prop_oneof![Just(1usize), Just(64usize), Just(3000usize)],
        scale in prop_oneof![Just(0u64), Just(1u64), Just(1_000_000u64), Just(u64::MAX / 1_000_000)],
        mw in prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
    ) {
        let (base, _) = seed();
        let mut t = base.clone();
        let deep = t.strings.push(&vec!["r"; depth].join("/"));
        let shifted = |x: u64| x.saturating_add(shift);
        for (k, s) in t.spans.iter_mut().enumerate() {
            let len = s.end_ns - s.start_ns;
            s.start_ns = shifted(s.start_ns);
            s.end_ns = s.start_ns.saturating_add(len.saturating_mul(scale.max(1)));
            if k % 3 == 0 {
                s.stream = stream;
                s.region = deep;
                if let Some(l) = &mut s.launch {
                    l.grid = [grid, grid, grid];
                    l.block = [grid, 1, 1];
                }
            }
            if let Some(call) = s.host_call_ns {
                let (a, b) = (shifted(call.from_ns), shifted(call.to_ns));
                s.host_call_ns = Some(Interval::new(a, b.max(a)));
            }
        }
        for r in &mut t.power {
            *r = match *r {
                PowerReading::Sample { device, ts_ns, raw_ts_us, .. } => PowerReading::Sample {
                    device, ts_ns: shifted(ts_ns), raw_ts_us, power_mw: mw,
                },
                PowerReading::Energy { device, ts_ns, read_ns, energy_mj } => PowerReading::Energy {
                    device, ts_ns: shifted(ts_ns), read_ns: read_ns.saturating_mul(scale.min(u64::from(u32::MAX)) as u32),
                    energy_mj: energy_mj.saturating_mul(scale.max(1)),
                },
                other => other,
            };
        }
        for d in &mut t.meta.devices {
            d.power_limit_mw = mw;
            d.sm_count = grid;
        }
        // What the reader would accept of it: written and read back.
        let mut bytes = Vec::new();
        if TraceWriter::write_trace(&mut bytes, &t).is_ok() {
            if let Ok(rec) = read_trace_prefix(&bytes[..]) {
                analyse(&rec.trace);
            }
        }
        analyse(&t);
    }
}

/// The seed is one the whole analysis accepts: mutations start from a trace that reaches
/// attribution and waste detection, not one rejected at the door.
#[test]
fn the_fuzz_seed_is_attributed() {
    let (t, bytes) = seed();
    let a = attribute(t, 0).unwrap();
    assert!(a.signatures.len() >= 3, "{:?}", a.signatures);
    assert!(frames(bytes).len() > 1000);
    assert!(!detect(t, &a, &WasteConfig::default()).findings.is_empty() || a.regions.len() > 2);
}
