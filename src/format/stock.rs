//! MACE's own formats: A (v0.6-v1.0) and B (v1.1), read with every length bounds-checked and written
//! byte-identical to MACE's writer.

use super::crc::Crc;
use super::wire::{put_tag, put_varint, read_field, Field, Reader, WT_LEN, WT_VARINT};
use super::{
    apply_platform_rule, Budget, Damage, Decoded, DecodedEntry, EncodeError, EntryIn, FirstOfEach,
    Format, Output, ValueKind, ValueRef,
};

/// Tail magic of checked-1.0 (stock readers stop before it); seen here only to name a cut tail.
pub(super) const TAIL10_MAGIC: &[u8; 8] = b"MSTORT10";

/// Format A pairs as far as they parse.
pub(super) struct AParse {
    /// The first pair of each key.
    pub entries: Vec<DecodedEntry>,
    /// All `count` pairs parsed.
    pub complete: bool,
    /// Offset after the last parsed pair.
    pub end: usize,
    pub count: u64,
    /// Pairs parsed (duplicates included).
    pub parsed: u64,
    /// Pairs skipped as duplicates of an earlier key.
    pub dups: u64,
    /// The count fits in the file (each pair takes at least 8 bytes); a larger one is plausible
    /// only for a file cut short.
    pub count_fits: bool,
}

/// Parses format A; `None` when the bytes cannot be format A: a count larger than the file holds,
/// unless the pairs before it parse and the file ends inside the next one (a file cut short).
/// Only the first pair of each key is kept, and only while `budget` allows.
pub(super) fn parse_a(bytes: &[u8], budget: &mut Budget) -> Option<AParse> {
    let mut r = Reader::new(bytes, 0);
    let count = r.u64_le()?;
    let count_fits = count <= (bytes.len() as u64 - 8) / 8;
    // Format A counts are written from a container size: never more than 4 Gi entries.
    if count > u64::from(u32::MAX) {
        return None;
    }
    let mut entries = Vec::new();
    let mut first = FirstOfEach::new();
    let mut end = r.pos();
    let mut parsed = 0u64;
    while parsed < count {
        let Some(e) = parse_pair(&mut r) else { break };
        parsed += 1;
        end = r.pos();
        if first.first(&bytes[e.key.clone()]) {
            if !budget.charge(e.key.len(), 0) {
                break;
            }
            entries.push(e);
        }
    }
    if !count_fits && (parsed == count || !cut_inside_pair(&bytes[end..])) {
        return None;
    }
    Some(AParse {
        complete: parsed == count,
        entries,
        end,
        count,
        parsed,
        dups: first.dups,
        count_fits,
    })
}

