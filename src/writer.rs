//! The append path: one writer per channel, under a short lock.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::channel::ChannelCore;
use crate::error::{Error, Result};
use crate::index::{Coverage, IndexEntry};
use crate::mmap::RecordsToken;
use crate::options::SyncPolicy;
use crate::prefault::PrefaultCursor;
use crate::record::{encode_message, frame_len};
use crate::segment::{Segment, SEGMENT_HEADER_LEN};

/// The writer's state; lives under `ChannelCore::writer`.
pub(crate) struct Writer {
    /// The segment being appended to and the token to write it; `None` when
    /// the channel has no segment yet or its last segment is sealed.
    pub(crate) active: Option<(Arc<Segment>, RecordsToken)>,
    /// Offset where the next record goes.
    pub(crate) offset: usize,
    pub(crate) next_seq: u64,
    pub(crate) last_timestamp: u64,
    /// Offset of the last indexed record of the active segment.
    pub(crate) last_indexed: Option<usize>,
    /// The active segment's durable slot carries the clean-close mark, which
    /// must be withdrawn before anything is written past it.
    pub(crate) clean_mark: bool,
    /// Pages of the active segment asked to be faulted in ahead.
    pub(crate) prefault: PrefaultCursor,
}

/// A batch is published (made readable) every this many records, so a
/// tailing reader need not wait for the end of a long batch, while the
/// publication's atomics are not paid per record.
const PUBLISH_STEP: usize = 64;

/// Whether a record at `offset` gets an index entry.
#[inline]
pub(crate) fn needs_index_entry(last_indexed: Option<usize>, offset: usize, interval: usize) -> bool {
    last_indexed.is_none_or(|last| offset >= last + interval)
}

impl Writer {
    /// The durable-state snapshot a sync needs: active segment, end, next seq
    /// and last timestamp.
    pub(crate) fn snapshot(&self) -> Option<(Arc<Segment>, usize, u64, u64)> {
        self.active
            .as_ref()
            .map(|(seg, _)| (Arc::clone(seg), self.offset, self.next_seq, self.last_timestamp))
    }
}

