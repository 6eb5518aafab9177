//! What the injected process was asked to do, read once from its environment, and where its
//! trace goes: the injection library's settings, in a crate of their own so that `wattlens run`
//! can refuse a bad one before the program starts without linking the library.

use std::path::PathBuf;
use std::time::Duration;

/// How uploads are hashed (`WATTLENS_DIGESTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// Not at all.
    Off,
    /// Whole up to the size a sampled digest reads anyway, from samples above (the default: a
    /// bounded cost).
    Bounded,
    /// Every byte: proofs for large uploads, at about 13 GiB/s of the program's thread.
    Full,
}

/// Environment variable naming the trace path prefix; `wattlens run` sets it. Without it the
/// library records nothing, so it never writes where nobody asked.
pub const ENV_OUTPUT: &str = "WATTLENS_OUTPUT";
/// Environment variable naming the libcupti to load (an absolute path).
pub const ENV_CUPTI: &str = "WATTLENS_CUPTI";
/// Environment variable: how often the trace is flushed to disk, ms.
pub const ENV_FLUSH_MS: &str = "WATTLENS_FLUSH_MS";
/// Environment variable: the size of each CUPTI activity buffer, KiB. Larger buffers mean
/// fewer buffer changes on the program's launching thread; smaller ones bound what a SIGKILL
/// loses (about one buffer of records).
pub const ENV_BUFFER_KIB: &str = "WATTLENS_BUFFER_KIB";
/// Environment variable: how long the power sensors are read after the program's last CUDA
/// work at exit, ms.
pub const ENV_TAIL_MS: &str = "WATTLENS_TAIL_MS";

/// Environment variable choosing which callbacks run (`all`, `nvtx`, `none`); for measuring
/// what each costs.
pub const ENV_HOOKS: &str = "WATTLENS_HOOKS";

/// Environment variable listing the activity records kept (comma-separated of kernel, memcpy,
/// memset, sync; all by default; `none` for no records at all, the light mode of
/// `wattlens run --light`); for measuring what each costs. `sync` (host waits) needs
/// callbacks: with `WATTLENS_HOOKS=none` the default leaves it out, and naming it is refused.
pub const ENV_KINDS: &str = "WATTLENS_KINDS";
/// Environment variable: `off` leaves the power sensors unread (a trace without energy), for
/// measuring what the sampler thread costs the program.
pub const ENV_POWER: &str = "WATTLENS_POWER";

/// Environment variable choosing which API's launch, copy and memset calls are tagged with
/// their NVTX range (`runtime`, `driver`, `both`); for measuring what each callback costs.
pub const ENV_LAUNCH_API: &str = "WATTLENS_LAUNCH_API";

/// Environment variable choosing how host-to-device copies are hashed (`bounded`, `full`,
/// `off`): whole up to 260 KiB and from samples above (the default), every byte, or not at all.
pub const ENV_DIGESTS: &str = "WATTLENS_DIGESTS";

/// Environment variable choosing which API's copy calls are hashed (`driver`, the default,
/// `runtime`, `both`); for measuring what each callback costs and which calls a program's
/// copies make.
pub const ENV_UPLOAD_API: &str = "WATTLENS_UPLOAD_API";

/// Environment variable turning kernel replay on (`on`; `off` by default): each heavy kernel
/// signature is replayed alone inside a checkpoint of device memory, so that its power is
/// measured on its own (the injection library's `replay` module).
pub const ENV_REPLAY: &str = "WATTLENS_REPLAY";
/// Environment variable: the most time kernel replay may hold the program in all, ms.
pub const ENV_REPLAY_BUDGET_MS: &str = "WATTLENS_REPLAY_BUDGET_MS";
/// Environment variable: how long each replay burst runs, ms.
pub const ENV_REPLAY_BURST_MS: &str = "WATTLENS_REPLAY_BURST_MS";
/// Default replay budget: about 60 signatures of 0.4 s with their checkpoints.
pub const DEFAULT_REPLAY_BUDGET_MS: u64 = 30_000;
/// Replay budgets accepted, ms (up to an hour).
pub const REPLAY_BUDGET_RANGE_MS: std::ops::RangeInclusive<u64> = 1..=3_600_000;
/// Default burst: four energy-counter periods, so that at least three whole counter windows
/// see the kernel alone.
pub const DEFAULT_REPLAY_BURST_MS: u64 = 400;
/// Bursts accepted, ms: at least two counter periods, at most ten seconds.
pub const REPLAY_BURST_RANGE_MS: std::ops::RangeInclusive<u64> = 200..=10_000;

