//! How a store is opened: [`Options`] and when values are checksummed ([`Verify`]).

use crate::format::Format;
use crate::io::side_files;
use crate::io::{posix::PosixFs, Fs};
use std::sync::Arc;
use std::time::Duration;

/// How a store is opened.
#[derive(Clone)]
pub struct Options {
    /// The format flushes write (default checked-1.1; checked-1.0 beside MACE v0.12-1.0).
    pub format: Format,
    /// Never write: flush, and setting an unreadable file aside, are refused.
    pub read_only: bool,
    /// The filesystem (default: the real one).
    pub fs: Arc<dyn Fs>,
    /// How long a flush (or setting an unreadable file aside) waits for the cache's lock held by
    /// another process before it gives up with a busy error
    /// ([`Error::is_busy`](super::Error::is_busy)) and keeps the changes for the next flush;
    /// `None`: for ever. Default 3 s.
    pub lock_timeout: Option<Duration>,
    /// The largest file `open` loads (default [`DEFAULT_MAX_FILE_LEN`]). A larger file is reported
    /// as too large without being read, and left as it is: no flush replaces it until `clear`. Puts
    /// that would make the file larger than this are refused, so the store never writes a file it
    /// would refuse to load.
    pub max_file_len: u64,
    /// When the values of a checked-1.1 file are checksummed (default [`Verify::Eager`]: lazy
    /// verification is faster only for a store whose user gets a part of the entries; see
    /// `docs/PERFORMANCE.md`).
    pub verify: Verify,
    /// The largest file flushes let the cache grow to (`None`, the default: no budget). A flush
    /// that would write a larger file first evicts the least recently used program binaries
    /// ([`Stats::evictions`](super::Stats::evictions)); use is recorded in a small entry each
    /// committing flush adds, never by a write per get. The metadata that vouches for binaries is
    /// never evicted. See `budget.rs`.
    pub budget: Option<u64>,
}

/// When `open` checksums the values of a file it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Every value at open, as the file is read.
    #[default]
    Eager,
    /// For an intact checked-1.1 file, only its framing (the header and the index chain at its
    /// end, or else every record's framing, commit records and trailer) and the platform-info
    /// entry are read and verified at open; the file is kept open and each value is
    /// read from it and verified on its first use (`get`, `entries`, a rewrite). Other files, and
    /// checked-1.1 files found damaged at open, are read and verified at open as with `Eager`.
    Lazy,
}

/// The default [`Options::max_file_len`]: far above any real program cache (tens of MiB).
pub const DEFAULT_MAX_FILE_LEN: u64 = 512 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Checked11,
            read_only: false,
            fs: Arc::new(PosixFs),
            lock_timeout: Some(side_files::DEFAULT_LOCK_TIMEOUT),
            max_file_len: DEFAULT_MAX_FILE_LEN,
            verify: Verify::default(),
            budget: None,
        }
    }
}
