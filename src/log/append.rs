//! The append path and the segment roll, under the log's state lock.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{after, segment_len, write_error, Active, LogState, Phase, Sealing, INDEX_CHECKPOINT_BYTES};
use super::table::SegmentEntry;
use super::Log;
use crate::error::{Error, Result};
use crate::format::frame::{encode_message, frame_len};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::index::{Coverage, IndexEntry};
use crate::options::SyncPolicy;
use crate::prefault::Request;
use crate::segment::Segment;

use super::recover::needs_index_entry;

/// A batch is published (made readable) every this many records, so a
/// tailing reader need not wait for the end of a long batch, while the
/// publication's atomics are not paid per record.
const PUBLISH_STEP: usize = 64;

/// A call appending at least this many bytes writes through the file with
/// pwrite whatever the policy: `write(2)` of whole pages into the page cache
/// skips the zero-fill every fresh page of the mapping pays on its first
/// fault (the kernel's `__pi_memset` was a fifth of a batched append's
/// time), and one syscall per staged MiB is cheap next to that.
const WRITE_THROUGH_BYTES: usize = 64 << 10;

/// Segments rolled away from that may wait for the worker to seal them;
/// past that the writer seals them itself.
pub(super) const MAX_PENDING_SEALS: usize = 2;

/// Under `SyncPolicy::Never` nothing needs a rolled segment durable until
/// the next sync (which seals first), so sealing waits for it: an msync
/// write-protects every page the writer stored to, and the TLB shootdowns
/// that costs interrupt the writer (a third of append throughput here).
/// Up to this many bytes of rolled segments wait; past it the worker seals
/// them, so that an open after a power loss has a bounded tail to check.
pub(super) const LAZY_SEAL_BYTES: usize = 512 << 20;
/// And at most this many segments (each holds a mapping).
pub(super) const LAZY_SEALS: usize = 32;

