//! `inspect FILE`: the format, every entry and the damage found.

use crate::args::Tuned;
use crate::cache::{self, hex, plural, printable};
use crate::report::{Inspect, InspectEntry};
use crate::{emit, emit_json, Fail};
use mace_storage::format::ValueKind;
use std::fmt::Write as _;
use std::path::Path;

/// Runs `inspect`.
pub fn run(path: &Path, flags: Tuned, json: bool) -> Result<i32, Fail> {
    let input = cache::load(path)?;
    let mut entries = cache::sorted_entries(&input);
    let stored: Vec<bool> = entries.iter().map(|e| e.kind == ValueKind::U32s).collect();
    let (tuned, note) = cache::resolve_tuned(&input.name, &mut entries, flags)?;
    let report = Inspect {
        path: input.name.clone(),
        format: input.decoded.format.name(),
        size: input.bytes.len() as u64,
        generation: input.decoded.generation,
        tuned,
        entries: entries
            .iter()
            .zip(stored)
            .map(|(e, stored_as_u32s)| InspectEntry {
                key_hex: hex(e.key),
                len: e.value.len() as u64,
                crc32: format!("{:08x}", crc32fast::hash(e.value)),
                uint32s: e.uint32s(),
                key: e.key.to_vec(),
                stored_as_u32s,
            })
            .collect(),
        damage: cache::damage(&input.decoded),
    };
    if json {
        emit_json(&report)?;
    } else {
        emit(&text(&report, note.as_deref())?)?;
    }
    Ok(cache::status(&input.decoded))
}

/// The human-readable report.
/// `tuned_note` says the values were recognised as tuned parameters (JSON has `tuned`).
fn text(r: &Inspect, tuned_note: Option<&str>) -> Result<String, Fail> {
    let mut s = String::new();
    write!(
        s,
        "{}: {}, {} bytes, {}",
        r.path,
        r.format,
        r.size,
        plural(r.entries.len() as u64, "entry", "entries")
    )?;
    if let Some(g) = r.generation {
        write!(s, ", generation {g}")?;
    }
    if r.tuned {
        s.push_str(", tuned OpenCL parameters");
    }
    s.push('\n');
    if !r.entries.is_empty() {
        let width = r
            .entries
            .iter()
            .map(|e| e.len.to_string().len())
            .max()
            .unwrap_or(0)
            .max("length".len());
        writeln!(s, "  crc32     {:>width$}  key", "length")?;
        for e in &r.entries {
            let kind = if e.stored_as_u32s { "  (uint32s)" } else { "" };
            writeln!(
                s,
                "  {}  {:>width$}  \"{}\"{kind}",
                e.crc32,
                e.len,
                printable(&e.key)
            )?;
        }
    }
    let arrays: Vec<_> = r.entries.iter().filter(|e| e.uint32s.is_some()).collect();
    if !arrays.is_empty() {
        s.push_str("uint32 values:\n");
        for e in arrays {
            let list: Vec<String> = e.uint32s.iter().flatten().map(u32::to_string).collect();
            writeln!(s, "  {}: [{}]", printable(&e.key), list.join(", "))?;
        }
    }
    let d = &r.damage;
    if d.intact {
        s.push_str("damage: none (intact)\n");
    } else {
        writeln!(
            s,
            "damage: {} dropped, {} ignored",
            plural(d.entries_dropped, "entry", "entries"),
            plural(d.bytes_ignored, "byte", "bytes")
        )?;
        for note in &d.notes {
            writeln!(s, "  - {note}")?;
        }
    }
    if let Some(n) = tuned_note {
        writeln!(s, "note: {n}")?;
    }
    Ok(s)
}
