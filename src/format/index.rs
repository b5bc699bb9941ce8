//! The index of checked-1.1: after the records of each batch, one record lists where each of the
//! batch's entries lies, its key and its checksum, and points to the index of the batch before. A
//! lazily verified open reads the file's first bytes and its last ones (the newest index, which
//! the trailer follows), walks the chain back to batch 0 and has every entry's place without
//! reading the records between: two or three reads for a file of any size. The records' bytes are
//! verified at each entry's first use, framing included. See `docs/FORMAT.md`.

use super::checked::{
    known_crc, parse_header, parse_record, tag_bytes, Record, COMMIT_LEN, EXT_FIELD_LEN, EXT_LEN,
    FLAG_VOUCHED,
};
use super::crc::Crc;
use super::lazy::{Sink, Source, Walked};
use super::stock::EXT_FIELD;
use super::wire::Reader;
use super::{Budget, CheckedInfo, DecodedEntry, EntryCheck, Framing, ValueKind, ValueRef};
use super::{IndexTip, PLATFORM_INFO_KEY};
use crc32fast::Hasher;
use std::ops::Range;
use std::rc::Rc;

/// The field number of an index record (stock readers skip it as an unknown field).
pub(super) const INDEX_FIELD: u64 = 2045;
/// file_id u64, seq u32, count u32, prev_at u32, prev_len u32, prefix_crc u32.
const HEAD_LEN: usize = 8 + 4 * 5;
/// payload_len u32, crc u32: at the very end, so the record is found from the file's end.
const FOOT_LEN: usize = 8;
/// rec_at, rec_len, val_at, val_len, crc, flags, key_len (u32 each), then the key.
pub(super) const ITEM_LEN: usize = 7 * 4;
/// Item flag: the entry is read and verified when the file is opened (the platform-info entry,
/// which decides whether the others are kept, and `uint32` arrays, whose value must be built).
const ITEM_AT_OPEN: u32 = 1 << 1;
/// The longest chain an open follows; a file appended to more often since its last rewrite is
/// opened by walking its records.
pub(super) const MAX_CHAIN: u32 = 64;
/// How much of the file's end the open reads first: the newest index of a cache of hundreds of
/// programs fits, with the commit record before it.
const TAIL_WINDOW: usize = 64 << 10;
/// A commit record's length in the file: 2-byte tag, 1-byte length, payload.
const COMMIT_RECORD_LEN: usize = 3 + COMMIT_LEN;

/// The index of one batch, built as its records are written.
#[derive(Default)]
pub(super) struct IndexWriter {
    items: Vec<u8>,
    count: u32,
}

impl IndexWriter {
    /// Notes the record just written for `key`: `rec_at..rec_at + rec_len` in the file, its value at
    /// `val_at` (from the record's start) for `val_len` bytes, its checksum and flags.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &mut self,
        key: &[u8],
        kind: ValueKind,
        rec_at: u64,
        rec_len: usize,
        val_at: usize,
        val_len: usize,
        crc: u32,
        flags: u32,
    ) {
        let at_open = key == PLATFORM_INFO_KEY || kind == ValueKind::U32s;
        let flags = flags | if at_open { ITEM_AT_OPEN } else { 0 };
        // The encoder refuses files past 2 GiB before they are written: every offset fits.
        for v in [
            rec_at as u32,
            rec_len as u32,
            val_at as u32,
            val_len as u32,
            crc,
            flags,
            key.len() as u32,
        ] {
            self.items.extend_from_slice(&v.to_le_bytes());
        }
        self.items.extend_from_slice(key);
        self.count += 1;
    }

    /// The index record of batch `seq`, to be written at `at`, after bytes whose CRC-32 is
    /// `prefix_crc`; `prev` is the index of the batch before. Returns the record and where it is.
    pub(super) fn finish(
        self,
        file_id: u64,
        seq: u32,
        prev: Option<IndexTip>,
        prefix_crc: u32,
        at: u64,
    ) -> (Vec<u8>, IndexTip) {
        let (prev_at, prev_len) = prev.map_or((0, 0), |p| (p.at, p.len));
        let payload_len = HEAD_LEN + self.items.len() + FOOT_LEN;
        let mut rec = tag_bytes(INDEX_FIELD, payload_len);
        let body = rec.len();
        rec.reserve(payload_len);
        rec.extend_from_slice(&file_id.to_le_bytes());
        for v in [seq, self.count, prev_at, prev_len, prefix_crc] {
            rec.extend_from_slice(&v.to_le_bytes());
        }
        rec.extend_from_slice(&self.items);
        rec.extend_from_slice(&(payload_len as u32).to_le_bytes());
        let crc = crc32fast::hash(&rec[body..]);
        rec.extend_from_slice(&crc.to_le_bytes());
        let tip = IndexTip {
            at: at as u32,
            len: rec.len() as u32,
            seq,
        };
        (rec, tip)
    }
}

