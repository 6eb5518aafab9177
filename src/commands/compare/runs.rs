//! `wattlens compare A.wlt B.wlt …`: recorded runs compared as variants, the first as the
//! baseline ([`wattlens_instrument::compare_runs`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use wattlens_instrument::compare_runs::{verdict, Delta, Ratio, Variant, Verdict};

use crate::error::CliError;
use crate::render::analyze;
use crate::render::table::clip;
use crate::render::units::{energy, joules};

/// Parts listed per verdict; the rest are summed in one line.
const TOP_PARTS: usize = 8;

/// A variant named on the command line: `NAME=TRACE[,TRACE…]` (its runs), or `TRACE` named by
/// its file stem.
fn named(arg: &str) -> (String, Vec<PathBuf>) {
    match arg.split_once('=') {
        Some((name, paths)) if !name.is_empty() && !paths.is_empty() => (
            name.to_owned(),
            paths
                .split(',')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        ),
        _ => {
            let path = PathBuf::from(arg);
            let name = path
                .file_stem()
                .map_or_else(|| arg.to_owned(), |s| s.to_string_lossy().into_owned());
            (name, vec![path])
        }
    }
}

/// One run of a variant, from its trace.
///
/// # Errors
/// As [`run`].
fn one_run(name: &str, path: &Path) -> Result<Variant, CliError> {
    let trace = crate::commands::load_trace(path)?;
    let report = analyze(&trace)?;
    let Some(a) = report.devices.iter().find_map(|d| d.attribution.as_ref()) else {
        return Err(CliError::Usage(format!(
            "{} has no device with energy data to compare",
            path.display()
        )));
    };
    Ok(Variant::of(name, a))
}

/// Compare the variants `runs` names, the first as the baseline.
///
/// # Errors
/// [`CliError::Usage`] for fewer than two variants or a variant without a trace,
/// [`CliError::ReadTrace`] for a trace that cannot be read, [`CliError::Attribution`] for one
/// without an attributable device.
pub fn run(runs: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    if runs.len() < 2 {
        return Err(CliError::Usage(
            "compare needs two recorded runs or more (`wattlens compare fp16=a.wlt int8=b.wlt`, or NAME=A.wlt,B.wlt for several runs of one variant); without runs it measures the built-in kernels".into(),
        ));
    }
    let mut variants = Vec::with_capacity(runs.len());
    for arg in runs {
        let (name, paths) = named(arg);
        let each = paths
            .iter()
            .map(|p| one_run(&name, p))
            .collect::<Result<Vec<_>, _>>()?;
        let v = Variant::of_runs(&name, &each)
            .ok_or_else(|| CliError::Usage(format!("{arg} names no trace")))?;
        variants.push(v);
    }
    write(out, &variants)?;
    Ok(())
}

fn ratio(r: &Option<Ratio>) -> String {
    r.map_or_else(
        || "-".to_owned(),
        |r| format!("×{:.3} [{:.3}, {:.3}]", r.value, r.low, r.high),
    )
}

fn signed(d: &Delta) -> String {
    let sign = if d.mj >= 0.0 { "+" } else { "−" };
    format!("{sign}{} ±{}", joules(d.mj.abs()), joules(d.half_mj))
}

fn write(out: &mut dyn Write, variants: &[Variant]) -> std::io::Result<()> {
    let base = &variants[0];
    writeln!(
        out,
        "Compare {} variants of one workload (each the mean of its runs); baseline: {}. Intervals are 95%: a variant of one run shows no run-to-run spread; of four or more, its A/A check (even runs over odd) should hold 1.",
        variants.len(),
        base.name
    )?;
    writeln!(
        out,
        "{:<16} {:>5} {:>22} {:>9} {:>9} {:>12}  A/A",
        "variant", "runs", "energy (counter)", "time s", "power W", "EDP J·s"
    )?;
    for v in variants {
        writeln!(
            out,
            "{:<16} {:>5} {:>22} {:>9.3} {:>9.1} {:>12.1}  {}",
            clip(&v.name, 16),
            v.runs,
            energy(&v.energy),
            v.time_s,
            v.mean_power_w,
            v.edp_js,
            ratio(&v.aa)
        )?;
    }
    let paths: Vec<&str> = base.requests.iter().map(|r| r.path.as_str()).collect();
    if !paths.is_empty() {
        writeln!(
            out,
            "Requests (mean energy per instance; per token where known):"
        )?;
        for p in paths.iter().take(TOP_PARTS) {
            write!(out, "  {:<28}", clip(p, 28))?;
            for v in variants {
                match v.requests.iter().find(|r| r.path == *p) {
                    Some(r) => write!(
                        out,
                        "  {}: {}{}",
                        v.name,
                        energy(&r.mean),
                        r.per_token
                            .as_ref()
                            .map_or(String::new(), |t| format!(" ({}/token)", energy(t)))
                    )?,
                    None => write!(out, "  {}: -", v.name)?,
                }
            }
            writeln!(out)?;
        }
    }
    for v in &variants[1..] {
        verdict_lines(out, &verdict(base, v))?;
    }
    Ok(())
}

fn verdict_lines(out: &mut dyn Write, v: &Verdict) -> std::io::Result<()> {
    writeln!(out)?;
    let requests: Vec<String> = v
        .requests
        .iter()
        .take(3)
        .map(|(p, r)| format!("{p} {}", ratio(&Some(*r))))
        .collect();
    writeln!(
        out,
        "verdict: {} against {}: energy {}, time ×{:.3}{}",
        v.variant,
        v.baseline,
        ratio(&v.energy),
        v.time_ratio,
        if requests.is_empty() {
            String::new()
        } else {
            format!("; per request: {}", requests.join(", "))
        }
    )?;
    writeln!(
        out,
        "  what makes the difference ({} − {}, {} in all), largest first; the op classes add up to {:.0}% of it:",
        v.variant,
        v.baseline,
        signed(&v.total),
        100.0 * v.explained
    )?;
    for (kind, parts) in [("op", &v.ops), ("kernel", &v.kernels)] {
        for d in parts.iter().take(if kind == "op" { TOP_PARTS } else { 5 }) {
            writeln!(
                out,
                "    {kind:<6} {:<44} {:>24}  launches {} → {}{}",
                clip(&d.name, 44),
                signed(&d.delta),
                d.launches.0,
                d.launches.1,
                if d.delta.is_resolved() {
                    ""
                } else {
                    "  (within the intervals)"
                }
            )?;
        }
    }
    Ok(())
}
