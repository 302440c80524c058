//! A channel: one named, append-only log made of segments.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::durability::GroupCommit;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::Message;
use crate::queue_group::{GroupTable, QueueMember, QueueOptions};
use crate::reader::Messages;
use crate::segment::Segment;
use crate::segments::SegmentList;
use crate::subscriber::{StartAt, Subscriber, Subscriptions};
use crate::writer::Writer;

/// Shared state of one channel incarnation.
pub(crate) struct ChannelCore {
    pub(crate) env: Arc<Env>,
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    /// Segments ordered by base seq; readers take its read lock briefly,
    /// the writer its write lock only to add or remove a segment.
    pub(crate) segments: SegmentList,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) last_seq: AtomicU64,
    pub(crate) first_seq: AtomicU64,
    pub(crate) durable_seq: AtomicU64,
    pub(crate) last_timestamp: AtomicU64,
    pub(crate) group: GroupCommit,
    pub(crate) deleted: AtomicBool,
    /// Durable subscriber state of the store.
    pub(crate) subs: Arc<Subscriptions>,
    /// Blocked receivers wait here; publishers notify only when one waits.
    pub(crate) arrivals: Arrivals,
    /// Queue groups with a member open.
    pub(crate) groups: GroupTable,
    /// The channel's own limits (overrides of the store defaults).
    pub(crate) own_limits: RwLock<Limits>,
    /// Last publish or subscriber activity (clock ns), for max_inactivity.
    pub(crate) last_activity: AtomicU64,
}

/// Wakes blocked receivers on publish, without a cost when none waits.
#[derive(Default)]
pub(crate) struct Arrivals {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Arrivals {
    /// Wakes every waiter (after a publish, an ack, a close or a delete).
    #[inline]
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `wait_until`: either the waiter sees the
        // new state, or we see the waiter.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock();
            self.cond.notify_all();
        }
    }

    /// Blocks until `ready()` holds, a wake-up, or `deadline`. Returns
    /// false on timeout.
    pub(crate) fn wait_until(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut g = self.lock.lock();
        let mut timed_out = false;
        if !ready() {
            match deadline {
                Some(d) => timed_out = self.cond.wait_until(&mut g, d).timed_out(),
                None => self.cond.wait(&mut g),
            }
        }
        drop(g);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        !timed_out
    }
}

impl ChannelCore {
    /// The limits in force: the channel's own, else the store defaults.
    pub(crate) fn limits(&self) -> Limits {
        self.own_limits.read().or(self.env.opts.get_limits())
    }

    /// Records publish or subscriber activity (for `max_inactivity`).
    #[inline]
    pub(crate) fn touch(&self) {
        self.last_activity.store(self.env.opts.now_ns(), Ordering::Relaxed);
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        self.env.check_writable()?;
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::ChannelDeleted {
                name: self.name.clone(),
                id: self.id,
            });
        }
        Ok(())
    }

    pub(crate) fn out_of_range(&self, requested: u64) -> Error {
        Error::OutOfRange {
            requested,
            first: self.first_seq.load(Ordering::Acquire),
            last: self.last_seq.load(Ordering::Acquire),
        }
    }

    /// The segment holding `seq` (which the caller checked is in range).
    pub(crate) fn segment_for(&self, seq: u64) -> Result<Arc<Segment>> {
        let (slot, next_base) = self.segments.holding(seq).ok_or_else(|| self.out_of_range(seq))?;
        self.segments.open(&self.env, self.id, &slot, next_base)
    }

    /// Segment `i` of the list and the timestamp of its last message.
    fn segment_last_timestamp(&self, i: usize) -> Result<Option<(Arc<Segment>, u64)>> {
        let Some((slot, next_base)) = self.segments.at(i) else {
            return Ok(None);
        };
        let seg = self.segments.open(&self.env, self.id, &slot, next_base)?;
        let last = match seg.seal_info() {
            Some(s) => s.last_timestamp,
            None => self.last_timestamp.load(Ordering::Acquire),
        };
        Ok(Some((seg, last)))
    }

    pub(crate) fn get(&self, seq: u64) -> Result<Message> {
        let last = self.last_seq.load(Ordering::Acquire);
        let first = self.first_seq.load(Ordering::Acquire);
        if seq < first || seq > last {
            return Err(self.out_of_range(seq));
        }
        let found = self.segment_for(seq).and_then(|seg| seg.find(seq));
        match found {
            // Retention removed it between the range check and the read.
            Err(_) if seq < self.first_seq.load(Ordering::Acquire) => Err(self.out_of_range(seq)),
            other => other,
        }
    }

    pub(crate) fn seq_at_or_after(&self, ts: u64) -> Result<Option<u64>> {
        if self.last_timestamp.load(Ordering::Acquire) < ts {
            return Ok(None);
        }
        // Binary search for the first segment whose last timestamp >= ts.
        let count = self.segments.len();
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.segment_last_timestamp(mid)? {
                Some((_, last)) if last < ts => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let first = self.first_seq.load(Ordering::Acquire);
        for i in lo..count {
            let Some((seg, _)) = self.segment_last_timestamp(i)? else {
                break;
            };
            if let Some(seq) = seg.seq_at_or_after(ts)? {
                return Ok(Some(seq.max(first)));
            }
        }
        Ok(None)
    }
}

