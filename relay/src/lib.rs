//! spool-relay: forwards a spool channel to a NATS JetStream stream,
//! exactly once, across crashes of either side. The local spool store is
//! the producer's outbox; JetStream is where the rest of the system reads.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use spool_relay::{Relay, StreamSpec};
//! use async_nats::jetstream::stream::Config;
//!
//! let store = spool::Store::open("data", spool::Options::default())?;
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let jetstream = async_nats::jetstream::new(client);
//!
//! let relay = Relay::new(&store, "orders", jetstream, "outbox.{channel}")?
//!     .stream(StreamSpec::Create(Box::new(Config {
//!         name: "OUTBOX".into(),
//!         subjects: vec!["outbox.>".into()],
//!         ..Default::default()
//!     })))
//!     .max_in_flight(256);
//! let handle = relay.spawn();
//!
//! store.channel("orders")?.publish(b"order 1 created")?; // shipped in the background
//! println!("{}", handle.status().borrow().line());
//! let last = handle.stop().await?; // acks awaited, position committed
//! println!("relayed through seq {}", last.committed);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - A durable spool subscriber, named after the relay
//!   ([`Relay::name`], by default `relay-<stream>`), reads the channel.
//! - Every message is published to the subject with the header
//!   `Nats-Msg-Id` = `<store id>-<channel id>-<seq>` ([`MsgId`]), so
//!   JetStream's duplicate window drops a message sent again, and a channel
//!   deleted and created again never collides with its earlier incarnation.
//! - Publishes are pipelined (up to [`Relay::max_in_flight`]); acks are
//!   awaited in order, and the position moves only over acknowledged
//!   messages. The subscriber commits, atomically with its position, the
//!   JetStream sequence of the last acknowledged message ([`RelayState`])
//!   every [`Relay::commit_every`] messages or [`Relay::commit_interval`].
//! - With [`Ownership::Exclusive`] (the default: the relay is the only
//!   publisher to the stream) each message also carries
//!   `Nats-Expected-Last-Sequence`, so after a lost connection a later
//!   message can never be stored before an earlier one, and a message sent
//!   again after the duplicate window is refused instead of stored twice. At
//!   start the relay reads the stream's tail after its committed sequence
//!   and takes over what it had published but not committed before a crash.
//! - Connection loss, server restarts, timed-out acks: the relay waits,
//!   reconnects (async-nats does) and sends again what was not acknowledged,
//!   one message first, then the full window. It never skips a message: one
//!   that is too large stops it with [`RelayError::TooLarge`] naming the seq
//!   (or, with [`OnTooLarge::SkipAndRecord`], is recorded in a spool channel
//!   and passed over).
//!
//! Guarantees and their limits are spelled out in the crate's README
//! ("Scaling out").
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
mod engine;
mod error;
pub mod msg_id;
mod reader;
mod state;
mod status;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::{oneshot, watch};

pub use error::{NatsError, RelayError};
pub use msg_id::MsgId;
pub use state::RelayState;
pub use status::{Phase, RelayStatus};

/// Which stream the relay publishes to.
#[derive(Clone, Debug, Default)]
pub enum StreamSpec {
    /// The stream that captures the subject, which must exist (the default).
    #[default]
    BySubject,
    /// This stream, which must exist and capture the subject.
    Require(String),
    /// This stream, created with this configuration if it does not exist
    /// (an existing one is used as it is, and must capture the subject).
    Create(Box<jetstream::stream::Config>),
}

/// Who else publishes to the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ownership {
    /// The relay is the stream's only publisher. Each message carries
    /// `Nats-Expected-Last-Sequence`: the stream holds the channel's messages
    /// in channel order even across lost connections, a resend after the
    /// duplicate window is refused rather than stored twice, and a foreign
    /// message in the stream stops the relay with
    /// [`RelayError::UnexpectedMessage`].
    #[default]
    Exclusive,
    /// Other publishers share the stream. Exactly once within the duplicate
    /// window (by `Nats-Msg-Id`), but after a lost connection a message may
    /// be stored after later ones of the same channel, and a resend after
    /// the duplicate window is stored again.
    Shared,
}

/// What to do with a message larger than JetStream accepts (the server's
/// max payload, or the stream's max message size).
#[derive(Clone, Debug, Default)]
pub enum OnTooLarge {
    /// Stop with [`RelayError::TooLarge`] naming the seq; the position stays
    /// just before it (the default).
    #[default]
    Stop,
    /// Pass over it and record it: one 24-byte message in this spool
    /// channel (of the same store, not the relayed one): the relayed
    /// channel's id, the seq and the payload length, each a little-endian
    /// u64. The record is published and synced before the relay's position
    /// moves past the message, which is counted in [`RelayState::skipped`].
    /// A crash can repeat a record, never lose one.
    SkipAndRecord(spool::Channel),
}

