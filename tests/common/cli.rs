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
