//! Opening a store the way MACE's binaries need it: behind the crash-loop guard (evicting what a
//! crashed run left in the driver, setting a crash-looping cache aside) and checked against the OS
//! build. [`open_store`] is what `mace_storage_open` does, as a Rust API.

use super::guard::Guard;
use super::os_build::{check_os_build, os_build_id};
use super::{registry, CRASH_LOOP_LIMIT};
use crate::io::side_files::CRASHLOOP;
use crate::io::{sibling, Fs};
use crate::keys::program_hash_key;
use crate::log::warn;
use crate::store::{self, Options, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How [`open_store`] opens a cache file: the store's options and the program-cache checks.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The store's own options.
    pub store: Options,
    /// The crash-loop guard's mark window (see `MaceStorageOptions.crash_guard_ms`); `None`: no
    /// guard. Ignored when the store is read-only.
    pub crash_guard: Option<Duration>,
    /// Record the OS build ([`os_build_id`]) and drop every entry when it changed. Ignored when the
    /// store is read-only or no OS build is known.
    pub check_os_build: bool,
}

/// Opens the store at `path` with the checks `opts` asks for; a guarded open registers its guard
/// for this process (see [`registry`]), so `registry::mark` and `registry::end` find it by path.
pub fn open_store(path: &Path, opts: OpenOptions) -> Result<Store, store::Error> {
    let writable = !opts.store.read_only;
    let store = match opts.crash_guard {
        Some(window) if writable => {
            let g = open_guarded(path, opts.store)?;
            registry::register(path, g.guard, window);
            g.store
        }
        _ => Store::open(path, opts.store)?,
    };
    if opts.check_os_build && writable {
        if let Some(id) = os_build_id() {
            check_os_build(&store, &id)?;
        }
    }
    Ok(store)
}

/// Moves a cache file aside as `<path>.crashloop` so the next start rebuilds locally.
pub fn set_aside(fs: &dyn Fs, path: &Path) -> std::io::Result<PathBuf> {
    let to = sibling(path, CRASHLOOP);
    fs.rename(path, &to)?;
    Ok(to)
}

/// A store opened behind the crash-loop guard.
pub struct Guarded {
    /// The store.
    pub store: Store,
    /// The guard, to mark binaries in flight.
    pub guard: Arc<Guard>,
    /// How many entries crashed processes left in the driver were evicted.
    pub evicted: u64,
    /// Where a crash-looping cache was moved.
    pub set_aside: Option<PathBuf>,
}

/// Opens `path` after undoing what crashed processes left: each entry that was in the driver when
/// its process died is evicted (and logged once), and after `CRASH_LOOP_LIMIT` starts in a row that
/// found such a death the whole file is set aside.
pub fn open_guarded(path: &Path, opts: Options) -> Result<Guarded, store::Error> {
    let (guard, recovery) = Guard::open(Arc::clone(&opts.fs), path);
    let mut set_aside_to = None;
    if recovery.unclean_starts >= CRASH_LOOP_LIMIT {
        if let Ok(to) = set_aside(&*opts.fs, path) {
            warn(&format!(
                "the app died {} times in a row with a cached binary in the OpenCL driver: moved the cache to {} \
                 so this start builds from source",
                recovery.unclean_starts,
                to.display()
            ));
            set_aside_to = Some(to);
        }
        guard.clear(true);
    }
    let store = Store::open(path, opts)?;
    let mut evicted = 0;
    if set_aside_to.is_none() {
        for key in &recovery.in_flight {
            if evict(&store, key) {
                evicted += 1;
                warn(&format!(
                    "a process died while the OpenCL driver loaded the cached binary {:?} of {} (its mark is held by \
                     no running process): evicted it, so it is rebuilt from source",
                    String::from_utf8_lossy(key),
                    path.display()
                ));
            }
        }
    }
    guard.count_evictions(evicted);
    Ok(Guarded {
        store,
        guard,
        evicted,
        set_aside: set_aside_to,
    })
}

/// Removes a program binary (and its source hash) and commits the removal; true if it was there.
fn evict(store: &Store, key: &[u8]) -> bool {
    let h = program_hash_key(key);
    let removed = store.remove(key).unwrap_or(false);
    let _ = store.remove(&h);
    if removed {
        if let Err(e) = store.flush() {
            warn(&format!(
                "{e}: could not commit the eviction; it is retried at the next flush"
            ));
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Value;

    #[test]
    fn a_guarded_open_registers_its_guard_and_a_plain_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let guarded = dir.path().join("guarded.bin");
        let plain = dir.path().join("plain.bin");
        let s = open_store(
            &guarded,
            OpenOptions {
                crash_guard: Some(Duration::from_millis(500)),
                ..OpenOptions::default()
            },
        )
        .unwrap();
        s.put(b"k", Value::copy_from(b"v")).unwrap();
        s.flush().unwrap();
        let _ = open_store(&plain, OpenOptions::default()).unwrap();
        assert!(registry::mark(&guarded, b"k"));
        assert_eq!(registry::stats(&guarded).unwrap().marks, 1);
        assert!(registry::end(&guarded));
        assert!(!registry::mark(&plain, b"k"));
        assert!(registry::stats(&plain).is_none());
    }
}
