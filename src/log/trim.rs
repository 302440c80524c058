//! Retention on a log: what the policy needs to know (segment summaries and
//! in-segment lookups), and removing the front of the log once the new
//! first seq is durable in the catalog.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::table::Snapshot;
use super::Log;
use crate::error::{Error, Result};
use crate::format::segment::{index_file_name, SEGMENT_HEADER_LEN};
use crate::limits::Limits;
use crate::retention::{decide, Probe, Retention, SegmentSummary};
use crate::segment::Segment;

/// What retention decided for one log; apply it with [`Log::trim`] after
/// recording `first_seq` durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrimPlan(pub Retention);

impl Log {
    /// Applies `limits` at `now_ns` to the log's segments: `None` when
    /// nothing would change, or when a segment could not be read (that
    /// pass keeps everything).
    pub(crate) fn plan_retention(&self, limits: &Limits, now_ns: u64) -> Result<Option<TrimPlan>> {
        let plan = self.plan_retention_once(limits, now_ns)?;
        // Segments waiting for their seal (see `LAZY_SEAL_BYTES`) cannot be
        // removed: when the limits reach past one, it is sealed now.
        let waiting = plan.is_some_and(|p| {
            let st = self.state.lock();
            st.sealing.front().is_some_and(|s| s.next_seq <= p.0.first_seq)
        });
        if waiting {
            self.settle()?;
            return self.plan_retention_once(limits, now_ns);
        }
        Ok(plan)
    }

    fn plan_retention_once(&self, limits: &Limits, now_ns: u64) -> Result<Option<TrimPlan>> {
        let snapshot = self.table.snapshot();
        let summaries = self.summaries(&snapshot)?;
        let first = self.first_seq();
        let next = self.last_seq() + 1;
        let mut probe = SegmentProbe {
            log: self,
            snapshot: &snapshot,
            error: None,
        };
        let decision = decide(&summaries, first, next, limits, now_ns, &mut probe);
        if probe.error.is_some() {
            return Ok(None);
        }
        let changes = decision.first_seq > first || decision.removable > 0;
        Ok(changes.then_some(TrimPlan(decision)))
    }

    fn summaries(&self, snapshot: &Snapshot) -> Result<Vec<SegmentSummary>> {
        // Segments rolled away from and not sealed yet: complete, but not
        // removable until their seal is durable.
        let pending: Vec<SegmentSummary> = {
            let st = self.state.lock();
            st.sealing
                .iter()
                .map(|s| SegmentSummary {
                    first_seq: s.active.seg.base,
                    next_seq: s.next_seq,
                    bytes: (s.active.offset - SEGMENT_HEADER_LEN) as u64,
                    last_timestamp: s.last_timestamp,
                    sealed: false,
                })
                .collect()
        };
        let mut out = Vec::with_capacity(snapshot.len());
        for (i, entry) in snapshot.iter().enumerate() {
            let sealed = |seal: crate::format::segment::Slot| SegmentSummary {
                first_seq: entry.base,
                next_seq: seal.next_seq,
                bytes: seal.durable_end.saturating_sub(SEGMENT_HEADER_LEN as u64),
                last_timestamp: seal.last_timestamp,
                sealed: true,
            };
            let summary = match entry.seal() {
                Some(seal) => sealed(seal),
                None if pending.iter().any(|p| p.first_seq == entry.base) => {
                    match pending.iter().find(|p| p.first_seq == entry.base) {
                        Some(p) => *p,
                        None => continue,
                    }
                }
                None => {
                    let next_base = snapshot.at(i).and_then(|(_, n)| n);
                    let seg = self.open_entry(entry, next_base)?;
                    match entry.seal() {
                        Some(seal) => sealed(seal),
                        None => SegmentSummary {
                            first_seq: entry.base,
                            next_seq: self.last_seq() + 1,
                            bytes: (seg.region.published() - SEGMENT_HEADER_LEN) as u64,
                            last_timestamp: self.last_timestamp(),
                            sealed: false,
                        },
                    }
                }
            };
            out.push(summary);
        }
        Ok(out)
    }

    /// Moves the first retained seq to the plan's (which the caller made
    /// durable in the catalog), takes the wholly expired segments out of
    /// the list, so new readers never get them, unlinks their files (a
    /// reader holding one of their messages keeps the mapping) and syncs the
    /// directory. Returns whether the first seq moved and how many segment
    /// files were deleted.
    pub(crate) fn trim(&self, plan: TrimPlan) -> Result<(bool, usize)> {
        let removed = {
            let _st = self.state.lock();
            if self.is_deleted() {
                // Its directory is gone with everything in it.
                return Ok((false, 0));
            }
            let moved = self.first_seq.fetch_max(plan.0.first_seq, Ordering::AcqRel) < plan.0.first_seq;
            (moved, self.table.remove_front(plan.0.removable))
        };
        let (moved, removed) = removed;
        let storage = &self.env.storage;
        for entry in &removed {
            for path in [
                entry.path.clone(),
                entry.path.with_file_name(index_file_name(entry.base)),
            ] {
                storage.remove_file(&path)?;
            }
        }
        if !removed.is_empty() {
            let synced = storage.sync_dir(&self.dir);
            // A delete of the channel racing this pass removes the
            // directory; that is not a failed sync.
            let gone = self.is_deleted() && !storage.exists(&self.dir);
            if !gone {
                self.env.sticky(synced)?;
            }
        }
        // Receivers below the new first seq skip ahead on their own.
        self.arrivals.wake();
        Ok((moved, removed.len()))
    }
}

/// Reads segments for the policy's in-segment questions. An error answers
/// conservatively (keep more) and is remembered.
struct SegmentProbe<'a> {
    log: &'a Log,
    snapshot: &'a Snapshot,
    error: Option<Error>,
}

impl SegmentProbe<'_> {
    fn segment(&mut self, i: usize) -> Option<(Arc<Segment>, Option<crate::format::segment::Slot>)> {
        let (entry, next_base) = self.snapshot.at(i)?;
        match self.log.open_entry(entry, next_base) {
            Ok(seg) => Some((seg, entry.seal())),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl Probe for SegmentProbe<'_> {
    fn first_at_or_after(&mut self, i: usize, ts: u64) -> Option<u64> {
        let (seg, _) = self.segment(i)?;
        match seg.seq_at_or_after(ts) {
            Ok(found) => found,
            Err(e) => {
                self.error = Some(e);
                Some(seg.base)
            }
        }
    }

    fn first_fitting(&mut self, i: usize, keep: u64) -> u64 {
        let Some((seg, seal)) = self.segment(i) else {
            return 0;
        };
        let end = seal.map_or(seg.region.published() as u64, |s| s.durable_end);
        let target = usize::try_from(end.saturating_sub(keep)).unwrap_or(usize::MAX);
        match seg.seq_at_offset(target.max(SEGMENT_HEADER_LEN)) {
            Ok(seq) => seq,
            Err(e) => {
                self.error = Some(e);
                seg.base
            }
        }
    }
}
