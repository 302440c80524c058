//! The in-memory state of one queue group: what is acked, in flight, due
//! for redelivery or to be given up, and what the last record written for
//! it claimed. Pure bookkeeping: `Group` owns it behind its one lock and
//! does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use super::dead_letter::DeadReason;
use crate::format::sublog::QueueMeta;

/// The member id of a message nakked with a delay: in flight to nobody
/// until its deadline.
pub(super) const NO_MEMBER: u64 = u64::MAX;

/// Messages a first-delivery lease covers beyond the one handed out.
pub(super) const LEASE: u64 = 256;

pub(super) struct InFlight {
    pub member: u64,
    pub deadline: Instant,
    pub count: u32,
}

/// A message due to be handed out again: its deliveries so far and why
/// the last one ended.
#[derive(Clone, Copy)]
pub(super) struct Back {
    pub count: u32,
    pub reason: DeadReason,
}

/// What an earlier instance of the group in this process left: exact
/// delivery counts (the log's are upper bounds) and how far it got.
#[derive(Default)]
pub(crate) struct Left {
    pub next_new: u64,
    pub counts: BTreeMap<u64, Back>,
}

pub(super) struct GroupState {
    /// Every seq at or below is acked.
    pub floor: u64,
    /// Acked seqs above the floor.
    pub acked: BTreeSet<u64>,
    /// Next seq never handed out.
    pub next_new: u64,
    pub in_flight: BTreeMap<u64, InFlight>,
    /// Seqs to hand out again.
    pub redeliver: BTreeMap<u64, Back>,
    /// Seqs that reached `max_deliveries`: to be dead-lettered.
    pub doomed: BTreeMap<u64, Back>,
    pub load: HashMap<u64, usize>,
    pub next_member: u64,
    /// No deadline in `in_flight` is earlier (a lower bound: exact after
    /// each scan).
    pub next_deadline: Option<Instant>,
    pub terminated: u64,
    pub dead_lettered: u64,
    /// Bumped by every change a record must carry (acks, terms, dead
    /// letters); `written` is the one the last record carried.
    pub version: u64,
    pub written: u64,
    /// Number of the last record written.
    pub written_recno: u64,
    /// What the last record claimed: first deliveries through this seq,
    /// and these delivery counts.
    pub leased_through: u64,
    pub leased: HashMap<u64, u32>,
    /// The dead-letter channel's last seq the last record named.
    pub dlq_mark: u64,
    /// A dead letter's publish failed: it may be in the dead-letter
    /// channel or not, so records keep `dlq_mark` below it until the
    /// channel is read again.
    pub dlq_unsure: bool,
}

impl GroupState {
    /// The state a committed entry (floor, acked ranges, meta) gives, with
    /// what an earlier instance in this process left, if any; `max`: the
    /// group's `max_deliveries`.
    pub fn recover(
        floor: u64,
        acked_above: &[(u64, u64)],
        meta: &QueueMeta,
        left: Option<Left>,
        max: Option<u32>,
    ) -> Self {
        let acked: BTreeSet<u64> = acked_above.iter().flat_map(|&(a, b)| a..=b).collect();
        let mut st = GroupState {
            floor,
            acked,
            next_new: floor + 1,
            in_flight: BTreeMap::new(),
            redeliver: BTreeMap::new(),
            doomed: BTreeMap::new(),
            load: HashMap::new(),
            next_member: 0,
            next_deadline: None,
            terminated: meta.terminated,
            dead_lettered: meta.dead_lettered,
            version: 0,
            written: 0,
            written_recno: 0,
            leased_through: meta.delivered_through,
            leased: meta.counts.iter().copied().collect(),
            dlq_mark: meta.dlq_mark,
            dlq_unsure: false,
        };
        let restart = Back {
            count: 1,
            reason: DeadReason::AckWait,
        };
        match left {
            Some(left) => {
                st.next_new = left.next_new.max(floor + 1);
                for (seq, back) in left.counts {
                    st.back(seq, back, max);
                }
            }
            None => {
                // Everything the lease covers may have been handed out. The
                // counts may be one above the truth: a message is given up
                // here only when its true count reached the limit (so a
                // message that crashes its workers is given up after at
                // most one delivery more than the limit).
                let through = meta.delivered_through.max(meta.counts.last().map_or(0, |c| c.0));
                let counts: HashMap<u64, u32> = meta.counts.iter().copied().collect();
                let limit = max.map(|m| m.saturating_add(1));
                for seq in floor + 1..=through {
                    let count = counts.get(&seq).copied().unwrap_or(1);
                    st.back(seq, Back { count, ..restart }, limit);
                }
                st.next_new = st.next_new.max(through + 1);
            }
        }
        st
    }

    /// Queues `seq` for redelivery, or to be given up once it had `max`
    /// deliveries. Nothing if it is acked.
    pub fn back(&mut self, seq: u64, back: Back, max: Option<u32>) {
        if self.is_acked(seq) {
            return;
        }
        if max.is_some_and(|m| back.count >= m) {
            self.doomed.insert(seq, back);
        } else {
            self.redeliver.insert(seq, back);
        }
    }

    pub fn is_acked(&self, seq: u64) -> bool {
        seq <= self.floor || self.acked.contains(&seq)
    }

