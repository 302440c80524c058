//! The store: one directory, one lock, a catalog of channels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::catalog::{validate_name, Catalog, ChannelEntry};
use crate::channel::{Arrivals, Channel, ChannelCore};
use crate::compaction::{CompactionReport, Compactor};
use crate::durability::{dirty, Flusher, GroupCommit};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::options::{Options, SyncPolicy};
use crate::prefault::Prefaulter;
use crate::recovery::{recover_channel, ChannelRecovery, RecoveredChannel};
use crate::segments::SegmentList;
use crate::storage::{LockGuard, Storage};
use crate::subscriber::{Subscriber, Subscriptions};
use crate::verify::VerifyReport;

/// An open store: a directory of channels, owned by one `Store` at a time.
///
/// Dropping the store closes it (errors are then ignored; call
/// [`close`](Store::close) to see them).
pub struct Store {
    pub(crate) shared: Arc<StoreShared>,
}

pub(crate) struct StoreShared {
    pub(crate) env: Arc<Env>,
    pub(crate) catalog: Mutex<Catalog>,
    pub(crate) channels: RwLock<HashMap<String, Arc<ChannelCore>>>,
    flusher: Mutex<Option<Flusher>>,
    compactor: Mutex<Option<Compactor>>,
    prefaulter: Mutex<Option<Prefaulter>>,
    lock: Mutex<Option<LockGuard>>,
    closed: AtomicBool,
    report: Vec<ChannelRecovery>,
    pub(crate) subs: Arc<Subscriptions>,
    subscribers_truncated: u64,
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

fn new_core(
    env: &Arc<Env>,
    subs: &Arc<Subscriptions>,
    name: &str,
    entry: &ChannelEntry,
    dir: PathBuf,
    rec: RecoveredChannel,
) -> Arc<ChannelCore> {
    let id = entry.id;
    let last = rec.writer.next_seq - 1;
    let last_timestamp = rec.writer.last_timestamp;
    Arc::new(ChannelCore {
        env: Arc::clone(env),
        id,
        name: name.to_string(),
        dir,
        segments: SegmentList::new(rec.segments),
        writer: Mutex::new(rec.writer),
        last_seq: AtomicU64::new(last),
        first_seq: AtomicU64::new(rec.first_seq),
        // Recovery leaves everything it kept durable.
        durable_seq: AtomicU64::new(last),
        last_timestamp: AtomicU64::new(last_timestamp),
        group: GroupCommit::default(),
        deleted: AtomicBool::new(false),
        subs: Arc::clone(subs),
        arrivals: Arrivals::default(),
        groups: Default::default(),
        own_limits: RwLock::new(entry.limits),
        last_activity: AtomicU64::new(env.opts.now_ns()),
    })
}

impl Store {
    /// Opens (creating if needed) the store in directory `path`, recovering
    /// every channel after a crash as docs/format.md describes.
    ///
    /// Errors: `Locked` if another `Store` holds the directory;
    /// `InvalidOption`; `Corrupt` for damage in durable data (unless
    /// `RecoveryMode::Repair`); I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Store> {
        opts.validate()?;
        let root = path.as_ref().to_path_buf();
        let storage = opts.storage_backend().clone();
        storage.create_dir_all(&root)?;
        let lock = storage.lock(&root.join("LOCK"))?;
        let env = Arc::new(Env::new(root.clone(), opts.clone(), storage.clone()));

        let chans = channels_dir(&root);
        let catalog = match Catalog::load(&storage, &root)? {
            Some(c) => c,
            None => {
                if storage.exists(&chans) && !storage.list_dir(&chans)?.is_empty() {
                    return Err(Error::corrupt(
                        Catalog::path(&root),
                        0,
                        "the catalog is missing but channel directories exist",
                    ));
                }
                let c = Catalog::default();
                c.save(&storage, &root)?;
                c
            }
        };
        storage.remove_file(&root.join("catalog.tmp"))?;
        if !storage.exists(&chans) {
            storage.create_dir_all(&chans)?;
            storage.sync_dir(&root)?;
        }
        // Directories of deleted channels (or of a delete cut short by a
        // crash) are removed: their ids are never handed out again.
        let live: Vec<u64> = catalog.channels.values().map(|e| e.id).collect();
        let mut removed = false;
        for name in storage.list_dir(&chans)? {
            let orphan = name.parse::<u64>().is_ok_and(|id| !live.contains(&id));
            if orphan {
                remove_channel_dir(&storage, &chans.join(&name))?;
                removed = true;
            }
        }
        if removed {
            storage.sync_dir(&chans)?;
        }

