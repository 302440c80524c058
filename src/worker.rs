//! The background worker: a named thread that runs jobs the logs hand it
//! (sealing a segment the writer rolled away from, preparing the next
//! segment file), so that a writer never waits for an msync of a whole
//! segment or for a file to be created. A panic in a job poisons the store.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::env::Job;
use crate::error::{Error, IoOp, Result};

/// The thread's name.
pub(crate) const THREAD: &str = "spool-io";

/// Handle to the thread.
pub(crate) struct Worker {
    jobs: Sender<Option<Job>>,
    handle: JoinHandle<bool>,
}

impl Worker {
    pub(crate) fn start() -> Result<Worker> {
        let (jobs, incoming) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || serve(&incoming))
            .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?;
        Ok(Worker { jobs, handle })
    }

    /// Where the logs send their jobs.
    pub(crate) fn sender(&self) -> Sender<Option<Job>> {
        self.jobs.clone()
    }

    /// Runs the jobs already queued, then stops and joins the thread; true
    /// if a job panicked. Called once no job can be sent any more (the
    /// store's writes stopped and its logs closed).
    pub(crate) fn stop(self) -> bool {
        let _ = self.jobs.send(None);
        self.handle.join().unwrap_or(true)
    }
}

/// Runs jobs until told to stop; true if one panicked (the thread then
/// stops taking jobs: their senders find the channel closed and run them
/// themselves).
fn serve(incoming: &Receiver<Option<Job>>) -> bool {
    while let Ok(Some(job)) = incoming.recv() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            return true;
        }
    }
    false
}
