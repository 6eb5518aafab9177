//! Static-energy shares: each span's time, split evenly among the spans running with it.

use crate::trace::Trace;

/// For each span in `work` (indices into `trace.spans`), ∫ 1/n(t) dt over its duration in
/// seconds, where n(t) is the number of work spans running at t on the same device.
pub(crate) fn concurrency_shares(trace: &Trace, work: &[usize]) -> Vec<f64> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(work.len() * 2);
    for (w, &i) in work.iter().enumerate() {
        let s = &trace.spans[i];
        if s.end_ns > s.start_ns {
            events.push((s.start_ns, true, w));
            events.push((s.end_ns, false, w));
        }
    }
    // Ends before starts at the same instant, so back-to-back spans do not overlap.
    events.sort_unstable_by_key(|&(t, start, w)| (t, start, w));
    let mut shares = vec![0.0; work.len()];
    let mut active: Vec<usize> = Vec::new();
    let mut last_t = 0u64;
    for (t, start, w) in events {
        if !active.is_empty() && t > last_t {
            let each = (t - last_t) as f64 * 1e-9 / active.len() as f64;
            for &a in &active {
                shares[a] += each;
            }
        }
        last_t = t;
        if start {
            active.push(w);
        } else {
            active.retain(|&a| a != w);
        }
    }
    shares
}
