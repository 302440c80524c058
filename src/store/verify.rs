//! The integrity checker behind `Store::verify`: the store's own files
//! (catalog, subscribers log, directories) here, each channel's segments
//! through its log. Reads from storage, changes nothing.

use std::collections::{BTreeMap, HashMap};

use super::StoreShared;
use crate::error::{Error, Result};
use crate::format::sublog::{LogRecord, LOG_FILE};
use crate::report::{Progress, VerifyReport};

const ROOT_FILES: [&str; 4] = [
    "LOCK",
    crate::catalog::CATALOG_FILE,
    crate::catalog::BACKUP_FILE,
    LOG_FILE,
];

/// How often a read-only verify reads a subscribers log again that the
/// owner replaced while it was read.
const READ_TRIES: usize = 5;

impl StoreShared {
    /// The bytes of every segment file, for progress reports.
    pub(crate) fn segment_bytes(&self) -> u64 {
        let storage = &self.env.storage;
        self.channel_list()
            .iter()
            .flat_map(|core| {
                let dir = core.log.dir().to_path_buf();
                storage
                    .list_dir(&dir)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|n| crate::format::segment::parse_segment_name(n).is_some())
                    .map(move |n| dir.join(n))
            })
            .map(|path| storage.file_len(&path).unwrap_or(0))
            .sum()
    }

    pub(crate) fn verify(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let storage = &self.env.storage;
        let root = &self.env.root;
        let read_only = self.env.read_only;
        if read_only {
            // What the owner wrote up to now is what is checked.
            self.refresh(false)?;
        }
        let total = self.segment_bytes();
        let mut done = 0;
        progress(Progress { done, total });
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
                if read_only {
                    // The owner may be making or removing it right now.
                    report.note(
                        &chans.join(&name),
                        None,
                        "directory of no channel the catalog had when read",
                    );
                } else {
                    report.problem(&chans.join(&name), None, "directory of no live channel (orphan)");
                }
            }
        }
        self.verify_catalog(&mut report);
        let mut last_seqs = HashMap::new();
        for core in &channels {
            core.log.verify(&mut report, &mut |bytes| {
                done += bytes;
                progress(Progress {
                    done,
                    total: total.max(done),
                });
            })?;
            last_seqs.insert(core.id(), core.log.last_seq());
        }
        self.verify_subscribers(&mut last_seqs, &mut report)?;
        Ok(report)
    }

    fn verify_subscribers(&self, last_seqs: &mut HashMap<u64, u64>, report: &mut VerifyReport) -> Result<()> {
        let mut tries = 0;
        let scan = loop {
            let data = self.catalog.snapshot();
            match crate::subscriptions::scan(&self.env, &data, false) {
                Ok(scan) => break scan,
                // Attached read-only: the owner may have rewritten the log
                // into a newer generation than the catalog read names.
                Err(Error::Corrupt { .. }) if self.env.read_only && tries + 1 < READ_TRIES => {
                    tries += 1;
                    self.catalog.reload()?;
                }
                Err(Error::Corrupt { path, offset, detail }) => {
                    report.problem(&path, Some(offset), detail);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        if self.env.read_only {
            // Commits made after the channels were checked point at what
            // the owner wrote since: compare with the channels as they
            // are now.
            self.refresh(false)?;
            for core in self.channel_list() {
                last_seqs.insert(core.id(), core.log.last_seq());
            }
        }
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
                    // Attached read-only: the owner may have changed it
                    // since it was read.
                    Ok(_) if self.env.read_only => report.note(&path, None, "changed since it was read"),
                    Ok(_) if name == BACKUP_FILE => report.note(&path, None, "the backup is not the current catalog"),
                    Ok(_) => report.problem(&path, None, "differs from the catalog in use"),
                    Err(e) => report.problem(&path, None, e.to_string()),
                }
            }
        });
    }
}
