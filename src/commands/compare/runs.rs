//! `wattlens compare A.wlt B.wlt …`: recorded runs compared as variants, the first as the
//! baseline ([`wattlens_instrument::compare_runs`]).

use std::io::Write;
use std::path::PathBuf;

use wattlens_instrument::compare_runs::{
    per_launch, verdict, Delta, Metric, Ratio, Variant, Verdict,
};
use wattlens_instrument::Trace;

use crate::error::CliError;
use crate::render::table::clip;
use crate::render::units::{energy, joules};

/// What a variant's energy is when variants are runs.
pub(super) const RUN_ENERGY: &str = "per run, from the energy counter";

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

/// The attribution of the first device of `trace` that has one (a comparison needs energy,
/// not the waste detection a full report runs too).
///
/// # Errors
/// [`CliError::Usage`] naming `what` for a trace of no device; the first device's attribution
/// error when none can be attributed.
pub(super) fn attribution_of(
    trace: &Trace,
    what: &str,
) -> Result<wattlens_instrument::attribution::Attribution, CliError> {
    let mut first_err = None;
    for d in &trace.meta.devices {
        match wattlens_instrument::attribute(trace, d.index) {
            Ok(a) => return Ok(a),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.map_or_else(
        || CliError::Usage(format!("{what} has no device with energy data to compare")),
        CliError::Attribution,
    ))
}

/// The GPU a trace ran on (its first device's name), for the same-GPU check.
pub(super) fn gpu_of(trace: &Trace) -> String {
    trace
        .meta
        .devices
        .first()
        .map_or_else(|| "no GPU".to_owned(), |d| d.name.clone())
}

/// Refuse variants recorded on different GPU models: their joules do not compare.
///
/// # Errors
/// [`CliError::Usage`] naming the first two that differ.
pub(super) fn same_gpu(gpus: &[(String, String)]) -> Result<(), CliError> {
    let Some((first, gpu)) = gpus.first() else {
        return Ok(());
    };
    match gpus.iter().find(|(_, g)| g != gpu) {
        Some((other, g)) => Err(CliError::Usage(format!(
            "{first} ran on {gpu} and {other} on {g}: energies from different GPUs do not compare; record every variant on one GPU model"
        ))),
        None => Ok(()),
    }
}

/// Compare the variants `runs` names, the first as the baseline.
///
/// # Errors
/// [`CliError::Usage`] for fewer than two variants, a variant without a trace, or traces from
/// different GPUs; [`CliError::ReadTrace`] for a trace that cannot be read,
/// [`CliError::Attribution`] for one without an attributable device.
pub fn run(
    runs: &[String],
    (kernel, json): (Option<&str>, bool),
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let kernel = compile_kernel(kernel)?;
    if runs.len() < 2 {
        return Err(CliError::Usage(
            "compare needs two recorded runs or more (`wattlens compare fp16=a.wlt int8=b.wlt`, or NAME=A.wlt,B.wlt for several runs of one variant); `--variant NAME=CMD` runs commands, and `--builtin` measures the built-in kernels".into(),
        ));
    }
    let mut variants = Vec::with_capacity(runs.len());
    let mut gpus = Vec::new();
    for arg in runs {
        let (name, paths) = named(arg);
        let mut each = Vec::with_capacity(paths.len());
        for p in &paths {
            let trace = crate::commands::load_trace(p)?;
            gpus.push((p.display().to_string(), gpu_of(&trace)));
            let a = attribution_of(&trace, &p.display().to_string())?;
            each.push(Variant::of(&name, &a));
        }
        let v = Variant::of_runs(&name, &each)
            .ok_or_else(|| CliError::Usage(format!("{arg} names no trace")))?;
        variants.push(v);
    }
    same_gpu(&gpus)?;
    let view = View {
        energy_is: RUN_ENERGY,
        kernel: kernel.as_ref(),
        json,
    };
    write(out, &variants, &view)?;
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

/// A figure's run-to-run 95% half-width, relative: ` ±1.2%`, or nothing for one run.
fn spread(m: Option<Metric>) -> String {
    m.map_or(String::new(), |m| {
        format!(" ±{:.1}%", 100.0 * m.relative_half())
    })
}

/// A time in s, ms or µs, four significant digits or so.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.3} µs", s * 1e6)
    }
}

fn metric(m: &Option<Metric>) -> String {
    m.map_or_else(
        || "-".to_owned(),
        |m| {
            if m.runs > 1 {
                format!("{:.4} [{:.4}, {:.4}]", m.mean, m.low, m.high)
            } else {
                format!("{:.4}", m.mean)
            }
        },
    )
}

/// How a comparison is shown: what a variant's energy is, the kernels to show per launch, and
/// whether as JSON.
pub(super) struct View<'a> {
    /// What a variant's energy is ([`RUN_ENERGY`], or per range instance).
    pub energy_is: &'a str,
    /// `--kernel`: kernels whose energy per launch is shown.
    pub kernel: Option<&'a regex_lite::Regex>,
    /// `--json`.
    pub json: bool,
}

