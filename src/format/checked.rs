//! The project's checked formats. checked-1.1 is a valid format-B file whose extra records ride in
//! protobuf fields stock readers skip; checked-1.0 is a valid format-A file with a checksum tail after
//! the last pair, where stock readers never look. This module holds their framing, the encoders and
//! the checked-1.0 decoder; the checked-1.1 decoder that salvages a damaged file is `salvage`'s, and
//! the lazy walk over an intact one is `lazy`'s. See `docs/FORMAT.md`.

use super::crc::Crc;
use super::index::{IndexWriter, INDEX_FIELD};
use super::stock::{
    self, kvpair_prefix, parse_kvpair, put_pair, Kv, KvValue, EXT_FIELD, PB_LIMIT, TAIL10_MAGIC,
};
use super::wire::{put_tag, put_varint, Reader, WT_LEN};
use super::{
    apply_platform_rule, Budget, CheckedInfo, Damage, Decoded, EncodeError, EntryIn, FirstOfEach,
    Format, IndexTip, KnownCrc, Output, ValueKind, WriteParams, PLATFORM_INFO_KEY,
};
use crc32fast::Hasher;

/// Layout version written in headers and tails.
const VERSION: u32 = 1;
/// Entry flag: the platform-info entry was part of the state this entry was committed with.
pub(super) const FLAG_VOUCHED: u32 = 1;

const HEADER_FIELD: u64 = 2047;
pub(super) const COMMIT_FIELD: u64 = 2046;
const HEADER_MAGIC: &[u8; 8] = b"MSTORC11";
/// magic, version, flags, file_id, generation, base_count, crc.
pub(super) const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4;
/// file_id, seq, flags, crc.
pub(super) const EXT_LEN: usize = 8 + 4 + 4 + 4;
/// file_id, seq, count, flags, crc.
pub(super) const COMMIT_LEN: usize = 8 + 4 + 4 + 4 + 4;
/// The extension field inside a `KVPair`: 2-byte tag, 1-byte length, payload.
pub(super) const EXT_FIELD_LEN: usize = 3 + EXT_LEN;
const FOOTER10_MAGIC: &[u8; 8] = b"MSTORF10";
/// magic, version, flags, file_id, generation, count.
const TAIL10_HEAD: usize = 8 + 4 + 4 + 8 + 8 + 4;
/// offset, crc, flags.
const TAIL10_ITEM: usize = 8 + 4 + 4;

pub(super) fn tag_bytes(field: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(3);
    put_tag(&mut v, field, WT_LEN);
    put_varint(&mut v, len as u64);
    v
}

/// Whether `bytes` starts with a checked-1.1 header field (its contents may still be damaged).
pub(super) fn looks_checked11(bytes: &[u8]) -> bool {
    bytes.starts_with(&tag_bytes(HEADER_FIELD, HEADER_LEN))
}

/// Whether `prefix` starts like a checked-1.1 file; `None` while it is shorter than the header's tag.
pub(super) fn lazy_candidate(prefix: &[u8]) -> Option<bool> {
    let t = tag_bytes(HEADER_FIELD, HEADER_LEN);
    (prefix.len() >= t.len()).then(|| prefix.starts_with(&t))
}

pub(super) struct Header {
    pub(super) file_id: u64,
    pub(super) generation: u64,
    pub(super) base_count: u32,
    pub(super) end: usize,
}

pub(super) fn parse_header(bytes: &[u8]) -> Option<Header> {
    let t = tag_bytes(HEADER_FIELD, HEADER_LEN);
    let payload = bytes.get(t.len()..t.len() + HEADER_LEN)?;
    if !bytes.starts_with(&t) || !payload.starts_with(HEADER_MAGIC) {
        return None;
    }
    let mut r = Reader::new(payload, 8);
    let (version, _flags) = (r.u32_le()?, r.u32_le()?);
    let (file_id, generation, base_count) = (r.u64_le()?, r.u64_le()?, r.u32_le()?);
    let crc = r.u32_le()?;
    if version != VERSION || crc != crc32fast::hash(&payload[..HEADER_LEN - 4]) {
        return None;
    }
    Some(Header {
        file_id,
        generation,
        base_count,
        end: t.len() + HEADER_LEN,
    })
}

