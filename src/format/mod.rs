//! Bytes <-> entries for every file shape MACE has written and for the project's checked formats.
//!
//! No I/O and no `unsafe`; every length is checked against the input before it is used, so any input
//! yields either entries that passed every check the format offers, or a report of what was dropped.
//! Decoding hands out ranges into the input instead of copies, so a loader copies each value at most once.
//! The byte layouts are documented in `docs/FORMAT.md`.

mod checked;
mod crc;
mod index;
mod lazy;
mod salvage;
mod stock;
pub(crate) mod wire;

use std::fmt;
use std::ops::Range;

use crc::Crc;
pub(crate) use crc::CrcIndex;
pub use lazy::{Sink, SliceSource, Source, Walked};

// The names are owned by `crate::keys`; re-exported here, where the formats order entries by them
// (and where tests and tools have long named them).
pub use crate::keys::{DEVICE_NAME_KEY, PLATFORM_INFO_KEY};

/// The entries that vouch for cached binaries, in the order the checked formats write them, before
/// every other entry: platform info (without it no binary is kept), the GPU name, and the program
/// cache's driver fingerprint and OS build (`crate::program_cache`). A file cut short then keeps
/// every binary whose record lies wholly before the cut.
pub const VOUCHING_KEYS: [&[u8]; 4] = [
    PLATFORM_INFO_KEY,
    DEVICE_NAME_KEY,
    crate::keys::FINGERPRINT_KEY,
    crate::keys::OS_BUILD_KEY,
];

/// Sorts entries as `format` writes them: by key bytes (as MACE does), and in the checked formats
/// the [`VOUCHING_KEYS`] first (stock readers build a map: the order does not matter to them).
fn write_order(format: Format, entries: &mut [EntryIn<'_>]) {
    entries.sort_by(|a, b| a.key.cmp(b.key));
    if format.is_checked() {
        let rank = |k: &[u8]| {
            VOUCHING_KEYS
                .iter()
                .position(|v| *v == k)
                .unwrap_or(usize::MAX)
        };
        entries.sort_by_key(|e| rank(e.key));
    }
}

/// A file format this crate reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// MACE v0.6-v1.0 (format A): int64 count, then int32-length key/value pairs.
    Mace10,
    /// MACE v1.1 (format B): protobuf `PairContainer` followed by its CRC-32.
    Mace11,
    /// Format A with per-entry checksums in the tail that stock readers ignore.
    Checked10,
    /// Format B with per-entry checksums, commit records and a generation id as unknown fields.
    Checked11,
    /// A 0-byte file (what an interrupted `fopen("w")` leaves); read as no entries.
    Empty,
}

impl Format {
    /// The formats a file can be written in.
    pub const WRITABLE: [Format; 4] = [
        Format::Mace10,
        Format::Mace11,
        Format::Checked10,
        Format::Checked11,
    ];

    /// The stable name used by the CLI and in reports (`mace-1.0`, `checked-1.1`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Mace10 => "mace-1.0",
            Format::Mace11 => "mace-1.1",
            Format::Checked10 => "checked-1.0",
            Format::Checked11 => "checked-1.1",
            Format::Empty => "empty",
        }
    }

    /// Parses a writable format's name.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::WRITABLE.into_iter().find(|f| f.name() == name)
    }

    /// Whether entries carry their own checksums in this format.
    pub fn is_checked(self) -> bool {
        matches!(self, Format::Checked10 | Format::Checked11)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a value is encoded in format B: as `bytes_value`, or as `uint32s_value` (tuned parameters,
/// held in memory as little-endian `u32`s, exactly as format A stores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum ValueKind {
    /// An opaque byte string (`bytes_value`).
    #[default]
    Bytes,
    /// A `uint32` array (`uint32s_value`).
    U32s,
}

/// Where a decoded value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRef {
    /// A range of the decoded input (no copy made).
    Slice(Range<usize>),
    /// Bytes that had to be built (a `uint32s_value` array turned into little-endian bytes).
    Owned(Vec<u8>),
}

impl ValueRef {
    /// The value's bytes, given the input it was decoded from.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            ValueRef::Slice(r) => &input[r.clone()],
            ValueRef::Owned(v) => v,
        }
    }
}

