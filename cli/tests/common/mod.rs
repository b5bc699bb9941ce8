//! Helpers shared by the CLI's integration tests: the library's test helpers (golden files, an
//! independent stock MACE 1.1 reader, temporary directories), and `cli` for running the binary.
#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod library;

pub use library::*;

pub mod cli;
