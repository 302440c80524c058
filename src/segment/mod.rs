//! One segment file, mapped: its records, read without locks and validated
//! as they are first read, and its sparse index. Who may write it, and the
//! durability marks in its header, belong to the channel's log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::frame::{segment_seed, FrameCursor, FrameHeader, FrameKind, SegmentBytes, FRAME_HEADER_LEN};
use crate::format::segment::{index_file_name, segment_file_name, FixedHeader, Slot, SEGMENT_HEADER_LEN};
use crate::index::{Coverage, LiveMark, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::mmap::{HeaderToken, RecordsToken, Region};
use crate::slots::SlotWriter;
use crate::storage::Storage;
use parking_lot::Mutex;

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
    /// What this process wrote of the index file, so the next write appends.
    index_file: Mutex<IndexFileWriter>,
}

/// The part of a segment's index file this process wrote: `entries`
/// entries, whose bytes have the running CRC `crc`. `None` until the first
/// write, which writes the whole file (whatever was there before).
#[derive(Default)]
struct IndexFileWriter {
    written: Option<(usize, crc32fast::Hasher)>,
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

/// One record read from a segment.
pub(crate) enum Read {
    Message { header: FrameHeader, next_offset: usize },
    Hole { first: u64, last: u64, next_offset: usize },
}

impl Read {
    fn of(header: FrameHeader, next_offset: usize) -> Read {
        match header.kind() {
            FrameKind::Message => Read::Message { header, next_offset },
            FrameKind::Hole => Read::Hole {
                first: header.seq,
                last: header.timestamp,
                next_offset,
            },
        }
    }

    fn covers(&self, seq: u64) -> bool {
        match self {
            Read::Message { header, .. } => header.seq == seq,
            Read::Hole { first, last, .. } => (*first..=*last).contains(&seq),
        }
    }
}

/// A new segment file and the two tokens that write it.
pub(crate) struct Created {
    pub(crate) segment: Segment,
    /// Its slots, the first one written (`Slot::empty`).
    pub(crate) slots: SlotWriter,
    pub(crate) records: RecordsToken,
}

/// A segment file made ahead of its roll, before its first seq is known:
/// sized (blocks reserved) and mapped under a temporary name.
pub(crate) struct Prepared {
    tmp: PathBuf,
    region: Arc<Region>,
    header: HeaderToken,
    records: RecordsToken,
}

impl Prepared {
    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        self.region.len() as u64
    }

    /// The mapping, for prefaulting its first pages ahead of the writer.
    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Where the file is until it is installed.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }
}

/// Name of the `n`-th file a channel prepares for a next segment (each its
/// own name: a writer may be renaming one while the next is made).
pub(crate) fn prepared_file_name(n: u64) -> String {
    format!("next-{n}.seg.tmp")
}

impl Segment {
    /// Makes a segment file of `len` bytes ahead of time (see [`Prepared`]),
    /// the channel's `n`-th.
    pub(crate) fn prepare(env: &Env, dir: &Path, len: u64, n: u64) -> Result<Prepared> {
        let tmp = dir.join(prepared_file_name(n));
        env.storage.remove_file(&tmp)?;
        let (region, header, records) = env.storage.create_region(&tmp, len, SEGMENT_HEADER_LEN)?;
        Ok(Prepared {
            tmp,
            region,
            header,
            records,
        })
    }

    /// Creates a segment starting at `base`: a prepared file (or a new one
    /// of `len` bytes) gets its fixed header and its name. Nothing is synced:
    /// the header and the name become durable when the segment is
    /// confirmed, before any record in it is reported durable.
    pub(crate) fn create(
        env: &Env,
        dir: &Path,
        channel_id: u64,
        base: u64,
        len: u64,
        prepared: Option<Prepared>,
    ) -> Result<Created> {
        let storage = &env.storage;
        let path = dir.join(segment_file_name(base));
        let Prepared {
            tmp,
            region,
            mut header,
            records,
        } = match prepared {
            Some(p) => p,
            None => {
                let tmp = dir.join(format!("{}.tmp", segment_file_name(base)));
                storage.remove_file(&tmp)?;
                let (region, header, records) = storage.create_region(&tmp, len, SEGMENT_HEADER_LEN)?;
                Prepared {
                    tmp,
                    region,
                    header,
                    records,
                }
            }
        };
        let fixed = FixedHeader {
            channel_id,
            base_seq: base,
            segment_len: region.len() as u64,
            created_ns: env.opts.now_ns(),
        };
        header
            .write(0, &fixed.encode())
            .map_err(Error::io_at(IoOp::WriteRecords, &tmp))?;
        let slots = SlotWriter::init(header, segment_seed(channel_id, base), &tmp, Slot::empty(base))?;
        storage.rename(&tmp, &path)?;
        let index = SegmentIndex::new(base, Self::index_capacity(env, region.len()));
        let segment = Segment::new(path, channel_id, base, region, index, false);
        Ok(Created {
            segment,
            slots,
            records,
        })
    }

