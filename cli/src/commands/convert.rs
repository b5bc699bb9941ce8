//! `convert IN OUT`: rewrite every kept entry of IN to OUT, atomically.

use crate::args::Tuned;
use crate::cache::{self, damage_summary, plural};
use crate::report::Convert;
use crate::{emit_json, Fail};
use mace_storage::format::Format;
use std::path::Path;

/// Runs `convert`.
pub fn run(
    input: &Path,
    output: &Path,
    to: Option<Format>,
    flags: Tuned,
    json: bool,
) -> Result<i32, Fail> {
    // Taken before reading, so that reading IN == OUT and replacing it is one step for an app.
    let _lock = cache::lock_existing(output)?;
    let inp = cache::load(input)?;
    let d = &inp.decoded;
    let mut entries = cache::sorted_entries(&inp);
    let (tuned, tuned_note) = cache::resolve_tuned(&inp.name, &mut entries, flags)?;
    let to = to.unwrap_or_else(|| cache::default_format(d.format));
    let entries = cache::entries_in(&entries);
    let bytes = cache::encode(output, to, &entries, d.generation.unwrap_or(0))?;
    let written = cache::write_atomically(output, &bytes)?;
    let mut notes = d.damage.notes.clone();
    notes.extend(tuned_note);
    let r = Convert {
        input: inp.name.clone(),
        output: output.display().to_string(),
        from: d.format.name(),
        to: to.name(),
        tuned,
        entries_written: entries.len() as u64,
        bytes_written: written,
        intact: d.damage.intact,
        entries_dropped: d.damage.entries_dropped,
        bytes_ignored: d.damage.bytes_ignored,
        notes,
    };
    if json {
        emit_json(&r)?;
    } else {
        let state = if r.intact {
            "intact".to_string()
        } else {
            format!(
                "damaged: {}",
                damage_summary(r.entries_written, r.entries_dropped, &d.damage.notes)
            )
        };
        let tuned = if r.tuned { ", tuned parameters" } else { "" };
        eprintln!(
            "{} ({}, {state}) -> {} ({}{tuned}): {}, {}",
            r.input,
            r.from,
            r.output,
            r.to,
            plural(r.entries_written, "entry", "entries"),
            plural(r.bytes_written, "byte", "bytes")
        );
    }
    Ok(cache::status(d))
}
