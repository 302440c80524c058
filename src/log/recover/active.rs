//! Recovering the last segment of a channel, where the writer resumes.

use std::path::Path;
use std::sync::Arc;

use super::open::{ensure_slot, load_index, open_rw, OpenedRw};
use super::scan::{chains_to, scan, zero_stale_tail, Known, Scan, ScanStart};
use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::frame::frame_len;
use crate::format::segment::{index_file_name, Slot, SLOT_OFFSETS};
use crate::index::SegmentIndex;
use crate::mmap::RecordsToken;
use crate::mmap::MAX_STAGED;
use crate::options::RecoveryMode;
use crate::report::ChannelRecovery;
use crate::segment::Segment;

use super::super::state::Active;

/// The last segment after recovery.
pub(super) enum Last {
    /// It takes appends: the writer resumes at its end.
    Active {
        active: Active,
        next_seq: u64,
        last_timestamp: u64,
        /// The seq after the records known durable.
        durable_next: u64,
    },
    /// It was sealed (the crash came between its seal and the creation of
    /// the next one); the next append rolls.
    Sealed(Slot),
}

/// Scans the last segment (or an unsealed one before it) after the part
/// its index file covers, so that open time follows the unindexed tail,
/// not the segment size. Gives the segment back (with an empty index) when
/// there is no usable index file or it does not fit the segment; the
/// caller then scans everything, and the unusable file (derived data, now
/// misleading) is removed.
pub(super) fn scan_after_index(
    env: &Env,
    channel_id: u64,
    seg: Segment,
    records: &mut RecordsToken,
    known: Known,
) -> std::result::Result<(Segment, Scan), Segment> {
    let assisted = scan_after_index_file(env, channel_id, seg, records, known);
    if let Err(seg) = &assisted {
        let _ = env
            .storage
            .remove_file(&seg.path.with_file_name(index_file_name(seg.base)));
    }
    assisted
}

fn scan_after_index_file(
    env: &Env,
    channel_id: u64,
    seg: Segment,
    records: &mut RecordsToken,
    known: Known,
) -> std::result::Result<(Segment, Scan), Segment> {
    let Some((index, cov)) = load_index(env, &seg.path, seg.base, seg.region.len(), channel_id, None) else {
        return Err(seg);
    };
    let capacity = index.capacity();
    let seg = seg.with_index(index, true);
    let fresh = |seg: Segment| {
        let base = seg.base;
        seg.with_index(SegmentIndex::new(base, capacity), false)
    };
    // The covered end must be a real record boundary with the claimed seq:
    // walk the frames from the last index entry up to it.
    if !chains_to(&seg, records, cov) {
        return Err(fresh(seg));
    }
    let start = ScanStart {
        offset: cov.end,
        expected: cov.next_seq,
        last_timestamp: cov.last_timestamp,
    };
    let mut scratch = ChannelRecovery::default();
    let limit = seg.region.len();
    match scan(env, &seg, records, known, limit, start, &mut scratch) {
        Ok(scanned) => Ok((seg, scanned)),
        Err(_) => Err(fresh(seg)),
    }
}

/// What a crash of the previous owner on this boot can have left
/// half-written past the durable end: one frame, or one staged batch.
fn crash_span(env: &Env) -> usize {
    frame_len(env.opts.get_max_payload() as usize).max(MAX_STAGED)
}

/// How far past a bad frame above the durable part a scan looks for a
/// record that validates (which makes it damage, not a torn tail): the
/// whole segment when the header's slots are lost, the span a crash can
/// have written when the previous owner ran on this boot, else nowhere
/// (after a reboot, unsynced records may survive past a gap).
pub(super) fn look_past(env: &Env, header_lost: bool) -> usize {
    if header_lost {
        usize::MAX
    } else if env.same_boot {
        crash_span(env)
    } else {
        0
    }
}

/// A confirmed segment with no valid slot: it held one from its
/// confirmation on, so its header is damaged.
pub(super) fn header_lost_error(path: &Path) -> Error {
    Error::corrupt(
        path,
        SLOT_OFFSETS[0] as u64,
        "both durability slots of the segment header are damaged, so where its durable records end is unknown; open with RecoveryMode::Repair to keep every record that validates",
    )
}

