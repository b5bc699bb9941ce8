//! What every command shares: reading a cache file (or standard input) and deciding whether it is
//! one, its entries, tuned-parameter recognition, the default format, atomic writes under the
//! store's lock, and text helpers.

use crate::report;
use crate::Fail;
use mace_storage::format::{
    self, Decoded, EntryIn, Format, ValueKind, WriteParams, DEVICE_NAME_KEY, PLATFORM_INFO_KEY,
};
use mace_storage::io::side_files::{CacheLock, SideFiles, LOCK};
use mace_storage::io::{posix::PosixFs, replace_atomically, sibling};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The key MACE's OpenCL runtime stores its queue window size under, in tuned-parameter files only.
pub const QUEUE_WINDOW_KEY: &[u8] = b"MACE_OPENCL_QUEUE_WINDOW_SIZE";
/// What every MACE OpenCL tuning key holds (`conv2d_1x1_opencl_kernel_1_224_224_32`, ...).
const TUNING_KEY_PART: &[u8] = b"opencl_kernel";
/// The prefix of MACE 1.1's source-hash keys in a program cache.
pub use mace_storage::keys::PROGRAM_HASH_PREFIX;

/// A cache file read and decoded.
pub struct Input {
    /// How reports name it: the path as given, `-` for standard input.
    pub name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// What decoding found.
    pub decoded: Decoded,
}

/// Whether `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads and decodes a cache file (`-`: standard input); a file that cannot be read or is not a
/// cache is a failure.
pub fn load(path: &Path) -> Result<Input, Fail> {
    let name = path.display().to_string();
    let bytes = if is_stdin(path) {
        let mut v = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut v)
            .map_err(|e| Fail(format!("cannot read standard input: {e}")))?;
        v
    } else {
        std::fs::read(path).map_err(|e| Fail(format!("cannot read {name}: {e}")))?
    };
    let decoded = format::decode(&bytes).map_err(|e| Fail(format!("{name}: {e}")))?;
    if let Some(why) = not_a_cache(&bytes, &decoded) {
        return Err(Fail(format!("{name}: not a MACE cache file: {why}")));
    }
    Ok(Input {
        name,
        bytes,
        decoded,
    })
}

/// Why a file the decoder salvaged nothing from is no cache at all, or `None` when it is one.
///
/// The decoder reads every input it can as a damaged file of some format, so that an app keeps
/// what verifies. A tool must tell a damaged cache from another file: when nothing was kept and
/// nothing counted as dropped, the first bytes must at least start like format A (a sane count and
/// key length) or format B (a `pairs` field holding a `KVPair` field).
pub fn not_a_cache(bytes: &[u8], d: &Decoded) -> Option<String> {
    let salvaged_nothing = !d.damage.intact
        && d.entries.is_empty()
        && d.damage.entries_dropped == 0
        && matches!(d.format, Format::Mace10 | Format::Mace11);
    if !salvaged_nothing || starts_like_a(bytes) || starts_like_b(bytes) {
        return None;
    }
    Some(format!(
        "{} bytes that start like neither MACE format (no sane entry count, no protobuf pair), \
         and no entry could be read",
        bytes.len()
    ))
}

/// A format A start: an int64 count of at most 2^32, then (if there is room) a sane key length.
fn starts_like_a(b: &[u8]) -> bool {
    let Some(count) = b
        .get(..8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
    else {
        return false;
    };
    if !(0..=1 << 32).contains(&count) {
        return false;
    }
    match b.get(8..12) {
        Some(k) if count > 0 => {
            (0..=1 << 20).contains(&i32::from_le_bytes(k.try_into().unwrap_or_default()))
        }
        _ => true,
    }
}

/// A format B start: field 1 (`pairs`, length-delimited), its length, then a `KVPair` field tag.
fn starts_like_b(b: &[u8]) -> bool {
    if b.first() != Some(&0x0a) {
        return false;
    }
    let mut p = 1;
    loop {
        match b.get(p) {
            None => return true,
            Some(x) if x & 0x80 != 0 => {
                if p >= 5 {
                    return false;
                }
                p += 1;
            }
            Some(_) => break,
        }
    }
    // A KVPair's fields: key (0x0a), bytes_value (0x12), uint32s_value (0x18, packed 0x1a); or,
    // for an empty pair, the next pair's tag (0x0a).
    matches!(b.get(p + 1), None | Some(0x0a | 0x12 | 0x18 | 0x1a))
}

/// One decoded entry with its key and value bytes resolved.
pub struct Entry<'a> {
    /// The key's bytes.
    pub key: &'a [u8],
    /// The value's bytes.
    pub value: &'a [u8],
    /// How the value is encoded in format B.
    pub kind: ValueKind,
}

