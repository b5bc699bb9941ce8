//! mace-storage: crash-safe, checksummed storage for MACE's OpenCL program cache.

pub mod ffi;
pub mod format;
pub mod io;
pub mod keys;
pub mod log;
pub mod program_cache;
pub mod store;
