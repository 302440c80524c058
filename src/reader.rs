//! Sequential reads across segments.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::channel::ChannelCore;
use crate::error::{Error, Result};
use crate::message::{Message, MessageRef};
use crate::record::FrameHeader;
use crate::segment::{Frame, Segment, SEGMENT_HEADER_LEN};

/// Iterator over a channel's messages in sequence order, from
/// [`Channel::read_from`](crate::Channel::read_from).
///
/// It ends (`None`) when it has caught up with the last published message;
/// calling `next` again later yields messages published since. If retention
/// removes messages it has not reached yet, it skips to the first retained
/// one. A range
/// removed by repair yields one `Err(Error::Lost)` and iteration continues
/// after it; any other error ends the iteration.
pub struct Messages {
    core: Arc<ChannelCore>,
    segment: Option<Arc<Segment>>,
    offset: usize,
    next_seq: u64,
    failed: bool,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").field("next_seq", &self.next_seq).finish()
    }
}

impl Messages {
    pub(crate) fn new(core: Arc<ChannelCore>, from: u64) -> Messages {
        Messages {
            core,
            segment: None,
            offset: 0,
            next_seq: from,
            failed: false,
        }
    }

    /// The sequence number the next call to `next` looks for.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Finds the segment and offset of `next_seq`.
    fn position(&mut self) -> Result<(Arc<Segment>, Frame)> {
        let seg = self.core.segment_for(self.next_seq)?;
        let (offset, frame) = if seg.base == self.next_seq {
            (SEGMENT_HEADER_LEN, seg.frame_at(SEGMENT_HEADER_LEN, self.next_seq)?)
        } else {
            seg.locate(self.next_seq)?
        };
        self.offset = offset;
        self.segment = Some(Arc::clone(&seg));
        Ok((seg, frame))
    }

    /// Reads the frame at the iterator's position; on a message, returns its
    /// header and frame offset in `self.segment` and moves past it.
    fn step(&mut self) -> Result<(FrameHeader, usize)> {
        let current = self.segment.as_ref().filter(|s| self.offset < s.region.published());
        let frame = match current {
            Some(seg) => seg.frame_at(self.offset, self.next_seq)?,
            None => self.position()?.1,
        };
        match frame {
            Frame::Message { header, next_offset } => {
                let at = self.offset;
                self.offset = next_offset;
                self.next_seq = header.seq + 1;
                Ok((header, at))
            }
            Frame::Hole {
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
        if self.failed
            || self.next_seq < self.core.first_seq.load(Ordering::Acquire)
            || self.next_seq > self.core.last_seq.load(Ordering::Acquire)
        {
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
        // Retention may have moved the first seq past us: never serve what
        // it removed, even from a segment this iterator still holds.
        let first = self.core.first_seq.load(Ordering::Acquire);
        if self.next_seq < first {
            self.next_seq = first;
            self.segment = None;
        }
        if self.failed || self.next_seq > self.core.last_seq.load(Ordering::Acquire) {
            return None;
        }
        let item = self.step();
        if item.is_err() && self.next_seq < self.core.first_seq.load(Ordering::Acquire) {
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