/// Recovers the last segment: scan, cut a torn tail, make the result durable.
#[allow(clippy::too_many_arguments)]
pub(super) fn recover_last(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    durable_seq: u64,
    confirmed: bool,
    report: &mut ChannelRecovery,
) -> Result<(Arc<Segment>, Last)> {
    let OpenedRw {
        seg,
        mut records,
        slots,
        slot: found,
    } = open_rw(env, channel_id, base, path)?;
    if found.is_some_and(|s| s.sealed) {
        drop((seg, records, slots));
        if env.opts.get_recovery_mode() == RecoveryMode::Repair {
            super::repair::repair_sealed(env, channel_id, base, path, None, report)?;
        }
        let (seg, seal) = super::open::open_sealed(env, channel_id, base, path, None)?;
        return Ok((seg, Last::Sealed(seal)));
    }
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    // A segment on record holds a valid slot from its creation on (each
    // write leaves the other intact): none means its header is damaged,
    // and where its durable records end is unknown.
    let header_lost = found.is_none() && confirmed;
    if header_lost && !repair {
        return Err(header_lost_error(path));
    }
    let durable = found.unwrap_or_else(|| Slot::empty(base));
    let known = Known {
        look_past: look_past(env, header_lost),
        ..Known::new(durable, durable_seq)
    };
    let assisted = if repair {
        // Repair scans everything and may change the records: the index
        // file (derived data) goes, and is written again at the next
        // checkpoint or close.
        env.storage
            .remove_file(&path.with_file_name(crate::format::segment::index_file_name(base)))?;
        Err(seg)
    } else {
        scan_after_index(env, channel_id, seg, &mut records, known)
    };
    let (seg, scanned) = match assisted {
        Ok(found) => found,
        Err(seg) => {
            let limit = seg.region.len();
            let start = ScanStart::first_record(base);
            let scanned = scan(env, &seg, &mut records, known, limit, start, report)?;
            seg.trust_up_to(scanned.end);
            (seg, scanned)
        }
    };
    report.scanned_bytes = (scanned.end - scanned.start) as u64;
    if let Some((offset, _reason)) = &scanned.stopped {
        // After a clean close nothing was written past the durable end, so
        // there is nothing stale to look for there. Otherwise every byte
        // after the cut that is not zero is zeroed: the span a crash can
        // have been writing in is read whole when the previous owner ran on
        // this boot, and beyond it (or, after a reboot, from the cut on)
        // only what the file system says may hold data (the rest reads as
        // zeros without being read). So even a `LOCK` wrongly naming this
        // boot leaves no stale record that could validate later.
        let clean_end = durable.clean && *offset as u64 == durable.durable_end;
        if !clean_end {
            let until = if env.same_boot {
                offset.saturating_add(crash_span(env)).min(seg.region.len())
            } else {
                *offset
            };
            let mut zeroed = zero_stale_tail(&seg, &mut records, *offset, until)?;
            for (from, to) in env.storage.data_ranges(path, until as u64)? {
                let (from, to) = (
                    usize::try_from(from).unwrap_or(usize::MAX),
                    usize::try_from(to).unwrap_or(usize::MAX),
                );
                zeroed |= zero_stale_tail(&seg, &mut records, from.max(until), to)?;
            }
            if zeroed {
                report.torn_tail = Some((path.to_path_buf(), *offset as u64));
            }
        }
    }
    if !report.lost.is_empty() {
        seg.region
            .sync(0..scanned.end)
            .map_err(Error::io_at(IoOp::SyncMapping, path))?;
    }
    records
        .publish(scanned.end)
        .map_err(Error::io_at(IoOp::WriteRecords, path))?;
    // Written (durable with the segment's confirmation, or the next sync)
    // only now that the open goes ahead: a refused open changes nothing.
    let slots = ensure_slot(&seg, slots, found)?;
    let seg = Arc::new(seg);
    let active = Active::new(Arc::clone(&seg), records, slots, scanned.end, confirmed);
    // What the crash left past the durable end is not made durable here
    // (it never was reported durable; the next sync makes it so): open time
    // follows the tail, not what was written. A second open finds the same.
    let durable_next = if durable.durable_end >= scanned.end as u64 || !report.lost.is_empty() {
        scanned.next_seq
    } else {
        // The slot, or the floor (the catalog, durable subscriber commits).
        durable
            .next_seq
            .max(durable_seq.saturating_add(1))
            .min(scanned.next_seq)
    };
    Ok((
        seg,
        Last::Active {
            active,
            next_seq: scanned.next_seq,
            last_timestamp: scanned.last_timestamp,
            durable_next,
        },
    ))
}
