//! wattlens-passes owns the LLVM side of wattlens, written with inkwell on LLVM 19: it derives
//! kernel facts (operator class, per-argument access modes, static cost) from device IR, tags
//! operator regions, and instruments host IR with region and launch-site calls. It is a
//! build-time tool: the binary that runs on GPU machines never links LLVM. Today it loads IR
//! modules and finds their kernels; the analyses arrive with their own issue.

mod error;
mod kernels;

pub use error::PassError;
pub use kernels::{kernels_in_file, kernels_in_module};
