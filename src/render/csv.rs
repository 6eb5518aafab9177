//! The CSV report: one row per kernel signature, op class, range (request path) and request
//! (range instance) of every device. For ranges and requests, `busy_ns` is the wall time and
//! `static` the idle power over it ([`wattlens_instrument::attribution::REQUEST_DEFINITION`]);
//! the last columns (tokens, span, start and end) are theirs.

use std::io::{self, Write};

use wattlens_instrument::EnergyEstimate;

use super::Report;

/// The CSV header.
pub const HEADER: &str = "simulated,device,scope,name,kind,op_class,launches,busy_ns,\
dynamic_mj,dynamic_low_mj,dynamic_high_mj,static_mj,static_low_mj,static_high_mj,coverage,\
tokens,span,start_ns,end_ns";

/// Write `report` as CSV.
///
/// # Errors
/// The I/O error of `out`.
pub fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    writeln!(out, "{HEADER}")?;
    for d in &report.devices {
        let Some(a) = &d.attribution else { continue };
        for s in &a.signatures {
            let row = [
                report.simulated.to_string(),
                a.device.to_string(),
                "signature".to_owned(),
                field(&s.name),
                s.kind.clone(),
                s.op_class.label().to_owned(),
                s.launches.to_string(),
                s.busy_ns.to_string(),
            ];
            line(out, &row, (&s.dynamic, &s.static_share), ",,,,")?;
        }
        for o in &a.ops {
            let row = [
                report.simulated.to_string(),
                a.device.to_string(),
                "op".to_owned(),
                field(o.op_class.label()),
                String::new(),
                o.op_class.label().to_owned(),
                o.launches.to_string(),
                o.busy_ns.to_string(),
            ];
            line(out, &row, (&o.dynamic, &o.static_share), ",,,,")?;
        }
        let tokens = |t: Option<u64>| t.map_or(String::new(), |t| t.to_string());
        for g in &a.requests.ranges {
            let row = [
                report.simulated.to_string(),
                a.device.to_string(),
                "range".to_owned(),
                field(&g.path),
                "range".to_owned(),
                String::new(),
                g.count.to_string(),
                g.wall_ns.to_string(),
            ];
            let tail = format!(",{},,,", tokens(g.tokens));
            line(out, &row, (&g.dynamic, &g.idle), &tail)?;
        }
        for e in &a.requests.instances {
            let row = [
                report.simulated.to_string(),
                a.device.to_string(),
                "request".to_owned(),
                field(&e.path),
                "range".to_owned(),
                String::new(),
                "1".to_owned(),
                (e.end_ns - e.start_ns).to_string(),
            ];
            let tail = format!(
                ",{},{},{},{}",
                tokens(e.tokens),
                e.span,
                e.start_ns,
                e.end_ns
            );
            line(out, &row, (&e.dynamic, &e.idle), &tail)?;
        }
    }
    Ok(())
}

/// One row: `head`, the dynamic and static energies with their intervals, the coverage, and
/// `tail` (the request columns, each after a comma).
fn line(
    out: &mut dyn Write,
    head: &[String],
    (dynamic, stat): (&EnergyEstimate, &EnergyEstimate),
    tail: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{}{tail}",
        head.join(","),
        dynamic.mj,
        dynamic.low_mj,
        dynamic.high_mj,
        stat.mj,
        stat.low_mj,
        stat.high_mj,
        dynamic.coverage.label()
    )
}

/// Quote a field that holds a comma, quote or newline.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
