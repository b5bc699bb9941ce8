//! `demo`: what the program cache is for, on this machine's OpenCL: cold and warm builds of real
//! kernels, then one damaged binary that costs one rebuild. Without OpenCL, the storage part.

mod kernels;
mod text;

use crate::cache::{self, plural, PROGRAM_HASH_PREFIX};
use crate::report::{self, AfterDamage, EntryCounts};
use crate::{emit, emit_json, Fail, EXIT_DAMAGED, EXIT_INTACT};
use kernels::{Kernel, DAMAGED, KERNELS};
use mace_storage::format::{self, ValueRef, DEVICE_NAME_KEY, PLATFORM_INFO_KEY};
use mace_storage::io::sibling;
use mace_storage::io::side_files::{CORRUPT, CRASHLOOP, INFLIGHT, TMP};
use mace_storage::program_cache::opencl::{ClError, Context, Device, OpenCl, DEFAULT_LIBRARIES};
use mace_storage::program_cache::{
    entry_keys, source_hash, CacheOptions, ProgramCache, FINGERPRINT_KEY, OS_BUILD_KEY,
};
use mace_storage::store::{self, Store, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name of the cache file the demo writes.
const DEMO_FILE: &str = "mace_cl_compiled_program.bin";

/// How to get an OpenCL device where there is none, in one clause.
const GET_A_DEVICE: &str = "to run it, install an OpenCL driver, e.g. the CPU one: \
    apt-get install pocl-opencl-icd (or point --opencl-library at one)";

/// One program's results.
struct Row {
    /// The program.
    kernel: &'static Kernel,
    /// Size of its cached binary.
    bytes: usize,
    /// Build time from source on the first start, in milliseconds.
    cold_ms: Option<f64>,
    /// Build time from the cached binary on the second start, in milliseconds.
    warm_ms: Option<f64>,
    /// After the damage: whether it came from the cache (OpenCL) or was kept (storage only).
    survived: bool,
    /// Build time after the damage, in milliseconds.
    after_ms: Option<f64>,
}

impl Row {
    /// A row with no results yet.
    fn new(kernel: &'static Kernel) -> Row {
        Row {
            kernel,
            bytes: 0,
            cold_ms: None,
            warm_ms: None,
            survived: false,
            after_ms: None,
        }
    }
}

/// What one run found, before it becomes a report.
struct Run {
    /// The OpenCL implementation used, or why it was skipped.
    opencl: report::DemoOpenCl,
    /// One row per program.
    rows: Vec<Row>,
    /// What reopening the damaged file found.
    damage: report::DemoDamage,
    /// Results that were not the expected ones.
    problems: Vec<String>,
}

/// Progress lines on stderr.
fn progress(msg: &str) {
    eprintln!("mace-cache demo: {msg}");
}

/// Runs `demo`.
pub fn run(dir: Option<&Path>, opencl_library: Option<String>, json: bool) -> Result<i32, Fail> {
    // PoCL's own kernel cache would make the cold builds warm.
    if std::env::var_os("POCL_KERNEL_CACHE").is_none() {
        std::env::set_var("POCL_KERNEL_CACHE", "0");
    }
    let (dir, kept) = match dir {
        Some(d) => (d.to_path_buf(), true),
        None => (temp_dir(), false),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Fail(format!("cannot create {}: {e}", dir.display())))?;
    let file = dir.join(DEMO_FILE);
    for suffix in ["", INFLIGHT, CRASHLOOP, CORRUPT, TMP] {
        let p = sibling(&file, suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Fail(format!("cannot remove {}: {e}", p.display())))
            }
            _ => {}
        }
    }
    let result = run_in(&file, opencl_library).and_then(|r| {
        let (final_state, final_entries) = file_state(&file)?;
        Ok((r, final_state, final_entries))
    });
    if !kept {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (r, final_state, final_entries) = result?;
    let report = to_report(r, &dir, &file, kept, final_state, final_entries);
    if json {
        emit_json(&report)?;
    } else {
        emit(&text::render(&report)?)?;
    }
    Ok(if report.ok { EXIT_INTACT } else { EXIT_DAMAGED })
}

/// A fresh directory name under the system's temporary directory.
fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("mace-cache-demo-{}-{nanos}", std::process::id()))
}

/// An OpenCL error in words where its code says something a user can act on.
fn explain(e: &ClError) -> String {
    let what = match e.code {
        -1001 => "no OpenCL platform is installed (CL_PLATFORM_NOT_FOUND_KHR)",
        -1 => "the OpenCL platform has no device (CL_DEVICE_NOT_FOUND)",
        _ => "the OpenCL platform gave no usable device",
    };
    format!("{what}: {e}")
}

