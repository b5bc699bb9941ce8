//! Replays the committed fuzz corpus under plain `cargo test`: every file in
//! `tests/fuzz_corpus/<target>/` (the seeds, interesting inputs, and minimized crashes) goes through
//! the same checks as the fuzz target of that name (`fuzz/src/props.rs`, included here). Any file,
//! whatever its target, is also fed to `format::decode` and to `mace_storage_open_bytes`.
//!
//! `MACE_STORAGE_WRITE_SEEDS=1 cargo test --test fuzz_regressions seed_corpus` regenerates the
//! synthetic seeds in `fuzz/corpus/` and `tests/fuzz_corpus/` (the golden files are copied by hand;
//! see fuzz/README.md).

mod common;

#[path = "../fuzz/src/props.rs"]
#[allow(dead_code)]
mod props;

use mace_storage::format::{
    encode, encode_append, EntryIn, Format, ValueKind, DEVICE_NAME_KEY, PLATFORM_INFO_KEY,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

const TARGETS: [&str; 4] = ["decode", "roundtrip", "open_bytes", "store_ops"];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target)
}

/// The files of one target's corpus, sorted by name; never empty.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = format!("{target}/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    files
}

/// Runs `check` on each file, naming the file that fails.
/// A target's check of one input: panics when a property fails.
type Check = fn(&[u8]);

fn replay(files: &[(String, Vec<u8>)], what: &str, check: Check) {
    let mut failed = Vec::new();
    for (name, bytes) in files {
        if catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(failed.is_empty(), "{what} failed on {failed:?}");
}

fn all_files() -> Vec<(String, Vec<u8>)> {
    TARGETS.iter().flat_map(|t| corpus(t)).collect()
}

#[test]
fn decode_never_panics_and_keeps_ranges_in_bounds() {
    replay(&all_files(), "decode", props::check_decode);
}

#[test]
fn open_bytes_agrees_with_decode() {
    replay(&all_files(), "open_bytes", props::check_open_bytes);
}

#[test]
fn roundtrip_inputs_round_trip() {
    replay(&corpus("roundtrip"), "roundtrip", props::check_roundtrip);
}

#[test]
fn store_ops_inputs_match_the_model() {
    replay(&corpus("store_ops"), "store_ops", props::run_store_ops);
}

/// The pairs of a format-A (mace-1.0) file as a stock MACE 1.0 reader reads them: `None` unless the
/// file is exactly N complete pairs. Written from the format description, independent of the library.
fn stock10_pairs(b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut at = 8usize;
    let n = i64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let mut take = |len: usize| {
        let s = b.get(at..at.checked_add(len)?)?;
        at += len;
        Some(s)
    };
    let mut pairs = Vec::new();
    for _ in 0..n {
        let klen = i32::from_le_bytes(take(4)?.try_into().ok()?);
        let key = take(usize::try_from(klen).ok()?)?.to_vec();
        let vlen = i32::from_le_bytes(take(4)?.try_into().ok()?);
        let value = take(usize::try_from(vlen).ok()?)?.to_vec();
        pairs.push((key, value));
    }
    (at == b.len()).then_some(pairs)
}

/// Files named `decode/crash-mace10-*` are valid mace-1.0 files (every byte belongs to a pair) that
/// the library once misread: each must decode as an intact mace-1.0 file with the stock reader's pairs.
#[test]
fn valid_mace10_files_are_read_as_mace10() {
    for (name, bytes) in corpus("decode") {
        if !name.starts_with("decode/crash-mace10-") {
            continue;
        }
        let pairs = stock10_pairs(&bytes).unwrap_or_else(|| panic!("{name} is no mace-1.0 file"));
        let d = mace_storage::format::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.format, Format::Mace10, "{name}");
        assert!(d.damage.intact, "{name}: {:?}", d.damage);
        let got: Vec<(Vec<u8>, Vec<u8>)> = d
            .entries
            .iter()
            .map(|e| {
                (
                    bytes[e.key.clone()].to_vec(),
                    e.value.bytes(&bytes).to_vec(),
                )
            })
            .collect();
        assert_eq!(got, pairs, "{name}");
    }
}

