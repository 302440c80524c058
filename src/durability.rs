//! Making written data durable: group commit for `SyncPolicy::Always` and
//! explicit syncs, and the flusher thread for `SyncPolicy::Interval`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use crate::channel::ChannelCore;
use crate::error::{Error, Result};
use crate::index::Coverage;
use crate::store::StoreShared;

/// One sync at a time per channel; callers that arrive while it runs wait
/// for it and are served by it when it covers their message (group commit).
#[derive(Default)]
pub(crate) struct GroupCommit {
    leader_active: Mutex<bool>,
    done: Condvar,
}

impl ChannelCore {
    /// Returns once every message up to `seq` is durable.
    pub(crate) fn sync_through(&self, seq: u64) -> Result<()> {
        // A failed store reports its failure to every sync, even one with
        // nothing left to do.
        self.env.check_writable()?;
        loop {
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            let mut leader = self.group.leader_active.lock();
            self.env.check_writable()?;
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if *leader {
                self.group.done.wait(&mut leader);
                continue;
            }
            *leader = true;
            drop(leader);
            let result = self.sync_now();
            *self.group.leader_active.lock() = false;
            self.group.done.notify_all();
            result?;
        }
    }

    /// One sync of everything written so far (the leader's work).
    fn sync_now(&self) -> Result<()> {
        let Some((seg, end, next_seq, last_ts)) = self.writer.lock().snapshot() else {
            // No active segment: everything is in sealed, hence synced, segments.
            let last = self.last_seq.load(Ordering::Acquire);
            self.durable_seq.fetch_max(last, Ordering::AcqRel);
            return Ok(());
        };
        seg.sync_to(end, next_seq, last_ts).map_err(|e| self.env.fail(e))?;
        self.durable_seq.fetch_max(next_seq - 1, Ordering::AcqRel);
        // Now and then, leave an index file for the durable part, so that
        // recovery after a crash scans only what came after it.
        let cov = Coverage {
            end,
            next_seq,
            last_timestamp: last_ts,
        };
        if seg.index_checkpoint_due(end) {
            let _ = seg.write_index_file(&self.env.storage, self.id, cov);
        }
        Ok(())
    }

    /// On close: sync, then durably mark the last segment clean.
    pub(crate) fn sync_for_close(&self) -> Result<()> {
        self.sync_through(self.last_seq.load(Ordering::Acquire))?;
        let active = self.writer.lock().snapshot();
        if let Some((seg, end, next_seq, last_timestamp)) = active {
            seg.close_clean(end, next_seq, last_timestamp)
                .map_err(|e| self.env.fail(e))?;
            // Derived; written so the next open scans only what follows it.
            let cov = Coverage {
                end,
                next_seq,
                last_timestamp,
            };
            let _ = seg.write_index_file(&self.env.storage, self.id, cov);
        }
        Ok(())
    }
}

/// The background flusher for `SyncPolicy::Interval`.
pub(crate) struct Flusher {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Flusher {
    pub(crate) fn start(store: Weak<StoreShared>, every: Duration) -> Result<Flusher> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("spool-flusher".into())
            .spawn(move || flusher_loop(&store, every, &stopped))
            .map_err(|e| Error::io("spawn flusher thread", "spool-flusher", e))?;
        Ok(Flusher { stop, handle })
    }

    /// Stops and joins the thread; a panic in it becomes the store's failure.
    pub(crate) fn stop(self, store: &StoreShared) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            store.env.fail(Error::io(
                "flusher thread",
                "spool-flusher",
                std::io::Error::other("the flusher thread panicked"),
            ));
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
                store.env.fail(Error::io(
                    "flusher thread",
                    "spool-flusher",
                    std::io::Error::other("the flusher thread panicked; the store is poisoned"),
                ));
                return;
            }
        }
    }
}

/// Channels with data not yet durable.
pub(crate) fn dirty(channels: &[Arc<ChannelCore>]) -> impl Iterator<Item = &Arc<ChannelCore>> {
    channels
        .iter()
        .filter(|c| c.last_seq.load(Ordering::Acquire) > c.durable_seq.load(Ordering::Acquire))
}