/// Runs the OpenCL demo when an OpenCL device is available, else the storage demo.
fn run_in(file: &Path, opencl_library: Option<String>) -> Result<Run, Fail> {
    let libs: Vec<&str> = match &opencl_library {
        Some(l) => vec![l.as_str()],
        None => DEFAULT_LIBRARIES.to_vec(),
    };
    let loaded = OpenCl::load(&libs).and_then(|cl| match cl.first_device() {
        Ok((ctx, dev)) => Ok((cl, ctx, dev)),
        Err(e) => Err(format!("{}: {}", cl.library, explain(&e))),
    });
    match loaded {
        Ok((cl, ctx, dev)) => {
            let r = demo_opencl(file, opencl_library, &cl, ctx, dev);
            cl.release_context(ctx);
            r
        }
        Err(why) => {
            let why = format!("{why}; {GET_A_DEVICE}");
            progress(&format!("OpenCL part skipped: {why}"));
            demo_storage(file, why)
        }
    }
}

/// Builds one program through the cache: the time taken in milliseconds, and whether it came
/// from the cached binary.
fn timed_build(
    pc: &ProgramCache,
    cl: &OpenCl,
    ctx: Context,
    dev: Device,
    k: &Kernel,
) -> Result<(f64, bool), Fail> {
    let source = kernels::source(k);
    let hits = pc.stats().hits;
    let t = Instant::now();
    let program = pc
        .build(ctx, dev, k.name, source.as_bytes(), k.options)
        .map_err(|e| Fail(format!("cannot build {}: {e}", k.name)))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    cl.release(program);
    Ok((ms, pc.stats().hits > hits))
}

/// Flips one byte in the middle of the cached binary of `k` in `file` and decodes the result.
fn damage_entry(file: &Path, k: &Kernel) -> Result<report::DemoDamage, Fail> {
    let (key, _) = entry_keys(k.name, k.options);
    let mut bytes =
        std::fs::read(file).map_err(|e| Fail(format!("cannot read {}: {e}", file.display())))?;
    let d = format::decode(&bytes).map_err(|e| Fail(format!("{}: {e}", file.display())))?;
    let offset = d
        .entries
        .iter()
        .find(|e| bytes[e.key.clone()] == key[..])
        .and_then(|e| match &e.value {
            ValueRef::Slice(r) if !r.is_empty() => Some(r.start + r.len() / 2),
            _ => None,
        })
        .ok_or_else(|| Fail(format!("the cache holds no binary of {} to damage", k.name)))?;
    bytes[offset] ^= 0x5a;
    std::fs::write(file, &bytes)
        .map_err(|e| Fail(format!("cannot write {}: {e}", file.display())))?;
    let d = format::decode(&bytes).map_err(|e| Fail(format!("{}: {e}", file.display())))?;
    Ok(report::DemoDamage {
        program: k.name,
        offset: offset as u64,
        format: d.format.name(),
        entries_kept: d.entries.len() as u64,
        entries_dropped: d.damage.entries_dropped,
        notes: d.damage.notes,
    })
}

/// A one-line description of the cache file as it is now, and what its entries are.
fn file_state(file: &Path) -> Result<(String, EntryCounts), Fail> {
    let input = cache::load(file)?;
    let d = &input.decoded;
    let binaries: Vec<Vec<u8>> = KERNELS
        .iter()
        .map(|k| entry_keys(k.name, k.options).0)
        .collect();
    let mut counts = EntryCounts::default();
    for e in cache::sorted_entries(&input) {
        counts.total += 1;
        if binaries.iter().any(|b| b[..] == *e.key) {
            counts.binaries += 1;
        } else if e.key.starts_with(PROGRAM_HASH_PREFIX) {
            counts.source_hashes += 1;
        } else if [
            PLATFORM_INFO_KEY,
            DEVICE_NAME_KEY,
            FINGERPRINT_KEY,
            OS_BUILD_KEY,
        ]
        .contains(&e.key)
        {
            counts.device += 1;
            counts
                .device_keys
                .push(String::from_utf8_lossy(e.key).into_owned());
        } else {
            counts.other += 1;
        }
    }
    let state = format!(
        "{}, {}, {}, {}",
        d.format,
        if d.damage.intact { "intact" } else { "damaged" },
        plural(d.entries.len() as u64, "entry", "entries"),
        plural(input.bytes.len() as u64, "byte", "bytes")
    );
    Ok((state, counts))
}

