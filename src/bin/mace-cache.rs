//! `mace-cache`: inspect, verify, convert, merge, export, repair and demonstrate MACE OpenCL program
//! cache files.
//!
//! Exit status for every command: 0 intact or done, 1 damaged but read (what verified was kept),
//! 2 unreadable, not a cache file, or bad usage. Errors are one line on stderr, starting
//! `mace-cache: `. With `--json`, a command prints exactly one JSON object on stdout.

use mace_storage::ffi::opencl::{OpenCl, DEFAULT_LIBRARIES};
use mace_storage::format::{
    self, Decoded, EntryIn, Format, ValueKind, ValueRef, WriteParams, PLATFORM_INFO_KEY,
};
use mace_storage::io::side_files::{CacheLock, SideFiles, DEFAULT_LOCK_TIMEOUT};
use mace_storage::io::{posix::PosixFs, replace_atomically, sibling};
use mace_storage::program_cache::{entry_keys, source_hash, CacheOptions, ProgramCache};
use mace_storage::store::{self, Store, Value};
use std::collections::btree_map::{BTreeMap, Entry as MapEntry};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Exit status: the file is exactly as its writer left it (or the command succeeded).
const EXIT_INTACT: i32 = 0;
/// Exit status: the file was read, but damage was found (what verified was kept).
const EXIT_DAMAGED: i32 = 1;
/// Exit status: unreadable, not a cache file, or bad usage.
const EXIT_FAIL: i32 = 2;

/// The format `convert` and `merge` write when `--to` is not given.
const DEFAULT_TO: Format = Format::Checked11;

/// The function `export-c` defines for the data pointer unless `--load-func` says otherwise.
const DEFAULT_LOAD_FUNC: &str = "LoadOpenCLBinary";
/// The function `export-c` defines for the data size unless `--size-func` says otherwise.
const DEFAULT_SIZE_FUNC: &str = "OpenCLBinarySize";

/// The name of the cache file the demo writes.
const DEMO_FILE: &str = "mace_cl_compiled_program.bin";

const MAIN_HELP: &str = "\
mace-cache: inspect, verify, convert, merge, export and repair MACE OpenCL
program cache files (and tuned OpenCL parameter files)

Usage: mace-cache <COMMAND> [ARGS] [OPTIONS]

Commands:
  inspect FILE [--tuned] [--json]
                            show the format, every entry and the damage found
  verify FILE [--json]      print a one-line verdict: intact or damaged
  convert IN OUT [--to FORMAT] [--tuned] [--json]
                            rewrite IN as OUT in FORMAT (default checked-1.1)
  merge OUT IN... [--to FORMAT] [--force] [--tuned] [--json]
                            merge device caches into one precompiled file
  export-c IN OUT.cc [--load-func NAME] [--size-func NAME] [--json]
                            embed a cache file's exact bytes in C++ source
  repair IN [OUT] [--to FORMAT] [--json]
                            salvage what verifies into a fresh checked file
  demo [--dir DIR] [--opencl-library LIB] [--json]
                            build real kernels cold and warm, damage the
                            cache, show that only one program is rebuilt
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

Exit status: 0 intact (or done), 1 damaged but read (what verified was kept),
             2 unreadable, not a cache file, or bad usage.

Example:
  mace-cache verify /data/local/tmp/mace_cl_compiled_program.bin
";

const INSPECT_HELP: &str = "\
mace-cache inspect: show a cache file's format, every entry and its damage

Usage: mace-cache inspect FILE [--tuned] [--json]

Prints a header line (path, format, size, entry count), one line per entry
in key byte order (CRC-32 of the value, length, key: valid UTF-8 shown as
text with control characters, \\ and \" escaped, other bytes as \\xNN), the
uint32 values of tuned parameters (`key: [8, 16, 4, 0]`), then the damage
status and one note per problem found.

Options:
  --tuned     also show mace-1.0 values as uint32 arrays (format A cannot
              tell a tuned-parameter file from a program cache)
  --json      print one JSON object instead:
              {\"format\": \"...\",
               \"entries\": [{\"key_hex\": \"...\", \"len\": N, \"crc32\": \"xxxxxxxx\"
                            [, \"uint32s\": [N, ...]]}],
               \"damage\": {\"intact\": BOOL, \"entries_dropped\": N,
                          \"bytes_ignored\": N, \"notes\": [\"...\"]}}
  -h, --help  show this help

Exit status: 0 intact, 1 damaged but read, 2 unreadable or not a cache file.

Example:
  mace-cache inspect mace_cl_compiled_program.bin --json
  mace-cache inspect tuned_opencl_parameter.bin
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

Usage: mace-cache convert IN OUT [--to FORMAT] [--tuned] [--json]

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
  --tuned      IN is a tuned OpenCL parameter file: every value becomes a
               uint32 array (uint32s_value in the 1.1 formats). Needed for
               mace-1.0 -> mace-1.1, since format A cannot tell a tuned file
               from a program cache. A value whose length is not a multiple
               of 4 is refused (exit 2, naming the key).
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
  mace-cache convert mace_run.config tuned-1.1.bin --to mace-1.1 --tuned
";

const MERGE_HELP: &str = "\
mace-cache merge: merge device caches into one precompiled binary file

Usage: mace-cache merge OUT IN... [--to FORMAT] [--force] [--tuned] [--json]

Reads every IN (any format; a damaged one contributes what verifies) and
writes the union of their entries to OUT, atomically: the file MACE's
SetOpenCLBinaryPaths (or, exported with export-c, SetOpenCLBinary) loads.
Every key appears once. When inputs hold the same key with different values,
the first input given wins and the report names both files. Inputs whose
mace_opencl_precompiled_platform_info_key values differ were built for
different GPUs or drivers: they are refused unless --force is given (then
the first input's platform info is kept). Tuned-parameter files merge the
same way; each entry keeps its encoding (bytes or uint32 array). OUT may be
one of the inputs. The report goes to stdout; progress goes to stderr when
the merge takes more than a second.

Options:
  --to FORMAT  mace-1.0, mace-1.1, checked-1.0 or checked-1.1
               (default checked-1.1)
  --force      merge even when the platform info differs
  --tuned      the inputs are tuned OpenCL parameter files: every value
               becomes a uint32 array (see 'mace-cache convert --help')
  --json       print one JSON object instead:
               {\"output\", \"format\", \"entries_written\", \"bytes_written\",
                \"inputs\": [{\"path\", \"format\", \"intact\", \"entries\",
                            \"entries_dropped\", \"new_entries\", \"notes\"}],
                \"duplicates_same_value\": N,
                \"conflicts\": [{\"key\", \"key_hex\", \"kept_from\",
                               \"ignored_from\"}],
                \"platform_info_differs\": BOOL, \"notes\": [\"...\"]}
  -h, --help   show this help

Exit status: 0 every input intact and OUT written,
             1 an input was damaged (what verified is merged, OUT written),
             2 an input is unreadable or not a cache file, the platform info
               differs (without --force), or bad usage: OUT not written.

Example:
  mace-cache merge merged.bin adreno640.bin adreno650.bin --to mace-1.1
";

const EXPORT_C_HELP: &str = "\
mace-cache export-c: embed a cache file's exact bytes in C++ source

Usage: mace-cache export-c IN OUT.cc [--load-func NAME] [--size-func NAME] [--json]

Writes C++11 source that defines, in namespace mace,
  const unsigned char *LoadOpenCLBinary();
  size_t OpenCLBinarySize();
returning IN's bytes exactly as they are in the file (not re-encoded): the
shape of the files MACE generates for SetOpenCLBinary(ptr, size) and
SetOpenCLParameter(ptr, size). The source compiles with MACE's flags
(-std=c++11 -Wall -Werror -fno-exceptions -fno-rtti). A 0-byte IN gives a
size of 0. OUT.cc is written atomically; a one-line summary goes to stderr.

Options:
  --load-func NAME  name of the data function (default LoadOpenCLBinary)
  --size-func NAME  name of the size function (default OpenCLBinarySize)
                    NAMEs are C identifiers, not keywords or reserved names.
  --json            print one JSON summary object on stdout instead:
                    {\"input\", \"output\", \"format\", \"bytes\", \"crc32\",
                     \"load_func\", \"size_func\", \"intact\", \"notes\"}
  -h, --help        show this help

Exit status: 0 IN intact (or 0 bytes) and OUT.cc written,
             1 IN damaged (its bytes are exported as they are),
             2 IN unreadable or not a cache file, a bad NAME, or bad usage.

Example:
  mace-cache export-c mace_cl_compiled_program.bin opencl_binary.cc
  mace-cache export-c tuned.bin tuned_params.cc \\
      --load-func LoadOpenCLParameter --size-func OpenCLParameterSize
";

const REPAIR_HELP: &str = "\
mace-cache repair: salvage a cache file into a fresh checked file

Usage: mace-cache repair IN [OUT] [--to FORMAT] [--json]

Reads IN, keeps every entry that verifies, and writes them as a fresh file,
atomically. Without OUT, IN is repaired in place: the original is kept as
IN.bak (an older IN.bak is replaced) and the repaired file takes IN's name.
An intact IN is rewritten too. The report (format, entries kept and
dropped, one note per problem) goes to stdout. Run it while no app is
writing the cache.

Options:
  --to FORMAT  the format written. Default: checked-1.1, or checked-1.0
               when IN is a MACE 1.0 file (mace-1.0, checked-1.0), since
               MACE v1.0 apps cannot read the 1.1 formats.
  --json       print one JSON object instead:
               {\"input\", \"output\", \"backup\", \"format\", \"to\", \"intact\",
                \"entries_kept\", \"entries_dropped\", \"bytes_ignored\",
                \"bytes_written\", \"notes\"}
  -h, --help   show this help

Exit status: 0 IN was intact (and was rewritten),
             1 IN was damaged: what verified was written,
             2 IN unreadable or not a cache file (nothing written), bad usage.

Example:
  mace-cache repair /data/local/tmp/mace_cl_compiled_program.bin
";

const DEMO_HELP: &str = "\
mace-cache demo: what the program cache is for, on this machine's OpenCL

Usage: mace-cache demo [--dir DIR] [--opencl-library LIB] [--json]

With OpenCL: builds a set of real kernels (convolutions, eltwise, pooling,
softmax, matmul, resize) from source through the program cache (cold) and
times them; opens the cache again and builds them from the cached binaries
(warm); prints a table of cold and warm times with the speedup. Then flips
one byte inside one cached binary, reopens the file, shows the damage report
(entries kept and dropped) and that only that program is rebuilt while the
others still load from the cache.
Without OpenCL: runs the storage part (write, flip a byte, salvage report)
and prints one line saying why the OpenCL part was skipped.
Tables go to stdout, progress to stderr. PoCL's own kernel cache is turned
off (POCL_KERNEL_CACHE=0) unless the environment sets it.

Options:
  --dir DIR               work in DIR (created if missing, files kept; its
                          mace_cl_compiled_program.bin is replaced) instead
                          of a temporary directory that is removed
  --opencl-library LIB    load LIB instead of MACE's list of OpenCL libraries
  --json                  print one JSON object instead of the tables:
                          {\"dir\", \"file\", \"opencl\", \"programs\",
                           \"cold_total_ms\", \"warm_total_ms\", \"speedup\",
                           \"damage\", \"after_damage\", \"ok\"}
  -h, --help              show this help

Exit status: 0 the demo showed what it should,
             1 it ran but a result was not the expected one (said why),
             2 a step failed (the error is printed), or bad usage.

Example:
  mace-cache demo
  mace-cache demo --dir mace-demo --json
";

/// A failure that ends the program with exit status 2 and this one line on stderr.
struct Fail(String);

impl From<std::fmt::Error> for Fail {
    /// Formatting into a `String` cannot fail; this only satisfies `?`.
    fn from(e: std::fmt::Error) -> Fail {
        Fail(format!("internal formatting error: {e}"))
    }
}

/// The commands the tool runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `inspect FILE`.
    Inspect,
    /// `verify FILE`.
    Verify,
    /// `convert IN OUT`.
    Convert,
    /// `merge OUT IN...`.
    Merge,
    /// `export-c IN OUT.cc`.
    ExportC,
    /// `repair IN [OUT]`.
    Repair,
    /// `demo`.
    Demo,
}

/// The options a command may accept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    /// `--json`: one JSON object on stdout.
    Json,
    /// `--to FORMAT`: the format written.
    To,
    /// `--force`: merge despite differing platform info.
    Force,
    /// `--tuned`: values are uint32 arrays.
    Tuned,
    /// `--load-func NAME`: the data function of `export-c`.
    LoadFunc,
    /// `--size-func NAME`: the size function of `export-c`.
    SizeFunc,
    /// `--dir DIR`: where the demo works.
    Dir,
    /// `--opencl-library LIB`: the OpenCL library the demo loads.
    OpenClLibrary,
}

impl Opt {
    /// The option as typed.
    fn name(self) -> &'static str {
        match self {
            Opt::Json => "--json",
            Opt::To => "--to",
            Opt::Force => "--force",
            Opt::Tuned => "--tuned",
            Opt::LoadFunc => "--load-func",
            Opt::SizeFunc => "--size-func",
            Opt::Dir => "--dir",
            Opt::OpenClLibrary => "--opencl-library",
        }
    }

    /// What the option's value is called, or `None` for a flag.
    fn value_name(self) -> Option<&'static str> {
        match self {
            Opt::Json | Opt::Force | Opt::Tuned => None,
            Opt::To => Some("a format"),
            Opt::LoadFunc | Opt::SizeFunc => Some("a function name"),
            Opt::Dir => Some("a directory"),
            Opt::OpenClLibrary => Some("a library"),
        }
    }
}

impl Command {
    /// Every command, in the order the help lists them.
    const ALL: [Command; 7] = [
        Command::Inspect,
        Command::Verify,
        Command::Convert,
        Command::Merge,
        Command::ExportC,
        Command::Repair,
        Command::Demo,
    ];

    /// Looks a command up by its name.
    fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The command's name as typed.
    fn name(self) -> &'static str {
        match self {
            Command::Inspect => "inspect",
            Command::Verify => "verify",
            Command::Convert => "convert",
            Command::Merge => "merge",
            Command::ExportC => "export-c",
            Command::Repair => "repair",
            Command::Demo => "demo",
        }
    }

    /// The command's help text.
    fn help(self) -> &'static str {
        match self {
            Command::Inspect => INSPECT_HELP,
            Command::Verify => VERIFY_HELP,
            Command::Convert => CONVERT_HELP,
            Command::Merge => MERGE_HELP,
            Command::ExportC => EXPORT_C_HELP,
            Command::Repair => REPAIR_HELP,
            Command::Demo => DEMO_HELP,
        }
    }

    /// The names of the positional arguments, how many are required, and how many are allowed
    /// (`None`: any number, the last name repeating).
    fn positionals(self) -> (&'static [&'static str], usize, Option<usize>) {
        match self {
            Command::Inspect | Command::Verify => (&["FILE"], 1, Some(1)),
            Command::Convert => (&["IN", "OUT"], 2, Some(2)),
            Command::Merge => (&["OUT", "IN"], 2, None),
            Command::ExportC => (&["IN", "OUT.cc"], 2, Some(2)),
            Command::Repair => (&["IN", "OUT"], 1, Some(2)),
            Command::Demo => (&[], 0, Some(0)),
        }
    }

    /// The options the command accepts (besides `--help`).
    fn options(self) -> &'static [Opt] {
        match self {
            Command::Inspect => &[Opt::Json, Opt::Tuned],
            Command::Verify => &[Opt::Json],
            Command::Convert => &[Opt::Json, Opt::To, Opt::Tuned],
            Command::Merge => &[Opt::Json, Opt::To, Opt::Force, Opt::Tuned],
            Command::ExportC => &[Opt::Json, Opt::LoadFunc, Opt::SizeFunc],
            Command::Repair => &[Opt::Json, Opt::To],
            Command::Demo => &[Opt::Json, Opt::Dir, Opt::OpenClLibrary],
        }
    }
}

