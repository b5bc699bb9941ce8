//! The real filesystem, through POSIX calls.

use super::{
    buffer_for, past_the_end, within, FileHandle, FileMeta, Fs, LockKind, ProcessLock, ReadHandle,
    OBSERVE_CHUNK,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct PosixFs;

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    FileMeta {
        len: m.len(),
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        mode: m.mode() & 0o7777,
    }
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn errno_is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// Never follow a link at a name the library opens; never leak a descriptor into a child.
const NOFOLLOW: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a path that is not a regular file is, for the error that refuses it.
fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {kind}, not a regular file: refused (a cache file must be a regular file)",
            path.display()
        ),
    )
}

/// Opens `path` for reading without ever blocking (a FIFO would block `open` until a writer comes)
/// and only if it is a regular file (a device such as `/dev/zero` never ends); `Ok(None)` if it does
/// not exist. The descriptor is blocking again when returned.
fn open_for_read(path: &Path) -> io::Result<Option<(File, FileMeta)>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let f = match not_found_is_none(opened) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        // A socket cannot be opened at all (ENXIO): say what the path is instead.
        Err(e) => {
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.file_type().is_file() => not_regular(path, file_kind(m.file_type())),
                _ => e,
            })
        }
    };
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(not_regular(path, file_kind(m.file_type())));
    }
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `f`; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFL takes an int of flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some((f, meta_of(&m))))
}

struct PosixFile(File);

impl FileHandle for PosixFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn meta(&self) -> io::Result<FileMeta> {
        Ok(meta_of(&self.0.metadata()?))
    }

    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        self.0
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }
}

/// A file open for reading at offsets, within the length `fstat` gave when it was opened.
struct PosixRead {
    file: File,
    len: u64,
}

