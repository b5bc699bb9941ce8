//! The flush: commit every change atomically, appending when it only adds keys and rewriting by
//! atomic replace otherwise, merging under the lock what another process committed meanwhile.

use super::load::{load_or_too_large, too_large_error, too_large_loaded};
use super::*;

impl Store {
    /// Commits every change durably: when it returns `Ok`, a crash at any later point keeps them.
    /// A crash during it leaves, for every entry, the old value or the new one. Nothing to commit
    /// means no I/O.
    pub fn flush(&self) -> Result<(), Error> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let _one_at_a_time = self.flush_lock.lock();
        if !self.state.read().dirty() {
            return Ok(());
        }
        let result = self.flush_locked();
        if result.is_err() {
            self.state.write().stats.flush_failures += 1;
        }
        result
    }

    pub(super) fn flush_locked(&self) -> Result<(), Error> {
        // A file can appear where there was none only if another writer lost its lock file: then
        // the new file is merged and the flush tried again.
        let mut attempts = 0;
        loop {
            match self.flush_once() {
                Err(Error::Io {
                    op: "create",
                    source,
                    ..
                }) if source.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// One attempt: lock, merge what another process committed, then append or rewrite.
    fn flush_once(&self) -> Result<(), Error> {
        let fs = &*self.opts.fs;
        let side = SideFiles::new(fs, &self.target);
        let lock = side
            .lock(self.opts.lock_timeout)
            .map_err(io_err("lock", &self.target))?;
        self.merge_if_changed(&side, &lock)?;
        self.trust_name_note(&lock);
        self.read_replaced()?;
        // Within the budget: this flush's use record, and the evictions it needs, join the changes.
        let planned = self.plan_budget();
        if planned.is_none() && self.uses.lock().record_now && !self.state.read().has_changes() {
            // Only a use record was asked for, and none is due (the file is below half its
            // budget): nothing to write, not even a directory sync.
            return Ok(());
        }
        let mut snap = self.snapshot();
        let mut rewrite = false;
        if snap.changes().is_empty() && !snap.cleared {
            // The puts are in the file as read: nothing to write, once that file is durable.
            if self.make_durable(&snap.disk)? {
                drop(snap.base);
                settle(&mut self.state.write(), snap.inflight);
                self.leave_name_note(&lock);
                return Ok(());
            }
            rewrite = true;
        }
        if rewrite || self.append_target(&snap, &snap.changes()).is_none() {
            // A rewrite writes every value it keeps: each is read and verified first (those that
            // fail are dropped). An append reads none: the framing was verified at open, and a
            // damaged old entry is found at its own first use.
            drop(snap);
            self.read_all_values()?;
            snap = self.snapshot();
        }
        let changes = snap.changes();
        let result = self.write(&side, &lock, &changes, &snap, rewrite);
        self.finish(snap, changes, result, &lock)?;
        self.uses_committed(planned);
        self.leave_name_note(&lock);
        Ok(())
    }

    /// The file as last read or written with its checked-1.1 id (only those are appended to), and
    /// whether its name is known durable: by this store, and by the lock file's note.
    fn file_and_name(&self) -> Option<(FileMeta, u64, bool, bool)> {
        let s = self.state.read();
        let id = s.disk.checked.as_ref()?.file_id;
        Some((s.disk.meta?, id, s.disk.name_durable, s.disk.name_noted))
    }

    /// A file read from disk may have been renamed into place by a process that died before it
    /// synced the directory, so its first append syncs the directory too, unless the lock file's
    /// note says a directory sync came after the file took the name.
    fn trust_name_note(&self, lock: &CacheLock) {
        if let Some((meta, id, false, false)) = self.file_and_name() {
            if lock.name_durable(&meta, id) {
                self.state.write().disk.name_noted = true;
            }
        }
    }

    /// Once the file's name is known durable (this flush's rewrite or directory sync made it so,
    /// or an earlier one did), the lock file's note says so for the next process.
    fn leave_name_note(&self, lock: &CacheLock) {
        if let Some((meta, id, true, _)) = self.file_and_name() {
            lock.note_name_durable(&meta, id);
        }
    }

    /// Another process may have committed since the file was last read: start from what it wrote
    /// (read as the store reads at open, lazily if so configured).
    fn merge_if_changed(&self, side: &SideFiles<'_>, lock: &CacheLock) -> Result<(), Error> {
        let on_disk = lock.file().copied();
        if on_disk == self.state.read().disk.meta {
            return Ok(());
        }
        let fs = &*self.opts.fs;
        let cleared = self.state.read().cleared;
        let max = self.opts.max_file_len;
        let mut loaded = match load_or_too_large(fs, &self.target, max, self.opts.verify)? {
            Ok(l) => l,
            // Only `clear` may replace a file too large to read: the caller gave it up.
            Err(meta) if cleared => too_large_loaded(&self.target, meta, max),
            Err(meta) => return Err(too_large_error(&self.target, meta.len, max)),
        };
        loaded.set_aside(side, lock);
        let mut s = self.state.write();
        s.base = Arc::new(loaded.base);
        s.disk = loaded.disk;
        s.stats.merges += 1;
        Ok(())
    }

    /// Reads the committed values that pending puts may equal (same key, kind and length): MACE
    /// puts the same platform-info and device-name values before every flush, and a put equal to
    /// what the file holds is no change, so such a flush can still append, or do nothing.
    fn read_replaced(&self) -> Result<(), Error> {
        let todo: Vec<(Vec<u8>, Arc<Lazy>)> = {
            let s = self.state.read();
            if s.cleared {
                return Ok(());
            }
            s.pending
                .iter()
                .filter_map(|(k, v)| {
                    let (new, old) = (v.as_ref()?, s.base.get(k)?);
                    let l = old.unread()?;
                    (new.kind == old.kind && new.len() == old.len()).then(|| (k.clone(), l.clone()))
                })
                .collect()
        };
        for (k, l) in todo {
            self.read_value(&k, &l)?;
        }
        Ok(())
    }

    /// The changes to commit. They stay in `pending` (so readers see them) until they are on disk;
    /// changes made while the flush writes stay pending for the next one.
    fn snapshot(&self) -> Snapshot {
        let s = self.state.read();
        Snapshot {
            inflight: s.pending.clone(),
            cleared: s.cleared,
            clears: s.clears,
            base: Arc::clone(&s.base),
            disk: s.disk.clone(),
        }
    }

    /// Makes the file as read durable before its contents are said to be committed: it may have
    /// been left unsynced (a rename whose directory sync failed, a writer that died before its
    /// fsync). `false`: this process may not write it (mode 0444), and a rewrite must do it.
    fn make_durable(&self, disk: &Disk) -> Result<bool, Error> {
        if disk.name_durable || disk.meta.is_none() {
            return Ok(true);
        }
        let (fs, path) = (&*self.opts.fs, &self.target);
        match fs.open_existing(path) {
            Ok(mut h) => {
                h.sync_all().map_err(io_err("sync", path))?;
                if !disk.name_noted {
                    fs.sync_dir(&parent_dir(path))
                        .map_err(io_err("sync the directory of", path))?;
                }
                self.state.write().disk.name_durable = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(false),
            Err(e) => Err(io_err("open", path)(e)),
        }
    }

    /// The file to append `changes` to, when that is safe: an intact checked-1.1 file, changes that
    /// only add keys it does not hold, and no platform-info entry added under entries written
    /// without one.
    fn append_target(
        &self,
        snap: &Snapshot,
        changes: &KeyMap<Option<Item>>,
    ) -> Option<CheckedInfo> {
        let base = &snap.base;
        snap.disk.checked.filter(|info| {
            self.opts.format == Format::Checked11
                && !snap.cleared
                && changes.iter().all(|(k, v)| v.is_some() && !base.contains_key(k))
                // Entries already written were not vouched for by a platform-info entry added now.
                && (info.has_platform || base.is_empty() || !changes.contains_key(PLATFORM_INFO_KEY))
        })
    }

    /// Records what a write did (or that it failed) in the store's state.
    fn finish(
        &self,
        snap: Snapshot,
        changes: KeyMap<Option<Item>>,
        result: Result<Written, Error>,
        lock: &CacheLock,
    ) -> Result<(), Error> {
        let Snapshot {
            inflight,
            clears,
            base,
            ..
        } = snap;
        // Dropped before the base is updated, so that an append updates it in place.
        drop(base);
        let mut s = self.state.write();
        s.stats.process_lock = lock.kind() != LockKind::Unavailable;
        match result {
            Ok(w) => {
                let appended = w.rewritten.is_none();
                match w.rewritten {
                    Some(target) => s.base = Arc::new(target),
                    // An append only adds the batch's keys to what the file held.
                    None => {
                        let base = Arc::make_mut(&mut s.base);
                        for (k, v) in &changes {
                            if let Some(i) = v {
                                base.insert(k.clone(), i.clone());
                            }
                        }
                    }
                }
                s.disk = w.disk;
                settle(&mut s, inflight);
                if s.clears == clears {
                    s.cleared = false;
                }
                s.stats.flushes += 1;
                s.stats.bytes_written += w.bytes;
                if appended {
                    s.stats.appends += 1;
                } else {
                    s.stats.rewrites += 1;
                }
                Ok(())
            }
            Err(e) => {
                // The changes are still pending; trust nothing about the file: the next flush reads
                // it again and rewrites it.
                s.disk = Disk {
                    generation: s.disk.generation,
                    ..Disk::default()
                };
                Err(e)
            }
        }
    }

    /// Writes the snapshot's base (hidden if cleared) with `changes` applied to disk, appending when
    /// [`Store::append_target`] allows it (and `force_rewrite` does not forbid it).
    ///
    /// A failed append leaves the file byte for byte as it was: the records written over the old
    /// trailer are cut off and the trailer restored. A file this process may not write (mode 0444
    /// in a writable directory) is rewritten instead of appended to, keeping its mode.
    fn write(
        &self,
        side: &SideFiles<'_>,
        lock: &CacheLock,
        changes: &KeyMap<Option<Item>>,
        snap: &Snapshot,
        force_rewrite: bool,
    ) -> Result<Written, Error> {
        if let Some(info) = self.append_target(snap, changes).filter(|_| !force_rewrite) {
            if let Some(w) = self.append(&info, changes, &snap.disk)? {
                return Ok(w);
            }
        }
        self.rewrite(side, lock, changes, snap)
    }

    /// Appends `changes` (only new keys) as one batch; `None`: this process may not write the file.
    fn append(
        &self,
        info: &CheckedInfo,
        changes: &KeyMap<Option<Item>>,
        disk: &Disk,
    ) -> Result<Option<Written>, Error> {
        let fs = &*self.opts.fs;
        let path = &self.target;
        let batch: Vec<EntryIn> = changes
            .iter()
            .filter_map(|(k, v)| v.as_ref().and_then(|i| entry_in(k, i)))
            .collect();
        let append = format::encode_append(info, &batch).map_err(Error::Encode)?;
        let mut h = match fs.open_existing(path) {
            Ok(h) => h,
            // Not writable by this process, in a directory that may be: rewrite it.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let appended = (|| {
            // Records first, synced; only then the commit record that vouches for them.
            let mut off = info.file_len - 4;
            for part in [append.records.slices(), append.commit.slices()] {
                h.write_all_vectored_at(off, &part)
                    .map_err(io_err("append to", path))?;
                off += part.iter().map(|p| p.len() as u64).sum::<u64>();
                h.sync_data().map_err(io_err("sync", path))?;
            }
            let meta = h.meta().map_err(io_err("stat", path))?;
            // An append is only durable if the name it was made under is.
            if !disk.name_durable && !disk.name_noted {
                fs.sync_dir(&parent_dir(path))
                    .map_err(io_err("sync the directory of", path))?;
            }
            Ok(meta)
        })();
        let meta = match appended {
            Ok(meta) => meta,
            Err(e) => {
                // Back to the file as it was, byte for byte: cut off what was written (which also
                // frees the space a full disk needs back) and restore the trailer. The cut is made
                // durable first: the commit record may have reached the disk, and the old trailer
                // written over the batch's first record while that commit survives would leave
                // part of the batch. Best effort: if this fails too, the uncommitted records are
                // ignored by every later read, and the next flush rewrites the file.
                let _ = h.set_len(info.file_len).and_then(|()| {
                    h.sync_data()?;
                    h.write_at(info.file_len - 4, &info.stream_crc.to_le_bytes())?;
                    h.sync_data()
                });
                return Err(e);
            }
        };
        Ok(Some(Written {
            disk: Disk {
                meta: Some(meta),
                checked: Some(append.info),
                generation: disk.generation,
                name_durable: true,
                name_noted: false,
            },
            rewritten: None,
            bytes: append.records.len() + append.commit.len(),
        }))
    }

    /// Replaces the file with every current entry, by atomic replace. Every value kept must have
    /// been read ([`Store::read_all_values`]).
    fn rewrite(
        &self,
        side: &SideFiles<'_>,
        lock: &CacheLock,
        changes: &KeyMap<Option<Item>>,
        snap: &Snapshot,
    ) -> Result<Written, Error> {
        let path = &self.target;
        let mut target: KeyMap<Item> = if snap.cleared {
            KeyMap::default()
        } else {
            snap.base
                .iter()
                .map(|(k, i)| (k.clone(), i.settled()))
                .collect()
        };
        for (k, v) in changes {
            match v {
                Some(i) => target.insert(k.clone(), i.clone()),
                None => target.remove(k),
            };
        }
        let entries: Vec<EntryIn> = target.iter().filter_map(|(k, i)| entry_in(k, i)).collect();
        if entries.len() != target.len() {
            return Err(Error::Io {
                op: "read",
                path: path.clone(),
                source: io::Error::other("a value to rewrite was not read"),
            });
        }
        let params = WriteParams::next(snap.disk.generation);
        let enc = format::encode(self.opts.format, &entries, params).map_err(Error::Encode)?;
        // The new file keeps the old one's permission bits: a rewrite is no way to change them.
        let mode = lock.file().map(|m| m.mode);
        let (written, meta) = side.replace(lock, &enc.out.slices(), mode).map_err(|e| {
            // Someone created the file meanwhile: the caller merges it and tries again.
            let op = if e.kind() == io::ErrorKind::AlreadyExists {
                "create"
            } else {
                "write"
            };
            Error::Io {
                op,
                path: path.clone(),
                source: e,
            }
        })?;
        let disk = Disk {
            meta: Some(meta),
            checked: enc.info,
            generation: params.generation,
            name_durable: true,
            name_noted: false,
        };
        drop(entries);
        Ok(Written {
            disk,
            rewritten: Some(target),
            bytes: written,
        })
    }
}

/// The entry to encode for `k`, if its value is in memory, with the checksum carried from the
/// record it was read from.
fn entry_in<'a>(k: &'a [u8], i: &'a Item) -> Option<EntryIn<'a>> {
    Some(EntryIn {
        key: k,
        value: i.ready()?,
        kind: i.kind,
        known_crc: i.crc_known(),
    })
}

/// What a flush commits: the pending changes and the committed state they apply to.
struct Snapshot {
    inflight: KeyMap<Option<Item>>,
    cleared: bool,
    clears: u64,
    base: Arc<KeyMap<Item>>,
    disk: Disk,
}

impl Snapshot {
    /// The pending changes that change something: a put equal to the committed value is none.
    fn changes(&self) -> KeyMap<Option<Item>> {
        self.inflight
            .iter()
            .filter(|(k, v)| self.cleared || is_change(&self.base, k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// What a write did: the new disk state, the entries written when it rewrote the file (`None`: it
/// appended the changes), and the bytes written.
struct Written {
    disk: Disk,
    rewritten: Option<KeyMap<Item>>,
    bytes: u64,
}

/// Drops from `pending` the changes of `inflight` that are now on disk, unless they were changed
/// again meanwhile (a later put or remove of the key stays pending for the next flush).
fn settle(s: &mut State, inflight: KeyMap<Option<Item>>) {
    for (k, v) in inflight {
        let unchanged = match (s.pending.get(&k), &v) {
            (Some(Some(now)), Some(then)) => now.same(then),
            (Some(None), None) => true,
            _ => false,
        };
        if unchanged {
            s.pending.remove(&k);
        }
    }
}
