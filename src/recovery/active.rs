//! Recovering the last segment of a channel, where the writer resumes.

use super::open::{load_index, open_sealed_reporting, open_segment, Opened};
use super::scan::{chains_to, scan, zero_stale_tail, Scan, ScanStart};
use super::{io_err, ChannelRecovery};
use std::sync::Arc;

use crate::env::Env;
use crate::error::Result;
use crate::index::SegmentIndex;
use crate::mmap::RecordsToken;
use crate::options::RecoveryMode;
use crate::prefault::PrefaultCursor;
use crate::segment::{Segment, Slot};
use crate::segments::SegmentSlot;
use crate::writer::Writer;

/// Scans the last segment after the part its index file covers, so that
/// open time follows the unindexed tail, not the segment size. `None` when
/// there is no usable index file or it does not fit the segment; the
/// caller then scans everything.
pub(super) fn scan_after_index(
    env: &Env,
    channel_id: u64,
    seg: Segment,
    records: &mut RecordsToken,
    durable: &Slot,
) -> Assisted {
    let Some((index, cov)) = load_index(env, &seg, channel_id, None) else {
        return Assisted::Unusable(seg);
    };
    let seg = seg.with_index(index, true);
    let start = ScanStart {
        offset: cov.end,
        expected: cov.next_seq,
        last_timestamp: cov.last_timestamp,
    };
    let mut scratch = ChannelRecovery::default();
    let fresh = |seg: Segment| {
        let capacity = seg.index.capacity();
        let base = seg.base;
        seg.with_index(SegmentIndex::new(base, capacity), false)
    };
    // The covered end must be a real record boundary with the claimed seq:
    // walk the frames from the last index entry up to it.
    if !chains_to(&seg, records, cov) {
        return Assisted::Unusable(fresh(seg));
    }
    match scan(env, &seg, records, durable, seg.region.len(), start, &mut scratch) {
        Ok(scanned) => Assisted::Scanned(seg, scanned),
        Err(_) => Assisted::Unusable(fresh(seg)),
    }
}

/// Outcome of `scan_after_index`.
pub(super) enum Assisted {
    Scanned(Segment, Scan),
    /// No usable index file: the segment (with an empty index) is returned
    /// for a full scan.
    Unusable(Segment),
}

/// Recovers the last segment: scan, cut a torn tail, make the result durable.
pub(super) fn recover_active(
    env: &Env,
    channel_id: u64,
    slot: &Arc<SegmentSlot>,
    report: &mut ChannelRecovery,
) -> Result<(Arc<Segment>, Option<Writer>)> {
    let Opened {
        seg,
        mut records,
        slot: found,
    } = open_segment(env, channel_id, slot.base, &slot.path)?;
    if found.is_some_and(|s| s.sealed) {
        drop((seg, records));
        let seg = open_sealed_reporting(env, channel_id, slot.base, &slot.path, None, report)?;
        return Ok((seg, None));
    }
    let durable = found.unwrap_or_else(|| Slot::empty(slot.base));
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    let assisted = if repair {
        Assisted::Unusable(seg)
    } else {
        scan_after_index(env, channel_id, seg, &mut records, &durable)
    };
    let (seg, scanned) = match assisted {
        Assisted::Scanned(seg, scanned) => (seg, scanned),
        Assisted::Unusable(seg) => {
            let limit = seg.region.len();
            let scanned = scan(
                env,
                &seg,
                &mut records,
                &durable,
                limit,
                ScanStart::first_record(slot.base),
                report,
            )?;
            seg.trust_up_to(scanned.end);
            (seg, scanned)
        }
    };
    report.scanned_bytes = (scanned.end - scanned.start) as u64;
    if let Some((offset, _reason)) = &scanned.stopped {
        // After a clean close nothing was written past the durable end, so
        // there is nothing stale to look for there.
        let clean_end = durable.clean && *offset as u64 == durable.durable_end;
        if !clean_end && zero_stale_tail(&seg, &mut records, *offset)? {
            report.torn_tail = Some((slot.path.clone(), *offset as u64));
        }
    }
    if !report.lost.is_empty() {
        seg.region
            .sync(0..scanned.end)
            .map_err(io_err("sync repaired segment", &slot.path))?;
    }
    records
        .publish(scanned.end)
        .map_err(io_err("publish segment", &slot.path))?;
    let seg = Arc::new(seg);
    // What survived is made durable and marked clean (everything after it
    // is zero now), so that everything recovered is durable, the next open
    // need not look past it, and a second open changes nothing. Both are
    // no-ops when the slot already says so.
    seg.sync_to(scanned.end, scanned.next_seq, scanned.last_timestamp)?;
    seg.close_clean(scanned.end, scanned.next_seq, scanned.last_timestamp)?;
    let writer = Writer {
        active: Some((Arc::clone(&seg), records)),
        offset: scanned.end,
        next_seq: scanned.next_seq,
        last_timestamp: scanned.last_timestamp,
        last_indexed: seg.index.last().map(|e| e.offset),
        clean_mark: true,
        prefault: PrefaultCursor::at(scanned.end),
    };
    Ok((seg, Some(writer)))
}
