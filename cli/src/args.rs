//! The command line, as clap parses it: every command, option and help text is declared here once.

use clap::{Args, Parser, Subcommand, ValueEnum};
use mace_storage::format::Format;
use std::path::PathBuf;

/// Where every `--json` help line points: the report structs are the schema.
const JSON_HELP: &str = "Print one JSON object on stdout instead of text, errors included \
    ({\"error\", \"exit_code\"}); the fields of each report are listed in docs/CLI.md";

const MAIN_AFTER: &str = "\
Formats:
  mace-1.0     MACE v0.6 to v1.0.x (int64 count, int32-length pairs)
  mace-1.1     MACE v1.1 and later (protobuf PairContainer + CRC-32)
  checked-1.0  mace-1.0 + per-entry checksums that MACE v1.0 readers ignore
  checked-1.1  mace-1.1 + per-entry checksums that MACE v1.1 readers skip
  empty        a 0-byte file, as an interrupted write leaves it (read only)

Global options (--json, --help) may come anywhere on the line. FILE or IN may
be - for standard input (inspect, verify, convert, export-c, repair IN OUT).

Exit status: 0 intact (or done), 1 damaged but read (what verified was kept),
             2 unreadable, not a cache file, or bad usage.

Example:
  mace-cache verify /data/local/tmp/mace_cl_compiled_program.bin
  mace-cache --json inspect mace_cl_compiled_program.bin | jq .damage";

