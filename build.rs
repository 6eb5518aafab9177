//! Vendors the HTML report's charting library at build time: uPlot, a pinned release from the
//! npm registry, checked against its SHA-256, so that every report file carries it inline and
//! works offline. A build without network (and without `WATTLENS_UPLOT_TGZ` naming the
//! tarball) still succeeds; its `wattlens report --html` then says why it cannot chart.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const VERSION: &str = "1.6.32";
const SHA256: &str = "4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d";
const FILES: [&str; 3] = [
    "package/dist/uPlot.iife.min.js",
    "package/dist/uPlot.min.css",
    "package/LICENSE",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WATTLENS_UPLOT_TGZ");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("uplot");
    let ready = FILES.iter().all(|f| dir.join(f).exists());
    let result = if ready { Ok(()) } else { vendor(&out, &dir) };
    if let Err(why) = result {
        println!("cargo:warning=the HTML report will have no charts: {why}");
        println!("cargo:rustc-env=WATTLENS_UPLOT_MISSING={why}");
        let _ = std::fs::create_dir_all(dir.join("package/dist"));
        for f in FILES {
            let _ = std::fs::write(dir.join(f), "");
        }
    }
    println!("cargo:rustc-env=WATTLENS_UPLOT_DIR={}", dir.display());
    println!("cargo:rustc-env=WATTLENS_UPLOT_VERSION={VERSION}");
}

/// Fetch (or take from `WATTLENS_UPLOT_TGZ`) the tarball, check it, and unpack its files.
fn vendor(out: &Path, dir: &Path) -> Result<(), String> {
    let tgz = match std::env::var_os("WATTLENS_UPLOT_TGZ") {
        Some(p) => PathBuf::from(p),
        None => {
            let tgz = out.join(format!("uplot-{VERSION}.tgz"));
            let url = format!("https://registry.npmjs.org/uplot/-/uplot-{VERSION}.tgz");
            let got = Command::new("curl")
                .args(["-fsSL", "--max-time", "60", "-o"])
                .arg(&tgz)
                .arg(&url)
                .status()
                .map_err(|e| format!("curl could not run ({e}) to fetch {url}"))?;
            if !got.success() {
                return Err(format!(
                    "could not fetch {url} (set WATTLENS_UPLOT_TGZ to a copy)"
                ));
            }
            tgz
        }
    };
    let bytes = std::fs::read(&tgz).map_err(|e| format!("cannot read {}: {e}", tgz.display()))?;
    let sum: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sum != SHA256 {
        return Err(format!(
            "{} is not uPlot {VERSION} as published (SHA-256 {sum})",
            tgz.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let unpacked = Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(dir)
        .args(FILES)
        .status()
        .map_err(|e| format!("tar could not run ({e})"))?;
    if unpacked.success() {
        Ok(())
    } else {
        Err(format!("tar could not unpack {}", tgz.display()))
    }
}
