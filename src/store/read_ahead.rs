//! The read-ahead note: which records of a lazily opened file the gets of a store read, in the
//! order they read them, left in the cache's lock file when the store is dropped (and on the way,
//! for a process that is killed instead: see [`ReadAhead::noted`]), so that the next
//! lazy open of the same file has the kernel read them before they are asked for
//! ([`ReadHandle::read_ahead`]). MACE asks for its programs one at a time and builds each before it
//! asks for the next, so without the note a cold start waits for one disk round trip per program
//! in turn; with it, the next records are on their way while one is read and built.
//!
//! The records are asked for a window at a time, in the order the note names them: at open, the
//! first [`FIRST`] bytes of them; at each get that reads one of them (exactly: the same offset and
//! length), enough more to keep a window twice as wide as before ahead of it, up to [`AHEAD`]. A
//! note of another model's start (the app started another model last) thus costs about one
//! program read that no one needed, and the start then reads as it would without a note; a note
//! that names most of the file is not read ahead at all, since such a start reads nearly the whole
//! file in order, which the kernel's own read-ahead streams best.
//!
//! The note is a hint and nothing more: only which bytes to ask the kernel for is taken from it,
//! never what they hold (every value is still read and verified on its first use). A note of
//! another file (rewritten since, so its offsets mean nothing), a torn, lost or garbled one reads
//! nothing ahead. A store that read what the note it found already named leaves the note as it is,
//! so that the starts of one model write nothing.
//!
//! The note's layout: `MSREAD01`, the device, inode and checked-1.1 file id of the file (u64 each),
//! the number of ranges (u32), each range as its offset and length (u64 each), all little-endian,
//! then the CRC-32 of every byte before it.

use super::*;
use crate::io::ReadHandle;
use std::collections::HashSet;
use std::ops::Range;

const MAGIC: &[u8; 8] = b"MSREAD01";
const HEAD: usize = 8 + 8 + 8 + 8 + 4;
const RANGE: usize = 16;
/// The most ranges a note holds (within [`side_files::READ_NOTE_MAX`]).
const MAX_RANGES: usize = (side_files::READ_NOTE_MAX - HEAD - 4) / RANGE;
/// How many bytes of the note's records are asked for at open, before a read confirms that this
/// start reads what the note names: about one program, all that a note of another model costs.
const FIRST: u64 = 256 << 10;
/// The most bytes of the note's records asked for ahead of the last one read: a few programs,
/// enough to keep the disk busy while one is built.
const AHEAD: u64 = 1 << 20;

/// The identity a note names: a file's device and inode, and its checked-1.1 id.
type Named = (u64, u64, u64);

fn named(meta: &FileMeta, file_id: u64) -> Named {
    (meta.dev, meta.ino, file_id)
}

/// What a store knows of its read-ahead note.
#[derive(Default)]
pub(super) struct ReadAhead {
    /// The lazily read file the store's reads are of; `None` when it read no file lazily.
    file: Option<Named>,
    /// The ranges of the note the open found for that file, if any.
    found: Vec<Range<u64>>,
    /// The records the store's gets read from the file, in the order they were first read.
    read: Mutex<Reads>,
    /// The records of the note still to ask for.
    window: Mutex<Window>,
}

#[derive(Default)]
struct Reads {
    order: Vec<Range<u64>>,
    seen: HashSet<u64>,
    /// How many reads the last note this store left named (reads are only ever added).
    left: Option<usize>,
}

/// The note's records in the order they were read, asked for a window at a time.
#[derive(Default)]
struct Window {
    handle: Option<Arc<dyn ReadHandle>>,
    plan: Vec<Range<u64>>,
    /// `ends[i]`: the bytes of `plan[..=i]`.
    ends: Vec<u64>,
    /// `(start, index)` of each range of `plan`, by start, to find the one a read is.
    by_start: Vec<(u64, usize)>,
    /// The first range not asked for yet.
    next: usize,
    /// How many reads so far were of records the note names.
    hits: u32,
}

impl Window {
    fn new(handle: Arc<dyn ReadHandle>, plan: Vec<Range<u64>>) -> Window {
        let mut total = 0;
        let ends = plan
            .iter()
            .map(|r| {
                total += r.end - r.start;
                total
            })
            .collect();
        let mut by_start: Vec<_> = plan.iter().enumerate().map(|(i, r)| (r.start, i)).collect();
        by_start.sort_unstable();
        let mut w = Window {
            handle: Some(handle),
            plan,
            ends,
            by_start,
            next: 0,
            hits: 0,
        };
        w.ask_from(0);
        w
    }

