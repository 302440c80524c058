//! A channel: a log plus the subscriptions on it.

mod durable;
mod inspect;
mod queue_group;
mod subscriber;
mod wait;

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::format::catalog::validate_name;
use crate::limits::Limits;
use crate::log::{Log, Messages};
use crate::message::Message;
use crate::subscriptions::Subscriptions;

pub use durable::Durable;
pub use inspect::{SubscriberInfo, SubscriptionKind};
pub use queue_group::{DeadLetter, DeadReason, Delivery, DeliveryStream, QueueMember, QueueOptions, RecvDelivery};
pub use subscriber::{Recv, StartAt, Subscriber, SubscriberStream};

use durable::SyncKick;

pub(crate) use queue_group::GroupTable;
pub(crate) use subscriber::commit_all;

/// Shared state of one channel incarnation.
pub(crate) struct ChannelCore {
    pub(crate) log: Arc<Log>,
    /// Durable subscriber state of the store.
    pub(crate) subs: Arc<Subscriptions>,
    /// Queue groups with a member open.
    pub(crate) groups: GroupTable,
    /// The channel's own limits (overrides of the store defaults).
    own_limits: RwLock<Limits>,
    /// Last subscriber activity (clock ns); publishes count through the
    /// log's last timestamp. For `max_inactivity`.
    last_activity: AtomicU64,
    /// Sync rounds for durability futures.
    syncs: SyncKick,
}

