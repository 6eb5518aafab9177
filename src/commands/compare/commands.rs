//! `wattlens compare --variant NAME=CMD …` (each variant a command) and `--ranges A,B -- CMD`
//! (each variant a range of one program): the commands run under the repetition protocol
//! ([`super::protocol`]), and their traces are compared as recorded runs are
//! ([`super::runs`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wattlens_instrument::compare_runs::{Metric, Variant};

use super::protocol::{self, PowerProbe, Protocol, Recorded, RunFlags, Slot};
use super::runs;
use crate::cli::CompareArgs;
use crate::error::CliError;

/// How long the idle power is read before the first run.
const IDLE_READ: Duration = Duration::from_secs(1);

/// What a variant's energy is when variants are ranges.
const RANGE_ENERGY: &str =
    "per range instance, as a request costs it (its work's dynamic energy plus idle power × its wall time); the op parts include that idle";

/// A variant named on the command line: `NAME=CMD`.
///
/// # Errors
/// [`CliError::Usage`] when it has no name or no command.
fn variant_command(arg: &str) -> Result<(String, String), CliError> {
    match arg.split_once('=') {
        Some((name, cmd))
            if !name.trim().is_empty()
                && !cmd.trim().is_empty()
                && name.chars().all(|c| c.is_alphanumeric() || "-_.+".contains(c)) =>
        {
            Ok((name.to_owned(), cmd.to_owned()))
        }
        _ => Err(CliError::Usage(format!(
            "--variant {arg:?} is not NAME=CMD; give a name of letters, digits, '-', '_', '.' or '+', then the command, as in --variant int8='python3 infer.py --int8'"
        ))),
    }
}

/// Names that are distinct and at least two; `how` says how to give more.
///
/// # Errors
/// [`CliError::Usage`] otherwise.
fn check_names(names: &[&str], how: &str) -> Result<(), CliError> {
    if names.len() < 2 {
        return Err(CliError::Usage(format!(
            "compare needs two variants or more; {how}"
        )));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(CliError::Usage(format!(
                "the variant name {n} is given twice; give each variant its own name"
            )));
        }
    }
    Ok(())
}

/// The `--metric` expression, compiled.
///
/// # Errors
/// [`CliError::Usage`] for one that does not compile.
fn compile_metric(metric: Option<&str>) -> Result<Option<regex_lite::Regex>, CliError> {
    metric
        .map(|m| {
            regex_lite::Regex::new(m).map_err(|e| {
                CliError::Usage(format!("--metric {m:?} is not a regular expression: {e}"))
            })
        })
        .transpose()
}

/// The repetition protocol and the run folder `args` ask for, with the folder made.
///
/// # Errors
/// [`CliError::WriteFile`] when the folder cannot be made.
fn prepare(args: &CompareArgs) -> Result<(Protocol, PathBuf), CliError> {
    let dir = args.out_dir.join("compare");
    std::fs::create_dir_all(&dir).map_err(|source| CliError::WriteFile {
        path: dir.clone(),
        source,
    })?;
    let protocol = Protocol {
        repeats: args.repeats,
        warmup: args.warmup,
        cooldown_max: Duration::from_secs(args.cooldown_s),
    };
    Ok((protocol, dir))
}

/// The cool-down between runs: NVML and the idle level read before the first run, or `None`
/// (said once) without a GPU sensor or when the cool-down is off.
fn open_cooler(protocol: &Protocol) -> Option<(protocol::NvmlProbe, f64)> {
    if protocol.cooldown_max.is_zero() {
        return None;
    }
    match protocol::NvmlProbe::open() {
        Ok(mut probe) => {
            let idle = protocol::measure_idle_w(&mut probe, IDLE_READ)?;
            eprintln!(
                "wattlens: compare: idle power before the runs {idle:.1} W; each run starts at {:.1} W or below, or after {} s",
                protocol::idle_level_w(idle),
                protocol.cooldown_max.as_secs()
            );
            Some((probe, idle))
        }
        Err(e) => {
            eprintln!("wattlens: compare: no cool-down between runs: cannot read GPU power ({e})");
            None
        }
    }
}

