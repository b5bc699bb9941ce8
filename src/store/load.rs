//! Reading a cache file into a store: decode with salvage (or, lazily, walk the framing through a
//! read handle), within the size limit, and the set-aside of a file nothing in which can be read.

use super::*;
use crate::format::Source;
use crate::io::ReadHandle;

/// The entries of a decoded file, sharing the file's buffer; built values are moved, not copied.
pub(super) fn load_entries(owner: &Backing, entries: Vec<format::DecodedEntry>) -> KeyMap<Item> {
    let input = (**owner).as_ref();
    let mut m = key_map_with_capacity(entries.len());
    for e in entries {
        let value = match e.value {
            format::ValueRef::Slice(r) => Value::slice_of(owner, r),
            format::ValueRef::Owned(v) => Some(Value::from_vec(v)),
        };
        if let Some(value) = value {
            m.insert(
                input[e.key.clone()].to_vec(),
                Item {
                    value: Stored::Ready(value),
                    kind: e.kind,
                    known_crc: e.known_crc,
                },
            );
        }
    }
    m
}

/// A file read from disk and what the store makes of it.
pub(super) struct Loaded {
    pub(super) base: KeyMap<Item>,
    pub(super) disk: Disk,
    pub(super) report: Report,
    /// Why the file cannot be read at all (it opened empty), if so.
    pub(super) unreadable: Option<String>,
    /// The handle the values of a lazily read file are read through; `None` when read whole.
    pub(super) lazy: Option<Arc<dyn ReadHandle>>,
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
        base: KeyMap::default(),
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
        lazy: None,
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
    let loaded = load(fs, path, verify, max)?;
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

/// What opening a file that is absent gives: an empty store.
fn missing() -> Loaded {
    Loaded {
        base: KeyMap::default(),
        disk: Disk::default(),
        unreadable: None,
        lazy: None,
        report: Report {
            missing: true,
            format: None,
            file_len: 0,
            entries: 0,
            damage: Damage::none_found(),
            set_aside: None,
            too_large: false,
        },
    }
}

/// Reads and decodes `path`; an unreadable one loads empty, with the reason in `unreadable`.
/// With [`Verify::Lazy`], an intact checked-1.1 file's values are not read: each is read and
/// verified on first use, through the descriptor opened here. A file of more than `max` bytes is
/// not read at all (only its length is reported).
pub(super) fn load(fs: &dyn Fs, path: &Path, verify: Verify, max: u64) -> Result<Loaded, Error> {
    match verify {
        Verify::Eager => load_eager(fs, path),
        Verify::Lazy => load_lazy(fs, path, max),
    }
}

/// [`load`] reading the whole file at once, every value verified as it arrives.
fn load_eager(fs: &dyn Fs, path: &Path) -> Result<Loaded, Error> {
    // Checksummed while it is read, piece by piece as each is still in the CPU cache: the decoder
    // verifies every range from this index instead of reading the whole file a second time.
    let mut index = format::CrcIndex::new();
    let read = fs.read_observed(path, &mut |so_far| index.observe(so_far));
    let Some((bytes, meta)) = read.map_err(io_err("read", path))? else {
        return Ok(missing());
    };
    Ok(decoded(bytes, meta, &index))
}

/// [`load`] through a read handle: the framing of an intact checked-1.1 file is walked through
/// windows of it, its values left in the file; anything else is read whole through the same
/// handle (so it is the same file) and decoded eagerly with salvage.
fn load_lazy(fs: &dyn Fs, path: &Path, max: u64) -> Result<Loaded, Error> {
    let Some((handle, meta)) = fs.open_read(path).map_err(io_err("read", path))? else {
        return Ok(missing());
    };
    if meta.len > max {
        // Reported by the caller as too large, from this length: nothing is read.
        let mut l = missing();
        l.report.missing = false;
        l.report.file_len = meta.len;
        l.disk.meta = Some(meta);
        return Ok(l);
    }
    let len =
        crate::io::buffer_len(meta.len, crate::io::MAX_BUFFER).map_err(io_err("read", path))?;
    let mut src = lazy::Windowed::new(&*handle, len);
    let candidate = src
        .peek(0, 16)
        .and_then(format::lazy_candidate)
        .unwrap_or(false);
    if candidate {
        let mut sink = lazy::Collect {
            handle: &handle,
            base: KeyMap::default(),
        };
        if let Some(w) = format::walk_lazy(&mut src, &mut sink) {
            let base = sink.base;
            return Ok(Loaded {
                disk: Disk {
                    meta: Some(meta),
                    checked: Some(w.checked),
                    generation: w.generation,
                    name_durable: false,
                    name_noted: false,
                },
                report: Report {
                    missing: false,
                    format: Some(Format::Checked11),
                    file_len: meta.len,
                    entries: base.len() as u64,
                    damage: Damage::none_found(),
                    set_aside: None,
                    too_large: false,
                },
                base,
                unreadable: None,
                lazy: Some(handle),
            });
        }
    }
    if let Some(e) = src.error.take() {
        return Err(io_err("read", path)(e));
    }
    drop(src);
    let mut index = format::CrcIndex::new();
    let bytes = lazy::read_all(&*handle, meta.len, &mut |so_far| index.observe(so_far))
        .map_err(io_err("read", path))?;
    Ok(decoded(bytes, meta, &index))
}

/// What the store makes of the bytes of a file read whole (`index`: their CRC index).
fn decoded(bytes: Vec<u8>, meta: FileMeta, index: &format::CrcIndex) -> Loaded {
    let file_len = bytes.len() as u64;
    let owner: Backing = Arc::new(bytes);
    let decoded = format::decode_indexed((*owner).as_ref(), index);
    let unreadable = match &decoded {
        Err(e) => Some(e.to_string()),
        Ok(d) if d.entries.is_empty() && file_len > 0 && !d.damage.intact => {
            Some("nothing in it passed its checks".to_string())
        }
        Ok(_) => None,
    };
    let d = match decoded {
        Ok(d) if unreadable.is_none() => d,
        other => {
            let (format, damage) = match other {
                Ok(d) => (Some(d.format), d.damage),
                Err(_) => (
                    None,
                    Damage {
                        intact: false,
                        entries_dropped: 0,
                        bytes_ignored: file_len,
                        notes: vec![],
                    },
                ),
            };
            return Loaded {
                base: KeyMap::default(),
                disk: Disk {
                    meta: Some(meta),
                    ..Disk::default()
                },
                report: Report {
                    missing: false,
                    format,
                    file_len,
                    entries: 0,
                    damage,
                    set_aside: None,
                    too_large: false,
                },
                unreadable,
                lazy: None,
            };
        }
    };
    let base = load_entries(&owner, d.entries);
    Loaded {
        disk: Disk {
            meta: Some(meta),
            checked: d.checked,
            generation: d.generation.unwrap_or(0),
            name_durable: false,
            name_noted: false,
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
        lazy: None,
    }
}
