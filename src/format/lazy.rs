//! Lazily verified reads of checked-1.1: the framing of an intact file is walked without
//! checksumming its entries, over any [`Source`] of the file's bytes: the bytes themselves
//! ([`decode_lazy`](super::decode_lazy)) or a reader that fetches only the windows the walk asks for
//! (the store's lazy open), so the bytes of a value the walk skips need never be read.

use super::checked::{
    known_crc_of_record, parse_header, parse_record, tag_bytes, Record, EXT_FIELD_LEN, EXT_LEN,
    FLAG_VOUCHED, HEADER_LEN,
};
use super::crc::Crc;
use super::stock::{Kv, KvValue, EXT_FIELD};
use super::wire::{Reader, WT_I32, WT_I64, WT_LEN, WT_VARINT};
use super::{
    Budget, CheckedInfo, Damage, Decoded, DecodedEntry, EntryCheck, FirstOfEach, Format, IndexTip,
    ValueKind, ValueRef, PLATFORM_INFO_KEY,
};
use crc32fast::Hasher;
use std::collections::BTreeMap;
use std::ops::Range;

/// The bytes of a file as the walk reads them, at the offsets it asks for.
pub trait Source {
    /// The file's length.
    fn len(&self) -> usize;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `want` bytes at `at`, fewer only where the file ends first (none at or past its end);
    /// `None` when they cannot be read (the walk then gives up).
    fn peek(&mut self, at: usize, want: usize) -> Option<&[u8]>;

    /// The `want` bytes at `at` in a buffer of their own, as [`Source::peek`] gives them; a
    /// reader can fetch them without passing through its window.
    fn read_owned(&mut self, at: usize, want: usize) -> Option<Vec<u8>> {
        self.peek(at, want).map(<[u8]>::to_vec)
    }
}

/// A [`Source`] over bytes in memory.
pub struct SliceSource<'a>(pub &'a [u8]);

impl Source for SliceSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn peek(&mut self, at: usize, want: usize) -> Option<&[u8]> {
        let b = self.0;
        let at = at.min(b.len());
        Some(&b[at..b.len().min(at.saturating_add(want))])
    }
}

/// Where the walk hands each entry it accepts.
pub trait Sink {
    /// An entry that passed the framing checks; `false` if its key was handed before (the walk
    /// then fails: a file with a duplicate key is decoded eagerly). `check`: the checksum its first
    /// use must pass; `None` when it was verified by the walk, which then passes the verified bytes
    /// the checksum covers (`record`, starting at file offset `record_at`).
    fn push(
        &mut self,
        key: &[u8],
        entry: DecodedEntry,
        check: Option<EntryCheck>,
        record: Option<(&[u8], usize)>,
    ) -> bool;

    /// Forgets every entry pushed so far (the open then tries the next way to read the file).
    fn clear(&mut self);

    /// Room for `n` more entries, which the walk is about to push (their number was checked
    /// against the file: they fit in it).
    fn reserve(&mut self, n: usize) {
        let _ = n;
    }
}

/// What a successful walk found besides the entries.
pub struct Walked {
    /// What appending to the file needs.
    pub checked: CheckedInfo,
    /// The file's generation.
    pub generation: u64,
}

const ENTRY_TAG: u64 = 1 << 3 | WT_LEN;
const INDEX_TAG: u64 = super::index::INDEX_FIELD << 3 | WT_LEN;
/// The most bytes a commit record's framing can take: a tag and a length of at most 10 bytes each.
const COMMIT_MAX: usize = 10 + 10 + super::checked::COMMIT_LEN;

/// Reads the framing of an intact checked-1.1 file through its index chain, or, when it has none
/// that holds, by walking its records ([`walk11`]); each way with a memory budget of its own.
pub(crate) fn walk11_any(src: &mut dyn Source, sink: &mut dyn Sink) -> Option<Walked> {
    let n = src.len();
    let budget = || Budget::for_input(n);
    let mut mem = budget();
    if let Some(w) = super::index::open_indexed(src, &mut mem, sink) {
        return Some(w);
    }
    sink.clear();
    let mut mem = budget();
    walk11(src, &mut mem, sink)
}

