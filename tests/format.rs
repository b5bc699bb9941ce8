//! The on-disk formats: golden files from MACE, byte-identical stock writes, stock acceptance of the
//! checked formats, and salvage of every truncation and every flipped byte.

mod common;

use common::*;
use mace_storage::format::{
    check_entry, decode, encode, encode_append, entry_len_bound, file_len_bound, Decoded, Format,
    ValueKind, WriteParams, DEVICE_NAME_KEY, PLATFORM_INFO_KEY, VOUCHING_KEYS,
};
use std::collections::BTreeMap;

const PARAMS: WriteParams = WriteParams {
    file_id: 0x1234_5678_9abc_def0,
    generation: 7,
};

/// The decoded entries as key -> value.
fn map_of(bytes: &[u8], d: &Decoded) -> BTreeMap<Vec<u8>, Vec<u8>> {
    d.entries
        .iter()
        .map(|e| (bytes[e.key.clone()].to_vec(), e.value.bytes(bytes).to_vec()))
        .collect()
}

fn entries_in(d: &Decoded, bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, ValueKind)> {
    d.entries
        .iter()
        .map(|e| {
            (
                bytes[e.key.clone()].to_vec(),
                e.value.bytes(bytes).to_vec(),
                e.kind,
            )
        })
        .collect()
}

fn encode_all(format: Format, entries: &[(Vec<u8>, Vec<u8>, ValueKind)]) -> Vec<u8> {
    let ins = common::entries_in(entries);
    encode(format, &ins, PARAMS).unwrap().out.to_vec()
}

#[test]
fn golden_files_read_back_as_the_manifest_says() {
    let manifest = manifest();
    let files = manifest.as_object().unwrap();
    assert!(files.len() >= 6);
    for (name, spec) in files {
        let bytes = golden(name);
        let d = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.damage.intact, "{name}: {:?}", d.damage);
        let want_format = if name.starts_with("mace-1.0") {
            Format::Mace10
        } else {
            Format::Mace11
        };
        assert_eq!(d.format, want_format, "{name}");
        let got = map_of(&bytes, &d);
        let want = spec["entries"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for w in want {
            if let Some(kh) = w.get("key_hex") {
                let key = got
                    .keys()
                    .find(|k| hex(k) == kh.as_str().unwrap())
                    .unwrap_or_else(|| panic!("{name}: key {kh} missing"));
                let v = &got[key];
                assert_eq!(
                    v.len() as u64,
                    w["value_len"].as_u64().unwrap(),
                    "{name} {kh}"
                );
                assert_eq!(
                    format!("{:08x}", crc32fast::hash(v)),
                    w["value_crc32"].as_str().unwrap()
                );
            } else {
                let key = w["key"].as_str().unwrap().as_bytes();
                let v = &got[key];
                let want_u32s: Vec<u8> = w["uint32s"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|x| (x.as_u64().unwrap() as u32).to_le_bytes())
                    .collect();
                assert_eq!(v, &want_u32s, "{name} {}", w["key"]);
            }
        }
    }
}

#[test]
fn stock_writes_are_byte_identical_to_mace() {
    for (name, format) in [
        ("mace-1.1-cache.bin", Format::Mace11),
        ("mace-1.0-cache.bin", Format::Mace10),
        ("mace-1.1-tuned-params.bin", Format::Mace11),
        ("mace-1.0-tuned-params.bin", Format::Mace10),
        ("mace-1.1-empty.bin", Format::Mace11),
        ("mace-1.0-empty.bin", Format::Mace10),
    ] {
        let bytes = golden(name);
        let d = decode(&bytes).unwrap();
        assert_eq!(encode_all(format, &entries_in(&d, &bytes)), bytes, "{name}");
    }
}

