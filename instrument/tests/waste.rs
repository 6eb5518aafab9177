//! Waste detection on simulated traces: a small program (upload, matmul, norm, attention, read
//! back, per step) run clean and with every kind of waste planted. Every planted finding must
//! be found with its joules within 5% of the simulator's truth, and nothing else; the clean
//! run must give no finding. Variants check that the detector stays quiet without proof.

use std::collections::HashMap;

use wattlens_instrument::sim::{
    simulate, GpuModel, KernelSpec, SimRun, TransferSpec, WorkItem, Workload,
};
use wattlens_instrument::trace::{
    AccessMode, Annotation, AuditOp, AuditRows, AuditTensor, BufferVersion, CopyDirection,
    KernelFacts, LaunchShape, OpClass, SpanKind,
};
use wattlens_instrument::waste::{detect, Finding, WasteConfig, WasteKind, WasteReport};
use wattlens_instrument::Interval;
use wattlens_instrument::{attribute, SensorProfile};

const IN: u64 = 1;
const OUT: u64 = 2;
const W: u64 = 3;
const H: u64 = 4;
const O: u64 = 5;
const TMP: u64 = 6;

#[derive(Clone)]
enum Kind {
    Kernel { grid: u32, args: u64 },
    Upload { digest: u64 },
    Readback,
}

/// One operation of the test program.
#[derive(Clone)]
struct Op {
    name: &'static str,
    kind: Kind,
    dur_ns: u64,
    dyn_mw: u32,
    reads: Vec<u64>,
    writes: Vec<u64>,
    /// Padding share (padded, total) declared for it.
    padding: Option<(u64, u64)>,
    /// Host synchronisation of this long (GPU idle) before it, ns.
    sync_before_ns: u64,
    /// How long before the device finished that synchronisation began, ns.
    sync_lead_ns: u64,
    /// Host work after that synchronisation, before it is issued (GPU idle), ns.
    host_work_before_ns: u64,
    /// Which planted waste it is.
    planted: Option<WasteKind>,
}

fn kernel(name: &'static str, dur_ns: u64, dyn_mw: u32, reads: &[u64], writes: &[u64]) -> Op {
    Op {
        name,
        kind: Kind::Kernel { grid: 264, args: 7 },
        dur_ns,
        dyn_mw,
        reads: reads.to_vec(),
        writes: writes.to_vec(),
        padding: None,
        sync_before_ns: 0,
        sync_lead_ns: 0,
        host_work_before_ns: 0,
        planted: None,
    }
}

fn upload(name: &'static str, digest: u64, dst: u64) -> Op {
    // Weights are large (64 MiB at ~22 GB/s); an input is small.
    let (dur_ns, dyn_mw) = if dst == W {
        (3_000_000, 80_000)
    } else {
        (400_000, 60_000)
    };
    Op {
        name,
        kind: Kind::Upload { digest },
        dur_ns,
        dyn_mw,
        reads: Vec::new(),
        writes: vec![dst],
        padding: None,
        sync_before_ns: 0,
        sync_lead_ns: 0,
        host_work_before_ns: 0,
        planted: None,
    }
}

fn readback(src: u64) -> Op {
    Op {
        name: "readback",
        kind: Kind::Readback,
        dur_ns: 100_000,
        dyn_mw: 40_000,
        reads: vec![src],
        writes: Vec::new(),
        padding: None,
        sync_before_ns: 0,
        sync_lead_ns: 0,
        host_work_before_ns: 0,
        planted: None,
    }
}

/// Which waste to plant, and how (variants that must not be flagged).
#[derive(Default, Clone, Copy)]
struct Plant {
    all: bool,
    /// The dead matmul's overwrite is a different kernel (coverage unprovable).
    overwrite_by_other: bool,
    /// Uploads hashed from samples only.
    sampled_digests: bool,
}

impl Plant {
    /// Every kind of waste, each as the detector must find it.
    fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }
}

fn program(plant: Plant, steps: u64) -> Vec<Op> {
    let even = |d: u64| if plant.sampled_digests { d | 1 } else { d & !1 };
    let mut ops = vec![upload("upload_weights", even(0xABC0), W)];
    for step in 0..steps {
        ops.push(upload("upload_input", even(0x1000 + 2 * step), IN));
        // Each waste is planted in some steps only, in patterns of different periods, as in
        // a real program (and so the energies of the signatures can be told apart).
        if plant.all && step % 3 != 1 {
            // Same kernel and scalars as the real matmul below, on a different input.
            let mut dead = kernel("matmul", 1_000_000, 300_000, &[H, W], &[OUT]);
            if plant.overwrite_by_other {
                dead.name = "matmul_other";
            } else {
                dead.planted = Some(WasteKind::DeadWrite);
            }
            ops.push(dead);
        }
        if plant.all && step % 5 < 3 {
            let mut again = upload("upload_weights", even(0xABC0), W);
            again.planted = (!plant.sampled_digests).then_some(WasteKind::RedundantTransfer);
            ops.push(again);
        }
        ops.push(kernel("matmul", 1_000_000, 300_000, &[IN, W], &[OUT]));
        ops.push(kernel("norm", 300_000, 200_000, &[OUT], &[H]));
        // Every other step runs the norm again; every sixth, twice again (a chain: each
        // repeat's earlier output is the previous repeat's).
        let repeats = match step % 6 {
            0 => 2,
            2 | 4 => 1,
            _ => 0,
        };
        for _ in 0..if plant.all { repeats } else { 0 } {
            let mut again = kernel("norm", 300_000, 200_000, &[OUT], &[H]);
            again.planted = Some(WasteKind::Recomputation);
            ops.push(again);
        }
        let mut attn = kernel("attention", 1_000_000, 250_000, &[H], &[O]);
        if plant.all && step % 4 != 2 {
            attn.padding = Some((3, 8));
            attn.planted = Some(WasteKind::PaddingCompute);
        }
        ops.push(attn);
        let mut back = readback(O);
        if plant.all && step % 4 == 3 {
            back.sync_before_ns = 2_000_000;
            back.planted = Some(WasteKind::IdleGap);
        }
        ops.push(back);
        if plant.all && step % 5 == 0 {
            let mut small = kernel("small", 2_000_000, 150_000, &[IN], &[TMP]);
            if let Kind::Kernel { grid, .. } = &mut small.kind {
                *grid = 16;
            }
            small.planted = Some(WasteKind::UnderfilledLaunch);
            ops.push(small);
            ops.push(readback(TMP));
        }
    }
    ops
}

/// Run `ops` on the simulated GPU and dress the trace with buffers, versions, digests,
/// facts and padding as the runtime would record them.
fn run(ops: &[Op], seed: u64) -> SimRun {
    run_with(ops, seed, None)
}

/// [`run`], with each kernel signature's first launch replayed alone for `alone_ns` (as
/// `ProfilerConfig::measure_alone_ns` does) where given.
fn run_with(ops: &[Op], seed: u64, alone_ns: Option<u64>) -> SimRun {
    // A host well ahead of the device: each call takes 5 µs, and work can start 4 µs after.
    run_hosted(ops, seed, alone_ns, (5_000, 4_000))
}

