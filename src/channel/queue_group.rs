//! Queue groups: several members share one durable position; each message
//! goes to one member and must be acked; unacked messages come back (after
//! `ack_wait`, a nak, or their member leaving), up to `max_deliveries`,
//! after which they go to a dead-letter channel.
//!
//! Ordering: a group hands out messages in seq order, redeliveries first
//! (lowest seq first); see the README's queue-group section for what a
//! member and a restarted group can rely on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::subscriber::{wait_for_seq_or, StartAt};
use super::ChannelCore;
use crate::error::{Error, Result};

mod dead_letter;
mod group;
mod options;
mod recv_async;
mod state;

pub use dead_letter::{DeadLetter, DeadReason};
pub(crate) use group::GroupTable;
pub use options::{Delivery, QueueOptions};
pub use recv_async::{DeliveryStream, RecvDelivery};

use group::{Group, Wait};
use options::MAX_WAIT;
use state::{Back, InFlight, NO_MEMBER};

/// One member of a queue group. Dropping it hands its unacked messages to
/// the other members.
///
/// Members that join the same group name on a channel share one durable
/// position: each message goes to one member, which must
/// [`ack`](Self::ack) it; a message not acked within
/// [`QueueOptions::ack_wait`] goes to a member again (with a higher
/// [`delivery_count`](Delivery::delivery_count)). Receive with
/// [`recv`](Self::recv), [`try_recv`](Self::try_recv),
/// [`recv_timeout`](Self::recv_timeout), or from async code with
/// [`recv_async`](Self::recv_async) and [`stream`](Self::stream).
///
/// Durability of acks (and `term`, `ack_many`, `ack_through`): under
/// `SyncPolicy::Always` the call returns once the ack is durable (acks of
/// all members that arrive meanwhile share one record and one sync);
/// under `Never` and `Interval` an ack is recorded by the next sync of the
/// store (`Store::sync`, the interval flusher, close), so a crash before it
/// hands the message out again, marked redelivered.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use spool::{Options, StartAt, Store};
/// let store = Store::open(dir.path(), Options::default())?;
/// let jobs = store.channel("jobs")?;
/// let a = jobs.queue_subscribe("resizers", StartAt::First)?;
/// let b = jobs.queue_subscribe("resizers", StartAt::First)?; // same group
/// jobs.publish_batch(&[b"img-1".as_slice(), b"img-2"])?;
///
/// let first = a.try_recv()?.expect("a job");
/// let second = b.try_recv()?.expect("the other job");
/// assert_ne!(first.seq(), second.seq(), "each job goes to one member");
/// assert!(a.try_recv()?.is_none() && b.try_recv()?.is_none());
/// a.ack(first.seq())?;
/// b.ack(second.seq())?;
/// assert_eq!(a.ack_floor(), 2); // durable progress of the whole group
///
/// // Unacked jobs of a member that leaves go to the others at once.
/// jobs.publish(b"img-3")?;
/// let held = a.try_recv()?.expect("img-3");
/// drop(a);
/// let again = b.try_recv()?.expect("redelivered");
/// assert_eq!((again.seq(), again.delivery_count()), (held.seq(), 2));
/// b.ack(again.seq())?;
/// # Ok::<(), spool::Error>(())
/// ```
pub struct QueueMember {
    group: Arc<Group>,
    id: u64,
}

impl std::fmt::Debug for QueueMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMember")
            .field("group", &self.group.name)
            .field("member", &self.id)
            .finish()
    }
}

