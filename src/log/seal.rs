//! Sealing segments the writer rolled away from, confirming segments in the
//! catalog, and preparing the next segment file: the durability work that
//! runs off the writer's path.
//!
//! Order, per segment: it is confirmed (its header and directory entry
//! made durable, then the catalog records it as the channel's newest)
//! before any of its records is made durable; a segment is sealed only
//! after every one before it is. So after any crash, every segment below
//! the catalog's newest is sealed, and a segment above it holds nothing
//! durable.

use std::sync::Arc;

use super::Log;
use crate::error::{Error, IoOp, Result};
use crate::prefault::PREFAULT_AHEAD;
use crate::segment::Segment;

impl Log {
    /// Makes `seg` the channel's newest segment on record: its fixed header
    /// and its directory entry durable, then the catalog updated. Nothing
    /// when the catalog already knows it.
    pub(super) fn confirm(&self, seg: &Segment) -> Result<()> {
        match seg.sync_created(&self.env) {
            // The channel was deleted meanwhile (its directory is gone):
            // nothing of it needs to be durable.
            Err(_) if self.is_deleted() => return Err(self.deleted_error()),
            r => self.env.sticky(r)?,
        }
        self.catalog.confirm_segment(self.id, seg.base)
    }

    /// Seals every segment the writer rolled away from, oldest first: each
    /// is confirmed, msynced, its seal slot written and msynced. Run by the
    /// background worker after a roll, and by a sync before it makes the
    /// active segment durable.
    pub(super) fn settle(&self) -> Result<()> {
        let _one_at_a_time = self.sealing.lock();
        loop {
            self.env.check_failed()?;
            let job = {
                let st = self.state.lock();
                if st.phase == super::state::Phase::Deleted {
                    return Ok(());
                }
                st.sealing.front().map(|s| {
                    (
                        Arc::clone(&s.active.seg),
                        s.active.confirmed,
                        s.active.offset,
                        s.next_seq,
                        s.last_timestamp,
                    )
                })
            };
            let Some((seg, confirmed, end, next_seq, last_timestamp)) = job else {
                return Ok(());
            };
            if !confirmed {
                self.confirm(&seg)?;
            }
            // The writer is done with these pages (see `drop_page_entries`).
            seg.region
                .drop_page_entries(crate::format::segment::SEGMENT_HEADER_LEN..end);
            seg.region
                .sync(0..end)
                .map_err(|e| self.env.fail(Error::io(IoOp::SyncMapping, &seg.path, e)))?;
            let seal = {
                let mut st = self.state.lock();
                let Some(s) = st.sealing.front_mut().filter(|s| Arc::ptr_eq(&s.active.seg, &seg)) else {
                    return Ok(());
                };
                s.active.confirmed = true;
                s.active
                    .write_seal(next_seq, last_timestamp)
                    .map_err(|e| self.env.fail(e))?
            };
            seg.region
                .sync(0..crate::format::segment::SEGMENT_HEADER_LEN)
                .map_err(|e| self.env.fail(Error::io(IoOp::SyncMapping, &seg.path, e)))?;
            // The seal is known before the segment leaves the queue, so a
            // reader of both (retention's summaries) always finds one.
            let snapshot = self.table.snapshot();
            let entry = snapshot.iter().find(|e| e.base == seg.base).cloned();
            if let Some(entry) = &entry {
                entry.set_seal(seal);
            }
            let sealed = self.state.lock().sealing.pop_front();
            self.commit.mark_durable(next_seq - 1);
            if let Some(s) = sealed {
                // Derived; a failure here only means a rebuild on next open.
                let cov = s.active.coverage(next_seq, last_timestamp);
                let _ = s.active.seg.write_index_file(&self.env.storage, self.id, cov);
            }
            // Sealed now: it may be closed when readers are done with it.
            if let Some(entry) = entry {
                self.table.track_sealed(&entry);
            }
        }
    }

    /// Makes the next segment's file ahead of the roll that needs it (and
    /// faults its first pages in), when there is none yet.
    pub(super) fn prepare_next(&self) {
        // Files are made under the sealing lock, so that once a deletion has
        // taken it (see `mark_deleted`) no new file appears.
        let _one_at_a_time = self.sealing.lock();
        let (len, n) = {
            let mut st = self.state.lock();
            if st.phase != super::state::Phase::Open || st.prepared.is_some() {
                return;
            }
            st.prepared_count += 1;
            (st.next_len, st.prepared_count)
        };
        // A failure (a full disk, a deleted channel) only means the next
        // roll creates its file itself.
        let Ok(prepared) = Segment::prepare(&self.env, &self.dir, len, n) else {
            return;
        };
        prepared.region().prefault(0..PREFAULT_AHEAD);
        let mut st = self.state.lock();
        if st.phase == super::state::Phase::Open && st.prepared.is_none() {
            st.prepared = Some(prepared);
        } else {
            drop(st);
            self.discard(prepared);
        }
    }

    /// Removes a prepared file that will not be used (at close).
    pub(super) fn drop_prepared(&self) {
        let prepared = self.state.lock().prepared.take();
        if let Some(p) = prepared {
            self.discard(p);
        }
    }

    fn discard(&self, prepared: crate::segment::Prepared) {
        let path = prepared.path().to_path_buf();
        drop(prepared);
        // A leftover `.tmp` is removed at the next open anyway.
        let _ = self.env.storage.remove_file(&path);
    }
}
