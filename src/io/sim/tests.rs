//! Tests of the simulated filesystem's model: durability, crashes, faults, handles and locks.

use super::*;
use crate::io::replace_atomically;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn crash_drops_unsynced_writes() {
    let fs = SimFs::new();
    fs.write_file("a", b"old!");
    fs.open_existing(p("a"))
        .unwrap()
        .write_at(0, b"new")
        .unwrap();
    assert_eq!(fs.read_file("a").unwrap(), b"new!");
    assert_eq!(fs.crash_drop_all().read_file("a").unwrap(), b"old!");
    assert_eq!(fs.crash_keep_all().read_file("a").unwrap(), b"new!");
    assert_eq!(fs.unsynced_count(), 1);
}

#[test]
fn fsync_makes_writes_survive_but_new_names_need_sync_dir() {
    let fs = SimFs::new();
    let mut h = fs.create(p("d/x")).unwrap();
    h.write_at(0, b"data").unwrap();
    h.sync_data().unwrap();
    assert!(!fs.crash_drop_all().exists("d/x"), "name not yet durable");
    fs.sync_dir(p("other")).unwrap();
    assert!(!fs.crash_drop_all().exists("d/x"));
    fs.sync_dir(p("d")).unwrap();
    let after = fs.crash_drop_all();
    assert_eq!(after.read_file("d/x").unwrap(), b"data");
    assert_eq!(after.unsynced_count(), 0);
    assert_eq!(after.calls(), 0);
}

