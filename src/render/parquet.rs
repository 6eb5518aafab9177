//! Parquet export (`wattlens export --parquet DIR`): a run's spans, power readings and the
//! report's tables, one folder per table and one file per run, each row with its run and host,
//! so that DuckDB (or Spark, Trino) queries one run or thousands at once:
//! `SELECT op_class, sum(dynamic_mj) FROM 'DIR/ops/*.parquet' GROUP BY op_class`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use wattlens_instrument::trace::{PowerReading, Trace};
use wattlens_instrument::EnergyEstimate;

use super::{DeviceReport, Report};

/// The tables written, each a folder of one file per run.
pub const TABLES: [&str; 7] = [
    "spans",
    "power",
    "signatures",
    "ops",
    "regions",
    "requests",
    "findings",
];

/// Why a Parquet export failed.
#[derive(Debug, thiserror::Error)]
pub enum ParquetExportError {
    /// A file could not be created.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("cannot write {path} as Parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The error.
        source: ParquetError,
    },
    /// A table's columns did not form a record batch (a bug: every column has a row per item).
    #[error("table {table} is malformed: {source}")]
    Arrow {
        /// The table.
        table: &'static str,
        /// The error.
        source: ArrowError,
    },
}

/// Who a row belongs to: the run (named by its trace file) and the host it ran on.
#[derive(Debug, Clone)]
pub struct RunId {
    /// The run's name: its trace file's stem.
    pub run: String,
    /// The host it ran on.
    pub host: String,
}

/// A table being built column by column; every column has one value per row.
struct Table {
    name: &'static str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl Table {
    /// A table of `rows` rows that begins with the run and host columns.
    fn new(name: &'static str, id: &RunId, rows: usize) -> Self {
        let mut t = Self {
            name,
            fields: Vec::new(),
            columns: Vec::new(),
        };
        t.text("run", std::iter::repeat_n(id.run.as_str(), rows));
        t.text("host", std::iter::repeat_n(id.host.as_str(), rows));
        t
    }

    fn text<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str>) -> &mut Self {
        self.push(
            name,
            DataType::Utf8,
            false,
            Arc::new(StringArray::from_iter_values(values)),
        )
    }

    fn u64(&mut self, name: &str, values: impl Iterator<Item = u64>) -> &mut Self {
        self.push(
            name,
            DataType::UInt64,
            false,
            Arc::new(UInt64Array::from_iter_values(values)),
        )
    }

    fn opt_u64(&mut self, name: &str, values: impl Iterator<Item = Option<u64>>) -> &mut Self {
        self.push(
            name,
            DataType::UInt64,
            true,
            Arc::new(values.collect::<UInt64Array>()),
        )
    }

    fn f64(&mut self, name: &str, values: impl Iterator<Item = f64>) -> &mut Self {
        self.push(
            name,
            DataType::Float64,
            false,
            Arc::new(Float64Array::from_iter_values(values)),
        )
    }

    fn bool(&mut self, name: &str, values: impl Iterator<Item = bool>) -> &mut Self {
        let array: BooleanArray = values.map(Some).collect();
        self.push(name, DataType::Boolean, false, Arc::new(array))
    }

    /// Four columns of an estimate: `{prefix}_mj`, `_low_mj`, `_high_mj` and `_coverage`.
    fn estimate<'a>(
        &mut self,
        prefix: &str,
        values: impl Iterator<Item = &'a EnergyEstimate> + Clone,
    ) -> &mut Self {
        self.f64(&format!("{prefix}_mj"), values.clone().map(|e| e.mj))
            .f64(
                &format!("{prefix}_low_mj"),
                values.clone().map(|e| e.low_mj),
            )
            .f64(
                &format!("{prefix}_high_mj"),
                values.clone().map(|e| e.high_mj),
            )
            .text(
                &format!("{prefix}_coverage"),
                values.map(|e| e.coverage.label()),
            )
    }

    fn push(&mut self, name: &str, ty: DataType, nullable: bool, array: ArrayRef) -> &mut Self {
        self.fields.push(Field::new(name, ty, nullable));
        self.columns.push(array);
        self
    }

    /// Write the table to `dir/<table>/<run>.parquet`.
    fn write(self, dir: &Path, run: &str) -> Result<PathBuf, ParquetExportError> {
        let folder = dir.join(self.name);
        std::fs::create_dir_all(&folder).map_err(|source| ParquetExportError::Io {
            path: folder.clone(),
            source,
        })?;
        let path = folder.join(format!("{run}.parquet"));
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema.clone(), self.columns).map_err(|source| {
            ParquetExportError::Arrow {
                table: self.name,
                source,
            }
        })?;
        let file = File::create(&path).map_err(|source| ParquetExportError::Io {
            path: path.clone(),
            source,
        })?;
        let parquet = |source| ParquetExportError::Parquet {
            path: path.clone(),
            source,
        };
        let mut writer = ArrowWriter::try_new(file, schema, None).map_err(parquet)?;
        writer.write(&batch).map_err(parquet)?;
        writer.close().map_err(parquet)?;
        Ok(path)
    }
}

