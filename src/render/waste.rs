//! The waste findings table: after the per-op table in `demo` and `report`.

use std::io::{self, Write};

use super::table::clip;
use super::units::{energy, joules};
use super::Report;

/// Findings shown per device; the JSON report has them all.
const MAX_FINDINGS: usize = 12;

/// Write every device's findings, most energy first, with each one's fix and what could not be
/// checked.
///
/// # Errors
/// The I/O error of `out`.
pub fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let sim = if report.simulated { " [simulated]" } else { "" };
    for d in &report.devices {
        let Some(w) = &d.waste else {
            continue;
        };
        writeln!(out)?;
        if w.findings.is_empty() {
            writeln!(out, "Waste{sim} (GPU {}): no finding.", d.index)?;
        } else {
            let counter_mj = d.attribution.as_ref().map_or(0.0, |a| a.closure.counter_mj);
            writeln!(
                out,
                "Waste{sim} (GPU {}): {} findings, {} in all ({:.1}% of the {} the counter measured), most first",
                d.index,
                w.findings.len(),
                joules(w.total_mj()),
                100.0 * w.total_mj() / counter_mj.max(f64::MIN_POSITIVE),
                joules(counter_mj)
            )?;
            writeln!(
                out,
                "{:<20} {:<34} {:<24} {:<22} {:>6} {:<22} {:>10} {:>10}",
                "kind", "what", "where", "site", "times", "energy wasted", "time", "run saves"
            )?;
            for f in w.findings.iter().take(MAX_FINDINGS) {
                let saves = f
                    .run_saved_ns
                    .map_or_else(|| "-".to_owned(), |ns| format!("{:.2} ms", ns as f64 / 1e6));
                writeln!(
                    out,
                    "{:<20} {:<34} {:<24} {:<22} {:>6} {:<22} {:>7.2} ms {:>10}",
                    f.kind.label(),
                    clip(&f.what, 34),
                    clip_start(&f.region, 24),
                    clip_start(&f.site, 22),
                    f.occurrences,
                    energy(&f.energy),
                    f.time_ns as f64 / 1e6,
                    saves
                )?;
                writeln!(out, "    fix: {}", f.fix)?;
            }
            if w.findings.len() > MAX_FINDINGS {
                writeln!(
                    out,
                    "  ({} more in the JSON report)",
                    w.findings.len() - MAX_FINDINGS
                )?;
            }
        }
        for u in &w.unchecked {
            writeln!(out, "  not checked: {u}")?;
        }
    }
    Ok(())
}

fn clip_start(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        // Keep the end: a site's line number and a region's leaf say the most.
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("~{tail}")
    }
}
