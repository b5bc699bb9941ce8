//! `mace-cache`: inspect, verify and convert MACE OpenCL program cache files.
//!
//! Exit status for every command: 0 intact, 1 damaged but read (what verified was kept),
//! 2 unreadable, not a cache file, or bad usage. Errors are one line on stderr, starting
//! `mace-cache: `.

use mace_storage::format::{self, Decoded, EntryIn, Format, ValueKind, WriteParams};
use mace_storage::io::{posix::PosixFs, replace_atomically};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Exit status: the file is exactly as its writer left it.
const EXIT_INTACT: i32 = 0;
/// Exit status: the file was read, but damage was found (what verified was kept).
const EXIT_DAMAGED: i32 = 1;
/// Exit status: unreadable, not a cache file, or bad usage.
const EXIT_FAIL: i32 = 2;

/// The format `convert` writes when `--to` is not given.
const DEFAULT_TO: Format = Format::Checked11;

const MAIN_HELP: &str = "\
mace-cache: inspect, verify and convert MACE OpenCL program cache files

Usage: mace-cache <COMMAND> [ARGS] [OPTIONS]

Commands:
  inspect FILE [--json]     show the format, every entry and the damage found
  verify FILE [--json]      print a one-line verdict: intact or damaged
  convert IN OUT [--to FORMAT] [--json]
                            rewrite IN as OUT in FORMAT (default checked-1.1)
  help [COMMAND]            show this help, or a command's help

Options:
  -h, --help     show help (also after a command: mace-cache inspect --help)
  -V, --version  show the version

Formats:
  mace-1.0     MACE v0.6 to v1.0.x (int64 count, int32-length pairs)
  mace-1.1     MACE v1.1 and later (protobuf PairContainer + CRC-32)
  checked-1.0  mace-1.0 + per-entry checksums that MACE v1.0 readers ignore
  checked-1.1  mace-1.1 + per-entry checksums that MACE v1.1 readers skip
  empty        a 0-byte file, as an interrupted write leaves it (read only)

Exit status: 0 intact, 1 damaged but read (what verified was kept),
             2 unreadable, not a cache file, or bad usage.

Example:
  mace-cache verify /data/local/tmp/mace_cl_compiled_program.bin
";

const INSPECT_HELP: &str = "\
mace-cache inspect: show a cache file's format, every entry and its damage

Usage: mace-cache inspect FILE [--json]

Prints a header line (path, format, size, entry count), one line per entry
in key byte order (CRC-32 of the value, length, key with non-printable bytes
shown as \\xNN), then the damage status and one note per problem found.

