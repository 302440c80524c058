//! What every part of an open store shares: options, storage, and the
//! sticky failure state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;

use crate::error::{Error, Result};
use crate::options::Options;
use crate::prefault::Request;
use crate::storage::Storage;

pub(crate) struct Env {
    pub(crate) root: PathBuf,
    pub(crate) opts: Options,
    pub(crate) storage: Storage,
    failure: OnceLock<Arc<Error>>,
    closed: AtomicBool,
    /// Where writers ask for pages to be faulted in ahead of them.
    pub(crate) prefault: OnceLock<Sender<Request>>,
}

impl Env {
    pub(crate) fn new(root: PathBuf, opts: Options, storage: Storage) -> Env {
        Env {
            root,
            opts,
            storage,
            failure: OnceLock::new(),
            closed: AtomicBool::new(false),
            prefault: OnceLock::new(),
        }
    }

    /// Err when the store is closed or failed.
    #[inline]
    pub(crate) fn check_writable(&self) -> Result<()> {
        if let Some(cause) = self.failure.get() {
            return Err(Error::Failed {
                cause: Arc::clone(cause),
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Makes `err` the store's sticky failure (the first one wins) and
    /// returns the error every caller from now on sees.
    pub(crate) fn fail(&self, err: Error) -> Error {
        let cause = self.failure.get_or_init(|| Arc::new(err));
        Error::Failed {
            cause: Arc::clone(cause),
        }
    }

    /// Makes a failed sync (of a file, directory or mapping) sticky: after
    /// it, nothing can be known durable until the store is reopened.
    pub(crate) fn sticky<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(e @ Error::Io { op, .. }) if op.starts_with("sync") => Err(self.fail(e)),
            other => other,
        }
    }

    pub(crate) fn failure(&self) -> Option<Arc<Error>> {
        self.failure.get().cloned()
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