/// Write `trace` and its `report` as Parquet tables under `dir`, one file per table named for
/// `id.run` (the report's tables empty where the trace could not be attributed). Returns the
/// files written.
///
/// # Errors
/// [`ParquetExportError`] when a file cannot be written.
pub fn write(
    dir: &Path,
    id: &RunId,
    trace: &Trace,
    report: Option<&Report>,
) -> Result<Vec<PathBuf>, ParquetExportError> {
    let devices: &[DeviceReport] = report.map_or(&[], |r| &r.devices);
    let tables = [
        spans(id, trace, devices),
        power(id, trace),
        signatures(id, devices),
        ops(id, devices),
        regions(id, devices),
        requests(id, devices),
        findings(id, devices),
    ];
    tables.into_iter().map(|t| t.write(dir, &id.run)).collect()
}

/// Every span of the trace, with its dynamic energy and static share where attributed.
fn spans(id: &RunId, trace: &Trace, devices: &[DeviceReport]) -> Table {
    use std::collections::HashMap;
    let energy: HashMap<(u32, u64), (&EnergyEstimate, f64)> = attributions(devices)
        .flat_map(|a| {
            a.spans
                .iter()
                .map(move |s| ((a.device, s.span), (&s.dynamic, s.static_mj)))
        })
        .collect();
    let s = &trace.spans;
    let of = |i: usize| energy.get(&(s[i].device, s[i].id));
    let mut classes = super::SpanClasses::new(trace);
    let mut t = Table::new("spans", id, s.len());
    t.u64("device", s.iter().map(|x| u64::from(x.device)))
        .u64("span", s.iter().map(|x| x.id))
        .text("kind", s.iter().map(|x| x.kind.label()))
        .text("name", s.iter().map(|x| trace.str(x.name)))
        .text("op_class", s.iter().map(|x| classes.of(x).label()))
        .text("region", s.iter().map(|x| trace.str(x.region)))
        .u64("stream", s.iter().map(|x| x.stream))
        .u64("start_ns", s.iter().map(|x| x.start_ns))
        .u64("end_ns", s.iter().map(|x| x.end_ns))
        .opt_u64("blocks", s.iter().map(|x| x.launch.map(|l| l.blocks())))
        .opt_u64(
            "threads_per_block",
            s.iter().map(|x| x.launch.map(|l| l.threads_per_block())),
        )
        .bool("attributed", (0..s.len()).map(|i| of(i).is_some()))
        .f64(
            "dynamic_mj",
            (0..s.len()).map(|i| of(i).map_or(0.0, |e| e.0.mj)),
        )
        .f64(
            "dynamic_low_mj",
            (0..s.len()).map(|i| of(i).map_or(0.0, |e| e.0.low_mj)),
        )
        .f64(
            "dynamic_high_mj",
            (0..s.len()).map(|i| of(i).map_or(0.0, |e| e.0.high_mj)),
        )
        .f64(
            "static_mj",
            (0..s.len()).map(|i| of(i).map_or(0.0, |e| e.1)),
        );
    t
}