/// Whether `rest` is the start of a pair cut short: its lengths are not negative, and it ends
/// before the pair does.
fn cut_inside_pair(rest: &[u8]) -> bool {
    let len_at = |at: usize| {
        rest.get(at..at + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match len_at(0) {
        None => true,
        Some(k) if k < 0 => false,
        Some(k) => {
            let vat = 4 + k as usize;
            match len_at(vat) {
                None => true,
                Some(v) => v >= 0 && rest.len() < vat + 4 + v as usize,
            }
        }
    }
}

/// One `int32 len, key, int32 len, value` pair.
pub(super) fn parse_pair(r: &mut Reader<'_>) -> Option<DecodedEntry> {
    let klen = i32::from_le_bytes(r.u32_le()?.to_le_bytes());
    let kstart = r.pos();
    r.take(usize::try_from(klen).ok()?)?;
    let key = kstart..r.pos();
    let vlen = i32::from_le_bytes(r.u32_le()?.to_le_bytes());
    let vstart = r.pos();
    r.take(usize::try_from(vlen).ok()?)?;
    Some(DecodedEntry {
        key,
        value: ValueRef::Slice(vstart..r.pos()),
        kind: ValueKind::Bytes,
        vouched: false,
        known_crc: None,
    })
}

/// Completes a format-A decode: damage report, and the platform-info rule for a damaged file.
pub(super) fn finish_a(bytes: &[u8], a: AParse) -> Decoded {
    let mut damage = Damage::none();
    let mut entries = a.entries;
    let mut format = Format::Mace10;
    let tail = &bytes[a.end..];
    if !a.complete {
        let lost = a.count - a.parsed;
        damage.entries_dropped += lost;
        damage.bytes_ignored += tail.len() as u64;
        damage.note(format!(
            "file ends inside pair {} of {}: kept the {} complete pairs before it, dropped {lost}",
            a.parsed + 1,
            a.count,
            a.parsed
        ));
        // Nothing tells which binaries the lost platform-info entry vouched for: all of them.
        for e in &mut entries {
            e.vouched = true;
        }
        apply_platform_rule(bytes, &mut entries, &mut damage);
    } else if tail.starts_with(TAIL10_MAGIC) || TAIL10_MAGIC.starts_with(tail) && !tail.is_empty() {
        format = Format::Checked10;
        damage.bytes_ignored += tail.len() as u64;
        damage.note(
            "the checksum tail is cut off: every pair is complete but none could be verified",
        );
    } else if !tail.is_empty() {
        damage.bytes_ignored += tail.len() as u64;
        damage.notes.push(format!(
            "{} bytes after the last pair, ignored as MACE ignores them",
            tail.len()
        ));
    }
    super::note_dups(a.dups, &mut damage);
    Decoded {
        format,
        entries,
        damage,
        checked: None,
        generation: None,
    }
}

/// Whether the last 4 bytes are the CRC-32 of the rest, as format B requires.
pub(super) fn crc_ok(bytes: &[u8], crc: Crc<'_>) -> bool {
    if bytes.len() < 4 {
        return false;
    }
    let body_len = bytes.len() - 4;
    let t = &bytes[body_len..];
    crc.of(bytes, 0..body_len) == u32::from_le_bytes([t[0], t[1], t[2], t[3]])
}

/// How a `KVPair`'s value is held in its message.
pub(super) enum KvValue {
    /// `bytes_value` (or no value at all: empty), located in the input.
    Bytes(std::ops::Range<usize>),
    /// `uint32s_value` of this many elements, not yet built ([`Kv::value_ref`] builds it).
    U32s(usize),
}

/// The fields of one `KVPair`, located in the input.
pub(super) struct Kv {
    pub key: std::ops::Range<usize>,
    pub value: KvValue,
    /// Payload of the project's extension field (number `EXT_FIELD`), if present, and where its tag starts.
    pub ext: Option<(std::ops::Range<usize>, usize)>,
}

impl Kv {
    /// Bytes a [`Kv::value_ref`] builds.
    pub fn built_len(&self) -> usize {
        match self.value {
            KvValue::Bytes(_) => 0,
            KvValue::U32s(n) => 4 * n,
        }
    }

    /// The value, built when it is a `uint32s_value` array (`msg` is the message parsed).
    pub fn value_ref(&self, msg: &[u8]) -> (ValueRef, ValueKind) {
        match &self.value {
            KvValue::Bytes(r) => (ValueRef::Slice(r.clone()), ValueKind::Bytes),
            KvValue::U32s(n) => {
                let mut out = Vec::with_capacity(4 * n);
                let mut r = Reader::new(msg, 0);
                let mut push = |v: u64| out.extend_from_slice(&(v as u32).to_le_bytes());
                // The message parsed whole before: every read below succeeds.
                while let Some((number, field)) = read_field(&mut r) {
                    match (number, field) {
                        (3, Field::Varint(v)) => push(v),
                        (3, Field::Len(s)) => {
                            let mut pr = Reader::new(s, 0);
                            while let Some(v) = pr.varint() {
                                push(v);
                            }
                        }
                        _ => {}
                    }
                }
                (ValueRef::Owned(out), ValueKind::U32s)
            }
        }
    }
}

/// Field number of the project's per-entry extension inside `KVPair` (stock readers skip it).
pub(super) const EXT_FIELD: u64 = 2047;

/// Parses a `KVPair` message found at `base..base + msg.len()` of the input, without building its
/// value (a duplicate key's value is never built).
pub(super) fn parse_kvpair(msg: &[u8], base: usize) -> Option<Kv> {
    let mut r = Reader::new(msg, 0);
    let mut key = base..base;
    let mut bytes_value: Option<std::ops::Range<usize>> = None;
    let mut u32s: Option<usize> = None;
    let mut ext = None;
    while r.remaining() > 0 {
        let field_start = r.pos();
        let (number, field) = read_field(&mut r)?;
        let at = |s: &[u8]| {
            let off = s.as_ptr() as usize - msg.as_ptr() as usize;
            base + off..base + off + s.len()
        };
        match (number, field) {
            (1, Field::Len(s)) => key = at(s),
            (2, Field::Len(s)) => bytes_value = Some(at(s)),
            (3, Field::Varint(_)) => *u32s.get_or_insert(0) += 1,
            (3, Field::Len(s)) => {
                let n = u32s.get_or_insert(0);
                let mut pr = Reader::new(s, 0);
                while pr.remaining() > 0 {
                    pr.varint()?;
                    *n += 1;
                }
            }
            (EXT_FIELD, Field::Len(s)) => ext = Some((at(s), base + field_start)),
            (1..=3, _) => return None, // a known field with the wrong wire type
            _ => {}
        }
    }
    let value = match (bytes_value, u32s) {
        (Some(r), _) => KvValue::Bytes(r),
        (None, Some(n)) => KvValue::U32s(n),
        (None, None) => KvValue::Bytes(base..base),
    };
    Some(Kv { key, value, ext })
}

/// Decodes a format-B file whose trailing CRC matches (`crc_ok`, from [`crc_ok`]) or not: with a
/// wrong CRC nothing can be verified and nothing is kept.
pub(super) fn decode_b(bytes: &[u8], crc_ok: bool, budget: &mut Budget) -> Decoded {
    let mut damage = Damage::none();
    let mut entries = Vec::new();
    let mut first = FirstOfEach::new();
    let mut parsed = 0u64;
    let body = &bytes[..bytes.len().saturating_sub(4)];
    let mut r = Reader::new(body, 0);
    let mut parse_error = false;
    while r.remaining() > 0 {
        match read_field(&mut r) {
            Some((1, Field::Len(s))) => {
                let base = s.as_ptr() as usize - bytes.as_ptr() as usize;
                match parse_kvpair(s, base) {
                    Some(kv) => {
                        parsed += 1;
                        // Nothing is kept from a file whose CRC does not match: build nothing.
                        if !crc_ok || !first.first(&bytes[kv.key.clone()]) {
                            continue;
                        }
                        if !budget.charge(kv.key.len(), kv.built_len()) {
                            break;
                        }
                        let (value, kind) = kv.value_ref(s);
                        entries.push(DecodedEntry {
                            key: kv.key,
                            value,
                            kind,
                            vouched: false,
                            known_crc: None,
                        });
                    }
                    None => {
                        parse_error = true;
                        break;
                    }
                }
            }
            Some((1, _)) | None => {
                parse_error = true;
                break;
            }
            Some(_) => {}
        }
    }
    if !crc_ok {
        damage.entries_dropped = parsed;
        damage.bytes_ignored = bytes.len() as u64;
        damage.note(format!(
            "the whole-file CRC-32 does not match: none of the {parsed} entries can be verified, \
             none kept (stock MACE drops them all too)"
        ));
        entries.clear();
    } else if parse_error {
        damage.bytes_ignored = (body.len() - r.pos()) as u64;
        damage.note(format!(
            "the CRC matches but the protobuf is malformed at byte {}: kept the {} entries before it",
            r.pos(),
            entries.len()
        ));
    }
    first.report(&mut damage);
    Decoded {
        format: Format::Mace11,
        entries,
        damage,
        checked: None,
        generation: None,
    }
}

fn too_large(what: &str, e: &EntryIn<'_>, limit: &str) -> EncodeError {
    EncodeError(format!(
        "{what} of key {:?} is larger than {limit}",
        String::from_utf8_lossy(e.key)
    ))
}

/// Writes format A: int64 count, then each pair (keys already sorted).
pub(super) fn encode_a<'a>(
    entries: &[EntryIn<'a>],
    out: &mut Output<'a>,
) -> Result<(), EncodeError> {
    out.put(&(entries.len() as i64).to_le_bytes());
    for e in entries {
        put_pair(e, out)?;
    }
    Ok(())
}

/// One format-A pair.
pub(super) fn put_pair<'a>(e: &EntryIn<'a>, out: &mut Output<'a>) -> Result<(), EncodeError> {
    let klen = i32::try_from(e.key.len()).map_err(|_| too_large("key", e, "2 GiB"))?;
    let vlen = i32::try_from(e.value.len()).map_err(|_| too_large("value", e, "2 GiB"))?;
    out.put(&klen.to_le_bytes());
    out.put(e.key);
    out.put(&vlen.to_le_bytes());
    out.put_value(e.value);
    Ok(())
}

/// The bytes of a `KVPair` field (tag, length, key and value framing) that precede the borrowed value,
/// the value to borrow, and what follows it; `extra` bytes of extension are counted in the length.
pub(super) fn kvpair_prefix<'a>(e: &EntryIn<'a>, extra: usize) -> (Vec<u8>, &'a [u8]) {
    let mut inner = Vec::with_capacity(e.key.len() + 16);
    put_tag(&mut inner, 1, WT_LEN);
    put_varint(&mut inner, e.key.len() as u64);
    inner.extend_from_slice(e.key);
    let value: &'a [u8] = if e.kind == ValueKind::U32s && e.value.len() % 4 == 0 {
        for c in e.value.chunks_exact(4) {
            put_tag(&mut inner, 3, WT_VARINT);
            put_varint(
                &mut inner,
                u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        &[]
    } else {
        put_tag(&mut inner, 2, WT_LEN);
        put_varint(&mut inner, e.value.len() as u64);
        e.value
    };
    let msg_len = (inner.len() + value.len() + extra) as u64;
    let mut prefix = Vec::with_capacity(inner.len() + 12);
    put_tag(&mut prefix, 1, WT_LEN);
    put_varint(&mut prefix, msg_len);
    prefix.extend_from_slice(&inner);
    (prefix, value)
}

/// Largest message a protobuf reader accepts (2 GiB - 1).
pub(super) const PB_LIMIT: u64 = i32::MAX as u64;

/// Writes format B: the `PairContainer` then its CRC-32 (keys already sorted).
pub(super) fn encode_b<'a>(
    entries: &[EntryIn<'a>],
    out: &mut Output<'a>,
) -> Result<(), EncodeError> {
    let mut crc = crc32fast::Hasher::new();
    for e in entries {
        let (prefix, value) = kvpair_prefix(e, 0);
        crc.update(&prefix);
        crc.update(value);
        out.put(&prefix);
        out.put_value(value);
        if out.len() > PB_LIMIT {
            return Err(too_large("the file up to", e, "the 2 GiB protobuf limit"));
        }
    }
    out.put(&crc.finalize().to_le_bytes());
    Ok(())
}
