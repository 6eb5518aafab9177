//! The writer thread: every flush period (or when woken) it takes what the callbacks queued,
//! maps CUPTI times onto the trace clock, drains the power samplers, and pushes it all to the
//! trace file; at exit it reads the sensors' tail and closes the trace.

use std::collections::HashMap;
use std::ffi::c_int;
use std::fs::File;
use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wattlens_instrument::clock::{Clock, HostClock};
use wattlens_instrument::power::nvml::{
    open_nvml, real_power_limits_mw, DeviceSelection, DEFAULT_CPU_BUDGET, REPLAY_CPU_BUDGET,
};
use wattlens_instrument::power::Sampler;
use wattlens_instrument::sensor_profile::{profile_for, user_profile_dir};
use wattlens_instrument::trace::{ClockAlignment, DeviceInfo, LaunchShape, RunMeta};
use wattlens_instrument::{Interval, SensorProfile, TraceWriter};
use wattlens_runtime::internal::clock_fit::ClockPoint;
use wattlens_runtime::internal::cuda::cupti_records::CuptiRecord;

use crate::collect::{CallInfo, Collector};
use crate::config::Config;
use crate::hooks;
use crate::nvtx_ranges::{MARK_TRACK, START_END_TRACK};
use crate::regions::{PathSnapshot, Paths};
use crate::signals;
use crate::state::{lock, Pending, Shared};
use crate::uploads::Upload;

/// How long exit waits for the writer to close the trace.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The running writer: how to stop it and learn that it stopped.
struct Running {
    stop: Arc<AtomicBool>,
    done: Mutex<Option<Receiver<()>>>,
}

static RUNNING: OnceLock<Running> = OnceLock::new();

/// Start the writer thread for `config`, woken through `wake_fd`.
///
/// # Errors
/// [`crate::InjectError::Os`] when the thread cannot be started.
pub(crate) fn start(
    config: Config,
    shared: &'static Shared,
    wake_fd: c_int,
    start_unix_ns: u64,
) -> Result<(), crate::InjectError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let writer = Writer {
        config,
        shared,
        start_unix_ns,
        collector: None,
        samplers: Vec::new(),
        devices: Vec::new(),
        correlations: HashMap::new(),
        uploads: HashMap::new(),
        spares: Vec::new(),
        profile: SensorProfile::default(),
        folded: 0,
        dropped: 0,
        failed: false,
        cost_mark: (crate::cost::totals(), shared.clock.now_ns()),
    };
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("wattlens-writer".into())
        .spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                writer.run(wake_fd, &flag);
            }));
            let _ = tx.send(());
        })
        .map_err(|e| crate::InjectError::Os(format!("cannot start the writer thread: {e}")))?;
    let _ = RUNNING.set(Running {
        stop,
        done: Mutex::new(Some(rx)),
    });
    Ok(())
}

/// Stop the writer and wait (bounded) for it to close the trace; called at exit.
pub(crate) fn stop() {
    let Some(r) = RUNNING.get() else { return };
    r.stop.store(true, Ordering::SeqCst);
    signals::wake();
    if let Some(rx) = lock(&r.done).take() {
        if rx.recv_timeout(EXIT_WAIT).is_err() {
            crate::log(
                "the trace was not closed in time at exit; what was flushed before is readable",
            );
        }
    }
}

struct Writer {
    config: Config,
    shared: &'static Shared,
    start_unix_ns: u64,
    collector: Option<Collector<BufWriter<File>>>,
    /// (CUDA ordinal, its sampler).
    samplers: Vec<(u32, Sampler)>,
    /// Devices of the trace's metadata, by CUDA ordinal.
    devices: Vec<DeviceInfo>,
    /// The NVTX path id of API calls made inside a range, by correlation id.
    correlations: HashMap<u32, u32>,
    /// Hashed uploads whose copy record has not come yet, by correlation id.
    uploads: HashMap<u32, Upload>,
    /// One emptied buffer per program thread, swapped with its buffer at each cycle.
    spares: Vec<Pending>,
    /// The sensor profile of the recorded GPU.
    profile: SensorProfile,
    /// Range pushes folded into one entry once the path table was full.
    folded: u64,
    /// Records the threads left out because their queues were full (the output stalled).
    dropped: u64,
    failed: bool,
    /// The callbacks' cost sums when last recorded, and when (trace clock, ns).
    cost_mark: (crate::cost::Totals, u64),
}

