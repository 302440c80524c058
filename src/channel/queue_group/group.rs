//! The shared state of one queue group while a member is open: one lock
//! over its `GroupState`, and the I/O around it (records of the group in
//! the subscribers log, dead letters, recovery).
//!
//! Records: the group writes its whole state (floor, acked ranges,
//! delivery state) as one commit entry
//! - before handing out a message the last record does not cover (a first
//!   delivery past the lease, a redelivery past its claimed count): so
//!   delivery counts survive a crash, as upper bounds;
//! - for acks, terms and dead letters: under `SyncPolicy::Always` at once,
//!   group-committed (every ack waiting meanwhile rides on one record and
//!   one sync); otherwise at the next sync of the store (the flusher's,
//!   `Store::sync`, close), so an ack costs no write.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;

use super::dead_letter::{letter_of, wrap};
use super::options::{Delivery, QueueOptions};
use super::state::{Back, GroupState, InFlight, Left, LEASE};
use crate::channel::subscriber::{check_new, start_seq, StartAt};
use crate::channel::ChannelCore;
use crate::error::{Error, Result};
use crate::format::sublog::{Position, SubKind};
use crate::group_commit::GroupCommit;
use crate::options::SyncPolicy;
use crate::subscriptions::{InUse, Pending, SubKey};

pub(crate) struct Group {
    pub(super) core: Arc<ChannelCore>,
    pub(super) name: String,
    pub(super) opts: QueueOptions,
    pub(super) st: Mutex<GroupState>,
    /// Bumped (under `st`) when an ack, a nak or a member's departure may
    /// give a waiting member work without a publish; a waiter compares it
    /// before and after it makes itself visible, so that such a wake-up is
    /// never lost.
    pub(super) changes: AtomicU64,
    /// Group commit of acks under `SyncPolicy::Always`; tickets are
    /// `GroupState::version`s.
    acks: GroupCommit,
    _attached: InUse,
}

/// Queue groups of a channel: the live ones, so members opened separately
/// share one, and what a group left behind when its last member went, for
/// the next instance.
#[derive(Default)]
pub(crate) struct GroupTable {
    pub(super) live: Mutex<HashMap<String, Weak<Group>>>,
    left: Mutex<HashMap<String, Left>>,
}

impl GroupTable {
    /// Forgets what a removed group left behind.
    pub(crate) fn forget(&self, name: &str) {
        self.left.lock().remove(name);
    }
}

impl Group {
    /// Opens the group (creating it at `start`) and registers it for the
    /// syncs of the subscribers log.
    pub(super) fn open(core: Arc<ChannelCore>, name: &str, start: StartAt, opts: QueueOptions) -> Result<Arc<Group>> {
        let key: SubKey = (core.id(), name.to_string());
        let attached = core.subs.attach(key.clone(), core.name())?;
        let left = core.groups.left.lock().remove(name);
        let mut st = match core.subs.get(&key) {
            Some(d) if d.kind == SubKind::Queue => {
                GroupState::recover(d.position, &d.acked_above, &d.meta, left, opts.max_deliveries)
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
                let mut st = GroupState::recover(floor, &[], &Default::default(), None, opts.max_deliveries);
                // Letters already in the dead-letter channel are not ours.
                st.dlq_mark = opts.dead_letter.as_ref().map_or(0, |d| d.last_seq());
                st.version = 1;
                st
            }
        };
        let group = Arc::new(Group {
            st: Mutex::new(GroupState {
                next_member: 0,
                ..GroupState::recover(0, &[], &Default::default(), None, None)
            }),
            name: name.to_string(),
            opts,
            changes: AtomicU64::new(0),
            acks: GroupCommit::new(0),
            core,
            _attached: attached,
        });
        group.find_letters(&mut st)?;
        if st.version > st.written {
            // A new group, or letters found: recorded before any delivery.
            let through = st.leased_through;
            group.write_record(&mut st, through, None)?;
        }
        *group.st.lock() = st;
        let pending: Weak<dyn Pending> = Arc::downgrade(&(Arc::clone(&group) as Arc<dyn Pending>));
        group.core.subs.register_pending(pending);
        Ok(group)
    }

    /// Acks the messages whose dead letters are in the dead-letter channel
    /// past the group's mark (published before a crash that took the
    /// record acking them).
    fn find_letters(&self, st: &mut GroupState) -> Result<()> {
        let Some(dlq) = &self.opts.dead_letter else {
            return Ok(());
        };
        let from = if st.dlq_mark > dlq.last_seq() {
            1
        } else {
            st.dlq_mark + 1
        };
        for m in dlq.read_from(from.max(dlq.first_seq()))? {
            let m = m?;
            if let Some(seq) = letter_of(m.payload(), self.core.id(), &self.name) {
                if !st.is_acked(seq) {
                    st.redeliver.remove(&seq);
                    st.doomed.remove(&seq);
                    st.in_flight.remove(&seq);
                    st.dead_lettered += 1;
                    st.mark_acked(seq);
                }
            }
        }
        st.dlq_mark = dlq.last_seq();
        st.dlq_unsure = false;
        Ok(())
    }

