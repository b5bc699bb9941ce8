//! The filesystem layer: a small trait the store commits through, the POSIX implementation, and a
//! simulated one that can lose unsynced writes, tear them, and fail any call.
//!
//! The durability protocol (temp file, fsync, rename, directory fsync; pwrite + fdatasync for appends)
//! is written once, in [`replace_atomically`] and the store, on top of the primitive calls of [`Fs`], so
//! the simulated filesystem exercises exactly the sequence the real one runs. The real one,
//! [`posix::PosixFs`], also keeps the file a rename replaces open and closes it on another thread
//! once the directory sync has finished, so that freeing its blocks is not on the caller's path;
//! what is durable when is the same (the simulated one, where freeing costs nothing, does not).

pub mod opencl;
pub mod os;
pub mod posix;
pub mod side_files;
// Test-only: compiled for the crate's unit tests and with the `sim` feature (integration tests,
// benchmarks, fuzz crate), so the shipped library does not carry it.
#[cfg(any(test, feature = "sim"))]
pub mod sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What identifies one version of a file on disk: if any field changed, someone else wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileMeta {
    /// Length in bytes.
    pub len: u64,
    /// Device number.
    pub dev: u64,
    /// Inode number (changes when the file is replaced by rename).
    pub ino: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Permission bits (`st_mode & 0o7777`); 0 where the filesystem has none.
    pub mode: u32,
}

/// An open file, for writing.
pub trait FileHandle: Send {
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes `pieces` one after another from `offset` on, as consecutive
    /// [`FileHandle::write_at`] calls would, in as few system calls as the platform allows.
    fn write_all_vectored_at(&mut self, offset: u64, pieces: &[&[u8]]) -> io::Result<()> {
        let mut at = offset;
        for p in pieces {
            self.write_at(at, p)?;
            at += p.len() as u64;
        }
        Ok(())
    }
    /// Makes the file's data (and the size needed to read it) durable, like `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and metadata durable, like `fsync`.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Sets the file's length, like `ftruncate`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The identity of the open file as it is now.
    fn meta(&self) -> io::Result<FileMeta>;
    /// Sets the file's permission bits, like `fchmod`.
    fn set_mode(&mut self, mode: u32) -> io::Result<()>;
}

/// An open file, for reading at offsets: it reads the file that was opened, whatever is renamed
/// over its path afterwards, and never past the length the file had when it was opened.
pub trait ReadHandle: Send + Sync {
    /// Fills `buf` with the bytes at `offset`; an `UnexpectedEof` error if they lie (even partly)
    /// past the length at open or past the file's end now.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Fills `bufs` one after another with the bytes from `offset` on, as consecutive
    /// [`ReadHandle::read_exact_at`] calls would, in one system call where the platform has one.
    fn read_exact_vectored_at(&self, offset: u64, bufs: &mut [&mut [u8]]) -> io::Result<()> {
        let mut at = offset;
        for b in bufs.iter_mut() {
            self.read_exact_at(at, b)?;
            at += b.len() as u64;
        }
        Ok(())
    }
    /// Appends the `len` bytes at `offset` to `buf`, as [`ReadHandle::read_exact_at`] into a
    /// zeroed tail would; on an error `buf` keeps its length. POSIX reads into the spare capacity,
    /// so the tail is not zeroed first (a pass over every byte of a value read from the page cache).
    fn read_exact_at_append(&self, offset: u64, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let old = buf.len();
        buf.resize(old + len, 0);
        let read = self.read_exact_at(offset, &mut buf[old..]);
        if read.is_err() {
            buf.truncate(old);
        }
        read
    }
    /// Asks that the `len` bytes at `offset` be read into the page cache now, without waiting for
    /// them, so that the reads which follow find them there; a hint, which may do nothing.
    fn read_ahead(&self, _offset: u64, _len: u64) {}
    /// The identity of the open file as it is now.
    fn meta(&self) -> io::Result<FileMeta>;
}

/// A [`ReadHandle`] over bytes already in memory (what [`Fs::open_read`] falls back to).
pub struct BytesHandle {
    bytes: Vec<u8>,
    meta: FileMeta,
}

impl BytesHandle {
    /// A handle reading `bytes`, reporting `meta` as its identity.
    pub fn new(bytes: Vec<u8>, meta: FileMeta) -> Self {
        BytesHandle { bytes, meta }
    }
}

