//! The library's one log sink, on the ground floor: every module may log, and nothing here depends
//! on another module of the crate. By default messages go to stderr (the Android log on Android); a
//! Rust user replaces the sink with [`set_sink`], a C user with `mace_storage_set_log_callback`.

use std::ffi::{CStr, CString};
use std::sync::Arc;

/// Severity of a log message.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MaceStorageLogLevel {
    /// Details for debugging.
    MACE_STORAGE_LOG_DEBUG = 0,
    /// Normal events (a first start without a cache file).
    MACE_STORAGE_LOG_INFO = 1,
    /// Something was wrong and the library handled it; the message says what it did.
    MACE_STORAGE_LOG_WARNING = 2,
    /// An operation failed.
    MACE_STORAGE_LOG_ERROR = 3,
}

/// A log level by its Rust name.
pub type Level = MaceStorageLogLevel;

/// Receives each message at or above the sink's level: the level and the text.
pub type SinkFn = dyn Fn(Level, &str) + Send + Sync;

struct Sink {
    receiver: Option<Arc<SinkFn>>,
    min_level: Level,
}

static SINK: parking_lot::RwLock<Sink> = parking_lot::RwLock::new(Sink {
    receiver: None,
    min_level: Level::MACE_STORAGE_LOG_INFO,
});

/// Routes every message at `min_level` and above to `receiver` (`None` restores the default:
/// stderr, or the Android log).
pub fn set_sink(receiver: Option<Arc<SinkFn>>, min_level: Level) {
    *SINK.write() = Sink {
        receiver,
        min_level,
    };
}

/// Sends a message to the sink, if its level is at or above the sink's.
pub fn log(level: Level, msg: &str) {
    // The lock is released before the call: a receiver may log or replace itself, and one that
    // blocks holds up no other thread.
    let receiver = {
        let sink = SINK.read();
        if level < sink.min_level {
            return;
        }
        sink.receiver.clone()
    };
    match receiver {
        Some(r) => r(level, msg),
        None => default_log(level, &c_text(msg)),
    }
}

/// Logs a warning: something was wrong and the library handled it (the text says how).
pub fn warn(msg: &str) {
    log(Level::MACE_STORAGE_LOG_WARNING, msg);
}

/// `msg` as a C string, a NUL in it spelled `\0` so the text is not cut there.
pub fn c_text(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).unwrap_or_default()
}

#[cfg(target_os = "android")]
fn default_log(level: Level, text: &CStr) {
    // ANDROID_LOG_DEBUG = 3, INFO = 4, WARN = 5, ERROR = 6.
    crate::io::os::android_log(level as i32 + 3, c"mace-storage", text);
}

#[cfg(not(target_os = "android"))]
fn default_log(level: Level, text: &CStr) {
    let tag = match level {
        Level::MACE_STORAGE_LOG_DEBUG => "debug",
        Level::MACE_STORAGE_LOG_INFO => "info",
        Level::MACE_STORAGE_LOG_WARNING => "warning",
        Level::MACE_STORAGE_LOG_ERROR => "error",
    };
    // One write for the whole line: `eprintln!` writes its pieces separately, and the app's own
    // output (MACE's logging) then lands in the middle of the line.
    let line = format!("mace-storage {tag}: {}\n", text.to_string_lossy());
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}