impl ChannelCore {
    pub(crate) fn append<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
        let max = self.env.opts.get_max_payload();
        if let Some(p) = payloads.iter().find(|p| p.as_ref().len() > max as usize) {
            return Err(Error::PayloadTooLarge {
                len: p.as_ref().len(),
                max,
            });
        }
        if payloads.is_empty() {
            return Err(Error::invalid_option(
                "payloads",
                "publish_batch needs at least one payload",
            ));
        }
        let range = {
            let mut w = self.writer.lock();
            self.check_live()?;
            let first = w.next_seq;
            let timestamp = self.env.opts.now_ns().max(w.last_timestamp);
            let interval = self.env.opts.get_index_interval() as usize;
            // A writer that syncs after every append writes through the file
            // with pwrite (see `mmap` for why that makes each sync cheaper)
            // and publishes once per call. Otherwise appends store through
            // the mapping and a long batch is published in steps, so readers
            // keep going. (pwrite for large unsynced batches measured no
            // faster here.) `roll` sets the mode of each new segment's token.
            let through = self.env.opts.get_sync_policy() == SyncPolicy::Always;
            let step = if through { usize::MAX } else { PUBLISH_STEP };
            if let Some((seg, token)) = w.active.as_mut() {
                self.set_write_mode(seg, token)?;
            }
            for (i, payload) in payloads.iter().enumerate() {
                let payload = payload.as_ref();
                let len = frame_len(payload.len());
                let fits = w
                    .active
                    .as_ref()
                    .is_some_and(|(seg, _)| w.offset + len <= seg.region.len());
                if !fits {
                    self.roll(&mut w)?;
                }
                let w = &mut *w;
                let Some((seg, token)) = w.active.as_mut() else {
                    return Err(Error::Closed);
                };
                if w.clean_mark {
                    seg.clear_clean().map_err(|e| self.env.fail(e))?;
                    w.clean_mark = false;
                }
                let seq = w.next_seq;
                let header = encode_message(seg.seed, seq, timestamp, payload);
                let io = |e| self.env.fail(Error::io("write record", &seg.path, e));
                token.write_frame(w.offset, &header, payload, len).map_err(io)?;
                if needs_index_entry(w.last_indexed, w.offset, interval) {
                    seg.index.push(IndexEntry {
                        seq,
                        offset: w.offset,
                        timestamp,
                    });
                    w.last_indexed = Some(w.offset);
                }
                w.offset += len;
                w.next_seq += 1;
                w.last_timestamp = timestamp;
                if !through {
                    w.prefault.advance(self.env.prefault.get(), token.region(), w.offset);
                }
                if (i + 1) % step == 0 {
                    self.publish_written(w)?;
                }
            }
            self.publish_written(&mut w)?;
            first..=w.next_seq - 1
        };
        // Activity for max_inactivity, from the timestamp already read.
        self.last_activity
            .store(self.last_timestamp.load(Ordering::Relaxed), Ordering::Relaxed);
        self.arrivals.wake();
        if self.env.opts.get_sync_policy() == SyncPolicy::Always {
            self.sync_through(*range.end())?;
        }
        Ok(range)
    }

    /// Writes through the file under `SyncPolicy::Always` (see `append`).
    fn set_write_mode(&self, seg: &Segment, token: &mut RecordsToken) -> Result<()> {
        let through = self.env.opts.get_sync_policy() == SyncPolicy::Always;
        token
            .set_write_through(through)
            .map_err(|e| self.env.fail(Error::io("write record", &seg.path, e)))
    }

    /// Makes everything written so far readable: publishes the active
    /// segment up to the writer's offset and advances `last_seq`.
    fn publish_written(&self, w: &mut Writer) -> Result<()> {
        let Some((seg, token)) = w.active.as_mut() else {
            return Ok(());
        };
        let from = token.region().published();
        if from == w.offset {
            return Ok(());
        }
        token
            .publish(w.offset)
            .map_err(|e| self.env.fail(Error::io("write record", &seg.path, e)))?;
        seg.extend_trust(from, w.offset);
        self.last_timestamp.store(w.last_timestamp, Ordering::Release);
        self.last_seq.store(w.next_seq - 1, Ordering::Release);
        Ok(())
    }

    /// Seals the active segment (if any) and starts a new one at `next_seq`.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.publish_written(w)?;
        if let Some((seg, _token)) = w.active.take() {
            if let Err(e) = seg.seal(w.offset, w.next_seq, w.last_timestamp) {
                // The segment stays active (unsealed) and the store read-only.
                w.active = Some((seg, _token));
                return Err(self.env.fail(e));
            }
            self.durable_seq.fetch_max(w.next_seq - 1, Ordering::AcqRel);
            // Derived data; a failure here only means a rebuild on next open.
            let cov = Coverage {
                end: w.offset,
                next_seq: w.next_seq,
                last_timestamp: w.last_timestamp,
            };
            let _ = seg.write_index_file(&self.env.storage, self.id, cov);
            // Sealed now: it may be closed when readers are done with it.
            if let Some(slot) = self.segments.slot_of(seg.base) {
                self.segments.track_sealed(&slot);
            }
        }
        let opts = &self.env.opts;
        let (seg, mut token) = self.env.sticky(Segment::create(
            &self.env,
            &self.dir,
            self.id,
            w.next_seq,
            opts.get_segment_size(),
            opts.get_index_interval() as usize,
        ))?;
        self.segments.push(Arc::clone(&seg));
        self.set_write_mode(&seg, &mut token)?;
        w.active = Some((seg, token));
        w.offset = SEGMENT_HEADER_LEN;
        w.last_indexed = None;
        w.clean_mark = false;
        w.prefault.reset(SEGMENT_HEADER_LEN);
        Ok(())
    }
}
