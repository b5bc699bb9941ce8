//! The one owner of a cache file's side files: the lock file, temporaries, the names a file is set
//! aside under, and markers. Every create, rename and set-aside of a side file goes through here,
//! under the cache's lock, with identity checks, so that no two writers ever share a name and no
//! file is moved that another writer is still committing to.
//!
//! The protocol, for a cache file `F`:
//!
//! - **Lock** ([`SideFiles::lock`]): the lock file `F.lock`, then the file `F` itself. Each lock is
//!   kept only once the locked descriptor is the file now at its name (`fstat` against `lstat`), so
//!   a lock file unlinked or replaced by a cleaner is never mistaken for the lock. Locking `F` too
//!   means that a writer whose lock file was taken from under it still excludes the others: whoever
//!   appends to `F` or renames over it holds `F`'s lock, and a writer that locked an `F` that was
//!   renamed over meanwhile sees it is no longer at the path and locks the new one.
//! - **Temporaries** (`F.tmp.<pid>.<n>`): created with `O_EXCL | O_NOFOLLOW`, never shared, removed
//!   on failure; those of dead processes are removed by the next rewrite.
//! - **Commit** ([`SideFiles::replace`]): rename over `F` while holding `F`'s lock; where there was
//!   no `F` when locked, a rename that fails if one appeared (another writer that lost its lock file
//!   created it), so that the caller merges it first.
//! - **Set aside** ([`SideFiles::set_aside`]): only under the lock, only the very file that was
//!   locked (same device and inode), then a directory sync.
//! - **Markers** ([`SideFiles::open_marker`]): created without following a link at their name.
//! - **The lock file's notes**: from offset 0, the file whose name a directory sync made durable
//!   ([`CacheLock::note_name_durable`]), so that the next writer's first append to it need not
//!   sync again; from offset 64, which records the last lazy reader read
//!   ([`SideFiles::leave_read_ahead_note`]), so that the next lazy open has the kernel read them
//!   ahead.
//!
//! Nothing here follows a symbolic link at a name the library creates. A cache path that is itself
//! a link is resolved once ([`SideFiles::open`]): every side file lives beside the link's target,
//! and appends and rewrites both write the target (the link stays a link).

use super::{parent_dir, sibling, FileHandle, FileMeta, Fs, LockKind, ProcessLock};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lock file's suffix.
pub const LOCK: &str = ".lock";
/// Where an unreadable file is moved on open.
pub const CORRUPT: &str = ".corrupt";
/// Where the program cache moves a file after a crash loop.
pub const CRASHLOOP: &str = ".crashloop";
/// The crash guard's marker.
pub const INFLIGHT: &str = ".inflight";
/// The prefix of temporaries (`F.tmp.<pid>.<n>`); a bare `F.tmp` was the name of older versions.
pub const TMP: &str = ".tmp";

/// How long a flush waits for a lock held by another process by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// Numbers the temporaries of this process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The side files of one cache file.
pub struct SideFiles<'a> {
    fs: &'a dyn Fs,
    path: PathBuf,
}

/// The cache's lock: the lock file's, and the cache file's if it existed; released when dropped.
pub struct CacheLock {
    lock_file: ProcessLock,
    file: Option<(ProcessLock, FileMeta)>,
    kind: LockKind,
}

impl CacheLock {
    /// How the lock was obtained (`Unavailable`: writers are not excluded).
    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// The identity of the cache file that was locked; `None` if there was none.
    pub fn file(&self) -> Option<&FileMeta> {
        self.file.as_ref().map(|(_, m)| m)
    }

    /// Whether the lock file's note says that the file `meta` names, with checked-1.1 id
    /// `file_id`, is durably at the cache's name (see [`CacheLock::note_name_durable`]).
    pub fn name_durable(&self, meta: &FileMeta, file_id: u64) -> bool {
        self.lock_file
            .read_note(0, NAME_NOTE_LEN)
            .is_some_and(|n| n[..] == name_note(meta, file_id))
    }

    /// Notes in the lock file, unsynced, that the file `meta` names (checked-1.1 id `file_id`) is
    /// durably at the cache's name: call it only once a directory sync after the file came under
    /// that name has returned. A later writer that finds the same file there (same device, inode
    /// and id: a reused inode has another id) need not sync the directory again before it
    /// appends. A note lost, torn or left by an older file only costs that sync.
    pub fn note_name_durable(&self, meta: &FileMeta, file_id: u64) {
        if !self.name_durable(meta, file_id) {
            self.lock_file.write_note(0, &name_note(meta, file_id));
        }
    }
}

