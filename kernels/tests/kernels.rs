//! The embedded PTX is what the launchers expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use wattlens_kernels::calibration::{KERNELS, PTX};

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
    use wattlens_runtime::digest::{content_digest, ContentHash};
    use wattlens_runtime::{CudaError, ProfiledArg, Profiler, ProfilerConfig, TimingChoice};

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

    fn saxpy_session(timing: TimingChoice) -> (Trace, Vec<f32>) {
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
        assert_eq!(specs.len(), 21);
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
            changed >= 21,
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
