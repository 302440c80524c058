//! The store's durable subscriber state: replayed from the subscribers log
//! at open, updated by commits, compacted by rewriting the log into a new
//! generation.
//!
//! Durability order: a commit record is made durable only after every
//! channel it points into is durable through its position. Under
//! `SyncPolicy::Always` the commit syncs its channel before appending;
//! otherwise a sync of the log first takes the end it will cover, then
//! syncs every channel, then the log (`sync_with`), so no durable commit
//! ever points past the durable log.

mod file;
mod generation;
mod open;
mod recover;
mod view;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::sublog::{encode_body, LogRecord, Position, QueueMeta, SubKind};
use crate::group_commit::GroupCommit;
use crate::options::SyncPolicy;
use file::LogFile;
use generation::{write_generation, Generation};
pub(crate) use recover::{scan, Source as ScanSource};
pub(crate) use view::write_copy;

/// Identifies a durable subscriber: channel incarnation and name.
pub(crate) type SubKey = (u64, String);

/// The latest committed state of one durable subscriber.
#[derive(Clone, Debug)]
pub(crate) struct Durable {
    pub kind: SubKind,
    pub position: u64,
    pub acked_above: Vec<(u64, u64)>,
    /// Queue groups: delivery state.
    pub meta: QueueMeta,
    pub state: Arc<[u8]>,
    /// When it was committed (clock ns; 0 when unknown).
    pub committed_at: u64,
    /// Number of the log record holding it.
    recno: u64,
}

struct LogState {
    file: LogFile,
    /// When the file was last rewritten: rewrites coming faster than one a
    /// second grow it.
    rewritten_at: Instant,
}

/// Durable subscriber state of one store.
pub(crate) struct Subscriptions {
    env: Arc<Env>,
    catalog: Arc<Catalog>,
    path: PathBuf,
    log: Mutex<LogState>,
    /// Syncs of the log; its tickets are record numbers.
    commit: GroupCommit,
    /// Records were appended since the last sync started.
    dirty: AtomicBool,
    durable: Mutex<HashMap<SubKey, Durable>>,
    in_use: Mutex<HashSet<SubKey>>,
    /// State kept in memory between syncs (queue groups' acks under
    /// `Never`/`Interval`), written by every sync before it fixes what it
    /// covers.
    pending: Mutex<Vec<Weak<dyn Pending>>>,
}

/// Something that holds commits in memory until the next sync of the log
/// (a queue group: its acks are group-committed).
pub(crate) trait Pending: Send + Sync {
    /// Appends what it holds as a record (without syncing); nothing if it
    /// holds nothing. Runs while the store closes too; `exact` (at close):
    /// also when the last record claims more than happened (a queue
    /// group's delivery lease), so a clean restart sees exact counts.
    fn write_pending(&self, exact: bool) -> Result<()>;

    /// Whether it holds anything `write_pending` would write.
    fn has_pending(&self) -> bool;
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

/// The highest seq a commit entry points at.
fn top(p: &Position) -> u64 {
    p.acked_above
        .iter()
        .map(|r| r.1)
        .fold(p.position, u64::max)
        .max(p.meta.top())
}

fn apply(durable: &mut HashMap<SubKey, Durable>, recno: u64, timestamp: u64, rec: LogRecord) {
    match rec {
        LogRecord::Commit { entries, state } => {
            for e in entries {
                durable.insert(
                    (e.channel_id, e.name),
                    Durable {
                        kind: e.kind,
                        position: e.position,
                        acked_above: e.acked_above,
                        meta: e.meta,
                        state: Arc::clone(&state),
                        committed_at: timestamp,
                        recno,
                    },
                );
            }
        }
        LogRecord::Remove { channel_id, name } => {
            durable.remove(&(channel_id, name));
        }
        LogRecord::Watermark { .. } => {}
    }
}

/// The records a strict (or, with `repair`, a salvaging) read of a version
/// 2 log image finds, for the fuzz targets.
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn walk_image(
    path: &std::path::Path,
    bytes: &[u8],
    header: crate::format::sublog::LogHeader,
    seed: u32,
    newest: Option<(crate::format::segment::Slot, usize)>,
    repair: bool,
) -> Result<Vec<LogRecord>> {
    let scan = recover::walk(path, bytes, header, seed, newest, repair)?;
    Ok(scan.records.into_iter().map(|s| s.record).collect())
}

impl Subscriptions {
    pub(crate) fn get(&self, key: &SubKey) -> Option<Durable> {
        self.durable.lock().get(key).cloned()
    }

