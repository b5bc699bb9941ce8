//! The few operating-system calls the layers above make that are not files: safe wrappers, so that
//! `unsafe` stays in `io` and `ffi`.

/// Runs `f` when the process exits normally (`exit` or a return from `main`), as C's `atexit`
/// does; `false` if the C library refused to register it. `f` must not unwind.
pub fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a valid `extern "C" fn()`; the caller promises it never unwinds.
    unsafe { libc::atexit(f) == 0 }
}

/// Writes one line to Android's log (`__android_log_write`) with priority `prio` (3 DEBUG to 6
/// ERROR) under `tag`.
#[cfg(target_os = "android")]
pub fn android_log(prio: i32, tag: &std::ffi::CStr, text: &std::ffi::CStr) {
    use std::ffi::c_char;
    #[link(name = "log")]
    extern "C" {
        fn __android_log_write(prio: i32, tag: *const c_char, text: *const c_char) -> i32;
    }
    // SAFETY: both strings are NUL-terminated and live for the duration of the call.
    unsafe { __android_log_write(prio, tag.as_ptr(), text.as_ptr()) };
}

/// The value of Android system property `name` (e.g. `ro.build.fingerprint`); `None` if unset.
#[cfg(target_os = "android")]
pub fn android_property(name: &std::ffi::CStr) -> Option<String> {
    use std::ffi::{c_char, CStr};
    extern "C" {
        fn __system_property_get(name: *const c_char, value: *mut c_char) -> i32;
    }
    // PROP_VALUE_MAX is 92 bytes.
    let mut buf = [0 as c_char; 92];
    // SAFETY: a NUL-terminated name and a buffer of PROP_VALUE_MAX bytes, as the API requires.
    let n = unsafe { __system_property_get(name.as_ptr(), buf.as_mut_ptr()) };
    if n <= 0 {
        return None;
    }
    // SAFETY: the property API NUL-terminates what it wrote into `buf`.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}
