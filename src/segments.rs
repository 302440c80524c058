//! A channel's ordered list of segments. Sealed segments are opened on
//! first use and at most `MAX_OPEN_SEALED` of them stay open per channel, so
//! memory (mappings, in-memory indexes) does not grow with the store.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::env::Env;
use crate::error::Result;
use crate::recovery;
use crate::segment::{Segment, Slot};

/// Sealed segments kept open per channel; older ones are closed (a
/// `Message` still holding one keeps its mapping alive).
pub(crate) const MAX_OPEN_SEALED: usize = 8;

/// One segment file, open or not.
pub(crate) struct SegmentSlot {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    seg: RwLock<Option<Arc<Segment>>>,
    opening: Mutex<()>,
    /// The seal, once known: kept after the segment is closed, so that the
    /// compaction pass need not open it again.
    seal: OnceLock<Slot>,
}

impl SegmentSlot {
    pub(crate) fn new(base: u64, path: PathBuf) -> Arc<SegmentSlot> {
        Arc::new(SegmentSlot {
            base,
            path,
            seg: RwLock::new(None),
            opening: Mutex::new(()),
            seal: OnceLock::new(),
        })
    }

    pub(crate) fn opened(seg: Arc<Segment>) -> Arc<SegmentSlot> {
        let slot = SegmentSlot::new(seg.base, seg.path.clone());
        *slot.seg.write() = Some(seg);
        slot
    }

    fn get(&self) -> Option<Arc<Segment>> {
        self.seg.read().clone()
    }

    /// The segment's seal, if it is known to be sealed.
    pub(crate) fn seal(&self) -> Option<Slot> {
        self.seal.get().copied()
    }
}

/// The segments of one channel, ordered by base seq.
pub(crate) struct SegmentList {
    slots: RwLock<Vec<Arc<SegmentSlot>>>,
    /// Open sealed segments, least recently opened first.
    open_sealed: Mutex<VecDeque<Arc<SegmentSlot>>>,
}

impl SegmentList {
    pub(crate) fn new(slots: Vec<Arc<SegmentSlot>>) -> SegmentList {
        SegmentList {
            slots: RwLock::new(slots),
            open_sealed: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.read().len()
    }

    /// Appends the writer's new segment.
    pub(crate) fn push(&self, seg: Arc<Segment>) {
        self.slots.write().push(SegmentSlot::opened(seg));
    }

    /// The slot at position `i` and the base of the one after it.
    pub(crate) fn at(&self, i: usize) -> Option<(Arc<SegmentSlot>, Option<u64>)> {
        let slots = self.slots.read();
        let slot = slots.get(i)?;
        Some((Arc::clone(slot), slots.get(i + 1).map(|s| s.base)))
    }

    /// The slot that holds `seq` and the base of the one after it.
    pub(crate) fn holding(&self, seq: u64) -> Option<(Arc<SegmentSlot>, Option<u64>)> {
        let i = self.slots.read().partition_point(|s| s.base <= seq);
        self.at(i.checked_sub(1)?)
    }

    /// The slot's segment, opening (and validating) it if needed.
    pub(crate) fn open(
        &self,
        env: &Env,
        channel_id: u64,
        slot: &Arc<SegmentSlot>,
        next_base: Option<u64>,
    ) -> Result<Arc<Segment>> {
        if let Some(seg) = slot.get() {
            return Ok(seg);
        }
        let _guard = slot.opening.lock();
        if let Some(seg) = slot.get() {
            return Ok(seg);
        }
        let seg = recovery::open_sealed(env, channel_id, slot.base, &slot.path, next_base)?;
        *slot.seg.write() = Some(Arc::clone(&seg));
        self.track_sealed(slot);
        Ok(seg)
    }

    /// Counts a sealed, open segment against `MAX_OPEN_SEALED`, closing the
    /// least recently opened one past it.
    pub(crate) fn track_sealed(&self, slot: &Arc<SegmentSlot>) {
        if let Some(seal) = slot.get().and_then(|s| s.seal_info()) {
            let _ = slot.seal.set(seal);
        }
        let evicted = {
            let mut open = self.open_sealed.lock();
            open.push_back(Arc::clone(slot));
            if open.len() > MAX_OPEN_SEALED {
                open.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            *old.seg.write() = None;
        }
    }

    /// Takes the first `n` slots out of the list (retention); new readers no
    /// longer find them. Returns them.
    pub(crate) fn remove_front(&self, n: usize) -> Vec<Arc<SegmentSlot>> {
        if n == 0 {
            return Vec::new();
        }
        let removed: Vec<Arc<SegmentSlot>> = {
            let mut slots = self.slots.write();
            let n = n.min(slots.len());
            slots.drain(..n).collect()
        };
        self.open_sealed
            .lock()
            .retain(|s| !removed.iter().any(|r| Arc::ptr_eq(r, s)));
        for slot in &removed {
            *slot.seg.write() = None;
        }
        removed
    }

    /// The slot holding the writer's segment `base` (just sealed).
    pub(crate) fn slot_of(&self, base: u64) -> Option<Arc<SegmentSlot>> {
        self.slots.read().iter().rev().find(|s| s.base == base).cloned()
    }

    /// How many segments are open (for tests of the memory bound).
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.slots.read().iter().filter(|s| s.seg.read().is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_OPEN_SEALED;
    use crate::{Options, Store, SyncPolicy};

    #[test]
    fn open_sealed_segments_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options::default().segment_size(4096).sync_policy(SyncPolicy::Never);
        let payload = [7u8; 200];
        {
            let store = Store::open(dir.path(), opts.clone()).expect("open");
            let ch = store.channel("c").expect("channel");
            for _ in 0..2000 {
                ch.publish(&payload).expect("publish");
            }
            assert!(ch.core.segments.open_count() <= MAX_OPEN_SEALED + 1);
            store.close().expect("close");
        }
        let store = Store::open(dir.path(), opts).expect("reopen");
        let ch = store.channel("c").expect("channel");
        let segments = ch.core.segments.len();
        assert!(segments > 10 * MAX_OPEN_SEALED, "{segments} segments");
        let first = ch.get(1).expect("first");
        let mut n = 0;
        for m in ch.read_from(1).expect("read") {
            assert_eq!(m.expect("message").payload(), payload);
            n += 1;
            assert!(ch.core.segments.open_count() <= MAX_OPEN_SEALED + 1);
        }
        assert_eq!(n, 2000);
        // Random access reopens closed segments; held messages stay valid.
        for seq in (1..=2000).rev().step_by(37) {
            assert_eq!(ch.get(seq).expect("get").payload(), payload);
        }
        assert_eq!(first.payload(), payload, "a held message outlives eviction");
        assert!(ch.core.segments.open_count() <= MAX_OPEN_SEALED + 1);
    }
}
