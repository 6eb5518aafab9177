//! Errors of the LLVM pass.

use std::path::PathBuf;

/// Why an IR file could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// LLVM could not read or parse the file.
    #[error("cannot load LLVM IR from {}: {reason}; pass a .ll or .bc file produced by clang-19", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// LLVM's message.
        reason: String,
    },
}
