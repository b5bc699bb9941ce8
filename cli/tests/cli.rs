//! Integration tests of the `mace-cache` binary against the golden files MACE itself wrote.

use serde_json::Value;
use std::path::Path;
use std::process::Output;

mod common;

use common::cli::*;
use common::{golden, golden_dir};

/// One entry as (key_hex, len, crc32 hex), the shape `inspect --json` reports.
type Row = (String, u64, String);

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest's entries of a golden file, sorted by key bytes.
fn manifest_rows(name: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(golden_dir().join("manifest.json")).expect("manifest");
    let m: Value = serde_json::from_str(&text).expect("manifest is JSON");
    let entries = m[name]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("manifest has no entries for {name}"));
    let mut rows: Vec<Row> = entries
        .iter()
        .map(|e| {
            if let Some(u32s) = e.get("uint32s") {
                let key = e["key"].as_str().expect("key");
                let bytes: Vec<u8> = u32s
                    .as_array()
                    .expect("uint32s")
                    .iter()
                    .flat_map(|n| (n.as_u64().expect("uint32") as u32).to_le_bytes())
                    .collect();
                (
                    hex(key.as_bytes()),
                    bytes.len() as u64,
                    format!("{:08x}", crc32fast::hash(&bytes)),
                )
            } else {
                (
                    e["key_hex"].as_str().expect("key_hex").to_string(),
                    e["value_len"].as_u64().expect("value_len"),
                    e["value_crc32"].as_str().expect("value_crc32").to_string(),
                )
            }
        })
        .collect();
    rows.sort_by_key(|r| key_bytes(&r.0));
    rows
}

