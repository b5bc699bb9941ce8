//! Lazily verified reads ([`Verify::Lazy`]): an intact checked-1.1 file's values are checksummed on
//! first use, and every guarantee of an eager open still holds: a value that fails its checksum is
//! never returned (it is missing, counted and dropped, and the next flush rewrites the file without
//! it), every byte flip of a file reads the same lazily as eagerly, and a value read after the file
//! changed or was replaced on disk comes from the file as it was opened.

mod common;

use mace_storage::ffi::{mace_storage_set_log_callback, MaceStorageLogLevel};
use mace_storage::format::{self, PLATFORM_INFO_KEY};
use mace_storage::io::sim::SimFs;
use mace_storage::io::Fs;
use mace_storage::store::{Options, Store, Value, Verify};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

const PATH: &str = "data/cache.bin";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Bytes that occur nowhere else in the file (a xorshift stream seeded by `i`).
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key(i: usize) -> Vec<u8> {
    format!("conv_2d_1x1 -DBIAS -DK{i}").into_bytes()
}

/// Options of a lazily verified store on the real filesystem.
fn lazy() -> Options {
    capture_log();
    Options {
        verify: Verify::Lazy,
        ..Options::default()
    }
}

fn open_sim(fs: &SimFs, verify: Verify) -> Store {
    capture_log();
    common::open_on(fs, PATH, verify).unwrap()
}

/// A committed checked-1.1 file: platform info and `n` binaries in one rewrite, then (if `append`)
/// two more keys in an appended batch.
fn committed(n: usize, append: bool) -> (SimFs, Map) {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open_sim(&fs, Verify::Lazy);
    let mut want = Map::new();
    let mut put = |k: Vec<u8>, v: Vec<u8>| {
        s.put(&k, Value::copy_from(&v)).unwrap();
        want.insert(k, v);
    };
    put(
        PLATFORM_INFO_KEY.to_vec(),
        b"PoCL, FULL_PROFILE, OpenCL 3.0".to_vec(),
    );
    for i in 0..n {
        put(key(i), value(i, 40 + i * 31));
    }
    s.flush().unwrap();
    if append {
        for i in n..n + 2 {
            put(key(i), value(i, 50 + i));
        }
        s.flush().unwrap();
        assert_eq!(s.stats().appends, 1);
    }
    (fs, want)
}

/// Warnings logged about values that failed their checksum on first use, in this process.
static FAILED_LOGGED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_log(_level: MaceStorageLogLevel, msg: *const c_char, _user: *mut c_void) {
    // SAFETY: the library passes a NUL-terminated string valid during the call.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    if msg.contains("failed its checksum when first read") {
        FAILED_LOGGED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the library's warnings instead of printing them (thousands in the byte-flip test).
fn capture_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        mace_storage_set_log_callback(
            Some(count_log),
            std::ptr::null_mut(),
            MaceStorageLogLevel::MACE_STORAGE_LOG_WARNING,
        )
    });
}

fn contents(s: &Store) -> Map {
    s.entries()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

/// Where `needle` is in `hay` (once).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    let at = hay.windows(needle.len()).position(|w| w == needle).unwrap();
    assert!(hay[at + 1..].windows(needle.len()).all(|w| w != needle));
    at
}

/// Flips the bits `mask` of byte `offset` of the stored `value` (found once in the file), on disk.
fn damage_value(fs: &SimFs, value: &[u8], offset: usize, mask: u8) {
    let mut bytes = fs.read_file(PATH).unwrap();
    let at = find(&bytes, value) + offset;
    bytes[at] ^= mask;
    fs.write_file(PATH, &bytes);
}

