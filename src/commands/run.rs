//! `wattlens run -- CMD`: run an unmodified program with the injection library attached,
//! collect the trace each of its CUDA processes wrote, and report them merged per GPU.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use wattlens_inject_config::{
    ENV_DIGESTS, ENV_HOOKS, ENV_KINDS, ENV_OUTPUT, ENV_REPLAY, ENV_REPLAY_BUDGET_MS,
};
use wattlens_instrument::merge::add_power_after;
use wattlens_instrument::Trace;

use crate::baseline::{self, Baseline};
use crate::cli::{Format, RunArgs};
use crate::error::CliError;
use crate::{child, locate};

/// The injection library's settings `--light`, `--replay` and `--replay-budget` stand for.
///
/// # Errors
/// [`CliError::Usage`] for a budget that is not a positive number of seconds.
fn injection_settings(args: &RunArgs) -> Result<Vec<(&'static str, String)>, CliError> {
    if args.light {
        // Ranges need the NVTX callbacks; nothing else is recorded or hashed.
        return Ok(vec![
            (ENV_HOOKS, "nvtx".to_owned()),
            (ENV_KINDS, "none".to_owned()),
            (ENV_DIGESTS, "off".to_owned()),
        ]);
    }
    if !args.replay {
        return Ok(Vec::new());
    }
    let mut env = vec![(ENV_REPLAY, "on".to_owned())];
    if let Some(s) = args.replay_budget {
        if !(s.is_finite() && s > 0.0) {
            return Err(CliError::Usage(format!(
                "--replay-budget {s} is not a positive number of seconds; give one such as 30"
            )));
        }
        env.push((ENV_REPLAY_BUDGET_MS, format!("{:.0}", (s * 1000.0).ceil())));
    }
    Ok(env)
}

/// Run `wattlens run`.
///
/// # Errors
/// [`CliError::Usage`] for a bad output folder, a bad `WATTLENS_*` setting or a command that
/// cannot be started,
/// [`CliError::Setup`] without the injection library, [`CliError::ChildExit`] carrying the
/// child's exit code when it failed (after the report), and report errors.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (dir, stem) = split_output(&args.output)?;
    let Some((program, rest)) = args.command.split_first() else {
        return Err(CliError::Usage(
            "no command to run; give it after `--`, as in `wattlens run -- python3 infer.py`"
                .into(),
        ));
    };
    // The injection library reads its settings in each process; a bad one is a usage error
    // here, before the command runs, rather than a process that runs unrecorded.
    let prefix = dir.join(&stem);
    let settings = injection_settings(args)?;
    let factors = super::report::footprint_factors(&args.footprint)?;
    check_settings(&prefix, &settings)?;
    let lib = locate::injection_library(args.inject_lib.as_deref())?;
    let cupti = locate::cupti(args.cupti.as_deref())?;
    if cupti.is_none() {
        eprintln!(
            "wattlens: warning: no libcupti found in LD_LIBRARY_PATH, $CUDA_HOME or /usr/local/cuda; CUDA processes will run unrecorded (name one with --cupti PATH)"
        );
    }
    let since = SystemTime::now();
    let mut cmd = Command::new(program);
    cmd.args(rest);
    attach_injection(&mut cmd, (&lib, cupti.as_deref()), &prefix, &settings);
    let audit = args
        .audit
        .then(|| attach_audit(&mut cmd, &prefix))
        .transpose()?;
    let code = run_command(&mut cmd, program)?;
    drop(audit);
    let ProcessTraces {
        paths,
        facts,
        reading,
    } = collect_traces((&dir, &stem), since, args, &prefix);
    let finished = finish_traces(&paths, &facts, reading);
    if args.audit {
        crate::audit::say_joined(finished.as_ref().map_or(0, |f| f.1), &prefix);
    }
    let reported = finished.and_then(|(traces, _)| {
        if args.no_report {
            Ok(())
        } else {
            let mut html = stem.clone();
            html.push(".html");
            report(
                traces,
                (cupti.is_some(), program),
                (args.format, factors),
                &dir.join(html),
                out,
            )
        }
    });
    match (reported, code) {
        (Ok(()), 0) => Ok(()),
        (Ok(()), code) => Err(CliError::ChildExit(code)),
        (Err(e), 0) => Err(e),
        // The command's own failure decides the exit code; the traces stay on disk.
        (Err(e), code) => {
            eprintln!("wattlens: error: {e}");
            Err(CliError::ChildExit(code))
        }
    }
}