    /// Creates a segment and makes its header and name durable at once (for
    /// repair, which writes records into it right away).
    pub(crate) fn create_durable(env: &Env, dir: &Path, channel_id: u64, base: u64, len: u64) -> Result<Created> {
        let created = Self::create(env, dir, channel_id, base, len, None)?;
        created.segment.sync_created(env)?;
        Ok(created)
    }

    /// Makes the fixed header and the directory entry durable.
    pub(crate) fn sync_created(&self, env: &Env) -> Result<()> {
        self.region
            .sync(0..SEGMENT_HEADER_LEN)
            .map_err(Error::io_at(IoOp::SyncMapping, &self.path))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        env.storage.sync_dir(dir)
    }

    /// How many index entries a segment of `len` bytes can need.
    pub(crate) fn index_capacity(env: &Env, len: usize) -> usize {
        SegmentIndex::capacity_for(len, env.opts.get_index_interval() as usize)
    }

    /// Wraps a mapped region. `from_disk`: `index` was loaded from an index
    /// file, so its offsets are hints to check.
    pub(crate) fn new(
        path: PathBuf,
        channel_id: u64,
        base: u64,
        region: Arc<Region>,
        index: SegmentIndex,
        from_disk: bool,
    ) -> Segment {
        Segment {
            path,
            base,
            seed: segment_seed(channel_id, base),
            region,
            index,
            index_from_disk: from_disk,
            trusted_end: AtomicUsize::new(SEGMENT_HEADER_LEN),
            index_file: Mutex::new(IndexFileWriter::default()),
        }
    }

    /// The same segment with another index; `from_disk` when it was loaded
    /// from an index file.
    pub(crate) fn with_index(self, index: SegmentIndex, from_disk: bool) -> Segment {
        Segment {
            index,
            index_from_disk: from_disk,
            ..self
        }
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

    /// The writer's records `[from, to)` extend the validated prefix when it
    /// ends at `from`. Called before they are published, so no reader
    /// extends it there at the same time: a plain store, not a
    /// read-modify-write on every publish.
    #[inline]
    pub(crate) fn trust_written(&self, from: usize, to: usize) {
        if self.trusted_end.load(Ordering::Acquire) == from {
            self.trusted_end.store(to, Ordering::Release);
        }
    }

    fn corrupt(&self, offset: usize, detail: impl Into<String>) -> Error {
        Error::corrupt(&self.path, offset as u64, detail)
    }

    /// The published records, as the frame cursor reads them.
    #[inline]
    fn published_view(&self) -> SegmentBytes<'_> {
        let end = self.region.published();
        SegmentBytes {
            base: SEGMENT_HEADER_LEN,
            bytes: self
                .region
                .read_published(SEGMENT_HEADER_LEN, end.saturating_sub(SEGMENT_HEADER_LEN))
                .unwrap_or(&[]),
        }
    }

    /// The header of the message frame at `offset` if it lies wholly in the
    /// validated prefix and carries `expected`; `None` sends the caller to
    /// `read_at`, which checks everything and explains what is wrong. The
    /// sequential reader's fast path: no CRC, no error to build.
    #[inline]
    pub(crate) fn trusted_message_at(&self, offset: usize, expected: u64) -> Option<FrameHeader> {
        let trusted = self.trusted_end.load(Ordering::Acquire);
        let header = FrameHeader::parse(self.region.read_published(offset, FRAME_HEADER_LEN)?)?;
        let fits = offset.checked_add(header.frame_len()).is_some_and(|end| end <= trusted);
        (fits && header.seq == expected && header.kind() == FrameKind::Message).then_some(header)
    }

