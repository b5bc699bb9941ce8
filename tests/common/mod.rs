//! Helpers shared by the integration tests, the CLI's tests and the storage benchmark.
#![allow(dead_code)]

use mace_storage::format::{EntryIn, ValueKind};
use mace_storage::io::Fs;
use mace_storage::store::{Options, Store, Verify};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Key/value pairs in file order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
/// A protobuf field: number, wire type, payload (empty unless length-delimited).
pub type PbField<'a> = (u64, u8, &'a [u8]);
/// A protobuf field with its byte span.
pub type PbSpan<'a> = (u64, u8, &'a [u8], Range<usize>);

/// The golden files written by MACE's own FileStorage (the repository's `tests/golden`, read-only).
/// Found from the package being tested upwards, so the CLI package's tests (which include these
/// helpers) find the same copy.
pub fn golden_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|d| d.join("tests/golden"))
        .find(|d| d.join("manifest.json").is_file())
        .unwrap_or_else(|| here.join("tests/golden"))
}

/// The bytes of a golden file; a missing fixture fails with the path looked in.
pub fn golden(name: &str) -> Vec<u8> {
    let path = golden_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("golden file {}: {e}", path.display()))
}

/// The golden manifest.
pub fn manifest() -> serde_json::Value {
    serde_json::from_slice(&golden("manifest.json")).expect("manifest.json parses")
}

/// A fresh empty directory for one test, removed with everything in it when dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mace-storage-{name}-"))
        .tempdir()
        .expect("create a temporary directory")
}

/// A path named `file` in a fresh directory; the directory lives as long as the returned guard.
pub fn temp_path(name: &str, file: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir(name);
    let path = dir.path().join(file);
    (dir, path)
}

/// An owned (key, value, kind) entry, as the tests build them.
pub type Owned = (Vec<u8>, Vec<u8>, ValueKind);

/// `entries` as the encoder takes them, borrowing.
pub fn entries_in(entries: &[Owned]) -> Vec<EntryIn<'_>> {
    entries
        .iter()
        .map(|(k, v, kind)| EntryIn::new(k, v, *kind))
        .collect()
}

/// Key/value `pairs` as the encoder takes them, borrowing, every value as bytes.
pub fn pairs_in(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<EntryIn<'_>> {
    pairs
        .iter()
        .map(|(k, v)| EntryIn::new(k, v, ValueKind::Bytes))
        .collect()
}

/// Default options for a store on `fs` (a handle the test keeps, such as a `SimFs`: clones share
/// its files), verified as `verify` says. Generic over `Fs` so that these helpers also compile in
/// crates that do not enable the `sim` feature (the CLI's tests include this file).
pub fn options_on<F: Fs + Clone + 'static>(fs: &F, verify: Verify) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        verify,
        ..Options::default()
    }
}

/// The store at `path` on `fs`, opened with [`options_on`].
pub fn open_on<F: Fs + Clone + 'static>(
    fs: &F,
    path: &str,
    verify: Verify,
) -> Result<Store, mace_storage::store::Error> {
    Store::open(path, options_on(fs, verify))
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A minimal protobuf reader written from the wire-format spec, independent of the library, as a
/// stock MACE 1.1 reader would parse a file: check the trailing CRC-32, then read `PairContainer`.
/// Returns every (key, bytes_value) pair in file order, or an error string.
pub fn stock11_pairs(file: &[u8]) -> Result<Pairs, String> {
    if file.len() < 4 {
        return Err("shorter than the CRC".into());
    }
    let (body, crc) = file.split_at(file.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err("CRC mismatch".into());
    }
    let mut pairs = Vec::new();
    for (num, wt, payload) in fields(body)? {
        if num == 1 && wt == 2 {
            let mut key = Vec::new();
            let mut val = Vec::new();
            for (n, w, p) in fields(payload)? {
                match (n, w) {
                    (1, 2) => key = p.to_vec(),
                    (2, 2) => val = p.to_vec(),
                    _ => {}
                }
            }
            pairs.push((key, val));
        }
    }
    Ok(pairs)
}

/// Top-level protobuf fields of `msg`: (number, wire type, payload) — payload empty for non-LEN.
pub fn fields(msg: &[u8]) -> Result<Vec<PbField<'_>>, String> {
    field_spans(msg).map(|v| v.into_iter().map(|(n, w, p, _)| (n, w, p)).collect())
}

/// Like [`fields`], with each field's byte span in `msg`.
pub fn field_spans(msg: &[u8]) -> Result<Vec<PbSpan<'_>>, String> {
    fn varint(b: &[u8], p: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let x = *b.get(*p).ok_or("varint past end")?;
            *p += 1;
            v |= u64::from(x & 0x7f) << (7 * i);
            if x & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    let mut p = 0;
    while p < msg.len() {
        let start = p;
        let tag = varint(msg, &mut p)?;
        let wt = (tag & 7) as u8;
        let payload: &[u8] = match wt {
            0 => {
                varint(msg, &mut p)?;
                &[]
            }
            1 | 5 => {
                p += if wt == 1 { 8 } else { 4 };
                if p > msg.len() {
                    return Err("fixed past end".into());
                }
                &[]
            }
            2 => {
                let n = varint(msg, &mut p)? as usize;
                let s = msg.get(p..p + n).ok_or("length past end")?;
                p += n;
                s
            }
            _ => return Err(format!("wire type {wt}")),
        };
        out.push((tag >> 3, wt, payload, start..p));
    }
    Ok(out)
}
