//! The checksums a decode carries to a rewrite ([`KnownCrc`]): what they derive equals a direct
//! hash, they are used instead of hashing the value, and only records laid out exactly as this
//! crate writes them get one.

use super::checked::{ext_delta, tag_bytes, EXT_LEN};
use super::stock::EXT_FIELD;
use super::wire::put_varint;
use super::*;

use super::test_rng::Rng;

const ROUNDS: usize = if cfg!(miri) { 3 } else { 60 };

/// The identity the derivation rests on, against direct hashes: for any message x and 16-byte
/// strings e and f, crc(x || f) = crc(x || e) ^ crc(e ^ f) ^ crc(0^16).
#[test]
fn the_checksum_of_a_message_follows_from_its_last_16_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..ROUNDS * 10 {
        let n = [0, 1, 15, 16, 17, 255, 4096, 70_000][rng.below(8)] + rng.below(40);
        let x = rng.bytes(n);
        let (e, f) = (rng.bytes(16), rng.bytes(16));
        let d: Vec<u8> = e.iter().zip(&f).map(|(a, b)| a ^ b).collect();
        let with = |tail: &[u8]| crc32fast::hash(&[&x[..], tail].concat());
        assert_eq!(
            with(&f),
            with(&e) ^ crc32fast::hash(&d) ^ crc32fast::hash(&[0u8; 16]),
            "{n}"
        );
        assert_eq!(with(&f), with(&[0u8; 16]) ^ ext_delta(&f));
    }
}

/// Random entries with lengths around every varint boundary, a `uint32` array now and then, and
/// the platform-info entry in about half the files (so that the flags change between files).
fn random_entries(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>, ValueKind)> {
    let lens = [0, 1, 127, 128, 129, 4095, 4096, 16_383, 16_384, 20_000];
    let mut entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)> = (0..1 + rng.below(12))
        .map(|i| {
            let mut key = format!("k{i}-").into_bytes();
            let n = [0, 3, 126, 127, 200][rng.below(5)];
            key.extend(rng.bytes(n));
            let kind = if rng.below(6) == 0 {
                ValueKind::U32s
            } else {
                ValueKind::Bytes
            };
            let len = lens[rng.below(lens.len())] + rng.below(3);
            (key, rng.bytes(len), kind)
        })
        .collect();
    if rng.below(2) == 0 {
        entries.push((PLATFORM_INFO_KEY.to_vec(), rng.bytes(40), ValueKind::Bytes));
    }
    entries
}

/// A file's entries to write again: with the checksums their decode carried, or without.
fn again<'a>(
    bytes: &'a [u8],
    d: &'a Decoded,
    carried: bool,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Vec<EntryIn<'a>> {
    d.entries
        .iter()
        .filter(|e| keep(&bytes[e.key.clone()]))
        .map(|e| EntryIn {
            key: &bytes[e.key.clone()],
            value: e.value.bytes(bytes),
            kind: e.kind,
            known_crc: if carried { e.known_crc } else { None },
        })
        .collect()
}

/// A rewrite from the carried checksums writes byte for byte what hashing every value writes (so
/// each record's derived checksum is the CRC-32 of its new bytes), and hashes no value.
#[test]
fn a_rewrite_from_carried_checksums_writes_what_hashing_writes() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..ROUNDS {
        let entries = random_entries(&mut rng);
        let first = WriteParams {
            file_id: rng.next(),
            generation: 1,
        };
        let ins: Vec<EntryIn> = entries
            .iter()
            .map(|(k, v, kind)| EntryIn::new(k, v, *kind))
            .collect();
        let bytes = encode(Format::Checked11, &ins, first).unwrap().out.to_vec();
        let d = decode(&bytes).unwrap();
        assert!(d.damage.intact, "{:?}", d.damage);
        for e in &d.entries {
            // Every bytes_value record was written by this crate: each carries its checksum. An
            // empty array is written as no value field at all, and read back as empty bytes: a
            // record of them would have a value field, so it carries none.
            let (_, v, kind) = entries
                .iter()
                .find(|x| x.0 == bytes[e.key.clone()])
                .unwrap();
            let no_field = *kind == ValueKind::U32s && v.is_empty();
            assert_eq!(
                e.known_crc.is_some(),
                e.kind == ValueKind::Bytes && !no_field,
                "{round}"
            );
        }
        // Without the platform-info entry now and then: every other record's flags change.
        let drop_platform = rng.below(3) == 0;
        let keep = |k: &[u8]| !(drop_platform && k == PLATFORM_INFO_KEY);
        let params = WriteParams {
            file_id: rng.next(),
            generation: 2,
        };
        let before = value_bytes_hashed();
        let carried = encode(Format::Checked11, &again(&bytes, &d, true, &keep), params).unwrap();
        assert_eq!(value_bytes_hashed(), before, "no value hashed");
        let hashed = encode(Format::Checked11, &again(&bytes, &d, false, &keep), params).unwrap();
        assert!(
            value_bytes_hashed() > before
                || d.entries
                    .iter()
                    .all(|e| e.value.bytes(&bytes).is_empty() || e.kind == ValueKind::U32s)
        );
        let out = carried.out.to_vec();
        assert_eq!(out, hashed.out.to_vec(), "{round}");
        assert_eq!(carried.info, hashed.info);
        let d2 = decode(&out).unwrap();
        assert!(d2.damage.intact, "{:?}", d2.damage);
        let n = d
            .entries
            .iter()
            .filter(|e| keep(&bytes[e.key.clone()]))
            .count();
        assert_eq!(d2.entries.len(), n);
        // And once more from the new file's checksums: they hold in every file written.
        let third = WriteParams {
            file_id: rng.next(),
            generation: 3,
        };
        let all = |_: &[u8]| true;
        let a = encode(Format::Checked11, &again(&out, &d2, true, &all), third).unwrap();
        let b = encode(Format::Checked11, &again(&out, &d2, false, &all), third).unwrap();
        assert_eq!(a.out.to_vec(), b.out.to_vec());
    }
}

