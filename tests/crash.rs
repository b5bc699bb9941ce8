//! Crash-state enumeration (the ALICE method) and the I/O-error loop (SQLite's method) over the
//! simulated filesystem: every call of every flush path is a crash point (and, in the first rounds,
//! every call fails after a short write and the process dies at each call of the rollback that
//! follows), and at each one every unsynced write is kept, dropped or torn at 512-byte sectors in
//! turn; every call of open, flush and
//! compaction fails once, persistently, and (writes) after writing half their bytes, with EIO,
//! ENOSPC and EINTR; and every flush runs out of disk space at every point it can.
//!
//! `MACE_STORAGE_CRASH_SCALE=N` multiplies the data (and so the states) for a larger run;
//! `MACE_STORAGE_CRASH_STRIDE=N` crashes at every Nth point of each flush only, another one in each
//! round (scripts/cross.sh: under qemu-user, where the whole enumeration is the longest test, while
//! the native run checks every point).

mod common;

use mace_storage::format::PLATFORM_INFO_KEY;
use mace_storage::io::sim::{FailKind, Fate, SimFs, Unsynced, UnsyncedInfo};
use mace_storage::store::{Options, Store, Value, Verify};
use std::collections::BTreeMap;

const PATH: &str = "data/mace_cl_compiled_program.bin";
/// Rounds per scenario (each with other sizes and keys), times the scale.
const ROUNDS: usize = 24;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn scale() -> usize {
    env_number("MACE_STORAGE_CRASH_SCALE")
}

fn stride() -> usize {
    env_number("MACE_STORAGE_CRASH_STRIDE")
}

/// The positive number in the environment variable `name`, or 1.
fn env_number(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

fn open(fs: &SimFs) -> Result<Store, mace_storage::store::Error> {
    open_verified(fs, Verify::Lazy)
}

fn open_verified(fs: &SimFs, verify: Verify) -> Result<Store, mace_storage::store::Error> {
    common::open_on(fs, PATH, verify)
}

/// What a recovery open finds, read three ways that must agree: a lazily verified open's `get` of
/// every key of `keys` (each value verified on that first get), the same store's `entries`, and an
/// eagerly verified open of the same state.
fn recovered(fs: &SimFs, keys: &[Vec<u8>]) -> Result<Map, String> {
    let before = fs.snapshot();
    let lazy = open(fs).map_err(|e| e.to_string())?;
    let unverified_len = lazy.len();
    let by_get: Map = keys
        .iter()
        .filter_map(|k| lazy.get(k).map(|v| (k.clone(), v.to_vec())))
        .collect();
    let by_entries = contents(&lazy);
    let eager = open_verified(&before, Verify::Eager).map_err(|e| e.to_string())?;
    let eagerly = contents(&eager);
    if by_get != by_entries || by_get != eagerly || unverified_len != by_get.len() {
        return Err(format!(
            "lazy get {} entries, lazy entries {}, lazy len {unverified_len}, eager {}",
            by_get.len(),
            by_entries.len(),
            eagerly.len()
        ));
    }
    Ok(by_get)
}

fn contents(s: &Store) -> Map {
    s.entries()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

fn value(tag: u8, i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u8).wrapping_mul(31) ^ tag ^ i as u8)
        .collect()
}

/// A cache like MACE's: platform info, binaries of a few KB, hashes.
fn fill(s: &Store, tag: u8, range: std::ops::Range<usize>) {
    let n = scale() * 2;
    s.put(
        PLATFORM_INFO_KEY,
        Value::copy_from(b"pocl, FULL_PROFILE, OpenCL 3.0, 1.1"),
    )
    .unwrap();
    for i in range {
        s.put(
            format!("prog_{i} -DX").as_bytes(),
            Value::from_vec(value(tag, i, 1500 * n + i * 97)),
        )
        .unwrap();
        s.put(
            format!("program_hash_ prog_{i} -DX").as_bytes(),
            Value::from_vec(value(tag, i, 20)),
        )
        .unwrap();
    }
}

