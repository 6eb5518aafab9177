//! Compile the CUDA C sources to PTX with no CUDA toolkit: clang-19 to NVPTX IR, the wattlens
//! pass (kernel facts and `!wattlens.*` tags), then llc-19. The kernel-facts manifest of every
//! source goes to `OUT_DIR/manifest.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wattlens_instrument::Manifest;

/// Sources: (name, path relative to this crate).
const SOURCES: &[(&str, &str)] = &[
    ("calibration", "cuda/calibration.cu"),
    ("runtime_checks", "cuda/runtime_checks.cu"),
    ("ops", "cuda/ops.cu"),
    // The pass's hard fixtures, built so the GPU check can confirm their access modes.
    ("pass_fixtures", "../passes/tests/fixtures/cuda/hard.cu"),
];

/// Run a tool; on failure stop the build with one clear message.
fn run(cmd: &mut Command, what: &str) {
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{what} failed ({status}); see the messages above")),
        Err(e) => fail(&format!(
            "{what} could not be started ({e}); run `bash scripts/setup-debian.sh` to install clang-19 and llvm-19"
        )),
    }
}

fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    std::process::exit(1)
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let mut manifest = Manifest::new();
    for (name, src) in SOURCES {
        let src = Path::new(src);
        println!("cargo::rerun-if-changed={}", src.display());
        // sm_90 is the main build; sm_80 the portable one (facts are the same, so the manifest
        // comes from the first).
        for (arch, suffix) in [("sm_90", ""), ("sm_80", "_sm80")] {
            let ll = out.join(format!("{name}{suffix}.ll"));
            let tagged = out.join(format!("{name}{suffix}.tagged.ll"));
            let ptx = out.join(format!("{name}{suffix}.ptx"));
            run(
                Command::new("clang-19")
                    .args([
                        "-x",
                        "cuda",
                        "--cuda-device-only",
                        "-nocudainc",
                        "-nocudalib",
                    ])
                    .arg(format!("--cuda-gpu-arch={arch}"))
                    .args(["-O3", "-S", "-emit-llvm", "-fno-discard-value-names"])
                    .args(["-Xclang", "-target-feature", "-Xclang", "+ptx80"])
                    .arg(src)
                    .arg("-o")
                    .arg(&ll),
                "clang-19",
            );
            match wattlens_passes::tag_file(&ll, &tagged) {
                Ok(reports) if suffix.is_empty() => {
                    manifest.merge(wattlens_passes::manifest_of(&reports))
                }
                Ok(_) => {}
                Err(e) => fail(&format!("wattlens-pass on {}: {e}", src.display())),
            }
            run(
                Command::new("llc-19")
                    .args(["-march=nvptx64", "-mattr=+ptx80"])
                    .arg(format!("-mcpu={arch}"))
                    .arg(&tagged)
                    .arg("-o")
                    .arg(&ptx),
                "llc-19",
            );
        }
    }
    if let Err(e) = std::fs::write(out.join("manifest.json"), manifest.to_json()) {
        fail(&format!("cannot write the kernel manifest: {e}"));
    }
    host_demo(&out);
}

/// The pass's host fixture, a C program driving the driver API through dlopen: compiled with
/// clang-19, instrumented by the pass (regions, launch sites), compiled by llc-19 and archived
/// for the GPU end-to-end test.
fn host_demo(out: &Path) {
    let src = Path::new("../passes/tests/fixtures/host/launch_demo.c");
    let patterns = Path::new("../passes/tests/fixtures/host/regions.txt");
    println!("cargo::rerun-if-changed={}", src.display());
    println!("cargo::rerun-if-changed={}", patterns.display());
    let ll = out.join("launch_demo.ll");
    let inst = out.join("launch_demo.inst.ll");
    let obj = out.join("launch_demo.o");
    let lib = out.join("liblaunch_demo.a");
    run(
        Command::new("clang-19")
            .args([
                "-g",
                "-O1",
                "-Xclang",
                "-disable-llvm-passes",
                "-S",
                "-emit-llvm",
                "-fPIC",
            ])
            .arg(src)
            .arg("-o")
            .arg(&ll),
        "clang-19",
    );
    match wattlens_passes::instrument_host_file(&ll, &inst, Some(patterns)) {
        Ok(m) => {
            if let Err(e) = std::fs::write(out.join("host_manifest.json"), m.to_json()) {
                fail(&format!("cannot write the host manifest: {e}"));
            }
        }
        Err(e) => fail(&format!(
            "wattlens-pass instrument-host on {}: {e}",
            src.display()
        )),
    }
    run(
        Command::new("llc-19")
            .args(["-O2", "-filetype=obj", "-relocation-model=pic"])
            .arg(&inst)
            .arg("-o")
            .arg(&obj),
        "llc-19",
    );
    let _ = std::fs::remove_file(&lib);
    run(
        Command::new("llvm-ar-19").arg("crs").arg(&lib).arg(&obj),
        "llvm-ar-19",
    );
    println!("cargo::rustc-link-search=native={}", out.display());
}