/// The carried checksum is what is written, not one hashed from the value: paired with other
/// bytes, the record fails its checksum.
#[test]
fn a_carried_checksum_is_written_as_it_is() {
    let value: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let entries = [
        EntryIn::new(PLATFORM_INFO_KEY, b"platform", ValueKind::Bytes),
        EntryIn::new(b"prog", &value, ValueKind::Bytes),
    ];
    let bytes = encode(Format::Checked11, &entries, WriteParams::next(0))
        .unwrap()
        .out
        .to_vec();
    let d = decode(&bytes).unwrap();
    let prog = d
        .entries
        .iter()
        .find(|e| &bytes[e.key.clone()] == b"prog")
        .unwrap();
    let known = prog.known_crc;
    assert!(known.is_some());
    let write = |v: &[u8]| {
        let mut ins = vec![entries[0]];
        ins.push(EntryIn {
            key: b"prog",
            value: v,
            kind: ValueKind::Bytes,
            known_crc: known,
        });
        let out = encode(Format::Checked11, &ins, WriteParams::next(1))
            .unwrap()
            .out
            .to_vec();
        let d = decode(&out).unwrap();
        let kept = d.entries.iter().any(|e| &out[e.key.clone()] == b"prog");
        (kept, d.damage.intact)
    };
    assert_eq!(write(&value), (true, true));
    let mut other = value.clone();
    other[5000] ^= 1;
    assert_eq!(write(&other), (false, false), "the checksum was not hashed");
}

/// A length field of `len`, as `put_varint` writes it, or one byte longer than it needs.
fn len_field(len: usize, long: bool) -> Vec<u8> {
    let mut v = Vec::new();
    put_varint(&mut v, len as u64);
    if long {
        *v.last_mut().unwrap() |= 0x80;
        v.push(0);
    }
    v
}

/// A length-delimited field: one tag byte, its length, its payload.
fn field(tag: u8, payload: &[u8], long: bool) -> Vec<u8> {
    [&[tag][..], &len_field(payload.len(), long), payload].concat()
}

