//! Integration tests of the `mace-cache` workflow commands: merge, repair, tuned-parameter files,
//! and the text display of keys (export-c is in cli_export_c.rs, the demo in cli_demo.rs).

use mace_storage::format::{self, EntryIn, Format, ValueKind, WriteParams, PLATFORM_INFO_KEY};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

mod common;

use common::cli::*;
use common::{golden, golden_dir};

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes lowercase hex.
fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The golden manifest's (key, value length, value CRC-32) for a cache file, by key.
fn manifest_cache(name: &str) -> BTreeMap<Vec<u8>, (usize, u32)> {
    let m: Value = serde_json::from_slice(&golden("manifest.json")).expect("manifest is JSON");
    m[name]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("manifest has no entries for {name}"))
        .iter()
        .map(|e| {
            let crc =
                u32::from_str_radix(e["value_crc32"].as_str().expect("crc"), 16).expect("hex");
            (
                unhex(e["key_hex"].as_str().expect("key_hex")),
                (e["value_len"].as_u64().expect("len") as usize, crc),
            )
        })
        .collect()
}

/// The golden manifest's uint32 arrays of a tuned-parameter file, by key.
fn manifest_tuned(name: &str) -> BTreeMap<String, Vec<u64>> {
    let m: Value = serde_json::from_slice(&golden("manifest.json")).expect("manifest is JSON");
    m[name]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let v = e["uint32s"].as_array().expect("uint32s");
            (
                e["key"].as_str().expect("key").to_string(),
                v.iter().map(|n| n.as_u64().expect("number")).collect(),
            )
        })
        .collect()
}

/// The stock 1.1 reading of `path` as a map, asserting every key appears once.
fn stock11_map(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let bytes = std::fs::read(path).expect("read");
    let pairs = common::stock11_pairs(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = pairs.len();
    let map: BTreeMap<Vec<u8>, Vec<u8>> = pairs.into_iter().collect();
    assert_eq!(map.len(), n, "{}: a key appears twice", path.display());
    map
}

/// Encodes `entries` as a whole file in `format` with the library (to build test inputs).
fn encode(format: Format, entries: &[(&[u8], &[u8], ValueKind)]) -> Vec<u8> {
    let ins: Vec<EntryIn<'_>> = entries
        .iter()
        .map(|(key, value, kind)| EntryIn::new(key, value, *kind))
        .collect();
    format::encode(format, &ins, WriteParams::next(0))
        .expect("encode")
        .out
        .to_vec()
}

/// The platform-info value of the golden 1.1 cache.
fn golden_platform() -> Vec<u8> {
    let bytes = golden("mace-1.1-cache.bin");
    let d = format::decode(&bytes).expect("golden decodes");
    let e = d
        .entries
        .iter()
        .find(|e| &bytes[e.key.clone()] == PLATFORM_INFO_KEY)
        .expect("golden has platform info");
    e.value.bytes(&bytes).to_vec()
}

/// The keys of an `inspect --json` report, in report order.
fn report_keys(v: &Value) -> Vec<Vec<u8>> {
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| unhex(e["key_hex"].as_str().expect("key_hex")))
        .collect()
}

