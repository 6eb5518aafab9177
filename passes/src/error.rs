//! Errors of the LLVM pass.

use std::path::PathBuf;

/// Why a module could not be analysed, instrumented or written.
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
    /// The input is not a regular file, or is larger than any IR file this tool reads.
    #[error("cannot read {}: {reason}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The input IR parsed but does not verify: the input is at fault, not this tool.
    #[error("{} is not valid LLVM IR ({reason}); fix the input, or regenerate it with clang-19", path.display())]
    InvalidInput {
        /// The file.
        path: PathBuf,
        /// The verifier's message.
        reason: String,
    },
    /// The module's target triple is not one this command handles.
    #[error("{} targets {triple:?}, but this command needs {expected}; compile it for that target with clang-19", path.display())]
    Target {
        /// The file.
        path: PathBuf,
        /// The module's triple.
        triple: String,
        /// What the command accepts.
        expected: &'static str,
    },
    /// A `wattlens.*` source annotation names something this build does not know.
    #[error("kernel {function}: annotation \"wattlens.{annotation}\" is not understood; use wattlens.op=<{classes}> or wattlens.region=<name>")]
    Annotation {
        /// The annotated function.
        function: String,
        /// The text after `wattlens.`.
        annotation: String,
        /// The accepted operator classes.
        classes: String,
    },
    /// A region pattern file could not be read or has a bad line.
    #[error("region patterns {}: {reason}", path.display())]
    Patterns {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The transformed module failed LLVM's verifier (a bug in wattlens-pass).
    #[error("the module wattlens-pass produced does not verify ({reason}); please report this with the input IR")]
    Verify {
        /// The verifier's message.
        reason: String,
    },
    /// The output could not be written.
    #[error("cannot write {}: {reason}; check that the directory exists and is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS or LLVM message.
        reason: String,
    },
}
