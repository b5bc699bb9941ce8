//! The index of checked-1.1 files (`docs/FORMAT.md`): a lazily verified open of a file with an
//! intact index chain reads the file's first and last bytes and each older index, however many
//! entries it holds; a file whose index is damaged, missing (written before indexes existed) or
//! chained too long opens by walking its records, with the same entries as an eager open, and
//! appends to such a file are read back whole.

mod common;

use mace_storage::format::{self, PLATFORM_INFO_KEY};
use mace_storage::io::sim::SimFs;
use mace_storage::store::{Store, Value, Verify};
use std::collections::BTreeMap;

const PATH: &str = "data/cache.bin";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(i: usize) -> Vec<u8> {
    format!("conv_2d_1x1 -DBIAS -DK{i}").into_bytes()
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i * 131 + j * 7 + j / 251) as u8)
        .collect()
}

fn open(fs: &SimFs, verify: Verify) -> Store {
    common::open_on(fs, PATH, verify).unwrap()
}

fn contents(s: &Store) -> Map {
    s.keys()
        .into_iter()
        .filter_map(|k| Some((k.clone(), s.get(&k)?.to_vec())))
        .collect()
}

/// A file of the platform-info entry and `n` values of `len` bytes in one rewrite, then `appends`
/// appended batches of two values each; with what it holds.
fn written(n: usize, len: usize, appends: usize) -> (SimFs, Map) {
    let fs = SimFs::new();
    fs.write_file("data/.keep", b"");
    let s = open(&fs, Verify::Lazy);
    let mut want = Map::new();
    let mut put = |k: Vec<u8>, v: Vec<u8>| {
        s.put(&k, Value::copy_from(&v)).unwrap();
        want.insert(k, v);
    };
    put(PLATFORM_INFO_KEY.to_vec(), b"PoCL, OpenCL 3.0".to_vec());
    for i in 0..n {
        put(key(i), value(i, len));
    }
    s.flush().unwrap();
    for a in 0..appends {
        for i in 0..2 {
            let i = n + 2 * a + i;
            put(key(i), value(i, len));
        }
        s.flush().unwrap();
    }
    assert_eq!(s.stats().appends as usize, appends);
    (fs, want)
}

/// Reads the store made at open, in the simulated filesystem.
fn reads_at_open(fs: &SimFs) -> (Store, usize) {
    fs.reset_calls();
    let s = open(fs, Verify::Lazy);
    let reads = fs
        .trace()
        .iter()
        .filter(|t| t.contains(" read_at "))
        .count();
    (s, reads)
}

#[test]
fn an_open_through_the_index_reads_a_few_times_whatever_the_entries() {
    for n in [5, 50, 400] {
        for appends in [0, 3] {
            let (fs, want) = written(n, 2_000, appends);
            let (s, reads) = reads_at_open(&fs);
            // The header, the file's end (the newest index and its commit), and each older index
            // that is not in that last read.
            assert!(
                reads <= 2 + appends,
                "{reads} reads at open of {n} entries and {appends} appends: {:?}",
                fs.trace()
            );
            assert_eq!(s.report().entries as usize, want.len());
            assert!(s.report().damage.intact);
            assert_eq!(contents(&s), want);
            let eager = format::decode(&fs.read_file(PATH).unwrap()).unwrap();
            assert!(eager.damage.intact, "{:?}", eager.damage);
            assert_eq!(eager.entries.len(), want.len());
        }
    }
}

/// The file as written, with the last index record (`at..end`) taken out and the trailer made
/// to match again: the shape of a file written before indexes existed.
fn without_last_index(bytes: &[u8]) -> Vec<u8> {
    let d = format::decode(bytes).unwrap();
    let tip = d
        .checked
        .and_then(|c| c.index)
        .expect("an index at the end");
    let at = tip.at as usize;
    assert_eq!(at + tip.len as usize + 4, bytes.len());
    let mut out = bytes[..at].to_vec();
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn a_file_without_an_index_is_walked_and_appends_to_it_read_back_whole() {
    let (fs, mut want) = written(30, 3_000, 0);
    let old = without_last_index(&fs.read_file(PATH).unwrap());
    let d = format::decode(&old).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    assert_eq!(d.checked.unwrap().index, None);
    fs.write_file(PATH, &old);
    let (s, reads) = reads_at_open(&fs);
    assert!(reads > 10, "the records are walked: {reads} reads");
    assert!(s.report().damage.intact);
    assert_eq!(contents(&s), want);
    // An append to it writes an index that does not reach batch 0: the next open walks again,
    // and finds everything.
    s.put(&key(99), Value::copy_from(b"new")).unwrap();
    want.insert(key(99), b"new".to_vec());
    s.flush().unwrap();
    assert_eq!(s.stats().appends, 1);
    drop(s);
    let (s, reads) = reads_at_open(&fs);
    assert!(reads > 10, "{reads} reads");
    assert!(s.report().damage.intact);
    assert_eq!(contents(&s), want);
    let eager = open(&fs, Verify::Eager);
    assert_eq!(contents(&eager), want);
}

#[test]
fn a_damaged_index_costs_no_entry() {
    let (fs, want) = written(20, 1_000, 2);
    let bytes = fs.read_file(PATH).unwrap();
    let tip = format::decode(&bytes)
        .unwrap()
        .checked
        .unwrap()
        .index
        .unwrap();
    // A byte of the newest index (its items), and one of an older index.
    let older = {
        let idx = &bytes[..tip.at as usize];
        // The batch-0 index follows the 21 records of the rewrite; find its tag.
        let tag = [0xea, 0x7f];
        idx.windows(2).position(|w| w == tag).unwrap()
    };
    for at in [tip.at as usize + 40, older + 20] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        fs.write_file(PATH, &damaged);
        let s = open(&fs, Verify::Lazy);
        assert_eq!(contents(&s), want, "flip at {at}");
        assert!(!s.report().damage.intact, "flip at {at}: reported");
        let eager = open(&fs, Verify::Eager);
        assert_eq!(contents(&eager), want, "flip at {at}");
        // The next flush rewrites the file, index whole again.
        s.put(&key(500), Value::copy_from(b"x")).unwrap();
        s.flush().unwrap();
        assert_eq!(s.stats().rewrites, 1, "flip at {at}");
        let (again, reads) = reads_at_open(&fs);
        assert!(reads <= 3, "{reads}");
        assert!(again.report().damage.intact);
        assert_eq!(again.len(), want.len() + 1);
    }
}

#[test]
fn a_chain_longer_than_an_open_follows_is_walked() {
    // Values larger than a read of the walk: walking takes a read or more per record, following
    // the chain one per index that is not in the last read.
    let (fs, want) = written(3, 2_000, 70);
    let (s, reads) = reads_at_open(&fs);
    assert!(s.report().damage.intact);
    assert_eq!(contents(&s), want);
    assert!(reads > 140, "{reads} reads: the records are walked");
    let (fs, want) = written(3, 2_000, 40);
    let (s, reads) = reads_at_open(&fs);
    assert_eq!(contents(&s), want);
    assert!(reads <= 42, "{reads} reads: the chain is followed");
}
