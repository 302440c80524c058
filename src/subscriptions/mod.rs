//! The store's durable subscriber state: replayed from the subscribers log
//! at open, updated by commits, compacted by rewriting the log.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::sublog::{self as log, LogRecord, Position, SubKind, LOG_FILE, LOG_HEADER_LEN};
use crate::group_commit::GroupCommit;
use crate::options::SyncPolicy;
use crate::storage::LogFile;

/// Identifies a durable subscriber: channel incarnation and name.
pub(crate) type SubKey = (u64, String);

/// The latest committed state of one durable subscriber.
#[derive(Clone, Debug)]
pub(crate) struct Durable {
    pub kind: SubKind,
    pub position: u64,
    pub acked_above: Vec<(u64, u64)>,
    pub state: Arc<[u8]>,
}

/// Rewrite the log once it is this large and mostly superseded records.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

struct LogState {
    file: LogFile,
    len: u64,
    /// Records appended so far (numbering for group commit).
    appended: u64,
    /// Compact inline when the file reaches this size.
    compact_at: u64,
    /// Size right after the last rewrite (or at open).
    compacted_len: u64,
}

/// The compaction thread rewrites the log only past this size.
const BACKGROUND_COMPACT_MIN_BYTES: u64 = 64 << 10;

fn compaction_threshold(len: u64) -> u64 {
    COMPACT_MIN_BYTES.max(len.saturating_mul(4))
}

/// Durable subscriber state of one store.
pub(crate) struct Subscriptions {
    env: Arc<Env>,
    path: PathBuf,
    log: Mutex<LogState>,
    /// Syncs of the log; its tickets are record numbers.
    commit: GroupCommit,
    /// Records were appended since the last sync started.
    dirty: AtomicBool,
    durable: Mutex<HashMap<SubKey, Durable>>,
    in_use: Mutex<HashSet<SubKey>>,
}

/// Marks a durable subscriber as attached to a live handle; released on drop.
pub(crate) struct InUse {
    subs: Arc<Subscriptions>,
    key: SubKey,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.subs.in_use.lock().remove(&self.key);
    }
}

impl Subscriptions {
    /// Replays the log, keeping only subscribers of the live channel ids,
    /// and cuts a torn tail. Returns the bytes cut.
    pub(crate) fn open(env: Arc<Env>, live_ids: &HashSet<u64>) -> Result<(Arc<Subscriptions>, u64)> {
        let storage = &env.storage;
        let path = env.root.join(LOG_FILE);
        storage.remove_file(&env.root.join(format!("{LOG_FILE}.tmp")))?;
        let bytes = if storage.exists(&path) {
            storage.read_file(&path, u64::MAX)?
        } else {
            Vec::new()
        };
        let decoded = log::decode(&bytes, &path)?;
        let mut durable = HashMap::new();
        for rec in decoded.records {
            apply(&mut durable, rec);
        }
        durable.retain(|(id, _), _| live_ids.contains(id));
        let mut file = storage.open_log(&path)?;
        let mut len = decoded.valid_end as u64;
        let cut = bytes.len() as u64 - len;
        if len == 0 {
            file.truncate(0)?;
            file.append(&log::file_header())?;
            len = LOG_HEADER_LEN as u64;
        } else if cut > 0 {
            file.truncate(len)?;
        }
        if cut > 0 || bytes.is_empty() {
            file.sync()?;
            storage.sync_dir(&env.root)?;
        }
        let subs = Arc::new(Subscriptions {
            env,
            path,
            log: Mutex::new(LogState {
                file,
                len,
                appended: 0,
                compact_at: compaction_threshold(len),
                compacted_len: len,
            }),
            commit: GroupCommit::new(0),
            dirty: AtomicBool::new(false),
            durable: Mutex::new(durable),
            in_use: Mutex::new(HashSet::new()),
        });
        Ok((subs, cut))
    }

    pub(crate) fn get(&self, key: &SubKey) -> Option<Durable> {
        self.durable.lock().get(key).cloned()
    }