#[test]
fn an_intact_file_opens_with_its_values_unverified_and_each_verifies_on_get() {
    let (fs, want) = committed(6, true);
    let bytes = fs.read_file(PATH).unwrap();
    let (d, checks) = format::decode_lazy(&bytes).unwrap();
    assert!(d.damage.intact && d.checked.is_some());
    assert_eq!(checks.len(), d.entries.len());
    // Only the platform-info entry is verified at open.
    for (e, c) in d.entries.iter().zip(&checks) {
        let is_platform = &bytes[e.key.clone()] == PLATFORM_INFO_KEY;
        assert_eq!(c.is_none(), is_platform);
        let value = match &e.value {
            format::ValueRef::Slice(r) => r.clone(),
            format::ValueRef::Owned(_) => 0..0,
        };
        assert!(c
            .as_ref()
            .map_or(true, |c| c.verify(&bytes, &bytes[e.key.clone()], value)));
    }
    // The same entries as the eager decoder, which also carries each verified record's checksum
    // for a rewrite: the lazy decode carries the one of the entry it verified at open (the
    // platform-info entry) and none of the others (a value carries its own once it verifies).
    let eager = format::decode(&bytes).unwrap();
    assert!(eager.entries.iter().all(|e| e.known_crc.is_some()));
    assert_eq!(d.entries.len(), eager.entries.len());
    for ((lazy, eager), check) in d.entries.iter().zip(&eager.entries).zip(&checks) {
        let carried = if check.is_none() {
            eager.known_crc
        } else {
            None
        };
        assert_eq!(lazy.known_crc, carried);
    }
    let uncarried = |es: &[format::DecodedEntry]| -> Vec<format::DecodedEntry> {
        es.iter()
            .map(|e| format::DecodedEntry {
                known_crc: None,
                ..e.clone()
            })
            .collect()
    };
    assert_eq!(uncarried(&d.entries), uncarried(&eager.entries));
    assert_eq!(d.checked, eager.checked);
    let s = open_sim(&fs, Verify::Lazy);
    assert!(s.report().damage.intact);
    for (k, v) in &want {
        assert_eq!(s.get(k).as_deref(), Some(&v[..]));
    }
    assert_eq!(contents(&s), want);
    assert_eq!(s.stats().entries_failed_on_use, 0);
}

#[test]
fn a_value_damaged_before_open_is_never_returned_and_the_next_flush_rewrites_without_it() {
    let (fs, want) = committed(6, false);
    let victim = key(3);
    damage_value(&fs, &want[&victim], 5, 0x40);

    let s = open_sim(&fs, Verify::Lazy);
    // Not known at open: the framing is intact, only the value's own checksum can tell.
    assert!(s.report().damage.intact);
    assert_eq!(s.len(), want.len());
    assert_eq!(s.get(&victim), None, "a damaged value was returned");
    assert_eq!(s.get(&victim), None);
    let st = s.stats();
    assert_eq!((st.entries_failed_on_use, st.entries_dropped), (1, 1));
    // Logged when found (other tests of this binary may log theirs meanwhile: at least one).
    assert!(FAILED_LOGGED.load(Ordering::Relaxed) >= 1);
    assert_eq!(s.len(), want.len() - 1);
    let mut rest = want.clone();
    rest.remove(&victim);
    assert_eq!(contents(&s), rest);
    // An eager open keeps exactly the same.
    assert_eq!(contents(&open_sim(&fs, Verify::Eager)), rest);

    // Adding a key would append to an intact file; this one is rewritten, without the damage.
    s.put(b"new key", Value::copy_from(b"new value")).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().appends, s.stats().rewrites), (0, 1));
    rest.insert(b"new key".to_vec(), b"new value".to_vec());
    let again = open_sim(&fs, Verify::Eager);
    assert!(again.report().damage.intact, "{:?}", again.report().damage);
    assert_eq!(contents(&again), rest);
}