    /// Moves expired deliveries back (or to be given up); returns the
    /// earliest deadline still pending (or a bound below it).
    pub fn expire(&mut self, now: Instant, max: Option<u32>) -> Option<Instant> {
        if self.next_deadline.is_none_or(|d| d > now) {
            return self.next_deadline;
        }
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(f) = self.in_flight.remove(&seq) {
                self.release(f.member);
                let reason = if f.member == NO_MEMBER {
                    DeadReason::Nak
                } else {
                    DeadReason::AckWait
                };
                self.back(seq, Back { count: f.count, reason }, max);
            }
        }
        self.next_deadline = self.in_flight.values().map(|f| f.deadline).min();
        self.next_deadline
    }

    /// A deadline was set: the bound follows it.
    pub fn deadline_set(&mut self, at: Instant) {
        self.next_deadline = Some(self.next_deadline.map_or(at, |d| d.min(at)));
    }

    pub fn release(&mut self, member: u64) {
        if let Some(n) = self.load.get_mut(&member) {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether `seq` is in flight to `member`.
    pub fn holds(&self, member: u64, seq: u64) -> bool {
        self.in_flight.get(&seq).is_some_and(|f| f.member == member)
    }

    /// Acks `seq` (in flight to `member`, checked by the caller).
    pub fn ack(&mut self, member: u64, seq: u64) {
        if self.in_flight.remove(&seq).is_some() {
            self.release(member);
        }
        self.mark_acked(seq);
    }

    pub fn mark_acked(&mut self, seq: u64) {
        if seq == self.floor + 1 {
            self.floor = seq;
        } else if seq > self.floor {
            self.acked.insert(seq);
        }
        while self.acked.first() == Some(&(self.floor + 1)) {
            self.acked.pop_first();
            self.floor += 1;
        }
        self.version += 1;
    }

    /// Acked seqs above the floor as inclusive ranges.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &s in &self.acked {
            match out.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = s,
                _ => out.push((s, s)),
            }
        }
        out
    }

    /// Retention removed everything through `first - 1`: skip it.
    pub fn skip_below(&mut self, first: u64) {
        if self.floor + 1 < first {
            self.floor = first - 1;
            let floor = self.floor;
            self.acked.retain(|s| *s > floor);
            self.redeliver.retain(|s, _| *s > floor);
            self.doomed.retain(|s, _| *s > floor);
            self.version += 1;
        }
        self.next_new = self.next_new.max(first);
    }

    /// Whether handing out `seq` as delivery `count` needs a record first:
    /// the last one does not claim that many deliveries of it.
    pub fn needs_lease(&self, seq: u64, count: u32) -> bool {
        let claimed = match self.leased.get(&seq) {
            Some(&c) => c,
            None if seq <= self.leased_through => 1,
            None => 0,
        };
        claimed < count
    }

    /// The delivery state a record written now claims: first deliveries
    /// through `through`, and for every unacked message out or due again
    /// the deliveries it has had or is about to have (`extra`: the one
    /// being handed out). `exact`: the deliveries each has had, claiming
    /// none ahead.
    pub fn meta(&self, through: u64, extra: Option<(u64, u32)>, dlq_mark: u64, exact: bool) -> QueueMeta {
        let ahead = u32::from(!exact);
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        for (seq, f) in &self.in_flight {
            // Nakked with a delay: its next delivery is claimed already.
            let c = if f.member == NO_MEMBER {
                f.count + ahead
            } else {
                f.count
            };
            counts.insert(*seq, c);
        }
        for (seq, b) in self.redeliver.iter().chain(&self.doomed) {
            counts.insert(*seq, b.count + ahead);
        }
        if let Some((seq, c)) = extra {
            counts.insert(seq, c);
        }
        let counts = counts
            .into_iter()
            .filter(|(seq, c)| *c > 1 && !self.is_acked(*seq))
            .collect();
        QueueMeta {
            delivered_through: through,
            terminated: self.terminated,
            dead_lettered: self.dead_lettered,
            dlq_mark,
            counts,
        }
    }

    /// What the group leaves for its next instance in this process.
    pub fn left(&mut self) -> Left {
        let mut counts = std::mem::take(&mut self.redeliver);
        counts.append(&mut std::mem::take(&mut self.doomed));
        for (seq, f) in std::mem::take(&mut self.in_flight) {
            let reason = if f.member == NO_MEMBER {
                DeadReason::Nak
            } else {
                DeadReason::MemberLeft
            };
            counts.insert(seq, Back { count: f.count, reason });
        }
        Left {
            next_new: self.next_new,
            counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(through: u64, counts: &[(u64, u32)]) -> QueueMeta {
        QueueMeta {
            delivered_through: through,
            counts: counts.to_vec(),
            ..QueueMeta::default()
        }
    }

    #[test]
    fn recovery_redelivers_what_the_lease_covers_with_its_counts() {
        let st = GroupState::recover(2, &[(4, 4)], &meta(6, &[(5, 3)]), None, None);
        let got: Vec<(u64, u32)> = st.redeliver.iter().map(|(s, b)| (*s, b.count)).collect();
        assert_eq!(got, [(3, 1), (5, 3), (6, 1)]);
        assert_eq!(st.next_new, 7);
        let kept = GroupState::recover(2, &[], &meta(4, &[(3, 3), (4, 4)]), None, Some(3));
        assert_eq!(
            kept.doomed.keys().copied().collect::<Vec<_>>(),
            [4],
            "3 may have had 2 deliveries"
        );
    }

    #[test]
    fn leases_claim_counts_before_delivery() {
        let mut st = GroupState::recover(0, &[], &QueueMeta::default(), None, None);
        assert!(st.needs_lease(1, 1));
        st.leased_through = 10;
        assert!(!st.needs_lease(10, 1));
        assert!(st.needs_lease(10, 2));
        st.leased.insert(10, 2);
        assert!(!st.needs_lease(10, 2));
    }

    #[test]
    fn acks_advance_the_floor() {
        let mut st = GroupState::recover(0, &[], &QueueMeta::default(), None, None);
        st.mark_acked(2);
        assert_eq!((st.floor, st.ranges()), (0, vec![(2, 2)]));
        st.mark_acked(1);
        assert_eq!((st.floor, st.ranges()), (2, vec![]));
    }
}