        let live_ids = catalog.channels.values().map(|e| e.id).collect();
        let (subs, subscribers_truncated) = Subscriptions::open(Arc::clone(&env), &live_ids)?;
        let mut channels = HashMap::new();
        let mut report = Vec::new();
        for (name, entry) in &catalog.channels {
            let dir = channel_dir(&root, entry.id);
            let rec = recover_channel(&env, &dir, name, entry.id, entry.first_seq)?;
            report.push(rec.report.clone());
            channels.insert(name.clone(), new_core(&env, &subs, name, entry, dir, rec));
        }

        let shared = Arc::new(StoreShared {
            env,
            catalog: Mutex::new(catalog),
            channels: RwLock::new(channels),
            flusher: Mutex::new(None),
            compactor: Mutex::new(None),
            prefaulter: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
            closed: AtomicBool::new(false),
            report,
            subs,
            subscribers_truncated,
            #[cfg(test)]
            panic_next_compaction: AtomicBool::new(false),
        });
        if matches!(storage, Storage::Real(_)) {
            let prefaulter = Prefaulter::start()?;
            let _ = shared.env.prefault.set(prefaulter.sender());
            *shared.prefaulter.lock() = Some(prefaulter);
        }
        let compactor = Compactor::start(Arc::downgrade(&shared), opts.get_compact_interval())?;
        *shared.compactor.lock() = Some(compactor);
        if let SyncPolicy::Interval(every) = opts.get_sync_policy() {
            let flusher = Flusher::start(Arc::downgrade(&shared), every)?;
            *shared.flusher.lock() = Some(flusher);
        }
        Ok(Store { shared })
    }

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
        self.shared.env.check_writable()?;
        if let Some(core) = self.shared.channels.read().get(name) {
            return Ok(Channel { core: Arc::clone(core) });
        }
        let env = &self.shared.env;
        let mut catalog = self.shared.catalog.lock();
        if let Some(core) = self.shared.channels.read().get(name) {
            return Ok(Channel { core: Arc::clone(core) });
        }
        // The name may already be in the catalog if an earlier call saved it
        // and then failed to create the directory.
        let entry = match catalog.channels.get(name) {
            Some(entry) => entry.clone(),
            None => {
                let entry = ChannelEntry {
                    id: catalog.next_id,
                    first_seq: 1,
                    limits,
                };
                let mut next = catalog.clone();
                next.next_id += 1;
                next.channels.insert(name.to_string(), entry.clone());
                env.sticky(next.save(&env.storage, &env.root))?;
                *catalog = next;
                entry
            }
        };
        let dir = channel_dir(&env.root, entry.id);
        env.sticky(
            env.storage
                .create_dir_all(&dir)
                .and_then(|()| env.storage.sync_dir(&channels_dir(&env.root))),
        )?;
        let core = new_core(env, &self.shared.subs, name, &entry, dir, RecoveredChannel::empty(1));
        self.shared.channels.write().insert(name.to_string(), Arc::clone(&core));
        Ok(Channel { core })
    }

    /// Replaces a channel's own limits (durably, in the catalog); the next
    /// compaction pass applies them. `NoSuchChannel`, `InvalidOption`.
    pub fn set_channel_limits(&self, name: &str, limits: Limits) -> Result<()> {
        validate_name(name)?;
        limits.validate()?;
        let env = &self.shared.env;
        env.check_writable()?;
        let mut catalog = self.shared.catalog.lock();
        let mut next = catalog.clone();
        let Some(entry) = next.channels.get_mut(name) else {
            return Err(Error::NoSuchChannel { name: name.to_string() });
        };
        entry.limits = limits;
        env.sticky(next.save(&env.storage, &env.root))?;
        *catalog = next;
        if let Some(core) = self.shared.channels.read().get(name) {
            *core.own_limits.write() = limits;
        }
        Ok(())
    }

    /// The existing channel `name`; `NoSuchChannel` if there is none.
    pub fn open_channel(&self, name: &str) -> Result<Channel> {
        validate_name(name)?;
        self.shared
            .channels
            .read()
            .get(name)
            .map(|core| Channel { core: Arc::clone(core) })
            .ok_or_else(|| Error::NoSuchChannel { name: name.to_string() })
    }

    /// Names of all channels, sorted.
    pub fn channel_names(&self) -> Vec<String> {
        self.shared.catalog.lock().channels.keys().cloned().collect()
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
        match self.shared.compactor.lock().as_ref() {
            Some(c) => c.compact_now(),
            None => Err(Error::Closed),
        }
    }
    /// Makes everything published so far, on every channel, durable.
    pub fn sync(&self) -> Result<()> {
        let channels: Vec<_> = self.shared.channels.read().values().cloned().collect();
        for core in channels {
            core.sync_through(core.last_seq.load(Ordering::Acquire))?;
        }
        self.shared.subs.sync()
    }

    /// Commits several subscribers (on one or several channels of this
    /// store) and one state blob in one atomic step: after any crash either
    /// all of these positions (each with `state`) are committed, or none.
    /// Each subscriber's checks and durability are as for
    /// [`Subscriber::commit`].
    pub fn commit_all(&self, commits: &[(&Subscriber, u64)], state: &[u8]) -> Result<()> {
        crate::subscriber::commit_all(commits, state)
    }

    /// Checks every file of the store and the invariants across them (records
    /// and their CRCs, seals against the next segment, index files against
    /// the records they point at, first retained seq against the segments,
    /// subscriber positions against the log, no orphan files) and reports
    /// each problem with its path and offset. Reads only; changes nothing.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.shared.verify()
    }

    /// Bytes of a torn tail cut from the subscribers log at open.
    pub fn subscribers_log_truncated(&self) -> u64 {
        self.shared.subscribers_truncated
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_report(&self) -> &[ChannelRecovery] {
        &self.shared.report
    }

    /// The error that made the store read-only, if any.
    pub fn failure(&self) -> Option<Arc<Error>> {
        self.shared.env.failure()
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.env.root
    }

    /// Stops the background threads, makes everything durable, and releases
    /// the lock. Handles still held return `Closed` afterwards.
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
    pub(crate) fn delete_channel(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let env = &self.env;
        env.check_writable()?;
        let mut catalog = self.catalog.lock();
        if !catalog.channels.contains_key(name) {
            return Err(Error::NoSuchChannel { name: name.to_string() });
        }
        let mut next = catalog.clone();
        next.channels.remove(name);
        env.sticky(next.save(&env.storage, &env.root))?;
        *catalog = next;
        let core = self.channels.write().remove(name);
        if let Some(core) = core {
            // Under the writer lock, so no publish is half-way through.
            let writer = core.writer.lock();
            core.deleted.store(true, Ordering::Release);
            self.subs.forget_channel(core.id);
            core.arrivals.wake();
            drop(writer);
            // Already deleted for good (the catalog says so); leftovers of a
            // failure here are removed at the next open.
            env.sticky(
                remove_channel_dir(&env.storage, &core.dir)
                    .and_then(|()| env.storage.sync_dir(&channels_dir(&env.root))),
            )?;
        }
        Ok(())
    }

    /// Syncs channels with data not yet durable (the flusher's pass).
    pub(crate) fn sync_dirty(&self) -> Result<()> {
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        for core in dirty(&channels) {
            core.sync_through(core.last_seq.load(Ordering::Acquire))?;
        }
        if self.subs.is_dirty() {
            self.subs.sync()?;
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(compactor) = self.compactor.lock().take() {
            compactor.stop(self);
        }
        if let Some(flusher) = self.flusher.lock().take() {
            flusher.stop(self);
        }
        if let Some(prefaulter) = self.prefaulter.lock().take() {
            if prefaulter.stop() {
                self.env.fail(Error::io(
                    "prefault thread",
                    "spool-prefault",
                    std::io::Error::other("the prefault thread panicked"),
                ));
            }
        }
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        let mut result = match self.env.failure() {
            Some(cause) => Err(Error::Failed { cause }),
            None => Ok(()),
        };
        if result.is_ok() {
            for core in &channels {
                if let Err(e) = core.sync_for_close() {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.subs.sync();
        }
        self.env.mark_closed();
        for core in &channels {
            core.arrivals.wake();
        }
        // Writers finish their copy before the lock goes.
        for core in &channels {
            drop(core.writer.lock());
        }
        self.lock.lock().take();
        result
    }
}
