//! The two translations every C function shares: a Rust error to its status code, and a format to
//! its `MaceStorageFormat` number and back. Each is written once, here.

use super::{set_error, MaceStorageFormat, MaceStorageStatus};
use crate::format::Format;
use crate::program_cache::CacheError;
use crate::store::Error;
use MaceStorageStatus::*;

/// A Rust error's status code. Crate-private on purpose: a public `From` impl on the status type
/// would be an exported symbol whose mangled name holds both `mace` and `Mace`, which MACE's
/// version script (`*mace*Mace*`) would export from `libmace.so`.
pub(crate) trait ToStatus {
    /// The status this error is reported as.
    fn status(&self) -> MaceStorageStatus;
}

impl ToStatus for Error {
    fn status(&self) -> MaceStorageStatus {
        match self {
            e if e.is_busy() => MACE_STORAGE_BUSY,
            Error::Io { .. } => MACE_STORAGE_IO_ERROR,
            Error::ReadOnly => MACE_STORAGE_READ_ONLY,
            Error::Encode(_) => MACE_STORAGE_INVALID_ARGUMENT,
        }
    }
}

impl ToStatus for CacheError {
    fn status(&self) -> MaceStorageStatus {
        match self {
            CacheError::NoOpenCl(_) => MACE_STORAGE_NO_OPENCL,
            CacheError::BuildFailed(_) => MACE_STORAGE_BUILD_FAILED,
            CacheError::Cl(_) => MACE_STORAGE_INVALID_ARGUMENT,
            CacheError::Store(e) => e.status(),
        }
    }
}

/// Records `e` as this thread's last error on `handle` and returns its status.
pub(crate) fn fail<E: std::fmt::Display + ToStatus>(handle: usize, e: &E) -> MaceStorageStatus {
    set_error(handle, &e.to_string());
    e.status()
}

/// Each format and its number, both ways.
const FORMATS: [(Format, MaceStorageFormat); 5] = [
    (
        Format::Mace10,
        MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_0,
    ),
    (
        Format::Mace11,
        MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_1,
    ),
    (
        Format::Checked10,
        MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_0,
    ),
    (
        Format::Checked11,
        MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_1,
    ),
    (Format::Empty, MaceStorageFormat::MACE_STORAGE_FORMAT_EMPTY),
];

impl MaceStorageFormat {
    /// The number of `f`.
    pub(crate) fn of(f: Format) -> Self {
        FORMATS
            .iter()
            .find(|(g, _)| *g == f)
            .map_or(Self::MACE_STORAGE_FORMAT_DEFAULT, |(_, n)| *n)
    }

    /// The format `MaceStorageOptions.format` asks flushes to write (0: checked-1.1), if it is a
    /// writable one.
    pub(crate) fn writable(number: i32) -> Option<Format> {
        if number == Self::MACE_STORAGE_FORMAT_DEFAULT as i32 {
            return Some(Format::Checked11);
        }
        FORMATS
            .iter()
            .find(|(f, n)| *n as i32 == number && Format::WRITABLE.contains(f))
            .map(|(f, _)| *f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_one_number_and_back() {
        for f in Format::WRITABLE {
            let n = MaceStorageFormat::of(f);
            assert_ne!(n, MaceStorageFormat::MACE_STORAGE_FORMAT_DEFAULT);
            assert_eq!(MaceStorageFormat::writable(n as i32), Some(f));
        }
        assert_eq!(MaceStorageFormat::writable(0), Some(Format::Checked11));
        assert_eq!(
            MaceStorageFormat::writable(5),
            None,
            "an empty file is no format to write"
        );
        assert_eq!(MaceStorageFormat::writable(-1), None);
        assert_eq!(MaceStorageFormat::writable(6), None);
    }
}
