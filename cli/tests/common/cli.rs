//! Helpers for the tests that run the `mace-cache` binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::golden;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mace-cache");

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// Creates a directory with a name unique to this process and call.
    pub fn new(tag: &str) -> TempDir {
        TempDir(super::temp_dir(&format!("cli-{tag}")))
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        self.0.path()
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `bytes` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write temp file");
        p
    }

    /// Copies a golden file into the directory and returns the copy's path.
    pub fn copy_golden(&self, name: &str) -> PathBuf {
        self.write(name, &golden(name))
    }
}

/// Runs the binary with `args`.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run mace-cache")
}

/// The exit code of a finished run (a signal is a failure).
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {out:?}"))
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses stdout as exactly one JSON object.
pub fn json_of(out: &Output) -> Value {
    let text = stdout(out);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {text:?}"));
    assert!(v.is_object(), "not an object: {text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    v
}

/// Asserts a `--json` run failed: exit 2, one `mace-cache: ` line on stderr, and on stdout exactly
/// one JSON object `{"error": <that line's message>, "exit_code": 2}`; returns the message.
pub fn json_error_of(out: &Output, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{what}: exit code; stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "{what}: one stderr line: {err:?}");
    assert!(err.starts_with("mace-cache: "), "{what}: prefix: {err:?}");
    assert!(!err.contains("panicked"), "{what}: panic: {err:?}");
    let v = json_of(out);
    assert_eq!(v["exit_code"], 2, "{what}: {v}");
    let msg = v["error"].as_str().expect("error is a string").to_string();
    assert_eq!(
        err.trim_end().strip_prefix("mace-cache: "),
        Some(msg.as_str()),
        "{what}: the JSON error is the stderr line"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{what}: {v}");
    msg
}

/// Runs the binary with `args` and `input` on its standard input.
pub fn run_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mace-cache");
    let mut stdin = child.stdin.take().expect("stdin");
    // A command that fails before reading closes the pipe early: not an error here.
    if let Err(e) = stdin.write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(stdin);
    child.wait_with_output().expect("wait for mace-cache")
}

/// Asserts a run failed cleanly: exit 2, exactly one `mace-cache: ` line on stderr (no panic, no
/// backtrace), nothing on stdout.
pub fn assert_fails_cleanly(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{what}: exit code; stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "{what}: one stderr line: {err:?}");
    assert!(err.starts_with("mace-cache: "), "{what}: prefix: {err:?}");
    assert!(err.ends_with('\n'), "{what}: newline: {err:?}");
    assert!(!err.contains("panicked"), "{what}: panic: {err:?}");
    assert!(
        !err.contains("RUST_BACKTRACE"),
        "{what}: backtrace: {err:?}"
    );
    assert!(out.stdout.is_empty(), "{what}: stdout {:?}", stdout(out));
}

/// Runs `inspect --json` on `path` with `extra` arguments: the parsed report and the exit code.
pub fn inspect_json(path: &Path, extra: &[&str]) -> (Value, i32) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["inspect".as_ref(), path.as_os_str(), "--json".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let out = run(&args);
    assert!(
        !stderr(&out).contains("panicked"),
        "panic: {}",
        stderr(&out)
    );
    (json_of(&out), code(&out))
}
