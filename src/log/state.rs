//! The log's mutable state and its durability transitions. Everything here
//! is changed only under `Log::state`.
//!
//! Each segment goes through these states:
//!
//! ```text
//!   created ──append──▶ active (dirty) ──sync──▶ active (slot records the synced end)
//!      ▲                    │    ▲                      │
//!      │                  close  └── first append ──────┤ (withdraws the clean mark durably first)
//!      │                    ▼                           │
//!      │              clean-marked ◀────────────────────┘
//!      │
//!   active ──roll──▶ sealed (read-only from then on; reopened read-only)
//! ```
//!
//! A slot is written to the header only after the msync that makes what it
//! records durable, and becomes durable with the next msync of the header:
//! no slot ever claims more than was durable.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoOp, Result};
use crate::format::segment::{Slot, SEGMENT_HEADER_LEN};
use crate::index::Coverage;
use crate::mmap::RecordsToken;
use crate::prefault::PrefaultCursor;
use crate::segment::{Prepared, Segment};
pub(super) use crate::slots::SlotWriter;

/// Where the log is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepting appends.
    Open,
    /// `close` is syncing: no append starts, the clean mark comes next.
    Closing,
    /// Closed cleanly.
    Closed,
    /// The channel was deleted.
    Deleted,
}

fn sync_range(seg: &Segment, end: usize) -> Result<()> {
    seg.region
        .sync(0..end)
        .map_err(Error::io_at(IoOp::SyncMapping, &seg.path))
}

fn sync_header(seg: &Segment) -> Result<()> {
    sync_range(seg, SEGMENT_HEADER_LEN)
}

/// The segment being appended to.
pub(super) struct Active {
    pub seg: Arc<Segment>,
    pub records: RecordsToken,
    pub slots: SlotWriter,
    /// Offset where the next record goes.
    pub offset: usize,
    /// Offset of the last indexed record.
    pub last_indexed: Option<usize>,
    /// Pages asked to be faulted in ahead of the writer.
    pub prefault: PrefaultCursor,
    /// Records end covered by the last index file a sync wrote.
    pub index_checkpoint: usize,
    /// The catalog records this segment as the channel's newest: none of
    /// its records is made durable before that.
    pub confirmed: bool,
}

/// A sync writes the active segment's index file again once this many bytes
/// of records were added since the last time, bounding how much a recovery
/// after a crash has to scan.
pub(super) const INDEX_CHECKPOINT_BYTES: usize = 4 << 20;

fn slot(end: usize, next_seq: u64, last_timestamp: u64) -> Slot {
    Slot {
        durable_end: end as u64,
        next_seq,
        last_timestamp,
        ..Slot::empty(next_seq)
    }
}

impl Active {
    pub(super) fn new(
        seg: Arc<Segment>,
        records: RecordsToken,
        slots: SlotWriter,
        offset: usize,
        confirmed: bool,
    ) -> Active {
        Active {
            confirmed,
            last_indexed: seg.index.last().map(|e| e.offset),
            prefault: PrefaultCursor::at(offset),
            index_checkpoint: offset,
            seg,
            records,
            slots,
            offset,
        }
    }

    /// Whether the newest slot carries the clean mark.
    #[inline]
    pub(super) fn clean_marked(&self) -> bool {
        self.slots.written().clean
    }

    /// Before the first write past a clean mark: durably withdraws it, so
    /// a crash cannot leave unchecked bytes past its end.
    pub(super) fn withdraw_clean_mark(&mut self) -> Result<()> {
        if !self.slots.written().clean {
            return Ok(());
        }
        let unmarked = Slot {
            clean: false,
            ..self.slots.written()
        };
        self.slots.write(self.seg.seed, &self.seg.path, unmarked)?;
        sync_header(&self.seg)
    }

    /// After an msync covering `end` completed: records it in a slot
    /// (durable with the next header msync). Nothing when the newest slot
    /// already covers it.
    pub(super) fn record_synced(&mut self, end: usize, next_seq: u64, last_timestamp: u64) -> Result<()> {
        let w = self.slots.written();
        if w.durable_end >= end as u64 || w.sealed {
            return Ok(());
        }
        // A clean mark stays only while nothing follows it.
        self.slots
            .write(self.seg.seed, &self.seg.path, slot(end, next_seq, last_timestamp))
    }