/// An index record as read: its place, its batch, and its items' bytes.
pub(super) struct Index {
    at: usize,
    len: usize,
    pub(super) file_id: u64,
    pub(super) seq: u32,
    count: u32,
    prev: Option<(usize, usize)>,
    prefix_crc: u32,
    /// The bytes read (shared with the other indexes found in the same read), where the record
    /// is in them, and where its items are.
    bytes: Rc<Vec<u8>>,
    rec: Range<usize>,
    items: Range<usize>,
}

/// Parses the index record `rec[within]`, found at file offset `at`; `None` unless it is one whose
/// checksum verifies.
fn parse_index_in(bytes: Rc<Vec<u8>>, within: Range<usize>, at: usize) -> Option<Index> {
    let rec = bytes.get(within.clone())?;
    let foot = rec.len().checked_sub(FOOT_LEN)?;
    let payload_len = u32::from_le_bytes(rec[foot..foot + 4].try_into().ok()?) as usize;
    let tag = tag_bytes(INDEX_FIELD, payload_len);
    let framed = payload_len >= HEAD_LEN + FOOT_LEN
        && rec.len() == tag.len() + payload_len
        && rec.starts_with(&tag);
    if !framed {
        return None;
    }
    let body = &rec[tag.len()..];
    let (signed, crc) = body.split_at(payload_len - 4);
    if crc32fast::hash(signed) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut r = Reader::new(body, 0);
    let file_id = r.u64_le()?;
    let (seq, count, prev_at, prev_len, prefix_crc) = (
        r.u32_le()?,
        r.u32_le()?,
        r.u32_le()?,
        r.u32_le()?,
        r.u32_le()?,
    );
    let prev = (prev_len != 0).then_some((prev_at as usize, prev_len as usize));
    let body_at = within.start + tag.len();
    Some(Index {
        at,
        len: rec.len(),
        file_id,
        seq,
        count,
        prev,
        prefix_crc,
        items: body_at + HEAD_LEN..body_at + payload_len - FOOT_LEN,
        rec: within,
        bytes,
    })
}

/// Parses the index record `rec`, found at `at`; `None` unless it is one whose checksum verifies.
pub(super) fn parse_index(rec: &[u8], at: usize) -> Option<Index> {
    parse_index_in(Rc::new(rec.to_vec()), 0..rec.len(), at)
}

/// Where the index record that ends at `end` starts, from its last bytes (`foot`: the bytes that
/// end there, at least [`FOOT_LEN`] of them).
fn index_start(foot: &[u8], end: usize) -> Option<usize> {
    let payload_len = u32::from_le_bytes(foot[foot.len() - FOOT_LEN..][..4].try_into().ok()?);
    let total = tag_bytes(INDEX_FIELD, payload_len as usize).len() + payload_len as usize;
    end.checked_sub(total)
}

/// One item of an index.
struct Item<'a> {
    rec_at: usize,
    rec_len: usize,
    val_at: usize,
    val_len: usize,
    crc: u32,
    flags: u32,
    key: &'a [u8],
}

/// The items of `index`, in the order written (`None` for bytes that do not parse: the last).
fn items(index: &Index) -> impl Iterator<Item = Option<Item<'_>>> {
    let mut r = Reader::new(&index.bytes[index.items.clone()], 0);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.remaining() == 0 {
            return None;
        }
        let item = (|| {
            let mut f = [0u32; 7];
            for v in &mut f {
                *v = r.u32_le()?;
            }
            let key = r.take(f[6] as usize)?;
            Some(Item {
                rec_at: f[0] as usize,
                rec_len: f[1] as usize,
                val_at: f[2] as usize,
                val_len: f[3] as usize,
                crc: f[4],
                flags: f[5],
                key,
            })
        })();
        failed = item.is_none();
        Some(item)
    })
}

