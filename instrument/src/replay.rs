//! Replay of a captured sensor log (the CSV format of `data/h200-sensor-2026-11-22/README.md`),
//! so the analysis runs on real sensor data without a GPU.

use std::path::{Path, PathBuf};

use crate::power::RecordedSource;
use crate::sensor_profile::SensorProfile;
use crate::trace::{DeviceInfo, PowerReading, RunMeta, Span, SpanKind, Trace};

/// Why a capture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A capture file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A row does not have the documented columns.
    #[error("{}:{line}: {reason}; the capture must use the columns documented in its README", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A captured run: the phases the capture program ran, and the sensor readings.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The capture as a trace: one region span per phase and every reading, not simulated.
    pub trace: Trace,
}

impl Capture {
    /// Load `samples.csv`, `poll.csv` and `phases.csv` from `dir`.
    ///
    /// # Errors
    /// [`ReplayError`] naming the file and line of the first problem.
    pub fn load(dir: &Path) -> Result<Self, ReplayError> {
        let meta = RunMeta {
            tool_version: concat!("wattlens-instrument ", env!("CARGO_PKG_VERSION")).to_owned(),
            simulated: false,
            host: "replay".to_owned(),
            command: vec!["replay".to_owned(), dir.display().to_string()],
            start_unix_ns: 0,
            driver: None,
            devices: vec![DeviceInfo {
                index: 0,
                name: "captured GPU (replay)".to_owned(),
                uuid: String::new(),
                sm_count: 0,
                power_limit_mw: 0,
            }],
            sensor_profile: SensorProfile::h200_2026_11_22(),
        };
        let mut trace = Trace::new(meta);
        for row in rows(&dir.join("samples.csv"), 2)? {
            let (ts_us, mw) = (row[0], row[1]);
            trace.power.push(PowerReading::Sample {
                device: 0,
                ts_ns: ts_us * 1000,
                raw_ts_us: ts_us,
                power_mw: clamp32(mw),
            });
        }
        for row in rows(&dir.join("poll.csv"), 4)? {
            let (ts_ns, read_ns) = (row[0] * 1000, clamp32(row[3].saturating_mul(1000)));
            trace.power.push(PowerReading::Energy {
                device: 0,
                ts_ns,
                read_ns,
                energy_mj: row[1],
            });
            trace.power.push(PowerReading::Instant {
                device: 0,
                ts_ns,
                read_ns,
                power_mw: clamp32(row[2]),
            });
        }
        trace.power.sort_by_key(PowerReading::ts_ns);
        let phases_path = dir.join("phases.csv");
        let text = read(&phases_path)?;
        for (i, line) in text
            .lines()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split(',').collect();
            let bad = |reason: String| ReplayError::BadRow {
                path: phases_path.clone(),
                line: i + 1,
                reason,
            };
            if cols.len() != 5 {
                return Err(bad(format!("expected 5 columns, found {}", cols.len())));
            }
            let start_us: u64 = cols[0]
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad start time {:?}", cols[0])))?;
            let end_us: u64 = cols[1]
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad end time {:?}", cols[1])))?;
            if end_us < start_us {
                return Err(bad("the phase ends before it starts".to_owned()));
            }
            let name = trace.strings.id(cols[2].trim());
            trace.spans.push(Span::new(
                trace.spans.len() as u64,
                SpanKind::Region { depth: 0 },
                (0, 0),
                name,
                (start_us * 1000, end_us * 1000),
            ));
        }
        trace.meta.start_unix_ns = trace.power.first().map(PowerReading::ts_ns).unwrap_or(0);
        Ok(Self { trace })
    }

    /// A power source that plays the capture's readings back as their time comes.
    pub fn source(&self) -> RecordedSource {
        RecordedSource::new(
            self.trace.meta.devices.clone(),
            self.trace.meta.sensor_profile.clone(),
            false,
            self.trace.power.clone(),
        )
    }
}

fn read(path: &Path) -> Result<String, ReplayError> {
    std::fs::read_to_string(path).map_err(|source| ReplayError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Parse a CSV of unsigned integers with a header line and exactly `columns` columns.
fn rows(path: &Path, columns: usize) -> Result<Vec<Vec<u64>>, ReplayError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |reason: String| ReplayError::BadRow {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let row = line
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{c:?} is not a whole number")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        if row.len() != columns {
            return Err(bad(format!(
                "expected {columns} columns, found {}",
                row.len()
            )));
        }
        out.push(row);
    }
    Ok(out)
}

fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