/// [`run_with`], with each launch or copy call taking the host `issue_ns` and its work able
/// to start `latency_ns` after the call began.
fn run_hosted(
    ops: &[Op],
    seed: u64,
    alone_ns: Option<u64>,
    (issue_ns, latency_ns): (u64, u64),
) -> SimRun {
    let mut items = vec![WorkItem::HostCost {
        issue_ns,
        latency_ns,
    }];
    for op in ops {
        if op.sync_before_ns > 0 || op.sync_lead_ns > 0 {
            items.push(WorkItem::Sync {
                host_ns: op.sync_before_ns,
                lead_ns: op.sync_lead_ns,
            });
        }
        if op.host_work_before_ns > 0 {
            items.push(WorkItem::Gap {
                stream: 0,
                duration_ns: op.host_work_before_ns,
            });
        }
        items.push(match op.kind {
            Kind::Kernel { grid, .. } => WorkItem::Kernel(KernelSpec {
                name: op.name.into(),
                op_class: OpClass::Matmul,
                stream: 0,
                duration_ns: op.dur_ns,
                dynamic_mw: op.dyn_mw,
                launch: LaunchShape {
                    grid: [grid, 1, 1],
                    block: [256, 1, 1],
                    shared_mem_bytes: 0,
                },
                region: "step/layer0".into(),
                count: 1,
                gap_ns: 2_000,
            }),
            Kind::Upload { .. } | Kind::Readback => WorkItem::Transfer(TransferSpec {
                name: op.name.into(),
                stream: 0,
                direction: if matches!(op.kind, Kind::Readback) {
                    CopyDirection::DeviceToHost
                } else {
                    CopyDirection::HostToDevice
                },
                bytes: 1 << 22,
                duration_ns: op.dur_ns,
                dynamic_mw: op.dyn_mw,
                region: "step".into(),
                count: 1,
            }),
        });
    }
    let workload = Workload {
        name: "waste test".into(),
        lead_idle_ns: 2_000_000_000,
        tail_idle_ns: 2_000_000_000,
        items,
    };
    let workload = match alone_ns {
        Some(ns) => workload.with_alone_bursts(ns),
        None => workload,
    };
    let mut run = simulate(
        &workload,
        &GpuModel::h200(),
        &SensorProfile::h200_2026_11_22(),
        seed,
        1_700_000_000_000_000_000,
    );
    let mut version = std::collections::HashMap::<u64, u32>::new();
    let work: Vec<usize> = (0..run.trace.spans.len())
        .filter(|&i| run.trace.spans[i].is_program_work())
        .collect();
    assert_eq!(work.len(), ops.len());
    for (&i, op) in work.iter().zip(ops) {
        let s = &mut run.trace.spans[i];
        s.reads = op
            .reads
            .iter()
            .map(|&b| BufferVersion {
                buffer: b,
                version: *version.get(&b).unwrap_or(&0),
            })
            .collect();
        s.writes = op
            .writes
            .iter()
            .map(|&b| {
                let v = version.entry(b).or_insert(0);
                *v += 1;
                BufferVersion {
                    buffer: b,
                    version: *v,
                }
            })
            .collect();
        match op.kind {
            Kind::Kernel { args, .. } => s.args_digest = args,
            Kind::Upload { digest } => {
                if let SpanKind::Memcpy { content_digest, .. } = &mut s.kind {
                    *content_digest = Some(digest);
                }
            }
            Kind::Readback => {}
        }
        if let Some((padded, total)) = op.padding {
            run.trace.annotations.push(Annotation::Padding {
                span: s.id,
                pass: 1,
                padded,
                total,
            });
        }
    }
    for b in [IN, OUT, W, H, O, TMP] {
        run.trace.annotations.push(Annotation::Buffer {
            id: b,
            device: 0,
            bytes: 1 << 22,
        });
    }
    run.trace.kernel_facts = ["matmul", "matmul_other", "norm", "attention", "small"]
        .iter()
        .map(|&name| KernelFacts {
            op_class: OpClass::Matmul,
            arg_access: vec![AccessMode::Read, AccessMode::Read, AccessMode::Write],
            ..KernelFacts::unknown(name, 3)
        })
        .collect();
    run
}

fn findings(run: &SimRun) -> WasteReport {
    let a = attribute(&run.trace, 0).unwrap();
    detect(&run.trace, &a, &WasteConfig::default())
}

/// Assert that `report` has no finding of any of `kinds`.
fn assert_no_finding_of(report: &WasteReport, kinds: &[WasteKind]) {
    assert!(
        report.findings.iter().all(|f| !kinds.contains(&f.kind)),
        "{:#?}",
        report.findings
    );
}

/// True energy of the planted waste of `kind`, mJ.
fn truth_mj(run: &SimRun, ops: &[Op], kind: WasteKind) -> f64 {
    let idle = f64::from(run.truth.idle_mw);
    let work: Vec<usize> = (0..run.trace.spans.len())
        .filter(|&i| run.trace.spans[i].is_program_work())
        .collect();
    let mut total = 0.0;
    for (&i, op) in work.iter().zip(ops) {
        if op.planted != Some(kind) {
            continue;
        }
        let s = &run.trace.spans[i];
        let whole = run.truth.span_above_idle_mj[i] + idle * s.duration_ns() as f64 * 1e-9;
        total += match kind {
            WasteKind::IdleGap => idle * op.sync_before_ns as f64 * 1e-9,
            WasteKind::UnderfilledLaunch => {
                idle * s.duration_ns() as f64 * 1e-9 * (1.0 - 16.0 / 132.0)
            }
            WasteKind::PaddingCompute => whole * 3.0 / 8.0,
            _ => whole,
        };
    }
    total
}

#[test]
fn every_planted_waste_is_found_within_5_percent_and_nothing_else() {
    let ops = program(Plant::all(), 40);
    for seed in [1, 2] {
        let run = run(&ops, seed);
        let report = findings(&run);
        for f in &report.findings {
            println!(
                "{:<20} {:<40} {:>4}× {:>10.1} mJ [{:.1}, {:.1}] time {} saved {:?}",
                f.kind.label(),
                f.what,
                f.occurrences,
                f.energy.mj,
                f.energy.low_mj,
                f.energy.high_mj,
                f.time_ns,
                f.run_saved_ns
            );
        }
        let kinds = [
            WasteKind::DeadWrite,
            WasteKind::Recomputation,
            WasteKind::RedundantTransfer,
            WasteKind::IdleGap,
            WasteKind::UnderfilledLaunch,
            WasteKind::PaddingCompute,
        ];
        for kind in kinds {
            let found: Vec<_> = report.findings.iter().filter(|f| f.kind == kind).collect();
            assert_eq!(found.len(), 1, "{kind:?}: {found:#?}");
            let f = found[0];
            let truth = truth_mj(&run, &ops, kind);
            let planted = ops.iter().filter(|o| o.planted == Some(kind)).count() as u64;
            assert_eq!(f.occurrences, planted, "{kind:?}");
            let err = (f.energy.mj - truth).abs() / truth;
            println!(
                "seed {seed} {kind:?}: {:.1} mJ vs truth {truth:.1} mJ ({:.2}%)",
                f.energy.mj,
                err * 100.0
            );
            assert!(
                err < 0.05,
                "{kind:?}: {} mJ vs truth {truth} mJ",
                f.energy.mj
            );
            assert!(!f.spans.is_empty() && !f.fix.is_empty() && !f.proof.is_empty());
        }
        assert_eq!(report.findings.len(), kinds.len());
        let dead = report
            .findings
            .iter()
            .find(|f| f.kind == WasteKind::DeadWrite)
            .unwrap();
        assert!(dead.buffers.iter().all(|b| b.buffer == OUT));
        assert_eq!(dead.region, "step/layer0");
    }
}

#[test]
fn a_clean_run_has_no_findings() {
    let ops = program(Plant::default(), 40);
    let run = run(&ops, 3);
    let report = findings(&run);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(report
        .unchecked
        .iter()
        .any(|u| u.contains("no padding mask was declared")));
}

#[test]
fn without_proof_nothing_is_flagged_and_the_report_says_what_it_could_not_check() {
    let ops = program(
        Plant {
            all: true,
            overwrite_by_other: true,
            sampled_digests: true,
        },
        20,
    );
    let run = run(&ops, 4);
    let report = findings(&run);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.kind != WasteKind::DeadWrite && f.kind != WasteKind::RedundantTransfer),
        "{:#?}",
        report.findings
    );
    let said = report.unchecked.join("\n");
    assert!(said.contains("not shown to cover them"), "{said}");
    assert!(said.contains("sampled digest only"), "{said}");
}

#[test]
fn unknown_access_modes_block_dead_write_and_recomputation_findings() {
    let ops = program(Plant::all(), 20);
    let mut run = run(&ops, 5);
    for s in run
        .trace
        .spans
        .iter_mut()
        .filter(|s| s.kind == SpanKind::Kernel)
    {
        s.unknown_access = s.writes.iter().map(|w| w.buffer).collect();
    }
    let report = findings(&run);
    assert_no_finding_of(&report, &[WasteKind::DeadWrite, WasteKind::Recomputation]);
    assert!(report
        .unchecked
        .iter()
        .any(|u| u.contains("unknown access modes")));
}

