//! A simulated in-memory filesystem for crash-consistency and I/O-error tests.
//!
//! It models ext4 with `data=ordered`: file data becomes durable only through `sync_data`/`sync_all`,
//! directory entries (creations, renames, removals) only through `sync_dir` of their directory, and a
//! power loss keeps an arbitrary subset of the unsynced data writes (possibly torn at 512-byte sectors)
//! and an in-order prefix of the unsynced directory operations. Any call can be made to fail, a write
//! to stop part way (a short write), or the process to die at it, and every call is traced. A
//! capacity makes the disk fill up: a write that does not fit writes what fits, then fails with
//! ENOSPC, as a real `pwrite` loop does.

mod fault;
mod handles;

pub use fault::{FailKind, Fate, Op, Unsynced, UnsyncedInfo};

use super::{FileHandle, FileMeta, Fs, LockKind, ProcessLock, ReadHandle};
use handles::{LockGuard, SimHandle, SimRead};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A queued directory change: `from` unlinked and/or `to` linked to inode `ino`.
#[derive(Debug, Clone)]
struct DirOp {
    from: Option<PathBuf>,
    to: Option<PathBuf>,
    ino: u64,
}

impl DirOp {
    fn describe(&self) -> String {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => format!("rename {} -> {}", from.display(), to.display()),
            (None, Some(to)) => format!("create {} ino={}", to.display(), self.ino),
            (Some(from), None) => format!("remove {}", from.display()),
            (None, None) => unreachable!("a directory op names a path"),
        }
    }

    fn in_dir(&self, dir: &Path) -> bool {
        let parent = |p: &&PathBuf| p.parent().unwrap_or(Path::new("")) == dir;
        self.from.iter().chain(&self.to).any(|p| parent(&p))
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        if let Some(from) = &self.from {
            names.remove(from);
        }
        if let Some(to) = &self.to {
            names.insert(to.clone(), self.ino);
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
    mtime_ns: i128,
    mode: u32,
}

impl Inode {
    /// Makes `data` both the visible and the durable contents.
    fn settle(&mut self, data: Vec<u8>) {
        self.durable.clone_from(&data);
        self.data = data;
        self.unsynced.clear();
    }
}

/// The filesystem contents.
#[derive(Clone, Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dir_ops: Vec<DirOp>,
    next_ino: u64,
    clock: i128,
    /// Bytes the named files may hold in all; `None`: unlimited.
    capacity: Option<u64>,
    /// What each lock file holds ([`crate::io::LockNote`]), by lock path. Every crash keeps it
    /// (a note is unsynced; kept is the outcome that could mislead a reader).
    notes: BTreeMap<PathBuf, Vec<u8>>,
}

impl Disk {
    /// Up to `max` bytes of the note of lock file `path` from offset `at`.
    fn note(&self, path: &Path, at: u64, max: usize) -> Vec<u8> {
        let note = self.notes.get(path).map_or(&[][..], |n| &n[..]);
        let from = usize::try_from(at).map_or(note.len(), |a| a.min(note.len()));
        note[from..note.len().min(from.saturating_add(max))].to_vec()
    }

    fn node(&mut self, ino: u64) -> &mut Inode {
        self.inodes
            .get_mut(&ino)
            .expect("handles only name live inodes")
    }

    fn meta(&self, ino: u64) -> FileMeta {
        let node = &self.inodes[&ino];
        let (len, mtime_ns) = (node.data.len() as u64, node.mtime_ns);
        FileMeta {
            len,
            dev: 1,
            ino,
            mtime_ns,
            mode: node.mode,
        }
    }

    /// The inode, its mtime bumped for a data change.
    fn touch(&mut self, ino: u64) -> &mut Inode {
        self.clock += 1;
        let clock = self.clock;
        let node = self.node(ino);
        node.mtime_ns = clock;
        node
    }

    fn new_inode(&mut self) -> u64 {
        self.next_ino += 1;
        self.inodes.insert(self.next_ino, Inode::default());
        self.next_ino
    }

