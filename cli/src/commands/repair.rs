//! `repair IN [OUT]`: every entry that verifies, written as a fresh file; in place, the original
//! is kept first as a backup that is never replaced.

use crate::cache::{self, plural};
use crate::report::Repair;
use crate::{emit, emit_json, Fail};
use mace_storage::format::Format;
use mace_storage::io::sibling;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How many numbered backups (`IN.bak.1` ...) are tried before giving up.
const MAX_BACKUPS: u32 = 1000;

/// Runs `repair`.
pub fn run(
    input: &Path,
    output: Option<&Path>,
    to: Option<Format>,
    json: bool,
) -> Result<i32, Fail> {
    if cache::is_stdin(input) && output.is_none() {
        return Err(Fail(
            "repair - needs OUT: standard input cannot be repaired in place".to_string(),
        ));
    }
    let target = output.unwrap_or(input);
    let _lock = cache::lock_existing(target)?;
    let inp = cache::load(input)?;
    let d = &inp.decoded;
    let to = to.unwrap_or_else(|| cache::default_format(d.format));
    let entries = cache::sorted_entries(&inp);
    let entries = cache::entries_in(&entries);
    // Encode before touching anything, so an encoding error leaves every file as it was.
    let bytes = cache::encode(target, to, &entries, d.generation.unwrap_or(0))?;
    let backup = match output {
        Some(_) => None,
        None => Some(keep_backup(input)?),
    };
    let written = cache::write_atomically(target, &bytes)?;
    let r = Repair {
        input: inp.name.clone(),
        output: target.display().to_string(),
        backup: backup.as_ref().map(|b| b.display().to_string()),
        format: d.format.name(),
        to: to.name(),
        intact: d.damage.intact,
        entries_kept: entries.len() as u64,
        entries_dropped: d.damage.entries_dropped,
        bytes_ignored: d.damage.bytes_ignored,
        bytes_written: written,
        notes: d.damage.notes.clone(),
    };
    if json {
        emit_json(&r)?;
    } else {
        emit(&text(&r)?)?;
    }
    Ok(cache::status(d))
}

/// The human-readable report.
fn text(r: &Repair) -> Result<String, Fail> {
    let mut s = String::new();
    let state = if r.intact { "intact" } else { "damaged" };
    writeln!(
        s,
        "{}: {}, {state}: {} kept, {} dropped, {} ignored",
        r.input,
        r.format,
        plural(r.entries_kept, "entry", "entries"),
        r.entries_dropped,
        plural(r.bytes_ignored, "byte", "bytes")
    )?;
    for note in &r.notes {
        writeln!(s, "  - {note}")?;
    }
    write!(
        s,
        "wrote {} ({}, {}, {})",
        r.output,
        r.to,
        plural(r.entries_kept, "entry", "entries"),
        plural(r.bytes_written, "byte", "bytes")
    )?;
    match &r.backup {
        Some(b) => writeln!(s, "; the original is kept as {b}")?,
        None => s.push('\n'),
    }
    Ok(s)
}

/// Keeps `path`'s current file under the first free name of `path.bak`, `path.bak.1`, ... while
/// `path` stays in place, and returns that name. An existing backup is never replaced: a second
/// repair must not overwrite the original with the first repair's result.
fn keep_backup(path: &Path) -> Result<PathBuf, Fail> {
    let first = sibling(path, ".bak");
    for n in 0..MAX_BACKUPS {
        let backup = if n == 0 {
            first.clone()
        } else {
            sibling(&first, &format!(".{n}"))
        };
        match create_backup(path, &backup) {
            Ok(()) => return Ok(backup),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Fail(format!(
                    "cannot keep {} as {}: {e}",
                    path.display(),
                    backup.display()
                )))
            }
        }
    }
    Err(Fail(format!(
        "cannot keep {}: {} and {MAX_BACKUPS} numbered backups exist already",
        path.display(),
        first.display()
    )))
}

/// Makes `backup` a new name of `path`'s file (a hard link), or a durable copy where links are not
/// supported; fails with `AlreadyExists` if `backup` exists.
fn create_backup(path: &Path, backup: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(path, backup) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            let mut from = std::fs::File::open(path)?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(backup)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()
        }
        other => other,
    }
}