/// Make `run` look like a trace of an unmodified program (`wattlens run`): no buffers, no
/// kernel facts, and each upload naming the device address it wrote.
fn as_unmodified_program(run: &mut SimRun) {
    let address = |buffer: u64| 0x7f00_0000_0000 + (buffer << 28);
    let mut targets = Vec::new();
    for s in &mut run.trace.spans {
        if let (SpanKind::Memcpy { direction, .. }, Some(w)) = (s.kind, s.writes.first()) {
            if direction == CopyDirection::HostToDevice {
                targets.push(Annotation::CopyTarget {
                    span: s.id,
                    address: address(w.buffer),
                });
            }
        }
        s.reads.clear();
        s.writes.clear();
        s.unknown_access.clear();
    }
    run.trace.kernel_facts.clear();
    run.trace
        .annotations
        .retain(|a| !matches!(a, Annotation::Buffer { .. } | Annotation::Freed { .. }));
    run.trace.annotations.extend(targets);
}

#[test]
fn an_unmodified_programs_uploads_are_proven_redundant_only_with_no_work_in_between() {
    // The weights are uploaded twice back to back (the second proven redundant), then again
    // before every step's kernels (likely waste: any kernel may have written there).
    let steps = 12;
    let mut ops = vec![upload("upload_weights", 0xABC0, W)];
    let mut again = upload("upload_weights", 0xABC0, W);
    again.planted = Some(WasteKind::RedundantTransfer);
    ops.push(again);
    for step in 0..steps {
        if step > 0 {
            ops.push(upload("upload_weights", 0xABC0, W));
        }
        // The input's content equals the weights' in one step: another place, no repeat.
        let input = if step == 5 { 0xABC0 } else { 0x1000 + 2 * step };
        ops.push(upload("upload_input", input, IN));
        ops.push(kernel("matmul", 1_000_000, 300_000, &[IN, W], &[OUT]));
        ops.push(kernel("norm", 300_000, 200_000, &[OUT], &[H]));
        ops.push(readback(H));
    }
    let mut run = run(&ops, 11);
    as_unmodified_program(&mut run);
    let report = findings(&run);
    let redundant: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::RedundantTransfer)
        .collect();
    assert_eq!(redundant.len(), 1, "{:#?}", report.findings);
    assert_eq!(redundant[0].occurrences, 1);
    assert!(redundant[0]
        .proof
        .contains("no work ran on the device since"));
    let truth = truth_mj(&run, &ops, WasteKind::RedundantTransfer);
    let err = (redundant[0].energy.mj - truth).abs() / truth;
    assert!(
        err < 0.05,
        "{} mJ vs truth {truth} mJ",
        redundant[0].energy.mj
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| !matches!(f.kind, WasteKind::DeadWrite | WasteKind::Recomputation)),
        "nothing is known of the kernels' buffers: {:#?}",
        report.findings
    );
    let said = report.unchecked.join("\n");
    let repeats = format!("{} host-to-device copies (", steps - 1);
    assert!(said.contains(&repeats), "{said}");
    assert!(said.contains("not proven redundant"), "{said}");
    // With every upload hashed from samples, the back-to-back copy is likely, not proven.
    for s in &mut run.trace.spans {
        if let SpanKind::Memcpy {
            content_digest: Some(d),
            ..
        } = &mut s.kind
        {
            *d |= 1;
        }
    }
    let report = findings(&run);
    assert_no_finding_of(&report, &[WasteKind::RedundantTransfer]);
    let said = report.unchecked.join("\n");
    assert!(
        said.contains(
            "1 host-to-device copies match content the device held by sampled digest only"
        ),
        "{said}"
    );
}

#[test]
fn idle_time_the_profiler_caused_is_not_charged_to_the_program() {
    let ops = program(Plant::all(), 20);
    let mut run = run(&ops, 6);
    let before = findings(&run);
    let idle = |r: &WasteReport| {
        r.findings
            .iter()
            .find(|f| f.kind == WasteKind::IdleGap)
            .map_or(0, |f| f.time_ns)
    };
    // The profiler hashed content for the second half of every planted 2 ms gap, while the
    // host waited in the synchronisation.
    let gaps: Vec<Interval> = before
        .findings
        .iter()
        .find(|f| f.kind == WasteKind::IdleGap)
        .unwrap()
        .idle_intervals
        .clone();
    for &Interval { from_ns, to_ns } in &gaps {
        run.trace.annotations.push(Annotation::Overhead {
            device: 0,
            from_ns: to_ns - (to_ns - from_ns) / 2,
            to_ns,
        });
    }
    let after = findings(&run);
    let halved: u64 = gaps.iter().map(|g| g.len_ns() / 2).sum();
    assert_eq!(after.profiler_idle_ns, halved);
    assert!(idle(&after).abs_diff(idle(&before) - halved) <= gaps.len() as u64);
    assert!(after
        .unchecked
        .iter()
        .any(|u| u.contains("own content hashing")));
}

#[test]
fn a_synchronisation_is_charged_only_the_idle_it_caused() {
    // A launch-bound host: after every other read-back it waits 300 µs in a synchronisation,
    // then works 1.5 ms before issuing more. Without the wait it would have issued 300 µs
    // sooner; its work on the data it read back would still leave the device idle.
    let (wait_ns, work_ns) = (300_000, 1_500_000);
    let mut ops = program(Plant::default(), 20);
    let mut synced = 0u64;
    for (i, op) in ops.iter_mut().enumerate() {
        // Every other step's input upload after the first step's (which follows the weights'
        // upload, not a read-back).
        if op.name == "upload_input" && i % 2 == 1 && i > 1 {
            op.sync_before_ns = wait_ns;
            op.host_work_before_ns = work_ns;
            synced += 1;
        }
    }
    assert!(synced >= 5);
    let run = run(&ops, 8);
    let report = findings(&run);
    let idle_mw = f64::from(run.truth.idle_mw);
    let by_what = |what: &str| {
        report
            .findings
            .iter()
            .find(|f| f.kind == WasteKind::IdleGap && f.what.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} finding: {:#?}", report.findings))
    };
    for (what, ns) in [
        ("idle after a host synchronisation", wait_ns),
        ("idle while the host used data it read back", work_ns),
    ] {
        let f = by_what(what);
        let truth = idle_mw * (synced * ns) as f64 * 1e-9;
        let err = (f.energy.mj - truth).abs() / truth;
        println!("{what}: {:.1} mJ vs truth {truth:.1} mJ", f.energy.mj);
        assert_eq!(f.occurrences, synced, "{what}");
        assert!(err < 0.05, "{what}: {} mJ vs truth {truth} mJ", f.energy.mj);
    }
    let sync = by_what("idle after a host synchronisation");
    assert!(sync.proof.contains("sooner"), "{}", sync.proof);
}

/// The one idle-gap finding of `report` (the test fails if there is not exactly one).
fn the_idle_finding(report: &WasteReport) -> &Finding {
    let idle: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::IdleGap)
        .collect();
    assert_eq!(idle.len(), 1, "{idle:#?}");
    idle[0]
}

#[test]
fn waiting_for_a_read_back_to_end_is_not_charged_to_the_synchronisation() {
    // `tensor.item()`: an asynchronous copy to the host, then a synchronize that began 90 µs
    // before the 100 µs copy ended and returned as it ended; then 1 ms of work on the data.
    // The wait was needed, so the whole gap is the host's work on read-back data.
    let work_ns = 1_000_000;
    let mut ops = program(Plant::default(), 20);
    let mut synced = 0u64;
    for (i, op) in ops.iter_mut().enumerate() {
        if op.name == "upload_input" && i % 2 == 1 && i > 1 {
            op.sync_lead_ns = 90_000;
            op.host_work_before_ns = work_ns;
            synced += 1;
        }
    }
    let run = run(&ops, 10);
    let report = findings(&run);
    let idle = the_idle_finding(&report);
    assert_eq!(idle.what, "idle while the host used data it read back");
    assert_eq!(idle.occurrences, synced);
    let truth = f64::from(run.truth.idle_mw) * (synced * work_ns) as f64 * 1e-9;
    let err = (idle.energy.mj - truth).abs() / truth;
    assert!(err < 0.05, "{} mJ vs truth {truth} mJ", idle.energy.mj);
}

