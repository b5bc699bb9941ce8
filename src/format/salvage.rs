//! The checked-1.1 decoder over a whole file in memory: the walk over its records that resyncs past
//! damaged regions, keeps the entries whose batch was committed and reports what it dropped. The
//! framing it parses (header, records) is `checked`'s, shared with the lazy walk. See
//! `docs/FORMAT.md`.

use super::checked::{known_crc, parse_header, parse_record, Header, Record, EXT_FIELD_LEN};
use super::crc::Crc;
use super::{
    apply_platform_rule, Budget, CheckedInfo, Damage, Decoded, DecodedEntry, FirstOfEach, Format,
    IndexTip, PLATFORM_INFO_KEY,
};
use crc32fast::Hasher;

/// Decodes a checked-1.1 file, or salvages checked-1.1 records from a damaged one. Entries are kept
/// when their checksum verifies and their batch was committed; everything else is reported.
pub(super) fn decode11(bytes: &[u8], crc: Crc<'_>, mem: &mut Budget) -> Decoded {
    let mut damage = Damage::none();
    let header = parse_header(bytes);
    let mut walk = Walk::after_header(bytes, header.as_ref(), &mut damage);
    walk.records(bytes, crc, mem, &mut damage);
    let (entries, last_commit) = committed(&mut walk, header.as_ref(), &mut damage);
    decoded11(bytes, header, walk, entries, last_commit, damage)
}

/// The walk over a checked-1.1 file's records, and what it found.
struct Walk<'a> {
    /// Where the next record starts.
    p: usize,
    /// The file's id: the header's, else that of the first record that verified.
    file_id: Option<u64>,
    /// The CRC-32 of the stream so far, while every byte up to `p` was a record that verified.
    stream: Option<Hasher>,
    /// The first entry of each key, with its batch.
    found: Vec<(DecodedEntry, u32)>,
    first: FirstOfEach<'a>,
    /// Batches of the records skipped as duplicates, counted as their batch's.
    dup_seqs: Vec<u32>,
    /// (seq, count) of each commit record.
    commits: Vec<(u32, u32)>,
    damaged_regions: u64,
    /// Whether the file ends with the stream's CRC-32, as stock readers check it.
    trailer_ok: bool,
    /// The last index record seen.
    index: Option<IndexTip>,
}

impl<'a> Walk<'a> {
    /// Starts the walk after an intact header, which the stream CRC covers; at byte 0, with no
    /// stream, when the header is damaged.
    fn after_header(bytes: &[u8], header: Option<&Header>, damage: &mut Damage) -> Self {
        let mut walk = Walk {
            p: 0,
            file_id: header.map(|h| h.file_id),
            stream: None,
            found: Vec::new(),
            first: FirstOfEach::new(),
            dup_seqs: Vec::new(),
            commits: Vec::new(),
            damaged_regions: 0,
            trailer_ok: false,
            index: None,
        };
        match header {
            Some(h) => {
                let mut s = Hasher::new();
                s.update(&bytes[..h.end]);
                walk.stream = Some(s);
                walk.p = h.end;
            }
            None => damage.note(
                "the checked-1.1 header is damaged: entries are recovered by their own checksums",
            ),
        }
        walk
    }

    /// Walks the records to the end of the file (or until the memory budget runs out), resyncing
    /// past damaged regions.
    fn records(&mut self, bytes: &'a [u8], crc: Crc<'_>, mem: &mut Budget, damage: &mut Damage) {
        let len = bytes.len();
        let mut budget = 2 * len as u64 + (1 << 20);
        while self.p < len {
            let p = self.p;
            if p + 4 == len {
                if let Some(s) = self.stream.take() {
                    self.trailer_ok = s.finalize().to_le_bytes() == bytes[p..];
                }
                if self.trailer_ok {
                    break;
                }
            }
            match parse_record(bytes, p, self.file_id, &mut budget, crc) {
                Some((rec, end)) => {
                    if !self.take(bytes, rec, p..end, mem) {
                        break;
                    }
                    self.p = end;
                }
                None => {
                    if p + 4 == len {
                        break; // the trailer, which cannot match after damage
                    }
                    self.p = self.skip_damaged(bytes, &mut budget, crc, damage);
                }
            }
        }
    }

    /// Takes in the verified record `rec` at `at`; false when the memory budget ran out.
    fn take(
        &mut self,
        bytes: &'a [u8],
        rec: Record,
        at: std::ops::Range<usize>,
        mem: &mut Budget,
    ) -> bool {
        let (p, end) = (at.start, at.end);
        match rec {
            Record::Entry {
                kv,
                msg,
                vouched,
                file_id: id,
                seq,
                crc,
            } => {
                self.file_id.get_or_insert(id);
                if let Some(s) = self.stream.as_mut() {
                    s.combine(&crc);
                    s.update(&bytes[end - 4..end]);
                }
                if !self.first.first(&bytes[kv.key.clone()]) {
                    self.dup_seqs.push(seq);
                } else if mem.charge(kv.key.len(), kv.built_len()) {
                    let known_crc = known_crc(bytes, p, end, &kv, &crc);
                    let (value, kind) = kv.value_ref(&bytes[msg]);
                    let entry = DecodedEntry {
                        key: kv.key,
                        value,
                        kind,
                        vouched,
                        known_crc,
                    };
                    self.found.push((entry, seq));
                } else {
                    return false;
                }
            }
            Record::Commit {
                file_id: id,
                seq,
                count,
            } => {
                self.file_id.get_or_insert(id);
                if let Some(s) = self.stream.as_mut() {
                    s.update(&bytes[p..end]);
                }
                self.commits.push((seq, count));
            }
            Record::Index {
                file_id: id,
                seq,
                len: n,
            } => {
                self.file_id.get_or_insert(id);
                if let Some(s) = self.stream.as_mut() {
                    s.update(&bytes[p..end]);
                }
                self.index = Some(IndexTip {
                    at: p as u32,
                    len: n as u32,
                    seq,
                });
            }
        }
        true
    }

