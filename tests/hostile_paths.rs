//! Hostile paths and arguments: a cache path that is a FIFO, a device, a directory, a socket or a
//! symlink to a device is refused with an error that says what it is, never read without end and
//! never waited on; a file larger than `max_file_len` is not read and left alone; a put the file
//! could never hold is refused at `put`, so it cannot block later flushes; the C API names what is
//! wrong with its arguments.

mod common;

use mace_storage::ffi::{
    mace_storage_clear, mace_storage_close, mace_storage_flush, mace_storage_get,
    mace_storage_last_error, mace_storage_open, mace_storage_open_bytes, mace_storage_put,
    mace_storage_value_free, MaceStorage, MaceStorageOptions, MaceStorageStatus, MaceStorageVerify,
};
use mace_storage::format::Format;
use mace_storage::store::{Error, Options, Store, Value, Verify, DEFAULT_MAX_FILE_LEN};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on another thread and fails the test if it has not returned within 20 s: a hang is a
/// failure, not a stuck test run.
fn within_time<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!("{what}: still running after 20 s (blocked, or reading without end)")
        })
}

/// Store::open's error for `path`, which must be refused, as text: the same whether the store
/// reads the file whole (eager) or through a read handle (lazy).
fn store_open_error(path: &Path) -> String {
    let errors: Vec<String> = [Verify::Eager, Verify::Lazy]
        .into_iter()
        .map(|verify| {
            let p = path.to_path_buf();
            let r = within_time(&format!("Store::open({})", p.display()), move || {
                let opts = Options {
                    verify,
                    ..Options::default()
                };
                Store::open(&p, opts).map(|_| ())
            });
            match r {
                Ok(()) => panic!("Store::open({}, {verify:?}) succeeded", path.display()),
                Err(e) => e.to_string(),
            }
        })
        .collect();
    assert_eq!(errors[0], errors[1]);
    errors[0].clone()
}

/// mace_storage_open's status and last error for `path`.
fn c_open(path: &Path, options: Option<MaceStorageOptions>) -> (MaceStorageStatus, String, usize) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    within_time(
        &format!("mace_storage_open({})", path.display()),
        move || {
            let mut s: *mut MaceStorage = std::ptr::null_mut();
            let o = options.as_ref().map_or(std::ptr::null(), |o| o as *const _);
            // SAFETY: a valid C string, NULL or valid options, a writable out pointer.
            let st = unsafe { mace_storage_open(p.as_ptr(), o, &mut s) };
            // SAFETY: NULL asks for this thread's last error of any call.
            let msg = unsafe { CStr::from_ptr(mace_storage_last_error(std::ptr::null())) }
                .to_string_lossy()
                .into_owned();
            (st, msg, s as usize)
        },
    )
}

fn close(s: usize) {
    // SAFETY: a handle from mace_storage_open, or NULL.
    unsafe { mace_storage_close(s as *mut MaceStorage) };
}

/// Checks that `path` is refused through both APIs, naming `kind`.
fn refused(path: &Path, kind: &str) {
    let e = store_open_error(path);
    assert!(
        e.contains(kind) && e.contains("not a regular file"),
        "{}: {e}",
        path.display()
    );
    let (st, msg, s) = c_open(path, None);
    assert_eq!(
        st,
        MaceStorageStatus::MACE_STORAGE_IO_ERROR,
        "{}: {msg}",
        path.display()
    );
    assert!(s == 0, "a handle for a refused path");
    assert!(msg.contains(kind), "{}: {msg}", path.display());
    let lazy = MaceStorageOptions {
        verify: MaceStorageVerify::MACE_STORAGE_VERIFY_LAZY as i32,
        ..MaceStorageOptions::default()
    };
    let (st, msg, s) = c_open(path, Some(lazy));
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_IO_ERROR, "lazy: {msg}");
    assert!(s == 0 && msg.contains(kind), "lazy: {msg}");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let d = common::temp_dir("fifo");
    let p = d.path().join("cache.bin");
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    refused(&p, "a FIFO");
}

#[test]
fn character_devices_are_refused_directly_and_through_a_symlink() {
    refused(Path::new("/dev/zero"), "a character device");
    let d = common::temp_dir("dev-link");
    let link = d.path().join("cache.bin");
    std::os::unix::fs::symlink("/dev/urandom", &link).unwrap();
    refused(&link, "a character device");
    let link2 = d.path().join("zero.bin");
    std::os::unix::fs::symlink("/dev/zero", &link2).unwrap();
    refused(&link2, "a character device");
}