    /// Bytes held by the files that have a name.
    fn used(&self) -> u64 {
        let named: BTreeSet<u64> = self.names.values().copied().collect();
        named.iter().map(|i| self.inodes[i].data.len() as u64).sum()
    }

    /// Applies a write, only the part of it that fits in the capacity (then ENOSPC).
    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let end = offset + bytes.len() as u64;
        let len = self.inodes[&ino].data.len() as u64;
        let room = self.capacity.map(|c| c.saturating_sub(self.used()));
        match room {
            Some(room) if end > len.max(offset) && end - len.max(offset) > room => {
                let fits = (len.max(offset) + room).saturating_sub(offset) as usize;
                let part = bytes[..fits.min(bytes.len())].to_vec();
                if !part.is_empty() {
                    self.apply_op(
                        ino,
                        Op::Write {
                            offset,
                            bytes: part,
                        },
                    )?;
                }
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            _ => self.apply_op(
                ino,
                Op::Write {
                    offset,
                    bytes: bytes.to_vec(),
                },
            ),
        }
    }

    fn apply_op(&mut self, ino: u64, op: Op) -> io::Result<()> {
        if !matches!(&op, Op::Write { bytes, .. } if bytes.is_empty()) {
            let node = self.touch(ino);
            op.apply(&mut node.data, u64::MAX);
            node.unsynced.push(op);
        }
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> io::Result<()> {
        let node = self.node(ino);
        node.settle(node.data.clone());
        Ok(())
    }

    /// Changes a visible directory entry now and queues the change until `sync_dir`.
    fn relink(&mut self, from: Option<&Path>, to: Option<&Path>, ino: u64) {
        let (from, to) = (from.map(Path::to_path_buf), to.map(Path::to_path_buf));
        let op = DirOp { from, to, ino };
        op.apply(&mut self.names);
        self.dir_ops.push(op);
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        self.names.get(path).copied().ok_or_else(enoent)
    }
}

/// The contents plus the call counter, the injected fault and the trace.
#[derive(Default)]
struct State {
    disk: Disk,
    calls: u64,
    fault: Option<(u64, FailKind)>,
    /// A second fault, for a failure during the recovery from the first.
    later: Option<(u64, FailKind)>,
    trace: Vec<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    locks: Mutex<HashSet<PathBuf>>,
    unlocked: Condvar,
}

/// A simulated filesystem; clones share one state (two "processes" on one disk).
#[derive(Clone, Default)]
pub struct SimFs {
    shared: Arc<Shared>,
}

/// `path` without `.` components, so `./a` is `a` and `.` is the empty path.
fn norm(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

impl SimFs {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn from_disk(disk: Disk) -> Self {
        let state = Mutex::new(State {
            disk,
            ..State::default()
        });
        SimFs {
            shared: Arc::new(Shared {
                state,
                ..Shared::default()
            }),
        }
    }

    /// Counts a call, fails it if a fault says so, else runs `f`; traces it either way.
    fn call<T>(&self, desc: String, f: impl FnOnce(&mut Disk) -> io::Result<T>) -> io::Result<T> {
        self.call_partial(desc, f, |_| ())
    }

    /// Like [`SimFs::call`]; a [`FailKind::Short`] fault at this call runs `partial` before failing.
    fn call_partial<T>(
        &self,
        desc: String,
        f: impl FnOnce(&mut Disk) -> io::Result<T>,
        partial: impl FnOnce(&mut Disk),
    ) -> io::Result<T> {
        let mut st = self.shared.state.lock();
        st.calls += 1;
        let n = st.calls;
        let short =
            |f: Option<(u64, FailKind)>| matches!(f, Some((at, FailKind::Short(_))) if at == n);
        if short(st.fault) || short(st.later) {
            partial(&mut st.disk);
        }
        let hit = |f: Option<(u64, FailKind)>| match f {
            Some((at, FailKind::Once(e) | FailKind::Short(e))) if n == at => Some((e, "injected")),
            Some((at, FailKind::Persistent(e))) if n >= at => Some((e, "injected")),
            Some((at, FailKind::Crash)) if n >= at => Some((libc::EIO, "crashed")),
            _ => None,
        };
        let injected = hit(st.later).or_else(|| hit(st.fault));
        let result = match injected {
            Some((errno, _)) => Err(io::Error::from_raw_os_error(errno)),
            None => f(&mut st.disk),
        };
        let outcome = match (&result, injected) {
            (_, Some((errno, why))) => format!(" => {why} errno {errno}"),
            (Err(e), None) => format!(" => {e}"),
            (Ok(_), None) => String::new(),
        };
        st.trace.push(format!("#{n} {desc}{outcome}"));
        result
    }

    fn handle(&self, ino: u64) -> Box<dyn FileHandle> {
        Box::new(SimHandle {
            fs: self.clone(),
            ino,
        })
    }

    /// How many calls were made since the last reset.
    pub fn calls(&self) -> u64 {
        self.shared.state.lock().calls
    }

    /// Sets the call counter to zero and clears the trace.
    pub fn reset_calls(&self) {
        let mut st = self.shared.state.lock();
        st.calls = 0;
        st.trace.clear();
    }

    /// Makes call number `n` (1-based, counted from the last reset) fail as `kind` says.
    pub fn fail_at(&self, n: u64, kind: FailKind) {
        let mut st = self.shared.state.lock();
        st.fault = Some((n, kind));
        st.later = None;
    }

    /// Adds to the fault of [`SimFs::fail_at`] a second one at call `n` (say, the process dying
    /// while it undoes what the first failure left).
    pub fn also_fail_at(&self, n: u64, kind: FailKind) {
        self.shared.state.lock().later = Some((n, kind));
    }

    /// Removes any injected fault.
    pub fn clear_faults(&self) {
        let mut st = self.shared.state.lock();
        st.fault = None;
        st.later = None;
    }

    /// Limits the bytes all named files may hold (`None`: unlimited); kept by snapshots and crashes.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.shared.state.lock().disk.capacity = bytes;
    }

    /// One line per call since the last reset, e.g. `#3 write_at ino=2 off=0 len=512`.
    pub fn trace(&self) -> Vec<String> {
        self.shared.state.lock().trace.clone()
    }

    /// The state after a power loss, each unsynced operation's fate decided by `fates`, in the order
    /// of [`SimFs::unsynced_events`]: directory ops (all asked; from the first `Drop` on, none is
    /// kept), then each inode's data ops in inode order. Everything in the result is durable.
    pub fn crash(&self, fates: &mut dyn FnMut(&Unsynced<'_>) -> Fate) -> SimFs {
        let mut disk = self.shared.state.lock().disk.clone();
        // Only inodes that some crash outcome can name survive.
        let dir_inos = disk.dir_ops.iter().map(|op| &op.ino);
        let nameable: BTreeSet<u64> = disk
            .durable_names
            .values()
            .chain(dir_inos)
            .copied()
            .collect();
        let mut journal_intact = true;
        for (index, op) in disk.dir_ops.iter().enumerate() {
            let description = op.describe();
            let fate = fates(&Unsynced::DirOp {
                index,
                description: &description,
            });
            journal_intact &= fate != Fate::Drop;
            if journal_intact {
                op.apply(&mut disk.durable_names);
            }
        }
        disk.dir_ops.clear();
        disk.names.clone_from(&disk.durable_names);
        disk.inodes.retain(|ino, _| nameable.contains(ino));
        for (&ino, node) in &mut disk.inodes {
            let mut data = std::mem::take(&mut node.durable);
            for (index, op) in node.unsynced.iter().enumerate() {
                match fates(&Unsynced::Data { ino, index, op }) {
                    Fate::Keep => op.apply(&mut data, u64::MAX),
                    Fate::Torn(mask) => op.apply(&mut data, mask),
                    Fate::Drop => {}
                }
            }
            node.settle(data);
        }
        SimFs::from_disk(disk)
    }

    /// A power loss after which every unsynced operation reached the disk.
    pub fn crash_keep_all(&self) -> SimFs {
        self.crash(&mut |_| Fate::Keep)
    }

    /// A power loss that lost every unsynced operation.
    pub fn crash_drop_all(&self) -> SimFs {
        self.crash(&mut |_| Fate::Drop)
    }

    /// The unsynced operations, in the order [`SimFs::crash`] asks about them.
    pub fn unsynced_events(&self) -> Vec<UnsyncedInfo> {
        let mut events = Vec::new();
        self.crash(&mut |u| {
            events.push(u.info());
            Fate::Keep
        });
        events
    }

    /// How many fates [`SimFs::crash`] asks for.
    pub fn unsynced_count(&self) -> usize {
        self.unsynced_events().len()
    }

    /// An independent copy of the contents, unsynced operations included (fresh counter, no faults).
    pub fn snapshot(&self) -> SimFs {
        SimFs::from_disk(self.shared.state.lock().disk.clone())
    }

    /// Creates or replaces `path` with `bytes`, durably (name too); not counted as a call.
    pub fn write_file(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let path = norm(path.as_ref());
        let mut state = self.shared.state.lock();
        let st = &mut state.disk;
        let ino = match st.names.get(&path) {
            Some(&ino) => ino,
            None => st.new_inode(),
        };
        st.touch(ino).settle(bytes.to_vec());
        st.names.insert(path.clone(), ino);
        st.durable_names.insert(path, ino);
    }

    /// The visible contents of `path`; not counted as a call.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let state = self.shared.state.lock();
        let ino = state.disk.names.get(&norm(path.as_ref()))?;
        Some(state.disk.inodes[ino].data.clone())
    }

    /// Whether `path` is visible; not counted as a call.
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.read_file(path).is_some()
    }