impl QueueMember {
    pub(crate) fn join(core: Arc<ChannelCore>, name: &str, start: StartAt, opts: QueueOptions) -> Result<QueueMember> {
        opts.validate(core.id())?;
        if let Some(dlq) = &opts.dead_letter {
            if !Arc::ptr_eq(&dlq.core.subs, &core.subs) {
                return Err(Error::invalid_option(
                    "dead_letter",
                    "the dead-letter channel must belong to the same store as the group",
                ));
            }
            dlq.core.log.check_live()?;
        }
        core.log.check_live()?;
        let group = {
            let mut table = core.groups.live.lock();
            match table.get(name).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    let g = Group::open(Arc::clone(&core), name, start, opts)?;
                    table.insert(name.to_string(), Arc::downgrade(&g));
                    g
                }
            }
        };
        let id = {
            let mut st = group.st.lock();
            let id = st.next_member;
            st.next_member += 1;
            st.load.insert(id, 0);
            id
        };
        Ok(QueueMember { group, id })
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// The group's ack floor: every seq at or below it is acked.
    pub fn ack_floor(&self) -> u64 {
        self.group.st.lock().floor
    }

    /// Messages of the group stopped with [`term`](Self::term) (since the
    /// group was created; survives restarts as acks do).
    pub fn terminated(&self) -> u64 {
        self.group.st.lock().terminated
    }

    /// Messages the group gave up after `max_deliveries` (published to the
    /// dead-letter channel, or dropped without one).
    pub fn dead_lettered(&self) -> u64 {
        self.group.st.lock().dead_lettered
    }

    /// The next message for this member, without blocking.
    pub fn try_recv(&self) -> Result<Option<Delivery>> {
        self.group.core.log.check_live()?;
        Ok(self.take(Instant::now())?.0)
    }

    /// Waits for the next message for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Delivery>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Waits for the next message (new, or handed out again after
    /// `ack_wait`, a nak, or its member leaving).
    pub fn recv(&self) -> Result<Delivery> {
        loop {
            if let Some(d) = self.recv_until(None)? {
                return Ok(d);
            }
        }
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<Delivery>> {
        loop {
            self.group.core.log.check_live()?;
            let (delivery, wait) = self.take(Instant::now())?;
            if delivery.is_some() {
                return Ok(delivery);
            }
            let until = match (deadline, wait.expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let changes = &self.group.changes;
            let changed = || changes.load(Ordering::Relaxed) != wait.changes;
            let woke = wait_for_seq_or(&self.group.core, wait.next_new, changed, until);
            if !woke && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    fn take(&self, now: Instant) -> Result<(Option<Delivery>, Wait)> {
        self.group.take(self.id, now)
    }

    /// Acknowledges `seq`, which must be in flight to this member
    /// (`NotDelivered` otherwise): it is never handed out again. Durability
    /// as described on [`QueueMember`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"resize 42")?;
    /// let job = worker.recv()?;
    /// worker.ack(job.seq())?;
    /// assert_eq!(worker.ack_floor(), 1);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn ack(&self, seq: u64) -> Result<()> {
        self.ack_many(&[seq])
    }

    /// Acknowledges every seq of `seqs` at once; all must be in flight to
    /// this member, else `NotDelivered` names the first that is not and
    /// none is acked. One record for all of them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// # let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish_batch(&[b"a", b"b", b"c"])?;
    /// let (a, b) = (worker.recv()?, worker.recv()?);
    /// worker.ack_many(&[a.seq(), b.seq()])?;
    /// assert_eq!(worker.ack_floor(), 2);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn ack_many(&self, seqs: &[u64]) -> Result<()> {
        self.settle_acks(|st, me| {
            if let Some(&bad) = seqs.iter().find(|&&s| !st.holds(me, s)) {
                return Err(Error::NotDelivered { seq: bad });
            }
            for &s in seqs {
                st.ack(me, s);
            }
            Ok(seqs.len())
        })
        .map(|_| ())
    }

    /// Acknowledges everything in flight to this member at or below `seq`
    /// (possibly nothing) and returns how many: the cheap way to ack a
    /// batch processed in order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish_batch(&[b"a", b"b", b"c"])?;
    /// let mut last = 0;
    /// while let Some(job) = worker.try_recv()? {
    ///     last = job.seq();
    /// }
    /// assert_eq!(worker.ack_through(last)?, 3);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn ack_through(&self, seq: u64) -> Result<usize> {
        self.settle_acks(|st, me| {
            let mine: Vec<u64> = st
                .in_flight
                .range(..=seq)
                .filter(|(_, f)| f.member == me)
                .map(|(s, _)| *s)
                .collect();
            for &s in &mine {
                st.ack(me, s);
            }
            Ok(mine.len())
        })
    }

    /// Stops delivering `seq` without processing it (a message the member
    /// can tell will never succeed): it is acked, and counted in
    /// [`terminated`](Self::terminated) rather than processed. Must be in
    /// flight to this member; durability as for [`ack`](Self::ack).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"malformed")?;
    /// let job = worker.recv()?;
    /// worker.term(job.seq())?;
    /// assert_eq!((worker.ack_floor(), worker.terminated()), (1, 1));
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn term(&self, seq: u64) -> Result<()> {
        self.settle_acks(|st, me| {
            if !st.holds(me, seq) {
                return Err(Error::NotDelivered { seq });
            }
            st.ack(me, seq);
            st.terminated += 1;
            Ok(1)
        })
        .map(|_| ())
    }

    /// Applies an ack-like change under the group's lock, wakes members
    /// waiting for room, then waits for its record as the policy says.
    fn settle_acks(&self, f: impl FnOnce(&mut state::GroupState, u64) -> Result<usize>) -> Result<usize> {
        let group = &self.group;
        group.core.log.check_live()?;
        // (No `touch`: a channel with a member open is never inactive.)
        let (n, version) = {
            let mut st = group.st.lock();
            let n = f(&mut st, self.id)?;
            if n > 0 {
                group.changes.fetch_add(1, Ordering::Relaxed);
            }
            (n, st.version)
        };
        if n == 0 {
            return Ok(0);
        }
        group.core.log.arrivals.wake();
        group.commit(version)?;
        Ok(n)
    }

    /// Hands `seq` (in flight to this member) back at once, to any member
    /// (the lowest seq due again goes first), or gives it up if it has had
    /// `max_deliveries`. `NotDelivered` if it is not in flight to this
    /// member. Wakes waiting members, async ones too. A nak writes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"flaky")?;
    /// let job = worker.recv()?;
    /// worker.nak(job.seq())?;
    /// let again = worker.recv()?;
    /// assert_eq!((again.seq(), again.delivery_count()), (1, 2));
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn nak(&self, seq: u64) -> Result<()> {
        self.give_back(seq, None)
    }

    /// As [`nak`](Self::nak), but the message is handed out again only
    /// after `delay` (at most 24 h; `InvalidOption` past it). A restart of
    /// the group ends the delay early.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"rate limited")?;
    /// let job = worker.recv()?;
    /// worker.nak_with_delay(job.seq(), Duration::from_millis(20))?;
    /// assert!(worker.try_recv()?.is_none(), "not before the delay");
    /// let again = worker.recv()?;
    /// assert_eq!(again.delivery_count(), 2);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn nak_with_delay(&self, seq: u64, delay: Duration) -> Result<()> {
        if delay > MAX_WAIT {
            return Err(Error::invalid_option(
                "nak_with_delay",
                format!("a delay of {delay:?} is longer than 24 h"),
            ));
        }
        self.give_back(seq, Some(delay))
    }

    fn give_back(&self, seq: u64, delay: Option<Duration>) -> Result<()> {
        let group = &self.group;
        group.core.log.check_live()?;
        let max = group.opts.max_deliveries;
        let result = {
            let mut st = group.st.lock();
            let Some(f) = st.in_flight.get(&seq).filter(|f| f.member == self.id) else {
                return Err(Error::NotDelivered { seq });
            };
            let count = f.count;
            st.in_flight.remove(&seq);
            st.release(self.id);
            let back = Back {
                count,
                reason: DeadReason::Nak,
            };
            match delay {
                Some(d) if !d.is_zero() && max.is_none_or(|m| count < m) => {
                    let deadline = Instant::now() + d;
                    st.in_flight.insert(
                        seq,
                        InFlight {
                            member: NO_MEMBER,
                            deadline,
                            count,
                        },
                    );
                    st.deadline_set(deadline);
                }
                _ => st.back(seq, back, max),
            }
            let settled = group.settle(&mut st);
            group.changes.fetch_add(1, Ordering::Relaxed);
            settled.map(|()| st.version)
        };
        group.core.log.arrivals.wake();
        let version = result?;
        // A dead letter's ack is durable as an ack is.
        group.commit(version)
    }

    /// Tells the group this member still works on `seq`: its `ack_wait`
    /// starts again from now. `NotDelivered` if it is not in flight to
    /// this member (its time may already have run out). Writes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// # let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"long job")?;
    /// let job = worker.recv()?;
    /// // ... part of the work ...
    /// worker.in_progress(job.seq())?;
    /// // ... the rest ...
    /// worker.ack(job.seq())?;
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn in_progress(&self, seq: u64) -> Result<()> {
        let group = &self.group;
        group.core.log.check_live()?;
        let mut st = group.st.lock();
        match st.in_flight.get_mut(&seq) {
            Some(f) if f.member == self.id => {
                f.deadline = Instant::now() + group.opts.ack_wait;
                drop(st);
                Ok(())
            }
            _ => Err(Error::NotDelivered { seq }),
        }
    }
}

impl Drop for QueueMember {
    fn drop(&mut self) {
        let max = self.group.opts.max_deliveries;
        let mut st = self.group.st.lock();
        let mine: Vec<u64> = st
            .in_flight
            .iter()
            .filter(|(_, f)| f.member == self.id)
            .map(|(s, _)| *s)
            .collect();
        for seq in mine {
            if let Some(f) = st.in_flight.remove(&seq) {
                let back = Back {
                    count: f.count,
                    reason: DeadReason::MemberLeft,
                };
                st.back(seq, back, max);
            }
        }
        st.load.remove(&self.id);
        // Inactivity counts from the last member's departure.
        self.group.core.touch();
        // Messages that reached max_deliveries are given up by the next
        // receive if this fails.
        let _ = self.group.settle(&mut st);
        self.group.changes.fetch_add(1, Ordering::Relaxed);
        drop(st);
        self.group.core.log.arrivals.wake();
    }
}
