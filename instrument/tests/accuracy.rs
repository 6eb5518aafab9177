//! Attribution against the simulator's ground truth on random workloads (1–64 signatures of
//! 10 µs–2 s kernels, random gaps, 1–4 streams). The full 40-seed table is in BENCHMARKS.md
//! (`cargo run --release -p wattlens-instrument --example accuracy`); these seeds guard it.

use wattlens_instrument::accuracy::{evaluate, Accuracy};
use wattlens_instrument::attribute;
use wattlens_instrument::sim::{random_workload, simulate, GpuModel};
use wattlens_instrument::SensorProfile;

const T0: u64 = 1_800_000_000_000_000_000;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn random_workloads_close_and_their_intervals_hold_the_truth() {
    let mut all = Accuracy::default();
    for seed in [3, 5, 9, 11] {
        let run = simulate(
            &random_workload(seed),
            &GpuModel::h200(),
            &SensorProfile::default(),
            seed,
            T0,
        );
        let a = attribute(&run.trace, 0).unwrap();
        let acc = evaluate(&run, &a);
        // Closure: the attributed total against the energy counter, every seed.
        assert!(
            acc.closure <= 0.005,
            "seed {seed}: closure {:.3}%",
            acc.closure * 100.0
        );
        all.absorb(&acc);
    }
    assert!(all.long_span.len() > 20 && all.short_signature.len() > 20);
    // Typical errors within the targets (2% per long span, 5% per short signature), and far
    // below the naive method's on the same spans.
    let (l, s) = (median(&all.long_span), median(&all.short_signature));
    assert!(l <= 0.02, "median long-span error {:.2}%", l * 100.0);
    assert!(s <= 0.05, "median signature error {:.2}%", s * 100.0);
    assert!(median(&all.long_span_naive) > 5.0 * l);
    assert!(median(&all.short_signature_naive) > 5.0 * s);
    // The 95% intervals hold the truth for at least 90% of signatures.
    let cover = all.ci_hits as f64 / all.ci_total as f64;
    assert!(
        cover >= 0.9,
        "{}/{} intervals hold the truth",
        all.ci_hits,
        all.ci_total
    );
}
