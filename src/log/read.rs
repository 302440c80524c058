//! Reads: one message by seq, the first message at a time, and the
//! sequential cursor (`Messages`).

use std::sync::Arc;

use super::recover::open_sealed;
use super::table::{SegmentEntry, Snapshot};
use super::Log;
use crate::error::{Error, Result};
use crate::format::frame::FrameHeader;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::message::{Message, MessageRef};
use crate::segment::{Read, Segment};

impl Log {
    /// The entry's segment, opening it (read-only, strict) if needed.
    pub(super) fn open_entry(&self, entry: &Arc<SegmentEntry>, next_base: Option<u64>) -> Result<Arc<Segment>> {
        if self.env.read_only {
            // Attached read-only: the owner may not have sealed it yet, or
            // may have removed it (retention) before the last poll.
            let opened = self.table.open(entry, || {
                super::follow::open_complete(&self.env, self.id, entry.base, &entry.path, next_base)
            });
            if opened.is_err() {
                self.catch_up();
            }
            return opened;
        }
        self.table.open(entry, || {
            open_sealed(&self.env, self.id, entry.base, &entry.path, next_base)
        })
    }

    /// The segment holding `seq` (which the caller checked is in range),
    /// found in one snapshot of the list.
    pub(super) fn segment_for(&self, seq: u64) -> Result<Arc<Segment>> {
        let snapshot = self.table.snapshot();
        let (entry, next_base) = snapshot.holding(seq).ok_or_else(|| self.out_of_range(seq))?;
        self.open_entry(entry, next_base)
    }

    /// The message `seq`. `OutOfRange` outside `[first_seq, last_seq]`,
    /// `Lost` if a repair removed it, `Corrupt` if it fails validation.
    pub(crate) fn get(&self, seq: u64) -> Result<Message> {
        self.check_readable()?;
        let last = self.last_seq();
        let first = self.first_seq();
        if seq < first || seq > last {
            return Err(self.out_of_range(seq));
        }
        let found = self.segment_for(seq).and_then(|seg| match seg.locate(seq)? {
            (offset, Read::Message { header, .. }) => Ok(Message::new(Arc::clone(&seg), &header, offset)),
            (_, Read::Hole { first, last, .. }) => Err(Error::Lost {
                requested: seq,
                first_lost: first,
                last_lost: last,
            }),
        });
        match found {
            // Retention removed it between the range check and the read.
            Err(_) if seq < self.first_seq() => Err(self.out_of_range(seq)),
            other => other,
        }
    }

    /// The timestamp of the last message of segment `i` of `snapshot`: from
    /// its seal when known (no need to open it), else from opening it; the
    /// active segment's is the log's.
    fn last_timestamp_of(&self, snapshot: &Snapshot, i: usize) -> Result<Option<u64>> {
        let Some((entry, next_base)) = snapshot.at(i) else {
            return Ok(None);
        };
        if let Some(seal) = entry.seal() {
            return Ok(Some(seal.last_timestamp));
        }
        if entry.segment().is_some() {
            // Open and unsealed: the active segment.
            return Ok(Some(self.last_timestamp()));
        }
        self.open_entry(entry, next_base)?;
        Ok(Some(entry.seal().map_or(self.last_timestamp(), |s| s.last_timestamp)))
    }

    /// The first message with a timestamp `>= ts`, if any.
    pub(crate) fn seq_at_or_after(&self, ts: u64) -> Result<Option<u64>> {
        self.check_readable()?;
        if self.last_timestamp() < ts {
            return Ok(None);
        }
        let snapshot = self.table.snapshot();
        // Binary search for the first segment whose last timestamp >= ts.
        let count = snapshot.len();
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.last_timestamp_of(&snapshot, mid)? {
                Some(last) if last < ts => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let first = self.first_seq();
        for i in lo..count {
            let Some((entry, next_base)) = snapshot.at(i) else {
                break;
            };
            let seg = self.open_entry(entry, next_base)?;
            if let Some(seq) = seg.seq_at_or_after(ts)? {
                return Ok(Some(seq.max(first)));
            }
        }
        Ok(None)
    }

    /// Iterates from `seq` (or the first retained message, if later).
    /// `OutOfRange` past `last_seq() + 1`.
    pub(crate) fn read_from(self: &Arc<Self>, seq: u64) -> Result<Messages> {
        self.check_readable()?;
        let last = self.last_seq();
        if seq > last.saturating_add(1) {
            return Err(self.out_of_range(seq));
        }
        Ok(Messages::new(Arc::clone(self), seq.max(self.first_seq())))
    }
}

/// Iterator over a channel's messages in sequence order, from
/// [`Channel::read_from`](crate::Channel::read_from).
///
/// It ends (`None`) when it has caught up with the last published message;
/// calling `next` again later yields messages published since. If retention
/// removes messages it has not reached yet, it skips to the first retained
/// one. A range removed by repair yields one `Err(Error::Lost)` and
/// iteration continues after it; any other error ends the iteration (so
/// does the channel's deletion: one `Err(ChannelDeleted)`).
pub struct Messages {
    log: Arc<Log>,
    segment: Option<Arc<Segment>>,
    offset: usize,
    next_seq: u64,
    failed: bool,
    /// Messages passed over because retention removed them first.
    skipped: u64,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").field("next_seq", &self.next_seq).finish()
    }
}

