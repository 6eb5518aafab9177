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

/// A protobuf wire-format decoder written from the encoding spec, independent of the writer:
/// each field of a message as (number, value).
mod pb {
    #[derive(Debug, Clone)]
    pub enum Value<'a> {
        Varint(u64),
        Fixed64([u8; 8]),
        Bytes(&'a [u8]),
        Fixed32,
    }

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    pub fn fields(b: &[u8]) -> Vec<(u64, Value<'_>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let key = varint(b, &mut i);
            let value = match key & 7 {
                0 => Value::Varint(varint(b, &mut i)),
                1 => {
                    let v = b[i..i + 8].try_into().unwrap();
                    i += 8;
                    Value::Fixed64(v)
                }
                2 => {
                    let n = varint(b, &mut i) as usize;
                    let v = &b[i..i + n];
                    i += n;
                    Value::Bytes(v)
                }
                5 => {
                    i += 4;
                    Value::Fixed32
                }
                w => panic!("wire type {w} at byte {i}"),
            };
            out.push((key >> 3, value));
        }
        out
    }

    pub fn uint(m: &[(u64, Value<'_>)], field: u64) -> Option<u64> {
        m.iter().find_map(|(f, v)| match v {
            Value::Varint(x) if *f == field => Some(*x),
            _ => None,
        })
    }

    pub fn bytes<'a>(m: &[(u64, Value<'a>)], field: u64) -> Option<&'a [u8]> {
        m.iter().find_map(|(f, v)| match v {
            Value::Bytes(x) if *f == field => Some(*x),
            _ => None,
        })
    }

    pub fn text<'a>(m: &[(u64, Value<'a>)], field: u64) -> Option<&'a str> {
        bytes(m, field).map(|b| std::str::from_utf8(b).unwrap())
    }

    pub fn double(m: &[(u64, Value<'_>)], field: u64) -> Option<f64> {
        m.iter().find_map(|(f, v)| match v {
            Value::Fixed64(x) if *f == field => Some(f64::from_le_bytes(*x)),
            _ => None,
        })
    }
}

#[test]
fn protobuf_export_reads_back_every_span_and_counter_and_is_smaller_than_json() {
    use std::collections::HashMap;
    use wattlens_instrument::perfetto::proto;
    let run = simulate(
        &demo_workload(3),
        &GpuModel::h200(),
        &SensorProfile::default(),
        3,
        1_700_000_000_000_000_000,
    );
    let t = &run.trace;
    let mut buf = Vec::new();
    let written = proto::export_with_findings(t, &[], &mut buf).unwrap();
    assert_eq!(written, buf.len() as u64);
    let mut json = Vec::new();
    export(t, &mut json).unwrap();
    println!(
        "demo trace: {} spans; protobuf {} bytes, JSON {} bytes, {:.1}x smaller",
        t.spans.len(),
        buf.len(),
        json.len(),
        json.len() as f64 / buf.len() as f64
    );
    assert!(
        buf.len() * 3 < json.len(),
        "{} vs {}",
        buf.len(),
        json.len()
    );

    let mut names: HashMap<u64, String> = HashMap::new();
    let mut tracks: HashMap<u64, String> = HashMap::new();
    // (track, name, begin ts, span id) of each begin, and ends per track.
    let mut begins: Vec<(u64, u64, u64, Option<u64>)> = Vec::new();
    let mut ends: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut counters: HashMap<u64, Vec<(u64, f64)>> = HashMap::new();
    for (field, packet) in pb::fields(&buf) {
        assert_eq!(field, 1, "a Trace holds packets only");
        let pb::Value::Bytes(packet) = packet else {
            panic!("a packet is a message")
        };
        let p = pb::fields(packet);
        assert_eq!(pb::uint(&p, 10), Some(1), "one sequence");
        if let Some(interned) = pb::bytes(&p, 12) {
            for (f, v) in pb::fields(interned) {
                if let (2, pb::Value::Bytes(entry)) = (f, v) {
                    let e = pb::fields(entry);
                    names.insert(
                        pb::uint(&e, 1).unwrap(),
                        pb::text(&e, 2).unwrap().to_owned(),
                    );
                }
            }
        }
        if let Some(d) = pb::bytes(&p, 60) {
            let d = pb::fields(d);
            let name = pb::text(&d, 2)
                .map(str::to_owned)
                .or_else(|| {
                    pb::bytes(&d, 3).map(|p| pb::text(&pb::fields(p), 6).unwrap().to_owned())
                })
                .unwrap();
            tracks.insert(pb::uint(&d, 1).unwrap(), name);
        }
        if let Some(e) = pb::bytes(&p, 11) {
            let e = pb::fields(e);
            let ts = pb::uint(&p, 8).unwrap();
            let track = pb::uint(&e, 11).unwrap();
            assert!(
                tracks.contains_key(&track),
                "a track is described before its events"
            );
            match pb::uint(&e, 9).unwrap() {
                1 => {
                    let span_id = pb::bytes(&e, 4).and_then(|a| pb::uint(&pb::fields(a), 3));
                    begins.push((track, pb::uint(&e, 10).unwrap(), ts, span_id));
                }
                2 => ends.entry(track).or_default().push(ts),
                4 => counters
                    .entry(track)
                    .or_default()
                    .push((ts, pb::double(&e, 44).unwrap())),
                other => panic!("event type {other}"),
            }
        }
    }
    // Every span: a begin on its stream's track, named, at its start; its end on that track.
    assert_eq!(begins.len(), t.spans.len());
    let by_id: HashMap<u64, &(u64, u64, u64, Option<u64>)> =
        begins.iter().map(|b| (b.3.unwrap(), b)).collect();
    let mut ends_seen: HashMap<u64, Vec<u64>> = HashMap::new();
    for s in &t.spans {
        let (track, name, ts, _) = by_id[&s.id];
        assert_eq!(names[name], t.str(s.name));
        assert_eq!(*ts, s.start_ns);
        let region = matches!(s.kind, SpanKind::Region { .. });
        // A simulated trace is not the injection library's: regions keep their stream.
        let want = if region {
            format!("regions (stream {})", s.stream)
        } else {
            format!("stream {}", s.stream)
        };
        assert_eq!(tracks[track], want);
        ends_seen.entry(*track).or_default().push(s.end_ns);
    }
    for (track, mut want) in ends_seen {
        let mut got = ends[&track].clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
    // Every reading: a counter event with its value on its track.
    let on = |name: &str| -> Vec<(u64, f64)> {
        tracks
            .iter()
            .filter(|(_, n)| *n == name)
            .flat_map(|(u, _)| counters.get(u).cloned().unwrap_or_default())
            .collect()
    };
    let samples: Vec<(u64, f64)> = t
        .power
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Sample {
                ts_ns, power_mw, ..
            } => Some((ts_ns, f64::from(power_mw) / 1000.0)),
            _ => None,
        })
        .collect();
    assert!(!samples.is_empty());
    assert_eq!(on(SAMPLE_TRACK), samples);
    let instants = t
        .power
        .iter()
        .filter(|r| matches!(r, PowerReading::Instant { .. }))
        .count();
    assert_eq!(on(INSTANT_TRACK).len(), instants);
    let windows = counter_windows(&t.power, 0, t.meta.sensor_profile.counter_period_ns);
    let got = on(COUNTER_TRACK);
    assert_eq!(got.len(), windows.len());
    for (g, w) in got.iter().zip(&windows) {
        assert_eq!(g.0, w.start_ns);
        assert!((g.1 - w.power_w()).abs() < 1e-9);
    }
}