    /// Reads and validates the published frame at `offset`, which must carry
    /// `expected` (CRC checked outside the validated prefix).
    #[inline]
    pub(crate) fn read_at(&self, offset: usize, expected: u64) -> Result<Read> {
        let check = offset >= self.trusted_end.load(Ordering::Acquire);
        self.read_checked(offset, expected, check)
    }

    fn read_checked(&self, offset: usize, expected: u64, crc: bool) -> Result<Read> {
        let frame = FrameCursor::new(self.seed, offset, expected)
            .peek(self.published_view(), crc)
            .map_err(|e| self.corrupt(e.offset, e.reason()))?;
        if crc {
            // Extend the validated prefix when this record continues it.
            self.extend_trust(offset, frame.end());
        }
        Ok(Read::of(frame.header, frame.end()))
    }

    /// The record holding `seq` (a message, or a hole covering it) and its
    /// offset; the caller knows `seq` is in this segment.
    pub(crate) fn locate(&self, seq: u64) -> Result<(usize, Read)> {
        if let Some(e) = self.index.floor_seq(seq) {
            match self.walk_to(FrameCursor::new(self.seed, e.offset, e.seq), seq, self.index_from_disk) {
                // An index entry that does not lead to the record is not
                // trusted: fall back to a walk from the first record.
                Err(Error::Corrupt { .. }) => {}
                found => return found,
            }
        }
        self.walk_to(FrameCursor::new(self.seed, SEGMENT_HEADER_LEN, self.base), seq, false)
    }

    /// Walks to the frame covering `seq`. Frames passed over are checked for
    /// shape only; the one returned also by CRC. `from_file` marks a walk
    /// that started at an index-file hint: its target is always CRC-checked,
    /// since a validated byte is not a validated boundary.
    fn walk_to(&self, mut cursor: FrameCursor, seq: u64, from_file: bool) -> Result<(usize, Read)> {
        let view = self.published_view();
        loop {
            let at = cursor.offset;
            let frame = cursor
                .step(view, false)
                .map_err(|e| self.corrupt(e.offset, e.reason()))?;
            if Read::of(frame.header, frame.end()).covers(seq) {
                let crc = from_file || at >= self.trusted_end.load(Ordering::Acquire);
                return Ok((at, self.read_checked(at, frame.header.seq, crc)?));
            }
        }
    }

    /// The first message in this segment with a timestamp `>= ts`, if any.
    pub(crate) fn seq_at_or_after(&self, ts: u64) -> Result<Option<u64>> {
        if let Some(e) = self.index.floor_before_time(ts) {
            match self.walk_to_time(FrameCursor::new(self.seed, e.offset, e.seq), ts, self.index_from_disk) {
                // As in `locate`: a misleading index entry is not trusted.
                Err(Error::Corrupt { .. }) => {}
                found => return found,
            }
        }
        self.walk_to_time(FrameCursor::new(self.seed, SEGMENT_HEADER_LEN, self.base), ts, false)
    }

    fn walk_to_time(&self, mut cursor: FrameCursor, ts: u64, from_file: bool) -> Result<Option<u64>> {
        let view = self.published_view();
        while cursor.offset < view.end() {
            let at = cursor.offset;
            let frame = cursor
                .step(view, false)
                .map_err(|e| self.corrupt(e.offset, e.reason()))?;
            if frame.header.kind() == FrameKind::Message && frame.header.timestamp >= ts {
                // The timestamp decided the answer: check it is real.
                let crc = from_file || at >= self.trusted_end.load(Ordering::Acquire);
                self.read_checked(at, frame.header.seq, crc)?;
                return Ok(Some(frame.header.seq));
            }
        }
        Ok(None)
    }

    /// The seq of the first frame at or after byte `target` (the seq after
    /// the last record if there is none): retention's byte bound.
    pub(crate) fn seq_at_offset(&self, target: usize) -> Result<u64> {
        let mut cursor = match self.index.floor_offset(target) {
            Some(e) => FrameCursor::new(self.seed, e.offset, e.seq),
            None => FrameCursor::new(self.seed, SEGMENT_HEADER_LEN, self.base),
        };
        let view = self.published_view();
        while cursor.offset < target && cursor.offset < view.end() {
            cursor
                .step(view, false)
                .map_err(|e| self.corrupt(e.offset, e.reason()))?;
        }
        Ok(cursor.expected)
    }

    /// Writes the index file for the records `cov` describes. The index is
    /// derived data, so it is not synced: a torn or missing index is
    /// detected and rebuilt.
    pub(crate) fn write_index_file(&self, storage: &Storage, channel_id: u64, cov: Coverage) -> Result<()> {
        self.write_index(storage, channel_id, cov, None)
    }

