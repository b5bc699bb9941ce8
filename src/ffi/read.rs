//! Reading an open store through the C ABI: a value by key (as a handle, or into the caller's
//! buffer) and every entry or key in order.

use super::storage::{bad_bytes, with_store, MaceStorage, MaceStorageValue};
use super::{bytes, free_box, guard, invalid, MaceStorageStatus};
use std::ffi::c_void;
use MaceStorageStatus::*;

/// Looks `key` up; on success `*out` receives a value to free with `mace_storage_value_free`.
/// `MACE_STORAGE_NOT_FOUND` if absent (then `*out` is NULL).
///
/// # Safety
/// `s` is NULL or an open handle; `key` points to `key_len` bytes; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_get(
    s: *const MaceStorage,
    key: *const u8,
    key_len: usize,
    out: *mut *mut MaceStorageValue,
) -> MaceStorageStatus {
    let h = s as usize;
    guard(h, || {
        if out.is_null() {
            return invalid(h, "out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: `s` is NULL or an open handle per the contract.
        let Some(st) = (unsafe { s.as_ref() }) else {
            return invalid(h, "storage is NULL");
        };
        if let Some(why) = bad_bytes("key", key, key_len) {
            return invalid(h, &why);
        }
        // SAFETY: `key` points to `key_len` bytes per the contract.
        let Some(k) = (unsafe { bytes(key, key_len) }) else {
            return invalid(h, "key is NULL with a non-zero length");
        };
        match st.store.get(k) {
            Some(value) => {
                // SAFETY: as above.
                unsafe { *out = Box::into_raw(Box::new(MaceStorageValue { value })) };
                MACE_STORAGE_OK
            }
            None => MACE_STORAGE_NOT_FOUND,
        }
    })
}

/// A buffer for `mace_storage_get_into`: `len` writable bytes, or NULL to give up (with `len` 0,
/// the result is not used: NULL is not giving up).
pub type MaceStorageAllocFn = Option<unsafe extern "C" fn(ctx: *mut c_void, len: usize) -> *mut u8>;

/// Writes the value of `key` into a buffer the caller provides, without a copy kept by the store:
/// when `key` is present, `alloc(ctx, len)` is called once with the value's length and returns the
/// buffer, which the caller owns throughout. A value not read yet (lazily opened store) is read
/// from the file straight into it and checksummed there (each call reads it again); one in memory
/// is copied. `MACE_STORAGE_OK`: the buffer holds the value. `MACE_STORAGE_NOT_FOUND`: absent
/// (`alloc` not called), `alloc` gave up, the value failed its checksum (then dropped from the
/// store, as by `mace_storage_get`, and the buffer holds garbage), or it could not be read.
///
/// # Safety
/// `s` is NULL or an open handle; `key` points to `key_len` bytes; a non-NULL result of `alloc`
/// points to `len` bytes writable until this call returns, overlapping no argument.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_get_into(
    s: *const MaceStorage,
    key: *const u8,
    key_len: usize,
    alloc: MaceStorageAllocFn,
    ctx: *mut c_void,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        let Some(alloc) = alloc else {
            return invalid(h, "alloc is NULL");
        };
        if let Some(why) = bad_bytes("key", key, key_len) {
            return invalid(h, &why);
        }
        // SAFETY: `key` points to `key_len` bytes per the contract.
        let Some(k) = (unsafe { bytes(key, key_len) }) else {
            return invalid(h, "key is NULL with a non-zero length");
        };
        let found = st.store.get_into(k, |len| {
            // SAFETY: the caller's callback, called as its contract says.
            let p = unsafe { alloc(ctx, len) };
            if len == 0 {
                return Some(&mut []);
            }
            if p.is_null() {
                return None;
            }
            // SAFETY: non-NULL, `len` writable bytes for the rest of this call, aliasing nothing
            // else, per the contract.
            Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
        });
        if found {
            MACE_STORAGE_OK
        } else {
            MACE_STORAGE_NOT_FOUND
        }
    })
}

/// The bytes of a value (valid until it is freed) and, if `len` is not NULL, their length.
/// NULL `v` gives NULL and length 0.
///
/// # Safety
/// `v` is NULL or a live value; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_value_data(
    v: *const MaceStorageValue,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: `v` is NULL or a live value per the contract.
    let b: &[u8] = unsafe { v.as_ref() }.map_or(&[], |v| &v.value);
    if !len.is_null() {
        // SAFETY: `len` is non-NULL and writable per the contract.
        unsafe { *len = b.len() };
    }
    if v.is_null() {
        std::ptr::null()
    } else {
        b.as_ptr()
    }
}

/// Frees a value (NULL is a no-op).
///
/// # Safety
/// `v` is NULL or a value from `mace_storage_get` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_value_free(v: *mut MaceStorageValue) {
    // SAFETY: `v` came from Box::into_raw in `mace_storage_get` and is freed once, per the contract.
    unsafe { free_box(v) }
}

/// Called once per entry by `mace_storage_for_each`, in key order; the pointers are valid during the
/// call only. Return 0 to go on, anything else to stop.
pub type MaceStorageVisitor = Option<
    extern "C" fn(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        user_data: *mut c_void,
    ) -> i32,
>;

/// Calls `visit` for every entry, in key order, on a snapshot taken at the call (other threads may
/// change the store meanwhile without affecting it).
///
/// # Safety
/// `s` is NULL or an open handle; `visit` is NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_for_each(
    s: *const MaceStorage,
    visit: MaceStorageVisitor,
    user_data: *mut c_void,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        let Some(visit) = visit else {
            return invalid(h, "visit is NULL");
        };
        for (k, v) in st.store.entries() {
            if visit(k.as_ptr(), k.len(), v.as_ptr(), v.len(), user_data) != 0 {
                break;
            }
        }
        MACE_STORAGE_OK
    })
}

/// Called once per key by `mace_storage_for_each_key`, in key order; the pointer is valid during the
/// call only. Return 0 to go on, anything else to stop.
pub type MaceStorageKeyVisitor =
    Option<extern "C" fn(key: *const u8, key_len: usize, user_data: *mut c_void) -> i32>;

/// Calls `visit` for every key, in key order, on a snapshot taken at the call, without reading,
/// verifying or copying any value: the cost is that of the keys alone. A key listed here may still
/// be missing at `mace_storage_get` (another thread removed it, or its value failed its checksum).
///
/// # Safety
/// `s` is NULL or an open handle; `visit` is NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn mace_storage_for_each_key(
    s: *const MaceStorage,
    visit: MaceStorageKeyVisitor,
    user_data: *mut c_void,
) -> MaceStorageStatus {
    with_store(s, |st, h| {
        let Some(visit) = visit else {
            return invalid(h, "visit is NULL");
        };
        st.store
            .for_each_key(|k| visit(k.as_ptr(), k.len(), user_data) == 0);
        MACE_STORAGE_OK
    })
}