/// The decode seeds really are the files they are named after (so the fuzzer starts from every
/// format), and intact.
#[test]
fn decode_seeds_cover_every_format() {
    let mut formats = std::collections::HashSet::new();
    for (name, bytes) in corpus("decode") {
        if !name.starts_with("decode/seed-") && !name.starts_with("decode/golden-") {
            continue;
        }
        let d = mace_storage::format::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.damage.intact, "{name}: {:?}", d.damage);
        formats.insert(d.format);
    }
    for f in Format::WRITABLE {
        assert!(formats.contains(&f), "no {f} seed");
    }
}

/// A small, well-formed state: the platform entry, a binary, a tuned-parameter array.
fn three_entries() -> Vec<(Vec<u8>, Vec<u8>, ValueKind)> {
    let mut binary = b"\x7fELF-ish program binary ".to_vec();
    binary.extend((0u8..40).map(|i| i.wrapping_mul(37)));
    vec![
        (
            PLATFORM_INFO_KEY.to_vec(),
            b"Portable Computing Language, OpenCL 3.0 PoCL".to_vec(),
            ValueKind::Bytes,
        ),
        (b"kernel_0".to_vec(), binary, ValueKind::Bytes),
        (
            b"tuned_gemm".to_vec(),
            [4u32, 8, 16].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ValueKind::U32s,
        ),
    ]
}

fn encoded(format: Format, entries: &[(Vec<u8>, Vec<u8>, ValueKind)]) -> Vec<u8> {
    let ins = common::entries_in(entries);
    encode(format, &ins, props::PARAMS).unwrap().out.to_vec()
}

/// A checked-1.1 file with a base of two entries and two appended batches (commit records included).
fn appended() -> Vec<u8> {
    let e = three_entries();
    let ins = common::entries_in(&e);
    let enc = encode(Format::Checked11, &ins[..1], props::PARAMS).unwrap();
    let mut file = enc.out.to_vec();
    let mut info = enc.info.unwrap();
    let dev = [EntryIn::new(
        DEVICE_NAME_KEY,
        b"pthread-cpu",
        ValueKind::Bytes,
    )];
    for batch in [&ins[1..], &dev[..]] {
        let app = encode_append(&info, batch).unwrap();
        file.truncate(file.len() - 4);
        file.extend(app.records.to_vec());
        file.extend(app.commit.to_vec());
        info = app.info;
    }
    file
}

/// Roundtrip input: header (split1, split2, two cut bytes, three mask bytes), then entries as
/// key selector, kind bit, value length (< 96) and value bytes.
fn roundtrip_input(header: [u8; 7], entries: &[(u8, u8, &[u8])]) -> Vec<u8> {
    let mut v = header.to_vec();
    for (key, kind, value) in entries {
        assert!(value.len() < 96);
        v.extend([*key, *kind, value.len() as u8]);
        v.extend_from_slice(value);
    }
    v
}

/// Store ops, one builder call per operation (see `props::run_store_ops` for the byte layout).
struct Ops(Vec<u8>);

impl Ops {
    fn new(format: u8) -> Self {
        Ops(vec![format])
    }
    fn put(mut self, key: u8, value: &[u8]) -> Self {
        assert!(value.len() < 96);
        self.0.extend([0, key, value.len() as u8]);
        self.0.extend_from_slice(value);
        self
    }
    /// A patterned value of `300 * hundreds + 4 * units` bytes.
    fn put_big(mut self, key: u8, hundreds: u8, units: u8, fill: u8) -> Self {
        self.0.extend([1, key, 224 + hundreds, units, fill]);
        self
    }
    fn remove(mut self, key: u8) -> Self {
        self.0.extend([5, key]);
        self
    }
    fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    fn flush(self) -> Self {
        self.op(8)
    }
    fn faulty_flush(mut self, call: u8, kind: u8) -> Self {
        self.0.extend([15, call, kind]);
        self
    }
}

