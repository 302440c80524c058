//! Durable subscribers: a named position on a channel, committed together
//! with the subscriber's own state in one atomic step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::ChannelCore;
use crate::error::{Error, Result};
use crate::format::catalog::validate_name;
use crate::format::sublog::{Position, SubKind};
use crate::log::Messages;
use crate::message::Message;
use crate::subscriptions::{InUse, SubKey, Subscriptions};

mod recv_async;

pub use recv_async::{Recv, SubscriberStream};

/// Where a subscriber starts the first time it is created. Afterwards it
/// always resumes after its committed position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first retained message.
    First,
    /// The last message (it is delivered), or the next one if the channel
    /// is empty.
    Last,
    /// Only messages published after the subscriber is created.
    New,
    /// This sequence number (the first retained one if it is older); at most
    /// `last_seq() + 1`.
    Seq(u64),
    /// The first message with a timestamp at or after this many
    /// nanoseconds since the Unix epoch.
    Time(u64),
    /// The first message at most this long ago.
    Ago(Duration),
}

/// Resolves a start position to the first seq to deliver.
pub(crate) fn start_seq(core: &ChannelCore, start: StartAt) -> Result<u64> {
    let first = core.log.first_seq();
    let last = core.log.last_seq();
    let by_time = |ts: u64| -> Result<u64> { Ok(core.log.seq_at_or_after(ts)?.unwrap_or(last + 1)) };
    Ok(match start {
        StartAt::First => first,
        StartAt::Last => last.max(first),
        StartAt::New => last + 1,
        StartAt::Seq(s) if s > last + 1 => return Err(core.log.out_of_range(s)),
        StartAt::Seq(s) => s.max(first),
        StartAt::Time(ts) => by_time(ts)?,
        StartAt::Ago(d) => by_time(
            core.log
                .env()
                .opts
                .now_ns()
                .saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )?,
    })
}

/// Spins this many times looking for a message before blocking: a message
/// published within a few microseconds is received without a futex wake-up.
pub(crate) const SPIN_BEFORE_BLOCKING: u32 = 2_000;

struct SubState {
    /// Next seq to deliver.
    next: u64,
    committed: u64,
    state: Arc<[u8]>,
    /// Messages skipped because retention or repair removed them.
    missed: u64,
    cursor: Option<Messages>,
}

/// A durable subscriber. Delivery resumes after the committed position when
/// the subscriber is opened again, after a restart or a crash.
///
/// Only one handle per durable subscriber is open at a time. Methods take
/// `&self`; the handle can be shared between threads.
///
/// Receive with [`recv`](Self::recv) (blocking), [`try_recv`](Self::try_recv),
/// [`recv_timeout`](Self::recv_timeout), [`iter`](Self::iter), or from async
/// code with [`recv_async`](Self::recv_async) and [`stream`](Self::stream).
/// [`commit`](Self::commit) stores the position together with your state:
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use spool::{Options, StartAt, Store};
/// let store = Store::open(dir.path(), Options::default())?;
/// let clicks = store.channel("clicks")?;
/// clicks.publish_batch(&[b"home".as_slice(), b"cart", b"home"])?;
///
/// let counter = clicks.subscribe("home-counter", StartAt::First)?;
/// let mut homes = 0u64;
/// while let Some(msg) = counter.try_recv()? {
///     homes += u64::from(msg.payload() == b"home");
///     counter.commit(msg.seq(), &homes.to_le_bytes())?; // position + state, atomically
/// }
/// counter.close();
///
/// // Later (or after a crash): the same name resumes with the same pair.
/// let counter = clicks.subscribe("home-counter", StartAt::First)?;
/// let (position, state) = counter.committed();
/// assert_eq!((position, &state[..]), (3, &2u64.to_le_bytes()[..]));
/// assert!(counter.try_recv()?.is_none(), "nothing after the committed position");
/// # Ok::<(), spool::Error>(())
/// ```
pub struct Subscriber {
    core: Arc<ChannelCore>,
    name: String,
    st: Mutex<SubState>,
    _attached: InUse,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Its receives count as activity for `max_inactivity` (stamped here,
        // before the handle stops keeping the channel alive).
        self.core.touch();
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.st.lock();
        f.debug_struct("Subscriber")
            .field("channel", &self.core.name())
            .field("name", &self.name)
            .field("committed", &st.committed)
            .field("next", &st.next)
            .finish()
    }
}

/// Checks `max_subscribers` and validates the name before a subscriber is
/// created.
pub(crate) fn check_new(core: &ChannelCore, name: &str) -> Result<()> {
    validate_name(name)?;
    let Some(max) = core.limits().max_subscribers else {
        return Ok(());
    };
    if core.subs.count_for(core.id()) >= max {
        return Err(Error::TooManySubscribers {
            channel: core.name().to_string(),
            max,
        });
    }
    Ok(())
}