/// Opens an intact checked-1.1 file through its index chain, handing each entry to `sink` as the
/// framing walk would. Accepted only when the header verifies, the newest index ends where the
/// trailer starts and the trailer equals the CRC-32 it and the bytes before it add up to, the chain
/// reaches batch 0 with consecutive batches of this file, the last batch's commit record verifies,
/// the header's count is batch 0's, and the records, commit records and indexes the chain
/// describes tile the file from the header to the trailer. `None` otherwise (the caller then
/// walks the records); `sink` may then hold entries, which must be discarded.
pub(super) fn open_indexed(
    src: &mut dyn Source,
    mem: &mut Budget,
    sink: &mut dyn Sink,
) -> Option<Walked> {
    let len = src.len();
    let header = parse_header(src.peek(0, 8 + super::checked::HEADER_LEN)?)?;
    let records_end = len.checked_sub(4).filter(|&e| e >= header.end + FOOT_LEN)?;
    let file_id = header.file_id;
    // The chain, oldest first; the last read is let go once it is built (the indexes found in it
    // share it).
    let (chain, trailer, start) = {
        // The newest index, found from the file's end (its last bytes give its length), read with
        // the commit record before it in one read where they fit.
        let from = records_end.saturating_sub(TAIL_WINDOW).max(header.end);
        let tail = Rc::new(src.read_owned(from, len - from)?);
        if tail.len() != len - from {
            return None;
        }
        let trailer = u32::from_le_bytes(tail[tail.len() - 4..].try_into().ok()?);
        // What lies within the last read is taken from it; anything before is read.
        let in_tail = |at: usize, n: usize| (at >= from).then(|| at - from..at - from + n);
        let index_at = |src: &mut dyn Source, at: usize, n: usize| match in_tail(at, n) {
            Some(r) => parse_index_in(Rc::clone(&tail), r, at),
            None => read_index(src, at, n),
        };
        let start = index_start(&tail[..tail.len() - 4], records_end)?;
        let newest = index_at(src, start, records_end - start)?;
        let mut whole = Hasher::new_with_initial_len(newest.prefix_crc, start as u64);
        whole.update(&newest.bytes[newest.rec.clone()]);
        if whole.finalize() != trailer || newest.seq >= MAX_CHAIN {
            return None;
        }
        // The last batch's commit record, just before its index (batch 0 is committed by the rename).
        let (last_seq, last_count) = (newest.seq, newest.count);
        if last_seq > 0 {
            let at = start.checked_sub(COMMIT_RECORD_LEN)?;
            let bytes = match in_tail(at, COMMIT_RECORD_LEN) {
                Some(r) => tail[r].to_vec(),
                None => src.read_owned(at, COMMIT_RECORD_LEN)?,
            };
            let mut unbounded = u64::MAX;
            let (rec, end) = parse_record(&bytes, 0, Some(file_id), &mut unbounded, Crc::direct())?;
            match rec {
                Record::Commit { seq, count, .. }
                    if seq == last_seq && count == last_count && end == COMMIT_RECORD_LEN => {}
                _ => return None,
            }
        }
        // The chain, newest first.
        // Indexes that tile the file do not overlap: what the chain reads stays within the file,
        // however a hostile one points its indexes at one another.
        let mut read = newest.len;
        let mut chain = vec![newest];
        while let Some((at, n)) = chain.last().and_then(|i| i.prev) {
            let want = chain.last().map(|i| i.seq.checked_sub(1))??;
            read = read
                .checked_add(n)
                .filter(|&r| r <= records_end - header.end)?;
            let index = index_at(src, at, n)?;
            if index.seq != want {
                return None;
            }
            chain.push(index);
        }
        chain.reverse();
        (chain, trailer, start)
    };
    let last_seq = chain.last().map_or(0, |i| i.seq);
    if chain[0].seq != 0 || chain.iter().any(|i| i.file_id != file_id) {
        return None;
    }
    if chain[0].count != header.base_count {
        return None;
    }
    // The tiling: every byte between the header and the trailer belongs to a record the chain
    // names, in the order the writer wrote them. The items are read twice (checked, then handed
    // out) rather than kept: a cache of thousands of small entries opens in less memory.
    let mut p = header.end;
    let (mut has_platform, mut any_vouched) = (false, false);
    for index in &chain {
        let mut n = 0u32;
        for it in items(index) {
            let it = it?;
            let fits = it.rec_at == p
                && it.rec_len > EXT_FIELD_LEN
                && it.val_at.checked_add(it.val_len)? <= it.rec_len - EXT_FIELD_LEN;
            if !fits {
                return None;
            }
            has_platform |= it.key == PLATFORM_INFO_KEY;
            any_vouched |= it.flags & FLAG_VOUCHED != 0;
            p = p.checked_add(it.rec_len)?;
            n += 1;
        }
        if n != index.count {
            return None;
        }
        if index.seq > 0 {
            p += COMMIT_RECORD_LEN;
        }
        if index.at != p {
            return None;
        }
        p += index.len;
    }
    if p != records_end || (any_vouched && !has_platform) {
        return None;
    }
    sink.reserve(chain.iter().map(|i| i.count as usize).sum());
    for index in &chain {
        for it in items(index) {
            if !push_item(src, mem, sink, file_id, index.seq, &it?) {
                return None;
            }
        }
    }
    let tip = IndexTip {
        at: start as u32,
        len: (records_end - start) as u32,
        seq: last_seq,
    };
    Some(Walked {
        checked: CheckedInfo {
            file_id,
            generation: header.generation,
            last_seq,
            stream_crc: trailer,
            file_len: len as u64,
            has_platform,
            index: Some(tip),
        },
        generation: header.generation,
    })
}

