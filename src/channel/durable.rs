//! Durable publish without blocking a thread: the append happens in the
//! call, and a future waits for the sync that covers it.
//!
//! Who syncs: a waiting future asks the channel's `SyncKick` for a sync
//! round. Rounds run one at a time on the store's background worker
//! (`spool-io`; with the simulated storage, which has no worker, in the
//! polling thread), each syncing the log through its last seq at the start
//! of the round; a future that asks while a round runs gets the next one.
//! Rounds go through the log's group commit like every other sync, so they
//! share their msync with blocking publishers, `sync()` and the flusher,
//! and every advance of the durable seq (whoever synced) wakes the futures
//! through the group commit's waker set.

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use super::{Channel, ChannelCore};
use crate::error::{Error, Result};
use crate::wakeup::{fence_after_register, Registration};

/// See `subscriber::recv_async::ROUNDS`.
const ROUNDS: usize = 4;

/// Sync rounds run for durability futures of one channel (module docs).
#[derive(Default)]
pub(crate) struct SyncKick {
    st: Mutex<KickState>,
}

#[derive(Default)]
struct KickState {
    phase: Phase,
    /// Rounds started so far; round `n` syncs through the last seq at its
    /// start.
    started: u64,
    /// The latest round that failed without failing the store, and why.
    failed: Option<(u64, Arc<Error>)>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Idle,
    /// A round runs.
    Running,
    /// A round runs, and another must follow it.
    Again,
}

impl SyncKick {
    /// Makes sure a sync round starts after this call: returns the round
    /// that covers everything published before it.
    fn kick(core: &Arc<ChannelCore>) -> u64 {
        let round = {
            let mut st = core.syncs.st.lock();
            match st.phase {
                Phase::Idle => {
                    st.phase = Phase::Running;
                    st.started += 1;
                    st.started
                }
                Phase::Running | Phase::Again => {
                    st.phase = Phase::Again;
                    return st.started + 1;
                }
            }
        };
        let env = Arc::clone(core.log.env());
        let core = Arc::clone(core);
        env.background(move || run_rounds(&core, round));
        round
    }

    /// Why round `covering` (or a later one) failed, if it did.
    fn failure_since(&self, covering: u64) -> Option<Arc<Error>> {
        match &self.st.lock().failed {
            Some((round, cause)) if *round >= covering => Some(Arc::clone(cause)),
            _ => None,
        }
    }
}

/// Runs sync rounds until no future asks for another.
fn run_rounds(core: &ChannelCore, mut round: u64) {
    loop {
        // The round covers what was published before this point: anything
        // later asked for `Again` after the lock below, or is seen here.
        let target = core.log.last_seq();
        let outcome = core.log.sync_through(target);
        let mut st = core.syncs.st.lock();
        if let Err(e) = outcome {
            // A sticky failure or a deletion is seen by the futures
            // themselves; anything else is handed to those this round covers.
            let stopped = core.log.env().check_failed().is_err() || core.log.is_deleted();
            if !stopped {
                st.failed = Some((round, Arc::new(e)));
            }
            drop(st);
            core.log.wake_durable();
            st = core.syncs.st.lock();
        }
        if st.phase == Phase::Running {
            st.phase = Phase::Idle;
            return;
        }
        st.phase = Phase::Running;
        st.started += 1;
        round = st.started;
    }
}

/// A future that resolves to `T` once the messages it stands for are
/// durable: from [`Channel::publish_durable_async`],
/// [`Channel::publish_batch_durable_async`] and
/// [`Channel::synced_through`].
///
/// It is `Send` and `'static` (spawn it, or keep it and await it later).
/// Dropping it does not undo the publish: the messages stay written, and
/// become durable with the next sync.
#[must_use = "futures do nothing unless polled; the messages are published already, this only waits for their durability"]
pub struct Durable<T> {
    core: Arc<ChannelCore>,
    /// Durable once `durable_seq() >= through`.
    through: u64,
    /// What the future returns; `None` once returned.
    out: Option<Result<T>>,
    reg: Registration,
    /// The sync round this future asked for.
    covering: Option<u64>,
}

impl<T> std::fmt::Debug for Durable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("channel", &self.core.name())
            .field("through", &self.through)
            .finish()
    }
}

impl<T> Durable<T> {
    fn new(core: &Arc<ChannelCore>, through: u64, out: Result<T>) -> Durable<T> {
        Durable {
            core: Arc::clone(core),
            through,
            out: Some(out),
            reg: Registration::default(),
            covering: None,
        }
    }

    /// Why waiting is over without durability, if it is.
    fn stopped(&self) -> Option<Error> {
        let log = &self.core.log;
        if let Err(e) = log.env().check_failed() {
            return Some(e);
        }
        match log.check_readable() {
            // A closing store syncs everything before it lets go: wait.
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => return Some(e),
        }
        let cause = self.core.syncs.failure_since(self.covering?)?;
        Some(Error::SyncFailed { cause })
    }

