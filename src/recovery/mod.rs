//! Opening a channel's segments after a clean close or any crash.
//!
//! Strict mode reads only what it must: the last segment is scanned past the
//! end its index file covers (from its first record without one); sealed
//! segments are opened lazily on first read and trusted through their seal
//! slot, their records validated as they are read. Repair mode scans
//! everything and replaces damaged spans with hole frames.
//!
//! `open`: mapping a segment, its header, slots and index file.
//! `scan`: walking records, repairing damage, zeroing a torn tail.
//! `active`: the last segment, where the writer resumes.
//!
//! This module never unwraps, never indexes without a bound check, and never
//! allocates from a length read from a file.

mod active;
mod open;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::options::RecoveryMode;
use crate::prefault::PrefaultCursor;
use crate::segment::{index_file_name, parse_segment_name, segment_file_name, Slot, SEGMENT_HEADER_LEN};
use crate::segments::SegmentSlot;
use crate::writer::Writer;
use active::recover_active;
use open::open_sealed_reporting;

pub(crate) use open::open_sealed;

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

/// What recovery did to one channel.
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
}

impl RecoveredChannel {
    /// A channel with no segment yet, whose next seq is `next_seq`.
    pub(crate) fn empty(next_seq: u64) -> RecoveredChannel {
        RecoveredChannel {
            segments: Vec::new(),
            writer: Writer {
                active: None,
                offset: SEGMENT_HEADER_LEN,
                next_seq,
                last_timestamp: 0,
                last_indexed: None,
                clean_mark: false,
                prefault: PrefaultCursor::default(),
            },
            first_seq: next_seq,
            report: ChannelRecovery::default(),
        }
    }
}

/// A recovered channel, ready to become a `ChannelCore`.
pub(crate) struct RecoveredChannel {
    pub segments: Vec<Arc<SegmentSlot>>,
    pub writer: Writer,
    pub first_seq: u64,
    pub report: ChannelRecovery,
}

pub(super) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Opens one channel directory: cleans leftovers, drops segments wholly
/// below `first_seq`, recovers the last segment.
pub(crate) fn recover_channel(
    env: &Env,
    dir: &Path,
    name: &str,
    channel_id: u64,
    first_seq: u64,
) -> Result<RecoveredChannel> {
    let storage = &env.storage;
    let mut report = ChannelRecovery {
        name: name.to_string(),
        id: channel_id,
        ..ChannelRecovery::default()
    };
    if !storage.exists(dir) {
        // The catalog was written but the directory not yet created.
        storage.create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent)?;
        }
    }
    let names = storage.list_dir(dir)?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();
    let mut removed_any = false;
    for n in &names {
        let orphan_index = n
            .strip_suffix(".idx")
            .and_then(|d| d.parse::<u64>().ok())
            .is_some_and(|b| !bases.contains(&b));
        if n.ends_with(".tmp") || orphan_index {
            storage.remove_file(&dir.join(n))?;
            report.removed_files.push(dir.join(n));
            removed_any = true;
        }
    }
    // Segments whose successor starts at or below first_seq hold nothing
    // retained; they may be back after a crash during retention.
    while bases.len() > 1 && bases.get(1).is_some_and(|&next| next <= first_seq) {
        let base = bases.remove(0);
        for file in [segment_file_name(base), index_file_name(base)] {
            storage.remove_file(&dir.join(&file))?;
            report.removed_files.push(dir.join(file));
        }
        removed_any = true;
    }
    if removed_any {
        storage.sync_dir(dir)?;
    }
    let slots: Vec<Arc<SegmentSlot>> = bases
        .iter()
        .map(|&b| SegmentSlot::new(b, dir.join(segment_file_name(b))))
        .collect();
    let mut first = first_seq;
    if let Some(first_base) = bases.first() {
        if *first_base > first_seq {
            let path = dir.join(segment_file_name(*first_base));
            if env.opts.get_recovery_mode() != RecoveryMode::Repair {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("first segment starts at {first_base} but the catalog retains from {first_seq}: segment files are missing"),
                ));
            }
            report.lost.push(LostRange {
                first: first_seq,
                last: first_base - 1,
                path,
                offset: 0,
            });
            first = *first_base;
        }
    }
    let mut segments = Vec::with_capacity(slots.len());
    let mut writer = Writer {
        active: None,
        offset: SEGMENT_HEADER_LEN,
        next_seq: first,
        last_timestamp: 0,
        last_indexed: None,
        clean_mark: false,
        prefault: PrefaultCursor::default(),
    };
    let count = slots.len();
    for (i, slot) in slots.into_iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        if i + 1 == count {
            let (seg, active) = recover_active(env, channel_id, &slot, &mut report)?;
            match active {
                Some(w) => writer = w,
                None => {
                    let seal = seg.seal_info().unwrap_or_else(|| Slot::empty(slot.base));
                    writer.next_seq = seal.next_seq;
                    writer.last_timestamp = seal.last_timestamp;
                }
            }
            segments.push(SegmentSlot::opened(seg));
        } else if env.opts.get_recovery_mode() == RecoveryMode::Repair {
            // Scanned and repaired now; opened again lazily like any other.
            open_sealed_reporting(env, channel_id, slot.base, &slot.path, next_base, &mut report)?;
            segments.push(slot);
        } else {
            segments.push(slot);
        }
    }
    Ok(RecoveredChannel {
        segments,
        writer,
        first_seq: first,
        report,
    })
}