/// The options of a relay (set through the [`Relay`] builder methods).
#[derive(Clone, Debug)]
pub(crate) struct RelayOptions {
    pub(crate) name: Option<String>,
    pub(crate) stream: StreamSpec,
    pub(crate) ownership: Ownership,
    pub(crate) max_in_flight: usize,
    pub(crate) commit_every: u64,
    pub(crate) commit_interval: Duration,
    pub(crate) min_duplicate_window: Duration,
    pub(crate) on_too_large: OnTooLarge,
    pub(crate) start: spool::StartAt,
    pub(crate) max_backoff: Duration,
    pub(crate) status_interval: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            name: None,
            stream: StreamSpec::BySubject,
            ownership: Ownership::Exclusive,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            commit_every: DEFAULT_COMMIT_EVERY,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            min_duplicate_window: DEFAULT_MIN_DUPLICATE_WINDOW,
            on_too_large: OnTooLarge::Stop,
            start: spool::StartAt::First,
            max_backoff: Duration::from_secs(2),
            status_interval: Duration::from_millis(250),
        }
    }
}

/// Default [`Relay::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default [`Relay::commit_every`].
pub const DEFAULT_COMMIT_EVERY: u64 = 1000;
/// Default [`Relay::commit_interval`].
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Default [`Relay::min_duplicate_window`]: JetStream's own default window.
pub const DEFAULT_MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A relay from one spool channel to JetStream. Build it with [`Relay::new`]
/// and the option methods, then [`run`](Relay::run) it or
/// [`spawn`](Relay::spawn) it on the tokio runtime.
///
/// ```no_run
/// # async fn example(store: &spool::Store) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use spool_relay::{OnTooLarge, Relay, StreamSpec};
///
/// let jetstream = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
/// let relay = Relay::new(store, "orders", jetstream, "outbox.{channel}")? // subject outbox.orders
///     .stream(StreamSpec::Require("OUTBOX".into()))
///     .max_in_flight(512)
///     .commit_every(2000)
///     .commit_interval(Duration::from_millis(50))
///     .on_too_large(OnTooLarge::SkipAndRecord(store.channel("orders.too-large")?));
/// let mut status = relay.status();
/// tokio::spawn(async move {
///     while status.changed().await.is_ok() {
///         eprintln!("{}", status.borrow().line());
///     }
/// });
/// relay.run_until(async { tokio::signal::ctrl_c().await.unwrap() }).await?;
/// # Ok(()) }
/// ```
pub struct Relay {
    channel: spool::Channel,
    store_id: u128,
    js: jetstream::Context,
    subject: String,
    opts: RelayOptions,
    status: watch::Sender<RelayStatus>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("channel", &self.channel.name())
            .field("subject", &self.subject)
            .field("opts", &self.opts)
            .finish()
    }
}

impl Relay {
    /// A relay of `channel` (created if it does not exist) of `store` to
    /// `subject` through `jetstream`. `{channel}` in `subject` is replaced
    /// by the channel name, which must then make a valid subject.
    ///
    /// Errors: `InvalidSubject`; spool errors opening the channel.
    pub fn new(
        store: &spool::Store,
        channel: &str,
        jetstream: jetstream::Context,
        subject: &str,
    ) -> Result<Relay, RelayError> {
        let subject = subject.replace("{channel}", channel);
        validate_subject(&subject)?;
        let channel = store.channel(channel)?;
        let (status, _) = watch::channel(RelayStatus::default());
        Ok(Relay {
            channel,
            store_id: msg_id::store_id(store),
            js: jetstream,
            subject,
            opts: RelayOptions::default(),
            status,
        })
    }

    /// The name of the relay's durable spool subscriber (default
    /// `relay-<stream>`, the stream's name once known). Two relays of one
    /// channel need different names.
    pub fn name(mut self, name: &str) -> Self {
        self.opts.name = Some(name.to_string());
        self
    }

    /// Which stream to publish to (default: the one capturing the subject).
    pub fn stream(mut self, stream: StreamSpec) -> Self {
        self.opts.stream = stream;
        self
    }

    /// Whether other publishers share the stream (default: exclusive).
    pub fn ownership(mut self, ownership: Ownership) -> Self {
        self.opts.ownership = ownership;
        self
    }

