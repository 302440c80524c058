//! The append path and the segment roll, under the log's state lock.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{write_error, Active, LogState, Phase, SlotWriter};
use super::table::SegmentEntry;
use super::Log;
use crate::error::{Error, Result};
use crate::format::frame::{encode_message, frame_len};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::index::IndexEntry;
use crate::options::SyncPolicy;
use crate::segment::Segment;

use super::recover::needs_index_entry;

/// A batch is published (made readable) every this many records, so a
/// tailing reader need not wait for the end of a long batch, while the
/// publication's atomics are not paid per record.
const PUBLISH_STEP: usize = 64;

impl Log {
    /// Appends `payloads` with contiguous seqs and one timestamp; returns
    /// their range. Under `SyncPolicy::Always` returns once they are
    /// durable.
    pub(crate) fn append<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
        let opts = &self.env.opts;
        let max = opts.get_max_payload();
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
        let always = opts.get_sync_policy() == SyncPolicy::Always;
        let range = {
            let mut st = self.state.lock();
            self.check_appendable(&st)?;
            let first = st.next_seq;
            let timestamp = opts.now_ns().max(st.last_timestamp);
            let interval = opts.get_index_interval() as usize;
            // A writer that syncs after every append writes through the file
            // with pwrite (see `mmap` for why that makes each sync cheaper)
            // and publishes once per call. Otherwise appends store through
            // the mapping and a long batch is published in steps, so readers
            // keep going. `roll` sets the mode of each new segment's token.
            let step = if always { usize::MAX } else { PUBLISH_STEP };
            if let Some(a) = st.active.as_mut() {
                self.set_write_mode(a)?;
            }
            for (i, payload) in payloads.iter().enumerate() {
                let payload = payload.as_ref();
                let len = frame_len(payload.len());
                let fits = st.active.as_ref().is_some_and(|a| a.offset + len <= a.seg.region.len());
                if !fits {
                    self.roll(&mut st, len)?;
                }
                let st = &mut *st;
                let Some(a) = st.active.as_mut() else {
                    return Err(Error::Closed);
                };
                if a.clean_marked() {
                    a.withdraw_clean_mark().map_err(|e| self.env.fail(e))?;
                }
                let seq = st.next_seq;
                let header = encode_message(a.seg.seed, seq, timestamp, payload);
                a.records
                    .write_frame(a.offset, &header, payload, len)
                    .map_err(|e| self.env.fail(write_error(&a.seg.path)(e)))?;
                if needs_index_entry(a.last_indexed, a.offset, interval) {
                    a.seg.index.push(IndexEntry {
                        seq,
                        offset: a.offset,
                        timestamp,
                    });
                    a.last_indexed = Some(a.offset);
                }
                a.offset += len;
                st.next_seq += 1;
                st.last_timestamp = timestamp;
                if !always {
                    a.prefault
                        .advance(self.env.prefault.get(), a.records.region(), a.offset);
                }
                if (i + 1) % step == 0 {
                    self.publish_written(st)?;
                }
            }
            self.publish_written(&mut st)?;
            first..=st.next_seq - 1
        };
        self.arrivals.wake();
        if always {
            self.sync_through(*range.end())?;
        }
        Ok(range)
    }

    /// Err unless appends may start: store writable, log open.
    fn check_appendable(&self, st: &LogState) -> Result<()> {
        self.env.check_writable()?;
        match st.phase {
            Phase::Open => Ok(()),
            Phase::Deleted => Err(self.deleted_error()),
            Phase::Closing | Phase::Closed => Err(Error::Closed),
        }
    }

    /// Writes through the file under `SyncPolicy::Always` (see `append`).
    fn set_write_mode(&self, a: &mut Active) -> Result<()> {
        let through = self.env.opts.get_sync_policy() == SyncPolicy::Always;
        a.records
            .set_write_through(through)
            .map_err(|e| self.env.fail(write_error(&a.seg.path)(e)))
    }

    /// Makes everything written so far readable: publishes the active
    /// segment up to the writer's offset and advances `last_seq`.
    fn publish_written(&self, st: &mut LogState) -> Result<()> {
        let Some(a) = st.active.as_mut() else {
            return Ok(());
        };
        let from = a.records.region().published();
        if from == a.offset {
            return Ok(());
        }
        a.records
            .publish(a.offset)
            .map_err(|e| self.env.fail(write_error(&a.seg.path)(e)))?;
        a.seg.extend_trust(from, a.offset);
        self.last_timestamp.store(st.last_timestamp, Ordering::Release);
        self.last_seq.store(st.next_seq - 1, Ordering::Release);
        Ok(())
    }

    /// Seals the active segment (if any) and starts a new one at `next_seq`
    /// that holds at least a frame of `need` bytes.
    fn roll(&self, st: &mut LogState, need: usize) -> Result<()> {
        self.publish_written(st)?;
        if let Some(mut a) = st.active.take() {
            // Its records become durable now: the catalog must know it first.
            if !a.confirmed {
                // A failed catalog write (a full disk, say) leaves the
                // catalog as it was: the segment stays active.
                if let Err(e) = self.catalog.confirm_segment(self.id, a.seg.base) {
                    st.active = Some(a);
                    return Err(e);
                }
                a.confirmed = true;
            }
            match a.seal(st.next_seq, st.last_timestamp) {
                Ok(seal) => {
                    self.commit.mark_durable(st.next_seq - 1);
                    // Derived; a failure here only means a rebuild on next open.
                    let _ =
                        a.seg
                            .write_index_file(&self.env.storage, self.id, a.coverage(st.next_seq, st.last_timestamp));
                    // Sealed now: it may be closed when readers are done with it.
                    if let Some(entry) = self.table.snapshot().last() {
                        entry.set_seal(seal);
                        self.table.track_sealed(entry);
                    }
                }
                Err(e) => {
                    // The segment stays active (unsealed) and the store read-only.
                    st.active = Some(a);
                    return Err(self.env.fail(e));
                }
            }
        }
        let len = self.env.opts.get_segment_size();
        debug_assert!(need as u64 + SEGMENT_HEADER_LEN as u64 <= len);
        let created = self
            .env
            .sticky(Segment::create(&self.env, &self.dir, self.id, st.next_seq, len))?;
        let seg = Arc::new(created.segment);
        self.table.push(SegmentEntry::opened(Arc::clone(&seg)));
        let slots = SlotWriter::new(created.header, None, seg.base);
        let mut active = Active::new(seg, created.records, slots, SEGMENT_HEADER_LEN, false);
        self.set_write_mode(&mut active)?;
        st.active = Some(active);
        Ok(())
    }
}