/// Merging the golden 1.0 and 1.1 caches (same platform) gives a file a stock 1.1 reader accepts,
/// holding the union, every key once; in every format MACE 1.1 reads.
#[test]
fn merge_of_golden_10_and_11_is_read_by_a_stock_11_reader() {
    let t = TempDir::new("merge");
    let a = t.copy_golden("mace-1.0-cache.bin");
    let b = t.copy_golden("mace-1.1-cache.bin");
    let want = manifest_cache("mace-1.1-cache.bin");
    assert_eq!(want, manifest_cache("mace-1.0-cache.bin"));

    for to in [None, Some("mace-1.1"), Some("checked-1.1")] {
        let out = t.path("merged.bin");
        // merge does not replace an existing file that is not one of its inputs.
        let _ = std::fs::remove_file(&out);
        let mut args: Vec<&OsStr> = vec![
            "merge".as_ref(),
            out.as_os_str(),
            a.as_os_str(),
            b.as_os_str(),
            "--json".as_ref(),
        ];
        if let Some(f) = to {
            args.extend([OsStr::new("--to"), OsStr::new(f)]);
        }
        let run_out = run(&args);
        assert_eq!(code(&run_out), 0, "{to:?}: {}", stderr(&run_out));
        let v = json_of(&run_out);
        assert_eq!(v["format"], to.unwrap_or("checked-1.1"));
        assert_eq!(v["entries_written"], 11);
        assert_eq!(v["duplicates_same_value"], 11);
        assert_eq!(v["conflicts"], serde_json::json!([]));
        assert_eq!(v["platform_info_differs"], false);
        assert_eq!(v["inputs"][0]["new_entries"], 11);
        assert_eq!(v["inputs"][1]["new_entries"], 0);
        assert_eq!(
            v["bytes_written"],
            std::fs::metadata(&out).expect("written").len()
        );

        let map = stock11_map(&out);
        let got: BTreeMap<Vec<u8>, (usize, u32)> = map
            .iter()
            .map(|(k, v)| (k.clone(), (v.len(), crc32fast::hash(v))))
            .collect();
        assert_eq!(got, want, "{to:?}: the union of the inputs");
        if to == Some("mace-1.1") {
            // MACE's own bytes: the same file MACE 1.1 writes for these entries.
            assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-cache.bin"));
        }
    }
}

