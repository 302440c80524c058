//! `spool repair`: open in repair mode (after a confirmation) and print
//! what was lost.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde::Serialize;
use spool::{Options, RecoveryMode, RecoveryReport, Store};

use super::{json_pretty, CliError, Outcome};

#[derive(Serialize)]
struct RepairJson {
    lost_anything: bool,
    lost: Vec<String>,
    changed: Vec<String>,
}

/// What the report says, as sentences: (losses, other changes).
fn describe(report: &RecoveryReport) -> (Vec<String>, Vec<String>) {
    let mut lost = Vec::new();
    let mut changed = Vec::new();
    for c in &report.channels {
        for l in &c.lost {
            lost.push(format!(
                "channel {:?}: seqs {}..={} lost ({} at offset {})",
                c.name,
                l.first,
                l.last,
                l.path.display(),
                l.offset
            ));
        }
        if let Some((path, offset)) = &c.torn_tail {
            changed.push(format!(
                "channel {:?}: unsynced torn tail cut at {} offset {offset}",
                c.name,
                path.display()
            ));
        }
        for (path, why) in &c.set_aside {
            changed.push(format!("channel {:?}: set aside {} ({why})", c.name, path.display()));
        }
        for (from, to) in &c.renamed {
            changed.push(format!(
                "channel {:?}: moved {} to {}",
                c.name,
                from.display(),
                to.display()
            ));
        }
        for path in &c.resealed {
            changed.push(format!("channel {:?}: sealed {} again", c.name, path.display()));
        }
    }
    for s in &report.subscribers.lost {
        let at = s.reverted_to.map_or_else(|| "gone".into(), |p| format!("now at {p}"));
        lost.push(format!(
            "subscriber {:?} of channel {}: {} ({at})",
            s.name, s.channel_id, s.detail
        ));
    }
    for s in &report.subscribers.cut {
        changed.push(format!(
            "subscriber {:?} of channel {}: {}",
            s.name, s.channel_id, s.detail
        ));
    }
    if let Some(why) = &report.catalog_restored {
        lost.push(format!("catalog restored from its backup: {why}"));
    }
    if let Some(why) = &report.catalog_backup_rewritten {
        changed.push(format!("catalog backup rewritten: {why}"));
    }
    for (from, to) in &report.set_aside {
        changed.push(format!("set aside {} as {}", from.display(), to.display()));
    }
    (lost, changed)
}

fn confirmed(dir: &Path) -> Result<bool, CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Usage(
            "repair changes the store and asks for confirmation on a terminal; pass --yes to repair without asking"
                .into(),
        ));
    }
    let mut err = std::io::stderr();
    write!(
        err,
        "Repair the store at {}? Damaged records become holes and unusable files are renamed aside; \
         the store must not be open elsewhere. [y/N] ",
        dir.display()
    )?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub fn run(dir: &Path, yes: bool, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    // Checked before asking: a path that holds no store is an error.
    drop(super::open(dir)?);
    if !yes && !confirmed(dir)? {
        writeln!(std::io::stderr(), "spool: nothing changed")?;
        return Ok(Outcome::Done);
    }
    let opts = Options::default()
        .recovery_mode(RecoveryMode::Repair)
        .create_if_missing(false);
    let store = Store::open(dir, opts)?;
    let report = store.recovery_report().clone();
    store.close()?;
    let (lost, changed) = describe(&report);
    let lost_anything = report.lost_anything();
    if json {
        json_pretty(
            out,
            &RepairJson {
                lost_anything,
                lost,
                changed,
            },
        )?;
    } else {
        for line in &lost {
            writeln!(out, "LOST    {line}")?;
        }
        for line in &changed {
            writeln!(out, "changed {line}")?;
        }
        if lost_anything {
            writeln!(out, "repaired {}: data was lost (listed above)", dir.display())?;
        } else {
            writeln!(out, "repaired {}: nothing was lost", dir.display())?;
        }
    }
    Ok(if lost_anything {
        Outcome::Problems
    } else {
        Outcome::Done
    })
}
