//! What a store operation that failed reports: [`Error`], with the operation and the path.

use crate::format;
use crate::io::side_files;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, with the path and the operation.
#[derive(Debug)]
pub enum Error {
    /// A filesystem call failed.
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The store was opened read-only.
    ReadOnly,
    /// The entries cannot be written in the chosen format.
    Encode(format::EncodeError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Error::ReadOnly => f.write_str("the store is read-only"),
            Error::Encode(e) => write!(f, "cannot encode the cache: {e}"),
        }
    }
}

impl std::error::Error for Error {
    /// The operating system's error or the encoder's, so a caller can walk the chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Encode(e) => Some(e),
            Error::ReadOnly => None,
        }
    }
}

impl Error {
    /// Whether another process held the cache's lock for longer than the lock timeout (nothing was
    /// written; the changes are kept for the next flush).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Io { source, .. } if side_files::is_busy(source))
    }
}

pub(super) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