impl Subscriber {
    pub(crate) fn open(core: Arc<ChannelCore>, name: &str, start: StartAt) -> Result<Subscriber> {
        validate_name(name)?;
        core.log.check_live()?;
        let key: SubKey = (core.id(), name.to_string());
        let attached = core.subs.attach(key.clone(), core.name())?;
        let (position, state) = match core.subs.get(&key) {
            Some(d) if d.kind == SubKind::Plain => (d.position, d.state),
            Some(_) => {
                return Err(Error::SubscriberKind {
                    name: name.to_string(),
                    expected: "a plain subscriber",
                })
            }
            None => {
                check_new(&core, name)?;
                let position = start_seq(&core, start)? - 1;
                core.durable_before_commit(position)?;
                let state: Arc<[u8]> = Arc::from(&[][..]);
                core.subs.commit(
                    vec![Position {
                        channel_id: core.id(),
                        name: name.to_string(),
                        kind: SubKind::Plain,
                        position,
                        acked_above: Vec::new(),
                        meta: Default::default(),
                    }],
                    Arc::clone(&state),
                )?;
                (position, state)
            }
        };
        Ok(Subscriber {
            name: name.to_string(),
            st: Mutex::new(SubState {
                next: position + 1,
                committed: position,
                state,
                missed: 0,
                cursor: None,
            }),
            core,
            _attached: attached,
        })
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The committed position and the state committed with it.
    pub fn committed(&self) -> (u64, Arc<[u8]>) {
        let st = self.st.lock();
        (st.committed, Arc::clone(&st.state))
    }

    /// The next sequence number `recv` looks for.
    pub fn next_seq(&self) -> u64 {
        self.st.lock().next
    }

    /// How many messages this handle skipped because they were no longer
    /// there (removed by retention, or lost to damage and repaired).
    pub fn missed(&self) -> u64 {
        self.st.lock().missed
    }

    fn live(&self) -> Result<MutexGuard<'_, SubState>> {
        self.core.log.check_live()?;
        Ok(self.st.lock())
    }

    /// The next message if one is there, without blocking.
    pub fn try_recv(&self) -> Result<Option<Message>> {
        let mut st = self.live()?;
        self.next_message(&mut st)
    }

    fn next_message(&self, st: &mut SubState) -> Result<Option<Message>> {
        loop {
            let first = self.core.log.first_seq();
            if st.next < first {
                st.missed += first - st.next;
                st.next = first;
                st.cursor = None;
            }
            let positioned = st.cursor.as_ref().is_some_and(|c| c.next_seq() == st.next);
            if !positioned {
                st.cursor = Some(Messages::new(Arc::clone(&self.core.log), st.next));
            }
            let Some(cursor) = st.cursor.as_mut() else {
                return Ok(None);
            };
            match cursor.next() {
                None => return Ok(None),
                Some(Ok(m)) => {
                    // The cursor skips what retention removed meanwhile.
                    st.missed += m.seq().saturating_sub(st.next);
                    st.next = m.seq() + 1;
                    // No activity stamp here: an open subscriber keeps its
                    // channel alive anyway, and dropping it stamps (a clock
                    // read per message cost ~10% of a receive).
                    return Ok(Some(m));
                }
                Some(Err(Error::Lost { last_lost, .. })) => {
                    st.missed += last_lost + 1 - st.next;
                    st.next = last_lost + 1;
                }
                // Retention moved the first seq under the cursor: go round.
                Some(Err(Error::OutOfRange { requested, first, .. })) if requested < first => st.cursor = None,
                Some(Err(e)) => {
                    st.cursor = None;
                    return Err(e);
                }
            }
        }
    }

    /// Waits for the next message for at most `timeout`; `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Message>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Waits for the next message. A blocked receiver is woken by a publish
    /// and costs no CPU while it waits.
    pub fn recv(&self) -> Result<Message> {
        loop {
            if let Some(m) = self.recv_until(None)? {
                return Ok(m);
            }
        }
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        loop {
            let next = {
                let mut st = self.live()?;
                if let Some(m) = self.next_message(&mut st)? {
                    return Ok(Some(m));
                }
                st.next
            };
            if !wait_for_seq(&self.core, next, deadline) {
                return Ok(None);
            }
        }
    }

