//! Walking a segment's records at open: validation, index building,
//! repair of damaged spans, and zeroing of a torn tail.

use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::frame::{encode_hole, Frame, FrameCursor, FrameKind, SegmentBytes, FRAME_HEADER_LEN};
use crate::format::segment::{Slot, SEGMENT_HEADER_LEN};
use crate::index::{Coverage, IndexEntry};
use crate::mmap::RecordsToken;
use crate::options::RecoveryMode;
use crate::report::{ChannelRecovery, LostRange};
use crate::segment::Segment;

/// Result of scanning a segment's records.
pub(super) struct Scan {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) next_seq: u64,
    pub(super) last_timestamp: u64,
    /// First invalid offset above the durable part, with the reason.
    pub(super) stopped: Option<(usize, String)>,
}

/// The records zone of a segment as the writer's token sees it (published
/// or not), up to `limit`.
pub(super) fn records_view<'a>(seg: &Segment, records: &'a RecordsToken, limit: usize) -> Result<SegmentBytes<'a>> {
    let len = limit.min(seg.region.len()).saturating_sub(SEGMENT_HEADER_LEN);
    let bytes = records
        .read(SEGMENT_HEADER_LEN, len)
        .map_err(Error::io_at(IoOp::Read, &seg.path))?;
    Ok(SegmentBytes {
        base: SEGMENT_HEADER_LEN,
        bytes,
    })
}

/// What is known durable in a segment: its newest slot, and the last seq
/// known durable from elsewhere (the catalog, durable subscriber commits).
#[derive(Clone, Copy)]
pub(super) struct Known {
    pub(super) slot: Slot,
    pub(super) seq: u64,
    /// How far past an invalid frame above the durable part a record that
    /// validates means damage rather than a torn tail (0: not looked for).
    /// A process crash leaves at most the frame being written torn, with
    /// nothing written after it; a power loss can leave unsynced records
    /// after a gap, so this is set only when the previous owner ran on
    /// this boot, or when the header's slots are lost.
    pub(super) look_past: usize,
}

impl Known {
    pub(super) fn new(slot: Slot, seq: u64) -> Known {
        Known {
            slot,
            seq,
            look_past: 0,
        }
    }
}

/// Where a scan starts: the first record, or the end an index file covers.
#[derive(Clone, Copy)]
pub(super) struct ScanStart {
    pub(super) offset: usize,
    pub(super) expected: u64,
    pub(super) last_timestamp: u64,
}

impl ScanStart {
    pub(super) fn first_record(base: u64) -> ScanStart {
        ScanStart {
            offset: SEGMENT_HEADER_LEN,
            expected: base,
            last_timestamp: 0,
        }
    }
}

/// Whether a record at `offset` gets an index entry.
#[inline]
pub(crate) fn needs_index_entry(last_indexed: Option<usize>, offset: usize, interval: usize) -> bool {
    last_indexed.is_none_or(|last| offset >= last + interval)
}

