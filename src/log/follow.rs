//! A channel's log as a store attached read-only sees it: the segments
//! another process (the owner) writes, followed as they grow.
//!
//! Nothing here writes, locks or repairs. Segments are mapped read-only.
//! What lies past a segment's validated end is read with `pread` (never
//! through the mapping, where the owner may be writing it right now) and
//! validated frame by frame, CRC included, exactly as recovery would; only
//! then does the readable end of the mapping move over it. A frame that
//! does not validate yet (being written, or torn by a crash) is simply not
//! there: the next poll looks again. The owner never writes a record it
//! has written, so bytes below the validated end never change.
//!
//! A roll shows as a new segment file named after the next seq due: when
//! `<next>.seg` exists, the current segment is complete (the owner wrote
//! every record of it before it named the next one) and the follower
//! moves on. Retention shows in the catalog (a higher first seq): whole
//! segments below it leave the list, while a `Message` or an iterator
//! holding one keeps its mapping.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::recover::{fixed_header_problem, needs_index_entry, open_sealed, read_header, read_slot};
use super::state::{LogState, FIRST_SEGMENT_LEN};
use super::table::SegmentEntry;
use super::{Log, Start};
use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::catalog::ChannelEntry;
use crate::format::frame::{FrameCursor, FrameHeader, FrameKind, SegmentBytes, FRAME_HEADER_LEN};
use crate::format::segment::{parse_segment_name, segment_file_name, Slot, SEGMENT_HEADER_LEN};
use crate::index::{IndexEntry, SegmentIndex};
use crate::segment::Segment;

/// Bytes read per `pread` while validating.
const CHUNK: usize = 64 << 10;

/// What a validating read found: where the valid records end, the seq due
/// there, and the timestamp of the last message among them (if any).
struct Validated {
    end: usize,
    next_seq: u64,
    last_timestamp: Option<u64>,
}

/// Validates the frames of `seg` from offset `from` (where seq `expected`
/// is due) as the file holds them now, read with `pread`; extends the
/// segment's index. Stops at the first frame that does not validate.
fn validate(env: &Env, seg: &Segment, from: usize, expected: u64) -> Result<Validated> {
    let len = seg.region.len();
    let interval = env.opts.get_index_interval() as usize;
    let mut cursor = FrameCursor::new(seg.seed, from, expected);
    let mut last_timestamp = None;
    let mut buf_at = from;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let view = SegmentBytes {
            base: buf_at,
            bytes: &buf,
        };
        match cursor.peek(view, true) {
            Ok(frame) => {
                let h = frame.header;
                if h.kind() == FrameKind::Message {
                    last_timestamp = Some(h.timestamp);
                    if needs_index_entry(seg.index.last().map(|e| e.offset), frame.offset, interval) {
                        seg.index.push(IndexEntry {
                            seq: h.seq,
                            offset: frame.offset,
                            timestamp: h.timestamp,
                        });
                    }
                }
                cursor.offset = frame.end();
                cursor.expected = h.next_seq();
            }
            Err(_) => {
                // Read more when the frame may run past what was read: its
                // header is not in view, or it claims a length that fits in
                // the file and carries the seq due.
                let at = cursor.offset;
                let need = match view.get(at, FRAME_HEADER_LEN).and_then(FrameHeader::parse) {
                    None => FRAME_HEADER_LEN,
                    Some(h) if h.seq == cursor.expected && at + h.frame_len() <= len => h.frame_len(),
                    Some(_) => break,
                };
                let have = view.end().saturating_sub(at);
                if have >= need || at + need > len || at >= len {
                    break;
                }
                let want = need.max(CHUNK).min(len - at);
                buf = env.storage.read_at(&seg.path, at as u64, want)?;
                buf_at = at;
            }
        }
    }
    Ok(Validated {
        end: cursor.offset,
        next_seq: cursor.expected,
        last_timestamp,
    })
}

/// Maps a segment of another process read-only, after checking its length
/// and fixed header; nothing of its records is readable yet.
fn open_follower(env: &Env, channel_id: u64, base: u64, path: &Path) -> Result<Segment> {
    let (file_len, header) = read_header(env, path)?;
    if let Some(reason) = fixed_header_problem(&header, channel_id, base, file_len) {
        return Err(Error::corrupt(path, 0, reason));
    }
    let region = env
        .storage
        .open_region_readonly(path, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN)?;
    let index = SegmentIndex::new(base, Segment::index_capacity(env, region.len()));
    Ok(Segment::new(path.to_path_buf(), channel_id, base, region, index, false))
}

/// Makes what `validate` found readable in the mapping.
fn publish(seg: &Segment, end: usize) -> Result<()> {
    seg.region
        .advance_published(end)
        .map_err(Error::io_at(crate::error::IoOp::Map, &seg.path))?;
    seg.trust_up_to(end);
    Ok(())
}