    /// After every record was msynced: writes the seal slot (the caller
    /// msyncs the header).
    pub(super) fn write_seal(&mut self, next_seq: u64, last_timestamp: u64) -> Result<Slot> {
        let sealed = Slot {
            sealed: true,
            ..slot(self.offset, next_seq, last_timestamp)
        };
        self.slots.write(self.seg.seed, &self.seg.path, sealed)?;
        Ok(self.slots.written())
    }

    /// Syncs every record, then durably marks the segment sealed.
    pub(super) fn seal(&mut self, next_seq: u64, last_timestamp: u64) -> Result<Slot> {
        sync_range(&self.seg, self.offset)?;
        let sealed = Slot {
            sealed: true,
            ..slot(self.offset, next_seq, last_timestamp)
        };
        self.slots.write(self.seg.seed, &self.seg.path, sealed)?;
        sync_header(&self.seg)?;
        Ok(self.slots.written())
    }

    /// At close (or at the end of recovery), after a sync covering every
    /// record: durably records that nothing lies past them. Writes nothing
    /// when the newest slot already says so.
    pub(super) fn mark_clean(&mut self, next_seq: u64, last_timestamp: u64) -> Result<()> {
        let w = self.slots.written();
        if w.sealed || (w.clean && w.durable_end == self.offset as u64 && w.next_seq == next_seq) {
            return Ok(());
        }
        let clean = Slot {
            clean: true,
            ..slot(self.offset, next_seq, last_timestamp)
        };
        self.slots.write(self.seg.seed, &self.seg.path, clean)?;
        sync_header(&self.seg)
    }

    /// What the records written so far cover, for an index file.
    /// The seq after the records its newest slot says are durable.
    pub(super) fn durable_next(&self) -> u64 {
        self.slots.written().next_seq
    }

    pub(super) fn coverage(&self, next_seq: u64, last_timestamp: u64) -> Coverage {
        Coverage {
            end: self.offset,
            next_seq,
            last_timestamp,
        }
    }
}

/// Everything about a log that changes, under one lock.
pub(super) struct LogState {
    pub phase: Phase,
    /// Seq the next append gets.
    pub next_seq: u64,
    /// Timestamp of the last record (timestamps never go back).
    pub last_timestamp: u64,
    /// The last segment, when it takes appends; `None` before the first
    /// append and after the last segment was sealed.
    pub active: Option<Active>,
    /// Segments the writer rolled away from whose seal is not durable yet,
    /// oldest first (sealed in the background, or by the next sync).
    pub sealing: VecDeque<Sealing>,
    /// A segment file made ahead for the next roll.
    pub prepared: Option<Prepared>,
    /// Files prepared so far (each gets its own name).
    pub prepared_count: u64,
    /// Length of the next segment: segments start small and double up to
    /// `Options::segment_size`.
    pub next_len: u64,
}

impl LogState {
    pub(super) fn new(next_seq: u64, last_timestamp: u64, active: Option<Active>, next_len: u64) -> LogState {
        LogState {
            phase: Phase::Open,
            next_seq,
            last_timestamp,
            active,
            sealing: VecDeque::new(),
            prepared: None,
            prepared_count: 0,
            next_len,
        }
    }
}

/// A segment rolled away from, waiting for its seal.
pub(super) struct Sealing {
    pub active: Active,
    /// The seq after its last record, and that record's timestamp.
    pub next_seq: u64,
    pub last_timestamp: u64,
}

/// The first segment of a channel: a channel with a few messages stays
/// small on disk. Each next one is `SEGMENT_GROWTH` times as long, up to
/// `Options::segment_size`.
pub(super) const FIRST_SEGMENT_LEN: u64 = 64 << 10;

/// The length of a new segment: as planned (within `max`), and long enough
/// for a frame of `need` bytes.
pub(super) fn segment_len(planned: u64, max: u64, need: usize) -> u64 {
    let fit = (SEGMENT_HEADER_LEN as u64 + need as u64).next_multiple_of(4096);
    planned.min(max).max(fit)
}

/// Growth from one segment to the next. Every roll costs syncs under
/// `Always` (the new segment confirmed, the old one sealed): with 8x a
/// channel reaches 64 MiB segments in 4 rolls instead of 10 (a synced
/// append of 1M messages lost a fifth of its speed to doubling).
const SEGMENT_GROWTH: u64 = 8;

/// The planned length of the segment after one of `len` bytes.
pub(super) fn after(len: u64, max: u64) -> u64 {
    len.saturating_mul(SEGMENT_GROWTH).min(max)
}

/// Checks a mapped segment can be written at all (a file path for errors).
pub(super) fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    Error::io_at(IoOp::WriteRecords, path)
}
