//! `spool-relay DIR CHANNEL --nats URL --subject S`: forwards a channel of
//! the spool store in DIR to NATS JetStream, with a live status line. The
//! same command as `spool relay` (the cli crate), for installs without the
//! `spool` command.

use std::process::ExitCode;

use clap::Parser;
use spool_relay::command::{self, RelayArgs};

/// Forwards a channel of a spool store to NATS JetStream, exactly once.
#[derive(Parser, Debug)]
#[command(name = "spool-relay", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: RelayArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match command::run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spool-relay: error: {e}");
            ExitCode::FAILURE
        }
    }
}
