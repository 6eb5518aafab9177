//! `wattlens report`: the energy report of a trace.

use std::io::Write;

use wattlens_instrument::Trace;

use wattlens_instrument::footprint::Factors;

use crate::cli::{FootprintArgs, Format, ReportArgs};
use crate::error::CliError;
use crate::render::{self, analyze};

/// Run `wattlens report`.
///
/// # Errors
/// [`CliError`] when the trace cannot be read or attributed, or output fails.
pub fn run(args: &ReportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let factors = footprint_factors(&args.footprint)?;
    let mut traces = Vec::with_capacity(args.traces.len());
    for path in &args.traces {
        traces.push(super::load_trace(path)?);
    }
    if let Some(html) = &args.html {
        let inputs: Vec<&std::path::Path> = args.traces.iter().map(|p| p.as_path()).collect();
        super::refuse_overwriting(html, &inputs)?;
    }
    write(
        traces,
        (args.chosen_format(), factors),
        args.html.as_deref(),
        out,
    )
}

/// The footprint factors of `args`: each from its flag, else its environment variable, else
/// the config file (`--footprint-config`, else the default one where it exists).
///
/// # Errors
/// [`CliError::Usage`] for a bad value or config line, or a named config file that cannot be
/// read.
pub fn footprint_factors(args: &FootprintArgs) -> Result<Factors, CliError> {
    let usage = |e: wattlens_instrument::footprint::FootprintError| CliError::Usage(e.to_string());
    let flags = Factors::from_flags(args.carbon_intensity, args.pue, args.wue).map_err(usage)?;
    let env = Factors::from_env(|k| std::env::var(k).ok()).map_err(usage)?;
    let path = match &args.footprint_config {
        Some(p) => Some(p.clone()),
        None => default_footprint_config().filter(|p| p.is_file()),
    };
    let file = match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read the footprint config {}: {e}",
                    p.display()
                ))
            })?;
            Factors::from_config(&text, &p.display().to_string()).map_err(usage)?
        }
        None => Factors::default(),
    };
    Ok(flags.or(env).or(file))
}

/// `$XDG_CONFIG_HOME/wattlens/footprint.conf`, else `~/.config/wattlens/footprint.conf`.
fn default_footprint_config() -> Option<std::path::PathBuf> {
    let set = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    set("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| set("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
        .map(|d| d.join("wattlens").join("footprint.conf"))
}

/// Merge `traces` (one per process) per GPU and write their report in `format`, and as HTML to
/// `html` where given.
///
/// # Errors
/// [`CliError`] when the traces cannot be merged or attributed, or output fails.
pub fn write(
    traces: Vec<Trace>,
    (format, factors): (Format, Factors),
    html: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (traces, repeated) = wattlens_instrument::merge::distinct(traces);
    for (k, first) in &repeated {
        eprintln!(
            "wattlens: warning: trace {} is the same run as trace {} (same host, start and records); it is counted once",
            k + 1,
            first + 1
        );
    }
    let merged = traces.len();
    let trace = wattlens_instrument::merge::merge(traces)?;
    if merged > 1 && format == Format::Table {
        writeln!(
            out,
            "Merged {merged} traces (one per process) on {} GPU(s), matched by UUID.\n",
            trace.meta.devices.len()
        )?;
    }
    let report = analyze(&trace)?.with_footprint(factors);
    if let Some(path) = html {
        write_html(path, &trace, &report)?;
    }
    // Stdout flushes at every newline: a large JSON report would be millions of writes.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let out: &mut dyn Write = &mut out;
    match format {
        Format::Table => {
            render::table::write(out, &report, None)?;
            render::waste::write(out, &report)?;
        }
        Format::Json => render::json::write(out, &report)?,
        Format::Csv => render::csv::write(out, &report)?,
    }
    out.flush()?;
    Ok(())
}

/// Write the HTML report of `trace` to `path`.
///
/// # Errors
/// [`CliError::Setup`] when this build has no charting library; [`CliError::WriteFile`] when
/// the file cannot be written.
pub fn write_html(
    path: &std::path::Path,
    trace: &Trace,
    report: &render::Report,
) -> Result<(), CliError> {
    if let Some(why) = render::html::unavailable() {
        return Err(CliError::Setup(format!(
            "this build of wattlens cannot write HTML reports: {why}; rebuild it with network access"
        )));
    }
    let failed = |source| CliError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut w = std::io::BufWriter::new(file);
    render::html::write(&mut w, trace, report).map_err(failed)?;
    w.flush().map_err(failed)?;
    eprintln!("wattlens: HTML report: {}", path.display());
    Ok(())
}
