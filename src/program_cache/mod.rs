//! The OpenCL program cache: seconds of `clBuildProgram` become milliseconds, without ever running a
//! stale binary or crashing the app. Binaries are keyed by program and options, checked against a
//! hash of their source, invalidated when the GPU/driver/OS fingerprint changes, evicted when the
//! driver rejects them, and evicted (or the whole cache set aside) when the driver crashed on them.

pub mod fingerprint;
pub mod guard;
pub mod open;
/// OpenCL, loaded at run time (it lives in `io`, with the other calls out of the process).
pub use crate::io::opencl;
pub mod os_build;
pub mod registry;

pub use fingerprint::{source_hash, Fingerprint, ReusePolicy};
pub use guard::{Guard, GuardStats, Liveness, Recovery};
pub use open::{open_guarded, open_store, set_aside, Guarded, OpenOptions};
pub use os_build::{check_os_build, os_build_id, OS_BUILD_KEY};

use crate::io::{posix::PosixFs, Fs};
pub use crate::keys::FINGERPRINT_KEY;
use crate::keys::{program_hash_key, PLATFORM_INFO_KEY};
use crate::log::warn;
use crate::store::{self, Options, Store, Value};
use opencl::{ClError, Context, Device, OpenCl, Program, DEFAULT_LIBRARIES};
use opencl_sys::*;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Consecutive crashes with a binary in the driver after which the whole cache is set aside.
pub const CRASH_LOOP_LIMIT: u32 = 3;

/// How a program cache is opened.
#[derive(Clone, Default)]
pub struct CacheOptions {
    /// The OS build (e.g. Android's `ro.build.fingerprint`): a change invalidates every binary.
    pub os_build_id: String,
    /// The app or model version: a change invalidates every binary.
    pub app_version: String,
    /// When binaries survive a driver change.
    pub policy: ReusePolicy,
    /// The OpenCL library to load instead of MACE's list.
    pub opencl_library: Option<String>,
    /// The filesystem (default: the real one).
    pub fs: Option<Arc<dyn Fs>>,
}

/// Counters of a program cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Programs built from a cached binary.
    pub hits: u64,
    /// Programs built from source.
    pub misses: u64,
    /// Cached binaries the driver rejected (evicted, then built from source).
    pub rejected: u64,
    /// Binaries invalidated by a fingerprint change.
    pub invalidated: u64,
    /// Binaries evicted because the driver crashed on them.
    pub crash_loop_evictions: u64,
    /// 1 if this open set a crash-looping cache aside.
    pub cache_set_aside: u64,
    /// Total time of builds from source, in nanoseconds.
    pub build_ns: u64,
    /// Total time of builds from cached binaries, in nanoseconds.
    pub load_ns: u64,
}

