//! The real filesystem, through POSIX calls.

use super::{
    buffer_for, past_the_end, within, FileHandle, FileMeta, Fs, LockKind, LockNote, ProcessLock,
    ReadHandle, OBSERVE_CHUNK,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operating system's filesystem.
///
/// A rename over an existing regular file, and the drop of a lock or read handle whose file has
/// no name left, close the replaced file off the caller's path, on a short-lived thread: that last
/// close is where the kernel frees the file's blocks, about 7 ms for 30 MB on ext4.
#[derive(Debug, Default, Clone, Copy)]
pub struct PosixFs;

/// Directory syncs finished so far (any directory), for the closes that wait for one. An atomic,
/// not a lock the closer threads take: a process that forks while one of them runs must not leave
/// its child a lock held by a thread the child does not have.
static DIR_SYNCS: AtomicU64 = AtomicU64::new(0);

/// The longest a replaced file's close waits for the directory sync that normally follows its
/// rename: a caller that never syncs still gets the file's space back soon.
const AWAIT_DIR_SYNC: Duration = Duration::from_secs(1);

/// Closes `f` on a short-lived detached thread, once a directory sync has finished after the call
/// if `after_dir_sync` (or [`AWAIT_DIR_SYNC`] has passed); inline if no thread can be started.
///
/// Why wait for the directory sync: freeing the blocks starts journal handles of its own, and on
/// ext4 a commit waits for every handle of its transaction (and, mounted with `discard`, discards
/// what the transaction freed), so a close racing the directory fsync that makes the rename durable
/// would lengthen exactly the wait the caller is in. Closed after it, the freeing joins the next
/// transaction, which the journal commits in the background. A process that exits before the
/// thread runs loses nothing: the kernel closes the descriptor then.
fn close_off_path(f: File, after_dir_sync: bool) {
    let seen = DIR_SYNCS.load(Ordering::Acquire);
    #[cfg(test)]
    let id = closes::handed(&f);
    let spawned = std::thread::Builder::new()
        .name("mace-storage-close".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if after_dir_sync {
                // Polled, with no lock to share (see DIR_SYNCS); the sync takes a few ms.
                let start = Instant::now();
                let mut pause = Duration::from_micros(100);
                while DIR_SYNCS.load(Ordering::Acquire) == seen && start.elapsed() < AWAIT_DIR_SYNC
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
            }
            drop(f);
            #[cfg(test)]
            closes::closed(id);
        });
    if spawned.is_err() {
        // The closure, and `f` with it, was dropped by the failed spawn: closed inline.
        #[cfg(test)]
        closes::closed(id);
    }
}

/// The files whose close was handed off, and those closed since, for the tests to wait on.
#[cfg(test)]
mod closes {
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// (device, inode) of each file handed off, and of each closed.
    type Log = (Vec<(u64, u64)>, Vec<(u64, u64)>);
    static LOG: Mutex<Log> = Mutex::new((Vec::new(), Vec::new()));
    static CHANGED: Condvar = Condvar::new();

    fn log() -> std::sync::MutexGuard<'static, Log> {
        LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `f`'s close was handed off; returns its (device, inode).
    pub fn handed(f: &File) -> (u64, u64) {
        let id = f.metadata().map(|m| (m.dev(), m.ino())).unwrap_or_default();
        log().0.push(id);
        id
    }

    /// Records that a close of the file `id` finished.
    pub fn closed(id: (u64, u64)) {
        log().1.push(id);
        CHANGED.notify_all();
    }

    /// How many descriptors of the file `id` were handed off, and then whether every one of
    /// their closes finished within `limit`.
    pub fn wait_closed(id: (u64, u64), limit: Duration) -> (usize, bool) {
        let count = |v: &[(u64, u64)]| v.iter().filter(|&&x| x == id).count();
        let (l, _) = CHANGED
            .wait_timeout_while(log(), limit, |l| count(&l.1) < count(&l.0))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let handed = count(&l.0);
        (handed, count(&l.1) == handed)
    }
}