/// A flush that only adds keys appends without reading the old values (their framing was
/// verified at open): a damaged old value is found at its own first use, never returned, and the
/// flush after that rewrites the file without it. `entries` reads every value first.
#[test]
fn an_append_reads_no_old_value_and_damage_is_found_at_its_own_use() {
    let (fs, want) = committed(5, false);
    let victim = key(1);
    damage_value(&fs, &want[&victim], 0, 1);
    let s = open_sim(&fs, Verify::Lazy);
    s.put(b"k", Value::copy_from(b"v")).unwrap();
    fs.reset_calls();
    s.flush().unwrap();
    assert_eq!((s.stats().appends, s.stats().rewrites), (1, 0));
    assert_eq!(s.stats().entries_failed_on_use, 0);
    // No read of the file: only the append's writes and syncs (and the lock's calls).
    assert!(
        fs.trace().iter().all(|t| !t.contains("read")),
        "{:?}",
        fs.trace()
    );
    let mut rest = want.clone();
    rest.remove(&victim);
    rest.insert(b"k".to_vec(), b"v".to_vec());
    assert_eq!(contents(&s), rest);
    assert_eq!(s.get(&victim), None);
    assert_eq!(s.stats().entries_failed_on_use, 1);
    // An eager open drops the damaged entry alone.
    assert_eq!(contents(&open_sim(&fs.snapshot(), Verify::Eager)), rest);
    // The file is not as written: the next flush rewrites it, without the damage.
    s.put(b"k2", Value::copy_from(b"v2")).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().appends, s.stats().rewrites), (1, 1));
    rest.insert(b"k2".to_vec(), b"v2".to_vec());
    let again = open_sim(&fs, Verify::Eager);
    assert!(again.report().damage.intact, "{:?}", again.report().damage);
    assert_eq!(contents(&again), rest);
}

/// A rewrite reads and verifies every value it keeps: a damaged one is left out, never copied.
#[test]
fn a_rewrite_reads_every_value_it_keeps_and_leaves_out_the_damaged() {
    let (fs, want) = committed(5, false);
    let victim = key(2);
    damage_value(&fs, &want[&victim], 7, 0x10);
    let s = open_sim(&fs, Verify::Lazy);
    // Removing a key forces a rewrite.
    assert!(s.remove(&key(0)).unwrap());
    s.flush().unwrap();
    assert_eq!((s.stats().appends, s.stats().rewrites), (0, 1));
    assert_eq!(s.stats().entries_failed_on_use, 1);
    let mut rest = want.clone();
    rest.remove(&victim);
    rest.remove(&key(0));
    let again = open_sim(&fs, Verify::Eager);
    assert!(again.report().damage.intact, "{:?}", again.report().damage);
    assert_eq!(contents(&again), rest);
}

/// An I/O error on a value's first read returns nothing and drops nothing: the get misses, the
/// entry stays, and the next get reads it.
#[test]
fn an_io_error_on_a_first_read_misses_and_keeps_the_entry() {
    use mace_storage::io::sim::FailKind;
    let (fs, want) = committed(3, false);
    let s = open_sim(&fs, Verify::Lazy);
    let k = key(1);
    fs.reset_calls();
    fs.fail_at(1, FailKind::Once(libc::EIO));
    assert_eq!(s.get(&k), None);
    assert!(fs.trace()[0].contains("read_at"), "{:?}", fs.trace());
    let st = s.stats();
    assert_eq!((st.entries_failed_on_use, st.entries_dropped), (0, 0));
    assert_eq!(s.len(), want.len());
    assert_eq!(s.get(&k).as_deref(), Some(&want[&k][..]));
    // A rewrite that cannot read a value it keeps fails, writes nothing, and keeps the changes
    // for the next one.
    let mut rest = want.clone();
    rest.remove(&key(0));
    let mut reached = false;
    for n in 1..100 {
        let fs = fs.snapshot();
        let s = open_sim(&fs, Verify::Lazy);
        s.remove(&key(0)).unwrap();
        fs.reset_calls();
        fs.fail_at(n, FailKind::Once(libc::EIO));
        let result = s.flush();
        let trace = fs.trace();
        if !trace
            .get(n as usize - 1)
            .is_some_and(|t| t.contains("read_at"))
        {
            continue;
        }
        reached = true;
        assert!(result.is_err(), "{trace:?}");
        assert_eq!(contents(&open_sim(&fs.snapshot(), Verify::Eager)), want);
        fs.clear_faults();
        s.flush().unwrap();
        assert_eq!(contents(&open_sim(&fs, Verify::Eager)), rest);
    }
    assert!(reached, "no flush read a value");
}

