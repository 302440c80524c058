//! The compaction thread: enforces channel limits, deletes inactive
//! channels, compacts the subscribers log.
//!
//! Order of a deletion pass, per channel: (1) the new first retained seq is
//! recorded durably in the catalog; (2) it becomes visible (reads below it
//! are `OutOfRange`) and the wholly expired segments leave the channel's
//! list, so new readers never get them; (3) their files are unlinked (a
//! reader still holding one of their messages keeps the mapping, which
//! unlinking does not shrink); (4) the directory is synced. A crash at any
//! point leaves either the old or the new first seq, and recovery removes
//! segment files wholly below it.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::StoreShared;
use crate::channel::ChannelCore;
use crate::error::{Error, IoOp, Result};
use crate::log::TrimPlan;
use crate::report::CompactionReport;

pub(crate) const THREAD: &str = "spool-compactor";

enum Command {
    Compact(Sender<Result<CompactionReport>>),
    Close,
}

/// The named background thread.
pub(crate) struct Compactor {
    commands: Sender<Command>,
    handle: JoinHandle<()>,
}

impl Compactor {
    pub(crate) fn start(store: Weak<StoreShared>, every: Duration) -> Result<Compactor> {
        let (commands, incoming) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || serve(&store, every, &incoming))
            .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?;
        Ok(Compactor { commands, handle })
    }

    /// Runs a pass on the thread and waits for it.
    pub(crate) fn compact_now(&self, store: &StoreShared) -> Result<CompactionReport> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        // The thread is gone only after it panicked (the store is then
        // poisoned) or the store closed.
        let gone = || store.env.check_writable().err().unwrap_or(Error::Closed);
        self.commands.send(Command::Compact(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Stops and joins the thread; a panic in it becomes the store's failure.
    pub(crate) fn stop(self, store: &StoreShared) {
        let _ = self.commands.send(Command::Close);
        if self.handle.join().is_err() {
            store.env.fail_panicked(THREAD);
        }
    }
}

fn serve(store: &Weak<StoreShared>, every: Duration, incoming: &Receiver<Command>) {
    loop {
        let reply = match incoming.recv_timeout(every) {
            Ok(Command::Compact(reply)) => Some(reply),
            Err(RecvTimeoutError::Timeout) => None,
            Ok(Command::Close) | Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(store) = store.upgrade() else { return };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.compaction_pass()));
        match outcome {
            Ok(result) => {
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Err(_) => {
                let err = store.env.fail_panicked(THREAD);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(err));
                }
                return;
            }
        }
    }
}

impl StoreShared {
    /// One pass over every channel.
    pub(crate) fn compaction_pass(&self) -> Result<CompactionReport> {
        #[cfg(test)]
        if self
            .panic_next_compaction
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            panic!("injected by a test");
        }
        self.env.check_writable()?;
        let mut report = CompactionReport::default();
        let now = self.env.opts.now_ns();

        let mut live = Vec::new();
        for core in self.channel_list() {
            if core.inactive(now) {
                self.delete_channel(core.name())?;
                report.channels_deleted.push(core.name().to_string());
            } else {
                live.push(core);
            }
        }

        // Decide, then record every new first seq in one catalog write.
        let mut plans: Vec<(Arc<ChannelCore>, TrimPlan)> = Vec::new();
        for core in &live {
            if let Some(plan) = core.log.plan_retention(&core.limits(), now)? {
                plans.push((Arc::clone(core), plan));
            }
        }
        if plans.iter().any(|(core, p)| p.0.first_seq > core.log.first_seq()) {
            let firsts: Vec<(u64, u64)> = plans.iter().map(|(c, p)| (c.id(), p.0.first_seq)).collect();
            self.record_first_seqs(&firsts)?;
        }
        for (core, plan) in plans {
            let (moved, deleted) = core.log.trim(plan)?;
            report.channels_trimmed += usize::from(moved);
            report.segments_deleted += deleted;
        }
        report.subscribers_compacted = self.subs.compact_if_due()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::{Error, Options, Store, SyncPolicy};

    #[test]
    fn a_panicking_pass_poisons_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).expect("open");
        let ch = store.channel("c").expect("channel");
        ch.publish(b"x").expect("publish");
        store.shared.panic_next_compaction.store(true, Ordering::Release);
        let err = store.compact_now().expect_err("the pass panicked");
        let Error::Failed { cause } = &err else {
            panic!("not Failed: {err}")
        };
        assert!(
            matches!(
                **cause,
                Error::BackgroundPanic {
                    thread: "spool-compactor"
                }
            ),
            "{cause}"
        );
        assert!(
            matches!(ch.publish(b"y"), Err(Error::Failed { .. })),
            "poisoned, not vanished"
        );
        assert!(store.close().is_err());
    }
}
