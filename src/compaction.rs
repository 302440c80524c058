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

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::channel::ChannelCore;
use crate::error::{Error, Result};
use crate::retention::{decide, Probe, SegmentSummary};
use crate::segment::{index_file_name, Segment, Slot, SEGMENT_HEADER_LEN};
use crate::store::StoreShared;

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Channels whose first retained sequence moved.
    pub channels_trimmed: usize,
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Channels deleted for inactivity.
    pub channels_deleted: Vec<String>,
    /// Whether the subscribers log was rewritten.
    pub subscribers_compacted: bool,
}

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
            .name("spool-compactor".into())
            .spawn(move || serve(&store, every, &incoming))
            .map_err(|e| Error::io("spawn compaction thread", "spool-compactor", e))?;
        Ok(Compactor { commands, handle })
    }

    /// Runs a pass on the thread and waits for it.
    pub(crate) fn compact_now(&self) -> Result<CompactionReport> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let gone = || {
            Error::io(
                "compaction thread",
                "spool-compactor",
                std::io::Error::other("the compaction thread has stopped"),
            )
        };
        self.commands.send(Command::Compact(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Stops and joins the thread; a panic in it becomes the store's failure.
    pub(crate) fn stop(self, store: &StoreShared) {
        let _ = self.commands.send(Command::Close);
        if self.handle.join().is_err() {
            panicked(store);
        }
    }
}

fn panicked(store: &StoreShared) {
    store.env.fail(Error::io(
        "compaction thread",
        "spool-compactor",
        std::io::Error::other("the compaction thread panicked; the store is poisoned"),
    ));
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
                panicked(&store);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(store.env.check_writable().err().unwrap_or(Error::Closed)));
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
        if self.panic_next_compaction.swap(false, Ordering::AcqRel) {
            panic!("injected by a test");
        }
        self.env.check_writable()?;
        let mut report = CompactionReport::default();
        let now = self.env.opts.now_ns();
        let channels: Vec<Arc<ChannelCore>> = self.channels.read().values().cloned().collect();

        let mut live = Vec::new();
        for core in channels {
            if inactive(&core, now) {
                self.delete_channel(&core.name)?;
                report.channels_deleted.push(core.name.clone());
            } else {
                live.push(core);
            }
        }

        // Decide, then record every new first seq in one catalog write.
        let mut changes = Vec::new();
        for core in &live {
            let (summaries, mut probe) = summarize(core)?;
            let first = core.first_seq.load(Ordering::Acquire);
            let next = core.last_seq.load(Ordering::Acquire) + 1;
            let decision = decide(&summaries, first, next, &core.limits(), now, &mut probe);
            // A segment that could not be read keeps everything this pass.
            if probe.error.is_some() {
                continue;
            }
            if decision.first_seq > first || decision.removable > 0 {
                changes.push((Arc::clone(core), decision));
            }
        }
        if changes
            .iter()
            .any(|(core, d)| d.first_seq > core.first_seq.load(Ordering::Acquire))
        {
            let mut catalog = self.catalog.lock();
            let mut next = catalog.clone();
            for (core, d) in &changes {
                if let Some(entry) = next.channels.get_mut(&core.name).filter(|e| e.id == core.id) {
                    entry.first_seq = entry.first_seq.max(d.first_seq);
                }
            }
            self.env.sticky(next.save(&self.env.storage, &self.env.root))?;
            *catalog = next;
        }

        for (core, d) in changes {
            // Deleted meanwhile: its directory is gone with everything in it.
            if core.deleted.load(Ordering::Acquire) {
                continue;
            }
            if core.first_seq.fetch_max(d.first_seq, Ordering::AcqRel) < d.first_seq {
                report.channels_trimmed += 1;
            }
            let removed = core.segments.remove_front(d.removable);
            for slot in &removed {
                for path in [slot.path.clone(), slot.path.with_file_name(index_file_name(slot.base))] {
                    self.env.storage.remove_file(&path)?;
                }
            }
            if !removed.is_empty() {
                let synced = self.env.storage.sync_dir(&core.dir);
                // A delete_channel racing this pass removes the directory;
                // that is not a failed sync.
                let gone = core.deleted.load(Ordering::Acquire) && !self.env.storage.exists(&core.dir);
                if !gone {
                    self.env.sticky(synced)?;
                }
                report.segments_deleted += removed.len();
            }
            // Subscribers below the new first seq skip ahead on their own.
            core.arrivals.wake();
        }
        report.subscribers_compacted = self.subs.compact_if_grown()?;
        Ok(report)
    }
}

