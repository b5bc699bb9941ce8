//! The crash-loop guard of stores opened with `crash_guard_ms`, through the C ABI: by path, on the
//! process-wide registry of `program_cache::registry`.

use super::{bytes, c_path, guard, invalid, MaceStorageStatus};
use crate::program_cache::{registry, GuardStats, Liveness};
use std::ffi::c_char;
use MaceStorageStatus::*;

/// OK if a guarded open of the path happened in this process, else NOT_FOUND.
fn found(registered: bool) -> MaceStorageStatus {
    if registered {
        MACE_STORAGE_OK
    } else {
        MACE_STORAGE_NOT_FOUND
    }
}

/// Marks the entry `key` of the cache at `path` as being handed to the driver now: if the process
/// dies before its next `mace_storage_guard_mark` or `mace_storage_guard_end` on this cache, before
/// it exits normally, and within the `crash_guard_ms` the cache was opened with, the next open with
/// the guard evicts the entry. Costs one small write, no fsync. `MACE_STORAGE_NOT_FOUND` if no
/// guarded open of `path` happened in this process.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `key` covers `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_guard_mark(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
) -> MaceStorageStatus {
    guard(0, || {
        // SAFETY: per the contract.
        let (Some(p), Some(k)) = (unsafe { c_path(path) }, unsafe { bytes(key, key_len) }) else {
            return invalid(0, "path is NULL, or key is NULL with a non-zero length");
        };
        found(registry::mark(&p, k))
    })
}

/// Ends this process's mark on the cache at `path`, if one stands: the driver returned (the caller
/// got control back). No I/O when nothing is marked. `MACE_STORAGE_NOT_FOUND` if no guarded open of
/// `path` happened in this process.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_guard_end(path: *const c_char) -> MaceStorageStatus {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(p) = (unsafe { c_path(path) }) else {
            return invalid(0, "path is NULL");
        };
        found(registry::end(&p))
    })
}

/// What a crash-loop guard did, for `mace_storage_guard_stats` and `mace_program_cache_guard_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MaceStorageGuardStats {
    /// Marks found from processes that died with a binary in the driver (each consumed once).
    pub dead_marks: u64,
    /// Entries evicted because such a mark named them.
    pub evictions: u64,
    /// Marks found from processes still running, left alone (crashes not imagined).
    pub live_marks: u64,
    /// Binaries this process marked in flight.
    pub marks: u64,
    /// Marks ended because the driver evidently returned (the next call, a close, a normal exit).
    pub ended_early: u64,
    /// Marks ended only because their window passed.
    pub ended_by_window: u64,
    /// Consecutive starts that found a crash, as this process last knew it.
    pub unclean_starts: u32,
    /// How this process's marker shows it alive: 0 no marker yet, 1 the kernel's lock on it,
    /// 2 process id plus start time (no lock on this filesystem).
    pub liveness: i32,
    /// Zero. Room for counters to come without changing the struct's size.
    pub reserved: [u64; 4],
}

impl MaceStorageGuardStats {
    /// The C form of `s` (an inherent, crate-private function rather than a public `From` impl,
    /// whose exported name MACE's version script would match; see `ffi/error.rs`).
    pub(crate) fn of(s: GuardStats) -> Self {
        MaceStorageGuardStats {
            dead_marks: s.dead_marks,
            evictions: s.evictions,
            live_marks: s.live_marks,
            marks: s.marks,
            ended_early: s.ended_early,
            ended_by_window: s.ended_by_window,
            unclean_starts: s.unclean_starts,
            liveness: match s.liveness {
                Liveness::None => 0,
                Liveness::Lock => 1,
                Liveness::StartTime => 2,
            },
            reserved: [0; 4],
        }
    }
}

/// Fills `*out` with what this process's guard of the cache at `path` did (the guarded opens of it,
/// the marks). `MACE_STORAGE_NOT_FOUND` if no guarded open of `path` happened in this process.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_guard_stats(
    path: *const c_char,
    out: *mut MaceStorageGuardStats,
) -> MaceStorageStatus {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(p) = (unsafe { c_path(path) }) else {
            return invalid(0, "path is NULL");
        };
        if out.is_null() {
            return invalid(0, "out is NULL");
        }
        match registry::stats(&p) {
            Some(stats) => {
                // SAFETY: `out` is non-NULL and writable per the contract.
                unsafe { *out = MaceStorageGuardStats::of(stats) };
                MACE_STORAGE_OK
            }
            None => MACE_STORAGE_NOT_FOUND,
        }
    })
}