#[test]
fn a_host_ahead_of_the_device_would_have_kept_it_busy_without_its_synchronisations() {
    // Per step a long kernel (500 µs) and a short one (5 µs), each followed by a
    // synchronisation and 30 µs of host work. The host needs 2 × 30 µs a step against the
    // device's 505 µs, so without the waits its launches would queue up and the device would
    // run back to back: every gap would shrink to the queued launch gap (the simulator's
    // 2 µs). The wait after the short kernel alone (it began 3 µs before the kernel ended) is
    // shorter than its gap; the host is ahead by what it waited for the long one.
    let (steps, host_ns, launch_gap_ns) = (60u64, 30_000u64, 2_000u64);
    let kernel = |name: &str, duration_ns: u64| {
        WorkItem::Kernel(KernelSpec {
            name: name.into(),
            op_class: OpClass::Matmul,
            stream: 0,
            duration_ns,
            dynamic_mw: 250_000,
            launch: LaunchShape {
                grid: [264, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            region: "step".into(),
            count: 1,
            gap_ns: launch_gap_ns,
        })
    };
    let mut items = Vec::new();
    for step in 0..steps {
        // Steps differ in length so that the two signatures' energies can be told apart.
        for (name, ns, lead_ns) in [
            ("long", 500_000 + 1_000 * (step % 7), 480_000),
            ("short", 5_000, 3_000),
        ] {
            items.push(kernel(name, ns));
            items.push(WorkItem::Sync {
                host_ns: 8_000,
                lead_ns,
            });
            items.push(WorkItem::Gap {
                stream: 0,
                duration_ns: host_ns,
            });
        }
    }
    let workload = Workload {
        name: "host ahead".into(),
        lead_idle_ns: 2_000_000_000,
        tail_idle_ns: 2_000_000_000,
        items,
    };
    let run = simulate(
        &workload,
        &GpuModel::h200(),
        &SensorProfile::h200_2026_11_22(),
        9,
        1_700_000_000_000_000_000,
    );
    let a = attribute(&run.trace, 0).unwrap();
    let config = WasteConfig {
        queued_gap_ns: launch_gap_ns,
        ..WasteConfig::default()
    };
    let report = detect(&run.trace, &a, &config);
    let idle = the_idle_finding(&report);
    assert_eq!(idle.what, "idle after a host synchronisation");
    // Every gap but the last (after which nothing runs) is launch gap + wait + host work.
    let gaps = 2 * steps - 1;
    let truth_ns = gaps * (8_000 + host_ns);
    let truth_mj = f64::from(run.truth.idle_mw) * truth_ns as f64 * 1e-9;
    let err = (idle.energy.mj - truth_mj).abs() / truth_mj;
    println!(
        "{} µs vs truth {} µs; {:.1} mJ vs {truth_mj:.1} mJ",
        idle.time_ns / 1000,
        truth_ns / 1000,
        idle.energy.mj
    );
    assert_eq!(idle.occurrences, gaps);
    assert!(err < 0.05, "{} mJ vs truth {truth_mj} mJ", idle.energy.mj);
}

/// Steps of [`prefix_run`]: enough counter windows (about a second of work) for the sensors to
/// tell its kernels apart, as the growing rows change their mix from window to window.
const PREFIX_STEPS: u64 = 120;

/// Steps of a causal decoder without a cache: step s runs one row of s + 1 tokens, the first s
/// of which step s − 1 already ran. Each kernel takes a fixed time plus a time per row, and
/// draws dynamic power only for its rows' work (in its fixed time the SMs wait: a launch's ramp,
/// a last wave's idle SMs), so its average power grows with its rows. The true waste of step s
/// is its s recomputed rows' share of the launch's dynamic energy, plus idle power over their
/// time. With `two_shapes`, a second "matmul" (another weight: three times the fixed time, 2.5
/// times the time per row) follows the norm, as one matmul kernel serves every weight of a real
/// model.
fn prefix_run(causal: bool, fixed_ns: u64, two_shapes: bool) -> (SimRun, f64) {
    let steps = PREFIX_STEPS;
    let mut ops = Vec::new();
    // (fixed ns, ns per row) of each kernel of a step, in launch order.
    let mut costs = vec![(fixed_ns, 100_000), (fixed_ns, 30_000)];
    if two_shapes {
        costs.push((3 * fixed_ns, 250_000));
    }
    for s in 0..steps {
        // Without a cache, the work of a step grows with the sequence.
        ops.push(upload("upload_input", 0x2000, IN));
        let dur = |k: usize| costs[k].0 + costs[k].1 * (s + 1);
        // The power the rows' work draws, averaged over the whole launch.
        let mw = |k: usize, busy_mw: u64| {
            u32::try_from(busy_mw * costs[k].1 * (s + 1) / dur(k)).unwrap_or(u32::MAX)
        };
        ops.push(kernel("matmul", dur(0), mw(0, 300_000), &[IN, W], &[OUT]));
        ops.push(kernel("norm", dur(1), mw(1, 200_000), &[OUT], &[H]));
        if two_shapes {
            ops.push(kernel("matmul", dur(2), mw(2, 300_000), &[H, O], &[TMP]));
            ops.push(readback(TMP));
        } else {
            ops.push(readback(H));
        }
    }
    let mut run = run(&ops, 7);
    let work: Vec<usize> = (0..run.trace.spans.len())
        .filter(|&i| run.trace.spans[i].is_device_work())
        .collect();
    let idle = f64::from(run.truth.idle_mw);
    let mut truth = 0.0;
    for s in 0..steps {
        let len = s + 1;
        let pass = u32::try_from(len).unwrap();
        run.trace.annotations.push(Annotation::Pass {
            pass,
            padded_len: len,
            causal,
            rows: vec![(0..u32::try_from(len).unwrap()).collect()],
        });
        let stride = costs.len() as u64 + 2;
        for (k, &(fixed_ns, _)) in (1..).zip(&costs) {
            let i = work[(s * stride + k) as usize];
            let span = &run.trace.spans[i];
            run.trace.annotations.push(Annotation::Padding {
                span: span.id,
                pass,
                padded: 0,
                total: len,
            });
            let per_row_ns = (span.duration_ns() - fixed_ns) as f64 / len as f64;
            truth += run.truth.span_above_idle_mj[i] * s as f64 / len as f64
                + idle * per_row_ns * s as f64 * 1e-9;
        }
    }
    (run, truth)
}

#[test]
fn a_causal_pass_over_an_earlier_passs_tokens_is_priced_as_recomputation() {
    // Work in proportion to the rows, and work with a fixed cost per launch that dropping the
    // recomputed rows would not save (priced at the margin fitted over the passes' sizes).
    for fixed_ns in [0, 400_000] {
        check_prefix(fixed_ns, false);
    }
    // One kernel name for two shapes: each is fitted on its own launches.
    check_prefix(400_000, true);
    // A model that is not causal may change earlier positions: nothing to prove.
    let (run, _) = prefix_run(false, 0, false);
    assert!(findings(&run)
        .findings
        .iter()
        .all(|f| f.kind != WasteKind::Recomputation));
}

#[test]
fn recomputed_rows_are_priced_from_launch_times_not_from_swinging_launch_estimates() {
    // On a real GPU, kernels launched in lockstep cannot be told apart by the sensors, and
    // their per-launch energies swing from run to run. Here every other step's launches are
    // estimated at 0.3× and 1.7× their energy: the share of a launch's time the rows save
    // comes from launch times, and its dynamic energy is shared out by rows, so the swings
    // cancel.
    let (run, truth) = prefix_run(true, 400_000, false);
    let mut a = attribute(&run.trace, 0).unwrap();
    let kernels: Vec<u64> = run
        .trace
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Kernel)
        .map(|s| s.id)
        .collect();
    for e in &mut a.spans {
        if let Some(k) = kernels.iter().position(|&id| id == e.span) {
            // Two kernels a step: steps alternate.
            let f = if (k / 2) % 2 == 0 { 0.3 } else { 1.7 };
            e.dynamic.mj *= f;
            e.dynamic.low_mj *= f;
            e.dynamic.high_mj *= f;
        }
    }
    let report = detect(&run.trace, &a, &WasteConfig::default());
    assert_recomputation_within_5pct(&report, truth, "swinging estimates");
}

#[test]
fn recomputed_rows_in_a_region_of_passes_are_priced_at_the_regions_rate() {
    // Kernels launched in lockstep: the sensors resolve the region, and split its energy
    // between its launches differently each run. Here each step's matmul gives half its
    // dynamic estimate to the read-back after it (outside the passes, as an lm_head is): the
    // region's total stands, and the recomputed rows are priced from it.
    let (mut run, truth) = prefix_run(true, 400_000, false);
    into_decode_region(&mut run);
    let mut a = attribute(&run.trace, 0).unwrap();
    let kinds: HashMap<u64, (bool, String)> = run
        .trace
        .spans
        .iter()
        .map(|s| {
            let name = run.trace.str(s.name).to_owned();
            (s.id, (s.kind == SpanKind::Kernel, name))
        })
        .collect();
    let mut moved = 0.0;
    for e in &mut a.spans {
        match kinds.get(&e.span) {
            Some((true, name)) if name == "matmul" => {
                moved += e.dynamic.mj / 2.0;
                e.dynamic.mj /= 2.0;
            }
            Some((false, _)) if moved > 0.0 => {
                e.dynamic.mj += moved;
                moved = 0.0;
            }
            _ => {}
        }
    }
    let report = detect(&run.trace, &a, &WasteConfig::default());
    assert_recomputation_within_5pct(&report, truth, "energy moved within the region");
}

#[test]
fn recomputed_rows_in_library_calls_are_priced_by_the_calls_time() {
    // A library (cuBLAS) picks its kernel by shape: here each step's matmul is a library call
    // whose kernel name and grid change with its rows (two tile shapes, a split that comes and
    // goes), so no one kernel's launches explain its time. The call's time, fitted against its
    // rows, does.
    let (mut run, truth) = prefix_run(true, 400_000, false);
    into_decode_region(&mut run);
    let (small, _) = run.trace.strings.intern("sgemm_64x64 (in cublas_sgemm)");
    let (large, _) = run.trace.strings.intern("sgemm_128x64 (in cublas_sgemm)");
    let mut step = 0u32;
    for s in run.trace.spans.iter_mut().filter(|s| s.is_device_work()) {
        if run.trace.strings.get(s.name) == Some("matmul") {
            step += 1;
            s.name = if u64::from(step) <= PREFIX_STEPS / 2 {
                small
            } else {
                large
            };
            if let Some(l) = &mut s.launch {
                l.grid = [2 + step % 3, 1 + step % 2, 1];
            }
        }
    }
    assert_eq!(u64::from(step), PREFIX_STEPS);
    let report = findings(&run);
    assert_recomputation_within_5pct(&report, truth, "library calls");
}

/// Put the uploads of `run` in a top-level region `input` and the rest of its work in one
/// top-level region `decode`, as a decoder's lockstep kernels are.
fn into_decode_region(run: &mut SimRun) {
    let (decode, _) = run.trace.strings.intern("decode");
    let (input, _) = run.trace.strings.intern("input");
    for s in run.trace.spans.iter_mut().filter(|s| s.is_program_work()) {
        s.region = if run.trace.strings.get(s.name) == Some("upload_input") {
            input
        } else {
            decode
        };
    }
}

/// Assert that the recomputation findings of `report` sum to within 5% of `truth` mJ.
fn assert_recomputation_within_5pct(report: &WasteReport, truth: f64, case: &str) {
    let found: f64 = report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::Recomputation)
        .map(|f| f.energy.mj)
        .sum();
    let err = (found - truth).abs() / truth;
    println!(
        "recomputed prefixes, {case}: {found:.1} mJ vs truth {truth:.1} mJ ({:.2}%)",
        err * 100.0
    );
    assert!(err < 0.05, "{case}: {found} mJ vs {truth} mJ");
}

