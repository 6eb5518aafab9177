//! Integration tests that drive the real `wattlens` binary on the simulated GPU.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod run;

/// The binary cargo built; on a GPU machine running the gpu-bundle, the bundled one on PATH.
fn exe() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_wattlens"));
    if built.exists() {
        built
    } else {
        PathBuf::from("wattlens")
    }
}

fn wattlens(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh folder for one test, under cargo's own temporary folder for integration tests
/// (inside `target/`), emptied when it is made: a test's outputs stay there to be read
/// after a failure, and a run replaces the last run's instead of adding to the disk. A test
/// binary moved to another machine (the GPU bundle), where that folder cannot be made, uses
/// the system's temporary folder instead.
fn scratch(name: &str) -> PathBuf {
    let folder = format!("wattlens-cli-{name}");
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&folder);
    let _ = std::fs::remove_dir_all(&d);
    if std::fs::create_dir_all(&d).is_ok() {
        return d;
    }
    let d = std::env::temp_dir().join(folder);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One demo run shared by the tests: (output folder, stdout).
fn demo() -> &'static (PathBuf, String) {
    static DEMO: OnceLock<(PathBuf, String)> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = scratch("demo");
        let out = wattlens(&[
            "demo",
            "--simulate",
            "--steps",
            "10",
            "--out-dir",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
        (dir, text(&out.stdout))
    })
}

fn demo_trace() -> PathBuf {
    demo().0.join("demo.wlt")
}

/// A failing run: its exit code and its one-line error.
fn fails(args: &[&str]) -> (i32, String) {
    let out = wattlens(args);
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap(), err)
}

#[test]
fn demo_labels_everything_simulated_and_writes_both_files() {
    let (dir, stdout) = demo();
    // Nested regions under several paths are also rolled up by name (the per-op view).
    assert!(stdout.contains("*/attention"), "{stdout}");
    assert!(stdout.starts_with("SIMULATED GPU"), "{stdout}");
    for title in ["Energy per kernel", "Energy per op", "Closure"] {
        let line = stdout.lines().find(|l| l.starts_with(title)).unwrap();
        assert!(line.contains("[simulated]"), "{line}");
    }
    assert!(stdout.contains("matmul_qkv_bf16") && stdout.contains("measured"));
    let trace = wattlens_instrument::read_trace_file(&dir.join("demo.wlt")).unwrap();
    assert!(trace.stopped.is_none());
    assert!(trace.trace.meta.simulated && !trace.trace.spans.is_empty());
    let perfetto: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo.perfetto.json")).unwrap()).unwrap();
    assert_eq!(perfetto["otherData"]["simulated"], true);
    // Perfetto's protobuf format beside it: a stream of `Trace.packet` fields, smaller.
    let proto = std::fs::read(dir.join("demo.pftrace")).unwrap();
    assert_eq!(proto[0], 0x0a);
    assert!(
        proto.len() * 3
            < std::fs::metadata(dir.join("demo.perfetto.json"))
                .unwrap()
                .len() as usize
    );
    assert!(stdout.contains("demo.pftrace"), "{stdout}");
}