/// The whole command line.
#[derive(Parser, Debug)]
#[command(
    name = "mace-cache",
    version,
    about = "mace-cache: inspect, verify, convert, merge, export and repair MACE OpenCL\n\
             program cache files (and tuned OpenCL parameter files)",
    after_help = MAIN_AFTER,
    subcommand_required = true
)]
pub struct Cli {
    /// Options every command accepts, anywhere on the line.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone, Copy)]
pub struct Global {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true, help = JSON_HELP)]
    pub json: bool,
    /// How long an in-place write (convert, merge, repair) waits for the cache's lock before it
    /// gives up with exit 2.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub lock_timeout: u64,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the format, every entry and the damage found.
    #[command(
        long_about = "Prints a header line (path, format, size, entry count), one line per entry \
            in key byte order (CRC-32 of the value, length, key: valid UTF-8 shown as text with \
            control characters, \\ and \" escaped, other bytes as \\xNN), the uint32 values of \
            tuned parameters (`key: [8, 16, 4, 0]`), then the damage status and one note per \
            problem found.",
        after_help = concat!(
            "Exit status: 0 intact, 1 damaged but read, 2 unreadable or not a cache file.\n\n",
            "Example:\n  mace-cache inspect mace_cl_compiled_program.bin --json\n",
            "  mace-cache inspect tuned_opencl_parameter.bin")
    )]
    Inspect {
        /// The cache file (- for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        tuned: Tuned,
    },
    /// Print a one-line verdict: intact or damaged.
    #[command(
        long_about = "Prints `FILE: intact (FORMAT, N entries)` or \
            `FILE: damaged (FORMAT): K entries kept, D dropped: FIRST NOTE`.",
        after_help = concat!(
            "Exit status: 0 intact, 1 damaged but read, 2 unreadable or not a cache file.\n\n",
            "Example:\n  mace-cache verify /data/local/tmp/mace_cl_compiled_program.bin")
    )]
    Verify {
        /// The cache file (- for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Rewrite IN as OUT in another format.
    #[command(
        long_about = "Reads IN (salvaging what verifies when it is damaged) and writes every kept \
            entry to OUT in FORMAT, atomically (temp file, fsync, rename, directory fsync): OUT is \
            either left as it was or wholly new. Each value keeps its encoding (bytes or uint32 \
            array); the stock formats come out byte-identical to what MACE itself writes. IN and \
            OUT may be the same file; an existing OUT is written under the store's lock \
            (OUT.lock), so the flush of an app built with mace-storage and the rewrite never \
            interleave (stock MACE takes no lock: rewrite its cache while it is not running). A \
            one-line summary goes to stderr.",
        after_help = concat!(
            "Exit status: 0 IN intact and OUT written,\n",
            "             1 IN damaged (what was kept is written to OUT),\n",
            "             2 IN unreadable or not a cache file, OUT not written, bad usage.\n\n",
            "Example:\n",
            "  mace-cache convert mace_cl_compiled_program.bin checked.bin --to checked-1.1\n",
            "  mace-cache convert mace_run.config tuned-1.1.bin --to mace-1.1")
    )]
    Convert {
        /// The file read (- for standard input).
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// The file written.
        #[arg(value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        to: To,
        #[command(flatten)]
        tuned: Tuned,
    },
    /// Merge device caches into one precompiled binary file.
    #[command(
        long_about = "Reads every IN (any format; a damaged one contributes what verifies) and \
            writes the union of their entries to OUT, atomically: the file MACE's \
            SetOpenCLBinaryPaths (or, exported with export-c, SetOpenCLBinary) loads. Every key \
            appears once. When inputs hold the same key with different values, the first input \
            given wins and the report names both files. Inputs whose \
            mace_opencl_precompiled_platform_info_key values differ were built for different \
            GPUs or drivers: they are refused unless --force is given (then the first input's \
            platform info is kept). An existing OUT that is not one of the inputs is refused \
            unless --force is given. Tuned-parameter files merge the same way; each entry keeps \
            its encoding (bytes or uint32 array). The report goes to stdout; progress goes to \
            stderr when the merge takes more than a second.",
        after_help = concat!(
            "Exit status: 0 every input intact and OUT written,\n",
            "             1 an input was damaged (what verified is merged, OUT written),\n",
            "             2 an input is unreadable or not a cache file, the platform info\n",
            "               differs or OUT exists (without --force), or bad usage:\n",
            "               OUT not written.\n\n",
            "Example:\n  mace-cache merge merged.bin adreno640.bin adreno650.bin --to mace-1.1")
    )]
    Merge {
        /// The file written.
        #[arg(value_name = "OUT")]
        output: PathBuf,
        /// The files merged, first one winning on duplicate keys.
        #[arg(value_name = "IN", required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        to: To,
        /// Merge even when the platform info differs, and replace an existing OUT that is not
        /// one of the inputs.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        tuned: Tuned,
    },
    /// Embed a cache file's exact bytes in C++ source.
    #[command(
        name = "export-c",
        long_about = "Writes C++11 source that defines, in namespace mace, \
            `const unsigned char *LoadOpenCLBinary();` and `size_t OpenCLBinarySize();` returning \
            IN's bytes exactly as they are in the file (not re-encoded): the shape of the files \
            MACE generates for SetOpenCLBinary(ptr, size) and SetOpenCLParameter(ptr, size). The \
            source compiles with MACE's flags (-std=c++11 -Wall -Werror -fno-exceptions \
            -fno-rtti). A 0-byte IN gives a size of 0. OUT.cc is written atomically; a one-line \
            summary with the SHA-256 of IN's bytes (the value `sha256sum IN` prints) goes to \
            stderr and into the source's first comment.",
        after_help = concat!(
            "Exit status: 0 IN intact (or 0 bytes) and OUT.cc written,\n",
            "             1 IN damaged (its bytes are exported as they are),\n",
            "             2 IN unreadable or not a cache file, a bad NAME, or bad usage.\n\n",
            "Example:\n",
            "  mace-cache export-c mace_cl_compiled_program.bin opencl_binary.cc\n",
            "  mace-cache export-c tuned.bin tuned_params.cc \\\n",
            "      --load-func LoadOpenCLParameter --size-func OpenCLParameterSize")
    )]
    ExportC {
        /// The file embedded (- for standard input).
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// The C++ source written.
        #[arg(value_name = "OUT.cc")]
        output: PathBuf,
        /// Name of the data function (a C identifier, not a keyword or reserved name).
        #[arg(long, value_name = "NAME", default_value = "LoadOpenCLBinary")]
        load_func: String,
        /// Name of the size function (a C identifier, not a keyword or reserved name).
        #[arg(long, value_name = "NAME", default_value = "OpenCLBinarySize")]
        size_func: String,
    },
    /// Salvage what verifies into a fresh checked file.
    #[command(
        long_about = "Reads IN, keeps every entry that verifies, and writes them as a fresh file, \
            atomically. Without OUT, IN is repaired in place under the store's lock (IN.lock): \
            the original is first kept as IN.bak, or IN.bak.1, IN.bak.2, ... when an older \
            backup exists (a backup is never replaced), and the repaired file takes IN's name. \
            An intact IN is rewritten too. The report (format, entries kept and dropped, one note \
            per problem) goes to stdout. A file that is not a MACE cache is left alone (exit 2).",
        after_help = concat!(
            "Exit status: 0 IN was intact (and was rewritten),\n",
            "             1 IN was damaged: what verified was written,\n",
            "             2 IN unreadable or not a cache file (nothing written), bad usage.\n\n",
            "Example:\n  mace-cache repair /data/local/tmp/mace_cl_compiled_program.bin")
    )]
    Repair {
        /// The damaged file (- for standard input, with OUT).
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// Where to write the repaired file (default: IN itself, keeping a backup).
        #[arg(value_name = "OUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        to: To,
    },
    /// Build real kernels cold and warm, damage the cache, show that one program is rebuilt.
    #[command(
        long_about = "With OpenCL: builds 8 real kernels (convolutions, eltwise, pooling, \
            softmax, matmul, resize) from source through the program cache (cold) and times them; \
            opens the cache again and builds them from the cached binaries (warm); prints a table \
            of cold and warm times with the speedup. Then flips one byte inside one cached binary, \
            reopens the file, shows the damage report and that only that program is rebuilt while \
            the others still load from the cache. The cache file holds more entries than programs: \
            per program its binary and its source hash (program_hash_ key), plus the platform-info \
            and device-name entries.\n\
            Without OpenCL: runs the storage part (write, flip a byte, salvage report) and says in \
            one line why the OpenCL part was skipped and how to get a device.\n\
            Tables go to stdout, progress to stderr. PoCL's own kernel cache is turned off \
            (POCL_KERNEL_CACHE=0) unless the environment sets it.",
        after_help = concat!(
            "Exit status: 0 the demo showed what it should,\n",
            "             1 it ran but a result was not the expected one (said why),\n",
            "             2 a step failed (the error is printed), or bad usage.\n\n",
            "Example:\n  mace-cache demo\n  mace-cache demo --dir mace-demo\n",
            "  mace-cache inspect mace-demo/mace_cl_compiled_program.bin")
    )]
    Demo {
        /// Work in DIR (created if missing) and keep the cache there for a look afterwards,
        /// instead of a temporary directory that is removed.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Load LIB instead of MACE's list of OpenCL libraries.
        #[arg(long, value_name = "LIB")]
        opencl_library: Option<String>,
    },
}

