//! The `open_bytes` target: the C ABI's read-only store over any bytes.

use super::{map_of, within_memory_bound};
use mace_storage::ffi::{
    mace_storage_clear, mace_storage_close, mace_storage_flush, mace_storage_for_each,
    mace_storage_get, mace_storage_open_bytes, mace_storage_open_findings, mace_storage_put,
    mace_storage_set_log_callback, mace_storage_value_data, mace_storage_value_free, MaceStorage,
    MaceStorageFormat, MaceStorageLogLevel, MaceStorageOpenReport, MaceStorageStatus,
    MaceStorageValue,
};
use mace_storage::format::{decode, Format};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};

extern "C" fn ignore_log(_: MaceStorageLogLevel, _: *const c_char, _: *mut c_void) {}

extern "C" fn collect(
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    user: *mut c_void,
) -> i32 {
    // SAFETY: `user` is the `Vec` passed by `check_open_bytes`; the pointers are valid for the call.
    unsafe {
        let out = &mut *(user as *mut Vec<(Vec<u8>, Vec<u8>)>);
        let k = std::slice::from_raw_parts(key, key_len).to_vec();
        let v = std::slice::from_raw_parts(value, value_len).to_vec();
        out.push((k, v));
    }
    0
}

/// Bytes of a value handed out by the C ABI.
unsafe fn value_bytes(v: *const MaceStorageValue) -> Vec<u8> {
    let mut len = 0usize;
    // SAFETY: `v` is a live value; `len` is writable.
    let p = unsafe { mace_storage_value_data(v, &mut len) };
    assert!(!p.is_null());
    // SAFETY: the value's bytes are valid until it is freed.
    unsafe { std::slice::from_raw_parts(p, len) }.to_vec()
}

/// The C ABI over arbitrary bytes: `mace_storage_open_bytes` gives OK exactly when `decode` accepts
/// them (else CORRUPT), never INTERNAL; `for_each` lists the decoded entries in key order; every key
/// is found by `get` with its value, an absent key is NOT_FOUND; the store refuses writes; values stay
/// valid after close.
pub fn check_open_bytes(data: &[u8]) {
    use MaceStorageStatus::*;
    mace_storage_set_log_callback(
        Some(ignore_log),
        std::ptr::null_mut(),
        MaceStorageLogLevel::MACE_STORAGE_LOG_ERROR,
    );
    let decoded = decode(data);
    let mut s: *mut MaceStorage = std::ptr::null_mut();
    // SAFETY: `data` is valid for its length and outlives the store and its values (all freed here).
    let st = within_memory_bound("mace_storage_open_bytes", data.len(), || unsafe {
        mace_storage_open_bytes(data.as_ptr(), data.len(), &mut s)
    });
    let Ok(d) = decoded else {
        assert_eq!(st, MACE_STORAGE_CORRUPT);
        assert!(s.is_null());
        return;
    };
    assert_eq!(st, MACE_STORAGE_OK);
    assert!(!s.is_null());
    let want: BTreeMap<Vec<u8>, Vec<u8>> = map_of(data, &d)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect();

    let mut report = MaceStorageOpenReport::default();
    // SAFETY: `s` is open; `report` is writable.
    assert_eq!(
        unsafe { mace_storage_open_findings(s, &mut report) },
        MACE_STORAGE_OK
    );
    assert_eq!(report.intact, i32::from(d.damage.intact));
    assert_eq!(report.entries, want.len() as u64);
    assert_eq!(report.file_len, data.len() as u64);
    assert_eq!(report.missing, 0);
    assert_eq!(report.set_aside, 0);
    let fmt = match d.format {
        Format::Mace10 => MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_0,
        Format::Mace11 => MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_1,
        Format::Checked10 => MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_0,
        Format::Checked11 => MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_1,
        Format::Empty => MaceStorageFormat::MACE_STORAGE_FORMAT_EMPTY,
    };
    assert_eq!(report.format, fmt as i32);

    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let user = &mut seen as *mut Vec<(Vec<u8>, Vec<u8>)> as *mut c_void;
    // SAFETY: `s` is open; `collect` matches the visitor type and `user` is the Vec above.
    assert_eq!(
        unsafe { mace_storage_for_each(s, Some(collect), user) },
        MACE_STORAGE_OK
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "for_each not in strict key order"
    );
    let seen_map: BTreeMap<Vec<u8>, Vec<u8>> = seen.into_iter().collect();
    assert_eq!(seen_map, want, "for_each differs from decode");

    let mut held: Vec<(*mut MaceStorageValue, Vec<u8>)> = Vec::new();
    for (k, v) in want.iter().take(64) {
        let mut out: *mut MaceStorageValue = std::ptr::null_mut();
        // SAFETY: `s` is open; `k` is valid for its length; `out` is writable.
        assert_eq!(
            unsafe { mace_storage_get(s, k.as_ptr(), k.len(), &mut out) },
            MACE_STORAGE_OK
        );
        // SAFETY: `out` is a live value.
        assert_eq!(unsafe { value_bytes(out) }, *v);
        held.push((out, v.clone()));
    }
    // A key that is not there.
    let mut absent = want.keys().next_back().cloned().unwrap_or_default();
    absent.push(0xff);
    let mut out: *mut MaceStorageValue = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(
        unsafe { mace_storage_get(s, absent.as_ptr(), absent.len(), &mut out) },
        MACE_STORAGE_NOT_FOUND
    );
    assert!(out.is_null());
    // SAFETY: as above; a NULL `out` is an invalid argument, not a crash.
    assert_eq!(
        unsafe { mace_storage_get(s, absent.as_ptr(), absent.len(), std::ptr::null_mut()) },
        MACE_STORAGE_INVALID_ARGUMENT
    );
    // Read-only: writes are refused.
    // SAFETY: `s` is open; the key and value are valid for their lengths.
    unsafe {
        assert_eq!(
            mace_storage_put(s, b"k".as_ptr(), 1, b"v".as_ptr(), 1),
            MACE_STORAGE_READ_ONLY
        );
        assert_eq!(mace_storage_clear(s), MACE_STORAGE_READ_ONLY);
        assert_eq!(mace_storage_flush(s), MACE_STORAGE_READ_ONLY);
        mace_storage_close(s);
    }
    // Values outlive the store.
    for (v, want) in held {
        // SAFETY: each value is live until freed here, once.
        unsafe {
            assert_eq!(value_bytes(v), want);
            mace_storage_value_free(v);
        }
    }
}
