//! The synthetic trace the instrument benches share.

use wattlens_instrument::sim::SimRng;
use wattlens_instrument::trace::{
    DeviceInfo, LaunchShape, PowerReading, RunMeta, Span, SpanKind, StrId, Trace,
};
use wattlens_instrument::SensorProfile;

const T0: u64 = 1_800_000_000_000_000_000;

/// A one-stream trace of `spans` kernels of 64 signatures over `samples` × 20 ms, with the
/// power samples and counter reads a sampler makes; with `syncs`, the host waits on the device
/// after every kernel (each wait spans the kernel and ends 10 µs after it).
pub fn big_trace(spans: usize, samples: usize, syncs: bool) -> Trace {
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
            launch: Some(LaunchShape {
                grid: [132, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            }),
            ..Span::new(i as u64, SpanKind::Kernel, (0, 0), names[s], (t, t + dur))
        });
        if syncs {
            trace.spans.push(Span::new(
                (spans + i) as u64,
                SpanKind::Sync,
                (0, 0),
                StrId::NONE,
                (t, t + dur + 10_000),
            ));
        }
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
