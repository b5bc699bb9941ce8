//! The properties the fuzz targets check, in one place: the targets in `fuzz/fuzz_targets/` call these
//! on libFuzzer's inputs, and `tests/fuzz_regressions.rs` (which includes this file with `#[path]`)
//! calls them on the committed corpus under plain `cargo test`. Only `mace_storage` and `std` are used,
//! so the file compiles in both places. Every check panics with a message saying what broke.

use mace_storage::ffi::{
    mace_storage_clear, mace_storage_close, mace_storage_flush, mace_storage_for_each,
    mace_storage_get, mace_storage_open_bytes, mace_storage_open_findings, mace_storage_put,
    mace_storage_set_log_callback, mace_storage_value_data, mace_storage_value_free, MaceStorage,
    MaceStorageFormat, MaceStorageLogLevel, MaceStorageOpenReport, MaceStorageStatus,
    MaceStorageValue,
};
use mace_storage::format::MEMORY_SLACK;
use mace_storage::format::{
    decode, encode, encode_append, CheckedInfo, Decoded, EntryIn, Format, ValueKind, ValueRef,
    WriteParams, DEVICE_NAME_KEY, PLATFORM_INFO_KEY,
};
use mace_storage::io::sim::{FailKind, Fate, SimFs, Unsynced};
use mace_storage::store::{Options, Store, Value};
use std::collections::{BTreeMap, HashSet};
use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;

// The counting global allocator the memory checks read: the integration tests' own file, so that
// there is one implementation. Included here, it is installed in the fuzz targets and in the corpus
// replay of `tests/fuzz_regressions.rs` alike.
#[path = "../../tests/common/alloc.rs"]
#[allow(dead_code)]
mod alloc;

/// Runs `f` on an input of `len` bytes that the caller holds, and checks that what `f` allocated
/// beyond it stayed under the input's size plus a constant: with the input, under twice its size.
pub fn within_memory_bound<T>(what: &str, len: usize, f: impl FnOnce() -> T) -> T {
    let (r, peak) = alloc::peak_of(f);
    let peak = peak as u64;
    let limit = len as u64 + MEMORY_SLACK + (1 << 20);
    assert!(
        peak <= limit,
        "{what} of {len} bytes allocated {peak} bytes at its peak, more than {limit}"
    );
    r
}

/// Identity every test file is written with, so encodings are deterministic.
pub const PARAMS: WriteParams = WriteParams {
    file_id: 0x0123_4567_89ab_cdef,
    generation: 3,
};

/// EIO, without a `libc` dependency.
const EIO: i32 = 5;
/// ENOSPC.
const ENOSPC: i32 = 28;

/// Keys that inputs pick by index, so collisions (overwrites, removals) are common.
pub const KEY_POOL: [&[u8]; 8] = [
    PLATFORM_INFO_KEY,
    DEVICE_NAME_KEY,
    b"",
    b"a",
    b"b",
    b"kernel_0",
    b"kernel_1",
    b"kernel_2",
];

/// Reads structured choices from fuzz bytes; past the end every read gives zeros.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    /// A key: from the pool, or (top values) a few literal bytes.
    pub fn key(&mut self) -> Vec<u8> {
        let k = self.byte();
        if k < 200 {
            KEY_POOL[k as usize % KEY_POOL.len()].to_vec()
        } else {
            self.take(usize::from(k % 24)).to_vec()
        }
    }

    /// A value: up to 95 literal bytes, or (top values) a patterned value up to ~10 KB, large enough
    /// to cross 512-byte sectors and the 4 KiB limit above which the encoder borrows values.
    pub fn value(&mut self) -> Vec<u8> {
        let v = self.byte();
        if v < 224 {
            self.take(usize::from(v % 96)).to_vec()
        } else {
            let len = usize::from(v - 224) * 300 + usize::from(self.byte()) * 4;
            let fill = self.byte();
            (0..len).map(|i| fill.wrapping_add((i / 7) as u8)).collect()
        }
    }
}