impl ReadHandle for PosixRead {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if !within(offset, buf.len(), self.len) {
            return Err(past_the_end());
        }
        let mut done = 0;
        while done < buf.len() {
            // pread: the descriptor's offset is untouched, so threads share the handle freely.
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => return Err(past_the_end()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn meta(&self) -> io::Result<FileMeta> {
        Ok(meta_of(&self.file.metadata()?))
    }
}

impl Fs for PosixFs {
    fn open_read(&self, path: &Path) -> io::Result<Option<(Arc<dyn ReadHandle>, FileMeta)>> {
        Ok(open_for_read(path)?.map(|(file, meta)| {
            let h: Arc<dyn ReadHandle> = Arc::new(PosixRead {
                file,
                len: meta.len,
            });
            (h, meta)
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let Some((f, meta)) = open_for_read(path)? else {
            return Ok(None);
        };
        let mut buf = buffer_for(meta.len)?;
        // Never past the length fstat gave: a file that grows meanwhile is read as it was.
        f.take(meta.len).read_to_end(&mut buf)?;
        Ok(Some((buf, meta)))
    }

    fn read_observed(
        &self,
        path: &Path,
        observe: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let Some((f, meta)) = open_for_read(path)? else {
            return Ok(None);
        };
        let mut buf = buffer_for(meta.len)?;
        let mut f = f.take(meta.len);
        // Piece by piece into the one exact-size buffer, each piece observed while it is in cache.
        loop {
            let start = buf.len();
            let want = (buf.capacity() - start).clamp(1, OBSERVE_CHUNK) as u64;
            (&mut f).take(want).read_to_end(&mut buf)?;
            if buf.len() == start {
                break;
            }
            observe(&buf);
        }
        Ok(Some((buf, meta)))
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<FileMeta>> {
        Ok(not_found_is_none(std::fs::metadata(path))?.map(|m| meta_of(&m)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(NOFOLLOW)
            .open(path)?;
        Ok(Box::new(PosixFile(f)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(NOFOLLOW)
            .open(path)?;
        Ok(Box::new(PosixFile(f)))
    }

    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(PosixFile(
            OpenOptions::new()
                .write(true)
                .custom_flags(NOFOLLOW)
                .open(path)?,
        )))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        rename_noreplace(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn lock(&self, lock_path: &Path, wait: Option<Duration>) -> io::Result<ProcessLock> {
        let deadline = wait.map(|w| Instant::now() + w);
        // Until the file locked is the one at the name: a cleaner may unlink or replace it meanwhile.
        for _ in 0..1000 {
            let f = open_lock_file(lock_path)?;
            let kind = flock_wait(&f, deadline)?;
            if kind == LockKind::Unavailable {
                return Ok(ProcessLock::new(kind, None));
            }
            let held = f.metadata()?;
            match std::fs::symlink_metadata(lock_path) {
                Ok(now) if same_file(&now, &held) => {
                    return Ok(ProcessLock::new(kind, Some(Box::new(f))))
                }
                _ => continue,
            }
        }
        Err(io::Error::other("the lock file keeps being replaced"))
    }

    fn lock_file(
        &self,
        path: &Path,
        wait: Option<Duration>,
    ) -> io::Result<Option<(ProcessLock, FileMeta)>> {
        let deadline = wait.map(|w| Instant::now() + w);
        for _ in 0..1000 {
            // Read-only is enough for flock: a file of mode 0444 is locked as well.
            let f = match OpenOptions::new()
                .read(true)
                .custom_flags(NOFOLLOW)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let kind = flock_wait(&f, deadline)?;
            let held = f.metadata()?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if same_file(&now, &held) => {
                    let guard: Option<Box<dyn Send>> = match kind {
                        LockKind::Unavailable => None,
                        _ => Some(Box::new(f)),
                    };
                    return Ok(Some((ProcessLock::new(kind, guard), meta_of(&held))));
                }
                // Replaced or removed while we waited: lock what is there now.
                _ => continue,
            }
        }
        Err(io::Error::other("the cache file keeps being replaced"))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<ProcessLock>> {
        // Read-write without O_CREAT: a file that vanished is not recreated by its observer.
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(match try_lock_file(&f)? {
            None => None,
            Some(LockKind::Unavailable) => Some(ProcessLock::new(LockKind::Unavailable, None)),
            Some(kind) => Some(ProcessLock::new(kind, Some(Box::new(f)))),
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let mut p = path.to_path_buf();
        // As many links as the kernel follows before ELOOP.
        for _ in 0..40 {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let to = std::fs::read_link(&p)?;
                    p = if to.is_absolute() {
                        to
                    } else {
                        super::parent_dir(&p).join(to)
                    };
                }
                _ => return Ok(p),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }
}

/// Opens (creating) the lock file without following a link at its name. A link there is removed
/// (the library never made it); a lock file this user may not write is opened read-only (flock
/// needs no write access); one it may not even read is replaced by a fresh one.
fn open_lock_file(p: &Path) -> io::Result<File> {
    let mut last = None;
    for _ in 0..8 {
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(NOFOLLOW)
            .open(p);
        let e = match rw {
            Ok(f) => return Ok(f),
            Err(e) => e,
        };
        if errno_is(&e, libc::ELOOP) {
            std::fs::remove_file(p)?;
            last = Some(e);
            continue;
        }
        if e.kind() != io::ErrorKind::PermissionDenied && !errno_is(&e, libc::EROFS) {
            return Err(e);
        }
        match OpenOptions::new().read(true).custom_flags(NOFOLLOW).open(p) {
            Ok(f) => return Ok(f),
            Err(ro) if errno_is(&ro, libc::ELOOP) => std::fs::remove_file(p)?,
            Err(ro) if ro.kind() == io::ErrorKind::PermissionDenied => {
                // Ours may replace it only where we may write the directory; else the first error.
                let fresh = sibling_name(p, &format!(".{}.new", std::process::id()));
                let _ = std::fs::remove_file(&fresh);
                if OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(NOFOLLOW)
                    .open(&fresh)
                    .is_err()
                {
                    return Err(e);
                }
                if let Err(re) = std::fs::rename(&fresh, p) {
                    let _ = std::fs::remove_file(&fresh);
                    return Err(re);
                }
            }
            Err(_) => return Err(e),
        }
        last = Some(e);
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot open the lock file")))
}

fn sibling_name(p: &Path, suffix: &str) -> PathBuf {
    super::sibling(p, suffix)
}

/// `rename(from, to)` that fails with `AlreadyExists` if something is at `to`: `renameat2` with
/// `RENAME_NOREPLACE` where the kernel and filesystem have it, else a hard link (which fails on an
/// existing name) and an unlink, else a check and a rename (filesystems with neither).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let (f, t) = (c(from)?, c(to)?);
        const RENAME_NOREPLACE: libc::c_uint = 1;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        ) {
            return Err(e);
        }
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
    }
}

/// Whether a process with this id exists (a crashed process's id is free, or reused only rarely).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Retries a libc call interrupted by a signal.
fn retry_eintr(mut f: impl FnMut() -> libc::c_int) -> io::Result<()> {
    loop {
        if f() == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes an exclusive `flock` on `f`, waiting until `deadline` (`None`: for ever); `TimedOut` after
/// it. flock, not a record lock: it works through read-only descriptors, so a lock file owned by
/// another user and a cache file of mode 0444 can both be locked.
fn flock_wait(f: &File, deadline: Option<Instant>) -> io::Result<LockKind> {
    let fd = f.as_raw_fd();
    let unsupported = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        )
    };
    let Some(deadline) = deadline else {
        // SAFETY: `fd` is an open descriptor owned by `f`.
        return match retry_eintr(|| unsafe { libc::flock(fd, libc::LOCK_EX) }) {
            Ok(()) => Ok(LockKind::Flock),
            Err(e) if unsupported(&e) => Ok(LockKind::Unavailable),
            Err(e) => Err(e),
        };
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: `fd` is an open descriptor owned by `f`.
        match retry_eintr(|| unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }) {
            Ok(()) => return Ok(LockKind::Flock),
            Err(e) if unsupported(&e) => return Ok(LockKind::Unavailable),
            Err(e) if errno_is(&e, libc::EWOULDBLOCK) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "held by another process for more than {} ms",
                            (now - started).as_millis()
                        ),
                    ));
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Takes `f`'s `flock` without waiting (the same lock [`PosixFs::lock`] waits for, so a marker one
/// process locked that way is seen as held by every other open file description): `None` if
/// another one holds it, [`LockKind::Unavailable`] where the filesystem has no `flock`.
fn try_lock_file(f: &File) -> io::Result<Option<LockKind>> {
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `f`.
    match retry_eintr(|| unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(()) => Ok(Some(LockKind::Flock)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
            ) =>
        {
            Ok(Some(LockKind::Unavailable))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::replace_atomically;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("mace-storage-posix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replace_and_read_back() {
        let d = tmpdir("replace");
        let p = d.join("f.bin");
        let fs = PosixFs;
        assert!(fs.read(&p).unwrap().is_none());
        replace_atomically(&fs, &p, &[b"abc", b"def"]).unwrap();
        let (data, meta) = fs.read(&p).unwrap().unwrap();
        assert_eq!(data, b"abcdef");
        assert_eq!(meta.len, 6);
        assert_eq!(
            fs.list_dir(&d).unwrap(),
            vec![p.clone()],
            "no temporary left"
        );
        let mut h = fs.open_existing(&p).unwrap();
        h.write_at(6, b"gh").unwrap();
        h.sync_data().unwrap();
        assert_eq!(fs.read(&p).unwrap().unwrap().0, b"abcdefgh");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn lock_excludes_a_second_handle() {
        let d = tmpdir("lock");
        let lp = d.join("f.bin.lock");
        let fs = PosixFs;
        let held = fs.lock(&lp, None).unwrap();
        assert_eq!(held.kind(), LockKind::Flock);
        let (tx, rx) = std::sync::mpsc::channel();
        let lp2 = lp.clone();
        let t = std::thread::spawn(move || {
            let _l = PosixFs.lock(&lp2, None).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn try_lock_tells_a_held_lock_and_never_creates() {
        let d = tmpdir("trylock");
        let lp = d.join("marker");
        let fs = PosixFs;
        assert_eq!(
            fs.try_lock(&lp).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert!(!lp.exists());
        let held = fs.lock(&lp, None).unwrap();
        assert!(fs.try_lock(&lp).unwrap().is_none());
        drop(held);
        let got = fs.try_lock(&lp).unwrap().unwrap();
        assert_eq!(got.kind(), LockKind::Flock);
        assert_eq!(fs.list_dir(&d).unwrap(), vec![lp.clone()]);
        std::fs::remove_dir_all(d).unwrap();
    }
}
