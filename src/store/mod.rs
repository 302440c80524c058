//! The store: one directory, one lock, a catalog of channels, and the
//! services that run on it (flusher, compaction, verify).

mod attach;
mod backup;
mod compaction;
mod existing;
mod flusher;
mod open;
mod poller;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::catalog::Catalog;
use crate::channel::{commit_all, Channel, ChannelCore, Subscriber};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::catalog::{validate_name, ChannelEntry};
use crate::limits::Limits;
use crate::log::Log;
use crate::prefault::Prefaulter;
use crate::report::{CompactionReport, RecoveryReport, VerifyReport};
use crate::storage::{LockGuard, Storage};
use crate::subscriptions::Subscriptions;
use crate::worker::Worker;
use compaction::Compactor;
use flusher::Flusher;

/// An open store: a directory of channels, owned by one `Store` at a time.
///
/// Dropping the store closes it (errors are then ignored; call
/// [`close`](Store::close) to see them).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use spool::{Options, Store, SyncPolicy};
/// let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Always))?;
/// store.channel("orders")?.publish(b"durable when this returns")?;
/// assert_eq!(store.channel_names(), ["orders"]);
/// store.close()?;
/// # Ok::<(), spool::Error>(())
/// ```
pub struct Store {
    pub(crate) shared: Arc<StoreShared>,
}

pub(crate) struct StoreShared {
    pub(crate) env: Arc<Env>,
    pub(crate) catalog: Arc<Catalog>,
    /// Held while a channel is created or deleted.
    lifecycle: Mutex<()>,
    channels: RwLock<HashMap<String, Arc<ChannelCore>>>,
    flusher: Mutex<Option<Flusher>>,
    compactor: Mutex<Option<Compactor>>,
    prefaulter: Mutex<Option<Prefaulter>>,
    worker: Mutex<Option<Worker>>,
    /// Read-only attach: the thread following the owner.
    poller: Mutex<Option<poller::Poller>>,
    lock: Mutex<Option<LockGuard>>,
    closed: AtomicBool,
    report: RecoveryReport,
    pub(crate) subs: Arc<Subscriptions>,
    /// Test hook: the next compaction pass panics.
    #[cfg(test)]
    pub(crate) panic_next_compaction: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.shared.env.root)
            .field("channels", &self.shared.channels.read().len())
            .finish()
    }
}

fn channels_dir(root: &Path) -> PathBuf {
    root.join("channels")
}

fn channel_dir(root: &Path, id: u64) -> PathBuf {
    channels_dir(root).join(id.to_string())
}

/// Removes a channel directory and everything in it.
fn remove_channel_dir(storage: &Storage, dir: &Path) -> Result<()> {
    if storage.exists(dir) {
        for name in storage.list_dir(dir)? {
            storage.remove_file(&dir.join(name))?;
        }
        storage.remove_dir(dir)?;
    }
    Ok(())
}

impl Store {
    /// The channel `name`, created if it does not exist. Names are any
    /// non-empty UTF-8 up to 255 bytes without NUL (`InvalidName` otherwise).
    /// Creating a channel is durable when this returns.
    pub fn channel(&self, name: &str) -> Result<Channel> {
        self.channel_with_limits(name, Limits::default())
    }