/// An entry record of batch 0 around the `KVPair` fields `fields`, its checksum computed: the
/// outer tag `outer_tag`, the message's length as long as `long` says.
fn record(outer_tag: &[u8], long: bool, fields: &[u8], file_id: u64, flags: u32) -> Vec<u8> {
    let mut msg = fields.to_vec();
    msg.extend(tag_bytes(EXT_FIELD, EXT_LEN));
    msg.extend(file_id.to_le_bytes());
    msg.extend(0u32.to_le_bytes());
    msg.extend(flags.to_le_bytes());
    let mut rec = [outer_tag, &len_field(msg.len() + 4, long), &msg].concat();
    let crc = crc32fast::hash(&rec);
    rec.extend(crc.to_le_bytes());
    rec
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// A record another writer may lay out otherwise (the same key and value, fields in another
/// order, longer lengths, fields of its own, the value packed) verifies and is kept, but carries
/// no checksum: a record written for its entry would differ from it in more than the extension.
/// Carried all the same, its checksum would make the rewritten record fail.
#[test]
fn only_a_record_in_this_crates_layout_carries_its_checksum() {
    let (key, value) = (&b"kernel"[..], vec![0x5au8; 300]);
    let words: Vec<u8> = [7u32, 300, 1 << 20]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let entries = [
        EntryIn::new(PLATFORM_INFO_KEY, b"platform", ValueKind::Bytes),
        EntryIn::new(key, &value, ValueKind::Bytes),
    ];
    let params = WriteParams::next(0);
    let file = encode(Format::Checked11, &entries, params)
        .unwrap()
        .out
        .to_vec();
    let (id, vouched) = (params.file_id, 1);
    let (k, v) = (field(0x0a, key, false), field(0x12, &value, false));
    let ours = record(&[0x0a], false, &[&k[..], &v].concat(), id, vouched);
    let at = find(&file, &ours);
    let unknown = [0x28, 0x05]; // field 5, varint 5
    let packed = field(0x1a, &[7, 0xac, 0x02, 0x80, 0x80, 0x40], false);
    let variants: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("this crate's", ours.clone(), value.clone()),
        (
            "value first",
            record(&[0x0a], false, &[&v[..], &k].concat(), id, vouched),
            value.clone(),
        ),
        (
            "long key length",
            record(
                &[0x0a],
                false,
                &[field(0x0a, key, true), v.clone()].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "long value length",
            record(
                &[0x0a],
                false,
                &[k.clone(), field(0x12, &value, true)].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "long record length",
            record(&[0x0a], true, &[&k[..], &v].concat(), id, vouched),
            value.clone(),
        ),
        (
            "long record tag",
            record(&[0x8a, 0x00], false, &[&k[..], &v].concat(), id, vouched),
            value.clone(),
        ),
        (
            "a field after the value",
            record(
                &[0x0a],
                false,
                &[&k[..], &v, &unknown].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "a field before the key",
            record(
                &[0x0a],
                false,
                &[&unknown[..], &k, &v].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "the key twice",
            record(
                &[0x0a],
                false,
                &[field(0x0a, b"decoy", false), k.clone(), v.clone()].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "the value twice",
            record(
                &[0x0a],
                false,
                &[k.clone(), field(0x12, b"old", false), v.clone()].concat(),
                id,
                vouched,
            ),
            value.clone(),
        ),
        (
            "no value field",
            record(&[0x0a], false, &k, id, vouched),
            Vec::new(),
        ),
        (
            "a packed array",
            record(&[0x0a], false, &[&k[..], &packed].concat(), id, vouched),
            words.clone(),
        ),
    ];
    for (what, rec, want) in &variants {
        let spliced = [&file[..at], rec, &file[at + ours.len()..]].concat();
        let d = decode(&spliced).unwrap();
        // (A record of the same length leaves the file intact: CRC-32 over a message followed by
        // its own CRC is a constant, so the stream's trailer does not change.)
        assert!(
            d.damage.intact || rec.len() != ours.len(),
            "{what}: {:?}",
            d.damage
        );
        let e = d
            .entries
            .iter()
            .find(|e| &spliced[e.key.clone()] == key)
            .unwrap_or_else(|| panic!("{what}: kept"));
        assert_eq!(e.value.bytes(&spliced), &want[..], "{what}");
        assert_eq!(e.known_crc.is_some(), rec == &ours, "{what}");
        // The same record read on its own (a lazily verified value) carries the same.
        if want == &value {
            let (body, stored) = rec.split_at(rec.len() - 4);
            let crc = u32::from_le_bytes(stored.try_into().unwrap());
            let at = find(body, &value);
            let alone = checked::known_crc_of_record(body, key.len(), at..at + value.len(), crc);
            assert_eq!(alone, e.known_crc, "{what}");
        }
        // A rewrite of what was read, with what it carries, is intact.
        let all = |_: &[u8]| true;
        let out = encode(
            Format::Checked11,
            &again(&spliced, &d, true, &all),
            WriteParams::next(1),
        )
        .unwrap()
        .out
        .to_vec();
        let d2 = decode(&out).unwrap();
        assert!(
            d2.damage.intact && d2.entries.len() == 2,
            "{what}: {:?}",
            d2.damage
        );
    }
    // The record with the value first is as long as this crate's: a checksum carried from it,
    // which only the layout check refuses, would be wrong.
    let (_, first, _) = &variants[1];
    assert_eq!(first.len(), ours.len());
    let n = first.len();
    let stored = u32::from_le_bytes(first[n - 4..].try_into().unwrap());
    let naive =
        KnownCrc(std::num::NonZeroU32::new(stored ^ ext_delta(&first[n - 20..n - 4])).unwrap());
    let ins = [
        entries[0],
        EntryIn {
            known_crc: Some(naive),
            ..entries[1]
        },
    ];
    let out = encode(Format::Checked11, &ins, WriteParams::next(1))
        .unwrap()
        .out
        .to_vec();
    let d = decode(&out).unwrap();
    assert!(!d.damage.intact && d.entries.len() == 1, "{:?}", d.damage);
}

/// What each entry carries costs no memory: it fits in the padding of a decoded entry and of a
/// store's map entry (whose per-entry cost `ENTRY_COST` bounds, `tests/lazy_memory.rs`).
#[test]
fn a_carried_checksum_takes_four_bytes() {
    assert_eq!(std::mem::size_of::<Option<KnownCrc>>(), 4);
}