#[test]
fn a_directory_is_refused() {
    let d = common::temp_dir("dir");
    let p = d.path().join("cache.bin");
    std::fs::create_dir(&p).unwrap();
    refused(&p, "a directory");
}

#[test]
fn a_socket_is_refused() {
    let d = common::temp_dir("sock");
    let p = d.path().join("cache.bin");
    let _listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
    refused(&p, "a socket");
}

#[test]
fn an_empty_path_is_an_invalid_argument() {
    let e = Store::open("", Options::default())
        .err()
        .expect("Store::open(\"\") refused");
    assert!(e.to_string().contains("empty"), "{e}");
    let (st, msg, s) = c_open(Path::new(""), None);
    assert_eq!(
        st,
        MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT,
        "{msg}"
    );
    assert_eq!(s, 0);
    assert!(msg.contains("path is empty"), "{msg}");
}

/// A file of `len` bytes that takes no disk space.
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn a_file_larger_than_max_file_len_is_not_read_and_left_alone() {
    let d = common::temp_dir("too-large");
    let p = d.path().join("cache.bin");
    // Larger than the default limit, read at once only if the limit is ignored (timed).
    sparse(&p, DEFAULT_MAX_FILE_LEN + 1);
    let before = std::fs::metadata(&p).unwrap();
    let q = p.clone();
    let s = within_time("open of a too-large file", move || {
        Store::open(&q, Options::default()).unwrap()
    });
    let r = s.report();
    assert!(r.too_large && r.set_aside.is_none() && !r.missing, "{r:?}");
    assert_eq!(r.file_len, DEFAULT_MAX_FILE_LEN + 1);
    assert!(r.damage.notes.join(" ").contains("not read"), "{r:?}");
    assert!(s.is_empty());
    // A later flush does not replace it: the puts stay pending and the flush says why.
    s.put(b"k", Value::copy_from(b"v")).unwrap();
    let e = s.flush().unwrap_err().to_string();
    assert!(e.contains("more than the largest file"), "{e}");
    let after = std::fs::metadata(&p).unwrap();
    assert_eq!(
        (after.len(), after_ino(&after)),
        (before.len(), after_ino(&before))
    );
    assert!(!d.path().join("cache.bin.corrupt").exists());
    // Once the caller clears, the file is theirs to replace.
    s.clear().unwrap();
    s.put(b"k", Value::copy_from(b"v")).unwrap();
    s.flush().unwrap();
    let again = Store::open(&p, Options::default()).unwrap();
    assert_eq!(again.get(b"k").as_deref(), Some(&b"v"[..]));
    assert!(std::fs::metadata(&p).unwrap().len() < 200);
}

fn after_ino(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[test]
fn max_file_len_is_an_option_in_both_apis() {
    let d = common::temp_dir("max-len");
    let p = d.path().join("cache.bin");
    let s = Store::open(&p, Options::default()).unwrap();
    s.put(b"k", Value::from_vec(vec![7; 3 << 20])).unwrap();
    s.flush().unwrap();
    drop(s);
    let small = Options {
        max_file_len: 2 << 20,
        ..Options::default()
    };
    let s = Store::open(&p, small.clone()).unwrap();
    assert!(s.report().too_large, "{:?}", s.report());
    let big = Options {
        max_file_len: 4 << 20,
        ..Options::default()
    };
    let s = Store::open(&p, big).unwrap();
    assert!(!s.report().too_large && s.len() == 1);
    // Through C: 2 MiB refuses the 3 MiB file, the default reads it.
    let o = MaceStorageOptions {
        max_file_mib: 2,
        ..MaceStorageOptions::default()
    };
    let (st, msg, h) = c_open(&p, Some(o));
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK, "{msg}");
    let key = b"k";
    let mut v = std::ptr::null_mut();
    // SAFETY: an open handle, a valid key and out pointer.
    let got = unsafe { mace_storage_get(h as *mut MaceStorage, key.as_ptr(), 1, &mut v) };
    assert_eq!(got, MaceStorageStatus::MACE_STORAGE_NOT_FOUND);
    close(h);
    let (st, msg, h) = c_open(&p, None);
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK, "{msg}");
    // SAFETY: as above.
    let got = unsafe { mace_storage_get(h as *mut MaceStorage, key.as_ptr(), 1, &mut v) };
    assert_eq!(got, MaceStorageStatus::MACE_STORAGE_OK);
    // SAFETY: a value from mace_storage_get.
    unsafe { mace_storage_value_free(v) };
    close(h);
}

/// A value of `len` zero bytes whose pages are never touched (no memory is used until read).
fn untouched(len: usize) -> Value {
    Value::from_vec(vec![0u8; len])
}

