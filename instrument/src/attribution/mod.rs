//! Attribution: from a trace to joules per kernel signature and per operator class.
//!
//! This is the energy-counter method (the counter's increments are exact integrals):
//! 1. **Idle (static) power** is measured in the run itself: counter windows with no device
//!    work in them or in the [`SETTLE_NS`] before them.
//! 2. **Dynamic power per signature** (name + launch shape) by non-negative least squares over
//!    every counter window with work in it: `ΔE − P_idle·Δt = Σ_s P_s · busy_s`. Concurrent
//!    spans each add their busy time, so overlapping streams share a window's energy.
//! 3. **Uncertainty**: the regression covariance plus the idle estimate's own variance,
//!    propagated to every signature, op class and total; every number gets a 95% CI and a
//!    [`Coverage`] label.
//! 4. **Static share**: idle power × each span's time, split evenly among concurrent spans.
//! 5. **Closure**: counter energy vs. idle + attributed dynamic energy.
//!
//! Sample-based shape correction for long spans is not applied here yet.

mod design;
mod estimate;
mod idle;
mod linalg;
mod regression;
mod shares;

pub use estimate::{Coverage, EnergyEstimate, PowerEstimate};

use serde::{Deserialize, Serialize};

use crate::power::counter_windows;
use crate::trace::{LaunchShape, OpClass, SpanKind, Trace};
use design::Design;
use regression::Fit;

/// Windows this close after device work are not used for the idle baseline (sensor and
/// thermal settling), ns.
pub const SETTLE_NS: u64 = 100_000_000;

/// Quiet windows needed before the work to take the idle baseline from them alone.
pub const MIN_BASELINE_WINDOWS: usize = 3;

/// Why a trace could not be attributed.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The device index is not in the trace.
    #[error("device {0} is not in the trace; pick one of the devices listed in its metadata")]
    NoSuchDevice(u32),
    /// Too few counter readings to form windows.
    #[error("device {0} has fewer than two energy-counter changes in the trace, so no energy can be measured; record for at least 200 ms")]
    NoCounter(u32),
    /// No window free of work to measure idle power in.
    #[error("device {0} has no idle counter window (no 100 ms without device work), so static power cannot be measured; leave the GPU idle for half a second before or after the work")]
    NoIdle(u32),
}

/// Energy of one kernel signature (or copy/memset label) on one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureEnergy {
    /// Kernel name or copy label.
    pub name: String,
    /// Span kind label: kernel, memcpy or memset.
    pub kind: String,
    /// Launch shape (kernels).
    pub launch: Option<LaunchShape>,
    /// Operator class.
    pub op_class: OpClass,
    /// Number of spans.
    pub launches: u64,
    /// Total busy time, ns.
    pub busy_ns: u64,
    /// Busy time inside counter windows, ns.
    pub covered_ns: u64,
    /// Dynamic power while running, above idle.
    pub dynamic_power: PowerEstimate,
    /// Dynamic energy of all its spans.
    pub dynamic: EnergyEstimate,
    /// Its share of static (idle) energy.
    pub static_share: EnergyEstimate,
    /// Dynamic plus static energy of one launch, on average.
    pub per_launch: EnergyEstimate,
}

/// Energy of one operator class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpEnergy {
    /// Operator class.
    pub op_class: OpClass,
    /// Number of spans.
    pub launches: u64,
    /// Total busy time, ns.
    pub busy_ns: u64,
    /// Dynamic energy, with the covariance between its signatures accounted for.
    pub dynamic: EnergyEstimate,
    /// Share of static energy.
    pub static_share: EnergyEstimate,
}

/// Whether attributed energy adds up to what the counter measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Closure {
    /// Time from the first to the last counter change, ns.
    pub window_ns: u64,
    /// Energy the counter measured over that time, mJ.
    pub counter_mj: f64,
    /// Idle power × that time, mJ.
    pub idle_mj: f64,
    /// Attributed dynamic energy inside counter windows, mJ.
    pub dynamic_mj: f64,
    /// Counter − idle − dynamic, mJ (thermal tail, unmodelled work, estimation error).
    pub residual_mj: f64,
}

/// The attribution of one device's energy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attribution {
    /// Device index.
    pub device: u32,
    /// True when the trace came from the simulated GPU.
    pub simulated: bool,
    /// Static power measured in the run.
    pub idle_power: PowerEstimate,
    /// Counter windows used for idle.
    pub idle_windows: usize,
    /// Power in the quiet windows after the work (idle plus the thermal tail), when the baseline
    /// came from before it.
    pub idle_after_power: Option<PowerEstimate>,
    /// Counter windows used in the regression.
    pub regression_windows: usize,
    /// Per signature, most energy first.
    pub signatures: Vec<SignatureEnergy>,
    /// Per operator class, most energy first.
    pub ops: Vec<OpEnergy>,
    /// The energy balance.
    pub closure: Closure,
}

