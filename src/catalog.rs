//! The catalog: the store's root record of what exists and what durable
//! state must be found (see `format::catalog`). One owner, one lock; every
//! change is applied to a copy, written durably, then made current.
//!
//! Written twice per change, each atomically (temp file, fdatasync,
//! rename, directory fsync): `catalog`, then `catalog.bak`. Strict open
//! trusts only `catalog`; repair falls back to the backup when `catalog` is
//! damaged or missing, and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::catalog::{decode, encode, CatalogData, MAX_CATALOG_BYTES};
use crate::options::RecoveryMode;

/// The catalog's file name in the store directory.
pub(crate) const CATALOG_FILE: &str = "catalog";
/// Its backup.
pub(crate) const BACKUP_FILE: &str = "catalog.bak";

/// See the module docs.
pub(crate) struct Catalog {
    env: Arc<Env>,
    data: Mutex<CatalogData>,
    /// Read-only attach: the bytes of the file last read (a small file,
    /// read again at every look; decoded only when it changed).
    read_bytes: Mutex<Vec<u8>>,
}

/// What opening the catalog found, for the recovery report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CatalogOpen {
    /// Repair used the backup because `catalog` was damaged or missing
    /// (with why).
    pub restored_from_backup: Option<String>,
    /// The catalog was written in format version 1 and was upgraded.
    pub upgraded: bool,
    /// Repair rewrote the backup, which did not match the catalog (with
    /// why).
    pub backup_rewritten: Option<String>,
}

/// The backup can be one change behind the damaged catalog (a crash
/// between their two renames). What the damaged catalog still says
/// (checksum aside) is taken where the channel directories confirm it:
/// a channel made after the backup (its id at or above the backup's next
/// id, its directory present) is kept, a channel deleted after it (absent
/// from the damaged catalog, its directory gone) stays deleted. Returns the
/// catalog to use and what was taken, for the report.
fn merge_damaged_catalog(env: &Env, mut backup: CatalogData) -> (CatalogData, Option<String>) {
    let path = env.root.join(CATALOG_FILE);
    let Ok(bytes) = env.storage.read_file(&path, MAX_CATALOG_BYTES) else {
        return (backup, None);
    };
    let Ok(damaged) = crate::format::catalog::decode_ignoring_checksum(&bytes, &path) else {
        return (backup, None);
    };
    if damaged.store_id != backup.store_id {
        return (backup, None);
    }
    let dir_of = |id: u64| env.root.join("channels").join(id.to_string());
    let mut taken = Vec::new();
    for (name, e) in &damaged.channels {
        let newer = e.id >= backup.next_id && !backup.channels.contains_key(name);
        if newer && env.storage.is_dir(&dir_of(e.id)) {
            backup.channels.insert(name.clone(), e.clone());
            backup.next_id = backup.next_id.max(e.id + 1);
            taken.push(format!("channel {name:?} (id {}) taken from the damaged catalog", e.id));
        }
    }
    let gone: Vec<String> = backup
        .channels
        .iter()
        .filter(|(name, e)| !damaged.channels.contains_key(*name) && !env.storage.exists(&dir_of(e.id)))
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        backup.channels.remove(&name);
        taken.push(format!("channel {name:?} deleted, as the damaged catalog says"));
    }
    backup.next_id = backup.next_id.max(damaged.next_id);
    let what = (!taken.is_empty()).then(|| taken.join("; "));
    (backup, what)
}

/// A random 128-bit id (never 0).
fn random_id(env: &Env) -> Result<u128> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(Error::io_at(IoOp::Read, path))?;
    let id = u128::from_le_bytes(bytes);
    // The clock breaks the (astronomically unlikely) tie with 0.
    Ok(if id == 0 { u128::from(env.opts.now_ns()) | 1 } else { id })
}

impl Catalog {
    fn path(&self, name: &str) -> PathBuf {
        self.env.root.join(name)
    }