/// The comparison as JSON: what energy is, every variant (with its energy per launch of the
/// `--kernel` kernels), and every verdict against the first.
fn write_json(out: &mut dyn Write, variants: &[Variant], view: &View<'_>) -> std::io::Result<()> {
    let per_launch: Vec<serde_json::Value> = variants
        .iter()
        .map(|v| match view.kernel {
            Some(re) => per_launch(v, |k| re.is_match(k)).map_or(
                serde_json::Value::Null,
                |(n, e)| serde_json::json!({"pattern": re.as_str(), "launches": n, "energy": e}),
            ),
            None => serde_json::Value::Null,
        })
        .collect();
    let verdicts: Vec<Verdict> = variants[1..]
        .iter()
        .map(|v| verdict(&variants[0], v))
        .collect();
    let doc = serde_json::json!({
        "energy_is": view.energy_is,
        "variants": variants,
        "per_launch": per_launch,
        "verdicts": verdicts,
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    writeln!(out)
}

/// The `--kernel` expression, compiled.
///
/// # Errors
/// [`CliError::Usage`] for one that does not compile.
pub(super) fn compile_kernel(kernel: Option<&str>) -> Result<Option<regex_lite::Regex>, CliError> {
    kernel
        .map(|k| {
            regex_lite::Regex::new(k).map_err(|e| {
                CliError::Usage(format!("--kernel {k:?} is not a regular expression: {e}"))
            })
        })
        .transpose()
}

/// Each variant's energy per launch of the kernels `re` matches, with its ratio against the
/// first variant's.
fn per_launch_lines(
    out: &mut dyn Write,
    variants: &[Variant],
    re: &regex_lite::Regex,
) -> std::io::Result<()> {
    writeln!(out, "Per launch of kernels matching {:?}:", re.as_str())?;
    let base = per_launch(&variants[0], |k| re.is_match(k));
    for v in variants {
        match per_launch(v, |k| re.is_match(k)) {
            Some((n, e)) => writeln!(
                out,
                "  {:<16} {:>22}  ({n} launches a run){}",
                clip(&v.name, 16),
                energy(&e),
                base.as_ref()
                    .filter(|_| v.name != variants[0].name)
                    .and_then(|(_, b)| Ratio::of(&e, b))
                    .map_or(String::new(), |r| format!("  {}", ratio(&Some(r))))
            )?,
            None => writeln!(
                out,
                "  {:<16} no launch of a matching kernel",
                clip(&v.name, 16)
            )?,
        }
    }
    Ok(())
}

/// The comparison's table and one verdict per variant against the first.
pub(super) fn write(
    out: &mut dyn Write,
    variants: &[Variant],
    view: &View<'_>,
) -> std::io::Result<()> {
    if view.json {
        return write_json(out, variants, view);
    }
    let energy_is = view.energy_is;
    let base = &variants[0];
    writeln!(
        out,
        "Compare {} variants of one workload (each the mean of its runs); baseline: {}. Energy is {energy_is}. Intervals are 95%: a variant of one run shows no run-to-run spread; of four or more, its A/A check (even runs over odd) should hold 1.",
        variants.len(),
        base.name
    )?;
    let metrics = variants.iter().any(|v| v.metric.is_some());
    let head = format!(
        "{:<16} {:>5} {:>22} {:>18} {:>15} {:>18}  {:<28}{}",
        "variant",
        "runs",
        "energy",
        "time",
        "power W",
        "EDP J·s",
        "A/A",
        if metrics { "metric (mean, 95%)" } else { "" }
    );
    writeln!(out, "{}", head.trim_end())?;
    for v in variants {
        let row = format!(
            "{:<16} {:>5} {:>22} {:>18} {:>15} {:>18}  {:<28}{}",
            clip(&v.name, 16),
            v.runs,
            energy(&v.energy),
            format!(
                "{}{}",
                seconds(v.time_s),
                spread(v.spread.map(|s| s.time_s))
            ),
            format!(
                "{:.1}{}",
                v.mean_power_w,
                spread(v.spread.map(|s| s.mean_power_w))
            ),
            format!("{:.4e}{}", v.edp_js, spread(v.spread.map(|s| s.edp_js))),
            ratio(&v.aa),
            if metrics {
                metric(&v.metric)
            } else {
                String::new()
            }
        );
        writeln!(out, "{}", row.trim_end())?;
    }
    // Paths at least two variants have (ranges as variants each have their own).
    let paths: Vec<&str> = base
        .requests
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| {
            variants[1..]
                .iter()
                .any(|v| v.requests.iter().any(|r| r.path == *p))
        })
        .collect();
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
    if let Some(re) = view.kernel {
        per_launch_lines(out, variants, re)?;
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
        "verdict: {} against {}: energy {}, time {}{}",
        v.variant,
        v.baseline,
        ratio(&v.energy),
        v.time
            .map_or_else(|| format!("×{:.3}", v.time_ratio), |r| ratio(&Some(r))),
        if requests.is_empty() {
            String::new()
        } else {
            format!("; per request: {}", requests.join(", "))
        }
    )?;
    writeln!(
        out,
        "  what makes the difference ({} − {}, {} in all), largest first; the op classes and idle add up to {:.0}% of it:",
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
