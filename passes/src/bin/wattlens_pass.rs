//! `wattlens-pass`: the LLVM pass as a command for clang → wattlens-pass → llc pipelines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wattlens_instrument::Manifest;
use wattlens_passes::{
    analyze_file, instrument_host_file, manifest_of, tag_file, KernelReport, PassError,
};

#[derive(Parser)]
#[command(
    name = "wattlens-pass",
    version,
    about = "wattlens' LLVM pass: kernel facts from device IR, region and launch-site instrumentation of host IR"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Derive kernel facts from NVPTX device IR and write them as a JSON manifest.
    Analyze {
        /// Device IR (.ll or .bc) from clang --cuda-device-only.
        input: PathBuf,
        /// Where to write the manifest.
        #[arg(long)]
        manifest: PathBuf,
        /// Also print the structural evidence behind each class.
        #[arg(long)]
        explain: bool,
    },
    /// Attach !wattlens.op, !wattlens.access and !wattlens.cost to each kernel.
    Tag {
        /// Device IR (.ll or .bc).
        input: PathBuf,
        /// Tagged IR (.bc writes bitcode, anything else text).
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the manifest here.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Insert region push/pop and launch-site calls into host IR.
    InstrumentHost {
        /// Host IR (.ll or .bc) from clang -S -emit-llvm (add -g for file:line sites).
        input: PathBuf,
        /// Instrumented IR.
        #[arg(short, long)]
        output: PathBuf,
        /// Pattern file: one `GLOB [REGION]` per line wraps matching functions in a region.
        #[arg(long)]
        regions: Option<PathBuf>,
        /// Also write the manifest (launch sites, regions) here.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), PassError> {
    std::fs::write(path, manifest.to_json()).map_err(|e| PassError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn print_reports(reports: &[KernelReport], explain: bool) {
    for r in reports {
        let f = &r.facts;
        let modes: Vec<&str> = f.arg_access.iter().map(|m| m.label()).collect();
        let how = if r.annotated.is_some() {
            "annotated"
        } else {
            "structure"
        };
        println!(
            "{}: {} ({how}); args [{}]",
            f.name,
            f.op_class.label(),
            modes.join(", ")
        );
        if let Some(c) = &f.cost {
            println!(
                "  per thread: {} FLOP, {} global bytes",
                c.flops_per_thread, c.global_bytes_per_thread
            );
        }
        for note in &r.clamped {
            println!("  note: {note}");
        }
        for field in &f.fields {
            println!(
                "  arg {} field +{}: {}",
                field.arg,
                field.offset_bytes,
                field.mode.label()
            );
        }
        if f.writes_outside_args {
            println!("  stores through pointers of unknown origin: buffers outside the arguments may change");
        }
        if explain {
            println!("  evidence: {:?} -> {}", r.features, r.structural.label());
        }
    }
}

fn run(cli: Cli) -> Result<(), PassError> {
    match cli.command {
        Command::Analyze {
            input,
            manifest,
            explain,
        } => {
            let reports = analyze_file(&input)?;
            print_reports(&reports, explain);
            write_manifest(&manifest, &manifest_of(&reports))
        }
        Command::Tag {
            input,
            output,
            manifest,
        } => {
            let reports = tag_file(&input, &output)?;
            match manifest {
                Some(m) => write_manifest(&m, &manifest_of(&reports)),
                None => Ok(()),
            }
        }
        Command::InstrumentHost {
            input,
            output,
            regions,
            manifest,
        } => {
            let m = instrument_host_file(&input, &output, regions.as_deref())?;
            eprintln!(
                "wattlens-pass: {} launch site(s), {} region function(s) instrumented",
                m.sites.len(),
                m.regions.len()
            );
            for (f, why) in &m.skipped {
                eprintln!("wattlens-pass: {f} left as it was: {why}");
            }
            match manifest {
                Some(path) => write_manifest(&path, &m),
                None => Ok(()),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wattlens-pass: {e}");
            let usage = matches!(
                e,
                PassError::Load { .. }
                    | PassError::Input { .. }
                    | PassError::InvalidInput { .. }
                    | PassError::Target { .. }
                    | PassError::Annotation { .. }
                    | PassError::Patterns { .. }
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