Options:
  --json      print one JSON object instead:
              {\"format\": \"...\",
               \"entries\": [{\"key_hex\": \"...\", \"len\": N, \"crc32\": \"xxxxxxxx\"}],
               \"damage\": {\"intact\": BOOL, \"entries_dropped\": N,
                          \"bytes_ignored\": N, \"notes\": [\"...\"]}}
  -h, --help  show this help

Exit status: 0 intact, 1 damaged but read, 2 unreadable or not a cache file.

Example:
  mace-cache inspect mace_cl_compiled_program.bin --json
";

const VERIFY_HELP: &str = "\
mace-cache verify: check a cache file and print a one-line verdict

Usage: mace-cache verify FILE [--json]

Prints `FILE: intact (FORMAT, N entries)` or
`FILE: damaged (FORMAT): K entries kept, D dropped: FIRST NOTE`.

Options:
  --json      print one JSON object instead:
              {\"path\": \"...\", \"format\": \"...\", \"intact\": BOOL,
               \"entries_kept\": N, \"entries_dropped\": N, \"bytes_ignored\": N,
               \"notes\": [\"...\"]}
  -h, --help  show this help

Exit status: 0 intact, 1 damaged but read, 2 unreadable or not a cache file.

Example:
  mace-cache verify /data/local/tmp/mace_cl_compiled_program.bin
";

const CONVERT_HELP: &str = "\
mace-cache convert: rewrite a cache file in another format

Usage: mace-cache convert IN OUT [--to FORMAT] [--json]

Reads IN (salvaging what verifies when it is damaged) and writes every kept
entry to OUT in FORMAT, atomically (temp file, fsync, rename, directory
fsync): OUT is either left as it was or wholly new. Each value keeps its
encoding (bytes or uint32 array); the stock formats come out byte-identical
to what MACE itself writes. IN and OUT may be the same file. A one-line
summary goes to stderr.

Options:
  --to FORMAT  mace-1.0, mace-1.1, checked-1.0 or checked-1.1
               (default checked-1.1). Keep the MACE generation: 1.0 files
               for MACE v0.6-v1.0.x, 1.1 files for MACE v1.1 and later.
  --json       print a JSON summary object on stdout instead:
               {\"input\", \"output\", \"from\", \"to\", \"entries_written\",
                \"bytes_written\", \"intact\", \"entries_dropped\",
                \"bytes_ignored\", \"notes\"}
  -h, --help   show this help

Exit status: 0 IN intact and OUT written,
             1 IN damaged (what was kept is written to OUT),
             2 IN unreadable or not a cache file, OUT not written, bad usage.

Example:
  mace-cache convert mace_cl_compiled_program.bin checked.bin --to checked-1.1
";

/// A failure that ends the program with exit status 2 and this one line on stderr.
struct Fail(String);

/// The commands the tool runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `inspect FILE`.
    Inspect,
    /// `verify FILE`.
    Verify,
    /// `convert IN OUT`.
    Convert,
}

impl Command {
    /// Looks a command up by its name.
    fn from_name(name: &str) -> Option<Command> {
        match name {
            "inspect" => Some(Command::Inspect),
            "verify" => Some(Command::Verify),
            "convert" => Some(Command::Convert),
            _ => None,
        }
    }

    /// The command's name as typed.
    fn name(self) -> &'static str {
        match self {
            Command::Inspect => "inspect",
            Command::Verify => "verify",
            Command::Convert => "convert",
        }
    }

    /// The command's help text.
    fn help(self) -> &'static str {
        match self {
            Command::Inspect => INSPECT_HELP,
            Command::Verify => VERIFY_HELP,
            Command::Convert => CONVERT_HELP,
        }
    }

    /// The names of the positional arguments the command takes.
    fn positionals(self) -> &'static [&'static str] {
        match self {
            Command::Inspect | Command::Verify => &["FILE"],
            Command::Convert => &["IN", "OUT"],
        }
    }
}

/// A command's parsed arguments.
struct Args {
    /// The positional arguments (paths), exactly as many as the command takes.
    paths: Vec<PathBuf>,
    /// `--json` was given.
    json: bool,
    /// The `--to` format (convert only).
    to: Format,
}

/// What the command line asks for.
enum Request {
    /// Print this help text and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
    /// Run a command.
    Run(Command, Args),
}

/// Runs the tool and exits with its status.
fn main() {
    install_panic_hook();
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match parse(&argv).and_then(execute) {
        Ok(code) => code,
        Err(Fail(msg)) => {
            eprintln!("mace-cache: {msg}");
            EXIT_FAIL
        }
    };
    std::process::exit(code);
}

/// Replaces the default panic output with one `mace-cache:` line and exit status 2.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".to_string());
        let msg = msg.replace(['\n', '\r'], " ");
        let _ = writeln!(std::io::stderr(), "mace-cache: internal error: {msg}");
        std::process::exit(EXIT_FAIL);
    }));
}