#[test]
fn rename_not_durable_without_sync_dir() {
    let fs = SimFs::new();
    fs.write_file("a", b"A");
    fs.write_file("b", b"B");
    fs.rename(p("a"), p("b")).unwrap();
    assert_eq!(fs.list(), vec![PathBuf::from("b")]);
    let lost = fs.crash_drop_all();
    assert_eq!(
        (lost.read_file("a").unwrap(), lost.read_file("b").unwrap()),
        (b"A".to_vec(), b"B".to_vec())
    );
    fs.sync_dir(p(".")).unwrap(); // "." and "" are the same directory
    let kept = fs.crash_drop_all();
    assert_eq!(kept.list(), vec![PathBuf::from("b")]);
    assert_eq!(kept.read_file("./b").unwrap(), b"A");
    let err = fs.rename(p("missing"), p("b")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn dir_ops_survive_only_as_a_prefix() {
    let fs = SimFs::new();
    for name in ["x", "y", "z"] {
        fs.create(p(name)).unwrap();
    }
    let mut asked = 0;
    let after = fs.crash(&mut |u| match u {
        Unsynced::DirOp { index, .. } => {
            asked += 1;
            [Fate::Keep, Fate::Drop, Fate::Keep][*index]
        }
        Unsynced::Data { .. } => Fate::Keep,
    });
    assert_eq!(asked, 3);
    assert_eq!(after.list(), vec![PathBuf::from("x")]);
}

/// Every crash outcome of `fs` (each unsynced op kept or dropped) holding `path`'s contents.
fn all_outcomes(fs: &SimFs, path: &str) -> Vec<Option<Vec<u8>>> {
    (0u32..1 << fs.unsynced_count())
        .map(|bits| {
            let mut i = 0;
            let after = fs.crash(&mut |_| {
                i += 1;
                [Fate::Drop, Fate::Keep][(bits >> (i - 1) & 1) as usize]
            });
            after.read_file(path)
        })
        .collect()
}

#[test]
fn replace_atomically_is_atomic_under_a_fault_at_every_call() {
    let (old, new) = (vec![1u8; 700], vec![2u8; 900]);
    for kind in [FailKind::Crash, FailKind::Once(libc::EIO)] {
        for n in 1.. {
            let fs = SimFs::new();
            fs.write_file("dir/cache", &old);
            fs.reset_calls();
            fs.fail_at(n, kind);
            let result = replace_atomically(&fs, p("dir/cache"), &[&new[..300], &new[300..]]);
            let finished = fs.calls() < n;
            let why = format!("{kind:?} at call {n}: {:?}", fs.trace());
            assert_eq!(result.is_ok(), finished, "{why}");
            let mut seen = vec![fs.read_file("dir/cache")];
            seen.extend(
                [fs.crash_drop_all(), fs.crash_keep_all()].map(|c| c.read_file("dir/cache")),
            );
            seen.extend(all_outcomes(&fs, "dir/cache"));
            for got in seen {
                assert!(
                    got == Some(old.clone()) || got == Some(new.clone()),
                    "{why}"
                );
            }
            if finished {
                assert_eq!(fs.crash_drop_all().read_file("dir/cache").unwrap(), new);
                break;
            }
        }
    }
}

#[test]
fn torn_writes_keep_only_masked_sectors() {
    let fs = SimFs::new();
    fs.write_file("t", &[0u8; 600]);
    let mut h = fs.open_existing(p("t")).unwrap();
    h.write_at(256, &[7u8; 1536]).unwrap(); // bytes 256..1792: sectors 0..=3
    let events = fs.unsynced_events();
    assert!(matches!(&events[..], [UnsyncedInfo::Data { index: 0, op, .. }] if op.sectors() == 4));
    let got = fs
        .crash(&mut |_| Fate::Torn(0b0101))
        .read_file("t")
        .unwrap();
    let mut want = vec![0u8; 1536];
    want[256..512].fill(7);
    want[1024..1536].fill(7);
    assert_eq!(got, want);
    let none = fs.crash(&mut |_| Fate::Torn(0)).read_file("t").unwrap();
    assert_eq!(none, vec![0u8; 600]);
    let last = fs
        .crash(&mut |_| Fate::Torn(1 << 63))
        .read_file("t")
        .unwrap();
    assert_eq!(
        last.len(),
        600,
        "bit 63 covers no sector of a 4-sector write"
    );
}

#[test]
fn once_and_persistent_faults() {
    let fs = SimFs::new();
    fs.fail_at(2, FailKind::Once(libc::ENOSPC));
    let mut h = fs.create(p("f")).unwrap();
    let err = h.write_at(0, b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(
        fs.read_file("f").unwrap(),
        b"",
        "a failed call has no effect"
    );
    h.write_at(0, b"y").unwrap();
    fs.reset_calls();
    fs.fail_at(1, FailKind::Persistent(libc::EIO));
    for _ in 0..3 {
        assert_eq!(h.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    }
    assert_eq!(fs.crash_drop_all().read_file("f"), None);
    fs.clear_faults();
    h.sync_all().unwrap();
    assert_eq!(fs.calls(), 4);
    assert!(
        fs.trace()[0].starts_with("#1 sync_all ino=1 => injected"),
        "{:?}",
        fs.trace()
    );
}

#[test]
fn crash_fault_stops_everything() {
    let fs = SimFs::new();
    fs.fail_at(2, FailKind::Crash);
    let mut h = fs.create(p("f")).unwrap();
    assert!(h.write_at(0, b"x").is_err());
    assert!(fs.remove(p("f")).is_err());
    assert!(fs.lock(p("l"), None).is_err());
    assert!(fs.exists("f"));
    assert_eq!(fs.read_file("f").unwrap(), b"");
}

#[test]
fn handles_survive_rename_and_remove_and_meta_tracks_changes() {
    let fs = SimFs::new();
    let mut h = fs.create(p("a")).unwrap();
    let m0 = h.meta().unwrap();
    fs.rename(p("a"), p("b")).unwrap();
    h.write_at(0, b"hello").unwrap();
    let m1 = fs.metadata(p("b")).unwrap().unwrap();
    assert_eq!((m1.ino, m1.dev, m1.len), (m0.ino, 1, 5));
    assert!(m1.mtime_ns > m0.mtime_ns);
    fs.remove(p("b")).unwrap();
    h.set_len(2).unwrap();
    assert_eq!(h.meta().unwrap().len, 2);
    assert!(fs.metadata(p("b")).unwrap().is_none());
    assert_eq!(
        fs.open_existing(p("b")).err().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.remove(p("b")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    fs.write_file("c", b"123");
    let ino = fs.metadata(p("c")).unwrap().unwrap().ino;
    drop(fs.create(p("c")).unwrap());
    let (data, meta) = fs.read(p("c")).unwrap().unwrap();
    assert_eq!(
        (data.len(), meta.ino),
        (0, ino),
        "create truncates the same inode"
    );
    assert_eq!(fs.crash_drop_all().read_file("c").unwrap(), b"123");
}

#[test]
fn snapshot_and_clones() {
    let fs = SimFs::new();
    let other = fs.clone();
    other.create(p("s")).unwrap().write_at(0, b"1").unwrap();
    let snap = fs.snapshot();
    fs.remove(p("s")).unwrap();
    assert!(snap.exists("s") && !fs.exists("s"));
    assert_eq!(snap.unsynced_count(), 2);
    assert_eq!(snap.crash_keep_all().read_file("s").unwrap(), b"1");
}

#[test]
fn lock_excludes_across_threads() {
    let fs = SimFs::new();
    let guard = fs.lock(p("x.lock"), None).unwrap();
    assert_eq!(guard.kind(), LockKind::Ofd);
    let got = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (fs, got) = (fs.clone(), Arc::clone(&got));
        std::thread::spawn(move || {
            let _l = fs.lock(p("x.lock"), None).unwrap();
            got.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!got.load(Ordering::SeqCst));
    drop(fs.lock(p("other.lock"), None).unwrap());
    drop(guard);
    waiter.join().unwrap();
    assert!(got.load(Ordering::SeqCst));

    let inside = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (fs, inside) = (fs.clone(), Arc::clone(&inside));
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let _l = fs.lock(p("x.lock"), None).unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}