#[test]
fn a_value_no_file_can_hold_is_refused_at_put_and_blocks_nothing() {
    let (_d, p) = common::temp_path("huge-put", "cache.bin");
    let opts = Options {
        max_file_len: u64::MAX,
        ..Options::default()
    };
    for format in Format::WRITABLE {
        let s = Store::open(
            &p,
            Options {
                format,
                ..opts.clone()
            },
        )
        .unwrap();
        s.put(b"small", Value::copy_from(b"v")).unwrap();
        let huge = (i32::MAX as usize) + 1;
        let e = s.put(b"huge", untouched(huge)).unwrap_err();
        assert!(matches!(e, Error::Encode(_)), "{format}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("2147483647"),
            "{format}: the limit is named: {msg}"
        );
        // The refused put left nothing behind: the flush saves the other key.
        s.flush().unwrap();
        let again = Store::open(&p, opts.clone()).unwrap();
        assert!(again.get(b"huge").is_none());
        assert_eq!(again.get(b"small").as_deref(), Some(&b"v"[..]), "{format}");
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn the_put_that_would_make_the_file_too_large_is_refused() {
    let (_d, p) = common::temp_path("total-put", "cache.bin");
    // Protobuf formats: 2 GiB - 1 in all; two 1.2 GB values do not fit together.
    let s = Store::open(
        &p,
        Options {
            max_file_len: u64::MAX,
            ..Options::default()
        },
    )
    .unwrap();
    s.put(b"a", untouched(1_200_000_000)).unwrap();
    let e = s
        .put(b"b", untouched(1_200_000_000))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2147483647") && e.contains("\"b\""), "{e}");
    // Replacing a value is not adding one: the bound is recomputed before refusing.
    s.put(b"a", untouched(1_500_000_000)).unwrap();
    s.remove(b"a").unwrap();
    s.put(b"b", untouched(1_200_000_000)).unwrap();
    s.clear().unwrap();
    // The default max_file_len (512 MiB): the store never writes a file it would refuse to load.
    let s = Store::open(&p, Options::default()).unwrap();
    s.put(b"a", untouched(300 << 20)).unwrap();
    let e = s.put(b"b", untouched(300 << 20)).unwrap_err().to_string();
    assert!(
        e.contains(&DEFAULT_MAX_FILE_LEN.to_string()) && e.contains("max_file_len"),
        "{e}"
    );
    s.put(b"c", Value::copy_from(b"small")).unwrap();
}