/// What kernel replay may spend ([`ENV_REPLAY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySettings {
    /// The most time replays may hold the program in all.
    pub budget: Duration,
    /// How long each burst runs.
    pub burst: Duration,
}

/// The activity record kinds there are.
pub const ALL_KINDS: [&str; 4] = ["kernel", "memcpy", "memset", "sync"];

/// Which CUPTI callbacks the library subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooks {
    /// NVTX ranges, and launch/copy/memset calls tagged with their range (the default).
    All,
    /// NVTX ranges only: work is not tagged with its range.
    Nvtx,
    /// None: activity records only.
    None,
}

/// Which API's work-issuing calls get callbacks (a runtime call makes a driver call too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchApi {
    /// The runtime API's calls only.
    Runtime,
    /// The driver API's calls only.
    Driver,
    /// Both APIs' calls.
    Both,
}

/// Default flush period: at most this much recording is lost to a SIGKILL.
pub const DEFAULT_FLUSH_MS: u64 = 500;
/// Flush periods accepted, ms: often enough to bound what a SIGKILL loses, seldom enough not
/// to spin.
pub const FLUSH_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;
/// Tails accepted, ms.
pub const TAIL_RANGE_MS: std::ops::RangeInclusive<u64> = 0..=60_000;
/// Default activity buffer size, KiB: about 4,500 records, 0.14 s of a launch-bound PyTorch
/// loop.
pub const DEFAULT_BUFFER_KIB: u64 = 1024;
/// Smallest activity buffer size accepted, KiB: the smallest the runtime's buffer pool hands
/// out (`MIN_BUFFER_BYTES`; the injection library checks the two agree when it compiles).
pub const MIN_BUFFER_KIB: u64 = 64;
/// Largest activity buffer size accepted, KiB (256 MiB).
pub const MAX_BUFFER_KIB: u64 = 262_144;
/// Default tail: one energy-counter period (100 ms) and a margin, so the counter has an
/// update after the last work.
pub const DEFAULT_TAIL_MS: u64 = 150;

/// Why the environment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No output was chosen.
    #[error("{ENV_OUTPUT} is not set, so wattlens is not recording this process (run it under `wattlens run -- CMD`)")]
    NoOutput,
    /// A choice was not one of the known values.
    #[error("{name}: {value} is not one of its choices (WATTLENS_HOOKS: all, nvtx, none; WATTLENS_KINDS: kernel, memcpy, memset, sync, or none; WATTLENS_POWER and WATTLENS_REPLAY: on, off; WATTLENS_LAUNCH_API and WATTLENS_UPLOAD_API: runtime, driver, both; WATTLENS_DIGESTS: bounded, full, off); unset it or choose one")]
    BadChoice {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Host waits were asked for with every callback turned off, and they are timed by
    /// callbacks.
    #[error("{ENV_KINDS} names sync, but host waits are timed by callbacks and {ENV_HOOKS}=none turns them off; drop sync, or set {ENV_HOOKS} to nvtx or all")]
    SyncWithoutCallbacks,
    /// A number did not parse.
    #[error(
        "{name}={value} is not a whole number of {unit}; unset it or give one such as {example}"
    )]
    BadNumber {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// The unit the number is in.
        unit: &'static str,
        /// A valid value.
        example: u64,
    },
    /// A setting's value is not valid UTF-8.
    #[error("{name} is set to a value that is not valid UTF-8; unset it or give a plain value")]
    NotUnicode {
        /// The variable.
        name: String,
    },
    /// Kernel replay was asked for with the callbacks it needs turned off.
    #[error("{ENV_REPLAY}=on needs the launch callbacks, which {ENV_HOOKS}={hooks} turns off; unset {ENV_HOOKS} or set it to all")]
    ReplayWithoutCallbacks {
        /// The hooks setting.
        hooks: &'static str,
    },
    /// A number is outside the range its setting accepts.
    #[error("{name}={value} is outside {low}..={high} {unit}; unset it or give a value such as {example}")]
    OutOfRange {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: u64,
        /// Smallest accepted.
        low: u64,
        /// Largest accepted.
        high: u64,
        /// The unit.
        unit: &'static str,
        /// A valid value.
        example: u64,
    },
    /// The activity buffer size is outside what CUPTI can use well.
    #[error("{ENV_BUFFER_KIB}={value} is outside {MIN_BUFFER_KIB}..={MAX_BUFFER_KIB} KiB; unset it or give a size such as {DEFAULT_BUFFER_KIB}")]
    BufferOutOfRange {
        /// The value given, KiB.
        value: u64,
    },
}