impl Messages {
    pub(crate) fn new(log: Arc<Log>, from: u64) -> Messages {
        Messages {
            log,
            segment: None,
            offset: 0,
            next_seq: from,
            failed: false,
            skipped: 0,
        }
    }

    /// How many messages this iterator passed over because retention
    /// removed them before it got there (it went on from the first
    /// retained one), since it was made.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    /// let ch = store.channel_with_limits("recent", spool::Limits::default().max_msgs(2))?;
    /// let mut messages = ch.read_from(1)?;
    /// ch.publish_batch(&[b"a".as_slice(), b"b", b"c", b"d"])?;
    /// store.compact_now()?; // keeps the last 2
    /// assert_eq!(messages.next().transpose()?.map(|m| m.seq()), Some(3));
    /// assert_eq!(messages.skipped(), 2);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The sequence number the next call to `next` looks for.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Finds the segment and offset of `next_seq`.
    fn position(&mut self) -> Result<(Arc<Segment>, Read)> {
        let seg = self.log.segment_for(self.next_seq)?;
        let (offset, read) = if seg.base == self.next_seq {
            (SEGMENT_HEADER_LEN, seg.read_at(SEGMENT_HEADER_LEN, self.next_seq)?)
        } else {
            seg.locate(self.next_seq)?
        };
        self.offset = offset;
        self.segment = Some(Arc::clone(&seg));
        Ok((seg, read))
    }

    /// Reads the frame at the iterator's position; on a message, returns its
    /// header and frame offset in `self.segment` and moves past it.
    fn step(&mut self) -> Result<(FrameHeader, usize)> {
        let current = self.segment.as_ref().filter(|s| self.offset < s.region.published());
        let read = match current {
            Some(seg) => seg.read_at(self.offset, self.next_seq)?,
            None => self.position()?.1,
        };
        match read {
            Read::Message { header, next_offset } => {
                let at = self.offset;
                self.offset = next_offset;
                self.next_seq = header.seq + 1;
                Ok((header, at))
            }
            Read::Hole {
                first,
                last,
                next_offset,
            } => {
                let requested = self.next_seq;
                self.offset = next_offset;
                self.next_seq = last + 1;
                Err(Error::Lost {
                    requested,
                    first_lost: first,
                    last_lost: last,
                })
            }
        }
    }

    /// The next message when it is the plain case: same segment, inside
    /// the validated prefix, not removed by retention, published.
    #[inline]
    fn fast_step(&mut self) -> Option<(FrameHeader, usize)> {
        let seg = self.segment.as_ref()?;
        if self.failed || self.next_seq < self.log.first_seq() || self.next_seq > self.log.last_seq() {
            return None;
        }
        let header = seg.trusted_message_at(self.offset, self.next_seq)?;
        let at = self.offset;
        self.offset = at + header.frame_len();
        self.next_seq += 1;
        Some((header, at))
    }

    /// The next frame, with the retention and error rules of `next`.
    fn advance(&mut self) -> Option<Result<(FrameHeader, usize)>> {
        if let Some(hit) = self.fast_step() {
            return Some(Ok(hit));
        }
        if self.failed {
            return None;
        }
        if let Err(e) = self.log.check_readable() {
            self.failed = true;
            return Some(Err(e));
        }
        // Retention may have moved the first seq past us: never serve what
        // it removed, even from a segment this iterator still holds.
        let first = self.log.first_seq();
        if self.next_seq < first {
            self.skipped += first - self.next_seq;
            self.next_seq = first;
            self.segment = None;
        }
        if self.next_seq > self.log.last_seq() {
            return None;
        }
        let item = self.step();
        if item.is_err() && self.next_seq < self.log.first_seq() {
            // Retention removed the segment under us: go on from the first
            // retained message.
            self.segment = None;
            return self.advance();
        }
        if matches!(item, Err(ref e) if !matches!(e, Error::Lost { .. })) {
            self.failed = true;
        }
        Some(item)
    }

    /// Like [`next`](Iterator::next), but lends the message instead of
    /// returning an owned [`Message`]: no reference count is taken, so a
    /// scan that only looks at each payload runs faster. The view borrows
    /// the iterator; call [`MessageRef::to_message`] to keep one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    /// let ch = store.channel("events")?;
    /// ch.publish_batch(&[b"a".as_slice(), b"bc"])?;
    /// let mut messages = ch.read_from(1)?;
    /// let mut bytes = 0;
    /// while let Some(m) = messages.next_ref() {
    ///     bytes += m?.payload().len();
    /// }
    /// assert_eq!(bytes, 3);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn next_ref(&mut self) -> Option<Result<MessageRef<'_>>> {
        let (header, at) = match self.advance()? {
            Ok(hit) => hit,
            Err(e) => return Some(Err(e)),
        };
        let seg = self.segment.as_ref()?;
        Some(Ok(MessageRef::new(seg, &header, at)))
    }
}

impl Iterator for Messages {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        Some(self.advance()?.and_then(|(header, at)| {
            let seg = self.segment.as_ref().ok_or(Error::Closed)?;
            Ok(Message::new(Arc::clone(seg), &header, at))
        }))
    }
}
