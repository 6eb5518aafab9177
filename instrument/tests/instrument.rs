//! Integration tests of wattlens-instrument (one test binary, modules inside).

mod attribution;
mod common;
mod format;
mod perfetto;
mod replay;
mod sim;