/// The OpenCL demo: cold builds, warm builds, one damaged binary, rebuild.
fn demo_opencl(
    file: &Path,
    opencl_library: Option<String>,
    cl: &OpenCl,
    ctx: Context,
    dev: Device,
) -> Result<Run, Fail> {
    let opts = CacheOptions {
        app_version: format!("mace-cache demo {}", env!("CARGO_PKG_VERSION")),
        opencl_library,
        ..CacheOptions::default()
    };
    let open = || {
        ProgramCache::open(file, opts.clone())
            .map_err(|e| Fail(format!("cannot open the program cache: {e}")))
    };
    let mut problems = Vec::new();
    let mut rows: Vec<Row> = KERNELS.iter().map(Row::new).collect();

    let pc = open()?;
    let fp = pc
        .fingerprint(cl, dev)
        .map_err(|e| Fail(format!("cannot query the OpenCL device: {e}")))?;
    let opencl = report::DemoOpenCl {
        used: true,
        library: Some(cl.library.clone()),
        device: Some(fp.device_name.clone()),
        platform: Some(fp.platform_name.clone()),
        skipped: None,
    };
    progress(&format!(
        "OpenCL: {} ({}, {}); cache file {}",
        fp.device_name,
        fp.platform_name,
        cl.library,
        file.display()
    ));
    progress(&format!(
        "first start: building {} programs from source",
        KERNELS.len()
    ));
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        if hit {
            problems.push(format!(
                "{} was already cached before the first start",
                row.kernel.name
            ));
        }
        row.cold_ms = Some(ms);
        let (key, _) = entry_keys(row.kernel.name, row.kernel.options);
        row.bytes = pc.store().get(&key).map_or(0, |v| v.len());
        progress(&format!(
            "  {:<18} {ms:>9.1} ms from source",
            row.kernel.name
        ));
    }
    drop(pc);

    progress("second start: the same programs, from the cache");
    let pc = open()?;
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        if !hit {
            problems.push(format!(
                "{} was built from source on the second start",
                row.kernel.name
            ));
        }
        row.warm_ms = Some(ms);
        progress(&format!(
            "  {:<18} {ms:>9.1} ms from the cache",
            row.kernel.name
        ));
    }
    drop(pc);
    let cold: f64 = rows.iter().filter_map(|r| r.cold_ms).sum();
    let warm: f64 = rows.iter().filter_map(|r| r.warm_ms).sum();
    if warm >= cold {
        problems.push(format!(
            "warm builds ({warm:.1} ms) were not faster than cold builds ({cold:.1} ms)"
        ));
    }

    let victim = &KERNELS[DAMAGED];
    progress(&format!(
        "damage: flipping one byte inside the cached binary of {}",
        victim.name
    ));
    let damage = damage_entry(file, victim)?;
    progress("third start: the damaged cache");
    let pc = open()?;
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        row.survived = hit;
        row.after_ms = Some(ms);
        let how = if hit { "from the cache" } else { "rebuilt" };
        progress(&format!("  {:<18} {ms:>9.1} ms {how}", row.kernel.name));
        if hit == std::ptr::eq(row.kernel, victim) {
            problems.push(format!("after the damage, {} was {how}", row.kernel.name));
        }
    }
    drop(pc);
    Ok(Run {
        opencl,
        rows,
        damage,
        problems,
    })
}

/// Deterministic bytes standing in for a compiled binary when there is no OpenCL.
fn stand_in_binary(name: &str, len: usize) -> Vec<u8> {
    let mut seed = u64::from(crc32fast::hash(name.as_bytes())) | 1 << 40;
    let mut v = b"stand-in binary of ".to_vec();
    v.extend_from_slice(name.as_bytes());
    v.resize(len, 0);
    for b in v.iter_mut().skip(19 + name.len()) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = (seed >> 24) as u8;
    }
    v
}

