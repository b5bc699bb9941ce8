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

    fn flush_locked(&self) -> Result<(), Error> {
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

    fn flush_once(&self) -> Result<(), Error> {
        let fs = &*self.opts.fs;
        let side = SideFiles::new(fs, &self.target);
        let lock = side
            .lock(self.opts.lock_timeout)
            .map_err(io_err("lock", &self.target))?;
        // Another process may have committed since we last read the file: start from what it wrote.
        let on_disk = lock.file().copied();
        if on_disk != self.state.read().disk.meta {
            let cleared = self.state.read().cleared;
            let max = self.opts.max_file_len;
            let mut loaded = match load_or_too_large(fs, &self.target, max, self.opts.verify)? {
                Ok(l) => l,
                // Only `clear` may replace a file too large to read: the caller gave it up.
                Err(meta) if cleared => too_large_loaded(&self.target, meta, max),
                Err(meta) => return Err(too_large_error(&self.target, meta.len, max)),
            };
            loaded.set_aside(&side, &lock);
            let mut s = self.state.write();
            s.base = Arc::new(loaded.base);
            s.disk = loaded.disk;
            s.stats.merges += 1;
        }
        // What is written, and whether appending is safe, needs every committed value verified.
        self.verify_all();
        // Within the budget: this flush's use record, and the evictions it needs, join the changes.
        let planned = self.plan_budget();
        // Snapshot the changes. They stay in `pending` (so readers see them) until they are on disk;
        // changes made while we write stay pending for the next flush.
        let (inflight, cleared, clears, base, disk) = {
            let s = self.state.read();
            (
                s.pending.clone(),
                s.cleared,
                s.clears,
                Arc::clone(&s.base),
                s.disk.clone(),
            )
        };
        // MACE puts the same platform-info and device-name values before every flush: a put equal
        // to what the file holds is no change, so such a flush can still append, or do nothing.
        let changes: HashMap<Vec<u8>, Option<Item>> = inflight
            .iter()
            .filter(|(k, v)| cleared || is_change(&base, k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let path = &self.target;
        let mut rewrite = false;
        if changes.is_empty() && !cleared {
            // The puts are in the file as read. Before saying they are committed, make sure that
            // file is durable: it may have been left unsynced (a rename whose directory sync
            // failed, a writer that died before its fsync).
            if !disk.name_durable && disk.meta.is_some() {
                match fs.open_existing(path) {
                    Ok(mut h) => {
                        h.sync_all().map_err(io_err("sync", path))?;
                        fs.sync_dir(&parent_dir(path))
                            .map_err(io_err("sync the directory of", path))?;
                        self.state.write().disk.name_durable = true;
                    }
                    // A file this process may not write (mode 0444): a rewrite makes it durable.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => rewrite = true,
                    Err(e) => return Err(io_err("open", path)(e)),
                }
            }
            if !rewrite {
                drop(base);
                settle(&mut self.state.write(), inflight);
                return Ok(());
            }
        }
        let result = self.write(&side, &lock, &changes, cleared, &base, &disk, rewrite);
        // Dropped before the base is updated, so that an append updates it in place.
        drop(base);
        let mut s = self.state.write();
        s.stats.process_lock = lock.kind() != LockKind::Unavailable;
        match result {
            Ok((new_disk, rewritten, written)) => {
                let appended = rewritten.is_none();
                match rewritten {
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
                s.disk = new_disk;
                settle(&mut s, inflight);
                if s.clears == clears {
                    s.cleared = false;
                }
                s.stats.flushes += 1;
                s.stats.bytes_written += written;
                if appended {
                    s.stats.appends += 1;
                } else {
                    s.stats.rewrites += 1;
                }
                drop(s);
                self.uses_committed(planned);
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

    /// Writes `base` (hidden if `cleared`) with `inflight` applied to disk, appending when `inflight`
    /// only adds keys to an intact checked-1.1 file; returns the new disk state, the entries written
    /// when it rewrote the file (`None`: it appended `inflight`), and the bytes written.
    ///
    /// A failed append leaves the file byte for byte as it was: the records written over the old
    /// trailer are cut off and the trailer restored. A file this process may not write (mode 0444
    /// in a writable directory) is rewritten instead of appended to, keeping its mode.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn write(
        &self,
        side: &SideFiles<'_>,
        lock: &CacheLock,
        inflight: &HashMap<Vec<u8>, Option<Item>>,
        cleared: bool,
        base: &HashMap<Vec<u8>, Item>,
        disk: &Disk,
        force_rewrite: bool,
    ) -> Result<(Disk, Option<HashMap<Vec<u8>, Item>>, u64), Error> {
        let fs = &*self.opts.fs;
        let path = &self.target;
        fn entry_in<'a>((k, i): (&'a Vec<u8>, &'a Item)) -> EntryIn<'a> {
            EntryIn {
                key: k,
                value: &i.value,
                kind: i.kind,
            }
        }
        let append_to = disk.checked.filter(|info| {
            !force_rewrite
                && self.opts.format == Format::Checked11
                && !cleared
                && inflight.iter().all(|(k, v)| v.is_some() && !base.contains_key(k))
                // Entries already written were not vouched for by a platform-info entry added now.
                && (info.has_platform || base.is_empty() || !inflight.contains_key(PLATFORM_INFO_KEY))
        });
        if let Some(info) = append_to {
            let batch: Vec<EntryIn> = inflight
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|i| entry_in((k, i))))
                .collect();
            let append = format::encode_append(&info, &batch).map_err(Error::Encode)?;
            match fs.open_existing(path) {
                Ok(mut h) => {
                    let appended = (|| {
                        // Records first, synced; only then the commit record that vouches for them.
                        let mut off = info.file_len - 4;
                        for part in [append.records.slices(), append.commit.slices()] {
                            for piece in part {
                                h.write_at(off, piece).map_err(io_err("append to", path))?;
                                off += piece.len() as u64;
                            }
                            h.sync_data().map_err(io_err("sync", path))?;
                        }
                        let meta = h.meta().map_err(io_err("stat", path))?;
                        // An append is only durable if the name it was made under is.
                        if !disk.name_durable {
                            fs.sync_dir(&parent_dir(path))
                                .map_err(io_err("sync the directory of", path))?;
                        }
                        Ok(meta)
                    })();
                    let meta = match appended {
                        Ok(meta) => meta,
                        Err(e) => {
                            // Back to the file as it was, byte for byte: cut off what was written
                            // (which also frees the space a full disk needs back) and restore the
                            // trailer. The cut is made durable first: the commit record may have
                            // reached the disk, and the old trailer written over the batch's first
                            // record while that commit survives would leave part of the batch.
                            // Best effort: if this fails too, the uncommitted records are ignored
                            // by every later read, and the next flush rewrites the file.
                            let _ = h.set_len(info.file_len).and_then(|()| {
                                h.sync_data()?;
                                h.write_at(info.file_len - 4, &info.stream_crc.to_le_bytes())?;
                                h.sync_data()
                            });
                            return Err(e);
                        }
                    };
                    let new_disk = Disk {
                        meta: Some(meta),
                        checked: Some(append.info),
                        generation: disk.generation,
                        name_durable: true,
                    };
                    return Ok((new_disk, None, append.records.len() + append.commit.len()));
                }
                // Not writable by this process, in a directory that may be: rewrite it.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(io_err("open", path)(e)),
            }
        }
        let mut target = if cleared {
            HashMap::new()
        } else {
            base.clone()
        };
        for (k, v) in inflight {
            match v {
                Some(i) => target.insert(k.clone(), i.clone()),
                None => target.remove(k),
            };
        }
        let entries: Vec<EntryIn> = target.iter().map(entry_in).collect();
        let params = WriteParams::next(disk.generation);
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
        let new_disk = Disk {
            meta: Some(meta),
            checked: enc.info,
            generation: params.generation,
            name_durable: true,
        };
        drop(entries);
        Ok((new_disk, Some(target), written))
    }
}

/// Drops from `pending` the changes of `inflight` that are now on disk, unless they were changed
/// again meanwhile (a later put or remove of the key stays pending for the next flush).
fn settle(s: &mut State, inflight: HashMap<Vec<u8>, Option<Item>>) {
    for (k, v) in inflight {
        let unchanged = match (s.pending.get(&k), &v) {
            (Some(Some(now)), Some(then)) => now.value.same(&then.value),
            (Some(None), None) => true,
            _ => false,
        };
        if unchanged {
            s.pending.remove(&k);
        }
    }
}
