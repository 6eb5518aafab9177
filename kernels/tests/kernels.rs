//! The embedded PTX is what the launchers expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use wattlens_kernels::calibration::{KERNELS, PTX};

/// GPU tests that open a profiling session take this lock: CUPTI's records carry no session, so
/// the runtime refuses a second CUPTI session on one GPU while the first runs.
pub fn gpu_session_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn the_manifest_holds_the_pass_facts_of_every_shipped_kernel() {
    use wattlens_instrument::{AccessMode, OpClass};
    let m = wattlens_kernels::manifest().unwrap();
    for k in KERNELS
        .iter()
        .chain(wattlens_kernels::runtime_checks::KERNELS)
    {
        assert!(m.kernels.contains_key(*k), "{k} has no facts");
    }
    let saxpy = &m.kernels[wattlens_kernels::runtime_checks::SAXPY];
    assert_eq!(saxpy.op_class, OpClass::Elementwise);
    assert_eq!(
        saxpy.arg_access,
        [
            AccessMode::None,
            AccessMode::Read,
            AccessMode::ReadWrite,
            AccessMode::None
        ]
    );
    assert_eq!(m.kernels["sgemm_tiled"].op_class, OpClass::Matmul);
    assert_eq!(m.kernels["attn_fused"].op_class, OpClass::Attention);
    // The tagged IR reached llc: the PTX still defines the fixtures.
    assert!(wattlens_kernels::pass_fixtures::PTX.contains(".entry attn_fused("));
    let host = wattlens_kernels::host_demo::manifest().unwrap();
    assert_eq!(host.sites.len(), 2);
    assert_eq!(host.regions.len(), 2);
}

