//! Values of a lazily opened file ([`Verify::Lazy`]): the store keeps the file open and each entry's
//! byte range and checksum; the first use reads the range through the handle and verifies it before
//! the value is handed out. The framing is walked at open through a small window over the handle.

use super::*;
use crate::format::{DecodedEntry, Sink, Source};
use crate::io::{buffer_for, ReadHandle, OBSERVE_CHUNK};
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

/// Bytes one read of the framing walk fetches: a record's tag, key and value header, or an
/// extension and the next record's start, in one read; small beside the values it skips.
const WINDOW: usize = 1 << 10;

/// A [`Source`] reading windows of a file through its handle, at the offsets the walk asks for.
pub(super) struct Windowed<'h> {
    handle: &'h dyn ReadHandle,
    len: usize,
    buf: Vec<u8>,
    start: usize,
    /// The read that failed, if one did (the walk then gave up).
    pub(super) error: Option<io::Error>,
}

impl<'h> Windowed<'h> {
    pub(super) fn new(handle: &'h dyn ReadHandle, len: usize) -> Self {
        Windowed {
            handle,
            len,
            buf: Vec::new(),
            start: 0,
            error: None,
        }
    }
}

impl Source for Windowed<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn peek(&mut self, at: usize, want: usize) -> Option<&[u8]> {
        let at = at.min(self.len);
        let want = want.min(self.len - at);
        let held = at >= self.start && at + want <= self.start + self.buf.len();
        if !held {
            let n = want.max(WINDOW).min(self.len - at);
            self.buf.resize(n, 0);
            self.start = at;
            if let Err(e) = self.handle.read_exact_at(at as u64, &mut self.buf) {
                self.buf.clear();
                self.error = Some(e);
                return None;
            }
        }
        let from = at - self.start;
        Some(&self.buf[from..from + want])
    }

    fn read_owned(&mut self, at: usize, want: usize) -> Option<Vec<u8>> {
        let at = at.min(self.len);
        let mut buf = vec![0; want.min(self.len - at)];
        match self.handle.read_exact_at(at as u64, &mut buf) {
            Ok(()) => Some(buf),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Reads `len` bytes of `handle` from offset 0 into one buffer of exactly that size, calling
/// `observe` with the part read so far each time it grows (as [`Fs::read_observed`] does).
pub(super) fn read_all(
    handle: &dyn ReadHandle,
    len: u64,
    observe: &mut dyn FnMut(&[u8]),
) -> io::Result<Vec<u8>> {
    let mut buf = buffer_for(len)?;
    let cap = buf.capacity();
    while buf.len() < cap {
        let start = buf.len();
        buf.resize(start + (cap - start).min(OBSERVE_CHUNK), 0);
        handle.read_exact_at(start as u64, &mut buf[start..])?;
        observe(&buf);
    }
    if cap == 0 {
        observe(&buf);
    }
    Ok(buf)
}

/// An entry of a lazily opened file: where its bytes are, the checksum they must pass, and the
/// value once they did.
pub(super) struct Lazy {
    handle: Arc<dyn ReadHandle>,
    /// The bytes the checksum covers (the whole record but its checksum), and the checksum.
    check: EntryCheck,
    /// The value's bytes, within `check.record`.
    value: Range<usize>,
    loaded: OnceLock<Value>,
    /// Set with `loaded` when the record is in this crate's layout: a rewrite derives the new
    /// record's checksum from it instead of hashing the value again.
    known: OnceLock<KnownCrc>,
    failed: AtomicBool,
    /// One first read at a time: concurrent first gets read and count the entry once.
    reading: Mutex<()>,
}

/// What loading a lazily read value found (`T`: the value, or `()` when it went to the caller's
/// buffer).
pub(super) enum Got<T = Value> {
    /// The value, verified.
    Good(T),
    /// It failed its checksum; `first`: this call found it (exactly one does).
    Failed { first: bool },
    /// It could not be read (nothing is handed out; a later use tries again).
    Io(io::Error),
}

impl Lazy {
    /// The value's length, known without reading it.
    pub(super) fn len(&self) -> usize {
        self.value.len()
    }

    /// Where the value's record lies in the file, its stored checksum included.
    pub(super) fn span(&self) -> Range<u64> {
        let rec = &self.check.record;
        rec.start as u64..(rec.end + self.check.stored_crc_len()) as u64
    }

    /// The value, if already read and verified.
    pub(super) fn cached(&self) -> Option<&Value> {
        self.loaded.get()
    }

    /// The [`KnownCrc`] of the value's record, once it was read and verified (by `load`).
    pub(super) fn known_crc(&self) -> Option<KnownCrc> {
        self.known.get().copied()
    }

    /// The value, read and verified on the first call; a value that fails is never returned.
    pub(super) fn load(&self, key: &[u8]) -> Got {
        if let Some(v) = self.loaded.get() {
            return Got::Good(v.clone());
        }
        let _one = self.reading.lock();
        if let Some(v) = self.loaded.get() {
            return Got::Good(v.clone());
        }
        if self.failed.load(Ordering::Acquire) {
            return Got::Failed { first: false };
        }
        let rec = self.check.record.clone();
        let total = rec.len() + self.check.stored_crc_len();
        let mut buf = Vec::new();
        if buf.try_reserve_exact(total).is_err() {
            return Got::Io(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {total} bytes for a value"),
            ));
        }
        // One read of the whole record, whatever its length: read in pieces, it looks to the
        // kernel like a sequential stream, which it reads ahead of at several times the piece
        // (a disk round trip per piece and megabytes no one asked for); one read of a known
        // length at a random offset fetches just that.
        let read = self
            .handle
            .read_exact_at_append(rec.start as u64, &mut buf, total);
        if let Err(e) = read {
            return Got::Io(e);
        }
        let range = self.value.start - rec.start..self.value.end - rec.start;
        let framed = || {
            let (before, rest) = buf.split_at(range.start);
            self.check
                .framing_ok(before, &rest[range.len()..], range.len(), key)
        };
        let record = &buf[..rec.len()];
        if crc32fast::hash(record) != self.check.crc || !framed() {
            self.failed.store(true, Ordering::Release);
            return Got::Failed { first: true };
        }
        if let Some(k) = self.check.known_crc(record, key.len(), range.clone()) {
            let _ = self.known.set(k);
        }
        let owner: Backing = Arc::new(buf);
        let v = Value::slice_of(&owner, range).expect("the value lies within its record");
        let _ = self.loaded.set(v.clone());
        Got::Good(v)
    }

    /// [`Lazy::load`] into `out` (exactly [`Lazy::len`] bytes) instead of a buffer of its own: a
    /// value read and verified already is copied; otherwise it is read from the file into `out`
    /// and verified there, and not kept (the next use reads it again). Unless `Good`, `out` holds
    /// garbage.
    pub(super) fn load_into(&self, key: &[u8], out: &mut [u8]) -> Got<()> {
        debug_assert_eq!(out.len(), self.len());
        if let Some(v) = self.loaded.get() {
            out.copy_from_slice(v);
            return Got::Good(());
        }
        let _one = self.reading.lock();
        if let Some(v) = self.loaded.get() {
            out.copy_from_slice(v);
            return Got::Good(());
        }
        if self.failed.load(Ordering::Acquire) {
            return Got::Failed { first: false };
        }
        // The checksum covers the record's bytes before the value, the value, and those after it:
        // the small parts go to buffers of their own, one hasher runs over the three in order.
        let rec = &self.check.record;
        let mut before = vec![0u8; self.value.start - rec.start];
        let mut after = vec![0u8; rec.end - self.value.end + self.check.stored_crc_len()];
        // One read for the record, as in `load`.
        let read = self.handle.read_exact_vectored_at(
            rec.start as u64,
            &mut [&mut before[..], &mut *out, &mut after[..]],
        );
        if let Err(e) = read {
            return Got::Io(e);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&before);
        h.update(out);
        h.update(&after[..rec.end - self.value.end]);
        if h.finalize() != self.check.crc || !self.check.framing_ok(&before, &after, out.len(), key)
        {
            self.failed.store(true, Ordering::Release);
            return Got::Failed { first: true };
        }
        Got::Good(())
    }
}

/// Builds the store's entries from the walk of a file read through `handle`.
pub(super) struct Collect<'h> {
    pub(super) handle: &'h Arc<dyn ReadHandle>,
    pub(super) base: KeyMap<Item>,
}

