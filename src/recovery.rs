//! Opening a channel's segments after a clean close or any crash.
//!
//! Strict mode reads only what it must: the last segment is scanned from its
//! first record (bounded by the segment size, not the store size); sealed
//! segments are opened lazily on first read and trusted through their seal
//! slot, their records validated as they are read. Repair mode scans
//! everything and replaces damaged spans with hole frames.
//!
//! This module never unwraps, never indexes without a bound check, and never
//! allocates from a length read from a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::index::{decode_file, Coverage, IndexEntry, IndexExpectation, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::mmap::{HeaderToken, RecordsToken};
use crate::options::RecoveryMode;
use crate::prefault::PrefaultCursor;
use crate::record::{encode_hole, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::segment::{
    index_file_name, parse_segment_name, segment_file_name, FixedHeader, Segment, Slot, SEGMENT_HEADER_LEN,
    SLOT_OFFSETS,
};
use crate::segments::SegmentSlot;
use crate::writer::{needs_index_entry, Writer};

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

/// A recovered channel, ready to become a `ChannelCore`.
pub(crate) struct RecoveredChannel {
    pub segments: Vec<Arc<SegmentSlot>>,
    pub writer: Writer,
    pub first_seq: u64,
    pub last_timestamp: u64,
    pub report: ChannelRecovery,
}

/// Result of scanning a segment's records.
struct Scan {
    start: usize,
    end: usize,
    next_seq: u64,
    last_timestamp: u64,
    /// First invalid offset above the durable part, with the reason.
    stopped: Option<(usize, String)>,
}

struct Opened {
    seg: Segment,
    records: RecordsToken,
    slot: Option<Slot>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Maps a segment and validates its fixed header; in repair mode a damaged
/// fixed header is rewritten from what the file name and directory say.
fn open_segment(env: &Env, channel_id: u64, base: u64, path: &Path) -> Result<Opened> {
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

fn rewrite_fixed_header(header: &mut HeaderToken, channel_id: u64, base: u64, len: u64, path: &Path) -> Result<()> {
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
fn read_slot(header: &HeaderToken, channel_id: u64, base: u64, len: u64) -> Option<(Slot, usize)> {
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

/// Validates the frame at `offset` through the writer's token.
fn validate_at(
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
struct ScanStart {
    offset: usize,
    expected: u64,
    last_timestamp: u64,
}

impl ScanStart {
    fn first_record(base: u64) -> ScanStart {
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
fn scan(
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
fn repair_span(
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
fn zero_stale_tail(seg: &Segment, records: &mut RecordsToken, from: usize) -> Result<bool> {
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

fn open_sealed_reporting(
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

fn finish_sealed(seg: Segment, mut records: RecordsToken, end: usize, seal: Slot) -> Result<Arc<Segment>> {
    records.publish(end).map_err(io_err("publish segment", &seg.path))?;
    seg.mark_sealed(seal);
    Ok(Arc::new(seg))
}

/// Whether valid frames lead from the index's last entry (or the first
/// record) exactly to `cov.end`, where `cov.next_seq` is due.
fn chains_to(seg: &Segment, records: &RecordsToken, cov: Coverage) -> bool {
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

/// The segment's index file, if it is valid (and, for a sealed segment,
/// covers exactly what the seal says).
fn load_index(env: &Env, seg: &Segment, channel_id: u64, seal: Option<&Slot>) -> Option<(SegmentIndex, Coverage)> {
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

/// Scans the last segment after the part its index file covers, so that
/// open time follows the unindexed tail, not the segment size. `None` when
/// there is no usable index file or it does not fit the segment; the
/// caller then scans everything.
fn scan_after_index(env: &Env, channel_id: u64, seg: Segment, records: &mut RecordsToken, durable: &Slot) -> Assisted {
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
enum Assisted {
    Scanned(Segment, Scan),
    /// No usable index file: the segment (with an empty index) is returned
    /// for a full scan.
    Unusable(Segment),
}

/// Recovers the last segment: scan, cut a torn tail, make the result durable.
fn recover_active(
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
    let last_timestamp = writer.last_timestamp;
    Ok(RecoveredChannel {
        segments,
        writer,
        first_seq: first,
        last_timestamp,
        report,
    })
}