/// A command's parsed arguments.
#[derive(Default)]
struct Args {
    /// The positional arguments (paths), as many as the command allows.
    paths: Vec<PathBuf>,
    /// `--json` was given.
    json: bool,
    /// The `--to` format, if given.
    to: Option<Format>,
    /// `--force` was given.
    force: bool,
    /// `--tuned` was given.
    tuned: bool,
    /// The `--load-func` name, if given.
    load_func: Option<String>,
    /// The `--size-func` name, if given.
    size_func: Option<String>,
    /// The `--dir` directory, if given.
    dir: Option<PathBuf>,
    /// The `--opencl-library` library, if given.
    opencl_library: Option<String>,
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
            // One line, whatever the message holds (a driver's build log has many).
            let msg: Vec<&str> = msg
                .split(['\n', '\r'])
                .filter(|l| !l.trim().is_empty())
                .collect();
            eprintln!("mace-cache: {}", msg.join(" | "));
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
        Request::Run(cmd, args) => match cmd {
            Command::Inspect => inspect(&args),
            Command::Verify => verify(&args),
            Command::Convert => convert(&args),
            Command::Merge => merge(&args),
            Command::ExportC => export_c(&args),
            Command::Repair => repair(&args),
            Command::Demo => demo(&args),
        },
    }
}

/// The list of command names for error messages: `inspect, verify, ... or demo`.
fn command_list() -> String {
    let names: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    format!("{} or {last}", rest.join(", "))
}

/// Parses the whole command line.
fn parse(argv: &[OsString]) -> Result<Request, Fail> {
    let Some(first) = argv.first() else {
        return Err(Fail(format!(
            "missing command: {} (see 'mace-cache --help')",
            command_list()
        )));
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
        "{what} '{}': expected {} (see 'mace-cache --help')",
        name.escape_debug(),
        command_list()
    ))
}

/// Parses a command's arguments: its positionals, its options and `--help`.
fn parse_command(cmd: Command, rest: &[OsString]) -> Result<Request, Fail> {
    let usage = |msg: String| Fail(format!("{msg} (see 'mace-cache {} --help')", cmd.name()));
    let mut args = Args::default();
    let mut only_paths = false;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        if only_paths || !text.starts_with('-') || text == "-" {
            args.paths.push(PathBuf::from(arg));
            continue;
        }
        match text.as_ref() {
            "--" => {
                only_paths = true;
                continue;
            }
            "-h" | "--help" => return Ok(Request::Help(cmd.help())),
            _ => {}
        }
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (text.as_ref(), None),
        };
        let Some(opt) = cmd.options().iter().copied().find(|o| o.name() == name) else {
            return Err(usage(format!(
                "unknown option '{}' for {}",
                text.escape_debug(),
                cmd.name()
            )));
        };
        let value = match (opt.value_name(), inline) {
            (None, None) => String::new(),
            (None, Some(_)) => {
                return Err(usage(format!("{} takes no value", opt.name())));
            }
            (Some(_), Some(v)) => v,
            (Some(what), None) => it
                .next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| usage(format!("{} needs {what}", opt.name())))?,
        };
        match opt {
            Opt::Json => args.json = true,
            Opt::Force => args.force = true,
            Opt::Tuned => args.tuned = true,
            Opt::To => args.to = Some(parse_format(&value)?),
            Opt::LoadFunc => args.load_func = Some(value),
            Opt::SizeFunc => args.size_func = Some(value),
            Opt::Dir => args.dir = Some(PathBuf::from(value)),
            Opt::OpenClLibrary => args.opencl_library = Some(value),
        }
    }
    let (names, min, max) = cmd.positionals();
    if args.paths.len() < min {
        let missing = names.get(args.paths.len()).copied().unwrap_or("FILE");
        return Err(usage(format!("missing {missing} argument")));
    }
    if let Some(extra) = max.and_then(|m| args.paths.get(m)) {
        return Err(usage(format!(
            "unexpected argument '{}'",
            extra.display().to_string().escape_debug()
        )));
    }
    Ok(Request::Run(cmd, args))
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

/// Progress lines on stderr, shown only once the work has taken more than a second (or always).
struct Progress {
    /// When the work started.
    start: Instant,
    /// Show every line, however fast the work is.
    always: bool,
    /// The prefix of every line.
    prefix: &'static str,
}

impl Progress {
    /// Starts timing work whose progress lines begin with `prefix`.
    fn new(prefix: &'static str, always: bool) -> Progress {
        Progress {
            start: Instant::now(),
            always,
            prefix,
        }
    }

