//! The command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// wattlens: where a GPU program's joules go, per kernel, per operator and per request.
#[derive(Debug, Parser)]
#[command(name = "wattlens", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the built-in workload, print energy per kernel and per op, and write the trace and a
    /// Perfetto file.
    Demo(DemoArgs),
    /// Run an unmodified program (PyTorch, a CUDA binary) with wattlens attached through CUPTI,
    /// then print the energy report of its kernels and NVTX ranges.
    Run(RunArgs),
    /// Print the energy report of a trace.
    Report(ReportArgs),
    /// Convert a trace for other tools.
    Export(ExportArgs),
    /// Compare variants with the op classes and kernels behind the difference: commands
    /// (`--variant fp16='python3 m.py --fp16'`), NVTX ranges of one program (`--ranges a,b --
    /// CMD`), or recorded runs (`fp16=a.wlt int8=b.wlt`); or the built-in kernel variants
    /// (`--builtin`, or nothing) with accuracy.
    Compare(CompareArgs),
    /// Fit the power sensors' profile of a real GPU (about 15 s; needs an NVIDIA GPU).
    Calibrate(CalibrateArgs),
    /// Check attribution on a real GPU: a mixed run against each kernel measured alone, and
    /// the sampler's cost (needs an NVIDIA GPU).
    #[command(hide = true)]
    Validate(ValidateArgs),
}

/// A kind of waste `wattlens demo` can plant in its GPU pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WasteSwitch {
    /// Recompute every earlier token at each decode step instead of using the KV cache.
    NoKvCache,
    /// Upload the weights again before every decode step.
    ReuploadWeights,
    /// An extra kernel per layer whose output is overwritten unread.
    DeadKernel,
    /// The pre-MLP LayerNorm run twice on the same input.
    DuplicateLayernorm,
    /// The prefill padded to the model's whole context (less the decode steps) instead of the
    /// longest prompt: the same prompts, with most of the prefill spent on padding.
    PaddingHeavy,
    /// A host synchronisation after every kernel.
    SyncEveryKernel,
}

/// Which variants `wattlens compare` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareSet {
    /// fp32, bf16 (tensor cores) and int8 (dp4a) matmul.
    Matmul,
    /// Unfused (three kernels) and fused (flash-style) causal attention.
    Attention,
    /// Both sets.
    All,
}

/// Arguments of `wattlens compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Recorded runs to compare as variants, each `NAME=TRACE.wlt` or `TRACE.wlt` (named by its
    /// file stem), `NAME=A.wlt,B.wlt` for several runs of one; the first is the baseline.
    #[arg(value_name = "RUNS")]
    pub runs: Vec<String>,
    /// A variant as a command, `NAME=CMD` (run by `sh -c`), once per variant: each runs under
    /// `wattlens run`, in interleaved rounds after a discarded warm-up, with a cool-down to
    /// idle power before every run. The first is the baseline.
    #[arg(long = "variant", value_name = "NAME=CMD")]
    pub variants: Vec<String>,
    /// Variants as NVTX ranges of one program (given after `--`): `--ranges fp16,int8 -- python3
    /// bench.py` compares the instances of the range `fp16` with those of `int8`.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub ranges: Vec<String>,
    /// The program whose ranges `--ranges` compares.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Measured runs of each command (`--variant`, `--ranges`).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeats: u32,
    /// Warm-up rounds run first and discarded.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub warmup: u32,
    /// Longest wait before each run for the GPU to return to its idle power, s (0: none).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub cooldown_s: u64,
    /// A regular expression matched against each run's standard output: the number its first
    /// group captures (or the whole match) is the variant's accuracy figure (perplexity, max
    /// error), reported beside its energy.
    #[arg(long, value_name = "REGEX")]
    pub metric: Option<String>,
    /// A regular expression naming kernels (`dequant|gemm`): each variant's energy per launch
    /// of the kernels it matches, and its ratio against the first variant's.
    #[arg(long, value_name = "REGEX")]
    pub kernel: Option<String>,
    /// Print the comparison as JSON (every variant, and every verdict against the first)
    /// instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Record the commands with kernel replay (`wattlens run --replay`), for per-kernel joules.
    #[arg(long)]
    pub replay: bool,
    /// Measure wattlens' built-in kernel variants (fp32, bf16 and int8 matmul; unfused and fused
    /// attention), as `wattlens compare` with nothing else does.
    #[arg(long)]
    pub builtin: bool,
    /// Which variants to measure.
    #[arg(long, value_enum, default_value = "all")]
    pub what: CompareSet,
    /// Matmul size n (an n×n by n×n product), a multiple of 128.
    #[arg(long, default_value_t = 4096, value_parser = parse_matmul_size)]
    pub size: usize,
    /// Batches per variant (each a confidence-interval sample).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub batches: u32,
    /// Length of each batch, ms (several energy-counter periods).
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u64).range(300..=60_000))]
    pub batch_ms: u64,
    /// Folder for the traces: compare.wlt and compare.json of the built-in variants, and
    /// `compare/NAME.rROUND.wlt` (with the command's output in `.out`) of each run of a command.
    #[arg(long, default_value = "wattlens-out")]
    pub out_dir: PathBuf,
    /// Seed of the simulated GPU and of the inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Use the simulated GPU even when a real one is present.
    #[arg(long, hide = true)]
    pub simulate: bool,
}

