//! A zero-copy view of one stored message.

use std::fmt;
use std::sync::Arc;

use crate::format::frame::{FrameHeader, FRAME_HEADER_LEN};
use crate::segment::Segment;

/// One message: its sequence number, timestamp and payload. The payload is a
/// view into the mapped segment, not a copy; the segment stays mapped for as
/// long as the `Message` (or a clone) is alive, even if retention or channel
/// deletion removes the file meanwhile.
///
/// Cloning is cheap (a reference count); copy the payload out with
/// `to_vec()` only when you need to own it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = spool::Store::open(dir.path(), spool::Options::default())?;
/// let log = store.channel("log")?;
/// let seq = log.publish(b"disk 93% full")?;
///
/// let msg = log.get(seq)?;
/// assert_eq!((msg.seq(), msg.payload()), (1, &b"disk 93% full"[..]));
/// assert!(msg.timestamp() > 0); // ns since the Unix epoch
/// // The same message by time: the first at or after its timestamp.
/// assert_eq!(log.seq_at_or_after(msg.timestamp())?, Some(seq));
///
/// // A held message stays readable even after its channel is deleted.
/// store.delete_channel("log")?;
/// assert_eq!(msg.payload(), b"disk 93% full");
/// # Ok::<(), spool::Error>(())
/// ```
#[derive(Clone)]
pub struct Message {
    segment: Arc<Segment>,
    seq: u64,
    timestamp: u64,
    payload_offset: usize,
    len: usize,
}

impl Message {
    pub(crate) fn new(segment: Arc<Segment>, header: &FrameHeader, frame_offset: usize) -> Message {
        Message {
            segment,
            seq: header.seq,
            timestamp: header.timestamp,
            payload_offset: frame_offset + FRAME_HEADER_LEN,
            len: header.payload_len(),
        }
    }

    /// Sequence number: starts at 1, contiguous within a channel.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Publish time in nanoseconds since the Unix epoch; non-decreasing
    /// within a channel.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The payload bytes, borrowed from the mapping.
    pub fn payload(&self) -> &[u8] {
        // The frame was validated against the published length when this
        // Message was made, and published bytes never change.
        self.segment
            .region
            .read_published(self.payload_offset, self.len)
            .unwrap_or(&[])
    }
}

/// A message lent by [`Messages::next_ref`](crate::Messages::next_ref): the
/// same fields as [`Message`], borrowed from the iterator instead of owning
/// a reference to the segment.
#[derive(Clone, Copy)]
pub struct MessageRef<'a> {
    segment: &'a Arc<Segment>,
    seq: u64,
    timestamp: u64,
    payload: &'a [u8],
    payload_offset: usize,
}

impl<'a> MessageRef<'a> {
    pub(crate) fn new(segment: &'a Arc<Segment>, header: &FrameHeader, frame_offset: usize) -> MessageRef<'a> {
        let payload_offset = frame_offset + FRAME_HEADER_LEN;
        MessageRef {
            segment,
            seq: header.seq,
            timestamp: header.timestamp,
            // The frame was validated against the published length.
            payload: segment
                .region
                .read_published(payload_offset, header.payload_len())
                .unwrap_or(&[]),
            payload_offset,
        }
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Publish time in nanoseconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The payload bytes, borrowed from the mapping.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// An owned [`Message`] for the same record (takes a reference on the
    /// segment).
    pub fn to_message(&self) -> Message {
        Message {
            segment: Arc::clone(self.segment),
            seq: self.seq,
            timestamp: self.timestamp,
            payload_offset: self.payload_offset,
            len: self.payload.len(),
        }
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef")
            .field("seq", &self.seq)
            .field("timestamp", &self.timestamp)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.payload()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("timestamp", &self.timestamp)
            .field("len", &self.len)
            .finish()
    }
}
