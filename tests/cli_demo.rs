//! The demo's messages for a newcomer: without OpenCL one line says how to get a device, the
//! damage report explains why it counts entries rather than programs, and `--dir` keeps the cache
//! (and says where) while the default temporary directory is removed (and says so).

mod common;

use common::cli::*;

const NO_LIBRARY: &str = "/nonexistent/libOpenCL.so";

#[test]
fn without_opencl_the_demo_says_how_to_get_a_device() {
    let out = run(&["demo", "--opencl-library", NO_LIBRARY]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let skipped: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("OpenCL part skipped: "))
        .collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains("apt-get install pocl-opencl-icd") && skipped[0].contains(NO_LIBRARY),
        "{text}"
    );
    // 8 stand-in programs: 16 entries, and the platform-info entry.
    assert!(
        text.contains("(17 entries for 8 programs: each program is its binary and its source hash, and 1 more"),
        "{text}"
    );
    assert!(text.contains("`--dir DIR` keeps the cache"), "{text}");
}

#[test]
fn the_demo_with_dir_keeps_the_cache_and_says_where() {
    let t = TempDir::new("demo-dir");
    let dir = t.path("kept");
    let out = run(&[
        "demo".as_ref(),
        "--opencl-library".as_ref(),
        NO_LIBRARY.as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let file = dir.join("mace_cl_compiled_program.bin");
    assert!(file.is_file(), "the cache is kept");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("mace-cache inspect {}", file.display())),
        "{text}"
    );

    let out = run(&[
        "demo".as_ref(),
        "--opencl-library".as_ref(),
        NO_LIBRARY.as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["dir_kept"], true);
    let out = run(&["demo", "--opencl-library", NO_LIBRARY, "--json"]);
    assert_eq!(json_of(&out)["dir_kept"], false);
}
