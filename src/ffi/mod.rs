//! The C ABI, and nothing else: pointers and lengths become slices and paths, Rust results become
//! status codes (`error.rs`), and every call is passed on to the Rust API (`store`,
//! `program_cache`, `log`, `keys`). Every entry point checks its pointers, catches panics (nothing
//! unwinds into C or C++), and returns a status with stable numbers; the message of a failed call
//! is kept per thread for `mace_storage_last_error`. No module outside `ffi` depends on it.

mod error;
mod guard;
mod program_cache;
mod storage;
// After `storage`: cbindgen writes the header in module order, opening before reading.
mod read;

pub use guard::*;
pub use program_cache::*;
pub use read::*;
pub use storage::*;

/// The OpenCL loader, now `crate::io::opencl`; kept here for one release.
pub use crate::io::opencl;

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::log;

/// Result of every call. The numbers are stable forever; new codes are added above 7.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaceStorageStatus {
    /// Success.
    MACE_STORAGE_OK = 0,
    /// The key is not in the store.
    MACE_STORAGE_NOT_FOUND = 1,
    /// A required pointer was NULL, or an argument is out of range.
    MACE_STORAGE_INVALID_ARGUMENT = 2,
    /// A filesystem call failed (missing directory, no permission, disk full, ...).
    MACE_STORAGE_IO_ERROR = 3,
    /// The data is not a cache file, or nothing in it passed its checks.
    MACE_STORAGE_CORRUPT = 4,
    /// The resource is held by someone else.
    MACE_STORAGE_BUSY = 5,
    /// The store was opened read-only.
    MACE_STORAGE_READ_ONLY = 6,
    /// A bug in the library (a caught panic); the call had no effect.
    MACE_STORAGE_INTERNAL = 7,
    /// No OpenCL library could be loaded, or it lacks an entry point.
    MACE_STORAGE_NO_OPENCL = 8,
    /// The OpenCL driver failed to build a program from source.
    MACE_STORAGE_BUILD_FAILED = 9,
}

use MaceStorageStatus::*;

pub use crate::log::MaceStorageLogLevel;

/// Receives every message of the library: level, text (valid during the call), and the user pointer.
pub type MaceStorageLogCallback = Option<
    extern "C" fn(level: MaceStorageLogLevel, message: *const c_char, user_data: *mut c_void),
>;

/// Routes the library's messages to `callback` (NULL restores the default: stderr, or the Android
/// log) for messages at `min_level` and above; `user_data` is passed back on every call.
#[no_mangle]
pub extern "C" fn mace_storage_set_log_callback(
    callback: MaceStorageLogCallback,
    user_data: *mut c_void,
    min_level: MaceStorageLogLevel,
) {
    let user_data = user_data as usize;
    let _ = catch_unwind(|| {
        let receiver = callback.map(|cb| {
            Arc::new(move |level, msg: &str| {
                let text = log::c_text(msg);
                cb(level, text.as_ptr(), user_data as *mut c_void)
            }) as Arc<log::SinkFn>
        });
        log::set_sink(receiver, min_level);
    });
}

/// Sends `message` through the library's log callback at `level` (for code built on the library,
/// such as the MACE drop-in, so all messages reach one place). NULL is ignored.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_log(level: MaceStorageLogLevel, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    let _ = catch_unwind(|| log::log(level, &text));
}

thread_local! {
    /// The message of this thread's last failed call, and the handle it was made on (0: none).
    static LAST_ERROR: RefCell<(usize, CString)> = RefCell::new((0, CString::default()));
}

/// Records `msg` as this thread's last error, on `handle`.
pub(crate) fn set_error(handle: usize, msg: &str) {
    let text = log::c_text(msg);
    LAST_ERROR.with(|e| *e.borrow_mut() = (handle, text));
}

/// The message of this thread's last failed call on `handle` (any handle if 0), or "".
pub(crate) fn last_error(handle: usize) -> *const c_char {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        if handle == 0 || e.0 == handle {
            e.1.as_ptr()
        } else {
            c"".as_ptr()
        }
    })
}

/// Runs `f`, turning a panic into `MACE_STORAGE_INTERNAL` with its message recorded.
pub(crate) fn guard(handle: usize, f: impl FnOnce() -> MaceStorageStatus) -> MaceStorageStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(s) => s,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(handle, &format!("internal error (please report): {what}"));
            MACE_STORAGE_INTERNAL
        }
    }
}

/// Runs `f` on the object behind a handle (with the handle's number for error messages), or fails
/// with `MACE_STORAGE_INVALID_ARGUMENT` naming `what` for NULL; panics are caught.
///
/// # Safety
/// `p` is NULL or points to a live object that outlives the call.
pub(crate) unsafe fn with_handle<T>(
    p: *const T,
    what: &str,
    f: impl FnOnce(&T, usize) -> MaceStorageStatus,
) -> MaceStorageStatus {
    let h = p as usize;
    guard(h, || {
        // SAFETY: NULL or a live object, per the contract.
        match unsafe { p.as_ref() } {
            Some(t) => f(t, h),
            None => invalid(h, &format!("{what} is NULL")),
        }
    })
}

/// Frees an object handed to C with `Box::into_raw` (NULL is a no-op); a panic in its destructor
/// is caught.
///
/// # Safety
/// `p` is NULL or came from `Box::into_raw` and is freed once, by no other thread meanwhile.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: per the contract.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) })));
    }
}

/// Fails with `MACE_STORAGE_INVALID_ARGUMENT` naming `what`.
pub(crate) fn invalid(handle: usize, what: &str) -> MaceStorageStatus {
    set_error(handle, &format!("invalid argument: {what}"));
    MACE_STORAGE_INVALID_ARGUMENT
}

/// A byte slice from a C pointer and length; NULL is allowed only for length 0.
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for 'a.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A UTF-8-agnostic path from a C string; `None` for NULL.
///
/// # Safety
/// A non-NULL `ptr` is a NUL-terminated string.
pub(crate) unsafe fn c_path(ptr: *const c_char) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let b = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b)))
}

/// The library version, "MAJOR.MINOR.PATCH" (the header's `MACE_STORAGE_VERSION` must match it).
#[no_mangle]
pub extern "C" fn mace_storage_version() -> *const c_char {
    static V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"",
        };
    V.as_ptr()
}
