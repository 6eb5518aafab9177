//! `wattlens compare` on a real GPU: each variant is run in batches per the repetition
//! harness inside one profiling session (so the power readings and the kernel times share the
//! trace clock), then its accuracy is measured on fresh random inputs against fp64.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::CudaStream;
use wattlens_instrument::compare::AccuracySample;
use wattlens_instrument::repeat::{plan, RepeatConfig};
use wattlens_instrument::sim::SimRng;
use wattlens_instrument::SensorProfile;
use wattlens_kernels::ops::{AttnInputs, Int8Matrix, MatmulF32, On, Ops};
use wattlens_kernels::reference::{self as r, AttnShape};
use wattlens_runtime::{CudaError, DeviceBuffer, Profiler, ProfilerConfig, TimingChoice};

use super::variants::{batch_region, batches_in, report, Measured, Variant, ATTN};
use crate::cli::CompareArgs;
use crate::error::CliError;
use crate::gpu::GpuError;

/// Accuracy trials per variant, each on fresh random inputs.
const TRIALS: usize = 5;
/// Output rows and columns of a matmul accuracy trial (each output's error depends on K only,
/// so a 128×128 block of the full-K product stands for the whole).
const ACC_MN: usize = 128;
/// The attention shape of an accuracy trial (full length, fewer heads).
const ACC_ATTN: AttnShape = AttnShape {
    b: 1,
    h: 2,
    l: ATTN.l,
    d: ATTN.d,
    causal: true,
};

fn cuda(e: CudaError) -> CliError {
    CliError::Gpu(GpuError::Cuda(e))
}

fn random(rng: &mut SimRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

/// A variant's buffers, ready to launch.
enum Work {
    F32 {
        a: DeviceBuffer<f32>,
        b: DeviceBuffer<f32>,
        c: DeviceBuffer<f32>,
    },
    Bf16 {
        a: DeviceBuffer<u16>,
        bt: DeviceBuffer<u16>,
        c: DeviceBuffer<f32>,
    },
    Int8 {
        a: DeviceBuffer<i32>,
        bt: DeviceBuffer<i32>,
        sa: DeviceBuffer<f32>,
        sb: DeviceBuffer<f32>,
        c: DeviceBuffer<f32>,
    },
    /// Attention: fused where there are no scores to keep.
    Attn {
        q: DeviceBuffer<f32>,
        k: DeviceBuffer<f32>,
        v: DeviceBuffer<f32>,
        o: DeviceBuffer<f32>,
        lens: DeviceBuffer<i32>,
        scores: Option<DeviceBuffer<f32>>,
    },
}

struct Gpu<'p> {
    prof: &'p Profiler,
    s: Arc<CudaStream>,
    ops: Ops,
}