#[test]
fn tuned_parameters_cross_formats() {
    let b = golden("mace-1.1-tuned-params.bin");
    let d = decode(&b).unwrap();
    assert!(d.entries.iter().all(|e| e.kind == ValueKind::U32s));
    assert_eq!(
        encode_all(Format::Mace10, &entries_in(&d, &b)),
        golden("mace-1.0-tuned-params.bin")
    );
    // Through the checked format and back, the uint32 arrays stay uint32 arrays.
    let c = encode_all(Format::Checked11, &entries_in(&d, &b));
    let dc = decode(&c).unwrap();
    assert_eq!(encode_all(Format::Mace11, &entries_in(&dc, &c)), b);
}

#[test]
fn checked_formats_round_trip_and_stock_readers_accept_them() {
    for name in ["mace-1.1-cache.bin", "mace-1.1-empty.bin"] {
        let g = golden(name);
        let d = decode(&g).unwrap();
        let want = map_of(&g, &d);
        let c11 = encode_all(Format::Checked11, &entries_in(&d, &g));
        // Stock MACE 1.1: the trailing CRC holds, every key once with its exact value.
        let pairs = stock11_pairs(&c11).expect("stock 1.1 acceptance");
        assert_eq!(pairs.len(), want.len());
        let stock: BTreeMap<_, _> = pairs.into_iter().collect();
        assert_eq!(stock, want);
        let dc = decode(&c11).unwrap();
        assert_eq!(dc.format, Format::Checked11);
        assert!(dc.damage.intact, "{:?}", dc.damage);
        assert!(dc.checked.is_some());
        assert_eq!(map_of(&c11, &dc), want);
        // checked-1.0: a stock format-A reader sees exactly the pairs.
        let c10 = encode_all(Format::Checked10, &entries_in(&d, &g));
        let da = decode(&c10).unwrap();
        assert_eq!(da.format, Format::Checked10);
        assert!(da.damage.intact, "{:?}", da.damage);
        assert_eq!(map_of(&c10, &da), want);
        assert_eq!(&stock_a_pairs(&c10), &want);
        // The stock writer of each version reproduces MACE's bytes from the checked files.
        let back = encode_all(Format::Mace11, &entries_in(&dc, &c11));
        if name == "mace-1.1-cache.bin" {
            assert_eq!(back, g);
        }
    }
}

/// A stock format-A reader: count, then count pairs; everything after is ignored.
fn stock_a_pairs(b: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap());
    let mut p = 8;
    let mut m = BTreeMap::new();
    let read = |p: &mut usize| {
        let l = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap()) as usize;
        let s = b[*p + 4..*p + 4 + l].to_vec();
        *p += 4 + l;
        s
    };
    for _ in 0..n {
        let k = read(&mut p);
        let v = read(&mut p);
        m.insert(k, v);
    }
    m
}

/// `n` entries shaped like MACE's: program binaries, hashes, device name, platform info.
fn cache_entries(n: usize) -> Vec<(Vec<u8>, Vec<u8>, ValueKind)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>, ValueKind)> = (0..n.saturating_sub(2))
        .map(|i| {
            let key = if i % 2 == 0 {
                format!("conv_2d_{i} -DBIAS -DCMD_DATA_TYPE=f").into_bytes()
            } else {
                format!("program_hash_ conv_2d_{} -DBIAS", i - 1).into_bytes()
            };
            // Values of varied length holding bytes that look like framing (0x0a, 0xfa, 0x7f).
            let val: Vec<u8> = (0..(i * 7 % 61 + 1))
                .map(|j| [0x0a, 0xfa, 0x7f, 0x12, (i + j) as u8][j % 5])
                .collect();
            (key, val, ValueKind::Bytes)
        })
        .collect();
    v.push((
        b"mace_opencl_precompiled_device_name_key".to_vec(),
        b"QUALCOMM Adreno(TM)".to_vec(),
        ValueKind::Bytes,
    ));
    v.push((
        PLATFORM_INFO_KEY.to_vec(),
        b"QUALCOMM Snapdragon(TM), FULL_PROFILE, OpenCL 2.0, 1.1".to_vec(),
        ValueKind::Bytes,
    ));
    v.sort();
    v
}

