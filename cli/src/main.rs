//! `mace-cache`: inspect, verify, convert, merge, export, repair and demonstrate MACE OpenCL program
//! cache files.
//!
//! Exit status for every command: 0 intact or done, 1 damaged but read (what verified was kept),
//! 2 unreadable, not a cache file, or bad usage. Errors are one line on stderr, starting
//! `mace-cache: `. With `--json`, every outcome, errors included, is one JSON object on stdout
//! (the structs of [`report`]).

mod args;
mod cache;
mod commands;
mod demo;
mod report;

use clap::error::ErrorKind;
use clap::Parser;
use serde::Serialize;
use std::ffi::OsString;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status: the file is exactly as its writer left it (or the command succeeded).
pub const EXIT_INTACT: i32 = 0;
/// Exit status: the file was read, but damage was found (what verified was kept).
pub const EXIT_DAMAGED: i32 = 1;
/// Exit status: unreadable, not a cache file, or bad usage.
pub const EXIT_FAIL: i32 = 2;

/// Whether `--json` was asked for: errors, even a panic's, are then JSON on stdout too.
static JSON: AtomicBool = AtomicBool::new(false);

/// A failure that ends the program with exit status 2 and this message.
#[derive(Debug)]
pub struct Fail(pub String);

impl From<std::fmt::Error> for Fail {
    /// Formatting into a `String` cannot fail; this only satisfies `?`.
    fn from(e: std::fmt::Error) -> Fail {
        Fail(format!("internal formatting error: {e}"))
    }
}

/// Runs the tool and exits with its status.
fn main() {
    install_panic_hook();
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Known before parsing, so that a usage error is JSON too when --json was typed.
    let json = argv
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    JSON.store(json, Ordering::Relaxed);
    let code = match args::Cli::try_parse_from(&argv) {
        Ok(cli) => {
            JSON.store(cli.global.json, Ordering::Relaxed);
            cache::set_lock_timeout(std::time::Duration::from_secs(cli.global.lock_timeout));
            commands::run(cli).unwrap_or_else(|Fail(msg)| fail(&msg))
        }
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = emit(&e.render().to_string());
                EXIT_INTACT
            }
            _ => fail(&usage_line(&e, &argv)),
        },
    };
    std::process::exit(code);
}

/// Reports a failure: one `mace-cache: ` line on stderr (whatever the message holds: a driver's
/// build log has many lines) and, with `--json`, the error object on stdout. Returns exit status 2.
fn fail(msg: &str) -> i32 {
    let lines: Vec<&str> = msg
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    let line = lines.join(" | ");
    eprintln!("mace-cache: {line}");
    if JSON.load(Ordering::Relaxed) {
        let _ = emit_json(&report::Error {
            error: line,
            exit_code: EXIT_FAIL,
        });
    }
    EXIT_FAIL
}

/// A clap error as one line: its message, its tip if any, and where to read the usage.
fn usage_line(e: &clap::Error, argv: &[OsString]) -> String {
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return format!(
            "missing command: {} (see 'mace-cache --help')",
            commands::NAMES.join(", ")
        );
    }
    let rendered = e.render().to_string();
    // The message runs to the first blank line (a list of missing arguments is indented below it).
    let first = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    let lines = rendered.lines().map(str::trim);
    let tips: Vec<&str> = lines.filter(|l| l.starts_with("tip: ")).collect();
    let cmd = argv
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| commands::NAMES.contains(a));
    let see = match cmd {
        Some(c) => format!("see 'mace-cache {c} --help'"),
        None => "see 'mace-cache --help'".to_string(),
    };
    if tips.is_empty() {
        format!("{first} ({see})")
    } else {
        format!("{first}; {} ({see})", tips.join("; "))
    }
}

/// Replaces the default panic output with one `mace-cache:` line (and JSON) and exit status 2.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".to_string());
        std::process::exit(fail(&format!("internal error: {msg}")));
    }));
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn emit(text: &str) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Fail(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes `report` to stdout as one JSON object on one line.
pub fn emit_json<T: Serialize>(report: &T) -> Result<(), Fail> {
    let mut text = serde_json::to_string(report)
        .map_err(|e| Fail(format!("cannot encode the report as JSON: {e}")))?;
    text.push('\n');
    emit(&text)
}
