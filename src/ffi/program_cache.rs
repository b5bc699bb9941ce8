//! The OpenCL program cache through the C ABI. OpenCL handles travel as `void *` so the header
//! needs no OpenCL headers.

use super::error::fail;
use super::{
    bytes, c_path, free_box, guard, invalid, set_error, with_handle, MaceStorageStatus,
    MaceStorageValue,
};
use crate::io::posix::PosixFs;
use crate::program_cache::opencl::{Context, Device};
use crate::program_cache::{self, CacheError, CacheOptions, ProgramCache, ReusePolicy};
use std::ffi::{c_char, c_void, CStr};
use MaceStorageStatus::*;

/// An OpenCL program cache over one file. Safe to use from many threads at once; only
/// `mace_program_cache_close` must not race with other calls on the same handle.
pub struct MaceProgramCache {
    cache: ProgramCache,
}

/// How to open a program cache. A zeroed struct (or NULL) means the defaults; new options take the
/// place of `reserved`, so the struct keeps its size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MaceProgramCacheOptions {
    /// The OS build (Android: `ro.build.fingerprint`); a change invalidates every binary. NULL: none.
    pub os_build_id: *const c_char,
    /// The app or model version; a change invalidates every binary. NULL: none.
    pub app_version: *const c_char,
    /// 0 = REUSE_NONE (any GPU/driver change invalidates), 1 = REUSE_SAME_GPU (MACE's driver rules).
    pub reuse_policy: i32,
    /// The OpenCL library to load; NULL: MACE's list (libOpenCL.so, then the Android vendor paths).
    pub opencl_library: *const c_char,
    /// Zero. Room for options to come without changing the struct's size.
    pub reserved: [u64; 6],
}

/// Counters of a program cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MaceProgramCacheStats {
    /// Programs built from a cached binary.
    pub hits: u64,
    /// Programs built from source.
    pub misses: u64,
    /// Cached binaries the driver rejected (evicted, then built from source).
    pub rejected: u64,
    /// Binaries dropped because the GPU, driver, OS build or app version changed.
    pub invalidated: u64,
    /// Binaries evicted because the app died while the driver loaded them.
    pub crash_loop_evictions: u64,
    /// 1 if opening set a crash-looping cache aside.
    pub cache_set_aside: u64,
    /// Total time spent building from source, in nanoseconds.
    pub build_ns: u64,
    /// Total time spent building from cached binaries, in nanoseconds.
    pub load_ns: u64,
}

/// A C string argument as UTF-8 (lossy); `None` for NULL.
///
/// # Safety
/// `p` is NULL or NUL-terminated.
unsafe fn text(p: *const c_char) -> Option<String> {
    // SAFETY: per the contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Opens the program cache at `path`: evicts the binary a crashed previous run left in the driver,
/// sets a crash-looping cache aside, and opens the store (missing: empty; damaged: salvaged).
///
/// # Safety
/// `path` is NULL or NUL-terminated; `options` is NULL or valid with NULL or NUL-terminated strings;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_open(
    path: *const c_char,
    options: *const MaceProgramCacheOptions,
    out: *mut *mut MaceProgramCache,
) -> MaceStorageStatus {
    guard(0, || {
        if out.is_null() {
            return invalid(0, "out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: per the contract.
        let Some(p) = (unsafe { c_path(path) }) else {
            return invalid(0, "path is NULL");
        };
        let mut opts = CacheOptions::default();
        // SAFETY: NULL or a valid struct per the contract.
        if let Some(o) = unsafe { options.as_ref() } {
            // SAFETY: the strings are NULL or NUL-terminated per the contract.
            unsafe {
                opts.os_build_id = text(o.os_build_id).unwrap_or_default();
                opts.app_version = text(o.app_version).unwrap_or_default();
                opts.opencl_library = text(o.opencl_library);
            }
            opts.policy = match o.reuse_policy {
                0 => ReusePolicy::None,
                1 => ReusePolicy::SameGpu,
                n => return invalid(0, &format!("reuse_policy {n} is neither 0 nor 1")),
            };
        }
        match ProgramCache::open(&p, opts) {
            Ok(cache) => {
                // SAFETY: as above.
                unsafe { *out = Box::into_raw(Box::new(MaceProgramCache { cache })) };
                MACE_STORAGE_OK
            }
            Err(e) => fail(0, &CacheError::Store(e)),
        }
    })
}

/// Closes a program cache (NULL is a no-op); programs already built stay the caller's.
///
/// # Safety
/// `c` is NULL or an open handle not used by another thread.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_close(c: *mut MaceProgramCache) {
    // SAFETY: `c` came from Box::into_raw in `mace_program_cache_open` and is closed once.
    unsafe { free_box(c) }
}

/// The arguments every program call shares, checked.
struct ProgramArgs<'a> {
    key: String,
    source: &'a [u8],
    options: String,
}

