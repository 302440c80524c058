//! The one error type of the crate, and the I/O operations it names.
//!
//! Display follows the usual convention for error chains: a variant that
//! wraps another error says what spool was doing and returns the wrapped
//! error from `source()` instead of printing it too, so `anyhow`/`eyre`
//! reports show each cause once.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout spool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The file operation that failed, in an [`Error::Io`].
///
/// Whether a failure turns the store read-only is a property of the
/// operation ([`IoOp::is_durability_point`]), not of how it is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Creating a directory.
    CreateDir,
    /// Listing a directory.
    ListDir,
    /// Reading a small file (catalog, index, subscribers log).
    Read,
    /// Writing a small file.
    Write,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Removing a directory.
    RemoveDir,
    /// Reading a file's metadata.
    Stat,
    /// Opening a file.
    Open,
    /// Creating (and reserving the blocks of) a segment or log file.
    Create,
    /// Mapping a file into memory.
    Map,
    /// Taking or writing the store's lock file.
    Lock,
    /// Writing records (or a header slot, a hole marker, zeros) into a
    /// mapped file, or through it with `pwrite`.
    WriteRecords,
    /// Changing a file's length.
    Truncate,
    /// `fdatasync` of a file.
    SyncFile,
    /// `fsync` of a directory.
    SyncDir,
    /// `msync(MS_SYNC)` of a mapped range.
    SyncMapping,
    /// Starting a background thread.
    SpawnThread,
}

impl IoOp {
    /// A failure of this operation leaves unknown what is durable (a failed
    /// sync may have dropped dirty pages; a failed write may have changed
    /// part of a range), so the store turns read-only until reopened.
    pub fn is_durability_point(self) -> bool {
        matches!(
            self,
            IoOp::SyncFile | IoOp::SyncDir | IoOp::SyncMapping | IoOp::WriteRecords | IoOp::Truncate
        )
    }

