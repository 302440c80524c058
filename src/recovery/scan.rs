//! Walking a segment's records at open: validation, index building,
//! repair of damaged spans, and zeroing of a torn tail.

use super::{io_err, ChannelRecovery, LostRange};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::index::{Coverage, IndexEntry};
use crate::mmap::RecordsToken;
use crate::options::RecoveryMode;
use crate::record::{encode_hole, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::segment::{Segment, Slot, SEGMENT_HEADER_LEN};
use crate::writer::needs_index_entry;

/// Result of scanning a segment's records.
pub(super) struct Scan {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) next_seq: u64,
    pub(super) last_timestamp: u64,
    /// First invalid offset above the durable part, with the reason.
    pub(super) stopped: Option<(usize, String)>,
}

/// Validates the frame at `offset` through the writer's token.
pub(super) fn validate_at(
    seg: &Segment,
    records: &RecordsToken,
    offset: usize,
    expected: u64,
    limit: usize,
    at_least: bool,
) -> std::result::Result<FrameHeader, String> {
    let bytes = records
        .read(offset, FRAME_HEADER_LEN)
        .map_err(|_| "record header runs past the end of the file".to_string())?;
    let header = FrameHeader::parse(bytes).ok_or("short record header")?;
    header.check_shape(limit.saturating_sub(offset), expected, at_least)?;
    let payload = records
        .read(offset + FRAME_HEADER_LEN, header.payload_len())
        .map_err(|_| "payload runs past the end of the file".to_string())?;
    if !header.crc_matches(seg.seed, payload) {
        return Err(format!("checksum mismatch in record {}", header.seq));
    }
    Ok(header)
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

/// Scans records from `start`, extending the segment's index. Damage below
/// `durable.durable_end` is `Corrupt` (strict) or replaced by a hole
/// (repair); the first invalid frame above it ends the scan.
pub(super) fn scan(
    env: &Env,
    seg: &Segment,
    records: &mut RecordsToken,
    durable: &Slot,
    limit: usize,
    start: ScanStart,
    report: &mut ChannelRecovery,
) -> Result<Scan> {
    let interval = env.opts.get_index_interval() as usize;
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    let durable_end = usize::try_from(durable.durable_end).unwrap_or(usize::MAX);
    let ScanStart {
        mut offset,
        mut expected,
        mut last_timestamp,
    } = start;
    let mut last_indexed = seg.index.last().map(|e| e.offset);
    let mut stopped = None;
    while offset < limit {
        match validate_at(seg, records, offset, expected, limit, false) {
            Ok(h) => {
                if h.kind() == FrameKind::Message {
                    if needs_index_entry(last_indexed, offset, interval) {
                        seg.index.push(IndexEntry {
                            seq: h.seq,
                            offset,
                            timestamp: h.timestamp,
                        });
                        last_indexed = Some(offset);
                    }
                    last_timestamp = h.timestamp;
                }
                expected = h.next_seq();
                offset += h.frame_len();
            }
            Err(reason) if offset < durable_end => {
                if !repair {
                    return Err(Error::corrupt(&seg.path, offset as u64, reason));
                }
                let (resume, resume_seq) = repair_span(seg, records, offset, expected, limit, durable, &reason)?;
                report.lost.push(LostRange {
                    first: expected,
                    last: resume_seq - 1,
                    path: seg.path.clone(),
                    offset: offset as u64,
                });
                offset = resume;
                expected = resume_seq;
            }
            Err(reason) => {
                stopped = Some((offset, reason));
                break;
            }
        }
    }
    Ok(Scan {
        start: start.offset,
        end: offset,
        next_seq: expected,
        last_timestamp,
        stopped,
    })
}

/// Replaces the damaged span starting at `offset` with a hole frame up to
/// the next valid record (or the durable end); returns where to resume.
pub(super) fn repair_span(
    seg: &Segment,
    records: &mut RecordsToken,
    offset: usize,
    expected: u64,
    limit: usize,
    durable: &Slot,
    reason: &str,
) -> Result<(usize, u64)> {
    let durable_end = usize::try_from(durable.durable_end).unwrap_or(usize::MAX);
    let mut resume = None;
    let mut candidate = offset + FRAME_HEADER_LEN;
    while candidate + FRAME_HEADER_LEN <= limit {
        if let Ok(h) = validate_at(seg, records, candidate, expected.saturating_add(1), limit, true) {
            if h.seq < durable.next_seq || candidate >= durable_end {
                resume = Some((candidate, h.seq));
                break;
            }
        }
        candidate += 8;
    }
    let (resume, resume_seq) = match resume {
        Some(r) => r,
        None if durable.next_seq > expected && durable_end > offset => (durable_end, durable.next_seq),
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
    let io = io_err("write hole marker", &seg.path);
    records.zero(offset, span).map_err(io)?;
    records
        .write(offset, &hole)
        .map_err(io_err("write hole marker", &seg.path))?;
    Ok((resume, resume_seq))
}

/// Zeroes every non-zero byte from `from` to the end of the segment so that
/// stale records after a cut can never validate, and makes that durable
/// before anything is appended there.
pub(super) fn zero_stale_tail(seg: &Segment, records: &mut RecordsToken, from: usize) -> Result<bool> {
    const CHUNK: usize = 4096;
    let len = seg.region.len();
    let mut offset = from;
    let mut zeroed_to = None;
    while offset < len {
        let end = ((offset / CHUNK) + 1) * CHUNK;
        let end = end.min(len);
        let dirty = records
            .read(offset, end - offset)
            .map(|b| b.iter().any(|&x| x != 0))
            .map_err(io_err("read segment tail", &seg.path))?;
        if dirty {
            records
                .zero(offset, end - offset)
                .map_err(io_err("zero segment tail", &seg.path))?;
            zeroed_to = Some(end);
        }
        offset = end;
    }
    if let Some(end) = zeroed_to {
        seg.region
            .sync(from..end)
            .map_err(io_err("sync segment tail", &seg.path))?;
    }
    Ok(zeroed_to.is_some())
}

/// Whether valid frames lead from the index's last entry (or the first
/// record) exactly to `cov.end`, where `cov.next_seq` is due.
pub(super) fn chains_to(seg: &Segment, records: &RecordsToken, cov: Coverage) -> bool {
    let (mut offset, mut expected) = match seg.index.last() {
        Some(e) => (e.offset, e.seq),
        None => (SEGMENT_HEADER_LEN, seg.base),
    };
    while offset < cov.end {
        match validate_at(seg, records, offset, expected, cov.end, false) {
            Ok(h) => {
                offset += h.frame_len();
                expected = h.next_seq();
            }
            Err(_) => return false,
        }
    }
    offset == cov.end && expected == cov.next_seq
}