/// `--to FORMAT`.
#[derive(Args, Debug, Clone, Copy)]
pub struct To {
    /// The format written. Default: checked-1.0 when the input (every input, for merge) is a
    /// MACE 1.0 file, since MACE v1.0 apps cannot read the 1.1 formats; else checked-1.1.
    #[arg(long, value_name = "FORMAT")]
    pub to: Option<FormatArg>,
}

/// `--tuned` / `--no-tuned`.
#[derive(Args, Debug, Clone, Copy)]
pub struct Tuned {
    /// The input is a tuned OpenCL parameter file: every value is a uint32 array (uint32s_value in
    /// the 1.1 formats). Files whose keys show it (MACE_OPENCL_QUEUE_WINDOW_SIZE, *opencl_kernel*
    /// tuning keys) are recognised without it; a value whose length is not a multiple of 4 is
    /// refused (exit 2, naming the key).
    #[arg(long, conflicts_with = "no_tuned")]
    pub tuned: bool,
    /// Keep every value as bytes, even where the keys look like tuned parameters.
    #[arg(long)]
    pub no_tuned: bool,
}

/// A format that can be written, as `--to` names it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// MACE v0.6 to v1.0.x.
    #[value(name = "mace-1.0")]
    Mace10,
    /// MACE v1.1 and later.
    #[value(name = "mace-1.1")]
    Mace11,
    /// mace-1.0 with per-entry checksums.
    #[value(name = "checked-1.0")]
    Checked10,
    /// mace-1.1 with per-entry checksums.
    #[value(name = "checked-1.1")]
    Checked11,
}

impl From<FormatArg> for Format {
    /// The library's format of the same name.
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Mace10 => Format::Mace10,
            FormatArg::Mace11 => Format::Mace11,
            FormatArg::Checked10 => Format::Checked10,
            FormatArg::Checked11 => Format::Checked11,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clap definitions are consistent (no duplicate names, valid defaults).
    #[test]
    fn clap_definitions_are_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Every `--to` name is the library's name of the same format.
    #[test]
    fn format_names_match_the_library() {
        for f in FormatArg::value_variants() {
            let name = f.to_possible_value().expect("named").get_name().to_string();
            assert_eq!(Format::from(*f).name(), name);
        }
    }
}
