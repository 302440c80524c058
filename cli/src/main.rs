//! `spool`: the command-line tool for spool stores. See `spool --help`.

mod args;
mod cmd;
mod render;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use args::Cli;
use cmd::{CliError, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cmd::run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(3),
        // `spool dump ... | head`: the reader went away; not an error.
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = io::stdout().flush();
            let _ = writeln!(io::stderr(), "spool: error: {e}");
            ExitCode::from(1)
        }
    }
}
