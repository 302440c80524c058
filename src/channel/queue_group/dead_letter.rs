//! Dead letters: what a queue group publishes to its dead-letter channel
//! when a message reached `max_deliveries` without an ack, and how a
//! reader of that channel gets the original message's identity back.
//!
//! Exactly once: the group publishes the dead letter and acks the message
//! under its lock; a record of the group names the dead-letter channel's
//! last seq when it was written (`dlq_mark`), and at open the group reads
//! the dead-letter channel past that mark for its own letters and acks
//! them. A crash between the publish and the record therefore neither
//! publishes the letter again nor hands the message out again.

use crate::error::{Error, Result};
use crate::format::dead_letter::{unwrap, Envelope};
use crate::message::Message;

/// Why the last delivery of a dead-lettered message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadReason {
    /// Its `ack_wait` ran out.
    AckWait,
    /// The member nakked it.
    Nak,
    /// Its member went away (dropped) while holding it.
    MemberLeft,
}

impl DeadReason {
    pub(crate) fn code(self) -> u8 {
        match self {
            DeadReason::AckWait => 1,
            DeadReason::Nak => 2,
            DeadReason::MemberLeft => 3,
        }
    }

    fn from_code(code: u8) -> Option<DeadReason> {
        Some(match code {
            1 => DeadReason::AckWait,
            2 => DeadReason::Nak,
            3 => DeadReason::MemberLeft,
            _ => return None,
        })
    }
}

/// A message of a dead-letter channel, read back: the original payload,
/// unchanged, and where it came from.
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = spool::Store::open(dir.path(), spool::Options::default())?;
/// let (jobs, dead) = (store.channel("jobs")?, store.channel("jobs.dead")?);
/// let opts = spool::QueueOptions::default().max_deliveries(2).dead_letter(&dead);
/// let worker = jobs.queue_subscribe_with("workers", spool::StartAt::First, opts)?;
/// jobs.publish(b"poison")?;
/// for _ in 0..2 {
///     let job = worker.recv()?;
///     worker.nak(job.seq())?; // the second nak gives it up
/// }
/// let letter = spool::DeadLetter::from_message(dead.get(1)?)?;
/// assert_eq!((letter.payload(), letter.seq(), letter.delivery_count()), (&b"poison"[..], 1, 2));
/// assert_eq!((letter.channel(), letter.group(), letter.reason()), ("jobs", "workers", spool::DeadReason::Nak));
/// assert_eq!(worker.dead_lettered(), 1);
/// # Ok::<(), spool::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DeadLetter {
    message: Message,
    reason: DeadReason,
    count: u32,
    seq: u64,
    channel_id: u64,
    channel: String,
    group: String,
    payload_at: usize,
}

impl DeadLetter {
    /// Reads the envelope of a message of a dead-letter channel.
    /// `NotDeadLetter` if the message is not one (something else was
    /// published to that channel).
    pub fn from_message(message: Message) -> Result<DeadLetter> {
        let bytes = message.payload();
        let not = || Error::NotDeadLetter { seq: message.seq() };
        let (env, payload) = unwrap(bytes).ok_or_else(not)?;
        let reason = DeadReason::from_code(env.reason).ok_or_else(not)?;
        let letter = DeadLetter {
            reason,
            count: env.count,
            seq: env.seq,
            channel_id: env.channel_id,
            channel: env.channel.to_string(),
            group: env.group.to_string(),
            payload_at: bytes.len() - payload.len(),
            message: message.clone(),
        };
        Ok(letter)
    }

    /// The original payload, unchanged.
    pub fn payload(&self) -> &[u8] {
        self.message.payload().get(self.payload_at..).unwrap_or(&[])
    }

    /// The message's seq in its original channel.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The original channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The original channel's incarnation id.
    pub fn channel_id(&self) -> u64 {
        self.channel_id
    }

    /// The queue group that gave it up.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// How often it was delivered (the group's `max_deliveries`, or more
    /// when the limit was lowered).
    pub fn delivery_count(&self) -> u32 {
        self.count
    }

    /// Why its last delivery ended.
    pub fn reason(&self) -> DeadReason {
        self.reason
    }

    /// The dead-letter channel's message itself (its own seq and time).
    pub fn message(&self) -> &Message {
        &self.message
    }
}

/// The dead letter of `payload` (see `format::dead_letter`).
pub(super) fn wrap(
    channel_id: u64,
    channel: &str,
    group: &str,
    seq: u64,
    count: u32,
    reason: DeadReason,
    payload: &[u8],
) -> Vec<u8> {
    Envelope {
        reason: reason.code(),
        count,
        seq,
        channel_id,
        channel,
        group,
    }
    .wrap(payload)
}

/// The seq a dead letter stands for, if `bytes` is one of `group` on
/// channel `channel_id`.
pub(super) fn letter_of(bytes: &[u8], channel_id: u64, group: &str) -> Option<u64> {
    let (env, _) = unwrap(bytes)?;
    (env.channel_id == channel_id && env.group == group).then_some(env.seq)
}
