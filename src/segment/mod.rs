//! One segment file: header, records, sparse index, durability slots.

mod header;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

pub use header::SEGMENT_HEADER_LEN;
pub(crate) use header::{FixedHeader, Slot, SLOT_OFFSETS};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::index::{Coverage, SegmentIndex};
use crate::message::Message;
use crate::mmap::{HeaderToken, RecordsToken, Region};
use crate::record::{segment_seed, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::storage::Storage;

/// A sync writes the index file of the active segment again once this many
/// bytes of records were added since the last time, bounding how much a
/// recovery after a crash has to scan.
pub(crate) const INDEX_CHECKPOINT_BYTES: usize = 4 << 20;

/// File name of the segment whose first seq is `base`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// File name of that segment's index.
pub(crate) fn index_file_name(base: u64) -> String {
    format!("{base:020}.idx")
}

/// Parses `<20 digits>.seg`.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

struct HeaderState {
    token: HeaderToken,
    /// The slot most recently written (durable at the next sync).
    written: Slot,
    /// Which slot the next write goes to.
    next_slot: usize,
}

/// A mapped segment. Readers share it through `Arc`; the mapping lives as
/// long as any `Message` taken from it.
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) base: u64,
    pub(crate) seed: u32,
    pub(crate) region: Arc<Region>,
    pub(crate) index: SegmentIndex,
    /// The index came from an index file, so its offsets are hints to check.
    index_from_disk: bool,
    /// Records below this offset were validated (written by this process or
    /// checked by a scan); reads above it verify the CRC.
    trusted_end: AtomicUsize,
    /// Records end covered by the last index file written during syncs.
    index_checkpoint: AtomicUsize,
    seal: OnceLock<Slot>,
    header: Mutex<HeaderState>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("base", &self.base)
            .field("region", &self.region)
            .finish()
    }
}

/// When a frame read checks its CRC.
#[derive(Clone, Copy)]
enum Crc {
    /// Outside the validated prefix.
    Auto,
    /// Always.
    Force,
    /// Never (shape checks only): for frames walked over, not returned.
    Skip,
}

/// One frame read from a segment.
pub(crate) enum Frame {
    Message { header: FrameHeader, next_offset: usize },
    Hole { first: u64, last: u64, next_offset: usize },
}

impl Segment {
    /// Creates, sizes and heads a new segment, then makes it durable: the
    /// file is prepared under a temporary name, synced, renamed into place
    /// and the directory synced, so a `.seg` file always has a valid header.
    pub(crate) fn create(
        env: &Env,
        dir: &Path,
        channel_id: u64,
        base: u64,
        len: u64,
        index_interval: usize,
    ) -> Result<(Arc<Segment>, RecordsToken)> {
        let storage = &env.storage;
        let path = dir.join(segment_file_name(base));
        let tmp = dir.join(format!("{}.tmp", segment_file_name(base)));
        storage.remove_file(&tmp)?;
        let (region, mut header_token, records) = storage.create_region(&tmp, len, SEGMENT_HEADER_LEN)?;
        let fixed = FixedHeader {
            channel_id,
            base_seq: base,
            segment_len: len,
            created_ns: env.opts.now_ns(),
        };
        header_token
            .write(0, &fixed.encode())
            .map_err(|e| Error::io("write segment header", &tmp, e))?;
        region
            .sync(0..SEGMENT_HEADER_LEN)
            .map_err(|e| Error::io("sync segment header", &tmp, e))?;
        storage.rename(&tmp, &path)?;
        storage.sync_dir(dir)?;
        let seg = Segment::new(path, channel_id, base, region, header_token, None, index_interval);
        Ok((Arc::new(seg), records))
    }

    /// Wraps an opened region; `slot` is the newest valid slot found in it.
    pub(crate) fn new(
        path: PathBuf,
        channel_id: u64,
        base: u64,
        region: Arc<Region>,
        token: HeaderToken,
        slot: Option<(Slot, usize)>,
        index_interval: usize,
    ) -> Segment {
        let capacity = SegmentIndex::capacity_for(region.len(), index_interval);
        let (written, next_slot) = match slot {
            Some((s, at)) => (s, 1 - at.min(1)),
            None => (Slot::empty(base), 0),
        };
        Segment {
            path,
            base,
            seed: segment_seed(channel_id, base),
            index: SegmentIndex::new(base, capacity),
            index_from_disk: false,
            trusted_end: AtomicUsize::new(SEGMENT_HEADER_LEN),
            index_checkpoint: AtomicUsize::new(SEGMENT_HEADER_LEN),
            seal: OnceLock::new(),
            header: Mutex::new(HeaderState {
                token,
                written,
                next_slot,
            }),
            region,
        }
    }

