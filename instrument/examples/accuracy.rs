//! Attribution accuracy on random simulated workloads against ground truth, next to the naive
//! method: `cargo run --release -p wattlens-instrument --example accuracy -- [seeds]`.

use wattlens_instrument::accuracy::{evaluate, Accuracy};
use wattlens_instrument::attribute;
use wattlens_instrument::sim::{random_workload, simulate, GpuModel};
use wattlens_instrument::SensorProfile;

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize] * 100.0
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut all = Accuracy::default();
    let mut closures = Vec::new();
    let mut seed_cover = 0;
    for seed in 1..=seeds {
        let w = random_workload(seed);
        let run = simulate(
            &w,
            &GpuModel::h200(),
            &SensorProfile::default(),
            seed,
            1_790_000_000_000_000_000,
        );
        let a = match attribute(&run.trace, 0) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                continue;
            }
        };
        let acc = evaluate(&run, &a);
        eprintln!(
            "seed {seed:3} {:60} long spans {:3} (max {:5.2}%), short sigs {:3} (max {:5.2}%), closure {:.3}%, CI {}/{}",
            w.name,
            acc.long_span.len(),
            pct(&acc.long_span, 1.0),
            acc.short_signature.len(),
            pct(&acc.short_signature, 1.0),
            acc.closure * 100.0,
            acc.ci_hits,
            acc.ci_total
        );
        if acc.ci_total > 0 && acc.ci_hits as f64 >= 0.9 * acc.ci_total as f64 {
            seed_cover += 1;
        }
        closures.push(acc.closure);
        all.absorb(&acc);
    }
    println!("| quantity | n | wattlens median | wattlens p95 | wattlens max | naive median | naive p95 | naive max |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, ours, naive) in [
        (
            "span ≥ 100 ms, dynamic energy",
            &all.long_span,
            &all.long_span_naive,
        ),
        (
            "signature (≥200 launches of 10 µs–20 ms)",
            &all.short_signature,
            &all.short_signature_naive,
        ),
    ] {
        println!(
            "| {name} | {} | {:.2}% | {:.2}% | {:.2}% | {:.1}% | {:.1}% | {:.1}% |",
            ours.len(),
            pct(ours, 0.5),
            pct(ours, 0.95),
            pct(ours, 1.0),
            pct(naive, 0.5),
            pct(naive, 0.95),
            pct(naive, 1.0)
        );
    }
    println!(
        "| closure, |residual| / counter | {} | {:.3}% | {:.3}% | {:.3}% | – | – | – |",
        closures.len(),
        pct(&closures, 0.5),
        pct(&closures, 0.95),
        pct(&closures, 1.0)
    );
    println!(
        "\nnot resolved (reported as a bound): {} spans ≥ 100 ms, {} short signatures",
        all.long_span_unresolved, all.short_signature_unresolved
    );
    println!(
        "span (≥ 100 ms) 95% CIs holding the truth: {}/{} ({:.1}%)",
        all.span_ci_hits,
        all.span_ci_total,
        100.0 * all.span_ci_hits as f64 / all.span_ci_total.max(1) as f64
    );
    println!(
        "signature 95% CIs holding the truth: {}/{} ({:.1}%); seeds with ≥ 90% of CIs holding it: {seed_cover}/{}",
        all.ci_hits,
        all.ci_total,
        100.0 * all.ci_hits as f64 / all.ci_total.max(1) as f64,
        closures.len()
    );
}