    /// A blocking iterator over messages: each item is a [`recv`](Self::recv).
    ///
    /// It yields an error once and then ends, so a `for` loop stops when the
    /// store is closed (`Closed`) or the channel deleted (`ChannelDeleted`)
    /// instead of spinning on the error. The subscriber itself stays usable:
    /// calling `iter` again goes on from the same position.
    pub fn iter(&self) -> impl Iterator<Item = Result<Message>> + '_ {
        let mut ended = false;
        std::iter::from_fn(move || {
            if ended {
                return None;
            }
            let next = self.recv();
            ended = next.is_err();
            Some(next)
        })
    }

    /// Commits `seq` as processed together with `state`, atomically: after
    /// any crash the subscriber comes back with exactly this pair or an
    /// earlier committed one, never a mix.
    ///
    /// Durability: the commit is durable when this returns under
    /// `SyncPolicy::Always` (the channel is synced through `seq` first),
    /// within the interval under `Interval`, at the next `Store::sync`
    /// under `Never`. A committed position never points past the durable
    /// log: every sync of the subscribers log (`Store::sync`, the flusher,
    /// close) syncs the channels first.
    ///
    /// Errors: `CommitBeyondEnd` past the last message, `CommitBehind` below
    /// the committed position, `StateTooLarge` past `Options::max_state`.
    pub fn commit(&self, seq: u64, state: &[u8]) -> Result<()> {
        let mut st = self.live()?;
        let entry = self.check_commit(&st, seq, state.len())?;
        self.core.durable_before_commit(seq)?;
        let state: Arc<[u8]> = Arc::from(state);
        self.core.subs.commit(vec![entry], Arc::clone(&state))?;
        // No activity stamp: the open handle keeps the channel alive, and
        // dropping it stamps (a clock read per commit cost ~5 % of it).
        Self::committed_now(&mut st, seq, state);
        Ok(())
    }

    fn check_commit(&self, st: &SubState, seq: u64, state_len: usize) -> Result<Position> {
        let max = self.core.log.env().opts.get_max_state();
        if state_len > max {
            return Err(Error::StateTooLarge { len: state_len, max });
        }
        let last = self.core.log.last_seq();
        if seq > last {
            return Err(Error::CommitBeyondEnd { requested: seq, last });
        }
        if seq < st.committed {
            return Err(Error::CommitBehind {
                requested: seq,
                committed: st.committed,
            });
        }
        Ok(Position {
            channel_id: self.core.id(),
            name: self.name.clone(),
            kind: SubKind::Plain,
            position: seq,
            acked_above: Vec::new(),
            meta: Default::default(),
        })
    }

    fn committed_now(st: &mut SubState, seq: u64, state: Arc<[u8]>) {
        st.committed = seq;
        st.state = state;
        if st.next <= seq {
            st.next = seq + 1;
        }
    }

    /// Closes this handle (as dropping it does); the durable position and
    /// state stay. Taking `self` makes using a closed subscriber a compile
    /// error rather than a runtime one.
    pub fn close(self) {}

    /// Deletes the durable subscriber: its position and state are gone, and
    /// subscribing with the same name starts afresh.
    pub fn unsubscribe(self) -> Result<()> {
        let _st = self.live()?;
        self.core.subs.remove(&(self.core.id(), self.name.clone()))
    }
}

/// Blocks until the channel holds `seq` (after a short spin), a wake-up or
/// the deadline; false on timeout.
pub(crate) fn wait_for_seq(core: &ChannelCore, seq: u64, deadline: Option<Instant>) -> bool {
    wait_for_seq_or(core, seq, || false, deadline)
}

/// As [`wait_for_seq`], also returning when `changed()` holds (a state
/// change other than a publish that a wake-up announces, such as an ack).
pub(crate) fn wait_for_seq_or(
    core: &ChannelCore,
    seq: u64,
    changed: impl Fn() -> bool,
    deadline: Option<Instant>,
) -> bool {
    let log = &core.log;
    let ready = || log.last_seq() >= seq || log.check_live().is_err() || changed();
    for _ in 0..SPIN_BEFORE_BLOCKING {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    log.arrivals.wait_until(ready, deadline)
}

/// Commits several subscribers (on one or several channels of the store
/// whose registry is `registry`) and one state blob in one atomic step; see
/// [`Store::commit_all`](crate::Store::commit_all).
pub(crate) fn commit_all(registry: &Arc<Subscriptions>, subs: &[(&Subscriber, u64)], state: &[u8]) -> Result<()> {
    if subs.is_empty() {
        return Ok(());
    }
    // Lock in a fixed order so concurrent commit_all calls cannot deadlock.
    let mut order: Vec<usize> = (0..subs.len()).collect();
    order.sort_by_key(|&i| (subs[i].0.core.id(), subs[i].0.name.as_str()));
    if order.windows(2).any(|w| std::ptr::eq(subs[w[0]].0, subs[w[1]].0)) {
        return Err(Error::invalid_option("commit_all", "a subscriber appears twice"));
    }
    let mut guards = Vec::with_capacity(subs.len());
    for &i in &order {
        let (sub, _) = subs[i];
        if !Arc::ptr_eq(&sub.core.subs, registry) {
            return Err(Error::invalid_option(
                "commit_all",
                "a subscriber belongs to another store",
            ));
        }
        guards.push((i, sub.live()?));
    }
    let mut entries = Vec::with_capacity(subs.len());
    for (i, st) in &guards {
        let (sub, seq) = subs[*i];
        entries.push(sub.check_commit(st, seq, state.len())?);
    }
    for (i, _) in &guards {
        let (sub, seq) = subs[*i];
        sub.core.durable_before_commit(seq)?;
    }
    let state: Arc<[u8]> = Arc::from(state);
    registry.commit(entries, Arc::clone(&state))?;
    for (i, st) in &mut guards {
        Subscriber::committed_now(st, subs[*i].1, Arc::clone(&state));
    }
    Ok(())
}
