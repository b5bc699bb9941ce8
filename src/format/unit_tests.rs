//! Small, fast tests of the format layer. Every input is built in memory (no file I/O, no clock), so
//! they also run under Miri: `scripts/miri.sh` runs `cargo +nightly miri test --lib format::`.

use super::*;
use std::collections::BTreeMap;

const P: WriteParams = WriteParams {
    file_id: 0x1122_3344_5566_7788,
    generation: 9,
};

/// Under Miri (about a thousand times slower) the exhaustive loops visit every `STEP`-th position.
const STEP: usize = if cfg!(miri) { 3 } else { 1 };

type Entry = (Vec<u8>, Vec<u8>, ValueKind);
type Entries = Vec<Entry>;
type Map = BTreeMap<Vec<u8>, (Vec<u8>, ValueKind)>;

/// Four entries that touch every encoding path: the platform entry, a binary, a `uint32` array, and
/// an empty key with an empty value.
fn sample() -> Entries {
    vec![
        (
            PLATFORM_INFO_KEY.to_vec(),
            b"OpenCL 3.0 PoCL".to_vec(),
            ValueKind::Bytes,
        ),
        (
            b"kernel_0".to_vec(),
            (0u8..=70).collect::<Vec<u8>>(),
            ValueKind::Bytes,
        ),
        (
            b"tuned_gemm".to_vec(),
            [1u32, 300, 70_000, u32::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            ValueKind::U32s,
        ),
        (Vec::new(), Vec::new(), ValueKind::Bytes),
    ]
}

fn ins(entries: &[Entry]) -> Vec<EntryIn<'_>> {
    entries
        .iter()
        .map(|(k, v, kind)| EntryIn::new(k, v, *kind))
        .collect()
}

fn enc(format: Format, entries: &[Entry]) -> Vec<u8> {
    encode(format, &ins(entries), P).unwrap().out.to_vec()
}

fn map_of(input: &[u8], d: &Decoded) -> Map {
    d.entries
        .iter()
        .map(|e| {
            (
                input[e.key.clone()].to_vec(),
                (e.value.bytes(input).to_vec(), e.kind),
            )
        })
        .collect()
}

/// What a file of `format` written from `entries` decodes to: format A has no value kinds.
fn expected(format: Format, entries: &[Entry]) -> Map {
    let b = matches!(format, Format::Mace11 | Format::Checked11);
    entries
        .iter()
        .map(|(k, v, kind)| {
            let kind = if b && *kind == ValueKind::U32s && !v.is_empty() && v.len() % 4 == 0 {
                ValueKind::U32s
            } else {
                ValueKind::Bytes
            };
            (k.clone(), (v.clone(), kind))
        })
        .collect()
}

/// In-bounds ranges and unique keys: what every decode must give, whatever the input.
fn assert_sane(input: &[u8], d: &Decoded) {
    let mut keys = std::collections::HashSet::new();
    for e in &d.entries {
        assert!(e.key.start <= e.key.end && e.key.end <= input.len());
        match &e.value {
            ValueRef::Slice(r) => assert!(r.start <= r.end && r.end <= input.len()),
            ValueRef::Owned(v) => assert!(v.len() % 4 == 0 && v.len() <= 4 * input.len()),
        }
        assert!(keys.insert(&input[e.key.clone()]), "duplicate key");
    }
    if d.damage.intact {
        assert_eq!(d.damage.entries_dropped, 0);
    }
}

/// Every kept entry is one of `original`'s, with its value unchanged.
fn assert_subset(input: &[u8], d: &Decoded, original: &Map, what: &str) {
    for (k, (v, _)) in map_of(input, d) {
        assert_eq!(
            original.get(&k).map(|o| &o.0),
            Some(&v),
            "{what}: kept {:?} with a value the file never held",
            String::from_utf8_lossy(&k)
        );
    }
}