/// A descriptor of the regular file at `to`, opened without following a link and without blocking,
/// to hold it across a rename over `to`; `None` if there is none or it cannot be opened (then the
/// rename frees the file itself, as it always did).
fn open_replaced(to: &Path) -> Option<File> {
    // Only a regular file: opening a device or FIFO, even without blocking, may have effects.
    if !std::fs::symlink_metadata(to).ok()?.file_type().is_file() {
        return None;
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(to)
        .ok()?;
    f.metadata().ok()?.file_type().is_file().then_some(f)
}

/// A descriptor whose close, when its file has no name left (renamed over or removed while it
/// was open), is handed off the caller's path ([`close_off_path`]): that close frees the file.
struct Held(Option<File>);

impl Held {
    fn file(&self) -> &File {
        // Only `drop` takes the file out.
        self.0.as_ref().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(f) = self.0.take() else { return };
        if f.metadata().is_ok_and(|m| m.nlink() == 0) {
            // Dropped after the flush's directory sync (a lock) or long after it (a read
            // handle): nothing left to wait for.
            close_off_path(f, false);
        }
    }
}

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

/// Runs `op` (a `preadv` or `pwritev` of `count` iovecs at an offset) until every byte of `iov`
/// is done from `offset` on: up to 1024 iovecs a call, a partial transfer resumed where it
/// stopped, `EINTR` retried. `stuck` is the error for a call that moves nothing (the end of the
/// file, or a write that makes no progress), and for an offset past what `off_t` holds.
fn all_vectored(
    iov: &mut [libc::iovec],
    offset: u64,
    stuck: impl Fn() -> io::Error,
    mut op: impl FnMut(*const libc::iovec, libc::c_int, libc::off_t) -> isize,
) -> io::Result<()> {
    let (mut first, mut done) = (0, 0u64);
    while first < iov.len() {
        let at = libc::off_t::try_from(offset + done).map_err(|_| stuck())?;
        let count = (iov.len() - first).min(1024) as libc::c_int;
        let n = op(iov[first..].as_ptr(), count, at);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(stuck());
        }
        let mut n = n as usize;
        done += n as u64;
        // Past the iovecs done whole, and into the one done in part.
        while first < iov.len() && n >= iov[first].iov_len {
            n -= iov[first].iov_len;
            first += 1;
        }
        if n > 0 {
            let v = &mut iov[first];
            // SAFETY: `n` is less than this iovec's length: the pointer stays in its buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
            v.iov_len -= n;
        }
    }
    Ok(())
}

struct PosixFile(File);

