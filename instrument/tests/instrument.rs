//! Integration tests of wattlens-instrument (one test binary, modules inside).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod accuracy;
mod attribution;
mod calibrate;
mod common;
mod format;
mod fuzz;
mod merge;
mod nvml;
mod perfetto;
mod replay;
mod requests;
mod sim;
mod waste;