#[test]
fn every_writable_format_round_trips() {
    for entries in [sample(), Vec::new(), sample()[1..2].to_vec()] {
        for format in Format::WRITABLE {
            let bytes = enc(format, &entries);
            let d = decode(&bytes).unwrap();
            assert_sane(&bytes, &d);
            assert_eq!(d.format, format);
            assert!(d.damage.intact, "{format}: {:?}", d.damage);
            assert_eq!(map_of(&bytes, &d), expected(format, &entries), "{format}");
            let has_platform = entries.iter().any(|e| e.0 == PLATFORM_INFO_KEY);
            for e in &d.entries {
                let is_platform = &bytes[e.key.clone()] == PLATFORM_INFO_KEY;
                let want = format.is_checked() && has_platform && !is_platform;
                assert_eq!(e.vouched, want, "{format}");
            }
            assert_eq!(d.checked.is_some(), format == Format::Checked11);
        }
    }
}

#[test]
fn stock_writes_are_sorted_and_u32s_need_whole_words() {
    let entries = vec![
        (b"b".to_vec(), b"1".to_vec(), ValueKind::Bytes),
        (b"a".to_vec(), vec![7, 0, 0], ValueKind::U32s),
        (b"c".to_vec(), Vec::new(), ValueKind::U32s),
    ];
    let a = enc(Format::Mace10, &entries);
    assert_eq!(&a[..8], &3i64.to_le_bytes());
    assert_eq!(&a[8..13], &[1, 0, 0, 0, b'a'], "keys in bytewise order");
    let b = enc(Format::Mace11, &entries);
    let d = decode(&b).unwrap();
    // A length that is no multiple of 4, or 0, cannot be a uint32 array: written as bytes.
    assert!(d.entries.iter().all(|e| e.kind == ValueKind::Bytes));
    let dup = [entries[0].clone(), entries[0].clone()];
    assert!(encode(Format::Checked11, &ins(&dup), P).is_err());
    assert!(encode(Format::Empty, &[], P).is_err());
}

#[test]
fn formats_are_detected_from_bytes() {
    let d = decode(&[]).unwrap();
    assert_eq!(d.format, Format::Empty);
    assert!(d.entries.is_empty());
    assert_eq!(decode(&[0u8; 8]).unwrap().format, Format::Mace10);
    // Format B with no pairs: just the CRC-32 of nothing.
    assert_eq!(decode(&[0u8; 4]).unwrap().format, Format::Mace11);
    for f in Format::WRITABLE {
        assert_eq!(decode(&enc(f, &sample())).unwrap().format, f);
        assert_eq!(Format::from_name(f.name()), Some(f));
    }
    assert!(decode(b"this is not a cache file at all").is_err());
    assert!(decode(&[0xff; 3]).is_err());
}

#[test]
fn truncated_checked_files_keep_only_verified_entries() {
    let original = expected(Format::Checked11, &sample());
    for format in [Format::Checked11, Format::Checked10] {
        let file = enc(format, &sample());
        for cut in (0..file.len()).step_by(STEP) {
            let part = &file[..cut];
            if let Ok(d) = decode(part) {
                assert_sane(part, &d);
                assert_subset(part, &d, &original, &format!("{format} cut at {cut}"));
                if d.damage.intact {
                    // Only a checked-1.0 file cut exactly where its tail starts looks intact: it is
                    // a valid mace-1.0 file, with every pair.
                    assert_eq!((format, d.format), (Format::Checked10, Format::Mace10));
                    assert_eq!(d.entries.len(), 4, "{format} cut at {cut}");
                }
            }
        }
    }
    // checked-1.1 without its trailer: every record still verifies.
    let file = enc(Format::Checked11, &sample());
    let d = decode(&file[..file.len() - 4]).unwrap();
    assert_eq!(d.entries.len(), 4);
    assert!(!d.damage.intact);
}

#[test]
fn a_flipped_bit_in_a_checked_file_never_changes_a_value() {
    let original = expected(Format::Checked11, &sample());
    for format in [Format::Checked11, Format::Checked10] {
        let file = enc(format, &sample());
        for i in (0..file.len()).step_by(STEP) {
            let mut bad = file.clone();
            bad[i] ^= 1 << (i % 8);
            let what = format!("{format}, bit {} of byte {i} flipped", i % 8);
            let d = decode(&bad).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_sane(&bad, &d);
            assert!(!d.damage.intact, "{what}: reported intact");
            assert_subset(&bad, &d, &original, &what);
        }
    }
    // A damaged binary costs that entry only.
    let file = enc(Format::Checked11, &sample());
    let at = file.windows(3).position(|w| w == [0, 1, 2]).unwrap();
    let mut bad = file.clone();
    bad[at + 1] ^= 0x40;
    let d = decode(&bad).unwrap();
    let kept = map_of(&bad, &d);
    assert_eq!(kept.len(), 3);
    assert!(!kept.contains_key(&b"kernel_0"[..]));
    assert_eq!(d.damage.entries_dropped, 1);
}