/// A lock file's note: `MSNAME01`, the device, inode and checked-1.1 file id of the file whose
/// name is durable (u64 each, little-endian), and the CRC-32 of those 32 bytes.
const NAME_NOTE_LEN: usize = 8 + 8 + 8 + 8 + 4;

fn name_note(meta: &FileMeta, file_id: u64) -> [u8; NAME_NOTE_LEN] {
    let mut n = [0u8; NAME_NOTE_LEN];
    n[..8].copy_from_slice(b"MSNAME01");
    n[8..16].copy_from_slice(&meta.dev.to_le_bytes());
    n[16..24].copy_from_slice(&meta.ino.to_le_bytes());
    n[24..32].copy_from_slice(&file_id.to_le_bytes());
    let crc = crc32fast::hash(&n[..32]);
    n[32..].copy_from_slice(&crc.to_le_bytes());
    n
}

/// Where the lock file's read-ahead note starts (after the name note, with room to spare).
const READ_NOTE_AT: u64 = 64;
/// The most bytes a read-ahead note may take.
pub const READ_NOTE_MAX: usize = 16 << 10;

/// How [`SideFiles::replace_with`] puts the new file in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Rename over whatever is at the path.
    Replace,
    /// Only if nothing is at the path; `AlreadyExists` otherwise.
    CreateOnly,
}

/// Whether `e` is a timed-out wait for a lock ([`Fs::lock`] gives `TimedOut`).
pub fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

impl<'a> SideFiles<'a> {
    /// The side files of `path`, taken as it is (already resolved).
    pub fn new(fs: &'a dyn Fs, path: &Path) -> Self {
        SideFiles {
            fs,
            path: path.to_path_buf(),
        }
    }

    /// The side files of the file `path` names: a symbolic link at `path` is resolved once, here.
    pub fn open(fs: &'a dyn Fs, path: &Path) -> io::Result<Self> {
        Ok(SideFiles::new(fs, &fs.resolve(path)?))
    }

    /// The cache file (the resolved path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The side file with `suffix` (one of this module's constants).
    pub fn side(&self, suffix: &str) -> PathBuf {
        sibling(&self.path, suffix)
    }

    /// The lock file's read-ahead note (at most [`READ_NOTE_MAX`] bytes, empty if none), read
    /// without the lock: the note checks itself, and a torn one only reads nothing ahead.
    pub fn read_ahead_note(&self) -> Vec<u8> {
        self.fs
            .peek_note(&self.side(LOCK), READ_NOTE_AT, READ_NOTE_MAX)
            .unwrap_or_default()
    }

    /// Leaves `note` (at most [`READ_NOTE_MAX`] bytes) in the lock file as its read-ahead note,
    /// unsynced, if the lock file's lock can be had without waiting; `false` where it was not
    /// written. The lock keeps two writers of notes from interleaving; a writer of the cache
    /// itself need not be waited for, since the note is only a hint.
    pub fn leave_read_ahead_note(&self, note: &[u8]) -> bool {
        if note.len() > READ_NOTE_MAX {
            return false;
        }
        self.fs
            .lock(&self.side(LOCK), Some(Duration::ZERO))
            .is_ok_and(|l| l.write_note(READ_NOTE_AT, note))
    }

    /// Takes the cache's lock, waiting at most `wait` in all (`None`: for ever); a timeout is a
    /// `TimedOut` error ([`is_busy`]).
    pub fn lock(&self, wait: Option<Duration>) -> io::Result<CacheLock> {
        let deadline = wait.map(|w| Instant::now() + w);
        let lock_file = self.fs.lock(&self.side(LOCK), wait)?;
        let file = self.fs.lock_file(&self.path, remaining(deadline))?;
        let kind = match &file {
            Some((l, _)) if lock_file.kind() == LockKind::Unavailable => l.kind(),
            _ => lock_file.kind(),
        };
        Ok(CacheLock {
            lock_file,
            file,
            kind,
        })
    }

    /// Replaces the cache file with `pieces` (see [`SideFiles::replace_with`]) under `lock`, with
    /// permission bits `mode` if given; first removes temporaries of dead writers.
    pub fn replace(
        &self,
        lock: &CacheLock,
        pieces: &[&[u8]],
        mode: Option<u32>,
    ) -> io::Result<(u64, FileMeta)> {
        self.clean_stale_temps();
        let commit = if lock.file.is_some() {
            Commit::Replace
        } else {
            Commit::CreateOnly
        };
        self.replace_with(pieces, mode, commit)
    }

