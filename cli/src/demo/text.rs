//! The demo's tables and explanations, rendered from its report.

use crate::cache::plural;
use crate::report::{AfterDamage, Demo};
use crate::Fail;
use std::fmt::Write as _;

/// `12.3x`, or `-` for no ratio.
fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.1}x"))
}

/// The names, comma-separated (`none` for none).
fn names(v: &[&str]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The demo's text report.
pub fn render(r: &Demo) -> Result<String, Fail> {
    let mut s = String::new();
    let n = r.programs.len();
    if r.opencl.used {
        writeln!(
            s,
            "OpenCL program cache demo: {n} programs on {} ({})",
            r.opencl.device.as_deref().unwrap_or("?"),
            r.opencl.platform.as_deref().unwrap_or("?")
        )?;
        writeln!(s, "cache file: {}\n", r.file)?;
        writeln!(
            s,
            "{:<18} {:>10} {:>10} {:>9}",
            "program", "cold ms", "warm ms", "speedup"
        )?;
        for p in &r.programs {
            writeln!(
                s,
                "{:<18} {:>10.1} {:>10.1} {:>9}",
                p.name,
                p.cold_ms.unwrap_or(0.0),
                p.warm_ms.unwrap_or(0.0),
                ratio(p.speedup)
            )?;
        }
        writeln!(
            s,
            "{:<18} {:>10.1} {:>10.1} {:>9}\n",
            "total",
            r.cold_total_ms.unwrap_or(0.0),
            r.warm_total_ms.unwrap_or(0.0),
            ratio(r.speedup)
        )?;
    } else {
        writeln!(
            s,
            "OpenCL part skipped: {}",
            r.opencl.skipped.as_deref().unwrap_or("no OpenCL")
        )?;
        writeln!(
            s,
            "storage demo: {n} stand-in program binaries in {}\n",
            r.file
        )?;
    }
    let d = &r.damage;
    writeln!(
        s,
        "damage: flipped one byte inside the cached binary of {} (file offset {})",
        d.program, d.offset
    )?;
    writeln!(
        s,
        "reopened: {}, {} kept, {} dropped (only that binary: each entry has its own checksum)",
        d.format,
        plural(d.entries_kept, "entry", "entries"),
        d.entries_dropped
    )?;
    for note in &d.notes {
        writeln!(s, "  - {note}")?;
    }
    s.push('\n');
    match &r.after_damage {
        AfterDamage::OpenCl {
            from_cache,
            rebuilt,
        } => {
            writeln!(s, "{:<18} {:>10}  after the damage", "program", "ms")?;
            for p in &r.programs {
                let how = if p.after_damage == "from_cache" {
                    "from the cache"
                } else {
                    "rebuilt"
                };
                writeln!(
                    s,
                    "{:<18} {:>10.1}  {how}",
                    p.name,
                    p.after_damage_ms.unwrap_or(0.0)
                )?;
            }
            writeln!(
                s,
                "rebuilt from source: {}; loaded from the cache: {} of {n}",
                names(rebuilt),
                from_cache.len()
            )?;
        }
        AfterDamage::Storage { kept, dropped } => {
            writeln!(s, "{:<18} {:>10}  after the damage", "program", "bytes")?;
            for p in &r.programs {
                writeln!(s, "{:<18} {:>10}  {}", p.name, p.bytes, p.after_damage)?;
            }
            writeln!(
                s,
                "dropped (rebuilt and cached again): {}; kept: {} of {n}",
                names(dropped),
                kept.len()
            )?;
        }
    }
    writeln!(s, "cache file now: {}", r.final_state)?;
    let c = &r.final_entries;
    let mut parts = vec![
        plural(c.binaries, "program binary", "program binaries"),
        format!(
            "{} (program_hash_ keys)",
            plural(c.source_hashes, "source hash", "source hashes")
        ),
        format!(
            "{} ({})",
            plural(c.device, "device entry", "device entries"),
            c.device_keys.join(", ")
        ),
    ];
    if c.other > 0 {
        parts.push(plural(c.other, "other entry", "other entries"));
    }
    writeln!(
        s,
        "  {n} programs, {}: {}",
        plural(c.total, "entry", "entries"),
        parts.join(" + ")
    )?;
    if r.kept {
        writeln!(
            s,
            "the cache is kept in {}: look at it with `mace-cache inspect {}`",
            r.dir, r.file
        )?;
    } else {
        writeln!(
            s,
            "the temporary directory was removed (--dir DIR keeps the cache for a look afterwards)"
        )?;
    }
    for p in &r.problems {
        writeln!(s, "unexpected: {p}")?;
    }
    Ok(s)
}