/// One entry that passed every check its format offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEntry {
    /// The key's bytes in the input.
    pub key: Range<usize>,
    /// The value.
    pub value: ValueRef,
    /// How the value was encoded.
    pub kind: ValueKind,
    /// Whether the platform-info entry vouched for this entry when it was written.
    pub vouched: bool,
    /// For an entry of a checked-1.1 record that verified and is laid out exactly as this crate
    /// writes it: what writing the same key and value again derives its record's checksum from,
    /// without a pass over the value. `None` for every other entry.
    pub known_crc: Option<KnownCrc>,
}

/// The checksum of a checked-1.1 entry record that verified when it was decoded, in a form that
/// holds for every record this crate writes for the same key and value, whatever its file, batch
/// and flags: a record of the same key and value differs from it only in its extension's 16 bytes
/// (`file_id`, `seq`, `flags`), and CRC-32 is affine, so the new record's checksum follows from
/// this one and those 16 bytes. Only a decoder makes one (its field is private), and only from a
/// record that verified, so it never vouches for bytes no check covered. Four bytes, so that a
/// store's entries do not grow for it: the CRC-32 the record's bytes before its checksum have with
/// the extension's 16 bytes zeroed, never 0 (a record for which it is 0, one in 2^32, has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCrc(std::num::NonZeroU32);

/// The check an entry decoded without verification must pass before its value is used: the
/// CRC-32 its record carries, of the record's bytes (tag, lengths, key, value, and the extension up
/// to the checksum), which are all of the entry's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// The bytes the checksum covers, in the decoded input.
    pub record: Range<usize>,
    /// The checksum they must have.
    pub crc: u32,
    /// For an entry found through the file's index (whose record was not parsed at open): the
    /// framing the record must have besides.
    pub framing: Option<Framing>,
}

/// What an entry's record must say besides its checksum when it was found through the index:
/// the record itself was not parsed when the file was opened. (Its key is the entry's own: the
/// first use compares the record's key with it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The file's id, in the record's extension.
    pub file_id: u64,
    /// The batch, in the record's extension.
    pub seq: u32,
    /// The record's flags, in its extension.
    pub flags: u32,
}

impl EntryCheck {
    /// Bytes past `record` that a first use reads too: the checksum the record stores, for an
    /// entry found through the index (the walk compared it at open).
    pub fn stored_crc_len(&self) -> usize {
        if self.framing.is_some() {
            4
        } else {
            0
        }
    }

    /// Whether the bytes in `input` (the input it was decoded from) of the entry of `key` match
    /// its checksum and, for an entry found through the index, are framed as the index says
    /// (`value`: the value's range in `input`).
    pub fn verify(&self, input: &[u8], key: &[u8], value: Range<usize>) -> bool {
        let end = self.record.end + self.stored_crc_len();
        input.get(self.record.start..end).is_some_and(|_| {
            crc32fast::hash(&input[self.record.clone()]) == self.crc
                && self.framing_ok(
                    &input[self.record.start..value.start],
                    &input[value.end..end],
                    value.len(),
                    key,
                )
        })
    }

    /// The [`KnownCrc`] of the entry whose record's bytes (those this check covers, `record`) just
    /// verified, its key `key_len` bytes long and its `bytes_value` at `value` within `record`:
    /// what a rewrite of the same key and value derives the new record's checksum from. `None`
    /// for a record laid out otherwise than this crate writes it.
    pub fn known_crc(
        &self,
        record: &[u8],
        key_len: usize,
        value: Range<usize>,
    ) -> Option<KnownCrc> {
        checked::known_crc_of_record(record, key_len, value, self.crc)
    }

    /// Whether the record's bytes before its value and after it (`after`: up to the end of the
    /// record for an entry found through the index, whose stored checksum is compared too) are
    /// framed as the index said, for `key`; always true for an entry whose framing was walked
    /// at open.
    pub fn framing_ok(&self, before: &[u8], after: &[u8], value_len: usize, key: &[u8]) -> bool {
        match &self.framing {
            Some(f) => index::framing_ok(before, after, value_len, key, f, self.crc),
            None => true,
        }
    }
}

