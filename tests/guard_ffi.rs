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

/// The guard stats of this process's guard of `path`.
fn guard_stats(path: &Path) -> MaceStorageGuardStats {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut out = MaceStorageGuardStats::default();
    // SAFETY: a valid path and out pointer.
    let st = unsafe { mace_storage_guard_stats(p.as_ptr(), &mut out) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    out
}

/// The markers next to `path` (`<file>.inflight.<pid>-<start>-<n>`), with their contents.
fn markers(path: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = path.parent().unwrap();
    let prefix = format!("{}.inflight.", path.file_name().unwrap().to_str().unwrap());
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let bytes = std::fs::read(dir.join(&name)).ok()?;
            name.starts_with(&prefix).then_some((name, bytes))
        })
        .collect();
    v.sort();
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Waits up to 30 s for `file` to exist (a child's sign that it got where it should).
fn wait_for(file: &Path) {
    for _ in 0..3000 {
        if file.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", file.display());
}

/// Runs this test binary as a child in `role`, not waiting for it.
fn spawn_child(test: &str, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(ROLE, role)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_normal_exit_right_after_reading_a_binary_evicts_nothing() {
    if let Ok(role) = std::env::var(ROLE) {
        // Reads a binary, hands it to the "driver", and exits normally at once (well within the
        // window): the exit ends the mark.
        let r: Vec<&str> = role.split('|').collect();
        let s = open(Path::new(r[0]), &options(60_000, false));
        let p = CString::new(r[0]).unwrap();
        // SAFETY: valid path and key.
        let st = unsafe { mace_storage_guard_mark(p.as_ptr(), r[1].as_ptr(), r[1].len()) };
        assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
        let _ = s;
        std::process::exit(0);
    }
    let test = "a_normal_exit_right_after_reading_a_binary_evicts_nothing";
    let (_dir, path) = common::temp_path("exit", "mace_cl_compiled_program.bin");
    let s = open(&path, &options(0, false));
    put_all(s, &["conv_2d -DA", "eltwise -DB"]);
    // SAFETY: an open store, closed once.
    unsafe { mace_storage_close(s) };
    let p = path.to_str().unwrap();
    for i in 0..10 {
        let key = ["conv_2d -DA", "eltwise -DB"][i % 2];
        assert!(child(test, &format!("{p}|{key}"), &[]));
        assert!(markers(&path).is_empty(), "{:?}", markers(&path));
        let s = open(&path, &options(60_000, false));
        assert_eq!(keys(s), ["conv_2d -DA", "eltwise -DB"], "after exit {i}");
        // SAFETY: as above.
        unsafe { mace_storage_close(s) };
    }
    let g = guard_stats(&path);
    assert_eq!((g.dead_marks, g.evictions), (0, 0), "{g:?}");
}

/// Gives the next new process of this pid namespace the pid `pid` (root only: writes
/// `/proc/sys/kernel/ns_last_pid`); `Err` says why it cannot.
fn spawn_with_pid(pid: u32) -> Result<std::process::Child, String> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1))
            .map_err(|e| format!("cannot write /proc/sys/kernel/ns_last_pid: {e}"))?;
        let mut c = Command::new("sleep").arg("60").spawn().unwrap();
        if c.id() == pid {
            return Ok(c);
        }
        // Another process took it first: try again.
        let _ = c.kill();
        let _ = c.wait();
    }
    Err(format!(
        "pid {pid} was taken by other processes 50 times in a row"
    ))
}

#[test]
fn a_crash_is_found_even_when_its_pid_now_runs_another_process() {
    if let Ok(role) = std::env::var(ROLE) {
        let r: Vec<&str> = role.split('|').collect();
        die_after_mark(r[0], r[1], 0, 60_000);
    }
    let test = "a_crash_is_found_even_when_its_pid_now_runs_another_process";
    let (_dir, path) = common::temp_path("pidreuse", "mace_cl_compiled_program.bin");
    let s = open(&path, &options(0, false));
    put_all(s, &["conv_2d -DA", "eltwise -DB"]);
    // SAFETY: an open store, closed once.
    unsafe { mace_storage_close(s) };
    let mut dying = spawn_child(test, &format!("{}|eltwise -DB", path.to_str().unwrap()));
    let pid = dying.id();
    assert!(!dying.wait().unwrap().success());
    assert_eq!(markers(&path).len(), 1);
    // An unrelated process now runs under the dead process's pid.
    let mut unrelated = match spawn_with_pid(pid) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped: {why} (needs root in the pid namespace)");
            return;
        }
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let s = open(&path, &options(60_000, false));
    let kept = keys(s);
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    assert_eq!(kept, ["conv_2d -DA"]);
    let g = guard_stats(&path);
    assert_eq!((g.dead_marks, g.evictions), (1, 1), "{g:?}");
    assert!(markers(&path).is_empty());
}

#[test]
fn a_process_killed_in_the_driver_is_found_while_another_keeps_its_own_mark() {
    if let Ok(role) = std::env::var(ROLE) {
        // path|key|ready file|opens: open with the guard `opens` times (closing each), mark `key`,
        // say so, and stay in the "driver" until killed.
        let r: Vec<&str> = role.split('|').collect();
        let p = Path::new(r[0]);
        let mut s = open(p, &options(60_000, false));
        for _ in 1..r[3].parse::<u32>().unwrap() {
            // SAFETY: an open store, closed once.
            unsafe { mace_storage_close(s) };
            s = open(p, &options(60_000, false));
        }
        let c = CString::new(r[0]).unwrap();
        // SAFETY: valid path and key.
        let st = unsafe { mace_storage_guard_mark(c.as_ptr(), r[1].as_ptr(), r[1].len()) };
        assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
        std::fs::write(r[2], b"").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = s;
        std::process::abort();
    }
    let test = "a_process_killed_in_the_driver_is_found_while_another_keeps_its_own_mark";
    let (dir, path) = common::temp_path("twoproc", "mace_cl_compiled_program.bin");
    let s = open(&path, &options(0, false));
    put_all(s, &["a-prog", "b-prog", "c-prog"]);
    // SAFETY: an open store, closed once.
    unsafe { mace_storage_close(s) };
    let p = path.to_str().unwrap();
    let (ready_a, ready_b) = (dir.path().join("a.ready"), dir.path().join("b.ready"));
    let mut a = spawn_child(test, &format!("{p}|a-prog|{}|1", ready_a.display()));
    wait_for(&ready_a);
    // B opens and closes the cache twice while A is in the driver, then marks its own binary.
    let mut b = spawn_child(test, &format!("{p}|b-prog|{}|2", ready_b.display()));
    wait_for(&ready_b);
    assert_eq!(markers(&path).len(), 2);
    a.kill().unwrap();
    a.wait().unwrap();
    let s = open(&path, &options(60_000, false));
    let kept = keys(s);
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
    let g = guard_stats(&path);
    let left = markers(&path);
    b.kill().unwrap();
    b.wait().unwrap();
    // A's binary is evicted; B's mark (B still runs) is untouched and its binary kept.
    assert_eq!(kept, ["b-prog", "c-prog"]);
    assert_eq!(
        (g.dead_marks, g.evictions, g.live_marks),
        (1, 1, 1),
        "{g:?}"
    );
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].0.contains(&format!(".inflight.{}-", b.id())));
    assert!(contains(&left[0].1, b"b-prog"));
    // Once B is killed too, the next start finds its mark.
    let s = open(&path, &options(60_000, false));
    assert_eq!(keys(s), ["c-prog"]);
    // SAFETY: as above.
    unsafe { mace_storage_close(s) };
    assert!(markers(&path).is_empty());
}
