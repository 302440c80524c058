//! The log's list of segments as readers see it: an immutable snapshot
//! replaced whole by the log's transitions (roll, trim), so a lookup never
//! mixes two versions of the list. Sealed segments are opened on first use
//! and at most `MAX_OPEN_SEALED` of them stay open, so memory (mappings,
//! in-memory indexes) does not grow with the store.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::format::segment::Slot;
use crate::segment::Segment;

/// Sealed segments kept open per channel; older ones are closed (a
/// `Message` still holding one keeps its mapping alive).
pub(crate) const MAX_OPEN_SEALED: usize = 8;
/// More may stay open while together they map at most this much (eight
/// full-size segments at the default size): segments start small and
/// grow, and a channel's first dozen small ones must not push its large
/// ones out.
const OPEN_SEALED_BYTES: usize = 8 * (64 << 20);
/// Never more than this many open, whatever their size.
pub(crate) const MAX_OPEN_SEALED_ANY_SIZE: usize = 64;

/// One segment file, open or not.
pub(super) struct SegmentEntry {
    pub base: u64,
    pub path: PathBuf,
    open: RwLock<Option<Arc<Segment>>>,
    opening: Mutex<()>,
    /// Read since the last eviction pass looked at it: spared once.
    used: AtomicBool,
    /// The seal, once known: kept after the segment is closed, so that
    /// retention need not open it again.
    seal: OnceLock<Slot>,
}

impl SegmentEntry {
    pub(super) fn closed(base: u64, path: PathBuf) -> Arc<SegmentEntry> {
        Arc::new(SegmentEntry {
            base,
            path,
            open: RwLock::new(None),
            opening: Mutex::new(()),
            used: AtomicBool::new(false),
            seal: OnceLock::new(),
        })
    }

    pub(super) fn opened(seg: Arc<Segment>) -> Arc<SegmentEntry> {
        let entry = SegmentEntry::closed(seg.base, seg.path.clone());
        *entry.open.write() = Some(seg);
        entry
    }

    /// The segment, if it is open.
    pub(super) fn segment(&self) -> Option<Arc<Segment>> {
        self.open.read().clone()
    }

    /// The segment's seal, if it is known to be sealed.
    pub(super) fn seal(&self) -> Option<Slot> {
        self.seal.get().copied()
    }

    pub(super) fn set_seal(&self, seal: Slot) {
        let _ = self.seal.set(seal);
    }
}

/// A consistent view of the list: slots by base, and where each one ends.
pub(super) struct Snapshot(Arc<[Arc<SegmentEntry>]>);

impl Snapshot {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Entry `i` and the base of the one after it.
    pub(super) fn at(&self, i: usize) -> Option<(&Arc<SegmentEntry>, Option<u64>)> {
        let entry = self.0.get(i)?;
        Some((entry, self.0.get(i + 1).map(|e| e.base)))
    }

    /// The entry that holds `seq` and the base of the one after it.
    pub(super) fn holding(&self, seq: u64) -> Option<(&Arc<SegmentEntry>, Option<u64>)> {
        let i = self.0.partition_point(|e| e.base <= seq);
        self.at(i.checked_sub(1)?)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<SegmentEntry>> {
        self.0.iter()
    }
}

/// See the module docs.
pub(super) struct SegmentTable {
    list: RwLock<Arc<[Arc<SegmentEntry>]>>,
    /// Open sealed segments, least recently opened first.
    open_sealed: Mutex<VecDeque<Arc<SegmentEntry>>>,
}

impl SegmentTable {
    pub(super) fn new(entries: Vec<Arc<SegmentEntry>>) -> SegmentTable {
        SegmentTable {
            list: RwLock::new(entries.into()),
            open_sealed: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot(Arc::clone(&self.list.read()))
    }

    pub(super) fn len(&self) -> usize {
        self.list.read().len()
    }

    /// Appends the writer's new segment (under the log's state lock).
    pub(super) fn push(&self, entry: Arc<SegmentEntry>) {
        let mut list = self.list.write();
        let mut next: Vec<Arc<SegmentEntry>> = list.iter().cloned().collect();
        next.push(entry);
        *list = next.into();
    }

    /// Takes the first `n` entries out of the list (retention, under the
    /// log's state lock); new readers no longer find them. Returns them.
    pub(super) fn remove_front(&self, n: usize) -> Vec<Arc<SegmentEntry>> {
        if n == 0 {
            return Vec::new();
        }
        let removed: Vec<Arc<SegmentEntry>> = {
            let mut list = self.list.write();
            let n = n.min(list.len());
            let removed = list.iter().take(n).cloned().collect();
            *list = list.iter().skip(n).cloned().collect::<Vec<_>>().into();
            removed
        };
        self.open_sealed
            .lock()
            .retain(|s| !removed.iter().any(|r| Arc::ptr_eq(r, s)));
        for entry in &removed {
            *entry.open.write() = None;
        }
        removed
    }

    /// The entry's segment, opened by `open` if needed (one opener at a
    /// time per entry). A sealed segment opened here counts against
    /// `MAX_OPEN_SEALED`.
    pub(super) fn open(
        &self,
        entry: &Arc<SegmentEntry>,
        open: impl FnOnce() -> Result<(Arc<Segment>, Slot)>,
    ) -> Result<Arc<Segment>> {
        if let Some(seg) = entry.segment() {
            // Checked first: a segment read all the time is not written
            // to all the time.
            if !entry.used.load(Ordering::Relaxed) {
                entry.used.store(true, Ordering::Relaxed);
            }
            return Ok(seg);
        }
        let _guard = entry.opening.lock();
        if let Some(seg) = entry.segment() {
            return Ok(seg);
        }
        let (seg, seal) = open()?;
        entry.set_seal(seal);
        *entry.open.write() = Some(Arc::clone(&seg));
        self.track_sealed(entry);
        Ok(seg)
    }

    /// Counts a sealed, open segment against the open budget, closing the
    /// least recently opened ones past it (a segment read since the last
    /// pass is spared once: second chance).
    pub(super) fn track_sealed(&self, entry: &Arc<SegmentEntry>) {
        let mut evicted = Vec::new();
        {
            let mut open = self.open_sealed.lock();
            open.push_back(Arc::clone(entry));
            let bytes = |open: &VecDeque<Arc<SegmentEntry>>| -> usize {
                open.iter().filter_map(|e| e.segment()).map(|s| s.region.len()).sum()
            };
            let mut spared = 0;
            while open.len() > MAX_OPEN_SEALED
                && (open.len() > MAX_OPEN_SEALED_ANY_SIZE || bytes(&open) > OPEN_SEALED_BYTES)
            {
                let Some(oldest) = open.pop_front() else { break };
                if spared < open.len() && oldest.used.swap(false, Ordering::Relaxed) {
                    spared += 1;
                    open.push_back(oldest);
                    continue;
                }
                evicted.push(oldest);
            }
        }
        for old in evicted {
            *old.open.write() = None;
        }
    }

    /// How many segments are open (for tests of the memory bound).
    #[cfg(test)]
    pub(super) fn open_count(&self) -> usize {
        self.list.read().iter().filter(|s| s.open.read().is_some()).count()
    }
}