fn check_prefix(fixed_ns: u64, two_shapes: bool) {
    let (run, truth) = prefix_run(true, fixed_ns, two_shapes);
    let report = findings(&run);
    assert_recomputation_within_5pct(
        &report,
        truth,
        &format!("fixed {fixed_ns} ns, two shapes {two_shapes}"),
    );
    assert!(report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::Recomputation)
        .all(|f| f.fix.contains("KV cache")));
}

#[test]
fn absurd_upload_sizes_and_addresses_in_a_trace_file_do_not_panic() {
    let mut run = run(&program(Plant::all(), 10), 9);
    as_unmodified_program(&mut run);
    for s in &mut run.trace.spans {
        if let SpanKind::Memcpy { bytes, .. } = &mut s.kind {
            *bytes = u64::MAX;
        }
    }
    for a in &mut run.trace.annotations {
        if let Annotation::CopyTarget { address, .. } = a {
            *address = u64::MAX - 1;
        }
    }
    // Every upload now covers the top of the address space: each overwrites the last.
    let report = findings(&run);
    assert!(report.findings.iter().all(|f| f.energy.mj.is_finite()));
    assert_no_finding_of(&report, &[WasteKind::RedundantTransfer]);
}

#[test]
fn absurd_versions_and_pass_sizes_in_a_trace_file_do_not_panic() {
    let ops = program(Plant::all(), 10);
    let mut run = run(&ops, 8);
    for s in run
        .trace
        .spans
        .iter_mut()
        .filter(|s| s.kind == SpanKind::Kernel)
    {
        for w in &mut s.writes {
            w.version = u32::MAX;
        }
        for r in &mut s.reads {
            r.version = u32::MAX;
        }
    }
    let first = run
        .trace
        .spans
        .iter()
        .find(|s| s.is_device_work())
        .unwrap()
        .id;
    for pass in [1, 2] {
        run.trace.annotations.push(Annotation::Pass {
            pass,
            padded_len: u64::MAX,
            causal: true,
            rows: vec![vec![1, 2, 3]; 4],
        });
        run.trace.annotations.push(Annotation::Padding {
            span: first,
            pass,
            padded: u64::MAX,
            total: u64::MAX,
        });
    }
    let report = findings(&run);
    assert!(report.findings.iter().all(|f| f.energy.mj.is_finite()));
}

#[test]
fn absurd_host_calls_and_gaps_in_a_trace_file_do_not_panic() {
    let ops = program(Plant::all(), 10);
    let mut run = run(&ops, 8);
    let calls = [
        (u64::MAX, u64::MAX),
        (0, u64::MAX),
        (u64::MAX - 1, 0),
        (0, 0),
    ];
    for (i, s) in run
        .trace
        .spans
        .iter_mut()
        .filter(|s| s.is_program_work())
        .enumerate()
    {
        s.host_call_ns = Some(calls[i % calls.len()].into());
    }
    let a = attribute(&run.trace, 0).unwrap();
    for queued_gap_ns in [0, u64::MAX] {
        let config = WasteConfig {
            queued_gap_ns,
            ..WasteConfig::default()
        };
        let report = detect(&run.trace, &a, &config);
        assert!(report.findings.iter().all(|f| f.energy.mj.is_finite()
            && f.energy.low_mj <= f.energy.mj
            && f.energy.mj <= f.energy.high_mj));
    }
}

/// A decode loop whose every step runs the same kernels, a cheap norm recomputed twice among
/// them: the sensors cannot tell the norm from the matmul and attention beside it, so its
/// price is its region's average power, an honest interval around a high figure. Replaying
/// each kernel alone once (kernel replay) resolves the norm, and the price comes within 5%.
#[test]
fn a_recomputed_kernel_in_lockstep_is_priced_from_its_power_measured_alone() {
    let mut ops = vec![upload("upload_weights", 0xABC0, W)];
    for step in 0..600u64 {
        ops.push(upload("upload_input", 0x1000 + 2 * step, IN));
        ops.push(kernel("matmul", 1_000_000, 300_000, &[IN, W], &[OUT]));
        ops.push(kernel("norm", 300_000, 20_000, &[OUT], &[H]));
        for _ in 0..2 {
            let mut again = kernel("norm", 300_000, 20_000, &[OUT], &[H]);
            again.planted = Some(WasteKind::Recomputation);
            ops.push(again);
        }
        ops.push(kernel("attention", 1_000_000, 250_000, &[H], &[O]));
        ops.push(readback(O));
    }
    let priced = |alone_ns: Option<u64>| {
        let mut run = run_with(&ops, 3, alone_ns);
        into_decode_region(&mut run);
        let truth = truth_mj(&run, &ops, WasteKind::Recomputation);
        let report = findings(&run);
        let found: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.kind == WasteKind::Recomputation)
            .collect();
        let (mj, low, high) = found.iter().fold((0.0, 0.0, 0.0), |acc, f| {
            (
                acc.0 + f.energy.mj,
                acc.1 + f.energy.low_mj,
                acc.2 + f.energy.high_mj,
            )
        });
        println!("alone {alone_ns:?}: {mj:.0} mJ [{low:.0}, {high:.0}], truth {truth:.0} mJ");
        (mj, low, high, truth)
    };
    let (mj, low, high, truth) = priced(None);
    assert!(
        low <= truth && truth <= high,
        "the interval must hold the truth"
    );
    // The control: without replays the region's average power prices the norm's dynamic
    // energy at more than twice its truth (its static share, the idle power over the time
    // the run saves, is right either way).
    assert!(
        mj > 1.15 * truth,
        "the norm resolved without replays: {mj} vs {truth}"
    );
    let (mj, _, _, truth) = priced(Some(wattlens_instrument::trace::ALONE_BURST_NS));
    let err = (mj - truth).abs() / truth;
    assert!(
        err < 0.05,
        "measured alone: {mj:.0} mJ vs truth {truth:.0} mJ"
    );
}