    fn finish(&mut self, r: Result<()>) -> Poll<Result<T>> {
        self.core.log.deregister_durable(&mut self.reg);
        let out = match (self.out.take(), r) {
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) | (Some(Err(e)), _) => Err(e),
            (None, _) => Err(Error::invalid_option("Durable", "polled after it completed")),
        };
        Poll::Ready(out)
    }
}

impl<T: Unpin> Future for Durable<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if !matches!(this.out, Some(Ok(_))) {
            // The publish failed (or this future already completed).
            return this.finish(Ok(()));
        }
        let log = Arc::clone(&this.core.log);
        for _ in 0..ROUNDS {
            if log.durable_seq() >= this.through {
                return this.finish(Ok(()));
            }
            if let Some(e) = this.stopped() {
                return this.finish(Err(e));
            }
            log.register_durable(&mut this.reg, cx.waker());
            fence_after_register();
            // A sync that ended after the look above either sees the
            // registration or is seen here.
            if log.durable_seq() >= this.through || this.stopped().is_some() {
                continue;
            }
            // Ask for a round (it may run right here, without a worker).
            this.covering = Some(SyncKick::kick(&this.core));
            if log.durable_seq() >= this.through || this.stopped().is_some() {
                continue;
            }
            return Poll::Pending;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Durable<T> {
    fn drop(&mut self) {
        self.core.log.deregister_durable(&mut self.reg);
    }
}

impl Channel {
    /// Appends one message now and returns a future that resolves to its
    /// sequence number once it is **durable** (survives power loss),
    /// whatever the [`SyncPolicy`](crate::SyncPolicy), without blocking the
    /// thread that awaits it: the sync runs on the store's background
    /// thread, shared (group commit) with every other publisher, `sync()`
    /// and the flusher. Works on any executor.
    ///
    /// The append happens in this call, not at the first poll: calls get
    /// sequence numbers in call order, and the message is *written* (it
    /// survives a crash of the process) before the future is even polled.
    /// Dropping the future does not unpublish it; it only stops waiting
    /// (the message becomes durable with the next sync).
    ///
    /// Errors (from the future): those of [`publish`](Self::publish);
    /// `Failed` if the sync fails (the store turns read-only);
    /// `SyncFailed` if it fails otherwise; `ChannelDeleted` if the channel
    /// is deleted before the message is durable. A store closed meanwhile
    /// makes it durable as it closes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// let orders = store.channel("orders")?;
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let seq = rt.block_on(async {
    ///     let pending = orders.publish_durable_async(b"paid");
    ///     // ... other work on this task while the sync runs ...
    ///     pending.await
    /// })?;
    /// assert!(orders.durable_seq() >= seq);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn publish_durable_async(&self, payload: &[u8]) -> Durable<u64> {
        let appended = self.core.log.append_written(std::slice::from_ref(&payload));
        let through = appended.as_ref().map_or(0, |r| *r.end());
        Durable::new(&self.core, through, appended.map(|r| *r.start()))
    }

    /// As [`publish_durable_async`](Self::publish_durable_async) for a
    /// batch: appended now with contiguous sequence numbers (as
    /// [`publish_batch`](Self::publish_batch)), resolved to their range once
    /// all of them are durable.
    pub fn publish_batch_durable_async<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Durable<RangeInclusive<u64>> {
        let appended = self.core.log.append_written(payloads);
        let through = appended.as_ref().map_or(0, |r| *r.end());
        Durable::new(&self.core, through, appended)
    }

    /// A future that resolves once every message up to `seq` is durable:
    /// the async [`sync`](Self::sync), for messages published with
    /// [`publish`](Self::publish) under `SyncPolicy::Never` or `Interval`
    /// (which return once the message is written). If no sync covering
    /// `seq` is under way, one starts on the store's background thread; the
    /// awaiting thread never blocks. `OutOfRange` if `seq` is past
    /// `last_seq()`; otherwise errors as for
    /// [`publish_durable_async`](Self::publish_durable_async).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use spool::{Options, Store, SyncPolicy};
    /// let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never))?;
    /// let log = store.channel("log")?;
    /// let last = *log.publish_batch(&[b"a".as_slice(), b"b"])?.end(); // written, not durable
    /// futures::executor::block_on(log.synced_through(last))?;
    /// assert_eq!(log.durable_seq(), last);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn synced_through(&self, seq: u64) -> Durable<()> {
        let last = self.last_seq();
        let out = if seq > last {
            Err(self.core.log.out_of_range(seq))
        } else {
            Ok(())
        };
        Durable::new(&self.core, seq, out)
    }
}
