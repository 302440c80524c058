//! The integrity checker behind `Store::verify`: the store's own files
//! (catalog, subscribers log, directories) here, each channel's segments
//! through its log. Reads from storage, changes nothing.

use std::collections::{BTreeMap, HashMap};

use super::StoreShared;
use crate::error::{Error, Result};
use crate::format::sublog::{LogRecord, LOG_FILE};
use crate::report::VerifyReport;

const ROOT_FILES: [&str; 4] = [
    "LOCK",
    crate::catalog::CATALOG_FILE,
    crate::catalog::BACKUP_FILE,
    LOG_FILE,
];

impl StoreShared {
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let storage = &self.env.storage;
        let root = &self.env.root;
        for name in storage.list_dir(root)? {
            if name.ends_with(".tmp") {
                // The catalog or the subscribers log being replaced right
                // now (or left by a crash; the next open removes it).
                report.note(&root.join(&name), None, "a replacement in progress or left by a crash");
            } else if !ROOT_FILES.contains(&name.as_str()) && name != "channels" {
                report.problem(&root.join(&name), None, "unexpected file in the store directory");
            }
        }
        let channels = self.channel_list();
        let ids: Vec<u64> = channels.iter().map(|c| c.id()).collect();
        let chans = root.join("channels");
        for name in storage.list_dir(&chans)? {
            if name.contains(".damaged") {
                report.note(
                    &chans.join(&name),
                    None,
                    "set aside by a repair (not part of the store)",
                );
            } else if !name.parse::<u64>().is_ok_and(|id| ids.contains(&id)) {
                report.problem(&chans.join(&name), None, "directory of no live channel (orphan)");
            }
        }
        self.verify_catalog(&mut report);
        let mut last_seqs = HashMap::new();
        for core in &channels {
            core.log.verify(&mut report)?;
            last_seqs.insert(core.id(), core.log.last_seq());
        }
        self.verify_subscribers(&last_seqs, &mut report)?;
        Ok(report)
    }

    fn verify_subscribers(&self, last_seqs: &HashMap<u64, u64>, report: &mut VerifyReport) -> Result<()> {
        let data = self.catalog.snapshot();
        let scan = match crate::subscriptions::scan(&self.env, &data, false) {
            Ok(scan) => scan,
            Err(Error::Corrupt { path, offset, detail }) => {
                report.problem(&path, Some(offset), detail);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut positions: BTreeMap<(u64, String), u64> = BTreeMap::new();
        for s in scan.records {
            match s.record {
                LogRecord::Commit { entries, .. } => {
                    for e in entries {
                        positions.insert((e.channel_id, e.name), e.position);
                    }
                }
                LogRecord::Remove { channel_id, name } => {
                    positions.remove(&(channel_id, name));
                }
                LogRecord::Watermark { .. } => {}
            }
        }
        for ((id, name), pos) in positions {
            if let Some(last) = last_seqs.get(&id) {
                if pos > *last {
                    report.problem(
                        &scan.path,
                        None,
                        format!("subscriber {name:?} of channel {id} is at {pos}, past the log's end {last}"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Both catalog copies decode; a backup that does not is worth a note
    /// (a crash between the two writes leaves it one change behind).
    fn verify_catalog(&self, report: &mut VerifyReport) {
        use crate::catalog::{BACKUP_FILE, CATALOG_FILE};
        use crate::format::catalog::{decode, MAX_CATALOG_BYTES};
        // Under the catalog's lock: a change being written would otherwise
        // show as a difference.
        self.catalog.with_current(|current| {
            for name in [CATALOG_FILE, BACKUP_FILE] {
                let path = self.env.root.join(name);
                let decoded = self
                    .env
                    .storage
                    .read_file(&path, MAX_CATALOG_BYTES)
                    .and_then(|b| decode(&b, &path));
                match decoded {
                    Ok(d) if &d == current => {}
                    Ok(_) if name == BACKUP_FILE => report.note(&path, None, "the backup is not the current catalog"),
                    Ok(_) => report.problem(&path, None, "differs from the catalog in use"),
                    Err(e) => report.problem(&path, None, e.to_string()),
                }
            }
        });
    }
}
