//! Allocation bombs: for every input, the memory live at any moment while a store opens a file (or
//! while `decode` reads one) stays under twice the file's size plus a constant. Measured with a
//! counting global allocator that keeps the peak of the bytes live on the measuring thread.

mod common;

use mace_storage::format::{
    self, EntryIn, Format, ValueKind, WriteParams, ENTRY_COST, MEMORY_SLACK,
};
use mace_storage::store::{Options, Store};

#[path = "common/alloc.rs"]
mod alloc;

use alloc::{bound, peak_of};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A format-B file: `body` then its CRC-32.
fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let c = crc32fast::hash(&body);
    body.extend_from_slice(&c.to_le_bytes());
    body
}

const SIZE: usize = 4 << 20;

/// Every hostile shape, with a name.
fn generators() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // Format B: empty pairs, 2 bytes each.
    v.push(("B empty pairs", with_crc([0x0a, 0x00].repeat(SIZE / 2))));
    // Format B: pairs with distinct 3-byte keys, 7 bytes each.
    let mut b = Vec::new();
    for i in 0..SIZE / 7 {
        b.extend_from_slice(&[0x0a, 0x05, 0x0a, 0x03]);
        b.extend_from_slice(&(i as u32).to_le_bytes()[..3]);
    }
    v.push(("B distinct 3-byte keys", with_crc(b)));
    // Format B: one packed uint32 field of 1-byte varints (4 bytes in memory per byte).
    let n = SIZE - 16;
    let mut msg = vec![0x0a, 0x01, b'k', 0x1a];
    varint(&mut msg, n as u64);
    msg.resize(msg.len() + n, 1);
    let mut b = vec![0x0a];
    varint(&mut b, msg.len() as u64);
    b.extend_from_slice(&msg);
    v.push(("B packed uint32 of 1-byte varints", with_crc(b)));
    // Format B: MACE's own unpacked uint32 arrays, many small entries.
    let mut b = Vec::new();
    for i in 0..SIZE / 24 {
        let mut m = vec![0x0a, 0x04];
        m.extend_from_slice(&(i as u32).to_le_bytes());
        for _ in 0..8 {
            m.extend_from_slice(&[0x18, 0x05]);
        }
        b.push(0x0a);
        varint(&mut b, m.len() as u64);
        b.extend_from_slice(&m);
    }
    v.push(("B unpacked uint32 arrays", with_crc(b)));
    // Format A: a count as large as the file allows, every pair empty.
    let count = (SIZE - 8) / 8;
    let mut a = (count as u64).to_le_bytes().to_vec();
    a.resize(8 + count * 8, 0);
    v.push(("A huge count, empty pairs", a));
    // Format A: distinct 3-byte keys, empty values.
    let count = (SIZE - 8) / 11;
    let mut a = (count as u64).to_le_bytes().to_vec();
    for i in 0..count {
        a.extend_from_slice(&3u32.to_le_bytes());
        a.extend_from_slice(&(i as u32).to_le_bytes()[..3]);
        a.extend_from_slice(&0u32.to_le_bytes());
    }
    v.push(("A distinct 3-byte keys", a));
    // Format A: a count of 4 Gi, cut short (read as a file cut inside its pairs).
    let mut a = (u32::MAX as u64).to_le_bytes().to_vec();
    while a.len() < SIZE {
        a.extend_from_slice(&[0; 8]);
    }
    a.extend_from_slice(&[5, 0, 0, 0]);
    v.push(("A count of 4 Gi, cut short", a));
    // Checked formats with many tiny distinct entries, as the writer makes them.
    let keys: Vec<Vec<u8>> = (0..SIZE as u32 / 40)
        .map(|i| i.to_le_bytes()[..3].to_vec())
        .collect();
    let ins: Vec<EntryIn> = keys
        .iter()
        .map(|k| EntryIn::new(k, b"", ValueKind::Bytes))
        .collect();
    for f in [Format::Checked11, Format::Checked10] {
        let file = format::encode(f, &ins, WriteParams::next(0))
            .unwrap()
            .out
            .to_vec();
        v.push((
            if f == Format::Checked11 {
                "checked-1.1 tiny entries"
            } else {
                "checked-1.0 tiny entries"
            },
            file,
        ));
    }
    // Checked-1.1: one valid record repeated (every copy verifies).
    let one = format::encode(
        Format::Checked11,
        &[EntryIn::new(b"k", b"", ValueKind::Bytes)],
        WriteParams::next(0),
    )
    .unwrap()
    .out
    .to_vec();
    let header = 43;
    let record = one[header..one.len() - 4].to_vec();
    let mut c = one[..header].to_vec();
    while c.len() < SIZE {
        c.extend_from_slice(&record);
    }
    v.push(("checked-1.1 one record repeated", with_crc(c)));
    v
}