    /// Prints the line `msg` builds, if the work has been long enough to need progress.
    fn line(&self, msg: impl FnOnce() -> String) {
        if self.always || self.start.elapsed() >= Duration::from_secs(1) {
            let _ = writeln!(std::io::stderr(), "{}: {}", self.prefix, msg());
        }
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

impl Entry<'_> {
    /// The value as uint32s: when it is stored as an array, or `tuned` says values are arrays
    /// and its length allows it.
    fn uint32s(&self, tuned: bool) -> Option<Vec<u32>> {
        let as_array = self.kind == ValueKind::U32s || tuned;
        (as_array && self.value.len() % 4 == 0).then(|| {
            self.value
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
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

/// With `--tuned`, every value becomes a uint32 array; a value that cannot be one is refused.
fn apply_tuned(path: &Path, entries: &mut [Entry<'_>], tuned: bool) -> Result<(), Fail> {
    if !tuned {
        return Ok(());
    }
    for e in entries.iter_mut() {
        if e.value.len() % 4 != 0 {
            return Err(Fail(format!(
                "{}: the value of key \"{}\" is {} bytes, not a whole number of uint32s: \
                 not a tuned-parameter file? (drop --tuned)",
                path.display(),
                printable(e.key),
                e.value.len()
            )));
        }
        e.kind = ValueKind::U32s;
    }
    Ok(())
}

/// The exit status a decode result calls for.
fn status(d: &Decoded) -> i32 {
    if d.damage.intact {
        EXIT_INTACT
    } else {
        EXIT_DAMAGED
    }
}

/// `inspect FILE [--tuned] [--json]`: the format, every entry and the damage found.
fn inspect(args: &Args) -> Result<i32, Fail> {
    let path = &args.paths[0];
    let (bytes, d) = load(path)?;
    let entries = sorted_entries(&bytes, &d);
    let text = if args.json {
        inspect_json(&d, &entries, args.tuned)
    } else {
        inspect_text(path, bytes.len(), &d, &entries, args.tuned)?
    };
    emit(&text)?;
    Ok(status(&d))
}

/// The human-readable report of `inspect`.
fn inspect_text(
    path: &Path,
    size: usize,
    d: &Decoded,
    entries: &[Entry<'_>],
    tuned: bool,
) -> Result<String, Fail> {
    let mut s = String::new();
    write!(
        s,
        "{}: {}, {size} bytes, {}",
        path.display(),
        d.format,
        plural(entries.len() as u64, "entry", "entries")
    )?;
    if let Some(g) = d.generation {
        write!(s, ", generation {g}")?;
    }
    s.push('\n');
    if !entries.is_empty() {
        let width = entries
            .iter()
            .map(|e| e.value.len().to_string().len())
            .max()
            .unwrap_or(0)
            .max("length".len());
        writeln!(s, "  crc32     {:>width$}  key", "length")?;
        for e in entries {
            let kind = match e.kind {
                ValueKind::Bytes => "",
                ValueKind::U32s => "  (uint32s)",
            };
            writeln!(
                s,
                "  {:08x}  {:>width$}  \"{}\"{kind}",
                crc32fast::hash(e.value),
                e.value.len(),
                printable(e.key)
            )?;
        }
    }
    let arrays: Vec<(&Entry<'_>, Vec<u32>)> = entries
        .iter()
        .filter_map(|e| e.uint32s(tuned).map(|v| (e, v)))
        .collect();
    if !arrays.is_empty() {
        s.push_str("uint32 values:\n");
        for (e, v) in arrays {
            writeln!(s, "  {}: {}", printable(e.key), u32_list(&v))?;
        }
    }
    push_damage(&mut s, d)?;
    Ok(s)
}

/// Appends the damage status of `d` and one line per note, as `inspect` prints them.
fn push_damage(s: &mut String, d: &Decoded) -> Result<(), Fail> {
    if d.damage.intact {
        s.push_str("damage: none (intact)\n");
    } else {
        writeln!(
            s,
            "damage: {} dropped, {} ignored",
            plural(d.damage.entries_dropped, "entry", "entries"),
            plural(d.damage.bytes_ignored, "byte", "bytes")
        )?;
        for note in &d.damage.notes {
            writeln!(s, "  - {note}")?;
        }
    }
    Ok(())
}

/// `[8, 16, 4, 0]`: a uint32 list as text and as JSON.
fn u32_list(v: &[u32]) -> String {
    let parts: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// The JSON report of `inspect`.
fn inspect_json(d: &Decoded, entries: &[Entry<'_>], tuned: bool) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            let arrays = e
                .uint32s(tuned)
                .map(|v| format!(", \"uint32s\": {}", u32_list(&v)))
                .unwrap_or_default();
            format!(
                "{{\"key_hex\": {}, \"len\": {}, \"crc32\": \"{:08x}\"{arrays}}}",
                json_str(&hex(e.key)),
                e.value.len(),
                crc32fast::hash(e.value)
            )
        })
        .collect();
    format!(
        "{{\"format\": {}, \"entries\": [{}], \"damage\": {}}}\n",
        json_str(d.format.name()),
        items.join(", "),
        damage_json(d)
    )
}

/// The damage of `d` as a JSON object.
fn damage_json(d: &Decoded) -> String {
    format!(
        "{{\"intact\": {}, \"entries_dropped\": {}, \"bytes_ignored\": {}, \"notes\": {}}}",
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
            json_path(path),
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
        s.push_str(": ");
        s.push_str(note);
    }
    s
}

/// The entries to write, borrowing from decoded entries.
fn entries_in<'a>(entries: &[Entry<'a>]) -> Vec<EntryIn<'a>> {
    entries
        .iter()
        .map(|e| EntryIn {
            key: e.key,
            value: e.value,
            kind: e.kind,
        })
        .collect()
}

/// Encodes `entries` as a whole file in `to` and writes it to `output` atomically; returns the
/// bytes written.
fn write_file(
    output: &Path,
    to: Format,
    entries: &[EntryIn<'_>],
    previous_generation: u64,
) -> Result<u64, Fail> {
    let params = WriteParams::next(previous_generation);
    let encoded = format::encode(to, entries, params)
        .map_err(|e| Fail(format!("cannot write {} as {to}: {e}", output.display())))?;
    replace_atomically(&PosixFs, output, &encoded.out.slices())
        .map_err(|e| Fail(format!("cannot write {}: {e}", output.display())))
}

/// Takes the cache lock of `output` when a file is there (a cache in use is written in place):
/// the same lock the library's flushes take, held until the write is done.
fn lock_in_place(output: &Path) -> Result<Option<CacheLock>, Fail> {
    if !output.is_file() {
        return Ok(None);
    }
    let fail = |e: std::io::Error| Fail(format!("cannot lock {}: {e}", output.display()));
    let side = SideFiles::open(&PosixFs, output).map_err(fail)?;
    side.lock(Some(DEFAULT_LOCK_TIMEOUT))
        .map(Some)
        .map_err(fail)
}

/// `convert IN OUT [--to FORMAT] [--tuned] [--json]`: rewrite every kept entry of IN to OUT,
/// atomically.
fn convert(args: &Args) -> Result<i32, Fail> {
    let (input, output) = (&args.paths[0], &args.paths[1]);
    let _lock = lock_in_place(output)?;
    let to = args.to.unwrap_or(DEFAULT_TO);
    let (bytes, d) = load(input)?;
    let mut entries = sorted_entries(&bytes, &d);
    apply_tuned(input, &mut entries, args.tuned)?;
    let entries = entries_in(&entries);
    let written = write_file(output, to, &entries, d.generation.unwrap_or(0))?;
    if args.json {
        emit(&format!(
            "{{\"input\": {}, \"output\": {}, \"from\": {}, \"to\": {}, \"entries_written\": {}, \
             \"bytes_written\": {written}, \"intact\": {}, \"entries_dropped\": {}, \
             \"bytes_ignored\": {}, \"notes\": {}}}\n",
            json_path(input),
            json_path(output),
            json_str(d.format.name()),
            json_str(to.name()),
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
            "{} ({}, {state}) -> {} ({to}): {}, {}",
            input.display(),
            d.format,
            output.display(),
            plural(entries.len() as u64, "entry", "entries"),
            plural(written, "byte", "bytes")
        );
    }
    Ok(status(&d))
}

/// One input of `merge`, read and decoded.
struct MergeInput {
    /// Where it was read from.
    path: PathBuf,
    /// The file's bytes.
    bytes: Vec<u8>,
    /// What decoding found.
    decoded: Decoded,
}

/// A key that two inputs hold with different values: the first input's value is kept.
struct Conflict {
    /// The key.
    key: Vec<u8>,
    /// The input whose value was kept.
    kept_from: usize,
    /// The input whose value was ignored.
    ignored_from: usize,
}

/// `merge OUT IN... [--to FORMAT] [--force] [--tuned] [--json]`: the union of the inputs' entries,
/// the first input winning on duplicate keys, written to OUT atomically.
fn merge(args: &Args) -> Result<i32, Fail> {
    let output = &args.paths[0];
    let _lock = lock_in_place(output)?;
    let paths = &args.paths[1..];
    let to = args.to.unwrap_or(DEFAULT_TO);
    let progress = Progress::new("mace-cache merge", false);
    let mut inputs = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let (bytes, decoded) = load(path)?;
        progress.line(|| {
            format!(
                "read {}/{}: {} ({}, {})",
                i + 1,
                paths.len(),
                path.display(),
                decoded.format,
                plural(bytes.len() as u64, "byte", "bytes")
            )
        });
        inputs.push(MergeInput {
            path: path.clone(),
            bytes,
            decoded,
        });
    }
    let mut per_input: Vec<Vec<Entry<'_>>> = inputs
        .iter()
        .map(|m| sorted_entries(&m.bytes, &m.decoded))
        .collect();
    for (m, entries) in inputs.iter().zip(per_input.iter_mut()) {
        apply_tuned(&m.path, entries, args.tuned)?;
    }
    let (platform_differs, mut notes) = check_platforms(&inputs, &per_input, args.force)?;

    let mut merged: BTreeMap<&[u8], (usize, &[u8], ValueKind)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let (mut same, mut kind_upgrades) = (0u64, 0u64);
    let mut new_entries = vec![0u64; inputs.len()];
    for (i, entries) in per_input.iter().enumerate() {
        for e in entries {
            match merged.entry(e.key) {
                MapEntry::Vacant(v) => {
                    v.insert((i, e.value, e.kind));
                    new_entries[i] += 1;
                }
                MapEntry::Occupied(mut o) => {
                    let (first_input, value, kind) = o.get_mut();
                    if *value != e.value {
                        conflicts.push(Conflict {
                            key: e.key.to_vec(),
                            kept_from: *first_input,
                            ignored_from: i,
                        });
                    } else {
                        same += 1;
                        // Format A cannot record that a value is a uint32 array; a file that did
                        // record it tells how the same bytes are meant.
                        if *kind != e.kind && e.kind == ValueKind::U32s {
                            *kind = ValueKind::U32s;
                            kind_upgrades += 1;
                        }
                    }
                }
            }
        }
    }
    if kind_upgrades > 0 {
        notes.push(format!(
            "{} the same bytes as uint32s in one input and as plain bytes in another: \
             kept them as uint32s (pass --tuned to merge mace-1.0 tuned-parameter files)",
            plural(kind_upgrades, "key held", "keys held")
        ));
    }
    let entries: Vec<EntryIn<'_>> = merged
        .iter()
        .map(|(key, (_, value, kind))| EntryIn {
            key,
            value,
            kind: *kind,
        })
        .collect();
    let written = write_file(output, to, &entries, 0)?;
    progress.line(|| format!("wrote {} ({written} bytes)", output.display()));

    for m in inputs.iter().filter(|m| !m.decoded.damage.intact) {
        notes.push(format!(
            "{} is damaged ({}): {}; merged what verified",
            m.path.display(),
            m.decoded.format,
            damage_summary(&m.decoded)
        ));
    }
    let code = if inputs.iter().all(|m| m.decoded.damage.intact) {
        EXIT_INTACT
    } else {
        EXIT_DAMAGED
    };
    let report = MergeReport {
        output,
        to,
        entries: entries.len(),
        written,
        inputs: &inputs,
        per_input: &per_input,
        new_entries: &new_entries,
        same,
        conflicts: &conflicts,
        platform_differs,
        notes: &notes,
    };
    emit(&if args.json {
        report.json()
    } else {
        report.text()?
    })?;
    Ok(code)
}

/// Checks that the inputs' platform-info values agree: a difference is refused unless `force`.
/// Returns whether they differ and notes on inputs that hold entries but no platform info.
fn check_platforms(
    inputs: &[MergeInput],
    per_input: &[Vec<Entry<'_>>],
    force: bool,
) -> Result<(bool, Vec<String>), Fail> {
    let platforms: Vec<Option<&[u8]>> = per_input
        .iter()
        .map(|es| {
            es.iter()
                .find(|e| e.key == PLATFORM_INFO_KEY)
                .map(|e| e.value)
        })
        .collect();
    let mut notes = Vec::new();
    let Some((first, reference)) = platforms
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.map(|v| (i, v)))
    else {
        return Ok((false, notes));
    };
    let mut differs = false;
    for (i, p) in platforms.iter().enumerate() {
        match p {
            Some(v) if *v != reference => {
                differs = true;
                let (a, b) = (inputs[first].path.display(), inputs[i].path.display());
                if !force {
                    return Err(Fail(format!(
                        "platform info differs: {a} has \"{}\" but {b} has \"{}\": their binaries \
                         were built for different GPUs or drivers (--force merges anyway, keeping {a}'s)",
                        printable(reference),
                        printable(v)
                    )));
                }
                notes.push(format!(
                    "platform info differs (--force): kept {a}'s \"{}\", ignored {b}'s \"{}\"",
                    printable(reference),
                    printable(v)
                ));
            }
            None if !per_input[i].is_empty() => notes.push(format!(
                "{} has no platform-info entry: its entries were merged without a platform check",
                inputs[i].path.display()
            )),
            _ => {}
        }
    }
    Ok((differs, notes))
}

/// What `merge` did, for its text and JSON reports.
struct MergeReport<'r, 'a> {
    /// The file written.
    output: &'r Path,
    /// Its format.
    to: Format,
    /// Entries written.
    entries: usize,
    /// Bytes written.
    written: u64,
    /// The inputs, in the order given.
    inputs: &'r [MergeInput],
    /// Each input's entries.
    per_input: &'r [Vec<Entry<'a>>],
    /// Each input's entries that no earlier input held.
    new_entries: &'r [u64],
    /// Duplicate keys whose values were the same.
    same: u64,
    /// Duplicate keys whose values differed.
    conflicts: &'r [Conflict],
    /// Whether the platform info differed (only with `--force`).
    platform_differs: bool,
    /// Notes on damaged inputs and the platform check.
    notes: &'r [String],
}

impl MergeReport<'_, '_> {
    /// The human-readable report.
    fn text(&self) -> Result<String, Fail> {
        let mut s = String::new();
        writeln!(
            s,
            "merged {} into {} ({}): {}, {}",
            plural(self.inputs.len() as u64, "file", "files"),
            self.output.display(),
            self.to,
            plural(self.entries as u64, "entry", "entries"),
            plural(self.written, "byte", "bytes")
        )?;
        for (i, m) in self.inputs.iter().enumerate() {
            let state = if m.decoded.damage.intact {
                "intact".to_string()
            } else {
                format!(
                    "damaged, {} dropped",
                    plural(m.decoded.damage.entries_dropped, "entry", "entries")
                )
            };
            writeln!(
                s,
                "  {}: {}, {state}, {}, {} new",
                m.path.display(),
                m.decoded.format,
                plural(self.per_input[i].len() as u64, "entry", "entries"),
                self.new_entries[i]
            )?;
        }
        if self.same > 0 {
            writeln!(
                s,
                "{} held by several inputs with the same value (written once)",
                plural(self.same, "key", "keys")
            )?;
        }
        if !self.conflicts.is_empty() {
            writeln!(
                s,
                "{} with different values (the first input given wins):",
                plural(
                    self.conflicts.len() as u64,
                    "duplicate key",
                    "duplicate keys"
                )
            )?;
            for c in self.conflicts {
                writeln!(
                    s,
                    "  \"{}\": kept {}'s value, ignored {}'s",
                    printable(&c.key),
                    self.inputs[c.kept_from].path.display(),
                    self.inputs[c.ignored_from].path.display()
                )?;
            }
        }
        for note in self.notes {
            writeln!(s, "note: {note}")?;
        }
        Ok(s)
    }

    /// The JSON report: one object on one line.
    fn json(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "{{\"path\": {}, \"format\": {}, \"intact\": {}, \"entries\": {}, \
                     \"entries_dropped\": {}, \"new_entries\": {}, \"notes\": {}}}",
                    json_path(&m.path),
                    json_str(m.decoded.format.name()),
                    m.decoded.damage.intact,
                    self.per_input[i].len(),
                    m.decoded.damage.entries_dropped,
                    self.new_entries[i],
                    json_str_array(&m.decoded.damage.notes)
                )
            })
            .collect();
        let conflicts: Vec<String> = self
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "{{\"key\": {}, \"key_hex\": {}, \"kept_from\": {}, \"ignored_from\": {}}}",
                    json_str(&String::from_utf8_lossy(&c.key)),
                    json_str(&hex(&c.key)),
                    json_path(&self.inputs[c.kept_from].path),
                    json_path(&self.inputs[c.ignored_from].path)
                )
            })
            .collect();
        format!(
            "{{\"output\": {}, \"format\": {}, \"entries_written\": {}, \"bytes_written\": {}, \
             \"inputs\": [{}], \"duplicates_same_value\": {}, \"conflicts\": [{}], \
             \"platform_info_differs\": {}, \"notes\": {}}}\n",
            json_path(self.output),
            json_str(self.to.name()),
            self.entries,
            self.written,
            inputs.join(", "),
            self.same,
            conflicts.join(", "),
            self.platform_differs,
            json_str_array(self.notes)
        )
    }
}

