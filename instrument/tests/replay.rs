//! Replaying the shared H200 capture reproduces what its README says.

use std::path::{Path, PathBuf};

use wattlens_instrument::power::{mean_power_counter_w, mean_power_samples_w};
use wattlens_instrument::replay::{Capture, ReplayError};
use wattlens_instrument::*;

fn capture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/h200-sensor-2026-11-22")
}

/// (counter mean W, samples mean W) of every phase named `name`.
fn phase_powers(t: &Trace, name: &str) -> Vec<(f64, f64)> {
    t.spans
        .iter()
        .filter(|s| t.str(s.name) == name)
        .map(|s| {
            (
                mean_power_counter_w(
                    &t.power,
                    0,
                    t.meta.sensor_profile.counter_period_ns,
                    s.start_ns,
                    s.end_ns,
                )
                .unwrap(),
                mean_power_samples_w(&t.power, 0, s.start_ns, s.end_ns).unwrap(),
            )
        })
        .collect()
}

fn within(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want
}

#[test]
fn per_phase_powers_match_the_readme_within_2_percent() {
    let t = Capture::load(&capture_dir()).unwrap().trace;
    assert!(!t.meta.simulated);
    assert_eq!(t.spans.len(), 14);
    // README: counter vs samples, idle 124.0 vs 124.2 W, step 370.1 vs 368.8 W, sq100 249.6 vs 250.6 W.
    for (phase, counter_w, samples_w) in [("step", 370.1, 368.8), ("sq100", 249.6, 250.6)] {
        let got = phase_powers(&t, phase);
        assert_eq!(got.len(), 1);
        let (c, s) = got[0];
        assert!(
            within(c, counter_w, 0.02),
            "{phase}: counter {c:.1} W vs {counter_w} W"
        );
        assert!(
            within(s, samples_w, 0.02),
            "{phase}: samples {s:.1} W vs {samples_w} W"
        );
    }
    // The README's idle figures are the first idle phase; later ones carry the thermal tail of
    // the load before them, so they read higher.
    let idle = phase_powers(&t, "idle");
    assert_eq!(idle.len(), 7);
    let (c, s) = idle[0];
    assert!(
        within(c, 124.0, 0.02) && within(s, 124.2, 0.02),
        "idle: counter {c:.1} W, samples {s:.1} W"
    );
    assert!(
        idle[1].0 > idle[0].0 + 1.0,
        "no tail after the step: {:?}",
        idle[1]
    );
}

#[test]
fn aliasing_in_the_capture_is_visible_as_the_readme_says() {
    // sq10: the samples read far above the counter (288 W vs 247 W in the README).
    let t = Capture::load(&capture_dir()).unwrap().trace;
    let (c, s) = phase_powers(&t, "sq10")[0];
    assert!(s > c * 1.1, "samples {s:.1} W vs counter {c:.1} W");
}

#[test]
fn the_capture_replays_through_the_power_source_trait() {
    let cap = Capture::load(&capture_dir()).unwrap();
    let mut src = cap.source();
    assert!(!src.simulated());
    let mut got = Vec::new();
    src.poll(u64::MAX, &mut got).unwrap();
    assert_eq!(got.len(), cap.trace.power.len());
    let samples = got
        .iter()
        .filter(|r| matches!(r, PowerReading::Sample { .. }))
        .count();
    assert_eq!(samples, 1387);
}

#[test]
fn a_bad_row_names_its_file_and_line() {
    let dir = std::env::temp_dir().join(format!("wattlens-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["poll.csv", "phases.csv"] {
        std::fs::copy(capture_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("samples.csv"), "ts_us,mw\n1,2\n3,four\n").unwrap();
    let err = Capture::load(&dir).unwrap_err();
    assert!(matches!(err, ReplayError::BadRow { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("samples.csv:3"), "{err}");
    std::fs::remove_file(dir.join("samples.csv")).unwrap();
    let err = Capture::load(&dir).unwrap_err();
    assert!(matches!(err, ReplayError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