/// A third input adds keys and disagrees on one: the union holds every key once, the first input
/// given wins, and the report names which file won.
#[test]
fn merge_reports_conflicts_and_the_first_input_wins() {
    let t = TempDir::new("conflict");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    let platform = golden_platform();
    let extra = encode(
        Format::Mace10,
        &[
            (PLATFORM_INFO_KEY, &platform, ValueKind::Bytes),
            (
                b"softmax -DDATA_TYPE=float",
                b"binary of softmax",
                ValueKind::Bytes,
            ),
            (
                b"pooling -DPOOL_AVG",
                b"binary of pooling",
                ValueKind::Bytes,
            ),
            (
                b"empty_value_program",
                b"now a different value",
                ValueKind::Bytes,
            ),
        ],
    );
    let other = t.write("other.bin", &extra);
    let out = t.path("merged.bin");

    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g11.as_os_str(),
        other.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let v = json_of(&r);
    assert_eq!(v["entries_written"], 13);
    let conflicts = v["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{v}");
    assert_eq!(conflicts[0]["key"], "empty_value_program");
    assert_eq!(conflicts[0]["kept_from"], g11.display().to_string());
    assert_eq!(conflicts[0]["ignored_from"], other.display().to_string());
    assert_eq!(v["inputs"][1]["new_entries"], 2);

    let map = stock11_map(&out);
    assert_eq!(map.len(), 13);
    assert_eq!(map[&b"empty_value_program"[..]], b"");
    assert_eq!(map[&b"pooling -DPOOL_AVG"[..]], b"binary of pooling");

    // The other order: the other file's value wins, and the text report says so.
    std::fs::remove_file(&out).expect("remove the first merge");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        other.as_os_str(),
        g11.as_os_str(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let text = stdout(&r);
    let line = text
        .lines()
        .find(|l| l.contains("\"empty_value_program\""))
        .unwrap_or_else(|| panic!("conflict not reported: {text}"));
    assert!(
        line.contains(&format!("kept {}'s", other.display())),
        "{line}"
    );
    assert!(line.contains(&g11.display().to_string()), "{line}");
    assert!(text.contains("first input given wins"), "{text}");
    let map = stock11_map(&out);
    assert_eq!(map[&b"empty_value_program"[..]], b"now a different value");
}

/// Inputs whose platform info differs are refused (exit 2, both files named, nothing written);
/// `--force` merges them, keeping the first input's platform info.
#[test]
fn merge_refuses_different_platform_info_unless_forced() {
    let t = TempDir::new("platform");
    let g10 = t.copy_golden("mace-1.0-cache.bin");
    let other_gpu = encode(
        Format::Mace11,
        &[
            (
                PLATFORM_INFO_KEY,
                b"QUALCOMM Snapdragon(TM), FULL_PROFILE, OpenCL 2.0 Adreno(TM) 640, 1.1.1",
                ValueKind::Bytes,
            ),
            (b"matmul -DTILE_SIZE=16", b"adreno binary", ValueKind::Bytes),
        ],
    );
    let other = t.write("adreno640.bin", &other_gpu);
    let out = t.path("merged.bin");

    for json in [false, true] {
        let mut args: Vec<&OsStr> = vec![
            "merge".as_ref(),
            out.as_os_str(),
            g10.as_os_str(),
            other.as_os_str(),
        ];
        if json {
            args.push("--json".as_ref());
        }
        let r = run(&args);
        if json {
            json_error_of(&r, "different platform info --json");
        } else {
            assert_fails_cleanly(&r, "different platform info");
        }
        let err = stderr(&r);
        assert!(err.contains("platform info differs"), "{err}");
        assert!(err.contains(&g10.display().to_string()), "{err}");
        assert!(err.contains(&other.display().to_string()), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert!(!out.exists(), "nothing written");
    }

    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g10.as_os_str(),
        other.as_os_str(),
        "--force".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let v = json_of(&r);
    assert_eq!(v["platform_info_differs"], true);
    assert_eq!(v["entries_written"], 12);
    let map = stock11_map(&out);
    assert_eq!(map[PLATFORM_INFO_KEY], golden_platform());
    assert_eq!(map[&b"matmul -DTILE_SIZE=16"[..]], b"adreno binary");
}

/// A damaged input contributes what verifies and makes the exit status 1; an input that is not
/// a cache is exit 2 with nothing written.
#[test]
fn merge_with_damaged_or_foreign_input() {
    let t = TempDir::new("merge-damaged");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    let mut cut = golden("mace-1.0-cache.bin");
    cut.truncate(cut.len() - 1000);
    let cut = t.write("cut.bin", &cut);
    let out = t.path("merged.bin");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g11.as_os_str(),
        cut.as_os_str(),
    ]);
    assert_eq!(code(&r), 1, "{}", stderr(&r));
    assert!(stdout(&r).contains("damaged"), "{}", stdout(&r));
    assert_eq!(stock11_map(&out).len(), 11);

    let junk = t.write(
        "junk.bin",
        b"\x5aThis is not a cache file at all, not even close.",
    );
    let out2 = t.path("merged2.bin");
    let r = run(&[
        "merge".as_ref(),
        out2.as_os_str(),
        g11.as_os_str(),
        junk.as_os_str(),
    ]);
    assert_fails_cleanly(&r, "foreign input");
    assert!(stderr(&r).contains("junk.bin"), "{}", stderr(&r));
    assert!(!out2.exists());
}

