//! Perfetto's native trace format: a protobuf `Trace` of `TracePacket`s holding track
//! descriptors and track events (perfetto/protos/perfetto/trace/track_event/). A span is a
//! slice (a begin and an end event on its track); a reading is a counter event. Event names,
//! categories and the `span_id` annotation's name are interned once per trace. Packets are
//! written as they are made: memory holds the track and name tables, not the trace.
//!
//! The subset written, by field number (proto2 wire format):
//! - `Trace.packet` 1;
//! - `TracePacket`: `timestamp` 8, `trusted_packet_sequence_id` 10, `track_event` 11,
//!   `interned_data` 12, `sequence_flags` 13, `track_descriptor` 60;
//! - `TrackDescriptor`: `uuid` 1, `name` 2, `process` 3, `parent_uuid` 5, `counter` 8;
//!   `ProcessDescriptor`: `pid` 1, `process_name` 6; `CounterDescriptor` (empty);
//! - `TrackEvent`: `category_iids` 3, `debug_annotations` 4, `type` 9 (1 begin, 2 end, 4
//!   counter), `name_iid` 10, `track_uuid` 11, `double_counter_value` 44;
//!   `DebugAnnotation`: `name_iid` 1, `uint_value` 3;
//! - `InternedData`: `event_categories` 1, `event_names` 2, `debug_annotation_names` 3 (each
//!   `iid` 1, `name` 2).

use std::collections::HashMap;
use std::io::Write;

use super::{
    counter_point, gpu_name, stream_track_name, waste_labels, COUNTER_TRACK, SENSOR_GAPS_TRACK,
    WASTE_TRACK,
};
use crate::power::counter_windows;
use crate::trace::{PowerReading, SpanKind, Trace};

/// The one packet sequence this writer uses.
const SEQUENCE_ID: u64 = 1;
/// `TracePacket.sequence_flags`: the first packet clears the interning state.
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
/// Every packet that uses interned names needs the state.
const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
/// `TrackEvent.Type` values.
const TYPE_SLICE_BEGIN: u64 = 1;
const TYPE_SLICE_END: u64 = 2;
const TYPE_COUNTER: u64 = 4;
/// The interned name of the span-id annotation.
const SPAN_ID_IID: u64 = 1;

/// Protobuf wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