/// Have `cmd` load the audit's PyTorch adapter (`wattlens run --audit`), writing its facts
/// beside the traces under `prefix`. The folder it runs from lives as long as the returned
/// value.
///
/// # Errors
/// [`CliError::WriteFile`] when the adapter's folder cannot be written.
fn attach_audit(cmd: &mut Command, prefix: &Path) -> Result<crate::audit::AuditFolder, CliError> {
    let folder = crate::audit::AuditFolder::create()?;
    cmd.env(
        "PYTHONPATH",
        folder.python_path(std::env::var_os("PYTHONPATH")),
    )
    .env(crate::audit::ENV_FACTS, crate::audit::facts_pattern(prefix));
    Ok(folder)
}

/// Run the command to its end and say how long it ran; its exit code.
///
/// # Errors
/// [`CliError::Usage`] for a command that does not exist, [`CliError::Setup`] for one that
/// cannot be started.
fn run_command(cmd: &mut Command, program: &str) -> Result<u8, CliError> {
    let started = std::time::Instant::now();
    let status = child::run(cmd).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::Usage(format!(
                "cannot run `{program}`: no such command; check its name and PATH"
            ))
        } else {
            CliError::Setup(format!("cannot run `{program}`: {e}"))
        }
    })?;
    eprintln!(
        "wattlens: `{program}` ran for {:.3} s",
        started.elapsed().as_secs_f64()
    );
    Ok(child::exit_code(status))
}

/// What the command's processes left: their traces, and what goes into them next.
struct ProcessTraces {
    /// One trace per CUDA process (a lone one renamed to the output path).
    paths: Vec<PathBuf>,
    /// Each trace's audit facts, where `--audit` made some.
    facts: Vec<Option<PathBuf>>,
    /// The reader of the GPUs' quiet power after the command, and when it started.
    reading: Option<(Baseline, std::time::Instant)>,
}

/// The traces the command's processes wrote under `dir`/`stem` since `since`, with their
/// audit facts, and the reader of the GPUs' quiet power after the command, started while the
/// traces are read.
fn collect_traces(
    (dir, stem): (&Path, &OsString),
    since: SystemTime,
    args: &RunArgs,
    prefix: &Path,
) -> ProcessTraces {
    let mut paths = process_traces(dir, stem, since);
    // Each trace's audit facts, found by the process id in its name (before the rename).
    let facts: Vec<Option<PathBuf>> = paths
        .iter()
        .map(|p| {
            args.audit
                .then(|| crate::audit::facts_of(p, prefix))
                .flatten()
        })
        .collect();
    let reading = if paths.is_empty() {
        None
    } else {
        match Baseline::start() {
            Ok(b) => Some((b, std::time::Instant::now())),
            Err(e) => {
                eprintln!("wattlens: note: cannot read GPU power from wattlens itself ({e}); each trace keeps only what its process read");
                None
            }
        }
    };
    if let [only] = paths.as_slice() {
        if std::fs::rename(only, &args.output).is_ok() {
            paths = vec![args.output.clone()];
        }
    }
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match paths.len() {
        0 => {}
        1 => eprintln!("wattlens: trace: {}", shown.join("")),
        n => eprintln!(
            "wattlens: {n} traces (one per CUDA process): {}",
            shown.join(" ")
        ),
    }
    ProcessTraces {
        paths,
        facts,
        reading,
    }
}