impl Entry<'_> {
    /// The value as uint32s, when it is stored (or taken) as an array.
    pub fn uint32s(&self) -> Option<Vec<u32>> {
        (self.kind == ValueKind::U32s && self.value.len() % 4 == 0).then(|| {
            self.value
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// The decoded entries, in key byte order.
pub fn sorted_entries(input: &Input) -> Vec<Entry<'_>> {
    let mut v: Vec<Entry<'_>> = input
        .decoded
        .entries
        .iter()
        .map(|e| Entry {
            key: &input.bytes[e.key.clone()],
            value: e.value.bytes(&input.bytes),
            kind: e.kind,
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(b.key));
    v
}

/// The entries to write, borrowing from decoded entries.
pub fn entries_in<'a>(entries: &[Entry<'a>]) -> Vec<EntryIn<'a>> {
    entries
        .iter()
        .map(|e| EntryIn::new(e.key, e.value, e.kind))
        .collect()
}

/// Whether the keys show a tuned OpenCL parameter file: no program-cache key, every value a
/// non-empty whole number of uint32s, and MACE's queue-window key or only tuning keys.
pub fn looks_tuned(entries: &[Entry<'_>]) -> bool {
    let program_key = |k: &[u8]| {
        k == PLATFORM_INFO_KEY || k == DEVICE_NAME_KEY || k.starts_with(PROGRAM_HASH_PREFIX)
    };
    let tuning_key = |k: &[u8]| {
        k.windows(TUNING_KEY_PART.len())
            .any(|w| w == TUNING_KEY_PART)
    };
    !entries.is_empty()
        && entries
            .iter()
            .all(|e| !program_key(e.key) && !e.value.is_empty() && e.value.len() % 4 == 0)
        && (entries.iter().any(|e| e.key == QUEUE_WINDOW_KEY)
            || entries.iter().all(|e| tuning_key(e.key)))
}

/// Decides whether `entries` are tuned parameters (`--tuned`, `--no-tuned`, or what the keys and
/// stored encodings show) and if so marks every value as a uint32 array; a value that cannot be one
/// is refused. Returns whether they are, and a note when that was recognised rather than asked for.
pub fn resolve_tuned(
    name: &str,
    entries: &mut [Entry<'_>],
    flags: crate::args::Tuned,
) -> Result<(bool, Option<String>), Fail> {
    let stored = !entries.is_empty() && entries.iter().all(|e| e.kind == ValueKind::U32s);
    let recognised = !flags.no_tuned && !flags.tuned && !stored && looks_tuned(entries);
    if flags.no_tuned {
        for e in entries.iter_mut() {
            e.kind = ValueKind::Bytes;
        }
        return Ok((false, None));
    }
    if !(flags.tuned || recognised) {
        return Ok((stored, None));
    }
    for e in entries.iter_mut() {
        if e.value.len() % 4 != 0 {
            return Err(Fail(format!(
                "{name}: the value of key \"{}\" is {} bytes, not a whole number of uint32s: \
                 not a tuned-parameter file? (drop --tuned)",
                printable(e.key),
                e.value.len()
            )));
        }
        e.kind = ValueKind::U32s;
    }
    let note = recognised.then(|| {
        format!(
            "{name}: recognised as tuned OpenCL parameters from its keys: values are uint32 \
             arrays (--no-tuned keeps them as bytes)"
        )
    });
    Ok((true, note))
}

/// The format written by default for an input of `from`: the checked format of its MACE generation.
pub fn default_format(from: Format) -> Format {
    match from {
        Format::Mace10 | Format::Checked10 => Format::Checked10,
        Format::Mace11 | Format::Checked11 | Format::Empty => Format::Checked11,
    }
}

/// Encodes `entries` as a whole file in `to`; the error names `output`.
pub fn encode(
    output: &Path,
    to: Format,
    entries: &[EntryIn<'_>],
    previous_generation: u64,
) -> Result<Vec<u8>, Fail> {
    format::encode(to, entries, WriteParams::next(previous_generation))
        .map(|e| e.out.to_vec())
        .map_err(|e| Fail(format!("cannot write {} as {to}: {e}", output.display())))
}

/// Writes `bytes` to `output` atomically; returns the bytes written.
pub fn write_atomically(output: &Path, bytes: &[u8]) -> Result<u64, Fail> {
    replace_atomically(&PosixFs, output, &[bytes])
        .map_err(|e| Fail(format!("cannot write {}: {e}", output.display())))
}

static LOCK_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Sets how long [`lock_existing`] waits (`--lock-timeout`); the first call wins.
pub fn set_lock_timeout(wait: Duration) {
    let _ = LOCK_TIMEOUT.set(wait);
}

/// Takes the store's cross-process lock (`<output>.lock`, then the file itself, as every flush of
/// the library does) when `output` already exists, so that a rewrite and an app's flush of the same
/// cache never interleave. Waits at most `--lock-timeout`, saying so on stderr after a second; a
/// lock still held then is an error. `None` for a new file.
pub fn lock_existing(output: &Path) -> Result<Option<CacheLock>, Fail> {
    if !output.is_file() {
        return Ok(None);
    }
    let lock_path = sibling(output, LOCK);
    let fail = |e: std::io::Error| Fail(format!("cannot lock {}: {e}", lock_path.display()));
    let side = SideFiles::open(&PosixFs, output).map_err(fail)?;
    let wait = *LOCK_TIMEOUT.get_or_init(|| Duration::from_secs(30));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let shown = lock_path.display().to_string();
    let waiter = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(1)).is_err() {
            eprintln!("mace-cache: waiting for {shown}: an app is writing the cache");
        }
    });
    let lock = side.lock(Some(wait));
    let _ = done_tx.send(());
    let _ = waiter.join();
    lock.map(Some).map_err(fail)
}

