//! Integration tests of `mace-cache demo`: with PoCL it builds real kernels cold and warm and
//! rebuilds only a damaged program; without OpenCL it runs the storage part.

use serde_json::Value;
use std::path::PathBuf;

mod common;

use common::cli::*;

/// The demo builds real kernels with PoCL: exit 0, a table with a speedup, warm faster than cold,
/// and after the damage only the damaged program is rebuilt.
#[test]
fn demo_shows_cold_and_warm_builds_and_one_rebuild() {
    let t = TempDir::new("demo");
    let dir = t.path("work");
    let out = run(&["demo".as_ref(), "--dir".as_ref(), dir.as_os_str()]);
    assert_eq!(
        code(&out),
        0,
        "stdout {}\nstderr {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        !text.contains("OpenCL part skipped"),
        "OpenCL (PoCL) is expected here: {text}"
    );
    let header = text
        .lines()
        .find(|l| l.starts_with("program") && l.contains("speedup"))
        .unwrap_or_else(|| panic!("no table: {text}"));
    assert!(
        header.contains("cold ms") && header.contains("warm ms"),
        "{header}"
    );
    let total = text
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap_or_else(|| panic!("no total: {text}"));
    let cols: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(cols.len(), 4, "{total}");
    let cold: f64 = cols[1].parse().expect("cold total");
    let warm: f64 = cols[2].parse().expect("warm total");
    let ratio: f64 = cols[3].trim_end_matches('x').parse().expect("speedup");
    assert!(cols[3].ends_with('x'), "{total}");
    assert!(
        warm < cold,
        "warm {warm} ms is not faster than cold {cold} ms"
    );
    assert!(ratio > 1.0, "{total}");
    assert!(text.contains("1 dropped"), "{text}");
    assert!(
        text.contains("rebuilt from source: eltwise; loaded from the cache: 7 of 8"),
        "{text}"
    );
    assert!(!text.contains("unexpected"), "{text}");
    // Programs and entries are explained: a binary and a source hash per program, plus the
    // entries that tie them to the device.
    assert!(
        text.contains("8 programs, 18 entries: 8 program binaries + 8 source hashes"),
        "{text}"
    );
    assert!(text.contains("mace_storage_fingerprint"), "{text}");
    assert!(!stderr(&out).is_empty(), "progress on stderr");
    assert!(
        dir.join("mace_cl_compiled_program.bin").exists(),
        "--dir keeps the files"
    );
    let (v, c) = inspect_json(&dir.join("mace_cl_compiled_program.bin"), &[]);
    assert_eq!((c, v["damage"]["intact"].as_bool()), (0, Some(true)));
}

/// Without OpenCL, the demo runs the storage part, says why OpenCL was skipped, and exits 0.
#[test]
fn demo_without_opencl_runs_the_storage_part() {
    let lib = "/nonexistent/libOpenCL.so";
    let out = run(&["demo", "--opencl-library", lib, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["opencl"]["used"], false);
    assert!(
        v["opencl"]["skipped"]
            .as_str()
            .expect("reason")
            .contains(lib),
        "{v}"
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["damage"]["entries_dropped"], 1);
    assert_eq!(v["after_damage"]["dropped"], serde_json::json!(["eltwise"]));
    assert_eq!(v["after_damage"]["kept"].as_array().expect("kept").len(), 7);
    assert_eq!(v["cold_total_ms"], Value::Null);
    let dir = PathBuf::from(v["dir"].as_str().expect("dir"));
    assert!(!dir.exists(), "the temporary directory is removed");

    let out = run(&["demo", "--opencl-library", lib]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let skipped: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("OpenCL part skipped: "))
        .collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(skipped[0].contains(lib));
    assert!(
        text.contains("eltwise") && text.contains("dropped"),
        "{text}"
    );
}
