//! The parts wattlens' own crates share with this one: the injection library's CUPTI records,
//! checkpoints and clock fits, the CLI's calibration device, and the timers with their fakes for
//! tests. Not a user API (the crate root is): it changes with those crates, without notice.

pub mod buffers;
pub mod c_abi;
pub mod clock_fit;
pub mod cuda;
pub mod detect;
pub mod digest;
pub mod recorder;
pub mod timing;