#[test]
fn opening_any_hostile_file_stays_under_twice_its_size() {
    let d = common::temp_dir("alloc-bombs");
    let mut failures = Vec::new();
    for (name, bytes) in generators() {
        let len = bytes.len();
        let (decoded, decode_peak) = peak_of(|| format::decode(&bytes).map(|d| d.entries.len()));
        let path = d.path().join("cache.bin");
        std::fs::write(&path, &bytes).unwrap();
        drop(bytes);
        let opts = Options {
            read_only: true,
            ..Options::default()
        };
        let (store, open_peak) = peak_of(|| Store::open(&path, opts).map(|s| s.len()));
        eprintln!(
            "{name}: {len} bytes; decode kept {decoded:?}, peak {decode_peak} ({:.2}x); open kept \
             {:?}, peak {open_peak} ({:.2}x)",
            decode_peak as f64 / len as f64,
            store.as_ref().map_err(|e| e.to_string()),
            open_peak as f64 / len as f64
        );
        // The decoder's input is the caller's: its own allocations stay under the size again.
        if decode_peak > bound(len) - len || open_peak > bound(len) {
            failures.push(format!(
                "{name}: decode {decode_peak}, open {open_peak} for {len} bytes"
            ));
        }
    }
    assert!(failures.is_empty(), "over the bound: {failures:#?}");
}

/// A format-B file of `n` entries with distinct `k`-byte keys and empty values.
fn distinct_keys(n: usize, k: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..n {
        let mut key = (i as u64).to_le_bytes().to_vec();
        key.resize(k, b'x');
        b.push(0x0a);
        varint(&mut b, (2 + k) as u64);
        b.push(0x0a);
        b.push(k as u8);
        b.extend_from_slice(&key);
    }
    with_crc(b)
}

#[test]
fn what_one_entry_costs_stays_within_what_the_budget_charges() {
    // As many tiny entries as the budget lets through: the most memory per byte of file there is.
    let d = common::temp_dir("alloc-edge");
    // 1793 entries: just past a hash table's 7/8 load of 2048 slots, the emptiest tables there are.
    let most = |k: usize| (MEMORY_SLACK as usize) / (ENTRY_COST as usize + k) * 9 / 10;
    for (k, n) in [(3usize, most(3)), (3, 1793), (100, most(100)), (100, 1793)] {
        let bytes = distinct_keys(n, k);
        let path = d.path().join("cache.bin");
        std::fs::write(&path, &bytes).unwrap();
        let (s, peak) = peak_of(|| Store::open(&path, Options::default()).unwrap());
        assert_eq!(s.len(), n, "every entry within the budget is kept");
        let per_entry = (peak - bytes.len()) / n;
        eprintln!("{n} entries with {k}-byte keys: {per_entry} bytes each beyond the file");
        assert!(
            per_entry as u64 <= ENTRY_COST + k as u64,
            "an entry costs {per_entry} bytes, more than the {} charged",
            ENTRY_COST + k as u64
        );
        // One entry more than the budget holds is refused, not kept in part.
        let over = distinct_keys(2 * (MEMORY_SLACK as usize) / (ENTRY_COST as usize), k);
        assert!(format::decode(&over).is_err());
    }
}

#[test]
fn the_counter_sees_what_open_allocates() {
    // The measurement can fail: opening a real cache of 3 MiB takes at least its size.
    let (_d, path) = common::temp_path("alloc-real", "cache.bin");
    let v = vec![9u8; 3 << 20];
    let file = format::encode(
        Format::Checked11,
        &[EntryIn::new(b"k", &v, ValueKind::Bytes)],
        WriteParams::next(0),
    )
    .unwrap()
    .out
    .to_vec();
    std::fs::write(&path, &file).unwrap();
    let (s, peak) = peak_of(|| Store::open(&path, Options::default()).unwrap());
    assert_eq!(s.len(), 1);
    assert!(peak >= file.len() && peak < bound(file.len()), "{peak}");
}
