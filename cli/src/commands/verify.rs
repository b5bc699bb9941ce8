//! `verify FILE`: a one-line verdict.

use crate::cache::{self, damage_summary, plural};
use crate::report::Verify;
use crate::{emit, emit_json, Fail};
use std::path::Path;

/// Runs `verify`.
pub fn run(path: &Path, json: bool) -> Result<i32, Fail> {
    let input = cache::load(path)?;
    let d = &input.decoded;
    let r = Verify {
        path: input.name.clone(),
        format: d.format.name(),
        intact: d.damage.intact,
        entries_kept: d.entries.len() as u64,
        entries_dropped: d.damage.entries_dropped,
        bytes_ignored: d.damage.bytes_ignored,
        notes: d.damage.notes.clone(),
    };
    if json {
        emit_json(&r)?;
    } else if r.intact {
        emit(&format!(
            "{}: intact ({}, {})\n",
            r.path,
            r.format,
            plural(r.entries_kept, "entry", "entries")
        ))?;
    } else {
        emit(&format!(
            "{}: damaged ({}): {}\n",
            r.path,
            r.format,
            damage_summary(r.entries_kept, r.entries_dropped, &r.notes)
        ))?;
    }
    Ok(cache::status(d))
}