fn parse_matmul_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 128 && n % 128 == 0 && n <= 16_384 => Ok(n),
        _ => Err(format!(
            "{s} is not a matmul size this command runs; give a multiple of 128 from 128 to 16384"
        )),
    }
}

/// Arguments of `wattlens calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Folder for calibration.wlt and `profiles/<gpu>--<driver>.json`.
    #[arg(long, default_value = "wattlens-out")]
    pub out_dir: PathBuf,
}

/// Arguments of `wattlens validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Folder for the traces and validate.json.
    #[arg(long, default_value = "wattlens-out")]
    pub out_dir: PathBuf,
    /// Length of the sampler-cost run, s.
    #[arg(long, default_value_t = 60)]
    pub sampler_seconds: u64,
    /// Run only the sampler-cost part.
    #[arg(long)]
    pub sampler_only: bool,
}

/// Arguments of `wattlens demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for demo.wlt (the trace) and demo.perfetto.json.
    #[arg(long, default_value = "wattlens-out")]
    pub out_dir: PathBuf,
    /// Seed of the simulated GPU's sensor noise and timing.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Decode steps of the built-in transformer workload.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub steps: u32,
    /// Use the simulated GPU even when a real one is present.
    #[arg(long, hide = true)]
    pub simulate: bool,
    /// Plant waste in the GPU pipeline (comma-separated), for the waste detector to find.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub waste: Vec<WasteSwitch>,
    /// Extra LayerNorm runs that `--waste duplicate-layernorm` plants per layer and pass: an
    /// A/B check of that small waste raises it above the run-to-run noise of the sensors.
    #[arg(long, default_value_t = 1, hide = true, requires = "waste",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub duplicates: u32,
    /// Run the GPU pipeline's matmuls through cuBLAS instead of wattlens' own kernels.
    #[arg(long)]
    pub cublas: bool,
    /// Replay the first launch of each kernel signature alone for 0.4 s (kernel replay), so
    /// that kernels launched in lockstep get a power of their own; adds 0.4 s per signature.
    #[arg(long)]
    pub measure_alone: bool,
    /// Matmul kernel of the decode steps (passes under 128 rows) of wattlens' own kernels: the
    /// waste checks set `register` on both sides of an A/B so that the runs differ by their rows
    /// alone.
    #[arg(long, value_enum, default_value_t = DecodeMatmul::Tiled, hide = true)]
    pub decode_matmul: DecodeMatmul,
}

/// The matmul kernel of the GPU demo's decode steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeMatmul {
    /// 32×32 shared-memory tiles (the pipeline's choice for few rows).
    Tiled,
    /// The 128×128 register-tiled kernel that the longer passes use.
    Register,
}

/// Output formats of `wattlens report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables for a terminal.
    Table,
    /// One JSON document.
    Json,
    /// One CSV table, one row per signature and per op class.
    Csv,
}

/// The footprint factors a report converts GPU energy with (each also from an environment
/// variable or a config file; nothing is printed for a factor left unset).
#[derive(Debug, Clone, Default, Args)]
pub struct FootprintArgs {
    /// Carbon intensity of the electricity, g CO2e/kWh (or WATTLENS_CARBON_INTENSITY).
    #[arg(long, value_name = "G_PER_KWH")]
    pub carbon_intensity: Option<f64>,
    /// Power usage effectiveness of the facility, 1 or more (or WATTLENS_PUE).
    #[arg(long)]
    pub pue: Option<f64>,
    /// Water usage effectiveness, L/kWh of IT energy (or WATTLENS_WUE).
    #[arg(long, value_name = "L_PER_KWH")]
    pub wue: Option<f64>,
    /// A file of `carbon_intensity = …`, `pue = …`, `wue = …` lines (default:
    /// $XDG_CONFIG_HOME/wattlens/footprint.conf or ~/.config/wattlens/footprint.conf, if it
    /// exists).
    #[arg(long, value_name = "FILE")]
    pub footprint_config: Option<PathBuf>,
}

