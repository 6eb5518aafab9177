//! The CSV report: one row per kernel signature and per op class of every device.

use std::io::{self, Write};

use wattlens_instrument::EnergyEstimate;

use super::Report;

/// The CSV header.
pub const HEADER: &str = "simulated,device,scope,name,kind,op_class,launches,busy_ns,\
dynamic_mj,dynamic_low_mj,dynamic_high_mj,static_mj,static_low_mj,static_high_mj,coverage";

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
            line(out, &row, &s.dynamic, &s.static_share)?;
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
            line(out, &row, &o.dynamic, &o.static_share)?;
        }
    }
    Ok(())
}

fn line(
    out: &mut dyn Write,
    head: &[String],
    dynamic: &EnergyEstimate,
    stat: &EnergyEstimate,
) -> io::Result<()> {
    writeln!(
        out,
        "{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
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