#[test]
fn the_portable_build_targets_sm80_with_the_same_kernels() {
    use wattlens_kernels::{calibration, ops, runtime_checks};
    for (sm90, sm80) in [
        (calibration::PTX, calibration::PTX_SM80),
        (runtime_checks::PTX, runtime_checks::PTX_SM80),
        (ops::PTX, ops::PTX_SM80),
    ] {
        assert!(sm80.contains(".target sm_80"), "not an sm_80 build");
        let entries = |p: &str| {
            p.lines()
                .filter(|l| l.contains(".entry "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(entries(sm90), entries(sm80));
    }
    assert!(ops::PTX_SM80.contains("mma.sync.aligned.m16n8k16"));
}

#[test]
fn ptx_targets_sm90_and_defines_every_kernel() {
    assert!(PTX.contains(".target sm_90"), "PTX is not for sm_90");
    for k in KERNELS {
        assert!(
            PTX.contains(&format!(".entry {k}(")),
            "kernel {k} missing from the PTX"
        );
    }
    // The spin kernels must really be FMA-bound.
    assert!(PTX.matches("fma.rn.f32").count() >= 128);
}

mod runtime_gpu {
    //! The runtime on a real GPU: recorded spans, versions, digests, regions, errors.

    use cudarc::driver::LaunchConfig;
    use wattlens_instrument::trace::{CopyDirection, SpanKind, Trace};
    use wattlens_kernels::runtime_checks as k;
    use wattlens_runtime::internal::digest::{content_digest, ContentHash};
    use wattlens_runtime::{
        CudaError, ProfiledArg, Profiler, ProfilerConfig, TimingChoice, TimingMethod,
    };

    fn config(timing: TimingChoice) -> ProfilerConfig {
        // Facts come from the manifest the pass wrote at build time.
        ProfilerConfig {
            timing,
            power: false,
            ..ProfilerConfig::default()
        }
        .with_manifest(&wattlens_kernels::manifest().unwrap())
    }

    const N: usize = 1 << 20;

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn a_second_cupti_session_on_one_gpu_is_refused_and_auto_falls_back_to_events() {
        let _gpu = super::gpu_session_lock();
        let first = Profiler::start(config(TimingChoice::Cupti)).unwrap();
        let err = Profiler::start(config(TimingChoice::Cupti))
            .err()
            .expect("a second CUPTI session must be refused");
        assert!(
            err.to_string().contains("another wattlens session"),
            "{err}"
        );
        let auto = Profiler::start(config(TimingChoice::Auto)).unwrap();
        assert_eq!(auto.timing(), &[TimingMethod::Events]);
        drop(auto);
        drop(first);
        let again = Profiler::start(config(TimingChoice::Cupti)).unwrap();
        assert_eq!(again.timing(), &[TimingMethod::Cupti]);
    }

    fn saxpy_session(timing: TimingChoice) -> (Trace, Vec<f32>) {
        let _gpu = super::gpu_session_lock();
        let prof = Profiler::start(config(timing)).unwrap();
        let stream = prof.context(0).unwrap().default_stream();
        let m = prof.load_ptx(0, k::PTX).unwrap();
        let saxpy = prof.kernel(&m, k::SAXPY).unwrap();
        let host_x: Vec<f32> = (0..N).map(|i| i as f32).collect();
        let mut x = prof.alloc_zeros::<f32>(&stream, N).unwrap();
        let mut y = prof.alloc_zeros::<f32>(&stream, N).unwrap();
        prof.htod(&stream, &host_x, &mut x).unwrap();
        let cfg = LaunchConfig::for_num_elems(N as u32);
        {
            let _layer = prof.region("layer0");
            let _op = prof.region("axpy");
            for _ in 0..2 {
                // SAFETY: saxpy(float a, const float *x, float *y, u64 n) with n-element buffers.
                unsafe {
                    prof.launch(&stream, &saxpy)
                        .arg(&2.0f32)
                        .arg(&x)
                        .arg(&mut y)
                        .arg(&(N as u64))
                        .launch(cfg)
                }
                .unwrap();
            }
        }
        let mut out = vec![0f32; N];
        prof.dtoh(&stream, &y, &mut out).unwrap();
        let finished = prof.finish().unwrap();
        assert_eq!(finished.untimed, 0);
        (finished.trace, out)
    }

    fn check_saxpy(trace: &Trace, out: &[f32]) {
        assert!(out.iter().enumerate().all(|(i, &v)| v == 4.0 * i as f32));
        let ops: Vec<_> = trace.spans.iter().filter(|s| s.is_device_work()).collect();
        let kinds: Vec<&str> = ops.iter().map(|s| s.kind.label()).collect();
        assert_eq!(
            kinds,
            ["memset", "memset", "memcpy", "kernel", "kernel", "memcpy"]
        );
        for w in ops.windows(2) {
            assert!(
                w[0].end_ns <= w[1].start_ns + 1_000,
                "stream order kept: {w:?}"
            );
        }
        for s in &ops {
            assert!(s.start_ns > trace.meta.start_unix_ns && s.end_ns >= s.start_ns);
        }
        let (x_id, y_id) = (ops[0].writes[0].buffer, ops[1].writes[0].buffer);
        let k1 = ops[3];
        assert_eq!(trace.str(k1.region), "layer0/axpy");
        assert!(
            trace.str(k1.site).contains("kernels.rs:"),
            "{}",
            trace.str(k1.site)
        );
        assert_ne!(k1.args_digest, 0);
        assert_eq!(k1.args_digest, ops[4].args_digest);
        // x: memset v1, copy v2; y: memset v1, kernel v2, kernel v3.
        assert_eq!((k1.reads[0].buffer, k1.reads[0].version), (x_id, 2));
        assert_eq!((k1.writes[0].buffer, k1.writes[0].version), (y_id, 2));
        assert_eq!(ops[4].writes[0].version, 3);
        assert!(k1.unknown_access.is_empty());
        let SpanKind::Memcpy {
            direction,
            content_digest: d,
            bytes,
        } = ops[5].kind
        else {
            panic!("not a copy")
        };
        assert_eq!(
            (direction, bytes),
            (CopyDirection::DeviceToHost, (N * 4) as u64)
        );
        let bytes_of: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(d, content_digest(&bytes_of, ContentHash::Sampled));
        assert!(trace
            .spans
            .iter()
            .any(|s| s.kind == SpanKind::Region { depth: 1 } && trace.str(s.name) == "axpy"));
        assert!(!trace.alignments.is_empty());
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn a_cupti_session_records_spans_versions_digests_and_regions() {
        let (trace, out) = saxpy_session(TimingChoice::Cupti);
        check_saxpy(&trace, &out);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn an_event_session_records_the_same() {
        let (trace, out) = saxpy_session(TimingChoice::Events);
        check_saxpy(&trace, &out);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn wrong_arguments_are_a_clear_error_not_a_launch() {
        let _gpu = super::gpu_session_lock();
        let prof = Profiler::start(config(TimingChoice::Auto)).unwrap();
        let stream = prof.context(0).unwrap().default_stream();
        let m = prof.load_ptx(0, k::PTX).unwrap();
        let saxpy = prof.kernel(&m, k::SAXPY).unwrap();
        let x = prof.alloc_zeros::<f32>(&stream, 16).unwrap();
        // SAFETY: the profiler rejects this launch before it reaches the driver.
        let err = unsafe {
            prof.launch(&stream, &saxpy)
                .arg(&2.0f32)
                .arg(&x)
                .launch(LaunchConfig::for_num_elems(16))
        }
        .unwrap_err();
        assert!(matches!(err, CudaError::Arguments { .. }), "{err}");
        assert!(
            err.to_string().contains("takes 4 parameters but 2"),
            "{err}"
        );
        // SAFETY: as above: a 2-byte scalar where a 4-byte float is expected.
        let err = unsafe {
            prof.launch(&stream, &saxpy)
                .arg(&2u16)
                .arg(&x)
                .arg(&x)
                .arg(&16u64)
                .launch(LaunchConfig::for_num_elems(16))
        }
        .unwrap_err();
        assert!(err.to_string().contains("parameter 0 is 4 bytes"), "{err}");
        let finished = prof.finish().unwrap();
        assert!(!finished
            .trace
            .spans
            .iter()
            .any(|s| s.kind == SpanKind::Kernel));
    }

    /// Runs in a child process: a fault poisons the CUDA context for the whole process.
    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn fault_child() {
        if std::env::var_os("WATTLENS_FAULT_CHILD").is_none() {
            return;
        }
        let trace_path = std::env::temp_dir().join("wattlens-fault-child.trace");
        let _gpu = super::gpu_session_lock();
        let prof = Profiler::start(ProfilerConfig {
            trace_path: Some(trace_path),
            ..config(TimingChoice::Auto)
        })
        .unwrap();
        let stream = prof.context(0).unwrap().default_stream();
        let m = prof.load_ptx(0, k::PTX).unwrap();
        let saxpy = prof.kernel(&m, k::SAXPY).unwrap();
        let fault = prof.kernel(&m, k::FAULT_WRITE).unwrap();
        let x = prof.alloc_zeros::<f32>(&stream, 1024).unwrap();
        let mut y = prof.alloc_zeros::<f32>(&stream, 1024).unwrap();
        // SAFETY: saxpy over 1024-element buffers.
        unsafe {
            prof.launch(&stream, &saxpy)
                .arg(&1.0f32)
                .arg(&x)
                .arg(&mut y)
                .arg(&1024u64)
                .launch(LaunchConfig::for_num_elems(1024))
        }
        .unwrap();
        prof.synchronize(&stream).unwrap();
        // SAFETY: deliberately invalid: the fault is what this test checks.
        unsafe {
            prof.launch(&stream, &fault)
                .arg(&16u64)
                .launch(LaunchConfig::for_num_elems(32))
        }
        .unwrap();
        match prof.finish() {
            Ok(_) => println!("CHILD-RESULT no error"),
            Err(aborted) => {
                let kernels: Vec<&str> = aborted
                    .trace
                    .spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Kernel)
                    .map(|s| aborted.trace.str(s.name))
                    .collect();
                println!(
                    "CHILD-RESULT error: {} | kernels kept: {kernels:?}",
                    aborted.error
                );
            }
        }
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn a_kernel_fault_names_the_kernel_and_keeps_the_trace() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "runtime_gpu::fault_child",
                "--include-ignored",
                "--nocapture",
            ])
            .env("WATTLENS_FAULT_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("CHILD-RESULT"))
            .unwrap_or_else(|| {
                panic!(
                    "child printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(line.contains("error:"), "{line}");
        assert!(line.contains("fault_write"), "{line}");
        assert!(
            line.contains("illegal") || line.contains("ILLEGAL"),
            "{line}"
        );
        assert!(
            line.contains("\"saxpy\""),
            "the kernel before the fault is kept: {line}"
        );
    }
}

mod access_gpu {
    //! Access modes confirmed on the GPU: poison every buffer, run the kernel, and check that
    //! no buffer the pass called read-only or unused changed.

    use std::sync::Arc;

    use cudarc::driver::CudaContext;
    use cudarc::nvrtc::Ptx;
    use wattlens_kernels::access_check::{check, LaunchSpec};
    use wattlens_kernels::pass_fixtures::{PTX, SOURCE};

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn no_buffer_the_pass_called_read_only_changes() {
        let ctx: Arc<CudaContext> = CudaContext::new(0).unwrap();
        let module = ctx.load_module(Ptx::from_src(PTX)).unwrap();
        let manifest = wattlens_kernels::manifest().unwrap();
        let specs = LaunchSpec::all_in(SOURCE).unwrap();
        assert_eq!(specs.len(), 22);
        let mut violations = Vec::new();
        let (mut changed, mut loose) = (0, 0);
        for spec in &specs {
            let out = check(&ctx, &module, spec, manifest.kernels.get(&spec.kernel)).unwrap();
            println!(
                "access-check {}: changed {:?}, writable but unchanged {:?}, violations {:?}",
                out.kernel, out.changed, out.unchanged_writable, out.violations
            );
            changed += out.changed.len();
            loose += out.unchanged_writable.len();
            if !out.violations.is_empty() {
                violations.push(format!("{}: {:?}", out.kernel, out.violations));
            }
        }
        println!("access-check summary: {} kernels, {changed} buffers changed as allowed, {loose} writable buffers unchanged, {} violations", specs.len(), violations.len());
        assert!(
            changed >= 22,
            "every kernel writes something: the check must see changes"
        );
        assert!(
            violations.is_empty(),
            "buffers changed against the facts: {violations:?}"
        );
    }
}

mod host_gpu {
    //! The pass-instrumented C host program on a real GPU, inside a profiling session.

    use wattlens_instrument::trace::SpanKind;
    use wattlens_kernels::{host_demo, runtime_checks};
    use wattlens_runtime::{Profiler, ProfilerConfig, TimingChoice};

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn the_trace_shows_the_programs_regions_and_launch_sites() {
        let config = ProfilerConfig {
            timing: TimingChoice::Cupti,
            power: false,
            ..ProfilerConfig::default()
        }
        .with_manifest(&host_demo::manifest().unwrap());
        let _gpu = super::gpu_session_lock();
        let prof = Profiler::start(config).unwrap();
        assert_eq!(
            host_demo::run(runtime_checks::PTX),
            0,
            "the C program failed"
        );
        let trace = prof.finish().unwrap().trace;
        let text = |id| trace.strings.get(id).unwrap_or("").to_owned();
        let regions: Vec<String> = trace
            .spans
            .iter()
            .filter(|s| matches!(s.kind, SpanKind::Region { .. }))
            .map(|s| text(s.name))
            .collect();
        println!("host-e2e regions: {regions:?}");
        assert_eq!(regions.iter().filter(|r| *r == "prefill").count(), 1);
        assert_eq!(regions.iter().filter(|r| *r == "decode").count(), 4);
        let kernels: Vec<(String, String, String)> = trace
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .map(|s| (text(s.name), text(s.region), text(s.site)))
            .collect();
        for k in &kernels {
            println!("host-e2e kernel: {k:?}");
        }
        assert_eq!(
            kernels.len(),
            5,
            "two launches in prefill, three decode steps"
        );
        assert!(kernels.iter().all(|(n, _, _)| n.starts_with("saxpy")));
        assert_eq!(kernels.iter().filter(|(_, r, _)| r == "prefill").count(), 2);
        assert_eq!(kernels.iter().filter(|(_, r, _)| r == "decode").count(), 3);
        assert!(
            kernels
                .iter()
                .all(|(_, _, site)| site.contains("launch_demo.c:")),
            "every launch carries its file:line"
        );
    }
}

mod ops_gpu {
    //! Every operator kernel against its CPU reference on fresh random inputs:
    //! ‖out − ref‖ / ‖ref‖ under a threshold per precision.

    use std::sync::Arc;

    use cudarc::driver::CudaStream;
    use wattlens_instrument::sim::SimRng;
    use wattlens_kernels::ops::{
        AttnInputs, AttnShape, Int8Matrix, LayerNormWeights, MatmulF32, On, Ops,
    };
    use wattlens_kernels::reference as r;
    use wattlens_runtime::{DeviceBuffer, Profiler, ProfilerConfig, TimingChoice};

    /// `n` values uniform in [-1, 1).
    fn uniform(rng: &mut SimRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    fn up<
        T: wattlens_runtime::Scalar + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
    >(
        prof: &Profiler,
        s: &Arc<CudaStream>,
        v: &[T],
    ) -> DeviceBuffer<T> {
        let mut b = prof.alloc_zeros::<T>(s, v.len()).unwrap();
        prof.htod(s, v, &mut b).unwrap();
        b
    }

    fn down(prof: &Profiler, s: &Arc<CudaStream>, b: &DeviceBuffer<f32>) -> Vec<f32> {
        let mut out = vec![0f32; b.len()];
        prof.dtoh(s, b, &mut out).unwrap();
        out
    }

    fn expect(name: &str, out: &[f32], reference: &[f64], bound: f64, errors: &mut Vec<String>) {
        let e = r::relative_error(out, reference);
        println!("ops-check {name}: relative error {e:.3e} (bound {bound:.0e})");
        if e.is_nan() || e > bound {
            errors.push(format!("{name}: {e:.3e} > {bound:.0e}"));
        }
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn every_operator_matches_its_cpu_reference() {
        let config = ProfilerConfig {
            timing: TimingChoice::Cupti,
            power: false,
            ..ProfilerConfig::default()
        }
        .with_manifest(&wattlens_kernels::manifest().unwrap());
        let _gpu = super::gpu_session_lock();
        let prof = Profiler::start(config).unwrap();
        let s = prof.context(0).unwrap().default_stream();
        let on = On {
            prof: &prof,
            stream: &s,
        };
        let ops = Ops::load(&prof, 0).unwrap();
        let mut rng = SimRng::new(std::process::id() as u64);
        let mut errors = Vec::new();

        // fp32 matmuls on a shape that is no multiple of any tile.
        let (m, n, k) = (131, 97, 203);
        let (a, b) = (uniform(&mut rng, m * k), uniform(&mut rng, k * n));
        let reference = r::matmul(&a, &b, m, n, k);
        let (da, db) = (up(&prof, &s, &a), up(&prof, &s, &b));
        for kind in [MatmulF32::Naive, MatmulF32::Tiled, MatmulF32::Register] {
            let mut dc = prof.alloc_zeros::<f32>(&s, m * n).unwrap();
            ops.matmul_f32(on, kind, &da, &db, &mut dc, (m, n, k))
                .unwrap();
            expect(
                &format!("matmul fp32 {kind:?}"),
                &down(&prof, &s, &dc),
                &reference,
                1e-5,
                &mut errors,
            );
        }
        // A wrong shape is refused before launching.
        let mut small = prof.alloc_zeros::<f32>(&s, 3).unwrap();
        assert!(ops
            .matmul_f32(on, MatmulF32::Naive, &da, &db, &mut small, (m, n, k))
            .is_err());

        // bf16 on tensor cores, against the same bf16-rounded inputs: a shape for the kernel
        // that reads fragments from global memory, one that fills 128×128×32 tiles (the
        // staged ldmatrix kernel), and the portable sm_80 build (PTX JIT-compiled forward).
        let ops80 = Ops::load_from(&prof, 0, wattlens_kernels::ops::PTX_SM80).unwrap();
        for (label, kernels, (m, n, k)) in [
            ("matmul bf16 mma", &ops, (128, 96, 256)),
            ("matmul bf16 staged (ldmatrix)", &ops, (256, 384, 512)),
            ("matmul bf16 mma (sm_80 build)", &ops80, (128, 96, 256)),
        ] {
            let a: Vec<u16> = uniform(&mut rng, m * k)
                .into_iter()
                .map(r::bf16_bits)
                .collect();
            let bt: Vec<u16> = uniform(&mut rng, n * k)
                .into_iter()
                .map(r::bf16_bits)
                .collect();
            let af: Vec<f32> = a.iter().map(|&x| r::bf16_value(x)).collect();
            let bf: Vec<f32> = (0..k * n)
                .map(|i| r::bf16_value(bt[(i % n) * k + i / n]))
                .collect();
            let mut dc = prof.alloc_zeros::<f32>(&s, m * n).unwrap();
            kernels
                .matmul_bf16(
                    on,
                    &up(&prof, &s, &a),
                    &up(&prof, &s, &bt),
                    &mut dc,
                    (m, n, k),
                )
                .unwrap();
            expect(
                label,
                &down(&prof, &s, &dc),
                &r::matmul(&af, &bf, m, n, k),
                1e-5,
                &mut errors,
            );
        }

        // int8 with per-channel scales: exact integer sums, scaled.
        let (m, n, k) = (64, 48, 128);
        let ai: Vec<i8> = (0..m * k)
            .map(|_| ((rng.uniform(-1.0, 1.0) as f32) * 127.0) as i8)
            .collect();
        let bi: Vec<i8> = (0..n * k)
            .map(|_| ((rng.uniform(-1.0, 1.0) as f32) * 127.0) as i8)
            .collect();
        let (sa, sb): (Vec<f32>, Vec<f32>) = (
            uniform(&mut rng, m)
                .iter()
                .map(|x| 0.01 + x.abs() / 50.0)
                .collect(),
            uniform(&mut rng, n)
                .iter()
                .map(|x| 0.01 + x.abs() / 50.0)
                .collect(),
        );
        let mut dc = prof.alloc_zeros::<f32>(&s, m * n).unwrap();
        let (a4, b4) = (
            up(&prof, &s, &r::pack_int8(&ai)),
            up(&prof, &s, &r::pack_int8(&bi)),
        );
        let (dsa, dsb) = (up(&prof, &s, &sa), up(&prof, &s, &sb));
        let a = Int8Matrix {
            packed: &a4,
            scales: &dsa,
        };
        let bt = Int8Matrix {
            packed: &b4,
            scales: &dsb,
        };
        ops.matmul_int8(on, a, bt, &mut dc, (m, n, k)).unwrap();
        expect(
            "matmul int8 dp4a",
            &down(&prof, &s, &dc),
            &r::matmul_int8(&ai, &bi, &sa, &sb, m, n, k),
            1e-6,
            &mut errors,
        );

        // Attention, unfused and fused, causal and not, with a padded batch row.
        for causal in [true, false] {
            let shape = AttnShape {
                b: 2,
                h: 3,
                l: 37,
                d: 32,
                causal,
            };
            let len = shape.b * shape.h * shape.l * shape.d;
            let (q, kk, v) = (
                uniform(&mut rng, len),
                uniform(&mut rng, len),
                uniform(&mut rng, len),
            );
            let lens = [37, 20];
            let scale = 1.0 / (shape.d as f32).sqrt();
            let reference = r::attention(&q, &kk, &v, &lens, shape, scale);
            let (dq, dk, dv, dl) = (
                up(&prof, &s, &q),
                up(&prof, &s, &kk),
                up(&prof, &s, &v),
                up(&prof, &s, &lens),
            );
            let mut o = prof.alloc_zeros::<f32>(&s, len).unwrap();
            let mut scores = prof
                .alloc_zeros::<f32>(&s, shape.b * shape.h * shape.l * shape.l)
                .unwrap();
            let inputs = AttnInputs {
                q: &dq,
                k: &dk,
                v: &dv,
                lens: &dl,
            };
            ops.attention_unfused(on, inputs, &mut o, &mut scores, shape, scale)
                .unwrap();
            expect(
                &format!("attention unfused causal={causal}"),
                &down(&prof, &s, &o),
                &reference,
                1e-5,
                &mut errors,
            );
            let mut o = prof.alloc_zeros::<f32>(&s, len).unwrap();
            ops.attention_fused(on, inputs, &mut o, shape, scale)
                .unwrap();
            expect(
                &format!("attention fused causal={causal}"),
                &down(&prof, &s, &o),
                &reference,
                1e-5,
                &mut errors,
            );
        }

        // Softmax, norms, activations, residual add.
        let (rows, d) = (64, 257);
        let x = uniform(&mut rng, rows * d);
        let dx = up(&prof, &s, &x);
        let mut sm = up(&prof, &s, &x);
        ops.softmax(on, &mut sm, rows, d).unwrap();
        expect(
            "softmax",
            &down(&prof, &s, &sm),
            &r::softmax_rows(&x, rows, d),
            1e-5,
            &mut errors,
        );
        let (g, bta) = (uniform(&mut rng, d), uniform(&mut rng, d));
        let mut y = prof.alloc_zeros::<f32>(&s, rows * d).unwrap();
        let (dg, dbeta) = (up(&prof, &s, &g), up(&prof, &s, &bta));
        let weights = LayerNormWeights {
            gamma: &dg,
            beta: &dbeta,
        };
        ops.layernorm(on, &dx, weights, &mut y, rows, d).unwrap();
        expect(
            "layernorm",
            &down(&prof, &s, &y),
            &r::layernorm(&x, &g, &bta, rows, d, 1e-5),
            1e-5,
            &mut errors,
        );
        ops.rmsnorm(on, &dx, &up(&prof, &s, &g), &mut y, rows, d)
            .unwrap();
        expect(
            "rmsnorm",
            &down(&prof, &s, &y),
            &r::rmsnorm(&x, &g, rows, d, 1e-5),
            1e-5,
            &mut errors,
        );
        let x4: Vec<f32> = x.iter().map(|v| v * 4.0).collect();
        let dx4 = up(&prof, &s, &x4);
        ops.gelu(on, &dx4, &mut y, x4.len()).unwrap();
        expect(
            "gelu",
            &down(&prof, &s, &y),
            &r::gelu(&x4),
            1e-5,
            &mut errors,
        );
        ops.silu(on, &dx4, &mut y).unwrap();
        expect(
            "silu",
            &down(&prof, &s, &y),
            &r::silu(&x4),
            1e-5,
            &mut errors,
        );
        ops.residual_add(on, &dx, &dx4, &mut y, x.len()).unwrap();
        let sum: Vec<f64> = x.iter().zip(&x4).map(|(a, b)| f64::from(*a + *b)).collect();
        expect("residual add", &down(&prof, &s, &y), &sum, 0.0, &mut errors);
        // Over the first elements only: the rest of Y keeps what it held (the sum above).
        let half = x.len() / 2;
        ops.gelu(on, &dx4, &mut y, half).unwrap();
        let mut head_gelu = r::gelu(&x4[..half]);
        head_gelu.extend_from_slice(&sum[half..]);
        expect(
            "gelu, first half",
            &down(&prof, &s, &y),
            &head_gelu,
            1e-5,
            &mut errors,
        );
        ops.residual_add(on, &dx, &dx4, &mut y, half).unwrap();
        expect(
            "residual add, first half",
            &down(&prof, &s, &y),
            &sum,
            0.0,
            &mut errors,
        );

        // Data movement: exact.
        let (vocab, d) = (50, 96);
        let table = uniform(&mut rng, vocab * d);
        let ids: Vec<i32> = (0..17).map(|i| (i * 7 % vocab) as i32).collect();
        let mut out = prof.alloc_zeros::<f32>(&s, ids.len() * d).unwrap();
        ops.embedding(
            on,
            &up(&prof, &s, &ids),
            &up(&prof, &s, &table),
            &mut out,
            d,
        )
        .unwrap();
        expect(
            "embedding gather",
            &down(&prof, &s, &out),
            &r::embedding(&ids, &table, d),
            0.0,
            &mut errors,
        );
        let (b, h, hd, max_len) = (2, 3, 64, 10);
        let knew = uniform(&mut rng, b * h * hd);
        let pos = [4, 9];
        let mut cache = prof.alloc_zeros::<f32>(&s, b * h * max_len * hd).unwrap();
        ops.kv_append(
            on,
            &up(&prof, &s, &knew),
            &mut cache,
            &up(&prof, &s, &pos),
            (b, h, hd),
            max_len,
        )
        .unwrap();
        let mut want = vec![0.0f64; b * h * max_len * hd];
        for bh in 0..b * h {
            for x in 0..hd {
                want[(bh * max_len + pos[bh / h] as usize) * hd + x] = f64::from(knew[bh * hd + x]);
            }
        }
        expect(
            "kv append",
            &down(&prof, &s, &cache),
            &want,
            0.0,
            &mut errors,
        );
        let (tr, tc) = (100, 37);
        let t = uniform(&mut rng, tr * tc);
        let mut out = prof.alloc_zeros::<f32>(&s, tr * tc).unwrap();
        ops.transpose(on, &up(&prof, &s, &t), &mut out, tr, tc)
            .unwrap();
        expect(
            "transpose",
            &down(&prof, &s, &out),
            &r::transpose(&t, tr, tc),
            0.0,
            &mut errors,
        );

        let finished = prof.finish().unwrap();
        let kernels = finished
            .trace
            .spans
            .iter()
            .filter(|sp| sp.kind == wattlens_instrument::trace::SpanKind::Kernel)
            .count();
        println!("ops-check: {kernels} kernel spans in the trace");
        assert!(errors.is_empty(), "{errors:?}");
    }
}

mod pipeline_gpu {
    //! The inference pipeline on a real GPU against the CPU reference of the same model.

    use wattlens_instrument::trace::{Annotation, LaunchShape, Span, SpanKind, Trace};
    use wattlens_kernels::pipeline::{
        Decoder, Generation, MatmulBackend, ModelConfig, ReferenceRun, Waste, Weights,
    };
    use wattlens_kernels::reference::relative_error;
    use wattlens_runtime::{Profiler, ProfilerConfig, TimingChoice};

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn gpt2_small_logits_match_the_cpu_reference_over_a_padded_batch() {
        check_pipeline(MatmulBackend::Own);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn with_cublas_matmuls_the_logits_match_and_cublas_kernels_sit_in_their_regions() {
        check_pipeline(MatmulBackend::Cublas);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn every_cublas_kernel_of_every_shape_is_matched_to_its_call() {
        // Decoding 8 rows of 120 tokens without a cache runs GEMMs of 960 to 1080 rows, where
        // cuBLAS picks CUTLASS kernels for some shapes (H200, CUDA 13), launched through the
        // driver API; each must still carry its call's region, pass and output.
        let cfg = ModelConfig::gpt2_small();
        let weights = std::sync::Arc::new(Weights::random(&cfg));
        let prompts: Vec<Vec<i32>> = (0..8)
            .map(|r| (0..120).map(|t| (r * 131 + t * 7) % 50_000).collect())
            .collect();
        let steps = 16;
        let no_cache = Waste {
            no_kv_cache: true,
            ..Waste::default()
        };
        let _gpu = super::gpu_session_lock();
        let cublas = MatmulBackend::Cublas;
        let (_, finished) = generate_session(&weights, &prompts, (no_cache, steps), cublas, None);
        let trace = finished.trace;
        let kernels: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .collect();
        let name = |s: &wattlens_instrument::trace::Span| trace.str(s.name).to_owned();
        let unmatched: std::collections::BTreeSet<String> = kernels
            .iter()
            .map(|s| name(s))
            .filter(|n| n.ends_with("(not issued through wattlens)"))
            .collect();
        assert!(
            unmatched.is_empty(),
            "kernels outside any call: {unmatched:?}"
        );
        let calls_with_output = kernels
            .iter()
            .filter(|s| name(s).ends_with("(in cublas_sgemm)") && !s.writes.is_empty())
            .count();
        // Per pass (the prefill and each step): 4 GEMMs a layer and the lm_head.
        assert_eq!(calls_with_output, steps * (4 * cfg.layers + 1));
        let names: std::collections::BTreeSet<String> = kernels
            .iter()
            .map(|s| name(s))
            .filter(|n| n.ends_with("(in cublas_sgemm)"))
            .map(|n| n.chars().take(48).collect())
            .collect();
        println!("cuBLAS kernels seen: {names:?}");
    }

    /// Generate `steps` tokens for `prompts` with GPT-2-small shapes and `weights`, with the
    /// planted `waste`, in a profiling session of its own; returns the tokens and the trace.
    fn generate_with(
        weights: &std::sync::Arc<Weights>,
        prompts: &[Vec<i32>],
        waste: Waste,
        steps: usize,
    ) -> (Generation, Trace) {
        let (gen, finished) =
            generate_session(weights, prompts, (waste, steps), MatmulBackend::Own, None);
        (gen, finished.trace)
    }

    /// [`generate_with`] with the matmuls on `backend`, replaying each kernel signature alone
    /// for `alone_ns` where given; the whole finished session comes back.
    fn generate_session(
        weights: &std::sync::Arc<Weights>,
        prompts: &[Vec<i32>],
        (waste, steps): (Waste, usize),
        backend: MatmulBackend,
        alone_ns: Option<u64>,
    ) -> (Generation, wattlens_runtime::Finished) {
        let config = ProfilerConfig {
            timing: TimingChoice::Cupti,
            power: false,
            measure_alone_ns: alone_ns,
            ..ProfilerConfig::default()
        }
        .with_manifest(&wattlens_kernels::manifest().unwrap());
        let prof = Profiler::start(config).unwrap();
        let mut decoder = Decoder::new(
            &prof,
            ModelConfig::gpt2_small(),
            weights.clone(),
            prompts.len(),
        )
        .unwrap();
        decoder.set_matmul_backend(backend).unwrap();
        decoder.set_waste(waste);
        let gen = decoder.generate(prompts, steps).unwrap();
        drop(decoder);
        (gen, prof.finish().unwrap())
    }

    /// Assert that two generations chose the same tokens, with logits within `bound`
    /// (relative error); `what` names the change between them.
    fn assert_same_results(a: &Generation, b: &Generation, bound: f64, what: &str) {
        assert_eq!(a.tokens, b.tokens);
        for (x, y) in a.logits.iter().flatten().zip(b.logits.iter().flatten()) {
            let wide: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            let e = relative_error(x, &wide);
            assert!(e < bound, "{what} changed a result: relative error {e:.2e}");
        }
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn a_prefill_padded_to_a_bucket_gives_the_same_results_and_records_its_padding() {
        let weights = std::sync::Arc::new(Weights::random(&ModelConfig::gpt2_small()));
        let prompts = vec![
            vec![464, 2068, 7586, 21831, 18045],
            vec![40, 1842, 257],
            vec![11, 12, 13, 14, 15, 16],
        ];
        let _gpu = super::gpu_session_lock();
        let generate = |pad_prefill_to| {
            let waste = Waste {
                pad_prefill_to,
                ..Waste::default()
            };
            generate_with(&weights, &prompts, waste, 3)
        };
        let (clean, _) = generate(0);
        // 32 tokens a row: 96 rows, still the small-tile matmuls, so the same kernels run.
        let (padded, trace) = generate(32);
        assert_same_results(&clean, &padded, 1e-5, "padding");
        // 14 real tokens of 3 × 32 rows.
        let padding: Vec<(u64, u64)> = trace
            .annotations
            .iter()
            .filter_map(|a| match *a {
                Annotation::Padding { padded, total, .. } => Some((padded, total)),
                _ => None,
            })
            .collect();
        assert!(padding.contains(&(82, 96)), "{padding:?}");
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn decoding_without_the_kv_cache_gives_the_cached_results_in_reused_buffers() {
        let weights = std::sync::Arc::new(Weights::random(&ModelConfig::gpt2_small()));
        let prompts = vec![vec![464, 2068, 7586, 21831, 18045], vec![40, 1842, 257]];
        let _gpu = super::gpu_session_lock();
        let generate = |no_kv_cache, steps| {
            let waste = Waste {
                no_kv_cache,
                ..Waste::default()
            };
            generate_with(&weights, &prompts, waste, steps)
        };
        let (cached, _) = generate(false, 5);
        let (recomputed, trace) = generate(true, 5);
        assert_same_results(&cached, &recomputed, 1e-4, "recomputing");
        // The recomputed sequence's buffers are allocated once, not per step: a longer run
        // allocates no more.
        let allocations = |t: &Trace| {
            t.annotations
                .iter()
                .filter(|a| matches!(a, Annotation::Buffer { .. }))
                .count()
        };
        let (_, shorter) = generate(true, 3);
        assert!(allocations(&trace) > 0);
        assert_eq!(
            allocations(&trace),
            allocations(&shorter),
            "buffers allocated over 5 steps and over 3"
        );
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn duplicated_layernorms_run_as_often_as_asked_and_change_no_result() {
        let weights = std::sync::Arc::new(Weights::random(&ModelConfig::gpt2_small()));
        let prompts = vec![vec![464, 2068, 7586, 21831, 18045], vec![40, 1842, 257]];
        let _gpu = super::gpu_session_lock();
        let generate = |duplicate_layernorm| {
            let waste = Waste {
                duplicate_layernorm,
                ..Waste::default()
            };
            generate_with(&weights, &prompts, waste, 3)
        };
        // LayerNorm launches in the layers' norm regions: two per layer and pass when clean.
        let layer_norms = |t: &Trace| {
            t.spans
                .iter()
                .filter(|s| s.kind == SpanKind::Kernel)
                .filter(|s| {
                    let region = t.str(s.region);
                    region.contains("/layer") && region.ends_with("/norm")
                })
                .count()
        };
        let (clean, clean_trace) = generate(0);
        let (repeated, trace) = generate(3);
        assert_same_results(&clean, &repeated, 1e-6, "repeating the LayerNorm");
        let per_pass = layer_norms(&clean_trace) / 2;
        assert!(per_pass > 0);
        assert_eq!(
            layer_norms(&trace),
            layer_norms(&clean_trace) + 3 * per_pass
        );
    }

    /// Kernel replay: the first launch of each signature is replayed alone, the results do
    /// not change, the program's own launches are the same as without replays (none of the
    /// replays leaks in as a launch), and each burst names the launch it replayed.
    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn kernels_replayed_alone_change_no_result_and_add_no_launch() {
        let weights = std::sync::Arc::new(Weights::random(&ModelConfig::gpt2_small()));
        let prompts = vec![vec![464, 2068, 7586, 21831, 18045], vec![40, 1842, 257]];
        let _gpu = super::gpu_session_lock();
        let burst_ns = 20_000_000;
        let clean = (Waste::default(), 3);
        let own = MatmulBackend::Own;
        let (plain, plain_run) = generate_session(&weights, &prompts, clean, own, None);
        let (replayed, run) = generate_session(&weights, &prompts, clean, own, Some(burst_ns));
        assert_same_results(&plain, &replayed, 1e-6, "replaying kernels alone");
        let launches = |t: &Trace| {
            let mut v: Vec<(String, Option<LaunchShape>)> = t
                .spans
                .iter()
                .filter(|s| s.is_program_work())
                .map(|s| (t.str(s.name).to_owned(), s.launch))
                .collect();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        let trace = &run.trace;
        assert_eq!(launches(&plain_run.trace), launches(trace));
        assert!(plain_run.alone.measured.is_empty());
        let bursts: Vec<&Span> = trace
            .spans
            .iter()
            .filter(|s| matches!(s.kind, SpanKind::Alone { .. }))
            .collect();
        assert_eq!(bursts.len(), run.alone.measured.len());
        let mut signatures: Vec<(String, Option<LaunchShape>)> = launches(trace)
            .into_iter()
            .filter(|(_, l)| l.is_some())
            .collect();
        signatures.dedup();
        assert_eq!(
            bursts.len() + run.alone.skipped.len(),
            signatures.len(),
            "every kernel signature is measured alone or said to be skipped: {:?}",
            run.alone.skipped
        );
        assert!(
            bursts.len() * 2 > signatures.len(),
            "{:?}",
            run.alone.skipped
        );
        for b in bursts {
            let SpanKind::Alone { launches, of } = b.kind else {
                unreachable!()
            };
            let one = trace.spans.iter().find(|s| s.id == of).unwrap();
            assert_eq!((one.name, one.launch), (b.name, b.launch));
            assert!(one.end_ns <= b.start_ns && b.duration_ns() >= burst_ns);
            assert!(launches >= 32, "{launches} launches");
            assert_eq!(
                trace.str(b.region),
                wattlens_instrument::trace::ALONE_REGION
            );
        }
    }

    fn check_pipeline(backend: MatmulBackend) {
        let cfg = ModelConfig::gpt2_small();
        let weights = std::sync::Arc::new(Weights::random(&cfg));
        let prompts = vec![
            vec![464, 2068, 7586, 21831, 18045],
            vec![40, 1842, 257],
            vec![11, 12, 13, 14, 15, 16],
        ];
        let steps = 3;
        let _gpu = super::gpu_session_lock();
        let t0 = std::time::Instant::now();
        let (gen, finished) =
            generate_session(&weights, &prompts, (Waste::default(), steps), backend, None);
        println!(
            "pipeline: generated {:?} in {:.1} ms (session included)",
            gen.tokens,
            t0.elapsed().as_secs_f64() * 1e3
        );
        let trace = finished.trace;
        let regions: std::collections::BTreeSet<String> = trace
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Kernel)
            .filter_map(|s| trace.strings.get(s.region))
            .map(|r| r.rsplit('/').next().unwrap_or(r).to_owned())
            .collect();
        println!("pipeline ({backend:?}): kernel regions {regions:?}");
        // The runtime recorded buffer sizes and frees, and the prefill's padding: prompts of
        // 5, 3 and 6 tokens padded to 6 give 4 of 18 rows of padding per row-wise kernel.
        use wattlens_instrument::trace::Annotation;
        let count =
            |f: &dyn Fn(&Annotation) -> bool| trace.annotations.iter().filter(|a| f(a)).count();
        assert!(count(&|a| matches!(a, Annotation::Buffer { .. })) > 12 * 6);
        assert!(count(&|a| matches!(a, Annotation::Freed { .. })) > 0);
        let padding: Vec<(u64, u64)> = trace
            .annotations
            .iter()
            .filter_map(|a| match *a {
                Annotation::Padding { padded, total, .. } => Some((padded, total)),
                _ => None,
            })
            .collect();
        assert!(!padding.is_empty());
        assert!(padding.contains(&(4, 18)), "{padding:?}");
        let library: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| {
                trace
                    .strings
                    .get(s.name)
                    .is_some_and(|n| n.ends_with("(in cublas_sgemm)"))
            })
            .collect();
        // Per layer: qkv, out-projection, fc, proj; plus lm_head; per forward pass.
        let forwards = steps;
        if backend == MatmulBackend::Cublas {
            let calls_with_output = library.iter().filter(|s| !s.writes.is_empty()).count();
            println!(
                "pipeline: {} cuBLAS kernels, {calls_with_output} carrying their call's output",
                library.len()
            );
            assert_eq!(calls_with_output, forwards * (4 * cfg.layers + 1));
            assert!(library
                .iter()
                .all(|s| s.region != wattlens_instrument::trace::StrId::NONE));
            assert!(library.iter().all(|s| trace
                .strings
                .get(s.site)
                .is_some_and(|site| site.contains("gpu.rs"))));
        } else {
            assert!(library.is_empty());
        }
        for op in ["embedding", "attention", "mlp", "norm", "lm_head"] {
            assert!(regions.contains(op), "no kernel in region {op}");
        }
        // Every launch and copy the session issued carries the host call that issued it, and
        // started no sooner than that call began, within the clock alignment's error (waste
        // analysis replays the timeline from these calls).
        let issued: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| s.is_program_work() && !library.iter().any(|l| l.id == s.id))
            .collect();
        assert!(issued.iter().all(|s| s.host_call_ns.is_some()));
        let bound_ns = trace
            .alignments
            .iter()
            .map(|a| a.error_bound_ns)
            .max()
            .unwrap_or(0);
        let lead_ns = |s: &&wattlens_instrument::trace::Span| {
            s.host_call_ns
                .map_or(0, |call| call.from_ns.saturating_sub(s.start_ns))
        };
        let worst = issued.iter().map(lead_ns).max().unwrap_or(0);
        let mut latency: Vec<u64> = issued
            .iter()
            .filter_map(|s| {
                s.host_call_ns
                    .map(|call| s.start_ns.saturating_sub(call.from_ns))
            })
            .collect();
        latency.sort_unstable();
        println!(
            "pipeline: {} issued spans with host calls; call start to work start: median {} ns; worst start before its call {worst} ns (alignment bound {bound_ns} ns)",
            issued.len(),
            latency.get(latency.len() / 2).copied().unwrap_or(0)
        );
        assert!(
            worst <= bound_ns + 10_000,
            "work started {worst} ns before its call (alignment bound {bound_ns} ns)"
        );
        let t1 = std::time::Instant::now();
        let reference = ReferenceRun::compute(&cfg, &weights, &prompts, &gen.tokens, steps);
        println!(
            "pipeline: CPU reference in {:.1} s",
            t1.elapsed().as_secs_f64()
        );
        let mut worst = 0.0f64;
        for step in 0..steps {
            for row in 0..prompts.len() {
                let e = relative_error(&gen.logits[step][row], &reference.logits[step][row]);
                println!("pipeline: step {step} row {row}: logits relative error {e:.2e}");
                worst = worst.max(e);
            }
        }
        assert!(worst < 1e-4, "worst relative error {worst:.2e}");
    }
}