/// # Safety
/// Pointers as documented on the public functions.
unsafe fn program_args<'a>(
    h: usize,
    key: *const c_char,
    source: *const c_char,
    source_len: usize,
    options: *const c_char,
) -> Result<ProgramArgs<'a>, MaceStorageStatus> {
    // SAFETY: per the public functions' contracts.
    let Some(key) = (unsafe { text(key) }) else {
        return Err(invalid(h, "program_key is NULL"));
    };
    // SAFETY: per the contract, `source` covers `source_len` bytes.
    let Some(source) = (unsafe { bytes(source.cast(), source_len) }) else {
        return Err(invalid(h, "source is NULL with a non-zero length"));
    };
    Ok(ProgramArgs {
        key,
        source,
        // SAFETY: per the contract.
        options: unsafe { text(options) }.unwrap_or_default(),
    })
}

fn with_cache(
    c: *const MaceProgramCache,
    f: impl FnOnce(&ProgramCache, usize) -> MaceStorageStatus,
) -> MaceStorageStatus {
    // SAFETY: every caller passes NULL or an open handle, per its contract.
    unsafe { with_handle(c, "cache", |pc, h| f(&pc.cache, h)) }
}

/// Builds a program for one device: from the cached binary if a valid one exists (a binary the
/// driver rejects is evicted and counted), else from `source` (`source_len` bytes), storing the new
/// binary for next time. On success `*out_cl_program` is a built `cl_program` the caller releases.
///
/// # Safety
/// `c` is NULL or open; `cl_context`/`cl_device_id` are valid handles of the OpenCL library this
/// cache loads; strings NULL or NUL-terminated; `source` covers `source_len` bytes; `out_cl_program`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_build(
    c: *mut MaceProgramCache,
    cl_context: *mut c_void,
    cl_device_id: *mut c_void,
    program_key: *const c_char,
    source: *const c_char,
    source_len: usize,
    build_options: *const c_char,
    out_cl_program: *mut *mut c_void,
) -> MaceStorageStatus {
    with_cache(c, |pc, h| {
        if out_cl_program.is_null() || cl_context.is_null() || cl_device_id.is_null() {
            return invalid(h, "cl_context, cl_device_id or out_cl_program is NULL");
        }
        // SAFETY: writable per the contract.
        unsafe { *out_cl_program = std::ptr::null_mut() };
        // SAFETY: per the contract.
        let a = match unsafe { program_args(h, program_key, source, source_len, build_options) } {
            Ok(a) => a,
            Err(s) => return s,
        };
        // SAFETY: valid handles of the loaded library, per the contract.
        let (ctx, dev) = unsafe {
            (
                Context::from_raw(cl_context),
                Device::from_raw(cl_device_id),
            )
        };
        match pc.build(ctx, dev, &a.key, a.source, &a.options) {
            Ok(p) => {
                // SAFETY: writable per the contract.
                unsafe { *out_cl_program = p.into_raw() };
                MACE_STORAGE_OK
            }
            Err(e) => fail(h, &e),
        }
    })
}

/// Stores a binary (prebuilt, or from a tool) exactly where `mace_program_cache_build` looks for
/// this key, source, options and device, and flushes it.
///
/// # Safety
/// As `mace_program_cache_build`; `binary` covers `binary_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_put_binary(
    c: *mut MaceProgramCache,
    cl_device_id: *mut c_void,
    program_key: *const c_char,
    source: *const c_char,
    source_len: usize,
    build_options: *const c_char,
    binary: *const u8,
    binary_len: usize,
) -> MaceStorageStatus {
    with_cache(c, |pc, h| {
        if cl_device_id.is_null() {
            return invalid(h, "cl_device_id is NULL");
        }
        // SAFETY: per the contract.
        let a = match unsafe { program_args(h, program_key, source, source_len, build_options) } {
            Ok(a) => a,
            Err(s) => return s,
        };
        // SAFETY: per the contract.
        let Some(bin) = (unsafe { bytes(binary, binary_len) }) else {
            return invalid(h, "binary is NULL with a non-zero length");
        };
        // SAFETY: a valid device handle, per the contract.
        let dev = unsafe { Device::from_raw(cl_device_id) };
        match pc.put_binary(dev, &a.key, a.source, &a.options, bin) {
            Ok(()) => MACE_STORAGE_OK,
            Err(e) => fail(h, &e),
        }
    })
}

