//! Reading a cache file into a store: decode with salvage, within the size limit, and the
//! set-aside of a file nothing in which can be read.

use super::*;

/// The entries of a decoded file, sharing the file's buffer; built values are moved, not copied.
/// `checks` (one per entry, or none) are the checks of entries left unverified.
pub(super) fn load_entries(
    owner: &Backing,
    entries: Vec<format::DecodedEntry>,
    checks: Vec<Option<EntryCheck>>,
) -> HashMap<Vec<u8>, Item> {
    let input = (**owner).as_ref();
    let mut m = HashMap::with_capacity(entries.len());
    let mut checks = checks.into_iter();
    for e in entries {
        let check = checks.next().flatten().map(|entry| {
            Arc::new(Check {
                entry,
                owner: owner.clone(),
                state: AtomicU8::new(CHECK_PENDING),
            })
        });
        let value = match e.value {
            format::ValueRef::Slice(r) => Value::slice_of(owner, r),
            format::ValueRef::Owned(v) => Some(Value::from_vec(v)),
        };
        if let Some(value) = value {
            m.insert(
                input[e.key.clone()].to_vec(),
                Item {
                    value,
                    kind: e.kind,
                    check,
                },
            );
        }
    }
    m
}

/// A file read from disk and what the store makes of it.
pub(super) struct Loaded {
    pub(super) base: HashMap<Vec<u8>, Item>,
    pub(super) disk: Disk,
    pub(super) report: Report,
    /// Why the file cannot be read at all (it opened empty), if so.
    pub(super) unreadable: Option<String>,
}

impl Loaded {
    /// Moves an unreadable file aside under `lock`, if it is the very file read; notes what happened.
    pub(super) fn set_aside(&mut self, side: &SideFiles<'_>, lock: &CacheLock) {
        let Some(why) = self.unreadable.clone() else {
            return;
        };
        let read = self.disk.meta;
        let locked = lock.file();
        let same = matches!((read, locked), (Some(r), Some(l)) if r.dev == l.dev && r.ino == l.ino);
        let notes = &mut self.report.damage.notes;
        if !same || lock.kind() == LockKind::Unavailable {
            notes.push(format!(
                "unreadable ({why}): started empty, left in place (it changed, or no lock could exclude other writers); the next flush replaces it"
            ));
            return;
        }
        match side.set_aside(lock, side_files::CORRUPT) {
            Ok(Some(to)) => {
                notes.push(format!("unreadable ({why}): moved to {} and started empty", to.display()));
                self.disk.meta = None;
                self.report.set_aside = Some(to);
            }
            Ok(None) => notes.push(format!(
                "unreadable ({why}): it changed while being set aside; started empty"
            )),
            Err(e) => notes.push(format!(
                "unreadable ({why}) and could not be moved aside ({e}): started empty; the next flush replaces it"
            )),
        }
    }
}

pub(super) fn too_large_error(path: &Path, len: u64, max: u64) -> Error {
    Error::Io {
        op: "load",
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the file is {len} bytes, more than the largest file this store loads \
                 ({max} bytes, Options::max_file_len): not read, left as it is (clear the store to \
                 let a flush replace it)"
            ),
        ),
    }
}

/// An empty store over a file too large to load. The file's identity is not kept, so every flush
/// looks at the file again and refuses to replace it unless the store was cleared.
pub(super) fn too_large_loaded(path: &Path, meta: FileMeta, max: u64) -> Loaded {
    let why = too_large_error(path, meta.len, max).to_string();
    Loaded {
        base: HashMap::new(),
        disk: Disk::default(),
        report: Report {
            missing: false,
            format: None,
            file_len: meta.len,
            entries: 0,
            damage: Damage {
                intact: false,
                entries_dropped: 0,
                bytes_ignored: meta.len,
                notes: vec![format!("{why}; started empty")],
            },
            set_aside: None,
            too_large: true,
        },
        unreadable: None,
    }
}

