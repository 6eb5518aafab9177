//! Attribution speed: 1M spans (64 signatures, one stream) against 100k power samples plus
//! the counter reads a sampler makes over the same 2000 s.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::attribute;

fn bench(c: &mut Criterion) {
    let trace = common::big_trace(1_000_000, 100_000, false);
    let mut g = c.benchmark_group("attribution");
    g.sample_size(10);
    g.bench_function("1M spans, 100k samples", |b| {
        b.iter(|| black_box(attribute(black_box(&trace), 0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