impl Gpu<'_> {
    fn up<T: wattlens_runtime::Scalar + cudarc::driver::ValidAsZeroBits>(
        &self,
        v: &[T],
    ) -> Result<DeviceBuffer<T>, CudaError> {
        self.prof.upload(&self.s, v)
    }

    /// Buffers for `variant` on inputs A (m×k) and B (k×n) or on Q, K, V of `attn`.
    fn work(
        &self,
        variant: Variant,
        (a, b, (m, n, k)): (&[f32], &[f32], (usize, usize, usize)),
        attn: (AttnShape, &[f32], &[f32], &[f32]),
    ) -> Result<Work, CudaError> {
        let zeros = |len: usize| self.prof.alloc_zeros::<f32>(&self.s, len);
        Ok(match variant {
            Variant::MatmulF32 => Work::F32 {
                a: self.up(a)?,
                b: self.up(b)?,
                c: zeros(m * n)?,
            },
            Variant::MatmulBf16 => {
                let bits = |v: &[f32]| v.iter().map(|&x| r::bf16_bits(x)).collect::<Vec<_>>();
                Work::Bf16 {
                    a: self.up(&bits(a))?,
                    bt: self.up(&bits(&r::transposed(b, k, n)))?,
                    c: zeros(m * n)?,
                }
            }
            Variant::MatmulInt8 => {
                let (qa, sa) = r::quantize_rows_int8(a, m, k);
                let (qb, sb) = r::quantize_rows_int8(&r::transposed(b, k, n), n, k);
                Work::Int8 {
                    a: self.up(&r::pack_int8(&qa))?,
                    bt: self.up(&r::pack_int8(&qb))?,
                    sa: self.up(&sa)?,
                    sb: self.up(&sb)?,
                    c: zeros(m * n)?,
                }
            }
            Variant::AttnUnfused | Variant::AttnFused => {
                let (shape, q, kk, v) = attn;
                let len = shape.b * shape.h * shape.l * shape.d;
                let fused = variant == Variant::AttnFused;
                Work::Attn {
                    q: self.up(q)?,
                    k: self.up(kk)?,
                    v: self.up(v)?,
                    o: zeros(len)?,
                    lens: self.up(&vec![shape.l as i32; shape.b])?,
                    scores: if fused {
                        None
                    } else {
                        Some(zeros(shape.b * shape.h * shape.l * shape.l)?)
                    },
                }
            }
        })
    }

    /// One launch of `w` (three kernels for unfused attention).
    fn launch(
        &self,
        w: &mut Work,
        mnk: (usize, usize, usize),
        shape: AttnShape,
    ) -> Result<(), CudaError> {
        let ops = &self.ops;
        let on = On {
            prof: self.prof,
            stream: &self.s,
        };
        let scale = 1.0 / (shape.d as f32).sqrt();
        match w {
            Work::F32 { a, b, c } => ops.matmul_f32(on, MatmulF32::Register, a, b, c, mnk),
            Work::Bf16 { a, bt, c } => ops.matmul_bf16(on, a, bt, c, mnk),
            Work::Int8 { a, bt, sa, sb, c } => {
                let a = Int8Matrix {
                    packed: a,
                    scales: sa,
                };
                let bt = Int8Matrix {
                    packed: bt,
                    scales: sb,
                };
                ops.matmul_int8(on, a, bt, c, mnk)
            }
            Work::Attn {
                q,
                k,
                v,
                o,
                lens,
                scores,
                ..
            } => {
                let inputs = AttnInputs { q, k, v, lens };
                match scores {
                    Some(sc) => ops.attention_unfused(on, inputs, o, sc, shape, scale),
                    None => ops.attention_fused(on, inputs, o, shape, scale),
                }
            }
        }
    }

    fn output(&self, w: &Work) -> Result<Vec<f32>, CudaError> {
        let buf = match w {
            Work::F32 { c, .. } | Work::Bf16 { c, .. } | Work::Int8 { c, .. } => c,
            Work::Attn { o, .. } => o,
        };
        let mut host = vec![0f32; buf.len()];
        self.prof.dtoh(&self.s, buf, &mut host)?;
        Ok(host)
    }

    /// Accuracy of `variant` over [`TRIALS`] fresh inputs against the fp64 reference of the
    /// unrounded fp32 inputs (so bf16 rounding and int8 quantization count as error).
    fn accuracy(
        &self,
        variant: Variant,
        k: usize,
        rng: &mut SimRng,
    ) -> Result<AccuracySample, CudaError> {
        let mut sample = AccuracySample {
            rel_l2: Vec::new(),
            max_rel: Vec::new(),
        };
        for _ in 0..TRIALS {
            let (out, reference) = match variant {
                Variant::AttnUnfused | Variant::AttnFused => {
                    let len = ACC_ATTN.b * ACC_ATTN.h * ACC_ATTN.l * ACC_ATTN.d;
                    let (q, kk, v) = (random(rng, len), random(rng, len), random(rng, len));
                    let mut w =
                        self.work(variant, (&[], &[], (0, 0, 0)), (ACC_ATTN, &q, &kk, &v))?;
                    self.launch(&mut w, (0, 0, 0), ACC_ATTN)?;
                    let lens = vec![ACC_ATTN.l as i32; ACC_ATTN.b];
                    let scale = 1.0 / (ACC_ATTN.d as f32).sqrt();
                    (
                        self.output(&w)?,
                        r::attention(&q, &kk, &v, &lens, ACC_ATTN, scale),
                    )
                }
                _ => {
                    let mnk = (ACC_MN, ACC_MN, k);
                    let (a, b) = (random(rng, ACC_MN * k), random(rng, k * ACC_MN));
                    let mut w = self.work(variant, (&a, &b, mnk), (ACC_ATTN, &[], &[], &[]))?;
                    self.launch(&mut w, mnk, ACC_ATTN)?;
                    (self.output(&w)?, r::matmul(&a, &b, ACC_MN, ACC_MN, k))
                }
            };
            sample.rel_l2.push(r::relative_error(&out, &reference));
            let max_ref = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
            let max_err = out
                .iter()
                .zip(&reference)
                .fold(0f64, |m, (o, r)| m.max((f64::from(*o) - r).abs()));
            sample
                .max_rel
                .push(max_err / max_ref.max(f64::MIN_POSITIVE));
        }
        Ok(sample)
    }
}

