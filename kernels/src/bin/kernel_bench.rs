//! `wattlens-kernel-bench`: how fast the operator kernels run, against the GPU's peak and
//! against cuBLAS on the same shapes. Kernel times come from CUPTI activity records of a
//! profiling session (the median over repetitions), so launch gaps do not count.
//!
//! Usage: `wattlens-kernel-bench [N]` (matmul size, default 4096).

use std::process::ExitCode;
use std::sync::Arc;

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaStream, DeviceRepr, ValidAsZeroBits};
use wattlens_instrument::trace::SpanKind;
use wattlens_kernels::ops::{AttnInputs, AttnShape, Int8Matrix, MatmulF32, On, Ops};
use wattlens_runtime::{CudaError, Profiler, ProfilerConfig, TimingChoice};

/// Launches of session `prof` on stream `stream`.
fn on<'a>(prof: &'a Profiler, stream: &'a Arc<CudaStream>) -> On<'a> {
    On { prof, stream }
}

/// Repetitions measured after two warm-up runs.
const REPS: usize = 10;

/// Peak throughputs of the device, TFLOP/s (dense tensor-core rates for bf16 and int8).
struct Peaks {
    fp32: f64,
    bf16: f64,
    int8: f64,
}

fn peaks(name: &str) -> Option<Peaks> {
    // NVIDIA's H100 SXM5 / H200 SXM datasheets (the two share their compute rates).
    (name.contains("H100") || name.contains("H200")).then_some(Peaks {
        fp32: 66.9,
        bf16: 989.4,
        int8: 1978.9,
    })
}

/// One repetition of a variant: launches its kernels on the stream.
type Run<'a> = dyn FnMut(&Profiler, &Arc<CudaStream>) -> Result<(), CudaError> + 'a;

/// One measured variant: median time of one repetition (all its kernels), ms.
fn measure(label: &str, run: &mut Run<'_>) -> Result<f64, CudaError> {
    let prof = Profiler::start(ProfilerConfig {
        timing: TimingChoice::Cupti,
        power: false,
        ..ProfilerConfig::default()
    })?;
    let s = prof.context(0)?.default_stream();
    // Each run ends with a synchronisation, so a repetition's kernels (ours, or a library's that
    // CUPTI sees) all run between its region's start and the next one's.
    run(&prof, &s)?;
    run(&prof, &s)?;
    prof.synchronize(&s)?;
    for r in 0..REPS {
        let _m = prof.region(&format!("rep{r}"));
        run(&prof, &s)?;
        prof.synchronize(&s)?;
    }
    let trace = prof.finish().map_err(|a| a.error)?.trace;
    let mut starts: Vec<(u64, usize)> = trace
        .spans
        .iter()
        .filter(|sp| matches!(sp.kind, SpanKind::Region { .. }))
        .filter_map(|sp| {
            let name = trace.strings.get(sp.name)?;
            let r = name.strip_prefix("rep")?.parse::<usize>().ok()?;
            Some((sp.start_ns, r))
        })
        .collect();
    starts.sort_unstable();
    let mut per_rep = [0u64; REPS];
    for span in trace.spans.iter().filter(|sp| sp.kind == SpanKind::Kernel) {
        let rep = starts
            .iter()
            .rev()
            .find(|(t, _)| *t <= span.start_ns)
            .map(|(_, r)| *r);
        if let Some(slot) = rep.and_then(|r| per_rep.get_mut(r)) {
            *slot += span.end_ns.saturating_sub(span.start_ns);
        }
    }
    per_rep.sort_unstable();
    let median_ms = per_rep[REPS / 2] as f64 * 1e-6;
    if median_ms == 0.0 {
        eprintln!("wattlens-kernel-bench: {label}: no kernel spans were timed");
    }
    Ok(median_ms)
}

/// Uniform values in [-1, 1): inputs with real bit patterns (zeros would flatter every kernel's
/// clocks, cuBLAS's included).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = wattlens_instrument::sim::SimRng::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