/// The C++ keywords (C++11), which cannot name a function.
const CXX_KEYWORDS: &[&str] = &[
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "char16_t",
    "char32_t",
    "class",
    "compl",
    "const",
    "const_cast",
    "constexpr",
    "continue",
    "decltype",
    "default",
    "delete",
    "do",
    "double",
    "dynamic_cast",
    "else",
    "enum",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "static_cast",
    "struct",
    "switch",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "wchar_t",
    "while",
    "xor",
    "xor_eq",
];

/// Checks that `name`, given to `opt`, can name a function in the generated source.
fn check_identifier(opt: &str, name: &str) -> Result<(), Fail> {
    let bad = |why: &str| Fail(format!("{opt} '{}' {why}", name.escape_debug()));
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad(
            "is not a C identifier (ASCII letters, digits and _, not starting with a digit)",
        ));
    }
    if CXX_KEYWORDS.contains(&name) {
        return Err(bad("is a C++ keyword"));
    }
    let second = name.chars().nth(1);
    if name.starts_with("__") || (name.starts_with('_') && second.is_some_and(char::is_uppercase)) {
        return Err(bad(
            "is reserved for the compiler (leading __ or _ and a capital)",
        ));
    }
    if name == "kData" || name == "size_t" {
        return Err(bad("clashes with a name the generated source uses"));
    }
    Ok(())
}

/// `export-c IN OUT.cc [--load-func NAME] [--size-func NAME] [--json]`: C++ source holding IN's
/// exact bytes.
fn export_c(args: &Args) -> Result<i32, Fail> {
    let (input, output) = (&args.paths[0], &args.paths[1]);
    let load_func = args.load_func.as_deref().unwrap_or(DEFAULT_LOAD_FUNC);
    let size_func = args.size_func.as_deref().unwrap_or(DEFAULT_SIZE_FUNC);
    check_identifier("--load-func", load_func)?;
    check_identifier("--size-func", size_func)?;
    if load_func == size_func {
        return Err(Fail(format!(
            "--load-func and --size-func are both '{load_func}': the two functions need different names"
        )));
    }
    let (bytes, d) = load(input)?;
    let source = c_source(input, &bytes, &d, load_func, size_func)?;
    replace_atomically(&PosixFs, output, &[source.as_bytes()])
        .map_err(|e| Fail(format!("cannot write {}: {e}", output.display())))?;
    // A 0-byte file is what MACE's own generator emits when there is no binary: not an error here.
    let code = if d.format == Format::Empty {
        EXIT_INTACT
    } else {
        status(&d)
    };
    let crc = crc32fast::hash(&bytes);
    if args.json {
        emit(&format!(
            "{{\"input\": {}, \"output\": {}, \"format\": {}, \"bytes\": {}, \"crc32\": \"{crc:08x}\", \
             \"load_func\": {}, \"size_func\": {}, \"intact\": {}, \"notes\": {}}}\n",
            json_path(input),
            json_path(output),
            json_str(d.format.name()),
            bytes.len(),
            json_str(load_func),
            json_str(size_func),
            d.damage.intact,
            json_str_array(&d.damage.notes)
        ))?;
    } else {
        let state = if d.damage.intact || d.format == Format::Empty {
            String::new()
        } else {
            format!(" (damaged, exported as it is: {})", damage_summary(&d))
        };
        eprintln!(
            "{} ({}, {}, CRC-32 {crc:08x}){state} -> {}: mace::{load_func}(), mace::{size_func}()",
            input.display(),
            d.format,
            plural(bytes.len() as u64, "byte", "bytes"),
            output.display()
        );
    }
    Ok(code)
}

