//! The Chrome/Perfetto export is valid JSON holding every span and counter reading.

use serde_json::Value;
use wattlens_instrument::perfetto::{export, COUNTER_TRACK, INSTANT_TRACK, SAMPLE_TRACK};
use wattlens_instrument::power::counter_windows;
use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
use wattlens_instrument::*;

#[test]
fn export_holds_every_span_and_counter_and_nests_regions() {
    let run = simulate(
        &demo_workload(3),
        &GpuModel::h200(),
        &SensorProfile::default(),
        3,
        1_700_000_000_000_000_000,
    );
    let t = &run.trace;
    let mut buf = Vec::new();
    export(t, &mut buf).unwrap();
    let doc: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(doc["otherData"]["simulated"], Value::Bool(true));
    assert_eq!(
        doc["otherData"]["start_unix_ns"],
        Value::from(t.meta.start_unix_ns)
    );
    let events = doc["traceEvents"].as_array().unwrap();
    for e in events {
        assert!(e["ph"].is_string() && e["pid"].is_u64(), "{e}");
        if e["ph"] != "M" {
            assert!(e["ts"].as_f64().is_some_and(f64::is_finite), "{e}");
        }
    }
    let count = |ph: &str, name: Option<&str>| {
        events
            .iter()
            .filter(|e| e["ph"] == ph && name.is_none_or(|n| e["name"] == n))
            .count()
    };
    assert_eq!(count("X", None), t.spans.len());
    let samples = t
        .power
        .iter()
        .filter(|r| matches!(r, PowerReading::Sample { .. }))
        .count();
    let instants = t
        .power
        .iter()
        .filter(|r| matches!(r, PowerReading::Instant { .. }))
        .count();
    assert_eq!(count("C", Some(SAMPLE_TRACK)), samples);
    assert_eq!(count("C", Some(INSTANT_TRACK)), instants);
    assert_eq!(
        count("C", Some(COUNTER_TRACK)),
        counter_windows(&t.power, 0, t.meta.sensor_profile.counter_period_ns).len()
    );
    assert!(samples > 100 && instants > 10);
    assert_eq!(count("M", Some("process_name")), t.meta.devices.len());

    // Slices on one track must nest or be disjoint, or Perfetto cannot draw them as a stack.
    let mut by_track: std::collections::BTreeMap<(u64, u64), Vec<(f64, f64)>> = Default::default();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_f64().unwrap();
        let dur = e["dur"].as_f64().unwrap();
        assert!(dur >= 0.0);
        by_track
            .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .or_default()
            .push((ts, ts + dur));
    }
    let regions = events.iter().filter(|e| e["cat"] == "region").count();
    assert!(regions > 30, "{regions}");
    for slices in by_track.values_mut() {
        slices.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for &(s, e) in slices.iter() {
            while stack.last().is_some_and(|&end| end <= s + 1e-6) {
                stack.pop();
            }
            if let Some(&end) = stack.last() {
                assert!(
                    e <= end + 1e-6,
                    "slice [{s}, {e}] overlaps its parent ending at {end}"
                );
            }
            stack.push(e);
        }
    }
}
