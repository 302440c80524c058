//! A channel's log: its segments, its writer and the durability state of
//! every segment, owned by one type and changed under one lock.
//!
//! Nothing outside this module touches segments, the writer or the
//! durability marks in segment headers. The API is narrow: append, read
//! (`get`, a cursor, time lookup), sync through a seq, close, trim the
//! front (retention), segment summaries, verify, and `recover`, which
//! builds a log from its directory.
//!
//! Concurrency: appends, rolls, syncs' slot writes, close and trims take
//! `state` (one writer at a time, a short hold around the copy into the
//! mapping). Readers take no lock of the log: they load the published
//! length of a segment (Acquire, after the writer's Release store) and a
//! snapshot of the segment list. A sync's msync runs without the lock.

mod append;
mod cut;
mod follow;
mod read;
mod recover;
mod seal;
mod state;
mod sync;
mod table;
mod trim;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;

use parking_lot::Mutex;

use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::catalog::ChannelEntry;
use crate::group_commit::GroupCommit;
use crate::report::ChannelRecovery;
use crate::wakeup::{Arrivals, Registration};

pub(crate) use cut::{CutSegment, LogCut};
pub use read::Messages;
pub(crate) use trim::TrimPlan;

use state::{LogState, Phase};

use table::SegmentTable;

/// See the module docs.
pub(crate) struct Log {
    /// This log, for jobs it hands the background worker.
    me: Weak<Log>,
    env: Arc<Env>,
    /// Where the log records which of its segments must exist.
    catalog: Arc<Catalog>,
    id: u64,
    name: String,
    dir: PathBuf,
    state: Mutex<LogState>,
    table: SegmentTable,
    /// First retained seq (moved by retention; also under `state`).
    first_seq: AtomicU64,
    /// Last published seq and its timestamp, for lock-free readers.
    last_seq: AtomicU64,
    last_timestamp: AtomicU64,
    /// Mirrors `Phase::Deleted` for readers.
    deleted: AtomicBool,
    /// Syncs, and the durable seq.
    commit: GroupCommit,
    /// Held while segments are sealed (by the worker, or by a sync that
    /// needs them sealed first), so they are sealed once, in order.
    sealing: Mutex<()>,
    /// Blocked receivers, woken by appends.
    pub(crate) arrivals: Arrivals,
}

/// Where a log starts: its writer's state, its segments and its marks.
struct Start {
    state: LogState,
    entries: Vec<Arc<table::SegmentEntry>>,
    first_seq: u64,
    last_seq: u64,
    last_timestamp: u64,
    durable_seq: u64,
}

impl Log {
    /// A new, empty log (its directory exists): the first append creates
    /// its first segment.
    pub(crate) fn create(env: Arc<Env>, catalog: Arc<Catalog>, id: u64, name: &str, dir: PathBuf) -> Arc<Log> {
        let first_len = state::FIRST_SEGMENT_LEN.min(env.opts.get_segment_size());
        let start = Start {
            state: LogState::new(1, 0, None, first_len),
            entries: Vec::new(),
            first_seq: 1,
            last_seq: 0,
            last_timestamp: 0,
            durable_seq: 0,
        };
        Log::assemble(env, catalog, id, name, dir, start)
    }

    /// The log, from where it starts: the one place a `Log` is built
    /// (created, recovered, or attached read-only).
    fn assemble(env: Arc<Env>, catalog: Arc<Catalog>, id: u64, name: &str, dir: PathBuf, start: Start) -> Arc<Log> {
        Arc::new_cyclic(|me| Log {
            me: me.clone(),
            env,
            catalog,
            id,
            name: name.to_string(),
            dir,
            state: Mutex::new(start.state),
            table: SegmentTable::new(start.entries),
            first_seq: AtomicU64::new(start.first_seq),
            last_seq: AtomicU64::new(start.last_seq),
            last_timestamp: AtomicU64::new(start.last_timestamp),
            deleted: AtomicBool::new(false),
            commit: GroupCommit::new(start.durable_seq),
            sealing: Mutex::new(()),
            arrivals: Arrivals::default(),
        })
    }

    /// Opens a log from its directory after a clean close or any crash
    /// (see the `recover` module), as its catalog `entry` describes it;
    /// `floor` is a seq known durable from elsewhere (a durable subscriber
    /// commit points at it); `legacy`: the store was written in format
    /// version 1 (its catalog records no segments).
    pub(crate) fn recover(
        env: Arc<Env>,
        catalog: Arc<Catalog>,
        name: &str,
        dir: PathBuf,
        entry: &ChannelEntry,
        floor: u64,
        legacy: bool,
    ) -> Result<(Arc<Log>, ChannelRecovery)> {
        let id = entry.id;
        let rec = recover::recover(&env, &catalog, &dir, name, entry, floor, legacy)?;
        let last = rec.next_seq - 1;
        let max = env.opts.get_segment_size();
        let next_len = match rec.entries.last().and_then(|e| e.segment()) {
            Some(seg) => state::after(seg.region.len() as u64, max),
            None => state::FIRST_SEGMENT_LEN.min(max),
        };
        let start = Start {
            state: LogState {
                sealing: rec.pending.into(),
                ..LogState::new(rec.next_seq, rec.last_timestamp, rec.active, next_len)
            },
            entries: rec.entries,
            first_seq: rec.first_seq,
            last_seq: last,
            last_timestamp: rec.last_timestamp,
            durable_seq: rec.durable_seq.min(last),
        };
        let log = Log::assemble(env, catalog, id, name, dir, start);
        Ok((log, rec.report))
    }