/// The synthetic seeds pass their targets' checks; with `MACE_STORAGE_WRITE_SEEDS=1` they are also
/// written into `fuzz/corpus/<target>/` and `tests/fuzz_corpus/<target>/`.
#[test]
fn seed_corpus() {
    let three = three_entries();
    let decode_seeds: Vec<(&str, Vec<u8>)> = vec![
        ("checked11-3.bin", encoded(Format::Checked11, &three)),
        ("checked11-appended.bin", appended()),
        ("checked10-3.bin", encoded(Format::Checked10, &three)),
        ("mace10-3.bin", encoded(Format::Mace10, &three)),
        ("mace11-3.bin", encoded(Format::Mace11, &three)),
        ("checked11-empty.bin", encoded(Format::Checked11, &[])),
        ("checked10-empty.bin", encoded(Format::Checked10, &[])),
    ];
    let roundtrip_seeds: Vec<(&str, Vec<u8>)> = vec![
        ("none", roundtrip_input([0, 0, 0, 0, 0, 0, 0], &[])),
        (
            "three",
            roundtrip_input(
                [1, 1, 128, 200, 0x55, 0x55, 0x0f],
                &[
                    (0, 0, b"PoCL 5.0"),
                    (5, 0, b"binary bytes of kernel zero"),
                    (7, 1, &[1, 0, 0, 0, 2, 0, 0, 0]),
                ],
            ),
        ),
        (
            "odd-kinds",
            roundtrip_input(
                [0, 2, 255, 3, 0xf0, 0x0f, 0x01],
                &[
                    (2, 1, b""),
                    (3, 1, b"abc"),
                    (6, 0, b"\x00\x0a\x12MSTORF10"),
                    (4, 0, b"MSTORT10"),
                    (1, 1, &[255, 255, 255, 255]),
                ],
            ),
        ),
        ("big", {
            let mut v = roundtrip_input([1, 1, 77, 99, 0xaa, 0x01, 0x02], &[(0, 0, b"gpu")]);
            v.extend([5, 0, 240, 10, 3, 6, 1, 230, 0, 9]);
            v
        }),
    ];
    let store_seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "checked11-append-crash",
            Ops::new(0)
                .put(0, b"PoCL")
                .put(5, b"binary 0")
                .flush()
                .put(6, b"binary 1")
                .put_big(7, 20, 3, 9)
                .flush()
                .op(12)
                .remove(5)
                .flush()
                .op(13)
                .0,
        ),
        (
            "checked10-rewrite",
            Ops::new(4)
                .put(0, b"PoCL")
                .put(3, b"x")
                .flush()
                .op(7)
                .put(4, b"y")
                .flush()
                .op(11)
                .op(14)
                .0,
        ),
        (
            "faults",
            Ops::new(0)
                .put(5, b"v1")
                .flush()
                .put(6, b"v2")
                .faulty_flush(6, 2)
                .op(11)
                .put(5, b"v3")
                .faulty_flush(4, 0)
                .flush()
                .faulty_flush(9, 1)
                .op(14)
                .0,
        ),
        (
            "stock-formats",
            Ops::new(6)
                .put(1, b"gpu")
                .flush()
                .op(12)
                .put(2, b"")
                .flush()
                .op(13)
                .0,
        ),
        (
            "mace11",
            Ops::new(7)
                .put(0, b"PoCL")
                .put(5, &[1, 2, 3, 4])
                .flush()
                .remove(0)
                .flush()
                .op(12)
                .0,
        ),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sets = [
        ("decode", &decode_seeds),
        ("open_bytes", &decode_seeds),
        ("roundtrip", &roundtrip_seeds),
        ("store_ops", &store_seeds),
    ];
    let checks: [(&str, Check); 4] = [
        ("decode", props::check_decode),
        ("open_bytes", props::check_open_bytes),
        ("roundtrip", props::check_roundtrip),
        ("store_ops", props::run_store_ops),
    ];
    for (target, seeds) in sets {
        let check = checks.iter().find(|c| c.0 == target).map(|c| c.1).unwrap();
        let named: Vec<(String, Vec<u8>)> = seeds
            .iter()
            .map(|(n, b)| (format!("{target}/{n}"), b.clone()))
            .collect();
        replay(&named, "seed", check);
        if std::env::var_os("MACE_STORAGE_WRITE_SEEDS").is_none() {
            continue;
        }
        for dir in [root.join("fuzz/corpus"), root.join("tests/fuzz_corpus")] {
            let dir = dir.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in seeds.iter() {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
}