    /// Writes the group's whole state as one record (not synced): first
    /// deliveries claimed through `through`, `extra` a count about to be
    /// handed out. The channel is made durable through what the record
    /// points at first under `Always`.
    pub(super) fn write_record(&self, st: &mut GroupState, through: u64, extra: Option<(u64, u32)>) -> Result<()> {
        self.write_meta(st, through, extra, false)
    }

    /// Writes an exact record if the last one claims more than happened
    /// or misses changes.
    fn write_pending_exact(&self, st: &mut GroupState) -> Result<()> {
        let through = st.next_new.saturating_sub(1);
        let meta = st.meta(through, None, 0, true);
        let loose = st.leased_through > through
            || st.leased.len() != meta.counts.len()
            || meta.counts.iter().any(|(s, c)| st.leased.get(s) != Some(c));
        if loose || st.version > st.written {
            self.write_exact(st)?;
        }
        Ok(())
    }

    /// The same claiming exactly what happened: no delivery lease.
    fn write_exact(&self, st: &mut GroupState) -> Result<()> {
        let through = st.next_new.saturating_sub(1);
        self.write_meta(st, through, None, true)
    }

    fn write_meta(&self, st: &mut GroupState, through: u64, extra: Option<(u64, u32)>, exact: bool) -> Result<()> {
        let dlq_mark = match &self.opts.dead_letter {
            Some(d) if !st.dlq_unsure => d.last_seq(),
            _ => st.dlq_mark,
        };
        let meta = st.meta(through, extra, dlq_mark, exact);
        let entry = Position {
            channel_id: self.core.id(),
            name: self.name.clone(),
            kind: SubKind::Queue,
            position: st.floor,
            acked_above: st.ranges(),
            meta,
        };
        let top = entry
            .acked_above
            .last()
            .map_or(entry.position, |r| r.1)
            .max(entry.meta.top());
        self.core.durable_before_commit(top.min(self.core.log.last_seq()))?;
        let leased: HashMap<u64, u32> = entry.meta.counts.iter().copied().collect();
        let recno = self.core.subs.write_commit(vec![entry])?;
        st.written = st.version;
        st.written_recno = recno;
        st.leased_through = through;
        st.leased = leased;
        st.dlq_mark = dlq_mark;
        Ok(())
    }

    /// Hands out one message to `member` if it has room and one is
    /// available; else says what to wait for. The message is read outside
    /// the group's lock (members only contend for the bookkeeping).
    pub(super) fn take(&self, member: u64, now: Instant) -> Result<(Option<Delivery>, Wait)> {
        loop {
            let (picked, wait) = self.pick(member, now)?;
            let Some(Picked { seq, count, back }) = picked else {
                return Ok((None, wait));
            };
            let err = match self.core.log.get(seq) {
                Ok(message) => return Ok((Some(Delivery { message, count }), wait)),
                Err(e) => e,
            };
            let gone = matches!(err, Error::Lost { .. } | Error::OutOfRange { .. });
            let mut st = self.st.lock();
            // Undone unless it expired and went elsewhere meanwhile.
            if st.holds(member, seq) && st.in_flight.get(&seq).is_some_and(|f| f.count == count) {
                st.in_flight.remove(&seq);
                st.release(member);
                if gone {
                    // Gone (retention, or lost to damage): nothing to process.
                    st.mark_acked(seq);
                } else {
                    put_back(&mut st, seq, back);
                }
            }
            if !gone {
                return Err(err);
            }
        }
    }

    /// The bookkeeping of `take`, under the lock: the seq to hand out (in
    /// flight to `member` from now), its delivery count and what to put
    /// back if it cannot be read.
    fn pick(&self, member: u64, now: Instant) -> Result<(Option<Picked>, Wait)> {
        let core = &self.core;
        let max = self.opts.max_deliveries;
        let mut st = self.st.lock();
        // Retention removed what the group had not reached: skip it at
        // once (the new floor is recorded with the next record).
        st.skip_below(core.log.first_seq());
        loop {
            let expiry = st.expire(now, max);
            self.settle(&mut st)?;
            let wait = Wait {
                expiry,
                next_new: st.next_new,
                changes: self.changes.load(std::sync::atomic::Ordering::Relaxed),
            };
            if st.load.get(&member).copied().unwrap_or(0) >= self.opts.max_in_flight {
                return Ok((
                    None,
                    Wait {
                        next_new: u64::MAX,
                        ..wait
                    },
                ));
            }
            let (seq, back) = if let Some((seq, back)) = st.redeliver.pop_first() {
                (seq, Some(back))
            } else if st.next_new <= core.log.last_seq() {
                let seq = st.next_new;
                st.next_new += 1;
                (seq, None)
            } else {
                return Ok((None, wait));
            };
            if st.is_acked(seq) {
                continue;
            }
            let count = back.map_or(0, |b| b.count) + 1;
            if st.needs_lease(seq, count) {
                let through = if count == 1 {
                    st.leased_through
                        .max((seq + LEASE - 1).min(core.log.last_seq()))
                        .max(seq)
                } else {
                    st.leased_through
                };
                if let Err(e) = self.write_record(&mut st, through, Some((seq, count))) {
                    put_back(&mut st, seq, back);
                    return Err(e);
                }
            }
            // No `core.touch()`: a channel with a member open is never
            // inactive, and the clock read costs a tenth of a delivery.
            let deadline = now + self.opts.ack_wait;
            st.in_flight.insert(
                seq,
                InFlight {
                    member,
                    deadline,
                    count,
                },
            );
            st.deadline_set(deadline);
            *st.load.entry(member).or_insert(0) += 1;
            return Ok((Some(Picked { seq, count, back }), wait));
        }
    }

