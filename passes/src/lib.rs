//! wattlens-passes owns the LLVM side of wattlens, written with inkwell on LLVM 19. On device IR
//! it derives kernel facts (operator class, per-argument access modes, static cost per thread)
//! and tags kernels with `!wattlens.*` metadata; on host IR it inserts region and launch-site
//! calls into the wattlens C ABI. It is a build-time tool: the binary that runs on GPU
//! machines never links LLVM.

mod annotations;
mod device;
mod error;
mod host;
mod ir;
mod module;

pub use device::{
    analyze_file, analyze_module, kernels_in_file, kernels_in_module, manifest_of, tag_file,
    tag_module, Features, KernelReport,
};
pub use error::PassError;
pub use host::{
    glob_matches, instrument_host_file, instrument_host_module, read_patterns, RegionPattern,
    LAUNCH_FUNCTIONS,
};
pub use module::{expect_device, expect_host, load_module, write_module};
