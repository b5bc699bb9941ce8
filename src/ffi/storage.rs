//! The key-value store through the C ABI.

use super::error::fail;
use super::{
    bytes, c_path, free_box, guard, invalid, last_error, set_error, with_handle,
    MaceStorageLogLevel, MaceStorageStatus,
};
use crate::log::log;
use crate::program_cache::{self, OpenOptions};
use crate::store::{Error, Options, Report, Store, Value, Verify};
use std::ffi::{c_char, CString};
use std::sync::Arc;
use std::time::Duration;
use MaceStorageLogLevel::*;
use MaceStorageStatus::*;

/// A cache file opened as a key-value store. Safe to use from many threads at once; only
/// `mace_storage_close` must not race with other calls on the same handle.
pub struct MaceStorage {
    pub(super) store: Store,
    notes: CString,
}

/// A value returned by `mace_storage_get`: valid until `mace_storage_value_free`, whatever happens to
/// the store meanwhile (overwrites, clear, close).
pub struct MaceStorageValue {
    pub(crate) value: Value,
}

/// File formats, for `MaceStorageOptions.format` and `MaceStorageOpenReport.format`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaceStorageFormat {
    /// Options: the default (checked-1.1). Report: the file was not read.
    MACE_STORAGE_FORMAT_DEFAULT = 0,
    /// MACE v0.6-v1.0 stock format.
    MACE_STORAGE_FORMAT_MACE_1_0 = 1,
    /// MACE v1.1 stock format.
    MACE_STORAGE_FORMAT_MACE_1_1 = 2,
    /// Format A with per-entry checksums, readable by MACE v0.6-v1.0.
    MACE_STORAGE_FORMAT_CHECKED_1_0 = 3,
    /// Format B with per-entry checksums and commit records, readable by MACE v1.1.
    MACE_STORAGE_FORMAT_CHECKED_1_1 = 4,
    /// Report only: a 0-byte file.
    MACE_STORAGE_FORMAT_EMPTY = 5,
}

/// When a store checksums the values of the file it opens, for `MaceStorageOptions.verify`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaceStorageVerify {
    /// The default (today: eager).
    MACE_STORAGE_VERIFY_DEFAULT = 0,
    /// Every value at open, as the file is read.
    MACE_STORAGE_VERIFY_EAGER = 1,
    /// An intact checked-1.1 file's values on first use: open reads only the framing (the file
    /// stays open), each value is read and checksummed at its first get. Other files: as eager.
    MACE_STORAGE_VERIFY_LAZY = 2,
}

impl MaceStorageVerify {
    /// The store's setting for a `verify` option value; `None` for an unknown one.
    fn of(v: i32) -> Option<Verify> {
        const DEFAULT: i32 = MaceStorageVerify::MACE_STORAGE_VERIFY_DEFAULT as i32;
        const EAGER: i32 = MaceStorageVerify::MACE_STORAGE_VERIFY_EAGER as i32;
        const LAZY: i32 = MaceStorageVerify::MACE_STORAGE_VERIFY_LAZY as i32;
        match v {
            DEFAULT => Some(Verify::default()),
            EAGER => Some(Verify::Eager),
            LAZY => Some(Verify::Lazy),
            _ => None,
        }
    }
}

/// How to open a store. A zeroed struct (or a NULL pointer) means the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MaceStorageOptions {
    /// The format flushes write: a `MaceStorageFormat` value, 0 for checked-1.1.
    pub format: i32,
    /// Non-zero: never write (flush fails with `MACE_STORAGE_READ_ONLY`; nothing is moved aside).
    pub read_only: i32,
    /// Non-zero: the crash-loop guard, for callers that hand cached binaries to a driver right after
    /// reading them (the MACE drop-in). Opening evicts each entry a process that no longer runs died
    /// with while it was marked by `mace_storage_guard_mark` (a mark ends at the process's next
    /// guard call, at its normal exit, or after this many milliseconds at most), and sets the file
    /// aside after 3 starts in a row that found such a death.
    pub crash_guard_ms: u32,
    /// Non-zero: record the OS build (Android `ro.build.fingerprint`, or the environment variable
    /// `MACE_STORAGE_OS_BUILD_ID`, which overrides it) and drop every entry when it changed.
    pub check_os_build: i32,
    /// Non-zero: do not log what opening found (for a caller that opens the same file again).
    pub quiet: i32,
    /// How long a flush waits for the cache's lock held by another process (a stopped or hung
    /// one) before it returns `MACE_STORAGE_BUSY`, keeping the changes for the next flush: 0 for
    /// the default (3000 ms), `UINT32_MAX` to wait for ever.
    pub lock_timeout_ms: u32,
    /// The largest file to load, in MiB (0: the default, 512 MiB). A larger file is not read: the
    /// store opens empty and leaves the file as it is (no flush replaces it until `mace_storage_clear`).
    /// Taken from `reserved`, so the struct keeps its size.
    pub max_file_mib: u32,
    /// The size budget in MiB (0: none): a flush that would make the file larger first evicts the
    /// least recently used program binaries (never the metadata that vouches for them); see
    /// `mace_storage_stats`'s `evictions`. Taken from `reserved`.
    pub budget_mib: u32,
    /// When values are checksummed: a `MaceStorageVerify` value, 0 for the default (eager).
    /// Taken from `reserved`, so the struct keeps its size.
    pub verify: i32,
    /// Zero. Room for options to come without changing the struct's size.
    pub reserved: [u32; 3],
}

