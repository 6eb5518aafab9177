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

mod estimate;
mod linalg;
mod shares;

pub use estimate::{Coverage, EnergyEstimate, PowerEstimate};

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::power::{counter_windows, CounterWindow};
use crate::trace::{LaunchShape, OpClass, SpanKind, StrId, Trace};
use linalg::{cholesky_inverse, nnls, t95, Square};

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

/// Key of a signature: name, kind label and launch shape.
type SigKey = (StrId, &'static str, Option<LaunchShape>);

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

    // Signatures.
    let mut keys: Vec<SigKey> = Vec::new();
    let mut index: HashMap<SigKey, usize> = HashMap::new();
    let sig_of: Vec<usize> = work
        .iter()
        .map(|&i| {
            let s = &trace.spans[i];
            let key = (s.name, s.kind.label(), s.launch);
            *index.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            })
        })
        .collect();
    let p = keys.len();

    // Busy time of each signature inside each window.
    let mut x = vec![vec![0.0f64; p]; windows.len()];
    let mut busy_ns = vec![0u64; p];
    let mut covered_ns = vec![0u64; p];
    let mut launches = vec![0u64; p];
    for (&i, &s) in work.iter().zip(&sig_of) {
        let span = &trace.spans[i];
        busy_ns[s] += span.duration_ns();
        launches[s] += 1;
        let first = windows.partition_point(|w| w.end_ns <= span.start_ns);
        for (k, w) in windows.iter().enumerate().skip(first) {
            if w.start_ns >= span.end_ns {
                break;
            }
            let overlap = span.end_ns.min(w.end_ns) - span.start_ns.max(w.start_ns);
            x[k][s] += overlap as f64 * 1e-9;
            covered_ns[s] += overlap;
        }
    }

    // Idle power from quiet windows: before the work when there are enough, since windows after
    // it carry the thermal tail (reported separately).
    let busy = merged_busy(trace, &work);
    let first_work_ns = busy.first().map_or(u64::MAX, |b| b.0);
    let quiet: Vec<&CounterWindow> = windows.iter().filter(|w| is_quiet(&busy, w)).collect();
    let (before, after): (Vec<&CounterWindow>, Vec<&CounterWindow>) =
        quiet.iter().partition(|w| w.end_ns <= first_work_ns);
    let baseline = if before.len() >= MIN_BASELINE_WINDOWS {
        &before
    } else {
        &quiet
    };
    let Some((idle_power, idle_var)) = idle_estimate(baseline) else {
        return Err(AttributionError::NoIdle(device));
    };
    let idle_mw = idle_power.mw;
    let idle_after_power = if baseline.len() == before.len() {
        idle_estimate(&after).map(|e| e.0)
    } else {
        None
    };

    // Regression over windows with work.
    let rows: Vec<usize> = (0..windows.len())
        .filter(|&k| x[k].iter().any(|&b| b > 0.0))
        .collect();
    let mut ata = Square::zeros(p);
    let mut atb = vec![0.0; p];
    let mut att = vec![0.0; p];
    let mut ys = Vec::with_capacity(rows.len());
    for &k in &rows {
        let w = &windows[k];
        let t = (w.end_ns - w.start_ns) as f64 * 1e-9;
        let y = w.energy_mj as f64 - idle_mw * t;
        ys.push(y);
        for i in 0..p {
            atb[i] += x[k][i] * y;
            att[i] += x[k][i] * t;
            for j in 0..p {
                ata.a[i * p + j] += x[k][i] * x[k][j];
            }
        }
    }
    let (beta, passive) = if p > 0 {
        nnls(&ata, &atb)
    } else {
        (Vec::new(), Vec::new())
    };
    let rss: f64 = rows
        .iter()
        .zip(&ys)
        .map(|(&k, y)| (y - (0..p).map(|i| x[k][i] * beta[i]).sum::<f64>()).powi(2))
        .sum();
    let df = rows.len().saturating_sub(passive.len());
    let sigma2 = if df > 0 {
        rss / df as f64
    } else {
        f64::INFINITY
    };
    let t = t95(df);
    let mut cov = Square::zeros(p);
    let sub = ata.sub(&passive);
    if let Some(l) = sub.cholesky() {
        let inv = cholesky_inverse(&l, passive.len());
        // How each passive coefficient moves when idle power moves: −(XᵀX)⁻¹Xᵀt.
        let g: Vec<f64> = (0..passive.len())
            .map(|r| {
                (0..passive.len())
                    .map(|c| inv.at(r, c) * att[passive[c]])
                    .sum()
            })
            .collect();
        for (r, &i) in passive.iter().enumerate() {
            for (c, &j) in passive.iter().enumerate() {
                cov.a[i * p + j] = sigma2 * inv.at(r, c) + idle_var * g[r] * g[c];
            }
        }
    }
    for i in (0..p).filter(|i| !passive.contains(i)) {
        // Clamped at zero: only an upper bound from the marginal information.
        let info = ata.at(i, i);
        cov.a[i * p + i] = if info > 0.0 {
            sigma2 / info
        } else {
            f64::INFINITY
        };
    }

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
        idle_windows: baseline.len(),
        idle_after_power,
        regression_windows: rows.len(),
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

/// Idle power (ratio of energy to time) over `windows` and the variance of that mean, mW².
fn idle_estimate(windows: &[&CounterWindow]) -> Option<(PowerEstimate, f64)> {
    let first = windows.first()?;
    let mw = windows.iter().map(|w| w.energy_mj as f64).sum::<f64>()
        / windows
            .iter()
            .map(|w| (w.end_ns - w.start_ns) as f64 * 1e-9)
            .sum::<f64>();
    let var = if windows.len() > 1 {
        let n = windows.len() as f64;
        let m = windows.iter().map(|w| w.power_w()).sum::<f64>() / n;
        windows
            .iter()
            .map(|w| (w.power_w() - m).powi(2))
            .sum::<f64>()
            / (n - 1.0)
            * 1e6
            / n
    } else {
        // One window: only the counter's 1 mJ quantisation over its length bounds the error.
        (1.0 / ((first.end_ns - first.start_ns) as f64 * 1e-9)).powi(2)
    };
    let t = t95(windows.len().saturating_sub(1).max(1));
    Some((PowerEstimate::from_half_width(mw, t * var.sqrt()), var))
}

/// Operator class of a signature: from the kernel facts, else from the span kind.
fn op_class_of(trace: &Trace, name: &str, kind: &str) -> OpClass {
    match trace.facts_for(name) {
        Some(f) => f.op_class,
        None if kind == SpanKind::Kernel.label() => OpClass::Unknown,
        None => OpClass::Copy,
    }
}

/// The union of the device-work intervals, sorted and disjoint.
fn merged_busy(trace: &Trace, work: &[usize]) -> Vec<(u64, u64)> {
    let mut iv: Vec<(u64, u64)> = work
        .iter()
        .map(|&i| (trace.spans[i].start_ns, trace.spans[i].end_ns))
        .collect();
    iv.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(iv.len());
    for (s, e) in iv {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// True when no work overlaps the window or the settling time before it.
fn is_quiet(busy: &[(u64, u64)], w: &CounterWindow) -> bool {
    let from = w.start_ns.saturating_sub(SETTLE_NS);
    let i = busy.partition_point(|&(_, e)| e <= from);
    busy.get(i).is_none_or(|&(s, _)| s >= w.end_ns)
}
