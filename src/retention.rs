//! Retention policy as pure functions: from a channel's segment summaries,
//! its limits and the clock, the new first retained sequence and the
//! segments that may be deleted. No threads, no files: the one thing that
//! needs a segment's records (where inside a segment a time or byte bound
//! falls) is asked of a [`Probe`].

use crate::limits::Limits;

/// What the policy knows of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    /// Seq of its first record (its base).
    pub first_seq: u64,
    /// Seq after its last record (`first_seq` when it has none).
    pub next_seq: u64,
    /// Bytes of records (frames) it holds.
    pub bytes: u64,
    /// Timestamp of its last record.
    pub last_timestamp: u64,
    /// No record will be added (only sealed segments may be deleted).
    pub sealed: bool,
}

/// Answers questions about the records inside one segment.
pub(crate) trait Probe {
    /// The first seq of segment `i` with a timestamp at or after `ts`.
    fn first_at_or_after(&mut self, i: usize, ts: u64) -> Option<u64>;
    /// The smallest seq of segment `i` such that the records from it to the
    /// segment's end take at most `keep` bytes (its `next_seq` if none fit).
    fn first_fitting(&mut self, i: usize, keep: u64) -> u64;
}

/// The outcome of a pass over one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retention {
    /// The new first retained seq (never lower than the current one).
    pub first_seq: u64,
    /// How many leading segments hold nothing retained and may go.
    pub removable: usize,
}