/// Runs a parsed request and returns its exit status.
fn execute(req: Request) -> Result<i32, Fail> {
    match req {
        Request::Help(text) => {
            emit(text)?;
            Ok(EXIT_INTACT)
        }
        Request::Version => {
            emit(&format!("mace-cache {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(EXIT_INTACT)
        }
        Request::Run(Command::Inspect, args) => inspect(&args),
        Request::Run(Command::Verify, args) => verify(&args),
        Request::Run(Command::Convert, args) => convert(&args),
    }
}

/// Parses the whole command line.
fn parse(argv: &[OsString]) -> Result<Request, Fail> {
    let Some(first) = argv.first() else {
        return Err(Fail(
            "missing command: inspect, verify or convert (see 'mace-cache --help')".into(),
        ));
    };
    let first = first.to_string_lossy();
    match first.as_ref() {
        "-h" | "--help" => return Ok(Request::Help(MAIN_HELP)),
        "-V" | "--version" => return Ok(Request::Version),
        "help" => {
            return match argv.get(1).map(|a| a.to_string_lossy()) {
                None => Ok(Request::Help(MAIN_HELP)),
                Some(name) => Command::from_name(&name)
                    .map(|c| Request::Help(c.help()))
                    .ok_or_else(|| unknown_command(&name)),
            }
        }
        _ => {}
    }
    let cmd = Command::from_name(&first).ok_or_else(|| unknown_command(&first))?;
    parse_command(cmd, &argv[1..])
}

/// The error for a command name that does not exist.
fn unknown_command(name: &str) -> Fail {
    let what = if name.starts_with('-') {
        "unknown option"
    } else {
        "unknown command"
    };
    Fail(format!(
        "{what} '{}': expected inspect, verify or convert (see 'mace-cache --help')",
        name.escape_debug()
    ))
}

/// Parses a command's arguments: its positionals and `--json`, `--to FORMAT`, `--help`.
fn parse_command(cmd: Command, rest: &[OsString]) -> Result<Request, Fail> {
    let usage = |msg: String| Fail(format!("{msg} (see 'mace-cache {} --help')", cmd.name()));
    let mut paths = Vec::new();
    let mut json = false;
    let mut to = None;
    let mut only_paths = false;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        if only_paths || !text.starts_with('-') || text == "-" {
            paths.push(PathBuf::from(arg));
            continue;
        }
        match text.as_ref() {
            "--" => only_paths = true,
            "-h" | "--help" => return Ok(Request::Help(cmd.help())),
            "--json" => json = true,
            "--to" if cmd == Command::Convert => {
                let value = it
                    .next()
                    .ok_or_else(|| usage("--to needs a format".into()))?;
                to = Some(parse_format(&value.to_string_lossy())?);
            }
            s if cmd == Command::Convert && s.starts_with("--to=") => {
                to = Some(parse_format(&s["--to=".len()..])?);
            }
            s => {
                return Err(usage(format!(
                    "unknown option '{}' for {}",
                    s.escape_debug(),
                    cmd.name()
                )))
            }
        }
    }
    let names = cmd.positionals();
    if paths.len() < names.len() {
        return Err(usage(format!("missing {} argument", names[paths.len()])));
    }
    if let Some(extra) = paths.get(names.len()) {
        return Err(usage(format!(
            "unexpected argument '{}'",
            extra.display().to_string().escape_debug()
        )));
    }
    Ok(Request::Run(
        cmd,
        Args {
            paths,
            json,
            to: to.unwrap_or(DEFAULT_TO),
        },
    ))
}

/// Parses a writable format name given to `--to`.
fn parse_format(name: &str) -> Result<Format, Fail> {
    Format::from_name(name).ok_or_else(|| {
        Fail(format!(
            "unknown format '{}' for --to: expected mace-1.0, mace-1.1, checked-1.0 or checked-1.1",
            name.escape_debug()
        ))
    })
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Fail(format!("cannot write to stdout: {e}"))),
    }
}