impl Sink for Collect<'_> {
    fn push(
        &mut self,
        key: &[u8],
        entry: DecodedEntry,
        check: Option<EntryCheck>,
        record: Option<(&[u8], usize)>,
    ) -> bool {
        let std::collections::hash_map::Entry::Vacant(slot) = self.base.entry(key.to_vec()) else {
            return false;
        };
        let value = match (entry.value, check, record) {
            (format::ValueRef::Owned(v), _, _) => Stored::Ready(Value::from_vec(v)),
            (format::ValueRef::Slice(r), None, Some((rec, at))) => {
                Stored::Ready(Value::copy_from(&rec[r.start - at..r.end - at]))
            }
            (format::ValueRef::Slice(value), Some(check), _) => Stored::Lazy(Arc::new(Lazy {
                handle: Arc::clone(self.handle),
                check,
                value,
                loaded: OnceLock::new(),
                known: OnceLock::new(),
                failed: AtomicBool::new(false),
                reading: Mutex::new(()),
            })),
            (format::ValueRef::Slice(_), None, None) => {
                unreachable!("verified entries come with their bytes")
            }
        };
        // An entry read at open carries its record's checksum into a rewrite as an eager read's
        // does; a value read later gets its own when it verifies (`Lazy::known_crc`).
        slot.insert(Item {
            value,
            kind: entry.kind,
            known_crc: entry.known_crc,
        });
        true
    }

    fn clear(&mut self) {
        self.base.clear();
    }

    fn reserve(&mut self, n: usize) {
        self.base.reserve(n);
    }
}
