//! Writing a backup: the files of a cut copied (or linked) into a new
//! store directory, its subscribers log and catalog written anew.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Cut;
use crate::catalog::{BACKUP_FILE, CATALOG_FILE};
use crate::error::{Error, IoOp, Result};
use crate::format::catalog::{encode, CatalogData, ChannelEntry};
use crate::format::frame::segment_seed;
use crate::format::segment::{
    index_file_name, segment_file_name, FixedHeader, Slot, FIXED_LEN, SEGMENT_HEADER_LEN, SLOT_OFFSETS,
};
use crate::log::{CutSegment, LogCut};
use crate::report::{BackupReport, Progress};
use crate::storage::Storage;

/// Bytes copied per read.
const COPY_CHUNK: usize = 1 << 20;

/// Writes the copy of `cut` into `dest`.
pub(super) fn write_copy(
    storage: &Storage,
    dest: &Path,
    cut: &Cut,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupReport> {
    for ((id, name), d) in &cut.subscribers {
        let end = cut
            .channels
            .iter()
            .find(|(_, _, c)| c.id == *id)
            .map_or(0, |(_, _, c)| c.last_seq);
        let top = d.acked_above.iter().map(|r| r.1).fold(d.position, u64::max);
        if top > end {
            // Never written: a copy whose subscriber points past its
            // channel would not open.
            return Err(Error::corrupt(
                dest,
                0,
                format!("subscriber {name:?} of channel {id} is at {top}, past the channel's end {end} in the cut"),
            ));
        }
    }
    let mut copier = Copier {
        storage,
        report: BackupReport {
            one_instant: cut.instant,
            subscribers: cut.subscribers.len(),
            ..BackupReport::default()
        },
        progress,
        done: 0,
        total: cut
            .channels
            .iter()
            .flat_map(|(_, _, c)| &c.segments)
            .map(|s| storage.file_len(&s.path).unwrap_or(0))
            .sum(),
    };
    let chans = dest.join("channels");
    fs::create_dir_all(&chans).map_err(Error::io_at(IoOp::CreateDir, &chans))?;
    let mut data = CatalogData {
        store_id: cut.data.store_id,
        next_id: cut.data.next_id,
        subs_generation: 1,
        channels: Default::default(),
    };
    for (name, entry, log) in &cut.channels {
        let dir = chans.join(log.id.to_string());
        fs::create_dir(&dir).map_err(Error::io_at(IoOp::CreateDir, &dir))?;
        let copied = copier.channel(&dir, log)?;
        sync_dir(&dir)?;
        copier.report.channels += 1;
        copier.report.messages += (log.last_seq + 1).saturating_sub(copied.first_seq);
        data.channels.insert(
            name.clone(),
            ChannelEntry {
                first_seq: copied.first_seq,
                newest_base: copied.newest_base,
                durable_seq: if copied.newest_base > 0 { log.last_seq } else { 0 },
                ..entry.clone()
            },
        );
    }
    sync_dir(&chans)?;
    let target = Storage::Real(crate::storage::RealStorage::default());
    crate::subscriptions::write_copy(&target, dest, data.store_id, 1, &cut.subscribers)?;
    // Last: with its catalog the copy is a store.
    let bytes = encode(&data);
    for name in [CATALOG_FILE, BACKUP_FILE] {
        let tmp = dest.join(format!("{name}.tmp"));
        let file = File::create(&tmp).map_err(Error::io_at(IoOp::Create, &tmp))?;
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.sync_all())
            .map_err(Error::io_at(IoOp::Write, &tmp))?;
        let path = dest.join(name);
        fs::rename(&tmp, &path).map_err(Error::io_at(IoOp::Rename, &tmp))?;
        sync_dir(dest)?;
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(copier.report)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io_at(IoOp::SyncDir, dir))
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// What was kept of a channel.
struct Copied {
    first_seq: u64,
    /// Base of the last segment copied (0: none).
    newest_base: u64,
}

struct Copier<'a> {
    storage: &'a Storage,
    report: BackupReport,
    progress: &'a mut dyn FnMut(Progress),
    done: u64,
    total: u64,
}

