//! Printing messages (dump, tail) in each `--format`.

use std::io::Write;

use serde::Serialize;
use spool::Message;

use super::{json_line, CliError};
use crate::args::Format;
use crate::render;

/// One message as JSON: text payloads as `text`, others as `base64`.
#[derive(Serialize)]
struct MessageJson<'a> {
    seq: u64,
    timestamp_ns: u64,
    time: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

/// A range of seqs a repair replaced (reads say "lost"), as JSON.
#[derive(Serialize)]
struct LostJson {
    lost_first: u64,
    lost_last: u64,
}

/// Prints messages in one format.
pub struct Printer {
    pub format: Format,
}

impl Printer {
    pub fn message(&self, out: &mut dyn Write, m: &Message) -> Result<(), CliError> {
        let payload = m.payload();
        match self.format {
            Format::Text => match render::printable(payload) {
                Some(text) => writeln!(out, "{}\t{}\t{text}", m.seq(), render::time(m.timestamp()))?,
                None => writeln!(
                    out,
                    "{}\t{}\t0x{}",
                    m.seq(),
                    render::time(m.timestamp()),
                    render::hex(payload)
                )?,
            },
            Format::Json => {
                let text = render::printable(payload);
                json_line(
                    out,
                    &MessageJson {
                        seq: m.seq(),
                        timestamp_ns: m.timestamp(),
                        time: render::time(m.timestamp()),
                        size: payload.len(),
                        text,
                        base64: text.is_none().then(|| render::base64(payload)),
                    },
                )?;
            }
            Format::Raw => {
                out.write_all(payload)?;
                out.write_all(b"\n")?;
            }
            Format::Hex => {
                writeln!(
                    out,
                    "seq {}  {}  {} bytes",
                    m.seq(),
                    render::time(m.timestamp()),
                    payload.len()
                )?;
                out.write_all(render::hex_dump(payload).as_bytes())?;
            }
        }
        Ok(())
    }

    /// A range a repair removed.
    pub fn lost(&self, out: &mut dyn Write, first: u64, last: u64) -> Result<(), CliError> {
        match self.format {
            Format::Json => json_line(
                out,
                &LostJson {
                    lost_first: first,
                    lost_last: last,
                },
            ),
            Format::Raw => Ok(()),
            Format::Text | Format::Hex => {
                writeln!(out, "# seqs {first}..={last} were lost to damage (removed by a repair)")?;
                Ok(())
            }
        }
    }
}

/// Prints what `messages` yields now (up to `limit` messages); returns how
/// many it printed. Lost ranges are printed as such; other errors end it.
pub fn drain(
    printer: &Printer,
    messages: &mut spool::Messages,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> Result<u64, CliError> {
    let mut printed = 0;
    while limit.is_none_or(|l| printed < l) {
        match messages.next() {
            None => break,
            Some(Ok(m)) => {
                printer.message(out, &m)?;
                printed += 1;
            }
            Some(Err(spool::Error::Lost {
                first_lost, last_lost, ..
            })) => printer.lost(out, first_lost, last_lost)?,
            Some(Err(e)) => return Err(e.into()),
        }
    }
    Ok(printed)
}