/// A seal for a segment the follower read to its end (the owner may not
/// have sealed it on disk yet): what time lookups and verify need.
fn seen_seal(end: usize, next_seq: u64, last_timestamp: u64) -> Slot {
    Slot {
        durable_end: end as u64,
        next_seq,
        last_timestamp,
        sealed: true,
        ..Slot::empty(next_seq)
    }
}

/// Opens a complete segment (one followed by the segment starting at
/// `next_base`) of a store attached read-only: as a sealed segment when
/// its seal is on disk, else (the owner has not sealed it yet) by
/// validating every record, which must end where the next segment starts.
pub(super) fn open_complete(
    env: &Env,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: Option<u64>,
) -> Result<(Arc<Segment>, Slot)> {
    let (file_len, header) = read_header(env, path)?;
    let sealed = read_slot(&header, channel_id, base, file_len).is_some_and(|(s, _)| s.sealed);
    if sealed {
        return open_sealed(env, channel_id, base, path, next_base);
    }
    let seg = open_follower(env, channel_id, base, path)?;
    let found = validate(env, &seg, SEGMENT_HEADER_LEN, base)?;
    if next_base.is_some_and(|next| next != found.next_seq) {
        return Err(Error::corrupt(
            path,
            found.end as u64,
            format!(
                "records end before seq {} but the next segment starts at {}",
                found.next_seq,
                next_base.unwrap_or_default()
            ),
        ));
    }
    publish(&seg, found.end)?;
    let seal = seen_seal(found.end, found.next_seq, found.last_timestamp.unwrap_or(0));
    Ok((Arc::new(seg), seal))
}