/// [`load`] of a file of at most `max` bytes; a larger one is not read (nor set aside), and its
/// identity is returned instead.
pub(super) fn load_or_too_large(
    fs: &dyn Fs,
    path: &Path,
    max: u64,
    verify: Verify,
) -> Result<Result<Loaded, FileMeta>, Error> {
    // The stat is the first step of the read: its failure is reported as one.
    if let Some(meta) = fs.metadata(path).map_err(io_err("read", path))? {
        if meta.len > max {
            return Ok(Err(meta));
        }
    }
    let loaded = load(fs, path, verify)?;
    // It grew between the stat and the read: refused all the same.
    match loaded.disk.meta {
        Some(meta) if loaded.report.file_len > max => Ok(Err(meta)),
        _ => Ok(Ok(loaded)),
    }
}

/// [`load_or_too_large`], with a file too large to load opened as an empty store that says so.
pub(super) fn load_within(
    fs: &dyn Fs,
    path: &Path,
    max: u64,
    verify: Verify,
) -> Result<Loaded, Error> {
    Ok(load_or_too_large(fs, path, max, verify)?
        .unwrap_or_else(|meta| too_large_loaded(path, meta, max)))
}

/// Reads and decodes `path`; an unreadable one loads empty, with the reason in `unreadable`.
/// With [`Verify::Lazy`], an intact checked-1.1 file's values are left to be verified on first use.
pub(super) fn load(fs: &dyn Fs, path: &Path, verify: Verify) -> Result<Loaded, Error> {
    // Checksummed while it is read, piece by piece as each is still in the CPU cache: the decoder
    // verifies every range from this index instead of reading the whole file a second time. Not
    // for a file to be verified lazily: it is told by its first bytes, before the index starts.
    let mut index = format::CrcIndex::new();
    let mut lazy = None;
    let read = fs.read_observed(path, &mut |so_far| {
        if lazy.is_none() && verify == Verify::Lazy {
            lazy = format::lazy_candidate(so_far);
        }
        if lazy != Some(true) {
            index.observe(so_far);
        }
    });
    let Some((bytes, meta)) = read.map_err(io_err("read", path))? else {
        return Ok(Loaded {
            base: HashMap::new(),
            disk: Disk::default(),
            unreadable: None,
            report: Report {
                missing: true,
                format: None,
                file_len: 0,
                entries: 0,
                damage: Damage {
                    intact: true,
                    entries_dropped: 0,
                    bytes_ignored: 0,
                    notes: vec![],
                },
                set_aside: None,
                too_large: false,
            },
        });
    };
    let file_len = bytes.len() as u64;
    let owner: Backing = Arc::new(bytes);
    let decoded = match lazy {
        Some(true) => format::decode_lazy_indexed((*owner).as_ref(), &index),
        _ => format::decode_indexed((*owner).as_ref(), &index).map(|d| (d, Vec::new())),
    };
    let (decoded, checks) = match decoded {
        Ok((d, checks)) => (Ok(d), checks),
        Err(e) => (Err(e), Vec::new()),
    };
    let unreadable = match &decoded {
        Err(e) => Some(e.to_string()),
        Ok(d) if d.entries.is_empty() && file_len > 0 && !d.damage.intact => {
            Some("nothing in it passed its checks".to_string())
        }
        Ok(_) => None,
    };
    if unreadable.is_some() {
        let damage = match &decoded {
            Ok(d) => d.damage.clone(),
            Err(_) => Damage {
                intact: false,
                entries_dropped: 0,
                bytes_ignored: file_len,
                notes: vec![],
            },
        };
        return Ok(Loaded {
            base: HashMap::new(),
            disk: Disk {
                meta: Some(meta),
                ..Disk::default()
            },
            report: Report {
                missing: false,
                format: decoded.ok().map(|d| d.format),
                file_len,
                entries: 0,
                damage,
                set_aside: None,
                too_large: false,
            },
            unreadable,
        });
    }
    let mut d = decoded.unwrap_or_else(|_| unreachable!("handled above"));
    let base = load_entries(&owner, std::mem::take(&mut d.entries), checks);
    Ok(Loaded {
        disk: Disk {
            meta: Some(meta),
            checked: d.checked,
            generation: d.generation.unwrap_or(0),
            name_durable: false,
        },
        report: Report {
            missing: false,
            format: Some(d.format),
            file_len,
            entries: base.len() as u64,
            damage: d.damage,
            set_aside: None,
            too_large: false,
        },
        base,
        unreadable: None,
    })
}
