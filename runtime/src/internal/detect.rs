//! Finding NVIDIA GPUs without loading any driver library.

use std::path::Path;

/// One NVIDIA GPU the driver exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPresence {
    /// Minor number of its device node (`/dev/nvidiaN`).
    pub minor: u32,
    /// Model name from the driver's proc files, where readable.
    pub model: Option<String>,
}

/// The NVIDIA GPUs present on this machine.
pub fn nvidia_gpus() -> Vec<GpuPresence> {
    nvidia_gpus_under(Path::new("/"))
}

/// The NVIDIA GPUs visible under `root` (a filesystem root; tests pass a fake one).
///
/// A GPU is a `dev/nvidiaN` node; its model comes from `proc/driver/nvidia/gpus/*/information`
/// (matched by "Device Minor"), which containers often lack.
pub fn nvidia_gpus_under(root: &Path) -> Vec<GpuPresence> {
    let Ok(entries) = std::fs::read_dir(root.join("dev")) else {
        return Vec::new();
    };
    let mut minors: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("nvidia")?.parse().ok())
        .collect();
    minors.sort_unstable();
    let models = proc_models(&root.join("proc/driver/nvidia/gpus"));
    minors
        .into_iter()
        .map(|minor| GpuPresence {
            minor,
            model: models.iter().find(|m| m.0 == minor).map(|m| m.1.clone()),
        })
        .collect()
}

/// (device minor, model) pairs from the driver's proc files.
fn proc_models(dir: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .filter_map(|text| {
            let field = |key: &str| {
                text.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .map(|v| v.trim_start_matches(':').trim().to_owned())
                })
            };
            Some((field("Device Minor")?.parse().ok()?, field("Model")?))
        })
        .collect()
}
