//! The Chrome/Perfetto JSON trace format: one event per span and reading, streamed, so memory
//! does not grow with the trace. Times are µs since the run's start; the run metadata is in
//! `otherData`.

use std::io::Write;

use serde_json::{json, Value};

use super::{
    counter_point, gpu_name, stream_track_name, waste_labels, COUNTER_TRACK, SENSOR_GAPS_TRACK,
    WASTE_TRACK,
};
use crate::intervals::diff_ns;
use crate::power::counter_windows;
use crate::trace::{PowerReading, Span, SpanKind, Trace};

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
    out: W,
) -> std::io::Result<()> {
    let mut w = EventWriter::open(trace, out)?;
    for d in &trace.meta.devices {
        w.emit(
            json!({"ph":"M","name":"process_name","pid":d.index,"tid":0,"args":{"name":gpu_name(trace, d.index)}}),
        )?;
    }
    let flagged = waste_labels(findings);
    let mut named = std::collections::BTreeSet::new();
    for s in &trace.spans {
        w.span(s, &mut named, flagged.get(&s.id))?;
    }
    for r in findings {
        w.idle_findings(r)?;
    }
    for r in &trace.power {
        w.power_reading(r)?;
    }
    for d in &trace.meta.devices {
        let period_ns = trace.meta.sensor_profile.counter_period_ns;
        for c in counter_windows(&trace.power, d.index, period_ns) {
            let ts = w.us(c.start_ns);
            w.emit(json!({"ph":"C","name":COUNTER_TRACK,"pid":d.index,"ts":ts,"args":{"W":c.power_w()}}))?;
        }
    }
    w.close()
}

/// The event stream: the header written, events comma-separated, times in µs since the run's
/// start.
struct EventWriter<'t, W: Write> {
    trace: &'t Trace,
    out: W,
    first: bool,
}

impl<'t, W: Write> EventWriter<'t, W> {
    /// Write the header (the run metadata in `otherData`) and open the event list.
    fn open(trace: &'t Trace, mut out: W) -> std::io::Result<Self> {
        let m = &trace.meta;
        let other = json!({
            "tool_version": m.tool_version,
            "simulated": m.simulated,
            "host": m.host,
            "command": m.command,
            "start_unix_ns": m.start_unix_ns,
            "driver": m.driver,
            "devices": m.devices.iter().map(|d| json!({"index": d.index, "name": d.name, "uuid": d.uuid})).collect::<Vec<_>>(),
            "sensor_profile": m.sensor_profile.name,
        });
        write!(
            out,
            "{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":["
        )?;
        Ok(Self {
            trace,
            out,
            first: true,
        })
    }

    /// Trace-clock instant `t_ns` as µs since the run's start.
    fn us(&self, t_ns: u64) -> f64 {
        diff_ns(t_ns, self.trace.meta.start_unix_ns) / 1000.0
    }

    /// One event.
    fn emit(&mut self, v: Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &v).map_err(std::io::Error::other)
    }

    /// Span `s` on its stream's (or its region's) track, naming the track the first time
    /// (`named`), and again on the waste track when it is flagged `waste`.
    fn span(
        &mut self,
        s: &Span,
        named: &mut std::collections::BTreeSet<(u32, u64)>,
        waste: Option<&String>,
    ) -> std::io::Result<()> {
        let trace = self.trace;
        let is_region = matches!(s.kind, SpanKind::Region { .. });
        let tid = if is_region {
            // A stream number near u64::MAX (a hostile trace) shares the last track.
            REGION_TRACK_BASE.saturating_add(s.stream)
        } else {
            s.stream
        };
        if named.insert((s.device, tid)) {
            let label = stream_track_name(trace, is_region, s.stream);
            self.emit(
                json!({"ph":"M","name":"thread_name","pid":s.device,"tid":tid,"args":{"name":label}}),
            )?;
        }
        let (ts, dur) = (self.us(s.start_ns), s.duration_ns() as f64 / 1000.0);
        let mut args = span_args(trace, s);
        if let Some(w) = waste {
            args.insert("waste".into(), json!(w));
            self.emit(
                json!({"ph":"X","name":trace.str(s.name),"cat":"waste","pid":s.device,"tid":WASTE_TRACK,
                       "ts":ts,"dur":dur,"args":{"waste":w,"span_id":s.id}}),
            )?;
        }
        if let SpanKind::Memcpy { direction, .. } = s.kind {
            args.insert("direction".into(), json!(format!("{direction:?}")));
        }
        if let SpanKind::Memcpy { bytes, .. } | SpanKind::Memset { bytes, .. } = s.kind {
            args.insert("bytes".into(), json!(bytes));
        }
        self.emit(
            json!({"ph":"X","name":trace.str(s.name),"cat":s.kind.label(),"pid":s.device,"tid":tid,
                   "ts":ts,"dur":dur,"args":args}),
        )
    }

    /// The idle gaps of `r`'s findings, on the waste track.
    fn idle_findings(&mut self, r: &crate::waste::WasteReport) -> std::io::Result<()> {
        for f in r.findings.iter().filter(|f| !f.idle_intervals.is_empty()) {
            for &idle in &f.idle_intervals {
                let ts = self.us(idle.from_ns);
                self.emit(
                    json!({"ph":"X","name":f.what,"cat":"waste","pid":r.device,"tid":WASTE_TRACK,
                           "ts":ts,"dur":(idle.len_ns() as f64)/1000.0,
                           "args":{"waste":format!("{}: {}", f.kind.label(), f.fix),"site":f.site}}),
                )?;
            }
        }
        Ok(())
    }

    /// Power reading `r`: a counter point, or a stretch of lost readings on the sensor track.
    fn power_reading(&mut self, r: &PowerReading) -> std::io::Result<()> {
        if let PowerReading::Lost {
            device,
            from_ns,
            to_ns,
        } = *r
        {
            let ts = self.us(from_ns);
            return self.emit(
                json!({"ph":"X","name":"lost power readings","cat":"sensor","pid":device,
                       "tid":SENSOR_GAPS_TRACK,"ts":ts,
                       "dur":(to_ns.saturating_sub(from_ns) as f64)/1000.0}),
            );
        }
        let Some((track, ts, w)) = counter_point(r) else {
            return Ok(());
        };
        let ts = self.us(ts);
        self.emit(json!({"ph":"C","name":track,"pid":r.device(),"ts":ts,"args":{"W":w}}))
    }

    /// Close the event list and flush.
    fn close(mut self) -> std::io::Result<()> {
        self.out.write_all(b"]}\n")?;
        self.out.flush()
    }
}

/// A span's own arguments: its id, region, site and launch shape.
fn span_args(trace: &Trace, s: &Span) -> serde_json::Map<String, Value> {
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
    args
}