/// Every power reading: samples and instant reads (mW), energy-counter reads (mJ since the
/// driver loaded), and sensor gaps (`lost`, value 0, from `t_ns` to `until_ns`).
fn power(id: &RunId, trace: &Trace) -> Table {
    // A read names its start and how long the call took; a sample is an instant.
    let read = |ts_ns: u64, read_ns: u32| (ts_ns, ts_ns + u64::from(read_ns));
    let rows: Vec<(u32, &'static str, (u64, u64), f64)> = trace
        .power
        .iter()
        .map(|r| {
            let (label, span, value) = match *r {
                PowerReading::Sample {
                    ts_ns, power_mw, ..
                } => ("sample_mw", (ts_ns, ts_ns), f64::from(power_mw)),
                PowerReading::Energy {
                    ts_ns,
                    read_ns,
                    energy_mj,
                    ..
                } => ("counter_mj", read(ts_ns, read_ns), energy_mj as f64),
                PowerReading::Instant {
                    ts_ns,
                    read_ns,
                    power_mw,
                    ..
                } => ("instant_mw", read(ts_ns, read_ns), f64::from(power_mw)),
                PowerReading::MemoryInstant {
                    ts_ns,
                    read_ns,
                    power_mw,
                    ..
                } => (
                    "memory_instant_mw",
                    read(ts_ns, read_ns),
                    f64::from(power_mw),
                ),
                PowerReading::Lost { from_ns, to_ns, .. } => ("lost", (from_ns, to_ns), 0.0),
            };
            (r.device(), label, span, value)
        })
        .collect();
    let mut t = Table::new("power", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("reading", rows.iter().map(|r| r.1))
        .u64("t_ns", rows.iter().map(|r| r.2 .0))
        .u64("until_ns", rows.iter().map(|r| r.2 .1))
        .f64("value", rows.iter().map(|r| r.3));
    t
}

/// The attributions of the report's devices.
fn attributions(
    devices: &[DeviceReport],
) -> impl Iterator<Item = &wattlens_instrument::Attribution> {
    devices.iter().filter_map(|d| d.attribution.as_ref())
}

/// Per kernel signature (or copy direction, memset) and device.
fn signatures(id: &RunId, devices: &[DeviceReport]) -> Table {
    let rows: Vec<(u32, &wattlens_instrument::attribution::SignatureEnergy)> =
        attributions(devices)
            .flat_map(|a| a.signatures.iter().map(move |s| (a.device, s)))
            .collect();
    let mut t = Table::new("signatures", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("name", rows.iter().map(|r| r.1.name.as_str()))
        .text("kind", rows.iter().map(|r| r.1.kind.as_str()))
        .text("op_class", rows.iter().map(|r| r.1.op_class.label()))
        .opt_u64(
            "blocks",
            rows.iter().map(|r| r.1.launch.map(|l| l.blocks())),
        )
        .opt_u64(
            "threads_per_block",
            rows.iter()
                .map(|r| r.1.launch.map(|l| l.threads_per_block())),
        )
        .u64("launches", rows.iter().map(|r| r.1.launches))
        .u64("busy_ns", rows.iter().map(|r| r.1.busy_ns))
        .estimate("dynamic", rows.iter().map(|r| &r.1.dynamic))
        .estimate("static", rows.iter().map(|r| &r.1.static_share))
        .estimate("per_launch", rows.iter().map(|r| &r.1.per_launch))
        .u64("replayed_launches", rows.iter().map(|r| r.1.alone_launches));
    t
}

/// Per op class and device.
fn ops(id: &RunId, devices: &[DeviceReport]) -> Table {
    let rows: Vec<(u32, &wattlens_instrument::attribution::OpEnergy)> = attributions(devices)
        .flat_map(|a| a.ops.iter().map(move |o| (a.device, o)))
        .collect();
    let mut t = Table::new("ops", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("op_class", rows.iter().map(|r| r.1.op_class.label()))
        .u64("launches", rows.iter().map(|r| r.1.launches))
        .u64("busy_ns", rows.iter().map(|r| r.1.busy_ns))
        .estimate("dynamic", rows.iter().map(|r| &r.1.dynamic))
        .estimate("static", rows.iter().map(|r| &r.1.static_share));
    t
}

/// Per region path and device (the busy-time view).
fn regions(id: &RunId, devices: &[DeviceReport]) -> Table {
    let rows: Vec<(u32, &wattlens_instrument::attribution::RegionEnergy)> = attributions(devices)
        .flat_map(|a| a.regions.iter().map(move |r| (a.device, r)))
        .collect();
    let mut t = Table::new("regions", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("path", rows.iter().map(|r| r.1.path.as_str()))
        .u64("launches", rows.iter().map(|r| r.1.launches))
        .u64("busy_ns", rows.iter().map(|r| r.1.busy_ns))
        .estimate("dynamic", rows.iter().map(|r| &r.1.dynamic))
        .estimate("static", rows.iter().map(|r| &r.1.static_share));
    t
}

/// Per request (range instance) and device: the wall-window view.
fn requests(id: &RunId, devices: &[DeviceReport]) -> Table {
    let rows: Vec<(u32, &wattlens_instrument::attribution::RequestEnergy)> = attributions(devices)
        .flat_map(|a| a.requests.instances.iter().map(move |r| (a.device, r)))
        .collect();
    let mut t = Table::new("requests", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("path", rows.iter().map(|r| r.1.path.as_str()))
        .u64("span", rows.iter().map(|r| r.1.span))
        .u64("start_ns", rows.iter().map(|r| r.1.start_ns))
        .u64("end_ns", rows.iter().map(|r| r.1.end_ns))
        .opt_u64("tokens", rows.iter().map(|r| r.1.tokens))
        .u64("held_ns", rows.iter().map(|r| r.1.held_ns))
        .estimate("dynamic", rows.iter().map(|r| &r.1.dynamic))
        .estimate("idle", rows.iter().map(|r| &r.1.idle))
        .estimate("total", rows.iter().map(|r| &r.1.total));
    t
}

/// Per waste finding and device.
fn findings(id: &RunId, devices: &[DeviceReport]) -> Table {
    let rows: Vec<(u32, &wattlens_instrument::waste::Finding)> = devices
        .iter()
        .filter_map(|d| d.waste.as_ref())
        .flat_map(|w| w.findings.iter().map(move |f| (w.device, f)))
        .collect();
    let mut t = Table::new("findings", id, rows.len());
    t.u64("device", rows.iter().map(|r| u64::from(r.0)))
        .text("kind", rows.iter().map(|r| r.1.kind.label()))
        .text("what", rows.iter().map(|r| r.1.what.as_str()))
        .text("region", rows.iter().map(|r| r.1.region.as_str()))
        .text("site", rows.iter().map(|r| r.1.site.as_str()))
        .u64("occurrences", rows.iter().map(|r| r.1.occurrences))
        .u64("time_ns", rows.iter().map(|r| r.1.time_ns))
        .estimate("energy", rows.iter().map(|r| &r.1.energy))
        .text("fix", rows.iter().map(|r| r.1.fix.as_str()));
    t
}