    /// Gives up the messages that reached `max_deliveries`: each is
    /// published to the dead-letter channel (if there is one) and acked,
    /// under the group's lock. One that cannot be published stays to be
    /// tried again, and the error is returned.
    pub(super) fn settle(&self, st: &mut GroupState) -> Result<()> {
        if st.dlq_unsure && !st.doomed.is_empty() {
            // A letter whose publish failed may be there: never twice.
            self.find_letters(st)?;
        }
        while let Some((seq, back)) = st.doomed.pop_first() {
            if st.is_acked(seq) {
                continue;
            }
            if let Some(dlq) = &self.opts.dead_letter {
                let published = match self.core.log.get(seq) {
                    Ok(m) => {
                        let letter = wrap(
                            self.core.id(),
                            self.core.name(),
                            &self.name,
                            seq,
                            back.count,
                            back.reason,
                            m.payload(),
                        );
                        dlq.publish(&letter).map(|_| ())
                    }
                    // Gone: nothing to give up.
                    Err(Error::Lost { .. }) | Err(Error::OutOfRange { .. }) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = published {
                    st.doomed.insert(seq, back);
                    // Records keep naming the last written mark (from
                    // before this publish) until the channel is read again.
                    st.dlq_unsure = true;
                    return Err(e);
                }
            }
            st.dead_lettered += 1;
            st.mark_acked(seq);
            self.changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// After acks (or terms, dead letters) changed the state to
    /// `version`: under `SyncPolicy::Always` returns once a durable record
    /// carries it (one record and one sync for every ack that waits
    /// meanwhile); otherwise at once (the next sync writes the record).
    pub(super) fn commit(&self, version: u64) -> Result<()> {
        if self.core.log.env().opts.get_sync_policy() != SyncPolicy::Always {
            return Ok(());
        }
        self.acks.sync_through(version, || {
            let (written, recno) = {
                let mut st = self.st.lock();
                if st.version > st.written {
                    let through = st.leased_through;
                    self.write_record(&mut st, through, None)?;
                }
                (st.written, st.written_recno)
            };
            self.core.subs.sync_record(recno)?;
            Ok(written)
        })
    }
}

/// A message `pick` chose: in flight from now, read after the lock.
struct Picked {
    seq: u64,
    count: u32,
    /// What to put back if it cannot be read.
    back: Option<Back>,
}

/// Undoes taking `seq` for a delivery that did not happen.
fn put_back(st: &mut GroupState, seq: u64, back: Option<Back>) {
    match back {
        Some(b) => {
            st.redeliver.insert(seq, b);
        }
        None => st.next_new = st.next_new.min(seq),
    }
}

impl Pending for Group {
    fn write_pending(&self, exact: bool) -> Result<()> {
        let mut st = self.st.lock();
        if exact {
            self.write_pending_exact(&mut st)?;
        } else if st.version > st.written {
            let through = st.leased_through;
            self.write_record(&mut st, through, None)?;
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        let st = self.st.lock();
        st.version > st.written
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // What it holds in memory goes into the log (a failed or closed
        // store has had its last sync: nothing more can be recorded).
        let mut st = std::mem::replace(
            &mut *self.st.lock(),
            GroupState::recover(0, &[], &Default::default(), None, None),
        );
        if self.core.log.env().check_writable().is_ok() {
            // Exact: a later instance reads it after a restart.
            let _ = self.write_pending_exact(&mut st);
        }
        let left = st.left();
        self.core.groups.left.lock().insert(self.name.clone(), left);
    }
}

pub(super) struct Wait {
    /// Earliest ack deadline of a message in flight (or a bound below it).
    pub expiry: Option<Instant>,
    /// The seq whose publication would give this member work.
    pub next_new: u64,
    /// `Group::changes` when the member looked.
    pub changes: u64,
}
