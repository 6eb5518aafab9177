//! Integration tests of wattlens-runtime (one test binary, modules inside).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod detect {
    use std::fs;

    use wattlens_runtime::internal::detect::{nvidia_gpus, nvidia_gpus_under};

    #[test]
    fn finds_device_nodes_and_models_in_a_fake_root() {
        let root = std::env::temp_dir().join(format!("wattlens-detect-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("dev")).unwrap();
        for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            fs::write(root.join("dev").join(name), b"").unwrap();
        }
        let info = root.join("proc/driver/nvidia/gpus/0000:1a:00.0");
        fs::create_dir_all(&info).unwrap();
        fs::write(
            info.join("information"),
            "Model: \t\t NVIDIA H200\nIRQ: 42\nDevice Minor: \t 1\n",
        )
        .unwrap();
        let gpus = nvidia_gpus_under(&root);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(gpus.len(), 2, "{gpus:?}");
        assert_eq!((gpus[0].minor, gpus[0].model.as_deref()), (0, None));
        assert_eq!(
            (gpus[1].minor, gpus[1].model.as_deref()),
            (1, Some("NVIDIA H200"))
        );
    }

    #[test]
    fn an_empty_root_has_no_gpus() {
        let root = std::env::temp_dir().join(format!("wattlens-nogpu-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        assert!(nvidia_gpus_under(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn the_gpu_machine_has_a_gpu() {
        let gpus = nvidia_gpus();
        assert!(!gpus.is_empty(), "no /dev/nvidiaN node found");
    }
}

mod timing {
    use std::sync::Arc;

    use wattlens_instrument::clock::FakeClock;
    use wattlens_instrument::trace::LaunchShape;
    use wattlens_runtime::internal::timing::fake::FakeGpu;
    use wattlens_runtime::internal::timing::{CuptiTimer, EventTimer, Expect, OpTimer, StreamKey};

    fn key(raw: u64) -> StreamKey {
        StreamKey {
            device: 0,
            ordinal: raw,
            raw,
        }
    }

    fn kernel(name: &str, blocks: u32) -> Expect {
        Expect::Kernel {
            name: name.into(),
            shape: LaunchShape {
                grid: [blocks, 1, 1],
                block: [128, 1, 1],
                shared_mem_bytes: 0,
            },
        }
    }

    /// Issue `n` kernels of 5–50 µs over two streams, with host gaps that span several
    /// calibration periods; returns the true (seq, start, end) on the host clock.
    fn workload(
        gpu: &FakeGpu,
        clock: &FakeClock,
        timer: &mut dyn OpTimer,
        n: u64,
    ) -> Vec<(u64, u64, u64)> {
        let mut truth = Vec::new();
        for seq in 0..n {
            let stream = key(seq % 2);
            let e = kernel("k", 132);
            timer.before(&stream, seq).unwrap();
            let (s, t) = gpu
                .enqueue(&stream, &e, 5_000 + (seq * 7_919) % 45_000)
                .unwrap();
            timer.after(&stream, seq, e).unwrap();
            truth.push((seq, s, t));
            clock.advance(if seq % 100 == 99 { 400_000_000 } else { 20_000 });
            timer.poll().unwrap();
        }
        gpu.drain();
        truth
    }

    /// Every reported time is within `tol_ns` of the truth; starts may also read early by up
    /// to `start_bias_ns` (an event recorded on an idle stream fires before the kernel's
    /// launch latency has passed: the bias measured on real GPUs).
    fn check(
        report_times: &[wattlens_runtime::internal::timing::OpTime],
        truth: &[(u64, u64, u64)],
        tol_ns: i64,
        start_bias_ns: i64,
    ) {
        assert!(report_times.len() <= truth.len());
        for t in report_times {
            let (_, s, e) = truth[t.seq as usize];
            let early = s as i64 - t.start_ns as i64;
            assert!(
                early <= tol_ns + start_bias_ns && -early <= tol_ns,
                "op {}: start off by {early} ns",
                t.seq
            );
            let off = (t.end_ns as i64 - e as i64).abs();
            assert!(off <= tol_ns, "op {}: end off by {off} ns", t.seq);
        }
    }

    const BIAS: i64 = wattlens_runtime::internal::timing::fake::LAUNCH_LATENCY_NS as i64;

    #[test]
    fn event_timer_recovers_times_through_drift_and_recalibration() {
        let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
        // GPU clock 30 ppm fast, arbitrary offset.
        let gpu = FakeGpu::new(clock.clone(), 30e-6, -5_000_000_000);
        let mut timer = EventTimer::new(gpu.clone(), clock.clone(), 0).unwrap();
        let truth = workload(&gpu, &clock, &mut timer, 1_000);
        assert!(
            timer.points().len() >= 4,
            "periodic calibration points were taken"
        );
        let report = timer.finish().unwrap();
        // Calibration brackets are ±1 µs of spinning on the fake; f32 elapsed times add
        // well under a µs at ≤ 1 s from the reference.
        assert_eq!(report.times.len(), truth.len());
        check(&report.times, &truth, 2_000, BIAS);
        let a = &report.alignments[0];
        assert!(a.error_bound_ns < 5_000, "{}", a.error_bound_ns);
        // A GPU clock 30 ppm fast maps onto the trace clock with a slope 30 ppm short.
        assert!((a.drift_ppb + 30_000).abs() < 2_000, "{}", a.drift_ppb);
    }

    #[test]
    fn cupti_timer_matches_per_stream_and_keeps_foreign_work_apart() {
        let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
        let gpu = FakeGpu::new(clock.clone(), -12e-6, 42_000);
        let mut timer = CuptiTimer::new(gpu.clone(), clock.clone(), 0).unwrap();
        let mut truth = workload(&gpu, &clock, &mut timer, 300);
        // A library kernel on a profiled stream that the session never issued, under an
        // external correlation id (a `Profiler::library` call), and one outside any.
        gpu.set_external(Some(7));
        let (fs, _) = gpu
            .enqueue(&key(0), &kernel("cublas_gemm", 8), 9_000)
            .unwrap();
        gpu.set_external(None);
        gpu.enqueue(&key(0), &kernel("stray", 8), 1_000).unwrap();
        // One issued kernel whose record CUPTI loses: a different kernel from its
        // neighbours, so order matching can tell (identical neighbours could not be told
        // apart without correlation ids; see the module docs).
        gpu.drop_record(303);
        for seq in 300..303u64 {
            let e = kernel(if seq == 301 { "k2" } else { "k" }, 132);
            timer.before(&key(1), seq).unwrap();
            let (s, t) = gpu.enqueue(&key(1), &e, 10_000).unwrap();
            timer.after(&key(1), seq, e).unwrap();
            truth.push((seq, s, t));
        }
        gpu.drain();
        let report = timer.finish().unwrap();
        assert_eq!(report.foreign.len(), 2);
        let gemm = &report.foreign[0];
        assert_eq!(gemm.name, "cublas_gemm");
        assert_eq!(gemm.external, Some(7));
        assert!((gemm.span.start_ns as i64 - fs as i64).abs() < 2_000);
        assert_eq!(report.foreign[1].name, "stray");
        assert_eq!(report.foreign[1].external, None);
        let lost: Vec<u64> = (0..303)
            .filter(|s| !report.times.iter().any(|t| t.seq == *s))
            .collect();
        assert_eq!(lost, vec![301]);
        let truth: Vec<_> = truth.into_iter().filter(|t| t.0 != 301).collect();
        let mut times = report.times.clone();
        times.sort_by_key(|t| t.seq);
        let truth_by_seq: Vec<(u64, u64, u64)> = (0..303)
            .map(|s| {
                truth
                    .iter()
                    .find(|t| t.0 == s)
                    .copied()
                    .unwrap_or((s, 0, 0))
            })
            .collect();
        check(&times, &truth_by_seq, 2_000, 0);
        assert_eq!(
            report.alignments[0].source,
            wattlens_instrument::trace::ClockSource::Cupti
        );
    }

    #[test]
    fn a_fault_keeps_what_was_resolved_before_it() {
        let clock = Arc::new(FakeClock::new(1_000_000_000));
        let gpu = FakeGpu::new(clock.clone(), 0.0, 0);
        let mut timer = EventTimer::new(gpu.clone(), clock.clone(), 0).unwrap();
        let truth = workload(&gpu, &clock, &mut timer, 200);
        timer.poll().unwrap();
        gpu.fault_after(200);
        let stream = key(0);
        timer.before(&stream, 200).unwrap_or(());
        assert!(gpu.enqueue(&stream, &kernel("bad", 1), 1_000).is_ok());
        assert!(gpu.enqueue(&stream, &kernel("after", 1), 1_000).is_err());
        assert!(timer.finish().is_err());
        let salvaged = timer.salvage();
        assert!(salvaged.times.len() >= 190, "{}", salvaged.times.len());
        check(&salvaged.times, &truth[..salvaged.times.len()], 2_000, BIAS);
    }
}
