//! `wattlens demo` on a real GPU: the inference pipeline (GPT-2-small shapes, seeded random
//! weights) run as prefill plus greedy decode over a padded batch inside a profiling session,
//! with the planted waste the user asked for; then the per-op energy report.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use wattlens_instrument::sim::SimRng;
use wattlens_instrument::{Attribution, SensorProfile};
use wattlens_kernels::ops::MatmulF32;
use wattlens_kernels::pipeline::{Decoder, MatmulBackend, ModelConfig, Waste, Weights};
use wattlens_runtime::{CudaError, Profiler, ProfilerConfig};

use crate::cli::{DecodeMatmul, DemoArgs, WasteSwitch};
use crate::error::CliError;
use crate::gpu::GpuError;
use crate::render::{self, analyze, units};

/// Rows in the demo batch.
pub const BATCH: usize = 8;
/// Idle before and after the work, so attribution sees the GPU's idle power.
const IDLE: Duration = Duration::from_millis(1500);

fn cuda(e: CudaError) -> CliError {
    CliError::Gpu(GpuError::Cuda(e))
}

/// The demo's prompts: seeded lengths of 24–96 tokens.
fn prompts(seed: u64, vocab: usize) -> Vec<Vec<i32>> {
    let mut rng = SimRng::new(seed);
    let mut next = move || rng.next_u64();
    (0..BATCH)
        .map(|_| {
            let len = 24 + (next() % 73) as usize;
            (0..len).map(|_| (next() % vocab as u64) as i32).collect()
        })
        .collect()
}

/// The prefill length `--waste padding-heavy` pads to: the model's context less the decode
/// steps, as a server that pads every batch to its largest shape would.
fn padding_bucket(max_len: usize, steps: usize) -> usize {
    max_len.saturating_sub(steps)
}

fn waste_of(switches: &[WasteSwitch], bucket: usize, duplicates: u32) -> Waste {
    let on = |w: WasteSwitch| switches.contains(&w);
    Waste {
        pad_prefill_to: if on(WasteSwitch::PaddingHeavy) {
            bucket
        } else {
            0
        },
        no_kv_cache: on(WasteSwitch::NoKvCache),
        reupload_weights: on(WasteSwitch::ReuploadWeights),
        dead_kernel: on(WasteSwitch::DeadKernel),
        duplicate_layernorm: if on(WasteSwitch::DuplicateLayernorm) {
            duplicates
        } else {
            0
        },
        sync_every_kernel: on(WasteSwitch::SyncEveryKernel),
    }
}

/// Per-op lines: each `*/NAME` region (every layer's NAME together) and the top-level phases.
fn per_op(out: &mut dyn Write, a: &Attribution, tokens: usize) -> std::io::Result<()> {
    let ops: Vec<_> = a
        .regions
        .iter()
        .filter(|r| r.path.starts_with("*/"))
        .collect();
    let total: f64 = ops.iter().map(|r| r.dynamic.mj + r.static_share.mj).sum();
    writeln!(out)?;
    writeln!(
        out,
        "Energy per op (every layer's op together; dynamic + static share):"
    )?;
    for r in ops {
        let mj = r.dynamic.mj + r.static_share.mj;
        writeln!(
            out,
            "  {:<12} dynamic {:<20} total {:>10}  {:>5.1}%  {:>10}/token",
            &r.path[2..],
            units::energy(&r.dynamic),
            units::joules(mj),
            100.0 * mj / total.max(f64::MIN_POSITIVE),
            units::joules(mj / tokens.max(1) as f64),
        )?;
    }
    Ok(())
}