/// Run every variant of `args` on GPU 0.
///
/// # Errors
/// [`CliError::Gpu`] when CUDA or NVML fails (the trace recorded so far is still written);
/// [`CliError`] when a batch cannot be analysed or output fails.
pub(super) fn run(
    args: &CompareArgs,
    config: &RepeatConfig,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let trace_path = args.out_dir.join("compare.wlt");
    let manifest = wattlens_kernels::manifest().map_err(|e| {
        cuda(CudaError::Unavailable(format!(
            "the embedded kernel manifest is unreadable: {e}"
        )))
    })?;
    let profile = SensorProfile::h200_2026_11_22();
    let prof = Profiler::start(
        ProfilerConfig {
            profile: profile.clone(),
            timing: TimingChoice::Auto,
            trace_path: Some(trace_path.clone()),
            ..ProfilerConfig::default()
        }
        .with_manifest(&manifest),
    )
    .map_err(cuda)?;
    let gpu = Gpu {
        prof: &prof,
        s: prof.context(0).map_err(cuda)?.default_stream(),
        ops: Ops::load(&prof, 0).map_err(cuda)?,
    };
    let variants = Variant::of(args.what);
    let n = args.size;
    writeln!(
        out,
        "Compare on {}: matmul {n}³, attention b={} h={} l={} d={} causal; {} batches of {} ms per variant, accuracy over {TRIALS} trials",
        prof.context(0).map_err(cuda)?.name().unwrap_or_default(),
        ATTN.b, ATTN.h, ATTN.l, ATTN.d,
        config.batches,
        config.batch_ns / 1_000_000
    )?;
    let mut rng = SimRng::new(args.seed);
    let mut runs = Vec::new();
    let measured = (|| -> Result<(), CudaError> {
        std::thread::sleep(Duration::from_millis(1500));
        for &v in &variants {
            let t0 = Instant::now();
            let attn_len = ATTN.b * ATTN.h * ATTN.l * ATTN.d;
            let (a, b, q, k, vv) = if matches!(v, Variant::AttnFused | Variant::AttnUnfused) {
                let f = |rng: &mut SimRng| random(rng, attn_len);
                (
                    Vec::new(),
                    Vec::new(),
                    f(&mut rng),
                    f(&mut rng),
                    f(&mut rng),
                )
            } else {
                let f = |rng: &mut SimRng| random(rng, n * n);
                (f(&mut rng), f(&mut rng), Vec::new(), Vec::new(), Vec::new())
            };
            let mnk = (n, n, n);
            let mut w = gpu.work(v, (&a, &b, mnk), (ATTN, &q, &k, &vv))?;
            // Warm up, then size the batches from the launch time.
            let w0 = Instant::now();
            for _ in 0..3 {
                gpu.launch(&mut w, mnk, ATTN)?;
            }
            prof.synchronize(&gpu.s)?;
            let launch_ns = (w0.elapsed().as_nanos() / 3).max(1) as u64;
            let per_batch = (config.batch_ns / launch_ns).clamp(1, 200_000);
            let mut gap_starts = Vec::new();
            for (kb, gap) in plan(config, profile.counter_period_ns)
                .into_iter()
                .enumerate()
            {
                prof.synchronize(&gpu.s)?;
                gap_starts.push(prof.now_ns());
                std::thread::sleep(Duration::from_nanos(gap));
                let _r = prof.region(&batch_region(v, kb));
                for _ in 0..per_batch {
                    gpu.launch(&mut w, mnk, ATTN)?;
                }
                prof.synchronize(&gpu.s)?;
            }
            drop(w);
            let accuracy = {
                let _r = prof.region(&format!("compare/{}/accuracy", v.label()));
                gpu.accuracy(v, n, &mut rng)?
            };
            eprintln!(
                "wattlens: {} measured in {:.1} s ({per_batch} launches per batch)",
                v.label(),
                t0.elapsed().as_secs_f64()
            );
            runs.push((v, per_batch, gap_starts, accuracy));
        }
        prof.synchronize(&gpu.s)?;
        std::thread::sleep(Duration::from_millis(1000));
        Ok(())
    })();
    drop(gpu);
    let trace = match (measured, prof.finish()) {
        (Ok(()), Ok(f)) => f.trace,
        (Err(e), Ok(f)) => {
            crate::commands::save_trace(&trace_path, &f.trace)?;
            return Err(cuda(e));
        }
        (_, Err(aborted)) => {
            crate::commands::save_trace(&trace_path, &aborted.trace)?;
            return Err(cuda(aborted.error));
        }
    };
    crate::commands::save_trace(&trace_path, &trace)?;
    let measured: Vec<Measured> = runs
        .into_iter()
        .map(|(v, per_batch, starts, accuracy)| Measured {
            variant: v,
            batches: batches_in(&trace, v, (starts.len(), per_batch), |k, _| {
                starts.get(k).copied().unwrap_or(0)
            }),
            accuracy: Some(accuracy),
            truth_mj: None,
        })
        .collect();
    report(out, &trace, &measured, (n, config), &args.out_dir)?;
    writeln!(
        out,
        "trace:    {}  (wattlens report {0})",
        trace_path.display()
    )?;
    Ok(())
}