/// Keeps the store's reports of what it handled (thousands of evictions and failed first reads
/// here, each one expected) out of the test output; what these tests check is the state on disk.
fn quiet_logs() {
    mace_storage::log::set_sink(None, mace_storage::log::Level::MACE_STORAGE_LOG_ERROR);
}

/// A committed starting state on a fresh filesystem.
fn base(setup: impl Fn(&Store)) -> (SimFs, Map) {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open(&fs).unwrap();
    setup(&s);
    s.flush().unwrap();
    let old = contents(&s);
    (fs.crash_keep_all(), old)
}

/// One way a flush can go: the store to flush (opened and changed on `fs`) and the state it commits.
struct Scenario {
    name: &'static str,
    setup: fn(&Store, usize),
    /// Opens the store(s) on `fs` and makes the change for round `r`; returns the store whose flush
    /// is crashed.
    change: fn(&SimFs, usize) -> Store,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "append (new keys only)",
            setup: |s, r| fill(s, 1, 0..8 + r % 4),
            change: |fs, r| {
                let s = open(fs).unwrap();
                fill(&s, 1, 12..14 + r % 3);
                s
            },
        },
        Scenario {
            name: "replace (overwrites)",
            setup: |s, r| fill(s, 1, 0..8 + r % 4),
            change: |fs, r| {
                let s = open(fs).unwrap();
                fill(&s, 2, r % 3..4 + r % 3);
                s
            },
        },
        Scenario {
            name: "compaction (removes)",
            setup: |s, r| fill(s, 1, 0..10 + r % 3),
            change: |fs, r| {
                let s = open(fs).unwrap();
                for i in r % 2..5 {
                    s.remove(format!("prog_{i} -DX").as_bytes()).unwrap();
                }
                s
            },
        },
        Scenario {
            name: "eviction within a budget",
            setup: |s, r| fill(s, 1, 0..8 + r % 4),
            change: |fs, r| {
                // A budget the new programs overflow: the flush evicts the oldest ones and folds
                // the use records into one, in one rewrite.
                let len = fs.read_file(PATH).map_or(0, |b| b.len() as u64);
                let s = Store::open(
                    PATH,
                    Options {
                        budget: Some(len + 1500),
                        ..common::options_on(fs, Verify::Lazy)
                    },
                )
                .unwrap();
                for i in 0..2 {
                    let _ = s.get(format!("prog_{i} -DX").as_bytes());
                }
                fill(&s, 2, 12..14 + r % 2);
                s
            },
        },
        Scenario {
            name: "merge under the lock",
            setup: |s, r| fill(s, 1, 0..6 + r % 3),
            change: |fs, r| {
                let mine = open(fs).unwrap();
                let other = open(fs).unwrap();
                fill(&other, 3, 10..13);
                other.flush().unwrap();
                fill(&mine, 4, 13..15 + r % 2);
                mine
            },
        },
    ]
}

/// Rounds per scenario whose failed flushes (a short write at each call, then the rollback) are
/// crashed too.
const ROLLBACK_ROUNDS: usize = 6;

/// Random tear masks tried per write, on top of the systematic ones.
const RANDOM_TEARS: u64 = 160;

/// The fates to try for one crash: all kept, all dropped, each event alone dropped or alone kept,
/// each sector of each write torn away (and kept alone), and random subsets of sectors.
fn fate_patterns(events: &[UnsyncedInfo], seed: u64) -> Vec<Vec<Fate>> {
    let n = events.len();
    let mut out = vec![vec![Fate::Keep; n], vec![Fate::Drop; n]];
    for i in 0..n {
        let mut v = vec![Fate::Keep; n];
        v[i] = Fate::Drop;
        out.push(v);
        let mut v = vec![Fate::Drop; n];
        v[i] = Fate::Keep;
        out.push(v);
        if let UnsyncedInfo::Data { op, .. } = &events[i] {
            for sector in 0..op.sectors().min(64) {
                let mut v = vec![Fate::Keep; n];
                v[i] = Fate::Torn(!(1u64 << sector));
                out.push(v);
                let mut v = vec![Fate::Keep; n];
                v[i] = Fate::Torn(1u64 << sector);
                out.push(v);
            }
            let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..RANDOM_TEARS * u64::from(op.sectors() > 1) {
                // xorshift64: reproducible masks.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut v = vec![Fate::Keep; n];
                v[i] = Fate::Torn(x);
                out.push(v);
            }
        }
    }
    out
}

