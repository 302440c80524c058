//! What is at a store's path before it is opened: a store, nothing (a
//! store may be created there), or something else, which an open never
//! turns into a store.

use std::path::Path;

use crate::catalog::{BACKUP_FILE, CATALOG_FILE};
use crate::error::{Error, Result};
use crate::format::sublog::LOG_FILE;
use crate::storage::Storage;

/// Names a store directory holds besides its catalog: a directory holding
/// only these (and no catalog) is a store whose creation was cut short.
const OWN_NAMES: [&str; 9] = [
    "LOCK",
    CATALOG_FILE,
    BACKUP_FILE,
    "catalog.tmp",
    "catalog.bak.tmp",
    LOG_FILE,
    "subscribers.tmp",
    "REPAIR",
    "channels",
];

/// Checks the path before an open: an empty path is `InvalidOption`; a
/// file, or a directory holding other files and no catalog, is
/// `NotAStore`; a missing or empty directory is `NotAStore` unless
/// `create`. A store (a catalog, or what recovery must judge: a catalog
/// backup or channel directories) passes.
pub(super) fn check_store_path(storage: &Storage, root: &Path, create: bool) -> Result<()> {
    if root.as_os_str().is_empty() {
        return Err(Error::invalid_option(
            "path",
            "the store path is empty; name the store's directory",
        ));
    }
    let not_a_store = |detail: String| Error::NotAStore {
        path: root.to_path_buf(),
        detail,
    };
    match storage.probe(root)? {
        None if create => return Ok(()),
        None => return Err(not_a_store("the directory does not exist".into())),
        Some(false) => return Err(not_a_store("this is a file, not a store directory".into())),
        Some(true) => {}
    }
    if storage.probe(&root.join(CATALOG_FILE))?.is_some() {
        return Ok(());
    }
    let names = storage.list_dir(root)?;
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !OWN_NAMES.contains(&n.as_str()) && !n.contains(".damaged"))
        .collect();
    if !foreign.is_empty() {
        let shown: Vec<String> = foreign.iter().take(3).map(|n| format!("{n:?}")).collect();
        let more = if foreign.len() > 3 { ", ..." } else { "" };
        return Err(not_a_store(format!(
            "the directory holds other files ({}{more}) and no catalog; a store needs a directory of its own \
             (a new or empty one)",
            shown.join(", ")
        )));
    }
    let chans = root.join("channels");
    let has_channels = storage.probe(&chans)? == Some(true) && !storage.list_dir(&chans)?.is_empty();
    if has_channels || names.iter().any(|n| n == BACKUP_FILE) {
        // A store that lost its catalog: recovery says what is wrong.
        return Ok(());
    }
    if create {
        return Ok(());
    }
    Err(not_a_store(if names.is_empty() {
        "the directory is empty (no store was created here)".into()
    } else {
        "the directory holds no catalog (a store whose creation was cut short)".into()
    }))
}
