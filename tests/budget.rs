//! The size budget on the real filesystem: the file stays within it, the least recently used
//! program binaries go first (use remembered across processes through the use records), and the
//! metadata that vouches for binaries is never evicted.

mod common;

use mace_storage::format::PLATFORM_INFO_KEY;
use mace_storage::keys::{self, FINGERPRINT_KEY};
use mace_storage::store::{Options, Store, Value};
use std::path::Path;

const MB: usize = 1 << 20;

fn open(path: &Path, budget_mb: u64) -> Store {
    Store::open(
        path,
        Options {
            budget: Some(budget_mb << 20),
            ..Options::default()
        },
    )
    .unwrap()
}

fn program(i: usize) -> Vec<u8> {
    format!("prog_{i:02} -DWG=8").into_bytes()
}

fn binary(i: usize) -> Value {
    Value::from_vec((0..MB).map(|j| (j ^ (i * 7)) as u8).collect())
}

/// Puts program `i` with its source hash, as MACE's runtime does.
fn put_program(s: &Store, i: usize) {
    s.put(&program(i), binary(i)).unwrap();
    s.put(&keys::program_hash_key(&program(i)), Value::copy_from(b"h"))
        .unwrap();
}

fn put_metadata(s: &Store) {
    s.put(PLATFORM_INFO_KEY, Value::copy_from(b"pocl, OpenCL 3.0"))
        .unwrap();
    s.put(FINGERPRINT_KEY, Value::copy_from(b"fp")).unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn present(path: &Path) -> Vec<usize> {
    let s = Store::open(path, Options::default()).unwrap();
    (0..64).filter(|&i| s.get(&program(i)).is_some()).collect()
}

#[test]
fn thirty_megabytes_offered_to_a_twenty_megabyte_budget_keep_the_file_within_it() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    let s = open(&path, 20);
    put_metadata(&s);
    s.flush().unwrap();
    // MACE builds programs a few at a time and flushes after each batch.
    for batch in 0..10 {
        for i in batch * 3..batch * 3 + 3 {
            put_program(&s, i);
        }
        s.flush().unwrap();
        let len = file_len(&path);
        assert!(len <= 20 << 20, "batch {batch}: the file is {len} bytes");
    }
    let kept = present(&path);
    assert!(s.stats().evictions >= 10, "{:?}", s.stats());
    // The newest programs survive; what went is the oldest.
    assert!(
        kept.contains(&29) && kept.contains(&28) && kept.contains(&27),
        "{kept:?}"
    );
    assert!(!kept.contains(&0), "{kept:?}");
    let first_kept = kept[0];
    assert_eq!(kept, (first_kept..30).collect::<Vec<_>>(), "kept {kept:?}");
    // The metadata stays, and each kept binary keeps its hash; an evicted one's hash went with it.
    let r = Store::open(&path, Options::default()).unwrap();
    assert!(r.get(PLATFORM_INFO_KEY).is_some() && r.get(FINGERPRINT_KEY).is_some());
    for i in 0..30 {
        let hash = r.get(&keys::program_hash_key(&program(i))).is_some();
        assert_eq!(hash, kept.contains(&i), "hash of program {i}");
    }
}

#[test]
fn a_program_used_by_a_later_process_outlives_newer_unused_ones() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    build(&path, 0..12, true);
    {
        // A later start uses programs 0-3 and builds one more: its flush records the uses.
        let s = open(&path, 20);
        for i in 0..4 {
            assert!(s.get(&program(i)).is_some());
        }
        put_program(&s, 12);
        s.flush().unwrap();
    }
    // A third start builds enough to need evictions and uses nothing itself.
    let evictions = build(&path, 13..20, false);
    assert!(evictions > 0, "the build needed no eviction");
    assert_used_and_newest_kept(&path);
}

/// A start under a 20 MB budget that builds `programs` (after the metadata, if `first`) and
/// flushes once, using nothing; returns its evictions.
fn build(path: &Path, programs: std::ops::Range<usize>, first: bool) -> u64 {
    let s = open(path, 20);
    if first {
        put_metadata(&s);
    }
    for i in programs {
        put_program(&s, i);
    }
    s.flush().unwrap();
    s.stats().evictions
}