/// One cuBLAS GEMM on n×n random operands of `T`, on stream `s`.
fn cublas_gemm<T>(
    s: &Arc<CudaStream>,
    n: usize,
    cfg: GemmConfig<T>,
    from_f32: fn(f32) -> T,
) -> Result<(), CudaError>
where
    T: DeviceRepr + ValidAsZeroBits,
    CudaBlas: Gemm<T>,
{
    let cublas =
        |e: cudarc::cublas::result::CublasError| CudaError::Unavailable(format!("cuBLAS: {e:?}"));
    let driver = |e: cudarc::driver::DriverError| CudaError::Unavailable(e.to_string());
    let blas = CudaBlas::new(s.clone()).map_err(cublas)?;
    let host = |seed| -> Vec<T> { random(n * n, seed).into_iter().map(from_f32).collect() };
    let a = s.clone_htod(&host(1)).map_err(driver)?;
    let b = s.clone_htod(&host(2)).map_err(driver)?;
    let mut c = s.alloc_zeros::<T>(n * n).map_err(driver)?;
    // SAFETY: all three matrices hold n·n elements, as the config says.
    unsafe { blas.gemm(cfg, &a, &b, &mut c) }.map_err(cublas)
}

fn row(label: &str, ms: f64, flops: f64, peak: Option<f64>, vs: Option<(f64, &str)>) {
    let tflops = flops / (ms * 1e-3) / 1e12;
    let of_peak = peak.map_or(String::new(), |p| {
        format!("{:>6.1}% of peak", 100.0 * tflops / p)
    });
    let versus = vs.map_or(String::new(), |(other, what)| {
        format!("  {:>6.1}% of {what}", 100.0 * other / ms)
    });
    println!("{label:<34} {ms:>9.3} ms {tflops:>9.2} TFLOP/s {of_peak}{versus}");
}

fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let name = {
        let p = Profiler::start(ProfilerConfig {
            power: false,
            ..ProfilerConfig::default()
        })?;
        let ctx = p.context(0)?;
        let name = ctx.name()?;
        drop(p);
        name
    };
    let peak = peaks(&name);
    println!("{name}: matmuls at {n}³, median of {REPS} after 2 warm-ups (CUPTI kernel time)");
    let flops = 2.0 * (n as f64).powi(3);
    let cfg_f32 = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_N,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: n as i32,
        k: n as i32,
        alpha: 1.0f32,
        lda: n as i32,
        ldb: n as i32,
        beta: 0.0f32,
        ldc: n as i32,
    };
    let cublas_f32 = measure("cuBLAS sgemm", &mut |_p, s| {
        cublas_gemm::<f32>(s, n, cfg_f32, |x| x)
    })?;
    row(
        "cuBLAS sgemm (fp32)",
        cublas_f32,
        flops,
        peak.as_ref().map(|p| p.fp32),
        None,
    );
    for (kind, label) in [
        (MatmulF32::Naive, "matmul fp32 naive"),
        (MatmulF32::Tiled, "matmul fp32 tiled 32×32"),
        (MatmulF32::Register, "matmul fp32 tiled 128×128, 8×8/thread"),
    ] {
        let ms = measure(label, &mut |p, s| {
            let ops = Ops::load(p, 0)?;
            let a = p.upload(s, &random(n * n, 1))?;
            let b = p.upload(s, &random(n * n, 2))?;
            let mut c = p.alloc_zeros::<f32>(s, n * n)?;
            ops.matmul_f32(on(p, s), kind, &a, &b, &mut c, (n, n, n))
        })?;
        row(
            label,
            ms,
            flops,
            peak.as_ref().map(|p| p.fp32),
            Some((cublas_f32, "cuBLAS sgemm")),
        );
    }
    let cfg_bf16 = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: n as i32,
        k: n as i32,
        alpha: half::bf16::ONE,
        lda: n as i32,
        ldb: n as i32,
        beta: half::bf16::ZERO,
        ldc: n as i32,
    };
    let cublas_bf16 = measure("cuBLAS bf16 gemm", &mut |_p, s| {
        cublas_gemm::<half::bf16>(s, n, cfg_bf16, half::bf16::from_f32)
    })?;
    row(
        "cuBLAS bf16 gemm",
        cublas_bf16,
        flops,
        peak.as_ref().map(|p| p.bf16),
        None,
    );
    let ms = measure("matmul bf16 mma", &mut |p, s| {
        let ops = Ops::load(p, 0)?;
        let bits = |seed| -> Vec<u16> {
            random(n * n, seed)
                .into_iter()
                .map(wattlens_kernels::reference::bf16_bits)
                .collect()
        };
        let a = p.upload(s, &bits(1))?;
        let bt = p.upload(s, &bits(2))?;
        let mut c = p.alloc_zeros::<f32>(s, n * n)?;
        ops.matmul_bf16(on(p, s), &a, &bt, &mut c, (n, n, n))
    })?;
    row(
        "matmul bf16 staged (ldmatrix + mma.sync)",
        ms,
        flops,
        peak.as_ref().map(|p| p.bf16),
        Some((cublas_bf16, "cuBLAS bf16")),
    );
    let ms = measure("matmul int8 dp4a", &mut |p, s| {
        let ops = Ops::load(p, 0)?;
        let packed = |seed| -> Vec<i32> {
            let q: Vec<i8> = random(n * n, seed)
                .into_iter()
                .map(|x| (x * 127.0) as i8)
                .collect();
            wattlens_kernels::reference::pack_int8(&q)
        };
        let a = p.upload(s, &packed(1))?;
        let bt = p.upload(s, &packed(2))?;
        let sa = p.upload(s, &vec![1.0f32 / 127.0; n])?;
        let sb = p.upload(s, &vec![1.0f32 / 127.0; n])?;
        let mut c = p.alloc_zeros::<f32>(s, n * n)?;
        let a = Int8Matrix {
            packed: &a,
            scales: &sa,
        };
        let bt = Int8Matrix {
            packed: &bt,
            scales: &sb,
        };
        ops.matmul_int8(on(p, s), a, bt, &mut c, (n, n, n))
    })?;
    row(
        "matmul int8 dp4a",
        ms,
        flops,
        peak.as_ref().map(|p| p.int8),
        None,
    );

    let shape = AttnShape {
        b: 4,
        h: 12,
        l: 1024,
        d: 64,
        causal: true,
    };
    let len = shape.b * shape.h * shape.l * shape.d;
    // QKᵀ and P·V over the causal half.
    let attn_flops =
        2.0 * 2.0 * (shape.b * shape.h) as f64 * (shape.l * shape.l) as f64 / 2.0 * shape.d as f64;
    println!(
        "attention b=4 h=12 l=1024 d=64 causal ({:.1} GFLOP useful)",
        attn_flops / 1e9
    );
    for fused in [false, true] {
        let label = if fused {
            "attention fused (flash-style)"
        } else {
            "attention unfused (3 kernels)"
        };
        let ms = measure(label, &mut |p, s| {
            let ops = Ops::load(p, 0)?;
            let q = p.upload(s, &random(len, 1))?;
            let k = p.upload(s, &random(len, 2))?;
            let v = p.upload(s, &random(len, 3))?;
            let mut o = p.alloc_zeros::<f32>(s, len)?;
            let mut lens = p.alloc_zeros::<i32>(s, shape.b)?;
            p.htod(s, &vec![shape.l as i32; shape.b], &mut lens)?;
            let inputs = AttnInputs {
                q: &q,
                k: &k,
                v: &v,
                lens: &lens,
            };
            if fused {
                ops.attention_fused(on(p, s), inputs, &mut o, shape, 0.125)
            } else {
                let mut scores = p.alloc_zeros::<f32>(s, shape.b * shape.h * shape.l * shape.l)?;
                ops.attention_unfused(on(p, s), inputs, &mut o, &mut scores, shape, 0.125)
            }
        })?;
        row(label, ms, attn_flops, peak.as_ref().map(|p| p.fp32), None);
    }
    Ok(())
}

fn main() -> ExitCode {
    let n = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 4096,
        Some(Ok(n)) if n >= 64 && n % 64 == 0 => n,
        Some(_) => {
            eprintln!("wattlens-kernel-bench: the size must be a multiple of 64, at least 64");
            return ExitCode::from(2);
        }
    };
    match run(n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wattlens-kernel-bench: {e}");
            ExitCode::from(1)
        }
    }
}
