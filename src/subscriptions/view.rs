//! The subscribers log seen from outside its owner: the subscriber state
//! of a store attached read-only (read from the file as the owner wrote
//! it), every subscriber's latest commit taken at once (for a backup), and
//! the log of a copy.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::file::LogFile;
use super::{apply, Durable, LogState, SubKey, Subscriptions};
use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};

/// How often a log that changed while it was read is read again.
const READ_TRIES: usize = 5;
use crate::format::catalog::CatalogData;
use crate::format::frame::frame_len;
use crate::format::sublog::{encode_body, log_seed, LogHeader, LogRecord, Position, LOG_FILE, V2_HEADER_LEN};
use crate::group_commit::GroupCommit;
use crate::storage::Storage;

/// Reads the subscribers log as the file holds it now (its owner may be
/// appending): the latest commit of every subscriber and queue group of a
/// channel live in `catalog`. Records are validated as at open; the first
/// one past the durable watermark that does not validate (being written)
/// ends them. Writes nothing.
pub(crate) fn read_latest(env: &Env, catalog: &CatalogData) -> Result<HashMap<SubKey, Durable>> {
    let scan = super::scan(env, catalog, false)?;
    let mut durable = HashMap::new();
    for s in scan.records {
        apply(&mut durable, s.recno, s.timestamp, s.record);
    }
    let live: HashSet<u64> = catalog.channels.values().map(|e| e.id).collect();
    durable.retain(|(id, _), _| live.contains(id));
    Ok(durable)
}

impl Subscriptions {
    /// The subscriber state of a store attached read-only, read from the
    /// owner's log. Every write of such a store is refused before it gets
    /// here (`Error::ReadOnly`), but the type holds a log file to append
    /// to: it gets an empty one in memory, never used.
    pub(crate) fn attached(env: Arc<Env>, catalog: Arc<Catalog>) -> Result<Arc<Subscriptions>> {
        let sim = crate::storage::sim::SimStorage::new();
        let memory = Storage::simulated(&sim);
        let dir = Path::new("/attached");
        memory.create_dir_all(dir)?;
        let header = LogHeader {
            generation: 1,
            file_len: 4096,
            first_record: 1,
            store_id: 1,
        };
        let file = LogFile::create(&memory, &dir.join(LOG_FILE), header, log_seed(1, 1), &[], &[])?;
        let subs = Arc::new(Subscriptions {
            path: env.root.join(LOG_FILE),
            commit: GroupCommit::new(0),
            dirty: AtomicBool::new(false),
            durable: Mutex::new(HashMap::new()),
            in_use: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
            log: Mutex::new(LogState {
                file,
                rewritten_at: Instant::now(),
            }),
            env,
            catalog,
        });
        subs.reload()?;
        Ok(subs)
    }

    /// Read-only attach: replaces the subscriber state with what the
    /// owner's log holds now. The owner may rewrite the log into a new
    /// generation while it is read: then the catalog is read again, and
    /// the log after it.
    pub(crate) fn reload(&self) -> Result<()> {
        let mut tries = 0;
        let durable = loop {
            match read_latest(&self.env, &self.catalog.snapshot()) {
                Err(Error::Corrupt { .. }) if tries + 1 < READ_TRIES => {
                    tries += 1;
                    self.catalog.reload()?;
                }
                other => break other?,
            }
        };
        *self.durable.lock() = durable;
        Ok(())
    }

    /// Whether a handle of this process has the subscriber open.
    pub(crate) fn is_open(&self, key: &SubKey) -> bool {
        self.in_use.lock().contains(key)
    }

    /// Every subscriber's and queue group's latest commit, taken at once
    /// (a `commit_all` is in it whole or not at all).
    pub(crate) fn snapshot(&self) -> HashMap<SubKey, Durable> {
        self.durable.lock().clone()
    }
}

/// Writes the subscribers log of a store copy (a backup) at
/// `root/subscribers`: one commit record per subscriber or queue group, as
/// `commits` says, all durable (synced, with the directory) on return.
/// `generation` must be the one the copy's catalog records.
pub(crate) fn write_copy(
    storage: &Storage,
    root: &Path,
    store_id: u128,
    generation: u64,
    commits: &[(SubKey, Durable)],
) -> Result<()> {
    let records: Vec<(u64, Vec<u8>)> = commits
        .iter()
        .map(|((channel_id, name), d)| {
            let entry = Position {
                channel_id: *channel_id,
                name: name.clone(),
                kind: d.kind,
                position: d.position,
                acked_above: d.acked_above.clone(),
                meta: d.meta.clone(),
            };
            let body = encode_body(&LogRecord::Commit {
                entries: vec![entry],
                state: Arc::clone(&d.state),
            });
            (d.committed_at, body)
        })
        .collect();
    let bytes: usize = records.iter().map(|(_, b)| frame_len(b.len())).sum();
    let file_len = (V2_HEADER_LEN + 4 * bytes).next_power_of_two().max(64 << 10);
    let header = LogHeader {
        generation,
        file_len: file_len as u64,
        first_record: 1,
        store_id,
    };
    let path = root.join(LOG_FILE);
    LogFile::create(storage, &path, header, log_seed(store_id, generation), &records, &[])?;
    storage.sync_dir(root)
}
