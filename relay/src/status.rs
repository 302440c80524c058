//! What a running relay shows: lag, rate, positions, last error.

use std::time::SystemTime;

/// What the relay is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Opening its subscriber, checking the stream, reconciling.
    #[default]
    Starting,
    /// Forwarding.
    Running,
    /// Waiting out a transient failure (see `last_error`) before it sends
    /// again.
    Retrying,
    /// Ended (stopped, or failed).
    Stopped,
}

/// A snapshot of a relay's progress ([`Relay::status`](crate::Relay::status)).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// What the relay is doing.
    pub phase: Phase,
    /// The channel's last published seq (when the snapshot was taken).
    pub channel_last_seq: u64,
    /// The relayed position: every seq up to it is acknowledged by
    /// JetStream (or skipped and recorded).
    pub acked: u64,
    /// The position committed with the spool subscriber (at most `acked`).
    pub committed: u64,
    /// `channel_last_seq - acked`.
    pub lag: u64,
    /// The JetStream stream sequence of the last acknowledged message.
    pub stream_seq: u64,
    /// Messages acknowledged per second, over about the last second.
    pub rate: f64,
    /// Publishes awaiting their ack.
    pub in_flight: usize,
    /// Messages acknowledged since this run started.
    pub relayed: u64,
    /// Messages sent again after a failure since this run started (each
    /// time one was in flight when the failure came).
    pub resent: u64,
    /// Messages found already stored in the stream (published before a
    /// crash or a lost ack, beyond what dedup answers) and counted as
    /// acknowledged without being sent again, since this run started.
    pub taken_over: u64,
    /// Messages skipped as too large (in total, from the state).
    pub skipped: u64,
    /// Transient failures waited out since this run started.
    pub retries: u64,
    /// Whether the NATS connection is up.
    pub connected: bool,
    /// The last failure (transient or final), if any, and when.
    pub last_error: Option<(SystemTime, String)>,
}

impl RelayStatus {
    /// One human-readable line, for a live status display.
    pub fn line(&self) -> String {
        let phase = match self.phase {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Retrying => "retrying",
            Phase::Stopped => "stopped",
        };
        let mut line = format!(
            "{phase}: relayed {} (stream seq {}), committed {}, lag {}, {:.0} msg/s, in flight {}, {}",
            self.acked,
            self.stream_seq,
            self.committed,
            self.lag,
            self.rate,
            self.in_flight,
            if self.connected { "connected" } else { "disconnected" },
        );
        if self.skipped > 0 {
            line.push_str(&format!(", skipped {}", self.skipped));
        }
        if let Some((_, e)) = &self.last_error {
            line.push_str(&format!(", last error: {e}"));
        }
        line
    }
}