/// Walks a checked-1.1 file exactly as its writer left it: the header verifies, the records
/// follow one another to the trailer with this file's id (each entry's extension in its place),
/// the commit records verify, every batch is committed, complete and counted once, no key repeats,
/// and the trailer equals the CRC-32 the records' own checksums add up to. The platform-info entry
/// and built `uint32` arrays are verified here. `None` when any of it fails (or a read does): the
/// caller decodes eagerly, with salvage; what was pushed to `sink` must then be discarded.
pub(crate) fn walk11(
    src: &mut dyn Source,
    mem: &mut Budget,
    sink: &mut dyn Sink,
) -> Option<Walked> {
    let len = src.len();
    // The header's tag and length take 3 bytes; more is harmless.
    let header = parse_header(src.peek(0, 8 + HEADER_LEN)?)?;
    let records_end = len.checked_sub(4).filter(|&e| e >= header.end)?;
    let file_id = header.file_id;
    let mut stream = Hasher::new();
    stream.update(src.peek(0, header.end)?);
    let mut count = 0u64;
    let mut per_seq = PerSeq::default();
    let mut commits: Vec<(u32, u32)> = Vec::new();
    let mut has_platform = false;
    let mut any_vouched = false;
    // Framing is walked once and never scanned: no budget is needed to keep this linear.
    let mut unbounded = u64::MAX;
    let mut key = Vec::new();
    let ext_tag_bytes = tag_bytes(EXT_FIELD, EXT_LEN);
    let mut p = header.end;
    let mut tip = None;
    while p < records_end {
        let mut r = Reader::new(src.peek(p, 20)?, 0);
        let tag = r.varint()?;
        if tag != ENTRY_TAG {
            // A commit record, or an index (whose length is read first: it can be long).
            let want = if tag == INDEX_TAG {
                r.varint()?.checked_add(r.pos() as u64)? as usize
            } else {
                COMMIT_MAX
            };
            let w = src.peek(p, want)?;
            let (rec, end) = parse_record(w, 0, Some(file_id), &mut unbounded, Crc::direct())?;
            match rec {
                Record::Commit { seq, count, .. } => commits.push((seq, count)),
                Record::Index { seq, .. } => {
                    tip = Some(IndexTip {
                        at: p as u32,
                        len: end as u32,
                        seq,
                    })
                }
                Record::Entry { .. } => return None,
            }
            stream.update(&w[..end]);
            p += end;
            continue;
        }
        let n = r.varint()?;
        let start = p + r.pos();
        if n > (len - start) as u64 {
            return None;
        }
        let end = start + n as usize;
        // The message's fields first, then its extension: reading in file order keeps the walk to
        // about one window per entry. Every check is made either way.
        let kv = kvpair_framing(src, start, end, &mut key)?;
        let ext_tag = end.checked_sub(EXT_FIELD_LEN)?;
        if ext_tag < start {
            return None;
        }
        let ext = src.peek(ext_tag, EXT_FIELD_LEN)?;
        if ext.len() < EXT_FIELD_LEN || ext[..3] != ext_tag_bytes[..] {
            return None;
        }
        let mut er = Reader::new(ext, 3);
        let (id, seq, flags, crc) = (er.u64_le()?, er.u32_le()?, er.u32_le()?, er.u32_le()?);
        if id != file_id || kv.ext.as_ref().map(|(_, tag_at)| *tag_at) != Some(ext_tag) {
            return None;
        }
        if end > records_end {
            return None;
        }
        stream.combine(&Hasher::new_with_initial_len(crc, (end - 4 - p) as u64));
        stream.update(&crc.to_le_bytes());
        if !mem.charge(kv.key.len(), kv.built_len()) {
            return None;
        }
        let check = EntryCheck {
            record: p..end - 4,
            crc,
            framing: None,
        };
        let is_platform = key == PLATFORM_INFO_KEY;
        // The platform-info entry decides whether others are kept, and a built array must come
        // from verified bytes: both are verified now (they are small).
        let eager = is_platform || kv.built_len() > 0;
        has_platform |= is_platform;
        let vouched = flags & FLAG_VOUCHED != 0;
        any_vouched |= vouched;
        per_seq.add(seq);
        count += 1;
        if eager {
            let rec = src.peek(p, end - 4 - p)?;
            if rec.len() != end - 4 - p || crc32fast::hash(rec) != crc {
                return None;
            }
            let (value, kind) = kv.value_ref(&rec[start - p..]);
            let known_crc = match (&value, kind) {
                (ValueRef::Slice(v), ValueKind::Bytes) => {
                    known_crc_of_record(rec, kv.key.len(), v.start - p..v.end - p, crc)
                }
                _ => None,
            };
            let entry = DecodedEntry {
                key: kv.key,
                value,
                kind,
                vouched,
                known_crc,
            };
            if !sink.push(&key, entry, None, Some((rec, p))) {
                return None;
            }
        } else {
            let (value, kind) = kv.value_ref(&[]);
            let entry = DecodedEntry {
                key: kv.key,
                value,
                kind,
                vouched,
                known_crc: None,
            };
            if !sink.push(&key, entry, Some(check), None) {
                return None;
            }
        }
        p = end;
    }
    let per_seq = per_seq.done();
    let tail = src.peek(records_end, 4)?;
    let stream_crc = u32::from_le_bytes(tail.try_into().ok()?);
    if p != records_end || stream.finalize() != stream_crc || (any_vouched && !has_platform) {
        return None;
    }
    let last_seq = commits.iter().map(|c| c.0).max().unwrap_or(0);
    let mut expected: Vec<(u32, u64)> = commits.iter().map(|&(s, c)| (s, u64::from(c))).collect();
    expected.push((0, u64::from(header.base_count)));
    expected.sort_unstable();
    // Every batch committed once and whole, and no entry outside them.
    let complete = expected.windows(2).all(|w| w[0].0 != w[1].0)
        && expected.iter().map(|e| e.1).sum::<u64>() == count
        && expected
            .iter()
            .all(|&(s, c)| per_seq.get(&s).copied().unwrap_or(0) == c)
        && per_seq.keys().all(|&s| s <= last_seq);
    if !complete {
        return None;
    }
    Some(Walked {
        checked: CheckedInfo {
            file_id,
            generation: header.generation,
            last_seq,
            stream_crc,
            file_len: len as u64,
            has_platform,
            index: tip.filter(|t| (t.at + t.len) as usize == records_end),
        },
        generation: header.generation,
    })
}

