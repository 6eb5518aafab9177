//! Analysis speed: IR instructions analysed per second (kernel facts of every kernel of the
//! fixtures: op class, access modes, static cost), on modules already parsed.

#![allow(clippy::expect_used)] // bench code: a broken fixture should stop the bench loudly

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inkwell::context::Context;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn analyze(c: &mut Criterion) {
    let context = Context::create();
    let modules: Vec<_> = ["hard.ll", "calibration.ll", "runtime_checks.ll", "ops.ll"]
        .iter()
        .map(|f| wattlens_passes::load_module(&context, &fixture(f)).expect("fixture loads"))
        .collect();
    // Every instruction of every function with a body: what the analysis walks.
    let instructions: u64 = modules
        .iter()
        .flat_map(|m| m.get_functions())
        .flat_map(|f| f.get_basic_blocks())
        .map(|b| b.get_instructions().count() as u64)
        .sum();
    let mut group = c.benchmark_group("analyze");
    group.throughput(Throughput::Elements(instructions));
    group.bench_function(format!("fixtures ({instructions} instructions)"), |b| {
        b.iter(|| {
            for m in &modules {
                let reports = wattlens_passes::analyze_module(m).expect("fixtures analyse");
                std::hint::black_box(reports);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, analyze);
criterion_main!(benches);