/// Entries as a map: key -> (value, kind).
pub type Map = BTreeMap<Vec<u8>, (Vec<u8>, ValueKind)>;

/// The decoded entries of `input` as a map (keys are unique in a decode).
pub fn map_of(input: &[u8], d: &Decoded) -> Map {
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

/// How a value written with `kind` in format B comes back: a `uint32` array is written as one only
/// when its length is a non-zero multiple of 4 (anything else is written, and read, as bytes).
pub fn kind_written(format: Format, kind: ValueKind, value: &[u8]) -> ValueKind {
    let b = matches!(format, Format::Mace11 | Format::Checked11);
    if b && kind == ValueKind::U32s && !value.is_empty() && value.len() % 4 == 0 {
        ValueKind::U32s
    } else {
        ValueKind::Bytes
    }
}

fn ins(entries: &[(Vec<u8>, Vec<u8>, ValueKind)]) -> Vec<EntryIn<'_>> {
    entries
        .iter()
        .map(|(k, v, kind)| EntryIn {
            key: k,
            value: v,
            kind: *kind,
        })
        .collect()
}

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

extern "C" fn ignore_log(_: MaceStorageLogLevel, _: *const c_char, _: *mut c_void) {}

extern "C" fn collect(
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    user: *mut c_void,
) -> i32 {
    // SAFETY: `user` is the `Vec` passed by `check_open_bytes`; the pointers are valid for the call.
    unsafe {
        let out = &mut *(user as *mut Vec<(Vec<u8>, Vec<u8>)>);
        let k = std::slice::from_raw_parts(key, key_len).to_vec();
        let v = std::slice::from_raw_parts(value, value_len).to_vec();
        out.push((k, v));
    }
    0
}

/// Bytes of a value handed out by the C ABI.
unsafe fn value_bytes(v: *const MaceStorageValue) -> Vec<u8> {
    let mut len = 0usize;
    // SAFETY: `v` is a live value; `len` is writable.
    let p = unsafe { mace_storage_value_data(v, &mut len) };
    assert!(!p.is_null());
    // SAFETY: the value's bytes are valid until it is freed.
    unsafe { std::slice::from_raw_parts(p, len) }.to_vec()
}