/// Counters of a store.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MaceStorageStats {
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
    /// Entries lost to damage.
    pub entries_dropped: u64,
    /// Flushes that wrote something.
    pub flushes: u64,
    /// Of those, appends.
    pub appends: u64,
    /// Of those, full rewrites.
    pub rewrites: u64,
    /// Flushes that failed.
    pub flush_failures: u64,
    /// Flushes that merged what another process had committed.
    pub merges: u64,
    /// Bytes written by flushes.
    pub bytes_written: u64,
    /// 1 if the last flush excluded other processes with a lock, 0 if no lock was available.
    pub process_lock: i32,
    /// Program binaries evicted to keep the file within `MaceStorageOptions.budget_mib`.
    pub evictions: u64,
}

/// What opening the file found.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MaceStorageOpenReport {
    /// 1 if there was no file (a first start).
    pub missing: i32,
    /// 1 if the file was exactly as a completed write left it (or missing).
    pub intact: i32,
    /// The detected `MaceStorageFormat` (0 when no file was read).
    pub format: i32,
    /// 1 if the file was unreadable and moved to `<path>.corrupt`.
    pub set_aside: i32,
    /// Size of the file read.
    pub file_len: u64,
    /// Entries loaded.
    pub entries: u64,
    /// Entries lost to damage.
    pub entries_dropped: u64,
    /// Bytes that belonged to no kept entry.
    pub bytes_ignored: u64,
}

/// What is wrong with a (pointer, length) argument named `name`, if anything: a NULL pointer with a
/// length, or a length no object can have (a negative number cast to `size_t`, typically).
pub(super) fn bad_bytes(name: &str, ptr: *const u8, len: usize) -> Option<String> {
    if len > isize::MAX as usize {
        Some(format!(
            "the length of {name} is {len}, larger than any buffer can be ({} bytes at most): a negative \
             length converted to size_t?",
            isize::MAX
        ))
    } else if len > 0 && ptr.is_null() {
        Some(format!("{name} is NULL with a non-zero length ({len})"))
    } else {
        None
    }
}

/// Logs what an open found, at the level it deserves: a first start is news, damage is a warning
/// that says what was done about it.
fn log_report(path: &str, r: &Report) {
    if r.missing {
        log(
            MACE_STORAGE_LOG_INFO,
            &format!("no cache file at {path} yet (first start): starting empty; it is created by the first flush"),
        );
        return;
    }
    let fmt = r.format.map_or("unknown format", |f| f.name());
    if r.too_large {
        log(
            MACE_STORAGE_LOG_WARNING,
            &format!(
                "cache file {path} is {} bytes, more than the largest file this store loads: not read \
                 and left as it is; starting empty, and flushes fail until mace_storage_clear",
                r.file_len
            ),
        );
    } else if let Some(aside) = &r.set_aside {
        log(
            MACE_STORAGE_LOG_WARNING,
            &format!(
                "cache file {path} could not be read ({fmt}): moved to {} and started empty; programs will be \
                 rebuilt and cached again",
                aside.display()
            ),
        );
    } else if !r.damage.intact {
        log(
            MACE_STORAGE_LOG_WARNING,
            &format!(
                "cache file {path} was damaged ({fmt}): kept {} entries that passed their checks, dropped {}; \
                 dropped programs are rebuilt and the next flush rewrites the file whole. {}",
                r.entries,
                r.damage.entries_dropped,
                r.damage.notes.join(" ")
            ),
        );
    } else {
        log(
            MACE_STORAGE_LOG_DEBUG,
            &format!("loaded {} entries from {path} ({fmt})", r.entries),
        );
    }
}