impl FileHandle for PosixFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn write_all_vectored_at(&mut self, offset: u64, pieces: &[&[u8]]) -> io::Result<()> {
        // A rewrite is hundreds of pieces (each record's head, value and tail): one pwritev for
        // up to 1024 of them instead of a pwrite each, every one taking the inode's lock.
        let mut iov: Vec<libc::iovec> = pieces
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| libc::iovec {
                iov_base: p.as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            })
            .collect();
        let fd = self.0.as_raw_fd();
        let stuck = || io::Error::from(io::ErrorKind::WriteZero);
        all_vectored(&mut iov, offset, stuck, |iov, count, at| {
            // SAFETY: every iovec points into a piece of `pieces`, borrowed for this call and
            // only read by pwritev; `iov` holds `count` entries.
            unsafe { libc::pwritev(fd, iov, count, at) }
        })
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
    file: Held,
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
            match self
                .file
                .file()
                .read_at(&mut buf[done..], offset + done as u64)
            {
                Ok(0) => return Err(past_the_end()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read_exact_at_append(&self, offset: u64, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        if !within(offset, len, self.len) {
            return Err(past_the_end());
        }
        buf.try_reserve_exact(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes for a value"),
            )
        })?;
        let fd = self.file.file().as_raw_fd();
        let old = buf.len();
        let spare = &mut buf.spare_capacity_mut()[..len];
        let mut one = [libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: len,
        }];
        // No iovec for no bytes: a read of none would look like the end of the file.
        let iov = &mut one[..usize::from(len > 0)];
        all_vectored(iov, offset, past_the_end, |iov, count, at| {
            // SAFETY: the iovec is the vector's own unused capacity (reserved above, at least
            // `len` bytes past its length), borrowed mutably here; preadv writes at most `len`
            // bytes into it and reads none.
            unsafe { libc::preadv(fd, iov, count, at) }
        })?;
        // SAFETY: the `len` bytes past the old length were written by the reads above, and lie
        // within the capacity reserved.
        unsafe { buf.set_len(old + len) };
        Ok(())
    }

    fn read_exact_vectored_at(&self, offset: u64, bufs: &mut [&mut [u8]]) -> io::Result<()> {
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if !within(offset, total, self.len) {
            return Err(past_the_end());
        }
        // A record and its value come in one preadv: the value straight into the caller's buffer,
        // the bytes around it into small ones.
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .filter(|b| !b.is_empty())
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let fd = self.file.file().as_raw_fd();
        all_vectored(&mut iov, offset, past_the_end, |iov, count, at| {
            // SAFETY: every iovec points into a buffer of `bufs`, borrowed mutably for this call
            // and not otherwise touched while preadv writes into it; `iov` holds `count` entries.
            unsafe { libc::preadv(fd, iov, count, at) }
        })
    }

    fn read_ahead(&self, offset: u64, len: u64) {
        // Nothing past the length at open, nor an offset off_t cannot hold.
        let (Ok(at), Ok(n)) = (
            libc::off_t::try_from(offset),
            libc::off_t::try_from(len.min(self.len.saturating_sub(offset))),
        ) else {
            return;
        };
        let fd = self.file.file().as_raw_fd();
        // Linux reads at most the device's read-ahead window (128 KiB unless set otherwise), or
        // its largest request if that is larger, of one WILLNEED and drops the rest: asked for
        // 128 KiB at a time, all of the range is read.
        const WINDOW: libc::off_t = 128 << 10;
        let mut done = 0;
        while done < n {
            let len = WINDOW.min(n - done);
            // SAFETY: `fd` is an open descriptor owned by `self.file`; posix_fadvise only reads
            // its arguments and, for WILLNEED, starts reads into the page cache without waiting
            // for them. Its result is a hint's: a failure changes nothing.
            let _ = unsafe { libc::posix_fadvise(fd, at + done, len, libc::POSIX_FADV_WILLNEED) };
            done += len;
        }
    }

    fn meta(&self) -> io::Result<FileMeta> {
        Ok(meta_of(&self.file.file().metadata()?))
    }
}

impl Fs for PosixFs {
    fn open_read(&self, path: &Path) -> io::Result<Option<(Arc<dyn ReadHandle>, FileMeta)>> {
        Ok(open_for_read(path)?.map(|(file, meta)| {
            let h: Arc<dyn ReadHandle> = Arc::new(PosixRead {
                file: Held(Some(file)),
                len: meta.len,
            });
            (h, meta)
        }))
    }

