//! `merge OUT IN...`: the union of the inputs' entries, the first input winning on duplicate keys,
//! written to OUT atomically.

use crate::args::Tuned;
use crate::cache::{self, damage_summary, hex, plural, printable, Entry, Input};
use crate::report::{Conflict, Merge, MergeInput};
use crate::{emit, emit_json, Fail, EXIT_DAMAGED, EXIT_INTACT};
use mace_storage::format::{EntryIn, Format, ValueKind, PLATFORM_INFO_KEY};
use std::collections::btree_map::{BTreeMap, Entry as MapEntry};
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Progress lines on stderr, shown only once the merge has taken more than a second.
struct Progress(Instant);

impl Progress {
    /// Prints the line `msg` builds, if the work has been long enough to need progress.
    fn line(&self, msg: impl FnOnce() -> String) {
        if self.0.elapsed() >= Duration::from_secs(1) {
            eprintln!("mace-cache merge: {}", msg());
        }
    }
}

/// Runs `merge`.
pub fn run(
    output: &Path,
    paths: &[std::path::PathBuf],
    to: Option<Format>,
    force: bool,
    flags: Tuned,
    json: bool,
) -> Result<i32, Fail> {
    check_output(output, paths, force)?;
    let _lock = cache::lock_existing(output)?;
    let progress = Progress(Instant::now());
    let mut inputs: Vec<Input> = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let input = cache::load(path)?;
        progress.line(|| {
            format!(
                "read {}/{}: {} ({}, {})",
                i + 1,
                paths.len(),
                input.name,
                input.decoded.format,
                plural(input.bytes.len() as u64, "byte", "bytes")
            )
        });
        inputs.push(input);
    }
    let mut notes = Vec::new();
    let mut per_input: Vec<Vec<Entry<'_>>> = inputs.iter().map(cache::sorted_entries).collect();
    let mut tuned = Vec::with_capacity(inputs.len());
    for (m, entries) in inputs.iter().zip(per_input.iter_mut()) {
        let (t, note) = cache::resolve_tuned(&m.name, entries, flags)?;
        tuned.push(t);
        notes.extend(note);
    }
    let platform_differs = check_platforms(&inputs, &per_input, force, &mut notes)?;
    let to = to.unwrap_or_else(|| default_format(&inputs, &mut notes));

    let mut merged: BTreeMap<&[u8], (usize, &[u8], ValueKind)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let (mut same, mut kind_upgrades) = (0u64, 0u64);
    let mut new_entries = vec![0u64; inputs.len()];
    for (i, entries) in per_input.iter().enumerate() {
        for e in entries {
            match merged.entry(e.key) {
                MapEntry::Vacant(v) => {
                    v.insert((i, e.value, e.kind));
                    new_entries[i] += 1;
                }
                MapEntry::Occupied(mut o) => {
                    let (first_input, value, kind) = o.get_mut();
                    if *value != e.value {
                        conflicts.push(Conflict {
                            key: String::from_utf8_lossy(e.key).into_owned(),
                            key_hex: hex(e.key),
                            kept_from: inputs[*first_input].name.clone(),
                            ignored_from: inputs[i].name.clone(),
                        });
                    } else {
                        same += 1;
                        // Format A cannot record that a value is a uint32 array; a file that did
                        // record it tells how the same bytes are meant.
                        if *kind != e.kind && e.kind == ValueKind::U32s {
                            *kind = ValueKind::U32s;
                            kind_upgrades += 1;
                        }
                    }
                }
            }
        }
    }
    if kind_upgrades > 0 {
        notes.push(format!(
            "{} the same bytes as uint32s in one input and as plain bytes in another: \
             kept them as uint32s (pass --tuned to merge mace-1.0 tuned-parameter files)",
            plural(kind_upgrades, "key held", "keys held")
        ));
    }
    let entries: Vec<EntryIn<'_>> = merged
        .iter()
        .map(|(key, (_, value, kind))| EntryIn::new(key, value, *kind))
        .collect();
    let bytes = cache::encode(output, to, &entries, 0)?;
    let written = cache::write_atomically(output, &bytes)?;
    progress.line(|| format!("wrote {} ({written} bytes)", output.display()));

    for m in inputs.iter().filter(|m| !m.decoded.damage.intact) {
        let d = &m.decoded;
        notes.push(format!(
            "{} is damaged ({}): {}; merged what verified",
            m.name,
            d.format,
            damage_summary(
                d.entries.len() as u64,
                d.damage.entries_dropped,
                &d.damage.notes
            )
        ));
    }
    let code = if inputs.iter().all(|m| m.decoded.damage.intact) {
        EXIT_INTACT
    } else {
        EXIT_DAMAGED
    };
    let report = Merge {
        output: output.display().to_string(),
        format: to.name(),
        entries_written: entries.len() as u64,
        bytes_written: written,
        inputs: inputs
            .iter()
            .enumerate()
            .map(|(i, m)| MergeInput {
                path: m.name.clone(),
                format: m.decoded.format.name(),
                intact: m.decoded.damage.intact,
                entries: per_input[i].len() as u64,
                entries_dropped: m.decoded.damage.entries_dropped,
                new_entries: new_entries[i],
                tuned: tuned[i],
                notes: m.decoded.damage.notes.clone(),
            })
            .collect(),
        duplicates_same_value: same,
        conflicts,
        platform_info_differs: platform_differs,
        notes,
    };
    if json {
        emit_json(&report)?;
    } else {
        emit(&text(&report)?)?;
    }
    Ok(code)
}

