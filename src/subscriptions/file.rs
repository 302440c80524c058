//! The subscribers log file (format version 2): preallocated, mapped, with
//! a segment-like header (a fixed part and two durability slots); each
//! record is a frame whose seq is its record number, whose timestamp is the
//! commit time and whose payload is the record body.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::error::{Error, IoOp, Result};
use crate::format::frame::{encode_message, frame_len};
use crate::format::segment::Slot;
use crate::format::sublog::{LogHeader, V2_HEADER_LEN};
use crate::mmap::{RecordsToken, Region};
use crate::prefault::{PrefaultCursor, Request};
use crate::slots::SlotWriter;
use crate::storage::Storage;

/// What follows the durable records in a new generation: a record past
/// the watermark (commit time, body), or a hole standing for superseded
/// ones (first and last record number).
pub(crate) enum TailItem {
    Record(u64, Vec<u8>),
    Hole(u64, u64),
}

/// An open log file, appended to under `Subscriptions`' lock.
pub(crate) struct LogFile {
    pub(crate) path: PathBuf,
    pub(crate) header: LogHeader,
    pub(crate) seed: u32,
    region: Arc<Region>,
    records: RecordsToken,
    slots: SlotWriter,
    /// Offset where the next record goes.
    pub(crate) end: usize,
    /// Number of the next record.
    pub(crate) next_record: u64,
    /// The end the newest watermark (record or slot) claims durable.
    recorded_end: usize,
    /// The pages ahead of `end` asked of the prefault thread.
    prefault: PrefaultCursor,
}

/// What a sync of the log must cover, taken under the lock and synced
/// without it.
pub(crate) struct SyncTarget {
    region: Arc<Region>,
    end: usize,
    pub(crate) next_record: u64,
}

impl SyncTarget {
    /// msync of everything up to the target.
    pub(crate) fn sync(&self, path: &Path) -> Result<()> {
        self.region
            .sync(0..self.end)
            .map_err(Error::io_at(IoOp::SyncMapping, path))
    }
}

impl LogFile {
    /// Creates the file at `path` (replacing nothing: the caller renames it
    /// into place) holding `durable` and then `tail` (bodies with their
    /// commit times) as records numbered from `header.first_record`; all
    /// of it is written and msynced when this returns, but the slot claims
    /// only `durable` (and the clean mark only when `tail` is empty): the
    /// tail's commits become durable with the next sync, which makes their
    /// channels durable first. `header.file_len` must hold them.
    pub(crate) fn create(
        storage: &Storage,
        path: &Path,
        header: LogHeader,
        seed: u32,
        durable: &[(u64, Vec<u8>)],
        tail: &[TailItem],
    ) -> Result<LogFile> {
        storage.remove_file(path)?;
        let (region, mut header_token, records) = storage.create_region(path, header.file_len, V2_HEADER_LEN)?;
        header_token
            .write(0, &header.encode())
            .map_err(Error::io_at(IoOp::WriteRecords, path))?;
        let mut file = LogFile {
            path: path.to_path_buf(),
            seed,
            slots: SlotWriter::new(header_token, None, header.first_record),
            header,
            region,
            records,
            end: V2_HEADER_LEN,
            next_record: header.first_record,
            recorded_end: V2_HEADER_LEN,
            prefault: PrefaultCursor::at(V2_HEADER_LEN),
        };
        for (ts, body) in durable {
            file.append(*ts, body)?;
        }
        let (durable_end, tail_from) = (file.end, file.next_record);
        for item in tail {
            match item {
                TailItem::Record(ts, body) => {
                    file.append(*ts, body)?;
                }
                TailItem::Hole(first, last) => file.append_hole(*first, *last)?,
            }
        }
        file.region
            .sync(0..file.end)
            .map_err(Error::io_at(IoOp::SyncMapping, path))?;
        if tail.is_empty() {
            file.mark_clean()?;
        } else {
            let slot = Slot {
                durable_end: durable_end as u64,
                next_seq: tail_from,
                ..Slot::empty(header.first_record)
            };
            file.slots.write(seed, path, slot)?;
            file.sync_header()?;
        }
        Ok(file)
    }