/// Applies `max_msgs`, `max_age` (against `now_ns`) and `max_bytes`.
/// `first` is the current first retained seq, `next` the seq the next
/// publish gets. A clock behind the messages' timestamps removes nothing by
/// age; the first seq never moves back and never passes `next`.
pub(crate) fn decide(
    segs: &[SegmentSummary],
    first: u64,
    next: u64,
    limits: &Limits,
    now_ns: u64,
    probe: &mut dyn Probe,
) -> Retention {
    let mut new_first = first;
    if let Some(max) = limits.max_msgs {
        new_first = new_first.max(next.saturating_sub(max));
    }
    if let Some(age) = limits.max_age {
        let age = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
        let cutoff = now_ns.saturating_sub(age);
        let holds_young = |s: &SegmentSummary| s.next_seq > s.first_seq && s.last_timestamp >= cutoff;
        let bound = match segs.iter().position(holds_young) {
            Some(i) => probe.first_at_or_after(i, cutoff).unwrap_or(segs[i].next_seq),
            None => next,
        };
        new_first = new_first.max(bound);
    }
    if let Some(max) = limits.max_bytes {
        let mut kept = 0u64;
        for (i, s) in segs.iter().enumerate().rev() {
            if s.next_seq <= new_first {
                break;
            }
            if kept + s.bytes <= max {
                kept += s.bytes;
                continue;
            }
            new_first = new_first.max(probe.first_fitting(i, max - kept));
            break;
        }
    }
    let first_seq = new_first.min(next).max(first);
    let removable = segs.iter().take_while(|s| s.sealed && s.next_seq <= first_seq).count();
    Retention { first_seq, removable }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Segments of `per` messages of `size` bytes each, message `s` stamped
    /// `s * 10`.
    struct Fake {
        segs: Vec<SegmentSummary>,
        size: u64,
    }

    impl Fake {
        fn new(messages: u64, per: u64, size: u64) -> Fake {
            let mut segs = Vec::new();
            let mut s = 1;
            while s <= messages {
                let next = (s + per).min(messages + 1);
                segs.push(SegmentSummary {
                    first_seq: s,
                    next_seq: next,
                    bytes: (next - s) * size,
                    last_timestamp: (next - 1) * 10,
                    sealed: true,
                });
                s = next;
            }
            if let Some(last) = segs.last_mut() {
                last.sealed = false;
            }
            Fake { segs, size }
        }

        fn next(&self) -> u64 {
            self.segs.last().map_or(1, |s| s.next_seq)
        }

        fn run(&mut self, first: u64, limits: Limits, now: u64) -> Retention {
            let segs = self.segs.clone();
            let next = self.next();
            decide(&segs, first, next, &limits, now, self)
        }
    }

    impl Probe for Fake {
        fn first_at_or_after(&mut self, i: usize, ts: u64) -> Option<u64> {
            let s = self.segs[i];
            (s.first_seq..s.next_seq).find(|q| q * 10 >= ts)
        }
        fn first_fitting(&mut self, i: usize, keep: u64) -> u64 {
            let s = self.segs[i];
            (s.first_seq..s.next_seq)
                .find(|q| (s.next_seq - q) * self.size <= keep)
                .unwrap_or(s.next_seq)
        }
    }

    #[test]
    fn no_limits_keep_everything() {
        let mut f = Fake::new(1000, 100, 10);
        assert_eq!(
            f.run(1, Limits::default(), u64::MAX),
            Retention {
                first_seq: 1,
                removable: 0
            }
        );
    }

    #[test]
    fn max_msgs_exactly_at_and_one_over() {
        let mut f = Fake::new(1000, 100, 10);
        let at = f.run(1, Limits::default().max_msgs(1000), 0);
        assert_eq!(
            at,
            Retention {
                first_seq: 1,
                removable: 0
            }
        );
        let over = f.run(1, Limits::default().max_msgs(999), 0);
        assert_eq!(
            over,
            Retention {
                first_seq: 2,
                removable: 0
            }
        );
        let r = f.run(1, Limits::default().max_msgs(150), 0);
        assert_eq!(r.first_seq, 851);
        assert_eq!(r.removable, 8, "segments up to seq 800 go");
    }

    #[test]
    fn the_active_segment_is_never_removable() {
        let mut f = Fake::new(1000, 100, 10);
        let r = f.run(1, Limits::default().max_msgs(1), 0);
        assert_eq!(r.first_seq, 1000);
        assert_eq!(r.removable, 9);
    }

    #[test]
    fn empty_channel() {
        let mut f = Fake::new(0, 100, 10);
        let limits = Limits::default()
            .max_msgs(5)
            .max_bytes(1000)
            .max_age(Duration::from_nanos(1));
        assert_eq!(
            f.run(1, limits, 1_000_000),
            Retention {
                first_seq: 1,
                removable: 0
            }
        );
        // Everything expired earlier: first stays at next.
        assert_eq!(f.run(1, limits, 0).first_seq, 1);
    }

    #[test]
    fn max_age_boundaries() {
        let mut f = Fake::new(1000, 100, 10);
        // now = 10_000, age 5_000 ns: cutoff 5_000 = seq 500's stamp.
        let r = f.run(1, Limits::default().max_age(Duration::from_nanos(5_000)), 10_000);
        assert_eq!(r.first_seq, 500);
        assert_eq!(r.removable, 4);
        let r = f.run(1, Limits::default().max_age(Duration::from_nanos(4_999)), 10_000);
        assert_eq!(r.first_seq, 501, "one nanosecond less, one message less");
        let all = f.run(1, Limits::default().max_age(Duration::from_nanos(1)), 20_000);
        assert_eq!(all.first_seq, 1001, "everything older: all expire");
    }

    #[test]
    fn clock_that_went_backwards_removes_nothing_by_age() {
        let mut f = Fake::new(1000, 100, 10);
        let r = f.run(300, Limits::default().max_age(Duration::from_nanos(100)), 5);
        assert_eq!(r.first_seq, 300, "never moves back either");
    }

    #[test]
    fn max_bytes_exact() {
        let mut f = Fake::new(1000, 100, 10);
        let r = f.run(1, Limits::default().max_bytes(10_000), 0);
        assert_eq!(r.first_seq, 1);
        let r = f.run(1, Limits::default().max_bytes(9_999), 0);
        assert_eq!(r.first_seq, 2);
        let r = f.run(1, Limits::default().max_bytes(2_505), 0);
        assert_eq!(r.first_seq, 751, "250 messages of 10 bytes fit");
        assert_eq!(r.removable, 7);
    }

    #[test]
    fn single_huge_message() {
        let mut f = Fake::new(1, 100, 1 << 20);
        let r = f.run(1, Limits::default().max_bytes(1 << 10), 0);
        assert_eq!(r.first_seq, 2, "a message larger than max_bytes cannot be kept");
        assert_eq!(r.removable, 0, "its segment is the active one");
    }

    #[test]
    fn combined_limits_take_the_strictest() {
        let mut f = Fake::new(1000, 100, 10);
        let limits = Limits::default()
            .max_msgs(600)
            .max_bytes(3_000)
            .max_age(Duration::from_nanos(7_000));
        // msgs -> 401, age (now 10_000) -> 300, bytes -> 701.
        assert_eq!(f.run(1, limits, 10_000).first_seq, 701);
    }
}
