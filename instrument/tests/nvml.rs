//! The NVML source on a scripted NVML, and (ignored without a GPU) on the real one.

use std::sync::Arc;

use wattlens_instrument::clock::{Clock, FakeClock, HostClock};
use wattlens_instrument::power::nvml::{
    open_nvml, resolve_selection, DeviceSelection, FakeNvml, FakeNvmlDevice, NvmlIdentity,
    NvmlSource, ReadPlan, DEFAULT_CPU_BUDGET,
};
use wattlens_instrument::power::{PowerSource, Sampler};
use wattlens_instrument::{Interval, PowerReading, SensorProfile};

const START: u64 = 1_795_320_400_000_000_000;

fn ids(n: u32) -> Vec<NvmlIdentity> {
    (0..n)
        .map(|i| NvmlIdentity {
            nvml_index: i,
            name: "GPU".into(),
            uuid: format!("GPU-{i}aaa-bbbb"),
            power_limit_mw: None,
            sm_count: 0,
        })
        .collect()
}

#[test]
fn selection_follows_cuda_visible_devices_by_uuid_and_index() {
    let ids = ids(4);
    let sel = |s: &str| resolve_selection(&DeviceSelection::CudaVisible(s.into()), &ids);
    assert_eq!(sel("2,0").unwrap(), vec![2, 0]);
    assert_eq!(sel("GPU-3aaa,1").unwrap(), vec![3, 1]);
    // CUDA stops at the first entry it cannot use.
    assert_eq!(sel("1,7,2").unwrap(), vec![1]);
    let none = sel("").unwrap_err().to_string();
    assert!(none.contains("CUDA_VISIBLE_DEVICES"), "{none}");
    let bad = resolve_selection(&DeviceSelection::Uuids(vec!["GPU-9".into()]), &ids)
        .unwrap_err()
        .to_string();
    assert!(bad.contains("GPU-9") && bad.contains("NVML sees"), "{bad}");
}

#[test]
fn read_plan_fits_the_cpu_budget() {
    // H100: 3.9 ms per field read, 0.35 ms per drain.
    let p = ReadPlan::fit(3_900_000, 350_000, 100_000_000, DEFAULT_CPU_BUDGET);
    let share = 3.9 / (f64::from(p.counter_stride) * 100.0) + 0.35 / 1000.0 + 4.0 * 3.9 / 10_000.0;
    assert!(share <= DEFAULT_CPU_BUDGET, "{p:?} uses {share}");
    assert!(p.counter_stride > 1);
    // A cheap read allows reading every update.
    assert_eq!(
        ReadPlan::fit(50_000, 50_000, 100_000_000, DEFAULT_CPU_BUDGET).counter_stride,
        1
    );
}

fn run_fake(
    dev: FakeNvmlDevice,
    seconds: u64,
) -> (Vec<PowerReading>, Vec<String>, NvmlSource<FakeNvml>) {
    let clock = Arc::new(FakeClock::new(START));
    let fake = FakeNvml::new(vec![dev], clock.clone());
    let mut src = NvmlSource::open(
        fake,
        &DeviceSelection::All,
        clock.clone(),
        SensorProfile::default(),
        DEFAULT_CPU_BUDGET,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let end = START + seconds * 1_000_000_000;
    while clock.now_ns() < end {
        if let Err(e) = src.poll(clock.now_ns(), &mut out) {
            errors.push(e.to_string());
        }
        let next = src
            .next_poll_ns(clock.now_ns())
            .max(clock.now_ns() + 1_000_000);
        clock.advance(next - clock.now_ns());
    }
    (out, errors, src)
}

#[test]
fn fake_gpu_is_sampled_without_gaps_and_counter_reads_are_sparse() {
    let (out, errors, src) = run_fake(FakeNvmlDevice::new(0, "GPU-0", 200_000), 10);
    assert!(errors.is_empty(), "{errors:?}");
    let caps = src.capabilities()[0];
    assert!(caps.samples && caps.energy && caps.instant && !caps.memory_instant);
    let samples = out
        .iter()
        .filter(|r| matches!(r, PowerReading::Sample { .. }))
        .count();
    // 10 s at 20 ms, plus the ring's history at the first drain.
    assert!((500..=620).contains(&samples), "{samples} samples");
    assert!(!out.iter().any(|r| matches!(r, PowerReading::Lost { .. })));
    let energy = out
        .iter()
        .filter(|r| matches!(r, PowerReading::Energy { .. }))
        .count();
    assert!(
        energy > 10 && energy < 100,
        "{energy} counter reads in 10 s"
    );
}

#[test]
fn lost_samples_and_a_lost_gpu_are_recorded_and_earlier_readings_kept() {
    let mut dev = FakeNvmlDevice::new(0, "GPU-0", 150_000);
    dev.missing_samples = Some(Interval::new(START + 3_000_000_000, START + 3_500_000_000));
    dev.lost_after_ns = Some(START + 6_000_000_000);
    let (out, errors, _) = run_fake(dev, 8);
    let gaps: Vec<(u64, u64)> = out
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Lost { from_ns, to_ns, .. } => Some((from_ns, to_ns)),
            _ => None,
        })
        .collect();
    assert!(
        gaps.iter()
            .any(|&(a, b)| a < START + 3_000_000_000 && b >= START + 3_500_000_000),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().any(|&(_, b)| b == u64::MAX),
        "the lost GPU is not recorded: {gaps:?}"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("lost mid-run"), "{errors:?}");
    let last_sample = out
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Sample { ts_ns, .. } => Some(ts_ns),
            _ => None,
        })
        .max()
        .unwrap();
    // Readings up to the last drain before the loss (drains are 1 s apart) are kept.
    assert!(
        last_sample >= START + 5_000_000_000,
        "readings before the loss were dropped: last sample at {} ns, gaps {gaps:?}",
        last_sample - START
    );
}

#[test]
fn unsupported_queries_become_capability_flags() {
    let mut dev = FakeNvmlDevice::new(0, "GPU-0", 150_000);
    dev.supports = [false, true, false, false];
    let (out, errors, src) = run_fake(dev, 3);
    assert!(errors.is_empty(), "{errors:?}");
    let caps = src.capabilities()[0];
    assert!(!caps.samples && caps.energy && !caps.instant);
    assert!(out.iter().all(|r| matches!(r, PowerReading::Energy { .. })));
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn nvml_reads_a_real_gpu_within_its_cpu_budget() {
    let clock = Arc::new(HostClock::new());
    let src = open_nvml(
        &DeviceSelection::All,
        clock.clone(),
        SensorProfile::default(),
        DEFAULT_CPU_BUDGET,
    )
    .unwrap();
    let caps = src.capabilities();
    let plans = src.plans();
    eprintln!(
        "capabilities {caps:?} plans {plans:?} driver {:?}",
        src.driver()
    );
    assert!(caps[0].samples && caps[0].energy, "{caps:?}");
    let sampler = Sampler::start(src, clock).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let (readings, report) = sampler.stop();
    eprintln!("{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let samples = readings
        .iter()
        .filter(|r| matches!(r, PowerReading::Sample { .. }))
        .count();
    assert!(samples >= 200, "{samples} samples in 5 s");
    assert_eq!(report.gaps, 0);
    assert!(!report.alignments.is_empty());
}