/// A snapshot of a channel's counts and limits, from [`Channel::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// The incarnation id.
    pub id: u64,
    /// First retained sequence.
    pub first_seq: u64,
    /// Last published sequence (`first_seq - 1` when empty).
    pub last_seq: u64,
    /// Retained messages.
    pub messages: u64,
    /// Segment files.
    pub segments: usize,
    /// Durable subscribers and queue groups.
    pub subscribers: usize,
    /// The channel's own limits (`None` fields follow the store defaults).
    pub own_limits: Limits,
    /// The limits in force.
    pub limits: Limits,
}

/// A handle to a channel. Cheap to clone; all clones share the channel.
///
/// Writes take a short per-channel lock around the copy into the mapping;
/// reads never take it.
#[derive(Clone)]
pub struct Channel {
    pub(crate) core: Arc<ChannelCore>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.core.name)
            .field("id", &self.core.id)
            .field("first_seq", &self.first_seq())
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl Channel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The id of this incarnation; a channel deleted and created again gets
    /// a new id, never a reused one.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Appends one message and returns its sequence number.
    ///
    /// Durability: when this returns the message is *written* (survives a
    /// crash of the process); it is *durable* (survives power loss) after
    /// the next sync, at once under `SyncPolicy::Always`.
    ///
    /// Errors: `PayloadTooLarge` past `Options::max_payload`; `Failed` after
    /// an earlier sync failure; `ChannelDeleted`; I/O errors creating a
    /// segment (such as a full disk).
    pub fn publish(&self, payload: &[u8]) -> Result<u64> {
        let range = self.core.append(std::slice::from_ref(&payload))?;
        Ok(*range.start())
    }

    /// Appends several messages with contiguous sequence numbers and one
    /// timestamp; returns their range. Durability as for
    /// [`publish`](Self::publish). All payload sizes are checked before
    /// anything is written; if an I/O error stops the batch midway (when a
    /// new segment cannot be created), the messages before it stay written
    /// and the error is returned.
    pub fn publish_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
        self.core.append(payloads)
    }

    /// The message `seq`. `OutOfRange` outside `[first_seq, last_seq]`,
    /// `Lost` if a repair removed it, `Corrupt` if it fails validation.
    pub fn get(&self, seq: u64) -> Result<Message> {
        self.core.get(seq)
    }

    /// Iterates messages in order from `seq` (or from the first retained
    /// message if `seq` is below it) up to the last published one; the
    /// iterator sees messages published while it runs. `OutOfRange` if `seq`
    /// is past `last_seq() + 1`.
    pub fn read_from(&self, seq: u64) -> Result<Messages> {
        let last = self.core.last_seq.load(Ordering::Acquire);
        if seq > last.saturating_add(1) {
            return Err(self.core.out_of_range(seq));
        }
        let first = self.core.first_seq.load(Ordering::Acquire);
        Ok(Messages::new(Arc::clone(&self.core), seq.max(first)))
    }

    /// The first message with a timestamp at or after `timestamp_ns`
    /// (nanoseconds since the Unix epoch), found through the sparse index;
    /// `None` if every message is older.
    pub fn seq_at_or_after(&self, timestamp_ns: u64) -> Result<Option<u64>> {
        self.core.seq_at_or_after(timestamp_ns)
    }

    /// First retained sequence number (1 for a new channel).
    pub fn first_seq(&self) -> u64 {
        self.core.first_seq.load(Ordering::Acquire)
    }

    /// Last published sequence number; `first_seq() - 1` when empty.
    pub fn last_seq(&self) -> u64 {
        self.core.last_seq.load(Ordering::Acquire)
    }

    /// Every message up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.core.durable_seq.load(Ordering::Acquire)
    }

    /// Makes every message published so far durable (msync), sharing the
    /// sync with concurrent callers.
    pub fn sync(&self) -> Result<()> {
        self.core.sync_through(self.last_seq())
    }

    /// Opens the durable subscriber `name`, creating it at `start` if it
    /// does not exist (`start` is ignored afterwards: delivery resumes after
    /// the committed position). Names follow the channel name rules.
    ///
    /// Errors: `SubscriberInUse` if a handle is already open,
    /// `TooManySubscribers` past `Options::max_subscribers`, `OutOfRange`
    /// for `StartAt::Seq` past `last_seq() + 1`, `SubscriberKind` if the
    /// name is a queue group.
    pub fn subscribe(&self, name: &str, start: StartAt) -> Result<Subscriber> {
        Subscriber::open(Arc::clone(&self.core), name, start)
    }

    /// Joins the queue group `group` with default [`QueueOptions`],
    /// creating it at `start` if it does not exist. Members share one
    /// durable position; each message goes to one member.
    pub fn queue_subscribe(&self, group: &str, start: StartAt) -> Result<QueueMember> {
        self.queue_subscribe_with(group, start, QueueOptions::default())
    }

    /// As [`queue_subscribe`](Self::queue_subscribe) with explicit options
    /// (they apply to the group while it has a member open; the first
    /// member's options win). `InvalidOption` for a zero or huge `ack_wait`
    /// or a zero `max_in_flight`.
    pub fn queue_subscribe_with(&self, group: &str, start: StartAt, opts: QueueOptions) -> Result<QueueMember> {
        crate::catalog::validate_name(group)?;
        QueueMember::join(Arc::clone(&self.core), group, start, opts)
    }

    /// Counts and limits of the channel.
    pub fn stats(&self) -> ChannelStats {
        let first_seq = self.first_seq();
        let last_seq = self.last_seq();
        ChannelStats {
            id: self.core.id,
            first_seq,
            last_seq,
            messages: (last_seq + 1).saturating_sub(first_seq),
            segments: self.core.segments.len(),
            subscribers: self.core.subs.count_for(self.core.id),
            own_limits: *self.core.own_limits.read(),
            limits: self.core.limits(),
        }
    }

    /// Names of the channel's durable subscribers and queue groups, sorted.
    pub fn subscriber_names(&self) -> Vec<String> {
        self.core.subs.names_for(self.core.id)
    }

    /// Deletes the durable subscriber or queue group `name` (which must not
    /// be open). `NoSuchSubscriber` if there is none.
    pub fn remove_subscriber(&self, name: &str) -> Result<()> {
        crate::catalog::validate_name(name)?;
        self.core.check_live()?;
        let key = (self.core.id, name.to_string());
        let _attached = self.core.subs.attach(key.clone(), &self.core.name)?;
        if self.core.subs.get(&key).is_none() {
            return Err(Error::NoSuchSubscriber {
                channel: self.core.name.clone(),
                name: name.to_string(),
            });
        }
        self.core.subs.remove(&key)
    }
}