    /// Writes `pieces` to a new temporary, fsyncs it, puts it at the path as `commit` says and
    /// fsyncs the directory; a crash at any point leaves the old file or the whole new one. On
    /// failure the temporary is removed and the path is untouched (unless only the directory
    /// sync failed: then the new file is in place, maybe not durably). Returns the bytes written
    /// and the identity of the new file as written: taken before it is renamed into place, since
    /// from then on another writer may lock and change it.
    pub fn replace_with(
        &self,
        pieces: &[&[u8]],
        mode: Option<u32>,
        commit: Commit,
    ) -> io::Result<(u64, FileMeta)> {
        let (tmp, mut h) = self.create_temp()?;
        let result = (|| {
            h.write_all_vectored_at(0, pieces)?;
            let off: u64 = pieces.iter().map(|p| p.len() as u64).sum();
            if let Some(m) = mode.filter(|&m| m != 0) {
                h.set_mode(m)?;
            }
            h.sync_all()?;
            Ok((off, h.meta()?))
        })();
        drop(h);
        let renamed = result.and_then(|off| {
            match commit {
                Commit::Replace => self.fs.rename(&tmp, &self.path)?,
                Commit::CreateOnly => self.fs.rename_noreplace(&tmp, &self.path)?,
            }
            Ok(off)
        });
        match renamed {
            Ok(off) => {
                self.fs.sync_dir(&parent_dir(&self.path))?;
                Ok(off)
            }
            Err(e) => {
                // Best effort: a temporary left behind is removed by a later rewrite.
                let _ = self.fs.remove(&tmp);
                Err(e)
            }
        }
    }

    /// A new temporary of a name no one else uses.
    fn create_temp(&self) -> io::Result<(PathBuf, Box<dyn FileHandle>)> {
        let pid = std::process::id();
        let mut last = None;
        // Something already at a name (a leftover, or a planted link) is skipped, never opened.
        for _ in 0..64 {
            let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
            let tmp = self.side(&format!("{TMP}.{pid}.{n}"));
            match self.fs.create_new(&tmp) {
                Ok(h) => return Ok((tmp, h)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    /// Removes the temporaries of writers that are no longer running (and the fixed-name one of
    /// older versions); best effort. Call under the lock.
    pub fn clean_stale_temps(&self) {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let legacy = format!("{name}{TMP}");
        let prefix = format!("{legacy}.");
        let Ok(entries) = self.fs.list_dir(&parent_dir(&self.path)) else {
            return;
        };
        for p in entries {
            let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let stale = if n == legacy {
                true
            } else if let Some(rest) = n.strip_prefix(&prefix) {
                let pid = rest.split('.').next().and_then(|s| s.parse::<u32>().ok());
                pid.is_some_and(|pid| !self.fs.process_alive(pid))
            } else {
                false
            };
            if stale {
                let _ = self.fs.remove(&p);
            }
        }
    }

    /// Moves the cache file to its side file `suffix`, under `lock`, only if the file at the path
    /// is still the one that was locked (same device and inode); returns where it went, or `None`
    /// if it was not moved because it is another file now (or there was none when locked).
    pub fn set_aside(&self, lock: &CacheLock, suffix: &str) -> io::Result<Option<PathBuf>> {
        let Some(locked) = lock.file() else {
            return Ok(None);
        };
        let same = self
            .fs
            .metadata(&self.path)?
            .is_some_and(|now| now.dev == locked.dev && now.ino == locked.ino);
        if !same {
            return Ok(None);
        }
        let to = self.side(suffix);
        // A rename replaces whatever is at `to`, a link included, and never follows it.
        self.fs.rename(&self.path, &to)?;
        // Best effort: the file is moved; if the move is lost to a power cut, the file is found
        // unreadable and set aside again.
        let _ = self.fs.sync_dir(&parent_dir(&self.path));
        Ok(Some(to))
    }

    /// Opens (creating or truncating) the marker `suffix` for writing; a symbolic link at its name
    /// is removed and replaced by a regular file, never followed.
    pub fn open_marker(&self, suffix: &str) -> io::Result<Box<dyn FileHandle>> {
        let p = self.side(suffix);
        match self.fs.create(&p) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.fs.remove(&p)?;
                self.fs.create(&p)
            }
            other => other,
        }
    }
}
