//! The waste findings table: after the per-op table in `demo` and `report`.

use std::io::{self, Write};

use super::table::clip;
use super::units::{energy, joules};
use super::Report;
use wattlens_instrument::waste::{AuditCost, IdlePhases};

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
        if let Some(p) = &w.phases {
            phases(out, d.index, p, sim)?;
        }
        if w.findings.is_empty() {
            writeln!(out, "Waste{sim} (GPU {}): no finding.", d.index)?;
        } else {
            let counter_mj = d.attribution.as_ref().map_or(0.0, |a| a.closure.counter_mj);
            let steady = w.phases.as_ref().map_or(String::new(), |p| {
                format!(
                    "{:.1}% of the steady stretches' {}; ",
                    100.0 * w.total_mj() / p.steady.mj.max(f64::MIN_POSITIVE),
                    energy(&p.steady)
                )
            });
            writeln!(
                out,
                "Waste{sim} (GPU {}): {} findings, {} in all ({steady}{:.1}% of the whole run's {} the counter measured), most first",
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
        if let Some(a) = &w.audit {
            audit(out, d.index, a)?;
        }
        for u in &w.unchecked {
            writeln!(out, "  not checked: {u}")?;
        }
    }
    Ok(())
}

/// What the audit saw, and what it cost the run.
fn audit(out: &mut dyn Write, device: u32, a: &AuditCost) -> io::Result<()> {
    let run_s = a.run_ns as f64 * 1e-9;
    writeln!(
        out,
        "Audit (GPU {device}): {} operations audited, {} of them with work on this GPU, issuing {:.1}% of its busy time; recomputation, repeated uploads and silent writes above are proven from full-content digests",
        a.ops,
        a.ops_on_device,
        100.0 * a.audited_share()
    )?;
    writeln!(
        out,
        "  its own cost, not charged to the program: {:.2} s of host time ({:.1}% of the run's {:.2} s) and {:.2} ms of digest kernels; idle it caused is left out, but this run's times are slower than the program's own: take kernel and op energies from a run without --audit",
        a.audit_host_ns as f64 * 1e-9,
        100.0 * a.audit_host_ns as f64 * 1e-9 / run_s.max(f64::MIN_POSITIVE),
        run_s,
        a.digest_busy_ns as f64 / 1e6
    )
}

/// The device's idle by phase: start-up, host-only stretches and tear-down are reported for
/// what they are; only the steady stretches' idle between work is priced as waste.
fn phases(out: &mut dyn Write, device: u32, p: &IdlePhases, sim: &str) -> io::Result<()> {
    let s = |ns: u64| ns as f64 * 1e-9;
    writeln!(
        out,
        "Idle by phase{sim} (GPU {device}): steady stretches {:.2} s ({}, idle and work); the rest, at idle power:",
        s(p.steady_ns),
        energy(&p.steady)
    )?;
    if p.startup_ns > 0 {
        writeln!(
            out,
            "  start-up      {:>8.2} s  {:>18}  the GPU was held idle while the program started (imports, loading and moving the model); start the GPU work sooner, or keep a warm process",
            s(p.startup_ns),
            energy(&p.startup)
        )?;
    }
    if p.host_only_stretches > 0 {
        writeln!(
            out,
            "  host-only     {:>8.2} s  {:>18}  {} stretches of {:.0} ms or more (longest {:.2} s) in which the host fed the GPU nothing (loading, tokenising, Python); overlap them with GPU work, or batch the host's work",
            s(p.host_only_ns),
            energy(&p.host_only),
            p.host_only_stretches,
            p.host_only_gap_ns as f64 / 1e6,
            s(p.longest_host_only_ns)
        )?;
    }
    if p.teardown_ns > 0 {
        writeln!(
            out,
            "  tear-down     {:>8.2} s  {:>18}  after the last GPU work, until the program's last recorded event",
            s(p.teardown_ns),
            energy(&p.teardown)
        )?;
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