    /// The bytes asked for ahead of the reads: [`FIRST`] until a read confirms the note, then
    /// twice that per read that does, up to [`AHEAD`].
    fn ahead(&self) -> u64 {
        (FIRST << self.hits.min(8)).min(AHEAD)
    }

    /// Asks for the ranges from `from` on (those before it are behind the reads) that start
    /// within [`Window::ahead`] bytes of it, and were not asked for yet.
    fn ask_from(&mut self, from: usize) {
        let Some(h) = &self.handle else { return };
        let before = if from == 0 { 0 } else { self.ends[from - 1] };
        let ahead = self.ahead();
        self.next = self.next.max(from);
        while self.next < self.plan.len() && self.ends[self.next] - before <= ahead
            || self.next == from && from < self.plan.len()
        {
            let r = &self.plan[self.next];
            h.read_ahead(r.start, r.end - r.start);
            self.next += 1;
        }
    }

    /// A get read the record at `span`: if it is one the note names, the window widens and moves
    /// past it; any other read moves nothing.
    fn read(&mut self, span: &Range<u64>) {
        let Ok(i) = self.by_start.binary_search_by_key(&span.start, |&(s, _)| s) else {
            return;
        };
        let at = self.by_start[i].1;
        if self.plan[at].end == span.end {
            self.hits += 1;
            self.ask_from(at + 1);
        }
    }
}

impl ReadAhead {
    /// Reads the note of the lazily opened file `handle` (identity `meta`, checked-1.1 id
    /// `file_id`) and asks the kernel for the first window of the ranges it names, within the
    /// file's length, unless they add up to more than half of the file.
    pub(super) fn begin(
        side: &SideFiles<'_>,
        handle: &Arc<dyn ReadHandle>,
        meta: &FileMeta,
        file_id: u64,
    ) -> ReadAhead {
        let file = named(meta, file_id);
        let found = decode(&side.read_ahead_note())
            .filter(|(n, _)| *n == file)
            .map(|(_, r)| r)
            .unwrap_or_default();
        let plan: Vec<_> = found
            .iter()
            .map(|r| r.start.min(meta.len)..r.end.min(meta.len))
            .filter(|r| !r.is_empty())
            .collect();
        let bytes: u64 = plan.iter().map(|r| r.end - r.start).sum();
        // Asked for ahead of a start that read every program, the records made the first reads
        // wait behind the others: such a start took 1.6x as long as one the kernel streamed.
        let window = if plan.is_empty() || bytes > meta.len / 2 {
            Window::default()
        } else {
            Window::new(Arc::clone(handle), plan)
        };
        ReadAhead {
            file: Some(file),
            found,
            read: Mutex::default(),
            window: Mutex::new(window),
        }
    }

    /// Remembers that a get read the record at `span` of the file (the first read of each
    /// record counts), and moves the window of reads ahead past it. `true` when the note is due
    /// now: the reads so far are a power of two in number and not the start of the note found.
    /// A process is often killed rather than closing its store (Android ends apps so), and
    /// then what it left by then is the note: at most one write per doubling of the reads, and
    /// none while the reads follow the note.
    pub(super) fn noted(&self, span: Range<u64>) -> bool {
        if self.file.is_none() {
            return false;
        }
        self.window.lock().read(&span);
        let mut read = self.read.lock();
        if read.order.len() >= MAX_RANGES || !read.seen.insert(span.start) {
            return false;
        }
        read.order.push(span);
        let n = read.order.len();
        n.is_power_of_two() && self.found.get(..n) != Some(&read.order[..])
    }

    /// Leaves the note of what this store's gets read, if they read anything, the file at the
    /// name as last known (`now`) is still the one they read, and neither the note found at open
    /// nor the last one this store left already says it. `true` when it wrote one.
    pub(super) fn leave(&self, side: &SideFiles<'_>, now: Option<(FileMeta, u64)>) -> bool {
        let Some(file) = self.file else {
            return false;
        };
        if now.map(|(m, id)| named(&m, id)) != Some(file) {
            return false;
        }
        let (note, n) = {
            let read = self.read.lock();
            let n = read.order.len();
            if n == 0 || read.order == self.found || read.left == Some(n) {
                return false;
            }
            (encode(file, &read.order), n)
        };
        let wrote = side.leave_read_ahead_note(&note);
        if wrote {
            self.read.lock().left = Some(n);
        }
        wrote
    }
}