fn notes_of(r: &Report) -> CString {
    crate::log::c_text(&r.damage.notes.join("\n"))
}

fn boxed(store: Store) -> *mut MaceStorage {
    let notes = notes_of(store.report());
    Box::into_raw(Box::new(MaceStorage { store, notes }))
}

/// Opens the cache file at `path` (`options` may be NULL for defaults). A missing file opens empty;
/// a damaged one opens with what passed its checks; an unreadable one is moved to `<path>.corrupt`
/// and opens empty. On success `*out` receives a handle for `mace_storage_close`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or valid; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_open(
    path: *const c_char,
    options: *const MaceStorageOptions,
    out: *mut *mut MaceStorage,
) -> MaceStorageStatus {
    guard(0, || {
        if out.is_null() {
            return invalid(0, "out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: `path` is NULL or NUL-terminated per the contract.
        let Some(p) = (unsafe { c_path(path) }) else {
            return invalid(0, "path is NULL");
        };
        if p.as_os_str().is_empty() {
            return invalid(0, "path is empty (\"\"): give the cache file's path");
        }
        // SAFETY: `options` is NULL or points to a valid struct per the contract.
        let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let Some(format) = MaceStorageFormat::writable(o.format) else {
            return invalid(
                0,
                &format!("options.format {} is not a writable format", o.format),
            );
        };
        let Some(verify) = MaceStorageVerify::of(o.verify) else {
            return invalid(
                0,
                &format!(
                    "options.verify {} is not a MaceStorageVerify value",
                    o.verify
                ),
            );
        };
        let mut store = Options {
            format,
            verify,
            read_only: o.read_only != 0,
            lock_timeout: match o.lock_timeout_ms {
                0 => Options::default().lock_timeout,
                u32::MAX => None,
                ms => Some(Duration::from_millis(u64::from(ms))),
            },
            ..Options::default()
        };
        if o.max_file_mib != 0 {
            store.max_file_len = u64::from(o.max_file_mib) << 20;
        }
        if o.budget_mib != 0 {
            store.budget = Some(u64::from(o.budget_mib) << 20);
        }
        let opened = program_cache::open_store(
            &p,
            OpenOptions {
                store,
                crash_guard: (o.crash_guard_ms > 0)
                    .then(|| Duration::from_millis(u64::from(o.crash_guard_ms))),
                check_os_build: o.check_os_build != 0,
            },
        );
        match opened {
            Ok(store) => {
                if o.quiet == 0 {
                    log_report(&p.display().to_string(), store.report());
                }
                // SAFETY: as above.
                unsafe { *out = boxed(store) };
                MACE_STORAGE_OK
            }
            Err(e) => {
                log(MACE_STORAGE_LOG_ERROR, &e.to_string());
                fail(0, &e)
            }
        }
    })
}

/// Caller memory that a read-only store points into instead of copying it.
struct Borrowed {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the memory is immutable and the caller keeps it valid for the store's and its values' life.
unsafe impl Send for Borrowed {}
// SAFETY: as above; it is only ever read.
unsafe impl Sync for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: built from a valid (ptr, len) by `bytes`, kept valid by the caller's contract.
        unsafe { bytes(self.ptr, self.len) }.unwrap_or_default()
    }
}

/// Opens a read-only store over a cache file's bytes in memory (as MACE's `SetOpenCLBinary`), without
/// copying them: `data` must stay valid and unchanged until the store is closed and every value got
/// from it is freed. Data that is no cache gives `MACE_STORAGE_CORRUPT`.
///
/// # Safety
/// `data` points to `len` readable bytes (or `len` is 0) with the lifetime above; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_open_bytes(
    data: *const u8,
    len: usize,
    out: *mut *mut MaceStorage,
) -> MaceStorageStatus {
    guard(0, || {
        if out.is_null() {
            return invalid(0, "out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        if let Some(why) = bad_bytes("data", data, len) {
            return invalid(0, &why);
        }
        match Store::open_bytes(Arc::new(Borrowed { ptr: data, len })) {
            Ok(store) => {
                if !store.report().damage.intact {
                    log_report("<memory>", store.report());
                }
                // SAFETY: as above.
                unsafe { *out = boxed(store) };
                MACE_STORAGE_OK
            }
            Err(e) => {
                set_error(0, &e.to_string());
                MACE_STORAGE_CORRUPT
            }
        }
    })
}

/// Closes a store (NULL is a no-op). Unflushed changes are discarded; values already got stay valid.
///
/// # Safety
/// `s` is NULL or a handle from `mace_storage_open*` not yet closed, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_close(s: *mut MaceStorage) {
    // SAFETY: `s` came from Box::into_raw in `boxed` and is closed once, per the contract.
    unsafe { free_box(s) }
}

