//! The OpenCL program cache against a real driver (PoCL): hits, damage, rejected and crashing
//! binaries, fingerprint invalidation.

mod common;

use mace_storage::ffi::{
    mace_program_cache_close, mace_program_cache_guard_stats, mace_program_cache_open,
    mace_program_cache_stats, MaceProgramCacheStats, MaceStorageGuardStats, MaceStorageStatus,
};
use mace_storage::program_cache::opencl::{Context, Device, OpenCl, DEFAULT_LIBRARIES};
use mace_storage::program_cache::{CacheOptions, ProgramCache};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const KERNEL: &str = "__kernel void axpy(__global float *y, __global const float *x, float a) {
    int i = get_global_id(0); y[i] += a * x[i]; }";
const OPTS: &str = "-DBIAS -DDATA_TYPE=float";

struct Cl {
    cl: OpenCl,
    ctx: Context,
    dev: Device,
}

fn cl() -> &'static Cl {
    static CL: OnceLock<Cl> = OnceLock::new();
    CL.get_or_init(|| {
        // PoCL keeps its own kernel cache, which would hide cold builds.
        std::env::set_var("POCL_KERNEL_CACHE", "0");
        let cl = OpenCl::load(DEFAULT_LIBRARIES)
            .expect("an OpenCL runtime (PoCL: scripts/install-deps.sh)");
        let (ctx, dev) = cl.first_device().expect("an OpenCL device");
        Cl { cl, ctx, dev }
    })
}

fn open(path: &Path, os: &str) -> ProgramCache {
    ProgramCache::open(
        path,
        CacheOptions {
            os_build_id: os.into(),
            ..CacheOptions::default()
        },
    )
    .unwrap()
}

fn build(pc: &ProgramCache) {
    let c = cl();
    let p = pc
        .build(c.ctx, c.dev, "axpy", KERNEL.as_bytes(), OPTS)
        .unwrap();
    c.cl.release(p);
}

fn fresh(name: &str) -> (tempfile::TempDir, PathBuf) {
    common::temp_path(name, "cache.bin")
}

#[test]
fn second_start_builds_from_the_cache() {
    let (_dir, path) = fresh("warm");
    {
        let pc = open(&path, "os-1");
        build(&pc);
        assert_eq!((pc.stats().misses, pc.stats().hits), (1, 0));
    }
    let pc = open(&path, "os-1");
    build(&pc);
    let s = pc.stats();
    assert_eq!((s.misses, s.hits, s.invalidated), (0, 1, 0));
    let bin = pc
        .get_binary(cl().dev, "axpy", KERNEL.as_bytes(), OPTS)
        .unwrap()
        .unwrap();
    assert!(bin.starts_with(b"poclbin"));
    // Another source under the same key is not served the old binary.
    assert!(pc
        .get_binary(cl().dev, "axpy", b"__kernel void k() {}", OPTS)
        .unwrap()
        .is_none());
}

#[test]
fn an_os_update_invalidates_and_the_same_fingerprint_keeps() {
    let (_dir, path) = fresh("ota");
    build(&open(&path, "build-A"));
    let same = open(&path, "build-A");
    build(&same);
    assert_eq!(same.stats().hits, 1);
    drop(same);
    let updated = open(&path, "build-B");
    build(&updated);
    let s = updated.stats();
    assert_eq!((s.hits, s.misses), (0, 1));
    assert!(s.invalidated >= 2, "{s:?}");
}

#[test]
fn a_damaged_entry_never_reaches_the_driver() {
    let (_dir, path) = fresh("damaged");
    build(&open(&path, ""));
    let mut file = std::fs::read(&path).unwrap();
    let at = file.windows(7).position(|w| w == b"poclbin").unwrap() + 4000;
    file[at] ^= 0x5a;
    std::fs::write(&path, &file).unwrap();
    let pc = open(&path, "");
    assert!(pc.store().get(b"axpy -DBIAS -DDATA_TYPE=float").is_none());
    build(&pc);
    assert_eq!((pc.stats().hits, pc.stats().misses), (0, 1));
    // Truncated in the middle of the binary: the same.
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1000).unwrap();
    let pc = open(&path, "");
    build(&pc);
    assert_eq!((pc.stats().hits, pc.stats().misses), (0, 1));
}

#[test]
fn a_binary_the_driver_rejects_is_evicted_and_rebuilt() {
    let (_dir, path) = fresh("rejected");
    let pc = open(&path, "");
    pc.put_binary(
        cl().dev,
        "axpy",
        KERNEL.as_bytes(),
        OPTS,
        b"not a binary any driver accepts",
    )
    .unwrap();
    build(&pc);
    let s = pc.stats();
    assert_eq!((s.rejected, s.misses, s.hits), (1, 1, 0));
    let again = open(&path, "");
    build(&again);
    assert_eq!(again.stats().hits, 1);
}

const CRASH_ROLE: &str = "MACE_STORAGE_TEST_CRASH_PATH";

/// A binary with valid checksums that crashes the driver (PoCL segfaults on a truncated binary):
/// the process dies; the next start evicts it, rebuilds from source and succeeds.
#[test]
fn a_binary_that_crashes_the_driver_is_evicted_by_the_next_start() {
    if let Ok(path) = std::env::var(CRASH_ROLE) {
        let pc = open(Path::new(&path), "");
        build(&pc); // dies inside the driver
        return;
    }
    let (_dir, path) = fresh("crash");
    let good = {
        let pc = open(&path, "");
        build(&pc);
        pc.get_binary(cl().dev, "axpy", KERNEL.as_bytes(), OPTS)
            .unwrap()
            .unwrap()
            .to_vec()
    };
    open(&path, "")
        .put_binary(
            cl().dev,
            "axpy",
            KERNEL.as_bytes(),
            OPTS,
            &good[..good.len() / 2],
        )
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_binary_that_crashes_the_driver_is_evicted_by_the_next_start",
            "--exact",
            "--nocapture",
        ])
        .env(CRASH_ROLE, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "the driver was expected to crash on the truncated binary"
    );
    // Through the C API: the guard found the dead process's mark and evicted its binary.
    let (stats, guard) = c_api_stats(&path);
    assert_eq!(stats.crash_loop_evictions, 1);
    assert_eq!((guard.dead_marks, guard.evictions), (1, 1), "{guard:?}");
    let pc = open(&path, "");
    assert_eq!(pc.guard().stats().dead_marks, 0, "consumed once");
    build(&pc);
    let s = pc.stats();
    assert_eq!((s.hits, s.misses), (0, 1));
    drop(pc);
    let pc = open(&path, "");
    build(&pc);
    assert_eq!(pc.stats().hits, 1);
}

/// Opens `path` through the C API and returns its stats and its guard's.
fn c_api_stats(path: &Path) -> (MaceProgramCacheStats, MaceStorageGuardStats) {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut c = std::ptr::null_mut();
    // SAFETY: a valid path, default options and an out pointer.
    let st = unsafe { mace_program_cache_open(p.as_ptr(), std::ptr::null(), &mut c) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK);
    let mut stats = MaceProgramCacheStats::default();
    let mut guard = MaceStorageGuardStats::default();
    // SAFETY: an open cache and valid out pointers; closed once.
    unsafe {
        assert_eq!(
            mace_program_cache_stats(c, &mut stats),
            MaceStorageStatus::MACE_STORAGE_OK
        );
        assert_eq!(
            mace_program_cache_guard_stats(c, &mut guard),
            MaceStorageStatus::MACE_STORAGE_OK
        );
        mace_program_cache_close(c);
    }
    (stats, guard)
}