/// Reads and decodes a cache file; a file that cannot be read or is not a cache is a failure.
fn load(path: &Path) -> Result<(Vec<u8>, Decoded), Fail> {
    let bytes =
        std::fs::read(path).map_err(|e| Fail(format!("cannot read {}: {e}", path.display())))?;
    let decoded = format::decode(&bytes).map_err(|e| Fail(format!("{}: {e}", path.display())))?;
    Ok((bytes, decoded))
}

/// One decoded entry with its key and value bytes resolved.
struct Entry<'a> {
    /// The key's bytes.
    key: &'a [u8],
    /// The value's bytes.
    value: &'a [u8],
    /// How the value is encoded in format B.
    kind: ValueKind,
}

/// The decoded entries, in key byte order.
fn sorted_entries<'a>(bytes: &'a [u8], d: &'a Decoded) -> Vec<Entry<'a>> {
    let mut v: Vec<Entry<'a>> = d
        .entries
        .iter()
        .map(|e| Entry {
            key: &bytes[e.key.clone()],
            value: e.value.bytes(bytes),
            kind: e.kind,
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(b.key));
    v
}

/// The exit status a decode result calls for.
fn status(d: &Decoded) -> i32 {
    if d.damage.intact {
        EXIT_INTACT
    } else {
        EXIT_DAMAGED
    }
}

/// `inspect FILE [--json]`: the format, every entry and the damage found.
fn inspect(args: &Args) -> Result<i32, Fail> {
    let path = &args.paths[0];
    let (bytes, d) = load(path)?;
    let entries = sorted_entries(&bytes, &d);
    let text = if args.json {
        inspect_json(&d, &entries)
    } else {
        inspect_text(path, bytes.len(), &d, &entries)
    };
    emit(&text)?;
    Ok(status(&d))
}

/// The human-readable report of `inspect`.
fn inspect_text(path: &Path, size: usize, d: &Decoded, entries: &[Entry<'_>]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{}: {}, {size} bytes, {}",
        path.display(),
        d.format,
        plural(entries.len() as u64, "entry", "entries")
    );
    if let Some(g) = d.generation {
        let _ = write!(s, ", generation {g}");
    }
    s.push('\n');
    if !entries.is_empty() {
        let width = entries
            .iter()
            .map(|e| e.value.len().to_string().len())
            .max()
            .unwrap_or(0)
            .max("length".len());
        let _ = writeln!(s, "  crc32     {:>width$}  key", "length");
        for e in entries {
            let kind = match e.kind {
                ValueKind::Bytes => "",
                ValueKind::U32s => "  (uint32s)",
            };
            let _ = writeln!(
                s,
                "  {:08x}  {:>width$}  \"{}\"{kind}",
                crc32fast::hash(e.value),
                e.value.len(),
                printable(e.key)
            );
        }
    }
    if d.damage.intact {
        s.push_str("damage: none (intact)\n");
    } else {
        let _ = writeln!(
            s,
            "damage: {} dropped, {} ignored",
            plural(d.damage.entries_dropped, "entry", "entries"),
            plural(d.damage.bytes_ignored, "byte", "bytes")
        );
        for note in &d.damage.notes {
            let _ = writeln!(s, "  - {note}");
        }
    }
    s
}

/// The JSON report of `inspect`.
fn inspect_json(d: &Decoded, entries: &[Entry<'_>]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"key_hex\": {}, \"len\": {}, \"crc32\": \"{:08x}\"}}",
                json_str(&hex(e.key)),
                e.value.len(),
                crc32fast::hash(e.value)
            )
        })
        .collect();
    format!(
        "{{\"format\": {}, \"entries\": [{}], \"damage\": {{\"intact\": {}, \
         \"entries_dropped\": {}, \"bytes_ignored\": {}, \"notes\": {}}}}}\n",
        json_str(d.format.name()),
        items.join(", "),
        d.damage.intact,
        d.damage.entries_dropped,
        d.damage.bytes_ignored,
        json_str_array(&d.damage.notes)
    )
}