/// Every single-bit flip at every byte of a file (a rewritten base and an appended batch): the lazy
/// store returns, by `get` and by `entries`, exactly what an eager open keeps.
#[test]
fn every_byte_flip_reads_the_same_lazily_as_eagerly() {
    let (fs0, want) = committed(4, true);
    let bytes = fs0.read_file(PATH).unwrap();
    let mut keys: Vec<Vec<u8>> = want.keys().cloned().collect();
    keys.push(b"absent".to_vec());
    let mut failed_on_use = 0;
    for at in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[at] ^= bit;
            let fs = SimFs::new();
            fs.write_file(PATH, &b);
            let eager = open_sim(&fs.snapshot(), Verify::Eager);
            let lazy = open_sim(&fs, Verify::Lazy);
            let eagerly = contents(&eager);
            let by_get: Map = keys
                .iter()
                .filter_map(|k| lazy.get(k).map(|v| (k.clone(), v.to_vec())))
                .collect();
            assert_eq!(by_get, eagerly, "flip {bit:#x} at {at}: get");
            assert_eq!(contents(&lazy), eagerly, "flip {bit:#x} at {at}: entries");
            for (k, v) in &by_get {
                assert_eq!(want.get(k), Some(v), "flip {bit:#x} at {at}: a wrong value");
            }
            failed_on_use += lazy.stats().entries_failed_on_use;
        }
    }
    // The lazy path was taken for the flips inside values and keys.
    assert!(failed_on_use > 100, "{failed_on_use}");
}

/// A byte flipped on disk after open, before the value's first get: the value is read from the
/// file on first use and verified then, so the damaged value is never returned (it is dropped and
/// counted); the others are served.
#[test]
fn a_byte_flipped_on_disk_after_open_is_never_returned() {
    use std::os::unix::fs::FileExt;
    let (_dir, path) = common::temp_path("lazy-flip", "cache.bin");
    let s = Store::open(&path, lazy()).unwrap();
    let v = value(9, 3000);
    s.put(PLATFORM_INFO_KEY, Value::copy_from(b"platform"))
        .unwrap();
    s.put(b"binary", Value::copy_from(&v)).unwrap();
    s.put(b"other", Value::copy_from(b"x")).unwrap();
    s.flush().unwrap();
    drop(s);

    let s = Store::open(&path, lazy()).unwrap();
    let at = find(&std::fs::read(&path).unwrap(), &v) + 100;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(&[v[100] ^ 0xff], at as u64).unwrap();
    f.sync_all().unwrap();
    assert_eq!(s.get(b"binary"), None, "a damaged value was returned");
    assert_eq!(s.stats().entries_failed_on_use, 1);
    assert_eq!(s.get(b"other").as_deref(), Some(&b"x"[..]));
    // A new open finds the same.
    let fresh = Store::open(&path, lazy()).unwrap();
    assert_eq!(fresh.get(b"binary"), None);
    assert_eq!(fresh.stats().entries_failed_on_use, 1);
    assert_eq!(fresh.get(b"other").as_deref(), Some(&b"x"[..]));
}

