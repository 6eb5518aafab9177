//! `wattlens compare` on the simulated GPU: a model of each variant's launches, whose true
//! energies are printed beside the estimates.

use std::io::Write;

use wattlens_instrument::repeat::{plan, RepeatConfig};
use wattlens_instrument::sim::{simulate, GpuModel, KernelSpec, WorkItem, Workload};
use wattlens_instrument::trace::{LaunchShape, OpClass, SpanKind};
use wattlens_instrument::SensorProfile;

use super::variants::{batch_region, batches_in, report, Comparison, Measured, Variant};
use crate::cli::CompareArgs;
use crate::error::CliError;
use crate::progress;

/// The comparison on the simulated GPU, which knows each launch's true energy.
///
/// # Errors
/// As [`super::run`].
pub fn simulated(
    args: &CompareArgs,
    config: &RepeatConfig,
    out: &mut dyn Write,
) -> Result<Comparison, CliError> {
    let profile = SensorProfile::h200_2026_11_22();
    let variants = Variant::of(args.what);
    writeln!(
        out,
        "Compare on the simulated GPU (no NVIDIA GPU in use): {} variants, {} batches of {} ms each; accuracy needs a real GPU",
        variants.len(),
        config.batches,
        config.batch_ns / 1_000_000
    )?;
    let gaps = plan(config, profile.counter_period_ns);
    let mut items = Vec::new();
    let mut per_batch = Vec::new();
    for &v in &variants {
        let kernels = v.sim_kernels(args.size);
        let launch_ns: u64 = kernels.iter().map(|k| k.1 + 2_000).sum();
        let n = (config.batch_ns / launch_ns.max(1)).clamp(1, 200_000);
        per_batch.push(n);
        for (k, &gap) in gaps.iter().enumerate() {
            items.push(WorkItem::Gap {
                stream: 0,
                duration_ns: gap,
            });
            let spec = |&(name, duration_ns, dynamic_mw): &(&str, u64, u32), count| {
                WorkItem::Kernel(KernelSpec {
                    name: name.to_owned(),
                    op_class: OpClass::from_label(if name.contains("softmax") {
                        "softmax"
                    } else {
                        "matmul"
                    })
                    .unwrap_or(OpClass::Unknown),
                    stream: 0,
                    duration_ns,
                    dynamic_mw,
                    launch: LaunchShape {
                        grid: [1024, 1, 1],
                        block: [128, 1, 1],
                        shared_mem_bytes: 0,
                    },
                    region: batch_region(v, k),
                    count,
                    gap_ns: 2_000,
                })
            };
            if kernels.len() == 1 {
                items.push(spec(&kernels[0], u32::try_from(n).unwrap_or(u32::MAX)));
            } else {
                for _ in 0..n {
                    items.extend(kernels.iter().map(|k| spec(k, 1)));
                }
            }
        }
    }
    let workload = Workload {
        name: "wattlens compare (simulated)".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    };
    let pb = progress::spinner("simulating GPU");
    let start_unix_ns =
        wattlens_instrument::clock::Clock::now_ns(&wattlens_instrument::clock::HostClock::new());
    let mut run = simulate(
        &workload,
        &GpuModel::h200(),
        &profile,
        args.seed,
        start_unix_ns,
    );
    pb.finish_and_clear();
    run.trace.meta.command = std::env::args().collect();
    crate::commands::save_trace(&args.out_dir.join("compare.wlt"), &run.trace)?;
    let measured: Vec<Measured> = variants
        .iter()
        .zip(&per_batch)
        .map(|(&v, &n)| {
            // The idle gap before a batch starts where the previous work ended (the planned
            // gap before the very first).
            let batches = batches_in(&run.trace, v, (gaps.len(), n), |k, start| {
                run.trace
                    .spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Kernel && s.end_ns <= start)
                    .map(|s| s.end_ns)
                    .max()
                    .unwrap_or(start.saturating_sub(gaps.get(k).copied().unwrap_or(0)))
            });
            let truth = batches
                .iter()
                .map(|b| {
                    let from = (b.start_ns + config.rise_ns).min(b.end_ns.saturating_sub(1));
                    let mean_mw = run.truth.energy_between_mj(from, b.end_ns)
                        / (b.end_ns.saturating_sub(from).max(1) as f64 * 1e-9);
                    mean_mw * (b.end_ns - b.start_ns) as f64 * 1e-9 / b.launches as f64
                })
                .collect::<Vec<_>>();
            Measured {
                variant: v,
                truth_mj: wattlens_instrument::compare::Stat::of(&truth).median.into(),
                batches,
                accuracy: None,
            }
        })
        .collect();
    report(
        out,
        &run.trace,
        &measured,
        (args.size, config),
        &args.out_dir,
    )
}
