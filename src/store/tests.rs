use super::*;
use crate::format::decode;
use crate::io::sim::{FailKind, SimFs};
use proptest::prelude::*;
use std::collections::BTreeMap;

const PATH: &str = "cache/mace_cl_compiled_program.bin";

fn sim() -> SimFs {
    let fs = SimFs::new();
    fs.write_file("cache/.keep", b"");
    fs
}

fn open_on(fs: &SimFs) -> Store {
    Store::open(
        PATH,
        Options {
            fs: Arc::new(fs.clone()),
            ..Options::default()
        },
    )
    .unwrap()
}

fn v(s: &str) -> Value {
    Value::copy_from(s.as_bytes())
}

fn contents(s: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    s.entries()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

fn on_disk(fs: &SimFs) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let b = fs.read_file(PATH).unwrap();
    let d = decode(&b).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    d.entries
        .iter()
        .map(|e| (b[e.key.clone()].to_vec(), e.value.bytes(&b).to_vec()))
        .collect()
}

#[test]
fn missing_file_opens_empty_and_first_flush_creates_it() {
    let fs = sim();
    let s = open_on(&fs);
    assert!(s.report().missing);
    assert!(s.is_empty());
    s.put(b"k", v("v")).unwrap();
    assert_eq!(s.get(b"k").as_deref(), Some(&b"v"[..]));
    assert!(fs.read_file(PATH).is_none(), "nothing written before flush");
    s.flush().unwrap();
    let st = s.stats();
    assert_eq!((st.flushes, st.rewrites, st.entries, st.hits), (1, 1, 1, 1));
    assert_eq!(on_disk(&fs).len(), 1);
    let again = open_on(&fs);
    assert_eq!(again.report().format, Some(Format::Checked11));
    assert_eq!(contents(&again), contents(&s));
}

#[test]
fn adding_keys_appends_and_reinserting_equal_values_is_no_change() {
    let fs = sim();
    let s = open_on(&fs);
    s.put(PLATFORM_INFO_KEY, v("pocl, FULL_PROFILE, OpenCL 3.0, 1.1"))
        .unwrap();
    s.put(b"prog_a", v("binary a")).unwrap();
    s.flush().unwrap();
    let len1 = fs.read_file(PATH).unwrap().len();
    // MACE's sequence: insert the same platform info again plus a new binary, then flush.
    s.put(PLATFORM_INFO_KEY, v("pocl, FULL_PROFILE, OpenCL 3.0, 1.1"))
        .unwrap();
    s.put(b"prog_b", v("binary b")).unwrap();
    s.flush().unwrap();
    let st = s.stats();
    assert_eq!((st.appends, st.rewrites), (1, 1));
    let file = fs.read_file(PATH).unwrap();
    assert!(file.len() > len1 && file.len() < 2 * len1);
    assert_eq!(on_disk(&fs), contents(&s));
    // Stock MACE 1.1's acceptance still holds after an append: the trailing CRC covers it all.
    let (body, crc) = file.split_at(file.len() - 4);
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc);
    // An overwrite is not an append.
    s.put(b"prog_a", v("binary a2")).unwrap();
    s.flush().unwrap();
    assert_eq!(s.stats().rewrites, 2);
    assert_eq!(on_disk(&fs), contents(&s));
    assert_eq!(
        open_on(&fs).get(b"prog_a").as_deref(),
        Some(&b"binary a2"[..])
    );
}

#[test]
fn flush_without_changes_does_no_io() {
    let fs = sim();
    let s = open_on(&fs);
    s.put(b"a", v("1")).unwrap();
    s.flush().unwrap();
    fs.reset_calls();
    s.flush().unwrap();
    assert_eq!(fs.calls(), 0, "nothing pending: not even the lock");
    // A put equal to the file is no change: the flush checks the file under the lock and writes
    // nothing (it cannot trust what it read before, another writer may have changed it).
    s.put(b"a", v("1")).unwrap();
    s.flush().unwrap();
    let writes: Vec<String> = fs
        .trace()
        .into_iter()
        .filter(|t| {
            ["write_at", "create", "rename", "sync"]
                .iter()
                .any(|w| t.contains(w))
        })
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(s.stats().flushes, 1);
    s.flush().unwrap();
    assert!(!s.state.read().dirty(), "the equal put was settled");
}

