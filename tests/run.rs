//! `wattlens run -- CMD`: the command runs unchanged, wattlens exits with its code, and on a
//! GPU machine each CUDA process leaves a trace that survives crashes and kills.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wattlens_instrument::names::class_from_name;
use wattlens_instrument::trace::{Annotation, SpanKind};
use wattlens_instrument::OpClass;

use super::{exe, scratch, text, wattlens};

/// `wattlens run` with `args` before `--` and `cmd` after it.
fn run(args: &[&str], cmd: &[&str]) -> Output {
    Command::new(exe())
        .arg("run")
        .args(args)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

#[test]
fn a_program_without_cuda_runs_unchanged_and_keeps_its_exit_code() {
    let dir = scratch("run-nocuda");
    let output = dir.join("run.wlt");
    // Without CUDA neither library is ever loaded: any existing files stand in for them (a
    // fresh `cargo test` builds no cdylib).
    let out = run(
        &[
            "-o",
            output.to_str().unwrap(),
            "--cupti",
            "/bin/sh",
            "--inject-lib",
            "/bin/true",
        ],
        &[
            "sh",
            "-c",
            "echo child says $CUDA_INJECTION64_PATH $NVTX_INJECTION64_PATH; exit 3",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let lib = std::fs::canonicalize("/bin/true").unwrap();
    assert!(
        stdout.contains(&format!("child says {} {}", lib.display(), lib.display())),
        "the child got the injection library, for CUDA and for NVTX: {stdout}"
    );
    assert!(
        stdout.contains("No GPU work was seen"),
        "wattlens says so: {stdout}"
    );
    assert!(!output.exists());
    assert!(text(&out.stderr).contains("exited with code 3"));
}

#[test]
fn bad_run_arguments_get_one_sentence_and_exit_2() {
    let out = run(&["-o", "/no/such/folder/run.wlt"], &["true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("output folder /no/such/folder does not exist"));
    let dir = scratch("run-nocmd");
    let out = run(
        &[
            "-o",
            dir.join("r.wlt").to_str().unwrap(),
            "--cupti",
            "/bin/sh",
            "--inject-lib",
            "/bin/true",
        ],
        &["no-such-command-wattlens"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no such command"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--inject-lib", "/no/such/lib.so"], &["true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("injection library /no/such/lib.so does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = wattlens(&["run"]);
    assert_eq!(out.status.code(), Some(2), "clap: the command is required");
    // A setting the injection library would refuse is refused before the command runs.
    let marker = dir.join("ran");
    let out = Command::new(exe())
        .args(["run", "-o", dir.join("r.wlt").to_str().unwrap(), "--"])
        .args(["touch", marker.to_str().unwrap()])
        .env("WATTLENS_KINDS", "kernel,sync")
        .env("WATTLENS_HOOKS", "none")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("drop sync"), "{stderr}");
    assert!(!marker.exists(), "the command did not run");
}

#[test]
fn the_audit_is_armed_in_python_and_keeps_the_programs_own_sitecustomize() {
    let dir = scratch("run-audit");
    let user = dir.join("user-site");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("sitecustomize.py"),
        "print('user sitecustomize ran')\n",
    )
    .unwrap();
    let probe = "import sys, wattlens_audit; print('armed', bool(wattlens_audit.os.environ.get(wattlens_audit.FACTS_ENV))); sys.exit(4)";
    let out = Command::new(exe())
        .args(["run", "--audit", "-o", dir.join("a.wlt").to_str().unwrap()])
        .args(["--cupti", "/bin/sh", "--inject-lib", "/bin/true", "--"])
        .args(["python3", "-c", probe])
        .env("PYTHONPATH", &user)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(stdout.contains("armed True"), "{stdout}");
    assert!(
        stdout.contains("user sitecustomize ran"),
        "the program's own sitecustomize still runs: {stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the audit saw no PyTorch operation"),
        "a program that never imports torch is said to be unaudited: {stderr}"
    );
    // The audit does not combine with modes that record no kernels, or replay them.
    let out = wattlens(&["run", "--audit", "--light", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

// ---- on a GPU machine ----

/// The repository root (tests run from the package folder, which is the root).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

fn torch_script() -> String {
    let local = Path::new("scripts/torch_infer.py");
    if local.exists() {
        local.to_str().unwrap().to_owned()
    } else {
        repo().join("scripts/torch_infer.py").display().to_string()
    }
}

/// The JSON report of `traces`.
fn json_report(traces: &[&Path]) -> serde_json::Value {
    let mut args = vec!["report", "--json"];
    args.extend(traces.iter().map(|t| t.to_str().unwrap()));
    let out = wattlens(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kernel_names(report: &serde_json::Value) -> Vec<String> {
    report["devices"][0]["attribution"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_pytorch_inference_gets_joules_per_kernel_and_per_nvtx_range() {
    let dir = scratch("run-torch");
    let trace = dir.join("torch.wlt");
    let out = run(
        &["-o", trace.to_str().unwrap()],
        &["python3", &torch_script(), "--seconds", "6"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(stdout.contains("Energy per kernel"), "{stdout}");
    assert!(
        dir.join("torch.html").is_file(),
        "the HTML report is written beside the trace"
    );
    let stderr = text(&out.stderr);
    let cpu_line = stderr
        .lines()
        .find(|l| l.contains("CPU time of wattlens' threads:"))
        .unwrap_or_default();
    assert!(
        cpu_line.contains("wattlens-writer") && cpu_line.contains("wattlens-sample"),
        "the closing lines state what wattlens' own threads cost: {stderr}"
    );
    assert!(
        trace.exists(),
        "one process: the trace is renamed to --output"
    );
    let report = json_report(&[&trace]);
    let names = kernel_names(&report);
    assert!(
        names
            .iter()
            .any(|n| class_from_name(n) == Some(OpClass::Matmul)),
        "cuBLAS kernels: {names:?}"
    );
    let regions: Vec<String> = report["devices"][0]["attribution"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        regions.iter().any(|r| r.contains("layer0/attention")),
        "NVTX ranges per module: {regions:?}"
    );
    let closure = &report["devices"][0]["attribution"]["closure"];
    let counter = closure["counter_mj"].as_f64().unwrap();
    let residual = closure["residual_mj"].as_f64().unwrap();
    assert!(counter > 0.0);
    assert!(
        residual.abs() < 0.01 * counter,
        "idle + attributed must close on the counter within 1%: {closure}"
    );
    // Each step reads its token back (cudaMemcpyAsync + cudaStreamSynchronize): one host wait
    // per step, recorded once although the runtime call makes a driver call too.
    let steps = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["steps"].as_u64())
        .unwrap();
    let recorded = wattlens_instrument::read_trace_file(&trace).unwrap();
    assert!(recorded.stopped.is_none(), "{:?}", recorded.stopped);
    // Every module's forward runs in its NVTX range: all but the set-up kernels (weight casts,
    // token sampling) are launched in one.
    let of_kind = |kind: SpanKind| -> Vec<_> {
        let spans = recorded.trace.spans.iter();
        spans.filter(|s| s.kind == kind).collect()
    };
    let kernels = of_kind(SpanKind::Kernel);
    let in_ranges = kernels.iter().filter(|k| k.region.is_some()).count();
    assert!(
        in_ranges as f64 >= 0.95 * kernels.len() as f64,
        "{in_ranges} of {} kernels tagged with their NVTX range",
        kernels.len()
    );
    let syncs = of_kind(SpanKind::Sync);
    assert!(
        syncs.len() as u64 >= steps && (syncs.len() as u64) < steps * 3 / 2 + 10,
        "{} host waits for {steps} steps",
        syncs.len()
    );
    assert!(syncs
        .iter()
        .all(|s| s.device == 0 && s.end_ns >= s.start_ns));
    let on_a_stream = syncs
        .iter()
        .filter(|s| s.stream != u64::from(u32::MAX))
        .count() as u64;
    assert!(
        on_a_stream >= steps,
        "stream waits name their stream: {on_a_stream} of {}",
        syncs.len()
    );
}

/// `tests/data/cublas_app.cu`, built with nvcc into `dir`.
fn build_cublas_app(dir: &Path) -> PathBuf {
    let app = dir.join("cublas_app");
    let src = repo().join("tests/data/cublas_app.cu");
    let nvcc = ["nvcc", "/usr/local/cuda/bin/nvcc"]
        .into_iter()
        .find(|n| Command::new(n).arg("--version").output().is_ok())
        .expect("nvcc is on a GPU machine");
    let built = Command::new(nvcc)
        .args([
            "-O2",
            "-o",
            app.to_str().unwrap(),
            src.to_str().unwrap(),
            "-lcublas",
        ])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    app
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_a_cuda_program_calling_cublas_is_recorded() {
    let dir = scratch("run-cublas");
    let app = build_cublas_app(&dir);
    let trace = dir.join("app.wlt");
    let out = run(
        &["-o", trace.to_str().unwrap()],
        &[app.to_str().unwrap(), "3000"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = json_report(&[&trace]);
    let names = kernel_names(&report);
    assert!(names.iter().any(|n| n.contains("gemm")), "{names:?}");
    assert!(names.iter().any(|n| n == "relu"), "demangled: {names:?}");
    let regions = report["devices"][0]["attribution"]["regions"].to_string();
    assert!(
        regions.contains("step/gemm") && regions.contains("step/relu"),
        "{regions}"
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_repeated_uploads_are_hashed_proven_back_to_back_and_counted_otherwise() {
    let dir = scratch("run-reupload");
    let app = build_cublas_app(&dir);
    let trace = dir.join("app.wlt");
    let steps = 300;
    // Every byte hashed (16 MiB per upload), so that a match is a proof, not a likelihood.
    let out = Command::new(exe())
        .env("WATTLENS_DIGESTS", "full")
        .args(["run", "-o", trace.to_str().unwrap(), "--"])
        .args([app.to_str().unwrap(), &steps.to_string(), "reupload"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let uploads = steps + 2;
    assert!(
        stderr.contains(&format!("({uploads} uploads hashed in ")),
        "every upload, through cudaMemcpy and cudaMemcpyAsync: {stderr}"
    );
    let recorded = wattlens_instrument::read_trace_file(&trace).unwrap();
    let targets = recorded
        .trace
        .annotations
        .iter()
        .filter(|a| matches!(a, Annotation::CopyTarget { .. }))
        .count();
    assert_eq!(targets, uploads, "each names the address it wrote");
    let report = json_report(&[&trace]);
    let waste = &report["devices"][0]["waste"];
    let redundant: Vec<&serde_json::Value> = waste["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "RedundantTransfer")
        .collect();
    assert_eq!(redundant.len(), 1, "{waste}");
    assert_eq!(
        redundant[0]["occurrences"], 1,
        "the back-to-back copy: {waste}"
    );
    let unchecked = waste["unchecked"].to_string();
    assert!(
        unchecked.contains(&format!("{steps} host-to-device copies (")),
        "each step's upload repeats the content, with kernels in between: {unchecked}"
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_nvtx_start_end_ranges_and_marks_are_on_the_timeline() {
    let dir = scratch("run-marks");
    let trace = dir.join("marks.wlt");
    // A range started on the main thread and ended on another, one per tick, and a mark each.
    let script = "import threading, torch\n\
        x = torch.ones(1 << 20, device='cuda')\n\
        whole = torch.cuda.nvtx.range_start('whole run')\n\
        for i in range(40):\n    \
            torch.cuda.nvtx.mark('tick')\n    \
            x = x * 1.0001\n\
        torch.cuda.synchronize()\n\
        t = threading.Thread(target=torch.cuda.nvtx.range_end, args=(whole,))\n\
        t.start(); t.join()\n";
    let out = run(
        &["-o", trace.to_str().unwrap(), "--no-report"],
        &["python3", "-c", script],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" 40 marks,"), "{stderr}");
    let t = wattlens_instrument::read_trace_file(&trace).unwrap().trace;
    let named = |name: &str| -> Vec<&wattlens_instrument::trace::Span> {
        t.spans.iter().filter(|s| t.str(s.name) == name).collect()
    };
    let ticks = named("tick");
    assert_eq!(ticks.len(), 40);
    assert!(ticks
        .iter()
        .all(|m| m.start_ns == m.end_ns && m.kind == SpanKind::Region { depth: 0 }));
    let whole = named("whole run");
    assert_eq!(whole.len(), 1, "ended on another thread");
    let kernels: Vec<_> = t
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Kernel)
        .collect();
    assert!(kernels.len() >= 40);
    assert!(
        ticks
            .iter()
            .all(|m| m.start_ns >= whole[0].start_ns && m.end_ns <= whole[0].end_ns),
        "the marks fall inside the range"
    );
    assert_ne!(whole[0].stream, ticks[0].stream, "their own region tracks");
}

/// Run the torch script with `flag`, expecting it to die by `signal`; the trace must still
/// be readable and hold its kernels.
fn survives(flag: &str, signal: i32) {
    let dir = scratch(&format!("run{flag}"));
    let trace = dir.join("t.wlt");
    let out = run(
        &["-o", trace.to_str().unwrap(), "--no-report"],
        &["python3", &torch_script(), "--seconds", "3", flag],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(128 + signal),
        "wattlens exits as the child did: {stderr}"
    );
    assert!(
        stderr.contains("without its end marker"),
        "the process's own trace was cut off, and its prefix was read: {stderr}"
    );
    let report = wattlens(&["report", trace.to_str().unwrap()]);
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert!(text(&report.stdout).contains("Energy per kernel"));
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_a_crashing_program_leaves_a_readable_trace() {
    survives("--crash", libc_signal::SEGV);
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_a_killed_program_leaves_a_readable_trace() {
    survives("--kill-self", libc_signal::KILL);
}

/// Signal numbers on Linux.
mod libc_signal {
    pub const SEGV: i32 = 11;
    pub const KILL: i32 = 9;
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_two_processes_on_one_gpu_each_write_a_trace_and_merge() {
    let dir = scratch("run-two");
    let trace = dir.join("two.wlt");
    let script = torch_script();
    let both = format!("python3 {script} --seconds 3 & python3 {script} --seconds 3 & wait");
    let out = run(&["-o", trace.to_str().unwrap()], &["sh", "-c", &both]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let traces: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".pid"))
        .collect();
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert!(
        text(&out.stdout).contains("Merged 2 traces"),
        "{}",
        text(&out.stdout)
    );
}

/// A script of `scripts/`, from the package folder or the repository root.
fn script(name: &str) -> String {
    let local = Path::new("scripts").join(name);
    if local.exists() {
        local.to_str().unwrap().to_owned()
    } else {
        repo().join("scripts").join(name).display().to_string()
    }
}

/// The JSON line a script printed last.
fn json_line(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// What every report of a replayed run must hold: replays that held the program, a closure
/// checked against the program's own stretches, and no bound past the board's limit.
fn check_replay_report(report: &serde_json::Value) -> &serde_json::Value {
    let a = &report["devices"][0]["attribution"];
    let replay = &a["replay"];
    assert!(replay["signatures"].as_u64().unwrap() >= 1, "{replay}");
    assert!(replay["held_ns"].as_u64().unwrap() > replay["burst_ns"].as_u64().unwrap());
    let cap = a["board_cap_mw"]
        .as_f64()
        .expect("the board's power limit is recorded");
    for s in a["signatures"].as_array().unwrap() {
        let high = s["dynamic_power"]["high_mw"].as_f64().unwrap();
        assert!(high <= cap + 1e-6, "{} bound {high} mW > {cap}", s["name"]);
    }
    a
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_replay_undoes_every_replay_of_kernels_that_update_memory_in_place() {
    let dir = scratch("run-replay-inplace");
    let trace = dir.join("inplace.wlt");
    let cmd = [
        "python3".to_owned(),
        script("inplace_check.py"),
        "--iters".into(),
        "20000".into(),
    ];
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let bare = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(bare.status.success(), "{}", text(&bare.stderr));
    let out = run(
        &["-o", trace.to_str().unwrap(), "--no-report", "--replay"],
        &cmd,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("replayed "), "progress on stderr: {stderr}");
    let (with, without) = (
        json_line(&text(&out.stdout)),
        json_line(&text(&bare.stdout)),
    );
    assert_eq!(
        with["exact"], true,
        "x.add_(1) replayed thousands of times, undone: {with}"
    );
    assert_eq!(
        with["checksum"], without["checksum"],
        "addmm_ reads what it writes: the result is bit-identical"
    );
    let recorded = wattlens_instrument::read_trace_file(&trace).unwrap().trace;
    let bursts = recorded
        .spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Alone { .. }))
        .count();
    let episodes = recorded
        .annotations
        .iter()
        .filter(|a| matches!(a, Annotation::ProfilerEpisode { .. }))
        .count();
    assert!(
        bursts >= 2 && bursts == episodes,
        "{bursts} bursts, {episodes} episodes"
    );
    let report = json_report(&[&trace]);
    let a = check_replay_report(&report);
    assert!(a["replay"]["closure"].is_object(), "{}", a["replay"]);
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_replay_measures_the_kernels_of_a_cublas_program_and_its_output_is_unchanged() {
    let dir = scratch("run-replay-cublas");
    let app = build_cublas_app(&dir);
    let trace = dir.join("app.wlt");
    let bare = Command::new(&app).arg("4000").output().unwrap();
    let out = run(
        &[
            "-o",
            trace.to_str().unwrap(),
            "--replay",
            "--format",
            "json",
        ],
        &[app.to_str().unwrap(), "4000"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("cublas_app:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        line(&stdout),
        line(&text(&bare.stdout)),
        "the same checksum"
    );
    let report = json_report(&[&trace]);
    let a = check_replay_report(&report);
    let gemm = a["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap_or("").contains("gemm"))
        .unwrap();
    assert!(gemm["alone_launches"].as_u64().unwrap() > 0, "{gemm}");
    assert_eq!(gemm["op_class"], "Matmul");
}

/// `scripts/hf_generate.py` with `flags` (2 layers, batch 4, 16-token prompts, 8 new tokens,
/// one timed call), under `wattlens run --audit` into `trace`; its JSON output line.
fn audited_generate(trace: &Path, flags: &[&str]) -> String {
    let script = repo().join("scripts/hf_generate.py").display().to_string();
    let mut cmd = vec![
        "python3",
        &script,
        "--iters",
        "1",
        "--batch",
        "4",
        "--prompt",
        "16",
        "--new-tokens",
        "8",
        "--layers",
        "2",
    ];
    cmd.extend(flags);
    let out = run(&["--audit", "-o", trace.to_str().unwrap()], &cmd);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_owned()
}

/// (kind, what) of each finding of GPU 0 but idle gaps.
fn audit_findings(trace: &Path) -> Vec<(String, String)> {
    let report = json_report(&[trace]);
    report["devices"][0]["waste"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_owned(),
                f["what"].as_str().unwrap_or("").to_owned(),
            )
        })
        .filter(|(k, _)| k != "IdleGap")
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_the_audit_proves_a_recomputed_prefix_and_reloaded_weights_in_a_generate_loop() {
    let dir = scratch("run-audit-gpu");
    let script = repo().join("scripts/hf_generate.py").display().to_string();
    let bare = Command::new("python3")
        .args([&script, "--iters", "1", "--batch", "4", "--prompt", "16"])
        .args(["--new-tokens", "8", "--layers", "2"])
        .output()
        .unwrap();
    let checksum = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["checksum"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let bare = checksum(
        text(&bare.stdout)
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap(),
    );
    let cached = dir.join("cache.wlt");
    assert_eq!(
        checksum(&audited_generate(&cached, &[])),
        bare,
        "tokens unchanged"
    );
    let found = audit_findings(&cached);
    assert!(
        found
            .iter()
            .all(|(k, _)| k != "Recomputation" && k != "RedundantTransfer"),
        "{found:?}"
    );
    let uncached = dir.join("nocache.wlt");
    assert_eq!(
        checksum(&audited_generate(&uncached, &["--no-cache"])),
        bare
    );
    let found = audit_findings(&uncached);
    assert!(
        found
            .iter()
            .any(|(k, w)| k == "Recomputation" && w == "aten::addmm in Conv1D"),
        "{found:?}"
    );
    let reload = dir.join("reload.wlt");
    audited_generate(&reload, &["--reload"]);
    let found = audit_findings(&reload);
    assert!(
        found
            .iter()
            .any(|(k, w)| k == "RedundantTransfer" && w == "aten::copy_"),
        "{found:?}"
    );
}