/// Run the demo pipeline on GPU 0.
///
/// # Errors
/// [`CliError::Gpu`] when CUDA or NVML fails (the trace recorded so far is still written);
/// [`CliError`] when the output cannot be written.
pub(super) fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let paths = super::output::output_paths(args);
    let manifest = wattlens_kernels::manifest().map_err(|e| {
        cuda(CudaError::Unavailable(format!(
            "the embedded kernel manifest is unreadable: {e}"
        )))
    })?;
    let config = ProfilerConfig {
        profile: SensorProfile::h200_2026_11_22(),
        trace_path: Some(paths.trace.clone()),
        // Every byte of every upload is hashed, so a repeated upload is proven redundant, not
        // just likely (about 0.1 s per GB of host time).
        content_hash: wattlens_runtime::ContentHash::Full,
        measure_alone_ns: args
            .measure_alone
            .then_some(wattlens_instrument::trace::ALONE_BURST_NS),
        ..ProfilerConfig::default()
    }
    .with_manifest(&manifest);
    let prof = Profiler::start(config).map_err(cuda)?;
    let cfg = ModelConfig::gpt2_small();
    let prompts = prompts(args.seed, cfg.vocab);
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let steps = (args.steps as usize).min(cfg.max_len - longest);
    let waste = waste_of(
        &args.waste,
        padding_bucket(cfg.max_len, steps).max(longest),
        args.duplicates,
    );
    writeln!(
        out,
        "GPU demo: GPT-2-small shapes (12 layers, d=768), {BATCH} prompts of {}–{} tokens, {steps} tokens each, matmuls on {}{}",
        prompts.iter().map(Vec::len).min().unwrap_or(0),
        prompts.iter().map(Vec::len).max().unwrap_or(0),
        if args.cublas { "cuBLAS" } else { "wattlens kernels" },
        if args.waste.is_empty() {
            String::new()
        } else if waste.duplicate_layernorm > 1 {
            format!(
                ", planted waste: {:?}, the LayerNorm run {} extra times",
                args.waste, waste.duplicate_layernorm
            )
        } else {
            format!(", planted waste: {:?}", args.waste)
        }
    )?;
    let weights = Arc::new(Weights::random(&cfg));
    std::thread::sleep(IDLE);
    let t0 = std::time::Instant::now();
    let generated = {
        let mut decoder = Decoder::new(&prof, cfg, weights, BATCH).map_err(cuda)?;
        decoder.set_waste(waste);
        decoder.set_decode_matmul(match args.decode_matmul {
            DecodeMatmul::Tiled => MatmulF32::Tiled,
            DecodeMatmul::Register => MatmulF32::Register,
        });
        if args.cublas {
            decoder
                .set_matmul_backend(MatmulBackend::Cublas)
                .map_err(cuda)?;
        }
        decoder.generate(&prompts, steps).map_err(cuda)?
    };
    let work_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(IDLE);
    let trace = match prof.finish() {
        Ok(f) => {
            if args.measure_alone {
                let alone_ns: u64 = f
                    .trace
                    .spans
                    .iter()
                    .filter(|s| s.is_device_work() && !s.is_program_work())
                    .map(|s| s.duration_ns())
                    .sum();
                writeln!(
                    out,
                    "measured alone: {} kernel signatures, {:.1} s in all{}",
                    f.alone.measured.len(),
                    alone_ns as f64 * 1e-9,
                    if f.alone.skipped.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", f.alone.skipped.join("; "))
                    }
                )?;
            }
            f.trace
        }
        Err(aborted) => {
            crate::commands::save_trace(&paths.trace, &aborted.trace)?;
            return Err(cuda(aborted.error));
        }
    };
    crate::commands::save_trace(&paths.trace, &trace)?;
    let tokens = generated.tokens.iter().map(Vec::len).sum::<usize>();
    writeln!(out, "generated {tokens} tokens in {work_s:.2} s")?;
    let report = analyze(&trace)?;
    super::output::save_views(&paths, &trace, &report)?;
    render::table::write(out, &report, None)?;
    for d in &report.devices {
        if let Some(a) = &d.attribution {
            per_op(out, a, tokens)?;
        }
    }
    render::waste::write(out, &report)?;
    super::output::print_outputs(out, &paths)
}