pub(super) enum Record {
    Entry {
        /// The `KVPair`, its value not yet built.
        kv: Kv,
        /// Where its message is in the input.
        msg: std::ops::Range<usize>,
        vouched: bool,
        file_id: u64,
        seq: u32,
        /// CRC state of the record's bytes before its 4-byte checksum.
        crc: Hasher,
    },
    Commit {
        file_id: u64,
        seq: u32,
        count: u32,
    },
    /// An index record (see `index`); `len`: its length, tag included.
    Index {
        file_id: u64,
        seq: u32,
        len: usize,
    },
}

/// An entry record's framing, parsed without checksumming it.
struct Frame {
    kv: Kv,
    /// Where its message is in the input.
    msg: std::ops::Range<usize>,
    file_id: u64,
    seq: u32,
    flags: u32,
    /// The checksum the record carries, of `p..msg.end - 4`.
    crc: u32,
}

/// Parses the framing of the entry record whose message starts at `r` (after its tag): lengths,
/// the extension in its place, and `want_id` where known. Walks the message's fields but not the
/// bytes of a `bytes_value`. `budget` is charged the message's length before it is walked.
fn entry_frame(
    bytes: &[u8],
    mut r: Reader<'_>,
    want_id: Option<u64>,
    budget: &mut u64,
) -> Option<Frame> {
    let n = r.len_prefix()?;
    let start = r.pos();
    let end = start + n;
    // The extension is the message's last field: check it before walking the message.
    let ext_tag = end.checked_sub(EXT_FIELD_LEN)?;
    if ext_tag < start || bytes[ext_tag..ext_tag + 3] != tag_bytes(EXT_FIELD, EXT_LEN)[..] {
        return None;
    }
    let mut er = Reader::new(bytes, ext_tag + 3);
    let (file_id, seq, flags, crc) = (er.u64_le()?, er.u32_le()?, er.u32_le()?, er.u32_le()?);
    if want_id.is_some_and(|w| w != file_id) {
        return None;
    }
    *budget = budget.checked_sub(n as u64)?;
    let kv = parse_kvpair(&bytes[start..end], start)?;
    if kv.ext.as_ref().map(|(_, tag_at)| *tag_at) != Some(ext_tag) {
        return None;
    }
    Some(Frame {
        kv,
        msg: start..end,
        file_id,
        seq,
        flags,
        crc,
    })
}

/// Parses and verifies the record at `p`; `want_id` is the file's id where known. `budget` is
/// charged for the bytes checksummed, so scanning a hostile file stays linear.
pub(super) fn parse_record(
    bytes: &[u8],
    p: usize,
    want_id: Option<u64>,
    budget: &mut u64,
    crc_of: Crc<'_>,
) -> Option<(Record, usize)> {
    let mut r = Reader::new(bytes, p);
    let tag = r.varint()?;
    if tag == (1 << 3 | WT_LEN) {
        let f = entry_frame(bytes, r, want_id, budget)?;
        let end = f.msg.end;
        let h = crc_of.hasher(bytes, p..end - 4);
        if h.clone().finalize() != f.crc {
            return None;
        }
        return Some((
            Record::Entry {
                kv: f.kv,
                msg: f.msg,
                vouched: f.flags & FLAG_VOUCHED != 0,
                file_id: f.file_id,
                seq: f.seq,
                crc: h,
            },
            end,
        ));
    }
    if tag == (COMMIT_FIELD << 3 | WT_LEN) {
        if r.varint()? != COMMIT_LEN as u64 {
            return None;
        }
        let body_start = r.pos();
        let (file_id, seq, count, _flags, crc) = (
            r.u64_le()?,
            r.u32_le()?,
            r.u32_le()?,
            r.u32_le()?,
            r.u32_le()?,
        );
        let end = body_start + COMMIT_LEN;
        if want_id.is_some_and(|w| w != file_id) || crc != crc32fast::hash(&bytes[p..end - 4]) {
            return None;
        }
        return Some((
            Record::Commit {
                file_id,
                seq,
                count,
            },
            end,
        ));
    }
    if tag == (INDEX_FIELD << 3 | WT_LEN) {
        let n = r.len_prefix()?;
        let end = r.pos() + n;
        *budget = budget.checked_sub(n as u64)?;
        let index = super::index::parse_index(&bytes[p..end], p)?;
        if want_id.is_some_and(|w| w != index.file_id) {
            return None;
        }
        return Some((
            Record::Index {
                file_id: index.file_id,
                seq: index.seq,
                len: end - p,
            },
            end,
        ));
    }
    None
}