/// What a decode found wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// True when the file is exactly as its writer left it after a completed write.
    pub intact: bool,
    /// Entries the file held that could not be kept (failed checks, cut off, or dropped by a rule).
    pub entries_dropped: u64,
    /// Bytes that belong to no kept entry or record.
    pub bytes_ignored: u64,
    /// One sentence per problem found, saying what was done about it.
    pub notes: Vec<String>,
}

impl Damage {
    fn none() -> Self {
        Damage {
            intact: true,
            entries_dropped: 0,
            bytes_ignored: 0,
            notes: Vec::new(),
        }
    }

    /// No damage: a file exactly as its writer left it.
    pub fn none_found() -> Self {
        Damage::none()
    }

    fn note(&mut self, s: impl Into<String>) {
        self.intact = false;
        self.notes.push(s.into());
    }
}

/// What a checked-1.1 file needs to be appended to without being read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedInfo {
    /// Random id of this file's current generation; every record carries it.
    pub file_id: u64,
    /// Incremented on every full rewrite.
    pub generation: u64,
    /// Sequence number of the last committed batch (0: only the base written by the rewrite).
    pub last_seq: u32,
    /// CRC-32 of every byte before the 4-byte trailer.
    pub stream_crc: u32,
    /// Length of the whole file, trailer included.
    pub file_len: u64,
    /// Whether the committed state holds the platform-info key.
    pub has_platform: bool,
    /// The newest index record, when the file ends with one (the next append's index points to it).
    pub index: Option<IndexTip>,
}

/// Bytes of one entry's item in a checked-1.1 index record, beside its key.
pub const INDEX_ITEM_LEN: usize = index::ITEM_LEN;

/// Where a checked-1.1 file's newest index record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTip {
    /// Its offset in the file.
    pub at: u32,
    /// Its length, tag included.
    pub len: u32,
    /// The batch it indexes.
    pub seq: u32,
}

/// The result of decoding a file.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The detected format.
    pub format: Format,
    /// Every entry that passed its checks, each key once (the first, as stock readers keep).
    pub entries: Vec<DecodedEntry>,
    /// What was wrong and what was dropped.
    pub damage: Damage,
    /// For an intact checked-1.1 file: what appending to it needs.
    pub checked: Option<CheckedInfo>,
    /// Generation of a checked file, when its header survived.
    pub generation: Option<u64>,
}

/// The input is not a cache file of any known shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotACache(pub String);

impl fmt::Display for NotACache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a MACE cache file: {}", self.0)
    }
}

impl std::error::Error for NotACache {}

/// What keeping one entry costs in memory, at most, beyond its key's bytes and a built value: the
/// decoder's entry and duplicate check, and the map a store builds from them (measured against a
/// counting allocator in `tests/hostile_memory.rs`).
pub const ENTRY_COST: u64 = 320;
/// Memory any decode may use beyond the input's size.
pub const MEMORY_SLACK: u64 = 1 << 20;

/// The memory a decode may still spend on the entries it keeps: the input's size plus
/// [`MEMORY_SLACK`], so that the input and everything built from it stay under twice its size plus
/// that constant. Every kept entry is charged [`ENTRY_COST`], its key and any value built for it.
pub(crate) struct Budget {
    left: u64,
    over: bool,
}

impl Budget {
    fn for_input(len: usize) -> Self {
        Budget {
            left: len as u64 + MEMORY_SLACK,
            over: false,
        }
    }

    /// Charges an entry with a `key_len`-byte key and `built` bytes of value made for it; `false`
    /// (and the budget marked spent) when it does not fit.
    fn charge(&mut self, key_len: usize, built: usize) -> bool {
        let cost = ENTRY_COST + key_len as u64 + built as u64;
        match self.left.checked_sub(cost) {
            Some(left) if !self.over => {
                self.left = left;
                true
            }
            _ => {
                self.over = true;
                false
            }
        }
    }
}

/// Keeps the first entry of each key, as MACE's readers do, deciding before an entry is built so
/// that duplicates cost nothing; counts the others.
pub(crate) struct FirstOfEach<'a> {
    seen: std::collections::HashSet<&'a [u8]>,
    /// Whether the empty key was seen (the most a hostile file can repeat for 2 bytes each).
    empty_seen: bool,
    dups: u64,
}

