//! The real filesystem, through POSIX calls.

use super::{buffer_len, FileHandle, FileMeta, Fs, LockKind, ProcessLock, MAX_BUFFER};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct PosixFs;

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    FileMeta {
        len: m.len(),
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes read between two calls of the observer of [`Fs::read_observed`]: small enough to stay in
/// the CPU's cache, large enough to keep the calls few.
const OBSERVE_CHUNK: usize = 256 * 1024;

/// An empty buffer with room for exactly a file of `len` bytes (one allocation, no zeroing).
fn buffer_for(len: u64) -> io::Result<Vec<u8>> {
    let cap = buffer_len(len, MAX_BUFFER)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(cap).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate {cap} bytes for the file"),
        )
    })?;
    Ok(buf)
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
}

impl Fs for PosixFs {
    fn read(&self, path: &Path) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let Some(mut f) = not_found_is_none(File::open(path))? else {
            return Ok(None);
        };
        let meta = meta_of(&f.metadata()?);
        let mut buf = buffer_for(meta.len)?;
        f.read_to_end(&mut buf)?;
        Ok(Some((buf, meta)))
    }

    fn read_observed(
        &self,
        path: &Path,
        observe: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let Some(mut f) = not_found_is_none(File::open(path))? else {
            return Ok(None);
        };
        let meta = meta_of(&f.metadata()?);
        let mut buf = buffer_for(meta.len)?;
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
            .open(path)?;
        Ok(Box::new(PosixFile(f)))
    }

    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(PosixFile(
            OpenOptions::new().write(true).open(path)?,
        )))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn lock(&self, lock_path: &Path) -> io::Result<ProcessLock> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(lock_path)?;
        let kind = lock_file(&f)?;
        let guard: Option<Box<dyn Send>> = match kind {
            LockKind::Unavailable => None,
            // Closing the descriptor releases either kind of lock.
            _ => Some(Box::new(f)),
        };
        Ok(ProcessLock::new(kind, guard))
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

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
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

/// Takes an exclusive lock on the whole file: OFD lock first, flock where the kernel lacks OFD locks.
fn lock_file(f: &File) -> io::Result<LockKind> {
    let fd = f.as_raw_fd();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const F_OFD_SETLKW: libc::c_int = 38;
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks.
        // SAFETY: `fd` is an open descriptor owned by `f`, and `fl` is a valid flock that outlives the call.
        match retry_eintr(|| unsafe { libc::fcntl(fd, F_OFD_SETLKW, &mut fl as *mut libc::flock) })
        {
            Ok(()) => return Ok(LockKind::Ofd),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: `fd` is an open descriptor owned by `f`.
    match retry_eintr(|| unsafe { libc::flock(fd, libc::LOCK_EX) }) {
        Ok(()) => Ok(LockKind::Flock),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
            ) =>
        {
            Ok(LockKind::Unavailable)
        }
        Err(e) => Err(e),
    }
}

/// Like [`lock_file`] without waiting: `None` if another open file description holds the lock.
fn try_lock_file(f: &File) -> io::Result<Option<LockKind>> {
    let fd = f.as_raw_fd();
    let busy = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES));
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const F_OFD_SETLK: libc::c_int = 37;
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // SAFETY: `fd` is an open descriptor owned by `f`, and `fl` is a valid flock that outlives the call.
        match retry_eintr(|| unsafe { libc::fcntl(fd, F_OFD_SETLK, &mut fl as *mut libc::flock) }) {
            Ok(()) => return Ok(Some(LockKind::Ofd)),
            Err(e) if busy(&e) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
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
    use crate::io::{replace_atomically, sibling};

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
        assert!(!sibling(&p, ".tmp").exists());
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
        let held = fs.lock(&lp).unwrap();
        assert_eq!(held.kind(), LockKind::Ofd);
        let (tx, rx) = std::sync::mpsc::channel();
        let lp2 = lp.clone();
        let t = std::thread::spawn(move || {
            let _l = PosixFs.lock(&lp2).unwrap();
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
        let held = fs.lock(&lp).unwrap();
        assert!(fs.try_lock(&lp).unwrap().is_none());
        drop(held);
        let got = fs.try_lock(&lp).unwrap().unwrap();
        assert_eq!(got.kind(), LockKind::Ofd);
        assert_eq!(
            fs.list_dir(&d).unwrap(),
            vec![std::ffi::OsString::from("marker")]
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
