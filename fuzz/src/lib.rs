//! Shared checks for the fuzz targets; `tests/fuzz_regressions.rs` includes `props.rs` directly.

pub mod props;