    pub(crate) fn count_for(&self, channel_id: u64) -> usize {
        self.durable.lock().keys().filter(|(id, _)| *id == channel_id).count()
    }

    pub(crate) fn names_for(&self, channel_id: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .durable
            .lock()
            .keys()
            .filter(|(id, _)| *id == channel_id)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Whether a subscriber or queue group of the channel is open.
    pub(crate) fn has_open(&self, channel_id: u64) -> bool {
        self.in_use.lock().iter().any(|(id, _)| *id == channel_id)
    }

    /// Attaches a live handle; `SubscriberInUse` if one already is.
    pub(crate) fn attach(self: &Arc<Self>, key: SubKey, channel: &str) -> Result<InUse> {
        if !self.in_use.lock().insert(key.clone()) {
            return Err(Error::SubscriberInUse {
                channel: channel.to_string(),
                name: key.1,
            });
        }
        Ok(InUse {
            subs: Arc::clone(self),
            key,
        })
    }

    /// Appends one atomic commit of `entries` and `state`; under
    /// `SyncPolicy::Always` returns once it is durable.
    pub(crate) fn commit(&self, entries: Vec<Position>, state: Arc<[u8]>) -> Result<()> {
        self.append(LogRecord::Commit { entries, state })
    }

    /// Durably forgets a subscriber.
    pub(crate) fn remove(&self, key: &SubKey) -> Result<()> {
        self.append(LogRecord::Remove {
            channel_id: key.0,
            name: key.1.clone(),
        })
    }

    /// Drops the in-memory state of a deleted channel's subscribers (their
    /// records die at the next compaction: the id is never live again).
    pub(crate) fn forget_channel(&self, channel_id: u64) {
        self.durable.lock().retain(|(id, _), _| *id != channel_id);
    }

    fn append(&self, rec: LogRecord) -> Result<()> {
        self.env.check_writable()?;
        let bytes = log::encode(&rec);
        let number = {
            let mut log = self.log.lock();
            log.file.append(&bytes).map_err(|e| self.env.fail(e))?;
            log.len += bytes.len() as u64;
            log.appended += 1;
            apply(&mut self.durable.lock(), rec);
            self.dirty.store(true, Ordering::Release);
            let n = log.appended;
            self.maybe_compact(&mut log)?;
            n
        };
        if self.env.opts.get_sync_policy() == SyncPolicy::Always {
            self.sync_through(number)?;
        }
        Ok(())
    }

    /// Makes every record appended so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let n = self.log.lock().appended;
        self.sync_through(n)
    }

    /// Whether records were appended since the last sync.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Group commit: the first caller syncs for everyone whose record was
    /// appended before the sync started; the others wait for it. Appends go
    /// on during the sync (the log's lock is not held across it).
    fn sync_through(&self, number: u64) -> Result<()> {
        self.env.check_failed()?;
        self.commit.sync_through(number, || {
            self.env.check_failed()?;
            let (file, target) = {
                let log = self.log.lock();
                self.dirty.store(false, Ordering::Release);
                (log.file.clone(), log.appended)
            };
            file.sync().map_err(|e| self.env.fail(e))?;
            Ok(target)
        })
    }

    /// The compaction thread's check: rewrites the log once it has doubled
    /// since the last rewrite (and holds at least 64 KiB). True if it did.
    pub(crate) fn compact_if_grown(&self) -> Result<bool> {
        let mut log = self.log.lock();
        if log.len < BACKGROUND_COMPACT_MIN_BYTES || log.len < log.compacted_len * 2 {
            return Ok(false);
        }
        self.rewrite(&mut log)?;
        Ok(true)
    }

    /// Rewrites the log inline when it has grown well past its live part
    /// (a backstop for when the compaction thread lags).
    fn maybe_compact(&self, log: &mut LogState) -> Result<()> {
        if log.len < log.compact_at {
            return Ok(());
        }
        self.rewrite(log)
    }

