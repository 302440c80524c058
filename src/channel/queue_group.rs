//! Queue groups: several members share one durable position; each message
//! goes to one member and must be acked; unacked messages come back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::subscriber::{check_new, start_seq, wait_for_seq_or, StartAt};
use super::ChannelCore;
use crate::error::{Error, Result};
use crate::format::sublog::{Position, SubKind};
use crate::message::Message;
use crate::subscriptions::{InUse, SubKey};

mod recv_async;

pub use recv_async::{DeliveryStream, RecvDelivery};

/// Per-group settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long a delivered message may stay unacked before it is handed
    /// out again (1 ms ..= 24 h; default 30 s).
    pub ack_wait: Duration,
    /// Most unacked messages one member holds at a time (at least 1;
    /// default 64).
    pub max_in_flight: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            ack_wait: Duration::from_secs(30),
            max_in_flight: 64,
        }
    }
}

impl QueueOptions {
    fn validate(&self) -> Result<()> {
        if self.ack_wait < Duration::from_millis(1) || self.ack_wait > Duration::from_secs(24 * 3600) {
            return Err(Error::invalid_option(
                "ack_wait",
                format!("{:?} is outside 1 ms ..= 24 h", self.ack_wait),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(Error::invalid_option("max_in_flight", "must be at least 1"));
        }
        Ok(())
    }
}

/// A message handed to a queue member, with how often it was delivered.
#[derive(Clone, Debug)]
pub struct Delivery {
    message: Message,
    count: u32,
}

impl Delivery {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// 1 on first delivery, more when it is redelivered.
    pub fn delivery_count(&self) -> u32 {
        self.count
    }

    /// Whether an earlier delivery was not acked in time (or its member
    /// went away).
    pub fn redelivered(&self) -> bool {
        self.count > 1
    }
}

impl Deref for Delivery {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

struct InFlight {
    member: u64,
    deadline: Instant,
    count: u32,
}

struct GroupState {
    /// Every seq at or below is acked.
    floor: u64,
    /// Acked seqs above the floor.
    acked: BTreeSet<u64>,
    /// Next seq never handed out.
    next_new: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Seqs to hand out again, with their delivery count so far.
    redeliver: BTreeMap<u64, u32>,
    /// Delivery counts of unacked seqs at or after `next_new` that an earlier
    /// instance of this group (in this process) handed out.
    prior: BTreeMap<u64, u32>,
    load: HashMap<u64, usize>,
    next_member: u64,
}

impl GroupState {
    /// Moves expired deliveries back to the redelivery queue; returns the
    /// earliest deadline still pending.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(f) = self.in_flight.remove(&seq) {
                self.release(f.member);
                self.redeliver.insert(seq, f.count);
            }
        }
        self.in_flight.values().map(|f| f.deadline).min()
    }

    fn release(&mut self, member: u64) {
        if let Some(n) = self.load.get_mut(&member) {
            *n = n.saturating_sub(1);
        }
    }

    fn mark_acked(&mut self, seq: u64) {
        if seq > self.floor {
            self.acked.insert(seq);
        }
        while self.acked.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
    }

    /// Acked seqs above the floor as inclusive ranges.
    fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &s in &self.acked {
            match out.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = s,
                _ => out.push((s, s)),
            }
        }
        out
    }
}

/// The shared state of one queue group, in memory while a member is open.
pub(crate) struct Group {
    core: Arc<ChannelCore>,
    name: String,
    opts: QueueOptions,
    st: Mutex<GroupState>,
    /// Bumped (under `st`) when an ack or a member's departure may give a
    /// waiting member work without a publish; a waiter compares it before
    /// and after it makes itself visible, so that such a wake-up is never
    /// lost.
    changes: AtomicU64,
    _attached: InUse,
}

/// Queue groups of a channel: the live ones, so members opened separately
/// share one, and the delivery counts a group left behind when its last
/// member went, for the next instance.
#[derive(Default)]
pub(crate) struct GroupTable {
    live: Mutex<HashMap<String, Weak<Group>>>,
    left: Mutex<HashMap<String, BTreeMap<u64, u32>>>,
}