/// The same in the simulated filesystem, a value already read staying as it was verified.
#[test]
fn a_byte_flipped_in_sim_after_open_is_never_returned() {
    let (fs, want) = committed(4, false);
    let s = open_sim(&fs, Verify::Lazy);
    let (early, victim) = (key(0), key(2));
    assert_eq!(s.get(&early).as_deref(), Some(&want[&early][..]));
    let bytes = fs.read_file(PATH).unwrap();
    let mut h = fs.open_existing(std::path::Path::new(PATH)).unwrap();
    for k in [&early, &victim] {
        let at = find(&bytes, &want[k]) + 11;
        h.write_at(at as u64, &[bytes[at] ^ 0x04]).unwrap();
    }
    assert_eq!(s.get(&victim), None, "a damaged value was returned");
    assert_eq!(s.stats().entries_failed_on_use, 1);
    assert_eq!(s.get(&early).as_deref(), Some(&want[&early][..]));
    assert_eq!(s.get(&key(3)).as_deref(), Some(&want[&key(3)][..]));
}

/// A file renamed over the path in the simulated filesystem: the store reads the inode it opened.
#[test]
fn values_read_after_a_rename_over_the_path_in_sim_come_from_the_file_opened() {
    let (fs, want) = committed(3, false);
    let s = open_sim(&fs, Verify::Lazy);
    fs.write_file("data/new", &fs.read_file(PATH).unwrap()[..10]);
    fs.rename(std::path::Path::new("data/new"), std::path::Path::new(PATH))
        .unwrap();
    assert_eq!(fs.read_file(PATH).unwrap().len(), 10);
    assert_eq!(contents(&s), want);
}

/// A file replaced under an open store (renamed over its path by another writer): values not yet
/// read still come from the file that was opened, and the next flush sees the new file and merges it.
#[test]
fn values_read_after_the_file_was_replaced_come_from_the_file_opened() {
    let (_dir, path) = common::temp_path("lazy-replace", "cache.bin");
    let write = |tag: u8| {
        let s = Store::open(&path, lazy()).unwrap();
        s.clear().unwrap();
        s.put(PLATFORM_INFO_KEY, Value::copy_from(b"platform"))
            .unwrap();
        s.put(b"binary", Value::from_vec(vec![tag; 5000])).unwrap();
        if tag == 2 {
            s.put(b"theirs", Value::copy_from(b"t")).unwrap();
        }
        s.flush().unwrap();
    };
    write(1);
    let s = Store::open(&path, lazy()).unwrap();
    write(2); // an atomic replace: a new file renamed over the path
    assert_eq!(s.get(b"binary").as_deref(), Some(&[1u8; 5000][..]));
    assert_eq!(s.get(b"theirs"), None);
    s.put(b"mine", Value::copy_from(b"m")).unwrap();
    s.flush().unwrap();
    assert_eq!(s.stats().merges, 1);
    let now = Store::open(&path, lazy()).unwrap();
    assert_eq!(now.get(b"binary").as_deref(), Some(&[2u8; 5000][..]));
    assert_eq!(now.get(b"theirs").as_deref(), Some(&b"t"[..]));
    assert_eq!(now.get(b"mine").as_deref(), Some(&b"m"[..]));
}

/// Threads getting the same damaged value at once: none returns it, and it is counted once.
#[test]
fn concurrent_first_gets_of_a_damaged_value_count_it_once() {
    let (fs, want) = committed(3, false);
    let victim = key(2);
    damage_value(&fs, &want[&victim], 3, 4);
    for _ in 0..20 {
        let s = Arc::new(open_sim(&fs.snapshot(), Verify::Lazy));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (s, k) = (s.clone(), victim.clone());
                std::thread::spawn(move || s.get(&k))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), None);
        }
        assert_eq!(s.stats().entries_failed_on_use, 1);
        assert_eq!(s.len(), want.len() - 1);
    }
}