    /// Writes a live checkpoint of the index: its coverage includes records
    /// not durable yet, so it is marked with this boot and this file's
    /// identity, and trusted at open only when both are unchanged (the
    /// process crashed, the machine did not).
    pub(crate) fn write_live_index_file(&self, storage: &Storage, channel_id: u64, cov: Coverage) -> Result<()> {
        let (device, inode) = storage.file_id(&self.path)?;
        let mark = LiveMark {
            boot_id: storage.boot_id(),
            device,
            inode,
        };
        self.write_index(storage, channel_id, cov, Some(mark))
    }

    /// Writes the index file: after this process's first write, only the
    /// entries added since and the header (docs/format.md, sparse index).
    fn write_index(&self, storage: &Storage, channel_id: u64, cov: Coverage, live: Option<LiveMark>) -> Result<()> {
        let path = self.path.with_file_name(index_file_name(self.base));
        let n = self.index.entries_within(cov);
        let mut w = self.index_file.lock();
        // A failure leaves the file in an unknown state: the next write
        // starts over.
        let (from, mut crc) = match w.written.take() {
            Some((done, crc)) if done <= n => (done, crc),
            _ => (0, crc32fast::Hasher::new()),
        };
        let entries = self.index.encode_entries(from, n);
        crc.update(&entries);
        let header = self
            .index
            .encode_header(channel_id, cov, live, n, crc.clone().finalize());
        if from == 0 {
            let mut file = Vec::with_capacity(IDX_HEADER_LEN + entries.len());
            file.extend_from_slice(&header);
            file.extend_from_slice(&entries);
            storage.write_file(&path, &file)?;
        } else {
            storage.write_at(&path, (IDX_HEADER_LEN + from * IDX_ENTRY_LEN) as u64, &entries)?;
            storage.write_at(&path, 0, &header)?;
        }
        w.written = Some((n, crc));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{decode_file, IndexEntry, IndexExpectation};
    use crate::sim::SimStorage;
    use crate::Options;

    /// Index files written in steps (entries appended, header rewritten)
    /// are byte for byte the file written in one piece, and decode.
    #[test]
    fn index_file_written_in_steps_equals_the_whole_file() {
        let sim = SimStorage::new();
        let opts = Options::default().simulated(&sim);
        let storage = opts.storage_backend().clone();
        let dir = Path::new("/s/channels/1");
        storage.create_dir_all(dir).expect("dir");
        let env = Env::new("/s".into(), opts, storage.clone(), false);
        let seg = Segment::create(&env, dir, 1, 10, 1 << 20, None)
            .expect("segment")
            .segment;
        let mut offset = SEGMENT_HEADER_LEN;
        let cov = |n: u64, offset: usize| Coverage {
            end: offset,
            next_seq: 10 + n,
            last_timestamp: n,
        };
        let idx = seg.path.with_file_name(index_file_name(10));
        for step in 0..5u64 {
            for i in 0..(3 + step * 7) {
                let seq = seg.index.last().map_or(10, |e| e.seq + 1);
                assert!(seg.index.push(IndexEntry {
                    seq,
                    offset,
                    timestamp: seq - 10,
                }));
                offset += 64 + i as usize;
            }
            let n = seg.index.len() as u64;
            let c = cov(n, offset);
            if step % 2 == 0 {
                seg.write_live_index_file(&storage, 1, c).expect("live");
            } else {
                seg.write_index_file(&storage, 1, c).expect("durable");
            }
            let got = storage.read_file(&idx, 1 << 20).expect("read");
            let live = (step % 2 == 0).then(|| {
                let (device, inode) = storage.file_id(&seg.path).expect("id");
                LiveMark {
                    boot_id: storage.boot_id(),
                    device,
                    inode,
                }
            });
            assert_eq!(got, seg.index.encode_file(1, c, live), "step {step}");
            let want = IndexExpectation {
                channel_id: 1,
                base: 10,
                records_start: SEGMENT_HEADER_LEN,
                segment_len: 1 << 20,
                capacity: seg.index.capacity(),
                sealed_at: None,
            };
            let (back, back_cov, back_live) = decode_file(&got, &want).expect("decodes");
            assert_eq!((back.len() as u64, back_cov, back_live), (n, c, live));
        }
    }
}