impl<'a> FirstOfEach<'a> {
    fn new() -> Self {
        FirstOfEach {
            seen: std::collections::HashSet::new(),
            empty_seen: false,
            dups: 0,
        }
    }

    /// Whether `key` is seen for the first time (it is then remembered).
    fn first(&mut self, key: &'a [u8]) -> bool {
        let new = if key.is_empty() {
            !std::mem::replace(&mut self.empty_seen, true)
        } else {
            self.seen.insert(key)
        };
        if !new {
            self.dups += 1;
        }
        new
    }

    /// Notes the duplicates skipped, as MACE's readers skip them.
    fn report(&self, damage: &mut Damage) {
        note_dups(self.dups, damage);
    }
}

/// Notes `dups` duplicate keys skipped.
fn note_dups(dups: u64, damage: &mut Damage) {
    if dups > 0 {
        damage.note(format!(
            "{dups} duplicate keys: kept the first of each, as MACE does"
        ));
    }
}

/// Decodes a file of any known format, detected from its bytes, salvaging what verifies.
pub fn decode(bytes: &[u8]) -> Result<Decoded, NotACache> {
    decode_with(bytes, Crc::direct())
}

/// [`decode`] with a [`CrcIndex`] built from exactly `bytes`, as they were read, so that verifying
/// them does not read them again: the result is the same as `decode(bytes)`. The index stands in for
/// the bytes it was built from, so it must never come from other bytes; one of another length is
/// not used. Crate-private for that reason: the store builds it from the buffer it decodes.
pub(crate) fn decode_indexed(bytes: &[u8], index: &CrcIndex) -> Result<Decoded, NotACache> {
    decode_with(bytes, Crc::with_index(index, bytes))
}

/// [`decode`], except that an intact checked-1.1 file's entries are not checksummed: each comes with
/// the [`EntryCheck`] to pass before its value is used (`None`: already verified). A file that is not
/// exactly as its writer left it (any damage, any other format) is decoded eagerly, every entry
/// verified, with `None` for each. Entries whose check then fails are damage found late: the caller
/// must drop them, and may not append to the file before every check has passed.
pub fn decode_lazy(bytes: &[u8]) -> Result<(Decoded, Vec<Option<EntryCheck>>), NotACache> {
    decode_lazy_with(bytes, Crc::direct())
}

fn decode_lazy_with(
    bytes: &[u8],
    crc: Crc<'_>,
) -> Result<(Decoded, Vec<Option<EntryCheck>>), NotACache> {
    if checked::looks_checked11(bytes) {
        if let Some(lazy) = lazy::decode11_lazy(bytes) {
            return Ok(lazy);
        }
    }
    let d = decode_with(bytes, crc)?;
    let n = d.entries.len();
    Ok((d, vec![None; n]))
}

/// Walks the framing of a checked-1.1 file read through `src` without checksumming its entries,
/// handing each to `sink` with the check its first use must pass, when the file is exactly as its
/// writer left it (the checks of [`decode_lazy`]); `None` otherwise, and then what `sink` was given
/// must be discarded. Reads only what the framing needs, so a value's bytes are never fetched
/// beyond what shares a read with framing. Entries are charged to the memory budget of a decode.
pub fn walk_lazy(src: &mut dyn Source, sink: &mut dyn Sink) -> Option<Walked> {
    lazy::walk11_any(src, sink)
}

/// Whether `prefix` (the start of a file) is the start of a checked-1.1 file, whose entries
/// [`decode_lazy`] can leave unverified; `None` while it is too short to tell.
pub fn lazy_candidate(prefix: &[u8]) -> Option<bool> {
    checked::lazy_candidate(prefix)
}

fn decode_with(bytes: &[u8], crc: Crc<'_>) -> Result<Decoded, NotACache> {
    let mut budget = Budget::for_input(bytes.len());
    let d = decode_within(bytes, crc, &mut budget)?;
    if budget.over {
        return Err(NotACache(format!(
            "{} bytes whose entries would take more memory than twice the file's size plus {} \
             bytes (each entry costs {ENTRY_COST} bytes and its key; uint32 arrays 4 bytes per \
             element): refused, no MACE cache is shaped like this",
            bytes.len(),
            MEMORY_SLACK
        )));
    }
    Ok(d)
}

