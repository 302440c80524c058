//! Opening a store: the lock, the catalog, the subscribers log read first
//! (its durable commits are floors for the channels), every channel
//! recovered, then the subscribers' state built and the threads started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::compaction::Compactor;
use super::flusher::Flusher;
use super::{channel_dir, channels_dir, remove_channel_dir, Store, StoreShared};
use crate::catalog::Catalog;
use crate::channel::ChannelCore;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::options::{Options, SyncPolicy};
use crate::prefault::Prefaulter;
use crate::report::RecoveryReport;
use crate::storage::Storage;
use crate::subscriptions::Subscriptions;
use crate::worker::Worker;

/// The marker a repair leaves in the store directory while it runs.
pub(crate) const REPAIR_MARKER: &str = "REPAIR";

impl Store {
    /// Opens (creating if needed) the store in directory `path`, recovering
    /// every channel after a crash as docs/format.md describes. With
    /// [`Options::read_only`] it attaches read-only instead (see
    /// [`open_read_only`](Self::open_read_only)).
    ///
    /// A store is created only in a missing or empty directory, and only
    /// when [`Options::create_if_missing`] allows it (the default);
    /// a directory holding other files and no catalog is never turned
    /// into a store.
    ///
    /// Errors: `InvalidOption` (an empty path, nonsensical options);
    /// `NotAStore` (nothing to open and not allowed to create, or a
    /// foreign directory); `Locked` if another `Store` holds the
    /// directory; `Corrupt` for damage in durable data (unless
    /// `RecoveryMode::Repair`); I/O errors (`Io`, whose message says
    /// "permission denied" when the user may not write the store).
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Store> {
        opts.validate()?;
        let root = path.as_ref().to_path_buf();
        let storage = opts.storage_backend().clone();
        super::existing::check_store_path(&storage, &root, opts.get_create_if_missing())?;
        if opts.get_read_only() {
            return Store::attach(root, opts);
        }
        storage.create_dir_all(&root)?;
        let repair = opts.get_recovery_mode() == crate::options::RecoveryMode::Repair;
        let mut set_aside = Vec::new();
        // Nobody holds a lock that is a directory: it is set aside first.
        set_aside_directory(&storage, &root.join("LOCK"), "lock file", repair, &mut set_aside)?;
        let (lock, previous_owner) = storage.lock(&root.join("LOCK"))?;
        for (name, what) in [
            (crate::catalog::CATALOG_FILE, "catalog"),
            (crate::catalog::BACKUP_FILE, "catalog backup"),
            (crate::format::sublog::LOG_FILE, "subscribers log"),
        ] {
            set_aside_directory(&storage, &root.join(name), what, repair, &mut set_aside)?;
        }
        // The previous owner ran on this boot (and finished its open): the
        // page cache still holds all it wrote, and no stale record of an
        // older boot lies past what it wrote (see `log::recover`).
        let boot = storage.boot_id();
        let same_boot = boot != 0 && previous_owner.lines().any(|l| l == format!("boot={boot:032x}"));
        // A repair writes its marker before it changes anything and removes
        // it once it has finished: a marker left means an interrupted one.
        let marker = root.join(REPAIR_MARKER);
        let repair_resumed = storage.exists(&marker);
        if repair_resumed && !repair {
            return Err(Error::corrupt(
                &marker,
                0,
                "a repair of this store was interrupted before it finished; open with RecoveryMode::Repair \
                 to finish it (what it found is reported again)",
            ));
        }
        if repair && !repair_resumed {
            storage.write_file(&marker, b"a repair is in progress\n")?;
            storage.sync_file(&marker)?;
            storage.sync_dir(&root)?;
        }
        let env =
            Arc::new(Env::new(root.clone(), opts.clone(), storage.clone(), same_boot).resuming_repair(repair_resumed));

        let (catalog, catalog_note) = Catalog::open(&env)?;
        let mut report = RecoveryReport {
            catalog_restored: catalog_note.restored_from_backup.clone(),
            catalog_backup_rewritten: catalog_note.backup_rewritten.clone(),
            set_aside,
            ..RecoveryReport::default()
        };
        if catalog_note.upgraded {
            report.upgraded.push(root.join(crate::catalog::CATALOG_FILE));
        }
        let data = catalog.snapshot();
        let chans = channels_dir(&root);
        if !storage.exists(&chans) {
            storage.create_dir_all(&chans)?;
            storage.sync_dir(&root)?;
        }
        // Directories of deleted channels (or of a delete cut short by a
        // crash) are removed: their ids are never handed out again.
        let live: Vec<u64> = data.channels.values().map(|e| e.id).collect();
        let mut removed = false;
        for name in storage.list_dir(&chans)? {
            let Ok(id) = name.parse::<u64>() else { continue };
            let path = chans.join(&name);
            if id >= data.next_id {
                // Ids are recorded durably before a directory is made, so
                // this one belongs to a channel the catalog never knew:
                // the catalog is older than the data.
                if !repair {
                    return Err(Error::corrupt(
                        &path,
                        0,
                        format!(
                            "a channel directory with id {id}, but the catalog has handed out ids below {} only:                              the catalog is older than the data (restored from a backup or an old copy?);                              open with RecoveryMode::Repair to set the directory aside",
                            data.next_id
                        ),
                    ));
                }
                let target = storage.set_aside(&path)?;
                report.set_aside.push((path, target));
                removed = true;
            } else if !live.contains(&id) {
                remove_channel_dir(&storage, &path)?;
                removed = true;
            }
        }
        if removed {
            storage.sync_dir(&chans)?;
        }

        // The subscribers log is read first: its durable commits are
        // witnesses of how far each channel was durable.
        let log_scan = crate::subscriptions::scan(&env, &data, repair)?;
        if matches!(log_scan.source, crate::subscriptions::ScanSource::V1 { .. }) {
            report.upgraded.push(log_scan.path.clone());
        }
        let floors = log_scan.durable_floors();
        let mut channels = HashMap::new();
        let mut last_seqs = HashMap::new();
        for (name, entry) in &data.channels {
            let dir = channel_dir(&root, entry.id);
            let floor = floors.get(&entry.id).copied().unwrap_or(0);
            let (log, recovered) = Log::recover(
                Arc::clone(&env),
                Arc::clone(&catalog),
                name,
                dir,
                entry,
                floor,
                catalog_note.upgraded,
            )?;
            report.channels.push(recovered);
            last_seqs.insert(entry.id, log.last_seq());
            channels.insert(name.clone(), (log, entry.limits));
        }
        let subs = Subscriptions::open(
            Arc::clone(&env),
            Arc::clone(&catalog),
            log_scan,
            &last_seqs,
            &mut report.subscribers,
        )?;
        let channels = channels
            .into_iter()
            .map(|(name, (log, limits))| (name, ChannelCore::new(log, Arc::clone(&subs), limits)))
            .collect();

        // Open is complete: the next opener may rely on this boot's page
        // cache.
        lock.record(&format!("{}\nboot={boot:032x}\n", std::process::id()))?;
        let shared = Arc::new(StoreShared {
            env,
            catalog,
            lifecycle: Mutex::new(()),
            channels: RwLock::new(channels),
            flusher: Mutex::new(None),
            compactor: Mutex::new(None),
            prefaulter: Mutex::new(None),
            worker: Mutex::new(None),
            poller: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
            closed: AtomicBool::new(false),
            report,
            subs,
            #[cfg(test)]
            panic_next_compaction: AtomicBool::new(false),
        });
        if matches!(storage, Storage::Real(_)) {
            let prefaulter = Prefaulter::start()?;
            let _ = shared.env.prefault.set(prefaulter.sender());
            *shared.prefaulter.lock() = Some(prefaulter);
            // With the simulated storage the worker's jobs run in the
            // writer's thread, so crash tests stay deterministic.
            let worker = Worker::start()?;
            let _ = shared.env.worker.set(worker.sender());
            *shared.worker.lock() = Some(worker);
        }
        let compactor = Compactor::start(Arc::downgrade(&shared), opts.get_compact_interval())?;
        *shared.compactor.lock() = Some(compactor);
        if let SyncPolicy::Interval(every) = opts.get_sync_policy() {
            let flusher = Flusher::start(Arc::downgrade(&shared), every)?;
            *shared.flusher.lock() = Some(flusher);
        }
        if repair {
            // The last step: everything it found is durable, and in the
            // report the caller now gets.
            storage.remove_file(&marker)?;
            // Not made durable, the removal can be undone by a power loss:
            // then the next open repairs again and reports it all again.
            // Nothing is lost by that, so the report goes to the caller.
            let _ = storage.sync_dir(&root);
        }
        Ok(Store { shared })
    }
}

/// A directory where one of the store's own files should be: `Corrupt`
/// (strict), or renamed aside and noted (repair), so the open goes on as
/// if the file were missing.
fn set_aside_directory(
    storage: &Storage,
    path: &Path,
    what: &str,
    repair: bool,
    set_aside: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<()> {
    if !storage.is_dir(path) {
        return Ok(());
    }
    if !repair {
        return Err(Error::corrupt(
            path,
            0,
            format!("a directory is where the {what} should be; open with RecoveryMode::Repair to set it aside"),
        ));
    }
    let target = storage.set_aside(path)?;
    set_aside.push((path.to_path_buf(), target));
    Ok(())
}