/// Stock files and checked-1.0 keep the eager path under `Verify::Lazy`: damage is found and
/// reported at open exactly as an eager open reports it.
#[test]
fn other_formats_are_verified_at_open_under_lazy_too() {
    use mace_storage::format::{EntryIn, Format, ValueKind, WriteParams};
    let vals: Vec<(Vec<u8>, Vec<u8>)> = (0..6).map(|i| (key(i), value(i, 300))).collect();
    let mut entries = common::pairs_in(&vals);
    entries.push(EntryIn::new(
        PLATFORM_INFO_KEY,
        b"platform",
        ValueKind::Bytes,
    ));
    for f in [Format::Mace10, Format::Mace11, Format::Checked10] {
        let mut b = format::encode(f, &entries, WriteParams::next(0))
            .unwrap()
            .out
            .to_vec();
        let at = find(&b, &vals[2].1) + 10;
        b[at] ^= 0x20;
        let fs = SimFs::new();
        fs.write_file(PATH, &b);
        let eager = open_sim(&fs.snapshot(), Verify::Eager);
        let lazy = open_sim(&fs, Verify::Lazy);
        let (e, l) = (&eager.report().damage, &lazy.report().damage);
        assert_eq!(
            (l.intact, l.entries_dropped),
            (e.intact, e.entries_dropped),
            "{f}"
        );
        assert_eq!(lazy.len(), eager.len(), "{f}");
        assert_eq!(contents(&lazy), contents(&eager), "{f}");
        assert_eq!(lazy.stats().entries_failed_on_use, 0, "{f}");
    }
}

/// Bytes read by the `read_at` calls of `fs`'s trace.
fn bytes_read(fs: &SimFs) -> u64 {
    fs.trace()
        .iter()
        .filter(|t| t.contains(" read_at ") && !t.contains("=>"))
        .filter_map(|t| t.rsplit("len=").next()?.parse::<u64>().ok())
        .sum()
}

/// A file written in one flush: platform info, then `key(i)` with `value(i, lens[i])` for each i.
fn written(lens: &[usize]) -> SimFs {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open_sim(&fs, Verify::Lazy);
    s.put(PLATFORM_INFO_KEY, Value::copy_from(b"platform"))
        .unwrap();
    for (i, &len) in lens.iter().enumerate() {
        s.put(&key(i), Value::from_vec(value(i, len))).unwrap();
    }
    s.flush().unwrap();
    fs
}

/// A lazy open reads the framing only: a few KiB per entry at most, never the values it skips;
/// each first get reads that value's record, and a second get reads nothing.
#[test]
fn a_lazy_open_reads_the_framing_not_the_values() {
    let lens = [60_000; 20];
    let (n, fs) = (lens.len(), written(&lens));
    let len = fs.read_file(PATH).unwrap().len() as u64;
    fs.reset_calls();
    let s = open_sim(&fs, Verify::Lazy);
    let at_open = bytes_read(&fs);
    assert!(
        fs.trace().iter().all(|t| !t.contains(" read ")),
        "{:?}",
        fs.trace()
    );
    assert!(
        at_open <= (n as u64 + 2) * 8192,
        "{at_open} bytes read at open of a {len}-byte file"
    );
    fs.reset_calls();
    assert_eq!(s.get(&key(5)).unwrap().len(), 60_000);
    let one = bytes_read(&fs);
    assert!((60_000..61_000).contains(&one), "{one}");
    fs.reset_calls();
    assert!(s.get(&key(5)).is_some());
    assert_eq!(fs.calls(), 0, "{:?}", fs.trace());
}

/// `Store::get_into` into a fresh buffer: the value, or `None` for a miss.
fn get_into(s: &Store, key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let found = s.get_into(key, |len| {
        buf.resize(len, 0xa5);
        Some(&mut buf[..])
    });
    found.then_some(buf)
}