/// The index record at `at..at + n`.
fn read_index(src: &mut dyn Source, at: usize, n: usize) -> Option<Index> {
    let rec = src.read_owned(at, n)?;
    if rec.len() != n {
        return None;
    }
    parse_index_in(Rc::new(rec), 0..n, at)
}

/// Hands the entry `it` (of batch `seq`) to `sink`: read and verified now when the index says so,
/// else with the check its first use must pass, its framing included.
fn push_item(
    src: &mut dyn Source,
    mem: &mut Budget,
    sink: &mut dyn Sink,
    file_id: u64,
    seq: u32,
    it: &Item<'_>,
) -> bool {
    let vouched = it.flags & FLAG_VOUCHED != 0;
    let record = it.rec_at..it.rec_at + it.rec_len - 4;
    if it.flags & ITEM_AT_OPEN == 0 {
        if !mem.charge(it.key.len(), 0) {
            return false;
        }
        // Where the writer puts the key: after the record's tag and length and the key's own.
        let Some(msg_len) = msg_len_of(it.rec_len) else {
            return false;
        };
        let key_at = it.rec_at + 1 + varint_len(msg_len) + 1 + varint_len(it.key.len() as u64);
        let entry = DecodedEntry {
            key: key_at..key_at + it.key.len(),
            value: ValueRef::Slice(it.rec_at + it.val_at..it.rec_at + it.val_at + it.val_len),
            kind: ValueKind::Bytes,
            vouched,
            known_crc: None,
        };
        let check = EntryCheck {
            record,
            crc: it.crc,
            framing: Some(Framing {
                file_id,
                seq,
                flags: it.flags & FLAG_VOUCHED,
            }),
        };
        return sink.push(it.key, entry, Some(check), None);
    }
    let Some(rec) = src.peek(it.rec_at, it.rec_len) else {
        return false;
    };
    if rec.len() != it.rec_len {
        return false;
    }
    let mut unbounded = u64::MAX;
    let Some((
        Record::Entry {
            kv,
            msg,
            vouched: v,
            file_id: id,
            seq: s,
            crc,
        },
        end,
    )) = parse_record(rec, 0, Some(file_id), &mut unbounded, Crc::direct())
    else {
        return false;
    };
    let ok = end == rec.len()
        && crc.clone().finalize() == it.crc
        && &rec[kv.key.clone()] == it.key
        && v == vouched
        && id == file_id
        && s == seq;
    if !ok || !mem.charge(kv.key.len(), kv.built_len()) {
        return false;
    }
    let shift = |r: std::ops::Range<usize>| r.start + it.rec_at..r.end + it.rec_at;
    let known = known_crc(rec, 0, end, &kv, &crc);
    let (value, kind) = kv.value_ref(&rec[msg]);
    let value = match value {
        ValueRef::Slice(r) => ValueRef::Slice(shift(r)),
        owned => owned,
    };
    let entry = DecodedEntry {
        key: shift(kv.key.clone()),
        value,
        kind,
        vouched,
        known_crc: known,
    };
    sink.push(
        it.key,
        entry,
        None,
        Some((&rec[..rec.len() - 4], it.rec_at)),
    )
}

