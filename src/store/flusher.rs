//! The background flusher for `SyncPolicy::Interval`: a named thread that
//! syncs every channel with new data, then the subscribers log, every
//! interval.

use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::StoreShared;
use crate::error::{Error, IoOp, Result};

pub(crate) const THREAD: &str = "spool-flusher";

/// Handle to the thread.
pub(crate) struct Flusher {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Flusher {
    pub(crate) fn start(store: Weak<StoreShared>, every: Duration) -> Result<Flusher> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || flusher_loop(&store, every, &stopped))
            .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?;
        Ok(Flusher { stop, handle })
    }

    /// Stops and joins the thread; a panic in it becomes the store's failure.
    pub(crate) fn stop(self, store: &StoreShared) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            store.env.fail_panicked(THREAD);
        }
    }
}

fn flusher_loop(store: &Weak<StoreShared>, every: Duration, stopped: &Receiver<()>) {
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(store) = store.upgrade() else { return };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.sync_dirty()));
        match outcome {
            Ok(Ok(())) => {}
            // The failure is already sticky in the store; stop syncing.
            Ok(Err(_)) => return,
            Err(_) => {
                store.env.fail_panicked(THREAD);
                return;
            }
        }
    }
}