fn decode_within(bytes: &[u8], crc: Crc<'_>, budget: &mut Budget) -> Result<Decoded, NotACache> {
    if bytes.is_empty() {
        let mut damage = Damage::none();
        damage.note("0-byte file (left by an interrupted write?): read as no entries");
        return Ok(Decoded {
            format: Format::Empty,
            entries: Vec::new(),
            damage,
            checked: None,
            generation: None,
        });
    }
    if checked::looks_checked11(bytes) {
        return Ok(salvage::decode11(bytes, crc, budget));
    }
    let a = stock::parse_a(bytes, budget);
    // Pairs that end exactly at the end of the file are a stock file, whatever its last bytes are
    // (a value may end with what looks like a checked-1.0 footer); a checked-1.0 tail follows them.
    if a.as_ref()
        .is_some_and(|a| a.complete && a.end == bytes.len())
    {
        return Ok(stock::finish_a(bytes, a.unwrap_or_else(|| unreachable!())));
    }
    if let Some(d) = checked::decode10(bytes, crc, budget) {
        return Ok(d);
    }
    if a.as_ref().is_some_and(|a| a.complete) {
        return Ok(stock::finish_a(bytes, a.unwrap_or_else(|| unreachable!())));
    }
    // Computed once: decode_b is told the answer.
    let crc_ok = stock::crc_ok(bytes, crc);
    if crc_ok {
        return Ok(stock::decode_b(bytes, crc_ok, budget));
    }
    // Damaged: prefer the shape whose header is plausible, then records that verify on their own.
    // A count too large for the file's size is plausible only for a file cut short: checked-1.1
    // records that verify on their own are the better reading then.
    if a.as_ref().is_some_and(|a| a.count_fits) {
        return Ok(stock::finish_a(bytes, a.unwrap_or_else(|| unreachable!())));
    }
    let salvaged = salvage::decode11(bytes, crc, budget);
    if !salvaged.entries.is_empty() {
        return Ok(salvaged);
    }
    if let Some(a) = a {
        return Ok(stock::finish_a(bytes, a));
    }
    if bytes.len() >= 4 && bytes[0] == 0x0a {
        return Ok(stock::decode_b(bytes, crc_ok, budget));
    }
    Err(NotACache(format!(
        "{} bytes that match neither MACE format (no valid count, no valid CRC)",
        bytes.len()
    )))
}

/// One entry to write.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryIn<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// How the value is encoded in format B.
    pub kind: ValueKind,
    /// The [`DecodedEntry::known_crc`] of the decoded entry whose key and value these exactly are
    /// (their bytes, and `kind` as decoded), if any: checked-1.1 then writes the record's checksum
    /// without hashing the value. Paired with other bytes, the record written fails its checksum.
    pub known_crc: Option<KnownCrc>,
}

impl<'a> EntryIn<'a> {
    /// An entry of `key` and `value` encoded as `kind`, with no checksum carried from a decode.
    pub fn new(key: &'a [u8], value: &'a [u8], kind: ValueKind) -> Self {
        EntryIn {
            key,
            value,
            kind,
            known_crc: None,
        }
    }
}

/// A value or key too large for the format asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Largest key or value a format-A pair can hold (its lengths are `int32`).
pub const MAX_PAIR_FIELD: u64 = i32::MAX as u64;
/// Largest format-B file (the protobuf limit of 2 GiB - 1 that MACE's reader enforces).
pub const MAX_PROTOBUF_FILE: u64 = i32::MAX as u64;
/// Bytes of a file that belong to no entry, at most (headers, tails, trailers, an index's own
/// fields).
const FILE_OVERHEAD_BOUND: u64 = 128;

/// The largest file `format` can be written as: 2 GiB - 1 for the protobuf formats; format A has no
/// limit of its own (each key and value is limited instead).
pub fn max_file_len(format: Format) -> u64 {
    match format {
        Format::Mace11 | Format::Checked11 => MAX_PROTOBUF_FILE,
        _ => u64::MAX,
    }
}