    /// Skips the damaged region at `p` to the next record that verifies (or the end); returns where
    /// the walk goes on. The stream CRC no longer holds.
    fn skip_damaged(
        &mut self,
        bytes: &[u8],
        budget: &mut u64,
        crc: Crc<'_>,
        damage: &mut Damage,
    ) -> usize {
        let (p, len) = (self.p, bytes.len());
        self.stream = None;
        self.damaged_regions += 1;
        let next = (p + 1..len.saturating_sub(EXT_FIELD_LEN))
            .filter(|&q| matches!(bytes[q], 0x0a | 0xf2 | 0xea))
            .find(|&q| parse_record(bytes, q, self.file_id, budget, crc).is_some());
        let q = next.unwrap_or(len);
        damage.bytes_ignored += (q - p) as u64;
        if next.is_none() && *budget == 0 {
            damage.note("gave up scanning for more records: the damaged region is too large");
        }
        q
    }
}

/// The entries whose batch was committed, and the last commit's seq; counts what was dropped (the
/// entries a commit or the header promised that are missing) and what was never committed.
fn committed(
    walk: &mut Walk<'_>,
    header: Option<&Header>,
    damage: &mut Damage,
) -> (Vec<DecodedEntry>, u32) {
    let commits = &walk.commits;
    let damaged_regions = walk.damaged_regions;
    let last_commit = commits.iter().map(|c| c.0).max().unwrap_or(0);
    let found = std::mem::take(&mut walk.found);
    let mut entries = Vec::with_capacity(found.len());
    let mut uncommitted = 0u64;
    let mut per_seq: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for (e, seq) in found {
        // Batches are appended one after another: a commit for seq k proves every batch before it.
        if seq <= last_commit {
            *per_seq.entry(seq).or_default() += 1;
            entries.push(e);
        } else {
            uncommitted += 1;
        }
    }
    for &seq in &walk.dup_seqs {
        if seq <= last_commit {
            *per_seq.entry(seq).or_default() += 1;
        } else {
            uncommitted += 1;
        }
    }
    let mut expected: Vec<(u32, u64)> = commits.iter().map(|&(s, c)| (s, u64::from(c))).collect();
    if let Some(h) = header {
        expected.push((0, u64::from(h.base_count)));
    } else {
        damage.entries_dropped += damaged_regions;
    }
    expected.sort_unstable();
    expected.dedup_by_key(|e| e.0);
    for (seq, want) in expected {
        damage.entries_dropped += want.saturating_sub(per_seq.get(&seq).copied().unwrap_or(0));
    }
    if damaged_regions > 0 {
        let n = damage.entries_dropped;
        damage.note(format!(
            "skipped {damaged_regions} damaged {}; {n} {} failed {} checksum or {} cut off",
            if damaged_regions == 1 {
                "region"
            } else {
                "regions"
            },
            if n == 1 { "entry" } else { "entries" },
            if n == 1 { "its" } else { "their" },
            if n == 1 { "was" } else { "were" },
        ));
    }
    if uncommitted > 0 {
        damage.note(format!(
            "ignored {uncommitted} entries of a flush that never committed (interrupted write)"
        ));
    }
    (entries, last_commit)
}

/// The result: the trailer's verdict, the platform rule and duplicates applied, and the file's
/// checked-1.1 identity when it is intact (what an append continues from).
fn decoded11(
    bytes: &[u8],
    header: Option<Header>,
    walk: Walk<'_>,
    mut entries: Vec<DecodedEntry>,
    last_commit: u32,
    mut damage: Damage,
) -> Decoded {
    let len = bytes.len();
    if !walk.trailer_ok && damage.intact {
        damage.note("the file's trailing CRC-32 does not match: stock MACE would drop this file");
    }
    apply_platform_rule(bytes, &mut entries, &mut damage);
    walk.first.report(&mut damage);
    let checked = match (damage.intact, walk.file_id, &header) {
        (true, Some(file_id), Some(h)) => Some(CheckedInfo {
            file_id,
            generation: h.generation,
            last_seq: last_commit,
            stream_crc: u32::from_le_bytes([
                bytes[len - 4],
                bytes[len - 3],
                bytes[len - 2],
                bytes[len - 1],
            ]),
            file_len: len as u64,
            has_platform: entries
                .iter()
                .any(|e| &bytes[e.key.clone()] == PLATFORM_INFO_KEY),
            index: walk.index.filter(|t| (t.at + t.len) as usize + 4 == len),
        }),
        _ => None,
    };
    Decoded {
        format: Format::Checked11,
        entries,
        damage,
        checked,
        generation: header.map(|h| h.generation),
    }
}