impl ReadHandle for BytesHandle {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.bytes.get(o..o.checked_add(buf.len())?))
            .ok_or_else(past_the_end)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn meta(&self) -> io::Result<FileMeta> {
        Ok(self.meta)
    }
}

/// The error of a read past the length a file had when it was opened (or past its end now).
pub fn past_the_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the file (it is shorter than when it was opened)",
    )
}

/// Whether `offset..offset + len` lies within a file of `file_len` bytes.
pub fn within(offset: u64, len: usize, file_len: u64) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= file_len)
}

/// How a process lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// An open-file-description lock: excludes other processes and other handles.
    Ofd,
    /// A BSD `flock` lock: excludes other processes and other handles, and can be taken through a
    /// read-only descriptor (a lock file owned by another user, a cache file of mode 0444).
    Flock,
    /// Neither could be taken: writers are not excluded from each other.
    Unavailable,
}

/// A held cross-process lock; released when dropped.
pub struct ProcessLock {
    kind: LockKind,
    _guard: Option<Box<dyn Send>>,
    note: Option<Box<dyn LockNote>>,
}

/// The few bytes a lock file holds for the lock's holders ([`ProcessLock::read_note`]), read and
/// written through the descriptor that holds the lock, never by name.
pub trait LockNote: Send {
    /// Up to `max` bytes of the lock file from offset `at` (fewer where it ends first).
    fn read(&self, at: u64, max: usize) -> io::Result<Vec<u8>>;
    /// Writes `bytes` into the lock file at offset `at`, without a sync.
    fn write(&self, at: u64, bytes: &[u8]) -> io::Result<()>;
}

impl ProcessLock {
    /// Wraps a guard object whose drop releases the lock.
    pub fn new(kind: LockKind, guard: Option<Box<dyn Send>>) -> Self {
        ProcessLock {
            kind,
            _guard: guard,
            note: None,
        }
    }

    /// The lock, with the lock file's contents reachable through `note`.
    pub fn with_note(mut self, note: Box<dyn LockNote>) -> Self {
        self.note = Some(note);
        self
    }

    /// How the lock was obtained.
    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// Up to `max` bytes the lock file holds from offset `at`; `None` where it cannot be read (or
    /// there is none).
    pub fn read_note(&self, at: u64, max: usize) -> Option<Vec<u8>> {
        self.note.as_ref()?.read(at, max).ok()
    }

    /// Writes `bytes` into the lock file at offset `at`, unsynced; `false` where it cannot.
    pub fn write_note(&self, at: u64, bytes: &[u8]) -> bool {
        self.note
            .as_ref()
            .is_some_and(|n| n.write(at, bytes).is_ok())
    }
}

