//! Formatting of energies and powers with their intervals; a bare unresolved number never
//! appears.

use wattlens_instrument::{Coverage, EnergyEstimate, PowerEstimate};

/// An energy in mJ with a readable unit.
pub fn joules(mj: f64) -> String {
    let a = mj.abs();
    if a >= 10_000.0 {
        format!("{:.1} J", mj / 1000.0)
    } else if a >= 1000.0 {
        format!("{:.2} J", mj / 1000.0)
    } else if a >= 1.0 {
        format!("{mj:.2} mJ")
    } else {
        format!("{:.1} µJ", mj * 1000.0)
    }
}

/// An energy estimate: value and 95% CI, or only its bound when unresolved.
pub fn energy(e: &EnergyEstimate) -> String {
    match e.coverage {
        Coverage::Uncovered => "n/a (uncovered)".to_owned(),
        Coverage::Unresolved => format!("< {}", joules(e.high_mj)),
        _ => format!(
            "{} ±{:.1}%",
            joules(e.mj),
            pct(e.mj, (e.high_mj - e.low_mj) / 2.0)
        ),
    }
}

/// A power estimate in W: value and 95% CI, or only its bound when unresolved.
pub fn power(p: &PowerEstimate) -> String {
    match p.coverage {
        Coverage::Uncovered => "n/a".to_owned(),
        Coverage::Unresolved => format!("< {:.1} W", p.high_mw / 1000.0),
        _ => format!(
            "{:.1} ±{:.1} W",
            p.mw / 1000.0,
            (p.high_mw - p.low_mw) / 2000.0
        ),
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn pct(whole: f64, part: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        100.0 * part / whole
    }
}