    /// Writes a hole frame standing for records `first..=last` (superseded
    /// ones a rewrite dropped), so that the records after it keep their
    /// numbers.
    fn append_hole(&mut self, first: u64, last: u64) -> Result<()> {
        use crate::format::frame::{encode_hole, FRAME_HEADER_LEN};
        let io = Error::io_at(IoOp::WriteRecords, &self.path);
        let hole = encode_hole(self.seed, first, last, FRAME_HEADER_LEN)
            .ok_or_else(|| Error::corrupt(&self.path, self.end as u64, "cannot write a hole marker"))?;
        if first != self.next_record || self.end + FRAME_HEADER_LEN > self.region.len() {
            return Err(Error::corrupt(&self.path, self.end as u64, "hole out of place"));
        }
        self.records
            .write(self.end, &hole)
            .and_then(|()| self.records.publish(self.end + FRAME_HEADER_LEN))
            .map_err(io)?;
        self.end += FRAME_HEADER_LEN;
        self.next_record = last + 1;
        Ok(())
    }

    /// Every record in the file, in order: (number, commit time, body).
    pub(crate) fn read_records(&self) -> Result<Vec<(u64, u64, Vec<u8>)>> {
        use crate::format::frame::{FrameCursor, SegmentBytes, FRAME_HEADER_LEN};
        let io = Error::io_at(IoOp::Read, &self.path);
        let view = SegmentBytes {
            base: V2_HEADER_LEN,
            bytes: self.records.read(V2_HEADER_LEN, self.end - V2_HEADER_LEN).map_err(io)?,
        };
        let mut cursor = FrameCursor::new(self.seed, V2_HEADER_LEN, self.header.first_record);
        let mut out = Vec::new();
        while cursor.offset < self.end {
            let frame = cursor
                .step(view, false)
                .map_err(|e| Error::corrupt(&self.path, e.offset as u64, e.reason()))?;
            if frame.header.kind() == crate::format::frame::FrameKind::Hole {
                continue;
            }
            let body = view
                .get(frame.offset + FRAME_HEADER_LEN, frame.header.payload_len())
                .unwrap_or(&[]);
            out.push((frame.header.seq, frame.header.timestamp, body.to_vec()));
        }
        Ok(out)
    }