#[test]
fn report_prints_a_table_json_and_csv() {
    let trace = demo_trace();
    let t = trace.to_str().unwrap();
    let table = wattlens(&["report", t]);
    assert!(table.status.success());
    assert!(text(&table.stdout).contains("Energy per op [simulated]"));
    assert!(text(&table.stdout).contains("Waste [simulated] (GPU 0)"));

    // Two processes' traces of one GPU (here the demo's, and a copy that started 1 µs later)
    // merge into one report.
    let mut other = wattlens_instrument::read_trace_file(&trace).unwrap().trace;
    other.meta.start_unix_ns += 1000;
    let second = scratch("second").join("second.wlt");
    wattlens_instrument::TraceWriter::write_trace(std::fs::File::create(&second).unwrap(), &other)
        .unwrap();
    let merged = wattlens(&["report", t, second.to_str().unwrap()]);
    let merged_text = text(&merged.stdout);
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    assert!(merged_text.starts_with("Merged 2 traces (one per process) on 1 GPU(s)"));
    assert_eq!(merged_text.matches("GPU 0 (").count(), 1, "{merged_text}");

    let json = wattlens(&["report", t, "--json"]);
    assert!(json.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["simulated"], true);
    let sigs = doc["devices"][0]["attribution"]["signatures"]
        .as_array()
        .unwrap();
    assert!(sigs.len() > 10);
    for s in sigs {
        let d = &s["dynamic"];
        assert!(d["low_mj"].as_f64().unwrap() <= d["mj"].as_f64().unwrap());
        assert!(d["mj"].as_f64().unwrap() <= d["high_mj"].as_f64().unwrap());
        assert!(d["coverage"].is_string());
    }

    let csv = wattlens(&["report", t, "--csv"]);
    assert!(csv.status.success());
    let csv = text(&csv.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), wattlens::render::csv::HEADER);
    let columns = wattlens::render::csv::HEADER.split(',').count();
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() > 15);
    for r in rows {
        assert_eq!(r.split(',').count(), columns, "{r}");
        assert!(r.starts_with("true,0,"), "{r}");
    }
}

