//! Write the benchmarks' synthetic trace (1 M kernel spans and 100 k power samples by default)
//! to a file, for benchmarks of the whole command on it (`scripts/html-bench.sh`).
//!
//!     cargo run --release -p wattlens-instrument --example big_trace -- OUT.wlt [SPANS]

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: failing loudly is the point

#[path = "../benches/common/mod.rs"]
mod common;

use wattlens_instrument::format::TraceWriter;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: big_trace OUT.wlt [SPANS]");
    let spans: usize = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("SPANS is a count"));
    let trace = common::big_trace(spans, spans / 10, false);
    let mut w = TraceWriter::create(std::path::Path::new(&out), &trace.meta).unwrap();
    w.write_body(&trace, |_| {}).unwrap();
    w.finish().unwrap();
    println!(
        "wrote {out}: {} spans, {} power readings",
        trace.spans.len(),
        trace.power.len()
    );
}
