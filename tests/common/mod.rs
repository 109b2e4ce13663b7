//! Test support shared by bollwerk's integration tests.
//!
//! Use it from a test file with `mod common;` and `use common::testbed::*;`.
//! Not every test binary uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod bench;
pub mod browser;
pub mod testbed;
pub mod tree;