/// The primitive filesystem calls the store is built on.
pub trait Fs: Send + Sync {
    /// Reads a whole file with the identity of what was read; `Ok(None)` if it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<(Vec<u8>, FileMeta)>>;
    /// Like [`Fs::read`], and calls `observe` with the part of the result read so far each time it
    /// grows (each call's slice extends the previous one; the last is the whole result): a caller
    /// can checksum each new piece while it is still in the CPU cache instead of reading the whole
    /// buffer again. The default reads first and observes the whole buffer once.
    fn read_observed(
        &self,
        path: &Path,
        observe: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let found = self.read(path)?;
        if let Some((bytes, _)) = &found {
            observe(bytes);
        }
        Ok(found)
    }
    /// Opens a file for reading at offsets, with the refusals of [`Fs::read`] (only a regular
    /// file, never blocking); `Ok(None)` if it does not exist. The handle keeps reading the file
    /// opened after another is renamed over `path`. The default reads the whole file at once.
    fn open_read(&self, path: &Path) -> io::Result<Option<(Arc<dyn ReadHandle>, FileMeta)>> {
        Ok(self.read(path)?.map(|(bytes, meta)| {
            let h: Arc<dyn ReadHandle> = Arc::new(BytesHandle::new(bytes, meta));
            (h, meta)
        }))
    }
    /// Up to `max` bytes from offset `at` of the lock file `lock_path` ([`ProcessLock::read_note`])
    /// without taking the lock, for notes that check themselves; empty where there is none. Only
    /// a regular file is read, never a link at the name; the default reads nothing.
    fn peek_note(&self, _lock_path: &Path, _at: u64, _max: usize) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    /// The identity of a file; `Ok(None)` if it does not exist.
    fn metadata(&self, path: &Path) -> io::Result<Option<FileMeta>>;
    /// Creates a file, or truncates an existing one, and opens it for writing; a symbolic link at
    /// `path` is never followed (the call fails instead).
    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Creates a new file and opens it for writing; fails with `AlreadyExists` if anything, even a
    /// dangling symbolic link, is at `path` (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Opens an existing file for writing without truncating it.
    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Renames `from` to `to` only if nothing is at `to`, atomically; `AlreadyExists` otherwise.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive cross-process lock kept in the file `lock_path` (created if missing, a
    /// symbolic link there replaced, never followed), waiting at most `wait` (`None`: for ever;
    /// `TimedOut` after it); returns only once the locked file is the one now at `lock_path`, so a
    /// lock file unlinked or replaced by someone else is never taken for the lock.
    fn lock(&self, lock_path: &Path, wait: Option<Duration>) -> io::Result<ProcessLock>;
    /// Takes the exclusive lock of the file at `path` itself (never following a link), waiting at
    /// most `wait`; returns it with the file's identity once the locked file is the one at `path`,
    /// or `None` if nothing is there. Whoever replaces or appends to the file holds this lock, so a
    /// writer whose lock file was taken from under it still excludes the others.
    fn lock_file(
        &self,
        path: &Path,
        wait: Option<Duration>,
    ) -> io::Result<Option<(ProcessLock, FileMeta)>>;
    /// Takes the lock of the existing file `path` without waiting: `Ok(None)` if another handle
    /// (of any process, this one included) holds it; a `NotFound` error if the file is absent.
    /// The default cannot lock: it returns a lock of kind [`LockKind::Unavailable`].
    fn try_lock(&self, path: &Path) -> io::Result<Option<ProcessLock>> {
        self.metadata(path)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Some(ProcessLock::new(LockKind::Unavailable, None)))
    }
    /// The entries of directory `dir` (full paths), in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// `path` with every symbolic link at its last component followed (a dangling link resolves to
    /// where it points); `path` itself when it is no link.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }
    /// Whether process `pid` may still be running (a temporary file of a dead one is removed).
    fn process_alive(&self, pid: u32) -> bool {
        posix::process_alive(pid)
    }
}

/// The buffer length for a file of `file_len` bytes on a platform that can allocate at most `max`
/// bytes at once (`isize::MAX` in Rust: 2 GiB - 1 on 32-bit targets): a file that does not fit is
/// refused with an error that says so, never read truncated.
pub fn buffer_len(file_len: u64, max: u64) -> io::Result<usize> {
    usize::try_from(file_len)
        .ok()
        .filter(|_| file_len <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file is {file_len} bytes, more than this platform can hold in memory at \
                     once ({max} bytes): refused"
                ),
            )
        })
}

/// The most bytes one allocation can hold on this platform.
pub const MAX_BUFFER: u64 = isize::MAX as u64;

/// Bytes read between two calls of the observer of [`Fs::read_observed`]: small enough to stay in
/// the CPU's cache, large enough to keep the calls few.
pub const OBSERVE_CHUNK: usize = 256 * 1024;

/// An empty buffer with room for exactly a file of `len` bytes (one allocation, no zeroing), or an
/// error that says why there is none.
pub fn buffer_for(len: u64) -> io::Result<Vec<u8>> {
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

/// `path` with `suffix` appended to its file name (`cache.bin` -> `cache.bin.lock`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replaces `path` with the concatenation of `pieces` so that a crash at any point leaves either the
/// old file or the whole new one: write a temp file of a unique name in the same directory, fsync
/// it, rename it over `path`, fsync the directory. A symbolic link at `path` is resolved (its target
/// is replaced, the link stays). The caller holds the cache's lock ([`side_files::SideFiles::lock`])
/// when others may write `path`. A failed call is returned as is and never retried; the temp file is
/// removed.
pub fn replace_atomically(fs: &dyn Fs, path: &Path, pieces: &[&[u8]]) -> io::Result<u64> {
    let target = fs.resolve(path)?;
    side_files::SideFiles::new(fs, &target)
        .replace_with(pieces, None, side_files::Commit::Replace)
        .map(|(written, _)| written)
}