/// A decode loop that is partly launch-bound (each call takes the host 20 µs; most kernels
/// run for less), with a dead matmul or a kernel run three more times per layer. What
/// dropping them saves is measured as the simulator's own A/B: the true energy of the run with
/// them less that of the run without. The detector must come within 5% of it from the trace
/// alone. Charging the idle power over the launches' own time instead misses by far: the
/// slack after the dead matmul absorbs part of its time, and the repeated kernels' calls cost
/// the host more time than they run.
#[test]
fn whole_launches_in_a_launch_bound_loop_are_priced_within_5_percent_of_the_ab() {
    let program = |dead: bool, repeats: usize| {
        let mut ops = vec![upload("upload_weights", 0xABC0, W)];
        for step in 0..600u64 {
            let mut input = upload("upload_input", 0x1000 + 2 * step, IN);
            input.dur_ns = 20_000;
            ops.push(input);
            for _ in 0..4 {
                ops.push(kernel("norm", 5_000, 40_000, &[O], &[H]));
                if dead {
                    let mut d = kernel("matmul", 30_000, 400_000, &[IN, W], &[OUT]);
                    d.planted = Some(WasteKind::DeadWrite);
                    ops.push(d);
                }
                ops.push(kernel("matmul", 30_000, 400_000, &[H, W], &[OUT]));
                ops.push(kernel("small", 4_000, 30_000, &[OUT], &[TMP]));
                for _ in 0..repeats {
                    let mut again = kernel("small", 4_000, 30_000, &[OUT], &[TMP]);
                    again.planted = Some(WasteKind::Recomputation);
                    ops.push(again);
                }
                ops.push(kernel("attention", 10_000, 150_000, &[TMP], &[O]));
            }
            ops.push(readback(O));
        }
        ops
    };
    let burst = Some(wattlens_instrument::trace::ALONE_BURST_NS);
    let host = (20_000, 6_000);
    let total_mj = |run: &SimRun| run.truth.signal.energy_mj(u64::MAX);
    let work_end = |run: &SimRun| {
        run.trace
            .spans
            .iter()
            .filter(|s| s.is_program_work())
            .map(|s| s.end_ns)
            .max()
            .unwrap_or(0) as f64
    };
    let clean = run_hosted(&program(false, 0), 5, burst, host);
    for (kind, dead, repeats) in [
        (WasteKind::DeadWrite, true, 0),
        (WasteKind::Recomputation, false, 3),
    ] {
        let run = run_hosted(&program(dead, repeats), 5, burst, host);
        let truth = total_mj(&run) - total_mj(&clean);
        let report = findings(&run);
        let found: Vec<&Finding> = report.findings.iter().filter(|f| f.kind == kind).collect();
        assert_eq!(found.len(), 1, "{kind:?}: {found:#?}");
        let f = found[0];
        let saved_ns = f.run_saved_ns.expect("the trace has its host calls") as f64;
        let idle_mw = f64::from(run.truth.idle_mw);
        let by_own_time = f.energy.mj + idle_mw * (f.time_ns as f64 - saved_ns) * 1e-9;
        let err = (f.energy.mj - truth) / truth;
        println!(
            "{kind:?}: {:.1} mJ [{:.1}, {:.1}] vs A/B {truth:.1} mJ ({:+.2}%); run {:.1} ms shorter by the replay, {:.1} ms by the A/B; by the launches' own time {by_own_time:.1} mJ ({:+.1}%)",
            f.energy.mj,
            f.energy.low_mj,
            f.energy.high_mj,
            err * 100.0,
            saved_ns / 1e6,
            (work_end(&run) - work_end(&clean)) / 1e6,
            (by_own_time - truth) / truth * 100.0
        );
        assert!(
            err.abs() < 0.05,
            "{kind:?}: {} mJ vs A/B {truth} mJ",
            f.energy.mj
        );
        let ab_ns = work_end(&run) - work_end(&clean);
        assert!(
            (saved_ns - ab_ns).abs() < 0.02 * ab_ns,
            "{kind:?}: the replay saves {saved_ns} ns, the A/B {ab_ns} ns"
        );
    }
}

/// The device's idle by phase: the run's start-up (the simulator's 2 s of lead idle) and a
/// 300 ms host-only stretch in the middle of a clean program (the host tokenising, say) are
/// reported for what they are, never as launch-bound waste, and the headline's share is of the
/// steady stretches.
#[test]
fn start_up_and_host_only_idle_are_phases_not_launch_bound_waste() {
    let mut ops = program(Plant::default(), 40);
    let middle = ops.len() / 2;
    ops[middle].host_work_before_ns = 300_000_000;
    let run = run(&ops, 3);
    let report = findings(&run);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let p = report
        .phases
        .expect("a run with work and readings has phases");
    println!("{p:#?}");
    assert_eq!(p.host_only_stretches, 1);
    assert!(
        (p.host_only_ns as f64 - 300e6).abs() < 0.01 * 300e6,
        "{}",
        p.host_only_ns
    );
    // The sensors start reading within a counter period of the lead idle's start.
    assert!(
        p.startup_ns > 1_800_000_000 && p.startup_ns <= 2_000_000_000,
        "{}",
        p.startup_ns
    );
    let busy: u64 = run
        .trace
        .spans
        .iter()
        .filter(|s| s.is_program_work())
        .map(|s| s.duration_ns())
        .sum();
    assert!(p.steady_ns >= busy, "the steady stretches hold the work");
    let idle_mw = f64::from(run.truth.idle_mw);
    let truth_startup_mj = idle_mw * p.startup_ns as f64 * 1e-9;
    assert!(
        (p.startup.mj - truth_startup_mj).abs() < 0.02 * truth_startup_mj,
        "{:?} vs {truth_startup_mj}",
        p.startup
    );
}

