//! A queue group's settings and what a member receives.

use std::ops::Deref;
use std::time::Duration;

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::message::Message;

/// Per-group settings: build them from `QueueOptions::default()` with the
/// methods below (or a struct literal ending in `..Default::default()`).
///
/// ```
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = spool::Store::open(dir.path(), spool::Options::default())?;
/// let dead = store.channel("jobs.dead")?;
/// let opts = spool::QueueOptions::default()
///     .ack_wait(Duration::from_secs(10))
///     .max_in_flight(100)
///     .max_deliveries(3)
///     .dead_letter(&dead);
/// let worker = store.channel("jobs")?.queue_subscribe_with("workers", spool::StartAt::First, opts)?;
/// # drop(worker);
/// # Ok::<(), spool::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How long a delivered message may stay unacked before it is handed
    /// out again (1 ms ..= 24 h; default 30 s). `QueueMember::in_progress`
    /// restarts it.
    pub ack_wait: Duration,
    /// Most unacked messages one member holds at a time (at least 1;
    /// default 64).
    pub max_in_flight: usize,
    /// Deliveries after which a message that is still not acked is given
    /// up: published to `dead_letter` (or dropped, without one) and acked
    /// in the group. `None` (default): redelivered forever.
    pub max_deliveries: Option<u32>,
    /// Where given-up messages go, as a [`DeadLetter`](crate::DeadLetter)
    /// envelope around the unchanged payload. A channel of the same store,
    /// not the group's own.
    pub dead_letter: Option<Channel>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            ack_wait: Duration::from_secs(30),
            max_in_flight: 64,
            max_deliveries: None,
            dead_letter: None,
        }
    }
}

impl QueueOptions {
    /// Sets [`ack_wait`](Self::ack_wait).
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Sets [`max_in_flight`](Self::max_in_flight).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets [`max_deliveries`](Self::max_deliveries) (at least 1).
    #[must_use]
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = Some(n);
        self
    }

    /// Sets the [`dead_letter`](Self::dead_letter) channel.
    #[must_use]
    pub fn dead_letter(mut self, channel: &Channel) -> Self {
        self.dead_letter = Some(channel.clone());
        self
    }

    pub(super) fn validate(&self, channel_id: u64) -> Result<()> {
        if self.ack_wait < Duration::from_millis(1) || self.ack_wait > MAX_WAIT {
            return Err(Error::invalid_option(
                "ack_wait",
                format!("{:?} is outside 1 ms ..= 24 h", self.ack_wait),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(Error::invalid_option("max_in_flight", "must be at least 1"));
        }
        if self.max_deliveries == Some(0) {
            return Err(Error::invalid_option(
                "max_deliveries",
                "must be at least 1 (leave it unset to redeliver forever)",
            ));
        }
        if self.dead_letter.as_ref().is_some_and(|d| d.id() == channel_id) {
            return Err(Error::invalid_option(
                "dead_letter",
                "the dead-letter channel must not be the group's own channel",
            ));
        }
        Ok(())
    }
}

/// Longest `ack_wait` and `nak_with_delay`.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A message handed to a queue member, with how often it was delivered.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub(super) message: Message,
    pub(super) count: u32,
}

impl Delivery {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// 1 on first delivery, more when it is redelivered. Survives a
    /// restart: it counts deliveries before it too (after a crash it may
    /// be one more than the true count, never less).
    pub fn delivery_count(&self) -> u32 {
        self.count
    }

    /// Whether an earlier delivery was not acked (its `ack_wait` ran out,
    /// it was nakked, its member went away, or the group restarted while
    /// it was out).
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