/// Attribute the energy of `device` in `trace`.
///
/// # Errors
/// [`AttributionError`] when the device is absent, or the counter or idle data is missing.
pub fn attribute(trace: &Trace, device: u32) -> Result<Attribution, AttributionError> {
    if !trace.meta.devices.iter().any(|d| d.index == device) {
        return Err(AttributionError::NoSuchDevice(device));
    }
    let windows = counter_windows(&trace.power, device);
    if windows.is_empty() {
        return Err(AttributionError::NoCounter(device));
    }
    let work: Vec<usize> = (0..trace.spans.len())
        .filter(|&i| trace.spans[i].device == device && trace.spans[i].is_device_work())
        .collect();
    let design = Design::build(trace, &work, &windows);
    let idle = idle::measure(trace, &work, &windows).ok_or(AttributionError::NoIdle(device))?;
    let Fit { beta, cov, t, rows } = regression::fit(&design, &windows, &idle);
    let Design {
        keys,
        sig_of,
        busy_ns,
        covered_ns,
        launches,
        ..
    } = design;
    let p = keys.len();
    let (idle_power, idle_mw) = (idle.power, idle.power.mw);

    // Static shares.
    let share_s = shares::concurrency_shares(trace, &work);
    let mut static_s = vec![0.0f64; p];
    for (w, &s) in sig_of.iter().enumerate() {
        static_s[s] += share_s[w];
    }
    let idle_half_mw = (idle_power.high_mw - idle_power.low_mw) / 2.0;

    let busy_s: Vec<f64> = busy_ns.iter().map(|&b| b as f64 * 1e-9).collect();
    let mut signatures: Vec<SignatureEnergy> = (0..p)
        .map(|i| {
            let (name, kind, launch) = keys[i];
            let name = trace.str(name).to_owned();
            let half_mw = t * cov.at(i, i).sqrt();
            let (dynamic_power, dynamic) = if covered_ns[i] == 0 {
                (
                    PowerEstimate {
                        mw: 0.0,
                        low_mw: 0.0,
                        high_mw: 0.0,
                        coverage: Coverage::Uncovered,
                    },
                    EnergyEstimate::uncovered(),
                )
            } else {
                (
                    PowerEstimate::from_half_width(beta[i], half_mw),
                    EnergyEstimate::from_half_width(beta[i] * busy_s[i], half_mw * busy_s[i]),
                )
            };
            let static_share =
                EnergyEstimate::from_half_width(idle_mw * static_s[i], idle_half_mw * static_s[i]);
            let per_launch = EnergyEstimate::from_half_width(
                (dynamic.mj + static_share.mj) / launches[i] as f64,
                ((dynamic.high_mj - dynamic.mj) + (static_share.high_mj - static_share.mj))
                    / launches[i] as f64,
            );
            let op_class = op_class_of(trace, &name, kind);
            SignatureEnergy {
                name,
                kind: kind.to_owned(),
                launch,
                op_class,
                launches: launches[i],
                busy_ns: busy_ns[i],
                covered_ns: covered_ns[i],
                dynamic_power,
                dynamic,
                static_share,
                per_launch,
            }
        })
        .collect();

    // Per op class, with the covariance between its signatures.
    let mut classes: Vec<OpClass> = signatures.iter().map(|s| s.op_class).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut ops: Vec<OpEnergy> = classes
        .into_iter()
        .map(|class| {
            let members: Vec<usize> = (0..p)
                .filter(|&i| signatures[i].op_class == class)
                .collect();
            let mj: f64 = members.iter().map(|&i| signatures[i].dynamic.mj).sum();
            let var: f64 = members
                .iter()
                .flat_map(|&i| members.iter().map(move |&j| (i, j)))
                .map(|(i, j)| busy_s[i] * busy_s[j] * cov.at(i, j))
                .sum();
            let static_mj: f64 = members.iter().map(|&i| signatures[i].static_share.mj).sum();
            let static_half: f64 = members.iter().map(|&i| static_s[i] * idle_half_mw).sum();
            let dynamic = if members.iter().all(|&i| covered_ns[i] == 0) {
                EnergyEstimate::uncovered()
            } else {
                EnergyEstimate::from_half_width(mj, t * var.max(0.0).sqrt())
            };
            OpEnergy {
                op_class: class,
                launches: members.iter().map(|&i| launches[i]).sum(),
                busy_ns: members.iter().map(|&i| busy_ns[i]).sum(),
                dynamic,
                static_share: EnergyEstimate::from_half_width(static_mj, static_half),
            }
        })
        .collect();
    signatures.sort_by(|a, b| {
        (b.dynamic.mj + b.static_share.mj).total_cmp(&(a.dynamic.mj + a.static_share.mj))
    });
    ops.sort_by(|a, b| {
        (b.dynamic.mj + b.static_share.mj).total_cmp(&(a.dynamic.mj + a.static_share.mj))
    });

    let window_ns =
        windows.last().map_or(0, |l| l.end_ns) - windows.first().map_or(0, |f| f.start_ns);
    let counter_mj: f64 = windows.iter().map(|w| w.energy_mj as f64).sum();
    let idle_mj = idle_mw * window_ns as f64 * 1e-9;
    let dynamic_mj: f64 = (0..p).map(|i| beta[i] * covered_ns[i] as f64 * 1e-9).sum();
    Ok(Attribution {
        device,
        simulated: trace.meta.simulated,
        idle_power,
        idle_windows: idle.windows,
        idle_after_power: idle.after,
        regression_windows: rows,
        signatures,
        ops,
        closure: Closure {
            window_ns,
            counter_mj,
            idle_mj,
            dynamic_mj,
            residual_mj: counter_mj - idle_mj - dynamic_mj,
        },
    })
}

/// Operator class of a signature (name and span-kind label): from the kernel facts, else
/// unknown for kernels and copy for copies and memsets.
pub fn op_class_of(trace: &Trace, name: &str, kind: &str) -> OpClass {
    match trace.facts_for(name) {
        Some(f) => f.op_class,
        None if kind == SpanKind::Kernel.label() => OpClass::Unknown,
        None => OpClass::Copy,
    }
}