/// The bytes a varint of `v` takes.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The message length of an entry record of `rec_len` bytes (tag, length, message).
fn msg_len_of(rec_len: usize) -> Option<u64> {
    (1..=5).find_map(|n| {
        let m = rec_len.checked_sub(1 + n)? as u64;
        (varint_len(m) == n).then_some(m)
    })
}

/// Whether `before` and `after`, the bytes of a record around its value, are an entry record
/// framed as the writer frames it: a `KVPair` of `key` and a `bytes_value` of `value_len` bytes,
/// the extension last with this file's id and the batch and flags the index gave, and the
/// checksum `crc` stored. Checked at first use, with the checksum.
pub(crate) fn framing_ok(
    before: &[u8],
    after: &[u8],
    value_len: usize,
    key: &[u8],
    f: &Framing,
    crc: u32,
) -> bool {
    let rec_len = before.len() + value_len + after.len();
    let mut r = Reader::new(before, 0);
    let framed = (|| {
        if r.varint()? != 0x0a {
            return None;
        }
        let m = r.varint()?;
        if m != (rec_len - r.pos()) as u64 {
            return None;
        }
        if r.varint()? != 0x0a {
            return None;
        }
        let k = r.varint()? as usize;
        if r.take(k)? != key || r.varint()? != 0x12 {
            return None;
        }
        (r.varint()? == value_len as u64 && r.remaining() == 0).then_some(())
    })();
    let mut ext = tag_bytes(EXT_FIELD, EXT_LEN);
    ext.extend_from_slice(&f.file_id.to_le_bytes());
    ext.extend_from_slice(&f.seq.to_le_bytes());
    ext.extend_from_slice(&f.flags.to_le_bytes());
    ext.extend_from_slice(&crc.to_le_bytes());
    framed.is_some() && after == &ext[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_record_reads_back_and_is_found_from_its_end() {
        let mut w = IndexWriter::default();
        w.add(b"k", ValueKind::Bytes, 43, 100, 10, 50, 7, FLAG_VOUCHED);
        w.add(PLATFORM_INFO_KEY, ValueKind::Bytes, 143, 80, 12, 30, 9, 0);
        let (rec, tip) = w.finish(5, 0, None, 0x1234, 223);
        assert_eq!(tip.len as usize, rec.len());
        assert_eq!(index_start(&rec, 223 + rec.len()), Some(223));
        let i = parse_index(&rec, 223).unwrap();
        assert_eq!(
            (i.file_id, i.seq, i.count, i.prev, i.prefix_crc),
            (5, 0, 2, None, 0x1234)
        );
        let items: Vec<_> = items(&i).map(Option::unwrap).collect();
        assert_eq!(items[0].key, b"k");
        assert_eq!(items[1].flags, ITEM_AT_OPEN);
        let mut bad = rec.clone();
        bad[10] ^= 1;
        assert!(parse_index(&bad, 223).is_none());
    }

    #[test]
    fn framing_is_checked_byte_for_byte() {
        let f = Framing {
            file_id: 9,
            seq: 2,
            flags: 1,
        };
        let mut after = tag_bytes(EXT_FIELD, EXT_LEN);
        after.extend_from_slice(&9u64.to_le_bytes());
        after.extend_from_slice(&2u32.to_le_bytes());
        after.extend_from_slice(&1u32.to_le_bytes());
        after.extend_from_slice(&77u32.to_le_bytes());
        let mut before = vec![0x0a, 0, 0x0a, 3];
        before.extend_from_slice(b"key");
        before.extend_from_slice(&[0x12, 5]);
        before[1] = (before.len() + 5 + after.len() - 2) as u8;
        assert!(framing_ok(&before, &after, 5, b"key", &f, 77));
        assert!(
            !framing_ok(&before, &after, 5, b"key", &f, 78),
            "another stored checksum"
        );
        assert!(!framing_ok(&before, &after, 4, b"key", &f, 77));
        let mut other = f;
        other.seq = 3;
        assert!(!framing_ok(&before, &after, 5, b"key", &other, 77));
        assert!(
            !framing_ok(&before, &after, 5, b"kez", &f, 77),
            "another key"
        );
    }

    #[test]
    fn message_lengths_are_found_from_record_lengths() {
        for m in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            (1 << 28) + 5,
        ] {
            let rec_len = 1 + varint_len(m) + m as usize;
            assert_eq!(msg_len_of(rec_len), Some(m), "{m}");
        }
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
    }
}