/// The C ABI over arbitrary bytes: `mace_storage_open_bytes` gives OK exactly when `decode` accepts
/// them (else CORRUPT), never INTERNAL; `for_each` lists the decoded entries in key order; every key
/// is found by `get` with its value, an absent key is NOT_FOUND; the store refuses writes; values stay
/// valid after close.
pub fn check_open_bytes(data: &[u8]) {
    use MaceStorageStatus::*;
    mace_storage_set_log_callback(
        Some(ignore_log),
        std::ptr::null_mut(),
        MaceStorageLogLevel::MACE_STORAGE_LOG_ERROR,
    );
    let decoded = decode(data);
    let mut s: *mut MaceStorage = std::ptr::null_mut();
    // SAFETY: `data` is valid for its length and outlives the store and its values (all freed here).
    let st = within_memory_bound("mace_storage_open_bytes", data.len(), || unsafe {
        mace_storage_open_bytes(data.as_ptr(), data.len(), &mut s)
    });
    let Ok(d) = decoded else {
        assert_eq!(st, MACE_STORAGE_CORRUPT);
        assert!(s.is_null());
        return;
    };
    assert_eq!(st, MACE_STORAGE_OK);
    assert!(!s.is_null());
    let want: BTreeMap<Vec<u8>, Vec<u8>> = map_of(data, &d)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect();

    let mut report = MaceStorageOpenReport::default();
    // SAFETY: `s` is open; `report` is writable.
    assert_eq!(
        unsafe { mace_storage_open_findings(s, &mut report) },
        MACE_STORAGE_OK
    );
    assert_eq!(report.intact, i32::from(d.damage.intact));
    assert_eq!(report.entries, want.len() as u64);
    assert_eq!(report.file_len, data.len() as u64);
    assert_eq!(report.missing, 0);
    assert_eq!(report.set_aside, 0);
    let fmt = match d.format {
        Format::Mace10 => MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_0,
        Format::Mace11 => MaceStorageFormat::MACE_STORAGE_FORMAT_MACE_1_1,
        Format::Checked10 => MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_0,
        Format::Checked11 => MaceStorageFormat::MACE_STORAGE_FORMAT_CHECKED_1_1,
        Format::Empty => MaceStorageFormat::MACE_STORAGE_FORMAT_EMPTY,
    };
    assert_eq!(report.format, fmt as i32);

    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let user = &mut seen as *mut Vec<(Vec<u8>, Vec<u8>)> as *mut c_void;
    // SAFETY: `s` is open; `collect` matches the visitor type and `user` is the Vec above.
    assert_eq!(
        unsafe { mace_storage_for_each(s, Some(collect), user) },
        MACE_STORAGE_OK
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "for_each not in strict key order"
    );
    let seen_map: BTreeMap<Vec<u8>, Vec<u8>> = seen.into_iter().collect();
    assert_eq!(seen_map, want, "for_each differs from decode");

    let mut held: Vec<(*mut MaceStorageValue, Vec<u8>)> = Vec::new();
    for (k, v) in want.iter().take(64) {
        let mut out: *mut MaceStorageValue = std::ptr::null_mut();
        // SAFETY: `s` is open; `k` is valid for its length; `out` is writable.
        assert_eq!(
            unsafe { mace_storage_get(s, k.as_ptr(), k.len(), &mut out) },
            MACE_STORAGE_OK
        );
        // SAFETY: `out` is a live value.
        assert_eq!(unsafe { value_bytes(out) }, *v);
        held.push((out, v.clone()));
    }
    // A key that is not there.
    let mut absent = want.keys().next_back().cloned().unwrap_or_default();
    absent.push(0xff);
    let mut out: *mut MaceStorageValue = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(
        unsafe { mace_storage_get(s, absent.as_ptr(), absent.len(), &mut out) },
        MACE_STORAGE_NOT_FOUND
    );
    assert!(out.is_null());
    // SAFETY: as above; a NULL `out` is an invalid argument, not a crash.
    assert_eq!(
        unsafe { mace_storage_get(s, absent.as_ptr(), absent.len(), std::ptr::null_mut()) },
        MACE_STORAGE_INVALID_ARGUMENT
    );
    // Read-only: writes are refused.
    // SAFETY: `s` is open; the key and value are valid for their lengths.
    unsafe {
        assert_eq!(
            mace_storage_put(s, b"k".as_ptr(), 1, b"v".as_ptr(), 1),
            MACE_STORAGE_READ_ONLY
        );
        assert_eq!(mace_storage_clear(s), MACE_STORAGE_READ_ONLY);
        assert_eq!(mace_storage_flush(s), MACE_STORAGE_READ_ONLY);
        mace_storage_close(s);
    }
    // Values outlive the store.
    for (v, want) in held {
        // SAFETY: each value is live until freed here, once.
        unsafe {
            assert_eq!(value_bytes(v), want);
            mace_storage_value_free(v);
        }
    }
}

/// The formats a store_ops input can pick (checked-1.1, the default, most often).
const STORE_FORMATS: [Format; 8] = [
    Format::Checked11,
    Format::Checked11,
    Format::Checked11,
    Format::Checked11,
    Format::Checked10,
    Format::Checked10,
    Format::Mace10,
    Format::Mace11,
];

/// A store's entries as key -> value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The store and what it must hold.
struct Harness {
    fs: SimFs,
    format: Format,
    store: Option<Store>,
    /// What the store must hold now.
    current: State,
    /// The states the file may hold after a crash: the last committed one, and what each flush that
    /// failed since then tried to commit (it may have got through).
    possible: Vec<State>,
    /// Whether a put, remove or clear changed the state since the last open or flush.
    changed: bool,
    /// The filesystem calls of the last flush.
    last_flush: Vec<String>,
    /// Whether the file is as a completed write left it: a flush that wrote succeeded since the last
    /// failed flush, and no crash or restart found it damaged since.
    clean: bool,
    log: Vec<String>,
}

