//! The Chrome/Perfetto JSON trace format: one event per span and reading, streamed, so memory
//! does not grow with the trace. Times are µs since the run's start; the run metadata is in
//! `otherData`.

use std::io::Write;

use serde_json::{json, Value};

use super::{
    counter_point, gpu_name, stream_track_name, waste_labels, COUNTER_TRACK, SENSOR_GAPS_TRACK,
    WASTE_TRACK,
};
use crate::power::counter_windows;
use crate::trace::{PowerReading, SpanKind, Trace};

/// Track id offset of the region track of a stream.
const REGION_TRACK_BASE: u64 = 1 << 40;

/// Write `trace` as Chrome/Perfetto JSON to `out`.
///
/// # Errors
/// The I/O error of `out`.
pub fn export<W: Write>(trace: &Trace, out: W) -> std::io::Result<()> {
    export_with_findings(trace, &[], out)
}

/// [`export`], with the spans of `findings` marked (a `waste` argument naming the kind and the
/// fix) and every wasted span and idle gap repeated on a "waste findings" track.
///
/// # Errors
/// The I/O error of `out`.
pub fn export_with_findings<W: Write>(
    trace: &Trace,
    findings: &[crate::waste::WasteReport],
    mut out: W,
) -> std::io::Result<()> {
    let flagged = waste_labels(findings);
    let t0 = trace.meta.start_unix_ns;
    // Subtract in integers first: f64 cannot hold absolute epoch ns to the nanosecond.
    let us = |t: u64| (i128::from(t) - i128::from(t0)) as f64 / 1000.0;
    let other = json!({
        "tool_version": trace.meta.tool_version,
        "simulated": trace.meta.simulated,
        "host": trace.meta.host,
        "command": trace.meta.command,
        "start_unix_ns": trace.meta.start_unix_ns,
        "driver": trace.meta.driver,
        "devices": trace.meta.devices.iter().map(|d| json!({"index": d.index, "name": d.name, "uuid": d.uuid})).collect::<Vec<_>>(),
        "sensor_profile": trace.meta.sensor_profile.name,
    });
    write!(
        out,
        "{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":["
    )?;
    let mut first = true;
    let mut emit = |out: &mut W, v: Value| -> std::io::Result<()> {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)
    };
    for d in &trace.meta.devices {
        emit(
            &mut out,
            json!({"ph":"M","name":"process_name","pid":d.index,"tid":0,"args":{"name":gpu_name(trace, d.index)}}),
        )?;
    }
    let mut named = std::collections::BTreeSet::new();
    for s in &trace.spans {
        let is_region = matches!(s.kind, SpanKind::Region { .. });
        let tid = if is_region {
            // A stream number near u64::MAX (a hostile trace) shares the last track.
            REGION_TRACK_BASE.saturating_add(s.stream)
        } else {
            s.stream
        };
        if named.insert((s.device, tid)) {
            let label = stream_track_name(trace, is_region, s.stream);
            emit(
                &mut out,
                json!({"ph":"M","name":"thread_name","pid":s.device,"tid":tid,"args":{"name":label}}),
            )?;
        }
        let mut args = serde_json::Map::new();
        args.insert("span_id".into(), json!(s.id));
        if s.region.is_some() {
            args.insert("region".into(), json!(trace.str(s.region)));
        }
        if s.site.is_some() {
            args.insert("site".into(), json!(trace.str(s.site)));
        }
        if let Some(l) = s.launch {
            args.insert("grid".into(), json!(l.grid));
            args.insert("block".into(), json!(l.block));
            args.insert("shared_mem_bytes".into(), json!(l.shared_mem_bytes));
        }
        if let Some(w) = flagged.get(&s.id) {
            args.insert("waste".into(), json!(w));
            emit(
                &mut out,
                json!({"ph":"X","name":trace.str(s.name),"cat":"waste","pid":s.device,"tid":WASTE_TRACK,
                       "ts":us(s.start_ns),"dur":(s.duration_ns() as f64)/1000.0,"args":{"waste":w,"span_id":s.id}}),
            )?;
        }
        match s.kind {
            SpanKind::Memcpy {
                direction, bytes, ..
            } => {
                args.insert("direction".into(), json!(format!("{direction:?}")));
                args.insert("bytes".into(), json!(bytes));
            }
            SpanKind::Memset { bytes, .. } => {
                args.insert("bytes".into(), json!(bytes));
            }
            _ => {}
        }
        emit(
            &mut out,
            json!({"ph":"X","name":trace.str(s.name),"cat":s.kind.label(),"pid":s.device,"tid":tid,
                   "ts":us(s.start_ns),"dur":(s.duration_ns() as f64)/1000.0,"args":args}),
        )?;
    }
    for r in findings {
        for f in r.findings.iter().filter(|f| !f.idle_intervals.is_empty()) {
            for &idle in &f.idle_intervals {
                emit(
                    &mut out,
                    json!({"ph":"X","name":f.what,"cat":"waste","pid":r.device,"tid":WASTE_TRACK,
                           "ts":us(idle.from_ns),"dur":(idle.len_ns() as f64)/1000.0,
                           "args":{"waste":format!("{}: {}", f.kind.label(), f.fix),"site":f.site}}),
                )?;
            }
        }
    }
    for r in &trace.power {
        if let PowerReading::Lost {
            device,
            from_ns,
            to_ns,
        } = *r
        {
            emit(
                &mut out,
                json!({"ph":"X","name":"lost power readings","cat":"sensor","pid":device,
                       "tid":SENSOR_GAPS_TRACK,"ts":us(from_ns),
                       "dur":(to_ns.saturating_sub(from_ns) as f64)/1000.0}),
            )?;
            continue;
        }
        let Some((track, ts, w)) = counter_point(r) else {
            continue;
        };
        emit(
            &mut out,
            json!({"ph":"C","name":track,"pid":r.device(),"ts":us(ts),"args":{"W":w}}),
        )?;
    }
    for d in &trace.meta.devices {
        for w in counter_windows(
            &trace.power,
            d.index,
            trace.meta.sensor_profile.counter_period_ns,
        ) {
            emit(
                &mut out,
                json!({"ph":"C","name":COUNTER_TRACK,"pid":d.index,"ts":us(w.start_ns),"args":{"W":w.power_w()}}),
            )?;
        }
    }
    out.write_all(b"]}\n")?;
    out.flush()
}
