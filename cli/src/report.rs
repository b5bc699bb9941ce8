//! The reports every command prints: with `--json` each is serialized as one JSON object on one
//! line of stdout. These structs are the JSON schema: a field's name is its JSON key, its doc comment
//! says what it holds, and docs/CLI.md lists them. The text output is rendered from the same structs.

use serde::Serialize;

/// What a decode found wrong with a file (the `damage` of `inspect`, flattened elsewhere).
#[derive(Serialize, Debug, Clone)]
pub struct Damage {
    /// True when the file is exactly as its writer left it after a completed write.
    pub intact: bool,
    /// Entries the file held that could not be kept.
    pub entries_dropped: u64,
    /// Bytes that belong to no kept entry.
    pub bytes_ignored: u64,
    /// One sentence per problem found, saying what was done about it.
    pub notes: Vec<String>,
}

/// `inspect`: the format, every entry and the damage found.
#[derive(Serialize, Debug)]
pub struct Inspect {
    /// The file read (`-` for standard input).
    pub path: String,
    /// The detected format: mace-1.0, mace-1.1, checked-1.0, checked-1.1 or empty.
    pub format: &'static str,
    /// The file's size in bytes.
    pub size: u64,
    /// The generation of a checked file, when its header survived; else null.
    pub generation: Option<u64>,
    /// Whether the values are shown as tuned parameters (uint32 arrays): stored as such, given
    /// `--tuned`, or recognised from the keys.
    pub tuned: bool,
    /// Every kept entry, in key byte order.
    pub entries: Vec<InspectEntry>,
    /// What was wrong and what was dropped.
    pub damage: Damage,
}

/// One entry of `inspect`.
#[derive(Serialize, Debug)]
pub struct InspectEntry {
    /// The key's bytes in lowercase hex.
    pub key_hex: String,
    /// The value's length in bytes.
    pub len: u64,
    /// The CRC-32 (IEEE) of the value, 8 lowercase hex digits.
    pub crc32: String,
    /// The value as uint32s, for tuned parameters only (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uint32s: Option<Vec<u32>>,
    /// The key's bytes (text output only).
    #[serde(skip)]
    pub key: Vec<u8>,
    /// Whether the value is stored as a uint32 array (text output only).
    #[serde(skip)]
    pub stored_as_u32s: bool,
}

/// `verify`: a one-line verdict.
#[derive(Serialize, Debug)]
pub struct Verify {
    /// The file read.
    pub path: String,
    /// The detected format.
    pub format: &'static str,
    /// True when the file is exactly as its writer left it.
    pub intact: bool,
    /// Entries that verified.
    pub entries_kept: u64,
    /// Entries that could not be kept.
    pub entries_dropped: u64,
    /// Bytes that belong to no kept entry.
    pub bytes_ignored: u64,
    /// One sentence per problem found.
    pub notes: Vec<String>,
}

/// `convert`: what was read and what was written.
#[derive(Serialize, Debug)]
pub struct Convert {
    /// The file read.
    pub input: String,
    /// The file written.
    pub output: String,
    /// The input's format.
    pub from: &'static str,
    /// The format written.
    pub to: &'static str,
    /// Whether the values were written as tuned parameters (uint32 arrays).
    pub tuned: bool,
    /// Entries written.
    pub entries_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Whether the input was intact.
    pub intact: bool,
    /// Entries of the input that could not be kept.
    pub entries_dropped: u64,
    /// Bytes of the input that belong to no kept entry.
    pub bytes_ignored: u64,
    /// The input's damage notes, then notes on the choices made (default format, tuned keys).
    pub notes: Vec<String>,
}

/// `merge`: the inputs, duplicates and conflicts, and what was written.
#[derive(Serialize, Debug)]
pub struct Merge {
    /// The file written.
    pub output: String,
    /// The format written.
    pub format: &'static str,
    /// Entries written.
    pub entries_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// The inputs, in the order given.
    pub inputs: Vec<MergeInput>,
    /// Keys held by several inputs with the same value (written once).
    pub duplicates_same_value: u64,
    /// Keys held by several inputs with different values.
    pub conflicts: Vec<Conflict>,
    /// Whether the inputs' platform info differed (merged only with `--force`).
    pub platform_info_differs: bool,
    /// Notes on damaged inputs, the platform check, the format chosen and tuned inputs.
    pub notes: Vec<String>,
}

/// One input of `merge`.
#[derive(Serialize, Debug)]
pub struct MergeInput {
    /// The file read.
    pub path: String,
    /// Its format.
    pub format: &'static str,
    /// Whether it was intact.
    pub intact: bool,
    /// Entries it contributed or duplicated (those that verified).
    pub entries: u64,
    /// Entries that could not be kept.
    pub entries_dropped: u64,
    /// Entries no earlier input held.
    pub new_entries: u64,
    /// Whether its values were taken as tuned parameters (uint32 arrays).
    pub tuned: bool,
    /// Its damage notes.
    pub notes: Vec<String>,
}

/// A key two inputs hold with different values: the first input's value is kept.
#[derive(Serialize, Debug)]
pub struct Conflict {
    /// The key as text (invalid UTF-8 replaced).
    pub key: String,
    /// The key's bytes in lowercase hex.
    pub key_hex: String,
    /// The input whose value was kept.
    pub kept_from: String,
    /// The input whose value was ignored.
    pub ignored_from: String,
}

