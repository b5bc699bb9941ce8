//! The OS build the cached binaries were built under: an OTA may change the GPU driver without
//! changing its version string, so a changed build drops every entry.

pub use crate::keys::OS_BUILD_KEY;
use crate::log::warn;
use crate::store::{self, Store, Value};

/// The OS build identity: `MACE_STORAGE_OS_BUILD_ID` if set, else Android's `ro.build.fingerprint`;
/// `None` elsewhere.
pub fn os_build_id() -> Option<String> {
    if let Ok(v) = std::env::var("MACE_STORAGE_OS_BUILD_ID") {
        return Some(v);
    }
    android_build_fingerprint()
}

#[cfg(target_os = "android")]
fn android_build_fingerprint() -> Option<String> {
    crate::io::os::android_property(c"ro.build.fingerprint")
}

#[cfg(not(target_os = "android"))]
fn android_build_fingerprint() -> Option<String> {
    None
}

/// Drops every entry if the OS build recorded in `store` differs from `current` (an OTA may have
/// changed the driver), and records `current`; returns how many entries were dropped.
pub fn check_os_build(store: &Store, current: &str) -> Result<u64, store::Error> {
    let recorded = store.get(OS_BUILD_KEY);
    if recorded.as_deref() == Some(current.as_bytes()) {
        return Ok(0);
    }
    let mut dropped = 0;
    if let Some(old) = recorded {
        dropped = store.len() as u64 - 1;
        store.clear()?;
        warn(&format!(
            "the OS build changed ({:?} -> {current:?}): dropped {dropped} cached entries of {}, which are \
             rebuilt from source",
            String::from_utf8_lossy(&old),
            store.path().display()
        ));
    }
    store.put(OS_BUILD_KEY, Value::copy_from(current.as_bytes()))?;
    // Recorded now, so an update before the app's first flush is still seen.
    if let Err(e) = store.flush() {
        warn(&format!(
            "{e}: the OS build could not be recorded yet; the next flush records it"
        ));
    }
    Ok(dropped)
}