/// Two ranks on two GPUs, 400 steps each of compute then an all-reduce. Rank 1's compute
/// takes 0.5 ms longer, so rank 0 reaches every all-reduce 0.5 ms early and spins in it (60 W
/// above idle) until rank 1 joins. Rank 0 gets a load-imbalance finding of 400 waits, 200 ms,
/// whose interval holds the truth (idle plus the kernel's power over the waits); rank 1 none.
#[test]
fn a_rank_that_waits_in_collectives_for_a_slower_one_is_load_imbalance() {
    use wattlens_instrument::merge::merge;
    use wattlens_instrument::report::analyze;
    const STEPS: usize = 400;
    const T0: u64 = 1_700_000_000_000_000_000;
    let kernel = |name: &str, op_class, (duration_ns, dynamic_mw): (u64, u32)| {
        WorkItem::Kernel(KernelSpec {
            name: name.into(),
            op_class,
            stream: 0,
            duration_ns,
            dynamic_mw,
            launch: LaunchShape {
                grid: [132, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            region: "step".into(),
            count: 1,
            gap_ns: 20_000,
        })
    };
    let nccl = "ncclDevKernel_AllReduce_Sum_f32_RING_LL";
    let rank = |compute_ns: u64, nccl_ns: u64, uuid: &str, seed: u64| {
        // Steps of two lengths, so the fit can tell compute from communication.
        let items = (0..STEPS)
            .flat_map(|k| {
                let extra = if k % 2 == 0 { 0 } else { 400_000 };
                [
                    kernel("gemm", OpClass::Matmul, (compute_ns + extra, 250_000)),
                    kernel(nccl, OpClass::Communication, (nccl_ns, 60_000)),
                ]
            })
            .collect();
        let w = Workload {
            name: "tp".into(),
            lead_idle_ns: 1_000_000_000,
            tail_idle_ns: 1_000_000_000,
            items,
        };
        let mut t = simulate(&w, &GpuModel::h200(), &SensorProfile::default(), seed, T0).trace;
        t.meta.devices[0].uuid = uuid.into();
        t.meta.start_unix_ns += seed;
        t
    };
    // Both ranks' steps last 2.52 ms (or 2.92): rank 0 computes 1.0 ms and spins 1.5 ms in
    // the all-reduce; rank 1 computes 1.5 ms and spends 1.0 ms in it.
    let job = merge(vec![
        rank(1_000_000, 1_500_000, "GPU-rank0", 1),
        rank(1_500_000, 1_000_000, "GPU-rank1", 2),
    ])
    .unwrap();
    let report = analyze(&job).unwrap();
    let finding = |device: u32| -> Option<Finding> {
        report.devices[device as usize]
            .waste
            .as_ref()
            .and_then(|w| {
                w.findings
                    .iter()
                    .find(|f| f.kind == WasteKind::LoadImbalance)
            })
            .cloned()
    };
    assert!(finding(1).is_none(), "the slower rank waits for nobody");
    let f = finding(0).expect("rank 0 waits");
    assert_eq!(f.occurrences, STEPS as u64);
    assert_eq!(f.time_ns, STEPS as u64 * 500_000);
    let idle_mw = report.devices[0]
        .attribution
        .as_ref()
        .unwrap()
        .idle_power
        .mw;
    let truth = (idle_mw + 60_000.0) * STEPS as f64 * 500e-6;
    println!("load imbalance: {:?}, truth {truth:.0} mJ", f.energy);
    assert!(
        f.energy.low_mj <= truth && truth <= f.energy.high_mj,
        "{:?} vs {truth}",
        f.energy
    );
    assert!((f.energy.mj - truth).abs() < 0.15 * truth, "{:?}", f.energy);
}

/// The ids of `run`'s program work spans, in trace order.
fn program_work_ids(run: &SimRun) -> Vec<u64> {
    run.trace
        .spans
        .iter()
        .filter(|s| s.is_program_work())
        .map(|s| s.id)
        .collect()
}

/// The audit's facts (`wattlens run --audit`) for `ops` as run in `run`: each buffer's content
/// followed by digest (an upload's own, else a digest of the kernel and its inputs), every
/// kernel a new operation whose outputs are the buffers it writes, every upload a `copy_` from
/// a host tensor into its buffer.
fn audit_facts(run: &SimRun, ops: &[Op]) -> Vec<Annotation> {
    let work = program_work_ids(run);
    let mut content: HashMap<u64, u64> = HashMap::new();
    // A tensor per buffer and operation that made it; a buffer is its memory.
    let tensor = |buffer: u64, digest: u64, device: Option<u32>| AuditTensor {
        tensor: buffer,
        storage: 0x7f00_0000 + (buffer & 0xff),
        digest,
        bytes: 1 << 20,
        device,
    };
    let mut facts = Vec::new();
    for (k, (op, &span)) in ops.iter().zip(&work).enumerate() {
        let seq = k as u64 + 1;
        let mut a = AuditOp {
            seq,
            name: format!("aten::{}", op.name),
            module: "Block#1".into(),
            ordinal: 1,
            identity: 42,
            random: false,
            moves_data: false,
            spans: vec![span],
            inputs: Vec::new(),
            outputs: Vec::new(),
            writes: Vec::new(),
            rows: None,
        };
        match op.kind {
            Kind::Upload { digest } => {
                let dst = op.writes[0];
                let before = content.get(&dst).copied().unwrap_or(0);
                a.name = "aten::copy_".into();
                a.inputs = vec![tensor(seq << 8 | 0x80, digest, None)];
                a.writes = vec![(tensor(dst, before, Some(0)), digest)];
                content.insert(dst, digest);
            }
            Kind::Kernel { .. } => {
                a.inputs = op
                    .reads
                    .iter()
                    .map(|b| tensor(*b, content.get(b).copied().unwrap_or(0), Some(0)))
                    .collect();
                // Outputs are new tensors over the buffers' memory.
                let digest = a.inputs.iter().fold(op.name.len() as u64, |h, t| {
                    h.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.digest
                });
                for &b in &op.writes {
                    content.insert(b, digest);
                    a.outputs.push(tensor(seq << 8 | b, digest, Some(0)));
                }
            }
            Kind::Readback => {
                a.name = "aten::_to_copy".into();
                let src = op.reads[0];
                a.inputs = vec![tensor(
                    src,
                    content.get(&src).copied().unwrap_or(0),
                    Some(0),
                )];
                a.outputs = vec![tensor(seq << 8 | 0x81, 0, None)];
            }
        }
        facts.push(Annotation::AuditOp(Box::new(a)));
    }
    facts
}

#[test]
fn the_audits_content_facts_prove_recomputation_and_repeated_uploads_in_an_unmodified_program() {
    let ops = program(Plant::all(), 40);
    let mut run = run(&ops, 21);
    let facts = audit_facts(&run, &ops);
    as_unmodified_program(&mut run);
    // Without the audit, an unmodified program's recomputation is not found.
    let before = findings(&run);
    assert_no_finding_of(&before, &[WasteKind::Recomputation]);
    run.trace.annotations.extend(facts);
    let report = findings(&run);
    for kind in [WasteKind::Recomputation, WasteKind::RedundantTransfer] {
        let found: f64 = report
            .findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.energy.mj)
            .sum();
        let truth = truth_mj(&run, &ops, kind);
        let err = (found - truth).abs() / truth;
        assert!(
            err < 0.05,
            "{kind:?}: {found} mJ against the truth {truth} mJ"
        );
    }
    let recomputed = report
        .findings
        .iter()
        .find(|f| f.kind == WasteKind::Recomputation);
    assert!(
        recomputed.is_some_and(
            |f| f.what == "aten::norm in Block" && f.proof.contains("still held unchanged")
        ),
        "{recomputed:#?}"
    );
}

#[test]
fn the_audit_calls_nothing_recomputed_whose_earlier_output_was_freed_changed_or_random() {
    let ops = program(Plant::all(), 12);
    let mut run = run(&ops, 22);
    let mut facts = audit_facts(&run, &ops);
    as_unmodified_program(&mut run);
    let norms: Vec<&mut AuditOp> = facts
        .iter_mut()
        .filter_map(|a| match a {
            Annotation::AuditOp(op) if op.name == "aten::norm" => Some(op.as_mut()),
            _ => None,
        })
        .collect();
    // Every norm's output is freed right after it ran, or it draws random numbers.
    let mut freed = Vec::new();
    for (k, op) in norms.into_iter().enumerate() {
        if k % 2 == 0 {
            op.random = true;
        } else {
            freed.push(Annotation::AuditFreed {
                tensor: op.outputs[0].tensor,
                after_seq: op.seq,
            });
        }
    }
    run.trace.annotations.extend(facts);
    run.trace.annotations.extend(freed);
    let report = findings(&run);
    assert_no_finding_of(&report, &[WasteKind::Recomputation]);
}

#[test]
fn rows_an_operation_produced_in_its_previous_call_are_priced_as_their_share() {
    let ops = program(Plant::default(), 30);
    let mut run = run(&ops, 23);
    let mut facts = audit_facts(&run, &ops);
    as_unmodified_program(&mut run);
    // Each matmul call recomputes 3 of its 4 rows (a decode step without a KV cache).
    let mut truth = 0.0;
    let idle = f64::from(run.truth.idle_mw);
    for a in &mut facts {
        if let Annotation::AuditOp(op) = a {
            if op.name == "aten::matmul" {
                op.rows = Some(AuditRows {
                    matched: 3,
                    total: 4,
                    previous: 1,
                });
                let i = run
                    .trace
                    .spans
                    .iter()
                    .position(|s| s.id == op.spans[0])
                    .unwrap();
                let s = &run.trace.spans[i];
                truth +=
                    0.75 * (run.truth.span_above_idle_mj[i] + idle * s.duration_ns() as f64 * 1e-9);
            }
        }
    }
    run.trace.annotations.extend(facts);
    let report = findings(&run);
    let found: f64 = report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::Recomputation && f.what.starts_with("aten::matmul"))
        .map(|f| f.energy.mj)
        .sum();
    assert!(
        (found - truth).abs() / truth < 0.05,
        "{found} mJ against the truth {truth} mJ"
    );
}