/// The C++11 source that `export-c` writes for `bytes`.
fn c_source(
    input: &Path,
    bytes: &[u8],
    d: &Decoded,
    load_func: &str,
    size_func: &str,
) -> Result<String, Fail> {
    let name = input
        .file_name()
        .map(|n| comment_safe(&n.to_string_lossy()))
        .unwrap_or_default();
    let mut s = String::with_capacity(bytes.len() * 6 + 1024);
    writeln!(
        s,
        "// Generated by mace-cache export-c from {name}: {}, {}, CRC-32 {:08x}.",
        d.format,
        plural(bytes.len() as u64, "byte", "bytes"),
        crc32fast::hash(bytes)
    )?;
    writeln!(
        s,
        "// Do not edit: regenerate it from the cache file. The bytes are the file exactly as it is.\n\
         // Hand them to MACE with SetOpenCLBinary(mace::{load_func}(), mace::{size_func}()) for a\n\
         // compiled-program cache, or SetOpenCLParameter(...) for tuned OpenCL parameters.\n\
         \n\
         #include <stddef.h>\n\
         \n\
         namespace mace {{\n\
         \n\
         const unsigned char *{load_func}();\n\
         size_t {size_func}();\n"
    )?;
    if bytes.is_empty() {
        s.push_str(
            "// The file is empty: a zero-size array is not valid C++, so one unused byte.\n",
        );
        s.push_str("static const unsigned char kData[1] = {0x00};\n\n");
    } else {
        writeln!(s, "static const unsigned char kData[{}] = {{", bytes.len())?;
        for line in bytes.chunks(16) {
            s.push_str("   ");
            for b in line {
                write!(s, " 0x{b:02x},")?;
            }
            s.push('\n');
        }
        s.push_str("};\n\n");
    }
    let size = if bytes.is_empty() {
        "0"
    } else {
        "sizeof(kData)"
    };
    write!(
        s,
        "const unsigned char *{load_func}() {{ return kData; }}\n\
         \n\
         size_t {size_func}() {{ return {size}; }}\n\
         \n\
         }}  // namespace mace\n"
    )?;
    Ok(s)
}

/// The format `repair` writes by default: the checked format of the input's MACE generation.
fn repair_format(from: Format) -> Format {
    match from {
        Format::Mace10 | Format::Checked10 => Format::Checked10,
        Format::Mace11 | Format::Checked11 | Format::Empty => Format::Checked11,
    }
}

/// Keeps `path`'s current file as `backup` (replacing an older backup) while `path` stays in
/// place: a hard link renamed over the backup, or a plain rename where links are not supported.
fn keep_backup(path: &Path, backup: &Path) -> Result<(), Fail> {
    let fail = |e: std::io::Error| {
        Fail(format!(
            "cannot keep {} as {}: {e}",
            path.display(),
            backup.display()
        ))
    };
    let tmp = sibling(backup, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    match std::fs::hard_link(path, &tmp) {
        Ok(()) => std::fs::rename(&tmp, backup).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        }),
        Err(_) => std::fs::rename(path, backup).map_err(fail),
    }
}

/// `repair IN [OUT] [--to FORMAT] [--json]`: every entry that verifies, written as a fresh file
/// (in place, with the original kept as `IN.bak`, when OUT is not given).
fn repair(args: &Args) -> Result<i32, Fail> {
    let input = &args.paths[0];
    let _lock = lock_in_place(args.paths.get(1).unwrap_or(input))?;
    let (bytes, d) = load(input)?;
    let to = args.to.unwrap_or_else(|| repair_format(d.format));
    let entries = sorted_entries(&bytes, &d);
    let entries = entries_in(&entries);
    let (output, backup) = match args.paths.get(1) {
        Some(out) => (out.clone(), None),
        None => (input.clone(), Some(sibling(input, ".bak"))),
    };
    // Encode before touching anything, so an encoding error leaves every file as it was.
    let encoded = format::encode(to, &entries, WriteParams::next(d.generation.unwrap_or(0)))
        .map_err(|e| Fail(format!("cannot write {} as {to}: {e}", output.display())))?;
    if let Some(b) = &backup {
        keep_backup(input, b)?;
    }
    let written = replace_atomically(&PosixFs, &output, &encoded.out.slices())
        .map_err(|e| Fail(format!("cannot write {}: {e}", output.display())))?;
    if args.json {
        emit(&format!(
            "{{\"input\": {}, \"output\": {}, \"backup\": {}, \"format\": {}, \"to\": {}, \
             \"intact\": {}, \"entries_kept\": {}, \"entries_dropped\": {}, \"bytes_ignored\": {}, \
             \"bytes_written\": {written}, \"notes\": {}}}\n",
            json_path(input),
            json_path(&output),
            backup.as_deref().map_or("null".to_string(), json_path),
            json_str(d.format.name()),
            json_str(to.name()),
            d.damage.intact,
            entries.len(),
            d.damage.entries_dropped,
            d.damage.bytes_ignored,
            json_str_array(&d.damage.notes)
        ))?;
    } else {
        let mut s = String::new();
        let state = if d.damage.intact { "intact" } else { "damaged" };
        writeln!(
            s,
            "{}: {}, {state}: {} kept, {} dropped, {} ignored",
            input.display(),
            d.format,
            plural(entries.len() as u64, "entry", "entries"),
            d.damage.entries_dropped,
            plural(d.damage.bytes_ignored, "byte", "bytes")
        )?;
        for note in &d.damage.notes {
            writeln!(s, "  - {note}")?;
        }
        write!(
            s,
            "wrote {} ({to}, {}, {})",
            output.display(),
            plural(entries.len() as u64, "entry", "entries"),
            plural(written, "byte", "bytes")
        )?;
        match &backup {
            Some(b) => writeln!(s, "; the original is kept as {}", b.display())?,
            None => s.push('\n'),
        }
        emit(&s)?;
    }
    Ok(status(&d))
}

/// One OpenCL program the demo builds: MACE's program name, its source and its build options.
struct Kernel {
    /// The program name (MACE's key prefix).
    name: &'static str,
    /// The OpenCL C source, after [`KERNEL_COMMON`].
    source: &'static str,
    /// The build options, sorted as MACE sorts them.
    options: &'static str,
}

/// The definitions every demo kernel starts with, as MACE's `common.h` provides them.
const KERNEL_COMMON: &str = r#"
#define VEC_DATA_TYPE_STR(data_type, size) data_type##size
#define VEC_DATA_TYPE(data_type, size) VEC_DATA_TYPE_STR(data_type, size)
#define DATA_TYPE4 VEC_DATA_TYPE(DATA_TYPE, 4)
#define CMD_TYPE_STR(cmd, type) cmd##type
#define CMD_TYPE(cmd, type) CMD_TYPE_STR(cmd, type)

inline DATA_TYPE4 do_activation(DATA_TYPE4 in, const float relux_max_limit) {
#if defined(USE_RELU)
  return fmax(in, (DATA_TYPE4)0);
#elif defined(USE_RELUX)
  return clamp(in, (DATA_TYPE4)0, (DATA_TYPE4)relux_max_limit);
#elif defined(USE_TANH)
  return tanh(in);
#elif defined(USE_SIGMOID)
  return (DATA_TYPE4)1 / ((DATA_TYPE4)1 + exp(-in));
#else
  return in;
#endif
}
"#;