impl Writer {
    fn run(mut self, wake_fd: c_int, stop: &AtomicBool) {
        signals::block_in_this_thread();
        loop {
            let (generation, forced) = signals::requested();
            let stopping = stop.load(Ordering::SeqCst);
            self.cycle(forced || stopping);
            signals::flushed(generation);
            if stopping {
                self.finish();
                return;
            }
            wait(wake_fd, self.config.flush);
        }
    }

    fn fail(&mut self, what: impl std::fmt::Display) {
        crate::log(format!(
            "cannot write the trace {}: {what}; recording stops here, the program goes on",
            self.config.trace_path.display()
        ));
        self.collector = None;
        self.failed = true;
    }

    fn cycle(&mut self, forced: bool) {
        let new_devices = std::mem::take(&mut *lock(&self.shared.new_devices));
        hooks::flush(forced);
        let buffers = std::mem::take(&mut *lock(&self.shared.buffers));
        if self.collector.is_none()
            && !self.failed
            && (!buffers.is_empty() || !new_devices.is_empty())
        {
            self.create();
        }
        if self.config.power {
            for d in new_devices {
                self.start_sampler(d);
            }
        }
        let Some(c) = self.collector.as_mut() else {
            // Nothing will record them (the trace could not be written): free CUPTI's buffers
            // and the threads' queues.
            drop(hooks::read_buffers(buffers));
            drop(self.shared.take_pending(&mut self.spares));
            return;
        };
        let clock = &self.shared.clock;
        let before = clock.now_ns();
        if let Some(foreign_ns) = hooks::timestamp_ns() {
            let after = clock.now_ns();
            c.calibrate(ClockPoint {
                foreign_ns,
                trace_ns: before + (after - before) / 2,
                half_width_ns: (after - before).div_ceil(2),
            });
        }
        let records = hooks::read_buffers(buffers);
        // After the flush: every record delivered was launched before it, so the range its
        // launch was made in is already in the threads' buffers.
        let pending = self.shared.take_pending(&mut self.spares);
        self.dropped += pending.dropped;
        remember(&mut self.correlations, pending.correlations.iter().copied());
        remember(
            &mut self.uploads,
            pending.uploads.iter().map(|u| (u.correlation, *u)),
        );
        // The paths this cycle writes, copied out under the table's lock, which is then
        // released: a program thread pushing a new range name never waits on our disk I/O.
        let ids = records
            .iter()
            .filter_map(|r| match r {
                CuptiRecord::Work { activity, .. } => {
                    self.correlations.get(&activity.correlation_id).copied()
                }
                CuptiRecord::External { .. } => None,
            })
            .chain(
                [&pending.closed, &pending.unnested, &pending.marks]
                    .into_iter()
                    .flatten()
                    .map(|c| c.path),
            );
        let (paths, folded) = self.shared.paths_for(ids);
        self.folded = folded;
        let now_ns = clock.now_ns();
        let mut calls = Calls {
            regions: &self.correlations,
            paths: &paths,
            uploads: &mut self.uploads,
        };
        let mut result = c.records(records, now_ns, &mut calls);
        if result.is_ok() {
            result = c.replays(pending.replays);
        }
        for (closed, track) in [
            (&pending.closed, 0),
            (&pending.unnested, START_END_TRACK),
            (&pending.marks, MARK_TRACK),
        ] {
            if result.is_ok() {
                result = c.regions(closed, &paths, track);
            }
        }
        if result.is_ok() {
            result = c.syncs(&pending.syncs);
        }
        let cost = crate::cost::totals();
        let spent = cost.since(self.cost_mark.0);
        if result.is_ok() && spent.calls > 0 {
            result = c.callback_cost(
                Interval::new(self.cost_mark.1, now_ns),
                spent.calls,
                spent.host_ns,
            );
        }
        self.cost_mark = (cost, now_ns);
        let mut readings = Vec::new();
        for (device, sampler) in &self.samplers {
            readings.clear();
            sampler.drain(&mut readings);
            if result.is_ok() {
                result = c.power(*device, &readings);
            }
        }
        if let Err(e) = result.and_then(|()| c.flush()) {
            self.fail(e);
        }
        crate::replay::refresh();
    }

