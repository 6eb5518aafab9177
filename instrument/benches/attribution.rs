//! Attribution speed: 1M spans (64 signatures, one stream) against 100k power samples plus
//! the counter reads a sampler makes over the same 2000 s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wattlens_instrument::sim::SimRng;
use wattlens_instrument::trace::{
    DeviceInfo, LaunchShape, PowerReading, RunMeta, Span, SpanKind, StrId, Trace,
};
use wattlens_instrument::{attribute, SensorProfile};

const T0: u64 = 1_800_000_000_000_000_000;

fn big_trace(spans: usize, samples: usize) -> Trace {
    let mut trace = Trace::new(RunMeta {
        tool_version: "bench".into(),
        simulated: true,
        host: "bench".into(),
        command: vec![],
        start_unix_ns: T0,
        driver: None,
        devices: vec![DeviceInfo {
            index: 0,
            name: "bench".into(),
            uuid: "GPU-bench".into(),
            sm_count: 132,
            power_limit_mw: 700_000,
        }],
        sensor_profile: SensorProfile::default(),
    });
    let names: Vec<StrId> = (0..64)
        .map(|i| trace.strings.id(&format!("k{i}")))
        .collect();
    let power_mw: Vec<f64> = (0..64).map(|i| 20_000.0 + 7_000.0 * i as f64).collect();
    let mut rng = SimRng::new(1);
    let total_ns = samples as u64 * 20_000_000;
    let lead = 3_000_000_000;
    let busy_ns = total_ns - 2 * lead;
    let each = busy_ns / spans as u64;
    let mut t = T0 + lead;
    // Per-10 ms mean dynamic power, to derive plausible sample and counter values.
    let mut bins = vec![0.0f64; (total_ns / 10_000_000 + 2) as usize];
    for i in 0..spans {
        let s = (rng.next_u64() % 64) as usize;
        let dur = (each as f64 * rng.uniform(0.2, 1.0)) as u64;
        trace.spans.push(Span {
            id: i as u64,
            kind: SpanKind::Kernel,
            device: 0,
            stream: 0,
            start_ns: t,
            end_ns: t + dur,
            name: names[s],
            launch: Some(LaunchShape {
                grid: [132, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            }),
            args_digest: 0,
            reads: vec![],
            writes: vec![],
            region: StrId::NONE,
            site: StrId::NONE,
            unknown_access: Vec::new(),
        });
        bins[((t - T0) / 10_000_000) as usize] += power_mw[s] * dur as f64 / 10_000_000.0;
        t += each;
    }
    let mut energy = 1_000_000.0f64;
    let mut last_read = 0;
    for k in 0..samples {
        let ts = k as u64 * 20_000_000;
        let p = 124_000.0 + bins[(ts / 10_000_000) as usize] + rng.normal() * 460.0;
        trace.power.push(PowerReading::Sample {
            device: 0,
            ts_ns: T0 + ts,
            raw_ts_us: (T0 + ts) / 1000,
            power_mw: p as u32,
        });
        energy += p * 0.02;
        if ts >= last_read + 500_000_000 {
            last_read = ts;
            trace.power.push(PowerReading::Energy {
                device: 0,
                ts_ns: T0 + ts + 4_000_000,
                read_ns: 2_400_000,
                energy_mj: energy as u64,
            });
        }
    }
    trace
}

fn bench(c: &mut Criterion) {
    let trace = big_trace(1_000_000, 100_000);
    let mut g = c.benchmark_group("attribution");
    g.sample_size(10);
    g.bench_function("1M spans, 100k samples", |b| {
        b.iter(|| black_box(attribute(black_box(&trace), 0)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