    /// Reads the catalog of the store at `env.root`, or creates an empty one
    /// when the directory holds no store yet. A catalog of format version 1
    /// is upgraded (given an identity) and written back.
    pub(crate) fn open(env: &Arc<Env>) -> Result<(Arc<Catalog>, CatalogOpen)> {
        let storage = &env.storage;
        let root = &env.root;
        for leftover in [format!("{CATALOG_FILE}.tmp"), format!("{BACKUP_FILE}.tmp")] {
            storage.remove_file(&root.join(leftover))?;
        }
        let read = |name: &str| -> Result<Option<CatalogData>> {
            let path = root.join(name);
            if !storage.exists(&path) {
                return Ok(None);
            }
            let bytes = storage.read_file(&path, MAX_CATALOG_BYTES).map_err(|e| match e {
                // A catalog that is a directory, or too large: damage.
                e @ Error::Io { .. } if e.is_permission_denied() => e,
                Error::Io { source, .. } => Error::corrupt(&path, 0, format!("cannot be read as a catalog: {source}")),
                other => other,
            })?;
            decode(&bytes, &path).map(Some)
        };
        let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
        let mut note = CatalogOpen::default();
        let main = read(CATALOG_FILE);
        let data = match main {
            Ok(Some(data)) => data,
            Ok(None) if !storage.exists(&root.join(BACKUP_FILE)) => {
                let chans = root.join("channels");
                if storage.exists(&chans) && !storage.list_dir(&chans)?.is_empty() {
                    return Err(Error::corrupt(
                        root.join(CATALOG_FILE),
                        0,
                        "the catalog is missing but channel directories exist",
                    ));
                }
                let catalog = Arc::new(Catalog {
                    data: Mutex::new(CatalogData::new(random_id(env)?)),
                    env: Arc::clone(env),
                    read_bytes: Mutex::new(Vec::new()),
                });
                catalog.save(&catalog.data.lock())?;
                return Ok((catalog, note));
            }
            Ok(None) | Err(_) => {
                let why = match &main {
                    Err(e) => e.to_string(),
                    _ => "the catalog is missing but its backup exists".to_string(),
                };
                if !repair {
                    return Err(match main {
                        Err(e) => e,
                        _ => Error::corrupt(root.join(CATALOG_FILE), 0, why),
                    });
                }
                match read(BACKUP_FILE) {
                    Ok(Some(data)) => {
                        let (data, merged) = merge_damaged_catalog(env, data);
                        note.restored_from_backup = Some(match merged {
                            Some(what) => format!("{why}; {what}"),
                            None => why,
                        });
                        data
                    }
                    // Nothing at all can be read: refuse, naming the catalog.
                    _ => {
                        return Err(main.err().unwrap_or_else(|| {
                            Error::corrupt(
                                root.join(BACKUP_FILE),
                                0,
                                "neither the catalog nor its backup can be read",
                            )
                        }))
                    }
                }
            }
        };
        let mut data = data;
        if repair && note.restored_from_backup.is_none() {
            // The backup is only ever read by a repair: this one makes sure
            // the next can rely on it.
            let why = match read(BACKUP_FILE) {
                Ok(Some(backup)) if backup == data => None,
                Ok(Some(_)) => Some("the backup differs from the catalog".to_string()),
                Ok(None) => Some("the backup is missing".to_string()),
                Err(e) => Some(e.to_string()),
            };
            note.backup_rewritten = why;
        }
        let rewrite = data.store_id == 0 || note.restored_from_backup.is_some() || note.backup_rewritten.is_some();
        if data.store_id == 0 {
            data.store_id = random_id(env)?;
            note.upgraded = true;
        }
        let catalog = Arc::new(Catalog {
            data: Mutex::new(data),
            env: Arc::clone(env),
            read_bytes: Mutex::new(Vec::new()),
        });
        if rewrite {
            catalog.save(&catalog.data.lock())?;
        }
        Ok((catalog, note))
    }