    /// As [`channel`](Self::channel); a channel created by this call gets
    /// `limits` as its own (fields left `None` follow the store defaults).
    /// An existing channel is returned unchanged: use
    /// [`set_channel_limits`](Self::set_channel_limits) to change it.
    /// `InvalidOption` for nonsensical limits.
    pub fn channel_with_limits(&self, name: &str, limits: Limits) -> Result<Channel> {
        validate_name(name)?;
        limits.validate()?;
        if self.shared.env.read_only {
            return self.attached_channel(name);
        }
        let shared = &self.shared;
        shared.env.check_writable()?;
        if let Some(core) = shared.channels.read().get(name) {
            return Ok(Channel { core: Arc::clone(core) });
        }
        let env = &shared.env;
        let _lifecycle = shared.lifecycle.lock();
        if let Some(core) = shared.channels.read().get(name) {
            return Ok(Channel { core: Arc::clone(core) });
        }
        // The name may already be in the catalog if an earlier call saved it
        // and then failed to create the directory.
        let mut entry = None;
        shared.catalog.update(|c| {
            if let Some(e) = c.channels.get(name) {
                entry = Some(e.clone());
                return Ok(false);
            }
            let e = ChannelEntry::new(c.next_id, limits);
            c.next_id += 1;
            c.channels.insert(name.to_string(), e.clone());
            entry = Some(e);
            Ok(true)
        })?;
        let Some(entry) = entry else {
            return Err(Error::NoSuchChannel { name: name.to_string() });
        };
        let dir = channel_dir(&env.root, entry.id);
        env.sticky(
            env.storage
                .create_dir_all(&dir)
                .and_then(|()| env.storage.sync_dir(&channels_dir(&env.root))),
        )?;
        let log = Log::create(Arc::clone(env), Arc::clone(&shared.catalog), entry.id, name, dir);
        let core = ChannelCore::new(log, Arc::clone(&shared.subs), entry.limits);
        shared.channels.write().insert(name.to_string(), Arc::clone(&core));
        Ok(Channel { core })
    }

    /// Replaces a channel's own limits (durably, in the catalog); the next
    /// compaction pass applies them. `NoSuchChannel`, `InvalidOption`.
    pub fn set_channel_limits(&self, name: &str, limits: Limits) -> Result<()> {
        validate_name(name)?;
        limits.validate()?;
        self.shared.env.check_writable()?;
        self.shared.catalog.update(|c| match c.channels.get_mut(name) {
            Some(entry) => {
                entry.limits = limits;
                Ok(true)
            }
            None => Err(Error::NoSuchChannel { name: name.to_string() }),
        })?;
        if let Some(core) = self.shared.channels.read().get(name) {
            core.set_own_limits(limits);
        }
        Ok(())
    }

    /// The existing channel `name`; `NoSuchChannel` if there is none (on
    /// a read-only store, after a fresh look at the catalog).
    pub fn open_channel(&self, name: &str) -> Result<Channel> {
        validate_name(name)?;
        let found = || {
            self.shared
                .channels
                .read()
                .get(name)
                .map(|core| Channel { core: Arc::clone(core) })
        };
        if let Some(channel) = found() {
            return Ok(channel);
        }
        if self.shared.env.read_only {
            self.shared.refresh(false)?;
            if let Some(channel) = found() {
                return Ok(channel);
            }
        }
        Err(Error::NoSuchChannel { name: name.to_string() })
    }

    /// Names of all channels, sorted.
    pub fn channel_names(&self) -> Vec<String> {
        self.shared.catalog.snapshot().channels.into_keys().collect()
    }

    /// The store's identity: a random 128-bit number fixed when the store
    /// was created, kept by copies of it (a backup opens with the same
    /// identity). With a channel's id and a seq it names a message
    /// uniquely, for example as a deduplication id downstream.
    pub fn store_id(&self) -> u128 {
        self.shared.catalog.store_id()
    }

    /// Deletes a channel and its data. Durable when this returns: after any
    /// crash the channel is gone, and creating the name again yields a new,
    /// empty incarnation with a new id. Existing handles then return
    /// `ChannelDeleted`; messages already read stay valid.
    pub fn delete_channel(&self, name: &str) -> Result<()> {
        self.shared.delete_channel(name)
    }

    /// Runs a compaction pass now (limits, inactivity, subscribers log) and
    /// returns when it is done: for tests and tools. The background thread
    /// runs the same pass every `Options::compact_interval`.
    pub fn compact_now(&self) -> Result<CompactionReport> {
        self.shared.env.check_writable()?;
        match self.shared.compactor.lock().as_ref() {
            Some(c) => c.compact_now(&self.shared),
            None => Err(Error::Closed),
        }
    }

    /// Makes everything published so far, on every channel, durable; then
    /// every subscriber commit made so far.
    pub fn sync(&self) -> Result<()> {
        self.shared.env.check_writable()?;
        let shared = &self.shared;
        shared.subs.sync_with(|| shared.sync_channels(false))
    }