/// Checks that a decode of a damaged file kept only correct values, and exactly `expect` keys.
fn check_salvage(file: &[u8], all: &BTreeMap<Vec<u8>, Vec<u8>>, expect: &[&Vec<u8>], what: &str) {
    // Nothing recognizable left is a valid outcome when nothing is expected.
    let (got, damage) = match decode(file) {
        Ok(d) => (map_of(file, &d), format!("{:?}", d.damage)),
        Err(e) => (BTreeMap::new(), e.to_string()),
    };
    for (k, v) in &got {
        assert_eq!(
            all.get(k),
            Some(v),
            "{what}: wrong value for {}",
            String::from_utf8_lossy(k)
        );
    }
    let mut want: Vec<&Vec<u8>> = expect.to_vec();
    want.sort();
    let keys: Vec<&Vec<u8>> = got.keys().collect();
    assert_eq!(keys, want, "{what}: {damage}");
}

/// Entry spans of a checked-1.1 file: (key, byte range) of each top-level record.
fn spans11(file: &[u8]) -> Vec<(Vec<u8>, std::ops::Range<usize>)> {
    field_spans(&file[..file.len() - 4])
        .unwrap()
        .into_iter()
        .filter(|f| f.0 == 1)
        .map(|(_, _, payload, span)| (fields(payload).unwrap()[0].2.to_vec(), span))
        .collect()
}

/// Entry spans of a format-A file.
fn spans10(file: &[u8], n: usize) -> Vec<(Vec<u8>, std::ops::Range<usize>)> {
    let mut p = 8;
    (0..n)
        .map(|_| {
            let start = p;
            let kl = u32::from_le_bytes(file[p..p + 4].try_into().unwrap()) as usize;
            let key = file[p + 4..p + 4 + kl].to_vec();
            p += 4 + kl;
            let vl = u32::from_le_bytes(file[p..p + 4].try_into().unwrap()) as usize;
            p += 4 + vl;
            (key, start..p)
        })
        .collect()
}

/// Keys expected to survive when `lost` entries are gone: the platform-info rule drops everything
/// it vouched for (all but itself) when it is among them.
fn survivors(
    spans: &[(Vec<u8>, std::ops::Range<usize>)],
    lost: impl Fn(usize) -> bool,
) -> Vec<&Vec<u8>> {
    let kept: Vec<&Vec<u8>> = spans
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost(*i))
        .map(|(_, s)| &s.0)
        .collect();
    if kept.iter().any(|k| k.as_slice() == PLATFORM_INFO_KEY) {
        kept
    } else {
        Vec::new()
    }
}

#[test]
fn checked11_cut_at_every_offset_keeps_every_complete_entry() {
    let entries = cache_entries(200);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let file = encode_all(Format::Checked11, &entries);
    let spans = spans11(&file);
    assert_eq!(spans.len(), 200);
    for cut in 0..file.len() {
        let expect = survivors(&spans, |i| spans[i].1.end > cut);
        check_salvage(&file[..cut], &all, &expect, &format!("cut at {cut}"));
    }
}

#[test]
fn checked11_one_flipped_byte_loses_only_its_entry() {
    let entries = cache_entries(200);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let file = encode_all(Format::Checked11, &entries);
    let spans = spans11(&file);
    for (i, (_, span)) in spans.iter().enumerate() {
        let len = span.len();
        for off in [0, 1, 2, 3, len / 2, len - 10, len - 5, len - 1] {
            let mut f = file.clone();
            f[span.start + off] ^= 0x10;
            let expect = survivors(&spans, |j| j == i);
            check_salvage(&f, &all, &expect, &format!("entry {i} byte {off}"));
        }
    }
}

#[test]
fn checked11_any_flipped_byte_never_yields_a_wrong_value() {
    let entries = cache_entries(40);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let file = encode_all(Format::Checked11, &entries);
    let spans = spans11(&file);
    for pos in 0..file.len() {
        for bit in [0x01u8, 0x80] {
            let mut f = file.clone();
            f[pos] ^= bit;
            let expect = survivors(&spans, |j| spans[j].1.contains(&pos));
            check_salvage(&f, &all, &expect, &format!("byte {pos} ^ {bit:#x}"));
        }
    }
}

