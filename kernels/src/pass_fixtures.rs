//! The pass's hard fixtures (`passes/tests/fixtures/cuda/hard.cu`), compiled like every other
//! kernel here so that the GPU check can confirm the access modes the pass derived.

/// PTX of the fixtures for sm_90.
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pass_fixtures.ptx"));

/// The fixtures' CUDA C source: its `// launch:` lines say how to run each kernel.
pub const SOURCE: &str = include_str!("../../passes/tests/fixtures/cuda/hard.cu");