/// Why a cache operation failed.
#[derive(Debug)]
pub enum CacheError {
    /// No OpenCL library could be loaded.
    NoOpenCl(String),
    /// The driver failed to build from source (with its log).
    BuildFailed(String),
    /// An OpenCL query failed.
    Cl(ClError),
    /// The store failed.
    Store(store::Error),
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::NoOpenCl(s) => write!(f, "OpenCL unavailable: {s}"),
            CacheError::BuildFailed(s) => write!(f, "build from source failed: {s}"),
            CacheError::Cl(e) => write!(f, "OpenCL call failed: {e}"),
            CacheError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CacheError {
    /// The store's error (and through it the operating system's) where one caused this.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Store(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    invalidated: AtomicU64,
    crash_loop_evictions: AtomicU64,
    cache_set_aside: AtomicU64,
    build_ns: AtomicU64,
    load_ns: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// An OpenCL program cache over one file.
pub struct ProgramCache {
    store: Store,
    opts: CacheOptions,
    cl: OnceLock<Result<Arc<OpenCl>, String>>,
    guard: Arc<Guard>,
    checked_devices: Mutex<HashSet<usize>>,
    counters: Counters,
}

/// The store key of a program's binary and of its source hash.
pub fn entry_keys(program_key: &str, options: &str) -> (Vec<u8>, Vec<u8>) {
    let k = if options.is_empty() {
        program_key.to_string()
    } else {
        format!("{program_key} {options}")
    };
    let h = program_hash_key(k.as_bytes());
    (k.into_bytes(), h)
}

impl ProgramCache {
    /// Opens the cache at `path`, first undoing what a previous crash left: the binary that was in
    /// the driver is evicted, and after `CRASH_LOOP_LIMIT` such crashes in a row the file is set aside.
    pub fn open(path: impl AsRef<Path>, opts: CacheOptions) -> Result<ProgramCache, store::Error> {
        let fs: Arc<dyn Fs> = opts.fs.clone().unwrap_or_else(|| Arc::new(PosixFs));
        let g = open_guarded(
            path.as_ref(),
            Options {
                fs,
                ..Options::default()
            },
        )?;
        let counters = Counters::default();
        bump(&counters.cache_set_aside, u64::from(g.set_aside.is_some()));
        bump(&counters.crash_loop_evictions, g.evicted);
        Ok(ProgramCache {
            store: g.store,
            opts,
            cl: OnceLock::new(),
            guard: g.guard,
            checked_devices: Mutex::new(HashSet::new()),
            counters,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The crash-loop guard.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// The OpenCL library, loaded on first use.
    pub fn opencl(&self) -> Result<Arc<OpenCl>, CacheError> {
        self.cl
            .get_or_init(|| {
                let custom = self.opts.opencl_library.as_deref();
                let list: Vec<&str> =
                    custom.map_or_else(|| DEFAULT_LIBRARIES.to_vec(), |l| vec![l]);
                OpenCl::load(&list).map(Arc::new)
            })
            .clone()
            .map_err(CacheError::NoOpenCl)
    }

    /// The fingerprint of `device` with this cache's caller-supplied strings.
    pub fn fingerprint(&self, cl: &OpenCl, d: Device) -> Result<Fingerprint, CacheError> {
        let p = |q| cl.platform_string(d, q).map_err(CacheError::Cl);
        let dv = |q| cl.device_string(d, q).map_err(CacheError::Cl);
        Ok(Fingerprint {
            platform_name: p(CL_PLATFORM_NAME)?,
            platform_profile: p(CL_PLATFORM_PROFILE)?,
            platform_version: p(CL_PLATFORM_VERSION)?,
            device_name: dv(CL_DEVICE_NAME)?,
            device_version: dv(CL_DEVICE_VERSION)?,
            driver_version: dv(CL_DRIVER_VERSION)?,
            os_build_id: self.opts.os_build_id.clone(),
            app_version: self.opts.app_version.clone(),
        })
    }

    /// Checks the cache against `device` once per device: binaries built for another GPU, driver,
    /// OS build or app version (per the policy) are dropped before any is used.
    fn ensure_fingerprint(&self, cl: &OpenCl, d: Device) -> Result<(), CacheError> {
        if self.checked_devices.lock().contains(&d.raw()) {
            return Ok(());
        }
        let now = self.fingerprint(cl, d)?;
        let stored = self
            .store
            .get(FINGERPRINT_KEY)
            .map(|v| Fingerprint::parse(&v));
        let verdict = match &stored {
            Some(old) => now.accepts(old, self.opts.policy),
            None if self.store.is_empty() => Ok(()),
            None => Err("the cache has no fingerprint to check its binaries against".into()),
        };
        if let Err(why) = verdict {
            let n = self.store.len() as u64;
            self.store.clear().map_err(CacheError::Store)?;
            bump(&self.counters.invalidated, n);
            warn(&format!(
                "{why}: dropped {n} cached entries of {}; programs are rebuilt from source and cached again",
                self.store.path().display()
            ));
        }
        let platform = format!(
            "{}, {}, {}, mace-storage {}",
            now.platform_name,
            now.platform_profile,
            now.platform_version,
            env!("CARGO_PKG_VERSION")
        );
        self.put(FINGERPRINT_KEY, now.to_bytes())?;
        self.put(PLATFORM_INFO_KEY, platform.into_bytes())?;
        self.flush_logged();
        self.checked_devices.lock().insert(d.raw());
        Ok(())
    }

    fn put(&self, k: &[u8], v: Vec<u8>) -> Result<(), CacheError> {
        self.store
            .put(k, Value::from_vec(v))
            .map_err(CacheError::Store)
    }

    /// Flushes; a failure only costs the next start a rebuild, so it is logged, not returned.
    fn flush_logged(&self) {
        if let Err(e) = self.store.flush() {
            warn(&format!(
                "{e}: the program cache was not saved; this run is unaffected and the next flush retries"
            ));
        }
    }

    /// The cached binary for this program, source, options and device, if it is valid.
    pub fn get_binary(
        &self,
        d: Device,
        key: &str,
        source: &[u8],
        options: &str,
    ) -> Result<Option<Value>, CacheError> {
        let cl = self.opencl()?;
        self.ensure_fingerprint(&cl, d)?;
        let (k, h) = entry_keys(key, options);
        let hash = source_hash(source, options);
        if self.store.get(&h).as_deref() != Some(hash.as_bytes()) {
            return Ok(None);
        }
        Ok(self.store.get(&k))
    }

    /// Stores `binary` as what `build` will use for this program, source, options and device.
    pub fn put_binary(
        &self,
        d: Device,
        key: &str,
        source: &[u8],
        options: &str,
        binary: &[u8],
    ) -> Result<(), CacheError> {
        let cl = self.opencl()?;
        self.ensure_fingerprint(&cl, d)?;
        let (k, h) = entry_keys(key, options);
        self.put(&k, binary.to_vec())?;
        self.put(&h, source_hash(source, options).into_bytes())?;
        self.store.flush().map_err(CacheError::Store)
    }

    /// Builds a program: from the cached binary when there is a valid one (a binary the driver
    /// rejects is evicted), else from source, caching the new binary. The caller releases the program.
    pub fn build(
        &self,
        c: Context,
        d: Device,
        key: &str,
        source: &[u8],
        options: &str,
    ) -> Result<Program, CacheError> {
        let cl = self.opencl()?;
        if let Some(binary) = self.get_binary(d, key, source, options)? {
            let (k, h) = entry_keys(key, options);
            let t = Instant::now();
            self.guard.mark(&k);
            let built = cl.build_from_binary(c, d, &binary, options);
            self.guard.clear(built.is_ok());
            match built {
                Ok(p) => {
                    bump(&self.counters.hits, 1);
                    bump(&self.counters.load_ns, t.elapsed().as_nanos() as u64);
                    return Ok(p);
                }
                Err(e) => {
                    bump(&self.counters.rejected, 1);
                    let _ = (self.store.remove(&k), self.store.remove(&h));
                    self.flush_logged();
                    warn(&format!(
                        "the OpenCL driver rejected the cached binary of {key:?} ({e}): evicted it and built from source"
                    ));
                }
            }
        }
        bump(&self.counters.misses, 1);
        let t = Instant::now();
        let program = cl
            .build_from_source(c, d, source, options)
            .map_err(|(e, log)| CacheError::BuildFailed(format!("{e}: {log}")))?;
        bump(&self.counters.build_ns, t.elapsed().as_nanos() as u64);
        match cl.binary(&program) {
            Ok(bin) if !bin.is_empty() => {
                let (k, h) = entry_keys(key, options);
                self.put(&k, bin)?;
                self.put(&h, source_hash(source, options).into_bytes())?;
                self.flush_logged();
            }
            _ => warn(&format!(
                "the driver gave no binary for {key:?}: it is not cached"
            )),
        }
        Ok(program)
    }

    /// Declares the app healthy: the binaries loaded so far did not crash it, ending any crash loop.
    pub fn mark_healthy(&self) {
        self.guard.clear(true);
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: l(&c.hits),
            misses: l(&c.misses),
            rejected: l(&c.rejected),
            invalidated: l(&c.invalidated),
            crash_loop_evictions: l(&c.crash_loop_evictions),
            cache_set_aside: l(&c.cache_set_aside),
            build_ns: l(&c.build_ns),
            load_ns: l(&c.load_ns),
        }
    }
}

impl Drop for ProgramCache {
    fn drop(&mut self) {
        // A clean close is not a crash: nothing is in flight.
        self.guard.clear(false);
    }
}
