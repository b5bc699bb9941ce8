//! Integration tests of `mace-cache export-c`: the C++ source it writes compiles and gives back the
//! input byte for byte, with its JSON report and its refusals.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::cli::*;
use common::golden;

/// Writes the test program that prints the embedded bytes to a file, calling `load`/`size`.
fn write_main(t: &TempDir, load: &str, size: &str) -> PathBuf {
    t.write(
        "main.cc",
        format!(
            "#include <stddef.h>\n#include <stdio.h>\n\n\
             namespace mace {{\nconst unsigned char *{load}();\nsize_t {size}();\n}}  // namespace mace\n\n\
             int main(int argc, char **argv) {{\n\
             \x20 if (argc != 2) return 2;\n\
             \x20 FILE *f = fopen(argv[1], \"wb\");\n\
             \x20 if (f == NULL) return 3;\n\
             \x20 const size_t n = mace::{size}();\n\
             \x20 if (n != 0 && fwrite(mace::{load}(), 1, n, f) != n) return 4;\n\
             \x20 return fclose(f) == 0 ? 0 : 5;\n}}\n"
        )
        .as_bytes(),
    )
}

/// Runs g++ with MACE's flags and `args`, asserting success.
fn gxx(args: &[&OsStr]) {
    let out = Command::new("g++")
        .args([
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-fno-exceptions",
            "-fno-rtti",
        ])
        .args(args)
        .output()
        .expect("run g++ (a C++ compiler is needed for this test)");
    assert!(
        out.status.success(),
        "g++ {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exports `input`, compiles it into an object, links it with a program that writes the bytes
/// back out, runs it and returns what it wrote.
fn export_compile_run(t: &TempDir, input: &Path, names: Option<(&str, &str)>) -> Vec<u8> {
    let cc = t.path("binary.cc");
    let mut args: Vec<&OsStr> = vec!["export-c".as_ref(), input.as_os_str(), cc.as_os_str()];
    if let Some((load, size)) = names {
        args.extend([
            "--load-func".as_ref(),
            OsStr::new(load),
            "--size-func".as_ref(),
            OsStr::new(size),
        ]);
    }
    let r = run(&args);
    assert!(code(&r) <= 1, "export-c: {}", stderr(&r));
    assert!(r.stdout.is_empty(), "summary goes to stderr");
    let source = std::fs::read_to_string(&cc).expect("source written");
    let (load, size) = names.unwrap_or(("LoadOpenCLBinary", "OpenCLBinarySize"));
    assert!(source.contains("namespace mace {"), "{source:.400}");
    assert!(
        source.contains(&format!("const unsigned char *{load}()")),
        "{source:.400}"
    );
    assert!(
        source.contains(&format!("size_t {size}()")),
        "{source:.400}"
    );
    assert!(source.contains("static const unsigned char kData["));
    assert!(
        !source.contains(&t.dir().display().to_string()),
        "no machine paths"
    );

    let obj = t.path("binary.o");
    // Strictly standard C++ too (a zero-size array, a GNU extension, would fail here).
    gxx(&[
        "-pedantic-errors".as_ref(),
        "-Wextra".as_ref(),
        "-fsyntax-only".as_ref(),
        cc.as_os_str(),
    ]);
    gxx(&[
        "-c".as_ref(),
        cc.as_os_str(),
        "-o".as_ref(),
        obj.as_os_str(),
    ]);
    let main = write_main(t, load, size);
    let main_obj = t.path("main.o");
    gxx(&[
        "-c".as_ref(),
        main.as_os_str(),
        "-o".as_ref(),
        main_obj.as_os_str(),
    ]);
    let exe = t.path("dump");
    gxx(&[
        main_obj.as_os_str(),
        obj.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
    ]);
    let dumped = t.path("dumped.bin");
    let status = Command::new(&exe)
        .arg(&dumped)
        .status()
        .expect("run the linked program");
    assert!(status.success(), "{status:?}");
    std::fs::read(&dumped).expect("dumped")
}

/// The exported source compiles with MACE's flags, and linked into a program reproduces the input
/// file byte for byte: a real cache, a tuned file, an empty file, and with custom names.
#[test]
fn export_c_compiles_and_reproduces_the_input_exactly() {
    let t = TempDir::new("export");
    for name in ["mace-1.1-cache.bin", "mace-1.0-tuned-params.bin"] {
        let input = t.copy_golden(name);
        assert!(
            export_compile_run(&t, &input, None) == golden(name),
            "{name}: bytes differ"
        );
    }
    let empty = t.write("empty.bin", b"");
    assert_eq!(export_compile_run(&t, &empty, None), b"");
    let source = std::fs::read_to_string(t.path("binary.cc")).expect("source");
    assert!(source.contains("kData[1]"), "{source}");
    let tuned = t.copy_golden("mace-1.1-tuned-params.bin");
    assert!(
        export_compile_run(
            &t,
            &tuned,
            Some(("LoadOpenCLParameter", "OpenCLParameterSize"))
        ) == golden("mace-1.1-tuned-params.bin")
    );
    // The source has about 16 bytes per line.
    let source = std::fs::read_to_string(t.path("binary.cc")).expect("source");
    let lines = source.lines().filter(|l| l.trim_start().starts_with("0x"));
    assert!(lines.clone().all(|l| l.matches("0x").count() <= 16));
    assert_eq!(
        lines.map(|l| l.matches("0x").count()).sum::<usize>(),
        golden("mace-1.1-tuned-params.bin").len()
    );
}

/// `export-c --json` reports what was embedded; bad names and non-caches are exit 2, nothing written.
#[test]
fn export_c_json_and_refusals() {
    let t = TempDir::new("export-bad");
    let input = t.copy_golden("mace-1.0-cache.bin");
    let cc = t.path("out.cc");
    let r = run(&[
        "export-c".as_ref(),
        input.as_os_str(),
        cc.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let v = json_of(&r);
    assert_eq!(v["format"], "mace-1.0");
    assert_eq!(v["bytes"], golden("mace-1.0-cache.bin").len());
    assert_eq!(v["sha256"], sha256sum(&input), "the hash sha256sum prints");
    assert_eq!(v["load_func"], "LoadOpenCLBinary");
    std::fs::remove_file(&cc).expect("remove");

    for (opt, name) in [
        ("--load-func", "1abc"),
        ("--load-func", "my-func"),
        ("--size-func", "class"),
        ("--size-func", ""),
        ("--load-func", "__reserved"),
        ("--load-func", "OpenCLBinarySize"),
        ("--size-func", "kData"),
    ] {
        let r = run(&[
            "export-c".as_ref(),
            input.as_os_str(),
            cc.as_os_str(),
            opt.as_ref(),
            name.as_ref(),
        ]);
        assert_fails_cleanly(&r, &format!("{opt} {name:?}"));
        assert!(!cc.exists(), "{opt} {name:?}: nothing written");
    }
    let junk = t.write("junk.bin", &[0x5a; 300]);
    let r = run(&["export-c".as_ref(), junk.as_os_str(), cc.as_os_str()]);
    assert_fails_cleanly(&r, "not a cache");
    assert!(stderr(&r).contains("not a MACE cache"), "{}", stderr(&r));
    assert!(!cc.exists());
}

/// The SHA-256 of `path` as coreutils' `sha256sum` prints it (an implementation independent of
/// the tool's).
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).expect("utf-8")[..64].to_string()
}
