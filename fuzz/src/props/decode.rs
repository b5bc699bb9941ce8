//! The `decode` target: `format::decode` on any bytes.

use super::{ins, kind_written, map_of, within_memory_bound, Map, PARAMS};
use mace_storage::format::{
    decode, encode, Decoded, Format, ValueKind, ValueRef, WriteParams, PLATFORM_INFO_KEY,
};
use std::collections::HashSet;

/// What `decode` must always give: in-bounds ranges, unique keys, consistent reports.
pub fn check_decoded(input: &[u8], d: &Decoded) {
    let len = input.len();
    assert_eq!(
        d.format == Format::Empty,
        input.is_empty(),
        "{:?}",
        d.format
    );
    let mut keys = HashSet::new();
    for e in &d.entries {
        assert!(
            e.key.start <= e.key.end && e.key.end <= len,
            "key range {:?} outside the {len}-byte input",
            e.key
        );
        match &e.value {
            ValueRef::Slice(r) => {
                assert!(
                    r.start <= r.end && r.end <= len,
                    "value range {r:?} outside the {len}-byte input"
                );
                assert_eq!(e.kind, ValueKind::Bytes, "a borrowed value is bytes");
            }
            ValueRef::Owned(v) => {
                assert_eq!(e.kind, ValueKind::U32s, "only uint32 arrays are built");
                assert_eq!(v.len() % 4, 0, "a uint32 array of {} bytes", v.len());
                // Each element takes at least 1 byte of input (a packed 1-byte varint) and becomes 4.
                assert!(v.len() <= 4 * len, "{} bytes built from {len}", v.len());
            }
        }
        assert!(
            keys.insert(&input[e.key.clone()]),
            "key {:?} returned twice",
            String::from_utf8_lossy(&input[e.key.clone()])
        );
    }
    let has_platform = keys.contains(PLATFORM_INFO_KEY);
    assert!(
        has_platform || d.entries.iter().all(|e| !e.vouched),
        "vouched entries kept without the platform-info entry"
    );
    if d.damage.intact {
        assert_eq!(d.damage.entries_dropped, 0, "intact, yet entries dropped");
    } else {
        assert!(
            !d.damage.notes.is_empty(),
            "damaged without a note saying why"
        );
    }
    assert!(d.damage.bytes_ignored <= len as u64);
    if d.format == Format::Checked11 && d.damage.intact {
        assert!(
            d.checked.is_some(),
            "an intact checked-1.1 file must be appendable"
        );
    }
    if let Some(info) = d.checked {
        assert_eq!(d.format, Format::Checked11);
        assert!(d.damage.intact, "append info for a damaged file");
        assert_eq!(info.file_len, len as u64);
        assert_eq!(
            info.stream_crc.to_le_bytes()[..],
            input[len - 4..],
            "stream_crc is not the trailer"
        );
        assert_eq!(info.has_platform, has_platform);
        assert_eq!(d.generation, Some(info.generation));
    }
}

/// `decode` on arbitrary bytes: never panics, [`check_decoded`] holds, and an intact file's entries
/// re-encoded in checked-1.1 decode back to the same entries, intact.
pub fn check_decode(input: &[u8]) {
    let d = match within_memory_bound("decode", input.len(), || decode(input)) {
        Ok(d) => d,
        Err(e) => {
            assert!(!input.is_empty(), "0 bytes must decode as empty: {e}");
            return;
        }
    };
    check_decoded(input, &d);
    if !d.damage.intact {
        return;
    }
    let map = map_of(input, &d);
    let entries: Vec<(Vec<u8>, Vec<u8>, ValueKind)> = map
        .iter()
        .map(|(k, (v, kind))| (k.clone(), v.clone(), *kind))
        .collect();
    let params = d.checked.map_or(PARAMS, |c| WriteParams {
        file_id: c.file_id,
        generation: c.generation.wrapping_add(1),
    });
    let enc = encode(Format::Checked11, &ins(&entries), params).expect("re-encode");
    let again = enc.out.to_vec();
    let d2 = decode(&again).expect("a re-encoded file decodes");
    check_decoded(&again, &d2);
    assert_eq!(d2.format, Format::Checked11);
    assert!(d2.damage.intact, "re-encoded file damaged: {:?}", d2.damage);
    let want: Map = map
        .into_iter()
        .map(|(k, (v, kind))| {
            let kind = kind_written(Format::Checked11, kind, &v);
            (k, (v, kind))
        })
        .collect();
    assert_eq!(
        map_of(&again, &d2),
        want,
        "a {} file's entries changed when re-encoded",
        d.format
    );
    assert_eq!(d2.checked, enc.info);
}