/// `export-c`: what was embedded.
#[derive(Serialize, Debug)]
pub struct ExportC {
    /// The file embedded.
    pub input: String,
    /// The C++ source written.
    pub output: String,
    /// The input's format.
    pub format: &'static str,
    /// The number of bytes embedded (the input's size).
    pub bytes: u64,
    /// SHA-256 of the embedded bytes, 64 lowercase hex digits: what `sha256sum IN` prints. (A
    /// CRC-32 of a whole mace-1.1 file is the same for every file, since the file ends with its
    /// own CRC.)
    pub sha256: String,
    /// The data function's name.
    pub load_func: String,
    /// The size function's name.
    pub size_func: String,
    /// Whether the input was intact.
    pub intact: bool,
    /// The input's damage notes.
    pub notes: Vec<String>,
}

/// `repair`: what was kept and written, and where the original went.
#[derive(Serialize, Debug)]
pub struct Repair {
    /// The file read.
    pub input: String,
    /// The file written.
    pub output: String,
    /// Where the original was kept (in-place repair), else null.
    pub backup: Option<String>,
    /// The input's format.
    pub format: &'static str,
    /// The format written.
    pub to: &'static str,
    /// Whether the input was intact.
    pub intact: bool,
    /// Entries that verified and were written.
    pub entries_kept: u64,
    /// Entries that could not be kept.
    pub entries_dropped: u64,
    /// Bytes of the input that belong to no kept entry.
    pub bytes_ignored: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// The input's damage notes.
    pub notes: Vec<String>,
}

/// What every command prints with `--json` when it fails (exit 2): the same message as the one
/// `mace-cache: ` line on stderr.
#[derive(Serialize, Debug)]
pub struct Error {
    /// The message.
    pub error: String,
    /// The exit status the command ends with.
    pub exit_code: i32,
}

/// `demo`: cold and warm builds, the damage and what it cost.
#[derive(Serialize, Debug)]
pub struct Demo {
    /// The directory it worked in (removed afterwards unless `--dir` was given).
    pub dir: String,
    /// The cache file.
    pub file: String,
    /// Whether the directory and its cache file were kept (`--dir`).
    pub kept: bool,
    /// The OpenCL implementation used, or why the OpenCL part was skipped.
    pub opencl: DemoOpenCl,
    /// One row per program.
    pub programs: Vec<DemoProgram>,
    /// Sum of the cold build times in milliseconds (null without OpenCL).
    pub cold_total_ms: Option<f64>,
    /// Sum of the warm build times in milliseconds (null without OpenCL).
    pub warm_total_ms: Option<f64>,
    /// cold_total_ms / warm_total_ms (null without OpenCL).
    pub speedup: Option<f64>,
    /// What reopening the damaged file found.
    pub damage: DemoDamage,
    /// Which programs survived the damage.
    pub after_damage: AfterDamage,
    /// The cache file's state at the end, one line.
    #[serde(rename = "final")]
    pub final_state: String,
    /// What the cache file's entries are at the end: programs and entries are not the same count.
    pub final_entries: EntryCounts,
    /// Whether every result was the expected one.
    pub ok: bool,
    /// Results that were not the expected ones.
    pub problems: Vec<String>,
}

/// The OpenCL part of the demo.
#[derive(Serialize, Debug)]
pub struct DemoOpenCl {
    /// Whether the OpenCL part ran.
    pub used: bool,
    /// The library loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// The device's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The platform's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Why the OpenCL part was skipped, one line, with how to get a device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// One program of the demo.
#[derive(Serialize, Debug)]
pub struct DemoProgram {
    /// MACE's program name.
    pub name: &'static str,
    /// Its build options, sorted as MACE sorts them.
    pub options: &'static str,
    /// Size of its cached binary.
    pub bytes: u64,
    /// Build time from source on the first start (null without OpenCL).
    pub cold_ms: Option<f64>,
    /// Build time from the cached binary on the second start (null without OpenCL).
    pub warm_ms: Option<f64>,
    /// cold_ms / warm_ms.
    pub speedup: Option<f64>,
    /// After the damage: from_cache or rebuilt (OpenCL), kept or dropped (storage only).
    pub after_damage: &'static str,
    /// Build time after the damage (null without OpenCL).
    pub after_damage_ms: Option<f64>,
}

/// The damage the demo did and what reopening found.
#[derive(Serialize, Debug)]
pub struct DemoDamage {
    /// The program whose cached binary got one byte flipped.
    pub program: &'static str,
    /// The file offset of the flipped byte.
    pub offset: u64,
    /// The detected format.
    pub format: &'static str,
    /// Entries kept (the file holds more entries than programs: see `final_entries`).
    pub entries_kept: u64,
    /// Entries dropped: the damaged binary only.
    pub entries_dropped: u64,
    /// The decoder's notes.
    pub notes: Vec<String>,
}

/// Which programs survived the damage: `from_cache`/`rebuilt` with OpenCL, `kept`/`dropped` without.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum AfterDamage {
    /// With OpenCL.
    OpenCl {
        /// Programs whose binary still loaded from the cache.
        from_cache: Vec<&'static str>,
        /// Programs built from source again.
        rebuilt: Vec<&'static str>,
    },
    /// Without OpenCL.
    Storage {
        /// Programs whose stand-in binary was kept.
        kept: Vec<&'static str>,
        /// Programs whose stand-in binary was dropped (then written again).
        dropped: Vec<&'static str>,
    },
}

/// What a program cache file's entries are.
#[derive(Serialize, Debug, Default, PartialEq, Eq)]
pub struct EntryCounts {
    /// Every entry.
    pub total: u64,
    /// Compiled program binaries (key: program name and build options).
    pub binaries: u64,
    /// Source hashes (`program_hash_` keys), one per binary.
    pub source_hashes: u64,
    /// The entries that tie the binaries to one GPU and driver (platform info, device name, the
    /// library's driver fingerprint and OS build id).
    pub device: u64,
    /// Those entries' keys.
    pub device_keys: Vec<String>,
    /// Anything else.
    pub other: u64,
}
