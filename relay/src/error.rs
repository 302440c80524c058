//! The relay's errors.

use std::time::Duration;

/// A boxed error from async-nats (its error types are many and generic).
pub type NatsError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a relay could not start, or stopped.
///
/// Transient trouble (the server down, a lost connection, a timed-out ack,
/// JetStream not ready yet) is not an error: the relay waits, reconnects and
/// resends, and shows the cause in [`RelayStatus::last_error`](crate::RelayStatus).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// An error of the spool store (opening the subscriber, reading, committing).
    #[error("spool: {0}")]
    Spool(#[from] spool::Error),

    /// A JetStream request needed to start failed (stream lookup, creation, info).
    #[error("JetStream: {what}: {source}")]
    Nats {
        /// What the relay was doing.
        what: String,
        /// The client's error.
        source: NatsError,
    },

    /// The subject is not a valid NATS subject to publish to.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject after the `{channel}` substitution.
        subject: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No stream captures the subject (or the required stream does not).
    #[error("subject {subject:?} is not captured by stream {stream:?}{}", found.as_ref().map(|f| format!(" (it goes to {f:?})")).unwrap_or_default())]
    SubjectNotInStream {
        /// The relay's subject.
        subject: String,
        /// The stream the relay was told to use ("" when looked up by subject).
        stream: String,
        /// The stream that does capture the subject, if any.
        found: Option<String>,
    },

    /// The stream's duplicate window is shorter than the configured minimum:
    /// a message resent after a longer outage could be stored twice.
    #[error("stream {stream:?} has a duplicate window of {window:?}, the relay requires at least {required:?}")]
    DuplicateWindowTooShort {
        /// The stream.
        stream: String,
        /// Its `duplicate_window`.
        window: Duration,
        /// `RelayOptions::min_duplicate_window`.
        required: Duration,
    },

    /// A message does not fit the server's max payload (or the stream's max
    /// message size). The relay stopped with its position just before it.
    #[error("message {seq} of channel {channel:?} ({size} bytes) is too large for JetStream: {detail}; the relay stopped at position {position}")]
    TooLarge {
        /// The channel.
        channel: String,
        /// The message's sequence number.
        seq: u64,
        /// Its payload size.
        size: usize,
        /// The limit it exceeds, as the client or server put it.
        detail: String,
        /// The relay's committed position (`seq - 1`).
        position: u64,
    },

    /// The stream's last sequence is below the one the relay committed: the
    /// stream was deleted and created again, or lost data.
    #[error("stream {stream:?} ends at sequence {stream_last}, but the relay committed sequence {committed}: was the stream recreated or purged? (remove the relay's subscriber {subscriber:?} to relay the channel again from the start)")]
    StreamBehind {
        /// The stream.
        stream: String,
        /// Its last sequence.
        stream_last: u64,
        /// The stream sequence in the relay's state.
        committed: u64,
        /// The relay's spool subscriber.
        subscriber: String,
    },

    /// A message in the stream that the relay did not expect: another
    /// publisher writes to a stream the relay owns exclusively
    /// ([`Ownership::Exclusive`](crate::Ownership)), or the message at the
    /// committed stream sequence is not the one the relay stored there.
    #[error("stream {stream:?} sequence {stream_seq} holds {found}, expected {expected}: {hint}")]
    UnexpectedMessage {
        /// The stream.
        stream: String,
        /// The stream sequence.
        stream_seq: u64,
        /// The `Nats-Msg-Id` found there (or "no message id").
        found: String,
        /// What the relay expected.
        expected: String,
        /// What it means.
        hint: &'static str,
    },

    /// The state blob belongs to another stream than the one the relay uses.
    #[error("the relay's state refers to stream {state_stream:?}, but it relays to {stream:?} (use another relay name, or remove subscriber {subscriber:?})")]
    OtherStream {
        /// The stream in the state.
        state_stream: String,
        /// The stream the relay uses now.
        stream: String,
        /// The relay's spool subscriber.
        subscriber: String,
    },

    /// The subscriber's state blob is not a relay state.
    #[error("the relay subscriber's state is not a relay state: {reason}")]
    BadState {
        /// What is wrong with it.
        reason: String,
    },

    /// A relay option is out of range.
    #[error("invalid relay option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: &'static str,
    },

    /// The relay's task panicked or was cancelled.
    #[error("the relay task ended abnormally: {0}")]
    Task(String),
}

impl RelayError {
    pub(crate) fn nats(what: impl Into<String>, source: impl Into<NatsError>) -> RelayError {
        RelayError::Nats {
            what: what.into(),
            source: source.into(),
        }
    }
}
