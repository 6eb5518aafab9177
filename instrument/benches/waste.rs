//! Waste detection speed on a synchronisation-heavy trace: 100k kernels on one stream, the host
//! waiting after every one (as `wattlens demo --waste sync-every-kernel` does), over 400 s of
//! power samples. Finding the waits that end in each gap must not scan them all.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::attribute;
use wattlens_instrument::waste::{detect, WasteConfig};

fn bench(c: &mut Criterion) {
    let trace = common::big_trace(100_000, 20_000, true);
    let attribution = match attribute(&trace, 0) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("waste bench: its trace could not be attributed: {e}");
            std::process::exit(1);
        }
    };
    let mut g = c.benchmark_group("waste");
    g.sample_size(10);
    g.bench_function("100k kernels, a sync after each", |b| {
        b.iter(|| {
            black_box(detect(
                black_box(&trace),
                &attribution,
                &WasteConfig::default(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