/// An upper bound of the bytes one entry takes in a file of `format`, framing included.
pub fn entry_len_bound(format: Format, key_len: usize, value_len: usize, kind: ValueKind) -> u64 {
    let (k, v) = (key_len as u64, value_len as u64);
    match format {
        // Lengths, plus the tail's offset, crc and flags for checked-1.0.
        Format::Mace10 | Format::Checked10 | Format::Empty => 8 + 16 + k + v,
        Format::Mace11 | Format::Checked11 => {
            // A uint32 array is written as one tag and a varint of up to 5 bytes per element.
            let value = if kind == ValueKind::U32s && value_len % 4 == 0 {
                v / 4 * 6
            } else {
                v
            };
            // Tags and varint lengths (at most 2 x (1 + 5) + 6), checked-1.1's extension, and
            // its item in the batch's index.
            18 + 23 + index::ITEM_LEN as u64 + k + k + value
        }
    }
}

/// An upper bound of the length of a file of `format` holding entries whose bounds sum to `entries`.
pub fn file_len_bound(entries: u64) -> u64 {
    entries.saturating_add(FILE_OVERHEAD_BOUND)
}

/// Whether one entry can be written in `format` at all, with the limit it exceeds in the error.
pub fn check_entry(
    format: Format,
    key: &[u8],
    value_len: usize,
    kind: ValueKind,
) -> Result<(), EncodeError> {
    let name = || String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
    match format {
        Format::Mace10 | Format::Checked10 | Format::Empty => {
            for (what, len) in [("key", key.len()), ("value", value_len)] {
                if len as u64 > MAX_PAIR_FIELD {
                    return Err(EncodeError(format!(
                        "the {what} of key {:?} is {len} bytes: a {format} file holds keys and \
                         values of at most {MAX_PAIR_FIELD} bytes (2 GiB - 1)",
                        name()
                    )));
                }
            }
            Ok(())
        }
        Format::Mace11 | Format::Checked11 => {
            let bound = file_len_bound(entry_len_bound(format, key.len(), value_len, kind));
            if bound > MAX_PROTOBUF_FILE {
                return Err(EncodeError(format!(
                    "the entry of key {:?} ({} + {value_len} bytes) does not fit in a {format} \
                     file: the whole file is limited to {MAX_PROTOBUF_FILE} bytes (2 GiB - 1, \
                     the protobuf limit)",
                    name(),
                    key.len()
                )));
            }
            Ok(())
        }
    }
}

/// An encoded file as a list of pieces: framing built here, values borrowed from the caller, so a
/// flush writes each value from where it already is.
#[derive(Default)]
pub struct Output<'a> {
    buf: Vec<u8>,
    segs: Vec<Seg<'a>>,
    len: u64,
}

enum Seg<'a> {
    Own(usize, usize),
    Borrowed(&'a [u8]),
}

/// Values shorter than this are copied into the framing buffer: fewer, larger writes.
const BORROW_MIN: usize = 4096;

impl<'a> Output<'a> {
    fn put(&mut self, b: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b);
        self.len += b.len() as u64;
        match self.segs.last_mut() {
            Some(Seg::Own(_, end)) if *end == start => *end = self.buf.len(),
            _ => self.segs.push(Seg::Own(start, self.buf.len())),
        }
    }

    fn put_value(&mut self, b: &'a [u8]) {
        if b.len() < BORROW_MIN {
            self.put(b);
        } else {
            self.len += b.len() as u64;
            self.segs.push(Seg::Borrowed(b));
        }
    }

    /// The pieces, in file order.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Own(a, b) => &self.buf[*a..*b],
                Seg::Borrowed(b) => *b,
            })
            .collect()
    }

    /// The whole encoding as one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len as usize);
        for s in self.slices() {
            v.extend_from_slice(s);
        }
        v
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was encoded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Identity of the file a checked format is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteParams {
    /// Random id for this generation of the file.
    pub file_id: u64,
    /// Generation number (previous + 1).
    pub generation: u64,
}

