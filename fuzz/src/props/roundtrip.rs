//! The `roundtrip` target: entries built from the input, encoded in every writable format and
//! appended to, cut and torn.

use super::{check_decoded, ins, kind_written, map_of, Input, Map, PARAMS};
use mace_storage::format::{
    decode, encode, encode_append, CheckedInfo, Decoded, Format, ValueKind, PLATFORM_INFO_KEY,
};
use std::collections::{BTreeMap, HashSet};

/// Splits `entries` per the header byte of a roundtrip input.
struct RoundtripCase {
    entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)>,
    split1: usize,
    split2: usize,
    cuts: [u8; 2],
    masks: [u64; 2],
}

fn roundtrip_case(data: &[u8]) -> RoundtripCase {
    let mut inp = Input::new(data);
    let (s1, s2) = (inp.byte(), inp.byte());
    let cuts = [inp.byte(), inp.byte()];
    let masks = [
        u64::from(inp.byte()) | u64::from(inp.byte()) << 8,
        u64::from(inp.byte()) | 1 << 63,
    ];
    let mut entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)> = Vec::new();
    let mut seen = HashSet::new();
    while !inp.done() && entries.len() < 40 {
        let key = inp.key();
        let kind = if inp.byte() & 1 == 1 {
            ValueKind::U32s
        } else {
            ValueKind::Bytes
        };
        let value = inp.value();
        if seen.insert(key.clone()) {
            entries.push((key, value, kind));
        }
    }
    let n = entries.len();
    let split1 = usize::from(s1) % (n + 1);
    let split2 = split1 + usize::from(s2) % (n - split1 + 1);
    RoundtripCase {
        entries,
        split1,
        split2,
        cuts,
        masks,
    }
}

/// What decoding a file written from `entries` in `format` must give.
fn expected(format: Format, entries: &[(Vec<u8>, Vec<u8>, ValueKind)]) -> Map {
    entries
        .iter()
        .map(|(k, v, kind)| (k.clone(), (v.clone(), kind_written(format, *kind, v))))
        .collect()
}

/// The vouched flag a checked writer gives each of `batch`'s entries: set on every entry but the
/// platform-info one when the state it is written into holds the platform-info entry.
fn vouched_flags(
    had_platform: bool,
    batch: &[(Vec<u8>, Vec<u8>, ValueKind)],
) -> BTreeMap<Vec<u8>, bool> {
    let has_platform = had_platform || batch.iter().any(|e| e.0 == PLATFORM_INFO_KEY);
    batch
        .iter()
        .map(|e| (e.0.clone(), has_platform && e.0 != PLATFORM_INFO_KEY))
        .collect()
}