/// Refuses to replace an existing OUT that is none of the inputs, unless `force`: it may be
/// another device's cache that the user meant to list as an input.
fn check_output(output: &Path, inputs: &[std::path::PathBuf], force: bool) -> Result<(), Fail> {
    let Ok(out) = std::fs::metadata(output) else {
        return Ok(());
    };
    let is_input = inputs
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == out.dev() && m.ino() == out.ino()));
    if is_input || force {
        return Ok(());
    }
    Err(Fail(format!(
        "{} exists and is not one of the inputs: not replaced (list it as an input to merge it, \
         or --force to replace it)",
        output.display()
    )))
}

/// The format written without `--to`: checked-1.0 when every input with entries is a MACE 1.0
/// file (MACE 1.0 apps cannot read the 1.1 formats), else checked-1.1, with a note when the
/// inputs were of both generations.
fn default_format(inputs: &[Input], notes: &mut Vec<String>) -> Format {
    let gens: Vec<Format> = inputs
        .iter()
        .filter(|m| m.decoded.format != Format::Empty)
        .map(|m| cache::default_format(m.decoded.format))
        .collect();
    if !gens.is_empty() && gens.iter().all(|f| *f == Format::Checked10) {
        return Format::Checked10;
    }
    if gens.contains(&Format::Checked10) {
        notes.push(
            "the inputs are of both MACE generations: wrote checked-1.1, which MACE 1.0 apps \
             cannot read (--to checked-1.0 for them)"
                .to_string(),
        );
    }
    Format::Checked11
}

/// Checks that the inputs' platform-info values agree: a difference is refused unless `force`.
/// Returns whether they differ; adds notes on inputs that hold entries but no platform info.
fn check_platforms(
    inputs: &[Input],
    per_input: &[Vec<Entry<'_>>],
    force: bool,
    notes: &mut Vec<String>,
) -> Result<bool, Fail> {
    let platforms: Vec<Option<&[u8]>> = per_input
        .iter()
        .map(|es| {
            es.iter()
                .find(|e| e.key == PLATFORM_INFO_KEY)
                .map(|e| e.value)
        })
        .collect();
    let Some((first, reference)) = platforms
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.map(|v| (i, v)))
    else {
        return Ok(false);
    };
    let mut differs = false;
    for (i, p) in platforms.iter().enumerate() {
        match p {
            Some(v) if *v != reference => {
                differs = true;
                let (a, b) = (&inputs[first].name, &inputs[i].name);
                if !force {
                    return Err(Fail(format!(
                        "platform info differs: {a} has \"{}\" but {b} has \"{}\": their binaries \
                         were built for different GPUs or drivers (--force merges anyway, keeping {a}'s)",
                        printable(reference),
                        printable(v)
                    )));
                }
                notes.push(format!(
                    "platform info differs (--force): kept {a}'s \"{}\", ignored {b}'s \"{}\"",
                    printable(reference),
                    printable(v)
                ));
            }
            None if !per_input[i].is_empty() && !inputs_tuned(&per_input[i]) => {
                notes.push(format!(
                "{} has no platform-info entry: its entries were merged without a platform check",
                inputs[i].name
            ))
            }
            _ => {}
        }
    }
    Ok(differs)
}

/// Whether an input's entries are tuned parameters (which carry no platform info).
fn inputs_tuned(entries: &[Entry<'_>]) -> bool {
    entries.iter().all(|e| e.kind == ValueKind::U32s)
}

/// The human-readable report.
fn text(r: &Merge) -> Result<String, Fail> {
    let mut s = String::new();
    writeln!(
        s,
        "merged {} into {} ({}): {}, {}",
        plural(r.inputs.len() as u64, "file", "files"),
        r.output,
        r.format,
        plural(r.entries_written, "entry", "entries"),
        plural(r.bytes_written, "byte", "bytes")
    )?;
    for m in &r.inputs {
        let state = if m.intact {
            "intact".to_string()
        } else {
            format!(
                "damaged, {} dropped",
                plural(m.entries_dropped, "entry", "entries")
            )
        };
        writeln!(
            s,
            "  {}: {}, {state}, {}, {} new",
            m.path,
            m.format,
            plural(m.entries, "entry", "entries"),
            m.new_entries
        )?;
    }
    if r.duplicates_same_value > 0 {
        writeln!(
            s,
            "{} held by several inputs with the same value (written once)",
            plural(r.duplicates_same_value, "key", "keys")
        )?;
    }
    if !r.conflicts.is_empty() {
        writeln!(
            s,
            "{} with different values (the first input given wins):",
            plural(r.conflicts.len() as u64, "duplicate key", "duplicate keys")
        )?;
        for c in &r.conflicts {
            let key = cache::printable(&unhex(&c.key_hex));
            writeln!(
                s,
                "  \"{key}\": kept {}'s value, ignored {}'s",
                c.kept_from, c.ignored_from
            )?;
        }
    }
    for note in &r.notes {
        writeln!(s, "note: {note}")?;
    }
    Ok(s)
}

/// Decodes the lowercase hex this module wrote.
fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}
