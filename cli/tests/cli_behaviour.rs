//! What a user expects of the command line as a whole: JSON for every outcome, options anywhere,
//! standard input, files that are not caches, backups that are never replaced, merge not replacing
//! another cache, the store's lock, a checksum that identifies the file, tuned files recognised,
//! MACE 1.0 inputs kept readable by MACE 1.0, and the demo's explanations.

use mace_storage::io::side_files::SideFiles;
use mace_storage::io::{posix::PosixFs, sibling};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cli::*;
use common::{golden, golden_dir};

/// Files that are no cache but that the decoder reads as a damaged one with nothing in it.
fn not_caches() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "text.txt",
            b"\nThis is a text file.\nIt starts with a newline.\n".to_vec(),
        ),
        ("ff.bin", vec![0xff; 8]),
    ]
}

/// A file that is not a cache is "not a MACE cache" with exit 2 for every command, text and JSON,
/// never "damaged, 0 kept, 0 dropped", and nothing is written or touched.
#[test]
fn a_file_that_is_not_a_cache_is_refused_by_every_command() {
    let t = TempDir::new("notcache");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    for (name, bytes) in not_caches() {
        let p = t.write(name, &bytes);
        let out = t.path("out.bin");
        let cc = t.path("out.cc");
        let cases: Vec<Vec<&OsStr>> = vec![
            vec!["inspect".as_ref(), p.as_os_str()],
            vec!["verify".as_ref(), p.as_os_str()],
            vec!["convert".as_ref(), p.as_os_str(), out.as_os_str()],
            vec!["export-c".as_ref(), p.as_os_str(), cc.as_os_str()],
            vec!["repair".as_ref(), p.as_os_str()],
            vec!["repair".as_ref(), p.as_os_str(), out.as_os_str()],
            vec![
                "merge".as_ref(),
                out.as_os_str(),
                g11.as_os_str(),
                p.as_os_str(),
            ],
        ];
        for args in cases {
            let r = run(&args);
            let err = stderr(&r);
            assert_eq!(code(&r), 2, "{name} {args:?}: {err}");
            assert!(err.contains("not a MACE cache"), "{name} {args:?}: {err}");
            assert!(!err.contains("damaged"), "{name} {args:?}: {err}");
            assert!(r.stdout.is_empty(), "{name} {args:?}: {}", stdout(&r));
            let mut json = args.clone();
            json.push("--json".as_ref());
            let msg = json_error_of(&run(&json), &format!("{name} {args:?} --json"));
            assert!(msg.contains("not a MACE cache"), "{msg}");
        }
        assert!(
            std::fs::read(&p).expect("still there") == bytes,
            "{name} left alone"
        );
        assert!(!sibling(&p, ".bak").exists(), "{name}: no backup made");
        assert!(!out.exists() && !cc.exists(), "{name}: nothing written");
    }
    // A damaged cache is still a damaged cache: a stock 1.1 file with a flipped byte.
    let mut bytes = golden("mace-1.1-cache.bin");
    bytes[100] ^= 1;
    let p = t.write("flipped.bin", &bytes);
    let r = run(&["verify".as_ref(), p.as_os_str()]);
    assert_eq!(code(&r), 1, "{}", stderr(&r));
}