fn crash_with(fs: &SimFs, pattern: &[Fate]) -> SimFs {
    let mut i = 0;
    fs.crash(&mut |_: &Unsynced<'_>| {
        let f = pattern.get(i).copied().unwrap_or(Fate::Keep);
        i += 1;
        f
    })
}

#[derive(Default)]
struct Tally {
    states: u64,
    violations: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.states += 1;
        if !ok && self.violations.len() < 10 {
            self.violations.push(what());
        }
    }
}

/// From a run without faults: the state before the flush (for the merge, what the other process
/// committed), the state after it, and how many filesystem calls the flush makes.
fn reference_run(fs0: &SimFs, sc: &Scenario, r: usize) -> (Map, Map, u64) {
    let fs = fs0.snapshot();
    let s = (sc.change)(&fs, r);
    let old = contents(&open(&fs).unwrap());
    fs.reset_calls();
    s.flush().unwrap();
    (old, contents(&s), fs.calls())
}

#[test]
fn every_crash_state_of_every_flush_is_old_or_new() {
    quiet_logs();
    let mut tally = Tally::default();
    let all = scenarios();
    for (sc, r) in all
        .iter()
        .flat_map(|sc| (0..ROUNDS * scale()).map(move |r| (sc, r)))
    {
        let (fs0, _) = base(|s| (sc.setup)(s, r));
        let (old, new, calls) = reference_run(&fs0, sc, r);
        assert!(old != new, "{}", sc.name);
        let mut keys: Vec<Vec<u8>> = old.keys().chain(new.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        // The process dies at call k; or (in the first rounds) call k fails after a short write
        // and the flush rolls back what it wrote, the process dying at each call of that rollback
        // (j) or after it (j = 0); the power is lost after that.
        let crashes = (1..=calls + 1).map(|k| (k, FailKind::Crash, 0));
        let rollbacks = (1..=calls)
            .filter(|_| r < ROLLBACK_ROUNDS)
            .flat_map(|k| (0..=4).map(move |j| (k, FailKind::Short(libc::ENOSPC), j)));
        let picked = crashes
            .chain(rollbacks)
            .enumerate()
            .filter(|(i, _)| (i + r) % stride() == 0);
        for (_, (k, kind, j)) in picked {
            let fs = fs0.snapshot();
            let s = (sc.change)(&fs, r);
            fs.reset_calls();
            if k <= calls {
                fs.fail_at(k, kind);
            }
            if j > 0 {
                fs.also_fail_at(k + j, FailKind::Crash);
            }
            let acked = s.flush().is_ok();
            fs.clear_faults();
            drop(s);
            let events = fs.unsynced_events();
            for (p, pattern) in fate_patterns(&events, (r as u64) << 32 | k)
                .iter()
                .enumerate()
            {
                let after = crash_with(&fs, pattern);
                let got = recovered(&after, &keys);
                let ok = match &got {
                    Ok(g) if acked => *g == new,
                    Ok(g) => *g == old || *g == new,
                    Err(_) => false,
                };
                tally.check(ok, || {
                    format!("{} round {r}: {kind:?} at call {k}/{calls}, crash {j} calls later (acked {acked}), pattern {p}: {:?} entries (old {}, new {}); trace {:?}", sc.name, got.as_ref().map(|g| g.len()), old.len(), new.len(), fs.trace())
                });
                // A second crash during the recovery open changes nothing.
                if p < 2 {
                    let again = crash_with(&after, &[]).crash_drop_all();
                    let second = recovered(&again, &keys).ok();
                    tally.check(second == got.as_ref().ok().cloned(), || {
                        format!("{}: recovery at {k} changed state", sc.name)
                    });
                }
            }
        }
    }
    println!(
        "crash states checked: {}, violations: {}",
        tally.states,
        tally.violations.len()
    );
    assert!(tally.violations.is_empty(), "{:#?}", tally.violations);
    assert!(
        tally.states >= 100_000 / stride() as u64,
        "only {} states",
        tally.states
    );
}

#[test]
fn every_failing_call_of_open_flush_and_compaction_is_a_clean_error() {
    quiet_logs();
    let errnos = [libc::EIO, libc::ENOSPC, libc::EINTR];
    let mut injections = 0u64;
    for sc in scenarios() {
        let (fs0, _) = base(|s| (sc.setup)(s, 0));
        let (old, new, calls) = reference_run(&fs0, &sc, 0);
        for k in 1..=calls {
            for errno in errnos {
                let kinds = [
                    FailKind::Once(errno),
                    FailKind::Persistent(errno),
                    FailKind::Short(errno),
                ];
                for kind in kinds {
                    injections += 1;
                    let fs = fs0.snapshot();
                    let s = (sc.change)(&fs, 0);
                    let bytes_before = fs.read_file(PATH);
                    fs.reset_calls();
                    fs.fail_at(k, kind);
                    let r = s.flush();
                    fs.clear_faults();
                    let renamed = fs
                        .trace()
                        .iter()
                        .any(|l| l.contains(" rename") && !l.contains("=>"));
                    let bytes_now = fs.read_file(PATH);
                    let now = contents(&open(&fs).unwrap());
                    let what = format!("{}: call {k} {kind:?}", sc.name);
                    match r {
                        Ok(()) => assert!(now == new, "{what}: acknowledged flush not on disk"),
                        Err(e) => {
                            let msg = e.to_string();
                            assert!(
                                msg.starts_with("cannot ") && msg.contains("os error"),
                                "{msg}"
                            );
                            assert!(now == old || now == new, "{what}: neither old nor new");
                            // A single failure (the rollback's own calls succeed) leaves the file
                            // byte for byte as it was, unless the new file was already renamed
                            // into place (only its directory sync failed).
                            if !matches!(kind, FailKind::Persistent(_)) {
                                assert!(
                                    bytes_now == bytes_before || (renamed && now == new),
                                    "{what}: the file changed: {:?}",
                                    fs.trace()
                                );
                            }
                            // The changes were kept: the next flush commits them.
                            s.flush().unwrap();
                            assert!(
                                contents(&open(&fs).unwrap()) == new,
                                "{what}: retry lost changes"
                            );
                        }
                    }
                }
            }
        }
    }
    // Open: every call of a load (read, and moving an unreadable file aside) fails cleanly, lazily
    // verified or not; a lazy store's first gets read through the handle opened, and are in the
    // calls counted (a get that hits a fault misses; it never returns a wrong value).
    for (garbage, verify) in [false, true]
        .into_iter()
        .flat_map(|g| [(g, Verify::Lazy), (g, Verify::Eager)])
    {
        let (fs0, old) = base(|s| fill(s, 1, 0..4));
        if garbage {
            fs0.write_file(PATH, b"\xffnot a cache at all, set aside on open");
        }
        let calls = {
            let fs = fs0.snapshot();
            fs.reset_calls();
            let s = open_verified(&fs, verify).unwrap();
            assert!(garbage || old.keys().all(|k| s.get(k).is_some()));
            fs.calls()
        };
        for k in 1..=calls {
            for errno in errnos {
                injections += 1;
                let fs = fs0.snapshot();
                fs.reset_calls();
                fs.fail_at(k, FailKind::Persistent(errno));
                match open_verified(&fs, verify) {
                    Ok(s) => {
                        let by_get: Map = old
                            .keys()
                            .filter_map(|k| s.get(k).map(|v| (k.clone(), v.to_vec())))
                            .collect();
                        // Only a lazy store's gets read: under the fault they may miss.
                        let faulted = verify == Verify::Lazy && fs.calls() >= k;
                        assert!(
                            by_get.iter().all(|(k, v)| old.get(k) == Some(v)),
                            "open call {k}: a wrong value"
                        );
                        assert!(garbage || faulted || by_get == old, "open call {k}: get");
                        fs.clear_faults();
                        assert!(garbage || contents(&s) == old, "open call {k}");
                        let st = s.stats();
                        assert_eq!(st.entries_failed_on_use, 0, "open call {k}");
                    }
                    Err(e) => assert!(e.to_string().starts_with("cannot read"), "{e}"),
                }
                fs.clear_faults();
                let s = open_verified(&fs, verify).unwrap();
                assert!(
                    contents(&s) == if garbage { Map::new() } else { old.clone() },
                    "open call {k}"
                );
            }
        }
    }
    // Drop: a lazy store that read values leaves the read-ahead note in the lock file (three
    // reads: the gets left the notes of the first one and two); under a fault at any call of
    // that, the drop neither panics nor touches the cache, and the next store reads every value.
    let (fs0, old) = base(|s| fill(s, 1, 0..4));
    let read_three = |fs: &SimFs| {
        let s = open_verified(fs, Verify::Lazy).unwrap();
        for k in old.keys().filter(|k| k.starts_with(b"prog_")).take(3) {
            assert!(s.get(k).is_some());
        }
        fs.reset_calls();
        s
    };
    let calls = {
        let fs = fs0.snapshot();
        drop(read_three(&fs));
        fs.calls()
    };
    assert!(calls >= 2, "the lock, and the note written through it");
    for k in 1..=calls {
        for errno in errnos {
            injections += 1;
            let fs = fs0.snapshot();
            let s = read_three(&fs);
            fs.fail_at(k, FailKind::Persistent(errno));
            drop(s);
            fs.clear_faults();
            assert_eq!(fs.read_file(PATH), fs0.read_file(PATH), "drop call {k}");
            assert_eq!(contents(&open_verified(&fs, Verify::Lazy).unwrap()), old);
        }
    }
    println!("error injections: {injections}");
    assert!(injections > 100);
}

/// Every flush path on a disk with room for only part of what it writes, at every 512-byte step
/// of free space from none to enough: a flush that fails leaves the file byte for byte as it was
/// and nothing else behind, and succeeds once there is room; one that succeeds committed it all.
#[test]
fn a_full_disk_at_every_point_of_every_flush_leaves_the_file_byte_identical() {
    quiet_logs();
    let (mut failed, mut succeeded) = (0u64, 0u64);
    for sc in scenarios() {
        for r in 0..3 {
            let (fs0, _) = base(|s| (sc.setup)(s, r));
            let (_, new, _) = reference_run(&fs0, &sc, r);
            let mut room = 0u64;
            loop {
                let fs = fs0.snapshot();
                let s = (sc.change)(&fs, r);
                let (bytes_before, names_before) = (fs.read_file(PATH), fs.list());
                let used: u64 = names_before
                    .iter()
                    .map(|p| fs.read_file(p).map_or(0, |b| b.len() as u64))
                    .sum();
                fs.set_capacity(Some(used + room));
                let what = format!("{} round {r}: {room} bytes free", sc.name);
                match s.flush() {
                    Ok(()) => {
                        assert!(contents(&open(&fs).unwrap()) == new, "{what}");
                        succeeded += 1;
                        break;
                    }
                    Err(e) => {
                        failed += 1;
                        assert!(e.to_string().contains("os error 28"), "{what}: {e}");
                        assert!(fs.read_file(PATH) == bytes_before, "{what}: file changed");
                        assert_eq!(fs.list(), names_before, "{what}: left behind");
                        fs.set_capacity(None);
                        s.flush().unwrap();
                        assert!(contents(&open(&fs).unwrap()) == new, "{what}: retry");
                    }
                }
                room += 512;
            }
        }
    }
    println!("full-disk flushes: {failed} failed cleanly, {succeeded} succeeded");
    assert!(failed > 100, "only {failed} failures");
}