/// The binary `mace_program_cache_build` would use for this key, source, options and device:
/// `MACE_STORAGE_NOT_FOUND` if none is valid. Free `*out` with `mace_storage_value_free`.
///
/// # Safety
/// As `mace_program_cache_build`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_get_binary(
    c: *mut MaceProgramCache,
    cl_device_id: *mut c_void,
    program_key: *const c_char,
    source: *const c_char,
    source_len: usize,
    build_options: *const c_char,
    out: *mut *mut MaceStorageValue,
) -> MaceStorageStatus {
    with_cache(c, |pc, h| {
        if out.is_null() || cl_device_id.is_null() {
            return invalid(h, "cl_device_id or out is NULL");
        }
        // SAFETY: writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: per the contract.
        let a = match unsafe { program_args(h, program_key, source, source_len, build_options) } {
            Ok(a) => a,
            Err(s) => return s,
        };
        // SAFETY: a valid device handle, per the contract.
        let dev = unsafe { Device::from_raw(cl_device_id) };
        match pc.get_binary(dev, &a.key, a.source, &a.options) {
            Ok(Some(value)) => {
                // SAFETY: writable per the contract.
                unsafe { *out = Box::into_raw(Box::new(MaceStorageValue { value })) };
                MACE_STORAGE_OK
            }
            Ok(None) => MACE_STORAGE_NOT_FOUND,
            Err(e) => fail(h, &e),
        }
    })
}

/// Declares the app healthy (it ran with the binaries loaded so far): ends any crash-loop count.
///
/// # Safety
/// `c` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_mark_healthy(c: *mut MaceProgramCache) {
    with_cache(c, |pc, _| {
        pc.mark_healthy();
        MACE_STORAGE_OK
    });
}

/// Fills `*out` with the cache's counters.
///
/// # Safety
/// `c` is NULL or an open handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_stats(
    c: *const MaceProgramCache,
    out: *mut MaceProgramCacheStats,
) -> MaceStorageStatus {
    with_cache(c, |pc, h| {
        if out.is_null() {
            return invalid(h, "out is NULL");
        }
        let s = pc.stats();
        let stats = MaceProgramCacheStats {
            hits: s.hits,
            misses: s.misses,
            rejected: s.rejected,
            invalidated: s.invalidated,
            crash_loop_evictions: s.crash_loop_evictions,
            cache_set_aside: s.cache_set_aside,
            build_ns: s.build_ns,
            load_ns: s.load_ns,
        };
        // SAFETY: writable per the contract.
        unsafe { *out = stats };
        MACE_STORAGE_OK
    })
}

/// Fills `*out` with what the cache's crash-loop guard did: marks of dead processes found at open,
/// evictions, marks of running processes left alone, and this process's marks.
///
/// # Safety
/// `c` is NULL or an open handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_guard_stats(
    c: *const MaceProgramCache,
    out: *mut super::MaceStorageGuardStats,
) -> MaceStorageStatus {
    with_cache(c, |pc, h| {
        if out.is_null() {
            return invalid(h, "out is NULL");
        }
        // SAFETY: writable per the contract.
        unsafe { *out = super::MaceStorageGuardStats::of(pc.guard().stats()) };
        MACE_STORAGE_OK
    })
}

/// Sets the cache file at `path` aside (as `<path>.crashloop`) so the next start rebuilds every
/// program locally: for apps whose execution failed after loading cached binaries. A missing file
/// is not an error.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mace_program_cache_reset(path: *const c_char) -> MaceStorageStatus {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(p) = (unsafe { c_path(path) }) else {
            return invalid(0, "path is NULL");
        };
        match program_cache::set_aside(&PosixFs, &p) {
            Ok(to) => {
                crate::log::warn(&format!(
                    "program cache reset: moved {} to {}; programs are rebuilt from source",
                    p.display(),
                    to.display()
                ));
                MACE_STORAGE_OK
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MACE_STORAGE_OK,
            Err(e) => {
                set_error(0, &format!("cannot set {} aside: {e}", p.display()));
                MACE_STORAGE_IO_ERROR
            }
        }
    })
}