impl Log {
    /// The log of channel `entry` in a store attached read-only: its
    /// segments as they are now, every record of its newest ones validated.
    pub(crate) fn attach(
        env: Arc<Env>,
        catalog: Arc<Catalog>,
        name: &str,
        dir: PathBuf,
        entry: &ChannelEntry,
    ) -> Result<Arc<Log>> {
        let storage = &env.storage;
        let id = entry.id;
        let first_seq = entry.first_seq;
        let mut bases: Vec<u64> = match storage.probe(&dir)? {
            Some(true) => storage
                .list_dir(&dir)?
                .iter()
                .filter_map(|n| parse_segment_name(n))
                .collect(),
            // Recorded in the catalog, its directory not made yet.
            _ => Vec::new(),
        };
        bases.sort_unstable();
        // Whole segments below the first retained seq (retention removes
        // them right after recording it).
        while bases.len() > 1 && bases.get(1).is_some_and(|&next| next <= first_seq) {
            bases.remove(0);
        }
        let mut entries = Vec::with_capacity(bases.len());
        let mut tracked = Vec::new();
        let mut next_seq = bases.first().copied().unwrap_or(first_seq);
        let mut last_timestamp = 0;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment_file_name(base));
            let Some(&next) = bases.get(i + 1) else {
                // The newest one: followed by `follow` below.
                entries.push(SegmentEntry::opened(Arc::new(open_follower(&env, id, base, &path)?)));
                next_seq = base;
                break;
            };
            if entry.newest_base > 0 && base < entry.newest_base {
                // Below the catalog's newest segment: sealed for sure.
                entries.push(SegmentEntry::closed(base, path));
                continue;
            }
            // From the newest segment on, the owner may not have sealed
            // yet what it rolled away from.
            let (seg, seal) = open_complete(&env, id, base, &path, Some(next))?;
            let e = SegmentEntry::opened(seg);
            e.set_seal(seal);
            last_timestamp = seal.last_timestamp;
            tracked.push(Arc::clone(&e));
            entries.push(e);
        }
        let max = env.opts.get_segment_size();
        let last = next_seq.saturating_sub(1).max(first_seq - 1);
        let durable = entry.durable_seq.min(last);
        let start = Start {
            state: LogState::new(next_seq, last_timestamp, None, FIRST_SEGMENT_LEN.min(max)),
            entries,
            first_seq,
            last_seq: last,
            last_timestamp,
            durable_seq: durable,
        };
        let log = Log::assemble(env, catalog, id, name, dir, start);
        for e in &tracked {
            log.table.track_sealed(e);
        }
        log.follow(Some(entry))?;
        if log.last_timestamp() == 0 && log.last_seq() >= log.first_seq() {
            // The newest segment holds no message yet: the last one is in
            // an earlier segment.
            if let Ok(m) = log.get(log.last_seq()) {
                log.state.lock().last_timestamp = m.timestamp();
                log.last_timestamp.store(m.timestamp(), Ordering::Release);
            }
        }
        Ok(log)
    }

    /// One look at what the owner did since the last one: the channel's
    /// first retained seq (`entry`, from the catalog; `None`: the channel
    /// is gone, or another incarnation has its name), new records, new
    /// segments. Wakes blocked readers when anything was added; returns
    /// whether it was.
    pub(crate) fn follow(&self, entry: Option<&ChannelEntry>) -> Result<bool> {
        let Some(entry) = entry.filter(|e| e.id == self.id) else {
            if !self.is_deleted() {
                self.mark_deleted();
            }
            return Ok(false);
        };
        let mut st = self.state.lock();
        self.follow_first(&st, entry.first_seq);
        let added = self.follow_tail(&mut st)?;
        drop(st);
        if added {
            self.arrivals.wake();
        }
        Ok(added)
    }

    /// Applies a first retained seq the owner recorded: reads below it are
    /// out of range from now on, and whole segments below it leave the
    /// list (the newest one stays).
    fn follow_first(&self, _st: &LogState, first: u64) {
        if first <= self.first_seq() {
            return;
        }
        self.first_seq.store(first, Ordering::Release);
        let floor = first - 1;
        if self.last_seq() < floor {
            self.last_seq.store(floor, Ordering::Release);
        }
        let snapshot = self.table.snapshot();
        let mut n = 0;
        while n + 1 < snapshot.len() && snapshot.at(n + 1).is_some_and(|(e, _)| e.base <= first) {
            n += 1;
        }
        self.table.remove_front(n);
    }

    /// Validates what was appended to the newest segment, and moves to the
    /// next one when the owner rolled. Under the state lock.
    fn follow_tail(&self, st: &mut LogState) -> Result<bool> {
        let storage = &self.env.storage;
        let mut added = false;
        loop {
            let snapshot = self.table.snapshot();
            let Some((tail, _)) = snapshot.len().checked_sub(1).and_then(|i| snapshot.at(i)) else {
                // No segment yet: the first one appears under its base.
                let Some(base) = self.first_base()? else { break };
                let path = self.dir.join(segment_file_name(base));
                let Ok(seg) = open_follower(&self.env, self.id, base, &path) else {
                    break;
                };
                st.next_seq = base;
                self.table.push(SegmentEntry::opened(Arc::new(seg)));
                continue;
            };
            let tail = Arc::clone(tail);
            let Some(seg) = tail.segment().filter(|_| tail.seal().is_none()) else {
                // Its records ended before the next segment's base: the
                // owner's damage, not readable past it.
                break;
            };
            let from = seg.region.published();
            let found = match validate(&self.env, &seg, from, st.next_seq) {
                Ok(found) => found,
                // Removed meanwhile (retention took the whole channel's
                // data, or the channel is being deleted).
                Err(_) if !storage.exists(&seg.path) => break,
                Err(e) => return Err(e),
            };
            if found.end > from {
                publish(&seg, found.end)?;
                st.next_seq = found.next_seq;
                if let Some(ts) = found.last_timestamp {
                    st.last_timestamp = ts;
                    self.last_timestamp.store(ts, Ordering::Release);
                }
                // After the mapping's end moved: readers load the last seq
                // first, then read below the published end.
                let last = (found.next_seq - 1).max(self.first_seq() - 1);
                self.last_seq.fetch_max(last, Ordering::AcqRel);
                added = true;
            }
            // A segment holds at least one record before the owner rolls
            // away from it (the next file is named after the seq due).
            let next = self.dir.join(segment_file_name(st.next_seq));
            if st.next_seq == tail.base || !storage.exists(&next) {
                break;
            }
            // The owner rolled: every record of this segment was written
            // before the next one got its name.
            let Ok(new) = open_follower(&self.env, self.id, st.next_seq, &next) else {
                break;
            };
            let end = seg.region.published();
            tail.set_seal(seen_seal(end, st.next_seq, st.last_timestamp));
            self.table.push(SegmentEntry::opened(Arc::new(new)));
            self.table.track_sealed(&tail);
        }
        Ok(added)
    }

    /// The base of the first segment of a channel that had none.
    fn first_base(&self) -> Result<Option<u64>> {
        let storage = &self.env.storage;
        if storage.probe(&self.dir)? != Some(true) {
            return Ok(None);
        }
        Ok(storage
            .list_dir(&self.dir)?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .min())
    }

    /// Read-only attach: one look now at what the owner appended (as the
    /// follower thread would), with the channel's catalog entry as last
    /// read.
    pub(crate) fn follow_now(&self) -> Result<bool> {
        let entry = self.catalog.snapshot().channels.into_values().find(|e| e.id == self.id);
        self.follow(entry.as_ref())
    }

    /// After a read failed on a store attached read-only: the owner may
    /// have removed the segment (retention) before the poll saw it, so the
    /// catalog is read again and its first retained seq applied now.
    pub(super) fn catch_up(&self) {
        if !self.env.read_only {
            return;
        }
        let _ = self.catalog.reload();
        let first = self
            .catalog
            .snapshot()
            .channels
            .values()
            .find(|e| e.id == self.id)
            .map(|e| e.first_seq);
        if let Some(first) = first {
            let st = self.state.lock();
            self.follow_first(&st, first);
        }
    }
}
