//! Trace write and read throughput (spans per second), on a realistic simulated trace.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wattlens_instrument::format::{read_trace, TraceWriter};
use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
use wattlens_instrument::{BufferVersion, SensorProfile, Trace};

/// The demo trace, with buffer versions on every kernel as a real runtime records them.
fn bench_trace() -> Trace {
    let mut t = simulate(
        &demo_workload(120),
        &GpuModel::h200(),
        &SensorProfile::default(),
        1,
        1_800_000_000_000_000_000,
    )
    .trace;
    for (i, s) in t.spans.iter_mut().enumerate() {
        s.args_digest = i as u64 * 0x9E37_79B9;
        s.reads = vec![
            BufferVersion {
                buffer: 1,
                version: i as u32,
            },
            BufferVersion {
                buffer: 2,
                version: 7,
            },
        ];
        s.writes = vec![BufferVersion {
            buffer: 3,
            version: i as u32 + 1,
        }];
    }
    t
}

fn trace_io(c: &mut Criterion) {
    let trace = bench_trace();
    let bytes = TraceWriter::write_trace(Vec::new(), &trace).unwrap_or_default();
    let mut g = c.benchmark_group("trace_io");
    g.throughput(Throughput::Elements(trace.spans.len() as u64));
    g.sample_size(20);
    g.bench_function("write", |b| {
        b.iter_batched(
            || Vec::with_capacity(bytes.len()),
            |buf| TraceWriter::write_trace(buf, &trace).map(|v| v.len()),
            BatchSize::LargeInput,
        )
    });
    // The caller owns the trace it reads: its drop is not part of reading.
    g.bench_function("read", |b| {
        b.iter_with_large_drop(|| read_trace(&bytes[..]))
    });
    g.finish();
}

criterion_group!(benches, trace_io);
criterion_main!(benches);