/// Entries counted per batch; a batch's entries are written one after another, so counting runs of
/// one batch keeps the map out of the per-entry path.
#[derive(Default)]
struct PerSeq {
    run: Option<(u32, u64)>,
    map: BTreeMap<u32, u64>,
}

impl PerSeq {
    fn add(&mut self, seq: u32) {
        match &mut self.run {
            Some((s, n)) if *s == seq => *n += 1,
            _ => {
                self.flush();
                self.run = Some((seq, 1));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((s, n)) = self.run.take() {
            *self.map.entry(s).or_default() += n;
        }
    }

    fn done(mut self) -> BTreeMap<u32, u64> {
        self.flush();
        self.map
    }
}

/// The fields of the `KVPair` message at `start..end`, as `stock::parse_kvpair` finds them, reading
/// the tags and lengths but never the payload of a `bytes_value` (nor of an unknown field). The
/// key's bytes are copied into `key_bytes` as the walk passes them (while they are in the window).
fn kvpair_framing(
    src: &mut dyn Source,
    start: usize,
    end: usize,
    key_bytes: &mut Vec<u8>,
) -> Option<Kv> {
    key_bytes.clear();
    let mut key = start..start;
    let mut bytes_value: Option<Range<usize>> = None;
    let mut u32s: Option<usize> = None;
    let mut ext = None;
    let mut q = start;
    while q < end {
        let field_start = q;
        let mut r = Reader::new(src.peek(q, (end - q).min(20))?, 0);
        let tag = r.varint()?;
        let number = tag >> 3;
        if number == 0 {
            return None;
        }
        // `Some(payload)` for a length-delimited field, `None` for a scalar.
        let payload = match tag & 7 {
            WT_VARINT => {
                r.varint()?;
                q += r.pos();
                None
            }
            WT_LEN => {
                let n = r.varint()?;
                let at = q + r.pos();
                if n > (end - at) as u64 {
                    return None;
                }
                q = at + n as usize;
                Some(at..q)
            }
            WT_I64 | WT_I32 => {
                let n = if tag & 7 == WT_I64 { 8 } else { 4 };
                q += r.pos();
                if end - q < n {
                    return None;
                }
                q += n;
                None
            }
            _ => return None, // groups are not used by MACE's messages
        };
        match (number, payload) {
            (1, Some(s)) => {
                let b = src.peek(s.start, s.len())?;
                if b.len() != s.len() {
                    return None;
                }
                key_bytes.clear();
                key_bytes.extend_from_slice(b);
                key = s;
            }
            (2, Some(s)) => bytes_value = Some(s),
            (3, None) if tag & 7 == WT_VARINT => *u32s.get_or_insert(0) += 1,
            (3, Some(s)) => {
                let n = u32s.get_or_insert(0);
                let packed = src.peek(s.start, s.len())?;
                if packed.len() != s.len() {
                    return None;
                }
                let mut pr = Reader::new(packed, 0);
                while pr.remaining() > 0 {
                    pr.varint()?;
                    *n += 1;
                }
            }
            (EXT_FIELD, Some(s)) => ext = Some((s, field_start)),
            (1..=3, _) => return None, // a known field with the wrong wire type
            _ => {}
        }
    }
    let value = match (bytes_value, u32s) {
        (Some(r), _) => KvValue::Bytes(r),
        (None, Some(n)) => KvValue::U32s(n),
        (None, None) => KvValue::Bytes(start..start),
    };
    Some(Kv { key, value, ext })
}

/// Decodes a checked-1.1 file in memory without checksumming its entries, when [`walk11`] accepts
/// it. Each entry comes with the check its first use must pass (`None`: verified here).
///
/// Only the bytes an entry's own checksum covers are left unverified, so a file that passes here
/// and whose every entry verifies is one the eager decoder reads intact, with the same entries.
pub(super) fn decode11_lazy(bytes: &[u8]) -> Option<(Decoded, Vec<Option<EntryCheck>>)> {
    struct Collect<'a> {
        bytes: &'a [u8],
        first: FirstOfEach<'a>,
        entries: Vec<DecodedEntry>,
        checks: Vec<Option<EntryCheck>>,
    }
    impl Sink for Collect<'_> {
        fn push(
            &mut self,
            _key: &[u8],
            entry: DecodedEntry,
            check: Option<EntryCheck>,
            _record: Option<(&[u8], usize)>,
        ) -> bool {
            let bytes = self.bytes;
            if !self.first.first(&bytes[entry.key.clone()]) {
                return false;
            }
            self.entries.push(entry);
            self.checks.push(check);
            true
        }

        fn clear(&mut self) {
            self.first = FirstOfEach::new();
            self.entries.clear();
            self.checks.clear();
        }
    }
    let mut c = Collect {
        bytes,
        first: FirstOfEach::new(),
        entries: Vec::new(),
        checks: Vec::new(),
    };
    let walked = walk11_any(&mut SliceSource(bytes), &mut c)?;
    let decoded = Decoded {
        format: Format::Checked11,
        entries: c.entries,
        damage: Damage::none(),
        checked: Some(walked.checked),
        generation: Some(walked.generation),
    };
    Some((decoded, c.checks))
}
