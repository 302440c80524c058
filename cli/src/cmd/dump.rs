//! `spool dump`: messages of a channel from a seq or a time.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::print::{drain, Printer};
use super::{open, CliError, Outcome};
use crate::args::Format;
use crate::render;

pub fn run(
    dir: &Path,
    channel: &str,
    from: Option<u64>,
    since: Option<&str>,
    limit: Option<u64>,
    format: Format,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let ch = store.open_channel(channel)?;
    let start = match (from, since) {
        (Some(seq), _) => seq,
        (None, Some(text)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            let ts = render::parse_since(text, now).map_err(CliError::Usage)?;
            match ch.seq_at_or_after(ts)? {
                Some(seq) => seq,
                // Every message is older: nothing to print.
                None => return Ok(Outcome::Done),
            }
        }
        (None, None) => ch.first_seq(),
    };
    if start > ch.last_seq() + 1 {
        return Err(CliError::Usage(format!(
            "channel {channel:?} ends at seq {} (--from {start} is past its end)",
            ch.last_seq()
        )));
    }
    let mut messages = ch.read_from(start)?;
    drain(&Printer { format }, &mut messages, limit, out)?;
    Ok(Outcome::Done)
}