#[test]
fn a_value_outlives_overwrite_clear_and_close() {
    let fs = sim();
    let s = open_on(&fs);
    s.put(b"a", v("first")).unwrap();
    s.flush().unwrap();
    let s = open_on(&fs);
    let held = s.get(b"a").unwrap();
    s.put(b"a", v("second")).unwrap();
    s.clear().unwrap();
    s.flush().unwrap();
    drop(s);
    assert_eq!(&*held, b"first");
}

#[test]
fn remove_and_clear_are_committed() {
    let fs = sim();
    let s = open_on(&fs);
    for k in ["a", "b", "c"] {
        s.put(k.as_bytes(), v(k)).unwrap();
    }
    s.flush().unwrap();
    assert!(s.remove(b"b").unwrap());
    assert!(!s.remove(b"zz").unwrap());
    s.flush().unwrap();
    assert_eq!(
        on_disk(&fs).keys().cloned().collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"c".to_vec()]
    );
    s.clear().unwrap();
    s.put(b"d", v("d")).unwrap();
    s.flush().unwrap();
    assert_eq!(
        on_disk(&fs).keys().cloned().collect::<Vec<_>>(),
        vec![b"d".to_vec()]
    );
}

#[test]
fn damaged_file_is_salvaged_then_rewritten_whole() {
    for verify in [Verify::Eager, Verify::Lazy] {
        let fs = sim();
        let s = open_on(&fs);
        s.put(PLATFORM_INFO_KEY, v("platform")).unwrap();
        for i in 0..10 {
            s.put(
                format!("prog_{i}").as_bytes(),
                Value::from_vec(vec![i as u8; 100]),
            )
            .unwrap();
        }
        s.flush().unwrap();
        let mut b = fs.read_file(PATH).unwrap();
        let at = b.windows(6).position(|w| w == b"prog_3").unwrap() + 20;
        b[at] ^= 0xff;
        fs.write_file(PATH, &b);
        let s = Store::open(
            PATH,
            Options {
                fs: Arc::new(fs.clone()),
                verify,
                ..Options::default()
            },
        )
        .unwrap();
        if verify == Verify::Eager {
            assert!(!s.report().damage.intact);
            assert_eq!(s.len(), 10);
        } else {
            // Only the value's own checksum tells, on its first get.
            assert!(s.report().damage.intact);
            assert_eq!(s.len(), 11);
        }
        assert!(s.get(b"prog_3").is_none());
        assert_eq!(s.len(), 10);
        let salvaged = if verify == Verify::Eager { 10 } else { 0 };
        assert_eq!(
            (s.stats().entries_salvaged, s.stats().entries_dropped),
            (salvaged, 1)
        );
        s.put(b"prog_3", Value::from_vec(vec![3; 100])).unwrap();
        s.flush().unwrap();
        // Never appended after damage: the damaged copy would be the one stock readers keep.
        assert_eq!(s.stats().rewrites, 1);
        assert_eq!(on_disk(&fs).len(), 11);
    }
}