/// The injected process's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The trace file of this process.
    pub trace_path: PathBuf,
    /// The libcupti to load, if named.
    pub cupti: Option<PathBuf>,
    /// Flush period.
    pub flush: Duration,
    /// Sensor tail read at exit.
    pub tail: Duration,
    /// Size of each CUPTI activity buffer, bytes.
    pub buffer_bytes: usize,
    /// Callbacks to subscribe to.
    pub hooks: Hooks,
    /// Which API's work-issuing calls are tagged with their range.
    pub launch_api: LaunchApi,
    /// Activity record kinds to keep.
    pub kinds: Vec<String>,
    /// Whether the power sensors are read.
    pub power: bool,
    /// How host-to-device copies are hashed (with [`Hooks::All`] only: it takes their calls'
    /// callbacks).
    pub digests: Digests,
    /// Which API's copy calls are hashed.
    pub upload_api: LaunchApi,
    /// Kernel replay, when on.
    pub replay: Option<ReplaySettings>,
}

impl Config {
    /// Read the settings through `var` (the process environment in production), for process
    /// `pid`.
    ///
    /// # Errors
    /// [`ConfigError`] when no output is named or a number is malformed.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, pid: u32) -> Result<Self, ConfigError> {
        let prefix = var(ENV_OUTPUT)
            .filter(|p| !p.is_empty())
            .ok_or(ConfigError::NoOutput)?;
        let buffer_kib = number(&var, ENV_BUFFER_KIB, "KiB", DEFAULT_BUFFER_KIB)?;
        if !(MIN_BUFFER_KIB..=MAX_BUFFER_KIB).contains(&buffer_kib) {
            return Err(ConfigError::BufferOutOfRange { value: buffer_kib });
        }
        let rank = ["RANK", "LOCAL_RANK"]
            .iter()
            .find_map(|k| var(k).and_then(|v| v.trim().parse::<u32>().ok()));
        let hooks = choice(
            &var,
            ENV_HOOKS,
            Hooks::All,
            &[
                ("all", Hooks::All),
                ("nvtx", Hooks::Nvtx),
                ("none", Hooks::None),
            ],
        )?;
        let apis = [
            ("driver", LaunchApi::Driver),
            ("runtime", LaunchApi::Runtime),
            ("both", LaunchApi::Both),
        ];
        let launch_api = choice(&var, ENV_LAUNCH_API, LaunchApi::Driver, &apis)?;
        // A runtime copy makes a driver copy call, which has the same correlation id: the
        // driver's callbacks see every upload (BENCHMARKS.md, content digests).
        let upload_api = choice(&var, ENV_UPLOAD_API, LaunchApi::Driver, &apis)?;
        let digests = choice(
            &var,
            ENV_DIGESTS,
            Digests::Bounded,
            &[
                ("bounded", Digests::Bounded),
                ("full", Digests::Full),
                ("off", Digests::Off),
            ],
        )?;
        Ok(Self {
            replay: replay_settings(&var, hooks)?,
            digests,
            upload_api,
            hooks,
            launch_api,
            kinds: activity_kinds(&var, hooks)?,
            power: choice(&var, ENV_POWER, true, &[("on", true), ("off", false)])?,
            trace_path: trace_path(&prefix, rank, pid),
            cupti: var(ENV_CUPTI).filter(|p| !p.is_empty()).map(PathBuf::from),
            flush: duration_in(&var, ENV_FLUSH_MS, FLUSH_RANGE_MS, DEFAULT_FLUSH_MS)?,
            tail: duration_in(&var, ENV_TAIL_MS, TAIL_RANGE_MS, DEFAULT_TAIL_MS)?,
            // In range, so at most 256 MiB: fits any usize of a 64-bit host.
            buffer_bytes: usize::try_from(buffer_kib << 10).unwrap_or(usize::MAX),
        })
    }
}

