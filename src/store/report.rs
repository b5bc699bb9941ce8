//! What a store tells of itself: what opening the file found ([`Report`]) and its counters
//! ([`Stats`]).

use crate::format::{Damage, Format};
use std::path::PathBuf;

/// What opening the file found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file was absent (a first start): the store opened empty.
    pub missing: bool,
    /// The detected format, if the file was read.
    pub format: Option<Format>,
    /// Length of the file read.
    pub file_len: u64,
    /// Entries loaded.
    pub entries: u64,
    /// What was wrong and what was dropped.
    pub damage: Damage,
    /// Where an unreadable file was moved (`<file>.corrupt`).
    pub set_aside: Option<PathBuf>,
    /// The file was larger than [`Options::max_file_len`](super::Options::max_file_len): not read,
    /// left as it is.
    pub too_large: bool,
}

/// Counters a store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries now in the store.
    pub entries: u64,
    /// Bytes of keys and values now in the store.
    pub bytes: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Gets that did not.
    pub misses: u64,
    /// Entries kept from a damaged file.
    pub entries_salvaged: u64,
    /// Entries lost to damage (failed checks, cut off, or dropped by the platform-info rule),
    /// found at open or on first use.
    pub entries_dropped: u64,
    /// Of those, the ones a lazily verified open let through that failed their checksum on first
    /// use ([`Verify::Lazy`](super::Verify::Lazy)): dropped then, never returned.
    pub entries_failed_on_use: u64,
    /// Flushes that wrote something.
    pub flushes: u64,
    /// Of those, the ones that appended.
    pub appends: u64,
    /// Of those, the ones that rewrote the file.
    pub rewrites: u64,
    /// Flushes that failed.
    pub flush_failures: u64,
    /// Times a flush found the file changed by another process and merged it.
    pub merges: u64,
    /// Bytes written to disk by flushes.
    pub bytes_written: u64,
    /// Whether the last flush could exclude other processes (`false`: no lock was available).
    pub process_lock: bool,
    /// Program binaries evicted to keep the file within
    /// [`Options::budget`](super::Options::budget).
    pub evictions: u64,
}