/// Decodes lowercase hex.
fn key_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The entries of an `inspect --json` report, checking their key byte order and field shapes.
fn report_rows(v: &Value) -> Vec<Row> {
    let rows: Vec<Row> = v["entries"]
        .as_array()
        .expect("entries array")
        .iter()
        .map(|e| {
            let key_hex = e["key_hex"].as_str().expect("key_hex").to_string();
            let crc = e["crc32"].as_str().expect("crc32").to_string();
            assert!(
                key_hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "key_hex not lowercase hex: {key_hex}"
            );
            assert_eq!(crc.len(), 8, "crc32 not 8 hex digits: {crc}");
            assert!(crc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            (key_hex, e["len"].as_u64().expect("len"), crc)
        })
        .collect();
    let keys: Vec<Vec<u8>> = rows.iter().map(|r| key_bytes(&r.0)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "entries not in key byte order"
    );
    rows
}

/// Asserts a report says intact, in `format`, with exactly the manifest's entries of `name`.
fn assert_intact_as_manifest(v: &Value, format: &str, name: &str) {
    assert_eq!(v["format"], format, "format of {name}");
    assert_eq!(v["damage"]["intact"], true, "{name}: {v}");
    assert_eq!(v["damage"]["entries_dropped"], 0, "{name}: {v}");
    assert_eq!(v["damage"]["bytes_ignored"], 0, "{name}: {v}");
    assert_eq!(v["damage"]["notes"], serde_json::json!([]), "{name}: {v}");
    assert_eq!(report_rows(v), manifest_rows(name), "entries of {name}");
}

/// Runs `convert IN OUT --to FORMAT`, asserting the exit code; returns the run.
fn convert(input: &Path, output: &Path, to: &str, want: i32) -> Output {
    let out = run(&[
        "convert".as_ref(),
        input.as_os_str(),
        output.as_os_str(),
        "--to".as_ref(),
        to.as_ref(),
    ]);
    assert_eq!(code(&out), want, "convert to {to}: {}", stderr(&out));
    assert!(stdout(&out).is_empty(), "convert prints nothing on stdout");
    assert_eq!(stderr(&out).lines().count(), 1, "one summary line");
    out
}

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// `inspect --json` of every stock golden file reports exactly the manifest's entries, intact.
#[test]
fn inspect_json_of_stock_cache_files_matches_manifest() {
    for (name, format) in [
        ("mace-1.1-cache.bin", "mace-1.1"),
        ("mace-1.0-cache.bin", "mace-1.0"),
        ("mace-1.1-tuned-params.bin", "mace-1.1"),
        ("mace-1.0-tuned-params.bin", "mace-1.0"),
    ] {
        let (v, c) = inspect_json(&golden_dir().join(name), &[]);
        assert_eq!(c, 0, "{name}");
        assert_intact_as_manifest(&v, format, name);
        assert!(!report_rows(&v).is_empty(), "{name} has entries");
    }
}

/// The empty stock files read as intact, with no entries, in their own format.
#[test]
fn inspect_json_of_empty_stock_files() {
    for (name, format) in [
        ("mace-1.0-empty.bin", "mace-1.0"),
        ("mace-1.1-empty.bin", "mace-1.1"),
    ] {
        let (v, c) = inspect_json(&golden_dir().join(name), &[]);
        assert_eq!(c, 0, "{name}");
        assert_intact_as_manifest(&v, format, name);
        assert_eq!(v["entries"], serde_json::json!([]));
    }
}

/// A 0-byte file is the `empty` format and counts as damaged (exit 1).
#[test]
fn zero_byte_file_is_empty_format_and_damaged() {
    let t = TempDir::new("zero");
    let p = t.write("zero.bin", b"");
    let (v, c) = inspect_json(&p, &[]);
    assert_eq!(c, 1);
    assert_eq!(v["format"], "empty");
    assert_eq!(v["damage"]["intact"], false);
    assert_eq!(v["entries"], serde_json::json!([]));
    let out = run(&["verify".as_ref(), p.as_os_str()]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("damaged (empty)"), "{}", stdout(&out));
}

/// The human report has the header, one line per entry, escaped keys and the status.
#[test]
fn inspect_text_lists_every_entry() {
    let p = golden_dir().join("mace-1.1-cache.bin");
    let out = run(&["inspect".as_ref(), p.as_os_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().expect("header line");
    assert!(first.contains("mace-1.1"), "{first}");
    assert!(first.contains("1196410 bytes"), "{first}");
    assert!(first.contains("11 entries"), "{first}");
    // The key with a NUL inside is shown escaped; its CRC is printed.
    assert!(text.contains("key\\x00with_nul_inside"), "{text}");
    // A key that is valid UTF-8 is shown as text.
    assert!(text.contains("\"unicode_中文_kernel -DX=1\""), "{text}");
    assert!(text.contains("43546901"), "{text}");
    assert!(text.contains("intact"), "{text}");
    for (key_hex, len, crc) in manifest_rows("mace-1.1-cache.bin") {
        let line = text
            .lines()
            .find(|l| l.contains(&crc))
            .unwrap_or_else(|| panic!("no line for {key_hex}"));
        assert!(line.contains(&len.to_string()), "{line}");
    }
}

/// `verify` prints a one-line intact verdict (and a JSON one) for the stock golden files.
#[test]
fn verify_intact_golden_files() {
    for (name, verdict) in [
        ("mace-1.1-cache.bin", "intact (mace-1.1, 11 entries)"),
        ("mace-1.0-cache.bin", "intact (mace-1.0, 11 entries)"),
    ] {
        let p = golden_dir().join(name);
        let out = run(&["verify".as_ref(), p.as_os_str()]);
        assert_eq!(code(&out), 0);
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.trim_end().ends_with(verdict), "{text}");

        let out = run(&["verify".as_ref(), p.as_os_str(), "--json".as_ref()]);
        assert_eq!(code(&out), 0);
        let v = json_of(&out);
        assert_eq!(v["intact"], true);
        assert_eq!(v["entries_kept"], 11);
    }
}

/// Converting a stock file to its own format gives MACE's bytes exactly.
#[test]
fn convert_stock_to_same_format_is_byte_identical() {
    let t = TempDir::new("same");
    for (name, to) in [
        ("mace-1.1-cache.bin", "mace-1.1"),
        ("mace-1.0-cache.bin", "mace-1.0"),
        ("mace-1.1-tuned-params.bin", "mace-1.1"),
        ("mace-1.0-tuned-params.bin", "mace-1.0"),
        ("mace-1.1-empty.bin", "mace-1.1"),
        ("mace-1.0-empty.bin", "mace-1.0"),
    ] {
        let input = t.copy_golden(name);
        let output = t.path(&format!("{name}.out"));
        convert(&input, &output, to, 0);
        let got = std::fs::read(&output).expect("output written");
        assert!(
            got == golden(name),
            "{name} -> {to} differs from MACE's bytes"
        );
        assert!(
            !t.path(&format!("{name}.out.tmp")).exists(),
            "temp file left"
        );
    }
}

/// Stock -> checked keeps every entry; checked -> stock gives MACE's bytes again.
#[test]
fn convert_through_checked_formats_and_back() {
    let t = TempDir::new("checked");
    for (name, checked, stock) in [
        ("mace-1.1-cache.bin", "checked-1.1", "mace-1.1"),
        ("mace-1.0-cache.bin", "checked-1.0", "mace-1.0"),
        ("mace-1.1-tuned-params.bin", "checked-1.1", "mace-1.1"),
        ("mace-1.0-tuned-params.bin", "checked-1.0", "mace-1.0"),
    ] {
        let input = t.copy_golden(name);
        let mid = t.path(&format!("{name}.{checked}"));
        convert(&input, &mid, checked, 0);
        assert!(std::fs::read(&mid).expect("mid") != golden(name));
        let (v, c) = inspect_json(&mid, &[]);
        assert_eq!(c, 0, "{name} as {checked}");
        assert_intact_as_manifest(&v, checked, name);

        let back = t.path(&format!("{name}.back"));
        convert(&mid, &back, stock, 0);
        assert!(
            std::fs::read(&back).expect("back") == golden(name),
            "{name} -> {checked} -> {stock} differs from MACE's bytes"
        );
    }
}

/// Without `--to`, convert writes checked-1.1, also in place.
#[test]
fn convert_defaults_to_checked_11_and_can_replace_its_input() {
    let t = TempDir::new("default");
    let p = t.copy_golden("mace-1.1-cache.bin");
    let out = run(&["convert".as_ref(), p.as_os_str(), p.as_os_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (v, c) = inspect_json(&p, &[]);
    assert_eq!(c, 0);
    assert_intact_as_manifest(&v, "checked-1.1", "mace-1.1-cache.bin");
}

/// `convert --json` prints one JSON summary that matches what was written.
#[test]
fn convert_json_summary() {
    let t = TempDir::new("cjson");
    let input = t.copy_golden("mace-1.0-cache.bin");
    let output = t.path("out.bin");
    let out = run(&[
        "convert".as_ref(),
        input.as_os_str(),
        output.as_os_str(),
        "--to=mace-1.1".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["from"], "mace-1.0");
    assert_eq!(v["to"], "mace-1.1");
    assert_eq!(v["entries_written"], 11);
    assert_eq!(v["intact"], true);
    let len = std::fs::metadata(&output).expect("written").len();
    assert_eq!(v["bytes_written"], len);
    // The NUL-containing key survives across formats exactly.
    let (v, _) = inspect_json(&output, &[]);
    assert_intact_as_manifest(&v, "mace-1.1", "mace-1.0-cache.bin");
}

/// Converts the 1.1 golden cache to `format`, flips a byte in one value: only that entry is lost.
fn check_flipped_value(format: &str) {
    let t = TempDir::new("flip");
    let name = "mace-1.1-cache.bin";
    let input = t.copy_golden(name);
    let checked = t.path("checked.bin");
    convert(&input, &checked, format, 0);

    let value = golden("pocl-program-a.bin");
    let crc = format!("{:08x}", crc32fast::hash(&value));
    let rows = manifest_rows(name);
    let victim = rows
        .iter()
        .find(|r| r.2 == crc && r.1 == value.len() as u64)
        .expect("pocl-program-a.bin is a value in the golden cache")
        .clone();

    let mut bytes = std::fs::read(&checked).expect("checked");
    let at = find(&bytes, &value).expect("value stored contiguously");
    assert!(
        find(&bytes[at + 1..], &value).is_none(),
        "value stored once"
    );
    bytes[at + value.len() / 2] ^= 0x40;
    let bad = t.write("bad.bin", &bytes);

    let out = run(&["verify".as_ref(), bad.as_os_str()]);
    assert_eq!(code(&out), 1, "verify {format}: {}", stdout(&out));
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&format!("damaged ({format})")), "{line}");
    assert!(line.contains("10 entries kept, 1 dropped"), "{line}");

    let (v, c) = inspect_json(&bad, &[]);
    assert_eq!(c, 1);
    assert_eq!(v["format"], format);
    assert_eq!(v["damage"]["intact"], false);
    assert_eq!(v["damage"]["entries_dropped"], 1);
    assert!(!v["damage"]["notes"].as_array().expect("notes").is_empty());
    let want: Vec<Row> = rows.into_iter().filter(|r| *r != victim).collect();
    assert_eq!(want.len(), 10);
    assert_eq!(report_rows(&v), want);

    // Converting salvages the 10 good entries and still reports the damage.
    let saved = t.path("saved.bin");
    convert(&bad, &saved, "mace-1.1", 1);
    let (v, c) = inspect_json(&saved, &[]);
    assert_eq!(c, 0);
    assert_eq!(v["format"], "mace-1.1");
    assert_eq!(report_rows(&v), want);
}

/// A flipped byte in one checked-1.1 value costs only that entry.
#[test]
fn flipped_byte_in_one_value_of_checked_11_drops_only_that_entry() {
    check_flipped_value("checked-1.1");
}

/// A flipped byte in one checked-1.0 value costs only that entry.
#[test]
fn flipped_byte_in_one_value_of_checked_10_drops_only_that_entry() {
    check_flipped_value("checked-1.0");
}

/// A flipped byte in a stock 1.1 file fails its whole-file CRC: damaged, no entries.
#[test]
fn flipped_byte_in_stock_11_file_is_damaged_and_empty() {
    let t = TempDir::new("stock11");
    let mut bytes = golden("mace-1.1-cache.bin");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let bad = t.write("bad.bin", &bytes);

    let out = run(&["verify".as_ref(), bad.as_os_str()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("damaged (mace-1.1)"),
        "{}",
        stdout(&out)
    );

    let (v, c) = inspect_json(&bad, &[]);
    assert_eq!(c, 1);
    assert_eq!(v["format"], "mace-1.1");
    assert_eq!(v["damage"]["intact"], false);
    assert_eq!(v["entries"], serde_json::json!([]));
    assert_eq!(v["damage"]["entries_dropped"], 11);

    let out = t.path("out.bin");
    convert(&bad, &out, "checked-1.1", 1);
    let (v, c) = inspect_json(&out, &[]);
    assert_eq!(c, 0);
    assert_eq!(v["entries"], serde_json::json!([]));
}

/// A cut stock 1.0 file is damaged and keeps only genuine entries.
#[test]
fn truncated_stock_10_file_is_damaged_and_keeps_only_manifest_entries() {
    let t = TempDir::new("trunc10");
    let bytes = golden("mace-1.0-cache.bin");
    let bad = t.write("cut.bin", &bytes[..bytes.len() - 1000]);
    let (v, c) = inspect_json(&bad, &[]);
    assert_eq!(c, 1);
    assert_eq!(v["format"], "mace-1.0");
    assert_eq!(v["damage"]["intact"], false);
    let all = manifest_rows("mace-1.0-cache.bin");
    let kept = report_rows(&v);
    assert!(kept.len() < all.len());
    assert!(kept.iter().all(|r| all.contains(r)), "{v}");
}

/// Random bytes are not a cache: exit 2 and one error line for every command.
#[test]
fn garbage_file_is_not_a_cache() {
    let t = TempDir::new("garbage");
    let mut bytes = pseudo_random(4096, 0x9e37_79b9_7f4a_7c15);
    bytes[0] = 0x5a;
    let p = t.write("garbage.bin", &bytes);
    let out_path = t.path("out.bin");
    for args in [
        vec!["inspect".as_ref(), p.as_os_str()],
        vec!["verify".as_ref(), p.as_os_str()],
        vec!["convert".as_ref(), p.as_os_str(), out_path.as_os_str()],
    ] {
        let out = run(&args);
        assert_fails_cleanly(&out, &format!("garbage {args:?}"));
        assert!(out.stdout.is_empty(), "nothing on stdout");
        assert!(
            stderr(&out).contains("not a MACE cache"),
            "{}",
            stderr(&out)
        );
    }
    // With --json the error is also the one JSON document on stdout.
    let out = run(&["inspect".as_ref(), p.as_os_str(), "--json".as_ref()]);
    let msg = json_error_of(&out, "garbage --json");
    assert!(msg.contains("not a MACE cache"), "{msg}");
    assert!(!out_path.exists(), "convert wrote nothing");
}

/// A missing file is exit 2 with the OS error on one line.
#[test]
fn missing_file_cannot_be_read() {
    let t = TempDir::new("missing");
    let p = t.path("nope.bin");
    for cmd in ["inspect", "verify"] {
        let out = run(&[cmd.as_ref(), p.as_os_str()]);
        assert_fails_cleanly(&out, cmd);
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("mace-cache: cannot read {}: ", p.display())),
            "{err}"
        );
        assert!(err.contains("No such file or directory"), "{err}");
    }
    let out = run(&["convert".as_ref(), p.as_os_str(), t.path("o").as_os_str()]);
    assert_fails_cleanly(&out, "convert missing");
    assert!(!t.path("o").exists());
}

/// Every kind of bad usage is exit 2 with one `mace-cache: ` line and nothing on stdout.
#[test]
fn bad_usage_exits_2_with_one_line() {
    let g = golden_dir().join("mace-1.1-cache.bin");
    let g = g.to_str().expect("utf-8 path");
    let t = TempDir::new("usage");
    let o = t.path("o.bin");
    let o = o.to_str().expect("utf-8 path");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["--bogus"],
        vec!["inspect"],
        vec!["inspect", g, "extra"],
        vec!["inspect", g, "--jsn"],
        vec!["verify", g, "--to", "mace-1.1"],
        vec!["convert", g],
        vec!["convert", g, o, "--to", "bogus"],
        vec!["convert", g, o, "--to=bogus"],
        vec!["convert", g, o, "--to"],
        vec!["help", "frobnicate"],
    ];
    for args in cases {
        let out = run(&args);
        assert_fails_cleanly(&out, &format!("{args:?}"));
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", stdout(&out));
    }
    assert!(!Path::new(o).exists(), "nothing written on bad usage");
    let out = run(&["convert", g, o, "--to", "bogus"]);
    assert!(stderr(&out).contains("bogus"), "{}", stderr(&out));
}

/// Help for the tool and each command exits 0 with usage and an example.
#[test]
fn help_exits_0() {
    for args in [
        vec!["--help"],
        vec!["-h"],
        vec!["help"],
        vec!["help", "convert"],
        vec!["inspect", "--help"],
        vec!["verify", "-h"],
        vec!["convert", "--help"],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 0, "{args:?}");
        let text = stdout(&out);
        assert!(text.contains("Usage: mace-cache"), "{args:?}: {text}");
        assert!(text.contains("Example"), "{args:?}: {text}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
    let out = run(&["convert", "--help"]);
    assert!(stdout(&out).contains("--to"));
    let out = run(&["--version"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).starts_with("mace-cache "));
}
