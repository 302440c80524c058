//! The two alternating durability slots in a mapped file's header (segments
//! and the subscribers log): each write goes to the slot not holding the
//! newest value, with the next generation, so a torn write leaves the older
//! slot intact. See docs/format.md, "Slots".

use std::path::Path;

use crate::error::{Error, IoOp, Result};
use crate::format::segment::{Slot, SLOT_LEN, SLOT_OFFSETS};
use crate::mmap::HeaderToken;

/// Writes the two slots of one file's header.
pub(crate) struct SlotWriter {
    token: HeaderToken,
    written: Slot,
    next_slot: usize,
}

impl SlotWriter {
    /// A writer for a header whose newest valid slot is `newest` (and at
    /// which of the two positions), or none; `base` is the first seq (or
    /// record number) of the file.
    pub(crate) fn new(token: HeaderToken, newest: Option<(Slot, usize)>, base: u64) -> SlotWriter {
        let (written, next_slot) = match newest {
            Some((s, at)) => (s, 1 - at.min(1)),
            None => (Slot::empty(base), 0),
        };
        SlotWriter {
            token,
            written,
            next_slot,
        }
    }

    /// A writer for a new file whose header holds no slot yet: writes
    /// `first` (generation 0) at the first position. Made durable with the
    /// file's creation, it means the header of a file on record always
    /// holds a valid slot (each later write leaves the other one intact),
    /// so a header with none is damage, not a file that never synced.
    pub(crate) fn init(mut token: HeaderToken, seed: u32, path: &Path, first: Slot) -> Result<SlotWriter> {
        let first = Slot { generation: 0, ..first };
        token
            .write(SLOT_OFFSETS[0], &first.encode(seed))
            .map_err(Error::io_at(IoOp::WriteRecords, path))?;
        Ok(SlotWriter {
            token,
            written: first,
            next_slot: 1,
        })
    }

    /// Gives the header back (to start over with [`SlotWriter::init`]).
    pub(crate) fn into_token(self) -> HeaderToken {
        self.token
    }

    /// The slot most recently written (durable at the next header msync).
    pub(crate) fn written(&self) -> Slot {
        self.written
    }

    /// Writes `slot` (with the next generation) over the older slot; `seed`
    /// is the file's CRC seed, `path` names it in errors.
    pub(crate) fn write(&mut self, seed: u32, path: &Path, slot: Slot) -> Result<()> {
        let slot = Slot {
            generation: self.written.next_generation(),
            ..slot
        };
        let at = SLOT_OFFSETS[self.next_slot.min(1)];
        self.token
            .write(at, &slot.encode(seed))
            .map_err(Error::io_at(IoOp::WriteRecords, path))?;
        self.written = slot;
        self.next_slot = 1 - self.next_slot.min(1);
        Ok(())
    }
}

/// The newest valid slot in a header and its position; `seed`, `base` and
/// `len` are what a slot of this file must agree with.
pub(crate) fn newest_slot(header: &[u8], seed: u32, base: u64, len: u64) -> Option<(Slot, usize)> {
    let mut best: Option<(Slot, usize)> = None;
    for (i, at) in SLOT_OFFSETS.iter().enumerate() {
        let slot = header
            .get(*at..at + SLOT_LEN)
            .and_then(|b| Slot::decode(b, seed, base, len));
        if let Some(s) = slot {
            if Slot::newest(best.map(|b| b.0), Some(s)) == Some(s) {
                best = Some((s, i));
            }
        }
    }
    best
}