    /// The visible paths, sorted; not counted as a call.
    pub fn list(&self) -> Vec<PathBuf> {
        self.shared
            .state
            .lock()
            .disk
            .names
            .keys()
            .cloned()
            .collect()
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs")
            .field("files", &self.list())
            .finish()
    }
}

impl Fs for SimFs {
    fn read(&self, path: &Path) -> io::Result<Option<(Vec<u8>, FileMeta)>> {
        let p = norm(path);
        self.call(format!("read {}", p.display()), |st| {
            let found = st
                .names
                .get(&p)
                .map(|&ino| (st.inodes[&ino].data.clone(), st.meta(ino)));
            Ok(found)
        })
    }

    fn open_read(&self, path: &Path) -> io::Result<Option<(Arc<dyn ReadHandle>, FileMeta)>> {
        let p = norm(path);
        let found = self.call(format!("open_read {}", p.display()), |st| {
            Ok(st.names.get(&p).map(|&ino| st.meta(ino)))
        })?;
        Ok(found.map(|meta| {
            let h: Arc<dyn ReadHandle> = Arc::new(SimRead {
                fs: self.clone(),
                ino: meta.ino,
                len: meta.len,
            });
            (h, meta)
        }))
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<FileMeta>> {
        let p = norm(path);
        self.call(format!("metadata {}", p.display()), |st| {
            Ok(st.names.get(&p).map(|&ino| st.meta(ino)))
        })
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let p = norm(path);
        self.call(format!("create {}", p.display()), |st| {
            match st.names.get(&p) {
                Some(&ino)
                    if st.inodes[&ino].data.is_empty() && st.inodes[&ino].durable.is_empty() =>
                {
                    Ok(ino)
                }
                Some(&ino) => st.apply_op(ino, Op::SetLen(0)).map(|()| ino),
                None => {
                    let ino = st.new_inode();
                    st.relink(None, Some(&p), ino);
                    Ok(ino)
                }
            }
        })
        .map(|ino| self.handle(ino))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let p = norm(path);
        self.call(format!("create_new {}", p.display()), |st| {
            if st.names.contains_key(&p) {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            let ino = st.new_inode();
            st.node(ino).mode = 0o644;
            st.relink(None, Some(&p), ino);
            Ok(ino)
        })
        .map(|ino| self.handle(ino))
    }

    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let p = norm(path);
        self.call(format!("open_existing {}", p.display()), |st| st.lookup(&p))
            .map(|ino| self.handle(ino))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        self.call(
            format!("rename {} -> {}", from.display(), to.display()),
            |st| {
                let ino = st.lookup(&from)?;
                if from != to {
                    st.relink(Some(&from), Some(&to), ino);
                }
                Ok(())
            },
        )
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        self.call(
            format!("rename_noreplace {} -> {}", from.display(), to.display()),
            |st| {
                let ino = st.lookup(&from)?;
                if st.names.contains_key(&to) {
                    return Err(io::Error::from_raw_os_error(libc::EEXIST));
                }
                st.relink(Some(&from), Some(&to), ino);
                Ok(())
            },
        )
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        self.call(format!("sync_dir {:?}", dir.display().to_string()), |st| {
            let ops = std::mem::take(&mut st.dir_ops);
            let (now, later): (Vec<_>, _) = ops.into_iter().partition(|op| op.in_dir(&dir));
            now.iter().for_each(|op| op.apply(&mut st.durable_names));
            st.dir_ops = later;
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        self.call(format!("remove {}", p.display()), |st| {
            let ino = st.lookup(&p)?;
            st.relink(Some(&p), None, ino);
            Ok(())
        })
    }

    fn peek_note(&self, lock_path: &Path, at: u64, max: usize) -> io::Result<Vec<u8>> {
        let path = norm(lock_path);
        self.call(format!("peek_note {} at={at}", path.display()), |st| {
            Ok(st.note(&path, at, max))
        })
    }

    fn lock(&self, lock_path: &Path, wait: Option<Duration>) -> io::Result<ProcessLock> {
        let path = norm(lock_path);
        self.call(format!("lock {}", path.display()), |_| Ok(()))?;
        let note = handles::SimNote {
            fs: self.clone(),
            path: path.clone(),
        };
        Ok(self.hold(path, wait)?.with_note(Box::new(note)))
    }

    fn lock_file(
        &self,
        path: &Path,
        wait: Option<Duration>,
    ) -> io::Result<Option<(ProcessLock, FileMeta)>> {
        let p = norm(path);
        loop {
            let found = self.call(format!("lock_file {}", p.display()), |st| {
                Ok(st.names.get(&p).copied())
            })?;
            let Some(ino) = found else {
                return Ok(None);
            };
            // Locks live in the set by name; an inode's lock has a name no path can have.
            let lock = self.hold(PathBuf::from(format!("\0ino {ino}")), wait)?;
            let st = self.shared.state.lock();
            if st.disk.names.get(&p) == Some(&ino) {
                return Ok(Some((lock, st.disk.meta(ino))));
            }
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<ProcessLock>> {
        let path = norm(path);
        self.call(format!("try_lock {}", path.display()), |st| {
            st.lookup(&path).map(|_| ())
        })?;
        let mut held = self.shared.locks.lock();
        if !held.insert(path.clone()) {
            return Ok(None);
        }
        let guard = LockGuard {
            shared: Arc::clone(&self.shared),
            path,
        };
        Ok(Some(ProcessLock::new(LockKind::Ofd, Some(Box::new(guard)))))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = norm(dir);
        self.call(format!("list_dir {:?}", dir.display().to_string()), |st| {
            let in_dir = |p: &&PathBuf| p.parent().unwrap_or(Path::new("")) == dir;
            Ok(st.names.keys().filter(in_dir).cloned().collect())
        })
    }
}

impl SimFs {
    /// Waits until no one holds `key` (at most `wait`), then holds it.
    fn hold(&self, key: PathBuf, wait: Option<Duration>) -> io::Result<ProcessLock> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut held = self.shared.locks.lock();
        while held.contains(&key) {
            match deadline {
                None => self.shared.unlocked.wait(&mut held),
                Some(d) => {
                    if self.shared.unlocked.wait_until(&mut held, d).timed_out()
                        && held.contains(&key)
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "held by another process",
                        ));
                    }
                }
            }
        }
        held.insert(key.clone());
        let guard = LockGuard {
            shared: Arc::clone(&self.shared),
            path: key,
        };
        Ok(ProcessLock::new(LockKind::Ofd, Some(Box::new(guard))))
    }
}

#[cfg(test)]
mod tests;