/// Runs `f` on the store behind a handle, or fails with INVALID_ARGUMENT for NULL.
pub(super) fn with_store(
    s: *const MaceStorage,
    f: impl FnOnce(&MaceStorage, usize) -> MaceStorageStatus,
) -> MaceStorageStatus {
    // SAFETY: every caller passes NULL or an open handle, per its own contract.
    unsafe { with_handle(s, "storage", f) }
}

/// Sets `key` to a copy of `value` (not durable until `mace_storage_flush`).
///
/// # Safety
/// `s` is NULL or an open handle; `key`/`value` point to `key_len`/`value_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_put(
    s: *mut MaceStorage,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        if let Some(why) =
            bad_bytes("key", key, key_len).or_else(|| bad_bytes("value", value, value_len))
        {
            return invalid(h, &why);
        }
        // SAFETY: the pointers cover the lengths given, per the contract.
        let (Some(k), Some(v)) = (unsafe { bytes(key, key_len) }, unsafe {
            bytes(value, value_len)
        }) else {
            return invalid(h, "key or value is NULL with a non-zero length");
        };
        match st.store.put(k, Value::copy_from(v)) {
            Ok(()) => MACE_STORAGE_OK,
            Err(e) => fail(h, &e),
        }
    })
}

/// Removes `key`: `MACE_STORAGE_NOT_FOUND` if it was absent.
///
/// # Safety
/// `s` is NULL or an open handle; `key` points to `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_remove(
    s: *mut MaceStorage,
    key: *const u8,
    key_len: usize,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        if let Some(why) = bad_bytes("key", key, key_len) {
            return invalid(h, &why);
        }
        // SAFETY: `key` covers `key_len` bytes per the contract.
        let Some(k) = (unsafe { bytes(key, key_len) }) else {
            return invalid(h, "key is NULL with a non-zero length");
        };
        match st.store.remove(k) {
            Ok(true) => MACE_STORAGE_OK,
            Ok(false) => MACE_STORAGE_NOT_FOUND,
            Err(e) => fail(h, &e),
        }
    })
}

/// Removes every entry (not durable until `mace_storage_flush`).
///
/// # Safety
/// `s` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_clear(s: *mut MaceStorage) -> MaceStorageStatus {
    with_store(s, |st, h| match st.store.clear() {
        Ok(()) => MACE_STORAGE_OK,
        Err(e) => fail(h, &e),
    })
}

/// Commits every change durably (atomic: after a crash each entry is old or new). On failure the
/// changes stay in memory for the next flush, and the file keeps its previous content;
/// `MACE_STORAGE_BUSY` if another process held the cache's lock longer than the lock timeout.
///
/// # Safety
/// `s` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_flush(s: *mut MaceStorage) -> MaceStorageStatus {
    with_store(s, |st, h| match st.store.flush() {
        Ok(()) => MACE_STORAGE_OK,
        Err(e) => {
            if !matches!(e, Error::ReadOnly) {
                log(
                    MACE_STORAGE_LOG_WARNING,
                    &format!("{e}: the cache was not saved; changes stay in memory and the next flush retries"),
                );
            }
            fail(h, &e)
        }
    })
}

/// Commits this process's uses of the entries as a use record, when the store has a budget, its
/// file is past half of it and some use is not recorded yet: a process that only reads then still
/// counts for which programs are least recently used. Writes nothing otherwise (nor while changes
/// wait for a flush, which records the uses with them). `*wrote` (if not NULL) is set to 1 when it
/// wrote, else 0. Call it when the process is done with the store, before `mace_storage_close`.
///
/// # Safety
/// `s` is NULL or an open handle; `wrote` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_record_uses(
    s: *mut MaceStorage,
    wrote: *mut i32,
) -> MaceStorageStatus {
    with_store(s, |st, h| match st.store.record_uses() {
        Ok(w) => {
            if !wrote.is_null() {
                // SAFETY: the caller passes NULL or a writable int32_t (checked just above).
                unsafe { *wrote = i32::from(w) };
            }
            MACE_STORAGE_OK
        }
        Err(e) => {
            log(
                MACE_STORAGE_LOG_WARNING,
                &format!("{e}: this process's uses of the cache were not recorded"),
            );
            fail(h, &e)
        }
    })
}