#[test]
fn unreadable_file_is_set_aside_one_copy_kept() {
    let fs = sim();
    for garbage in [
        &b"\xff\xfe garbage that is no cache at all"[..],
        b"\x01\x02\x03 more garbage here!",
    ] {
        fs.write_file(PATH, garbage);
        let s = open_on(&fs);
        assert!(s.is_empty());
        let aside = s.report().set_aside.clone().unwrap();
        assert_eq!(fs.read_file(&aside).unwrap(), garbage);
        assert!(fs.read_file(PATH).is_none());
    }
    // A read-only open never moves anything.
    fs.write_file(PATH, b"\xff garbage again, read-only");
    let ro = Store::open(
        PATH,
        Options {
            read_only: true,
            fs: Arc::new(fs.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(ro.report().set_aside.is_none() && fs.read_file(PATH).is_some());
    assert!(matches!(ro.flush(), Err(Error::ReadOnly)));
}

#[test]
fn a_failed_flush_keeps_the_changes_and_the_old_file() {
    for n in 1..20 {
        let fs = sim();
        let s = open_on(&fs);
        s.put(b"old", v("1")).unwrap();
        s.flush().unwrap();
        let before = fs.read_file(PATH).unwrap();
        s.put(b"new", v("2")).unwrap();
        s.put(b"old", v("3")).unwrap();
        fs.reset_calls();
        fs.fail_at(n, FailKind::Persistent(libc::ENOSPC));
        match s.flush() {
            Ok(()) => {
                fs.clear_faults();
                assert_eq!(on_disk(&fs), contents(&s));
                continue;
            }
            Err(e) => assert!(e.to_string().contains("No space left"), "{e}"),
        }
        // Before the rename the old file is untouched; a failure after it (the directory fsync)
        // leaves the new file visible but not known durable. Either way: old or new, never torn.
        let now = fs.read_file(PATH).unwrap();
        if now != before {
            assert_eq!(on_disk(&fs), contents(&s), "call {n}");
        }
        assert_eq!(s.stats().flush_failures, 1);
        assert_eq!(s.get(b"new").as_deref(), Some(&b"2"[..]));
        fs.clear_faults();
        s.flush().unwrap();
        assert_eq!(on_disk(&fs), contents(&s));
        assert_eq!(contents(&s).len(), 2);
    }
}

#[test]
fn a_crash_at_any_call_of_a_flush_leaves_old_or_new() {
    for append in [true, false] {
        for n in 1..20 {
            let fs = sim();
            let s = open_on(&fs);
            s.put(PLATFORM_INFO_KEY, v("p")).unwrap();
            s.put(b"a", v("1")).unwrap();
            s.flush().unwrap();
            let old = contents(&s);
            s.put(b"b", v("2")).unwrap();
            if !append {
                s.put(b"a", v("3")).unwrap();
            }
            fs.reset_calls();
            fs.fail_at(n, FailKind::Crash);
            let flushed = s.flush().is_ok();
            let new = contents(&s);
            for after in [fs.crash_drop_all(), fs.crash_keep_all()] {
                let got = contents(&open_on(&after));
                if flushed {
                    assert_eq!(
                        got, new,
                        "append={append} call {n}: acknowledged flush lost"
                    );
                } else {
                    assert!(
                        got == old || got == new,
                        "append={append} call {n}: {got:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn two_stores_on_one_file_merge_instead_of_overwriting() {
    let fs = sim();
    let a = open_on(&fs);
    let b = open_on(&fs);
    a.put(b"from_a", v("a")).unwrap();
    b.put(b"from_b", v("b")).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(b.stats().merges, 1);
    let disk = on_disk(&fs);
    assert_eq!(disk.get(&b"from_a"[..]).map(Vec::as_slice), Some(&b"a"[..]));
    assert_eq!(disk.get(&b"from_b"[..]).map(Vec::as_slice), Some(&b"b"[..]));
    // b now sees a's entry too.
    assert!(b.get(b"from_a").is_some());
}

#[test]
fn threads_share_a_store() {
    let fs = sim();
    let s = Arc::new(open_on(&fs));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let k = format!("t{t}_{i}");
                    s.put(k.as_bytes(), Value::copy_from(k.as_bytes())).unwrap();
                    assert_eq!(s.get(k.as_bytes()).as_deref(), Some(k.as_bytes()));
                    if i % 10 == 0 {
                        s.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    s.flush().unwrap();
    assert_eq!(on_disk(&fs).len(), 200);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Remove(u8),
    Clear,
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..12).prop_map(Op::Remove),
        1 => Just(Op::Clear),
        3 => Just(Op::Flush),
        2 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random operations against a BTreeMap: the store always reads as the model, and a reopen
    /// always reads as the model as of the last flush.
    #[test]
    fn store_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..60), format in 0usize..4) {
        let fs = sim();
        let opts = Options { fs: Arc::new(fs.clone()), format: Format::WRITABLE[format], ..Options::default() };
        let mut s = Store::open(PATH, opts.clone()).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut committed = model.clone();
        for op in ops {
            match op {
                Op::Put(k, x) => {
                    let key = format!("key{k}").into_bytes();
                    let val = vec![x; usize::from(k) * 3];
                    s.put(&key, Value::from_vec(val.clone())).unwrap();
                    model.insert(key, val);
                }
                Op::Remove(k) => {
                    let key = format!("key{k}").into_bytes();
                    prop_assert_eq!(s.remove(&key).unwrap(), model.remove(&key).is_some());
                }
                Op::Clear => {
                    s.clear().unwrap();
                    model.clear();
                }
                Op::Flush => {
                    s.flush().unwrap();
                    committed = model.clone();
                }
                Op::Reopen => {
                    s = Store::open(PATH, opts.clone()).unwrap();
                    model = committed.clone();
                }
            }
            prop_assert_eq!(contents(&s), model.clone());
        }
    }
}

/// A filesystem whose file opens take a while, to widen the window in which a flush is writing.
struct Slow(SimFs);

impl Fs for Slow {
    fn read(&self, p: &Path) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        self.0.read(p)
    }
    fn metadata(&self, p: &Path) -> io::Result<Option<FileMeta>> {
        self.0.metadata(p)
    }
    fn create(&self, p: &Path) -> io::Result<Box<dyn crate::io::FileHandle>> {
        std::thread::sleep(std::time::Duration::from_micros(300));
        self.0.create(p)
    }
    fn open_existing(&self, p: &Path) -> io::Result<Box<dyn crate::io::FileHandle>> {
        std::thread::sleep(std::time::Duration::from_micros(300));
        self.0.open_existing(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.0.rename(a, b)
    }
    fn sync_dir(&self, d: &Path) -> io::Result<()> {
        self.0.sync_dir(d)
    }
    fn remove(&self, p: &Path) -> io::Result<()> {
        self.0.remove(p)
    }
    fn create_new(&self, p: &Path) -> io::Result<Box<dyn crate::io::FileHandle>> {
        std::thread::sleep(std::time::Duration::from_micros(300));
        self.0.create_new(p)
    }
    fn rename_noreplace(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.0.rename_noreplace(a, b)
    }
    fn lock(
        &self,
        p: &Path,
        wait: Option<std::time::Duration>,
    ) -> io::Result<crate::io::ProcessLock> {
        self.0.lock(p, wait)
    }
    fn lock_file(
        &self,
        p: &Path,
        wait: Option<std::time::Duration>,
    ) -> io::Result<Option<(crate::io::ProcessLock, FileMeta)>> {
        self.0.lock_file(p, wait)
    }
    fn list_dir(&self, d: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        self.0.list_dir(d)
    }
}

#[test]
fn a_put_stays_visible_while_another_thread_flushes_it() {
    let fs = sim();
    let opts = Options {
        fs: Arc::new(Slow(fs.clone())),
        ..Options::default()
    };
    let s = Arc::new(Store::open(PATH, opts).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flusher = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                s.flush().unwrap();
            }
        })
    };
    // Every key read back must have the value last put, whatever the flusher is doing.
    let mut last = [None::<u32>; 50];
    for i in 0..2_000u32 {
        let slot = (i * 7) as usize % 50;
        let k = format!("k{slot}");
        s.put(k.as_bytes(), Value::copy_from(&i.to_le_bytes()))
            .unwrap();
        last[slot] = Some(i);
        for (j, want) in last.iter().enumerate() {
            let got = s.get(format!("k{j}").as_bytes());
            assert_eq!(
                got.as_deref(),
                want.map(|w| w.to_le_bytes()).as_ref().map(|b| &b[..]),
                "k{j} after put {i}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    flusher.join().unwrap();
}

#[test]
fn errors_chain_their_source() {
    use std::error::Error as _;
    let e = Error::Io {
        op: "open",
        path: PathBuf::from("cache.bin"),
        source: io::Error::new(io::ErrorKind::PermissionDenied, "no"),
    };
    let source = e.source().expect("an io error has a source");
    assert_eq!(
        source.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::PermissionDenied)
    );
    assert!(Error::ReadOnly.source().is_none());
    let cache = crate::program_cache::CacheError::Store(e);
    assert!(cache.source().and_then(|s| s.source()).is_some());
}

/// A file of platform info and six programs `prog_0` to `prog_5` of about 20 KB, in one flush.
fn six_programs() -> SimFs {
    let fs = sim();
    let s = open_on(&fs);
    s.put(PLATFORM_INFO_KEY, v("pocl, FULL_PROFILE")).unwrap();
    for i in 0..6u8 {
        let value = vec![i; 20_000 + usize::from(i)];
        s.put(format!("prog_{i}").as_bytes(), Value::from_vec(value))
            .unwrap();
    }
    s.flush().unwrap();
    fs
}

/// A rewrite hashes only the values put since the file was read: every other record's checksum is
/// carried from the record it was read from (or that a rewrite wrote), and every file written
/// still reads intact with every entry.
#[test]
fn a_rewrite_hashes_only_the_values_put_since_the_file_was_read() {
    let fs = six_programs();
    let s = open_on(&fs);
    let hashed_by = |f: &dyn Fn()| {
        let before = format::value_bytes_hashed();
        f();
        format::value_bytes_hashed() - before
    };
    // A removal makes the flush a rewrite.
    let rewrites = s.stats().rewrites;
    let n = hashed_by(&|| {
        s.remove(b"prog_0").unwrap();
        s.put(b"new", v("fresh")).unwrap();
        s.flush().unwrap();
    });
    assert_eq!(s.stats().rewrites, rewrites + 1);
    assert_eq!(n, 5, "only the value put since the open");
    assert_eq!(on_disk(&fs), contents(&s));
    // The next rewrite carries the checksums on from the file the last one wrote.
    let n = hashed_by(&|| {
        s.remove(b"prog_1").unwrap();
        s.flush().unwrap();
    });
    assert_eq!(n, 5, "the value put before the last rewrite");
    assert_eq!(on_disk(&fs), contents(&s));
    // A value put over one read from the file is hashed, even of the same length.
    let n = hashed_by(&|| {
        s.put(b"prog_2", Value::from_vec(vec![9; 20_002])).unwrap();
        s.remove(b"prog_3").unwrap();
        s.flush().unwrap();
    });
    assert_eq!(n, 5 + 20_002);
    assert_eq!(on_disk(&fs), contents(&s));
    // What another store committed is merged with the checksums its read carries.
    let other = open_on(&fs);
    other.remove(b"new").unwrap();
    other.flush().unwrap();
    let n = hashed_by(&|| {
        s.remove(b"prog_4").unwrap();
        s.flush().unwrap();
    });
    assert_eq!(s.stats().merges, 1);
    assert_eq!(n, 0, "every value was read from the file");
    assert_eq!(on_disk(&fs), contents(&s));
    assert_eq!(contents(&s).len(), 3);
}

/// A lazily opened store's rewrite reads and verifies every value it keeps, and derives each
/// record's checksum from the one it verified instead of hashing the value a second time: only
/// what was put since is hashed, and the file is the one an eager store would write.
#[test]
fn a_lazy_rewrite_hashes_only_the_values_put_since_the_file_was_read() {
    let fs = six_programs();
    let opts = |fs: &SimFs, verify| Options {
        fs: Arc::new(fs.clone()),
        verify,
        ..Options::default()
    };
    // Found through the file's index, and walked record by record in a file without one (as
    // written before indexes existed): the index record cut off, the trailer made to match.
    let walked = fs.snapshot();
    let bytes = walked.read_file(PATH).unwrap();
    let tip = decode(&bytes).unwrap().checked.unwrap().index.unwrap();
    let mut cut = bytes[..tip.at as usize].to_vec();
    cut.extend_from_slice(&crc32fast::hash(&cut).to_le_bytes());
    walked.write_file(PATH, &cut);
    let eager_fs = fs.snapshot();
    let mut files = Vec::new();
    for (fs, verify) in [
        (&fs, Verify::Lazy),
        (&walked, Verify::Lazy),
        (&eager_fs, Verify::Eager),
    ] {
        let s = Store::open(PATH, opts(fs, verify)).unwrap();
        let before = format::value_bytes_hashed();
        s.remove(b"prog_0").unwrap();
        s.put(b"new", v("fresh")).unwrap();
        s.flush().unwrap();
        assert_eq!(s.stats().rewrites, 1);
        assert_eq!(format::value_bytes_hashed() - before, 5, "{verify:?}");
        assert_eq!(on_disk(fs), contents(&s));
        files.push(on_disk(fs));
    }
    assert!(files[0] == files[1] && files[1] == files[2]);
}

/// A store of its own on `fs` (another process) flushes `key` with `value`: the syncs it made
/// (` sync_all `, ` sync_data `, ` sync_dir `), and whether it appended.
fn syncs_of_a_flush(fs: &SimFs, key: &[u8], value: &str) -> (Vec<String>, bool) {
    let s = open_on(fs);
    s.put(key, v(value)).unwrap();
    fs.reset_calls();
    s.flush().unwrap();
    let syncs = fs.trace().into_iter().filter(|t| t.contains(" sync"));
    (syncs.collect(), s.stats().appends == 1)
}

/// [`syncs_of_a_flush`] of a new key, which must append.
fn syncs_of_an_append(fs: &SimFs, key: &[u8]) -> Vec<String> {
    let (syncs, appended) = syncs_of_a_flush(fs, key, "new");
    assert!(appended, "{syncs:?}");
    syncs
}

/// How many of `syncs` sync a directory.
fn dir_syncs(syncs: &[String]) -> usize {
    syncs.iter().filter(|t| t.contains(" sync_dir ")).count()
}

/// A file read from disk gets a directory sync before its first append (it may have been renamed
/// into place by a process that died before its own), unless the lock file's note says one came
/// after the file took its name: the rewrite that made it leaves that note, and so does the first
/// append that synced.
#[test]
fn an_append_to_a_file_whose_name_is_noted_durable_syncs_no_directory() {
    let fs = sim();
    syncs_of_a_flush(&fs, b"a", "1");
    let syncs = syncs_of_an_append(&fs, b"b");
    assert_eq!(syncs.len(), 2, "the append's two: {syncs:?}");
    assert_eq!(dir_syncs(&syncs), 0, "{syncs:?}");
    // The note vouches for the name, not the data: a flush with nothing to write still syncs the
    // file it read (its writer may have died before its own sync), and only the file.
    let (syncs, _) = syncs_of_a_flush(&fs, b"a", "1");
    assert!(
        syncs.len() == 1 && syncs[0].contains(" sync_all "),
        "{syncs:?}"
    );

    // The same bytes under a name no note vouches for (written by something else): synced once,
    // then noted.
    let other = sim();
    other.write_file(PATH, &fs.read_file(PATH).unwrap());
    for (round, want) in [(0, 1), (1, 0)] {
        let syncs = syncs_of_an_append(&other, format!("new {round}").as_bytes());
        assert_eq!(dir_syncs(&syncs), want, "round {round}: {syncs:?}");
    }
}

/// A rewrite renamed into place whose directory sync failed leaves the note of the file before
/// it: the next process to append to the new file syncs the directory, so that its acknowledged
/// append survives a power loss that drops every unsynced directory change.
#[test]
fn an_append_after_a_rename_whose_directory_sync_failed_syncs_the_directory() {
    let fs = sim();
    syncs_of_a_flush(&fs, b"a", "1");
    // Overwriting a key rewrites the file; make its directory sync fail, found on a copy.
    let rewrite = |fs: &SimFs, fail_at: Option<u64>| {
        let s = open_on(fs);
        s.put(b"a", v("2")).unwrap();
        fs.reset_calls();
        if let Some(n) = fail_at {
            fs.fail_at(n, FailKind::Once(libc::EIO));
        }
        let flushed = s.flush();
        fs.clear_faults();
        flushed
    };
    let probe = fs.snapshot();
    rewrite(&probe, None).unwrap();
    let at = probe
        .trace()
        .iter()
        .position(|t| t.contains(" sync_dir "))
        .expect("a rewrite syncs the directory") as u64
        + 1;
    let failed = rewrite(&fs, Some(at));
    let hit = fs.trace()[at as usize - 1].clone();
    assert!(
        failed.is_err() && hit.contains(" sync_dir ") && hit.contains("=> injected"),
        "{hit}"
    );
    assert_eq!(open_on(&fs).get(b"a").unwrap().to_vec(), b"2");
    let syncs = syncs_of_an_append(&fs, b"b");
    assert_eq!(dir_syncs(&syncs), 1, "{syncs:?}");
    let after = fs.crash_drop_all();
    let s = open_on(&after);
    assert_eq!(s.get(b"b").map(|v| v.to_vec()), Some(b"new".to_vec()));
}

/// A note that is torn, stale or of another file is only a directory sync more.
#[test]
fn a_note_of_another_file_or_garbage_is_not_trusted() {
    let fs = sim();
    syncs_of_a_flush(&fs, b"a", "1");
    let bytes = fs.read_file(PATH).unwrap();
    // Another file with the same bytes (so the same checked-1.1 id) renamed to the name: another
    // inode.
    fs.write_file("cache/copy", &bytes);
    fs.rename(Path::new("cache/copy"), Path::new(PATH)).unwrap();
    assert_eq!(dir_syncs(&syncs_of_an_append(&fs, b"b")), 1);
    // Garbage over the note: not trusted either.
    let lock = crate::io::sibling(Path::new(PATH), side_files::LOCK);
    let guard = fs.lock(&lock, None).unwrap();
    assert!(guard.write_note(0, &[0x5a; 36]));
    drop(guard);
    assert_eq!(dir_syncs(&syncs_of_an_append(&fs, b"c")), 1);
}

/// A store of [`Verify::Lazy`] on `fs`.
fn open_lazy(fs: &SimFs, read_only: bool) -> Store {
    let opts = Options {
        fs: Arc::new(fs.clone()),
        verify: Verify::Lazy,
        read_only,
        ..Options::default()
    };
    Store::open(PATH, opts).unwrap()
}

/// The ranges the calls since the last reset asked the kernel to read ahead.
fn read_aheads(fs: &SimFs) -> Vec<std::ops::Range<u64>> {
    let field = |t: &str, name: &str| -> u64 {
        let at = t.find(name).unwrap() + name.len();
        t[at..].split(' ').next().unwrap().parse().unwrap()
    };
    fs.trace()
        .iter()
        .filter(|t| t.contains("read_ahead "))
        .map(|t| {
            let off = field(t, " off=");
            off..off + field(t, " len=")
        })
        .collect()
}

/// Which of `prog_0` to `prog_5` the ranges read ahead cover the values of, wholly.
fn programs_read_ahead(fs: &SimFs, ranges: &[std::ops::Range<u64>]) -> Vec<String> {
    let b = fs.read_file(PATH).unwrap();
    let d = decode(&b).unwrap();
    let mut found: Vec<String> = d
        .entries
        .iter()
        .filter_map(|e| {
            let format::ValueRef::Slice(r) = &e.value else {
                return None;
            };
            let (start, end) = (r.start as u64, r.end as u64);
            let covered = ranges.iter().any(|x| x.start <= start && end <= x.end);
            let key = String::from_utf8_lossy(&b[e.key.clone()]).into_owned();
            (covered && key.starts_with("prog_")).then_some(key)
        })
        .collect();
    found.sort();
    found
}

/// Whether the calls since the last reset wrote a lock file's note.
fn wrote_a_note(fs: &SimFs) -> bool {
    fs.trace().iter().any(|t| t.contains("put_note "))
}

/// A lazy open asks at once for the records the last store's gets read (left in the lock file's
/// note as they were read, and when it was dropped), and for nothing else; a store that read the
/// same, in the same order, leaves the note as it is; one that read others leaves a note of those.
#[test]
fn a_lazy_open_reads_ahead_at_once_what_the_last_store_read() {
    let fs = six_programs();
    fs.reset_calls();
    let s = open_lazy(&fs, false);
    assert!(read_aheads(&fs).is_empty(), "no note yet");
    assert!(s.get(b"prog_1").is_some());
    let mut buf = vec![0u8; 20_004];
    assert!(s.get_into(b"prog_4", |n| buf.get_mut(..n)));
    assert!(wrote_a_note(&fs), "two reads: a note already");
    fs.reset_calls();
    drop(s);
    assert!(!wrote_a_note(&fs), "nothing read since");

    fs.reset_calls();
    let s = open_lazy(&fs, false);
    let ahead = read_aheads(&fs);
    assert_eq!(ahead.len(), 2, "two records, 60 KB apart: {ahead:?}");
    assert_eq!(programs_read_ahead(&fs, &ahead), ["prog_1", "prog_4"]);
    // Only asked for: each value is still read and verified on its get.
    assert!(s.get(b"prog_1").is_some());
    assert_eq!(s.get(b"prog_4").as_deref(), Some(&[4u8; 20_004][..]));
    fs.reset_calls();
    drop(s);
    assert!(!wrote_a_note(&fs), "the same reads: the note stands");

    let s = open_lazy(&fs, false);
    assert!(s.get(b"prog_2").is_some());
    drop(s);
    fs.reset_calls();
    let s = open_lazy(&fs, false);
    assert_eq!(programs_read_ahead(&fs, &read_aheads(&fs)), ["prog_2"]);

    // Most of the file: read in order, which the kernel streams without being asked.
    fs.reset_calls();
    for k in ["prog_0", "prog_1", "prog_2", "prog_3"] {
        assert!(s.get(k.as_bytes()).is_some());
    }
    drop(s);
    assert!(wrote_a_note(&fs));
    fs.reset_calls();
    let _s = open_lazy(&fs, false);
    assert!(read_aheads(&fs).is_empty());
}

/// A note is a hint for the very file it was left for: after a rewrite (another file, other
/// offsets), or torn, or garbled, nothing is read ahead and every value still reads; a read-only
/// store leaves no note, nor does one that read nothing.
#[test]
fn a_read_ahead_note_of_another_file_or_garbled_reads_nothing_ahead() {
    let fs = six_programs();
    let s = open_lazy(&fs, false);
    assert!(s.get(b"prog_3").is_some());
    drop(s);
    let with_note = fs.snapshot();

    // A rewrite by another store: the note names the file it replaced.
    let other = open_on(&fs);
    other.remove(b"prog_0").unwrap();
    other.flush().unwrap();
    assert_eq!(other.stats().rewrites, 1);
    drop(other);
    fs.reset_calls();
    let s = open_lazy(&fs, false);
    assert!(read_aheads(&fs).is_empty());
    assert!(s.get(b"prog_3").is_some());
    drop(s);

    // Torn and garbled notes.
    let lock = crate::io::sibling(Path::new(PATH), side_files::LOCK);
    let note = with_note.peek_note(&lock, 64, 1 << 10).unwrap();
    assert!(note.len() > 40, "{note:?}");
    let torn = with_note.snapshot();
    let mut half = note.clone();
    half[note.len() / 2..].fill(0);
    let garbled = with_note.snapshot();
    let mut flipped = note.clone();
    flipped[30] ^= 1;
    for (fs, bad) in [(&torn, half), (&garbled, flipped)] {
        assert!(fs.lock(&lock, None).unwrap().write_note(64, &bad));
        fs.reset_calls();
        let s = open_lazy(fs, false);
        assert!(read_aheads(fs).is_empty());
        assert!(s.get(b"prog_3").is_some());
    }

    // Read-only: reads ahead what the note says, leaves none of its own.
    let fs = with_note;
    fs.reset_calls();
    let s = open_lazy(&fs, true);
    assert_eq!(programs_read_ahead(&fs, &read_aheads(&fs)), ["prog_3"]);
    assert!(s.get(b"prog_5").is_some());
    fs.reset_calls();
    drop(s);
    assert!(!wrote_a_note(&fs));
    // Nothing read: no note either.
    let s = open_lazy(&fs, false);
    fs.reset_calls();
    drop(s);
    assert!(!wrote_a_note(&fs));
}

/// A process killed with its store open (never dropped) leaves the note of its reads as they
/// were at the last doubling: the first read, the first two, the first four...; a store that
/// follows the note it found writes nothing while it does.
#[test]
fn a_store_never_closed_leaves_the_note_of_its_reads_at_each_doubling() {
    let fs = six_programs();
    let gets = |fs: &SimFs, keys: &[&str]| {
        let s = open_lazy(fs, false);
        for k in keys {
            assert!(s.get(k.as_bytes()).is_some());
        }
        // Killed: no drop.
        std::mem::forget(s);
    };
    let next = |fs: &SimFs| {
        fs.reset_calls();
        let s = open_lazy(fs, false);
        let got = programs_read_ahead(fs, &read_aheads(fs));
        drop(s);
        got
    };
    gets(&fs, &["prog_5", "prog_0", "prog_3"]);
    assert_eq!(next(&fs), ["prog_0", "prog_5"], "the first two reads");
    // Following the note: nothing written until the reads leave it.
    fs.reset_calls();
    gets(&fs, &["prog_5", "prog_0"]);
    assert!(!wrote_a_note(&fs));
    gets(&fs, &["prog_5", "prog_0", "prog_3"]);
    assert!(
        !wrote_a_note(&fs),
        "three reads: the next note is due at four"
    );
    gets(&fs, &["prog_2", "prog_4"]);
    assert!(wrote_a_note(&fs), "the first read is not the note's");
    assert_eq!(next(&fs), ["prog_2", "prog_4"]);
}