/// `verify FILE [--json]`: a one-line verdict.
fn verify(args: &Args) -> Result<i32, Fail> {
    let path = &args.paths[0];
    let (_bytes, d) = load(path)?;
    let kept = d.entries.len() as u64;
    let text = if args.json {
        format!(
            "{{\"path\": {}, \"format\": {}, \"intact\": {}, \"entries_kept\": {kept}, \
             \"entries_dropped\": {}, \"bytes_ignored\": {}, \"notes\": {}}}\n",
            json_str(&path.display().to_string()),
            json_str(d.format.name()),
            d.damage.intact,
            d.damage.entries_dropped,
            d.damage.bytes_ignored,
            json_str_array(&d.damage.notes)
        )
    } else if d.damage.intact {
        format!(
            "{}: intact ({}, {})\n",
            path.display(),
            d.format,
            plural(kept, "entry", "entries")
        )
    } else {
        format!(
            "{}: damaged ({}): {}\n",
            path.display(),
            d.format,
            damage_summary(&d)
        )
    };
    emit(&text)?;
    Ok(status(&d))
}

/// `K entries kept, D dropped: FIRST NOTE` for a damaged decode.
fn damage_summary(d: &Decoded) -> String {
    let mut s = format!(
        "{} kept, {} dropped",
        plural(d.entries.len() as u64, "entry", "entries"),
        d.damage.entries_dropped
    );
    if let Some(note) = d.damage.notes.first() {
        let _ = write!(s, ": {note}");
    }
    s
}

/// `convert IN OUT [--to FORMAT] [--json]`: rewrite every kept entry of IN to OUT, atomically.
fn convert(args: &Args) -> Result<i32, Fail> {
    let (input, output) = (&args.paths[0], &args.paths[1]);
    let (bytes, d) = load(input)?;
    let entries: Vec<EntryIn<'_>> = sorted_entries(&bytes, &d)
        .into_iter()
        .map(|e| EntryIn {
            key: e.key,
            value: e.value,
            kind: e.kind,
        })
        .collect();
    let params = WriteParams::next(d.generation.unwrap_or(0));
    let encoded = format::encode(args.to, &entries, params).map_err(|e| {
        Fail(format!(
            "cannot write {} as {}: {e}",
            output.display(),
            args.to
        ))
    })?;
    let written = replace_atomically(&PosixFs, output, &encoded.out.slices())
        .map_err(|e| Fail(format!("cannot write {}: {e}", output.display())))?;
    if args.json {
        emit(&format!(
            "{{\"input\": {}, \"output\": {}, \"from\": {}, \"to\": {}, \"entries_written\": {}, \
             \"bytes_written\": {written}, \"intact\": {}, \"entries_dropped\": {}, \
             \"bytes_ignored\": {}, \"notes\": {}}}\n",
            json_str(&input.display().to_string()),
            json_str(&output.display().to_string()),
            json_str(d.format.name()),
            json_str(args.to.name()),
            entries.len(),
            d.damage.intact,
            d.damage.entries_dropped,
            d.damage.bytes_ignored,
            json_str_array(&d.damage.notes)
        ))?;
    } else {
        let state = if d.damage.intact {
            "intact".to_string()
        } else {
            format!("damaged: {}", damage_summary(&d))
        };
        eprintln!(
            "{} ({}, {state}) -> {} ({}): {}, {}",
            input.display(),
            d.format,
            output.display(),
            args.to,
            plural(entries.len() as u64, "entry", "entries"),
            plural(written, "byte", "bytes")
        );
    }
    Ok(status(&d))
}

/// `N word` with the singular or plural word.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `bytes` as printable ASCII: `\\` and `"` escaped, any other non-printable byte as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// `text` as a quoted JSON string: quotes, backslashes and control characters escaped.
fn json_str(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A JSON array of strings.
fn json_str_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|i| json_str(i)).collect();
    format!("[{}]", parts.join(", "))
}
