//! Repair (`RecoveryMode::Repair`, only inside `Store::open`): what it does
//! beyond strict recovery to open a damaged channel while keeping every
//! record that validates.
//!
//! - Files that cannot be a segment (a directory in a segment's place, a
//!   file too short for a header and a record, a segment of another
//!   channel) are renamed aside (`<name>.damaged`), never deleted.
//! - Segments found under another segment's name (swapped files) are moved
//!   back to the name their header gives.
//! - A segment followed by another one is scanned whole; damaged spans
//!   become hole frames, and it is sealed again where its records end.
//! - Seqs between the end of one segment and the start of the next (a
//!   missing, truncated or emptied segment) become a hole: a frame at the
//!   end of the earlier segment when it has room, else a small gap segment
//!   holding only that hole. Reads of them return `Error::Lost`, and no seq
//!   is ever handed out twice.
//!
//! Every loss goes into the channel's recovery report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::open::{open_rw, OpenedRw};
use super::scan::{scan, Known, ScanStart};
use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::frame::{encode_hole, FRAME_HEADER_LEN};
use crate::format::segment::{
    index_file_name, parse_index_name, parse_segment_name, segment_file_name, FixedHeader, Slot, FIXED_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::index::Coverage;
use crate::options::MIN_SEGMENT_SIZE;
use crate::report::{ChannelRecovery, LostRange};
use crate::segment::Segment;

/// Renames `path` aside as `<name>.damaged` (a free name), reporting it.
fn set_aside(env: &Env, path: &Path, why: &str, report: &mut ChannelRecovery) -> Result<()> {
    let target = env.storage.set_aside(path)?;
    report.set_aside.push((target, why.to_string()));
    Ok(())
}

/// Puts the channel directory's files in order before recovery reads it:
/// files that cannot be segments are set aside, swapped segments go back
/// to their names. Returns whether anything moved (the directory is then
/// synced).
pub(super) fn repair_layout(env: &Env, dir: &Path, channel_id: u64, report: &mut ChannelRecovery) -> Result<()> {
    let storage = &env.storage;
    let mut moved = false;
    let mut misplaced: Vec<(PathBuf, u64)> = Vec::new();
    for name in storage.list_dir(dir)? {
        if parse_index_name(&name).is_some() && storage.is_dir(&dir.join(&name)) {
            set_aside(
                env,
                &dir.join(&name),
                "a directory where an index file should be",
                report,
            )?;
            moved = true;
            continue;
        }
        // `.swap`: a repair moving swapped files was cut short.
        let Some(base) = parse_segment_name(name.strip_suffix(".swap").unwrap_or(&name)) else {
            continue;
        };
        let path = dir.join(&name);
        if storage.is_dir(&path) {
            set_aside(env, &path, "a directory where a segment file should be", report)?;
            moved = true;
            continue;
        }
        let len = storage.file_len(&path)?;
        if len < (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 {
            set_aside(env, &path, &format!("{len} bytes, too short for a segment"), report)?;
            moved = true;
            continue;
        }
        let Ok(bytes) = storage.read_at(&path, 0, FIXED_LEN) else {
            continue;
        };
        match FixedHeader::decode(&bytes) {
            Ok(h) if h.channel_id != channel_id => {
                set_aside(env, &path, &format!("a segment of channel {}", h.channel_id), report)?;
                moved = true;
            }
            Ok(h) if h.base_seq != base || name.ends_with(".swap") => misplaced.push((path, h.base_seq)),
            // A damaged header is rewritten from the file's place later.
            _ => {}
        }
    }
    // Swapped (or renamed) segments: through temporary names, so two files
    // that took each other's place both get back.
    let mut parked = Vec::new();
    for (path, base) in misplaced {
        let tmp = if path.extension().is_some_and(|e| e == "swap") {
            path.clone()
        } else {
            PathBuf::from(format!("{}.swap", path.display()))
        };
        if tmp != path {
            storage.rename(&path, &tmp)?;
        }
        parked.push((tmp, path, base));
    }
    for (tmp, was, base) in parked {
        let target = dir.join(segment_file_name(base));
        if storage.exists(&target) {
            set_aside(env, &tmp, &format!("a second segment starting at {base}"), report)?;
        } else {
            storage.rename(&tmp, &target)?;
            report.renamed.push((was, target));
        }
        // Its index file belongs to whatever the name held before.
        storage.remove_file(&dir.join(index_file_name(base)))?;
        moved = true;
    }
    if moved {
        storage.sync_dir(dir)?;
    }
    Ok(())
}

/// What repairing a segment followed by another one found.
pub(super) struct Repaired {
    /// Seqs it cannot hold that come before the next segment: the caller
    /// makes a gap segment for them.
    pub gap: Option<(u64, u64)>,
}

/// Scans a segment followed by one starting at `next_base` through a
/// read-write mapping (sealed or not: its seal may be what was damaged),
/// replaces damaged spans with holes, ends it with a hole up to
/// `next_base` when there is room, seals it where its records end, makes
/// that durable and rebuilds its index file. The mapping is dropped
/// afterwards; later reads open the segment read-only like any other.
pub(super) fn repair_sealed(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: Option<u64>,
    report: &mut ChannelRecovery,
) -> Result<Repaired> {
    let OpenedRw {
        seg,
        mut records,
        slots,
        slot,
    } = open_rw(env, channel_id, base, path)?;
    // The last segment (no next one) keeps to its own seal.
    let next_base = match next_base.or(slot.filter(|s| s.sealed).map(|s| s.next_seq)) {
        Some(n) => n,
        None => {
            return Err(Error::corrupt(
                path,
                0,
                "the last segment has no seal to repair against",
            ))
        }
    };
    let sealed = slot.filter(|s| s.sealed && s.next_seq <= next_base);
    let limit = match sealed {
        Some(s) => usize::try_from(s.durable_end)
            .unwrap_or(usize::MAX)
            .min(seg.region.len()),
        None => seg.region.len(),
    };
    // Everything before the next segment was durable.
    let known = Known::new(sealed.unwrap_or_else(|| Slot::empty(base)), next_base - 1);
    let lost_before = report.lost.len();
    let scanned = scan(
        env,
        &seg,
        &mut records,
        known,
        limit,
        ScanStart::first_record(base),
        report,
    )?;
    let (mut end, mut next_seq) = (scanned.end, scanned.next_seq);
    if next_seq > next_base {
        return Err(Error::corrupt(
            path,
            end as u64,
            format!(
                "records run to seq {}, past the next segment's first seq {next_base}",
                next_seq - 1
            ),
        ));
    }
    let mut gap = None;
    if next_seq < next_base {
        let room = end + FRAME_HEADER_LEN <= seg.region.len();
        let hole = encode_hole(seg.seed, next_seq, next_base - 1, FRAME_HEADER_LEN).filter(|_| room);
        match hole {
            Some(hole) => {
                records
                    .zero(end, seg.region.len() - end)
                    .and_then(|()| records.write(end, &hole))
                    .map_err(Error::io_at(IoOp::WriteRecords, path))?;
                report.lost.push(LostRange {
                    first: next_seq,
                    last: next_base - 1,
                    path: path.to_path_buf(),
                    offset: end as u64,
                });
                end += FRAME_HEADER_LEN;
                next_seq = next_base;
            }
            None => gap = Some((next_seq, next_base - 1)),
        }
    }
    let seal = Slot {
        durable_end: end as u64,
        next_seq,
        last_timestamp: scanned.last_timestamp,
        sealed: true,
        ..Slot::empty(base)
    };
    let changed = report.lost.len() > lost_before
        || sealed.map(|s| (s.durable_end, s.next_seq)) != Some((seal.durable_end, seal.next_seq));
    if changed {
        seg.region.sync(0..end).map_err(Error::io_at(IoOp::SyncMapping, path))?;
        let mut slots = super::open::ensure_slot(&seg, slots, slot)?;
        slots.write(seg.seed, path, seal)?;
        seg.region
            .sync(0..SEGMENT_HEADER_LEN)
            .map_err(Error::io_at(IoOp::SyncMapping, path))?;
        if sealed.is_none() {
            report.resealed.push(path.to_path_buf());
        }
    }
    let cov = Coverage {
        end,
        next_seq,
        last_timestamp: scanned.last_timestamp,
    };
    let _ = seg.write_index_file(&env.storage, channel_id, cov);
    report.rebuilt_indexes.push(path.with_file_name(index_file_name(base)));
    Ok(Repaired { gap })
}

/// Creates a sealed gap segment holding one hole frame over `first..=last`
/// (a range repair found missing between two segments).
pub(super) fn make_gap_segment(
    env: &Env,
    dir: &Path,
    channel_id: u64,
    first: u64,
    last: u64,
    last_timestamp: u64,
    report: &mut ChannelRecovery,
) -> Result<PathBuf> {
    let created = Segment::create_durable(env, dir, channel_id, first, MIN_SEGMENT_SIZE)?;
    let seg = Arc::new(created.segment);
    let mut records = created.records;
    let hole = encode_hole(seg.seed, first, last, FRAME_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(&seg.path, 0, "cannot write a hole marker"))?;
    let end = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN;
    records
        .write(SEGMENT_HEADER_LEN, &hole)
        .and_then(|()| records.publish(end))
        .map_err(Error::io_at(IoOp::WriteRecords, &seg.path))?;
    seg.region
        .sync(0..end)
        .map_err(Error::io_at(IoOp::SyncMapping, &seg.path))?;
    let mut slots = created.slots;
    let seal = Slot {
        durable_end: end as u64,
        next_seq: last + 1,
        last_timestamp,
        sealed: true,
        ..Slot::empty(first)
    };
    slots.write(seg.seed, &seg.path, seal)?;
    seg.region
        .sync(0..SEGMENT_HEADER_LEN)
        .map_err(Error::io_at(IoOp::SyncMapping, &seg.path))?;
    report.lost.push(LostRange {
        first,
        last,
        path: seg.path.clone(),
        offset: SEGMENT_HEADER_LEN as u64,
    });
    Ok(seg.path.clone())
}
