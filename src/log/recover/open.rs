//! Opening a segment file: fixed header, slots, sealed segments and their
//! index files.

use std::path::Path;
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::frame::{FrameCursor, FrameKind, SegmentBytes, FRAME_HEADER_LEN};
use crate::format::segment::{index_file_name, FixedHeader, Slot, FIXED_LEN, SEGMENT_HEADER_LEN, SLOT_OFFSETS};
use crate::index::{decode_file, Coverage, IndexEntry, IndexExpectation, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::mmap::{HeaderToken, RecordsToken};
use crate::options::RecoveryMode;
use crate::segment::Segment;

use super::super::state::SlotWriter;
use super::scan::needs_index_entry;

/// A segment mapped read-write, with its tokens.
pub(super) struct OpenedRw {
    pub(super) seg: Segment,
    pub(super) records: RecordsToken,
    pub(super) slots: SlotWriter,
    /// The newest valid slot.
    pub(super) slot: Option<Slot>,
}

/// Why a fixed header does not fit its file, if it does not.
pub(in crate::log) fn fixed_header_problem(bytes: &[u8], channel_id: u64, base: u64, len: u64) -> Option<String> {
    match FixedHeader::decode(bytes) {
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
    }
}

fn check_len(path: &Path, file_len: u64) -> Result<()> {
    if file_len < (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 {
        return Err(Error::corrupt(
            path,
            0,
            format!("segment file is {file_len} bytes, too short to hold a header and a record; move it aside to open the store without it"),
        ));
    }
    Ok(())
}

/// The segment file's length, once it is known to be a file long enough
/// for a header and a record (checked before the file is mapped).
fn checked_len(env: &Env, path: &Path) -> Result<u64> {
    check_is_file(env, path)?;
    let file_len = env.storage.file_len(path)?;
    check_len(path, file_len)?;
    Ok(file_len)
}

/// The segment file's length and its header bytes, read before mapping.
pub(in crate::log) fn read_header(env: &Env, path: &Path) -> Result<(u64, Vec<u8>)> {
    let file_len = checked_len(env, path)?;
    Ok((file_len, env.storage.read_at(path, 0, SEGMENT_HEADER_LEN)?))
}

/// A directory (or anything but a file) where a segment should be.
fn check_is_file(env: &Env, path: &Path) -> Result<()> {
    if env.storage.is_dir(path) {
        return Err(Error::corrupt(
            path,
            0,
            "a directory is where this segment file should be",
        ));
    }
    Ok(())
}

/// Maps a segment read-write (the last segment at open, or any segment a
/// repair scans) and validates its fixed header; in repair mode a damaged
/// fixed header is rewritten from what the file name and directory say.
pub(super) fn open_rw(env: &Env, channel_id: u64, base: u64, path: &Path) -> Result<OpenedRw> {
    // Length and header are checked before the file is mapped.
    let file_len = checked_len(env, path)?;
    let fixed = env.storage.read_at(path, 0, FIXED_LEN)?;
    let mut problem = fixed_header_problem(&fixed, channel_id, base, file_len);
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    if let (true, Some(_), Ok(h)) = (repair, &problem, FixedHeader::decode(&fixed)) {
        let own = h.channel_id == channel_id && h.base_seq == base;
        if own && h.segment_len > file_len && h.segment_len <= crate::options::MAX_SEGMENT_SIZE {
            // Shortened outside spool: the file gets its length back (with
            // zeros), so records cut only in their padding stay whole and
            // what was cut becomes damage found by the scan.
            env.storage.extend_file(path, h.segment_len)?;
            problem = None;
        }
    }
    if let (Some(reason), false) = (&problem, repair) {
        return Err(Error::corrupt(path, 0, reason.clone()));
    }
    let (region, mut header, records) = env.storage.open_region(path, SEGMENT_HEADER_LEN)?;
    let len = region.len() as u64;
    if problem.is_some() {
        rewrite_fixed_header(&mut header, channel_id, base, len, path)?;
    }
    let newest = header
        .read(0, SEGMENT_HEADER_LEN)
        .ok()
        .and_then(|b| read_slot(b, channel_id, base, len));
    let index = SegmentIndex::new(base, Segment::index_capacity(env, region.len()));
    let seg = Segment::new(path.to_path_buf(), channel_id, base, region, index, false);
    Ok(OpenedRw {
        seg,
        records,
        slot: newest.map(|(s, _)| s),
        slots: SlotWriter::new(header, newest, base),
    })
}

/// A segment opened with no valid slot gets its initial slot (see
/// `SlotWriter::init`) before anything else is written to its header, made
/// durable at once: a torn write of a later slot then leaves it intact,
/// so the segment is never mistaken for one whose header was damaged.
pub(super) fn ensure_slot(seg: &Segment, slots: SlotWriter, found: Option<Slot>) -> Result<SlotWriter> {
    if found.is_some() {
        return Ok(slots);
    }
    let slots = SlotWriter::init(slots.into_token(), seg.seed, &seg.path, Slot::empty(seg.base))?;
    seg.region
        .sync(0..SEGMENT_HEADER_LEN)
        .map_err(Error::io_at(IoOp::SyncMapping, &seg.path))?;
    Ok(slots)
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
        .map_err(Error::io_at(IoOp::WriteRecords, path))?;
    header
        .region()
        .sync(0..SEGMENT_HEADER_LEN)
        .map_err(Error::io_at(IoOp::SyncMapping, path))
}

/// The newest valid slot in a segment header and its position.
pub(crate) fn read_slot(header: &[u8], channel_id: u64, base: u64, len: u64) -> Option<(Slot, usize)> {
    crate::slots::newest_slot(header, crate::format::frame::segment_seed(channel_id, base), base, len)
}

/// The seal of a segment followed by another one starting at `next_base`.
pub(super) fn check_seal(path: &Path, slot: Option<Slot>, next_base: Option<u64>) -> Result<Slot> {
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
    Ok(seal)
}

/// Opens a sealed segment after open, read-only and strict: fixed header
/// and seal checked (against the next segment's base), index loaded from
/// its file or rebuilt by a validating scan. Nothing of the segment is
/// written; a rebuilt index file is.
pub(crate) fn open_sealed(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: Option<u64>,
) -> Result<(Arc<Segment>, Slot)> {
    let (file_len, header) = read_header(env, path)?;
    if let Some(reason) = fixed_header_problem(&header, channel_id, base, file_len) {
        return Err(Error::corrupt(path, 0, reason));
    }
    let seal = check_seal(
        path,
        read_slot(&header, channel_id, base, file_len).map(|(s, _)| s),
        next_base,
    )?;
    let end = usize::try_from(seal.durable_end).unwrap_or(usize::MAX);
    let region = env.storage.open_region_readonly(path, SEGMENT_HEADER_LEN, end)?;
    let capacity = Segment::index_capacity(env, region.len());
    let loaded = load_index(env, path, base, region.len(), channel_id, Some(&seal));
    let seg = match loaded {
        Some((index, _)) => Segment::new(path.to_path_buf(), channel_id, base, region, index, true),
        None => {
            let seg = Segment::new(
                path.to_path_buf(),
                channel_id,
                base,
                region,
                SegmentIndex::new(base, capacity),
                false,
            );
            index_sealed(env, &seg, &seal)?;
            let cov = Coverage {
                end,
                next_seq: seal.next_seq,
                last_timestamp: seal.last_timestamp,
            };
            // Derived data: a failure only means another rebuild next time.
            // A store attached read-only writes nothing.
            if !env.read_only {
                let _ = seg.write_index_file(&env.storage, channel_id, cov);
            }
            seg
        }
    };
    Ok((Arc::new(seg), seal))
}

/// Validates every record of a sealed segment (read-only) and builds its
/// index; the records must end exactly where the seal says.
fn index_sealed(env: &Env, seg: &Segment, seal: &Slot) -> Result<()> {
    let end = usize::try_from(seal.durable_end).unwrap_or(usize::MAX);
    let bytes = seg
        .region
        .read_published(SEGMENT_HEADER_LEN, end.saturating_sub(SEGMENT_HEADER_LEN))
        .unwrap_or(&[]);
    let view = SegmentBytes {
        base: SEGMENT_HEADER_LEN,
        bytes,
    };
    let interval = env.opts.get_index_interval() as usize;
    let mut cursor = FrameCursor::new(seg.seed, SEGMENT_HEADER_LEN, seg.base);
    let mut last_indexed = None;
    while cursor.offset < end {
        let frame = cursor.step(view, true).map_err(|e| {
            Error::corrupt(
                &seg.path,
                e.offset as u64,
                format!("sealed segment damaged: {}", e.reason()),
            )
        })?;
        let h = frame.header;
        if h.kind() == FrameKind::Message && needs_index_entry(last_indexed, frame.offset, interval) {
            seg.index.push(IndexEntry {
                seq: h.seq,
                offset: frame.offset,
                timestamp: h.timestamp,
            });
            last_indexed = Some(frame.offset);
        }
    }
    if cursor.offset != end || cursor.expected != seal.next_seq {
        return Err(Error::corrupt(
            &seg.path,
            cursor.offset as u64,
            format!(
                "sealed segment damaged: records end at seq {} where the seal says {}",
                cursor.expected, seal.next_seq
            ),
        ));
    }
    seg.trust_up_to(end);
    Ok(())
}

/// The segment's index file, if it is valid (and, for a sealed segment,
/// covers exactly what the seal says; for the last segment, a live
/// checkpoint only when it was written on this boot, for this very file).
pub(super) fn load_index(
    env: &Env,
    path: &Path,
    base: u64,
    segment_len: usize,
    channel_id: u64,
    seal: Option<&Slot>,
) -> Option<(SegmentIndex, Coverage)> {
    let idx_path = path.with_file_name(index_file_name(base));
    let capacity = SegmentIndex::capacity_for(segment_len, env.opts.get_index_interval() as usize);
    let max = (IDX_HEADER_LEN + capacity * IDX_ENTRY_LEN) as u64;
    let bytes = env.storage.read_file(&idx_path, max).ok()?;
    let sealed_at = match seal {
        Some(s) => Some((usize::try_from(s.durable_end).ok()?, s.next_seq)),
        None => None,
    };
    let want = IndexExpectation {
        channel_id,
        base,
        records_start: SEGMENT_HEADER_LEN,
        segment_len,
        capacity,
        sealed_at,
    };
    let (index, cov, live) = decode_file(&bytes, &want).ok()?;
    if let (Some(mark), None) = (live, seal) {
        let (device, inode) = env.storage.file_id(path).ok()?;
        let same =
            mark.boot_id != 0 && mark.boot_id == env.storage.boot_id() && (mark.device, mark.inode) == (device, inode);
        if !same {
            // Written before a reboot (or for another file): what it covers
            // past the durable end may not have reached the disk.
            return None;
        }
    }
    Some((index, cov))
}