/// The programs the demo builds: small, but shaped like MACE's buffer kernels.
const KERNELS: &[Kernel] = &[
    Kernel {
        name: "conv_2d_1x1",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELU -Dconv_2d_1x1=conv_2d_1x1",
        source: r#"
__kernel void conv_2d_1x1(__global const DATA_TYPE *input,   /* [in_channels, pixels] */
                          __global const DATA_TYPE *filter,  /* [out_channels, in_channels] */
#ifdef BIAS
                          __global const DATA_TYPE *bias,
#endif
                          __global DATA_TYPE *output,
                          const int in_channels,
                          const int out_channels,
                          const int pixels,
                          const float relux_max_limit) {
  const int p = get_global_id(0) << 2;
  const int oc = get_global_id(1) << 2;
  if (p >= pixels || oc >= out_channels) return;
#ifdef BIAS
  DATA_TYPE4 acc0 = (DATA_TYPE4)bias[oc], acc1 = (DATA_TYPE4)bias[oc + 1];
  DATA_TYPE4 acc2 = (DATA_TYPE4)bias[oc + 2], acc3 = (DATA_TYPE4)bias[oc + 3];
#else
  DATA_TYPE4 acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
#endif
  for (int ic = 0; ic < in_channels; ++ic) {
    const DATA_TYPE4 in = vload4(0, input + ic * pixels + p);
    acc0 = mad(in, (DATA_TYPE4)filter[oc * in_channels + ic], acc0);
    acc1 = mad(in, (DATA_TYPE4)filter[(oc + 1) * in_channels + ic], acc1);
    acc2 = mad(in, (DATA_TYPE4)filter[(oc + 2) * in_channels + ic], acc2);
    acc3 = mad(in, (DATA_TYPE4)filter[(oc + 3) * in_channels + ic], acc3);
  }
  vstore4(do_activation(acc0, relux_max_limit), 0, output + oc * pixels + p);
  vstore4(do_activation(acc1, relux_max_limit), 0, output + (oc + 1) * pixels + p);
  vstore4(do_activation(acc2, relux_max_limit), 0, output + (oc + 2) * pixels + p);
  vstore4(do_activation(acc3, relux_max_limit), 0, output + (oc + 3) * pixels + p);
}
"#,
    },
    Kernel {
        name: "conv_2d_3x3",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELUX -Dconv_2d_3x3=conv_2d_3x3",
        source: r#"
__kernel void conv_2d_3x3(__global const DATA_TYPE *input,   /* [in_channels, height, width] */
                          __global const DATA_TYPE *filter,  /* [out_channels, in_channels, 3, 3] */
#ifdef BIAS
                          __global const DATA_TYPE *bias,
#endif
                          __global DATA_TYPE *output,
                          const int in_channels,
                          const int in_height,
                          const int in_width,
                          const int out_height,
                          const int out_width,
                          const int stride,
                          const int padding,
                          const float relux_max_limit) {
  const int ow = get_global_id(0) << 2;
  const int oh = get_global_id(1);
  const int oc = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
#ifdef BIAS
  DATA_TYPE4 acc = (DATA_TYPE4)bias[oc];
#else
  DATA_TYPE4 acc = 0;
#endif
  const int ih0 = oh * stride - padding;
  for (int ic = 0; ic < in_channels; ++ic) {
    __global const DATA_TYPE *in = input + ic * in_height * in_width;
    __global const DATA_TYPE *f = filter + (oc * in_channels + ic) * 9;
    for (int kh = 0; kh < 3; ++kh) {
      const int ih = ih0 + kh;
      if (ih < 0 || ih >= in_height) continue;
      for (int kw = 0; kw < 3; ++kw) {
        DATA_TYPE4 v;
        for (int i = 0; i < 4; ++i) {
          const int iw = (ow + i) * stride - padding + kw;
          ((DATA_TYPE *)&v)[i] = (iw < 0 || iw >= in_width) ? 0 : in[ih * in_width + iw];
        }
        acc = mad(v, (DATA_TYPE4)f[kh * 3 + kw], acc);
      }
    }
  }
  acc = do_activation(acc, relux_max_limit);
  __global DATA_TYPE *out = output + (oc * out_height + oh) * out_width + ow;
  if (ow + 3 < out_width) {
    vstore4(acc, 0, out);
  } else {
    for (int i = 0; ow + i < out_width; ++i) out[i] = ((DATA_TYPE *)&acc)[i];
  }
}
"#,
    },
    Kernel {
        name: "depthwise_conv2d",
        options: "-DBIAS -DCMD_DATA_TYPE=f -DDATA_TYPE=float -DUSE_RELU -Ddepthwise_conv2d=depthwise_conv2d",
        source: r#"
__kernel void depthwise_conv2d(__global const DATA_TYPE *input,   /* [channels, height, width] */
                               __global const DATA_TYPE *filter,  /* [channels, kh, kw] */
#ifdef BIAS
                               __global const DATA_TYPE *bias,
#endif
                               __global DATA_TYPE *output,
                               const int in_height,
                               const int in_width,
                               const int out_height,
                               const int out_width,
                               const int filter_height,
                               const int filter_width,
                               const int stride,
                               const int padding,
                               const int dilation,
                               const float relux_max_limit) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
#ifdef BIAS
  DATA_TYPE acc = bias[c];
#else
  DATA_TYPE acc = 0;
#endif
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  __global const DATA_TYPE *f = filter + c * filter_height * filter_width;
  for (int kh = 0; kh < filter_height; ++kh) {
    const int ih = oh * stride - padding + kh * dilation;
    if (ih < 0 || ih >= in_height) continue;
    for (int kw = 0; kw < filter_width; ++kw) {
      const int iw = ow * stride - padding + kw * dilation;
      if (iw < 0 || iw >= in_width) continue;
      acc = mad(in[ih * in_width + iw], f[kh * filter_width + kw], acc);
    }
  }
  output[(c * out_height + oh) * out_width + ow] =
      do_activation((DATA_TYPE4)acc, relux_max_limit).x;
}
"#,
    },
    Kernel {
        name: "eltwise",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DELTWISE_TYPE=0 -Deltwise=eltwise",
        source: r#"
__kernel void eltwise(__global const DATA_TYPE *input0,
                      __global const DATA_TYPE *input1,
                      const float coeff0,
                      const float coeff1,
                      __global DATA_TYPE *output,
                      const int size) {
  const int i = get_global_id(0) << 2;
  if (i >= size) return;
  const DATA_TYPE4 a = vload4(0, input0 + i);
  const DATA_TYPE4 b = vload4(0, input1 + i);
  DATA_TYPE4 out;
#if ELTWISE_TYPE == 0
  out = mad((DATA_TYPE4)coeff0, a, (DATA_TYPE4)coeff1 * b);
#elif ELTWISE_TYPE == 1
  out = a - b;
#elif ELTWISE_TYPE == 2
  out = a * b;
#elif ELTWISE_TYPE == 3
  out = a / b;
#elif ELTWISE_TYPE == 4
  out = fmin(a, b);
#elif ELTWISE_TYPE == 5
  out = fmax(a, b);
#else
  out = (a - b) * (a - b);
#endif
  vstore4(out, 0, output + i);
}
"#,
    },
    Kernel {
        name: "pooling",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DPOOL_AVG -Dpooling=pooling",
        source: r#"
__kernel void pooling(__global const DATA_TYPE *input,   /* [channels, height, width] */
                      __global DATA_TYPE *output,
                      const int in_height,
                      const int in_width,
                      const int out_height,
                      const int out_width,
                      const int pool_size,
                      const int stride,
                      const int padding) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  const int h0 = max(oh * stride - padding, 0);
  const int w0 = max(ow * stride - padding, 0);
  const int h1 = min(oh * stride - padding + pool_size, in_height);
  const int w1 = min(ow * stride - padding + pool_size, in_width);
#ifdef POOL_AVG
  DATA_TYPE acc = 0;
  for (int h = h0; h < h1; ++h)
    for (int w = w0; w < w1; ++w) acc += in[h * in_width + w];
  const int count = max((h1 - h0) * (w1 - w0), 1);
  output[(c * out_height + oh) * out_width + ow] = acc / count;
#else
  DATA_TYPE acc = -MAXFLOAT;
  for (int h = h0; h < h1; ++h)
    for (int w = w0; w < w1; ++w) acc = fmax(acc, in[h * in_width + w]);
  output[(c * out_height + oh) * out_width + ow] = acc;
#endif
}
"#,
    },
    Kernel {
        name: "softmax",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dsoftmax=softmax",
        source: r#"
__kernel void softmax(__global const DATA_TYPE *input,   /* [rows, classes] */
                      __global DATA_TYPE *output,
                      const int classes,
                      __local float *scratch) {
  const int row = get_group_id(0);
  const int lid = get_local_id(0);
  const int lsize = get_local_size(0);
  __global const DATA_TYPE *in = input + row * classes;
  __global DATA_TYPE *out = output + row * classes;
  float m = -MAXFLOAT;
  for (int i = lid; i < classes; i += lsize) m = fmax(m, in[i]);
  scratch[lid] = m;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = lsize >> 1; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  m = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  float sum = 0;
  for (int i = lid; i < classes; i += lsize) sum += exp(in[i] - m);
  scratch[lid] = sum;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = lsize >> 1; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float inv = 1.0f / scratch[0];
  for (int i = lid; i < classes; i += lsize) out[i] = exp(in[i] - m) * inv;
}
"#,
    },
    Kernel {
        name: "matmul",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -DTILE_SIZE=16 -Dmatmul=matmul",
        source: r#"
__kernel void matmul(__global const DATA_TYPE *a,   /* [m, k] */
                     __global const DATA_TYPE *b,   /* [k, n] */
                     __global DATA_TYPE *c,         /* [m, n] */
                     const int m,
                     const int n,
                     const int k) {
  __local DATA_TYPE ta[TILE_SIZE][TILE_SIZE];
  __local DATA_TYPE tb[TILE_SIZE][TILE_SIZE];
  const int row = get_global_id(1);
  const int col = get_global_id(0);
  const int lr = get_local_id(1);
  const int lc = get_local_id(0);
  DATA_TYPE acc = 0;
  for (int t = 0; t < k; t += TILE_SIZE) {
    ta[lr][lc] = (row < m && t + lc < k) ? a[row * k + t + lc] : 0;
    tb[lr][lc] = (col < n && t + lr < k) ? b[(t + lr) * n + col] : 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < TILE_SIZE; ++i) acc = mad(ta[lr][i], tb[i][lc], acc);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (row < m && col < n) c[row * n + col] = acc;
}
"#,
    },
    Kernel {
        name: "resize_bilinear",
        options: "-DCMD_DATA_TYPE=f -DDATA_TYPE=float -Dresize_bilinear_nocache=resize_bilinear_nocache",
        source: r#"
__kernel void resize_bilinear_nocache(__global const DATA_TYPE *input,  /* [channels, h, w] */
                                      __global DATA_TYPE *output,
                                      const float height_scale,
                                      const float width_scale,
                                      const int in_height,
                                      const int in_width,
                                      const int out_height,
                                      const int out_width,
                                      const int half_pixel_centers) {
  const int ow = get_global_id(0);
  const int oh = get_global_id(1);
  const int c = get_global_id(2);
  if (ow >= out_width || oh >= out_height) return;
  const float h_in = half_pixel_centers ? ((float)oh + 0.5f) * height_scale - 0.5f
                                        : (float)oh * height_scale;
  const float w_in = half_pixel_centers ? ((float)ow + 0.5f) * width_scale - 0.5f
                                        : (float)ow * width_scale;
  const int h_lower = max(0, (int)floor(h_in));
  const int w_lower = max(0, (int)floor(w_in));
  const int h_upper = min(in_height - 1, h_lower + 1);
  const int w_upper = min(in_width - 1, w_lower + 1);
  const float h_lerp = h_in - floor(h_in);
  const float w_lerp = w_in - floor(w_in);
  __global const DATA_TYPE *in = input + c * in_height * in_width;
  const DATA_TYPE top_left = in[h_lower * in_width + w_lower];
  const DATA_TYPE top_right = in[h_lower * in_width + w_upper];
  const DATA_TYPE bottom_left = in[h_upper * in_width + w_lower];
  const DATA_TYPE bottom_right = in[h_upper * in_width + w_upper];
  const DATA_TYPE top = mad(top_right - top_left, w_lerp, top_left);
  const DATA_TYPE bottom = mad(bottom_right - bottom_left, w_lerp, bottom_left);
  output[(c * out_height + oh) * out_width + ow] = mad(bottom - top, h_lerp, top);
}
"#,
    },
];

/// The program whose cached binary the demo damages (by index into [`KERNELS`]).
const DAMAGED_KERNEL: usize = 3;

/// One program's results in the demo.
struct DemoRow {
    /// The program.
    kernel: &'static Kernel,
    /// Size of its cached binary.
    bytes: usize,
    /// Build time from source on the first start, in milliseconds.
    cold_ms: Option<f64>,
    /// Build time from the cached binary on the second start, in milliseconds.
    warm_ms: Option<f64>,
    /// After the damage: whether it came from the cache (OpenCL) or was kept (storage only).
    survived: bool,
    /// Build time after the damage, in milliseconds.
    after_ms: Option<f64>,
}

/// The OpenCL implementation the demo ran on.
struct ClInfo {
    /// The library loaded.
    library: String,
    /// The device's name.
    device: String,
    /// The platform's name and version.
    platform: String,
}

/// What reopening the damaged file found.
struct DemoDamage {
    /// The file offset of the flipped byte.
    offset: usize,
    /// The detected format.
    format: Format,
    /// Entries kept.
    kept: usize,
    /// Entries dropped.
    dropped: u64,
    /// The decoder's notes.
    notes: Vec<String>,
}

