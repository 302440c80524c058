//! Per-channel limits: retention (messages, bytes, age), subscribers and
//! inactivity.

use std::time::Duration;

use crate::error::{Error, Result};

/// The smallest `max_bytes`: one segment header and one empty record
/// (checked against the format in `format::segment`).
pub(crate) const MIN_BYTES_LIMIT: u64 = 152;

/// Limits of a channel. `None` means no limit; in a per-channel override it
/// means "use the store default" (`Options::limits`).
///
/// ```
/// use std::time::Duration;
/// let limits = spool::Limits::default().max_msgs(1_000_000).max_age(Duration::from_secs(24 * 3600));
/// assert_eq!(limits.max_msgs, Some(1_000_000));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Keep at most this many messages.
    pub max_msgs: Option<u64>,
    /// Keep at most this many bytes of records (frames, including their
    /// 24-byte headers and padding).
    pub max_bytes: Option<u64>,
    /// Keep nothing older than this.
    pub max_age: Option<Duration>,
    /// Most durable subscribers and queue groups.
    pub max_subscribers: Option<usize>,
    /// Delete the channel after this long without a publish or any
    /// subscriber activity.
    pub max_inactivity: Option<Duration>,
}

impl Limits {
    /// Sets `max_msgs`.
    pub fn max_msgs(mut self, n: u64) -> Self {
        self.max_msgs = Some(n);
        self
    }

    /// Sets `max_bytes`.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// Sets `max_age`.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = Some(d);
        self
    }

    /// Sets `max_subscribers`.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = Some(n);
        self
    }

    /// Sets `max_inactivity`.
    pub fn max_inactivity(mut self, d: Duration) -> Self {
        self.max_inactivity = Some(d);
        self
    }

    /// Each field of `self`, or of `defaults` where `self` has none.
    pub(crate) fn or(self, defaults: Limits) -> Limits {
        Limits {
            max_msgs: self.max_msgs.or(defaults.max_msgs),
            max_bytes: self.max_bytes.or(defaults.max_bytes),
            max_age: self.max_age.or(defaults.max_age),
            max_subscribers: self.max_subscribers.or(defaults.max_subscribers),
            max_inactivity: self.max_inactivity.or(defaults.max_inactivity),
        }
    }

    /// Rejects values that cannot mean anything: zero counts and
    /// durations, byte limits below one segment header plus one record.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |name, reason: String| Err(Error::invalid_option(name, reason));
        if self.max_msgs == Some(0) {
            return bad("max_msgs", "0 would keep nothing; leave it unset for no limit".into());
        }
        let min_bytes = MIN_BYTES_LIMIT;
        if let Some(b) = self.max_bytes.filter(|b| *b < min_bytes) {
            return bad(
                "max_bytes",
                format!("{b} bytes is less than one segment header and one record ({min_bytes})"),
            );
        }
        if self.max_age.is_some_and(|d| d.is_zero()) {
            return bad("max_age", "zero would expire every message at once".into());
        }
        if self.max_subscribers == Some(0) {
            return bad("max_subscribers", "0 would forbid every subscriber".into());
        }
        if self.max_inactivity.is_some_and(|d| d.is_zero()) {
            return bad("max_inactivity", "zero would delete the channel at once".into());
        }
        for (name, d) in [("max_age", self.max_age), ("max_inactivity", self.max_inactivity)] {
            if d.is_some_and(|d| d.as_nanos() > u128::from(u64::MAX)) {
                return bad(name, "longer than 584 years".into());
            }
        }
        Ok(())
    }
}