/// Run one slot of the schedule: the cool-down, then the command under `wattlens run`.
///
/// # Errors
/// As [`protocol::record`], with the variant, the round and where the runs so far are.
fn run_slot(
    cooler: &mut Option<(protocol::NvmlProbe, f64)>,
    protocol: &Protocol,
    (name, argv): (&str, &[String]),
    slot: Slot,
    (dir, flags): (&Path, RunFlags),
) -> Result<Recorded, CliError> {
    let rounds = protocol.warmup + protocol.repeats;
    let cooled = cooler.as_mut().and_then(|(probe, idle)| {
        protocol::cool_down(
            probe as &mut dyn PowerProbe,
            protocol::idle_level_w(*idle),
            protocol.cooldown_max,
        )
    });
    eprintln!(
        "wattlens: compare: round {}/{rounds}{}, {name}{}",
        slot.round + 1,
        if slot.warmup { " (warm-up)" } else { "" },
        cooled.map_or(String::new(), |c| format!(
            ": cooled {:.1} s to {:.1} W{}",
            c.waited.as_secs_f64(),
            c.start_w,
            if c.reached { "" } else { " (the wait ran out)" }
        ))
    );
    let output = dir.join(format!("{name}.r{}.wlt", slot.round));
    protocol::record(argv, &output, flags).map_err(|e| {
        let whose = format!(
            "variant {name}, round {} (its output: {})",
            slot.round + 1,
            output.with_extension("out").display()
        );
        match e {
            CliError::Usage(m) => CliError::Usage(format!("{whose}: {m}")),
            CliError::ChildExit(code) => CliError::Setup(format!(
                "{whose}: the command exited with code {code}; the traces of the runs before it are in {}",
                dir.display()
            )),
            other => other,
        }
    })
}

/// Each variant's metric values, summarised; a note for runs where it was missing.
fn metrics(names: &[&str], values: &[Vec<f64>], runs: u32) -> Vec<Option<Metric>> {
    names
        .iter()
        .zip(values)
        .map(|(name, v)| {
            if v.len() < runs as usize {
                eprintln!(
                    "wattlens: compare: --metric matched {} of {runs} runs of {name}",
                    v.len()
                );
            }
            Metric::of(v)
        })
        .collect()
}

/// Run `wattlens compare --variant …`.
///
/// # Errors
/// [`CliError::Usage`] for a bad variant or metric, a command that cannot start or uses no
/// GPU; [`CliError::Setup`] for a command that fails (the traces of the runs before it stay on
/// disk); trace and attribution errors.
pub fn variants(args: &CompareArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let specs = args
        .variants
        .iter()
        .map(|a| variant_command(a))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
    check_names(&names, "give --variant NAME=CMD once for each")?;
    let metric = compile_metric(args.metric.as_deref())?;
    let kernel = runs::compile_kernel(args.kernel.as_deref())?;
    let (protocol, dir) = prepare(args)?;
    let flags = RunFlags {
        replay: args.replay,
    };
    let mut cooler = open_cooler(&protocol);
    let mut runs: Vec<Vec<Variant>> = vec![Vec::new(); specs.len()];
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); specs.len()];
    let mut gpus = Vec::new();
    for slot in protocol::schedule(specs.len(), &protocol) {
        let (name, cmd) = &specs[slot.variant];
        let argv = ["sh".to_owned(), "-c".to_owned(), cmd.clone()];
        let rec = run_slot(&mut cooler, &protocol, (name, &argv), slot, (&dir, flags))?;
        if slot.warmup {
            continue;
        }
        gpus.push((name.clone(), runs::gpu_of(&rec.trace)));
        let a = runs::attribution_of(&rec.trace, &format!("the run of {name}"))?;
        runs[slot.variant].push(Variant::of(name, &a));
        if let Some(v) = metric
            .as_ref()
            .and_then(|m| protocol::metric_value(m, &rec.stdout))
        {
            values[slot.variant].push(v);
        }
    }
    runs::same_gpu(&gpus)?;
    let summaries = if metric.is_some() {
        metrics(&names, &values, protocol.repeats)
    } else {
        vec![None; names.len()]
    };
    let mut variants = Vec::with_capacity(specs.len());
    for ((name, each), m) in names.iter().zip(&runs).zip(summaries) {
        let Some(mut v) = Variant::of_runs(name, each) else {
            continue;
        };
        v.metric = m;
        variants.push(v);
    }
    let view = runs::View {
        energy_is: runs::RUN_ENERGY,
        kernel: kernel.as_ref(),
        json: args.json,
    };
    runs::write(out, &variants, &view)?;
    Ok(())
}