/// The linear part of the CRC-32 of `payload` (16 bytes) at the end of a message: what changing the
/// last 16 bytes of a message from zeros to `payload` XORs into its CRC-32, whatever comes before.
///
/// CRC-32 is affine: for messages a, b, c of one length, crc(a) ^ crc(b) ^ crc(c) = crc(a ^ b ^ c).
/// With a = x || payload, b = x || 0^16, c = 0^n || payload (n = len(x)): crc(x || payload) =
/// crc(x || 0^16) ^ crc(0^n || payload) ^ crc(0^(n+16)), and leading zeros add nothing to the
/// linear part of a CRC, so the last two terms are crc(payload) ^ crc(0^16), for every n.
pub(super) fn ext_delta(payload: &[u8]) -> u32 {
    crc32fast::hash(payload) ^ crc32fast::hash(&[0u8; 16])
}

/// A varint as put_varint writes it, without allocating.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut b = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        b[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    b[n] = v as u8;
    (b, n + 1)
}

/// Whether `bytes[at..]` starts with `tag` then the varint `len` as `put_record` writes them;
/// returns where they end.
fn tag_len_at(bytes: &[u8], at: usize, tag: u8, len: u64) -> Option<usize> {
    let (v, n) = varint_bytes(len);
    (bytes.get(at) == Some(&tag) && bytes.get(at + 1..at + 1 + n) == Some(&v[..n]))
        .then_some(at + 1 + n)
}

/// The [`KnownCrc`] of the verified entry record at `p..end` whose `KVPair` is `kv` (`crc`: the
/// state of its bytes before the checksum), when those bytes are exactly what `put_record` writes
/// for its key and `bytes_value`: the tag and the shortest lengths, the key, the value, the
/// extension, nothing else. A record laid out otherwise (another writer's: fields in another
/// order, longer varints, other fields, a `uint32s_value`, no value field) gets none: the record
/// written for the same entry would differ from it in more than the extension's payload.
pub(super) fn known_crc(
    bytes: &[u8],
    p: usize,
    end: usize,
    kv: &Kv,
    crc: &Hasher,
) -> Option<KnownCrc> {
    let KvValue::Bytes(value) = &kv.value else {
        return None;
    };
    let key = &kv.key;
    let (klen, vlen) = (key.len() as u64, value.len() as u64);
    let inner = 1 + varint_bytes(klen).1 as u64 + klen + 1 + varint_bytes(vlen).1 as u64 + vlen;
    let msg_len = inner + EXT_FIELD_LEN as u64;
    let after_len = tag_len_at(bytes, p, 0x0a, msg_len)?;
    let ok = after_len as u64 + msg_len == end as u64
        && tag_len_at(bytes, after_len, 0x0a, klen) == Some(key.start)
        && tag_len_at(bytes, key.end, 0x12, vlen) == Some(value.start)
        && value.end + EXT_FIELD_LEN == end;
    // The extension's tag and length before its payload were checked by `entry_frame`.
    let zero_ext = crc.clone().finalize() ^ ext_delta(&bytes[end - 20..end - 4]);
    ok.then_some(zero_ext)
        .and_then(std::num::NonZeroU32::new)
        .map(KnownCrc)
}

/// [`known_crc`] of an entry record read on its own (a lazily verified value): `record` holds the
/// bytes its checksum `crc` covers (from its tag to its extension's payload before the checksum),
/// with its key of `key_len` bytes and its `bytes_value` at `value` within it.
pub(super) fn known_crc_of_record(
    record: &[u8],
    key_len: usize,
    value: std::ops::Range<usize>,
    crc: u32,
) -> Option<KnownCrc> {
    let (klen, vlen) = (key_len as u64, value.len() as u64);
    let msg_len = 1 + varint_bytes(klen).1 as u64 + klen + 1 + varint_bytes(vlen).1 as u64 + vlen;
    let key_start = 1 + varint_bytes(msg_len + EXT_FIELD_LEN as u64).1 + 1 + varint_bytes(klen).1;
    let kv = Kv {
        key: key_start..key_start + key_len,
        value: KvValue::Bytes(value),
        ext: None,
    };
    // The checksum follows the payload it ends: the record's end is 4 bytes on.
    let end = record.len() + 4;
    (record.len() >= 20).then_some(())?;
    known_crc(record, 0, end, &kv, &Hasher::new_with_initial(crc))
}

