//! Sample rows: what each power sample should read, through the sensor's response, given
//! each signature's power — and the inverse for long spans, integrating the samples with the
//! response undone.
//!
//! The samples ring reports power seen through a first-order response with time constant τ
//! ([`SensorProfile::sample_tau_ns`](crate::sensor_profile::SensorProfile)). A span on
//! [a, b] running at power P adds `P · (e^{−(t−min(b,t))/τ} − e^{−(t−a)/τ})` to a sample at
//! t ≥ a, so each sample is a linear observation of the signatures' powers.

use crate::trace::{PowerReading, Trace};

/// Spans further back than this many τ no longer affect a sample.
const RESPONSE_TAUS: f64 = 8.0;

/// The samples of one device in `readings`, in time order: (trace ns, mW), duplicates dropped.
pub(crate) fn device_samples(readings: &[PowerReading], device: u32) -> Vec<(u64, f64)> {
    let mut s: Vec<(u64, f64)> = readings
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Sample {
                device: d,
                ts_ns,
                power_mw,
                ..
            } if d == device => Some((ts_ns, f64::from(power_mw))),
            _ => None,
        })
        .collect();
    s.sort_unstable_by_key(|&(t, _)| t);
    s.dedup_by_key(|&mut (t, _)| t);
    s
}

/// The response-weighted busy fraction of each signature at each sample with work in reach.
pub(crate) struct SampleRows {
    /// Index into the device's samples of each row.
    pub sample: Vec<usize>,
    /// Sparse row: (signature, weight in 0..=1).
    pub x: Vec<Vec<(usize, f64)>>,
}

/// Build the sample rows for spans `work` (indices into `trace.spans`) with signatures
/// `sig_of` (of `p` signatures) and busy shares `density`, for `samples` (time order), response
/// time constant `tau_ns`.
///
/// One sweep in time: each sample sees the spans that started before it and ended less than
/// [`RESPONSE_TAUS`]·τ before it.
pub(crate) fn sample_rows(
    trace: &Trace,
    work: &[usize],
    (sig_of, density): (&[usize], &[f64]),
    p: usize,
    samples: &[(u64, f64)],
    tau_ns: u64,
) -> SampleRows {
    let tau = tau_ns.max(1) as f64;
    let reach = (RESPONSE_TAUS * tau) as u64;
    let span = |w: usize| &trace.spans[work[w]];
    let mut order: Vec<usize> = (0..work.len())
        .filter(|&w| span(w).end_ns > span(w).start_ns)
        .collect();
    order.sort_unstable_by_key(|&w| span(w).start_ns);
    let mut rows = SampleRows {
        sample: Vec::new(),
        x: Vec::new(),
    };
    let (mut active, mut next) = (Vec::<usize>::new(), 0usize);
    let mut acc = vec![0.0f64; p];
    let mut touched: Vec<usize> = Vec::new();
    for (j, &(t, _)) in samples.iter().enumerate() {
        while next < order.len() && span(order[next]).start_ns < t {
            active.push(order[next]);
            next += 1;
        }
        active.retain(|&w| span(w).end_ns.saturating_add(reach) > t);
        for &w in &active {
            let (a, b) = (span(w).start_ns, span(w).end_ns);
            let hi = b.min(t);
            let weight = ((-((t - hi) as f64) / tau).exp() - (-((t - a) as f64) / tau).exp())
                * density.get(w).copied().unwrap_or(1.0);
            if weight > 0.0 {
                let s = sig_of[w];
                if acc[s] == 0.0 {
                    touched.push(s);
                }
                acc[s] += weight;
            }
        }
        if !touched.is_empty() {
            rows.sample.push(j);
            rows.x.push(touched.iter().map(|&s| (s, acc[s])).collect());
            for &s in &touched {
                acc[s] = 0.0;
            }
            touched.clear();
        }
    }
    rows
}

/// ∫ of the true power over [a, b], from the samples with the first-order response undone:
/// `∫ₐᵇ s dt + τ (s(b) − s(a))`, s linearly interpolated, mJ. `None` when the samples do not
/// cover [a, b] or are too sparse inside it (a gap of more than `max_gap_ns`).
pub(crate) fn deconvolved_energy_mj(
    samples: &[(u64, f64)],
    a: u64,
    b: u64,
    tau_ns: u64,
    max_gap_ns: u64,
) -> Option<f64> {
    let lo = samples.partition_point(|&(t, _)| t <= a);
    let hi = samples.partition_point(|&(t, _)| t < b);
    if lo == 0 || hi >= samples.len() {
        return None;
    }
    // Samples lo-1 ≤ a < samples lo.. < b ≤ sample hi.
    let pts = &samples[lo - 1..=hi];
    if pts.windows(2).any(|w| w[1].0 - w[0].0 > max_gap_ns) {
        return None;
    }
    let at = |t: u64| -> f64 {
        let k = pts
            .partition_point(|&(x, _)| x <= t)
            .clamp(1, pts.len() - 1);
        let (t0, p0) = pts[k - 1];
        let (t1, p1) = pts[k];
        p0 + (p1 - p0) * crate::intervals::diff_ns(t, t0) / (t1 - t0).max(1) as f64
    };
    let mut knots: Vec<(u64, f64)> = Vec::with_capacity(pts.len());
    knots.push((a, at(a)));
    knots.extend(pts.iter().copied().filter(|&(t, _)| t > a && t < b));
    knots.push((b, at(b)));
    let integral_mw_ns: f64 = knots
        .windows(2)
        .map(|w| (w[0].1 + w[1].1) / 2.0 * (w[1].0 - w[0].0) as f64)
        .sum();
    let tau = tau_ns as f64;
    Some((integral_mw_ns + tau * (at(b) - at(a))) * 1e-9)
}

/// Each sample minus what the fitted model predicts for it (idle plus every signature's
/// power through the response), mW, at the sample's time.
pub(crate) fn residuals(
    samples: &[(u64, f64)],
    rows: &SampleRows,
    beta: &[f64],
    idle_mw: f64,
) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64)> = samples.iter().map(|&(t, p)| (t, p - idle_mw)).collect();
    for (r, &j) in rows.sample.iter().enumerate() {
        out[j].1 -= rows.x[r].iter().map(|&(i, x)| beta[i] * x).sum::<f64>();
    }
    out
}
