//! The process-wide registry of crash-loop guards, by cache path: the MACE drop-in closes its store
//! after each call but marks binaries between calls, so a guard outlives the store that opened it.
//! Each entry remembers the process that registered it: a forked child inherits the map but none
//! of its markers.

use super::guard::{Guard, GuardStats};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A registered guard, its mark window, and the process that registered it.
struct Entry {
    guard: Arc<Guard>,
    window: Duration,
    owner: u32,
}

static GUARDS: Mutex<Option<HashMap<PathBuf, Entry>>> = Mutex::new(None);

/// Keeps one guard per cache and process: a later guarded open of the same cache adds what its
/// scan found to the registered guard, so this process's marks stay in one marker.
pub fn register(path: &Path, guard: Arc<Guard>, window: Duration) {
    let pid = std::process::id();
    let mut guards = GUARDS.lock();
    let map = guards.get_or_insert_with(HashMap::new);
    match map.get_mut(path) {
        Some(e) if e.owner == pid => {
            e.guard.adopt(&guard);
            e.window = window;
        }
        _ => {
            map.insert(
                path.to_path_buf(),
                Entry {
                    guard,
                    window,
                    owner: pid,
                },
            );
        }
    }
    drop(guards);
    at_exit_end_marks();
}

/// Registers, once per process image, the `atexit` handler that ends this process's marks: a
/// normal exit right after the driver got a binary is no crash.
fn at_exit_end_marks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn end_all() {
        let _ = std::panic::catch_unwind(|| {
            let pid = std::process::id();
            let guards: Vec<Arc<Guard>> = GUARDS
                .lock()
                .as_ref()
                .map(|m| {
                    m.values()
                        .filter(|e| e.owner == pid)
                        .map(|e| Arc::clone(&e.guard))
                        .collect()
                })
                .unwrap_or_default();
            for g in guards {
                g.close();
            }
        });
    }
    // Inherited by forked children with the handler itself; `end_all` only closes its own guards.
    if !REGISTERED.swap(true, Ordering::SeqCst) {
        // `end_all` catches every panic, so it never unwinds.
        crate::io::os::at_exit(end_all);
    }
}

/// This process's guard of the cache at `path` and its mark window, if a guarded open of it
/// happened here.
pub fn registered(path: &Path) -> Option<(Arc<Guard>, Duration)> {
    let pid = std::process::id();
    GUARDS.lock().as_ref().and_then(|m| {
        m.get(path)
            .filter(|e| e.owner == pid)
            .map(|e| (Arc::clone(&e.guard), e.window))
    })
}

/// Marks `key` of the cache at `path` as handed to the driver now, for the registered window;
/// false if no guarded open of `path` happened in this process.
pub fn mark(path: &Path, key: &[u8]) -> bool {
    registered(path).map(|(g, w)| g.mark_for(key, w)).is_some()
}

/// Ends this process's mark on the cache at `path`, if one stands; false if no guarded open of
/// `path` happened in this process.
pub fn end(path: &Path) -> bool {
    registered(path).map(|(g, _)| g.end()).is_some()
}

/// What this process's guard of the cache at `path` did, if a guarded open of it happened here.
pub fn stats(path: &Path) -> Option<GuardStats> {
    registered(path).map(|(g, _)| g.stats())
}