/// Scans records from `start` up to `limit`, extending the segment's index.
/// Damage in durable data (below `durable.durable_end`, or where a seq up
/// to `durable_seq` is due) is `Corrupt` (strict) or replaced by a hole
/// (repair; or ends the scan where no hole fits); any other invalid frame
/// is a torn tail and ends the scan, unless a record that validates
/// follows it within `known.look_past` (then it is damage too).
pub(super) fn scan(
    env: &Env,
    seg: &Segment,
    records: &mut RecordsToken,
    known: Known,
    limit: usize,
    start: ScanStart,
    report: &mut ChannelRecovery,
) -> Result<Scan> {
    let interval = env.opts.get_index_interval() as usize;
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    let (durable, durable_seq) = (&known.slot, known.seq);
    let durable_end = usize::try_from(durable.durable_end).unwrap_or(usize::MAX);
    let mut cursor = FrameCursor::new(seg.seed, start.offset, start.expected);
    let mut last_timestamp = start.last_timestamp;
    let mut last_indexed = seg.index.last().map(|e| e.offset);
    let mut stopped = None;
    while cursor.offset < limit {
        let view = records_view(seg, records, limit)?;
        match cursor.step(view, true) {
            Ok(frame) => {
                let h = frame.header;
                if h.kind() == FrameKind::Hole && repair && env.repair_resumed {
                    // Made by the interrupted repair, which could not report it.
                    report.lost.push(LostRange {
                        first: h.seq,
                        last: h.timestamp,
                        path: seg.path.clone(),
                        offset: frame.offset as u64,
                    });
                }
                if h.kind() == FrameKind::Message {
                    if needs_index_entry(last_indexed, frame.offset, interval) {
                        seg.index.push(IndexEntry {
                            seq: h.seq,
                            offset: frame.offset,
                            timestamp: h.timestamp,
                        });
                        last_indexed = Some(frame.offset);
                    }
                    last_timestamp = h.timestamp;
                }
            }
            Err(e) if cursor.offset < durable_end || cursor.expected <= durable_seq => {
                if !repair {
                    let why = if cursor.offset < durable_end {
                        format!("{} (below the durable end {durable_end})", e.reason())
                    } else {
                        format!("{} (seq {durable_seq} was durable)", e.reason())
                    };
                    return Err(Error::corrupt(&seg.path, e.offset as u64, why));
                }
                if cursor.offset + FRAME_HEADER_LEN > limit {
                    // No room left for a hole marker (a shortened file):
                    // the records end here; the caller accounts for the
                    // seqs that were due after them.
                    stopped = Some((e.offset, e.reason()));
                    break;
                }
                let (resume, resume_seq) = repair_span(seg, records, cursor, limit, known, &e.reason())?;
                report.lost.push(LostRange {
                    first: cursor.expected,
                    last: resume_seq - 1,
                    path: seg.path.clone(),
                    offset: cursor.offset as u64,
                });
                cursor = FrameCursor::new(seg.seed, resume, resume_seq);
            }
            Err(e) => {
                let until = e.offset.saturating_add(known.look_past).min(limit);
                let Some(next) = valid_record_after(seg, records, cursor, until)? else {
                    stopped = Some((e.offset, e.reason()));
                    break;
                };
                if !repair {
                    return Err(Error::corrupt(
                        &seg.path,
                        e.offset as u64,
                        format!(
                            "{}, but the record of seq {} at offset {} after it validates: the records between are damaged, not a torn tail",
                            e.reason(),
                            next.header.seq,
                            next.offset
                        ),
                    ));
                }
                let (resume, resume_seq) = repair_span(seg, records, cursor, limit, known, &e.reason())?;
                report.lost.push(LostRange {
                    first: cursor.expected,
                    last: resume_seq - 1,
                    path: seg.path.clone(),
                    offset: cursor.offset as u64,
                });
                cursor = FrameCursor::new(seg.seed, resume, resume_seq);
            }
        }
    }
    Ok(Scan {
        start: start.offset,
        end: cursor.offset,
        next_seq: cursor.expected,
        last_timestamp,
        stopped,
    })
}

/// The first record after the invalid frame at `at` (where a hole marker
/// could end) and before `until` that validates with a later seq.
fn valid_record_after(seg: &Segment, records: &RecordsToken, at: FrameCursor, until: usize) -> Result<Option<Frame>> {
    let from = at.offset + FRAME_HEADER_LEN;
    if until <= from {
        return Ok(None);
    }
    let view = records_view(seg, records, until)?;
    let search = FrameCursor::new(seg.seed, from, at.expected.saturating_add(1));
    Ok(search.resync(view, at.expected.saturating_add(1), u64::MAX))
}