    fn describe(self) -> &'static str {
        match self {
            IoOp::CreateDir => "create directory",
            IoOp::ListDir => "list directory",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::RemoveDir => "remove directory",
            IoOp::Stat => "stat",
            IoOp::Open => "open",
            IoOp::Create => "create",
            IoOp::Map => "map",
            IoOp::Lock => "lock",
            IoOp::WriteRecords => "write records",
            IoOp::Truncate => "truncate",
            IoOp::SyncFile => "sync file",
            IoOp::SyncDir => "sync directory",
            IoOp::SyncMapping => "sync mapping",
            IoOp::SpawnThread => "spawn thread",
        }
    }
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Everything that can go wrong in spool. Each variant's `Display` is a
/// sentence that says what happened and what to do about it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = spool::Store::open(dir.path(), spool::Options::default())?;
/// let orders = store.channel("orders")?;
/// match orders.get(42) {
///     Err(spool::Error::OutOfRange { first, last, .. }) => assert_eq!((first, last), (1, 0)),
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), spool::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a file failed. When the system refused
    /// it for lack of permission (`EACCES`, `EPERM`) the message says so.
    #[error("{op} failed for {}{}", path.display(), permission_text(source))]
    Io {
        /// What spool was doing.
        op: IoOp,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another `Store` (in this process or another) holds the directory.
    #[error("store is locked: {} is held by another open Store{}; close that Store or use another directory", path.display(), holder_pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid recorded by the holder, when it could be read.
        holder_pid: Option<u32>,
    },
    /// A channel name that spool does not accept.
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name (lossy if it was not UTF-8).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An option value outside what spool supports.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A payload longer than `Options::max_payload`.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes (Options::max_payload)")]
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A sequence number outside the channel's `[first, last]`.
    #[error("sequence {requested} is out of range: {}", range_text(*first, *last))]
    OutOfRange {
        /// The sequence asked for.
        requested: u64,
        /// The first retained sequence.
        first: u64,
        /// The last published sequence (`first - 1` when the channel is empty).
        last: u64,
    },
    /// The message was destroyed by on-disk damage and removed by a repair.
    #[error("sequence {requested} was lost to on-disk damage (repair removed {first_lost}..={last_lost})")]
    Lost {
        /// The sequence asked for.
        requested: u64,
        /// First sequence of the lost range.
        first_lost: u64,
        /// Last sequence of the lost range.
        last_lost: u64,
    },
    /// A file's content fails validation where spool knows it was durable.
    #[error("corrupt data in {} at offset {offset}: {detail}; open with RecoveryMode::Repair to keep what is intact", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What failed to validate.
        detail: String,
    },
    /// An earlier sync (or a background thread) failed; the store refuses
    /// writes until it is reopened. The first failure is the `source()`.
    #[error("store is read-only after an earlier failure; nothing after the last good sync is durable, reopen the store to recover")]
    Failed {
        /// The first failure, shared by every later error.
        #[source]
        cause: Arc<Error>,
    },
    /// A background thread of the store panicked; the store is poisoned
    /// (every later write returns `Failed` with this as its cause).
    #[error("the background thread {thread} panicked; the store is poisoned, reopen it to recover")]
    BackgroundPanic {
        /// The thread's name.
        thread: &'static str,
    },
    /// The channel was deleted; this handle can no longer be used.
    #[error("channel {name:?} (id {id}) was deleted; open it again by name to get the new incarnation")]
    ChannelDeleted {
        /// The channel's name.
        name: String,
        /// The deleted incarnation's id.
        id: u64,
    },
    /// No channel of that name exists.
    #[error("no channel named {name:?} exists")]
    NoSuchChannel {
        /// The name asked for.
        name: String,
    },
    /// The store was closed.
    #[error("the store was closed")]
    Closed,
    /// A handle to this durable subscriber is already open.
    #[error("subscriber {name:?} of channel {channel:?} is already open; close the other handle first")]
    SubscriberInUse {
        /// Channel name.
        channel: String,
        /// Subscriber name.
        name: String,
    },
    /// The name belongs to a subscriber of the other kind (plain vs queue group).
    #[error("subscriber {name:?} exists but is not {expected}; use another name")]
    SubscriberKind {
        /// Subscriber name.
        name: String,
        /// What this call needed.
        expected: &'static str,
    },
    /// The channel already has `Options::max_subscribers` subscribers.
    #[error("channel {channel:?} already has {max} subscribers (Options::max_subscribers); unsubscribe one or raise the limit")]
    TooManySubscribers {
        /// Channel name.
        channel: String,
        /// The limit.
        max: usize,
    },
    /// No durable subscriber of that name on that channel.
    #[error("channel {channel:?} has no subscriber named {name:?}")]
    NoSuchSubscriber {
        /// Channel name.
        channel: String,
        /// Subscriber name.
        name: String,
    },
    /// A commit past the last published message.
    #[error("cannot commit sequence {requested}: the channel's last message is {last}")]
    CommitBeyondEnd {
        /// The seq given.
        requested: u64,
        /// The channel's last seq.
        last: u64,
    },
    /// A commit below the subscriber's committed position.
    #[error("cannot commit sequence {requested}: the subscriber already committed {committed}, and positions only move forward")]
    CommitBehind {
        /// The seq given.
        requested: u64,
        /// The committed position.
        committed: u64,
    },
    /// Subscriber state larger than `Options::max_state`.
    #[error("subscriber state of {len} bytes exceeds the maximum of {max} bytes (Options::max_state)")]
    StateTooLarge {
        /// The state's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A write (publish, commit, sync, subscribe, channel creation or
    /// deletion, compaction...) on a store opened read-only
    /// ([`Store::open_read_only`](crate::Store::open_read_only)).
    #[error("the store at {} is open read-only: writes are refused (open it with Store::open to write)", path.display())]
    ReadOnly {
        /// The store's directory.
        path: PathBuf,
    },
    /// The path is not a spool store (and the open was not allowed to
    /// create one there, or must not: a directory holding other files).
    #[error("no spool store at {}: {detail}", path.display())]
    NotAStore {
        /// The directory (or file) named.
        path: PathBuf,
        /// What was found there instead.
        detail: String,
    },
    /// The sync a durability future waited for failed without turning the
    /// store read-only (for example, the disk was full when a new segment
    /// was recorded in the catalog). The messages stay written; await
    /// `Channel::synced_through` again, or call `Channel::sync`, to retry.
    /// The failure is the `source()`.
    #[error("the sync this future waited for failed; the messages are written but not known durable, await synced_through again or call sync to retry")]
    SyncFailed {
        /// Why the sync failed, shared by every future it covered.
        #[source]
        cause: Arc<Error>,
    },
    /// An ack for a message that is not in flight to this queue member.
    #[error("cannot ack, nak, term or extend sequence {seq}: it is not in flight to this queue member (never delivered to it, already acked, or redelivered elsewhere after ack_wait)")]
    NotDelivered {
        /// The seq acked.
        seq: u64,
    },
    /// `DeadLetter::from_message` on a message without a dead-letter
    /// envelope.
    #[error("message {seq} is not a dead letter (it has no SPDL envelope): read dead letters from the channel set as a queue group's QueueOptions::dead_letter, and publish nothing else there")]
    NotDeadLetter {
        /// The message's seq.
        seq: u64,
    },
}

/// Names a permission problem as such (the `source()` still carries the
/// system's own words).
fn permission_text(source: &io::Error) -> &'static str {
    let denied = source.kind() == io::ErrorKind::PermissionDenied
        || matches!(source.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM));
    if denied {
        ": permission denied (this user may not access the store's files; \
         Store::open_read_only needs only read access)"
    } else {
        ""
    }
}

fn range_text(first: u64, last: u64) -> String {
    if last < first {
        format!("the channel is empty (next sequence {first})")
    } else {
        format!("the channel holds {first}..={last}")
    }
}

impl Error {
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A closure turning an `io::Error` into `Error::Io` for `op` on `path`.
    pub(crate) fn io_at<'a>(op: IoOp, path: &'a std::path::Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |e| Error::io(op, path, e)
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_option(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidOption {
            name,
            reason: reason.into(),
        }
    }

    /// Whether this is an I/O error the system refused for lack of
    /// permission (`EACCES`, `EPERM`), here or in a `Failed` cause.
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Error::Io { source, .. } => !permission_text(source).is_empty(),
            Error::Failed { cause } => cause.is_permission_denied(),
            _ => false,
        }
    }

    /// Whether this failure must make the store read-only (see
    /// [`IoOp::is_durability_point`]).
    pub(crate) fn is_durability_failure(&self) -> bool {
        matches!(self, Error::Io { op, .. } if op.is_durability_point())
    }
}