    /// Opens an existing file for appending at `end`, where record
    /// `next_record` goes (recovery decided both); `newest` is its newest
    /// valid slot.
    pub(crate) fn open(
        storage: &Storage,
        path: &Path,
        header: LogHeader,
        seed: u32,
        end: usize,
        next_record: u64,
        newest: Option<(Slot, usize)>,
    ) -> Result<LogFile> {
        let (region, header_token, mut records) = storage.open_region(path, V2_HEADER_LEN)?;
        records.publish(end).map_err(Error::io_at(IoOp::WriteRecords, path))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            seed,
            slots: SlotWriter::new(header_token, newest, header.first_record),
            header,
            region,
            records,
            end,
            next_record,
            recorded_end: V2_HEADER_LEN,
            prefault: PrefaultCursor::at(end),
        })
    }

    /// Whether a record with a body of `len` bytes fits.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.end + frame_len(len) <= self.region.len()
    }

    /// Bytes the records take.
    pub(crate) fn used(&self) -> usize {
        self.end - V2_HEADER_LEN
    }

    /// The file's length.
    pub(crate) fn capacity(&self) -> usize {
        self.region.len()
    }

    /// Appends one record (the caller checked it fits); returns its number.
    /// Before the first record past a clean mark, the mark is withdrawn
    /// durably.
    pub(crate) fn append(&mut self, timestamp: u64, body: &[u8]) -> Result<u64> {
        if self.slots.written().clean {
            let unmarked = Slot {
                clean: false,
                ..self.slots.written()
            };
            self.slots.write(self.seed, &self.path, unmarked)?;
            self.sync_header()?;
        }
        let recno = self.next_record;
        let len = frame_len(body.len());
        let head = encode_message(self.seed, recno, timestamp, body);
        let io = Error::io_at(IoOp::WriteRecords, &self.path);
        self.records
            .write_frame(self.end, &head, body, len)
            .and_then(|()| self.records.publish(self.end + len))
            .map_err(io)?;
        self.end += len;
        self.next_record += 1;
        Ok(recno)
    }

    /// Asks the prefault thread for the pages ahead of the next record, so
    /// commits copy into pages already mapped instead of each 4 KiB page
    /// being zero-filled in a fault on the committing thread (~12 % of a
    /// no-sync commit).
    pub(crate) fn prefault_ahead(&mut self, sender: Option<&Sender<Request>>) {
        self.prefault.advance(sender, &self.region, self.end);
    }

    /// What a sync started now must cover.
    pub(crate) fn sync_target(&self) -> SyncTarget {
        SyncTarget {
            region: Arc::clone(&self.region),
            end: self.end,
            next_record: self.next_record,
        }
    }

    /// After `target` was synced: records it, durable with the next msync,
    /// as a watermark record appended after the records (it lands in the
    /// page the next sync writes anyway, so a sync writes one page where a
    /// slot in the header would make it two), or in a slot when no record
    /// fits any more. Nothing when the file was replaced meanwhile or the
    /// target is already recorded.
    pub(crate) fn record_synced(&mut self, target: &SyncTarget) -> Result<()> {
        if !Arc::ptr_eq(&self.region, &target.region) || self.recorded_end >= target.end {
            return Ok(());
        }
        let mark = crate::format::sublog::encode_body(&crate::format::sublog::LogRecord::Watermark {
            end: target.end as u64,
            next_record: target.next_record,
        });
        if self.fits(mark.len()) && !self.slots.written().clean {
            self.append(0, &mark)?;
        } else {
            let slot = Slot {
                durable_end: target.end as u64,
                next_seq: target.next_record,
                ..Slot::empty(self.header.first_record)
            };
            self.slots.write(self.seed, &self.path, slot)?;
        }
        self.recorded_end = target.end;
        Ok(())
    }

    /// At close, after a sync of everything: durably records that nothing
    /// lies past the records.
    pub(crate) fn mark_clean(&mut self) -> Result<()> {
        let w = self.slots.written();
        if w.clean && w.durable_end == self.end as u64 {
            return Ok(());
        }
        // A watermark record appended after the last sync is not durable yet.
        self.region
            .sync(0..self.end)
            .map_err(Error::io_at(IoOp::SyncMapping, &self.path))?;
        let slot = Slot {
            durable_end: self.end as u64,
            next_seq: self.next_record,
            clean: true,
            ..Slot::empty(self.header.first_record)
        };
        self.slots.write(self.seed, &self.path, slot)?;
        self.sync_header()
    }

    fn sync_header(&self) -> Result<()> {
        self.region
            .sync(0..V2_HEADER_LEN)
            .map_err(Error::io_at(IoOp::SyncMapping, &self.path))
    }

    /// Zeroes `[from, end of file)` and makes that durable, so records cut
    /// at recovery can never validate later. Whether anything was not zero.
    pub(crate) fn zero_from(&mut self, from: usize) -> Result<bool> {
        let len = self.region.len();
        if from >= len {
            return Ok(false);
        }
        let dirty = self
            .records
            .read(from, len - from)
            .map(|b| b.iter().any(|&x| x != 0))
            .map_err(Error::io_at(IoOp::Read, &self.path))?;
        if dirty {
            self.records
                .zero(from, len - from)
                .map_err(Error::io_at(IoOp::WriteRecords, &self.path))?;
            self.region
                .sync(from..len)
                .map_err(Error::io_at(IoOp::SyncMapping, &self.path))?;
        }
        Ok(dirty)
    }
}