/// Refuse, before the command runs, a setting the injection library would refuse in each
/// process (`settings` are the ones the flags stand for; the rest come from the environment).
///
/// # Errors
/// [`CliError::Usage`] naming the setting.
fn check_settings(prefix: &Path, settings: &[(&'static str, String)]) -> Result<(), CliError> {
    wattlens_inject_config::check_unicode(std::env::vars_os())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    wattlens_inject_config::Config::from_env(
        |k| {
            if k == ENV_OUTPUT {
                Some(prefix.display().to_string())
            } else if let Some((_, v)) = settings.iter().find(|(name, _)| *name == k) {
                Some(v.clone())
            } else {
                std::env::var(k).ok()
            }
        },
        std::process::id(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(())
}

/// Have `cmd`'s CUDA processes load the injection library `lib` (and NVTX call it), with
/// libcupti `cupti`, writing traces under `prefix`, with `settings`.
fn attach_injection(
    cmd: &mut Command,
    (lib, cupti): (&Path, Option<&Path>),
    prefix: &Path,
    settings: &[(&'static str, String)],
) {
    cmd.env("CUDA_INJECTION64_PATH", lib)
        .env(ENV_OUTPUT, prefix);
    if std::env::var_os("NVTX_INJECTION64_PATH").is_none() {
        // NVTX calls our handlers directly (a user's own choice, such as libcupti, stays).
        cmd.env("NVTX_INJECTION64_PATH", lib);
    }
    if std::env::var_os("WATTLENS_TAIL_MS").is_none() {
        // wattlens reads the sensors after the command itself: no tail in the process.
        cmd.env("WATTLENS_TAIL_MS", "0");
    }
    if let Some(c) = cupti {
        cmd.env("WATTLENS_CUPTI", c);
    }
    cmd.envs(settings.iter().map(|(k, v)| (*k, v)));
}

/// Read the traces, join each its audit facts (`facts`, where it has some) and add the
/// readings taken after the command; rewrite, once, each file that gained something. The
/// traces, and how many audited operations were joined.
fn finish_traces(
    paths: &[PathBuf],
    facts: &[Option<PathBuf>],
    reading: Option<(Baseline, std::time::Instant)>,
) -> Result<(Vec<Trace>, u64), CliError> {
    let mut traces = Vec::with_capacity(paths.len());
    let mut changed = Vec::with_capacity(paths.len());
    let mut ops = 0;
    for (p, f) in paths.iter().zip(facts) {
        let mut trace = super::load_trace(p)?;
        let joined = f
            .as_deref()
            .map_or(0, |f| crate::audit::join(&mut trace, f));
        ops += joined;
        changed.push(joined > 0);
        traces.push(trace);
    }
    if let Some((b, started)) = reading {
        std::thread::sleep(baseline::AFTER.saturating_sub(started.elapsed()));
        let after = b.finish();
        for (t, c) in traces.iter_mut().zip(changed.iter_mut()) {
            *c |= add_power_after(t, &after) > 0;
        }
    }
    for ((p, t), c) in paths.iter().zip(&traces).zip(&changed) {
        if *c {
            super::save_trace(p, t)?;
        }
    }
    Ok((traces, ops))
}

/// Print the report of `traces` and write its HTML to `html`, or say why there is none.
fn report(
    traces: Vec<Trace>,
    (attached, program): (bool, &str),
    (format, factors): (Format, wattlens_instrument::footprint::Factors),
    html: &Path,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if traces.is_empty() {
        if attached {
            writeln!(
                out,
                "No GPU work was seen: no process of `{program}` created a CUDA context, so there is nothing to attribute."
            )?;
        } else {
            writeln!(
                out,
                "No trace was written: without libcupti, wattlens could not attach to `{program}`."
            )?;
        }
        return Ok(());
    }
    let work = traces
        .iter()
        .flat_map(|t| &t.spans)
        .filter(|s| s.is_device_work())
        .count();
    if work == 0 {
        writeln!(
            out,
            "No GPU work was seen: {} process(es) of `{program}` opened CUDA but ran no kernels, copies or memsets.",
            traces.len()
        )?;
        return Ok(());
    }
    // A build without the charting library still reports; it says why there is no HTML.
    let html = crate::render::html::unavailable().is_none().then_some(html);
    super::report::write(traces, (format, factors), html, out)
}

/// The output's folder (which must exist) and its file stem.
fn split_output(output: &Path) -> Result<(PathBuf, OsString), CliError> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "the output folder {} does not exist; create it or choose another --output",
            dir.display()
        )));
    }
    let stem = if output.extension().is_some_and(|e| e == "wlt") {
        output.file_stem()
    } else {
        output.file_name()
    };
    let stem = stem.map(OsString::from).ok_or_else(|| {
        CliError::Usage(format!(
            "--output {} names no file; give a path such as run.wlt",
            output.display()
        ))
    })?;
    Ok((dir, stem))
}

/// True when `name` is a per-process trace of output stem `stem`:
/// `STEM.pidP.wlt` or `STEM.rankR.pidP.wlt`.
pub fn is_process_trace(stem: &str, name: &str) -> bool {
    let Some(middle) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_suffix(".wlt"))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pid = match middle.split_once('.') {
        Some((rank, pid)) => match rank.strip_prefix("rank") {
            Some(r) if digits(r) => pid,
            _ => return false,
        },
        None => middle,
    };
    pid.strip_prefix("pid").is_some_and(digits)
}

