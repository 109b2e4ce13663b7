//! The `bollwerk` binary: parse the command line, set up logging, run, map to an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bollwerk::cli::Cli::parse();
    bollwerk::cli::init_logging(&cli.global);
    let runner = bollwerk::app::system_runner(&cli);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let status = bollwerk::app::run(&cli, &runner, &mut out);
    let _ = out.flush();
    ExitCode::from(status.code())
}