/// A simulated run of the operations in a real audit's facts file (`tests/data/audit`), one
/// kernel per operation (a copy from host memory for a `copy_` whose source is on the host),
/// with the facts joined to it. The facts were captured on a CPU, so every tensor is placed
/// on GPU 0 but the source of a `copy_`, which stays on the host: where a GPU program keeps
/// them.
fn audited_run(file: &str) -> SimRun {
    let path = format!("{}/../tests/data/audit/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let facts = wattlens_instrument::audit::read_facts(text.as_bytes()).unwrap();
    assert_eq!(facts.unreadable_lines, 0);
    let mut ops = facts.ops.clone();
    for op in &mut ops {
        let copy = op.name == "aten::copy_";
        let written: Vec<u64> = op.writes.iter().map(|(t, _)| t.tensor).collect();
        for t in op.inputs.iter_mut() {
            t.device = (!copy || written.contains(&t.tensor)).then_some(0);
        }
        for t in op
            .outputs
            .iter_mut()
            .chain(op.writes.iter_mut().map(|(t, _)| t))
        {
            t.device = Some(0);
        }
    }
    let items: Vec<WorkItem> = ops
        .iter()
        .map(|op| {
            if op.name == "aten::copy_" && op.inputs.iter().any(|t| t.device.is_none()) {
                WorkItem::Transfer(TransferSpec {
                    name: "memcpy HtoD".into(),
                    stream: 0,
                    direction: CopyDirection::HostToDevice,
                    bytes: op.inputs[0].bytes,
                    duration_ns: 40_000,
                    dynamic_mw: 50_000,
                    region: String::new(),
                    count: 1,
                })
            } else {
                WorkItem::Kernel(KernelSpec {
                    name: op.name.clone(),
                    op_class: OpClass::Elementwise,
                    stream: 0,
                    duration_ns: 30_000,
                    dynamic_mw: 150_000,
                    launch: LaunchShape {
                        grid: [264, 1, 1],
                        block: [256, 1, 1],
                        shared_mem_bytes: 0,
                    },
                    region: String::new(),
                    count: 1,
                    gap_ns: 5_000,
                })
            }
        })
        .collect();
    let workload = Workload {
        name: "audited".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    };
    let mut run = simulate(
        &workload,
        &GpuModel::h200(),
        &SensorProfile::h200_2026_11_22(),
        5,
        1_700_000_000_000_000_000,
    );
    let work = program_work_ids(&run);
    for (op, &span) in ops.iter_mut().zip(&work) {
        op.spans = vec![span];
    }
    for s in &mut run.trace.spans {
        s.reads.clear();
        s.writes.clear();
    }
    run.trace.annotations.extend(
        ops.into_iter()
            .map(|o| Annotation::AuditOp(Box::new(o)))
            .chain(facts.freed.iter().map(|f| f.annotation()))
            .chain(facts.summary.map(Annotation::AuditSummary)),
    );
    run
}

fn kinds(report: &WasteReport) -> Vec<(WasteKind, String, u64)> {
    report
        .findings
        .iter()
        .filter(|f| f.kind != WasteKind::IdleGap)
        .map(|f| (f.kind, f.what.clone(), f.occurrences))
        .collect()
}

#[test]
fn the_audit_of_a_real_generate_loop_finds_its_recomputed_prefix_only_without_a_cache() {
    let cached = findings(&audited_run("hf-tiny-cache.facts.jsonl"));
    let uncached = findings(&audited_run("hf-tiny-nocache.facts.jsonl"));
    // With a cache, nothing is recomputed or uploaded twice. (Its silent writes are real:
    // the model's weight initialisation zeroes biases that were made zero, and fills norm
    // weights made one; a GPU program does that on the host, where nothing is priced.)
    assert!(
        cached.findings.iter().all(|f| !matches!(
            f.kind,
            WasteKind::Recomputation | WasteKind::RedundantTransfer
        )),
        "{:#?}",
        kinds(&cached)
    );
    assert!(
        cached
            .findings
            .iter()
            .filter(|f| f.kind == WasteKind::SilentWrite)
            .all(|f| f.what == "aten::zero_" || f.what == "aten::fill_"),
        "{:#?}",
        kinds(&cached)
    );
    let recomputed: Vec<&Finding> = uncached
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::Recomputation)
        .collect();
    // Every layer's projections, norms and attention recompute the earlier positions.
    for what in [
        "aten::addmm in Conv1D",
        "aten::native_layer_norm in LayerNorm",
    ] {
        assert!(
            recomputed
                .iter()
                .any(|f| f.what == what && f.energy.mj > 0.0),
            "{what}: {:#?}",
            kinds(&uncached)
        );
    }
    assert!(uncached.audit.is_some_and(|a| a.ops > 0));
}

/// Work no audited operation issued (a compiled graph's kernels, say) is counted as not
/// checked, by its share of the device's busy time, in the report and its notes.
#[test]
fn the_audit_says_how_much_of_the_device_busy_time_it_did_not_see() {
    let mut run = audited_run("hf-tiny-cache.facts.jsonl");
    let whole = findings(&run).audit.unwrap();
    assert!(whole.work_busy_ns > 0);
    assert_eq!(whole.audited_share(), 1.0);
    // A kernel launched outside every audited operation, as long as all the audited work.
    let last = run.trace.spans.iter().map(|s| s.end_ns).max().unwrap();
    let name = run.trace.strings.id("triton_poi_fused_add_0");
    let id = run.trace.spans.iter().map(|s| s.id).max().unwrap() + 1;
    let from = last + 1_000_000;
    run.trace.spans.push(wattlens_instrument::trace::Span::new(
        id,
        SpanKind::Kernel,
        (0, 0),
        name,
        (from, from + whole.work_busy_ns),
    ));
    let report = findings(&run);
    let cost = report.audit.unwrap();
    assert_eq!(cost.work_busy_ns, 2 * whole.work_busy_ns);
    assert_eq!(cost.audited_busy_ns, whole.audited_busy_ns);
    assert!((cost.audited_share() - 0.5).abs() < 1e-12);
    assert!(
        report
            .unchecked
            .iter()
            .any(|u| u.starts_with("50.0% of the program's device busy time")),
        "{:#?}",
        report.unchecked
    );
}

/// A Llama-architecture model adds its positions inside attention (rotary embeddings), so at
/// the first layer a decode step with a KV cache computes the same row as an earlier step
/// whenever a token repeats; that is no recomputed prefix, and the audit must not call it one.
#[test]
fn the_audit_of_a_rotary_model_with_a_cache_finds_no_recomputed_prefix_where_tokens_repeat() {
    let cached = findings(&audited_run("llama-tiny-cache.facts.jsonl"));
    let uncached = findings(&audited_run("llama-tiny-nocache.facts.jsonl"));
    assert!(
        cached
            .findings
            .iter()
            .all(|f| f.kind != WasteKind::Recomputation),
        "{:#?}",
        kinds(&cached)
    );
    let recomputed: Vec<&Finding> = uncached
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::Recomputation && f.energy.mj > 0.0)
        .collect();
    for what in ["aten::mm in Linear", "aten::mul in LlamaRMSNorm"] {
        assert!(
            recomputed.iter().any(|f| f.what == what),
            "{what}: {:#?}",
            kinds(&uncached)
        );
    }
}

#[test]
fn the_audit_of_a_real_generate_loop_proves_its_weight_reloads_redundant() {
    let report = findings(&audited_run("hf-tiny-reload.facts.jsonl"));
    let uploads: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == WasteKind::RedundantTransfer)
        .collect();
    assert_eq!(uploads.len(), 1, "{:#?}", kinds(&report));
    assert!(uploads[0]
        .proof
        .contains("already held exactly these bytes"));
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.kind != WasteKind::Recomputation),
        "{:#?}",
        kinds(&report)
    );
}