fn encode(file: Named, ranges: &[Range<u64>]) -> Vec<u8> {
    let mut n = Vec::with_capacity(HEAD + ranges.len() * RANGE + 4);
    n.extend_from_slice(MAGIC);
    for x in [file.0, file.1, file.2] {
        n.extend_from_slice(&x.to_le_bytes());
    }
    n.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    for r in ranges {
        n.extend_from_slice(&r.start.to_le_bytes());
        n.extend_from_slice(&(r.end - r.start).to_le_bytes());
    }
    let crc = crc32fast::hash(&n);
    n.extend_from_slice(&crc.to_le_bytes());
    n
}

/// The file and ranges `note` names, if it is a whole note that passes its checksum (bytes after
/// it are ignored: a longer note written before may have left them).
fn decode(note: &[u8]) -> Option<(Named, Vec<Range<u64>>)> {
    let u64_at = |at: usize| Some(u64::from_le_bytes(note.get(at..at + 8)?.try_into().ok()?));
    if note.get(..8)? != MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(note.get(32..HEAD)?.try_into().ok()?) as usize;
    if count > MAX_RANGES {
        return None;
    }
    let end = HEAD + count * RANGE;
    let crc = u32::from_le_bytes(note.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(&note[..end]) != crc {
        return None;
    }
    let file = (u64_at(8)?, u64_at(16)?, u64_at(24)?);
    let ranges = (0..count)
        .map(|i| {
            let at = HEAD + i * RANGE;
            let (start, len) = (u64_at(at)?, u64_at(at + 8)?);
            Some(start..start.checked_add(len)?)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((file, ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_decodes_to_what_was_encoded_and_nothing_else_decodes() {
        let file = (3, 77, 0xfeed);
        let ranges = vec![0..10, 100..4000, 1 << 40..(1 << 40) + 5];
        let note = encode(file, &ranges);
        assert_eq!(decode(&note), Some((file, ranges.clone())));
        // What a longer note left after it is ignored.
        let mut longer = note.clone();
        longer.extend_from_slice(&[0xaa; 40]);
        assert_eq!(decode(&longer), Some((file, ranges)));
        for cut in 0..note.len() {
            assert_eq!(decode(&note[..cut]), None, "cut at {cut}");
        }
        for i in 0..note.len() {
            let mut bad = note.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i} flipped");
        }
        assert_eq!(decode(&[]), None);
    }

    /// A recording handle: the ranges asked for.
    struct Asked(Mutex<Vec<Range<u64>>>);

    impl ReadHandle for Asked {
        fn read_exact_at(&self, _: u64, _: &mut [u8]) -> io::Result<()> {
            unreachable!("a window only asks")
        }
        fn read_ahead(&self, offset: u64, len: u64) {
            self.0.lock().push(offset..offset + len);
        }
        fn meta(&self) -> io::Result<FileMeta> {
            unreachable!("a window only asks")
        }
    }

    #[test]
    fn the_window_widens_with_each_read_the_note_names_and_moves_past_it() {
        let asked = Arc::new(Asked(Mutex::default()));
        let handle: Arc<dyn ReadHandle> = asked.clone();
        // Twelve records of 200 KB, named in the order 11, 10, ..., 0 (by offset, descending).
        let plan: Vec<_> = (0..12u64)
            .rev()
            .map(|i| i * 300_000..i * 300_000 + 200_000)
            .collect();
        let mut w = Window::new(handle, plan.clone());
        let taken = || std::mem::take(&mut *asked.0.lock());
        assert_eq!(
            taken(),
            plan[..1],
            "256 KiB before a read confirms the note"
        );
        // Reads the note does not name move nothing: within a record, or not in the note at all.
        w.read(&(plan[0].start..plan[0].start + 10));
        w.read(&(250_000..350_000));
        assert!(taken().is_empty());
        w.read(&plan[0]);
        assert_eq!(taken(), plan[1..3], "512 KiB ahead");
        w.read(&plan[1]);
        assert_eq!(taken(), plan[3..7], "1 MiB ahead");
        w.read(&plan[2]);
        assert_eq!(taken(), plan[7..8], "1 MiB at most");
        // Reads that jump ahead skip what lies behind them.
        w.read(&plan[9]);
        assert_eq!(taken(), plan[10..12]);
        w.read(&plan[11]);
        assert!(taken().is_empty());
        // A record larger than the window is still asked for, alone.
        let huge = vec![0..5_000_000, 6_000_000..6_000_100];
        let mut w = Window::new(asked.clone(), huge.clone());
        assert_eq!(taken(), huge[..1]);
        w.read(&huge[0]);
        assert_eq!(taken(), huge[1..]);
    }
}