/// Check that every `WATTLENS_*` variable of `vars` (the process environment) is valid UTF-8:
/// [`Config::from_env`] reads them as text, and one that is not must not read as unset.
///
/// # Errors
/// [`ConfigError::NotUnicode`] naming the first that is not.
pub fn check_unicode(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let name = name.to_string_lossy();
        if name.starts_with("WATTLENS_") && value.to_str().is_none() {
            return Err(ConfigError::NotUnicode {
                name: name.into_owned(),
            });
        }
    }
    Ok(())
}

/// The whole number in setting `name` (in `unit`), or `default` when it is unset.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    unit: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| ConfigError::BadNumber {
            name,
            value,
            unit,
            example: default,
        })
}

/// The duration in setting `name` (milliseconds), which must lie in `range_ms`; `default_ms`
/// when it is unset. Every duration is bounded: an endless flush period or tail would leave the
/// trace unflushed or unclosed.
fn duration_in(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range_ms: std::ops::RangeInclusive<u64>,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    let value = number(var, name, "milliseconds", default_ms)?;
    if range_ms.contains(&value) {
        return Ok(Duration::from_millis(value));
    }
    Err(ConfigError::OutOfRange {
        name,
        value,
        low: *range_ms.start(),
        high: *range_ms.end(),
        unit: "milliseconds",
        example: default_ms,
    })
}

/// The activity kinds to record (`WATTLENS_KINDS`): all of them by default (without host
/// waits when there are no callbacks to see them), or none at all for ranges and sensors only.
fn activity_kinds(
    var: &impl Fn(&str) -> Option<String>,
    hooks: Hooks,
) -> Result<Vec<String>, ConfigError> {
    let kinds: Vec<String> = match var(ENV_KINDS) {
        None => ALL_KINDS
            .iter()
            .filter(|k| hooks != Hooks::None || **k != "sync")
            .map(|k| (*k).to_owned())
            .collect(),
        Some(list) if list.trim() == "none" => Vec::new(),
        Some(list) => list.split(',').map(|k| k.trim().to_owned()).collect(),
    };
    if let Some(bad) = kinds.iter().find(|k| !ALL_KINDS.contains(&k.as_str())) {
        return Err(ConfigError::BadChoice {
            name: ENV_KINDS,
            value: bad.clone(),
        });
    }
    if hooks == Hooks::None && kinds.iter().any(|k| k == "sync") {
        return Err(ConfigError::SyncWithoutCallbacks);
    }
    Ok(kinds)
}

/// Kernel replay's settings (`WATTLENS_REPLAY` and its budget and burst), or `None` when it
/// is off. Replay needs the launch callbacks.
fn replay_settings(
    var: &impl Fn(&str) -> Option<String>,
    hooks: Hooks,
) -> Result<Option<ReplaySettings>, ConfigError> {
    if !choice(var, ENV_REPLAY, false, &[("on", true), ("off", false)])? {
        return Ok(None);
    }
    if hooks != Hooks::All {
        return Err(ConfigError::ReplayWithoutCallbacks {
            hooks: if hooks == Hooks::Nvtx { "nvtx" } else { "none" },
        });
    }
    Ok(Some(ReplaySettings {
        budget: duration_in(
            var,
            ENV_REPLAY_BUDGET_MS,
            REPLAY_BUDGET_RANGE_MS,
            DEFAULT_REPLAY_BUDGET_MS,
        )?,
        burst: duration_in(
            var,
            ENV_REPLAY_BURST_MS,
            REPLAY_BURST_RANGE_MS,
            DEFAULT_REPLAY_BURST_MS,
        )?,
    }))
}

