//! Integration tests of the injection library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod collector;
