//! Perfetto export of a trace of 1 M kernel spans and 100 k power samples: the protobuf format
//! against the JSON, each written to a sink that counts its bytes (issue #14: "the 1M-span
//! case is written in seconds").

mod common;

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::perfetto;

/// Counts what is written.
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let trace = common::big_trace(1_000_000, 100_000, false);
    let mut proto_bytes = Counting(0);
    let mut json_bytes = Counting(0);
    if perfetto::proto::export_with_findings(&trace, &[], &mut proto_bytes).is_ok()
        && perfetto::export(&trace, &mut json_bytes).is_ok()
    {
        println!(
            "1 M spans: protobuf {:.1} MB, JSON {:.1} MB",
            proto_bytes.0 as f64 / 1e6,
            json_bytes.0 as f64 / 1e6
        );
    }
    let mut g = c.benchmark_group("perfetto_1m_spans");
    g.sample_size(10);
    g.bench_function("protobuf", |b| {
        b.iter(|| perfetto::proto::export_with_findings(black_box(&trace), &[], Counting(0)))
    });
    g.bench_function("json", |b| {
        b.iter(|| perfetto::export(black_box(&trace), Counting(0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