impl WriteParams {
    /// Parameters for the generation after `previous`, with a fresh random file id, so records of
    /// another file or an earlier generation never verify as this one's.
    pub fn next(previous: u64) -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        WriteParams {
            file_id: h.finish(),
            generation: previous.wrapping_add(1),
        }
    }
}

/// A full file encoding, with what a later append needs (checked-1.1 only).
pub struct Encoded<'a> {
    /// The bytes.
    pub out: Output<'a>,
    /// For checked-1.1: the state to append from.
    pub info: Option<CheckedInfo>,
}

/// Encodes `entries` (any order, unique keys) as a whole file in `format`, sorted by key bytes as
/// MACE writes them (the checked formats write the [`VOUCHING_KEYS`] first); the stock formats come
/// out byte-identical to MACE's own writer.
pub fn encode<'a>(
    format: Format,
    entries: &[EntryIn<'a>],
    params: WriteParams,
) -> Result<Encoded<'a>, EncodeError> {
    let mut sorted: Vec<EntryIn<'a>> = entries.to_vec();
    sorted.sort_by(|a, b| a.key.cmp(b.key));
    if let Some(w) = sorted.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(EncodeError(format!(
            "key {} given twice",
            String::from_utf8_lossy(w[0].key)
        )));
    }
    write_order(format, &mut sorted);
    let mut out = Output::default();
    let info = match format {
        Format::Mace10 => {
            stock::encode_a(&sorted, &mut out)?;
            None
        }
        Format::Mace11 => {
            stock::encode_b(&sorted, &mut out)?;
            None
        }
        Format::Checked10 => {
            checked::encode10(&sorted, params, &mut out)?;
            None
        }
        Format::Checked11 => Some(checked::encode11(&sorted, params, &mut out)?),
        Format::Empty => return Err(EncodeError("the empty format is read-only".into())),
    };
    Ok(Encoded { out, info })
}

/// An append to a checked-1.1 file, in the two parts that must reach the disk in order.
pub struct Append<'a> {
    /// The batch's entry records, written at `info.file_len - 4` (over the old trailer) and synced
    /// before `commit` is written: a commit record on disk must prove every record before it.
    pub records: Output<'a>,
    /// The commit record, the batch's index and the new trailer, written right after `records`.
    pub commit: Output<'static>,
    /// The file's state once both are written.
    pub info: CheckedInfo,
}

/// Encodes `batch` (keys not yet in the file) as an append to an intact checked-1.1 file described
/// by `info`.
pub fn encode_append<'a>(
    info: &CheckedInfo,
    batch: &[EntryIn<'a>],
) -> Result<Append<'a>, EncodeError> {
    let mut sorted: Vec<EntryIn<'a>> = batch.to_vec();
    write_order(Format::Checked11, &mut sorted);
    let mut records = Output::default();
    let mut commit = Output::default();
    let info = checked::encode11_append(info, &sorted, &mut records, &mut commit)?;
    Ok(Append {
        records,
        commit,
        info,
    })
}

/// Applies the platform-info rule: when entries that the platform-info entry vouched for survived but
/// that entry did not, drop them, so no binary is ever kept without the description it was built for.
fn apply_platform_rule(input: &[u8], entries: &mut Vec<DecodedEntry>, damage: &mut Damage) {
    let has_platform = entries
        .iter()
        .any(|e| &input[e.key.clone()] == PLATFORM_INFO_KEY);
    if has_platform {
        return;
    }
    let before = entries.len();
    entries.retain(|e| !e.vouched);
    let dropped = before - entries.len();
    if dropped > 0 {
        damage.entries_dropped += dropped as u64;
        damage.note(format!(
            "the platform-info entry was lost: dropped the {dropped} entries it vouched for, so no \
             binary is used without the GPU description it was built for"
        ));
    }
}

/// Bytes of values the checked-1.1 encoder hashed on this thread so far (values whose checksum was
/// carried from a decode are not hashed).
#[cfg(test)]
pub(crate) fn value_bytes_hashed() -> u64 {
    checked::VALUE_BYTES_HASHED.with(|n| n.get())
}

#[cfg(test)]
mod known_crc_tests;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod unit_tests;
