//! Compile the CUDA C sources in `cuda/` to PTX with clang-19 and llc-19 (no CUDA toolkit).

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: &[&str] = &["calibration", "runtime_checks"];

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
    for name in SOURCES {
        let src = Path::new("cuda").join(format!("{name}.cu"));
        println!("cargo::rerun-if-changed={}", src.display());
        let ll = out.join(format!("{name}.ll"));
        let ptx = out.join(format!("{name}.ptx"));
        run(
            Command::new("clang-19")
                .args([
                    "-x",
                    "cuda",
                    "--cuda-device-only",
                    "-nocudainc",
                    "-nocudalib",
                ])
                .args(["--cuda-gpu-arch=sm_90", "-O3", "-S", "-emit-llvm"])
                .args(["-Xclang", "-target-feature", "-Xclang", "+ptx80"])
                .arg(&src)
                .arg("-o")
                .arg(&ll),
            "clang-19",
        );
        run(
            Command::new("llc-19")
                .args(["-march=nvptx64", "-mcpu=sm_90", "-mattr=+ptx80"])
                .arg(&ll)
                .arg("-o")
                .arg(&ptx),
            "llc-19",
        );
    }
}