impl GroupTable {
    /// Forgets what a removed group left behind.
    pub(crate) fn forget(&self, name: &str) {
        self.left.lock().remove(name);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        let mut counts: BTreeMap<u64, u32> = std::mem::take(&mut st.redeliver);
        counts.extend(st.in_flight.iter().map(|(seq, f)| (*seq, f.count)));
        counts.append(&mut st.prior);
        if !counts.is_empty() {
            self.core.groups.left.lock().insert(self.name.clone(), counts);
        }
    }
}

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
        opts.validate()?;
        core.log.check_live()?;
        let group = {
            let mut table = core.groups.live.lock();
            match table.get(name).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    let g = Arc::new(Group::open(Arc::clone(&core), name, start, opts)?);
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

    /// The next message for this member, without blocking.
    pub fn try_recv(&self) -> Result<Option<Delivery>> {
        self.group.core.log.check_live()?;
        Ok(self.take(Instant::now())?.0)
    }

    /// Waits for the next message for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Delivery>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Waits for the next message (new, or redelivered after `ack_wait`).
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

    /// Hands out one message if this member has room and one is available.
    fn take(&self, now: Instant) -> Result<(Option<Delivery>, Wait)> {
        let core = &self.group.core;
        let mut st = self.group.st.lock();
        // Retention removed what the group had not reached: skip it at once
        // (the new floor is persisted with the next ack).
        let first = core.log.first_seq();
        if st.floor + 1 < first {
            st.floor = first - 1;
            let floor = st.floor;
            st.acked.retain(|s| *s > floor);
            st.redeliver.retain(|s, _| *s > floor);
        }
        st.next_new = st.next_new.max(first);
        loop {
            let expiry = st.expire(now);
            let wait = Wait {
                expiry,
                next_new: st.next_new,
                changes: self.group.changes.load(Ordering::Relaxed),
            };
            if st.load.get(&self.id).copied().unwrap_or(0) >= self.group.opts.max_in_flight {
                return Ok((
                    None,
                    Wait {
                        next_new: u64::MAX,
                        ..wait
                    },
                ));
            }
            let (seq, count) = if let Some((seq, count)) = st.redeliver.pop_first() {
                (seq, count)
            } else if st.next_new <= core.log.last_seq() {
                let seq = st.next_new;
                st.next_new += 1;
                let prior = st.prior.remove(&seq).unwrap_or(0);
                if st.acked.contains(&seq) {
                    continue;
                }
                (seq, prior)
            } else {
                return Ok((None, wait));
            };
            if seq <= st.floor {
                continue;
            }
            match core.log.get(seq) {
                Ok(message) => {
                    core.touch();
                    let count = count + 1;
                    st.in_flight.insert(
                        seq,
                        InFlight {
                            member: self.id,
                            deadline: now + self.group.opts.ack_wait,
                            count,
                        },
                    );
                    *st.load.entry(self.id).or_insert(0) += 1;
                    return Ok((Some(Delivery { message, count }), wait));
                }
                // Gone (retention, or lost to damage): nothing to process.
                Err(Error::Lost { .. }) | Err(Error::OutOfRange { .. }) => st.mark_acked(seq),
                Err(e) => {
                    st.redeliver.insert(seq, count);
                    return Err(e);
                }
            }
        }
    }

    /// Acknowledges `seq`, which must be in flight to this member. The new
    /// ack floor and acked set are committed durably (as for
    /// `Subscriber::commit`). `NotDelivered` otherwise.
    pub fn ack(&self, seq: u64) -> Result<()> {
        let core = &self.group.core;
        core.log.check_live()?;
        let mut st = self.group.st.lock();
        match st.in_flight.get(&seq) {
            Some(f) if f.member == self.id => {}
            _ => return Err(Error::NotDelivered { seq }),
        }
        core.durable_before_commit(seq)?;
        let mut after = GroupState {
            acked: st.acked.clone(),
            in_flight: BTreeMap::new(),
            redeliver: BTreeMap::new(),
            prior: BTreeMap::new(),
            load: HashMap::new(),
            ..*st
        };
        after.mark_acked(seq);
        let entry = Position {
            channel_id: core.id(),
            name: self.group.name.clone(),
            kind: SubKind::Queue,
            position: after.floor,
            acked_above: after.ranges(),
        };
        core.subs.commit(vec![entry], Arc::from(&[][..]))?;
        st.in_flight.remove(&seq);
        st.release(self.id);
        st.mark_acked(seq);
        self.group.changes.fetch_add(1, Ordering::Relaxed);
        drop(st);
        core.touch();
        core.log.arrivals.wake();
        Ok(())
    }
}

struct Wait {
    /// Earliest ack deadline of a message in flight.
    expiry: Option<Instant>,
    /// The seq whose publication would give this member work.
    next_new: u64,
    /// `Group::changes` when the member looked.
    changes: u64,
}

impl Drop for QueueMember {
    fn drop(&mut self) {
        let mut st = self.group.st.lock();
        let mine: Vec<u64> = st
            .in_flight
            .iter()
            .filter(|(_, f)| f.member == self.id)
            .map(|(s, _)| *s)
            .collect();
        for seq in mine {
            if let Some(f) = st.in_flight.remove(&seq) {
                st.redeliver.insert(seq, f.count);
            }
        }
        st.load.remove(&self.id);
        self.group.changes.fetch_add(1, Ordering::Relaxed);
        drop(st);
        self.group.core.log.arrivals.wake();
    }
}

impl Group {
    fn open(core: Arc<ChannelCore>, name: &str, start: StartAt, opts: QueueOptions) -> Result<Group> {
        let key: SubKey = (core.id(), name.to_string());
        let attached = core.subs.attach(key.clone(), core.name())?;
        let (floor, acked) = match core.subs.get(&key) {
            Some(d) if d.kind == SubKind::Queue => {
                let acked = d.acked_above.iter().flat_map(|&(a, b)| a..=b).collect();
                (d.position, acked)
            }
            Some(_) => {
                return Err(Error::SubscriberKind {
                    name: name.to_string(),
                    expected: "a queue group",
                })
            }
            None => {
                check_new(&core, name)?;
                let floor = start_seq(&core, start)? - 1;
                core.durable_before_commit(floor)?;
                core.subs.commit(
                    vec![Position {
                        channel_id: core.id(),
                        name: name.to_string(),
                        kind: SubKind::Queue,
                        position: floor,
                        acked_above: Vec::new(),
                    }],
                    Arc::from(&[][..]),
                )?;
                (floor, BTreeSet::new())
            }
        };
        let mut prior = core.groups.left.lock().remove(name).unwrap_or_default();
        prior.retain(|seq, _| *seq > floor);
        Ok(Group {
            st: Mutex::new(GroupState {
                floor,
                acked,
                next_new: floor + 1,
                in_flight: BTreeMap::new(),
                redeliver: BTreeMap::new(),
                prior,
                load: HashMap::new(),
                next_member: 0,
            }),
            name: name.to_string(),
            opts,
            changes: AtomicU64::new(0),
            core,
            _attached: attached,
        })
    }
}
