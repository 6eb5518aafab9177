//! Print the worst-attributed long spans of one random seed, with what overlapped them:
//! `cargo run --release -p wattlens-instrument --example span_errors -- SEED`.

use wattlens_instrument::attribute;
use wattlens_instrument::sim::{random_workload, simulate, GpuModel};
use wattlens_instrument::SensorProfile;

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(39);
    let run = simulate(
        &random_workload(seed),
        &GpuModel::h200(),
        &SensorProfile::default(),
        seed,
        1_790_000_000_000_000_000,
    );
    let Ok(a) = attribute(&run.trace, 0) else {
        eprintln!("attribution failed");
        std::process::exit(1);
    };
    let t = &run.trace;
    let w = random_workload(seed);
    for sig in &a.signatures {
        let truth_mw = w.items.iter().find_map(|i| match i {
            wattlens_instrument::sim::WorkItem::Kernel(k) if k.name == sig.name => {
                Some(k.dynamic_mw)
            }
            _ => None,
        });
        if sig.name.contains("long") {
            println!(
                "{} fitted {:.1} W [{:.1}, {:.1}] vs spec {:.1} W",
                sig.name,
                sig.dynamic_power.mw / 1000.0,
                sig.dynamic_power.low_mw / 1000.0,
                sig.dynamic_power.high_mw / 1000.0,
                truth_mw.map_or(f64::NAN, |m| f64::from(m) / 1000.0)
            );
        }
    }
    for se in &a.spans {
        let span = &t.spans[se.span as usize];
        if span.duration_ns() < 100_000_000 {
            continue;
        }
        let truth = run.truth.span_above_idle_mj[se.span as usize];
        let err = (se.dynamic.mj - truth) / truth;
        if err.abs() < 0.02 {
            continue;
        }
        let overlaps: Vec<String> = t
            .spans
            .iter()
            .filter(|o| {
                o.is_device_work()
                    && o.id != span.id
                    && o.start_ns < span.end_ns
                    && o.end_ns > span.start_ns
            })
            .map(|o| {
                format!(
                    "{}({:.0}ms s{})",
                    t.str(o.name),
                    o.duration_ns() as f64 / 1e6,
                    o.stream
                )
            })
            .take(6)
            .collect();
        println!(
            "{} s{} {:.0} ms: {:.0} mJ vs truth {:.0} ({:+.2}%) CI [{:.0}, {:.0}] {} {:?}; overlaps {}",
            t.str(span.name),
            span.stream,
            span.duration_ns() as f64 / 1e6,
            se.dynamic.mj,
            truth,
            err * 100.0,
            se.dynamic.low_mj,
            se.dynamic.high_mj,
            se.dynamic.coverage.label(),
            se.method,
            overlaps.join(" ")
        );
    }
}
