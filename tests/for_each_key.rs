//! The keys of a store without its values: `Store::keys` and `mace_storage_for_each_key`, which the
//! MACE drop-in's `Load` uses to index a cache without copying it.

mod common;

use mace_storage::ffi::*;
use mace_storage::io::sim::SimFs;
use mace_storage::store::{Store, Value, Verify};
use std::ffi::{c_void, CString};

const PATH: &str = "data/cache.bin";

fn open_sim(fs: &SimFs, verify: Verify) -> Store {
    common::open_on(fs, PATH, verify).unwrap()
}

fn k(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

#[test]
fn keys_are_the_current_state_sorted_and_read_no_value() {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open_sim(&fs, Verify::Lazy);
    for name in ["zeta", "alpha", "mid", "victim"] {
        s.put(
            &k(name),
            Value::copy_from(format!("the value of {name}").as_bytes()),
        )
        .unwrap();
    }
    s.flush().unwrap();
    // Damage one value in place: the framing stays intact, only its own checksum can tell.
    let mut bytes = fs.read_file(PATH).unwrap();
    let needle = b"the value of victim";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 3] ^= 0x40;
    fs.write_file(PATH, &bytes);

    let s = open_sim(&fs, Verify::Lazy);
    assert!(s.report().damage.intact);
    // Listing the keys verifies nothing: the damaged value's key is there and nothing failed yet.
    assert_eq!(s.keys(), vec![k("alpha"), k("mid"), k("victim"), k("zeta")]);
    let st = s.stats();
    assert_eq!(
        (st.entries_failed_on_use, st.entries_dropped, st.hits),
        (0, 0, 0)
    );
    // Reading the values is what finds the damage; the key then leaves.
    assert_eq!(s.get(b"victim"), None);
    assert_eq!(s.stats().entries_failed_on_use, 1);
    assert_eq!(s.keys(), vec![k("alpha"), k("mid"), k("zeta")]);

    // Changes not flushed yet count: a put, a removal, and a clear.
    s.put(b"beta", Value::copy_from(b"b")).unwrap();
    assert!(s.remove(b"mid").unwrap());
    assert_eq!(s.keys(), vec![k("alpha"), k("beta"), k("zeta")]);
    s.clear().unwrap();
    assert!(s.keys().is_empty());
    s.put(b"after", Value::copy_from(b"a")).unwrap();
    assert_eq!(s.keys(), vec![k("after")]);
    // The same keys as the entries, in the same order.
    let entries: Vec<Vec<u8>> = s.entries().into_iter().map(|(k, _)| k).collect();
    assert_eq!(s.keys(), entries);
}

extern "C" fn collect(key: *const u8, len: usize, user: *mut c_void) -> i32 {
    // SAFETY: the library passes a key valid during the call, and our Vec as user data.
    let (key, out) = unsafe {
        (
            std::slice::from_raw_parts(key, len),
            &mut *(user as *mut Vec<Vec<u8>>),
        )
    };
    out.push(key.to_vec());
    0
}

extern "C" fn stop_after_one(_: *const u8, _: usize, user: *mut c_void) -> i32 {
    // SAFETY: our counter as user data.
    unsafe { *(user as *mut u32) += 1 };
    1
}

#[test]
fn for_each_key_through_the_c_abi() {
    let (_dir, path) = common::temp_path("for-each-key", "cache.bin");
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut s = std::ptr::null_mut();
    // SAFETY: a valid path and out pointer; NULL options are the defaults.
    let st = unsafe { mace_storage_open(p.as_ptr(), std::ptr::null(), &mut s) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    for name in ["zeta", "alpha", "mid"] {
        // SAFETY: an open store and valid buffers.
        let st = unsafe { mace_storage_put(s, name.as_ptr(), name.len(), b"v".as_ptr(), 1) };
        assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    }
    // SAFETY: an open store.
    assert_eq!(
        unsafe { mace_storage_flush(s) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
    // SAFETY: an open store and a valid key.
    unsafe { mace_storage_remove(s, b"mid".as_ptr(), 3) };

    let mut keys: Vec<Vec<u8>> = Vec::new();
    // SAFETY: an open store, a valid visitor and its user data.
    let st = unsafe { mace_storage_for_each_key(s, Some(collect), &mut keys as *mut _ as *mut _) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    assert_eq!(keys, vec![k("alpha"), k("zeta")]);
    let mut visits = 0u32;
    // SAFETY: as above.
    let st = unsafe {
        mace_storage_for_each_key(s, Some(stop_after_one), &mut visits as *mut _ as *mut _)
    };
    assert_eq!((st, visits), (MaceStorageStatus::MACE_STORAGE_OK, 1));
    // No value was read: no get counted.
    let mut stats = MaceStorageStats::default();
    // SAFETY: an open store and a writable struct.
    unsafe { mace_storage_stats(s, &mut stats) };
    assert_eq!((stats.hits, stats.misses), (0, 0));

    // SAFETY: NULL visitor and NULL handle are the cases refused.
    unsafe {
        assert_eq!(
            mace_storage_for_each_key(s, None, std::ptr::null_mut()),
            MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT
        );
        assert_eq!(
            mace_storage_for_each_key(std::ptr::null(), Some(collect), std::ptr::null_mut()),
            MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT
        );
        mace_storage_close(s);
    }
}

#[test]
fn the_visitor_sees_a_snapshot_and_may_use_the_store() {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open_sim(&fs, Verify::Lazy);
    s.put(b"a", Value::copy_from(b"1")).unwrap();
    s.put(b"gone", Value::copy_from(b"x")).unwrap();
    s.flush().unwrap();
    s.put(b"b", Value::copy_from(b"2")).unwrap();
    s.remove(b"gone").unwrap();
    let mut seen = Vec::new();
    s.for_each_key(|key| {
        seen.push(key.to_vec());
        // Writes and reads from inside the visit: the snapshot was taken, no lock is held.
        s.put(b"c", Value::copy_from(b"3")).unwrap();
        assert!(s.get(key).is_some());
        true
    });
    assert_eq!(seen, vec![k("a"), k("b")]);
    assert_eq!(s.keys(), vec![k("a"), k("b"), k("c")]);
    let mut first = Vec::new();
    s.for_each_key(|key| {
        first.push(key.to_vec());
        false
    });
    assert_eq!(first, vec![k("a")]);
}
