//! Group commit: one sync at a time, shared by every caller it covers.
//!
//! Used by channel logs (the ticket is a message seq) and the subscribers
//! log (the ticket is a record number). A caller asks for its ticket to be
//! durable; if no sync runs, it becomes the leader and runs one (with no
//! lock of this type held, so appends go on meanwhile); callers that arrive
//! while a sync runs wait for it and return if it covered them, or lead the
//! next one.
//!
//! Futures waiting for a ticket (durable publishes, `synced_through`) do
//! not take part in the leadership: they register a waker, which every
//! advance of the durable ticket (and every failed attempt) wakes.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::wakeup::{Registration, WakerSet};

/// See the module docs.
pub(crate) struct GroupCommit {
    /// Whether a leader is syncing.
    leader: Mutex<bool>,
    done: Condvar,
    /// Every ticket up to this one is durable. Only a leader raises it.
    durable: AtomicU64,
    /// Futures waiting for a ticket to become durable.
    wakers: WakerSet,
}

impl GroupCommit {
    /// Starts with every ticket up to `durable` durable.
    pub(crate) fn new(durable: u64) -> GroupCommit {
        GroupCommit {
            leader: Mutex::new(false),
            done: Condvar::new(),
            durable: AtomicU64::new(durable),
            wakers: WakerSet::default(),
        }
    }

    /// The highest ticket known durable.
    #[inline]
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Returns once `ticket` is durable. `sync` runs in the leader, once per
    /// sync, and returns the highest ticket that sync made durable; it is
    /// asked again (by this or another caller) until `ticket` is covered.
    /// An error is returned to the leader; the others find out by leading
    /// the next attempt (the caller's `sync` reports a sticky failure).
    pub(crate) fn sync_through(&self, ticket: u64, mut sync: impl FnMut() -> Result<u64>) -> Result<()> {
        loop {
            if self.durable() >= ticket {
                return Ok(());
            }
            let mut leader = self.leader.lock();
            if self.durable() >= ticket {
                return Ok(());
            }
            if *leader {
                self.done.wait(&mut leader);
                continue;
            }
            *leader = true;
            drop(leader);
            let outcome = sync();
            if let Ok(reached) = outcome {
                self.durable.fetch_max(reached, Ordering::AcqRel);
            }
            *self.leader.lock() = false;
            self.done.notify_all();
            // Futures see the new durable ticket, or find the failure.
            self.wakers.wake_all();
            // A leader's sync covers everything written before it started,
            // so a ticket handed out earlier is covered now; the loop checks.
            outcome?;
        }
    }

    /// Records that everything up to `ticket` is durable without a sync
    /// (recovery left it so, or a seal made it so).
    pub(crate) fn mark_durable(&self, ticket: u64) {
        if self.durable.fetch_max(ticket, Ordering::AcqRel) < ticket {
            self.wakers.wake_all();
        }
    }

    /// Registers a future waiting for a ticket: it is woken when the
    /// durable ticket advances or a sync fails. The caller then fences
    /// (`wakeup::fence_after_register`) and checks `durable()` again.
    pub(crate) fn register(&self, reg: &mut Registration, waker: &std::task::Waker) {
        self.wakers.register(reg, waker);
    }

    /// Removes a future's registration (it finished or was dropped).
    pub(crate) fn deregister(&self, reg: &mut Registration) {
        self.wakers.deregister(reg);
    }

    /// Wakes every waiting future (the log was deleted or the store closed:
    /// they find out when polled).
    pub(crate) fn wake_all(&self) {
        self.wakers.wake_all();
    }
}
