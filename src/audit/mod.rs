//! `wattlens run --audit`: load the audit into an unmodified PyTorch program, and join the
//! facts it wrote to the traces of its processes.
//!
//! The audit is Python (`wattlens_audit.py`, armed by a `sitecustomize.py`), shipped inside
//! this binary and written to a private folder that goes first on the program's PYTHONPATH.
//! Why Python and not the driver's launch callback: an unmodified PyTorch program allocates
//! through the caching allocator, which hands out pieces of large segments, so a launch's
//! buffer extents are unknown at the driver; a dispatch mode sees each operation's tensors
//! exactly (shape, strides, storage), knows which it writes, and needs no change to the
//! program. What it cannot see (a custom extension writing through raw pointers, work on
//! other threads) it does not audit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use wattlens_instrument::audit::{attach, read_facts, AuditError};
use wattlens_instrument::Trace;

use crate::error::CliError;

/// The audit module.
const AUDIT_PY: &str = include_str!("wattlens_audit.py");
/// The `sitecustomize` that arms it when the program starts.
const SITECUSTOMIZE_PY: &str = include_str!("sitecustomize.py");
/// The setting that names each process's facts file (`{pid}` stands for its process id).
pub const ENV_FACTS: &str = "WATTLENS_AUDIT_FACTS";

/// The audit's Python, written to a private folder for the program's run; removed on drop.
pub struct AuditFolder {
    dir: PathBuf,
}

impl AuditFolder {
    /// Write the audit's Python to a new folder under the system's temporary folder.
    ///
    /// # Errors
    /// [`CliError::WriteFile`] when the folder or its files cannot be written.
    pub fn create() -> Result<Self, CliError> {
        let dir = std::env::temp_dir().join(format!("wattlens-audit-{}", std::process::id()));
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text).map_err(|source| CliError::WriteFile { path, source })
        };
        std::fs::create_dir_all(&dir).map_err(|source| CliError::WriteFile {
            path: dir.clone(),
            source,
        })?;
        write(dir.join("wattlens_audit.py"), AUDIT_PY)?;
        write(dir.join("sitecustomize.py"), SITECUSTOMIZE_PY)?;
        Ok(Self { dir })
    }

    /// The program's PYTHONPATH: this folder first, then `existing`.
    pub fn python_path(&self, existing: Option<OsString>) -> OsString {
        let mut path = self.dir.clone().into_os_string();
        if let Some(rest) = existing.filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(rest);
        }
        path
    }
}

impl Drop for AuditFolder {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temporary folder harms nothing.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The facts file pattern for output prefix `prefix` (`PREFIX.audit.pid{pid}.jsonl`).
pub fn facts_pattern(prefix: &Path) -> OsString {
    let mut p = prefix.as_os_str().to_owned();
    p.push(".audit.pid{pid}.jsonl");
    p
}

/// The process id in a per-process trace's name (`STEM.[rankR.]pidP.wlt`).
fn pid_of(trace: &Path) -> Option<&str> {
    let name = trace.file_name()?.to_str()?.strip_suffix(".wlt")?;
    name.rsplit('.').next()?.strip_prefix("pid")
}

/// The facts file the audit wrote for the process of per-process trace `trace` (under output
/// prefix `prefix`), where there is one. Call it before the trace is renamed: its name holds
/// the process id.
pub fn facts_of(trace: &Path, prefix: &Path) -> Option<PathBuf> {
    let pid = pid_of(trace)?;
    let pattern = facts_pattern(prefix)
        .to_string_lossy()
        .replace("{pid}", pid);
    let path = PathBuf::from(pattern);
    path.is_file().then_some(path)
}

/// Join the facts in file `facts` to `trace`, and remove the file once they are in it; the
/// number of operations joined. A file that cannot be read is reported and left on disk.
pub fn join(trace: &mut Trace, facts: &Path) -> u64 {
    let read = std::fs::File::open(facts)
        .map_err(AuditError::from)
        .and_then(|f| read_facts(std::io::BufReader::new(f)));
    match read {
        Ok(f) => {
            let ops = f.ops.len() as u64;
            attach(trace, f);
            // The facts are in the trace now (written back by the caller).
            let _ = std::fs::remove_file(facts);
            ops
        }
        Err(e) => {
            eprintln!(
                "wattlens: warning: {} ({e}); its process's trace has no audit",
                facts.display()
            );
            0
        }
    }
}

/// Say how many operations' facts were joined to the traces of output prefix `prefix`, and
/// which facts files had no trace to join.
pub fn say_joined(ops: u64, prefix: &Path) {
    let unjoined = unjoined_facts(prefix);
    if ops > 0 {
        eprintln!("wattlens: audit: {ops} operations' content facts joined to the trace");
    } else if unjoined.is_empty() {
        eprintln!("wattlens: note: the audit saw no PyTorch operation (it audits Python programs that import torch); nothing was audited");
    }
    if !unjoined.is_empty() {
        let shown: Vec<String> = unjoined.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "wattlens: note: the audit's facts of processes that ran no CUDA work are kept, with no trace to join them to: {}",
            shown.join(" ")
        );
    }
}

/// Facts files of output prefix `prefix` still on disk: those of processes that left no trace
/// to join them to (they ran no CUDA work).
pub fn unjoined_facts(prefix: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) = (prefix.parent(), prefix.file_name()) else {
        return Vec::new();
    };
    let start = format!("{}.audit.pid", stem.to_string_lossy());
    crate::commands::files_in(dir, |name| {
        name.starts_with(&start) && name.ends_with(".jsonl")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traces_process_id_is_read_from_its_name() {
        assert_eq!(pid_of(Path::new("/x/run.pid42.wlt")), Some("42"));
        assert_eq!(pid_of(Path::new("run.rank1.pid7.wlt")), Some("7"));
        assert_eq!(pid_of(Path::new("run.wlt")), None);
    }

    #[test]
    fn facts_left_without_a_trace_are_found_by_their_prefix() {
        let dir = std::env::temp_dir().join(format!("wattlens-unjoined-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "run.audit.pid7.jsonl",
            "run.audit.pid9.jsonl",
            "rerun.audit.pid7.jsonl",
            "run.pid7.wlt",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let found = unjoined_facts(&dir.join("run"));
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["run.audit.pid7.jsonl", "run.audit.pid9.jsonl"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_python_path_puts_the_audit_first() {
        let f = AuditFolder {
            dir: PathBuf::from("/tmp/a"),
        };
        assert_eq!(f.python_path(None), OsString::from("/tmp/a"));
        assert_eq!(
            f.python_path(Some(OsString::from("/u/lib"))),
            OsString::from("/tmp/a:/u/lib")
        );
        std::mem::forget(f);
    }
}
