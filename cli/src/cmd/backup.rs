//! `spool backup`: a consistent copy of a live store.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::verify::{byte_bar, show};
use super::{json_pretty, open, CliError, Outcome};
use crate::render;

#[derive(Serialize)]
struct BackupJson {
    dest: String,
    channels: usize,
    messages: u64,
    subscribers: usize,
    segments_linked: usize,
    segments_copied: usize,
    bytes_copied: u64,
    one_instant: bool,
    seconds: f64,
}

pub fn run(dir: &Path, dest: &Path, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let bar = byte_bar("backup");
    let started = Instant::now();
    let report = store.backup_to_with_progress(dest, |p| show(&bar, p));
    bar.finish_and_clear();
    let report = report?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        json_pretty(
            out,
            &BackupJson {
                dest: dest.display().to_string(),
                channels: report.channels,
                messages: report.messages,
                subscribers: report.subscribers,
                segments_linked: report.segments_linked,
                segments_copied: report.segments_copied,
                bytes_copied: report.bytes_copied,
                one_instant: report.one_instant,
                seconds,
            },
        )?;
        return Ok(Outcome::Done);
    }
    writeln!(
        out,
        "backed up {} channels, {} messages, {} subscribers to {} in {seconds:.2}s",
        report.channels,
        report.messages,
        report.subscribers,
        dest.display()
    )?;
    writeln!(
        out,
        "segments: {} hard-linked, {} copied ({})",
        report.segments_linked,
        report.segments_copied,
        render::bytes(report.bytes_copied)
    )?;
    if !report.one_instant {
        writeln!(
            out,
            "note: the owner never paused; each channel is an exact prefix taken within one look at all of them"
        )?;
    }
    Ok(Outcome::Done)
}