/// The storage demo, without OpenCL: write stand-in binaries, damage one, salvage the rest.
fn demo_storage(file: &Path, why: String) -> Result<Run, Fail> {
    let store_err = |e: store::Error| Fail(e.to_string());
    let size = |i: usize| 16 * 1024 + i * 4096;
    let store = Store::open(file, store::Options::default()).map_err(store_err)?;
    store
        .put(
            PLATFORM_INFO_KEY,
            Value::copy_from(b"no OpenCL, FULL_PROFILE, OpenCL 1.2, mace-cache demo"),
        )
        .map_err(store_err)?;
    let mut rows = Vec::new();
    for (i, kernel) in KERNELS.iter().enumerate() {
        let (key, hash_key) = entry_keys(kernel.name, kernel.options);
        let binary = stand_in_binary(kernel.name, size(i));
        let hash = source_hash(kernels::source(kernel).as_bytes(), kernel.options);
        let mut row = Row::new(kernel);
        row.bytes = binary.len();
        rows.push(row);
        store
            .put(&key, Value::from_vec(binary))
            .map_err(store_err)?;
        store
            .put(&hash_key, Value::from_vec(hash.into_bytes()))
            .map_err(store_err)?;
    }
    store.flush().map_err(store_err)?;
    drop(store);
    progress(&format!(
        "wrote {} stand-in binaries to {}",
        KERNELS.len(),
        file.display()
    ));
    let victim = &KERNELS[DAMAGED];
    let damage = damage_entry(file, victim)?;
    let store = Store::open(file, store::Options::default()).map_err(store_err)?;
    let mut problems = Vec::new();
    for (i, row) in rows.iter_mut().enumerate() {
        let (key, _) = entry_keys(row.kernel.name, row.kernel.options);
        row.survived = store.get(&key).is_some();
        if row.survived == std::ptr::eq(row.kernel, victim) {
            problems.push(format!(
                "after the damage, {} was {}",
                row.kernel.name,
                if row.survived { "kept" } else { "dropped" }
            ));
        }
        if !row.survived {
            // What the app does next: rebuild the program and cache it again.
            let binary = stand_in_binary(row.kernel.name, size(i));
            store
                .put(&key, Value::from_vec(binary))
                .map_err(store_err)?;
        }
    }
    store.flush().map_err(store_err)?;
    drop(store);
    let opencl = report::DemoOpenCl {
        used: false,
        library: None,
        device: None,
        platform: None,
        skipped: Some(why),
    };
    Ok(Run {
        opencl,
        rows,
        damage,
        problems,
    })
}

/// `cold / warm`, when there is a warm time.
fn speedup(cold: Option<f64>, warm: Option<f64>) -> Option<f64> {
    match (cold, warm) {
        (Some(c), Some(w)) if w > 0.0 => Some(c / w),
        _ => None,
    }
}

/// Milliseconds rounded to microseconds, as reported.
fn round(x: Option<f64>) -> Option<f64> {
    x.map(|x| (x * 1000.0).round() / 1000.0)
}

/// The report of a run.
fn to_report(
    r: Run,
    dir: &Path,
    file: &Path,
    kept: bool,
    final_state: String,
    final_entries: EntryCounts,
) -> report::Demo {
    let used = r.opencl.used;
    let names = |survived: bool| -> Vec<&'static str> {
        r.rows
            .iter()
            .filter(|x| x.survived == survived)
            .map(|x| x.kernel.name)
            .collect()
    };
    let after_damage = if used {
        AfterDamage::OpenCl {
            from_cache: names(true),
            rebuilt: names(false),
        }
    } else {
        AfterDamage::Storage {
            kept: names(true),
            dropped: names(false),
        }
    };
    let (cold, warm) = if used {
        (
            Some(r.rows.iter().filter_map(|x| x.cold_ms).sum::<f64>()),
            Some(r.rows.iter().filter_map(|x| x.warm_ms).sum::<f64>()),
        )
    } else {
        (None, None)
    };
    let programs = r
        .rows
        .iter()
        .map(|row| report::DemoProgram {
            name: row.kernel.name,
            options: row.kernel.options,
            bytes: row.bytes as u64,
            cold_ms: round(row.cold_ms),
            warm_ms: round(row.warm_ms),
            speedup: round(speedup(row.cold_ms, row.warm_ms)),
            after_damage: match (used, row.survived) {
                (true, true) => "from_cache",
                (true, false) => "rebuilt",
                (false, true) => "kept",
                (false, false) => "dropped",
            },
            after_damage_ms: round(row.after_ms),
        })
        .collect();
    report::Demo {
        dir: dir.display().to_string(),
        file: file.display().to_string(),
        kept,
        opencl: r.opencl,
        programs,
        cold_total_ms: round(cold),
        warm_total_ms: round(warm),
        speedup: round(speedup(cold, warm)),
        damage: r.damage,
        after_damage,
        final_state,
        final_entries,
        ok: r.problems.is_empty(),
        problems: r.problems,
    }
}
