//! The commands, one file each, and what they share: opening a store,
//! errors, JSON output.

mod backup;
mod dump;
mod print;
mod repair;
mod stat;
mod subscribers;
mod tail;
mod verify;

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use spool::{Options, Store};

use crate::args::Command;

/// How a command ended when it did not fail.
pub enum Outcome {
    /// Everything fine.
    Done,
    /// It ran, and found problems (verify) or lost data (repair).
    Problems,
}

/// Why a command failed: printed as one line.
pub enum CliError {
    /// From the store.
    Spool(spool::Error),
    /// Writing the output.
    Io(io::Error),
    /// Bad input the arguments' parser could not see.
    Usage(String),
    /// The relay stopped with an error (from NATS, or from the store).
    Relay(String),
}

impl From<spool::Error> for CliError {
    fn from(e: spool::Error) -> Self {
        CliError::Spool(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Io(e)
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Io(e.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Spool(e) => {
                // The whole chain on one line, each cause once.
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                if let spool::Error::Corrupt { .. } = e {
                    write!(f, " (`spool repair` opens it in repair mode)")?;
                }
                Ok(())
            }
            CliError::Io(e) => write!(f, "writing the output failed: {e}"),
            CliError::Usage(text) => f.write_str(text),
            CliError::Relay(text) => write!(f, "relay: {text}"),
        }
    }
}

/// Runs one command.
pub fn run(command: Command) -> Result<Outcome, CliError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let outcome = match command {
        Command::Stat { dir, out: json } => stat::run(&dir, json.json, &mut out),
        Command::Dump {
            dir,
            channel,
            from,
            since,
            limit,
            format,
        } => dump::run(&dir, &channel, from, since.as_deref(), limit, format.get(), &mut out),
        Command::Tail {
            dir,
            channel,
            lines,
            follow,
            format,
        } => tail::run(&dir, &channel, lines, follow, format.get(), &mut out),
        Command::Subscribers {
            dir,
            channel,
            out: json,
        } => subscribers::run(&dir, channel.as_deref(), json.json, &mut out),
        Command::Verify { dir, out: json } => verify::run(&dir, json.json, &mut out),
        Command::Backup { dir, dest, out: json } => backup::run(&dir, &dest, json.json, &mut out),
        Command::Repair { dir, yes, out: json } => repair::run(&dir, yes, json.json, &mut out),
        Command::Relay(args) => spool_relay::command::run(args)
            .map(|()| Outcome::Done)
            .map_err(|e| CliError::Relay(e.to_string())),
    }?;
    out.flush()?;
    Ok(outcome)
}

/// Attaches read-only to the store at `dir` (never creates one).
pub fn open(dir: &Path) -> Result<Store, CliError> {
    Ok(Store::open(dir, Options::default().read_only(true))?)
}

/// Writes `value` as one line of JSON.
pub fn json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes `value` as pretty JSON.
pub fn json_pretty(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
