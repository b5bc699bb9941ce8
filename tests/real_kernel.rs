//! The store on the real kernel, from outside: several processes (this test binary re-run as a
//! child, selected by the `MACE_STORAGE_REAL_KERNEL` variable) opening, flushing, clearing,
//! compacting and setting aside one file at once; the lock file unlinked and replaced while held;
//! a full filesystem (a 1 MB tmpfs) during an append and during a rewrite; symbolic links at the
//! cache path and at every name the library creates; a lock held by a stopped process; and
//! permission cases run as an unprivileged user.
//!
//! Every check is against the file at the path, read by an independent stock MACE 1.1 reader or by
//! a fresh open: a value whose flush returned success must be there, exact.

mod common;

use mace_storage::format::decode;
use mace_storage::store::{Options, Store, Value, Verify};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "MACE_STORAGE_REAL_KERNEL";

/// The value of `key` at `version`: both encoded in it, so any value read can be checked.
fn make(key: &str, version: u32, len: usize) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(u64::from(version).wrapping_mul(0x9e37_79b9), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut v = Vec::with_capacity(len + 8);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend((0..len).map(|i| (seed >> (i % 57)) as u8 ^ i as u8));
    v
}

/// The version a value claims, if the value is exactly what `make` gives for it.
fn version_of(key: &str, v: &[u8]) -> Option<u32> {
    let version = u32::from_le_bytes(v.get(..4)?.try_into().ok()?);
    let len = u32::from_le_bytes(v.get(4..8)?.try_into().ok()?) as usize;
    (make(key, version, len) == v).then_some(version)
}

/// The entries of the file at `path` as stock MACE 1.1 reads them (empty if absent).
fn on_disk(path: &Path) -> HashMap<String, Vec<u8>> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    match common::stock11_pairs(&bytes) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect(),
        Err(_) => {
            // Between the two steps of an append stock MACE sees no valid trailer; mace-storage
            // reads the state before the append.
            let s = Store::open_bytes(std::sync::Arc::new(bytes)).unwrap();
            s.entries()
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
                .collect()
        }
    }
}