/// The damage of `d` as reported.
pub fn damage(d: &Decoded) -> report::Damage {
    report::Damage {
        intact: d.damage.intact,
        entries_dropped: d.damage.entries_dropped,
        bytes_ignored: d.damage.bytes_ignored,
        notes: d.damage.notes.clone(),
    }
}

/// The exit status a decode result calls for.
pub fn status(d: &Decoded) -> i32 {
    if d.damage.intact {
        crate::EXIT_INTACT
    } else {
        crate::EXIT_DAMAGED
    }
}

/// `K entries kept, D dropped: FIRST NOTE` for a damaged decode.
pub fn damage_summary(kept: u64, dropped: u64, notes: &[String]) -> String {
    let mut s = format!(
        "{} kept, {dropped} dropped",
        plural(kept, "entry", "entries")
    );
    if let Some(note) = notes.first() {
        s.push_str(": ");
        s.push_str(note);
    }
    s
}

/// `N word` with the singular or plural word.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `bytes` for a terminal: valid UTF-8 as text with `\\`, `"` and control characters escaped
/// (`\xNN` for ASCII ones, `\u{N}` for others), and each byte of invalid UTF-8 as `\xNN`.
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                c if c.is_control() && c.is_ascii() => {
                    let _ = write!(s, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text, all-0xff bytes and random bytes start like no format; real starts do.
    #[test]
    fn format_starts() {
        assert!(!starts_like_a(b"\nhello, this is text"));
        assert!(!starts_like_b(b"\nhello, this is text"));
        assert!(!starts_like_a(&[0xff; 8]));
        assert!(!starts_like_b(&[0xff; 8]));
        let mut a = 3i64.to_le_bytes().to_vec();
        a.extend_from_slice(&7i32.to_le_bytes());
        assert!(starts_like_a(&a));
        assert!(starts_like_b(b"\x0a\x05\x0a\x01k\x12\x00"));
        assert!(starts_like_b(b"\x0a\x85\x01\x0a"));
    }

    /// Invalid UTF-8 and control characters are escaped; text stays text.
    #[test]
    fn printable_escapes() {
        assert_eq!(printable(b"a\xff\"\\\t"), "a\\xff\\\"\\\\\\x09");
        assert_eq!(printable("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }
}
