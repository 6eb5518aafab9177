//! The regression's design: each signature, and its busy time inside each counter window.

use std::collections::HashMap;

use crate::power::CounterWindow;
use crate::trace::{LaunchShape, SpanKind, StrId, Trace};

/// Key of a signature: name, span-kind label and launch shape.
pub(crate) type SigKey = (StrId, &'static str, Option<LaunchShape>);

/// Signatures of the device-work spans and their busy time per counter window.
pub(crate) struct Design {
    /// The signatures, in first-seen order.
    pub keys: Vec<SigKey>,
    /// Signature index of each work span.
    pub sig_of: Vec<usize>,
    /// Busy seconds of each signature (column) inside each window (row).
    pub x: Vec<Vec<f64>>,
    /// Busy time inside counter windows per signature, ns.
    pub covered_ns: Vec<u64>,
    /// Busy time of each work span's signature per ns of the span: 1, except for a
    /// [`SpanKind::Alone`] burst ([`alone_density`]).
    pub density: Vec<f64>,
}

/// How many of its launches' worth of busy time an [`SpanKind::Alone`] burst of `launches`
/// over `burst_ns` holds, per ns of the burst: `launches` × `typical_ns` (the median duration
/// of the program's own launches of that signature) / `burst_ns`. So the burst's energy counts
/// per launch: a replay run warm (its inputs in L2) takes less time than the program's launch,
/// but does the same work. 1 where the program's launches are unknown.
pub(crate) fn alone_density(launches: u32, typical_ns: Option<u64>, burst_ns: u64) -> f64 {
    match typical_ns {
        Some(d) if burst_ns > 0 && d > 0 => f64::from(launches) * d as f64 / burst_ns as f64,
        _ => 1.0,
    }
}

impl Design {
    /// Build the design for the spans `work` (indices into `trace.spans`) over `windows`.
    pub fn build(trace: &Trace, work: &[usize], windows: &[CounterWindow]) -> Self {
        let mut keys: Vec<SigKey> = Vec::new();
        let mut index: HashMap<SigKey, usize> = HashMap::new();
        // A burst measured alone joins the signature of the program's own work of its name and
        // shape: a kernel's, or a copy's (a copy has no shape).
        let program_kind: HashMap<(StrId, Option<LaunchShape>), &'static str> = work
            .iter()
            .map(|&i| &trace.spans[i])
            .filter(|s| s.is_program_work())
            .map(|s| ((s.name, s.launch), s.kind.label()))
            .collect();
        let sig_of: Vec<usize> = work
            .iter()
            .map(|&i| {
                let s = &trace.spans[i];
                let label = match s.kind {
                    SpanKind::Alone { .. } => program_kind
                        .get(&(s.name, s.launch))
                        .copied()
                        .unwrap_or(SpanKind::Kernel.label()),
                    k => k.label(),
                };
                let key = (s.name, label, s.launch);
                *index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        // The median duration of each signature's own launches.
        let mut durations: Vec<Vec<u64>> = vec![Vec::new(); keys.len()];
        for (&i, &s) in work.iter().zip(&sig_of) {
            if trace.spans[i].is_program_work() {
                durations[s].push(trace.spans[i].duration_ns());
            }
        }
        let typical: Vec<Option<u64>> = durations
            .iter_mut()
            .map(|d| {
                d.sort_unstable();
                d.get(d.len() / 2).copied()
            })
            .collect();
        let density: Vec<f64> = work
            .iter()
            .zip(&sig_of)
            .map(|(&i, &s)| {
                let span = &trace.spans[i];
                match span.kind {
                    SpanKind::Alone { launches, .. } => {
                        alone_density(launches, typical[s], span.duration_ns())
                    }
                    _ => 1.0,
                }
            })
            .collect();
        let p = keys.len();
        let mut x = vec![vec![0.0f64; p]; windows.len()];
        let mut covered_ns = vec![0u64; p];
        for ((&i, &s), &d) in work.iter().zip(&sig_of).zip(&density) {
            let span = &trace.spans[i];
            let first = windows.partition_point(|w| w.end_ns <= span.start_ns);
            for (k, w) in windows.iter().enumerate().skip(first) {
                if w.start_ns >= span.end_ns {
                    break;
                }
                let overlap = span.end_ns.min(w.end_ns) - span.start_ns.max(w.start_ns);
                x[k][s] += overlap as f64 * d * 1e-9;
                covered_ns[s] += (overlap as f64 * d) as u64;
            }
        }
        Self {
            keys,
            sig_of,
            x,
            covered_ns,
            density,
        }
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{alone_density, Design};
    use crate::power::CounterWindow;
    use crate::trace::{CopyDirection, RunMeta, Span, SpanKind, Trace};

    #[test]
    fn a_replayed_copy_joins_the_programs_copies_of_its_direction() {
        let mut t = Trace::new(RunMeta::default());
        let dtod = t.strings.intern("memcpy DtoD").0;
        let copy = SpanKind::Memcpy {
            direction: CopyDirection::DeviceToDevice,
            bytes: 4096,
            content_digest: None,
        };
        t.spans = vec![
            Span::new(1, copy, (0, 7), dtod, (1_000, 5_000)),
            Span::new(
                2,
                SpanKind::Alone {
                    launches: 100,
                    of: 1,
                },
                (0, 9),
                dtod,
                (10_000, 410_000),
            ),
            Span::new(3, copy, (0, 7), dtod, (500_000, 504_000)),
        ];
        let windows = [CounterWindow {
            start_ns: 0,
            end_ns: 1_000_000,
            energy_mj: 1,
            edge_sd_ns: 0.0,
        }];
        let d = Design::build(&t, &[0, 1, 2], &windows);
        assert_eq!(d.keys.len(), 1, "one signature: {:?}", d.keys);
        assert_eq!(d.keys[0].1, "memcpy");
        // 100 copies of the program's typical 4 µs in the 400 µs burst, and the program's two.
        assert!((d.x[0][0] - 408e-6).abs() < 1e-12, "{}", d.x[0][0]);
    }

    #[test]
    fn a_burst_counts_its_launches_at_the_programs_typical_duration() {
        // 100 warm replays in 2 ms hold 100 program launches of 50 µs: 2.5 ns of busy time
        // per ns of the burst.
        assert!((alone_density(100, Some(50_000), 2_000_000) - 2.5).abs() < 1e-12);
        assert!((alone_density(100, Some(10_000), 2_000_000) - 0.5).abs() < 1e-12);
        assert_eq!(alone_density(100, None, 2_000_000), 1.0);
        assert_eq!(alone_density(100, Some(10_000), 0), 1.0);
    }
}