#[test]
fn checked10_cut_and_flip() {
    let entries = cache_entries(200);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let file = encode_all(Format::Checked10, &entries);
    let spans = spans10(&file, 200);
    for cut in 0..file.len() {
        let expect = survivors(&spans, |i| spans[i].1.end > cut);
        check_salvage(&file[..cut], &all, &expect, &format!("cut at {cut}"));
    }
    for (i, (_, span)) in spans.iter().enumerate() {
        let len = span.len();
        for off in [0, 2, 4, len / 2, len - 1] {
            let mut f = file.clone();
            f[span.start + off] ^= 0x10;
            let expect = survivors(&spans, |j| j == i);
            check_salvage(&f, &all, &expect, &format!("entry {i} byte {off}"));
        }
    }
}

#[test]
fn checked10_any_flipped_byte_never_yields_a_wrong_value() {
    let entries = cache_entries(40);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let file = encode_all(Format::Checked10, &entries);
    let spans = spans10(&file, 40);
    let tail_start = spans.last().unwrap().1.end;
    let tail_head = 8 + 4 + 4 + 8 + 8 + 4;
    for pos in 0..file.len() {
        let mut f = file.clone();
        f[pos] ^= 0x04;
        // A byte of entry j's pair, or of entry j's checksum in the tail, can cost entry j.
        let owner = |j: usize| {
            spans[j].1.contains(&pos)
                || (pos >= tail_start + tail_head && (pos - tail_start - tail_head) / 16 == j)
        };
        let d = decode(&f).unwrap();
        let got = map_of(&f, &d);
        for (k, v) in &got {
            assert_eq!(all.get(k), Some(v), "byte {pos}: wrong value");
        }
        let expect = survivors(&spans, owner);
        assert!(
            got.len() >= expect.len(),
            "byte {pos}: kept {} want >= {}",
            got.len(),
            expect.len()
        );
    }
}

#[test]
fn stock_files_damaged_never_panic_and_stay_honest() {
    let g11 = golden("mace-1.1-cache.bin");
    let mut f = g11.clone();
    f[1000] ^= 1;
    let d = decode(&f).unwrap();
    assert_eq!(d.format, Format::Mace11);
    assert!(d.entries.is_empty() && !d.damage.intact);
    let g10 = golden("mace-1.0-cache.bin");
    for cut in (0..g10.len()).step_by(997).chain([8, 9, 12, g10.len() - 1]) {
        let d = decode(&g10[..cut]);
        if let Ok(d) = d {
            let all = map_of(&g10, &decode(&g10).unwrap());
            for (k, v) in map_of(&g10[..cut], &d) {
                assert_eq!(all.get(&k), Some(&v));
            }
        }
    }
    // MACE 1.0 aborts on a 0-byte file: here it is an empty, damaged file.
    let d = decode(&[]).unwrap();
    assert_eq!(d.format, Format::Empty);
    assert!(!d.damage.intact && d.entries.is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_input_decodes_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(d) = decode(&bytes) {
                for e in &d.entries {
                    prop_assert!(e.key.end <= bytes.len());
                    let _ = e.value.bytes(&bytes);
                }
            }
        }

        #[test]
        fn the_size_put_checks_bounds_the_file_written(
            map in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..200),
                (proptest::collection::vec(any::<u8>(), 0..400), any::<bool>()),
                0..12,
            ),
        ) {
            // Large uint32s take 5-byte varints: the worst case of the bound.
            let entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)> = map
                .iter()
                .map(|(k, (v, u))| {
                    let kind = if *u { ValueKind::U32s } else { ValueKind::Bytes };
                    let v = if *u { v.iter().map(|b| b | 0x80).collect() } else { v.clone() };
                    (k.clone(), v, kind)
                })
                .collect();
            for format in Format::WRITABLE {
                let file = encode_all(format, &entries);
                let sum: u64 = entries
                    .iter()
                    .map(|(k, v, kind)| entry_len_bound(format, k.len(), v.len(), *kind))
                    .sum();
                prop_assert!(file.len() as u64 <= file_len_bound(sum), "{format}");
                for (k, v, kind) in &entries {
                    prop_assert!(check_entry(format, k, v.len(), *kind).is_ok());
                }
            }
        }

        #[test]
        fn round_trip_in_every_format(
            map in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..12),
                proptest::collection::vec(any::<u8>(), 0..40),
                0..12,
            ),
        ) {
            let entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)> =
                map.iter().map(|(k, v)| (k.clone(), v.clone(), ValueKind::Bytes)).collect();
            for format in Format::WRITABLE {
                let file = encode_all(format, &entries);
                let d = decode(&file).unwrap();
                prop_assert!(d.damage.intact, "{:?} {:?}", format, d.damage);
                prop_assert_eq!(&map_of(&file, &d), &map);
                prop_assert_eq!(d.format, format);
            }
        }
    }
}

