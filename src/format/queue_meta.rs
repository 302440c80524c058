//! What a queue group's commit entry holds beyond its ack floor and acked
//! ranges (entry kind 2 of the subscribers log, docs/format.md): how far
//! messages were handed out, delivery counts of unacked messages, the
//! counters of terminated and dead-lettered messages, and how far the
//! dead-letter channel was looked at.

use crate::codec::ByteReader;

/// A queue group's delivery state, as committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueMeta {
    /// Every seq at or below may have been handed out at least once (a
    /// lease taken before handing them out).
    pub delivered_through: u64,
    /// Messages stopped with `term`.
    pub terminated: u64,
    /// Messages given up after `max_deliveries` (published to the
    /// dead-letter channel, or dropped when there is none).
    pub dead_lettered: u64,
    /// The dead-letter channel's last seq when this was written: every
    /// dead letter of this group at or below it is acked here.
    pub dlq_mark: u64,
    /// Unacked seqs above the floor that were (or may have been) handed
    /// out more than once, with that count, ascending.
    pub counts: Vec<(u64, u32)>,
}

impl QueueMeta {
    /// Appends the encoding (after the acked ranges of the entry).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.delivered_through.to_le_bytes());
        out.extend_from_slice(&self.terminated.to_le_bytes());
        out.extend_from_slice(&self.dead_lettered.to_le_bytes());
        out.extend_from_slice(&self.dlq_mark.to_le_bytes());
        out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
        for (seq, n) in &self.counts {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Decodes what `encode` wrote for an entry whose floor is `floor`;
    /// `None` if it does not parse (or its counts are out of order, at or
    /// below the floor, or zero). `body_len` bounds the count list.
    pub(crate) fn decode(r: &mut ByteReader<'_>, floor: u64, body_len: usize) -> Option<QueueMeta> {
        let delivered_through = r.u64()?;
        let terminated = r.u64()?;
        let dead_lettered = r.u64()?;
        let dlq_mark = r.u64()?;
        let n = r.u32()? as usize;
        if n > body_len / 12 {
            return None;
        }
        let mut counts = Vec::with_capacity(n);
        let mut prev = floor;
        for _ in 0..n {
            let (seq, count) = (r.u64()?, r.u32()?);
            if seq <= prev || count == 0 {
                return None;
            }
            prev = seq;
            counts.push((seq, count));
        }
        Some(QueueMeta {
            delivered_through,
            terminated,
            dead_lettered,
            dlq_mark,
            counts,
        })
    }

    /// Forgets what lies past `last` (a repair clamped the channel).
    pub(crate) fn clamp(&mut self, last: u64) {
        self.delivered_through = self.delivered_through.min(last);
        self.counts.retain(|c| c.0 <= last);
    }

    /// The highest seq of this channel the meta speaks of.
    pub(crate) fn top(&self) -> u64 {
        self.counts.last().map_or(0, |c| c.0).max(self.delivered_through)
    }
}