/// With --json every outcome is one JSON document on stdout: reports, usage errors, read errors.
#[test]
fn json_errors_are_one_json_document_on_stdout() {
    let t = TempDir::new("jsonerr");
    let missing = t.path("missing.bin");
    let m = missing.to_str().expect("utf-8");
    for args in [
        vec!["--json", "inspect", m],
        vec!["verify", m, "--json"],
        vec!["--json", "inspect"],
        vec!["--json", "frobnicate"],
        vec!["--json"],
        vec!["inspect", "--json", "--bogus", m],
        vec!["convert", "--json", m, "out.bin", "--to", "bogus"],
    ] {
        let msg = json_error_of(&run(&args), &format!("{args:?}"));
        assert!(!msg.is_empty(), "{args:?}");
    }
    let msg = json_error_of(&run(&["--json", "verify", m]), "missing file");
    assert!(msg.contains("cannot read"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

/// `--json` works before the command, after it and after the file; `help CMD` is `CMD --help`.
#[test]
fn global_options_anywhere_and_help_command() {
    let g = golden_dir().join("mace-1.1-cache.bin");
    let g = g.to_str().expect("utf-8");
    let want = stdout(&run(&["verify", g, "--json"]));
    for args in [
        vec!["--json", "verify", g],
        vec!["verify", "--json", g],
        vec!["verify", g, "--json"],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
        assert_eq!(json_of(&out)["intact"], true);
    }
    for cmd in [
        "inspect", "verify", "convert", "merge", "export-c", "repair", "demo",
    ] {
        let a = run(&["help", cmd]);
        let b = run(&[cmd, "--help"]);
        assert_eq!(code(&a), 0, "help {cmd}");
        assert_eq!(stdout(&a), stdout(&b), "help {cmd} is {cmd} --help");
        assert!(stdout(&a).contains("--json"), "{cmd}: global option listed");
    }
}

/// `-` reads standard input for the commands that read one input.
#[test]
fn dash_reads_standard_input() {
    let t = TempDir::new("stdin");
    let g11 = golden("mace-1.1-cache.bin");
    let out = run_stdin(&["inspect", "-", "--json"], &g11);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["path"], "-");
    assert_eq!(v["entries"].as_array().expect("entries").len(), 11);

    let out = run_stdin(&["verify", "-"], &g11);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("-: intact (mace-1.1, 11 entries)"));

    let o = t.path("converted.bin");
    let out = run_stdin(&["convert".as_ref(), "-".as_ref(), o.as_os_str()], &g11);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json_of(&run(&["verify".as_ref(), o.as_os_str(), "--json".as_ref()]));
    assert_eq!(
        (v["format"].as_str(), v["entries_kept"].as_u64()),
        (Some("checked-1.1"), Some(11))
    );

    let cc = t.path("embedded.cc");
    let out = run_stdin(&["export-c".as_ref(), "-".as_ref(), cc.as_os_str()], &g11);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read_to_string(&cc)
        .expect("cc")
        .contains("from standard input"));

    let mut damaged = golden("mace-1.0-cache.bin");
    damaged.truncate(damaged.len() - 1000);
    let r = t.path("repaired.bin");
    let out = run_stdin(
        &[
            "repair".as_ref(),
            "-".as_ref(),
            r.as_os_str(),
            "--json".as_ref(),
        ],
        &damaged,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(json_of(&out)["to"], "checked-1.0");

    let out = run_stdin(&["repair", "-"], &damaged);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("needs OUT"), "{}", stderr(&out));
}

/// Repairing in place twice keeps the original: backups get numbered, none is replaced.
#[test]
fn repair_twice_in_place_never_replaces_a_backup() {
    let t = TempDir::new("repair2");
    let mut bytes = golden("mace-1.0-cache.bin");
    bytes.truncate(bytes.len() - 1000);
    let p = t.write("cache.bin", &bytes);
    let mut versions = vec![bytes.clone()];
    for (i, bak) in ["cache.bin.bak", "cache.bin.bak.1", "cache.bin.bak.2"]
        .iter()
        .enumerate()
    {
        let r = run(&["repair".as_ref(), p.as_os_str(), "--json".as_ref()]);
        assert_eq!(code(&r), if i == 0 { 1 } else { 0 }, "{}", stderr(&r));
        assert_eq!(json_of(&r)["backup"], t.path(bak).display().to_string());
        versions.push(std::fs::read(&p).expect("repaired"));
    }
    for (i, bak) in ["cache.bin.bak", "cache.bin.bak.1", "cache.bin.bak.2"]
        .iter()
        .enumerate()
    {
        assert!(
            std::fs::read(t.path(bak)).expect("backup") == versions[i],
            "{bak} holds the file as it was before repair {}",
            i + 1
        );
    }
    assert!(std::fs::read(t.path("cache.bin.bak")).expect("bak") == bytes);
}

