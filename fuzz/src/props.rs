//! The properties the fuzz targets check, in one place: the targets in `fuzz/fuzz_targets/` call these
//! on libFuzzer's inputs, and `tests/fuzz_regressions.rs` (which includes this file with `#[path]`)
//! calls them on the committed corpus under plain `cargo test`. Only `mace_storage` and `std` are used,
//! so the files compile in both places. Every check panics with a message saying what broke. This file
//! holds what the checks share (the input reader, the memory bound, entry maps); each target's checks
//! are in `props/<target>.rs`.

use mace_storage::format::MEMORY_SLACK;
use mace_storage::format::{
    Decoded, EntryIn, Format, ValueKind, WriteParams, DEVICE_NAME_KEY, PLATFORM_INFO_KEY,
};
use std::collections::BTreeMap;

// The checks, one file per fuzz target. Named by `#[path]`, relative to this file, because
// `tests/fuzz_regressions.rs` includes this file by path too: without it the two crates would look
// for them in different directories.
#[path = "props/decode.rs"]
mod decode;
#[path = "props/open_bytes.rs"]
mod open_bytes;
#[path = "props/roundtrip.rs"]
mod roundtrip;
#[path = "props/store_ops.rs"]
mod store_ops;

pub use decode::{check_decode, check_decoded};
pub use open_bytes::check_open_bytes;
pub use roundtrip::check_roundtrip;
pub use store_ops::run_store_ops;

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
        .map(|(k, v, kind)| EntryIn::new(k, v, *kind))
        .collect()
}