/// The message of the last failed call on `s`.
fn last_error(s: *mut MaceStorage) -> String {
    // SAFETY: `s` is an open handle.
    unsafe { CStr::from_ptr(mace_storage_last_error(s)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn c_arguments_say_what_is_wrong() {
    let (_d, p) = common::temp_path("c-args", "cache.bin");
    let (st, msg, h) = c_open(&p, None);
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_OK, "{msg}");
    let s = h as *mut MaceStorage;
    let k = b"key";
    // A negative length converted to size_t.
    let huge = (-1isize) as usize;
    // SAFETY: an open handle; the lengths are refused before any pointer is read.
    let st = unsafe { mace_storage_put(s, k.as_ptr(), 3, k.as_ptr(), huge) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT);
    let m = last_error(s);
    assert!(
        m.contains("length of value") && m.contains(&huge.to_string()),
        "{m}"
    );
    assert!(!m.contains("NULL"), "{m}");
    // SAFETY: as above.
    let st = unsafe { mace_storage_put(s, k.as_ptr(), huge, k.as_ptr(), 3) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT);
    assert!(last_error(s).contains("length of key"), "{}", last_error(s));
    // SAFETY: as above.
    let st = unsafe { mace_storage_put(s, k.as_ptr(), 3, std::ptr::null(), 5) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT);
    assert!(
        last_error(s).contains("value is NULL with a non-zero length (5)"),
        "{}",
        last_error(s)
    );
    let mut v = std::ptr::null_mut();
    // SAFETY: as above.
    let st = unsafe { mace_storage_get(s, k.as_ptr(), huge, &mut v) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT);
    assert!(last_error(s).contains("length of key"), "{}", last_error(s));
    // The handle still works.
    // SAFETY: as above, valid lengths.
    assert_eq!(
        unsafe { mace_storage_put(s, k.as_ptr(), 3, k.as_ptr(), 3) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
    // SAFETY: an open handle.
    assert_eq!(
        unsafe { mace_storage_flush(s) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
    // SAFETY: an open handle.
    assert_eq!(
        unsafe { mace_storage_clear(s) },
        MaceStorageStatus::MACE_STORAGE_OK
    );
    close(h);
    let mut out = std::ptr::null_mut();
    // SAFETY: the length is refused before the pointer is read.
    let st = unsafe { mace_storage_open_bytes(k.as_ptr(), huge, &mut out) };
    assert_eq!(st, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT);
    assert!(out.is_null());
    // SAFETY: NULL asks for this thread's last error.
    let m = unsafe { CStr::from_ptr(mace_storage_last_error(std::ptr::null())) }
        .to_string_lossy()
        .into_owned();
    assert!(m.contains("length of data"), "{m}");
}

#[test]
fn a_file_is_read_up_to_the_length_fstat_gave_never_further() {
    use mace_storage::io::{posix::PosixFs, Fs};
    // A /proc file is regular but reports 0 bytes while reading gives more: only fstat's 0 is read.
    let p = Path::new("/proc/self/status");
    assert!(!std::fs::read(p).unwrap().is_empty());
    let (bytes, meta) = PosixFs.read(p).unwrap().unwrap();
    assert_eq!((bytes.len(), meta.len), (0, 0));
    let (bytes, _) = PosixFs.read_observed(p, &mut |_| {}).unwrap().unwrap();
    assert!(bytes.is_empty());
    // A read handle reads nothing past it either.
    let (h, meta) = PosixFs.open_read(p).unwrap().unwrap();
    assert_eq!(meta.len, 0);
    let mut one = [0u8; 1];
    let e = h.read_exact_at(0, &mut one).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    h.read_exact_at(0, &mut []).unwrap();
}

/// `verify` in the C options: the lazy setting serves the values, an unknown one is refused.
#[test]
fn verify_is_an_option_of_the_c_api() {
    let (_d, p) = common::temp_path("verify-opt", "cache.bin");
    let s = Store::open(&p, Options::default()).unwrap();
    s.put(b"k", Value::copy_from(b"value")).unwrap();
    s.flush().unwrap();
    drop(s);
    for (verify, want) in [
        (0, MaceStorageStatus::MACE_STORAGE_OK),
        (1, MaceStorageStatus::MACE_STORAGE_OK),
        (2, MaceStorageStatus::MACE_STORAGE_OK),
        (3, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT),
        (-1, MaceStorageStatus::MACE_STORAGE_INVALID_ARGUMENT),
    ] {
        let o = MaceStorageOptions {
            verify,
            ..MaceStorageOptions::default()
        };
        let (st, msg, h) = c_open(&p, Some(o));
        assert_eq!(st, want, "verify {verify}: {msg}");
        if st != MaceStorageStatus::MACE_STORAGE_OK {
            assert!(msg.contains("verify"), "{msg}");
            continue;
        }
        let mut v = std::ptr::null_mut();
        // SAFETY: an open handle, a valid key and out pointer.
        let got = unsafe { mace_storage_get(h as *mut MaceStorage, b"k".as_ptr(), 1, &mut v) };
        assert_eq!(got, MaceStorageStatus::MACE_STORAGE_OK, "verify {verify}");
        // SAFETY: a value from mace_storage_get.
        unsafe { mace_storage_value_free(v) };
        close(h);
    }
}

/// A FIFO or a directory where the lock file should be: a lazily opened store reads its values,
/// and neither its open (which looks for the read-ahead note) nor its drop (which leaves one)
/// blocks or fails.
#[test]
fn a_lock_path_that_is_no_file_costs_only_the_read_ahead_note() {
    for kind in ["fifo", "dir"] {
        let d = common::temp_dir(&format!("lock-{kind}"));
        let p = d.path().join("cache.bin");
        let s = Store::open(&p, Options::default()).unwrap();
        s.put(b"k", Value::copy_from(b"value")).unwrap();
        s.flush().unwrap();
        drop(s);
        let lock = d.path().join("cache.bin.lock");
        std::fs::remove_file(&lock).unwrap();
        if kind == "fifo" {
            let c = CString::new(lock.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        } else {
            std::fs::create_dir(&lock).unwrap();
        }
        let got = within_time(&format!("lazy open, get and drop, lock path a {kind}"), {
            let p = p.clone();
            move || {
                let opts = Options {
                    verify: Verify::Lazy,
                    ..Options::default()
                };
                let s = Store::open(&p, opts).unwrap();
                s.get(b"k").map(|v| v.to_vec())
            }
        });
        assert_eq!(got.as_deref(), Some(&b"value"[..]), "{kind}");
    }
}