/// merge refuses to replace an existing file that is none of its inputs, unless --force; OUT may
/// be one of the inputs.
#[test]
fn merge_does_not_replace_another_cache_without_force() {
    let t = TempDir::new("mergeout");
    let a = t.copy_golden("mace-1.1-cache.bin");
    let other = t.copy_golden("mace-1.0-cache.bin");
    let before = std::fs::read(&other).expect("other");
    let r = run(&["merge".as_ref(), other.as_os_str(), a.as_os_str()]);
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(stderr(&r).contains("--force"), "{}", stderr(&r));
    assert!(
        std::fs::read(&other).expect("other") == before,
        "not replaced"
    );

    let r = run(&[
        "merge".as_ref(),
        other.as_os_str(),
        a.as_os_str(),
        "--force".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(
        std::fs::read(&other).expect("other") != before,
        "replaced with --force"
    );

    // OUT among the inputs: merged into, no --force needed.
    let b = t.copy_golden("mace-1.0-cache.bin");
    let r = run(&[
        "merge".as_ref(),
        b.as_os_str(),
        b.as_os_str(),
        a.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["entries_written"], 11);
}

/// The in-place writers take the store's lock `<file>.lock`: while another process holds it they
/// wait, the file untouched, and finish once it is released.
#[test]
fn in_place_writers_wait_for_the_stores_lock() {
    let t = TempDir::new("lock");
    let p = t.copy_golden("mace-1.1-cache.bin");
    let extra = t.copy_golden("mace-1.0-cache.bin");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["repair".as_ref(), p.as_os_str()],
        vec!["convert".as_ref(), p.as_os_str(), p.as_os_str()],
        vec![
            "merge".as_ref(),
            p.as_os_str(),
            p.as_os_str(),
            extra.as_os_str(),
        ],
    ];
    for args in cases {
        let before = std::fs::read(&p).expect("cache");
        let lock = SideFiles::open(&PosixFs, &p)
            .and_then(|side| side.lock(None))
            .expect("lock");
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Its stderr, line by line: it says so once it has waited for the lock for a second.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let lines = std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in reader.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiting = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("waiting for") => break line,
                Ok(_) => continue,
                Err(e) => panic!("{args:?}: no waiting message ({e:?})"),
            }
        };
        assert!(waiting.contains(".lock"), "{args:?}: {waiting}");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{args:?} did not wait"
        );
        assert!(
            std::fs::read(&p).expect("cache") == before,
            "{args:?} wrote under the lock"
        );
        drop(lock);
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "{args:?}");
        lines.join().expect("stderr reader");
        assert!(
            std::fs::read(&p).expect("cache") != before,
            "{args:?} wrote after the lock"
        );
    }
    // A lock held past --lock-timeout: the write gives up, exit 2, the file untouched.
    let before = std::fs::read(&p).expect("cache");
    let _held = SideFiles::open(&PosixFs, &p)
        .and_then(|side| side.lock(None))
        .expect("lock");
    let started = Instant::now();
    let out = run(&[
        "--lock-timeout".as_ref(),
        "1".as_ref(),
        "repair".as_ref(),
        p.as_os_str(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot lock"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(std::fs::read(&p).expect("cache"), before);
}

/// export-c prints a hash that tells files apart: two different 1.1 files (whose whole-file CRC-32
/// is the same residue) get different SHA-256s, each what sha256sum prints, named as SHA-256.
#[test]
fn export_c_prints_a_hash_that_identifies_the_file() {
    let t = TempDir::new("exporthash");
    let mut seen = Vec::new();
    for name in [
        "mace-1.1-cache.bin",
        "mace-1.1-tuned-params.bin",
        "mace-1.1-empty.bin",
    ] {
        let input = t.copy_golden(name);
        let cc = t.path("out.cc");
        let r = run(&["export-c".as_ref(), input.as_os_str(), cc.as_os_str()]);
        assert_eq!(code(&r), 0, "{}", stderr(&r));
        let sum = Command::new("sha256sum")
            .arg(&input)
            .output()
            .expect("sha256sum");
        let sum = String::from_utf8(sum.stdout).expect("utf-8")[..64].to_string();
        let err = stderr(&r);
        assert!(err.contains(&format!("SHA-256 {sum}")), "{name}: {err}");
        assert!(!err.contains("2144df1c"), "{name}: the CRC residue: {err}");
        let source = std::fs::read_to_string(&cc).expect("source");
        assert!(source.contains(&sum), "{name}: the hash in the source");
        let v = json_of(&run(&[
            "export-c".as_ref(),
            input.as_os_str(),
            cc.as_os_str(),
            "--json".as_ref(),
        ]));
        assert_eq!(v["sha256"], sum);
        assert!(!seen.contains(&sum), "{name}: same hash as another file");
        seen.push(sum);
    }
}

/// Tuned-parameter files are recognised from their keys in inspect, convert and merge; a program
/// cache is not taken for one; MACE 1.0 inputs are written, by default, as MACE 1.0 reads them.
#[test]
fn tuned_files_recognised_and_mace_10_inputs_stay_readable_by_mace_10() {
    let t = TempDir::new("tunedauto");
    let g10 = t.copy_golden("mace-1.0-tuned-params.bin");
    let (v, text): (Value, String) = {
        let j = run(&["inspect".as_ref(), g10.as_os_str(), "--json".as_ref()]);
        let s = run(&["inspect".as_ref(), g10.as_os_str()]);
        (json_of(&j), stdout(&s))
    };
    assert_eq!(v["tuned"], true);
    assert!(
        text.contains("MACE_OPENCL_QUEUE_WINDOW_SIZE: [16]"),
        "{text}"
    );
    assert!(text.contains("recognised as tuned"), "{text}");
    let v = json_of(&run(&[
        "inspect".as_ref(),
        golden_dir().join("mace-1.0-cache.bin").as_os_str(),
        "--json".as_ref(),
    ]));
    assert_eq!(v["tuned"], false, "a program cache is not a tuned file");

    let out = t.path("merged.bin");
    let extra = t.copy_golden("mace-1.0-cache.bin");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        extra.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(
        json_of(&r)["format"],
        "checked-1.0",
        "1.0 inputs: a format MACE 1.0 reads"
    );
    std::fs::remove_file(&out).expect("remove");
    let g11 = t.copy_golden("mace-1.1-cache.bin");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        extra.as_os_str(),
        g11.as_os_str(),
        "--json".as_ref(),
    ]);
    let v = json_of(&r);
    assert_eq!(v["format"], "checked-1.1", "{v}");
    assert!(
        v["notes"].to_string().contains("both MACE generations"),
        "{v}"
    );
    std::fs::remove_file(&out).expect("remove");
    let r = run(&[
        "merge".as_ref(),
        out.as_os_str(),
        g10.as_os_str(),
        "--to".as_ref(),
        "mace-1.1".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["inputs"][0]["tuned"], true);
    assert!(std::fs::read(&out).expect("out") == golden("mace-1.1-tuned-params.bin"));

    let conv = t.path("conv.bin");
    let r = run(&[
        "convert".as_ref(),
        extra.as_os_str(),
        conv.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(json_of(&r)["to"], "checked-1.0");
}

/// Without OpenCL the demo says in one line how to get a device; it explains its counts, and
/// `--dir` keeps the cache for a look afterwards.
#[test]
fn demo_explains_itself_and_keeps_the_cache_with_dir() {
    let t = TempDir::new("demo-explain");
    let dir = t.path("kept");
    let out = run(&[
        "demo".as_ref(),
        "--opencl-library".as_ref(),
        "/nonexistent/libOpenCL.so".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let skipped: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("OpenCL part skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains("apt-get install pocl-opencl-icd"),
        "{text}"
    );
    let file = dir.join("mace_cl_compiled_program.bin");
    assert!(
        text.contains(&format!("mace-cache inspect {}", file.display())),
        "{text}"
    );
    let v = json_of(&run(&[
        "inspect".as_ref(),
        file.as_os_str(),
        "--json".as_ref(),
    ]));
    let n = v["entries"].as_array().expect("entries").len();
    // 8 stand-in binaries, their 8 source hashes, the platform info.
    assert_eq!(n, 17);
    assert!(
        text.contains("8 programs, 17 entries: 8 program binaries + 8 source hashes"),
        "{text}"
    );

    let out = run(&[
        "demo",
        "--opencl-library",
        "/nonexistent/libOpenCL.so",
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["kept"], false);
    assert_eq!(v["final_entries"]["total"], 17);
    assert_eq!(v["final_entries"]["binaries"], 8);
    assert_eq!(v["final_entries"]["source_hashes"], 8);
    assert_eq!(v["final_entries"]["device"], 1);
    assert!(v["opencl"]["skipped"]
        .as_str()
        .expect("reason")
        .contains("pocl-opencl-icd"));
    assert!(!Path::new(v["dir"].as_str().expect("dir")).exists());
}
