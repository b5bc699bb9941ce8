//! The C ABI's crash-loop guard and OS-build check, as the MACE drop-in uses them: real processes
//! that die right after reading an entry, or long after, and OS builds that change.

mod common;

use mace_storage::ffi::*;
use std::ffi::CString;
use std::path::Path;
use std::process::Command;

const ROLE: &str = "MACE_STORAGE_TEST_GUARD_ROLE";

fn options(guard_ms: u32, os: bool) -> MaceStorageOptions {
    MaceStorageOptions {
        crash_guard_ms: guard_ms,
        check_os_build: i32::from(os),
        ..MaceStorageOptions::default()
    }
}

/// Opens `path` through the C ABI.
fn open(path: &Path, o: &MaceStorageOptions) -> *mut MaceStorage {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut s = std::ptr::null_mut();
    // SAFETY: valid path, options and out pointer.
    let st = unsafe { mace_storage_open(p.as_ptr(), o, &mut s) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    s
}

fn keys(s: *mut MaceStorage) -> Vec<String> {
    extern "C" fn visit(
        k: *const u8,
        n: usize,
        _: *const u8,
        _: usize,
        user: *mut std::ffi::c_void,
    ) -> i32 {
        // SAFETY: the store passes a valid key and our Vec as user data.
        let (k, v) = unsafe {
            (
                std::slice::from_raw_parts(k, n),
                &mut *(user as *mut Vec<String>),
            )
        };
        v.push(String::from_utf8_lossy(k).into_owned());
        0
    }
    let mut out: Vec<String> = Vec::new();
    // SAFETY: an open store, a valid visitor and user pointer.
    unsafe { mace_storage_for_each(s, Some(visit), &mut out as *mut Vec<String> as *mut _) };
    out
}

fn put_all(s: *mut MaceStorage, names: &[&str]) {
    for n in names {
        // SAFETY: an open store and valid buffers.
        unsafe { mace_storage_put(s, n.as_ptr(), n.len(), b"binary".as_ptr(), 6) };
    }
    // SAFETY: an open store.
    assert_eq!(
        unsafe { mace_storage_flush(s) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
}

/// Runs this test binary as a child in `role`, returning whether it exited successfully.
fn child(test: &str, role: &str, env: &[(&str, &str)]) -> bool {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([test, "--exact", "--nocapture"])
        .env(ROLE, role)
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.status().unwrap().success()
}

/// The drop-in's pattern: open with the guard, read a key, mark it, and the driver "crashes".
fn die_after_mark(path: &str, key: &str, wait_ms: u64, window_ms: u32) -> ! {
    let s = open(Path::new(path), &options(window_ms, false));
    let p = CString::new(path).unwrap();
    // SAFETY: valid path and key.
    let st = unsafe { mace_storage_guard_mark(p.as_ptr(), key.as_ptr(), key.len()) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    let _ = s;
    std::process::abort();
}

#[test]
fn a_death_right_after_reading_a_binary_evicts_it_and_a_later_one_nothing() {
    if let Ok(role) = std::env::var(ROLE) {
        let r: Vec<&str> = role.split('|').collect();
        die_after_mark(r[0], r[1], r[2].parse().unwrap(), r[3].parse().unwrap());
    }
    let test = "a_death_right_after_reading_a_binary_evicts_it_and_a_later_one_nothing";
    let (_dir, path) = common::temp_path("guard", "mace_cl_compiled_program.bin");
    let s = open(&path, &options(0, false));
    put_all(s, &["conv_2d -DA", "eltwise -DB", "pooling -DC"]);
    // SAFETY: an open store, closed once.
    unsafe { mace_storage_close(s) };
    let p = path.to_str().unwrap();
    // Killed within the window after reading "eltwise": only that entry is lost.
    assert!(!child(test, &format!("{p}|eltwise -DB|0|3000"), &[]));
    let s = open(&path, &options(3000, false));
    assert_eq!(keys(s), ["conv_2d -DA", "pooling -DC"]);
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
    // Killed long after its last read (the window passed): nothing is lost.
    assert!(!child(test, &format!("{p}|pooling -DC|700|150"), &[]));
    let s = open(&path, &options(3000, false));
    assert_eq!(keys(s), ["conv_2d -DA", "pooling -DC"]);
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
}

#[test]
fn three_deaths_in_a_row_set_the_cache_aside() {
    if let Ok(role) = std::env::var(ROLE) {
        let r: Vec<&str> = role.split('|').collect();
        die_after_mark(r[0], r[1], 0, 3000);
    }
    let test = "three_deaths_in_a_row_set_the_cache_aside";
    let (_dir, path) = common::temp_path("crashloop", "mace_cl_compiled_program.bin");
    let s = open(&path, &options(0, false));
    put_all(s, &["a", "b", "c", "d", "e"]);
    // SAFETY: an open store, closed once.
    unsafe { mace_storage_close(s) };
    let p = path.to_str().unwrap();
    for key in ["a", "b", "c"] {
        assert!(!child(test, &format!("{p}|{key}"), &[]));
    }
    // The third consecutive death: the file itself is set aside and the cache starts empty.
    let s = open(&path, &options(3000, false));
    assert!(keys(s).is_empty());
    assert!(path.with_extension("bin.crashloop").exists());
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
}

#[test]
fn an_os_build_change_drops_the_cache_and_the_same_build_keeps_it() {
    if let Ok(role) = std::env::var(ROLE) {
        let r: Vec<&str> = role.split('|').collect();
        let s = open(Path::new(r[0]), &options(0, true));
        let got = keys(s);
        let want: Vec<&str> = if r[1].is_empty() {
            vec![]
        } else {
            r[1].split(',').collect()
        };
        assert_eq!(
            got,
            want,
            "keys after open with OS build {:?}",
            std::env::var("MACE_STORAGE_OS_BUILD_ID")
        );
        if r.len() > 2 {
            put_all(s, &r[2].split(',').collect::<Vec<_>>());
        }
        // SAFETY: an open store, closed once.
        unsafe { mace_storage_close(s) };
        return;
    }
    let test = "an_os_build_change_drops_the_cache_and_the_same_build_keeps_it";
    let (_dir, path) = common::temp_path("osbuild", "cache.bin");
    let p = path.to_str().unwrap();
    let os = |id| [("MACE_STORAGE_OS_BUILD_ID", id)];
    assert!(child(
        test,
        &format!("{p}|mace_storage_os_build_id|prog1,prog2"),
        &os("build-1")
    ));
    assert!(child(
        test,
        &format!("{p}|mace_storage_os_build_id,prog1,prog2"),
        &os("build-1")
    ));
    // An OTA: the binaries are dropped; only the new build id is recorded.
    assert!(child(
        test,
        &format!("{p}|mace_storage_os_build_id"),
        &os("build-2")
    ));
}
