//! What the store tells about recovery, integrity checks and compaction
//! passes: plain data, filled in by the parts that do the work.

use std::path::{Path, PathBuf};

/// A range of sequences lost to damage, as reported by a repair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRange {
    /// First lost sequence.
    pub first: u64,
    /// Last lost sequence.
    pub last: u64,
    /// The damaged file.
    pub path: PathBuf,
    /// Offset of the damage in that file.
    pub offset: u64,
}

/// What recovery did to one channel, from [`Store::recovery_report`](crate::Store::recovery_report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelRecovery {
    /// Channel name.
    pub name: String,
    /// Channel id.
    pub id: u64,
    /// Where an unsynced torn tail was cut: (segment file, offset). Messages
    /// from that point on were never reported durable.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Ranges a repair replaced by holes (reads return `Error::Lost`).
    pub lost: Vec<LostRange>,
    /// Bytes of records the open scanned in the last segment: what came
    /// after its index file, or the whole segment without one.
    pub scanned_bytes: u64,
    /// Index files that were missing, stale or corrupt and were rebuilt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Leftover files removed (temporary files, orphan indexes, segments
    /// wholly below the first retained sequence).
    pub removed_files: Vec<PathBuf>,
    /// Repair: files that could not be segments of this channel, renamed
    /// aside (never deleted), with why.
    pub set_aside: Vec<(PathBuf, String)>,
    /// Repair: segment files found under another segment's name, moved back
    /// (from, to).
    pub renamed: Vec<(PathBuf, PathBuf)>,
    /// Repair: segments followed by another one whose seal was damaged or
    /// missing, sealed again where their records end.
    pub resealed: Vec<PathBuf>,
}

/// What recovery found and did when a store was opened, from
/// [`Store::recovery_report`](crate::Store::recovery_report). A store
/// opened after a clean close has nothing to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// One entry per channel, in name order.
    pub channels: Vec<ChannelRecovery>,
    /// The subscribers log.
    pub subscribers: SubscribersRecovery,
    /// Repair restored the catalog from its backup, because of this damage.
    pub catalog_restored: Option<String>,
    /// Repair rewrote `catalog.bak` from the catalog, because of this
    /// (nothing is lost: the backup is a copy).
    pub catalog_backup_rewritten: Option<String>,
    /// Files written by an earlier format version that were upgraded.
    pub upgraded: Vec<PathBuf>,
    /// Repair: directories found where the store's own files (`LOCK`,
    /// `catalog`, `catalog.bak`, `subscribers`) should be, and channel
    /// directories of channels the catalog never knew (it is older than
    /// the data), renamed aside (never deleted): (from, to).
    pub set_aside: Vec<(PathBuf, PathBuf)>,
}

impl RecoveryReport {
    /// The entry of channel `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelRecovery> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Whether repair lost anything: message ranges, subscriber commits, or
    /// catalog changes.
    pub fn lost_anything(&self) -> bool {
        self.channels.iter().any(|c| !c.lost.is_empty())
            || !self.subscribers.lost.is_empty()
            || self.catalog_restored.is_some()
    }
}

/// What recovery did to the subscribers log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribersRecovery {
    /// An unsynced torn tail was cut at this offset (those commits were
    /// never reported durable).
    pub torn_tail: Option<u64>,
    /// Subscribers and queue groups whose latest commit repair lost or
    /// reverted.
    pub lost: Vec<SubscriberLoss>,
    /// Subscribers and queue groups whose latest commit was never durable
    /// and was cut with the torn tail (`reverted_to`: the durable commit
    /// they are back at).
    pub cut: Vec<SubscriberLoss>,
}

/// A subscriber or queue group whose latest commit was lost to damage
/// (or, in [`SubscribersRecovery::cut`], cut with a torn tail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberLoss {
    /// Channel id.
    pub channel_id: u64,
    /// Subscriber (or queue group) name; empty when the damage hid it.
    pub name: String,
    /// The committed position it has now (`None`: it is gone, and
    /// subscribing again starts from its start position).
    pub reverted_to: Option<u64>,
    /// What happened.
    pub detail: String,
}

/// One problem found by [`Store::verify`](crate::Store::verify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// Byte offset in it, where that means something.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// What [`Store::verify`](crate::Store::verify) checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: usize,
    /// Records (and repaired holes) checked, CRC included.
    pub records: u64,
    /// Everything that is wrong; empty for a healthy store.
    pub problems: Vec<Problem>,
    /// Derived data that is stale or torn and will be rebuilt when needed
    /// (an index file after a crash): worth knowing, not wrong.
    pub notes: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, path: &Path, offset: Option<u64>, detail: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            offset,
            detail: detail.into(),
        });
    }

    pub(crate) fn note(&mut self, path: &Path, offset: Option<u64>, detail: impl Into<String>) {
        self.notes.push(Problem {
            path: path.to_path_buf(),
            offset,
            detail: detail.into(),
        });
    }
}

/// How far a long operation ([`Store::verify_with_progress`](crate::Store::verify_with_progress),
/// [`Store::backup_to_with_progress`](crate::Store::backup_to_with_progress)) got, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes done so far.
    pub done: u64,
    /// Bytes to do in all (an estimate taken at the start: files may grow
    /// or go meanwhile; never below `done`).
    pub total: u64,
}

/// What [`Store::backup_to`](crate::Store::backup_to) copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Channels in the copy.
    pub channels: usize,
    /// Messages in the copy (retained ones, all channels).
    pub messages: u64,
    /// Subscribers and queue groups in the copy.
    pub subscribers: usize,
    /// Sealed segment files hard-linked (same file system).
    pub segments_linked: usize,
    /// Segment files copied.
    pub segments_copied: usize,
    /// Bytes of segment records copied.
    pub bytes_copied: u64,
    /// Segments retention removed after the cut, before they were copied:
    /// the copy of their channel starts after them.
    pub retention_skipped: usize,
    /// Whether every channel's end is from one instant. Always for an
    /// owning store; for a read-only one, when it found a moment in which
    /// the owner appended nothing (else each channel's end is from its own
    /// instant, all within one look at the channels).
    pub one_instant: bool,
}

/// What one compaction pass did, from [`Store::compact_now`](crate::Store::compact_now).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Channels whose first retained sequence moved.
    pub channels_trimmed: usize,
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Channels deleted for inactivity.
    pub channels_deleted: Vec<String>,
    /// Whether the subscribers log was rewritten.
    pub subscribers_compacted: bool,
}