/// What the demo found.
struct DemoReport {
    /// The directory it worked in.
    dir: PathBuf,
    /// The cache file.
    file: PathBuf,
    /// The OpenCL implementation, or why the OpenCL part was skipped.
    opencl: Result<ClInfo, String>,
    /// One row per program.
    rows: Vec<DemoRow>,
    /// The damage report.
    damage: DemoDamage,
    /// The cache file's state at the end.
    final_state: String,
    /// Results that were not the expected ones.
    problems: Vec<String>,
}

/// `demo [--dir DIR] [--opencl-library LIB] [--json]`: cold and warm builds, then damage.
fn demo(args: &Args) -> Result<i32, Fail> {
    // PoCL's own kernel cache would make the cold builds warm.
    if std::env::var_os("POCL_KERNEL_CACHE").is_none() {
        std::env::set_var("POCL_KERNEL_CACHE", "0");
    }
    let progress = Progress::new("mace-cache demo", true);
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (temp_demo_dir(), true),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Fail(format!("cannot create {}: {e}", dir.display())))?;
    let file = dir.join(DEMO_FILE);
    for suffix in ["", ".inflight", ".crashloop", ".corrupt", ".tmp"] {
        let p = sibling(&file, suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Fail(format!("cannot remove {}: {e}", p.display())))
            }
            _ => {}
        }
    }
    let result = run_demo(args, &dir, &file, &progress);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    emit(&if args.json {
        demo_json(&report)
    } else {
        demo_text(&report)?
    })?;
    Ok(if report.problems.is_empty() {
        EXIT_INTACT
    } else {
        EXIT_DAMAGED
    })
}

/// A fresh directory name under the system's temporary directory.
fn temp_demo_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("mace-cache-demo-{}-{nanos}", std::process::id()))
}

/// Runs the OpenCL demo when an OpenCL device is available, else the storage demo.
fn run_demo(args: &Args, dir: &Path, file: &Path, progress: &Progress) -> Result<DemoReport, Fail> {
    let libs: Vec<&str> = match &args.opencl_library {
        Some(l) => vec![l.as_str()],
        None => DEFAULT_LIBRARIES.to_vec(),
    };
    let loaded = OpenCl::load(&libs).and_then(|cl| match cl.first_device() {
        Ok((ctx, dev)) => Ok((cl, ctx, dev)),
        Err(e) => Err(format!("{} has no usable device ({e})", cl.library)),
    });
    let mut report = match loaded {
        Ok((cl, ctx, dev)) => {
            let r = demo_opencl(args, file, progress, &cl, ctx, dev);
            cl.release_context(ctx);
            r?
        }
        Err(why) => {
            progress.line(|| format!("OpenCL part skipped: {why}"));
            demo_storage(file, progress, why)?
        }
    };
    report.dir = dir.to_path_buf();
    Ok(report)
}

/// The source the demo builds for `k`.
fn kernel_source(k: &Kernel) -> String {
    format!("{KERNEL_COMMON}{}", k.source)
}

/// Builds one program through the cache: the time taken in milliseconds, and whether it came
/// from the cached binary.
fn timed_build(
    pc: &ProgramCache,
    cl: &OpenCl,
    ctx: mace_storage::ffi::opencl::Context,
    dev: mace_storage::ffi::opencl::Device,
    k: &Kernel,
) -> Result<(f64, bool), Fail> {
    let source = kernel_source(k);
    let hits = pc.stats().hits;
    let t = Instant::now();
    let program = pc
        .build(ctx, dev, k.name, source.as_bytes(), k.options)
        .map_err(|e| Fail(format!("cannot build {}: {e}", k.name)))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    cl.release(program);
    Ok((ms, pc.stats().hits > hits))
}

/// Flips one byte in the middle of the cached binary of `key` in `file` and decodes the result.
fn damage_entry(file: &Path, key: &[u8], name: &str) -> Result<DemoDamage, Fail> {
    let mut bytes =
        std::fs::read(file).map_err(|e| Fail(format!("cannot read {}: {e}", file.display())))?;
    let d = format::decode(&bytes).map_err(|e| Fail(format!("{}: {e}", file.display())))?;
    let offset = d
        .entries
        .iter()
        .find(|e| &bytes[e.key.clone()] == key)
        .and_then(|e| match &e.value {
            ValueRef::Slice(r) if !r.is_empty() => Some(r.start + r.len() / 2),
            _ => None,
        })
        .ok_or_else(|| Fail(format!("the cache holds no binary of {name} to damage")))?;
    bytes[offset] ^= 0x5a;
    std::fs::write(file, &bytes)
        .map_err(|e| Fail(format!("cannot write {}: {e}", file.display())))?;
    let d = format::decode(&bytes).map_err(|e| Fail(format!("{}: {e}", file.display())))?;
    Ok(DemoDamage {
        offset,
        format: d.format,
        kept: d.entries.len(),
        dropped: d.damage.entries_dropped,
        notes: d.damage.notes,
    })
}

/// A one-line description of the cache file as it is now.
fn file_state(file: &Path) -> Result<String, Fail> {
    let (bytes, d) = load(file)?;
    Ok(format!(
        "{}, {}, {}, {}",
        d.format,
        if d.damage.intact { "intact" } else { "damaged" },
        plural(d.entries.len() as u64, "entry", "entries"),
        plural(bytes.len() as u64, "byte", "bytes")
    ))
}

/// The OpenCL demo: cold builds, warm builds, one damaged binary, rebuild.
fn demo_opencl(
    args: &Args,
    file: &Path,
    progress: &Progress,
    cl: &OpenCl,
    ctx: mace_storage::ffi::opencl::Context,
    dev: mace_storage::ffi::opencl::Device,
) -> Result<DemoReport, Fail> {
    let opts = CacheOptions {
        app_version: format!("mace-cache demo {}", env!("CARGO_PKG_VERSION")),
        opencl_library: args.opencl_library.clone(),
        ..CacheOptions::default()
    };
    let open = || {
        ProgramCache::open(file, opts.clone())
            .map_err(|e| Fail(format!("cannot open the program cache: {e}")))
    };
    let mut problems = Vec::new();
    let mut rows: Vec<DemoRow> = KERNELS
        .iter()
        .map(|kernel| DemoRow {
            kernel,
            bytes: 0,
            cold_ms: None,
            warm_ms: None,
            survived: false,
            after_ms: None,
        })
        .collect();

    let pc = open()?;
    let fp = pc
        .fingerprint(cl, dev)
        .map_err(|e| Fail(format!("cannot query the OpenCL device: {e}")))?;
    let info = ClInfo {
        library: cl.library.clone(),
        device: fp.device_name.clone(),
        platform: fp.platform_name.clone(),
    };
    progress.line(|| {
        format!(
            "OpenCL: {} ({}, {}); cache file {}",
            info.device,
            info.platform,
            info.library,
            file.display()
        )
    });
    progress.line(|| {
        format!(
            "first start: building {} programs from source",
            KERNELS.len()
        )
    });
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        if hit {
            problems.push(format!(
                "{} was already cached before the first start",
                row.kernel.name
            ));
        }
        row.cold_ms = Some(ms);
        let (key, _) = entry_keys(row.kernel.name, row.kernel.options);
        row.bytes = pc.store().get(&key).map_or(0, |v| v.len());
        progress.line(|| format!("  {:<18} {ms:>9.1} ms from source", row.kernel.name));
    }
    drop(pc);

    progress.line(|| "second start: the same programs, from the cache".to_string());
    let pc = open()?;
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        if !hit {
            problems.push(format!(
                "{} was built from source on the second start",
                row.kernel.name
            ));
        }
        row.warm_ms = Some(ms);
        progress.line(|| format!("  {:<18} {ms:>9.1} ms from the cache", row.kernel.name));
    }
    drop(pc);
    let cold: f64 = rows.iter().filter_map(|r| r.cold_ms).sum();
    let warm: f64 = rows.iter().filter_map(|r| r.warm_ms).sum();
    if warm >= cold {
        problems.push(format!(
            "warm builds ({warm:.1} ms) were not faster than cold builds ({cold:.1} ms)"
        ));
    }

    let victim = &KERNELS[DAMAGED_KERNEL];
    progress.line(|| {
        format!(
            "damage: flipping one byte inside the cached binary of {}",
            victim.name
        )
    });
    let (key, _) = entry_keys(victim.name, victim.options);
    let damage = damage_entry(file, &key, victim.name)?;
    progress.line(|| "third start: the damaged cache".to_string());
    let pc = open()?;
    for row in &mut rows {
        let (ms, hit) = timed_build(&pc, cl, ctx, dev, row.kernel)?;
        row.survived = hit;
        row.after_ms = Some(ms);
        let how = if hit { "from the cache" } else { "rebuilt" };
        progress.line(|| format!("  {:<18} {ms:>9.1} ms {how}", row.kernel.name));
        let is_victim = std::ptr::eq(row.kernel, victim);
        if hit == is_victim {
            problems.push(format!("after the damage, {} was {how}", row.kernel.name));
        }
    }
    drop(pc);
    Ok(DemoReport {
        dir: PathBuf::new(),
        file: file.to_path_buf(),
        opencl: Ok(info),
        rows,
        damage,
        final_state: file_state(file)?,
        problems,
    })
}

/// Deterministic bytes standing in for a compiled binary when there is no OpenCL.
fn stand_in_binary(name: &str, len: usize) -> Vec<u8> {
    let mut seed = u64::from(crc32fast::hash(name.as_bytes())) | 1 << 40;
    let mut v = b"stand-in binary of ".to_vec();
    v.extend_from_slice(name.as_bytes());
    v.resize(len, 0);
    for b in v.iter_mut().skip(19 + name.len()) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = (seed >> 24) as u8;
    }
    v
}

