//! Export to Perfetto (ui.perfetto.dev): its native protobuf format ([`proto`]), compact enough
//! for a million kernels, or Chrome JSON ([`json`]).
//!
//! Per GPU (a process): kernels, copies and memsets as slices on one track per stream; NVTX
//! ranges and regions as nested slices on their own tracks (push/pop ranges, start/end ranges,
//! marks); sync and idle spans on their stream's track; waste findings on a track of their
//! own; and counter tracks for the power samples, the power derived from the energy counter,
//! and the instant-power fields.

pub mod json;
pub mod proto;

pub use json::{export, export_with_findings};

/// Names of the counter tracks, one set per GPU.
pub const SAMPLE_TRACK: &str = "power samples (W)";
/// Counter-derived mean power of each counter window.
pub const COUNTER_TRACK: &str = "power from energy counter (W)";
/// Instant-power field readings.
pub const INSTANT_TRACK: &str = "instant power field (W)";
/// Name of the counter track for the memory instant-power field.
pub const MEMORY_TRACK: &str = "memory instant power (W)";
/// Name of the track that shows waste findings.
pub const WASTE_TRACK: &str = "waste findings";
/// Name of the track of lost power readings.
pub const SENSOR_GAPS_TRACK: &str = "sensor gaps";

/// Each wasted span's label on the waste track (its finding's kind and fix), by span id.
fn waste_labels(findings: &[crate::waste::WasteReport]) -> std::collections::HashMap<u64, String> {
    findings
        .iter()
        .flat_map(|r| &r.findings)
        .flat_map(|f| {
            let label = format!("{}: {}", f.kind.label(), f.fix);
            f.wasted_spans.iter().map(move |&id| (id, label.clone()))
        })
        .collect()
}

/// The name of GPU `device` of `trace`, as the parent of its tracks.
fn gpu_name(trace: &crate::trace::Trace, device: u32) -> String {
    let name = trace
        .meta
        .devices
        .iter()
        .find(|d| d.index == device)
        .map_or("?", |d| d.name.as_str());
    let sim = if trace.meta.simulated {
        " (simulated)"
    } else {
        ""
    };
    format!("GPU {device}: {name}{sim}")
}

/// A reading's point on its counter track: the track, its time (ns) and its power (W).
/// `None` for energy-counter reads (their windows go on [`COUNTER_TRACK`]) and lost readings.
fn counter_point(r: &crate::trace::PowerReading) -> Option<(&'static str, u64, f64)> {
    use crate::trace::PowerReading;
    let (track, ts_ns, power_mw) = match *r {
        PowerReading::Sample {
            ts_ns, power_mw, ..
        } => (SAMPLE_TRACK, ts_ns, power_mw),
        PowerReading::Instant {
            ts_ns, power_mw, ..
        } => (INSTANT_TRACK, ts_ns, power_mw),
        PowerReading::MemoryInstant {
            ts_ns, power_mw, ..
        } => (MEMORY_TRACK, ts_ns, power_mw),
        PowerReading::Energy { .. } | PowerReading::Lost { .. } => return None,
    };
    Some((track, ts_ns, f64::from(power_mw) / 1000.0))
}

/// The name of a stream's track in `trace`: its work, or (for region spans) its ranges. The
/// injection library records push/pop ranges on region stream 0, start/end ranges on
/// [`crate::trace::START_END_RANGE_STREAM`] and marks on [`crate::trace::MARK_STREAM`]; other
/// recorders put regions on the stream they ran on.
pub fn stream_track_name(trace: &crate::trace::Trace, is_region: bool, stream: u64) -> String {
    let injected = trace.meta.tool_version.starts_with("wattlens-inject");
    match (is_region, stream) {
        (true, 0) if injected => "NVTX ranges (push/pop)".to_owned(),
        (true, crate::trace::START_END_RANGE_STREAM) if injected => {
            "NVTX ranges (start/end)".to_owned()
        }
        (true, crate::trace::MARK_STREAM) if injected => "NVTX marks".to_owned(),
        (true, s) => format!("regions (stream {s})"),
        (false, s) => format!("stream {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::stream_track_name;
    use crate::trace::{RunMeta, Trace};

    #[test]
    fn tracks_are_named_for_what_they_hold() {
        let injected = Trace::new(RunMeta {
            tool_version: "wattlens-inject 0.1.0".into(),
            ..RunMeta::default()
        });
        assert_eq!(
            stream_track_name(&injected, true, 0),
            "NVTX ranges (push/pop)"
        );
        assert_eq!(
            stream_track_name(&injected, true, 1),
            "NVTX ranges (start/end)"
        );
        assert_eq!(stream_track_name(&injected, true, 2), "NVTX marks");
        assert_eq!(stream_track_name(&injected, false, 2), "stream 2");
        let runtime = Trace::new(RunMeta {
            tool_version: "wattlens-runtime 0.1.0".into(),
            ..RunMeta::default()
        });
        assert_eq!(stream_track_name(&runtime, true, 1), "regions (stream 1)");
    }
}
