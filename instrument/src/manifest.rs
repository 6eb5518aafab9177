//! The kernel-facts manifest that `wattlens-pass` writes and the runtime reads: facts keyed by
//! kernel name, the launch-site table of instrumented host code, and the host functions the
//! pass wrapped in regions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trace::KernelFacts;

/// The `format` string every manifest carries.
pub const MANIFEST_FORMAT: &str = "wattlens-manifest";
/// The manifest version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read the manifest {}: {source}; check the path (wattlens-pass writes it with --manifest)", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The text is not a wattlens manifest of a version this build reads.
    #[error(
        "not a wattlens manifest ({reason}); regenerate it with this version of wattlens-pass"
    )]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// Where one instrumented kernel launch is in the host source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSite {
    /// Source file, as the debug info names it (empty without debug info).
    pub file: String,
    /// Line, 1-based; 0 without debug info.
    pub line: u32,
    /// Column, 1-based; 0 without debug info.
    pub column: u32,
    /// The host function that holds the launch.
    pub function: String,
    /// The launch API called there (`cuLaunchKernel`, `cudaLaunchKernel`, `cuLaunchKernelEx`).
    pub callee: String,
}

impl LaunchSite {
    /// `file:line` (or the function name when there is no debug info), as shown in traces.
    pub fn label(&self) -> String {
        if self.line == 0 {
            format!("{} (no debug info)", self.function)
        } else {
            format!("{}:{}", self.file, self.line)
        }
    }
}

/// What `wattlens-pass` learned about a program: kernel facts and host instrumentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`] when written by this build.
    pub version: u32,
    /// Kernel facts keyed by kernel (symbol) name.
    #[serde(default)]
    pub kernels: BTreeMap<String, KernelFacts>,
    /// Launch sites keyed by their id as 16 lower-case hex digits.
    #[serde(default)]
    pub sites: BTreeMap<String, LaunchSite>,
    /// Host functions wrapped in regions: function name → region name.
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
    /// Host functions left as they were, though a pattern or annotation chose them: function
    /// name → why instrumenting them would change what they do.
    #[serde(default)]
    pub skipped: BTreeMap<String, String>,
}

impl Manifest {
    /// An empty manifest of the current version.
    pub fn new() -> Self {
        Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            version: MANIFEST_VERSION,
            ..Manifest::default()
        }
    }

    /// The key of a site id in [`Manifest::sites`].
    pub fn site_key(id: u64) -> String {
        format!("{id:016x}")
    }

    /// The site with this id, if the manifest has it.
    pub fn site(&self, id: u64) -> Option<&LaunchSite> {
        self.sites.get(&Self::site_key(id))
    }

    /// The facts of every kernel, in name order.
    pub fn facts(&self) -> Vec<KernelFacts> {
        self.kernels.values().cloned().collect()
    }

    /// Add everything `other` holds; its entries win where both name the same thing.
    pub fn merge(&mut self, other: Manifest) {
        self.kernels.extend(other.kernels);
        self.sites.extend(other.sites);
        self.regions.extend(other.regions);
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain maps, strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse a manifest from JSON.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`] when the text is not JSON of this shape, or names another
    /// format or a newer version.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::Invalid {
            reason: e.to_string(),
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::Invalid {
                reason: format!("format is {:?}, expected {MANIFEST_FORMAT:?}", m.format),
            });
        }
        if m.version > MANIFEST_VERSION {
            return Err(ManifestError::Invalid {
                reason: format!(
                    "version {} is newer than this build reads ({MANIFEST_VERSION})",
                    m.version
                ),
            });
        }
        Ok(m)
    }

    /// Read a manifest file.
    ///
    /// # Errors
    /// [`ManifestError::Io`] when the file cannot be read, else as [`Manifest::from_json`].
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::trace::{AccessMode, OpClass};

    #[test]
    fn round_trips_and_rejects_other_formats_and_newer_versions() {
        let mut m = Manifest::new();
        m.kernels.insert(
            "k".into(),
            KernelFacts {
                op_class: OpClass::Matmul,
                arg_access: vec![AccessMode::Read, AccessMode::Write],
                ..KernelFacts::unknown("k", 2)
            },
        );
        m.sites.insert(
            Manifest::site_key(0xab),
            LaunchSite {
                file: "host.c".into(),
                line: 42,
                column: 5,
                function: "main".into(),
                callee: "cuLaunchKernel".into(),
            },
        );
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.site(0xab).unwrap().label(), "host.c:42");
        let other = m.to_json().replace(MANIFEST_FORMAT, "something-else");
        assert!(Manifest::from_json(&other).is_err());
        let newer = m.to_json().replace("\"version\": 1", "\"version\": 99");
        let err = Manifest::from_json(&newer).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
        assert!(Manifest::from_json("{").is_err());
    }
}
