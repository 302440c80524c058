//! Read-only attach: a store that another process owns (or nobody does),
//! opened without its lock and without writing a byte; it follows what the
//! owner writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::poller::Poller;
use super::{channel_dir, Store, StoreShared};
use crate::catalog::Catalog;
use crate::channel::{Channel, ChannelCore};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::options::Options;
use crate::report::RecoveryReport;
use crate::subscriptions::Subscriptions;

impl Store {
    /// Opens the store at `path` read-only, whether another process owns
    /// it (an application running on it) or nobody does. Same as
    /// `Store::open(path, Options::default().read_only(true))`.
    ///
    /// - **Nothing is written**: no lock is taken (the owner keeps its
    ///   own), no file is created, changed, truncated, renamed or removed,
    ///   nothing is repaired; segments are mapped `PROT_READ`. Every write
    ///   (publish, subscribe, commit, sync, creating or deleting a channel,
    ///   `compact_now`) returns [`Error::ReadOnly`].
    /// - **What it sees**: every record the owner has *written* (published,
    ///   or being published), each frame validated by its CRC as recovery
    ///   would; a frame that does not validate yet (being written, or torn
    ///   by a crash) is not there until it does. That includes records not
    ///   yet durable: if the machine loses power before the owner syncs
    ///   them, they are gone from the store, though this handle showed them.
    ///   After a crash of the owner's *process*, what it showed stays (the
    ///   owner's next open keeps everything written).
    /// - **Following**: a background thread (`spool-follower`) looks for
    ///   new records, new segments, new and deleted channels and retention
    ///   every [`Options::poll_interval`] (10 ms by default), so a message is
    ///   visible here within about that long after it is published.
    ///   Iterators from [`Channel::read_from`] return `None` at the end and
    ///   new messages on a later call; [`Store::refresh`] looks at once.
    /// - **Retention**: a held [`Message`](crate::Message) stays readable
    ///   after the owner deletes its file (the mapping keeps it); an
    ///   iterator whose next message was removed goes on from the first
    ///   retained one ([`Messages::skipped`](crate::Messages::skipped) counts
    ///   what it passed over). A deleted channel's handles return
    ///   `ChannelDeleted`, as on the owner.
    /// - **What it cannot see**: subscriber positions newer than the
    ///   subscribers log as last read ([`Channel::subscribers`] reads it
    ///   again); queue-group deliveries in flight (they live only in the
    ///   owner's memory). A repair by the owner (`RecoveryMode::Repair`)
    ///   may set aside or rewrite files this handle has mapped: attach
    ///   again after one.
    ///
    /// Errors: `NotAStore` when there is no store at `path` (a missing,
    /// empty or foreign directory: nothing is created); `Corrupt` when
    /// the catalog does not decode; `Io` (saying "permission denied" when
    /// this user may not read the files).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use spool::{Error, Options, Store};
    /// let owner = Store::open(dir.path(), Options::default())?;
    /// let orders = owner.channel("orders")?;
    /// orders.publish(b"first")?;
    ///
    /// let reader = Store::open_read_only(dir.path())?; // while the owner runs
    /// let seen = reader.open_channel("orders")?;
    /// assert_eq!(seen.get(1)?.payload(), b"first");
    /// assert!(matches!(seen.publish(b"no"), Err(Error::ReadOnly { .. })));
    ///
    /// orders.publish(b"second")?;
    /// reader.refresh()?; // or wait for the poll
    /// assert_eq!(seen.last_seq(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        Store::open(path, Options::default().read_only(true))
    }

    /// Read-only attach (see [`open_read_only`](Self::open_read_only)):
    /// looks at once for what the owner wrote since the last look (the
    /// background thread does this every poll interval). `ReadOnly`...
    /// never: on an owning store it does nothing.
    pub fn refresh(&self) -> Result<()> {
        if !self.shared.env.read_only {
            return Ok(());
        }
        self.shared.refresh(true)
    }

    /// Whether this store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.shared.env.read_only
    }

    /// `Store::open` with `Options::read_only`: called once the path was
    /// checked.
    pub(super) fn attach(root: PathBuf, opts: Options) -> Result<Store> {
        let storage = opts.storage_backend().read_only_view();
        let env = Arc::new(Env::new(root.clone(), opts.clone(), storage, false));
        let catalog = Catalog::read_only(&env)?;
        let subs = Subscriptions::attached(Arc::clone(&env), Arc::clone(&catalog))?;
        let shared = Arc::new(StoreShared {
            env,
            catalog,
            lifecycle: Mutex::new(()),
            channels: RwLock::new(HashMap::new()),
            flusher: Mutex::new(None),
            compactor: Mutex::new(None),
            prefaulter: Mutex::new(None),
            worker: Mutex::new(None),
            poller: Mutex::new(None),
            lock: Mutex::new(None),
            closed: AtomicBool::new(false),
            report: RecoveryReport::default(),
            subs,
            #[cfg(test)]
            panic_next_compaction: AtomicBool::new(false),
        });
        shared.refresh(false)?;
        let poller = Poller::start(Arc::downgrade(&shared), opts.get_poll_interval())?;
        *shared.poller.lock() = Some(poller);
        Ok(Store { shared })
    }

    /// On a read-only store: the existing channel (after a fresh look at
    /// the catalog), else `ReadOnly` (it cannot be created here).
    pub(super) fn attached_channel(&self, name: &str) -> Result<Channel> {
        match self.open_channel(name) {
            Err(Error::NoSuchChannel { .. }) => Err(self.shared.env.read_only_error()),
            other => other,
        }
    }
}

impl StoreShared {
    /// Read-only attach: one look at what the owner did (catalog,
    /// channels, their records; with `subscribers`, the subscribers log
    /// too). One at a time.
    pub(crate) fn refresh(&self, subscribers: bool) -> Result<()> {
        let _one = self.lifecycle.lock();
        self.refresh_locked(subscribers)
    }

    /// [`refresh`](Self::refresh), under the lifecycle lock.
    pub(crate) fn refresh_locked(&self, subscribers: bool) -> Result<()> {
        if self.env.is_closed() {
            return Err(Error::Closed);
        }
        self.catalog.reload()?;
        let data = self.catalog.snapshot();
        // Channels deleted (or another incarnation under their name).
        let gone: Vec<(String, Arc<ChannelCore>)> = self
            .channels
            .read()
            .iter()
            .filter(|(name, core)| data.channels.get(*name).is_none_or(|e| e.id != core.id()))
            .map(|(name, core)| (name.clone(), Arc::clone(core)))
            .collect();
        for (name, core) in gone {
            core.log.follow(None)?;
            self.channels.write().remove(&name);
        }
        for (name, entry) in &data.channels {
            let existing = self.channels.read().get(name).cloned();
            match existing {
                Some(core) => {
                    core.log.follow(Some(entry))?;
                }
                None => {
                    let dir = channel_dir(&self.env.root, entry.id);
                    let log = Log::attach(Arc::clone(&self.env), Arc::clone(&self.catalog), name, dir, entry)?;
                    let core = ChannelCore::new(log, Arc::clone(&self.subs), entry.limits);
                    self.channels.write().insert(name.clone(), core);
                }
            }
        }
        if subscribers {
            self.reload_subscribers()?;
        }
        Ok(())
    }

    /// Read-only attach: reads the owner's subscribers log again.
    pub(crate) fn reload_subscribers(&self) -> Result<()> {
        self.subs.reload()
    }
}
