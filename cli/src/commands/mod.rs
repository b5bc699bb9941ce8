//! One module per command; [`run`] dispatches a parsed command line to it.

mod convert;
mod export_c;
mod inspect;
mod merge;
mod repair;
mod verify;

use crate::args::{Cli, Command};
use crate::Fail;

/// The command names, as typed (for pointing a usage error at the command's help).
pub const NAMES: [&str; 7] = [
    "inspect", "verify", "convert", "merge", "export-c", "repair", "demo",
];

/// Runs the command and returns its exit status.
pub fn run(cli: Cli) -> Result<i32, Fail> {
    let json = cli.global.json;
    match cli.command {
        Command::Inspect { file, tuned } => inspect::run(&file, tuned, json),
        Command::Verify { file } => verify::run(&file, json),
        Command::Convert {
            input,
            output,
            to,
            tuned,
        } => convert::run(&input, &output, to.to.map(Into::into), tuned, json),
        Command::Merge {
            output,
            inputs,
            to,
            force,
            tuned,
        } => merge::run(&output, &inputs, to.to.map(Into::into), force, tuned, json),
        Command::ExportC {
            input,
            output,
            load_func,
            size_func,
        } => export_c::run(&input, &output, &load_func, &size_func, json),
        Command::Repair { input, output, to } => {
            repair::run(&input, output.as_deref(), to.to.map(Into::into), json)
        }
        Command::Demo {
            dir,
            opencl_library,
        } => crate::demo::run(dir.as_deref(), opencl_library, json),
    }
}
