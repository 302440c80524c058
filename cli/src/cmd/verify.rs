//! `spool verify`: every file checked, with a progress bar.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use spool::{Problem, Progress};

use super::{json_pretty, open, CliError, Outcome};

#[derive(Serialize)]
struct ProblemJson {
    path: String,
    offset: Option<u64>,
    detail: String,
}

impl From<&Problem> for ProblemJson {
    fn from(p: &Problem) -> Self {
        ProblemJson {
            path: p.path.display().to_string(),
            offset: p.offset,
            detail: p.detail.clone(),
        }
    }
}

#[derive(Serialize)]
struct VerifyJson {
    ok: bool,
    segments: usize,
    records: u64,
    bytes: u64,
    problems: Vec<ProblemJson>,
    notes: Vec<ProblemJson>,
}

/// A bar of bytes on stderr: drawn only when stderr is a terminal.
pub fn byte_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

/// Moves `bar` to what `p` says.
pub fn show(bar: &ProgressBar, p: Progress) {
    bar.set_length(p.total);
    bar.set_position(p.done);
}

pub fn run(dir: &Path, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let bar = byte_bar("verify");
    let mut bytes = 0;
    let report = store.verify_with_progress(|p| {
        bytes = p.done;
        show(&bar, p);
    });
    bar.finish_and_clear();
    let report = report?;
    let outcome = if report.is_ok() {
        Outcome::Done
    } else {
        Outcome::Problems
    };
    if json {
        json_pretty(
            out,
            &VerifyJson {
                ok: report.is_ok(),
                segments: report.segments,
                records: report.records,
                bytes,
                problems: report.problems.iter().map(ProblemJson::from).collect(),
                notes: report.notes.iter().map(ProblemJson::from).collect(),
            },
        )?;
        return Ok(outcome);
    }
    for p in &report.problems {
        writeln!(out, "PROBLEM {}", describe(p))?;
    }
    for n in &report.notes {
        writeln!(out, "note    {}", describe(n))?;
    }
    let verdict = if report.is_ok() { "ok" } else { "DAMAGED" };
    writeln!(
        out,
        "{verdict}: {} segments, {} records checked, {} problems, {} notes",
        report.segments,
        report.records,
        report.problems.len(),
        report.notes.len()
    )?;
    Ok(outcome)
}

fn describe(p: &Problem) -> String {
    match p.offset {
        Some(offset) => format!("{} at offset {offset}: {}", p.path.display(), p.detail),
        None => format!("{}: {}", p.path.display(), p.detail),
    }
}