    /// Every durable subscriber and queue group of a channel, by name.
    pub(crate) fn of_channel(&self, channel_id: u64) -> Vec<(String, Durable)> {
        let mut v: Vec<(String, Durable)> = self
            .durable
            .lock()
            .iter()
            .filter(|((id, _), _)| *id == channel_id)
            .map(|((_, n), d)| (n.clone(), d.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn count_for(&self, channel_id: u64) -> usize {
        self.durable.lock().keys().filter(|(id, _)| *id == channel_id).count()
    }

    pub(crate) fn names_for(&self, channel_id: u64) -> Vec<String> {
        self.of_channel(channel_id).into_iter().map(|(n, _)| n).collect()
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

    /// Appends one atomic commit of `entries` and `state` (the caller made
    /// their channels durable first under `SyncPolicy::Always`); under
    /// `Always` returns once it is durable.
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
    /// records die at the next rewrite: the id is never live again).
    pub(crate) fn forget_channel(&self, channel_id: u64) {
        self.durable.lock().retain(|(id, _), _| *id != channel_id);
    }

    /// Registers state held in memory until the next sync (see
    /// [`Pending`]); dropped holders are forgotten.
    pub(crate) fn register_pending(&self, holder: Weak<dyn Pending>) {
        let mut pending = self.pending.lock();
        pending.retain(|w| w.strong_count() > 0);
        pending.push(holder);
    }

    /// Has every registered holder write what it holds (`exact`: see
    /// [`Pending::write_pending`]).
    pub(crate) fn write_pending(&self, exact: bool) -> Result<()> {
        let holders: Vec<Arc<dyn Pending>> = self.pending.lock().iter().filter_map(Weak::upgrade).collect();
        for h in holders {
            h.write_pending(exact)?;
        }
        Ok(())
    }

    /// Appends one commit without syncing it, under any sync policy, and
    /// returns its record number (for [`sync_record`](Self::sync_record)).
    /// Refused only when the store failed, not while it closes: a close
    /// writes what queue groups held in memory this way. The caller made
    /// the channels it points into durable first under `Always`.
    pub(crate) fn write_commit(&self, entries: Vec<Position>) -> Result<u64> {
        self.env.check_failed()?;
        self.write(LogRecord::Commit {
            entries,
            state: Arc::from(&[][..]),
        })
    }

    /// Makes record `number` (and every one before it) durable, sharing
    /// the sync with concurrent callers. Only for records whose channels
    /// are durable (as under `SyncPolicy::Always`).
    pub(crate) fn sync_record(&self, number: u64) -> Result<()> {
        self.sync_appended(number)
    }

    fn append(&self, rec: LogRecord) -> Result<()> {
        self.env.check_writable()?;
        let number = self.write(rec)?;
        if self.env.opts.get_sync_policy() == SyncPolicy::Always {
            self.sync_appended(number)?;
        }
        Ok(())
    }

    /// Appends a record; returns its number.
    fn write(&self, rec: LogRecord) -> Result<u64> {
        let body = encode_body(&rec);
        let now = self.env.opts.now_ns();
        let number = {
            let mut log = self.log.lock();
            if !log.file.fits(body.len()) {
                self.rewrite(&mut log, true)?;
                if !log.file.fits(body.len()) {
                    // The rewrite sized the file for the live records; one
                    // record this large needs more.
                    self.rewrite_sized(&mut log, body.len())?;
                }
            }
            let n = log.file.append(now, &body).map_err(|e| self.env.fail(e))?;
            log.file.prefault_ahead(self.env.prefault.get());
            apply(&mut self.durable.lock(), n, now, rec);
            self.dirty.store(true, Ordering::Release);
            n
        };
        Ok(number)
    }

    /// Makes every commit appended so far durable. `prepare` runs after
    /// the sync has fixed what it covers and before it writes: it syncs the
    /// channels, so those commits never point past the durable logs. It
    /// runs even when there is nothing to sync here.
    pub(crate) fn sync_with(&self, prepare: impl FnOnce() -> Result<()>) -> Result<()> {
        self.env.check_failed()?;
        // Acks held in memory become records first, so that this sync
        // covers them.
        self.write_pending(false)?;
        let target = {
            let log = self.log.lock();
            self.dirty.store(false, Ordering::Release);
            log.file.sync_target()
        };
        prepare()?;
        self.sync_to(target)
    }

    /// Whether records were appended since the last sync, or state is
    /// held in memory for the next one.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
            || self
                .pending
                .lock()
                .iter()
                .any(|w| w.upgrade().is_some_and(|p| p.has_pending()))
    }

    /// Group commit over record numbers: makes the records before
    /// `target` durable (and records so in a slot); the log's lock is not
    /// held across the msync. Records appended after the target was taken
    /// may reach the disk with it, but no slot claims them.
    fn sync_to(&self, target: file::SyncTarget) -> Result<()> {
        let ticket = target.next_record - 1;
        self.commit.sync_through(ticket, || {
            self.env.check_failed()?;
            target.sync(&self.path).map_err(|e| self.env.fail(e))?;
            self.log
                .lock()
                .file
                .record_synced(&target)
                .map_err(|e| self.env.fail(e))?;
            Ok(ticket)
        })
    }

    /// Under `SyncPolicy::Always`: makes record `number` durable (every
    /// record's channels are durable before it is appended under that
    /// policy, so any sync covering everything appended is safe).
    fn sync_appended(&self, number: u64) -> Result<()> {
        self.env.check_failed()?;
        self.commit.sync_through(number, || {
            self.env.check_failed()?;
            let target = {
                let log = self.log.lock();
                self.dirty.store(false, Ordering::Release);
                log.file.sync_target()
            };
            target.sync(&self.path).map_err(|e| self.env.fail(e))?;
            self.log
                .lock()
                .file
                .record_synced(&target)
                .map_err(|e| self.env.fail(e))?;
            Ok(target.next_record - 1)
        })
    }

    /// At close, after `sync_with`: durably marks the log clean.
    pub(crate) fn close(&self) -> Result<()> {
        self.env.check_failed()?;
        self.log.lock().file.mark_clean().map_err(|e| self.env.fail(e))
    }

    /// The compaction thread's check: rewrites the log once its records
    /// fill half the file. True if it did.
    pub(crate) fn compact_if_due(&self) -> Result<bool> {
        let mut log = self.log.lock();
        if log.file.used() < log.file.capacity() / 2 {
            return Ok(false);
        }
        self.rewrite(&mut log, false)?;
        Ok(true)
    }

    /// Rewrites the log with one record per live subscriber into a new
    /// generation: temp file (synced, marked clean), rename, directory
    /// sync, then the catalog records the generation. `full`: an append
    /// found the file full (frequent rewrites grow it).
    fn rewrite(&self, log: &mut LogState, full: bool) -> Result<()> {
        self.rewrite_with(log, full, 0)
    }

    fn rewrite_sized(&self, log: &mut LogState, extra: usize) -> Result<()> {
        self.rewrite_with(log, true, extra)
    }

    fn rewrite_with(&self, log: &mut LogState, full: bool, extra: usize) -> Result<()> {
        let grow = (full && log.rewritten_at.elapsed() < Duration::from_secs(1)).then(|| log.file.capacity());
        // Only what is durable now is durable in the new file (see
        // `generation`); the rest follows it and waits for the next sync.
        let durable_before = self.commit.durable() + 1;
        let file = log
            .file
            .read_records()
            .and_then(|records| Generation::split(&self.path, records, durable_before))
            .and_then(|next| write_generation(&self.env, &self.catalog, &self.path, &next, extra, grow));
        let file = self.env.sticky(file)?;
        if file.next_record > durable_before {
            self.dirty.store(true, Ordering::Release);
        }
        log.file = file;
        log.rewritten_at = Instant::now();
        Ok(())
    }

    /// Bytes the log's records take (for tests of compaction).
    #[cfg(test)]
    pub(crate) fn log_used(&self) -> usize {
        self.log.lock().file.used()
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
        let (mut max_used, mut shrank) = (0, false);
        for round in 1..=300u64 {
            for s in &subs {
                let before = ch.core.subs.log_used();
                s.commit(round, &state).expect("commit");
                shrank |= ch.core.subs.log_used() < before;
            }
            max_used = max_used.max(ch.core.subs.log_used());
        }
        assert!(shrank, "the log was rewritten (peaked at {max_used} bytes)");
        assert!(max_used <= 1 << 20, "and never grew far ({max_used} bytes)");
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