    /// The channel incarnation's id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The channel's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The channel's directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(crate) fn env(&self) -> &Arc<Env> {
        &self.env
    }

    /// First retained seq.
    #[inline]
    pub(crate) fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::Acquire)
    }

    /// Last published seq (`first_seq() - 1` when empty).
    #[inline]
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Timestamp of the last published message (0 before the first).
    #[inline]
    pub(crate) fn last_timestamp(&self) -> u64 {
        self.last_timestamp.load(Ordering::Acquire)
    }

    /// Every message up to this seq is durable.
    #[inline]
    pub(crate) fn durable_seq(&self) -> u64 {
        self.commit.durable()
    }

    /// Segment files in the log.
    pub(crate) fn segment_count(&self) -> usize {
        self.table.len()
    }

    /// Whether the channel was deleted.
    #[inline]
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn deleted_error(&self) -> Error {
        Error::ChannelDeleted {
            name: self.name.clone(),
            id: self.id,
        }
    }

    /// Err when the log takes no more writes: store closed or failed,
    /// channel deleted.
    pub(crate) fn check_live(&self) -> Result<()> {
        self.env.check_writable()?;
        if self.is_deleted() {
            return Err(self.deleted_error());
        }
        Ok(())
    }

    /// Err when reads must stop: the channel was deleted (a held `Message`
    /// stays valid; new reads are refused) or the store closed.
    #[inline]
    pub(crate) fn check_readable(&self) -> Result<()> {
        if self.is_deleted() {
            return Err(self.deleted_error());
        }
        if self.env.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn out_of_range(&self, requested: u64) -> Error {
        Error::OutOfRange {
            requested,
            first: self.first_seq(),
            last: self.last_seq(),
        }
    }

    /// Marks the log deleted: appends, syncs and reads return
    /// `ChannelDeleted` from now on; blocked receivers are woken. Waits for
    /// an append in progress and for background work on it.
    pub(crate) fn mark_deleted(&self) {
        let mut st = self.state.lock();
        st.phase = Phase::Deleted;
        self.deleted.store(true, Ordering::Release);
        drop(st);
        // Background work on this log finishes (and starts no more), so
        // its directory can be removed.
        drop(self.sealing.lock());
        self.wake_all();
    }

    /// Wakes every blocked receiver and every pending future of the log
    /// (receives, durability waits): the channel was deleted or the store
    /// closed, and they find out when they look.
    pub(crate) fn wake_all(&self) {
        self.arrivals.wake();
        self.commit.wake_all();
    }

    /// Registers a future waiting for `durable_seq()` to advance (or a sync
    /// to fail, the log to be deleted, the store to close). The caller then
    /// fences (`wakeup::fence_after_register`) and looks again.
    pub(crate) fn register_durable(&self, reg: &mut Registration, waker: &Waker) {
        self.commit.register(reg, waker);
    }

    /// Wakes the futures waiting for durability (a sync they asked for
    /// failed).
    pub(crate) fn wake_durable(&self) {
        self.commit.wake_all();
    }

    /// Removes a future's registration (it finished or was dropped).
    pub(crate) fn deregister_durable(&self, reg: &mut Registration) {
        self.commit.deregister(reg);
    }
}

#[cfg(test)]
mod tests {
    use super::table::MAX_OPEN_SEALED_ANY_SIZE as MAX_OPEN;
    use crate::{Options, Store, SyncPolicy};

    #[test]
    fn open_sealed_segments_are_bounded() {
        // Small segments: the count bound applies, not the byte budget.
        const N: u64 = 4000;
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options::default().segment_size(4096).sync_policy(SyncPolicy::Never);
        let payload = [7u8; 200];
        {
            let store = Store::open(dir.path(), opts.clone()).expect("open");
            let ch = store.channel("c").expect("channel");
            for _ in 0..N {
                ch.publish(&payload).expect("publish");
            }
            // Under `Never` rolled segments wait for their seal (bounded).
            let pending = 2 * super::append::LAZY_SEALS + 1;
            assert!(ch.log().table.open_count() <= MAX_OPEN + 1 + pending);
            store.close().expect("close");
        }
        let store = Store::open(dir.path(), opts).expect("reopen");
        let ch = store.channel("c").expect("channel");
        let segments = ch.log().segment_count();
        assert!(segments > 2 * MAX_OPEN, "{segments} segments");
        let first = ch.get(1).expect("first");
        let mut n = 0;
        for m in ch.read_from(1).expect("read") {
            assert_eq!(m.expect("message").payload(), payload);
            n += 1;
            assert!(ch.log().table.open_count() <= MAX_OPEN + 1);
        }
        assert_eq!(n, N);
        // Random access reopens closed segments; held messages stay valid.
        for seq in (1..=N).rev().step_by(37) {
            assert_eq!(ch.get(seq).expect("get").payload(), payload);
        }
        assert_eq!(first.payload(), payload, "a held message outlives eviction");
        assert!(ch.log().table.open_count() <= MAX_OPEN + 1);
    }
}