/// A protobuf message being built.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    fn uint(&mut self, field: u64, v: u64) -> &mut Self {
        self.key(field, VARINT);
        self.varint(v);
        self
    }

    fn double(&mut self, field: u64, v: f64) -> &mut Self {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn string(&mut self, field: u64, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    fn message(&mut self, field: u64, m: &Message) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

/// What a track is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TrackKey {
    /// A GPU: the parent of its tracks.
    Device(u32),
    /// A stream's work (`false`) or its region spans (`true`).
    Stream(u32, u64, bool),
    /// A named track of a GPU (waste, sensor gaps, counters).
    Named(u32, &'static str),
}

/// Writes packets to `out`, each as field 1 of the enclosing `Trace`.
struct Writer<W: Write> {
    out: W,
    first: bool,
    /// Interned event names.
    names: HashMap<String, u64>,
    /// Interned categories (span kinds).
    categories: HashMap<&'static str, u64>,
    /// Track uuids by key.
    tracks: HashMap<TrackKey, u64>,
    /// Bytes written.
    written: u64,
}

impl<W: Write> Writer<W> {
    fn packet(&mut self, mut p: Message) -> std::io::Result<()> {
        p.uint(10, SEQUENCE_ID);
        p.uint(
            13,
            if std::mem::take(&mut self.first) {
                SEQ_INCREMENTAL_STATE_CLEARED | SEQ_NEEDS_INCREMENTAL_STATE
            } else {
                SEQ_NEEDS_INCREMENTAL_STATE
            },
        );
        let mut framed = Message::default();
        framed.message(1, &p);
        self.written += framed.0.len() as u64;
        self.out.write_all(&framed.0)
    }

    /// The uuid of `key`'s track, its descriptor written the first time.
    fn track(&mut self, key: TrackKey, trace: &Trace) -> std::io::Result<u64> {
        if let Some(&uuid) = self.tracks.get(&key) {
            return Ok(uuid);
        }
        let uuid = self.tracks.len() as u64 + 1;
        self.tracks.insert(key.clone(), uuid);
        let mut d = Message::default();
        d.uint(1, uuid);
        match key {
            TrackKey::Device(device) => {
                let mut process = Message::default();
                process
                    .uint(1, u64::from(device) + 1)
                    .string(6, &gpu_name(trace, device));
                d.message(3, &process);
            }
            TrackKey::Stream(device, stream, region) => {
                let parent = self.track(TrackKey::Device(device), trace)?;
                d.string(2, &stream_track_name(trace, region, stream))
                    .uint(5, parent);
            }
            TrackKey::Named(device, name) => {
                let parent = self.track(TrackKey::Device(device), trace)?;
                d.string(2, name).uint(5, parent);
                if name.ends_with("(W)") {
                    // An empty CounterDescriptor makes it a counter track; the unit is in the
                    // track's name.
                    d.message(8, &Message::default());
                }
            }
        }
        let mut p = Message::default();
        p.message(60, &d);
        self.packet(p)?;
        Ok(uuid)
    }

    /// The interned ids of `name` and `category`, adding the new ones to `interned`.
    fn iids(&mut self, name: &str, category: &'static str, interned: &mut Message) -> (u64, u64) {
        let name_iid = match self.names.get(name) {
            Some(&iid) => iid,
            None => {
                let iid = self.names.len() as u64 + 1;
                self.names.insert(name.to_owned(), iid);
                let mut entry = Message::default();
                entry.uint(1, iid).string(2, name);
                interned.message(2, &entry);
                iid
            }
        };
        let category_iid = match self.categories.get(category) {
            Some(&iid) => iid,
            None => {
                let iid = self.categories.len() as u64 + 1;
                self.categories.insert(category, iid);
                let mut entry = Message::default();
                entry.uint(1, iid).string(2, category);
                interned.message(1, &entry);
                iid
            }
        };
        (name_iid, category_iid)
    }

    /// A slice on `track` from `start_ns` to `end_ns`.
    fn slice(
        &mut self,
        track: u64,
        (name, category): (&str, &'static str),
        (start_ns, end_ns): (u64, u64),
        span_id: Option<u64>,
    ) -> std::io::Result<()> {
        let mut interned = Message::default();
        let (name_iid, category_iid) = self.iids(name, category, &mut interned);
        let mut e = Message::default();
        e.uint(3, category_iid)
            .uint(9, TYPE_SLICE_BEGIN)
            .uint(10, name_iid)
            .uint(11, track);
        if let Some(id) = span_id {
            let mut a = Message::default();
            a.uint(1, SPAN_ID_IID).uint(3, id);
            e.message(4, &a);
        }
        let mut p = Message::default();
        p.uint(8, start_ns).message(11, &e);
        if !interned.0.is_empty() {
            p.message(12, &interned);
        }
        self.packet(p)?;
        let mut end = Message::default();
        end.uint(9, TYPE_SLICE_END).uint(11, track);
        let mut p = Message::default();
        p.uint(8, end_ns.max(start_ns)).message(11, &end);
        self.packet(p)
    }

    fn counter(&mut self, track: u64, ts_ns: u64, value: f64) -> std::io::Result<()> {
        let mut e = Message::default();
        e.uint(9, TYPE_COUNTER).uint(11, track).double(44, value);
        let mut p = Message::default();
        p.uint(8, ts_ns).message(11, &e);
        self.packet(p)
    }
}

/// Write `trace` in Perfetto's protobuf format to `out`, with the spans of `findings` repeated
/// on a "waste findings" track (named by the kind and the fix) and their idle gaps there too.
/// Returns the bytes written.
///
/// # Errors
/// The I/O error of `out`.
pub fn export_with_findings<W: Write>(
    trace: &Trace,
    findings: &[crate::waste::WasteReport],
    out: W,
) -> std::io::Result<u64> {
    let flagged = waste_labels(findings);
    let mut w = Writer {
        out,
        first: true,
        names: HashMap::new(),
        categories: HashMap::new(),
        tracks: HashMap::new(),
        written: 0,
    };
    // The interned name of the span-id annotation, in the first packet.
    let mut entry = Message::default();
    entry.uint(1, SPAN_ID_IID).string(2, "span_id");
    let mut interned = Message::default();
    interned.message(3, &entry);
    let mut first = Message::default();
    first.message(12, &interned);
    w.packet(first)?;
    for d in &trace.meta.devices {
        w.track(TrackKey::Device(d.index), trace)?;
    }
    for s in &trace.spans {
        let region = matches!(s.kind, SpanKind::Region { .. });
        let track = w.track(TrackKey::Stream(s.device, s.stream, region), trace)?;
        w.slice(
            track,
            (trace.str(s.name), s.kind.label()),
            (s.start_ns, s.end_ns),
            Some(s.id),
        )?;
        if let Some(why) = flagged.get(&s.id) {
            let waste = w.track(TrackKey::Named(s.device, WASTE_TRACK), trace)?;
            w.slice(waste, (why, "waste"), (s.start_ns, s.end_ns), Some(s.id))?;
        }
    }
    for r in findings {
        for f in r.findings.iter().filter(|f| !f.idle_intervals.is_empty()) {
            let waste = w.track(TrackKey::Named(r.device, WASTE_TRACK), trace)?;
            let why = format!("{}: {}", f.what, f.fix);
            for idle in &f.idle_intervals {
                w.slice(waste, (&why, "waste"), (idle.from_ns, idle.to_ns), None)?;
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
            let gaps = w.track(TrackKey::Named(device, SENSOR_GAPS_TRACK), trace)?;
            w.slice(
                gaps,
                ("lost power readings", "sensor"),
                (from_ns, to_ns),
                None,
            )?;
            continue;
        }
        let Some((name, ts_ns, watts)) = counter_point(r) else {
            continue;
        };
        let track = w.track(TrackKey::Named(r.device(), name), trace)?;
        w.counter(track, ts_ns, watts)?;
    }
    for d in &trace.meta.devices {
        let windows = counter_windows(
            &trace.power,
            d.index,
            trace.meta.sensor_profile.counter_period_ns,
        );
        for cw in windows {
            let track = w.track(TrackKey::Named(d.index, COUNTER_TRACK), trace)?;
            w.counter(track, cw.start_ns, cw.power_w())?;
        }
    }
    w.out.flush()?;
    Ok(w.written)
}

#[cfg(test)]
mod tests {
    use super::Message;

    #[test]
    fn varints_and_keys_follow_the_wire_format() {
        let mut m = Message::default();
        m.uint(1, 150);
        assert_eq!(m.0, [0x08, 0x96, 0x01]);
        let mut s = Message::default();
        s.string(2, "testing");
        assert_eq!(s.0[..2], [0x12, 0x07]);
        let mut d = Message::default();
        d.double(44, 1.0);
        assert_eq!(d.0[..2], [0xe1, 0x02]);
        assert_eq!(d.0[2..], 1.0f64.to_le_bytes());
    }
}
