//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout spool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in spool. Each variant's `Display` is a
/// sentence that says what happened and what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a file failed.
    Io {
        /// What spool was doing ("create segment", "rename catalog", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another `Store` (in this process or another) holds the directory.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid recorded by the holder, when it could be read.
        holder_pid: Option<u32>,
    },
    /// A channel name that spool does not accept.
    InvalidName {
        /// The rejected name (lossy if it was not UTF-8).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An option value outside what spool supports.
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A payload longer than `Options::max_payload`.
    PayloadTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A sequence number outside the channel's `[first, last]`.
    OutOfRange {
        /// The sequence asked for.
        requested: u64,
        /// The first retained sequence.
        first: u64,
        /// The last published sequence (`first - 1` when the channel is empty).
        last: u64,
    },
    /// The message was destroyed by on-disk damage and removed by a repair.
    Lost {
        /// The sequence asked for.
        requested: u64,
        /// First sequence of the lost range.
        first_lost: u64,
        /// Last sequence of the lost range.
        last_lost: u64,
    },
    /// A file's content fails validation where spool knows it was durable.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What failed to validate.
        detail: String,
    },
    /// An earlier sync (or a background thread) failed; the store refuses
    /// writes until it is reopened.
    Failed {
        /// The first failure, shared by every later error.
        cause: Arc<Error>,
    },
    /// The channel was deleted; this handle can no longer be used.
    ChannelDeleted {
        /// The channel's name.
        name: String,
        /// The deleted incarnation's id.
        id: u64,
    },
    /// No channel of that name exists.
    NoSuchChannel {
        /// The name asked for.
        name: String,
    },
    /// The store was closed.
    Closed,
    /// A handle to this durable subscriber is already open.
    SubscriberInUse {
        /// Channel name.
        channel: String,
        /// Subscriber name.
        name: String,
    },
    /// The name belongs to a subscriber of the other kind (plain vs queue group).
    SubscriberKind {
        /// Subscriber name.
        name: String,
        /// What this call needed.
        expected: &'static str,
    },
    /// The channel already has `Options::max_subscribers` subscribers.
    TooManySubscribers {
        /// Channel name.
        channel: String,
        /// The limit.
        max: usize,
    },
    /// No durable subscriber of that name on that channel.
    NoSuchSubscriber {
        /// Channel name.
        channel: String,
        /// Subscriber name.
        name: String,
    },
    /// A commit past the last published message.
    CommitBeyondEnd {
        /// The seq given.
        requested: u64,
        /// The channel's last seq.
        last: u64,
    },
    /// A commit below the subscriber's committed position.
    CommitBehind {
        /// The seq given.
        requested: u64,
        /// The committed position.
        committed: u64,
    },
    /// Subscriber state larger than `Options::max_state`.
    StateTooLarge {
        /// The state's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An ack for a message that is not in flight to this queue member.
    NotDelivered {
        /// The seq acked.
        seq: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "{op} failed for {}: {source}", path.display())
            }
            Error::Locked { path, holder_pid } => {
                write!(f, "store is locked: {} is held by another open Store", path.display())?;
                if let Some(pid) = holder_pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(f, "; close that Store or use another directory")
            }
            Error::InvalidName { name, reason } => {
                write!(f, "invalid channel name {name:?}: {reason}")
            }
            Error::InvalidOption { name, reason } => write!(f, "invalid option {name}: {reason}"),
            Error::PayloadTooLarge { len, max } => write!(
                f,
                "payload of {len} bytes exceeds the maximum of {max} bytes (Options::max_payload)"
            ),
            Error::OutOfRange {
                requested,
                first,
                last,
            } => {
                if last < first {
                    write!(f, "sequence {requested} is out of range: the channel is empty (next sequence {first})")
                } else {
                    write!(
                        f,
                        "sequence {requested} is out of range: the channel holds {first}..={last}"
                    )
                }
            }
            Error::Lost {
                requested,
                first_lost,
                last_lost,
            } => write!(
                f,
                "sequence {requested} was lost to on-disk damage (repair removed {first_lost}..={last_lost})"
            ),
            Error::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "corrupt data in {} at offset {offset}: {detail}; open with RecoveryMode::Repair to keep what is intact",
                path.display()
            ),
            Error::Failed { cause } => write!(
                f,
                "store is read-only after an earlier failure ({cause}); nothing after the last good sync is durable, reopen the store to recover"
            ),
            Error::ChannelDeleted { name, id } => {
                write!(f, "channel {name:?} (id {id}) was deleted; open it again by name to get the new incarnation")
            }
            Error::NoSuchChannel { name } => write!(f, "no channel named {name:?} exists"),
            Error::Closed => write!(f, "the store was closed"),
            Error::SubscriberInUse { channel, name } => write!(
                f,
                "subscriber {name:?} of channel {channel:?} is already open; close the other handle first"
            ),
            Error::SubscriberKind { name, expected } => {
                write!(f, "subscriber {name:?} exists but is not {expected}; use another name")
            }
            Error::TooManySubscribers { channel, max } => write!(
                f,
                "channel {channel:?} already has {max} subscribers (Options::max_subscribers); unsubscribe one or raise the limit"
            ),
            Error::NoSuchSubscriber { channel, name } => {
                write!(f, "channel {channel:?} has no subscriber named {name:?}")
            }
            Error::CommitBeyondEnd { requested, last } => write!(
                f,
                "cannot commit sequence {requested}: the channel's last message is {last}"
            ),
            Error::CommitBehind { requested, committed } => write!(
                f,
                "cannot commit sequence {requested}: the subscriber already committed {committed}, and positions only move forward"
            ),
            Error::StateTooLarge { len, max } => write!(
                f,
                "subscriber state of {len} bytes exceeds the maximum of {max} bytes (Options::max_state)"
            ),
            Error::NotDelivered { seq } => write!(
                f,
                "cannot ack sequence {seq}: it is not in flight to this queue member (never delivered to it, already acked, or redelivered elsewhere after ack_wait)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Failed { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
