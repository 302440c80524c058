//! Making the log durable: group-committed syncs, and close.

use std::sync::Arc;

use super::state::{Phase, INDEX_CHECKPOINT_BYTES};
use super::Log;
use crate::error::{Error, IoOp, Result};

impl Log {
    /// Returns once every message up to `seq` is durable; concurrent callers
    /// share one sync (group commit).
    pub(crate) fn sync_through(&self, seq: u64) -> Result<()> {
        // A failed store reports its failure to every sync, even one with
        // nothing left to do.
        self.env.check_failed()?;
        if self.is_deleted() {
            return Err(self.deleted_error());
        }
        self.commit.sync_through(seq, || self.sync_once())
    }

    /// Makes every message published so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.sync_through(self.last_seq())
    }

    /// One sync of everything written so far (the group leader's work):
    /// msync without the state lock, then the slot recording it under it.
    fn sync_once(&self) -> Result<u64> {
        self.env.check_failed()?;
        // Segments rolled away from first: the active one's records are
        // durable only after every segment before it is sealed. A roll
        // between the seals and the snapshot queues another segment: the
        // snapshot is taken only when, under the lock, none waits.
        let snapshot = loop {
            self.settle()?;
            let st = self.state.lock();
            if st.phase == Phase::Deleted {
                return Err(self.deleted_error());
            }
            if !st.sealing.is_empty() {
                continue;
            }
            break st.active.as_ref().map(|a| {
                (
                    Arc::clone(&a.seg),
                    a.offset,
                    st.next_seq,
                    st.last_timestamp,
                    a.confirmed,
                )
            });
        };
        let Some((seg, end, next_seq, last_timestamp, confirmed)) = snapshot else {
            // No active segment: everything is in sealed, hence synced, segments.
            return Ok(self.last_seq());
        };
        if !confirmed {
            // Before any record of the segment is durable, it exists on
            // record (and all before it is durable).
            self.confirm(&seg)?;
            if let Some(a) = self.state.lock().active.as_mut().filter(|a| Arc::ptr_eq(&a.seg, &seg)) {
                a.confirmed = true;
            }
        }
        seg.region
            .sync(0..end)
            .map_err(|e| self.env.fail(Error::io(IoOp::SyncMapping, &seg.path, e)))?;
        let mut st = self.state.lock();
        let Some(a) = st.active.as_mut().filter(|a| Arc::ptr_eq(&a.seg, &seg)) else {
            // The segment was sealed meanwhile (a seal syncs everything).
            return Ok(next_seq - 1);
        };
        a.record_synced(end, next_seq, last_timestamp)
            .map_err(|e| self.env.fail(e))?;
        // Now and then, leave an index file for the durable part, so that
        // recovery after a crash scans only what came after it.
        if end >= a.index_checkpoint + INDEX_CHECKPOINT_BYTES {
            a.index_checkpoint = end;
            let cov = crate::index::Coverage {
                end,
                next_seq,
                last_timestamp,
            };
            // Derived data: a failure only means a longer scan at open.
            let _ = seg.write_index_file(&self.env.storage, self.id, cov);
        }
        Ok(next_seq - 1)
    }

    /// Closes the log as one transition, after the store stopped accepting
    /// writes: no append starts any more (an append in progress finishes
    /// first), everything is synced, and only then is the clean mark
    /// written, so it never claims what a crash could take.
    pub(crate) fn close(&self) -> Result<()> {
        {
            let mut st = self.state.lock();
            if st.phase != Phase::Open {
                return Ok(());
            }
            st.phase = Phase::Closing;
        }
        self.sync()?;
        self.drop_prepared();
        let mut st = self.state.lock();
        let (next_seq, last_timestamp) = (st.next_seq, st.last_timestamp);
        if let Some(a) = st.active.as_mut() {
            a.mark_clean(next_seq, last_timestamp).map_err(|e| self.env.fail(e))?;
            // Derived; written so the next open scans only what follows it.
            let _ = a
                .seg
                .write_index_file(&self.env.storage, self.id, a.coverage(next_seq, last_timestamp));
        }
        st.phase = Phase::Closed;
        Ok(())
    }
}
