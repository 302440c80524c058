//! Looking at a channel's durable subscribers and queue groups without
//! opening them: what each one committed last, and how far behind it is.

use crate::format::sublog::SubKind;

use super::Channel;

/// A durable subscriber or a queue group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionKind {
    /// A plain durable subscriber ([`Channel::subscribe`]).
    Subscriber,
    /// A queue group ([`Channel::queue_subscribe`]).
    QueueGroup,
}

/// One durable subscriber or queue group of a channel as last committed,
/// from [`Channel::subscribers`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberInfo {
    /// Its name.
    pub name: String,
    /// Plain subscriber or queue group.
    pub kind: SubscriptionKind,
    /// The committed position: the last seq a subscriber processed; a
    /// queue group's ack floor (every seq up to it is acked).
    pub position: u64,
    /// A queue group's ack floor (the same as `position`); `None` for a
    /// plain subscriber.
    pub ack_floor: Option<u64>,
    /// A queue group's acked seqs above its floor (acked out of order);
    /// 0 for a plain subscriber.
    pub acked_above_floor: u64,
    /// Retained messages it has not processed (acked) yet: those after
    /// its position, up to the channel's last seq, that are still retained.
    pub lag: u64,
    /// Bytes of the state its last commit stored (0 for a queue group).
    pub state_len: usize,
    /// When it last committed, in ns since the Unix epoch (`None` when
    /// unknown: commits read from a store of format version 1).
    pub committed_at: Option<u64>,
    /// Whether a handle of this process has it open (a subscriber, or a
    /// member of the group). Always `false` on a read-only store, which
    /// cannot see the owner's handles.
    pub open: bool,
}

impl Channel {
    /// The channel's durable subscribers and queue groups, by name, as
    /// last committed, with how far behind each is; none of them is opened
    /// or changed. On a store attached read-only the owner's subscribers
    /// log is read again first (`Io` or `Corrupt` if that fails). `Closed`
    /// once the store closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    /// use spool::{StartAt, SubscriptionKind};
    /// let ch = store.channel("jobs")?;
    /// ch.publish_batch(&[b"a".as_slice(), b"b", b"c"])?;
    /// ch.subscribe("audit", StartAt::First)?.commit(1, b"cursor")?;
    /// let workers = ch.queue_subscribe("workers", StartAt::First)?;
    /// let job = workers.recv()?;
    /// workers.ack(job.seq())?;
    /// drop(workers);
    ///
    /// let subs = ch.subscribers()?;
    /// assert_eq!((subs[0].name.as_str(), subs[0].kind), ("audit", SubscriptionKind::Subscriber));
    /// assert_eq!((subs[0].position, subs[0].lag, subs[0].state_len), (1, 2, 6));
    /// assert_eq!((subs[1].kind, subs[1].ack_floor, subs[1].lag), (SubscriptionKind::QueueGroup, Some(1), 2));
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn subscribers(&self) -> crate::Result<Vec<SubscriberInfo>> {
        let core = &self.core;
        if core.log.env().is_closed() {
            return Err(crate::Error::Closed);
        }
        if core.log.env().read_only {
            core.subs.reload()?;
            // Commits read just now may point at messages the follower
            // has not seen yet: look at the channel after the log.
            core.log.follow_now()?;
        }
        let id = self.id();
        let (first, last) = (self.first_seq(), self.last_seq());
        Ok(core
            .subs
            .of_channel(id)
            .into_iter()
            .map(|(name, d)| {
                let acked: u64 = d
                    .acked_above
                    .iter()
                    .map(|&(a, b)| {
                        let (a, b) = (a.max(first), b.min(last));
                        (b + 1).saturating_sub(a)
                    })
                    .sum();
                let done = d.position.max(first.saturating_sub(1));
                let lag = last.saturating_sub(done).saturating_sub(acked);
                let queue = d.kind == SubKind::Queue;
                let open = core.subs.is_open(&(id, name.clone()));
                SubscriberInfo {
                    kind: if queue {
                        SubscriptionKind::QueueGroup
                    } else {
                        SubscriptionKind::Subscriber
                    },
                    position: d.position,
                    ack_floor: queue.then_some(d.position),
                    acked_above_floor: d.acked_above.iter().map(|&(a, b)| (b + 1).saturating_sub(a)).sum(),
                    lag,
                    state_len: d.state.len(),
                    committed_at: (d.committed_at != 0).then_some(d.committed_at),
                    open,
                    name,
                }
            })
            .collect())
    }
}