#[cfg(test)]
thread_local! {
    /// Bytes of values `put_record` hashed on this thread (a test's probe of the carried CRCs).
    pub(super) static VALUE_BYTES_HASHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Writes one checked-1.1 entry record; returns its CRC state (before the checksum) for the stream,
/// the checksum, and where its value starts in the record. An entry with a [`KnownCrc`] is not
/// hashed: its checksum is derived from that one and the new extension.
fn put_record<'a>(
    e: &EntryIn<'a>,
    file_id: u64,
    seq: u32,
    flags: u32,
    out: &mut Output<'a>,
) -> (Hasher, u32, usize) {
    let (prefix, value) = kvpair_prefix(e, EXT_FIELD_LEN);
    let mut ext = tag_bytes(EXT_FIELD, EXT_LEN);
    ext.extend_from_slice(&file_id.to_le_bytes());
    ext.extend_from_slice(&seq.to_le_bytes());
    ext.extend_from_slice(&flags.to_le_bytes());
    let len = (prefix.len() + value.len() + ext.len()) as u64;
    // Only a `bytes_value` record carries one: the kind says which record is written.
    let known = e.known_crc.filter(|_| e.kind == ValueKind::Bytes);
    let h = match known {
        // The same bytes as the record it was decoded from but for the extension's payload.
        Some(KnownCrc(zero_ext)) => {
            Hasher::new_with_initial_len(zero_ext.get() ^ ext_delta(&ext[ext.len() - 16..]), len)
        }
        None => {
            #[cfg(test)]
            VALUE_BYTES_HASHED.with(|n| n.set(n.get() + value.len() as u64));
            let mut h = Hasher::new();
            h.update(&prefix);
            h.update(value);
            h.update(&ext);
            h
        }
    };
    let crc = h.clone().finalize();
    out.put(&prefix);
    out.put_value(value);
    out.put(&ext);
    out.put(&crc.to_le_bytes());
    (h, crc, prefix.len())
}

/// Writes `entries` (sorted, unique) as records of batch `seq` into `out`, whose first byte goes to
/// file offset `base`, feeding `stream`; returns the batch's index, not yet written.
fn put_batch<'a>(
    entries: &[EntryIn<'a>],
    file_id: u64,
    seq: u32,
    has_platform: bool,
    base: u64,
    stream: &mut Hasher,
    out: &mut Output<'a>,
) -> Result<IndexWriter, EncodeError> {
    let mut index = IndexWriter::default();
    for e in entries {
        let flags = if has_platform && e.key != PLATFORM_INFO_KEY {
            FLAG_VOUCHED
        } else {
            0
        };
        let at = base + out.len();
        let (h, crc, val_at) = put_record(e, file_id, seq, flags, out);
        let rec_len = (base + out.len() - at) as usize;
        let val_len = if val_at + EXT_FIELD_LEN < rec_len {
            rec_len - EXT_FIELD_LEN - val_at
        } else {
            0
        };
        index.add(e.key, e.kind, at, rec_len, val_at, val_len, crc, flags);
        stream.combine(&h);
        stream.update(&crc.to_le_bytes());
        if stream.total_len() > PB_LIMIT {
            return Err(EncodeError(format!(
                "the file would exceed the 2 GiB protobuf limit at key {:?}",
                String::from_utf8_lossy(e.key)
            )));
        }
    }
    Ok(index)
}

/// Writes the index of a batch at file offset `at` into `out`, feeding `stream`.
fn put_index(
    index: IndexWriter,
    file_id: u64,
    seq: u32,
    prev: Option<IndexTip>,
    at: u64,
    stream: &mut Hasher,
    out: &mut Output<'_>,
) -> Result<IndexTip, EncodeError> {
    let (rec, tip) = index.finish(file_id, seq, prev, stream.clone().finalize(), at);
    stream.update(&rec);
    out.put(&rec);
    if stream.total_len() > PB_LIMIT {
        return Err(EncodeError(
            "the file would exceed the 2 GiB protobuf limit".into(),
        ));
    }
    Ok(tip)
}

