//! `wattlens compare A.wlt B.wlt …`: recorded runs compared as variants, the first as the
//! baseline ([`wattlens_instrument::compare_runs`]).

use std::io::Write;
use std::path::PathBuf;

use wattlens_instrument::compare_runs::{verdict, Delta, Ratio, Variant, Verdict};

use crate::error::CliError;
use crate::render::analyze;
use crate::render::table::clip;
use crate::render::units::{energy, joules};

/// Parts listed per verdict; the rest are summed in one line.
const TOP_PARTS: usize = 8;

/// A run named on the command line: `NAME=PATH`, or `PATH` named by its file stem.
fn named(arg: &str) -> (String, PathBuf) {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            (name.to_owned(), PathBuf::from(path))
        }
        _ => {
            let path = PathBuf::from(arg);
            let name = path
                .file_stem()
                .map_or_else(|| arg.to_owned(), |s| s.to_string_lossy().into_owned());
            (name, path)
        }
    }
}

/// Compare the recorded runs `runs`.
///
/// # Errors
/// [`CliError::Usage`] for fewer than two runs, [`CliError::ReadTrace`] for a trace that
/// cannot be read, [`CliError::Attribution`] for one without an attributable device.
pub fn run(runs: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    if runs.len() < 2 {
        return Err(CliError::Usage(
            "compare needs two recorded runs or more (`wattlens compare fp16=a.wlt int8=b.wlt`); without runs it measures the built-in kernels".into(),
        ));
    }
    let mut variants = Vec::with_capacity(runs.len());
    for arg in runs {
        let (name, path) = named(arg);
        let trace = crate::commands::load_trace(&path)?;
        let report = analyze(&trace)?;
        let Some(a) = report.devices.iter().find_map(|d| d.attribution.as_ref()) else {
            return Err(CliError::Usage(format!(
                "{} has no device with energy data to compare",
                path.display()
            )));
        };
        variants.push(Variant::of(&name, a));
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
        "Compare {} recorded runs, each taken as one run of the same workload; baseline: {}. Intervals are 95%; one run per variant shows no run-to-run spread.",
        variants.len(),
        base.name
    )?;
    writeln!(
        out,
        "{:<16} {:>22} {:>9} {:>9} {:>12}",
        "variant", "energy (counter)", "time s", "power W", "EDP J·s"
    )?;
    for v in variants {
        writeln!(
            out,
            "{:<16} {:>22} {:>9.3} {:>9.1} {:>12.1}",
            clip(&v.name, 16),
            energy(&v.energy),
            v.time_s,
            v.mean_power_w,
            v.edp_js
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
