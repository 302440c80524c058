//! The integrity checker behind `Store::verify`: the store's own files
//! (catalog, subscribers log, directories) here, each channel's segments
//! through its log. Reads from storage, changes nothing.

use std::collections::{BTreeMap, HashMap};

use super::StoreShared;
use crate::error::Result;
use crate::format::sublog::{self, LogRecord, LOG_FILE};
use crate::report::VerifyReport;

const ROOT_FILES: [&str; 3] = ["LOCK", "catalog", LOG_FILE];

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
            if !name.parse::<u64>().is_ok_and(|id| ids.contains(&id)) {
                report.problem(&chans.join(&name), None, "directory of no live channel (orphan)");
            }
        }
        let mut last_seqs = HashMap::new();
        for core in &channels {
            core.log.verify(&mut report)?;
            last_seqs.insert(core.id(), core.log.last_seq());
        }
        self.verify_subscribers(&last_seqs, &mut report)?;
        Ok(report)
    }

    fn verify_subscribers(&self, last_seqs: &HashMap<u64, u64>, report: &mut VerifyReport) -> Result<()> {
        let path = self.env.root.join(LOG_FILE);
        let bytes = self.env.storage.read_file(&path, u64::MAX)?;
        let decoded = match sublog::decode(&bytes, &path) {
            Ok(d) => d,
            Err(e) => {
                report.problem(&path, None, e.to_string());
                return Ok(());
            }
        };
        if decoded.valid_end != bytes.len() {
            report.problem(
                &path,
                Some(decoded.valid_end as u64),
                "bytes after the last valid record",
            );
        }
        let mut positions: BTreeMap<(u64, String), u64> = BTreeMap::new();
        for rec in decoded.records {
            match rec {
                LogRecord::Commit { entries, .. } => {
                    for e in entries {
                        positions.insert((e.channel_id, e.name), e.position);
                    }
                }
                LogRecord::Remove { channel_id, name } => {
                    positions.remove(&(channel_id, name));
                }
            }
        }
        for ((id, name), pos) in positions {
            if let Some(last) = last_seqs.get(&id) {
                if pos > *last {
                    report.problem(
                        &path,
                        None,
                        format!("subscriber {name:?} of channel {id} is at {pos}, past the log's end {last}"),
                    );
                }
            }
        }
        Ok(())
    }
}