/// Checks each decoded entry's vouched flag against what the writer set.
fn check_vouched(input: &[u8], d: &Decoded, want: &BTreeMap<Vec<u8>, bool>) {
    for e in &d.entries {
        let key = &input[e.key.clone()];
        assert_eq!(
            Some(&e.vouched),
            want.get(key),
            "vouched flag of {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

/// `bytes` written at `offset` over `file`, keeping only the 512-byte sectors (counted from the one
/// holding `offset`) whose bit is set in `mask` (bit 63 covers every later sector), like a torn write.
pub fn torn_write(file: &[u8], offset: usize, bytes: &[u8], mask: u64) -> Vec<u8> {
    let mut out = file.to_vec();
    let first = offset / 512;
    for (i, b) in bytes.iter().enumerate() {
        let at = offset + i;
        if mask >> (at / 512 - first).min(63) & 1 == 1 {
            if out.len() <= at {
                out.resize(at + 1, 0);
            }
            out[at] = *b;
        }
    }
    out
}

/// Entries decoded from fuzz bytes, encoded in every writable format, decode back exactly and intact;
/// a checked-1.1 file appended to in two batches decodes to the union, and an append cut or torn at any
/// point decodes to the state before it (records without their commit) or after it.
pub fn check_roundtrip(data: &[u8]) {
    let case = roundtrip_case(data);
    let entries = &case.entries;
    for format in Format::WRITABLE {
        let enc = encode(format, &ins(entries), PARAMS).expect("encode");
        let bytes = enc.out.to_vec();
        assert_eq!(bytes.len() as u64, enc.out.len());
        assert_eq!(bytes, enc.out.slices().concat());
        let d = decode(&bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
        check_decoded(&bytes, &d);
        assert_eq!(d.format, format, "a {format} file detected as {}", d.format);
        assert!(d.damage.intact, "{format}: {:?}", d.damage);
        assert_eq!(map_of(&bytes, &d), expected(format, entries), "{format}");
        if format.is_checked() {
            check_vouched(&bytes, &d, &vouched_flags(false, entries));
            assert_eq!(d.generation, Some(PARAMS.generation));
        }
        assert_eq!(d.checked, enc.info, "{format}");
    }

    // checked-1.1 appends: a base, then two batches, each checked whole, cut and torn.
    let base = &entries[..case.split1];
    let enc = encode(Format::Checked11, &ins(base), PARAMS).expect("encode base");
    let mut file = enc.out.to_vec();
    let mut info: CheckedInfo = enc.info.expect("checked-1.1 gives append info");
    let mut state = expected(Format::Checked11, base);
    let mut vouched = vouched_flags(false, base);
    let batches = [&entries[case.split1..case.split2], &entries[case.split2..]];
    for (i, batch) in batches.into_iter().enumerate() {
        let app = encode_append(&info, &ins(batch)).expect("encode append");
        let at = file.len() - 4;
        let records = app.records.to_vec();
        let commit = app.commit.to_vec();
        let mut new_file = file[..at].to_vec();
        new_file.extend_from_slice(&records);
        new_file.extend_from_slice(&commit);
        assert_eq!(new_file.len() as u64, app.info.file_len);
        let mut new_state = state.clone();
        new_state.extend(expected(Format::Checked11, batch));
        let d = decode(&new_file).expect("appended file decodes");
        check_decoded(&new_file, &d);
        assert!(d.damage.intact, "append {i}: {:?}", d.damage);
        assert_eq!(map_of(&new_file, &d), new_state, "append {i}");
        assert_eq!(d.checked, Some(app.info), "append {i}");
        vouched.extend(vouched_flags(info.has_platform, batch));
        check_vouched(&new_file, &d, &vouched);

        // A crash during the append: the records (unsynced) cut anywhere or torn, with no commit.
        let rec_end = at + records.len();
        let cut = at + (usize::from(case.cuts[i]) * (records.len() + 1)) / 256;
        let cut_file = torn_write(&file, at, &records[..cut - at], u64::MAX);
        let torn_file = torn_write(&file, at, &records, case.masks[i]);
        for (what, f) in [("cut records", cut_file), ("torn records", torn_file)] {
            let d = decode(&f).unwrap_or_else(|e| panic!("{what}: {e}"));
            check_decoded(&f, &d);
            assert_eq!(
                map_of(&f, &d),
                state,
                "append {i}, {what}: kept uncommitted data"
            );
        }
        // The records made durable, then the commit record and trailer cut or torn: old or new.
        let with_records = torn_write(&file, at, &records, u64::MAX);
        let tail_cut = rec_end + usize::from(case.cuts[i]) % (commit.len() + 1);
        let commit_cut = torn_write(&with_records, rec_end, &commit[..tail_cut - rec_end], !0);
        let commit_torn = torn_write(&with_records, rec_end, &commit, case.masks[1 - i]);
        for (what, f) in [("cut commit", commit_cut), ("torn commit", commit_torn)] {
            let d = decode(&f).unwrap_or_else(|e| panic!("{what}: {e}"));
            check_decoded(&f, &d);
            let got = map_of(&f, &d);
            assert!(
                got == state || got == new_state,
                "append {i}, {what}: neither the old nor the new state"
            );
        }
        file = new_file;
        info = app.info;
        state = new_state;
    }
}