    /// At most this many publishes awaiting their ack (default 256). The
    /// context's own `max_ack_inflight` should be well above it (its default
    /// is 5000): acks abandoned after a lost connection hold a permit there
    /// until they time out.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.opts.max_in_flight = n;
        self
    }

    /// Commit after this many acknowledged messages (default 1000)...
    pub fn commit_every(mut self, messages: u64) -> Self {
        self.opts.commit_every = messages;
        self
    }

    /// ...or after this long with acknowledged messages not yet committed
    /// (default 100 ms), whichever comes first. A crash repeats at most what
    /// was acknowledged since the last commit; JetStream drops the repeats.
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.opts.commit_interval = every;
        self
    }

    /// The stream's `duplicate_window` must be at least this (default 2 min,
    /// JetStream's default window); checked at start.
    pub fn min_duplicate_window(mut self, window: Duration) -> Self {
        self.opts.min_duplicate_window = window;
        self
    }

    /// What to do with a message too large for JetStream (default: stop).
    pub fn on_too_large(mut self, policy: OnTooLarge) -> Self {
        self.opts.on_too_large = policy;
        self
    }

    /// Where the subscriber starts when it is created (default: the first
    /// retained message); afterwards it resumes after its committed position.
    pub fn start_at(mut self, start: spool::StartAt) -> Self {
        self.opts.start = start;
        self
    }

    /// Longest wait between two attempts after a transient failure
    /// (default 2 s; the wait starts at 50 ms and doubles).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.opts.max_backoff = max;
        self
    }

    /// How often [`status`](Self::status) is refreshed (default 250 ms).
    pub fn status_interval(mut self, every: Duration) -> Self {
        self.opts.status_interval = every;
        self
    }

    /// The subject messages are published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The relay's status, refreshed while it runs.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    /// Runs the relay until it fails. Transient trouble (lost connection,
    /// server restart, timed-out acks) is waited out, not returned.
    pub async fn run(self) -> Result<RelayStatus, RelayError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs the relay until `shutdown` completes (then it stops reading,
    /// awaits the acks in flight for up to the context's ack timeout,
    /// commits and returns its final status) or it fails (then it commits
    /// what was acknowledged and returns the error).
    pub async fn run_until<F: Future<Output = ()>>(self, shutdown: F) -> Result<RelayStatus, RelayError> {
        self.validate()?;
        engine::run(self, shutdown).await
    }

    /// Runs the relay as a tokio task.
    pub fn spawn(self) -> RelayHandle {
        let status = self.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run_until(async move {
            let _ = stopped.await;
        }));
        RelayHandle {
            status,
            stop: Some(stop),
            task,
        }
    }

    fn validate(&self) -> Result<(), RelayError> {
        let o = &self.opts;
        let bad = |name, reason| Err(RelayError::InvalidOption { name, reason });
        if o.max_in_flight == 0 || o.max_in_flight > 1_000_000 {
            return bad("max_in_flight", "must be 1 to 1,000,000");
        }
        if o.commit_every == 0 {
            return bad("commit_every", "must be at least 1");
        }
        if o.commit_interval.is_zero() || o.status_interval.is_zero() || o.max_backoff.is_zero() {
            return bad("commit_interval/status_interval/max_backoff", "must not be zero");
        }
        if let OnTooLarge::SkipAndRecord(record) = &o.on_too_large {
            if record.id() == self.channel.id() {
                return bad("on_too_large", "the record channel must not be the relayed channel");
            }
        }
        Ok(())
    }
}

/// A relay running as a tokio task ([`Relay::spawn`]).
#[derive(Debug)]
pub struct RelayHandle {
    status: watch::Receiver<RelayStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<RelayStatus, RelayError>>,
}

impl RelayHandle {
    /// The relay's status, refreshed while it runs.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.clone()
    }

    /// Whether the task has ended (failed, or stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the relay gracefully and returns its final status (or the
    /// error it had already stopped with).
    pub async fn stop(mut self) -> Result<RelayStatus, RelayError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for the relay to end on its own (it ends only on an error).
    pub async fn join(self) -> Result<RelayStatus, RelayError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(RelayError::Task(e.to_string())),
        }
    }
}

/// Checks that `subject` is a valid subject to publish to.
fn validate_subject(subject: &str) -> Result<(), RelayError> {
    let bad = |reason| {
        Err(RelayError::InvalidSubject {
            subject: subject.to_string(),
            reason,
        })
    };
    if subject.is_empty() {
        return bad("empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return bad("empty token (leading, trailing or double '.')");
        }
        if token == "*" || token == ">" {
            return bad("wildcards cannot be published to");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert!(validate_subject("outbox.orders").is_ok());
        assert!(validate_subject("a").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb", "a\nb"] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
    }
}