/// Writes a whole checked-1.1 file.
pub(super) fn encode11<'a>(
    entries: &[EntryIn<'a>],
    params: WriteParams,
    out: &mut Output<'a>,
) -> Result<CheckedInfo, EncodeError> {
    let count = u32::try_from(entries.len()).map_err(|_| EncodeError("too many entries".into()))?;
    let mut payload = Vec::with_capacity(HEADER_LEN);
    payload.extend_from_slice(HEADER_MAGIC);
    payload.extend_from_slice(&VERSION.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&params.file_id.to_le_bytes());
    payload.extend_from_slice(&params.generation.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut head = tag_bytes(HEADER_FIELD, HEADER_LEN);
    head.extend_from_slice(&payload);
    let mut stream = Hasher::new();
    stream.update(&head);
    out.put(&head);
    let has_platform = entries.iter().any(|e| e.key == PLATFORM_INFO_KEY);
    let index = put_batch(
        entries,
        params.file_id,
        0,
        has_platform,
        0,
        &mut stream,
        out,
    )?;
    let tip = put_index(index, params.file_id, 0, None, out.len(), &mut stream, out)?;
    let stream_crc = stream.finalize();
    out.put(&stream_crc.to_le_bytes());
    Ok(CheckedInfo {
        file_id: params.file_id,
        generation: params.generation,
        last_seq: 0,
        stream_crc,
        file_len: out.len(),
        has_platform,
        index: Some(tip),
    })
}

/// Writes an append batch (sorted, keys new to the file) into `out`, and its commit record and the
/// new trailer into `tail`.
pub(super) fn encode11_append<'a>(
    info: &CheckedInfo,
    batch: &[EntryIn<'a>],
    out: &mut Output<'a>,
    tail: &mut Output<'static>,
) -> Result<CheckedInfo, EncodeError> {
    let seq = info
        .last_seq
        .checked_add(1)
        .ok_or_else(|| EncodeError("too many appends: the file must be rewritten".into()))?;
    let count = u32::try_from(batch.len()).map_err(|_| EncodeError("too many entries".into()))?;
    let has_platform = info.has_platform || batch.iter().any(|e| e.key == PLATFORM_INFO_KEY);
    let mut stream = Hasher::new_with_initial_len(info.stream_crc, info.file_len - 4);
    let base = info.file_len - 4;
    let index = put_batch(
        batch,
        info.file_id,
        seq,
        has_platform,
        base,
        &mut stream,
        out,
    )?;
    let mut commit = tag_bytes(COMMIT_FIELD, COMMIT_LEN);
    commit.extend_from_slice(&info.file_id.to_le_bytes());
    commit.extend_from_slice(&seq.to_le_bytes());
    commit.extend_from_slice(&count.to_le_bytes());
    commit.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&commit);
    commit.extend_from_slice(&crc.to_le_bytes());
    stream.update(&commit);
    tail.put(&commit);
    // An index that would not chain to batch 0 is written all the same: an open then walks the
    // records, as for a file without one.
    let prev = info.index.filter(|t| t.seq == info.last_seq);
    let at = base + out.len() + tail.len();
    let tip = put_index(index, info.file_id, seq, prev, at, &mut stream, tail)?;
    let stream_crc = stream.finalize();
    tail.put(&stream_crc.to_le_bytes());
    Ok(CheckedInfo {
        file_id: info.file_id,
        generation: info.generation,
        last_seq: seq,
        stream_crc,
        file_len: base + out.len() + tail.len(),
        has_platform,
        index: Some(tip),
    })
}

/// Writes a whole checked-1.0 file: format A, then the checksum tail and footer.
pub(super) fn encode10<'a>(
    entries: &[EntryIn<'a>],
    params: WriteParams,
    out: &mut Output<'a>,
) -> Result<(), EncodeError> {
    let count = u32::try_from(entries.len()).map_err(|_| EncodeError("too many entries".into()))?;
    let has_platform = entries.iter().any(|e| e.key == PLATFORM_INFO_KEY);
    out.put(&(entries.len() as i64).to_le_bytes());
    let mut tail = Vec::with_capacity(TAIL10_HEAD + entries.len() * TAIL10_ITEM + 4);
    tail.extend_from_slice(TAIL10_MAGIC);
    tail.extend_from_slice(&VERSION.to_le_bytes());
    tail.extend_from_slice(&0u32.to_le_bytes());
    tail.extend_from_slice(&params.file_id.to_le_bytes());
    tail.extend_from_slice(&params.generation.to_le_bytes());
    tail.extend_from_slice(&count.to_le_bytes());
    for e in entries {
        let offset = out.len();
        let mut h = Hasher::new();
        h.update(&(e.key.len() as u32).to_le_bytes());
        h.update(e.key);
        h.update(&(e.value.len() as u32).to_le_bytes());
        h.update(e.value);
        put_pair(e, out)?;
        let flags = if has_platform && e.key != PLATFORM_INFO_KEY {
            FLAG_VOUCHED
        } else {
            0
        };
        tail.extend_from_slice(&offset.to_le_bytes());
        tail.extend_from_slice(&h.finalize().to_le_bytes());
        tail.extend_from_slice(&flags.to_le_bytes());
    }
    let tail_start = out.len();
    let crc = crc32fast::hash(&tail);
    tail.extend_from_slice(&crc.to_le_bytes());
    tail.extend_from_slice(&tail_start.to_le_bytes());
    tail.extend_from_slice(FOOTER10_MAGIC);
    out.put(&tail);
    Ok(())
}