/// `n` cache entries plus the program cache's fingerprint and OS build entries.
fn cache_with_vouchers(n: usize) -> Vec<(Vec<u8>, Vec<u8>, ValueKind)> {
    let mut v = cache_entries(n);
    for k in [
        &b"mace_storage_fingerprint"[..],
        b"mace_storage_os_build_id",
    ] {
        v.push((
            k.to_vec(),
            b"driver 1.2.3 / build 42".to_vec(),
            ValueKind::Bytes,
        ));
    }
    v
}

#[test]
fn the_vouching_entries_are_the_program_caches_keys() {
    assert_eq!(VOUCHING_KEYS[0], PLATFORM_INFO_KEY);
    assert_eq!(VOUCHING_KEYS[1], DEVICE_NAME_KEY);
    assert_eq!(
        VOUCHING_KEYS[2],
        mace_storage::program_cache::FINGERPRINT_KEY
    );
    assert_eq!(VOUCHING_KEYS[3], mace_storage::program_cache::OS_BUILD_KEY);
}

#[test]
fn a_checked_file_cut_at_every_offset_keeps_every_program_before_the_cut() {
    let entries = cache_with_vouchers(80);
    let all: BTreeMap<_, _> = entries
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    for format in [Format::Checked11, Format::Checked10] {
        let file = encode_all(format, &entries);
        let spans = match format {
            Format::Checked11 => spans11(&file),
            _ => spans10(&file, entries.len()),
        };
        // The entries that vouch for binaries come first, in their fixed order.
        let head: Vec<&[u8]> = spans[..4].iter().map(|s| s.0.as_slice()).collect();
        assert_eq!(head, VOUCHING_KEYS, "{format}");
        for cut in 0..file.len() {
            let d = decode(&file[..cut]);
            let got = d
                .as_ref()
                .map(|d| map_of(&file[..cut], d))
                .unwrap_or_default();
            for (k, v) in &got {
                assert_eq!(all.get(k), Some(v), "{format} cut at {cut}: a wrong value");
            }
            for (key, span) in &spans {
                assert!(
                    span.end > cut || got.contains_key(key),
                    "{format} cut at {cut}: lost {} (ends at {})",
                    String::from_utf8_lossy(key),
                    span.end
                );
            }
        }
    }
}

#[test]
fn appends_write_the_vouching_entries_first_too() {
    let base = encode_all(Format::Checked11, &[]);
    let info = decode(&base).unwrap().checked.unwrap();
    let entries = cache_with_vouchers(10);
    let ins = common::entries_in(&entries);
    let app = encode_append(&info, &ins).unwrap();
    let mut file = base[..base.len() - 4].to_vec();
    file.extend(app.records.to_vec());
    file.extend(app.commit.to_vec());
    let d = decode(&file).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    let spans = spans11(&file);
    let order: Vec<&[u8]> = spans[..4].iter().map(|s| s.0.as_slice()).collect();
    assert_eq!(order, VOUCHING_KEYS);
    // The stock format stays sorted as MACE writes it.
    let stock = encode_all(Format::Mace11, &entries);
    let keys: Vec<Vec<u8>> = stock11_pairs(&stock)
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}