/// The value of variable `name` among `choices`; `default` when it is unset.
///
/// # Errors
/// [`ConfigError::BadChoice`] for a value not among them.
fn choice<T: Copy>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(n, _)| *n == value.trim())
        .map(|&(_, t)| t)
        .ok_or(ConfigError::BadChoice { name, value })
}

/// The trace of one process: `PREFIX.rankR.pidP.wlt`, or `PREFIX.pidP.wlt` without a rank.
/// The pid keeps processes of one rank (a re-exec, a spawned helper) apart.
pub fn trace_path(prefix: &str, rank: Option<u32>, pid: u32) -> PathBuf {
    match rank {
        Some(r) => PathBuf::from(format!("{prefix}.rank{r}.pid{pid}.wlt")),
        None => PathBuf::from(format!("{prefix}.pid{pid}.wlt")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn names_the_trace_after_rank_and_pid() {
        let c = Config::from_env(env(&[(ENV_OUTPUT, "/tmp/run"), ("RANK", "3")]), 42).unwrap();
        assert_eq!(c.trace_path, PathBuf::from("/tmp/run.rank3.pid42.wlt"));
        let c = Config::from_env(env(&[(ENV_OUTPUT, "out"), ("LOCAL_RANK", "1")]), 7).unwrap();
        assert_eq!(c.trace_path, PathBuf::from("out.rank1.pid7.wlt"));
        let c = Config::from_env(env(&[(ENV_OUTPUT, "out"), ("RANK", "x")]), 7).unwrap();
        assert_eq!(c.trace_path, PathBuf::from("out.pid7.wlt"));
        assert_eq!(c.flush, Duration::from_millis(DEFAULT_FLUSH_MS));
        assert_eq!(c.buffer_bytes, 1 << 20);
    }

    #[test]
    fn refuses_to_record_without_an_output_and_names_bad_numbers() {
        assert_eq!(
            Config::from_env(env(&[]), 1).unwrap_err(),
            ConfigError::NoOutput
        );
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_FLUSH_MS, "soon")]), 1).unwrap_err();
        assert!(e.to_string().contains("WATTLENS_FLUSH_MS=soon"), "{e}");
        assert!(e.to_string().contains("milliseconds"), "{e}");
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_BUFFER_KIB, "1M")]), 1).unwrap_err();
        assert!(
            e.to_string()
                .contains("WATTLENS_BUFFER_KIB=1M is not a whole number of KiB"),
            "{e}"
        );
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_BUFFER_KIB, "16")]), 1).unwrap_err();
        assert_eq!(e, ConfigError::BufferOutOfRange { value: 16 });
        assert!(e.to_string().contains("outside 64..=262144 KiB"), "{e}");
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_BUFFER_KIB, "8192")]), 1).unwrap();
        assert_eq!(c.buffer_bytes, 8 << 20);
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_KINDS, "kernel,graph")]), 1)
            .unwrap_err();
        assert!(e.to_string().contains("WATTLENS_KINDS: graph"), "{e}");
        let c =
            Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_KINDS, "kernel, sync")]), 1).unwrap();
        assert_eq!(c.kinds, vec!["kernel", "sync"]);
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_KINDS, " none ")]), 1).unwrap();
        assert!(c.kinds.is_empty(), "light mode keeps no activity record");
        assert!(c.power, "the sensors are read unless turned off");
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_POWER, "off")]), 1).unwrap();
        assert!(!c.power);
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_POWER, "no")]), 1).unwrap_err();
        assert!(e.to_string().contains("WATTLENS_POWER: no"), "{e}");
        assert_eq!(c.hooks, Hooks::All);
        assert_eq!(c.launch_api, LaunchApi::Driver);
        let c = Config::from_env(
            env(&[
                (ENV_OUTPUT, "o"),
                (ENV_LAUNCH_API, "both"),
                (ENV_HOOKS, "nvtx"),
            ]),
            1,
        )
        .unwrap();
        assert_eq!((c.launch_api, c.hooks), (LaunchApi::Both, Hooks::Nvtx));
        let e =
            Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_LAUNCH_API, "cuda")]), 1).unwrap_err();
        assert!(e.to_string().contains("WATTLENS_LAUNCH_API: cuda"), "{e}");
        assert_eq!(c.digests, Digests::Bounded);
        assert_eq!(c.upload_api, LaunchApi::Driver);
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_UPLOAD_API, "both")]), 1).unwrap();
        assert_eq!(c.upload_api, LaunchApi::Both);
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_DIGESTS, "full")]), 1).unwrap();
        assert_eq!(c.digests, Digests::Full);
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_DIGESTS, "all")]), 1).unwrap_err();
        assert!(e.to_string().contains("WATTLENS_DIGESTS: all"), "{e}");
    }

    #[test]
    fn durations_are_bounded_and_settings_that_are_not_text_are_named() {
        for (name, value) in [
            (ENV_FLUSH_MS, "18446744073709551615"),
            (ENV_TAIL_MS, "18446744073709551615"),
            (ENV_FLUSH_MS, "0"),
        ] {
            let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (name, value)]), 1).unwrap_err();
            assert!(
                matches!(e, ConfigError::OutOfRange { .. }) && e.to_string().contains(name),
                "{e}"
            );
        }
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_TAIL_MS, "0")]), 1).unwrap();
        assert_eq!(c.tail, Duration::ZERO);
        use std::os::unix::ffi::OsStringExt;
        let bad = std::ffi::OsString::from_vec(vec![b'o', 0xff]);
        let e = check_unicode(
            [
                ("PATH".into(), std::ffi::OsString::from_vec(vec![0xfe])),
                (ENV_OUTPUT.into(), bad),
            ]
            .into_iter(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "WATTLENS_OUTPUT is set to a value that is not valid UTF-8; unset it or give a plain value");
        assert!(check_unicode([(ENV_OUTPUT.into(), "o".into())].into_iter()).is_ok());
    }

    #[test]
    fn replay_is_off_unless_asked_for_and_its_numbers_are_bounded() {
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o")]), 1).unwrap();
        assert_eq!(c.replay, None);
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_REPLAY, "on")]), 1).unwrap();
        assert_eq!(
            c.replay,
            Some(ReplaySettings {
                budget: Duration::from_secs(30),
                burst: Duration::from_millis(400),
            })
        );
        let c = Config::from_env(
            env(&[
                (ENV_OUTPUT, "o"),
                (ENV_REPLAY, "on"),
                (ENV_REPLAY_BUDGET_MS, "5000"),
            ]),
            1,
        )
        .unwrap();
        assert_eq!(c.replay.unwrap().budget, Duration::from_secs(5));
        let e = Config::from_env(
            env(&[
                (ENV_OUTPUT, "o"),
                (ENV_REPLAY, "on"),
                (ENV_REPLAY_BURST_MS, "50"),
            ]),
            1,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("WATTLENS_REPLAY_BURST_MS=50 is outside 200..=10000 milliseconds"),
            "{e}"
        );
        let e = Config::from_env(
            env(&[(ENV_OUTPUT, "o"), (ENV_REPLAY, "on"), (ENV_HOOKS, "nvtx")]),
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs the launch callbacks"), "{e}");
        let e = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_REPLAY, "yes")]), 1).unwrap_err();
        assert!(e.to_string().contains("WATTLENS_REPLAY: yes"), "{e}");
    }

    #[test]
    fn host_waits_asked_for_without_callbacks_are_refused_and_not_defaulted() {
        let e = Config::from_env(
            env(&[
                (ENV_OUTPUT, "o"),
                (ENV_KINDS, "kernel,sync"),
                (ENV_HOOKS, "none"),
            ]),
            1,
        )
        .unwrap_err();
        assert_eq!(e, ConfigError::SyncWithoutCallbacks);
        assert!(e.to_string().contains("drop sync"), "{e}");
        let c = Config::from_env(env(&[(ENV_OUTPUT, "o"), (ENV_HOOKS, "none")]), 1).unwrap();
        assert_eq!(c.kinds, vec!["kernel", "memcpy", "memset"]);
        let c = Config::from_env(
            env(&[
                (ENV_OUTPUT, "o"),
                (ENV_KINDS, "kernel,sync"),
                (ENV_HOOKS, "nvtx"),
            ]),
            1,
        )
        .unwrap();
        assert_eq!(c.kinds, vec!["kernel", "sync"]);
    }
}