impl ChannelCore {
    pub(crate) fn new(log: Arc<Log>, subs: Arc<Subscriptions>, limits: Limits) -> Arc<ChannelCore> {
        let now = log.env().opts.now_ns();
        Arc::new(ChannelCore {
            log,
            subs,
            groups: GroupTable::default(),
            own_limits: RwLock::new(limits),
            last_activity: AtomicU64::new(now),
            syncs: SyncKick::default(),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.log.id()
    }

    pub(crate) fn name(&self) -> &str {
        self.log.name()
    }

    /// The limits in force: the channel's own, else the store defaults.
    pub(crate) fn limits(&self) -> Limits {
        self.own_limits.read().or(self.log.env().opts.get_limits())
    }

    pub(crate) fn own_limits(&self) -> Limits {
        *self.own_limits.read()
    }

    pub(crate) fn set_own_limits(&self, limits: Limits) {
        *self.own_limits.write() = limits;
    }

    /// Under `SyncPolicy::Always`, makes the channel durable through `seq`
    /// before a commit pointing at it is appended (a durable commit never
    /// points past the durable log; under the other policies the sync of
    /// the subscribers log keeps that order).
    pub(crate) fn durable_before_commit(&self, seq: u64) -> Result<()> {
        if self.log.env().opts.get_sync_policy() == crate::options::SyncPolicy::Always {
            self.log.sync_through(seq)?;
        }
        Ok(())
    }

    /// Records subscriber activity (for `max_inactivity`).
    #[inline]
    pub(crate) fn touch(&self) {
        self.last_activity
            .store(self.log.env().opts.now_ns(), Ordering::Relaxed);
    }

    /// Whether the channel has been idle past its `max_inactivity` at
    /// `now` (no publish, no subscriber activity, no subscriber open).
    pub(crate) fn inactive(&self, now: u64) -> bool {
        let Some(max) = self.limits().max_inactivity else {
            return false;
        };
        let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let last = self
            .last_activity
            .load(Ordering::Relaxed)
            .max(self.log.last_timestamp());
        now.saturating_sub(last) > max && !self.subs.has_open(self.id())
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
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = spool::Store::open(dir.path(), spool::Options::default())?;
/// let events = store.channel("events")?;
/// let seq = events.publish(b"created")?;
/// assert_eq!(events.get(seq)?.payload(), b"created");
/// assert_eq!((events.first_seq(), events.last_seq()), (1, 1));
/// # Ok::<(), spool::Error>(())
/// ```
#[derive(Clone)]
pub struct Channel {
    pub(crate) core: Arc<ChannelCore>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("first_seq", &self.first_seq())
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl Channel {
    #[cfg(test)]
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.core.log
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// The id of this incarnation; a channel deleted and created again gets
    /// a new id, never a reused one.
    pub fn id(&self) -> u64 {
        self.core.id()
    }

    /// Appends one message and returns its sequence number.
    ///
    /// Durability: when this returns the message is *written* (survives a
    /// crash of the process); it is *durable* (survives power loss) after
    /// the next sync, at once under `SyncPolicy::Always`.
    ///
    /// Errors: `PayloadTooLarge` past `Options::max_payload`; `Failed` after
    /// an earlier sync failure; `ChannelDeleted`; `Closed`; I/O errors
    /// creating a segment (such as a full disk).
    pub fn publish(&self, payload: &[u8]) -> Result<u64> {
        let range = self.core.log.append(std::slice::from_ref(&payload))?;
        Ok(*range.start())
    }

    /// Appends several messages with contiguous sequence numbers and one
    /// timestamp; returns their range. Durability as for
    /// [`publish`](Self::publish). All payload sizes are checked before
    /// anything is written; if an I/O error stops the batch midway (when a
    /// new segment cannot be created), the messages before it stay written
    /// and the error is returned.
    pub fn publish_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
        self.core.log.append(payloads)
    }

    /// The message `seq`. `OutOfRange` outside `[first_seq, last_seq]`,
    /// `Lost` if a repair removed it, `Corrupt` if it fails validation,
    /// `ChannelDeleted` once the channel was deleted, `Closed` once the
    /// store was closed.
    pub fn get(&self, seq: u64) -> Result<Message> {
        self.core.log.get(seq)
    }

    /// Iterates messages in order from `seq` (or from the first retained
    /// message if `seq` is below it) up to the last published one; the
    /// iterator sees messages published while it runs. `OutOfRange` if `seq`
    /// is past `last_seq() + 1`; `ChannelDeleted`, `Closed` as for `get`.
    pub fn read_from(&self, seq: u64) -> Result<Messages> {
        self.core.log.read_from(seq)
    }

    /// The first message with a timestamp at or after `timestamp_ns`
    /// (nanoseconds since the Unix epoch), found through the sparse index;
    /// `None` if every message is older.
    pub fn seq_at_or_after(&self, timestamp_ns: u64) -> Result<Option<u64>> {
        self.core.log.seq_at_or_after(timestamp_ns)
    }

    /// First retained sequence number (1 for a new channel).
    pub fn first_seq(&self) -> u64 {
        self.core.log.first_seq()
    }

    /// Last published sequence number; `first_seq() - 1` when empty.
    pub fn last_seq(&self) -> u64 {
        self.core.log.last_seq()
    }

    /// Every message up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.core.log.durable_seq()
    }

    /// Makes every message published so far durable (msync), sharing the
    /// sync with concurrent callers.
    pub fn sync(&self) -> Result<()> {
        self.core.log.sync()
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
    /// member's options win). `InvalidOption` for a zero or huge `ack_wait`,
    /// a zero `max_in_flight` or `max_deliveries`, or a dead-letter channel
    /// that is the group's own or belongs to another store.
    pub fn queue_subscribe_with(&self, group: &str, start: StartAt, opts: QueueOptions) -> Result<QueueMember> {
        validate_name(group)?;
        QueueMember::join(Arc::clone(&self.core), group, start, opts)
    }

    /// Counts and limits of the channel.
    pub fn stats(&self) -> ChannelStats {
        let first_seq = self.first_seq();
        let last_seq = self.last_seq();
        ChannelStats {
            id: self.id(),
            first_seq,
            last_seq,
            messages: (last_seq + 1).saturating_sub(first_seq),
            segments: self.core.log.segment_count(),
            subscribers: self.core.subs.count_for(self.id()),
            own_limits: self.core.own_limits(),
            limits: self.core.limits(),
        }
    }

    /// Names of the channel's durable subscribers and queue groups, sorted.
    pub fn subscriber_names(&self) -> Vec<String> {
        self.core.subs.names_for(self.id())
    }

    /// Deletes the durable subscriber or queue group `name` (which must not
    /// be open). `NoSuchSubscriber` if there is none.
    pub fn remove_subscriber(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.core.log.check_live()?;
        let key = (self.id(), name.to_string());
        let _attached = self.core.subs.attach(key.clone(), self.name())?;
        if self.core.subs.get(&key).is_none() {
            return Err(Error::NoSuchSubscriber {
                channel: self.name().to_string(),
                name: name.to_string(),
            });
        }
        self.core.subs.remove(&key)?;
        self.core.groups.forget(name);
        Ok(())
    }
}
