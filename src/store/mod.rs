//! The key-value store: load with salvage, get/put/remove/clear, and a flush that commits atomically,
//! appending when it only adds keys and rewriting by atomic replace otherwise, merging under the
//! process lock what other processes committed in the meantime. The read path is in `load`, the
//! commit in `flush`, the values of a lazily opened file in `lazy`; this file holds the types, the
//! open and the in-memory operations.

mod budget;
mod error;
mod flush;
mod key_map;
mod lazy;
mod load;
mod options;
mod read_ahead;
mod report;
mod value;

pub use error::Error;
pub use options::{Options, Verify, DEFAULT_MAX_FILE_LEN};
pub use report::{Report, Stats};
pub use value::{Backing, Value};

use error::io_err;
use key_map::{key_map_with_capacity, KeyMap};

use crate::format::{
    self, CheckedInfo, Damage, EntryCheck, EntryIn, Format, KnownCrc, ValueKind, WriteParams,
    PLATFORM_INFO_KEY,
};
use crate::io::side_files::{self, CacheLock, SideFiles};
use crate::io::{parent_dir, FileMeta, Fs, LockKind};
use lazy::{Got, Lazy};
use load::{load_entries, load_within};
use parking_lot::{Mutex, RwLock};
use read_ahead::ReadAhead;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
struct Item {
    value: Stored,
    kind: ValueKind,
    /// The checksum of the record this value was read from, when it verified and is in the
    /// writer's layout: a rewrite writes the value's record without hashing the value again. Only
    /// ever set on the item made from that record, so it always goes with exactly these bytes.
    known_crc: Option<KnownCrc>,
}

/// Where an entry's value is.
#[derive(Clone)]
enum Stored {
    /// In memory, known good: put by this process, or verified when the file was read.
    Ready(Value),
    /// In the file, read and verified on first use ([`Verify::Lazy`]).
    Lazy(Arc<Lazy>),
}

impl Item {
    /// The value's length, known without reading it.
    fn len(&self) -> usize {
        match &self.value {
            Stored::Ready(v) => v.len(),
            Stored::Lazy(l) => l.len(),
        }
    }

    /// The value, if it is in memory and known good.
    fn ready(&self) -> Option<&Value> {
        match &self.value {
            Stored::Ready(v) => Some(v),
            Stored::Lazy(l) => l.cached(),
        }
    }

    /// [`Item::known_crc`], or, for a value read lazily, that of its record once it verified.
    fn crc_known(&self) -> Option<KnownCrc> {
        match &self.value {
            Stored::Lazy(l) => self.known_crc.or_else(|| l.known_crc()),
            Stored::Ready(_) => self.known_crc,
        }
    }

    /// The value still to read and verify, if any.
    fn unread(&self) -> Option<&Arc<Lazy>> {
        match &self.value {
            Stored::Lazy(l) if l.cached().is_none() => Some(l),
            _ => None,
        }
    }

