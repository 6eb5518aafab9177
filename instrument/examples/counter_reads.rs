//! Print a trace's energy-counter reads and the update grid fitted from them:
//! `cargo run -p wattlens-instrument --example counter_reads -- TRACE`.

use wattlens_instrument::power::{counter_reads, counter_windows, fit_counter_grid};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: counter_reads TRACE");
        std::process::exit(2);
    };
    let trace = match wattlens_instrument::read_trace_file(std::path::Path::new(&path)) {
        Ok(r) => r.trace,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let period = trace.meta.sensor_profile.counter_period_ns;
    let reads = counter_reads(&trace.power, 0);
    let t0 = reads.first().map_or(0, |r| r.start_ns);
    for w in reads.windows(2) {
        println!(
            "{:10.3} ms  +{:8.3} ms  read {:6.3} ms  {:>12} mJ (+{})",
            (w[1].start_ns - t0) as f64 / 1e6,
            (w[1].start_ns - w[0].start_ns) as f64 / 1e6,
            (w[1].end_ns - w[1].start_ns) as f64 / 1e6,
            w[1].energy_mj,
            w[1].energy_mj as i64 - w[0].energy_mj as i64
        );
    }
    println!("grid: {:?}", fit_counter_grid(&reads, period));
    println!(
        "windows: {}",
        counter_windows(&trace.power, 0, period).len()
    );
}
