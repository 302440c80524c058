//! The subscribers log file (format version 2): preallocated, mapped, with
//! a segment-like header (a fixed part and two durability slots); each
//! record is a frame whose seq is its record number, whose timestamp is the
//! commit time and whose payload is the record body.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoOp, Result};
use crate::format::frame::{encode_message, frame_len};
use crate::format::segment::Slot;
use crate::format::sublog::{LogHeader, V2_HEADER_LEN};
use crate::mmap::{RecordsToken, Region};
use crate::slots::SlotWriter;
use crate::storage::Storage;

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
    /// into place) holding `bodies` (with their commit times) as records
    /// numbered from `header.first_record`, durable and marked clean when
    /// this returns. `header.file_len` must hold them.
    pub(crate) fn create(
        storage: &Storage,
        path: &Path,
        header: LogHeader,
        seed: u32,
        bodies: &[(u64, Vec<u8>)],
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
        };
        for (ts, body) in bodies {
            file.append(*ts, body)?;
        }
        file.region
            .sync(0..file.end)
            .map_err(Error::io_at(IoOp::SyncMapping, path))?;
        file.mark_clean()?;
        Ok(file)
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

    /// What a sync started now must cover.
    pub(crate) fn sync_target(&self) -> SyncTarget {
        SyncTarget {
            region: Arc::clone(&self.region),
            end: self.end,
            next_record: self.next_record,
        }
    }

    /// After `target` was synced: records it in a slot (durable with the
    /// next msync of the header), unless the file was replaced meanwhile
    /// (a rewrite is durable as a whole).
    pub(crate) fn record_synced(&mut self, target: &SyncTarget) -> Result<()> {
        let w = self.slots.written();
        if !Arc::ptr_eq(&self.region, &target.region) || w.durable_end >= target.end as u64 {
            return Ok(());
        }
        let slot = Slot {
            durable_end: target.end as u64,
            next_seq: target.next_record,
            ..Slot::empty(self.header.first_record)
        };
        self.slots.write(self.seed, &self.path, slot)
    }

    /// At close, after a sync of everything: durably records that nothing
    /// lies past the records.
    pub(crate) fn mark_clean(&mut self) -> Result<()> {
        let w = self.slots.written();
        if w.clean && w.durable_end == self.end as u64 {
            return Ok(());
        }
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
