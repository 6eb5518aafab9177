//! Finding the libraries `wattlens run` attaches with: our injection library and libcupti.

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// File name of the injection library.
pub const INJECT_LIB: &str = "libwattlens_inject.so";

/// The injection library: `explicit`, else `$WATTLENS_INJECT_LIB`, else beside this binary.
///
/// # Errors
/// [`CliError::Usage`] when a named library does not exist; [`CliError::Setup`] when none is
/// found beside the binary.
pub fn injection_library(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WATTLENS_INJECT_LIB").map(PathBuf::from))
    {
        return if p.is_file() {
            Ok(absolute(&p))
        } else {
            Err(CliError::Usage(format!(
                "the injection library {} does not exist; give the path of {INJECT_LIB}",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    // Beside the binary (a release, the GPU bundle), or one level up (cargo's deps/).
    let candidates = dir
        .into_iter()
        .flat_map(|d| [d.join(INJECT_LIB), d.join("..").join(INJECT_LIB)]);
    for c in candidates {
        if c.is_file() {
            return Ok(absolute(&c));
        }
    }
    Err(CliError::Setup(format!(
        "{INJECT_LIB} is not beside {}; build it with `cargo build --release -p wattlens-inject` (it lands beside the wattlens binary) or name it with WATTLENS_INJECT_LIB",
        exe.map(|e| e.display().to_string()).unwrap_or_else(|| "the wattlens binary".into())
    )))
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Folders searched for libcupti, in order: `LD_LIBRARY_PATH`'s, then those of the CUDA
/// toolkit at `cuda_home` and at /usr/local/cuda.
pub fn cupti_dirs(ld_library_path: Option<&str>, cuda_home: Option<&str>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ld_library_path
        .unwrap_or("")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    for home in cuda_home.into_iter().chain(["/usr/local/cuda"]) {
        for sub in ["extras/CUPTI/lib64", "targets/x86_64-linux/lib", "lib64"] {
            dirs.push(Path::new(home).join(sub));
        }
    }
    dirs
}

/// The libcupti to attach with: `explicit`, else `$WATTLENS_CUPTI`, else the first found in
/// [`cupti_dirs`]. `Ok(None)` when none is found (CUDA processes then run unrecorded).
///
/// # Errors
/// [`CliError::Usage`] when a named library does not exist.
pub fn cupti(explicit: Option<&Path>) -> Result<Option<PathBuf>, CliError> {
    if let Some(p) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WATTLENS_CUPTI").map(PathBuf::from))
    {
        return if p.is_file() {
            Ok(Some(absolute(&p)))
        } else {
            Err(CliError::Usage(format!(
                "libcupti {} does not exist; give the path of libcupti.so (in the CUDA toolkit's extras/CUPTI/lib64)",
                p.display()
            )))
        };
    }
    let ld = std::env::var("LD_LIBRARY_PATH").ok();
    let home = std::env::var("CUDA_HOME").ok();
    Ok(cupti_dirs(ld.as_deref(), home.as_deref())
        .into_iter()
        .flat_map(|d| ["libcupti.so", "libcupti.so.13", "libcupti.so.12"].map(|n| d.join(n)))
        .find(|p| p.is_file())
        .map(|p| absolute(&p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_the_library_path_before_the_toolkits() {
        let dirs = cupti_dirs(Some("/opt/a::/opt/b"), Some("/cuda"));
        assert_eq!(dirs[0], PathBuf::from("/opt/a"));
        assert_eq!(dirs[1], PathBuf::from("/opt/b"));
        assert_eq!(dirs[2], PathBuf::from("/cuda/extras/CUPTI/lib64"));
        assert_eq!(dirs.last(), Some(&PathBuf::from("/usr/local/cuda/lib64")));
    }
}