/// A lazily read value read into the caller's buffer is verified there and not kept by the store:
/// a byte flipped on disk after the first read is caught by the second, as by a get after it.
#[test]
fn get_into_reads_a_lazy_value_into_the_callers_buffer_and_keeps_no_copy() {
    let (fs, want) = committed(4, true);
    let s = open_sim(&fs, Verify::Lazy);
    for (k, v) in &want {
        assert_eq!(get_into(&s, k).as_ref(), Some(v), "{k:?}");
    }
    assert_eq!(s.stats().hits, want.len() as u64);
    let victim = key(1);
    let bytes = fs.read_file(PATH).unwrap();
    let at = find(&bytes, &want[&victim]) + 7;
    let mut h = fs.open_existing(std::path::Path::new(PATH)).unwrap();
    h.write_at(at as u64, &[bytes[at] ^ 0x10]).unwrap();
    assert_eq!(
        get_into(&s, &victim),
        None,
        "a damaged value was reported found"
    );
    let st = s.stats();
    assert_eq!((st.entries_failed_on_use, st.entries_dropped), (1, 1));
    assert_eq!((st.hits, st.misses), (want.len() as u64, 1));
    assert_eq!(s.get(&victim), None);
    assert_eq!(s.len(), want.len() - 1);
    // The others still read from the file, intact; a value a get cached is copied from memory.
    let other = key(2);
    assert_eq!(s.get(&other).as_deref(), Some(&want[&other][..]));
    let at = find(&bytes, &want[&other]) + 3;
    h.write_at(at as u64, &[bytes[at] ^ 0x01]).unwrap();
    assert_eq!(get_into(&s, &other).as_ref(), Some(&want[&other]));
}

/// A value damaged before the first get_into is never reported found: dropped, counted and
/// logged once, as by a get.
#[test]
fn get_into_of_a_damaged_lazy_value_misses_and_drops_it() {
    let (fs, want) = committed(5, false);
    let victim = key(3);
    damage_value(&fs, &want[&victim], 5, 0x40);
    let s = open_sim(&fs, Verify::Lazy);
    assert!(s.report().damage.intact);
    let logged = FAILED_LOGGED.load(Ordering::Relaxed);
    assert_eq!(
        get_into(&s, &victim),
        None,
        "a damaged value was reported found"
    );
    assert_eq!(get_into(&s, &victim), None);
    let st = s.stats();
    assert_eq!((st.entries_failed_on_use, st.entries_dropped), (1, 1));
    assert_eq!((st.hits, st.misses), (0, 2));
    assert!(FAILED_LOGGED.load(Ordering::Relaxed) > logged);
    assert_eq!(s.len(), want.len() - 1);
    let mut rest = want.clone();
    rest.remove(&victim);
    assert_eq!(contents(&s), rest);
}

/// Values in memory (read at an eager open, or put and not flushed) are copied; an absent key
/// asks for no buffer; a caller that gives up, or returns a buffer of another length, misses.
#[test]
fn get_into_copies_values_in_memory_and_misses_what_it_cannot_fill() {
    let (fs, want) = committed(3, false);
    let s = open_sim(&fs, Verify::Eager);
    for (k, v) in &want {
        assert_eq!(get_into(&s, k).as_ref(), Some(v));
    }
    s.put(b"pending", Value::copy_from(b"not flushed")).unwrap();
    assert_eq!(
        get_into(&s, b"pending").as_deref(),
        Some(&b"not flushed"[..])
    );
    let lazy = open_sim(&fs, Verify::Lazy);
    lazy.put(&key(0), Value::copy_from(b"over")).unwrap();
    assert_eq!(get_into(&lazy, &key(0)).as_deref(), Some(&b"over"[..]));
    let mut asked = false;
    assert!(!s.get_into(b"absent", |_| {
        asked = true;
        None
    }));
    assert!(!asked, "a buffer was asked for an absent key");
    assert!(!lazy.get_into(&key(1), |len| {
        assert_eq!(len, want[&key(1)].len());
        None
    }));
    let mut short = vec![7u8; want[&key(2)].len() - 1];
    assert!(!lazy.get_into(&key(2), |_| Some(&mut short[..])));
    assert!(
        short.iter().all(|&b| b == 7),
        "a buffer of the wrong length was written"
    );
    let st = s.stats();
    assert_eq!((st.hits, st.misses), (want.len() as u64 + 1, 1));
    let st = lazy.stats();
    assert_eq!((st.hits, st.misses, st.entries_failed_on_use), (1, 2, 0));
    // Giving up leaves the entry for the next use.
    assert_eq!(get_into(&lazy, &key(1)).as_ref(), Some(&want[&key(1)]));
}