/// Tuned-parameter files merge like caches and keep their uint32 encoding.
#[test]
fn merge_of_tuned_parameter_files_keeps_uint32s() {
    let t = TempDir::new("merge-tuned");
    let g11 = t.copy_golden("mace-1.1-tuned-params.bin");
    let g10 = t.copy_golden("mace-1.0-tuned-params.bin");
    let more: Vec<u8> = [32u32, 8, 1, 0]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect();
    let extra = encode(
        Format::Mace10,
        &[(
            b"Xb3kQz_pooling_opencl_kernel_56_56_128",
            &more,
            ValueKind::Bytes,
        )],
    );
    let extra = t.write("more-1.0.bin", &extra);
    let out = t.path("tuned.bin");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g11.as_os_str(),
        extra.as_os_str(),
        g10.as_os_str(),
        "--tuned".as_ref(),
        "--to".as_ref(),
        "mace-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let (v, c) = inspect_json(&out, &[]);
    assert_eq!(c, 0);
    let mut want = manifest_tuned("mace-1.1-tuned-params.bin");
    want.insert(
        "Xb3kQz_pooling_opencl_kernel_56_56_128".into(),
        vec![32, 8, 1, 0],
    );
    let got: BTreeMap<String, Vec<u64>> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let key = String::from_utf8(unhex(e["key_hex"].as_str().expect("key_hex")))
                .expect("utf-8 key");
            let arr = e["uint32s"]
                .as_array()
                .unwrap_or_else(|| panic!("{key} has no uint32s: {e}"));
            (key, arr.iter().map(|n| n.as_u64().expect("n")).collect())
        })
        .collect();
    assert_eq!(got, want);
    // Without the new key, the same merge is MACE's own tuned file, byte for byte.
    std::fs::remove_file(&out).expect("remove the first merge");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g10.as_os_str(),
        g11.as_os_str(),
        "--tuned".as_ref(),
        "--to=mace-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-tuned-params.bin"));
}