/// Runs this test binary again as a child running `test` with `role`.
fn child(test: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn role() -> Option<Vec<String>> {
    std::env::var(ROLE)
        .ok()
        .map(|r| r.split('|').map(str::to_string).collect())
}

fn wait_ok(mut c: Child, what: &str) {
    let status = c.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

/// A child that opens and closes the store until `stop` exists (each open may set a file aside).
fn opener(path: &str, stop: &str) {
    let mut n = 0u64;
    while !Path::new(stop).exists() {
        let s = Store::open(path, Options::default()).unwrap();
        n += 1;
        drop(s);
    }
    println!("opener: {n} opens");
}

/// A writer child: `rounds` flushes over its own keys, each a new key, an overwrite (a rewrite) or
/// a removal (a compaction); after each successful flush its whole state is recorded in `acks`.
/// With `resume`, it waits for that file to exist (another process's clears are over) and puts its
/// whole state again before the final flush.
fn writer(path: &str, name: &str, rounds: usize, acks: &str, resume: Option<&String>) {
    let s = Store::open(path, Options::default()).unwrap();
    let mut state: HashMap<String, u32> = HashMap::new();
    let mut values: HashMap<String, Vec<u8>> = HashMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acks)
        .unwrap();
    for r in 0..rounds {
        let slot = next() % 12;
        let key = format!("{name}_{slot}");
        match (next() % 4, state.get(&key).copied()) {
            (0, Some(_)) => {
                s.remove(key.as_bytes()).unwrap();
                state.remove(&key);
                values.remove(&key);
            }
            (_, v) => {
                let version = v.unwrap_or(0) + 1;
                let len = 200 + (next() % 3000) as usize;
                let v = make(&key, version, len);
                s.put(key.as_bytes(), Value::from_vec(v.clone())).unwrap();
                values.insert(key.clone(), v);
                state.insert(key, version);
            }
        }
        if s.flush().is_ok() {
            let line: Vec<String> = state.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(log, "{r} {}", line.join(",")).unwrap();
        }
    }
    if let Some(resume) = resume {
        while !Path::new(resume).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        for (k, v) in &values {
            s.put(k.as_bytes(), Value::from_vec(v.clone())).unwrap();
        }
    }
    // The last state is flushed: it must be exactly what the file holds of this writer's keys.
    s.flush().unwrap();
    let line: Vec<String> = state.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(log, "final {}", line.join(",")).unwrap();
}

/// Every writer's last acknowledged state is exactly what the file holds of its keys.
fn verify_writers(path: &Path, acks: &[PathBuf], names: &[&str]) -> usize {
    let got = on_disk(path);
    let mut checked = 0;
    for (ack, name) in acks.iter().zip(names) {
        let text = std::fs::read_to_string(ack).unwrap();
        let last = text
            .lines()
            .last()
            .expect("the writer acknowledged its final flush");
        let (tag, state) = last.split_once(' ').unwrap_or((last, ""));
        assert_eq!(tag, "final", "{name}");
        let want: HashMap<&str, u32> = state
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        for (k, v) in &want {
            let value = got
                .get(*k)
                .unwrap_or_else(|| panic!("acknowledged {k} v{v} missing from the file"));
            assert_eq!(version_of(k, value), Some(*v), "{k}: wrong or torn value");
            checked += 1;
        }
        let prefix = format!("{name}_");
        for k in got.keys().filter(|k| k.starts_with(&prefix)) {
            assert!(want.contains_key(k.as_str()), "{k} was removed but is back");
        }
    }
    checked
}

/// Item 1: a second process opening and closing the file while this one, in 150 rounds, clears and
/// flushes, then puts and flushes (an append to an empty file). Each acknowledged value must be at
/// the path right after its flush; a writer doing overwrites and removals (compactions) runs too,
/// and its final state must be exact.
#[test]
fn open_flush_clear_compaction_and_set_aside_at_once_keep_every_acknowledged_value() {
    const TEST: &str =
        "open_flush_clear_compaction_and_set_aside_at_once_keep_every_acknowledged_value";
    if let Some(r) = role() {
        match r[0].as_str() {
            "opener" => opener(&r[1], &r[2]),
            "writer" => writer(&r[1], &r[2], r[3].parse().unwrap(), &r[4], r.get(5)),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let dir = common::temp_dir("real-kernel-clear");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let stop = dir.path().join("stop");
    let acks = dir.path().join("acks-w");
    let clears_done = dir.path().join("clears-done");
    let p = path.display().to_string();
    let openers: Vec<Child> = (0..2)
        .map(|_| child(TEST, &format!("opener|{p}|{}", stop.display())))
        .collect();
    let w = child(
        TEST,
        &format!(
            "writer|{p}|w|200|{}|{}",
            acks.display(),
            clears_done.display()
        ),
    );
    let started = Instant::now();
    let s = Store::open(&path, Options::default()).unwrap();
    let (mut acked, mut missing) = (0, Vec::new());
    for round in 0..150u32 {
        s.clear().unwrap();
        s.flush().unwrap();
        let key = format!("clear_round_{round}");
        let value = make(&key, round, 500 + round as usize * 13);
        s.put(key.as_bytes(), Value::from_vec(value.clone()))
            .unwrap();
        if s.flush().is_ok() {
            acked += 1;
            if on_disk(&path).get(&key) != Some(&value) {
                missing.push(round);
            }
        }
        // Now and then the file is damaged from outside (replaced by garbage): whoever reads it
        // next, an opener, the writer's flush or this one's, sets it aside under the lock.
        if round % 10 == 9 {
            let garbage = dir.path().join("garbage");
            std::fs::write(&garbage, b"\xffnot a cache file at all").unwrap();
            std::fs::rename(&garbage, &path).unwrap();
        }
    }
    std::fs::write(&clears_done, b"").unwrap();
    wait_ok(w, "writer");
    std::fs::write(&stop, b"").unwrap();
    for o in openers {
        wait_ok(o, "opener");
    }
    let checked = verify_writers(&path, &[acks], &["w"]);
    let corrupt = dir.path().join("mace_cl_compiled_program.bin.corrupt");
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"\xffnot a cache file at all",
        "only garbage is ever set aside"
    );
    println!(
        "clear+append rounds: {acked} acknowledged, {} missing; writer: {checked} values exact; {:.1} s",
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(acked, 150);
    assert!(
        missing.is_empty(),
        "acknowledged then missing in rounds {missing:?}"
    );
}

/// Item 2: two writers flush while the lock file is unlinked and replaced under them, over and
/// over; with an opener at the same time. Every writer's final acknowledged state must be exact.
#[test]
fn lock_file_unlinked_or_replaced_mid_flush_loses_nothing() {
    const TEST: &str = "lock_file_unlinked_or_replaced_mid_flush_loses_nothing";
    if let Some(r) = role() {
        match r[0].as_str() {
            "opener" => opener(&r[1], &r[2]),
            "writer" => writer(&r[1], &r[2], r[3].parse().unwrap(), &r[4], None),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let dir = common::temp_dir("real-kernel-lock");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let lock = dir.path().join("mace_cl_compiled_program.bin.lock");
    let stop = dir.path().join("stop");
    let p = path.display().to_string();
    let names = ["a", "b"];
    let acks: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.path().join(format!("acks-{n}")))
        .collect();
    let started = Instant::now();
    let opener = child(TEST, &format!("opener|{p}|{}", stop.display()));
    let mut writers: Vec<Child> = names
        .iter()
        .zip(&acks)
        .map(|(n, a)| child(TEST, &format!("writer|{p}|{n}|150|{}", a.display())))
        .collect();
    let mut chaos = 0u64;
    loop {
        let done = writers.iter_mut().all(|w| w.try_wait().unwrap().is_some());
        if done {
            break;
        }
        // A cache cleaner: unlink the lock file, or replace it with a new one.
        if chaos % 2 == 0 {
            let _ = std::fs::remove_file(&lock);
        } else {
            let tmp = dir.path().join("cleaner.tmp");
            std::fs::write(&tmp, b"").unwrap();
            let _ = std::fs::rename(&tmp, &lock);
        }
        chaos += 1;
        std::thread::sleep(Duration::from_micros(300));
    }
    for w in writers {
        wait_ok(w, "writer");
    }
    std::fs::write(&stop, b"").unwrap();
    wait_ok(opener, "opener");
    let checked = verify_writers(&path, &acks, &names);
    let d = decode(&std::fs::read(&path).unwrap()).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    println!(
        "lock chaos: {chaos} unlinks/replacements, {checked} acknowledged values exact, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (and the directory removed) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not permitted.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = common::temp_dir("real-kernel-tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                println!(
                    "skipped: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Item 3: a full filesystem during an append and during a rewrite: the flush fails with ENOSPC,
/// the file is byte-for-byte what it was (stock MACE still reads it), nothing is left behind, and
/// the same flush succeeds once there is room.
#[test]
fn enospc_during_append_and_rewrite_leaves_the_file_byte_identical_and_a_retry_succeeds() {
    for rewrite in [false, true] {
        let Some(fs) = Tmpfs::mount("1m") else {
            return;
        };
        let path = fs.path().join("mace_cl_compiled_program.bin");
        let s = Store::open(&path, Options::default()).unwrap();
        let first = make("first", 1, 300_000);
        s.put(b"first", Value::from_vec(first.clone())).unwrap();
        s.flush().unwrap();
        let before = std::fs::read(&path).unwrap();
        let names_before = names_in(fs.path());
        let (key, big) = if rewrite {
            ("first", make("first", 2, 800_000))
        } else {
            ("second", make("second", 1, 800_000))
        };
        s.put(key.as_bytes(), Value::from_vec(big.clone())).unwrap();
        let err = s.flush().expect_err("800 KB more cannot fit in 1 MB");
        assert!(
            err.to_string().contains("os error 28"),
            "rewrite {rewrite}: {err}"
        );
        let after = std::fs::read(&path).unwrap();
        assert!(
            after == before,
            "rewrite {rewrite}: the file changed ({} bytes, was {})",
            after.len(),
            before.len()
        );
        assert!(common::stock11_pairs(&after).is_ok(), "stock MACE CRC");
        assert!(decode(&after).unwrap().damage.intact);
        assert_eq!(names_in(fs.path()), names_before, "left behind");
        fs.resize("4m");
        s.flush().expect("a retry with room succeeds");
        let got = on_disk(&path);
        assert_eq!(got.get(key), Some(&big), "rewrite {rewrite}");
        if !rewrite {
            assert_eq!(got.get("first"), Some(&first));
        }
        drop(s);
        println!(
            "ENOSPC during {}: file unchanged, retry succeeded",
            ["append", "rewrite"][rewrite as usize]
        );
    }
}

/// Item 5: symbolic links at every name the library creates are never followed, and a cache path
/// that is a link is resolved once: appends and rewrites both write the file it points to, and the
/// link stays a link.
#[test]
fn symlinks_at_side_files_are_never_followed_and_a_linked_cache_path_is_written_at_its_target() {
    let dir = common::temp_dir("real-kernel-symlink");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"not yours").unwrap();
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let name = path.display().to_string();
    let mut planted = vec![];
    for suffix in [".lock", ".tmp", ".corrupt", ".crashloop", ".inflight"] {
        planted.push(PathBuf::from(format!("{name}{suffix}")));
    }
    for n in 0..64 {
        planted.push(PathBuf::from(format!(
            "{name}.tmp.{}.{n}",
            std::process::id()
        )));
    }
    for p in &planted {
        std::os::unix::fs::symlink(&victim, p).unwrap();
    }
    let s = Store::open(&path, Options::default()).unwrap();
    s.put(b"a", Value::copy_from(b"first")).unwrap();
    s.flush().unwrap(); // a rewrite (the file is new)
    s.put(b"b", Value::copy_from(b"second")).unwrap();
    s.flush().unwrap(); // an append
    s.put(b"a", Value::copy_from(b"third")).unwrap();
    s.flush().unwrap(); // a rewrite
    drop(s);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    let got = on_disk(&path);
    assert_eq!(got.get("a").map(|v| &v[..]), Some(&b"third"[..]));
    assert_eq!(got.get("b").map(|v| &v[..]), Some(&b"second"[..]));
    // The crash guard's marker is not written through the link at `.inflight`.
    let guarded = mace_storage::program_cache::open_guarded(&path, Options::default()).unwrap();
    guarded
        .store
        .put(b"g", Value::copy_from(b"guarded"))
        .unwrap();
    guarded.store.flush().unwrap();
    drop(guarded);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
    // An unreadable file set aside over a link at `.corrupt`: the link is replaced, not followed.
    std::fs::write(&path, b"\xffnot a cache").unwrap();
    let s = Store::open(&path, Options::default()).unwrap();
    assert!(s.report().set_aside.is_some(), "{:?}", s.report().damage);
    drop(s);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");

    // The cache path is a link (dangling at first): every write lands at the target.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let target = real.join("target.bin");
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink("real/target.bin", &link).unwrap();
    let s = Store::open(&link, Options::default()).unwrap();
    s.put(b"x", Value::copy_from(b"1")).unwrap();
    s.flush().unwrap(); // creates the target
    s.put(b"y", Value::copy_from(b"2")).unwrap();
    s.flush().unwrap(); // appends to it
    s.put(b"x", Value::copy_from(b"3")).unwrap();
    s.flush().unwrap(); // rewrites it
    drop(s);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("real/target.bin")
    );
    let got = on_disk(&target);
    assert_eq!(got.get("x").map(|v| &v[..]), Some(&b"3"[..]));
    assert_eq!(got.get("y").map(|v| &v[..]), Some(&b"2"[..]));
    assert!(
        real.join("target.bin.lock").exists(),
        "locked at the target"
    );
    assert!(!dir.path().join("link.bin.lock").exists());
    let leftovers: Vec<String> = names_in(&real)
        .into_iter()
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Item 14, run as an unprivileged user: a cache file of mode 0444 in a writable directory keeps
/// taking flushes (and keeps its mode), and a lock file owned by another user is still a lock.
#[test]
fn permissions_as_an_unprivileged_user_keep_the_cache_working() {
    const TEST: &str = "permissions_as_an_unprivileged_user_keep_the_cache_working";
    if let Some(r) = role() {
        permission_cases(
            Path::new(&r[1]),
            r.get(2).map(String::as_str) == Some("foreign"),
        );
        return;
    }
    let dir = common::temp_dir("real-kernel-perm");
    // SAFETY-free check of the effective user: `id -u`.
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        println!("not root: running the cases as this user; the foreign-owner case needs root");
        permission_cases(dir.path(), false);
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // A lock file owned by root, readable by all: the unprivileged child can only open it read-only.
    let foreign = dir.path().join("foreign.bin.lock");
    std::fs::write(&foreign, b"").unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
    // One it cannot even open: replaced by one of its own (the directory is writable).
    let sealed = dir.path().join("sealed.bin.lock");
    std::fs::write(&sealed, b"").unwrap();
    std::fs::set_permissions(&sealed, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The test binary may sit under a directory the unprivileged user cannot reach: run a copy.
    let exe = dir.path().join("real_kernel_test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, format!("perm|{}|foreign", dir.path().display()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "as nobody:\n{text}");
    assert!(
        text.contains("permission cases passed as uid 65534"),
        "{text}"
    );
    assert_eq!(std::fs::metadata(&foreign).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&sealed).unwrap().uid(), 65534, "replaced");
}

fn permission_cases(dir: &Path, foreign: bool) {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    // A cache file made read-only (0444) by its owner, in a writable directory.
    let path = dir.join("readonly.bin");
    let s = Store::open(&path, Options::default()).unwrap();
    s.put(b"a", Value::copy_from(b"1")).unwrap();
    s.flush().unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    s.put(b"b", Value::copy_from(b"2")).unwrap(); // would be an append
    s.flush()
        .expect("a flush into a 0444 file in a writable directory");
    s.put(b"a", Value::copy_from(b"3")).unwrap(); // a rewrite
    s.flush().unwrap();
    drop(s);
    let got = on_disk(&path);
    assert_eq!(got.get("a").map(|v| &v[..]), Some(&b"3"[..]));
    assert_eq!(got.get("b").map(|v| &v[..]), Some(&b"2"[..]));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "the file keeps the mode its owner gave it");
    if foreign {
        // `foreign.bin.lock` is owned by root and not writable by this user.
        let path = dir.join("foreign.bin");
        let s = Store::open(&path, Options::default()).unwrap();
        s.put(b"k", Value::copy_from(b"v")).unwrap();
        s.flush()
            .expect("a flush beside a lock file owned by another user");
        s.put(b"k2", Value::copy_from(b"v2")).unwrap();
        s.flush().unwrap();
        drop(s);
        assert_eq!(on_disk(&path).len(), 2);
        // `sealed.bin.lock` is root's, mode 0600.
        let path = dir.join("sealed.bin");
        let s = Store::open(&path, Options::default()).unwrap();
        s.put(b"k", Value::copy_from(b"v")).unwrap();
        s.flush()
            .expect("a flush beside a lock file this user cannot open");
        drop(s);
        assert_eq!(on_disk(&path).len(), 1);
    }
    println!("permission cases passed as uid {uid}");
}

/// Item 11: a process holding the cache's lock is stopped (SIGSTOP). A flush waits at most the lock
/// timeout, fails as busy (`MACE_STORAGE_BUSY` through the C ABI) and keeps the changes; once the
/// holder is gone the next flush commits them.
#[test]
fn a_flush_behind_a_stopped_lock_holder_returns_busy_and_keeps_the_changes() {
    const TEST: &str = "a_flush_behind_a_stopped_lock_holder_returns_busy_and_keeps_the_changes";
    if let Some(r) = role() {
        let fs = mace_storage::io::posix::PosixFs;
        let side = mace_storage::io::side_files::SideFiles::open(&fs, Path::new(&r[1])).unwrap();
        let _held = side.lock(None).unwrap();
        std::fs::write(&r[2], b"locked").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    use mace_storage::ffi::*;
    let dir = common::temp_dir("real-kernel-busy");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let ready = dir.path().join("ready");
    let first = Store::open(&path, Options::default()).unwrap();
    first.put(b"init", Value::copy_from(b"0")).unwrap();
    first.flush().unwrap();
    drop(first);
    let before = std::fs::read(&path).unwrap();
    let mut holder = child(
        TEST,
        &format!("holder|{}|{}", path.display(), ready.display()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the holder never locked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &holder.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    stop("-STOP");
    let s = Store::open(
        &path,
        Options {
            lock_timeout: Some(Duration::from_millis(300)),
            ..Options::default()
        },
    )
    .unwrap();
    s.put(b"k", Value::copy_from(b"v")).unwrap();
    let started = Instant::now();
    let err = s.flush().expect_err("the lock is held");
    let waited = started.elapsed();
    assert!(err.is_busy(), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        s.get(b"k").as_deref(),
        Some(&b"v"[..]),
        "the change is kept"
    );
    // Through the C ABI, with the option in the options struct.
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let o = MaceStorageOptions {
        lock_timeout_ms: 200,
        ..MaceStorageOptions::default()
    };
    let mut h = std::ptr::null_mut();
    // SAFETY: a valid path, options and out pointer.
    assert_eq!(
        unsafe { mace_storage_open(p.as_ptr(), &o, &mut h) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
    // SAFETY: `h` is an open handle; the key and value outlive the call.
    unsafe { mace_storage_put(h, b"c".as_ptr(), 1, b"abi".as_ptr(), 3) };
    let started = Instant::now();
    // SAFETY: `h` is an open handle.
    let st = unsafe { mace_storage_flush(h) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_BUSY);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a busy flush writes nothing"
    );
    stop("-CONT");
    holder.kill().unwrap();
    holder.wait().unwrap();
    s.flush().expect("the holder is gone");
    // SAFETY: `h` is an open handle, closed once.
    unsafe {
        assert_eq!(mace_storage_flush(h), MaceStorageStatus::MACE_STORAGE_OK);
        mace_storage_close(h);
    }
    let got = on_disk(&path);
    assert_eq!(got.get("k").map(|v| &v[..]), Some(&b"v"[..]));
    assert_eq!(got.get("c").map(|v| &v[..]), Some(&b"abi"[..]));
    assert_eq!(got.get("init").map(|v| &v[..]), Some(&b"0"[..]));
    println!("busy after {waited:?} behind a stopped lock holder; committed once it was gone");
}

/// Item 2: temporaries have names of their own; those a dead writer left (and the fixed-name one of
/// older versions) are removed by the next rewrite, those of a running one are not.
#[test]
fn temporaries_of_dead_writers_are_removed_by_the_next_rewrite() {
    let dir = common::temp_dir("real-kernel-temps");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let name = path.display().to_string();
    let stale = [format!("{name}.tmp"), format!("{name}.tmp.{dead}.7")];
    let live = format!("{name}.tmp.{}.999999", std::process::id());
    for p in stale.iter().chain([&live]) {
        std::fs::write(p, b"left behind").unwrap();
    }
    let s = Store::open(&path, Options::default()).unwrap();
    s.put(b"k", Value::copy_from(b"v")).unwrap();
    s.flush().unwrap();
    for p in &stale {
        assert!(
            !Path::new(p).exists(),
            "{p} of a dead writer is still there"
        );
    }
    assert!(
        Path::new(&live).exists(),
        "a running writer's temporary was removed"
    );
    let names = names_in(dir.path());
    assert_eq!(names.len(), 3, "{names:?}"); // the file, its lock, the live temporary
}

/// The lock file's note, through the real lock descriptor: after the rewrite that made the file,
/// it names that file (device and inode, as `stat` gives them), an append leaves it alone, and
/// the next rewrite's new file replaces it.
#[test]
fn the_lock_file_notes_the_file_whose_name_a_directory_sync_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.bin");
    let lock = dir.path().join("cache.bin.lock");
    let note_names = |p: &Path| {
        let note = std::fs::read(&lock).unwrap();
        let m = std::fs::metadata(p).unwrap();
        note.len() == 36
            && note.starts_with(b"MSNAME01")
            && note[8..16] == m.dev().to_le_bytes()
            && note[16..24] == m.ino().to_le_bytes()
    };
    let s = Store::open(&path, Options::default()).unwrap();
    s.put(b"a", Value::from_vec(make("a", 1, 100))).unwrap();
    s.flush().unwrap();
    assert!(note_names(&path));
    let first = std::fs::read(&lock).unwrap();
    drop(s);
    let s = Store::open(&path, Options::default()).unwrap();
    s.put(b"b", Value::from_vec(make("b", 1, 100))).unwrap();
    s.flush().unwrap();
    assert_eq!(s.stats().appends, 1);
    assert_eq!(std::fs::read(&lock).unwrap(), first);
    s.put(b"a", Value::from_vec(make("a", 2, 100))).unwrap();
    s.flush().unwrap();
    assert_eq!(s.stats().rewrites, 1);
    assert!(note_names(&path));
    assert_ne!(std::fs::read(&lock).unwrap(), first);
}

/// The read-ahead note, on the real kernel: a lazily opened store that read a value leaves, when
/// dropped, a note after the name note in the lock file naming that file (device and inode as
/// `stat` gives them) and the record it read; the next lazy open, which reads it ahead, still
/// reads and verifies every value.
#[test]
fn a_lazy_store_leaves_in_the_lock_file_which_records_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.bin");
    let lock = dir.path().join("cache.bin.lock");
    let s = Store::open(&path, Options::default()).unwrap();
    for k in ["a", "b", "c"] {
        s.put(k.as_bytes(), Value::from_vec(make(k, 1, 100_000)))
            .unwrap();
    }
    s.flush().unwrap();
    drop(s);
    let lazy = || {
        let opts = Options {
            verify: Verify::Lazy,
            ..Options::default()
        };
        Store::open(&path, opts).unwrap()
    };
    let s = lazy();
    assert_eq!(s.get(b"b").unwrap().to_vec(), make("b", 1, 100_000));
    drop(s);
    let note = std::fs::read(&lock).unwrap();
    let m = std::fs::metadata(&path).unwrap();
    assert!(note.len() > 64 + 40, "{} bytes", note.len());
    let note = &note[64..];
    assert!(note.starts_with(b"MSREAD01"));
    assert_eq!(note[8..16], m.dev().to_le_bytes());
    assert_eq!(note[16..24], m.ino().to_le_bytes());
    assert_eq!(note[32..36], 1u32.to_le_bytes(), "one record");
    let len = u64::from_le_bytes(note[44..52].try_into().unwrap());
    assert!((100_000..101_000).contains(&len), "the record of b: {len}");
    let s = lazy();
    for k in ["a", "b", "c"] {
        assert_eq!(s.get(k.as_bytes()).unwrap().to_vec(), make(k, 1, 100_000));
    }
}