/// Run `wattlens compare --ranges A,B -- CMD`.
///
/// # Errors
/// [`CliError::Usage`] without a command, for fewer than two ranges, with `--metric` (one
/// program prints one output, not one per range), or for a range that never appears; as
/// [`variants`] otherwise.
pub fn ranges(args: &CompareArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.command.is_empty() {
        return Err(CliError::Usage(
            "--ranges needs the program after `--`, as in wattlens compare --ranges fp16,int8 -- python3 bench.py".into(),
        ));
    }
    let names: Vec<&str> = args.ranges.iter().map(String::as_str).collect();
    check_names(&names, "name two ranges or more, as in --ranges fp16,int8")?;
    if args.metric.is_some() {
        return Err(CliError::Usage(
            "--metric reads one number per command; with --ranges the program is one command, so compare its variants as --variant commands to get a metric each".into(),
        ));
    }
    let kernel = runs::compile_kernel(args.kernel.as_deref())?;
    let (protocol, dir) = prepare(args)?;
    let flags = RunFlags {
        replay: args.replay,
    };
    let mut cooler = open_cooler(&protocol);
    let mut runs: Vec<Vec<Variant>> = vec![Vec::new(); names.len()];
    for slot in protocol::schedule(1, &protocol) {
        let rec = run_slot(
            &mut cooler,
            &protocol,
            ("ranges", &args.command),
            slot,
            (&dir, flags),
        )?;
        if slot.warmup {
            continue;
        }
        let a = runs::attribution_of(&rec.trace, "the program's run")?;
        for (k, name) in names.iter().enumerate() {
            let Some(v) = Variant::of_range(name, &rec.trace, &a) else {
                let seen: Vec<&str> = a.requests.ranges.iter().map(|r| r.path.as_str()).collect();
                return Err(CliError::Usage(format!(
                    "the range {name} never appears in the program's run (ranges seen: {}); check its NVTX range names",
                    if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
                )));
            };
            runs[k].push(v);
        }
    }
    let variants: Vec<Variant> = names
        .iter()
        .zip(&runs)
        .filter_map(|(name, each)| Variant::of_runs(name, each))
        .collect();
    let view = runs::View {
        energy_is: RANGE_ENERGY,
        kernel: kernel.as_ref(),
        json: args.json,
    };
    runs::write(out, &variants, &view)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_name_equals_command() {
        let ok = variant_command("int8=python3 m.py --x=1");
        assert!(matches!(ok, Ok((ref n, ref c)) if n == "int8" && c == "python3 m.py --x=1"));
        for bad in ["python3 m.py", "=cmd", "int8=", "a b=cmd"] {
            assert!(
                matches!(variant_command(bad), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
        assert!(check_names(&["a", "b"], "").is_ok());
        assert!(matches!(check_names(&["a"], ""), Err(CliError::Usage(_))));
        assert!(matches!(
            check_names(&["a", "a"], ""),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            compile_metric(Some("ppl=(")),
            Err(CliError::Usage(_))
        ));
    }
}