/// The message of this thread's last failed call on `s` ("" if none); NULL `s`: of any call,
/// including a failed open. Valid until this thread's next failed call.
///
/// # Safety
/// `s` is NULL or a handle (it is only compared, never dereferenced).
#[no_mangle]
pub unsafe extern "C" fn mace_storage_last_error(s: *const MaceStorage) -> *const c_char {
    last_error(s as usize)
}

/// Fills `*out` with the store's counters.
///
/// # Safety
/// `s` is NULL or an open handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_stats(
    s: *const MaceStorage,
    out: *mut MaceStorageStats,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        if out.is_null() {
            return invalid(h, "out is NULL");
        }
        let x = st.store.stats();
        let stats = MaceStorageStats {
            entries: x.entries,
            bytes: x.bytes,
            hits: x.hits,
            misses: x.misses,
            entries_salvaged: x.entries_salvaged,
            entries_dropped: x.entries_dropped,
            flushes: x.flushes,
            appends: x.appends,
            rewrites: x.rewrites,
            flush_failures: x.flush_failures,
            merges: x.merges,
            bytes_written: x.bytes_written,
            process_lock: i32::from(x.process_lock),
            evictions: x.evictions,
        };
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = stats };
        MACE_STORAGE_OK
    })
}

/// Fills `*out` with what opening the file found.
///
/// # Safety
/// `s` is NULL or an open handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_open_findings(
    s: *const MaceStorage,
    out: *mut MaceStorageOpenReport,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        if out.is_null() {
            return invalid(h, "out is NULL");
        }
        let r = st.store.report();
        let report = MaceStorageOpenReport {
            missing: i32::from(r.missing),
            intact: i32::from(r.damage.intact),
            format: r.format.map_or(0, |f| MaceStorageFormat::of(f) as i32),
            set_aside: i32::from(r.set_aside.is_some()),
            file_len: r.file_len,
            entries: r.entries,
            entries_dropped: r.damage.entries_dropped,
            bytes_ignored: r.damage.bytes_ignored,
        };
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = report };
        MACE_STORAGE_OK
    })
}

/// What opening the file found, one sentence per line ("" if nothing); owned by `s`, valid until close.
///
/// # Safety
/// `s` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_open_notes(s: *const MaceStorage) -> *const c_char {
    // SAFETY: `s` is NULL or an open handle per the contract.
    match unsafe { s.as_ref() } {
        Some(st) => st.notes.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Non-zero if `key` (`key_len` bytes) holds a program binary, 0 for the metadata that vouches for
/// binaries (MACE's platform info and GPU name, this library's fingerprint and OS build, source
/// hashes): the MACE drop-in marks only binaries in flight. NULL with a non-zero length: 0.
///
/// # Safety
/// `key` covers `key_len` bytes (or `key_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn mace_storage_key_is_program_binary(key: *const u8, key_len: usize) -> i32 {
    // SAFETY: `key` covers `key_len` bytes per the contract.
    match unsafe { bytes(key, key_len) } {
        Some(k) => i32::from(crate::keys::is_program_binary(k)),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(key: &[u8]) -> i32 {
        // SAFETY: `key` covers its length.
        unsafe { mace_storage_key_is_program_binary(key.as_ptr(), key.len()) }
    }

    #[test]
    fn key_classification_through_the_c_abi() {
        assert_eq!(classify(b"conv2d_opencl_kernel -DIN=1"), 1);
        assert_eq!(classify(crate::keys::PLATFORM_INFO_KEY), 0);
        assert_eq!(classify(b"program_hash_ conv2d"), 0);
        assert_eq!(classify(crate::keys::FINGERPRINT_KEY), 0);
        // SAFETY: NULL with a length is the case the function refuses.
        assert_eq!(
            unsafe { mace_storage_key_is_program_binary(std::ptr::null(), 3) },
            0
        );
        // SAFETY: NULL with length 0 is an empty key.
        assert_eq!(
            unsafe { mace_storage_key_is_program_binary(std::ptr::null(), 0) },
            1
        );
    }
}