/// Converts the golden 1.1 cache to checked-1.1 and flips a byte inside pocl-program-a's value;
/// returns the damaged file's path and the manifest without that entry.
fn damaged_checked(t: &TempDir) -> (PathBuf, BTreeMap<Vec<u8>, (usize, u32)>) {
    let src = t.copy_golden("mace-1.1-cache.bin");
    let checked = t.path("cache.bin");
    let r = run(&[
        "convert".as_ref(),
        src.as_os_str(),
        checked.as_os_str(),
        "--to".as_ref(),
        "checked-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let value = golden("pocl-program-a.bin");
    let mut bytes = std::fs::read(&checked).expect("checked");
    let at = find(&bytes, &value).expect("value stored contiguously");
    bytes[at + value.len() / 2] ^= 0x40;
    std::fs::write(&checked, &bytes).expect("write damaged");
    let mut want = manifest_cache("mace-1.1-cache.bin");
    let crc = crc32fast::hash(&value);
    want.retain(|_, (len, c)| !(*len == value.len() && *c == crc));
    assert_eq!(want.len(), 10);
    (checked, want)
}

/// `repair` in place: exit 1, IN.bak holds the damaged bytes, and IN verifies intact with every
/// entry but the damaged one (also for a stock MACE 1.1 reader).
#[test]
fn repair_in_place_keeps_a_backup_and_salvages_all_but_the_damaged_entry() {
    let t = TempDir::new("repair");
    let (path, want) = damaged_checked(&t);
    let damaged = std::fs::read(&path).expect("damaged");
    let r = run(&["repair".as_ref(), path.as_os_str()]);
    assert_eq!(code(&r), 1, "{}", stderr(&r));
    let text = stdout(&r);
    assert!(text.contains("checked-1.1, damaged"), "{text}");
    assert!(text.contains("10 entries kept, 1 dropped"), "{text}");
    assert!(text.contains(".bak"), "{text}");
    let bak = t.path("cache.bin.bak");
    assert!(std::fs::read(&bak).expect("backup") == damaged);

    let v = run(&["verify".as_ref(), path.as_os_str()]);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    assert!(stdout(&v).contains("intact (checked-1.1, 10 entries)"));
    let got: BTreeMap<Vec<u8>, (usize, u32)> = stock11_map(&path)
        .into_iter()
        .map(|(k, v)| (k, (v.len(), crc32fast::hash(&v))))
        .collect();
    assert_eq!(got, want);
    assert!(!t.path("cache.bin.tmp").exists(), "temp file left");
    assert!(!t.path("cache.bin.bak.tmp").exists(), "temp file left");

    // An intact file is rewritten too (exit 0); the first backup (the damaged original) is kept
    // and the file as it was before this run goes to the next free name.
    let before = std::fs::read(&path).expect("repaired");
    let r = run(&["repair".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let v = json_of(&r);
    assert_eq!(v["intact"], true);
    assert_eq!(v["entries_kept"], 10);
    assert_eq!(v["to"], "checked-1.1");
    let bak1 = t.path("cache.bin.bak.1");
    assert_eq!(v["backup"], bak1.display().to_string());
    assert!(
        std::fs::read(&bak).expect("backup") == damaged,
        "first backup kept"
    );
    assert!(std::fs::read(&bak1).expect("second backup") == before);
    assert!(
        std::fs::read(&path).expect("rewritten") != before,
        "fresh file id"
    );
}

/// `repair IN OUT` leaves IN alone; a MACE 1.0 file stays readable by MACE 1.0 (checked-1.0)
/// unless `--to` says otherwise; a non-cache is exit 2 with nothing touched.
#[test]
fn repair_to_another_file_and_refusals() {
    let t = TempDir::new("repair-out");
    let (path, want) = damaged_checked(&t);
    let damaged = std::fs::read(&path).expect("damaged");
    let out = t.path("repaired.bin");
    let r = run(&[
        "repair".as_ref(),
        path.as_os_str(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 1, "{}", stderr(&r));
    let v = json_of(&r);
    assert_eq!(v["backup"], Value::Null);
    assert_eq!(v["entries_kept"], 10);
    assert_eq!(v["entries_dropped"], 1);
    assert!(!v["notes"].as_array().expect("notes").is_empty());
    assert!(std::fs::read(&path).expect("in") == damaged, "IN untouched");
    assert!(!t.path("cache.bin.bak").exists());
    assert_eq!(stock11_map(&out).len(), want.len());

    let g10 = t.copy_golden("mace-1.0-cache.bin");
    let r = run(&["repair".as_ref(), g10.as_os_str(), "--json".as_ref()]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["to"], "checked-1.0");
    let (v, c) = inspect_json(&g10, &[]);
    assert_eq!((c, v["format"].as_str()), (0, Some("checked-1.0")));
    let r = run(&[
        "repair".as_ref(),
        g10.as_os_str(),
        "--to".as_ref(),
        "checked-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(stock11_map(&g10).len(), 11);

    let junk = t.write("junk.bin", &[0x5a; 300]);
    let r = run(&["repair".as_ref(), junk.as_os_str()]);
    assert_fails_cleanly(&r, "repair a non-cache");
    assert!(std::fs::read(&junk).expect("junk") == [0x5a; 300]);
    assert!(!t.path("junk.bin.bak").exists());
}

/// `inspect` shows tuned parameters' uint32 values, in text and JSON, keeping the usual fields.
#[test]
fn inspect_shows_tuned_parameter_values() {
    let p11 = golden_dir().join("mace-1.1-tuned-params.bin");
    let out = run(&["inspect".as_ref(), p11.as_os_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let want = manifest_tuned("mace-1.1-tuned-params.bin");
    assert_eq!(want.len(), 3);
    for (key, values) in &want {
        let list: Vec<String> = values.iter().map(|n| n.to_string()).collect();
        let line = format!("{key}: [{}]", list.join(", "));
        assert!(text.contains(&line), "missing {line:?} in {text}");
    }
    assert!(text.contains("Xb3kQz_conv2d_1x1_opencl_kernel1_224_224_32: [8, 16, 4, 0]"));

    let (v, c) = inspect_json(&p11, &[]);
    assert_eq!(c, 0);
    for e in v["entries"].as_array().expect("entries") {
        let key = String::from_utf8(unhex(e["key_hex"].as_str().expect("key"))).expect("utf-8");
        let got: Vec<u64> = e["uint32s"]
            .as_array()
            .expect("uint32s")
            .iter()
            .map(|n| n.as_u64().expect("n"))
            .collect();
        assert_eq!(got, want[&key]);
        assert_eq!(e["len"], got.len() * 4);
        assert_eq!(e["crc32"].as_str().expect("crc").len(), 8);
    }

    // Format A cannot say a value is a uint32 array: the keys show it (MACE's queue-window and
    // tuning keys), --tuned says so, --no-tuned keeps plain bytes.
    let p10 = golden_dir().join("mace-1.0-tuned-params.bin");
    let (v, _) = inspect_json(&p10, &["--no-tuned"]);
    assert!(v["entries"][0].get("uint32s").is_none(), "{v}");
    assert_eq!(v["tuned"], false);
    for flags in [&[][..], &["--tuned"][..]] {
        let (v, _) = inspect_json(&p10, flags);
        assert_eq!(
            v["entries"][0]["uint32s"],
            serde_json::json!([16]),
            "{flags:?}"
        );
        assert_eq!(v["tuned"], true);
    }
    let out = run(&["inspect".as_ref(), p10.as_os_str(), "--tuned".as_ref()]);
    assert!(stdout(&out).contains("Xb3kQz_eltwise_opencl_kernel_1_112_112_64: [64, 1, 1, 300000]"));

    // A program cache has no uint32 values.
    let (v, _) = inspect_json(&golden_dir().join("mace-1.1-cache.bin"), &[]);
    assert!(v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e.get("uint32s").is_none()));
}

/// mace-1.0 tuned -> mace-1.1 with `--tuned` is MACE's own 1.1 file; the reverse needs no flag.
#[test]
fn tuned_conversions_are_byte_identical_to_mace() {
    let t = TempDir::new("tuned");
    let g10 = t.copy_golden("mace-1.0-tuned-params.bin");
    let g11 = t.copy_golden("mace-1.1-tuned-params.bin");
    let out = t.path("out.bin");

    let r = run(&[
        "convert".as_ref(),
        g10.as_os_str(),
        out.as_os_str(),
        "--to".as_ref(),
        "mace-1.1".as_ref(),
        "--tuned".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-tuned-params.bin"));

    let r = run(&[
        "convert".as_ref(),
        g11.as_os_str(),
        out.as_os_str(),
        "--to".as_ref(),
        "mace-1.0".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.0-tuned-params.bin"));

    // With --no-tuned the values stay bytes: a valid file, but not MACE's tuned file.
    let r = run(&[
        "convert".as_ref(),
        g10.as_os_str(),
        out.as_os_str(),
        "--to=mace-1.1".as_ref(),
        "--no-tuned".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(std::fs::read(&out).expect("out") != golden("mace-1.1-tuned-params.bin"));

    // Without a flag the keys show a tuned file: MACE's own 1.1 tuned file again.
    let r = run(&[
        "convert".as_ref(),
        g10.as_os_str(),
        out.as_os_str(),
        "--to=mace-1.1".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["tuned"], true);
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-tuned-params.bin"));

    // A MACE 1.0 input is written, by default, in a format MACE 1.0 reads.
    let mid = t.path("mid.bin");
    let r = run(&[
        "convert".as_ref(),
        g10.as_os_str(),
        mid.as_os_str(),
        "--tuned".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["to"], "checked-1.0");

    // Through checked-1.1 and back, --tuned survives.
    let r = run(&[
        "convert".as_ref(),
        g10.as_os_str(),
        mid.as_os_str(),
        "--tuned".as_ref(),
        "--to".as_ref(),
        "checked-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let r = run(&[
        "convert".as_ref(),
        mid.as_os_str(),
        out.as_os_str(),
        "--to".as_ref(),
        "mace-1.1".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-tuned-params.bin"));

    // A value that is not a whole number of uint32s is refused, naming the key.
    std::fs::remove_file(&out).expect("remove");
    let cache = t.copy_golden("mace-1.0-cache.bin");
    let r = run(&[
        "convert".as_ref(),
        cache.as_os_str(),
        out.as_os_str(),
        "--to".as_ref(),
        "mace-1.1".as_ref(),
        "--tuned".as_ref(),
    ]);
    assert_fails_cleanly(&r, "--tuned on a program cache");
    assert!(stderr(&r).contains("key \""), "{}", stderr(&r));
    assert!(!out.exists());
}

/// Keys that are valid UTF-8 are shown as text; control characters, `"` and `\` are escaped, and
/// bytes of invalid UTF-8 are shown as \xNN.
#[test]
fn inspect_text_shows_utf8_keys_as_text() {
    let p = golden_dir().join("mace-1.1-cache.bin");
    let out = run(&["inspect".as_ref(), p.as_os_str()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("\"unicode_中文_kernel -DX=1\""), "{text}");
    assert!(text.contains("\"key\\x00with_nul_inside\""), "{text}");

    let t = TempDir::new("utf8");
    let file = encode(
        Format::Mace11,
        &[
            (b"bad\xff\xfekey", b"1", ValueKind::Bytes),
            (b"tab\there\nnewline", b"2", ValueKind::Bytes),
            (b"quote\"back\\slash", b"3", ValueKind::Bytes),
            ("caf\u{e9} \u{85}".as_bytes(), b"4", ValueKind::Bytes),
        ],
    );
    let path = t.write("keys.bin", &file);
    let out = run(&["inspect".as_ref(), path.as_os_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\"bad\\xff\\xfekey\""), "{text}");
    assert!(text.contains("\"tab\\x09here\\x0anewline\""), "{text}");
    assert!(text.contains("\"quote\\\"back\\\\slash\""), "{text}");
    assert!(text.contains("\"caf\u{e9} \\u{85}\""), "{text}");
    assert_eq!(text.lines().count(), 7, "one line per entry: {text}");
    // JSON still reports the exact bytes.
    let (v, _) = inspect_json(&path, &[]);
    assert!(report_keys(&v).contains(&b"bad\xff\xfekey".to_vec()));
}

/// Every new command has help with an example; bad usage is exit 2 with one line.
#[test]
fn help_and_bad_usage_of_the_workflow_commands() {
    for cmd in ["merge", "export-c", "repair", "demo"] {
        for args in [vec![cmd, "--help"], vec!["help", cmd]] {
            let out = run(&args);
            assert_eq!(code(&out), 0, "{args:?}");
            let text = stdout(&out);
            assert!(
                text.contains(&format!("Usage: mace-cache {cmd}")),
                "{args:?}: {text}"
            );
            assert!(text.contains("Example"), "{args:?}");
            assert!(text.contains("Exit status"), "{args:?}");
        }
    }
    let out = run(&["--help"]);
    for cmd in ["merge", "export-c", "repair", "demo"] {
        assert!(stdout(&out).contains(cmd), "main help lists {cmd}");
    }

    let g = golden_dir().join("mace-1.1-cache.bin");
    let g = g.to_str().expect("utf-8 path");
    let t = TempDir::new("usage");
    let o = t.path("o.bin");
    let o = o.to_str().expect("utf-8 path");
    let cases: Vec<Vec<&str>> = vec![
        vec!["merge", o],
        vec!["merge", o, g, "--to", "bogus"],
        vec!["merge", o, g, "--load-func", "x"],
        vec!["merge", o, g, "--force=yes"],
        vec!["export-c", g],
        vec!["export-c", g, o, "extra"],
        vec!["export-c", g, o, "--load-func"],
        vec!["export-c", g, o, "--tuned"],
        vec!["repair"],
        vec!["repair", g, o, "extra"],
        vec!["repair", g, o, "--force"],
        vec!["demo", "extra"],
        vec!["demo", "--dir"],
        vec!["convert", g, o, "--force"],
        vec!["verify", g, "--tuned"],
    ];
    for args in cases {
        let out = run(&args);
        assert_fails_cleanly(&out, &format!("{args:?}"));
    }
    assert!(!Path::new(o).exists(), "nothing written on bad usage");
}