#[test]
fn export_writes_perfetto_json() {
    let out_file = scratch("export").join("x.json");
    let out = wattlens(&[
        "export",
        "--perfetto",
        demo_trace().to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert!(doc["traceEvents"].as_array().unwrap().len() > 100);
    // Any other name: Perfetto's protobuf format, a stream of `Trace.packet` fields (tag 0x0a).
    let proto_file = out_file.with_extension("pftrace");
    let out = wattlens(&[
        "export",
        "--perfetto",
        demo_trace().to_str().unwrap(),
        "-o",
        proto_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("protobuf"));
    let bytes = std::fs::read(&proto_file).unwrap();
    assert_eq!(bytes[0], 0x0a);
    assert!(bytes.len() * 3 < std::fs::metadata(&out_file).unwrap().len() as usize);
}

/// Open `html` in headless Chromium (`scripts/setup-debian.sh` installs it) and return the
/// page's DOM once its scripts ran.
fn rendered_dom(html: &std::path::Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("chromium runs (scripts/setup-debian.sh installs it)");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_html_report_is_self_contained_and_draws_without_errors_in_a_browser() {
    let dir = scratch("html");
    let gpu_trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/h100-light-requests.wlt"
    );
    let demo_html = demo().0.join("demo.html");
    assert!(demo().1.contains("html:"), "the demo names its HTML report");
    let gpu_html = dir.join("h100.html");
    let out = wattlens(&["report", gpu_trace, "--html", gpu_html.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for html in [&demo_html, &gpu_html] {
        let page = std::fs::read_to_string(html).unwrap();
        assert!(page.contains("uPlot"), "the charting library is inlined");
        for external in ["src=\"http", "href=\"http", "@import"] {
            assert!(
                !page.contains(external),
                "{}: fetches {external}",
                html.display()
            );
        }
        let dom = rendered_dom(html);
        assert!(
            dom.contains("data-status=\"drawn\""),
            "{}: {}",
            html.display(),
            dom.split("wl-errors")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take(400)
                .collect::<String>()
        );
        assert!(
            dom.contains("<canvas"),
            "{}: no chart was drawn",
            html.display()
        );
    }
    // The GPU trace's requests are charted with their CIs.
    let dom = rendered_dom(&gpu_html);
    assert!(dom.contains("Mean J per request"));
    assert!(
        dom.contains("<td>long</td><td class=\"num\">35</td><td>47.9"),
        "the long request's row: 35 instances, 48.0 J ±0.4%"
    );
    // An HTML file never replaces a trace.
    let (code, err) = fails(&["report", gpu_trace, "--html", gpu_trace]);
    assert_ne!(code, 0, "{err}");
}

/// A Python with DuckDB, in a virtual environment under the target folder, made once (its
/// package comes from PyPI; `scripts/setup-debian.sh` installs Python's venv).
fn duckdb_python() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = target.join("duckdb-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .output()
            .expect("python3 runs (scripts/setup-debian.sh installs it)");
        assert!(
            made.status.success(),
            "python3 -m venv: {}",
            text(&made.stderr)
        );
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "duckdb"])
            .output()
            .unwrap();
        assert!(
            pip.status.success(),
            "pip install duckdb: {}",
            text(&pip.stderr)
        );
    }
    python
}

#[test]
fn parquet_tables_reproduce_each_runs_per_op_totals_and_their_sum_in_duckdb() {
    let dir = scratch("parquet");
    let mut runs = Vec::new();
    for (run, steps) in [("a", "3"), ("b", "5")] {
        let out_dir = dir.join(format!("demo-{run}"));
        let out = wattlens(&[
            "demo",
            "--simulate",
            "--steps",
            steps,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let trace = dir.join(format!("{run}.wlt"));
        std::fs::copy(out_dir.join("demo.wlt"), &trace).unwrap();
        let json = dir.join(format!("{run}.json"));
        let out = wattlens(&["report", "--json", trace.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::write(&json, &out.stdout).unwrap();
        runs.push((run, trace, json));
    }
    let tables = dir.join("tables");
    let mut args = vec!["export", "--parquet", tables.to_str().unwrap()];
    args.extend(runs.iter().map(|r| r.1.to_str().unwrap()));
    let out = wattlens(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("wrote 7 Parquet tables of run b"));
    // Two traces of one name would write over each other's files.
    let again = runs[0].1.to_str().unwrap();
    let (code, err) = fails(&[
        "export",
        "--parquet",
        tables.to_str().unwrap(),
        again,
        again,
    ]);
    assert_eq!(code, 2, "{err}");
    let check = Command::new(duckdb_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/duckdb_check.py"
        ))
        .arg(&tables)
        .args(
            runs.iter()
                .map(|(run, _, json)| format!("{run}={}", json.display())),
        )
        .output()
        .unwrap();
    let said = text(&check.stdout);
    assert!(check.status.success(), "{said}{}", text(&check.stderr));
    assert!(said.contains("14 per-run op rows"), "{said}");
}

#[test]
fn planted_waste_is_named_and_refused_when_unknown() {
    let dir = scratch("waste");
    let out = wattlens(&[
        "demo",
        "--simulate",
        "--steps",
        "2",
        "--waste",
        "dead-kernel,no-kv-cache",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--waste plants waste in the GPU pipeline"));
    let (code, err) = fails(&["demo", "--simulate", "--waste", "lazy-kernel"]);
    assert_eq!(code, 2);
    assert!(err.contains("lazy-kernel"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(fails(&["frobnicate"]).0, 2);
    assert_eq!(fails(&["report"]).0, 2);
    assert_eq!(fails(&["export", "x.wlt", "-o", "y.json"]).0, 2);
    assert_eq!(
        fails(&["export", "--perfetto", "x.wlt", "y.wlt", "-o", "z.json"]).0,
        2
    );
    assert_eq!(fails(&["report", "x.wlt", "--json", "--csv"]).0, 2);
    assert_eq!(fails(&["demo", "--steps", "0"]).0, 2);
    let (code, err) = fails(&["compare", "--size", "1000"]);
    assert_eq!(code, 2);
    assert!(err.contains("multiple of 128"), "{err}");
    assert_eq!(fails(&["compare", "--batches", "1"]).0, 2);
    // Light mode records no launches, which replay needs.
    let (code, err) = fails(&["run", "--light", "--replay", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("--light") && err.contains("--replay"), "{err}");
}

#[test]
fn compare_on_the_simulated_gpu_recovers_each_variants_true_energy_and_gives_verdicts() {
    let dir = scratch("compare");
    let out = wattlens(&[
        "compare",
        "--simulate",
        "--batches",
        "3",
        "--batch-ms",
        "600",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with("Compare on the simulated GPU"),
        "{stdout}"
    );
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("verdict: "))
        .collect();
    assert_eq!(verdicts.len(), 3, "{stdout}");
    assert!(verdicts
        .iter()
        .all(|v| v.ends_with("(simulated)") && v.contains("95% CI")));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["simulated"], true);
    let variants = json["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 5);
    for (v, truth) in variants.iter().zip(json["truth_mj"].as_array().unwrap()) {
        let (est, truth) = (
            v["energy_mj"]["median"].as_f64().unwrap(),
            truth.as_f64().unwrap(),
        );
        assert!(
            (est - truth).abs() / truth < 0.02,
            "{}: {est} mJ vs true {truth} mJ",
            v["name"]
        );
        assert!(v["energy_per_gflop_mj"]["median"].as_f64().unwrap() > 0.0);
    }
    assert!(dir.join("compare.wlt").exists());
}

#[test]
fn run_time_errors_exit_1_with_one_clear_line() {
    let (code, err) = fails(&["report", "/no/such/trace.wlt"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("wattlens: error: cannot read trace /no/such/trace.wlt"),
        "{err}"
    );

    let not_trace = scratch("bad").join("notes.txt");
    std::fs::write(&not_trace, "hello").unwrap();
    let (code, err) = fails(&["report", not_trace.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a wattlens trace"), "{err}");

    let (code, err) = fails(&[
        "export",
        "--perfetto",
        demo_trace().to_str().unwrap(),
        "-o",
        "/no/such/dir/out.json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot write /no/such/dir/out.json"), "{err}");
}

#[test]
fn a_cut_short_trace_still_reports_what_it_holds() {
    let bytes = std::fs::read(demo_trace()).unwrap();
    let cut = scratch("cut").join("cut.wlt");
    std::fs::write(&cut, &bytes[..bytes.len() * 9 / 10]).unwrap();
    let out = wattlens(&["report", cut.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        // Mid-record ("probably killed") or on a record boundary ("did not finish"): both keep
        // what came before.
        err.starts_with("wattlens: warning: ")
            && err.contains("the records before it are readable"),
        "{err}"
    );
    assert!(text(&out.stdout).contains("Energy per kernel"));
}

/// Launch counts of the kernel table in a JSON report.
fn launches(report: &serde_json::Value) -> u64 {
    report["devices"][0]["attribution"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["launches"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_trace_given_twice_or_appended_to_itself_is_counted_once_with_a_warning() {
    let trace = demo_trace();
    let t = trace.to_str().unwrap();
    let once = wattlens(&["report", "--json", t]);
    let twice = wattlens(&["report", "--json", t, t]);
    assert!(twice.status.success(), "{}", text(&twice.stderr));
    let (once, twice_v): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&once.stdout).unwrap(),
        serde_json::from_slice(&twice.stdout).unwrap(),
    );
    assert_eq!(launches(&twice_v), launches(&once), "not doubled");
    assert!(
        text(&twice.stderr).contains("trace 2 is the same run as trace 1"),
        "{}",
        text(&twice.stderr)
    );
    // `cat a.wlt a.wlt > c.wlt`: the bytes after the end marker are named.
    let dir = scratch("appended");
    let joined = dir.join("c.wlt");
    let bytes = std::fs::read(&trace).unwrap();
    std::fs::write(&joined, [bytes.clone(), bytes.clone()].concat()).unwrap();
    let out = wattlens(&["report", "--json", joined.to_str().unwrap()]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{} bytes after its end marker", bytes.len())),
        "{err}"
    );
}

#[test]
fn export_never_writes_over_its_input_or_any_trace() {
    let dir = scratch("export-over");
    let trace = dir.join("keep.wlt");
    std::fs::copy(demo_trace(), &trace).unwrap();
    let t = trace.to_str().unwrap();
    let before = std::fs::read(&trace).unwrap();
    let (code, err) = fails(&["export", "--perfetto", "-o", t, t]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the trace being read"), "{err}");
    let other = dir.join("other.wlt");
    std::fs::copy(demo_trace(), &other).unwrap();
    let (code, err) = fails(&["export", "--perfetto", "-o", other.to_str().unwrap(), t]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds a wattlens trace"), "{err}");
    assert_eq!(
        std::fs::read(&trace).unwrap(),
        before,
        "the input is untouched"
    );
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let mut child = Command::new(exe())
        .args(["report", demo_trace().to_str().unwrap(), "--csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn gpu_calibration_session_times_kernels_and_samples_power() {
    use wattlens::gpu::{CalibrationSession, Finished, Launch};
    use wattlens_instrument::power::nvml::DEFAULT_CPU_BUDGET;
    use wattlens_instrument::{PowerReading, SensorProfile};
    let mut s = CalibrationSession::open(0, SensorProfile::default(), DEFAULT_CPU_BUDGET).unwrap();
    for i in 0..3 {
        s.launch(Launch::SpinFor(50_000_000), i).unwrap();
    }
    s.launch(Launch::Sgemm, 3).unwrap();
    s.launch(Launch::Copy, 4).unwrap();
    s.host_idle(1_000_000_000).unwrap();
    let Finished {
        trace,
        launches: times,
        sampler: report,
    } = s.finish(vec!["test".into()]).unwrap();
    assert_eq!(times.len(), 5);
    for &(tag, a, b) in &times[..3] {
        let ms = (b - a) as f64 / 1e6;
        assert!((50.0..52.0).contains(&ms), "spin {tag} took {ms} ms");
    }
    // Launches are in order and do not overlap.
    assert!(times.windows(2).all(|w| w[0].2 <= w[1].1));
    let samples = trace
        .power
        .iter()
        .filter(|r| matches!(r, PowerReading::Sample { .. }))
        .count();
    assert!(samples > 40, "{samples} samples");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// A simulated server: two kinds of request, one at a time and alternating (8 and 64 steps,
/// `tokens=N` in the range's message), with host time between them.
fn two_request_kinds_trace(path: &std::path::Path) {
    use wattlens_instrument::sim::{simulate, GpuModel, KernelSpec, WorkItem, Workload};
    use wattlens_instrument::{LaunchShape, OpClass, SensorProfile};
    let kernel = |name: &str, (duration_ns, dynamic_mw): (u64, u32), region: &str| {
        WorkItem::Kernel(KernelSpec {
            name: name.into(),
            op_class: OpClass::Matmul,
            stream: 0,
            duration_ns,
            dynamic_mw,
            launch: LaunchShape {
                grid: [132, 1, 1],
                block: [128, 1, 1],
                shared_mem_bytes: 0,
            },
            region: region.into(),
            count: 1,
            gap_ns: 20_000,
        })
    };
    let mut items = Vec::new();
    for r in 0..20 {
        let (name, steps) = if r % 2 == 0 {
            ("long", 64)
        } else {
            ("short", 8)
        };
        for _ in 0..steps {
            let region = format!("serve/{name} tokens={steps}");
            items.push(kernel("attn", (300_000, 150_000), &region));
            items.push(kernel("mlp", (500_000, 250_000), &region));
        }
        items.push(WorkItem::Sync {
            host_ns: 3_000_000,
            lead_ns: 0,
        });
    }
    let w = Workload {
        name: "two request kinds".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    };
    let run = simulate(
        &w,
        &GpuModel::h200(),
        &SensorProfile::default(),
        11,
        1_800_000_000_000_000_000,
    );
    wattlens_instrument::TraceWriter::write_trace(std::fs::File::create(path).unwrap(), &run.trace)
        .unwrap();
}

/// A run whose kernels the sensors could not tell apart, recorded without kernel replay, is
/// told how to measure them; a run whose kernels were measured is not.
#[test]
fn a_report_without_replay_says_how_to_measure_kernels_that_run_together() {
    let dir = scratch("replay-hint");
    let lockstep = dir.join("lockstep.wlt");
    // Its two kernels always run one after the other.
    two_request_kinds_trace(&lockstep);
    let hint = "`wattlens run --replay -- CMD` measures each heavy signature alone";
    let out = wattlens(&["report", lockstep.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let measured = stdout
        .lines()
        .find(|l| l.starts_with("Measured"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        measured.contains(": 0.0% of kernel busy time"),
        "{measured}"
    );
    assert!(stdout.contains(hint), "{stdout}");
    let demo = wattlens(&["demo", "--steps", "8", "--out-dir", dir.to_str().unwrap()]);
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    assert!(!text(&demo.stdout).contains(hint), "{}", text(&demo.stdout));
}

/// The request table and the footprint lines of a simulated server, against
/// `tests/data/golden/requests.txt` (`WATTLENS_BLESS=1` rewrites it).
#[test]
fn the_request_table_and_footprint_lines_match_their_golden_report() {
    let dir = scratch("golden");
    let trace = dir.join("serve.wlt");
    two_request_kinds_trace(&trace);
    let out = wattlens(&[
        "report",
        trace.to_str().unwrap(),
        "--pue",
        "1.2",
        "--carbon-intensity",
        "400",
        "--wue",
        "1.8",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let start = stdout.find("Energy per request").unwrap();
    let end = stdout[start..]
        .find("\nObservations")
        .or_else(|| stdout[start..].find("\nWaste"))
        .map_or(stdout.len(), |e| start + e);
    let section = &stdout[start..end];
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/requests.txt");
    if std::env::var_os("WATTLENS_BLESS").is_some() {
        std::fs::write(&golden, section).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        section, want,
        "the request table and footprint lines changed"
    );
    assert!(section.contains("serve/long"));
    assert!(section.contains("per token of serve/long"));
}

/// `wattlens report --json` of a real trace (H100, light mode, a request mix, 2026-12-07)
/// against `tests/data/golden/h100-light-requests.json`, field for field: refactors of the
/// analysis must not change a report (`WATTLENS_BLESS=1` rewrites it when one should).
#[test]
fn a_recorded_h100_trace_reports_the_same_json_as_its_golden() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let trace = data.join("h100-light-requests.wlt");
    let out = wattlens(&["report", "--json", trace.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let golden = data.join("golden/h100-light-requests.json");
    if std::env::var_os("WATTLENS_BLESS").is_some() {
        std::fs::write(&golden, &out.stdout).unwrap();
    }
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
    let ranges = &want["devices"][0]["attribution"]["requests"]["ranges"];
    assert!(ranges.as_array().is_some_and(|r| r.len() >= 2), "{ranges}");
    assert_eq!(
        got, want,
        "the JSON report of a recorded H100 trace changed"
    );
}

/// The verdict line of variant `long` against the baseline `short`.
fn long_against_short(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("verdict: long against short: energy ×"))
        .unwrap_or_else(|| panic!("{stdout}"))
}

/// The first ratio (`×1.234`) a line prints.
fn first_ratio(line: &str) -> f64 {
    line.split('×')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {line}"))
}

#[test]
fn recorded_runs_compare_as_variants_with_the_ops_behind_the_difference() {
    let dir = scratch("compare-runs");
    let demo = |seed: &str, steps: &str| {
        let out_dir = dir.join(format!("s{seed}-{steps}"));
        let out = wattlens(&[
            "demo",
            "--simulate",
            "--seed",
            seed,
            "--steps",
            steps,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        out_dir.join("demo.wlt").display().to_string()
    };
    // Four runs of the short workload (an A/A check), two of one with twice the decode steps.
    let short: Vec<String> = ["1", "2", "3", "4"].iter().map(|s| demo(s, "6")).collect();
    let long: Vec<String> = ["5", "6"].iter().map(|s| demo(s, "12")).collect();
    let a = format!("short={}", short.join(","));
    let b = format!("long={}", long.join(","));
    let out = wattlens(&["compare", &a, &b]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("baseline: short"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("short "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let aa: Vec<f64> = row
        .split(['×', '[', ',', ']'])
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    assert!(row.contains(" 4 ") && aa.len() >= 3, "{row}");
    let (low, high) = (aa[aa.len() - 2], aa[aa.len() - 1]);
    assert!(low <= 1.0 && 1.0 <= high, "the A/A check holds 1: {row}");
    let verdict = long_against_short(&stdout);
    // Twice the decode steps cost more energy.
    assert!(first_ratio(verdict) > 1.0, "{verdict}");
    assert!(stdout.contains("    op "), "{stdout}");
    // The same as JSON: every variant and every verdict.
    let out = wattlens(&["compare", &a, &b, "--json", "--kernel", "^matmul"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["variants"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["variants"][0]["runs"], 4);
    let v = &doc["verdicts"][0];
    assert_eq!(
        (v["variant"].as_str(), v["baseline"].as_str()),
        (Some("long"), Some("short"))
    );
    assert!(
        v["energy"]["value"].as_f64().is_some_and(|r| r > 1.0),
        "{v}"
    );
    assert!(doc["per_launch"][1]["launches"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let (code, err) = fails(&["compare", "--json", "--builtin"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = fails(&["compare", &a]);
    assert_eq!(code, 2);
    assert!(err.contains("two recorded runs"), "{err}");
}

/// A stand-in for a CUDA program under `wattlens run` (a mock executor, as hyperfine's): it
/// writes a simulated run's trace where the injection library would, then prints an accuracy
/// line. Arguments: decode steps and the error to print.
fn fake_gpu_program(dir: &std::path::Path) -> PathBuf {
    let script = dir.join("fake-gpu-program.sh");
    std::fs::write(
        &script,
        r#"set -e
d=$(mktemp -d)
"$WATTLENS_BIN" demo --simulate --seed $$ --steps "$1" --out-dir "$d" >/dev/null 2>&1
cp "$d/demo.wlt" "$WATTLENS_OUTPUT.pid$$.wlt"
rm -r "$d"
echo "step done"
echo "max error $2"
"#,
    )
    .unwrap();
    script
}

fn compare_with_fake(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(exe())
        .arg("compare")
        .args(["--cooldown-s", "0", "--out-dir", dir.to_str().unwrap()])
        .args(args)
        .env("WATTLENS_BIN", exe())
        // The stand-in uses no CUDA, so no library is loaded: any file stands in for the
        // injection library (a fresh `cargo test` builds no cdylib).
        .env("WATTLENS_INJECT_LIB", "/bin/true")
        .output()
        .unwrap()
}

#[test]
fn commands_compare_as_variants_interleaved_with_their_metric() {
    let dir = scratch("compare-commands");
    let fake = fake_gpu_program(&dir);
    let short = format!("short=sh {} 4 0.010", fake.display());
    let long = format!("long=sh {} 10 0.020", fake.display());
    let out = compare_with_fake(
        &dir,
        &[
            "--variant",
            &short,
            "--variant",
            &long,
            "--repeats",
            "2",
            "--metric",
            r"max error ([0-9.]+)",
            "--kernel",
            "^matmul_qkv",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // One warm-up round and two measured ones, the order rotated each round.
    let rounds: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("wattlens: compare: round"))
        .collect();
    assert_eq!(rounds.len(), 6, "{stderr}");
    assert!(rounds[0].contains("(warm-up), short") && rounds[1].contains("(warm-up), long"));
    assert!(rounds[2].ends_with("round 2/3, long") && rounds[3].ends_with("round 2/3, short"));
    for (name, round) in [("short", 0), ("long", 2)] {
        assert!(dir.join(format!("compare/{name}.r{round}.wlt")).is_file());
        let printed = std::fs::read_to_string(dir.join(format!("compare/{name}.r{round}.out")));
        assert!(printed.unwrap().contains("max error"));
    }
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{stdout}"))
            .to_owned()
    };
    let short_row = row("short");
    assert!(short_row.contains(" 2 "), "{stdout}");
    assert!(short_row.ends_with("0.0100 [0.0100, 0.0100]"), "{stdout}");
    assert!(row("long").ends_with("0.0200 [0.0200, 0.0200]"), "{stdout}");
    let verdict = long_against_short(&stdout);
    assert!(
        first_ratio(verdict) > 1.0,
        "more decode steps cost more: {verdict}"
    );
    assert!(stdout.contains("    op "), "{stdout}");
    // Energy per launch of the named kernel, the same work in both: a ratio near 1.
    let per_launch = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Per launch of kernels matching \"^matmul_qkv\""))
        .nth(2)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((first_ratio(per_launch) - 1.0).abs() < 0.05, "{per_launch}");
}

#[test]
fn ranges_of_one_program_compare_as_variants() {
    let dir = scratch("compare-ranges");
    let fake = fake_gpu_program(&dir);
    let fake = fake.to_str().unwrap();
    let out = compare_with_fake(
        &dir,
        &[
            "--ranges",
            "mlp,attention",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--",
            "sh",
            fake,
            "4",
            "0",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("per range instance"), "{stdout}");
    assert!(
        stdout.contains("verdict: attention against mlp"),
        "{stdout}"
    );
    assert!(stdout.contains("idle over the wall time"), "{stdout}");
    // The parts add up to the instances' energy difference.
    let share: f64 = stdout
        .split("the op classes and idle add up to ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((80.0..=120.0).contains(&share), "{stdout}");
    let missing = compare_with_fake(
        &dir,
        &[
            "--ranges",
            "mlp,nowhere",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--",
            "sh",
            fake,
            "4",
            "0",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    let err = text(&missing.stderr);
    assert!(err.contains("the range nowhere never appears"), "{err}");
}

#[test]
fn compare_refuses_bad_variants_in_one_sentence() {
    let dir = scratch("compare-errors");
    let fake = fake_gpu_program(&dir);
    let good = format!("good=sh {} 4 0", fake.display());
    // A command that cannot start.
    let out = compare_with_fake(
        &dir,
        &[
            "--variant",
            "gone=no-such-command-xyz",
            "--variant",
            &good,
            "--warmup",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("variant gone, round 1"));
    // A command that uses no GPU, where an earlier comparison left a trace of that name: the
    // old trace does not stand in for the run.
    std::fs::create_dir_all(dir.join("compare")).unwrap();
    std::fs::copy(demo_trace(), dir.join("compare/quiet.r0.wlt")).unwrap();
    let out = compare_with_fake(
        &dir,
        &[
            "--variant",
            "quiet=true",
            "--variant",
            &good,
            "--warmup",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("used no GPU"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("compare/quiet.r0.wlt").exists());
    // Not NAME=CMD, one variant only, two forms at once.
    for args in [
        vec!["--variant", "python3 m.py", "--variant", &good],
        vec!["--variant", &good],
        vec!["--variant", &good, "--builtin"],
        vec!["--ranges", "a,b"],
    ] {
        let out = compare_with_fake(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr).trim().lines().count(), 1, "{args:?}");
    }
    // Traces from different GPUs.
    let demo_dir = dir.join("demo");
    let out = wattlens(&[
        "demo",
        "--simulate",
        "--steps",
        "4",
        "--out-dir",
        demo_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let a = demo_dir.join("demo.wlt");
    let mut other = wattlens_instrument::read_trace_file(&a).unwrap().trace;
    other.meta.devices[0].name = "NVIDIA B200".into();
    let b = dir.join("b200.wlt");
    wattlens_instrument::TraceWriter::write_trace(std::fs::File::create(&b).unwrap(), &other)
        .unwrap();
    let (code, err) = fails(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("different GPUs"), "{err}");
}

#[test]
fn traces_of_two_gpus_report_the_whole_job() {
    let dir = scratch("job");
    let a = demo_trace();
    let mut other = wattlens_instrument::read_trace_file(&a).unwrap().trace;
    other.meta.devices[0].uuid = "GPU-rank1".into();
    // Another process: it started a moment later (the same start is the same run, counted once).
    other.meta.start_unix_ns += 1;
    let b = dir.join("rank1.wlt");
    wattlens_instrument::TraceWriter::write_trace(std::fs::File::create(&b).unwrap(), &other)
        .unwrap();
    let out = wattlens(&["report", a.to_str().unwrap(), b.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("on 2 GPU(s)"), "{stdout}");
    let job = stdout
        .lines()
        .find(|l| l.starts_with("Whole job [simulated]: 2 GPUs drew"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(job.contains("quadrature"), "{job}");
    assert!(stdout.contains("Per request across GPUs"), "{stdout}");
}