    /// Whether both are the same value (the same put, or the same entry of a file), without
    /// comparing bytes.
    fn same(&self, other: &Item) -> bool {
        match (&self.value, &other.value) {
            (Stored::Ready(a), Stored::Ready(b)) => a.same(b),
            (Stored::Lazy(a), Stored::Lazy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The item with its value in memory, if it is (so a file's handle is not kept for it).
    fn settled(&self) -> Item {
        match self.ready() {
            Some(v) => Item {
                value: Stored::Ready(v.clone()),
                kind: self.kind,
                known_crc: self.crc_known(),
            },
            None => self.clone(),
        }
    }
}

/// What the store knows of the file as it last read or wrote it.
#[derive(Clone, Default)]
struct Disk {
    /// Identity of the file; `None` when absent or unknown.
    meta: Option<FileMeta>,
    /// Set when the file is an intact checked-1.1 file that can be appended to.
    checked: Option<CheckedInfo>,
    generation: u64,
    /// Whether the file's directory entry is known durable (this store's own rewrite, or a
    /// directory sync, made it so); a file read from disk may have been renamed into place by a
    /// process that died before syncing its directory.
    name_durable: bool,
    /// Whether the lock file's note vouches for the file's directory entry (a process synced the
    /// directory after the file took its name); says nothing of its data.
    name_noted: bool,
}

/// See [`State::bound_key`].
type BoundKey = (Option<FileMeta>, usize, usize);

#[derive(Default)]
struct State {
    /// The committed state as last read or written; shared, so that a flush snapshots it without
    /// copying it (only a flush changes it, one at a time).
    base: Arc<KeyMap<Item>>,
    /// Changes since then (`None`: removed).
    pending: KeyMap<Option<Item>>,
    /// `clear` since then: `base` is hidden.
    cleared: bool,
    /// Counts `clear` calls, so a flush knows whether one came while it was writing.
    clears: u64,
    disk: Disk,
    stats: Stats,
    /// An upper bound of the file the current entries make, and the committed state it was
    /// computed against (recomputed when that changes): lets `put` refuse what the file cannot hold
    /// in O(1).
    size_bound: Option<(BoundKey, u64)>,
}

impl State {
    fn lookup(&self, key: &[u8]) -> Option<&Item> {
        match self.pending.get(key) {
            Some(p) => p.as_ref(),
            None if self.cleared => None,
            None => self.base.get(key),
        }
    }

    fn current(&self) -> KeyMap<Item> {
        let mut m = if self.cleared {
            KeyMap::default()
        } else {
            (*self.base).clone()
        };
        for (k, v) in &self.pending {
            match v {
                Some(i) => m.insert(k.clone(), i.clone()),
                None => m.remove(k),
            };
        }
        m
    }

    /// What a size bound was computed against: the file and the committed entries as last read or
    /// written (a flush or a merge changes one of them).
    fn bound_key(&self) -> BoundKey {
        (
            self.disk.meta,
            Arc::as_ptr(&self.base) as usize,
            self.base.len(),
        )
    }

    /// The exact sum of [`format::entry_len_bound`] over the current entries, except `skip`.
    fn entries_len_bound(&self, format: Format, skip: Option<&[u8]>) -> u64 {
        let of = |k: &[u8], i: &Item| format::entry_len_bound(format, k.len(), i.len(), i.kind);
        let mut sum = 0u64;
        if !self.cleared {
            for (k, i) in self.base.iter() {
                if !self.pending.contains_key(k) && skip != Some(k) {
                    sum = sum.saturating_add(of(k, i));
                }
            }
        }
        for (k, p) in &self.pending {
            if let (Some(i), false) = (p, skip == Some(&k[..])) {
                sum = sum.saturating_add(of(k, i));
            }
        }
        sum
    }

    fn dirty(&self) -> bool {
        self.cleared || !self.pending.is_empty()
    }

    /// Whether a flush now would write anything.
    fn has_changes(&self) -> bool {
        self.cleared
            || self
                .pending
                .iter()
                .any(|(k, v)| is_change(&self.base, k, v))
    }
}

/// Whether the change `v` of `key` changes what `base` holds (not cleared): MACE puts the same
/// platform-info and device-name values before every flush, and such a put is no change; nor is
/// the removal of a key the file does not hold (a flush that failed after its rename took effect
/// leaves its removals pending over the file that already has them).
/// A committed value not read yet counts as different: the flush reads those a put may equal first.
fn is_change(base: &KeyMap<Item>, key: &[u8], v: &Option<Item>) -> bool {
    let equal = |b: &Item, i: &Item| {
        b.kind == i.kind
            && b.len() == i.len()
            && matches!((b.ready(), i.ready()), (Some(x), Some(y)) if x == y)
    };
    match v {
        Some(i) => base.get(key).map_or(true, |b| !equal(b, i)),
        None => base.contains_key(key),
    }
}

/// A key-value store over one cache file, safe to share between threads.
pub struct Store {
    path: PathBuf,
    /// `path` with a symbolic link at it resolved, once, at open: every read, write and side file
    /// is at the target.
    target: PathBuf,
    opts: Options,
    state: RwLock<State>,
    flush_lock: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// What this process used since its last flush, for the budget's eviction order.
    uses: Mutex<budget::Uses>,
    /// The records the gets read, for the next open to read ahead.
    read_ahead: ReadAhead,
    report: Report,
}

impl Store {
    /// Opens the cache file at `path`: a missing file opens empty, a damaged one with what salvage
    /// kept, and one that cannot be read at all is moved to `<path>.corrupt` (unless read-only),
    /// under the cache's lock and only if it is still that file and still unreadable. A symbolic
    /// link at `path` is resolved here, once ([`Store::target`]).
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Store, Error> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            // "" would open as a missing file, and flushes would then fail on "" or lock ".lock".
            return Err(Error::Io {
                op: "open",
                path,
                source: io::Error::new(io::ErrorKind::InvalidInput, "the path is empty"),
            });
        }
        let fs = &*opts.fs;
        let side = SideFiles::open(fs, &path).map_err(io_err("resolve", &path))?;
        let target = side.path().to_path_buf();
        let (max, verify) = (opts.max_file_len, opts.verify);
        let mut loaded = load_within(fs, &target, max, verify)?;
        if let Some(why) = loaded.unreadable.clone() {
            if opts.read_only {
                loaded
                    .report
                    .damage
                    .notes
                    .push(format!("unreadable ({why}): read as empty"));
            } else {
                // Set aside only under the lock, after reading it again: what looked unreadable may
                // have been another process's commit in progress, complete by now.
                match side.lock(opts.lock_timeout) {
                    Ok(lock) => {
                        loaded = load_within(fs, &target, max, verify)?;
                        loaded.set_aside(&side, &lock);
                    }
                    Err(e) => loaded.report.damage.notes.push(format!(
                        "unreadable ({why}) and not moved aside (cannot lock it: {e}): started empty; the next flush replaces it"
                    )),
                }
            }
        }
        let read_ahead = match (&loaded.lazy, &loaded.disk.meta, &loaded.disk.checked) {
            (Some(h), Some(meta), Some(c)) => ReadAhead::begin(&side, h, meta, c.file_id),
            _ => ReadAhead::default(),
        };
        let stats = Stats {
            entries_salvaged: if loaded.report.damage.intact {
                0
            } else {
                loaded.report.entries
            },
            entries_dropped: loaded.report.damage.entries_dropped,
            ..Stats::default()
        };
        Ok(Store {
            path,
            target,
            state: RwLock::new(State {
                base: Arc::new(loaded.base),
                disk: loaded.disk,
                stats,
                ..State::default()
            }),
            opts,
            flush_lock: Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            uses: Mutex::default(),
            read_ahead,
            report: loaded.report,
        })
    }

    /// Opens a read-only store over `data` (a cache file's bytes); values point into `data`.
    pub fn open_bytes(data: Backing) -> Result<Store, format::NotACache> {
        let d = format::decode((*data).as_ref())?;
        let report = Report {
            missing: false,
            format: Some(d.format),
            file_len: (*data).as_ref().len() as u64,
            entries: d.entries.len() as u64,
            damage: d.damage.clone(),
            set_aside: None,
            too_large: false,
        };
        let stats = Stats {
            entries_salvaged: if d.damage.intact { 0 } else { report.entries },
            entries_dropped: d.damage.entries_dropped,
            ..Stats::default()
        };
        Ok(Store {
            path: PathBuf::new(),
            target: PathBuf::new(),
            state: RwLock::new(State {
                base: Arc::new(load_entries(&data, d.entries)),
                stats,
                ..State::default()
            }),
            opts: Options {
                read_only: true,
                ..Options::default()
            },
            flush_lock: Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            uses: Mutex::default(),
            read_ahead: ReadAhead::default(),
            report,
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file this store reads and commits to: [`Store::path`] with a symbolic link at it
    /// resolved when the store was opened.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// What opening the file found.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Whether the store refuses writes.
    pub fn read_only(&self) -> bool {
        self.opts.read_only
    }

    /// The value of `key`, sharing memory with the store (no copy); it stays valid after any later change.
    /// A value read unverified ([`Verify::Lazy`]) is read from the file opened and verified first:
    /// one that fails its checksum is dropped from the store (counted in
    /// [`Stats::entries_failed_on_use`] and logged) and is missing; one that cannot be read (an I/O
    /// error) is missing from this get only, logged, and read again by the next use.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        let v = self.fetch(key);
        let counter = if v.is_some() {
            self.note_use(key);
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        v
    }

    /// [`Store::get`] without counting it as a use or in the stats.
    fn fetch(&self, key: &[u8]) -> Option<Value> {
        self.fetch_from(key, false)
    }

    /// [`Store::fetch`] of the current value, or (`committed`) of the value the file holds, as
    /// last read or written, whatever is pending.
    fn fetch_from(&self, key: &[u8], committed: bool) -> Option<Value> {
        let (ready, unread) = {
            let s = self.state.read();
            let item = if committed {
                s.base.get(key)
            } else {
                s.lookup(key)
            };
            match item {
                Some(i) => (i.ready().cloned(), i.unread().cloned()),
                None => (None, None),
            }
        };
        match (ready, unread) {
            (Some(v), _) => Some(v),
            (None, Some(l)) => {
                let v = self.read_value(key, &l).unwrap_or(None);
                if v.is_some() && !committed {
                    self.noted_read(l.span());
                }
                v
            }
            (None, None) => None,
        }
    }

    /// Writes the value of `key` into the buffer `alloc` returns for its length (`None`: the
    /// caller gives up, a miss), without the store keeping a copy; `true` when the buffer holds it.
    /// A value in memory is copied; one not read yet ([`Verify::Lazy`]) is read from the file
    /// straight into the buffer and verified there, and not cached: each call reads it again.
    /// Otherwise as [`Store::get`]: one that fails its checksum is `false` (the buffer then holds
    /// garbage), dropped, counted and logged; an I/O error is a miss for this call only. A buffer
    /// of another length than asked for is a miss, left untouched.
    pub fn get_into<'b>(
        &self,
        key: &[u8],
        alloc: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> bool {
        let found = self.fetch_into(key, alloc);
        let counter = if found {
            self.note_use(key);
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// [`Store::get_into`] without counting it as a use or in the stats.
    fn fetch_into<'b>(
        &self,
        key: &[u8],
        alloc: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> bool {
        let (ready, unread, len) = {
            let s = self.state.read();
            match s.lookup(key) {
                Some(i) => (i.ready().cloned(), i.unread().cloned(), i.len()),
                None => return false,
            }
        };
        let Some(out) = alloc(len).filter(|b| b.len() == len) else {
            return false;
        };
        match (ready, unread) {
            (Some(v), _) => {
                out.copy_from_slice(&v);
                true
            }
            (None, Some(l)) => {
                let found = self
                    .read_value_by(key, &l, |l| l.load_into(key, out))
                    .is_ok_and(|v| v.is_some());
                if found {
                    self.noted_read(l.span());
                }
                found
            }
            (None, None) => false,
        }
    }

    /// Sets `key` to `value` (not durable until [`Store::flush`]).
    pub fn put(&self, key: &[u8], value: Value) -> Result<(), Error> {
        self.put_kind(key, value, ValueKind::Bytes)
    }

    /// Sets `key` to `value`, encoded in format B as `kind`.
    pub fn put_kind(&self, key: &[u8], value: Value, kind: ValueKind) -> Result<(), Error> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let format = self.opts.format;
        format::check_entry(format, key, value.len(), kind).map_err(Error::Encode)?;
        let limit = format::max_file_len(format).min(self.opts.max_file_len);
        let this = format::entry_len_bound(format, key.len(), value.len(), kind);
        let mut s = self.state.write();
        let fresh = |s: &State| s.size_bound.filter(|b| b.0 == s.bound_key()).map(|b| b.1);
        let mut bound = fresh(&s).unwrap_or_else(|| s.entries_len_bound(format, None));
        if format::file_len_bound(bound.saturating_add(this)) > limit {
            // The bound only grows between recomputations: recompute it exactly before refusing.
            bound = s.entries_len_bound(format, Some(key));
            if format::file_len_bound(bound.saturating_add(this)) > limit {
                let which = if limit == self.opts.max_file_len {
                    "the largest file this store loads (Options::max_file_len)"
                } else {
                    "the most a file of this format holds"
                };
                return Err(Error::Encode(format::EncodeError(format!(
                    "put of key {:?} ({} bytes) refused: the {format} file would grow past {limit} \
                     bytes, {which}",
                    String::from_utf8_lossy(&key[..key.len().min(64)]),
                    value.len()
                ))));
            }
        }
        s.size_bound = Some((s.bound_key(), bound.saturating_add(this)));
        // Always recorded: whether it changes anything is decided by the flush, against the file
        // as it is then (the state last read may be stale after a failed flush or another writer).
        s.pending.insert(
            key.to_vec(),
            Some(Item {
                value: Stored::Ready(value),
                kind,
                known_crc: None,
            }),
        );
        Ok(())
    }

    /// Reads and verifies the lazily read value `l` of `key`; when it fails its checksum, drops it
    /// from the committed state (if it is still there), counts and logs it, and makes the next
    /// flush rewrite the file. `Ok(None)`: it failed; an I/O error leaves the entry as it is.
    fn read_value(&self, key: &[u8], l: &Arc<Lazy>) -> Result<Option<Value>, Error> {
        self.read_value_by(key, l, |l| l.load(key))
    }

    /// [`Store::read_value`] with the read `load` makes (into the store's buffer, or the caller's).
    fn read_value_by<T>(
        &self,
        key: &[u8],
        l: &Arc<Lazy>,
        load: impl FnOnce(&Lazy) -> Got<T>,
    ) -> Result<Option<T>, Error> {
        let first = match load(l) {
            Got::Good(v) => return Ok(Some(v)),
            Got::Failed { first } => first,
            Got::Io(e) => {
                crate::log::warn(&format!(
                    "{}: the entry of key {:?} could not be read ({e}): missing for now, kept",
                    self.target.display(),
                    String::from_utf8_lossy(&key[..key.len().min(64)])
                ));
                return Err(io_err("read", &self.target)(e));
            }
        };
        // Removed by whichever call gets here first, before any returns: a flush that verified
        // everything never snapshots a failed entry.
        let mut s = self.state.write();
        let here = s
            .base
            .get(key)
            .is_some_and(|i| matches!(&i.value, Stored::Lazy(x) if Arc::ptr_eq(x, l)));
        if here {
            Arc::make_mut(&mut s.base).remove(key);
            // The file is not as written: no append on top of it; a rewrite leaves this out.
            s.disk.checked = None;
        }
        if first {
            s.stats.entries_dropped += 1;
            s.stats.entries_failed_on_use += 1;
        }
        drop(s);
        if first {
            crate::log::warn(&format!(
                "{}: the entry of key {:?} failed its checksum when first read: dropped, \
                         the next flush rewrites the file without it",
                self.target.display(),
                String::from_utf8_lossy(&key[..key.len().min(64)])
            ));
        }
        Ok(None)
    }

    /// Reads and verifies every committed value not read yet, dropping those that fail; the first
    /// I/O error stops it.
    fn read_all_values(&self) -> Result<(), Error> {
        let todo: Vec<(Vec<u8>, Arc<Lazy>)> = {
            let s = self.state.read();
            s.base
                .iter()
                .filter_map(|(k, i)| i.unread().map(|l| (k.clone(), Arc::clone(l))))
                .collect()
        };
        for (k, l) in todo {
            self.read_value(&k, &l)?;
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&self, key: &[u8]) -> Result<bool, Error> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut s = self.state.write();
        let present = s.lookup(key).is_some();
        if present {
            s.pending.insert(key.to_vec(), None);
        }
        Ok(present)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), Error> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut s = self.state.write();
        s.pending.clear();
        s.cleared = true;
        s.clears += 1;
        Ok(())
    }

    /// The current entries, sorted by key; every value read and verified first (those that fail
    /// are dropped, and those that cannot be read left out, as by [`Store::get`]).
    pub fn entries(&self) -> Vec<(Vec<u8>, Value)> {
        let current = self.state.read().current();
        let mut v: Vec<_> = current
            .into_iter()
            .filter_map(|(k, i)| {
                let value = match (i.ready(), i.unread()) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(l)) => self.read_value(&k, l).unwrap_or(None),
                    (None, None) => None,
                };
                value.map(|v| (k, v))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The keys of the current entries, sorted; no value is read or verified, so a key whose value
    /// was read unverified ([`Verify::Lazy`]) is listed even if that value fails its checksum (and
    /// leaves the store) on first use.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        self.for_each_key(|k| {
            v.push(k.to_vec());
            true
        });
        v
    }

    /// Calls `visit` with each key of [`Store::keys`], in the same order, without copying them:
    /// the keys of a snapshot taken at the call (the committed map is shared, not copied), so
    /// `visit` may use the store. Stops when `visit` returns `false`.
    pub fn for_each_key(&self, mut visit: impl FnMut(&[u8]) -> bool) {
        // (key, whether it is put): the changes not flushed yet, usually none.
        let (base, pending) = {
            let s = self.state.read();
            let pending: Vec<(Vec<u8>, bool)> = s
                .pending
                .iter()
                .map(|(k, p)| (k.clone(), p.is_some()))
                .collect();
            ((!s.cleared).then(|| Arc::clone(&s.base)), pending)
        };
        let changed: std::collections::HashSet<&[u8]> =
            pending.iter().map(|(k, _)| &k[..]).collect();
        let mut v: Vec<&[u8]> = base
            .iter()
            .flat_map(|b| b.keys())
            .map(|k| &k[..])
            .filter(|k| changed.is_empty() || !changed.contains(k))
            .collect();
        v.extend(pending.iter().filter(|(_, put)| *put).map(|(k, _)| &k[..]));
        v.sort_unstable();
        for k in v {
            if !visit(k) {
                break;
            }
        }
    }

    /// Number of entries now in the store, counting those not verified yet ([`Verify::Lazy`]): one
    /// that fails its checksum on first use leaves then.
    pub fn len(&self) -> usize {
        let s = self.state.read();
        if s.pending.is_empty() && !s.cleared {
            s.base.len()
        } else {
            s.current().len()
        }
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's counters.
    pub fn stats(&self) -> Stats {
        let s = self.state.read();
        let cur = s.current();
        Stats {
            entries: cur.len() as u64,
            bytes: cur.iter().map(|(k, i)| (k.len() + i.len()) as u64).sum(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..s.stats.clone()
        }
    }
}

impl Store {
    /// Remembers that a get read the record at `span` from the file, for the read-ahead note;
    /// leaves the note now when one is due (see [`ReadAhead::noted`]).
    fn noted_read(&self, span: std::ops::Range<u64>) {
        if self.read_ahead.noted(span) {
            self.leave_read_ahead_note();
        }
    }

    /// Leaves the read-ahead note of the records this store's gets read ([`read_ahead`]), unless
    /// the store is read-only; a note that cannot be written is only a start that reads nothing
    /// ahead.
    fn leave_read_ahead_note(&self) {
        if self.opts.read_only {
            return;
        }
        let now = {
            let s = self.state.read();
            s.disk.meta.zip(s.disk.checked.map(|c| c.file_id))
        };
        let side = SideFiles::new(&*self.opts.fs, &self.target);
        self.read_ahead.leave(&side, now);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.leave_read_ahead_note();
    }
}

#[cfg(test)]
mod tests;