    /// Rewrites the log with one record per live subscriber: temp file,
    /// sync, rename, directory sync.
    fn rewrite(&self, log: &mut LogState) -> Result<()> {
        let live: Vec<Vec<u8>> = self
            .durable
            .lock()
            .iter()
            .map(|(k, d)| log::encode(&commit_record(k, d)))
            .collect();
        let storage = &self.env.storage;
        let tmp = self.env.root.join(format!("{LOG_FILE}.tmp"));
        let mut content = log::file_header().to_vec();
        for r in &live {
            content.extend_from_slice(r);
        }
        let result = (|| {
            storage.write_file(&tmp, &content)?;
            storage.sync_file(&tmp)?;
            storage.rename(&tmp, &self.path)?;
            storage.sync_dir(&self.env.root)?;
            storage.open_log(&self.path)
        })();
        let file = self.env.sticky(result)?;
        log.file = file;
        log.len = content.len() as u64;
        log.compact_at = compaction_threshold(log.len);
        log.compacted_len = log.len;
        // Everything in the new file is durable.
        self.commit.mark_durable(log.appended);
        Ok(())
    }

    /// Bytes in the log file (for tests of compaction).
    #[cfg(test)]
    pub(crate) fn log_len(&self) -> u64 {
        self.log.lock().len
    }
}

fn commit_record(key: &SubKey, d: &Durable) -> LogRecord {
    LogRecord::Commit {
        entries: vec![Position {
            channel_id: key.0,
            name: key.1.clone(),
            kind: d.kind,
            position: d.position,
            acked_above: d.acked_above.clone(),
        }],
        state: Arc::clone(&d.state),
    }
}

fn apply(durable: &mut HashMap<SubKey, Durable>, rec: LogRecord) {
    match rec {
        LogRecord::Commit { entries, state } => {
            for e in entries {
                durable.insert(
                    (e.channel_id, e.name),
                    Durable {
                        kind: e.kind,
                        position: e.position,
                        acked_above: e.acked_above,
                        state: Arc::clone(&state),
                    },
                );
            }
        }
        LogRecord::Remove { channel_id, name } => {
            durable.remove(&(channel_id, name));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::SimStorage;
    use crate::{Options, StartAt, Store, SyncPolicy};

    #[test]
    fn log_is_compacted_and_keeps_every_latest_commit() {
        let sim = SimStorage::new();
        let opts = Options::default()
            .simulated(&sim)
            .segment_size(1 << 20)
            .sync_policy(SyncPolicy::Never);
        let store = Store::open("/s", opts.clone()).expect("open");
        let ch = store.channel("c").expect("channel");
        for i in 0..300u64 {
            ch.publish(&i.to_le_bytes()).expect("publish");
        }
        let subs: Vec<_> = (0..3)
            .map(|i| ch.subscribe(&format!("s{i}"), StartAt::First).expect("subscribe"))
            .collect();
        let state = vec![7u8; 2000];
        let (mut max_len, mut shrank) = (0, false);
        for round in 1..=300u64 {
            for s in &subs {
                let before = ch.core.subs.log_len();
                s.commit(round, &state).expect("commit");
                shrank |= ch.core.subs.log_len() < before;
            }
            max_len = max_len.max(ch.core.subs.log_len());
        }
        assert!(shrank, "the log was rewritten (peaked at {max_len} bytes)");
        assert!(
            max_len <= super::COMPACT_MIN_BYTES + 8192,
            "and never grew far past the threshold"
        );
        drop(subs);
        drop(ch);
        // Everything survives a power cut after the rewrite (it is synced,
        // renamed and its directory synced).
        store.sync().expect("sync");
        let after = sim.power_loss(5);
        drop(store);
        let store = Store::open("/s", opts.simulated(&after)).expect("reopen");
        let ch = store.channel("c").expect("channel");
        for i in 0..3 {
            let s = ch.subscribe(&format!("s{i}"), StartAt::New).expect("resubscribe");
            assert_eq!(s.committed().0, 300);
            assert_eq!(&*s.committed().1, &state[..]);
        }
    }
}