/// An I/O error reading into the caller's buffer is a miss for that call only.
#[test]
fn get_into_after_an_io_error_misses_and_keeps_the_entry() {
    use mace_storage::io::sim::FailKind;
    let (fs, want) = committed(3, false);
    let s = open_sim(&fs, Verify::Lazy);
    let k = key(1);
    // get_into keeps no copy: each call reads the value again, in as many calls as this one
    // (the first read also left the read-ahead note).
    assert_eq!(get_into(&s, &k).as_ref(), Some(&want[&k]));
    fs.reset_calls();
    assert_eq!(get_into(&s, &k).as_ref(), Some(&want[&k]));
    let reads = fs.calls();
    assert!(reads >= 1, "{:?}", fs.trace());
    for n in 1..=reads {
        fs.reset_calls();
        fs.fail_at(n, FailKind::Once(libc::EIO));
        assert_eq!(get_into(&s, &k), None, "read {n}");
        assert!(
            fs.trace()[n as usize - 1].contains("read_at"),
            "{:?}",
            fs.trace()
        );
    }
    fs.clear_faults();
    let st = s.stats();
    assert_eq!((st.entries_failed_on_use, st.entries_dropped), (0, 0));
    assert_eq!(get_into(&s, &k).as_ref(), Some(&want[&k]));
}

/// Every single-bit flip of a file: get_into reports found exactly what an eager open keeps, with
/// its bytes (the flips before, in and after each value, all covered by its checksum).
#[test]
fn every_byte_flip_reads_the_same_by_get_into_as_eagerly() {
    let (fs0, want) = committed(3, true);
    let bytes = fs0.read_file(PATH).unwrap();
    let keys: Vec<Vec<u8>> = want.keys().cloned().collect();
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x08;
        let fs = SimFs::new();
        fs.write_file(PATH, &b);
        let eagerly = contents(&open_sim(&fs.snapshot(), Verify::Eager));
        let lazy = open_sim(&fs, Verify::Lazy);
        let by_get_into: Map = keys
            .iter()
            .filter_map(|k| get_into(&lazy, k).map(|v| (k.clone(), v)))
            .collect();
        assert_eq!(by_get_into, eagerly, "flip at {at}");
    }
}

/// A first get, and every get_into, reads the value's whole record in one read however long it is:
/// a record read in pieces looks like a sequential stream to the kernel, which then reads ahead
/// several times what was asked for (a disk round trip per piece, and megabytes nobody uses),
/// where one read of a known length fetches just that.
#[test]
fn a_value_is_read_in_one_read_of_its_record_however_long() {
    let lens = [20, 60_000, 300 << 10, 3 << 20];
    let fs = written(&lens);
    let reads = |fs: &SimFs| -> Vec<String> {
        fs.trace()
            .into_iter()
            .filter(|t| t.contains(" read_at "))
            .collect()
    };
    for (i, &len) in lens.iter().enumerate() {
        let s = open_sim(&fs, Verify::Lazy);
        fs.reset_calls();
        assert_eq!(get_into(&s, &key(i)).map(|v| v.len()), Some(len));
        let by_get_into = reads(&fs);
        fs.reset_calls();
        assert_eq!(s.get(&key(i)).map(|v| v.len()), Some(len));
        let by_get = reads(&fs);
        for (how, r) in [("get_into", by_get_into), ("get", by_get)] {
            assert_eq!(r.len(), 1, "{how} of {len} bytes: {r:?}");
            let read = r[0]
                .rsplit("len=")
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap();
            assert!((len..len + 4096).contains(&read), "{how} of {len}: {r:?}");
        }
    }
}