    fn create(&mut self) {
        self.devices = enumerate_devices();
        if self.devices.is_empty() {
            // The trace's spans must name a device of its metadata.
            self.devices.push(DeviceInfo {
                name: "unknown (CUDA could not list its devices)".into(),
                ..DeviceInfo::default()
            });
        }
        // No dynamic power is reported above what a board can draw.
        let uuids: Vec<String> = self.devices.iter().map(|d| d.uuid.clone()).collect();
        for (d, limit) in self.devices.iter_mut().zip(real_power_limits_mw(&uuids)) {
            d.power_limit_mw = limit.unwrap_or(0);
        }
        let driver = wattlens_runtime::internal::cuda::driver_version();
        self.profile = profile_for(
            &self.devices[0].name,
            driver.as_deref(),
            user_profile_dir(|k| std::env::var(k).ok()).as_deref(),
        );
        let meta = RunMeta {
            tool_version: concat!("wattlens-inject ", env!("CARGO_PKG_VERSION")).to_owned(),
            simulated: false,
            host: RunMeta::this_host(),
            command: command_line(),
            start_unix_ns: self.start_unix_ns,
            driver,
            devices: self.devices.clone(),
            sensor_profile: self.profile.clone(),
        };
        match TraceWriter::create(&self.config.trace_path, &meta) {
            Ok(w) => self.collector = Some(Collector::new(w)),
            Err(e) => self.fail(e),
        }
    }

    fn start_sampler(&mut self, device: u32) {
        if self.samplers.iter().any(|(d, _)| *d == device) {
            return;
        }
        let Some(info) = self.devices.iter().find(|d| d.index == device) else {
            return;
        };
        let clock: Arc<HostClock> = self.shared.clock.clone();
        // Kernel replay wants whole counter windows inside each burst: the counter is read at
        // every update then.
        let budget = if self.config.replay.is_some() {
            REPLAY_CPU_BUDGET
        } else {
            DEFAULT_CPU_BUDGET
        };
        let started = open_nvml(
            &DeviceSelection::Uuids(vec![info.uuid.clone()]),
            clock.clone(),
            self.profile.clone(),
            budget,
        )
        .and_then(|source| Sampler::start(source, clock));
        match started {
            Ok(s) => self.samplers.push((device, s)),
            Err(e) => crate::log(format!(
                "cannot read the power of GPU {device} ({e}); its kernels are recorded without energy"
            )),
        }
    }

    fn finish(&mut self) {
        std::thread::sleep(self.config.tail);
        self.cycle(true);
        // Read before the samplers stop, so that their threads are counted.
        let threads = crate::threads_cpu::by_name();
        let mut alignments: Vec<ClockAlignment> = Vec::new();
        let mut tail = Vec::new();
        for (device, sampler) in self.samplers.drain(..) {
            let (readings, report) = sampler.stop();
            alignments.extend(report.alignments);
            tail.push((device, readings));
        }
        let Some(mut c) = self.collector.take() else {
            return;
        };
        for (device, readings) in &tail {
            if let Err(e) = c.power(*device, readings) {
                self.fail(e);
                return;
            }
        }
        if let Err(e) = c.replay_notes(&crate::replay::notes()) {
            self.fail(e);
            return;
        }
        let counts = c.counts();
        match c.finish(&alignments) {
            Ok(_) => crate::log(format!(
                "trace written to {}: {} kernels ({} launched in an NVTX range), {} copies ({} uploads hashed in {:.1} ms), {} memsets, {} NVTX ranges, {} marks, {} power readings; its callbacks took {:.1} ms of the program's threads in {} calls{}",
                self.config.trace_path.display(),
                counts.kernels,
                counts.kernels_in_ranges,
                counts.copies,
                counts.hashed_uploads,
                counts.hashing_ns as f64 / 1e6,
                counts.memsets,
                counts.regions,
                counts.marks,
                counts.readings,
                counts.callback_ns as f64 / 1e6,
                counts.callbacks,
                if self.config.replay.is_some() {
                    format!(
                        "; {} kernel replays held the program {:.1} s",
                        counts.replays,
                        counts.replay_held_ns as f64 * 1e-9
                    )
                } else {
                    String::new()
                }
            )),
            Err(e) => self.fail(e),
        }
        if self.dropped > 0 {
            crate::log(format!(
                "{} records were left out while the trace's output stalled (each thread queues at most {} of a kind)",
                self.dropped,
                crate::state::MAX_PENDING
            ));
        }
        if self.folded > 0 {
            crate::log(format!(
                "{} NVTX range pushes with new names came after {} distinct range paths and were recorded as `{}`",
                self.folded,
                crate::regions::MAX_PATHS,
                crate::regions::FOLDED
            ));
        }
        if !threads.is_empty() {
            crate::log(crate::threads_cpu::summary(&threads, 3));
        }
    }
}