    /// The same segment with another index; `from_disk` when it was loaded
    /// from an index file (its offsets are then hints to check).
    pub(crate) fn with_index(self, index: SegmentIndex, from_disk: bool) -> Segment {
        Segment {
            index,
            index_from_disk: from_disk,
            ..self
        }
    }

    /// The seal slot, once the segment is sealed.
    pub(crate) fn seal_info(&self) -> Option<Slot> {
        self.seal.get().copied()
    }

    /// Marks records below `end` as validated.
    pub(crate) fn trust_up_to(&self, end: usize) {
        self.trusted_end.fetch_max(end, Ordering::AcqRel);
    }

    /// Extends the validated prefix over `[from, to)` if it reaches `from`
    /// (the writer's records are valid, but do not vouch for a prefix that
    /// recovery left to be checked on read).
    #[inline]
    pub(crate) fn extend_trust(&self, from: usize, to: usize) {
        let _ = self
            .trusted_end
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Whether records up to `end` have grown `INDEX_CHECKPOINT_BYTES` past
    /// the last index file written by a sync (and if so, counts it written).
    pub(crate) fn index_checkpoint_due(&self, end: usize) -> bool {
        let last = self.index_checkpoint.load(Ordering::Acquire);
        end >= last + INDEX_CHECKPOINT_BYTES
            && self
                .index_checkpoint
                .compare_exchange(last, end, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Records the segment as sealed (for segments opened already sealed).
    pub(crate) fn mark_sealed(&self, slot: Slot) {
        let _ = self.seal.set(slot);
    }

    /// Writes `slot` (with the next generation) over the older slot. It
    /// becomes durable with the next msync of the header.
    fn write_slot(&self, state: &mut HeaderState, slot: Slot) -> Result<()> {
        let slot = Slot {
            generation: state.written.next_generation(),
            ..slot
        };
        let at = SLOT_OFFSETS[state.next_slot.min(1)];
        state
            .token
            .write(at, &slot.encode(self.seed))
            .map_err(|e| Error::io("write segment slot", &self.path, e))?;
        state.written = slot;
        state.next_slot = 1 - state.next_slot.min(1);
        Ok(())
    }

    fn sync_range(&self, end: usize, op: &'static str) -> Result<()> {
        self.region.sync(0..end).map_err(|e| Error::io(op, &self.path, e))
    }

    fn slot(end: usize, next_seq: u64, last_timestamp: u64) -> Slot {
        Slot {
            durable_end: end as u64,
            next_seq,
            last_timestamp,
            ..Slot::empty(next_seq)
        }
    }

    /// Makes records below `end` durable. The slot recording it is written
    /// afterwards and becomes durable with the next sync, so a slot never
    /// claims more than was really durable.
    pub(crate) fn sync_to(&self, end: usize, next_seq: u64, last_timestamp: u64) -> Result<()> {
        let mut st = self.header.lock();
        if st.written.durable_end >= end as u64 || st.written.sealed {
            return Ok(());
        }
        self.sync_range(end, "sync segment")?;
        self.write_slot(&mut st, Self::slot(end, next_seq, last_timestamp))
    }

    /// Syncs everything below `end`, then durably marks the segment sealed.
    pub(crate) fn seal(&self, end: usize, next_seq: u64, last_timestamp: u64) -> Result<()> {
        let mut st = self.header.lock();
        self.sync_range(end, "sync segment")?;
        let slot = Slot {
            sealed: true,
            ..Self::slot(end, next_seq, last_timestamp)
        };
        self.write_slot(&mut st, slot)?;
        self.sync_range(SEGMENT_HEADER_LEN, "sync segment header")?;
        let _ = self.seal.set(slot);
        Ok(())
    }

    /// At close, after a sync covering `end`: durably records that nothing
    /// was written past it, so the next open need not look there. Writes
    /// nothing when the newest slot already says so.
    pub(crate) fn close_clean(&self, end: usize, next_seq: u64, last_timestamp: u64) -> Result<()> {
        let mut st = self.header.lock();
        let w = st.written;
        if st.written.sealed || (w.clean && w.durable_end == end as u64 && w.next_seq == next_seq) {
            return Ok(());
        }
        let slot = Slot {
            clean: true,
            ..Self::slot(end, next_seq, last_timestamp)
        };
        self.write_slot(&mut st, slot)?;
        self.sync_range(SEGMENT_HEADER_LEN, "sync segment header")
    }

    /// Before the first write after a clean close: durably withdraws the
    /// clean mark, so a crash cannot leave unchecked bytes past its end.
    pub(crate) fn clear_clean(&self) -> Result<()> {
        let mut st = self.header.lock();
        if !st.written.clean {
            return Ok(());
        }
        let slot = Slot {
            clean: false,
            ..st.written
        };
        self.write_slot(&mut st, slot)?;
        self.sync_range(SEGMENT_HEADER_LEN, "sync segment header")
    }

    fn corrupt(&self, offset: usize, detail: impl Into<String>) -> Error {
        Error::corrupt(&self.path, offset as u64, detail)
    }

    /// The header of the message frame at `offset` if it lies wholly in the
    /// validated prefix and carries `expected`; `None` sends the caller to
    /// `frame_at`, which checks everything and explains what is wrong. The
    /// sequential reader's fast path: no CRC, no error to build.
    #[inline]
    pub(crate) fn trusted_message_at(&self, offset: usize, expected: u64) -> Option<FrameHeader> {
        let trusted = self.trusted_end.load(Ordering::Acquire);
        let header = FrameHeader::parse(self.region.read_published(offset, FRAME_HEADER_LEN)?)?;
        let fits = offset.checked_add(header.frame_len()).is_some_and(|end| end <= trusted);
        (fits && header.seq == expected && header.kind() == FrameKind::Message).then_some(header)
    }

    /// Reads and validates the published frame at `offset`, which must carry
    /// `expected`.
    #[inline]
    pub(crate) fn frame_at(&self, offset: usize, expected: u64) -> Result<Frame> {
        self.frame_checked(offset, expected, Crc::Auto)
    }

    /// As `frame_at`, choosing when the CRC is checked.
    fn frame_checked(&self, offset: usize, expected: u64, crc: Crc) -> Result<Frame> {
        let published = self.region.published();
        let bytes = self
            .region
            .read_published(offset, FRAME_HEADER_LEN)
            .ok_or_else(|| self.corrupt(offset, format!("record header past the published end {published}")))?;
        let header = FrameHeader::parse(bytes).ok_or_else(|| self.corrupt(offset, "short record header"))?;
        header
            .check_shape(published.saturating_sub(offset), expected, false)
            .map_err(|d| self.corrupt(offset, d))?;
        let next_offset = offset + header.frame_len();
        let check = match crc {
            Crc::Force => true,
            Crc::Skip => false,
            Crc::Auto => offset >= self.trusted_end.load(Ordering::Acquire),
        };
        if check {
            let payload = self
                .region
                .read_published(offset + FRAME_HEADER_LEN, header.payload_len())
                .ok_or_else(|| self.corrupt(offset, "payload past the published end"))?;
            if !header.crc_matches(self.seed, payload) {
                return Err(self.corrupt(offset, format!("checksum mismatch in record {expected}")));
            }
            // Extend the validated prefix when this record continues it.
            let _ = self
                .trusted_end
                .compare_exchange(offset, next_offset, Ordering::AcqRel, Ordering::Relaxed);
        }
        Ok(match header.kind() {
            FrameKind::Message => Frame::Message { header, next_offset },
            FrameKind::Hole => Frame::Hole {
                first: header.seq,
                last: header.timestamp,
                next_offset,
            },
        })
    }

    /// The frame holding `seq` (a message, or a hole covering it) and its
    /// offset; the caller knows `seq` is in this segment.
    pub(crate) fn locate(&self, seq: u64) -> Result<(usize, Frame)> {
        if let Some(e) = self.index.floor_seq(seq) {
            match self.scan_for(e.offset, e.seq, seq, self.index_from_disk) {
                // An index entry that does not lead to the record is not
                // trusted: fall back to a scan from the first record.
                Err(Error::Corrupt { .. }) => {}
                found => return found,
            }
        }
        self.scan_for(SEGMENT_HEADER_LEN, self.base, seq, false)
    }

    /// Walks from `offset` to the frame covering `seq`. Frames passed over
    /// are checked for shape only; the one returned also by CRC. `from_file`
    /// marks a walk that started at an index-file hint: its target is always
    /// CRC-checked, since a validated byte is not a validated boundary.
    fn scan_for(&self, mut offset: usize, mut expected: u64, seq: u64, from_file: bool) -> Result<(usize, Frame)> {
        loop {
            let frame = self.frame_checked(offset, expected, Crc::Skip)?;
            let (covers, next_offset, next_seq) = match &frame {
                Frame::Message { header, next_offset } => (header.seq == seq, *next_offset, header.seq + 1),
                Frame::Hole {
                    first,
                    last,
                    next_offset,
                } => ((*first..=*last).contains(&seq), *next_offset, last + 1),
            };
            if covers {
                let crc = if from_file { Crc::Force } else { Crc::Auto };
                return Ok((offset, self.frame_checked(offset, expected, crc)?));
            }
            offset = next_offset;
            expected = next_seq;
        }
    }

    /// The message `seq`, which the caller knows is in this segment.
    pub(crate) fn find(self: &Arc<Self>, seq: u64) -> Result<Message> {
        match self.locate(seq)? {
            (offset, Frame::Message { header, .. }) => Ok(Message::new(Arc::clone(self), &header, offset)),
            (_, Frame::Hole { first, last, .. }) => Err(Error::Lost {
                requested: seq,
                first_lost: first,
                last_lost: last,
            }),
        }
    }

    /// The first message in this segment with a timestamp `>= ts`, if any.
    pub(crate) fn seq_at_or_after(&self, ts: u64) -> Result<Option<u64>> {
        if let Some(e) = self.index.floor_before_time(ts) {
            match self.scan_time(e.offset, e.seq, ts, self.index_from_disk) {
                // As in `locate`: a misleading index entry is not trusted.
                Err(Error::Corrupt { .. }) => {}
                found => return found,
            }
        }
        self.scan_time(SEGMENT_HEADER_LEN, self.base, ts, false)
    }

    fn scan_time(&self, mut offset: usize, mut expected: u64, ts: u64, from_file: bool) -> Result<Option<u64>> {
        while offset < self.region.published() {
            match self.frame_checked(offset, expected, Crc::Skip)? {
                Frame::Message { header, next_offset } => {
                    if header.timestamp >= ts {
                        // The timestamp decided the answer: check it is real.
                        let crc = if from_file { Crc::Force } else { Crc::Auto };
                        self.frame_checked(offset, expected, crc)?;
                        return Ok(Some(header.seq));
                    }
                    offset = next_offset;
                    expected = header.seq + 1;
                }
                Frame::Hole { last, next_offset, .. } => {
                    offset = next_offset;
                    expected = last + 1;
                }
            }
        }
        Ok(None)
    }

    /// The seq of the first frame at or after byte `target` (the seq after
    /// the last record if there is none): retention's byte bound.
    pub(crate) fn seq_at_offset(&self, target: usize) -> Result<u64> {
        let (mut offset, mut expected) = match self.index.floor_offset(target) {
            Some(e) => (e.offset, e.seq),
            None => (SEGMENT_HEADER_LEN, self.base),
        };
        while offset < target && offset < self.region.published() {
            match self.frame_checked(offset, expected, Crc::Skip)? {
                Frame::Message { header, next_offset } => {
                    offset = next_offset;
                    expected = header.seq + 1;
                }
                Frame::Hole { last, next_offset, .. } => {
                    offset = next_offset;
                    expected = last + 1;
                }
            }
        }
        Ok(expected)
    }

    /// Writes the index file for the records `cov` describes. The index is
    /// derived data, so it is not synced: a torn or missing index is
    /// detected and rebuilt.
    pub(crate) fn write_index_file(&self, storage: &Storage, channel_id: u64, cov: Coverage) -> Result<()> {
        let path = self.path.with_file_name(index_file_name(self.base));
        storage.write_file(&path, &self.index.encode_file(channel_id, cov))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000001.seg.tmp"), None);
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None, "overflows u64");
    }
}