#[test]
fn stock_damage_rules() {
    // mace-1.1 with a wrong CRC: nothing can be verified, nothing is kept.
    let mut b = enc(Format::Mace11, &sample());
    let last = b.len() - 1;
    b[last] ^= 1;
    let d = decode(&b).unwrap();
    assert!(d.entries.is_empty() && !d.damage.intact);
    assert_eq!(d.damage.entries_dropped, 4);

    // mace-1.0 cut short: the complete pairs are kept only if the platform entry is among them.
    // Sorted: "", "kernel_0", platform, "tuned_gemm".
    let a = enc(Format::Mace10, &sample());
    let d = decode(&a[..a.len() - 1]).unwrap();
    assert_eq!(d.entries.len(), 3, "cut inside the last pair");
    let platform_at = a
        .windows(PLATFORM_INFO_KEY.len())
        .position(|w| w == PLATFORM_INFO_KEY)
        .unwrap();
    let d = decode(&a[..platform_at + 3]).unwrap();
    assert!(d.entries.is_empty(), "cut inside the platform entry");
    assert_eq!(d.damage.entries_dropped, 4);
}

#[test]
fn appends_commit_whole_batches() {
    let all = sample();
    let base: Entries = all[..2].to_vec();
    let batch: Entries = all[2..].to_vec();
    let e = encode(Format::Checked11, &ins(&base), P).unwrap();
    let old = e.out.to_vec();
    let app = encode_append(&e.info.unwrap(), &ins(&batch)).unwrap();
    let records = app.records.to_vec();
    let commit = app.commit.to_vec();
    let at = old.len() - 4;
    let mut new = old[..at].to_vec();
    new.extend_from_slice(&records);
    new.extend_from_slice(&commit);

    let d = decode(&new).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    assert_eq!(d.checked, Some(app.info));
    assert_eq!(map_of(&new, &d), expected(Format::Checked11, &all));

    let old_map = expected(Format::Checked11, &base);
    let new_map = expected(Format::Checked11, &all);
    // The commit record (2-byte tag, 1-byte length, 24 bytes) comes first in the second part,
    // before the batch's index and the trailer.
    let commit_end = at + records.len() + 27;
    for cut in (at..new.len()).step_by(STEP) {
        // A crash during the append: the old file with a prefix of the new bytes over its end.
        let mut f = old.clone();
        f.resize(f.len().max(cut), 0);
        f[at..cut].copy_from_slice(&new[at..cut]);
        let d = decode(&f).unwrap();
        assert_sane(&f, &d);
        let got = map_of(&f, &d);
        if cut < commit_end {
            assert_eq!(
                got, old_map,
                "cut at {cut}: before the commit record is whole"
            );
        } else {
            assert_eq!(got, new_map, "cut at {cut}: after the commit record");
        }
    }
}

/// xorshift64*: a deterministic generator for the never-panic test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn short_random_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<Vec<u8>> = Format::WRITABLE
        .iter()
        .map(|&f| enc(f, &sample()))
        .collect();
    let mut decoded = 0;
    for i in 0..400 / STEP {
        let input: Vec<u8> = if i % 2 == 0 {
            // Random bytes, biased towards the bytes the formats care about.
            let len = rng.below(72);
            (0..len)
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => [0x0a, 0x12, 0x1a, 0xfa, 0xf2, 0x7f, 0x01][rng.below(7)],
                    _ => rng.next() as u8,
                })
                .collect()
        } else {
            // A valid file with a few bytes overwritten, then maybe cut.
            let mut f = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(f.len());
                f[at] = rng.next() as u8;
            }
            let keep = f.len() - rng.below(f.len() / 4 + 1);
            f.truncate(keep);
            f
        };
        if let Ok(d) = decode(&input) {
            assert_sane(&input, &d);
            decoded += 1;
        }
    }
    assert!(
        decoded > 100 / STEP,
        "only {decoded} inputs decoded: the test lost its teeth"
    );
}
