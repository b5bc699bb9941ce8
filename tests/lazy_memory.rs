//! Memory of a lazily verified open: the file is not read into memory (only its framing is walked,
//! through a small window), and the store's per-entry state fits in what the decoder charges each
//! entry ([`ENTRY_COST`]), so an intact checked-1.1 file of the smallest entries a budget admits
//! opens lazily under what its entries are charged, and a file of large values in a small part of
//! its size.
//! Measured with a counting global allocator that keeps the peak of the bytes live on the
//! measuring thread.

mod common;

use mace_storage::format::{
    self, EntryIn, Format, ValueKind, WriteParams, ENTRY_COST, INDEX_ITEM_LEN,
};
use mace_storage::store::{Options, Store, Verify};

#[path = "common/alloc.rs"]
mod alloc;

use alloc::{bound, peak_of};

#[test]
fn a_lazy_open_of_many_tiny_entries_stays_under_twice_the_file() {
    let d = common::temp_dir("lazy-memory");
    // Short keys and values, near the most entries the budget admits: per-entry costs dominate.
    for (n, key_len, value_len) in [(3_500, 8, 0), (3_000, 24, 16), (2_000, 64, 2_000)] {
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut k = format!("{i:08}").into_bytes();
                k.resize(key_len, b'k');
                k
            })
            .collect();
        let value = vec![7u8; value_len];
        let entries: Vec<EntryIn> = keys
            .iter()
            .map(|k| EntryIn::new(k, &value, ValueKind::Bytes))
            .collect();
        let bytes = format::encode(Format::Checked11, &entries, WriteParams::next(0))
            .unwrap()
            .out
            .to_vec();
        // The lazy path is the one taken: every entry comes with a check.
        let (_, checks) = format::decode_lazy(&bytes).unwrap();
        assert!(checks.iter().all(Option::is_some));
        let path = d.path().join("cache.bin");
        std::fs::write(&path, &bytes).unwrap();
        let len = bytes.len();
        drop((bytes, checks));
        let opts = Options {
            read_only: true,
            verify: Verify::Lazy,
            ..Options::default()
        };
        let (store, peak) = peak_of(|| Store::open(&path, opts).unwrap());
        eprintln!(
            "{n} entries of {key_len} + {value_len} bytes: {len} bytes, lazy open peak {peak} \
             ({:.2}x)",
            peak as f64 / len as f64
        );
        assert_eq!(store.len(), n);
        assert!(peak <= bound(len), "{peak} for {len} bytes");
        // Each entry within what the decoder charged for it, and no buffer of the file but its
        // index while it is read (an item and the key per entry): the values stay in the file
        // until their first get.
        let index = n * (INDEX_ITEM_LEN + key_len);
        let charged = n * (ENTRY_COST as usize + key_len) + index + (64 << 10);
        assert!(peak <= charged, "{} bytes per entry", peak / n);
        // Verifying them all allocates nothing more that stays.
        let (got, _) = peak_of(|| keys.iter().filter(|k| store.get(k).is_some()).count());
        assert_eq!(got, n);
    }
}

/// A 30 MB file of 300 values: a lazy open allocates a small part of the file (its entries and a
/// window), a get of one value only that value (and its record), never the file.
#[test]
fn a_lazy_open_of_a_30_mb_file_allocates_far_less_than_the_file() {
    let d = common::temp_dir("lazy-memory-large");
    let keys: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("conv_2d_1x1 -DBIAS -DK{i:04}").into_bytes())
        .collect();
    let value: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut entries: Vec<EntryIn> = keys
        .iter()
        .map(|k| EntryIn::new(k, &value, ValueKind::Bytes))
        .collect();
    entries.push(EntryIn::new(
        format::PLATFORM_INFO_KEY,
        b"platform",
        ValueKind::Bytes,
    ));
    let bytes = format::encode(Format::Checked11, &entries, WriteParams::next(0))
        .unwrap()
        .out
        .to_vec();
    let path = d.path().join("cache.bin");
    std::fs::write(&path, &bytes).unwrap();
    let len = bytes.len();
    assert!(len > 30_000_000);
    drop(bytes);
    let opts = Options {
        read_only: true,
        verify: Verify::Lazy,
        ..Options::default()
    };
    let (store, peak) = peak_of(|| Store::open(&path, opts).unwrap());
    eprintln!("{len} bytes: lazy open peak {peak}");
    assert_eq!(store.len(), 301);
    assert!(peak < len / 50, "{peak} bytes for a {len}-byte file");
    let (got, peak) = peak_of(|| store.get(&keys[7]).unwrap());
    assert_eq!(&got[..], &value[..]);
    assert!(peak < 2 * value.len(), "{peak} bytes for one get");
}
