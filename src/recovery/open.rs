//! Opening a segment file: fixed header, slots, sealed segments and their
//! index files.

use super::scan::{scan, ScanStart};
use super::{io_err, ChannelRecovery};
use std::path::Path;
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::index::{decode_file, Coverage, IndexExpectation, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::mmap::{HeaderToken, RecordsToken};
use crate::options::RecoveryMode;
use crate::record::FRAME_HEADER_LEN;
use crate::segment::{index_file_name, FixedHeader, Segment, Slot, SEGMENT_HEADER_LEN, SLOT_OFFSETS};

pub(super) struct Opened {
    pub(super) seg: Segment,
    pub(super) records: RecordsToken,
    pub(super) slot: Option<Slot>,
}

/// Maps a segment and validates its fixed header; in repair mode a damaged
/// fixed header is rewritten from what the file name and directory say.
pub(super) fn open_segment(env: &Env, channel_id: u64, base: u64, path: &Path) -> Result<Opened> {
    let file_len = env.storage.file_len(path)?;
    if file_len < (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 {
        return Err(Error::corrupt(
            path,
            0,
            format!("segment file is {file_len} bytes, too short to hold a header and a record; move it aside to open the store without it"),
        ));
    }
    let (region, mut header, records) = env.storage.open_region(path, SEGMENT_HEADER_LEN)?;
    let len = region.len() as u64;
    let fixed_bytes = header.read(0, 64).map_err(io_err("read segment header", path))?;
    let problem = match FixedHeader::decode(fixed_bytes) {
        Ok(h) if h.channel_id != channel_id || h.base_seq != base => Some(format!(
            "header names channel {} base {}, the file's place says channel {channel_id} base {base}",
            h.channel_id, h.base_seq
        )),
        Ok(h) if h.segment_len != len => Some(format!(
            "file is {len} bytes but its header says {} (truncated or extended outside spool)",
            h.segment_len
        )),
        Ok(_) => None,
        Err(reason) => Some(reason),
    };
    if let Some(reason) = problem {
        if env.opts.get_recovery_mode() != RecoveryMode::Repair {
            return Err(Error::corrupt(path, 0, reason));
        }
        rewrite_fixed_header(&mut header, channel_id, base, len, path)?;
    }
    let slot = read_slot(&header, channel_id, base, len);
    let interval = env.opts.get_index_interval() as usize;
    let seg = Segment::new(path.to_path_buf(), channel_id, base, region, header, slot, interval);
    Ok(Opened {
        slot: slot.map(|(s, _)| s),
        seg,
        records,
    })
}

pub(super) fn rewrite_fixed_header(
    header: &mut HeaderToken,
    channel_id: u64,
    base: u64,
    len: u64,
    path: &Path,
) -> Result<()> {
    let fixed = FixedHeader {
        channel_id,
        base_seq: base,
        segment_len: len,
        created_ns: 0,
    };
    header
        .write(0, &fixed.encode())
        .map_err(io_err("rewrite segment header", path))?;
    header
        .region()
        .sync(0..SEGMENT_HEADER_LEN)
        .map_err(io_err("sync segment header", path))
}

/// The newest valid slot and its position.
pub(super) fn read_slot(header: &HeaderToken, channel_id: u64, base: u64, len: u64) -> Option<(Slot, usize)> {
    let seed = crate::record::segment_seed(channel_id, base);
    let mut best: Option<(Slot, usize)> = None;
    for (i, at) in SLOT_OFFSETS.iter().enumerate() {
        let slot = header.read(*at, 32).ok().and_then(|b| Slot::decode(b, seed, base, len));
        if let Some(s) = slot {
            if Slot::newest(best.map(|b| b.0), Some(s)) == Some(s) {
                best = Some((s, i));
            }
        }
    }
    best
}

/// Opens a sealed segment (lazily in strict mode): seal slot checked against
/// the next segment, index loaded or rebuilt.
pub(crate) fn open_sealed(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: Option<u64>,
) -> Result<Arc<Segment>> {
    let mut report = ChannelRecovery::default();
    open_sealed_reporting(env, channel_id, base, path, next_base, &mut report)
}

pub(super) fn open_sealed_reporting(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: Option<u64>,
    report: &mut ChannelRecovery,
) -> Result<Arc<Segment>> {
    let Opened { seg, mut records, slot } = open_segment(env, channel_id, base, path)?;
    let Some(seal) = slot.filter(|s| s.sealed) else {
        return Err(Error::corrupt(
            path,
            SLOT_OFFSETS[0] as u64,
            "segment is followed by another but was never sealed",
        ));
    };
    if let Some(next) = next_base {
        if seal.next_seq != next {
            return Err(Error::corrupt(
                path,
                SLOT_OFFSETS[0] as u64,
                format!("seal says the next segment starts at {}, but it starts at {next} (a segment file is missing or foreign)", seal.next_seq),
            ));
        }
    }
    let end = usize::try_from(seal.durable_end).unwrap_or(usize::MAX);
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    let loaded = if repair {
        None
    } else {
        load_index(env, &seg, channel_id, Some(&seal))
    };
    match loaded {
        Some((index, _)) => finish_sealed(seg.with_index(index, true), records, end, seal),
        None => {
            let start = ScanStart::first_record(base);
            let scan = scan(env, &seg, &mut records, &seal, end, start, report)?;
            if scan.end != end || scan.next_seq != seal.next_seq {
                let detail = scan.stopped.map_or_else(|| "records end early".to_string(), |(_, r)| r);
                return Err(Error::corrupt(
                    path,
                    scan.end as u64,
                    format!("sealed segment damaged: {detail}"),
                ));
            }
            if !report.lost.is_empty() {
                seg.region.sync(0..end).map_err(io_err("sync repaired segment", path))?;
            }
            let cov = Coverage {
                end,
                next_seq: seal.next_seq,
                last_timestamp: seal.last_timestamp,
            };
            let _ = seg.write_index_file(&env.storage, channel_id, cov);
            report.rebuilt_indexes.push(path.with_file_name(index_file_name(base)));
            seg.trust_up_to(end);
            finish_sealed(seg, records, end, seal)
        }
    }
}

pub(super) fn finish_sealed(seg: Segment, mut records: RecordsToken, end: usize, seal: Slot) -> Result<Arc<Segment>> {
    records.publish(end).map_err(io_err("publish segment", &seg.path))?;
    seg.mark_sealed(seal);
    Ok(Arc::new(seg))
}

/// The segment's index file, if it is valid (and, for a sealed segment,
/// covers exactly what the seal says).
pub(super) fn load_index(
    env: &Env,
    seg: &Segment,
    channel_id: u64,
    seal: Option<&Slot>,
) -> Option<(SegmentIndex, Coverage)> {
    let path = seg.path.with_file_name(index_file_name(seg.base));
    let interval = env.opts.get_index_interval() as usize;
    let capacity = SegmentIndex::capacity_for(seg.region.len(), interval);
    let max = (IDX_HEADER_LEN + capacity * IDX_ENTRY_LEN) as u64;
    let bytes = env.storage.read_file(&path, max).ok()?;
    let sealed_at = match seal {
        Some(s) => Some((usize::try_from(s.durable_end).ok()?, s.next_seq)),
        None => None,
    };
    let want = IndexExpectation {
        channel_id,
        base: seg.base,
        records_start: SEGMENT_HEADER_LEN,
        segment_len: seg.region.len(),
        capacity,
        sealed_at,
    };
    decode_file(&bytes, &want).ok()
}