/// The per-process traces in `dir` written since `since`, sorted by name.
fn process_traces(dir: &Path, stem: &OsString, since: SystemTime) -> Vec<PathBuf> {
    let stem = stem.to_string_lossy();
    super::files_in(dir, |name| is_process_trace(&stem, name))
        .into_iter()
        .filter(|p| {
            p.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traces_audit_facts_are_joined_and_the_trace_written_once_with_them() {
        use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
        use wattlens_instrument::trace::Annotation;
        let dir = std::env::temp_dir().join(format!("wattlens-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = simulate(
            &demo_workload(1),
            &GpuModel::h200(),
            &wattlens_instrument::SensorProfile::h200_2026_11_22(),
            1,
            1_700_000_000_000_000_000,
        );
        let trace = dir.join("run.pid7.wlt");
        super::super::save_trace(&trace, &run.trace).unwrap();
        std::fs::write(
            dir.join("run.audit.pid7.jsonl"),
            concat!(
                r#"{"op":1,"name":"aten::mm","at":["",0],"id":"1","in":[],"out":[],"w":[]}"#,
                "\n",
                r#"{"end":{"ops":1,"audit_ns":10}}"#,
                "\n"
            ),
        )
        .unwrap();
        let prefix = dir.join("run");
        let facts = vec![crate::audit::facts_of(&trace, &prefix)];
        assert!(facts[0].is_some());
        let (traces, ops) = finish_traces(std::slice::from_ref(&trace), &facts, None).unwrap();
        assert_eq!(ops, 1);
        let on_disk = super::super::load_trace(&trace).unwrap();
        for t in [&traces[0], &on_disk] {
            assert!(t
                .annotations
                .iter()
                .any(|a| matches!(a, Annotation::AuditSummary(s) if s.ops == 1)));
        }
        assert!(
            crate::audit::unjoined_facts(&prefix).is_empty(),
            "the facts file is gone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recognises_per_process_traces_only() {
        assert!(is_process_trace("run", "run.pid42.wlt"));
        assert!(is_process_trace("run", "run.rank3.pid42.wlt"));
        assert!(!is_process_trace("run", "run.wlt"));
        assert!(!is_process_trace("run", "run.pid.wlt"));
        assert!(!is_process_trace("run", "run.rankx.pid4.wlt"));
        assert!(!is_process_trace("run", "rerun.pid4.wlt"));
        assert!(!is_process_trace("run", "run.pid4.wlt.tmp"));
    }

    #[test]
    fn output_folder_must_exist() {
        assert!(matches!(
            split_output(Path::new("/no/such/folder/run.wlt")),
            Err(CliError::Usage(_))
        ));
        let (dir, stem) = split_output(Path::new("run.wlt")).unwrap_or_default();
        assert_eq!((dir, stem), (PathBuf::from("."), OsString::from("run")));
    }
}
