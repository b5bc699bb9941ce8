//! The log sink: a callback may call back into the library (replace the callback, log) without a
//! deadlock, and the default sink writes each message whole, in one `write`, so it cannot
//! interleave mid-line with what the app itself writes to stderr.
//!
//! Each case runs in a child process (this test binary again, in a role) killed after a deadline,
//! so a deadlock fails the test instead of hanging it, and the process-wide sink of one case cannot
//! leak into another.

use mace_storage::ffi::{mace_storage_log, mace_storage_set_log_callback, MaceStorageLogLevel};
use std::ffi::{c_char, c_void, CStr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "MACE_STORAGE_LOG_SINK_ROLE";
const WARNING: MaceStorageLogLevel = MaceStorageLogLevel::MACE_STORAGE_LOG_WARNING;

/// Runs `test` of this binary as a child in `role`; fails if it does not succeed within 20 s.
fn run_child(test: &str, role: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{role}: the child failed ({status})");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{role}: deadlocked (the child did not finish within 20 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(text: &CStr) {
    // SAFETY: a NUL-terminated string.
    unsafe { mace_storage_log(WARNING, text.as_ptr()) };
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn quiet(_: MaceStorageLogLevel, _: *const c_char, _: *mut c_void) {
    CALLS.fetch_add(100, Ordering::SeqCst);
}

/// On its first message, replaces itself with `quiet`.
extern "C" fn replaces_itself(_: MaceStorageLogLevel, _: *const c_char, _: *mut c_void) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    mace_storage_set_log_callback(Some(quiet), std::ptr::null_mut(), WARNING);
}

/// Logs once more from inside the callback (the second message reaches the callback too).
extern "C" fn logs_again(_: MaceStorageLogLevel, message: *const c_char, _: *mut c_void) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the library passes a NUL-terminated message valid during the call.
    if unsafe { CStr::from_ptr(message) } == c"first" {
        // Long enough for the other thread's replacement to queue up behind this call.
        std::thread::sleep(Duration::from_millis(1));
        log(c"second");
    }
}

#[test]
fn a_callback_that_replaces_the_callback_does_not_deadlock() {
    if std::env::var(ROLE).is_ok() {
        mace_storage_set_log_callback(Some(replaces_itself), std::ptr::null_mut(), WARNING);
        log(c"first");
        log(c"second");
        // One call of the first callback, then one of its replacement.
        assert_eq!(CALLS.load(Ordering::SeqCst), 101);
        return;
    }
    run_child(
        "a_callback_that_replaces_the_callback_does_not_deadlock",
        "replace",
    );
}

#[test]
fn a_callback_that_logs_does_not_deadlock() {
    if std::env::var(ROLE).is_ok() {
        mace_storage_set_log_callback(Some(logs_again), std::ptr::null_mut(), WARNING);
        // Another thread replacing the callback meanwhile: a waiting writer makes a second read
        // lock taken by the same thread block, if the sink's lock were held during the call.
        let t = std::thread::spawn(|| {
            for _ in 0..200 {
                mace_storage_set_log_callback(Some(logs_again), std::ptr::null_mut(), WARNING);
            }
        });
        for _ in 0..200 {
            log(c"first");
        }
        t.join().unwrap();
        assert_eq!(CALLS.load(Ordering::SeqCst), 400);
        return;
    }
    run_child("a_callback_that_logs_does_not_deadlock", "log");
}

#[test]
fn the_default_sink_writes_each_message_in_one_write() {
    if std::env::var(ROLE).is_ok() {
        // stderr becomes a SOCK_SEQPACKET socket: every write(2) arrives as one packet, so the
        // packets show exactly how the message was written.
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: fd 2 is open; it is kept aside and replaced by the socket's sending end.
        let saved = unsafe { libc::dup(2) };
        assert!(saved >= 0);
        // SAFETY: both descriptors are open.
        assert_eq!(unsafe { libc::dup2(fds[1], 2) }, 2);
        log(c"the whole message, with its level");
        // SAFETY: the real stderr comes back (closing the socket's end on fd 2) and the other copy
        // of the sending end is closed, so the reads below end.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
            libc::close(fds[1]);
        }
        let mut packets = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(fds[0], buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            packets.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
        }
        assert_eq!(
            packets,
            ["mace-storage warning: the whole message, with its level\n"]
        );
        return;
    }
    run_child(
        "the_default_sink_writes_each_message_in_one_write",
        "one-write",
    );
}