    fn peek_note(&self, lock_path: &Path, at: u64, max: usize) -> io::Result<Vec<u8>> {
        // Never blocking on a FIFO, never following a link, only a regular file.
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(lock_path);
        let Some(f) = not_found_is_none(opened)? else {
            return Ok(Vec::new());
        };
        if !f.metadata()?.file_type().is_file() {
            return Ok(Vec::new());
        }
        read_up_to(&f, at, max)
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
        // Held across the rename, so that the rename does not free the old file's blocks; if the
        // rename fails, the file still has its name and closing it here frees nothing.
        let replaced = open_replaced(to);
        std::fs::rename(from, to)?;
        if let Some(f) = replaced {
            close_off_path(f, true);
        }
        Ok(())
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        rename_noreplace(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let synced = File::open(dir).and_then(|d| d.sync_all());
        // Failed or not, the sync is over: a close waiting for it would only wait for its timeout.
        DIR_SYNCS.fetch_add(1, Ordering::Release);
        synced
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
                    let f = Arc::new(f);
                    let guard: Box<dyn Send> = Box::new(Arc::clone(&f));
                    return Ok(ProcessLock::new(kind, Some(guard)).with_note(Box::new(Note(f))));
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
                    // A rewrite renames over this file while the lock holds it: its drop is then
                    // the last close, which frees the old file's blocks.
                    let guard: Option<Box<dyn Send>> = match kind {
                        LockKind::Unavailable => None,
                        _ => Some(Box::new(Held(Some(f)))),
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

/// The lock file's contents, through the descriptor that holds its lock.
struct Note(Arc<File>);

impl LockNote for Note {
    fn read(&self, at: u64, max: usize) -> io::Result<Vec<u8>> {
        read_up_to(&self.0, at, max)
    }

    fn write(&self, at: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all_at(bytes, at)
    }
}

/// Up to `max` bytes of `f` from offset `at`: fewer only where the file ends.
fn read_up_to(f: &File, at: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut done = 0;
    while done < max {
        match f.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
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
    fn a_vectored_write_puts_each_piece_after_the_one_before() {
        let d = tmpdir("vectored-write");
        let p = d.join("f.bin");
        std::fs::write(&p, vec![0xeeu8; 10]).unwrap();
        let mut h = PosixFs.open_existing(&p).unwrap();
        // Empty pieces, and more pieces than one pwritev takes.
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 13 + i / 251) as u8).collect();
        let ones: Vec<[u8; 1]> = (0..3000u32).map(|i| [(i % 251) as u8]).collect();
        let mut pieces: Vec<&[u8]> = vec![b"ab", b"", &big, b""];
        pieces.extend(ones.iter().map(|o| &o[..]));
        h.write_all_vectored_at(4, &pieces).unwrap();
        let want: Vec<u8> = [&[0xee; 4][..]]
            .into_iter()
            .chain(pieces.iter().copied())
            .flatten()
            .copied()
            .collect();
        assert_eq!(std::fs::read(&p).unwrap(), want);
        h.write_all_vectored_at(1, &[b"xy", b"z"]).unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[..6], b"\xeexyzab");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_vectored_read_fills_each_buffer_in_turn_and_never_past_the_length_at_open() {
        use std::io::Write;
        let d = tmpdir("vectored");
        let p = d.join("f.bin");
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let (h, _) = PosixFs.open_read(&p).unwrap().unwrap();
        let (mut a, mut b, mut c, mut e) = (vec![0; 3], vec![], vec![0; 5000], vec![0; 7]);
        h.read_exact_vectored_at(10, &mut [&mut a, &mut b, &mut c, &mut e])
            .unwrap();
        assert_eq!(a, bytes[10..13]);
        assert_eq!(c, bytes[13..5013]);
        assert_eq!(e, bytes[5013..5020]);
        // More buffers than one preadv takes.
        let mut ones = vec![[0u8; 1]; 3000];
        let mut bufs: Vec<&mut [u8]> = ones.iter_mut().map(|o| &mut o[..]).collect();
        h.read_exact_vectored_at(100, &mut bufs).unwrap();
        let got: Vec<u8> = ones.iter().map(|o| o[0]).collect();
        assert_eq!(got, bytes[100..3100]);
        // Past the end: an error, whatever the split.
        let (mut x, mut y) = (vec![0; 10], vec![0; 10]);
        let err = h
            .read_exact_vectored_at(19_985, &mut [&mut x, &mut y])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // The file grown since the open: still not read past the length it had then.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(&[1; 100])
            .unwrap();
        let mut z = vec![0; 50];
        assert!(h.read_exact_vectored_at(19_990, &mut [&mut z]).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_appending_read_extends_the_buffer_only_by_whole_reads_within_the_length_at_open() {
        use std::io::Write;
        let d = tmpdir("append-read");
        let p = d.join("f.bin");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + i / 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let (h, _) = PosixFs.open_read(&p).unwrap().unwrap();
        let mut buf = b"head".to_vec();
        h.read_exact_at_append(5, &mut buf, 200_000).unwrap();
        assert_eq!(&buf[..4], b"head");
        assert_eq!(buf[4..], bytes[5..200_005]);
        h.read_exact_at_append(0, &mut buf, 0).unwrap();
        h.read_exact_at_append(299_990, &mut buf, 10).unwrap();
        assert_eq!(buf.len(), 200_014);
        assert_eq!(buf[200_004..], bytes[299_990..]);
        // Past the end: an error, and the buffer as it was.
        let err = h.read_exact_at_append(299_995, &mut buf, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(buf.len(), 200_014);
        // Grown since the open, or shrunk under the handle: still an error, nothing appended.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(&[1; 100])
            .unwrap();
        assert!(h.read_exact_at_append(299_990, &mut buf, 50).is_err());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(1000)
            .unwrap();
        assert!(h.read_exact_at_append(500, &mut buf, 1000).is_err());
        assert_eq!(buf.len(), 200_014);
        std::fs::remove_dir_all(d).unwrap();
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

    /// The (device, inode) of the file at `p`.
    fn id_of(p: &Path) -> (u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    /// How many of this process's descriptors are open on a file of directory `d` that has no
    /// name left, by each entry of `/proc/self/fd`: where it points (`d/name (deleted)`), and a
    /// `stat` of it, which reaches the file. By directory, not by inode number: a freed inode's
    /// number may already be another test's file.
    fn unnamed_fds_in(d: &Path) -> usize {
        let d = std::fs::canonicalize(d).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|fd| std::fs::read_link(fd).is_ok_and(|to| to.starts_with(&d)))
            .filter(|fd| std::fs::metadata(fd).is_ok_and(|m| m.nlink() == 0))
            .count()
    }

    /// Waits for the closes of the file `old` replaced in directory `d`, which `holders`
    /// descriptors held across the rename, and checks that no descriptor of it is left.
    fn assert_released(d: &Path, old: (u64, u64), holders: usize) {
        let (handed, closed) = closes::wait_closed(old, Duration::from_secs(30));
        assert!(
            handed >= holders,
            "{handed} closes of the replaced file handed off the caller's path, not {holders}"
        );
        assert!(closed, "the replaced file's close never finished");
        assert_eq!(
            unnamed_fds_in(d),
            0,
            "a descriptor of the replaced file is left open"
        );
    }

    #[test]
    fn a_rename_over_a_file_closes_it_off_the_path_and_leaks_nothing() {
        let d = tmpdir("release");
        let p = d.join("f.bin");
        let fs = PosixFs;
        let mut contents = Vec::new();
        for i in 0..4u8 {
            contents.push(vec![i; 256 * 1024 + usize::from(i)]);
        }
        replace_atomically(&fs, &p, &[&contents[0]]).unwrap();
        for new in &contents[1..] {
            let old = id_of(&p);
            replace_atomically(&fs, &p, &[new]).unwrap();
            // The new file is at the path as soon as the call returns, never the one it replaced.
            assert_eq!(fs.read(&p).unwrap().unwrap().0, *new);
            assert_ne!(id_of(&p), old);
            // The rename's own descriptor.
            assert_released(&d, old, 1);
        }
        assert_eq!(fs.list_dir(&d).unwrap(), vec![p.clone()]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_store_rewrite_closes_the_replaced_file_off_the_path() {
        use crate::store::{Options, Store, Value, Verify};
        for verify in [Verify::Eager, Verify::Lazy] {
            let d = tmpdir(&format!("release-store-{verify:?}"));
            let p = d.join("cache.bin");
            let opts = || Options {
                verify,
                ..Options::default()
            };
            let s = Store::open(&p, opts()).unwrap();
            s.put(b"a", Value::from_vec(vec![1; 300_000])).unwrap();
            s.put(b"b", Value::from_vec(vec![2; 300_000])).unwrap();
            s.flush().unwrap();
            drop(s);
            let s = Store::open(&p, opts()).unwrap();
            let old = id_of(&p);
            // Replacing a key rewrites the file: the lock (and, lazily, the read handle) held the
            // old one across the rename.
            s.put(b"a", Value::from_vec(vec![3; 300_000])).unwrap();
            s.flush().unwrap();
            assert_eq!(s.stats().rewrites, 1);
            assert_ne!(id_of(&p), old);
            drop(s);
            // The rename's descriptor and the lock's, whose close is the one that frees the file.
            assert_released(&d, old, 2);
            let s = Store::open(&p, opts()).unwrap();
            assert_eq!(&*s.get(b"a").unwrap(), &[3; 300_000][..]);
            assert_eq!(&*s.get(b"b").unwrap(), &[2; 300_000][..]);
            drop(s);
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn a_rename_over_a_fifo_neither_blocks_nor_holds_it() {
        use std::os::unix::ffi::OsStrExt;
        let d = tmpdir("release-fifo");
        let to = d.join("f.bin");
        let from = d.join("new.bin");
        let c = std::ffi::CString::new(to.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let fifo = id_of(&to);
        std::fs::write(&from, b"new").unwrap();
        PosixFs.rename(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert_eq!(
            closes::wait_closed(fifo, Duration::ZERO).0,
            0,
            "a FIFO was opened to be held"
        );
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
