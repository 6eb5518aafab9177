//! The trace data model: the contract between recording, analysis and reports.

mod model;
mod strings;

pub use model::*;
pub use strings::{StrId, StringTable};