/// Correlation ids remembered at most; the oldest half is dropped beyond it (an API call
/// CUPTI reports no work for, such as a runtime call's inner driver call, stays otherwise).
const MAX_CORRELATIONS: usize = 400_000;

/// Add `pairs` to `map`, dropping the oldest ids when it grows past [`MAX_CORRELATIONS`].
/// Region ids are kept, not consumed: one graph launch reports many kernels.
fn remember<V>(map: &mut HashMap<u32, V>, pairs: impl Iterator<Item = (u32, V)>) {
    map.extend(pairs);
    if map.len() > MAX_CORRELATIONS {
        if let Some(newest) = map.keys().max().copied() {
            let keep_from = newest.saturating_sub((MAX_CORRELATIONS / 2) as u32);
            map.retain(|&c, _| c >= keep_from);
        }
    }
}

/// What the callbacks recorded, as the collector looks it up by correlation id.
struct Calls<'a> {
    regions: &'a HashMap<u32, u32>,
    paths: &'a PathSnapshot,
    uploads: &'a mut HashMap<u32, Upload>,
}

impl CallInfo for Calls<'_> {
    fn region(&mut self, correlation: u32) -> Option<std::sync::Arc<str>> {
        let path = *self.regions.get(&correlation)?;
        self.paths.get(path).map(|(_, path)| path)
    }

    /// Taken: one copy record per upload call.
    fn upload(&mut self, correlation: u32) -> Option<Upload> {
        self.uploads.remove(&correlation)
    }

    fn work(&mut self, device: u32, name: &str, shape: Option<LaunchShape>, busy_ns: u64) {
        crate::replay::observe(device, name, shape, busy_ns);
    }
}

/// Sleep until woken through `fd` or `period` passes, then empty the pipe.
fn wait(fd: c_int, period: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(period.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) };
    let mut buf = [0u8; 64];
    // SAFETY: reads into a valid buffer from our non-blocking pipe until it is empty.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Every CUDA device of the process, indexed by CUDA ordinal (read without creating a
/// context).
fn enumerate_devices() -> Vec<DeviceInfo> {
    use cudarc::driver::{result::device, sys};
    // SAFETY: only probes for the library by name (it is loaded: CUDA called us).
    if !unsafe { sys::is_culib_present() } {
        return Vec::new();
    }
    let count = device::get_count().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let dev = device::get(i).ok()?;
            let name = device::get_name(dev).unwrap_or_default();
            let uuid = device::get_uuid(dev)
                .map(|u| wattlens_runtime::internal::cuda::format_uuid(&u.bytes))
                .unwrap_or_default();
            // SAFETY: a valid device handle and attribute.
            let sms = unsafe {
                device::get_attribute(
                    dev,
                    sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                )
            }
            .unwrap_or(0);
            Some(DeviceInfo {
                index: u32::try_from(i).ok()?,
                name,
                uuid,
                sm_count: u32::try_from(sms).unwrap_or(0),
                power_limit_mw: 0,
            })
        })
        .collect()
}

fn command_line() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