    /// Commits several subscribers (on one or several channels of this
    /// store) and one state blob in one atomic step: after any crash either
    /// all of these positions (each with `state`) are committed, or none.
    /// Each subscriber's checks and durability are as for
    /// [`Subscriber::commit`]. `InvalidOption` if a subscriber belongs to
    /// another store or appears twice.
    pub fn commit_all(&self, commits: &[(&Subscriber, u64)], state: &[u8]) -> Result<()> {
        commit_all(&self.shared.subs, commits, state)
    }

    /// Checks every file of the store and the invariants across them (records
    /// and their CRCs, seals against the next segment, index files against
    /// the records they point at, first retained seq against the segments,
    /// subscriber positions against the log, no orphan files) and reports
    /// each problem with its path and offset. Reads only; changes nothing.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.shared.verify(&mut |_| {})
    }

    /// [`verify`](Self::verify), telling `progress` how many bytes of
    /// segment files were read so far (after each file). On a store
    /// attached read-only it checks what the owner had written when it
    /// started (segments made after that are left out).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// store.channel("c")?.publish(b"x")?;
    /// let mut last = spool::Progress::default();
    /// let report = store.verify_with_progress(|p| last = p)?;
    /// assert!(report.is_ok());
    /// assert_eq!(last.done, last.total);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_with_progress(&self, mut progress: impl FnMut(crate::Progress)) -> Result<VerifyReport> {
        self.shared.verify(&mut progress)
    }

    /// What recovery found and did when this store was opened: per
    /// channel, torn tails cut and (with `RecoveryMode::Repair`) the ranges
    /// lost; subscribers whose commits were lost; a catalog restored from
    /// its backup; files upgraded from an older format.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// The error that made the store read-only, if any.
    pub fn failure(&self) -> Option<Arc<Error>> {
        self.shared.env.failure()
    }

    /// Bytes the store's files take, as their lengths say (segments with
    /// their preallocated part, index files, catalog, subscribers log).
    pub fn disk_usage(&self) -> Result<u64> {
        let storage = &self.shared.env.storage;
        let mut total = 0;
        let mut dirs = vec![self.shared.env.root.clone()];
        while let Some(dir) = dirs.pop() {
            for name in storage.list_dir(&dir)? {
                let path = dir.join(name);
                if storage.is_dir(&path) {
                    dirs.push(path);
                } else {
                    total += storage.file_len(&path).unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.env.root
    }

    /// Closes the store: stops accepting writes, stops the background
    /// threads, makes everything durable, marks each channel's last segment
    /// clean, and releases the lock.
    ///
    /// Handles still held afterwards ([`Channel`], [`Subscriber`](crate::Subscriber),
    /// [`QueueMember`](crate::QueueMember), [`Messages`](crate::Messages)):
    ///
    /// - every write, read, receive, commit and ack returns
    ///   [`Error::Closed`](crate::Error::Closed) (`publish`, `get`,
    ///   `read_from`, `seq_at_or_after`, `subscribe`, `subscribers`,
    ///   `disk_usage`, `recv` and its variants, the async ones included,
    ///   `commit`, `ack`); an iterator yields `Closed` once, then ends;
    /// - receives blocked or pending at the time of the close return
    ///   `Closed` (futures are woken);
    /// - what asks only for durability succeeds, since the close made
    ///   everything durable: `sync`, `synced_through`, and a durable-publish
    ///   future still pending;
    /// - `wait_for` returns at once, `Ok(true)` if the message is there;
    /// - the counters (`first_seq`, `last_seq`, `durable_seq`, `stats`,
    ///   `last_timestamp`) keep their last values, and a
    ///   [`Message`](crate::Message) read before stays valid.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use spool::{Error, Options, Store};
    /// let store = Store::open(dir.path(), Options::default())?;
    /// let ch = store.channel("c")?;
    /// let msg = ch.get(ch.publish(b"kept")?)?;
    /// store.close()?;
    /// assert!(matches!(ch.get(1), Err(Error::Closed)));
    /// assert!(matches!(ch.publish(b"late"), Err(Error::Closed)));
    /// assert_eq!((ch.last_seq(), msg.payload()), (1, &b"kept"[..]));
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn close(self) -> Result<()> {
        self.shared.close()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shared.close();
    }
}

impl StoreShared {
    /// Every open channel, in no particular order.
    pub(crate) fn channel_list(&self) -> Vec<Arc<ChannelCore>> {
        self.channels.read().values().cloned().collect()
    }

    pub(crate) fn delete_channel(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let env = &self.env;
        env.check_writable()?;
        let _lifecycle = self.lifecycle.lock();
        self.catalog.update(|c| match c.channels.remove(name) {
            Some(_) => Ok(true),
            None => Err(Error::NoSuchChannel { name: name.to_string() }),
        })?;
        let core = self.channels.write().remove(name);
        if let Some(core) = core {
            // Waits for an append in progress; later ones are refused.
            core.log.mark_deleted();
            self.subs.forget_channel(core.id());
            // Already deleted for good (the catalog says so); leftovers of a
            // failure here are removed at the next open.
            env.sticky(
                remove_channel_dir(&env.storage, core.log.dir())
                    .and_then(|()| env.storage.sync_dir(&channels_dir(&env.root))),
            )?;
        }
        Ok(())
    }

    /// Durably records new first retained seqs (retention), by channel id.
    pub(crate) fn record_first_seqs(&self, firsts: &[(u64, u64)]) -> Result<()> {
        self.catalog
            .update(|c| {
                let mut changed = false;
                for &(id, first) in firsts {
                    if let Some(e) = c.by_id_mut(id).filter(|e| e.first_seq < first) {
                        e.first_seq = first;
                        changed = true;
                    }
                }
                Ok(changed)
            })
            .map(|_| ())
    }

    /// Syncs every channel (a sync of the subscribers log runs this after
    /// fixing what it covers, before writing).
    fn sync_channels(&self, only_dirty: bool) -> Result<()> {
        for core in self.channel_list() {
            if only_dirty && core.log.last_seq() <= core.log.durable_seq() {
                continue;
            }
            match core.log.sync() {
                // Deleted meanwhile: nothing of it needs to be durable.
                Err(Error::ChannelDeleted { .. }) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Syncs channels with data not yet durable, then the subscribers log
    /// (the flusher's pass), in the order that keeps every durable commit
    /// inside the durable logs.
    pub(crate) fn sync_dirty(&self) -> Result<()> {
        if self.subs.is_dirty() {
            self.subs.sync_with(|| self.sync_channels(true))
        } else {
            self.sync_channels(true)
        }
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.env.read_only {
            // Nothing to sync or release: stop following, wake readers.
            self.env.stop_writes();
            if let Some(poller) = self.poller.lock().take() {
                poller.stop();
            }
            for core in self.channel_list() {
                core.log.arrivals.wake();
            }
            return Ok(());
        }
        // First: no write starts from now on.
        self.env.stop_writes();
        if let Some(compactor) = self.compactor.lock().take() {
            compactor.stop(self);
        }
        if let Some(flusher) = self.flusher.lock().take() {
            flusher.stop(self);
        }
        if let Some(prefaulter) = self.prefaulter.lock().take() {
            if prefaulter.stop() {
                self.env.fail_panicked(crate::prefault::THREAD);
            }
        }
        let channels = self.channel_list();
        let mut result = self.env.check_failed();
        if result.is_ok() {
            // Queue groups record their exact delivery state.
            result = self.subs.write_pending(true);
        }
        if result.is_ok() {
            // Each log drains its writer, syncs, then marks itself clean;
            // the subscribers log fixes what it covers first.
            result = self.subs.sync_with(|| {
                for core in &channels {
                    core.log.close()?;
                }
                Ok(())
            });
        }
        if result.is_ok() {
            result = self.subs.close();
        }
        if result.is_ok() {
            // What each channel holds is durable: recorded, so that a
            // missing or shortened file is never taken for less data.
            let seqs: Vec<(u64, u64)> = channels.iter().map(|c| (c.id(), c.log.last_seq())).collect();
            result = self.catalog.record_durable(&seqs);
        }
        // Every log is closed: no job can come any more.
        if let Some(worker) = self.worker.lock().take() {
            if worker.stop() {
                self.env.fail_panicked(crate::worker::THREAD);
            }
        }
        // Blocked receivers and pending futures find the store closed.
        for core in &channels {
            core.log.wake_all();
        }
        self.env.stop_timer();
        self.lock.lock().take();
        result
    }
}
