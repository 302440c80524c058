//! `spool tail [-f]`: the last messages of a channel, then (with -f) new
//! ones as the owner publishes them.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::print::{drain, Printer};
use super::{open, CliError, Outcome};
use crate::args::Format;

/// How long one wait for a new message lasts before looking again.
const WAIT: Duration = Duration::from_millis(200);

pub fn run(
    dir: &Path,
    channel: &str,
    lines: u64,
    follow: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let ch = store.open_channel(channel)?;
    let printer = Printer { format };
    let start = (ch.last_seq() + 1).saturating_sub(lines).max(ch.first_seq());
    let mut messages = ch.read_from(start)?;
    drain(&printer, &mut messages, None, out)?;
    out.flush()?;
    if !follow {
        return Ok(Outcome::Done);
    }
    let mut skipped = 0;
    loop {
        ch.wait_for(messages.next_seq(), WAIT)?;
        drain(&printer, &mut messages, None, out)?;
        out.flush()?;
        if messages.skipped() > skipped {
            // Retention removed messages before they were printed.
            let _ = writeln!(
                std::io::stderr(),
                "spool: skipped {} messages removed by retention before they could be printed",
                messages.skipped() - skipped
            );
            skipped = messages.skipped();
        }
    }
}