impl Copier<'_> {
    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.total = self.total.max(self.done);
        (self.progress)(Progress {
            done: self.done,
            total: self.total,
        });
    }

    /// Copies a channel's segments of the cut into `dir`.
    fn channel(&mut self, dir: &Path, log: &LogCut) -> Result<Copied> {
        let mut first = log.first_seq;
        let mut newest = 0;
        for (i, seg) in log.segments.iter().enumerate() {
            let next_base = log.segments.get(i + 1).map(|s| s.base);
            if next_base.is_some_and(|next| next <= first) {
                continue;
            }
            let is_last = next_base.is_none();
            match self.segment(dir, log.id, seg, is_last) {
                Ok(()) => newest = seg.base,
                // Removed by retention since the cut. Retention removes
                // from the front, so everything before it is gone from the
                // store too: the copy starts after it.
                Err(e) if not_found(&e) => {
                    first = next_base.unwrap_or(log.last_seq + 1).max(first);
                    for earlier in log.segments.iter().take_while(|s| s.base <= seg.base) {
                        for name in [segment_file_name(earlier.base), index_file_name(earlier.base)] {
                            let _ = fs::remove_file(dir.join(name));
                        }
                    }
                    newest = 0;
                    self.report.retention_skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Copied {
            first_seq: first,
            newest_base: newest,
        })
    }

    /// Links or copies one segment (and the index file of a whole one).
    fn segment(&mut self, dir: &Path, channel_id: u64, seg: &CutSegment, is_last: bool) -> Result<()> {
        let src = &seg.path;
        let dst = dir.join(segment_file_name(seg.base));
        let len = self.storage.file_len(src)?;
        let header = self.storage.read_at(src, 0, SEGMENT_HEADER_LEN)?;
        let fixed = FixedHeader::decode(&header).map_err(|reason| Error::corrupt(src, 0, reason))?;
        if fixed.channel_id != channel_id || fixed.base_seq != seg.base || fixed.segment_len != len {
            return Err(Error::corrupt(src, 0, "the segment header does not match its place"));
        }
        let seed = segment_seed(channel_id, seg.base);
        let on_disk = crate::slots::newest_slot(&header, seed, seg.base, len).map(|(s, _)| s);
        let sealed_on_disk = on_disk.filter(|s| s.sealed);
        let whole = match (sealed_on_disk, seg.partial) {
            (Some(disk), Some(cut)) => disk.next_seq == cut.next_seq,
            (Some(_), None) => true,
            (None, None) => {
                return Err(Error::corrupt(
                    src,
                    SLOT_OFFSETS[0] as u64,
                    "followed by another segment but not sealed",
                ))
            }
            (None, Some(_)) => false,
        };
        if whole {
            // The last segment of a copy is opened for writing by its
            // owner: never a link to the original's file.
            let linked = !is_last && matches!(self.storage, Storage::Real(_)) && fs::hard_link(src, &dst).is_ok();
            if linked {
                self.report.segments_linked += 1;
            } else {
                self.copy_whole(src, &dst)?;
                self.report.segments_copied += 1;
                self.report.bytes_copied += len;
            }
            let idx = src.with_file_name(index_file_name(seg.base));
            // Derived data (rebuilt when missing): copied, never linked,
            // since an owner rewrites index files in place.
            if self.storage.exists(&idx) {
                let _ = self.copy_whole(&idx, &dir.join(index_file_name(seg.base)));
            }
            self.advance(len);
            return Ok(());
        }
        let Some(slot) = seg.partial else {
            return Err(Error::corrupt(src, 0, "no end known for an unsealed segment"));
        };
        let end = slot.durable_end;
        if end < SEGMENT_HEADER_LEN as u64 || end > len {
            return Err(Error::corrupt(
                src,
                SLOT_OFFSETS[0] as u64,
                "records end outside the segment",
            ));
        }
        // Its records up to the cut, zeros after, and a slot that says so.
        self.copy_range(src, &dst, SEGMENT_HEADER_LEN as u64, end, len)?;
        let mut head = vec![0u8; SEGMENT_HEADER_LEN];
        head[..FIXED_LEN].copy_from_slice(header.get(..FIXED_LEN).unwrap_or(&[0; FIXED_LEN]));
        let slot = Slot { generation: 1, ..slot };
        head[SLOT_OFFSETS[0]..SLOT_OFFSETS[1]].copy_from_slice(&slot.encode(seed));
        let file = OpenOptions::new()
            .write(true)
            .open(&dst)
            .map_err(Error::io_at(IoOp::Open, &dst))?;
        file.write_all_at(&head, 0)
            .and_then(|()| file.sync_all())
            .map_err(Error::io_at(IoOp::Write, &dst))?;
        self.report.segments_copied += 1;
        self.report.bytes_copied += end;
        self.advance(len);
        Ok(())
    }

    /// Copies a file that does not change (a sealed segment, an index
    /// file), synced.
    fn copy_whole(&self, src: &Path, dst: &Path) -> Result<()> {
        if matches!(self.storage, Storage::Real(_)) {
            // copy_file_range: no pass through user space.
            fs::copy(src, dst).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound if !dst.exists() || fs::metadata(src).is_err() => Error::io(IoOp::Read, src, e),
                _ => Error::io(IoOp::Write, dst, e),
            })?;
            return File::open(dst)
                .and_then(|f| f.sync_all())
                .map_err(Error::io_at(IoOp::SyncFile, dst));
        }
        let len = self.storage.file_len(src)?;
        self.copy_range(src, dst, 0, len, len)
    }

    /// Creates `dst` of `len` bytes (blocks reserved) holding the bytes
    /// `[from, to)` of `src` at the same offsets (zeros elsewhere), synced.
    fn copy_range(&self, src: &Path, dst: &Path, from: u64, to: u64, len: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)
            .map_err(Error::io_at(IoOp::Create, dst))?;
        crate::mmap::preallocate(&file, len).map_err(Error::io_at(IoOp::Create, dst))?;
        let mut at = from;
        while at < to {
            let n = usize::try_from(to - at).unwrap_or(COPY_CHUNK).min(COPY_CHUNK);
            let bytes = self.storage.read_at(src, at, n)?;
            file.write_all_at(&bytes, at).map_err(Error::io_at(IoOp::Write, dst))?;
            at += n as u64;
        }
        file.sync_all().map_err(Error::io_at(IoOp::SyncFile, dst))
    }
}