    /// The catalog of a store attached read-only: read (strictly, never
    /// repaired or upgraded) and never written; see [`reload`](Self::reload).
    pub(crate) fn read_only(env: &Arc<Env>) -> Result<Arc<Catalog>> {
        let path = env.root.join(CATALOG_FILE);
        let bytes = env.storage.read_file(&path, MAX_CATALOG_BYTES)?;
        let data = decode(&bytes, &path)?;
        Ok(Arc::new(Catalog {
            env: Arc::clone(env),
            data: Mutex::new(data),
            read_bytes: Mutex::new(bytes),
        }))
    }

    /// Read-only attach: reads the catalog file again (the owner replaces
    /// it whole, by a rename); the new content when it changed.
    pub(crate) fn reload(&self) -> Result<Option<CatalogData>> {
        let path = self.path(CATALOG_FILE);
        let bytes = self.env.storage.read_file(&path, MAX_CATALOG_BYTES)?;
        let mut last = self.read_bytes.lock();
        if *last == bytes {
            return Ok(None);
        }
        let data = decode(&bytes, &path)?;
        *self.data.lock() = data.clone();
        *last = bytes;
        Ok(Some(data))
    }

    /// A copy of the current content.
    pub(crate) fn snapshot(&self) -> CatalogData {
        self.data.lock().clone()
    }

    /// Runs `f` on the current content while no change can be written, so
    /// that what `f` reads of the files matches it (the integrity check).
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&CatalogData) -> R) -> R {
        f(&self.data.lock())
    }

    /// The store's identity.
    pub(crate) fn store_id(&self) -> u128 {
        self.data.lock().store_id
    }

    /// Applies `change` to a copy; when it returns `Ok(true)` the copy is
    /// written durably and becomes current. A failed write makes the store
    /// read-only (the catalog's state on disk is then unknown). Returns what
    /// `change` returned.
    pub(crate) fn update(&self, change: impl FnOnce(&mut CatalogData) -> Result<bool>) -> Result<bool> {
        if self.env.read_only {
            return Err(self.env.read_only_error());
        }
        let mut data = self.data.lock();
        let mut next = data.clone();
        if !change(&mut next)? {
            return Ok(false);
        }
        self.env.sticky(self.save(&next))?;
        *data = next;
        Ok(true)
    }

    fn save(&self, data: &CatalogData) -> Result<()> {
        let bytes = encode(data);
        let storage = &self.env.storage;
        for name in [CATALOG_FILE, BACKUP_FILE] {
            let path = self.path(name);
            let tmp = self.path(&format!("{name}.tmp"));
            storage.write_file(&tmp, &bytes)?;
            storage.sync_file(&tmp)?;
            storage.rename(&tmp, &path)?;
            storage.sync_dir(&self.env.root)?;
        }
        Ok(())
    }

    /// Records that the segment of channel `id` starting at `base` exists
    /// durably and that everything before it is durable (before any record
    /// in it is made durable). Nothing is written when the catalog already
    /// knows; a deleted channel is ignored.
    pub(crate) fn confirm_segment(&self, id: u64, base: u64) -> Result<()> {
        self.update(|c| {
            Ok(match c.by_id_mut(id) {
                Some(e) if e.newest_base < base => {
                    e.newest_base = base;
                    e.durable_seq = e.durable_seq.max(base - 1);
                    true
                }
                _ => false,
            })
        })
        .map(|_| ())
    }

    /// Records, at a clean close, the last durable seq of each channel (by
    /// id).
    pub(crate) fn record_durable(&self, seqs: &[(u64, u64)]) -> Result<()> {
        self.update(|c| {
            let mut changed = false;
            for &(id, seq) in seqs {
                if let Some(e) = c.by_id_mut(id).filter(|e| e.durable_seq < seq) {
                    e.durable_seq = seq;
                    changed = true;
                }
            }
            Ok(changed)
        })
        .map(|_| ())
    }
}
