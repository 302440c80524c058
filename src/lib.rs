//! spool: an embedded, persistent log store. An application links it and
//! gets named **channels** of sequence-numbered, timestamped messages kept in
//! segmented, memory-mapped files, with crash-safe recovery.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let store = spool::Store::open(dir.path(), spool::Options::default())?;
//! let orders = store.channel("orders")?;
//!
//! let first = orders.publish(b"hello")?;                       // seq 1
//! let batch = orders.publish_batch(&[b"a".as_slice(), b"b"])?; // seqs 2..=3
//! assert_eq!((first, batch), (1, 2..=3));
//!
//! let msg = orders.get(first)?;                                // zero-copy view
//! assert_eq!(msg.payload(), b"hello");
//!
//! let all: Vec<Vec<u8>> = orders
//!     .read_from(1)?
//!     .map(|m| m.map(|m| m.payload().to_vec()))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(all.len(), 3);
//!
//! assert_eq!(orders.seq_at_or_after(msg.timestamp())?, Some(1));
//! orders.sync()?;                                              // durable now
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Subscribers
//!
//! A durable subscriber commits its position together with its own state in
//! one atomic step, and gets both back after any crash:
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let store = spool::Store::open(dir.path(), spool::Options::default())?;
//! let numbers = store.channel("numbers")?;
//! numbers.publish_batch(&[1u64.to_le_bytes(), 2u64.to_le_bytes()])?;
//! let summer = numbers.subscribe("summer", spool::StartAt::First)?;
//! let (_, state) = summer.committed();
//! let mut sum = 0u64;
//! while let Some(msg) = summer.try_recv()? {
//!     sum += u64::from_le_bytes(msg.payload().try_into()?);
//!     summer.commit(msg.seq(), &sum.to_le_bytes())?; // position + state
//! }
//! assert!(state.is_empty());
//! assert_eq!(summer.committed().0, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Queue groups ([`Channel::queue_subscribe`]) share one position among
//! members, hand each message to one member and redeliver what is not
//! acked in time.
//!
//! # Async
//!
//! Every wait has a future, on any executor (spool depends on no runtime):
//! [`Subscriber::recv_async`] and [`Subscriber::stream`],
//! [`QueueMember::recv_async`] and [`QueueMember::stream`], and
//! [`Channel::publish_durable_async`] (with
//! [`publish_batch_durable_async`](Channel::publish_batch_durable_async) and
//! [`synced_through`](Channel::synced_through)), which appends at once and
//! resolves when a sync on spool's background thread has made the message
//! durable. Receives are cancellation-safe: dropping a future or stream
//! loses and skips nothing. Closing the store or deleting the channel ends
//! every pending future with `Closed` / `ChannelDeleted`.
//!
//! ```
//! use futures::StreamExt;
//! # let dir = tempfile::tempdir()?;
//! let store = spool::Store::open(dir.path(), spool::Options::default())?;
//! let orders = store.channel("orders")?;
//! let billing = orders.subscribe("billing", spool::StartAt::First)?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let seq = orders.publish_durable_async(b"order 1").await?; // durable now
//!     let mut stream = billing.stream();
//!     let msg = stream.next().await.expect("a stream ends only after an error")?;
//!     assert_eq!((msg.seq(), msg.payload()), (seq, &b"order 1"[..]));
//!     billing.commit(msg.seq(), b"")
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Durability
//!
//! Every write API documents two levels:
//!
//! - **written**: `publish` returned. The message is in the page cache
//!   through the mapping and survives a crash of the process (panic, abort,
//!   SIGKILL).
//! - **durable**: covered by a completed msync. It survives power loss.
//!   [`SyncPolicy`] picks when that happens: `Never` (you call
//!   [`Channel::sync`] or [`Store::sync`]), `Interval(d)` (a background
//!   flusher syncs every `d`), `Always` (publish returns only once durable;
//!   concurrent publishers share one sync).
//!
//! A failed sync is sticky: the store turns read-only and every later write
//! returns [`Error::Failed`] naming the cause; nothing after the last good
//! sync is reported durable.
//!
//! # Recovery
//!
//! Opening a store after any crash yields, per channel, an exact prefix of
//! what was written: contiguous sequences, identical payloads, everything
//! durable. A torn unsynced tail is cut and the bytes after the cut are
//! zeroed. Damage in data known to be durable is [`Error::Corrupt`] with the
//! file and offset, unless the store is opened with
//! [`RecoveryMode::Repair`], which keeps every intact record and reports the
//! lost ranges in [`Store::recovery_report`].
//!
//! The file format is documented byte by byte in [`docs::format`]; the
//! memory-mapping hazards and how spool avoids them in [`docs::safety`]
//! (the same pages as `docs/format.md` and `docs/safety.md` in the
//! repository).
//!
//! # Platform
//!
//! spool runs on Linux: it relies on `posix_fallocate`, `msync`,
//! `MADV_POPULATE_WRITE`, `flock` and other Unix file APIs, and its crash
//! safety is argued for Linux's page cache.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod catalog;
mod channel;
mod clock;
mod codec;
mod env;
mod error;
mod format;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz_api;
mod group_commit;
mod index;
mod limits;
mod log;
mod message;
mod mmap;
mod options;
mod prefault;
mod report;
mod retention;
mod segment;
mod slots;
mod storage;
mod store;
mod subscriptions;
mod timer;
mod wakeup;
mod worker;

pub use channel::{
    Channel, ChannelStats, DeadLetter, DeadReason, Delivery, DeliveryStream, Durable, QueueMember, QueueOptions, Recv,
    RecvDelivery, StartAt, Subscriber, SubscriberInfo, SubscriberStream, SubscriptionKind,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, IoOp, Result};
pub use format::catalog::MAX_NAME_LEN;
pub use format::SEGMENT_HEADER_LEN;
pub use limits::Limits;
pub use log::Messages;
pub use message::{Message, MessageRef};
pub use options::{
    Options, RecoveryMode, SyncPolicy, DEFAULT_COMPACT_INTERVAL, DEFAULT_INDEX_INTERVAL, DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_STATE, DEFAULT_MAX_SUBSCRIBERS, DEFAULT_POLL_INTERVAL, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
};
pub use report::{
    BackupReport, ChannelRecovery, CompactionReport, LostRange, Problem, Progress, RecoveryReport, SubscriberLoss,
    SubscribersRecovery, VerifyReport,
};
pub use store::Store;

pub use storage::sim;

/// Design documents, rendered here so that they can be read (and linked)
/// with the API docs.
pub mod docs {
    /// The on-disk format, byte by byte (`docs/format.md`).
    pub mod format {
        #![doc = include_str!("../docs/format.md")]
    }
    /// Memory-mapping hazards and how spool avoids them
    /// (`docs/safety.md`).
    pub mod safety {
        #![doc = include_str!("../docs/safety.md")]
    }
}
