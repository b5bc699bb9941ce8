//! docs/CLI.md lists the fields of every JSON report once; this checks that list against what the
//! tool prints, so the doc cannot drift from the report structs.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;

use common::cli::*;
use common::golden_dir;

/// The fields of each report in docs/CLI.md's table: (required, optional) by report name.
fn documented() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md");
    let doc = std::fs::read_to_string(&path).expect("docs/CLI.md");
    let section = doc
        .split("## JSON reports")
        .nth(1)
        .expect("a JSON reports section");
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let (mut req, mut opt) = (BTreeSet::new(), BTreeSet::new());
        for f in cells[3].split(',').map(|f| f.trim().trim_matches('`')) {
            match f.strip_suffix('?') {
                Some(o) => opt.insert(o.to_string()),
                None => req.insert(f.to_string()),
            };
        }
        out.insert(name, (req, opt));
    }
    out
}

/// Asserts `v`'s keys are what the doc lists for `report`.
fn check(docs: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>, report: &str, v: &Value) {
    let (req, opt) = docs
        .get(report)
        .unwrap_or_else(|| panic!("docs/CLI.md does not list {report}"));
    let keys: BTreeSet<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("{report} is not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    let missing: Vec<_> = req.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "{report}: documented but not printed: {missing:?}"
    );
    let extra: Vec<_> = keys.difference(req).filter(|k| !opt.contains(*k)).collect();
    assert!(
        extra.is_empty(),
        "{report}: printed but not documented: {extra:?}"
    );
}

/// Every report's fields are the ones docs/CLI.md lists.
#[test]
fn json_reports_match_the_documented_fields() {
    let docs = documented();
    let t = TempDir::new("docs");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    let g10 = t.copy_golden("mace-1.0-cache.bin");
    let tuned = golden_dir().join("mace-1.1-tuned-params.bin");
    let json = |args: &[&std::ffi::OsStr]| {
        let mut a = args.to_vec();
        a.push("--json".as_ref());
        json_of(&run(&a))
    };

    let v = json(&["inspect".as_ref(), tuned.as_os_str()]);
    check(&docs, "Inspect", &v);
    check(&docs, "InspectEntry", &v["entries"][0]);
    check(&docs, "Damage", &v["damage"]);
    check(
        &docs,
        "Verify",
        &json(&["verify".as_ref(), g11.as_os_str()]),
    );
    let out = t.path("out.bin");
    check(
        &docs,
        "Convert",
        &json(&["convert".as_ref(), g11.as_os_str(), out.as_os_str()]),
    );

    let merged = t.path("merged.bin");
    let v = json(&[
        "merge".as_ref(),
        merged.as_os_str(),
        g11.as_os_str(),
        g10.as_os_str(),
    ]);
    check(&docs, "Merge", &v);
    check(&docs, "MergeInput", &v["inputs"][0]);
    let cc = t.path("out.cc");
    check(
        &docs,
        "ExportC",
        &json(&["export-c".as_ref(), g11.as_os_str(), cc.as_os_str()]),
    );
    check(
        &docs,
        "Repair",
        &json(&["repair".as_ref(), g10.as_os_str()]),
    );

    let v = json(&[
        "demo".as_ref(),
        "--opencl-library".as_ref(),
        "/nonexistent/libOpenCL.so".as_ref(),
    ]);
    check(&docs, "Demo", &v);
    check(&docs, "DemoOpenCl", &v["opencl"]);
    check(&docs, "DemoProgram", &v["programs"][0]);
    check(&docs, "DemoDamage", &v["damage"]);
    check(&docs, "AfterDamage", &v["after_damage"]);
    check(&docs, "EntryCounts", &v["final_entries"]);

    let v = json(&["verify".as_ref(), t.path("missing").as_os_str()]);
    check(&docs, "Error", &v);
    assert!(docs.contains_key("Conflict"), "Conflict is documented");
}

/// A merge conflict's fields are the documented ones.
#[test]
fn conflict_report_matches_the_documented_fields() {
    let docs = documented();
    let t = TempDir::new("docs-conflict");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    // A stock 1.0 file holding one key of the golden cache with another value.
    let key = b"empty_value_program";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1i64.to_le_bytes());
    bytes.extend_from_slice(&(key.len() as i32).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&3i32.to_le_bytes());
    bytes.extend_from_slice(b"new");
    let other = t.write("other.bin", &bytes);
    let merged = t.path("merged.bin");
    let out = run(&[
        "merge".as_ref(),
        merged.as_os_str(),
        g11.as_os_str(),
        other.as_os_str(),
        "--json".as_ref(),
    ]);
    let v = json_of(&out);
    check(&docs, "Conflict", &v["conflicts"][0]);
}