/// Decodes a file that ends with the checked-1.0 footer; `None` when there is no footer.
pub(super) fn decode10(bytes: &[u8], crc: Crc<'_>, mem: &mut Budget) -> Option<Decoded> {
    let len = bytes.len();
    if len < 8 + 16 || !bytes.ends_with(FOOTER10_MAGIC) {
        return None;
    }
    let mut r = Reader::new(bytes, len - 16);
    let tail_start = r
        .u64_le()
        .and_then(|t| usize::try_from(t).ok())
        .filter(|&t| t >= 8 && t <= len - 16);
    let decoded = tail_start.and_then(|t| decode10_with_tail(bytes, t, crc, mem));
    Some(decoded.unwrap_or_else(|| {
        // The tail is unusable: read the pairs as a stock reader would, unverified.
        let mut d = match stock::parse_a(bytes, mem) {
            Some(a) => stock::finish_a(bytes, a),
            None => Decoded {
                format: Format::Checked10,
                entries: Vec::new(),
                damage: Damage::none(),
                checked: None,
                generation: None,
            },
        };
        d.format = Format::Checked10;
        d.damage
            .note("the checksum tail is unreadable: pairs were read as a stock reader reads them, unverified");
        d
    }))
}

fn decode10_with_tail(
    bytes: &[u8],
    tail_start: usize,
    crc_of: Crc<'_>,
    mem: &mut Budget,
) -> Option<Decoded> {
    let len = bytes.len();
    let tail = &bytes[tail_start..len - 16];
    let mut r = Reader::new(tail, 0);
    if r.take(8)? != TAIL10_MAGIC || r.u32_le()? != VERSION {
        return None;
    }
    let _flags = r.u32_le()?;
    let (_file_id, generation, count) = (r.u64_le()?, r.u64_le()?, r.u32_le()?);
    if (count as usize)
        .checked_mul(TAIL10_ITEM)?
        .checked_add(TAIL10_HEAD + 4)?
        != tail.len()
    {
        return None;
    }
    let mut damage = Damage::none();
    let tail_crc_ok = crc32fast::hash(&tail[..tail.len() - 4])
        == u32::from_le_bytes(tail[tail.len() - 4..].try_into().ok()?);
    let pairs = &bytes[..tail_start];
    let mut entries = Vec::new();
    let mut first = FirstOfEach::new();
    let mut contiguous = true;
    let mut expect_at = 8usize;
    for _ in 0..count {
        let (offset, crc, flags) = (r.u64_le()?, r.u32_le()?, r.u32_le()?);
        let Some(offset) = usize::try_from(offset).ok().filter(|&o| o < tail_start) else {
            damage.entries_dropped += 1;
            continue;
        };
        contiguous &= offset == expect_at;
        let mut pr = Reader::new(pairs, offset);
        match stock::parse_pair(&mut pr) {
            // `pairs` starts where `bytes` does: the same offsets.
            Some(mut e) if crc_of.of(bytes, offset..pr.pos()) == crc => {
                e.vouched = flags & FLAG_VOUCHED != 0;
                expect_at = pr.pos();
                if first.first(&bytes[e.key.clone()]) {
                    if !mem.charge(e.key.len(), 0) {
                        break;
                    }
                    entries.push(e);
                }
            }
            _ => {
                contiguous = false;
                damage.entries_dropped += 1;
            }
        }
    }
    let n = Reader::new(bytes, 0).u64_le()?;
    if damage.entries_dropped > 0 {
        damage.note(format!(
            "{} entries failed their checksum and were dropped; the others verified",
            damage.entries_dropped
        ));
    }
    if !tail_crc_ok {
        damage.note("the checksum tail's own CRC does not match: each entry was still checked against its own");
    }
    if n != u64::from(count) || !contiguous || expect_at != tail_start {
        damage.note("the pair count or layout does not match the tail: stock MACE 1.0 may misread this file");
    }
    apply_platform_rule(bytes, &mut entries, &mut damage);
    first.report(&mut damage);
    Some(Decoded {
        format: Format::Checked10,
        entries,
        damage,
        checked: None,
        generation: Some(generation),
    })
}