/// After programs 0-11, a start that used 0-3, and newer builds up to 19 under a 20 MB budget:
/// the file within it, 0-3 and 12-19 kept, 4 (the least recently used) evicted.
fn assert_used_and_newest_kept(path: &Path) {
    assert!(file_len(path) <= 20 << 20);
    let kept = present(path);
    for i in (0..4).chain(12..20) {
        assert!(
            kept.contains(&i),
            "program {i} was used or built last: {kept:?}"
        );
    }
    assert!(
        !kept.contains(&4),
        "program 4 was least recently used: {kept:?}"
    );
}

#[test]
fn within_the_budget_nothing_is_evicted_and_use_records_stay_few() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    let s = open(&path, 24);
    put_metadata(&s);
    let records = |path: &Path| {
        Store::open(path, Options::default())
            .unwrap()
            .entries()
            .into_iter()
            .filter(|(k, _)| k.starts_with(keys::USES_PREFIX))
            .count()
    };
    for i in 0..20 {
        put_program(&s, i);
        let _ = s.get(&program(i / 2));
        s.flush().unwrap();
        // Below half the budget the file holds only what was put.
        if i < 10 {
            assert_eq!(records(&path), 0, "after program {i}");
        }
    }
    let st = s.stats();
    assert_eq!(st.evictions, 0, "{st:?}");
    assert_eq!(present(&path), (0..20).collect::<Vec<_>>());
    let records = records(&path);
    assert!((1..=9).contains(&records), "{records} use records");
    // A flush with nothing to commit writes nothing, not even a use record.
    let written = st.bytes_written;
    let _ = s.get(&program(3));
    s.put(FINGERPRINT_KEY, Value::copy_from(b"fp")).unwrap();
    s.flush().unwrap();
    assert_eq!(s.stats().bytes_written, written);
}

#[test]
fn a_budget_below_the_metadata_evicts_every_binary_and_keeps_the_metadata() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    let s = open(&path, 1);
    put_metadata(&s);
    put_program(&s, 0);
    put_program(&s, 1);
    s.flush().unwrap();
    assert!(file_len(&path) <= 1 << 20);
    assert_eq!(present(&path), Vec::<usize>::new());
    let r = Store::open(&path, Options::default()).unwrap();
    assert!(r.get(PLATFORM_INFO_KEY).is_some() && r.get(FINGERPRINT_KEY).is_some());
    assert_eq!(s.stats().evictions, 2);
}

#[test]
fn a_start_that_only_reads_records_its_uses_and_they_count_at_the_next_eviction() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    build(&path, 0..12, true);
    let written = |s: &Store| s.stats().bytes_written;
    {
        // A start that uses programs 0-3 and builds nothing: no flush, its uses recorded at the end.
        let s = open(&path, 20);
        for i in 0..4 {
            assert!(s.get(&program(i)).is_some());
        }
        assert!(s.record_uses().unwrap(), "the file is past half its budget");
        assert!(written(&s) > 0);
        // Once recorded, nothing more to write.
        let after = written(&s);
        assert!(!s.record_uses().unwrap());
        assert_eq!(written(&s), after);
        // Changes waiting for a flush record the uses with them, not before.
        let _ = s.get(&program(5));
        s.put(b"pending", Value::copy_from(b"x")).unwrap();
        assert!(!s.record_uses().unwrap());
        assert_eq!(written(&s), after);
    }
    {
        // A start that uses nothing records nothing.
        let s = open(&path, 20);
        assert!(!s.record_uses().unwrap());
        assert_eq!(written(&s), 0);
    }
    // A later start builds enough to need evictions and uses nothing itself.
    let evictions = build(&path, 12..20, false);
    assert!(evictions > 0, "the build needed no eviction");
    assert_used_and_newest_kept(&path);
}

#[test]
fn below_half_its_budget_or_without_one_recording_uses_writes_nothing() {
    let (_d, path) = common::temp_path("budget", "cache.bin");
    {
        let s = open(&path, 64);
        put_metadata(&s);
        put_program(&s, 0);
        s.flush().unwrap();
    }
    let s = open(&path, 64);
    assert!(s.get(&program(0)).is_some());
    assert!(!s.record_uses().unwrap());
    assert_eq!(s.stats().bytes_written, 0);
    let plain = Store::open(&path, Options::default()).unwrap();
    assert!(plain.get(&program(0)).is_some());
    assert!(!plain.record_uses().unwrap());
    let ro = Store::open(
        &path,
        Options {
            read_only: true,
            budget: Some(1 << 20),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(ro.get(&program(0)).is_some());
    assert!(!ro.record_uses().unwrap());
}