/// Arguments of `wattlens report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The trace file (.wlt); several (one per process) are merged per GPU.
    #[arg(required = true, num_args = 1..)]
    pub traces: Vec<PathBuf>,
    /// Output as JSON (same as --format json).
    #[arg(long, conflicts_with_all = ["csv", "format"])]
    pub json: bool,
    /// Output as CSV (same as --format csv).
    #[arg(long, conflicts_with = "format")]
    pub csv: bool,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Also write the HTML report to this file: one self-contained page with charts (power
    /// over time, energy per op class, kernel and request with CIs, regions, waste, and the
    /// measurement's quality) that opens offline in any browser.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Footprint factors.
    #[command(flatten)]
    pub footprint: FootprintArgs,
}

impl ReportArgs {
    /// The format chosen by --json, --csv or --format.
    pub fn chosen_format(&self) -> Format {
        match (self.json, self.csv, self.format) {
            (true, _, _) => Format::Json,
            (_, true, _) => Format::Csv,
            (_, _, Some(f)) => f,
            _ => Format::Table,
        }
    }
}

/// Arguments of `wattlens run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The trace. Each CUDA process writes OUTPUT's stem + `.[rankR.]pidP.wlt` beside it; when
    /// only one process used CUDA, its trace is renamed to OUTPUT.
    #[arg(short, long, default_value = "wattlens-run.wlt")]
    pub output: PathBuf,
    /// The libcupti to attach with (default: searched in LD_LIBRARY_PATH, $CUDA_HOME and
    /// /usr/local/cuda).
    #[arg(long)]
    pub cupti: Option<PathBuf>,
    /// The injection library (default: libwattlens_inject.so beside this binary).
    #[arg(long, hide = true)]
    pub inject_lib: Option<PathBuf>,
    /// Only record the traces; print no report.
    #[arg(long)]
    pub no_report: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Kernel replay: replay each heavy kernel signature alone for a burst, inside a
    /// checkpoint of device memory, so that its joules are measured on their own (slow: about
    /// 0.45 s a signature; the program's results do not change).
    #[arg(long)]
    pub replay: bool,
    /// The most time kernel replay may hold the program, seconds (default 30).
    #[arg(long, value_name = "SECONDS", requires = "replay")]
    pub replay_budget: Option<f64>,
    /// Light mode, for request and token energy: NVTX ranges and the power sensors only, no
    /// kernel, copy or memset records, so that the program runs at its own speed. Requests are
    /// priced from the energy counter over their windows; kernels and ops are not.
    #[arg(long, conflicts_with = "replay")]
    pub light: bool,
    /// Audit a PyTorch program's operations for waste proven from content: digests of what
    /// each operation read and wrote, taken on the device after every operation (slow: it
    /// waits for the device once or twice per operation). Finds recomputation, recomputed
    /// prefixes (decoding without a KV cache), uploads of content the device already held and
    /// writes that changed nothing. The audit's own work is not charged to the program.
    #[arg(long, conflicts_with_all = ["light", "replay"])]
    pub audit: bool,
    /// Footprint factors.
    #[command(flatten)]
    pub footprint: FootprintArgs,
    /// The command to run, and its arguments (after `--`).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Arguments of `wattlens export`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["perfetto", "parquet"])))]
pub struct ExportArgs {
    /// Write a Perfetto trace to `-o FILE` (open it at ui.perfetto.dev): Perfetto's protobuf
    /// format, or Chrome JSON when the output's name ends in `.json`. One trace at a time.
    #[arg(long)]
    pub perfetto: bool,
    /// Write Parquet tables under this folder: `spans`, `power`, `signatures`, `ops`,
    /// `regions`, `requests` and `findings`, one file per run (named for its trace file),
    /// every row with its run and host, for DuckDB, Spark or Trino across many runs.
    #[arg(long, value_name = "DIR")]
    pub parquet: Option<PathBuf>,
    /// The trace files (.wlt).
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Where to write the Perfetto export (`run.pftrace`, or `run.json` for JSON).
    #[arg(short, long, required_unless_present = "parquet")]
    pub output: Option<PathBuf>,
}