fn inactive(core: &ChannelCore, now: u64) -> bool {
    let Some(max) = core.limits().max_inactivity else {
        return false;
    };
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let idle = now.saturating_sub(core.last_activity.load(Ordering::Relaxed));
    idle > max && !core.subs.has_open(core.id)
}

/// Summaries of a channel's segments, and a probe that reads them.
fn summarize(core: &ChannelCore) -> Result<(Vec<SegmentSummary>, SegmentProbe<'_>)> {
    let count = core.segments.len();
    let mut summaries = Vec::with_capacity(count);
    for i in 0..count {
        let Some((slot, next_base)) = core.segments.at(i) else {
            break;
        };
        let sealed = |seal: Slot| SegmentSummary {
            first_seq: slot.base,
            next_seq: seal.next_seq,
            bytes: seal.durable_end.saturating_sub(SEGMENT_HEADER_LEN as u64),
            last_timestamp: seal.last_timestamp,
            sealed: true,
        };
        let summary = match slot.seal() {
            Some(seal) => sealed(seal),
            None => {
                let seg = core.segments.open(&core.env, core.id, &slot, next_base)?;
                match seg.seal_info() {
                    Some(seal) => sealed(seal),
                    None => SegmentSummary {
                        first_seq: slot.base,
                        next_seq: core.last_seq.load(Ordering::Acquire) + 1,
                        bytes: (seg.region.published() - SEGMENT_HEADER_LEN) as u64,
                        last_timestamp: core.last_timestamp.load(Ordering::Acquire),
                        sealed: false,
                    },
                }
            }
        };
        summaries.push(summary);
    }
    Ok((summaries, SegmentProbe { core, error: None }))
}

/// Reads segments for the policy's in-segment questions. An I/O error
/// answers conservatively (keep more) and is remembered.
struct SegmentProbe<'a> {
    core: &'a ChannelCore,
    error: Option<Error>,
}

impl SegmentProbe<'_> {
    fn segment(&mut self, i: usize) -> Option<Arc<Segment>> {
        let (slot, next_base) = self.core.segments.at(i)?;
        match self.core.segments.open(&self.core.env, self.core.id, &slot, next_base) {
            Ok(seg) => Some(seg),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl Probe for SegmentProbe<'_> {
    fn first_at_or_after(&mut self, i: usize, ts: u64) -> Option<u64> {
        let seg = self.segment(i)?;
        match seg.seq_at_or_after(ts) {
            Ok(found) => found,
            Err(e) => {
                self.error = Some(e);
                Some(seg.base)
            }
        }
    }

    fn first_fitting(&mut self, i: usize, keep: u64) -> u64 {
        let Some(seg) = self.segment(i) else {
            return 0;
        };
        let end = seg.seal_info().map_or(seg.region.published() as u64, |s| s.durable_end);
        let target = usize::try_from(end.saturating_sub(keep)).unwrap_or(usize::MAX);
        match seg.seq_at_offset(target.max(SEGMENT_HEADER_LEN)) {
            Ok(seq) => seq,
            Err(e) => {
                self.error = Some(e);
                seg.base
            }
        }
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
        assert!(matches!(err, Error::Failed { .. }), "{err}");
        assert!(err.to_string().contains("compaction thread panicked"), "{err}");
        assert!(
            matches!(ch.publish(b"y"), Err(Error::Failed { .. })),
            "poisoned, not vanished"
        );
        assert!(store.close().is_err());
    }
}