/// Replaces the damaged span at `at` with a hole frame up to the next valid
/// record (or the durable end, or just past the hole when nothing after it
/// validates but seqs up to `durable_seq` were durable); returns where to
/// resume and its seq. Never writes over a frame that validates.
pub(super) fn repair_span(
    seg: &Segment,
    records: &mut RecordsToken,
    at: FrameCursor,
    limit: usize,
    known: Known,
    reason: &str,
) -> Result<(usize, u64)> {
    let (durable, durable_seq) = (&known.slot, known.seq);
    let durable_end = usize::try_from(durable.durable_end).unwrap_or(usize::MAX);
    let offset = at.offset;
    let expected = at.expected;
    // A hole needs room for its own header.
    let search = FrameCursor::new(seg.seed, offset + FRAME_HEADER_LEN, expected.saturating_add(1));
    let view = records_view(seg, records, limit)?;
    let found = search.resync(view, expected.saturating_add(1), u64::MAX);
    let (resume, resume_seq) = match found {
        Some(f) => (f.offset, f.header.seq),
        None if durable.next_seq > expected && durable_end > offset => (durable_end, durable.next_seq),
        None if durable_seq >= expected && offset + FRAME_HEADER_LEN <= limit => {
            (offset + FRAME_HEADER_LEN, durable_seq + 1)
        }
        None => {
            return Err(Error::corrupt(
                &seg.path,
                offset as u64,
                format!("{reason}; repair cannot tell which sequences the damage covers"),
            ))
        }
    };
    let span = resume - offset;
    let hole = encode_hole(seg.seed, expected, resume_seq - 1, span).ok_or_else(|| {
        Error::corrupt(
            &seg.path,
            offset as u64,
            format!("{reason}; damaged span of {span} bytes cannot hold a hole marker"),
        )
    })?;
    let io = Error::io_at(IoOp::WriteRecords, &seg.path);
    records
        .zero(offset, span)
        .and_then(|()| records.write(offset, &hole))
        .map_err(io)?;
    Ok((resume, resume_seq))
}

/// Zeroes every non-zero byte from `from` up to `until` (the end of the
/// segment, unless less can hold anything stale) so that stale records
/// after a cut can never validate, and makes that durable before anything
/// is appended there.
pub(super) fn zero_stale_tail(seg: &Segment, records: &mut RecordsToken, from: usize, until: usize) -> Result<bool> {
    const CHUNK: usize = 4096;
    let len = until.min(seg.region.len());
    let mut offset = from;
    let mut zeroed_to = None;
    while offset < len {
        let end = (((offset / CHUNK) + 1) * CHUNK).min(len);
        let dirty = records
            .read(offset, end - offset)
            .map(|b| b.iter().any(|&x| x != 0))
            .map_err(Error::io_at(IoOp::Read, &seg.path))?;
        if dirty {
            records
                .zero(offset, end - offset)
                .map_err(Error::io_at(IoOp::WriteRecords, &seg.path))?;
            zeroed_to = Some(end);
        }
        offset = end;
    }
    if let Some(end) = zeroed_to {
        seg.region
            .sync(from..end)
            .map_err(Error::io_at(IoOp::SyncMapping, &seg.path))?;
    }
    Ok(zeroed_to.is_some())
}

/// Whether valid frames lead from the index's last entry (or the first
/// record) exactly to `cov.end`, where `cov.next_seq` is due.
pub(super) fn chains_to(seg: &Segment, records: &RecordsToken, cov: Coverage) -> bool {
    let mut cursor = match seg.index.last() {
        Some(e) => FrameCursor::new(seg.seed, e.offset, e.seq),
        None => FrameCursor::new(seg.seed, SEGMENT_HEADER_LEN, seg.base),
    };
    let Ok(view) = records_view(seg, records, cov.end) else {
        return false;
    };
    while cursor.offset < cov.end {
        if cursor.step(view, true).is_err() {
            return false;
        }
    }
    cursor.offset == cov.end && cursor.expected == cov.next_seq
}
