//! A cut of a log for a backup: which segment files hold the channel at one
//! instant, and how much of each. Taken while the log's state is frozen
//! (no append, roll or trim in between), for every channel at once.

use std::path::PathBuf;

use parking_lot::MutexGuard;

use super::state::LogState;
use super::Log;
use crate::format::segment::Slot;

/// One segment file of a cut.
#[derive(Clone, Debug)]
pub(crate) struct CutSegment {
    pub base: u64,
    pub path: PathBuf,
    /// `None`: sealed on disk, taken whole. `Some(slot)`: the cut ends in
    /// it, or its seal may not be on disk yet: its records up to
    /// `slot.durable_end` belong to the cut, and a copy gets this slot (a
    /// seal, or for the last segment a clean mark) instead of the file's.
    pub partial: Option<Slot>,
}

/// A channel log at one instant.
#[derive(Clone, Debug)]
pub(crate) struct LogCut {
    pub id: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub segments: Vec<CutSegment>,
}

/// A log whose state is held: nothing changes it until this is dropped.
pub(crate) struct Frozen<'a> {
    log: &'a Log,
    st: MutexGuard<'a, LogState>,
}

impl Log {
    /// Holds the log's state (appends, rolls, trims and the follower of a
    /// read-only store wait) until the returned guard is dropped.
    pub(crate) fn freeze(&self) -> Frozen<'_> {
        Frozen {
            log: self,
            st: self.state.lock(),
        }
    }
}

impl Frozen<'_> {
    /// The log as it is now.
    pub(crate) fn cut(&self) -> LogCut {
        let log = self.log;
        let st = &self.st;
        let snapshot = log.table.snapshot();
        let count = snapshot.len();
        let next_seq = st.next_seq;
        let segments = snapshot
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let partial = if i + 1 == count {
                    match entry.segment() {
                        // The active segment (or the follower's newest):
                        // up to its published end.
                        Some(seg) if entry.seal().is_none() => Some(Slot {
                            durable_end: seg.region.published() as u64,
                            next_seq,
                            last_timestamp: st.last_timestamp,
                            clean: true,
                            ..Slot::empty(entry.base)
                        }),
                        _ => entry.seal(),
                    }
                } else if let Some(p) = st.sealing.iter().find(|p| p.active.seg.base == entry.base) {
                    // Rolled away from, its seal not written yet.
                    Some(Slot {
                        durable_end: p.active.offset as u64,
                        next_seq: p.next_seq,
                        last_timestamp: p.last_timestamp,
                        sealed: true,
                        ..Slot::empty(entry.base)
                    })
                } else {
                    // Known sealed (or seen to its end by a follower).
                    entry.seal().map(|s| Slot {
                        sealed: true,
                        clean: false,
                        ..s
                    })
                };
                CutSegment {
                    base: entry.base,
                    path: entry.path.clone(),
                    partial,
                }
            })
            .collect();
        LogCut {
            id: log.id,
            first_seq: log.first_seq(),
            last_seq: (next_seq - 1).max(log.first_seq() - 1),
            segments,
        }
    }
}