/// The storage demo, without OpenCL: write stand-in binaries, damage one, salvage the rest.
fn demo_storage(file: &Path, progress: &Progress, why: String) -> Result<DemoReport, Fail> {
    let store_err = |e: store::Error| Fail(e.to_string());
    let store = Store::open(file, store::Options::default()).map_err(store_err)?;
    store
        .put(
            PLATFORM_INFO_KEY,
            Value::copy_from(b"no OpenCL, FULL_PROFILE, OpenCL 1.2, mace-cache demo"),
        )
        .map_err(store_err)?;
    let mut rows = Vec::new();
    for (i, kernel) in KERNELS.iter().enumerate() {
        let (key, hash_key) = entry_keys(kernel.name, kernel.options);
        let binary = stand_in_binary(kernel.name, 16 * 1024 + i * 4096);
        let hash = source_hash(kernel_source(kernel).as_bytes(), kernel.options);
        rows.push(DemoRow {
            kernel,
            bytes: binary.len(),
            cold_ms: None,
            warm_ms: None,
            survived: false,
            after_ms: None,
        });
        store
            .put(&key, Value::from_vec(binary))
            .map_err(store_err)?;
        store
            .put(&hash_key, Value::from_vec(hash.into_bytes()))
            .map_err(store_err)?;
    }
    store.flush().map_err(store_err)?;
    drop(store);
    progress.line(|| {
        format!(
            "wrote {} stand-in binaries to {}",
            KERNELS.len(),
            file.display()
        )
    });
    let victim = &KERNELS[DAMAGED_KERNEL];
    let (key, _) = entry_keys(victim.name, victim.options);
    let damage = damage_entry(file, &key, victim.name)?;
    let store = Store::open(file, store::Options::default()).map_err(store_err)?;
    let mut problems = Vec::new();
    for (i, row) in rows.iter_mut().enumerate() {
        let (key, _) = entry_keys(row.kernel.name, row.kernel.options);
        row.survived = store.get(&key).is_some();
        if row.survived == std::ptr::eq(row.kernel, victim) {
            problems.push(format!(
                "after the damage, {} was {}",
                row.kernel.name,
                if row.survived { "kept" } else { "dropped" }
            ));
        }
        if !row.survived {
            // What the app does next: rebuild the program and cache it again.
            let binary = stand_in_binary(row.kernel.name, 16 * 1024 + i * 4096);
            store
                .put(&key, Value::from_vec(binary))
                .map_err(store_err)?;
        }
    }
    store.flush().map_err(store_err)?;
    drop(store);
    Ok(DemoReport {
        dir: PathBuf::new(),
        file: file.to_path_buf(),
        opencl: Err(why),
        rows,
        damage,
        final_state: file_state(file)?,
        problems,
    })
}

/// `cold / warm` as `123.4x`, or `-` when there is no warm time.
fn speedup(cold: Option<f64>, warm: Option<f64>) -> Option<f64> {
    match (cold, warm) {
        (Some(c), Some(w)) if w > 0.0 => Some(c / w),
        _ => None,
    }
}

/// The demo's tables and damage report.
fn demo_text(r: &DemoReport) -> Result<String, Fail> {
    let mut s = String::new();
    let victim = KERNELS[DAMAGED_KERNEL].name;
    match &r.opencl {
        Ok(info) => {
            writeln!(
                s,
                "OpenCL program cache demo: {} programs on {} ({})",
                r.rows.len(),
                info.device,
                info.platform
            )?;
            writeln!(s, "cache file: {}\n", r.file.display())?;
            writeln!(
                s,
                "{:<18} {:>10} {:>10} {:>9}",
                "program", "cold ms", "warm ms", "speedup"
            )?;
            for row in &r.rows {
                writeln!(
                    s,
                    "{:<18} {:>10.1} {:>10.1} {:>9}",
                    row.kernel.name,
                    row.cold_ms.unwrap_or(0.0),
                    row.warm_ms.unwrap_or(0.0),
                    ratio(speedup(row.cold_ms, row.warm_ms))
                )?;
            }
            let cold: f64 = r.rows.iter().filter_map(|x| x.cold_ms).sum();
            let warm: f64 = r.rows.iter().filter_map(|x| x.warm_ms).sum();
            writeln!(
                s,
                "{:<18} {cold:>10.1} {warm:>10.1} {:>9}\n",
                "total",
                ratio(speedup(Some(cold), Some(warm)))
            )?;
        }
        Err(why) => {
            writeln!(s, "OpenCL part skipped: {why}")?;
            writeln!(
                s,
                "storage demo: {} stand-in program binaries in {}\n",
                r.rows.len(),
                r.file.display()
            )?;
        }
    }
    writeln!(
        s,
        "damage: flipped one byte inside the cached binary of {victim} (file offset {})",
        r.damage.offset
    )?;
    writeln!(
        s,
        "reopened: {}, {} kept, {} dropped",
        r.damage.format,
        plural(r.damage.kept as u64, "entry", "entries"),
        r.damage.dropped
    )?;
    for note in &r.damage.notes {
        writeln!(s, "  - {note}")?;
    }
    s.push('\n');
    if r.opencl.is_ok() {
        writeln!(s, "{:<18} {:>10}  after the damage", "program", "ms")?;
        for row in &r.rows {
            writeln!(
                s,
                "{:<18} {:>10.1}  {}",
                row.kernel.name,
                row.after_ms.unwrap_or(0.0),
                if row.survived {
                    "from the cache"
                } else {
                    "rebuilt"
                }
            )?;
        }
        let hits = r.rows.iter().filter(|x| x.survived).count();
        writeln!(
            s,
            "rebuilt from source: {}; loaded from the cache: {hits} of {}",
            names(r.rows.iter().filter(|x| !x.survived)),
            r.rows.len()
        )?;
    } else {
        writeln!(s, "{:<18} {:>10}  after the damage", "program", "bytes")?;
        for row in &r.rows {
            writeln!(
                s,
                "{:<18} {:>10}  {}",
                row.kernel.name,
                row.bytes,
                if row.survived { "kept" } else { "dropped" }
            )?;
        }
        writeln!(
            s,
            "dropped (rebuilt and cached again): {}; kept: {} of {}",
            names(r.rows.iter().filter(|x| !x.survived)),
            r.rows.iter().filter(|x| x.survived).count(),
            r.rows.len()
        )?;
    }
    writeln!(s, "cache file now: {}", r.final_state)?;
    for p in &r.problems {
        writeln!(s, "unexpected: {p}")?;
    }
    Ok(s)
}

/// `12.3x`, or `-` for no ratio.
fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.1}x"))
}

/// The programs' names, comma-separated (`none` for none).
fn names<'a>(rows: impl Iterator<Item = &'a DemoRow>) -> String {
    let v: Vec<&str> = rows.map(|r| r.kernel.name).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// A number of milliseconds as JSON (`null` when absent).
fn json_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "null".to_string(), |x| format!("{x:.3}"))
}

/// The demo's report as one JSON object.
fn demo_json(r: &DemoReport) -> String {
    let opencl = match &r.opencl {
        Ok(i) => format!(
            "{{\"used\": true, \"library\": {}, \"device\": {}, \"platform\": {}}}",
            json_str(&i.library),
            json_str(&i.device),
            json_str(&i.platform)
        ),
        Err(why) => format!("{{\"used\": false, \"skipped\": {}}}", json_str(why)),
    };
    let programs: Vec<String> = r
        .rows
        .iter()
        .map(|row| {
            format!(
                "{{\"name\": {}, \"options\": {}, \"bytes\": {}, \"cold_ms\": {}, \"warm_ms\": {}, \
                 \"speedup\": {}, \"after_damage\": {}, \"after_damage_ms\": {}}}",
                json_str(row.kernel.name),
                json_str(row.kernel.options),
                row.bytes,
                json_ms(row.cold_ms),
                json_ms(row.warm_ms),
                json_ms(speedup(row.cold_ms, row.warm_ms)),
                json_str(match (r.opencl.is_ok(), row.survived) {
                    (true, true) => "from_cache",
                    (true, false) => "rebuilt",
                    (false, true) => "kept",
                    (false, false) => "dropped",
                }),
                json_ms(row.after_ms)
            )
        })
        .collect();
    let (cold, warm) = if r.opencl.is_ok() {
        (
            Some(r.rows.iter().filter_map(|x| x.cold_ms).sum::<f64>()),
            Some(r.rows.iter().filter_map(|x| x.warm_ms).sum::<f64>()),
        )
    } else {
        (None, None)
    };
    let list = |survived: bool| {
        let v: Vec<String> = r
            .rows
            .iter()
            .filter(|x| x.survived == survived)
            .map(|x| json_str(x.kernel.name))
            .collect();
        format!("[{}]", v.join(", "))
    };
    let after = if r.opencl.is_ok() {
        format!(
            "{{\"from_cache\": {}, \"rebuilt\": {}}}",
            list(true),
            list(false)
        )
    } else {
        format!("{{\"kept\": {}, \"dropped\": {}}}", list(true), list(false))
    };
    format!(
        "{{\"dir\": {}, \"file\": {}, \"opencl\": {opencl}, \"programs\": [{}], \
         \"cold_total_ms\": {}, \"warm_total_ms\": {}, \"speedup\": {}, \
         \"damage\": {{\"program\": {}, \"offset\": {}, \"format\": {}, \"entries_kept\": {}, \
         \"entries_dropped\": {}, \"notes\": {}}}, \"after_damage\": {after}, \"final\": {}, \
         \"ok\": {}, \"problems\": {}}}\n",
        json_path(&r.dir),
        json_path(&r.file),
        programs.join(", "),
        json_ms(cold),
        json_ms(warm),
        json_ms(speedup(cold, warm)),
        json_str(KERNELS[DAMAGED_KERNEL].name),
        r.damage.offset,
        json_str(r.damage.format.name()),
        r.damage.kept,
        r.damage.dropped,
        json_str_array(&r.damage.notes),
        json_str(&r.final_state),
        r.problems.is_empty(),
        json_str_array(&r.problems)
    )
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

/// `bytes` for a terminal: valid UTF-8 as text with `\\`, `"` and control characters escaped
/// (`\xNN` for ASCII ones, `\u{N}` for others), and each byte of invalid UTF-8 as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    /// Appends `text` with `\\`, `"` and control characters escaped.
    fn push_text(s: &mut String, text: &str) {
        for c in text.chars() {
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
    }
    let mut s = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                push_text(&mut s, text);
                return s;
            }
            Err(e) => {
                let (good, after) = rest.split_at(e.valid_up_to());
                push_text(&mut s, std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len()).max(1);
                for b in &after[..bad] {
                    let _ = write!(s, "\\x{b:02x}");
                }
                rest = &after[bad..];
            }
        }
    }
}

/// A file name made safe for a `//` comment in generated C++: ASCII letters, digits, space and
/// `._+-` are kept, anything else becomes `_` (no line splice, no trigraph, no stray UTF-8).
fn comment_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
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

/// A path as a JSON string (lossy for paths that are not UTF-8).
fn json_path(path: &Path) -> String {
    json_str(&path.display().to_string())
}

/// A JSON array of strings.
fn json_str_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|i| json_str(i)).collect();
    format!("[{}]", parts.join(", "))
}