const PATH: &str = "dir/cache.bin";

impl Harness {
    fn open(&mut self) -> &Store {
        let opts = Options {
            format: self.format,
            read_only: false,
            fs: Arc::new(self.fs.clone()),
            ..Options::default()
        };
        self.store = None;
        let store = Store::open(Path::new(PATH), opts)
            .unwrap_or_else(|e| panic!("open failed: {e}\n{}", self.log.join("\n")));
        self.store.insert(store)
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    fn state_of(&self) -> State {
        self.store()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nops:\n  {}\nfs trace of the last flush:\n  {}",
            self.log.join("\n  "),
            self.last_flush.join("\n  ")
        )
    }

    /// After any op: the store holds exactly the model's state.
    fn check_current(&self) {
        let got = self.state_of();
        if got != self.current {
            self.fail(&format!(
                "store differs from the model:\n  store {}\n  model {}",
                show(&got),
                show(&self.current)
            ));
        }
        let s = self.store();
        assert_eq!(s.len(), self.current.len());
        for k in KEY_POOL {
            assert_eq!(
                s.get(k).map(|v| v.to_vec()),
                self.current.get(k).cloned(),
                "get({:?})",
                String::from_utf8_lossy(k)
            );
        }
    }

    /// Reopens after a crash (`crashed`) or a plain restart, and checks what the file held.
    fn reopen(&mut self, crashed: bool) {
        self.fs.clear_faults();
        self.open();
        let got = self.state_of();
        if !self.possible.contains(&got) {
            self.fail(&format!(
                "after {}: {} is none of the states the file may hold:\n  {}",
                if crashed { "a crash" } else { "a restart" },
                show(&got),
                self.possible
                    .iter()
                    .map(show)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        let report = self.store().report().clone();
        if self.clean && self.possible.len() == 1 && !report.damage.intact {
            self.fail(&format!(
                "the file was damaged though the last flush succeeded: {:?}",
                report.damage
            ));
        }
        self.clean &= report.damage.intact;
        if crashed {
            // Everything a crash leaves is durable.
            self.possible = vec![got.clone()];
        }
        self.current = got;
        self.changed = false;
    }

    /// A flush that succeeded commits the current state; `before` is [`Harness::flushes`] before it.
    fn flushed(&mut self, before: u64) {
        self.last_flush = self.fs.trace();
        let wrote = self.flushes() > before;
        if self.changed || self.possible.len() == 1 {
            self.possible = vec![self.current.clone()];
        }
        self.clean |= wrote;
        self.changed = false;
    }

    /// How many flushes of the store wrote something.
    fn flushes(&self) -> u64 {
        self.store().stats().flushes
    }
}

fn show(s: &State) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|(k, v)| format!("{:?}:{}B", String::from_utf8_lossy(k), v.len()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// A power loss whose fate for each unsynced operation comes from the input.
fn crash_with(fs: &SimFs, inp: &mut Input<'_>) -> SimFs {
    fs.crash(&mut |_: &Unsynced<'_>| match inp.byte() % 4 {
        0 | 1 => Fate::Keep,
        2 => Fate::Drop,
        _ => Fate::Torn(u64::from(inp.byte()) | u64::from(inp.byte()) << 8),
    })
}

/// A sequence of put/remove/clear/flush/restart/crash operations decoded from fuzz bytes, on a
/// simulated filesystem, checked against a map: after every operation the store holds the map's
/// state; a flush without injected faults succeeds; a flush with one failing call fails exactly when
/// the call was reached and keeps the changes in memory; after a restart or a power loss (every
/// unsynced write kept, dropped, or chosen by the input, torn at sectors) the store holds the state of
/// the last successful flush or, if flushes failed since, one of the states they tried to commit.
pub fn run_store_ops(data: &[u8]) {
    let mut inp = Input::new(data);
    let format = STORE_FORMATS[usize::from(inp.byte()) % STORE_FORMATS.len()];
    let mut h = Harness {
        fs: SimFs::new(),
        format,
        store: None,
        current: State::new(),
        possible: vec![State::new()],
        changed: false,
        clean: true,
        last_flush: Vec::new(),
        log: vec![format!("format {format}")],
    };
    h.open();
    let mut ops = 0;
    while !inp.done() && ops < 48 {
        ops += 1;
        let op = inp.byte();
        match op % 16 {
            0..=4 => {
                let key = inp.key();
                let value = inp.value();
                let kind = if op >= 128 {
                    ValueKind::U32s
                } else {
                    ValueKind::Bytes
                };
                h.log.push(format!(
                    "put {:?} {}B {kind:?}",
                    String::from_utf8_lossy(&key),
                    value.len()
                ));
                h.store()
                    .put_kind(&key, Value::copy_from(&value), kind)
                    .expect("put");
                // Only a real change must be made durable by the next flush: a flush with nothing to
                // commit does no I/O, so it cannot make durable a state it merely read.
                if let Some(old) = h.current.insert(key, value.clone()) {
                    h.changed |= old != value;
                } else {
                    h.changed = true;
                }
            }
            5 | 6 => {
                let key = inp.key();
                h.log
                    .push(format!("remove {:?}", String::from_utf8_lossy(&key)));
                let was = h.store().remove(&key).expect("remove");
                assert_eq!(was, h.current.remove(&key).is_some(), "remove's answer");
                h.changed |= was;
            }
            7 => {
                h.log.push("clear".into());
                h.store().clear().expect("clear");
                h.changed |= !h.current.is_empty();
                h.current.clear();
            }
            8..=10 => {
                h.log.push("flush".into());
                h.fs.reset_calls();
                let before = h.flushes();
                if let Err(e) = h.store().flush() {
                    h.fail(&format!("flush failed without a fault: {e}"));
                }
                h.flushed(before);
            }
            11 => {
                h.log.push("restart".into());
                h.reopen(false);
            }
            12 => {
                h.log.push("crash, all unsynced writes lost".into());
                h.store = None;
                h.fs = h.fs.crash_drop_all();
                h.reopen(true);
            }
            13 => {
                h.log.push("crash, all unsynced writes kept".into());
                h.store = None;
                h.fs = h.fs.crash_keep_all();
                h.reopen(true);
            }
            14 => {
                h.log
                    .push("crash, unsynced writes as the input says".into());
                h.store = None;
                h.fs = crash_with(&h.fs, &mut inp);
                h.reopen(true);
            }
            _ => {
                let n = 1 + u64::from(inp.byte() % 32);
                let kind = match inp.byte() % 4 {
                    0 => FailKind::Crash,
                    1 => FailKind::Once(ENOSPC),
                    _ => FailKind::Once(EIO),
                };
                h.log.push(format!("flush with call {n} failing: {kind:?}"));
                h.fs.reset_calls();
                h.fs.fail_at(n, kind);
                let before = h.flushes();
                let result = h.store().flush();
                let reached = h.fs.calls() >= n;
                h.fs.clear_faults();
                h.last_flush = h.fs.trace();
                // Moving an unreadable file aside is best effort: the rewrite replaces it anyway.
                let best_effort = h
                    .last_flush
                    .iter()
                    .any(|l| l.contains("=> injected") && l.contains(".corrupt"));
                if result.is_err() != reached && !(result.is_ok() && best_effort) {
                    h.fail(&format!(
                        "flush returned {result:?} though the failing call was {}reached",
                        if reached { "" } else { "not " }
                    ));
                }
                if result.is_ok() {
                    h.flushed(before);
                } else {
                    h.possible.push(h.current.clone());
                    h.clean = false;
                }
                if kind == FailKind::Crash {
                    // The process died in the flush (or right after it): power loss, restart.
                    h.store = None;
                    h.fs = crash_with(&h.fs, &mut inp);
                    h.reopen(true);
                }
            }
        }
        h.check_current();
    }
}
