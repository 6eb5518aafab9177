//! Rewrites a trace so that every span's region path is `a/a/.../a` (DEPTH levels); build it as an example of wattlens-instrument.
//! Usage: deep_regions IN.wlt OUT.wlt DEPTH [unique]
#![allow(clippy::unwrap_used, missing_docs)]
use std::path::Path;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut t = wattlens_instrument::read_trace_file(Path::new(&a[1]))
        .unwrap()
        .trace;
    let depth: usize = a[3].parse().unwrap();
    let unique = a.get(4).is_some_and(|s| s == "unique");
    let base = vec!["a"; depth].join("/");
    let shared = t.strings.push(&base);
    let n = t.spans.len();
    for (i, s) in t.spans.iter_mut().enumerate() {
        s.region = if unique && i % 1000 == 0 {
            t.strings.push(&format!("{base}/{i}"))
        } else {
            shared
        };
    }
    let _ = n;
    let f = std::fs::File::create(&a[2]).unwrap();
    wattlens_instrument::TraceWriter::write_trace(std::io::BufWriter::new(f), &t).unwrap();
}