impl Log {
    /// Appends `payloads` with contiguous seqs and one timestamp; returns
    /// their range. Under `SyncPolicy::Always` returns once they are
    /// durable.
    pub(crate) fn append<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
        let range = self.append_written(payloads)?;
        if self.env.opts.get_sync_policy() == SyncPolicy::Always {
            self.sync_through(*range.end())?;
        }
        Ok(range)
    }

    /// As `append`, returning once the messages are written whatever the
    /// policy (an async durable publish then waits for the sync without
    /// blocking its thread).
    pub(crate) fn append_written<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<RangeInclusive<u64>> {
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
        let bytes: usize = payloads.iter().map(|p| p.as_ref().len()).sum();
        let through = always || bytes >= WRITE_THROUGH_BYTES;
        let mut rolled = false;
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
            let step = if through { usize::MAX } else { PUBLISH_STEP };
            let start_offset = st.active.as_ref().map_or(SEGMENT_HEADER_LEN, |a| a.offset);
            if let Some(a) = st.active.as_mut() {
                self.set_write_mode(a, through)?;
            }
            for (i, payload) in payloads.iter().enumerate() {
                let payload = payload.as_ref();
                let len = frame_len(payload.len());
                let fits = st.active.as_ref().is_some_and(|a| a.offset + len <= a.seg.region.len());
                if !fits {
                    rolled = true;
                    if let Err(e) = self.roll(&mut st, len) {
                        drop(st);
                        self.after_roll();
                        return Err(e);
                    }
                    if let Some(a) = st.active.as_mut() {
                        self.set_write_mode(a, through)?;
                    }
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
                if !through {
                    a.prefault
                        .advance(self.env.prefault.get(), a.records.region(), a.offset);
                }
                if (i + 1) % step == 0 {
                    self.publish_written(st)?;
                }
            }
            let published = self.publish_written(&mut st);
            if through && !always {
                self.map_for_readers(&st, start_offset, rolled);
            }
            let last = st.next_seq - 1;
            let checkpoint = self.live_checkpoint_due(&mut st);
            drop(st);
            if rolled {
                self.after_roll();
            }
            if let Some(cov) = checkpoint {
                self.write_live_checkpoint(cov);
            }
            published?;
            first..=last
        };
        self.arrivals.wake();
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

    /// Writes through the file, or stores through the mapping (see
    /// `append`).
    fn set_write_mode(&self, a: &mut Active, through: bool) -> Result<()> {
        a.records
            .set_write_through(through)
            .map_err(|e| self.env.fail(write_error(&a.seg.path)(e)))
    }

    /// After a write through the file, asks the prefault thread to map the
    /// written pages (already in the page cache: no zero-fill), so that
    /// readers of the mapping do not take a fault per page (a quarter of a
    /// sequential scan right after the write).
    fn map_for_readers(&self, st: &LogState, from: usize, rolled: bool) {
        let (Some(a), Some(sender)) = (st.active.as_ref(), self.env.prefault.get()) else {
            return;
        };
        let from = if rolled { SEGMENT_HEADER_LEN } else { from };
        if from < a.offset {
            let _ = sender.send(Request::Populate(Arc::clone(a.records.region()), from..a.offset));
        }
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
        a.seg.trust_written(from, a.offset);
        a.records
            .publish(a.offset)
            .map_err(|e| self.env.fail(write_error(&a.seg.path)(e)))?;
        self.last_timestamp.store(st.last_timestamp, Ordering::Release);
        self.last_seq.store(st.next_seq - 1, Ordering::Release);
        Ok(())
    }

    /// Rolls to a new segment at `next_seq` that holds at least a frame of
    /// `need` bytes. The segment rolled away from waits to be sealed (by the
    /// background worker, or by the next sync, which seals first): the
    /// writer never waits for the msync of a whole segment.
    fn roll(&self, st: &mut LogState, need: usize) -> Result<()> {
        self.publish_written(st)?;
        if let Some(a) = st.active.take() {
            st.sealing.push_back(Sealing {
                active: a,
                next_seq: st.next_seq,
                last_timestamp: st.last_timestamp,
            });
        }
        let max = self.env.opts.get_segment_size();
        let len = segment_len(st.next_len, max, need);
        let prepared = match st.prepared.take() {
            Some(p) if p.len() >= len => Some(p),
            Some(p) => {
                // Too short for this frame: made again at the right size.
                let _ = self.env.storage.remove_file(p.path());
                None
            }
            None => None,
        };
        let created = self.env.sticky(Segment::create(
            &self.env,
            &self.dir,
            self.id,
            st.next_seq,
            len,
            prepared,
        ))?;
        let seg = Arc::new(created.segment);
        st.next_len = after(seg.region.len() as u64, max);
        self.table.push(SegmentEntry::opened(Arc::clone(&seg)));
        let slots = created.slots;
        let mut active = Active::new(seg, created.records, slots, SEGMENT_HEADER_LEN, false);
        let always = self.env.opts.get_sync_policy() == SyncPolicy::Always;
        self.set_write_mode(&mut active, always)?;
        st.active = Some(active);
        Ok(())
    }

    /// What a live index checkpoint of the active segment should cover, when
    /// one is due (every `INDEX_CHECKPOINT_BYTES` of records).
    fn live_checkpoint_due(&self, st: &mut LogState) -> Option<(Arc<Segment>, Coverage)> {
        let (next_seq, last_timestamp) = (st.next_seq, st.last_timestamp);
        let a = st.active.as_mut()?;
        if a.offset < a.index_checkpoint + INDEX_CHECKPOINT_BYTES {
            return None;
        }
        a.index_checkpoint = a.offset;
        Some((Arc::clone(&a.seg), a.coverage(next_seq, last_timestamp)))
    }

    /// Writes a live index checkpoint (on the worker), so that an open
    /// after the process crashes scans at most what came after it.
    fn write_live_checkpoint(&self, (seg, cov): (Arc<Segment>, Coverage)) {
        let me = self.me.clone();
        self.env.background(move || {
            let Some(log) = me.upgrade() else { return };
            // Not over the durable index file a seal writes.
            let _one_at_a_time = log.sealing.lock();
            let active = {
                let st = log.state.lock();
                st.phase == Phase::Open && st.active.as_ref().is_some_and(|a| Arc::ptr_eq(&a.seg, &seg))
            };
            if active {
                // Derived data: a failure only means a longer scan at open.
                let _ = seg.write_live_index_file(&log.env.storage, log.id, cov);
            }
        });
    }

    /// After a roll, with the state lock released: seals what was rolled
    /// away from (under `Never`, only once `LAZY_SEAL_BYTES` wait; until
    /// then it writes their final live index checkpoint, so that an open
    /// after a process crash need not scan them) and prepares the next
    /// file, off the writer's path (in this thread without a worker).
    fn after_roll(&self) {
        let lazy = self.env.opts.get_sync_policy() == SyncPolicy::Never;
        let (count, bytes) = self.pending_seals();
        let behind = if lazy {
            bytes > 2 * LAZY_SEAL_BYTES || count > 2 * LAZY_SEALS
        } else {
            count > MAX_PENDING_SEALS
        };
        if behind {
            // The worker is behind: this writer seals itself rather than let
            // rolled segments (mappings, indexes) pile up.
            let _ = self.settle();
        }
        let me = self.me.clone();
        self.env.background(move || {
            if let Some(log) = me.upgrade() {
                let (count, bytes) = log.pending_seals();
                if lazy && bytes <= LAZY_SEAL_BYTES && count <= LAZY_SEALS {
                    log.checkpoint_pending();
                } else {
                    // A failure is sticky in the store; nothing more to do.
                    let _ = log.settle();
                }
                log.prepare_next();
            }
        });
    }

    /// How many rolled segments wait for their seal, and their bytes.
    pub(super) fn pending_seals(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.sealing.len(), st.sealing.iter().map(|s| s.active.offset).sum())
    }

    /// Writes a live index checkpoint covering every record of each rolled
    /// segment still waiting for its seal (derived data: a failure only
    /// means a longer scan at open).
    fn checkpoint_pending(&self) {
        let _one_at_a_time = self.sealing.lock();
        let pending: Vec<(Arc<Segment>, Coverage)> = {
            let st = self.state.lock();
            if st.phase != Phase::Open {
                // Deleted (its directory is going) or closing (close seals).
                return;
            }
            st.sealing
                .iter()
                .map(|s| {
                    (
                        Arc::clone(&s.active.seg),
                        s.active.coverage(s.next_seq, s.last_timestamp),
                    )
                })
                .collect()
        };
        for (seg, cov) in pending {
            let _ = seg.write_live_index_file(&self.env.storage, self.id, cov);
        }
    }
}
