//! Checking a log's files: reads every segment and index file from storage
//! (not through the mappings) and checks each structure and the invariants
//! between them and the log's state. Changes nothing.

use std::path::Path;

use super::recover::read_slot;
use super::Log;
use crate::error::{Error, Result};
use crate::format::frame::{FrameCursor, FrameKind, SegmentBytes, FRAME_HEADER_LEN};
use crate::format::segment::{
    index_file_name, parse_index_name, parse_segment_name, segment_file_name, FixedHeader, SEGMENT_HEADER_LEN,
    SLOT_OFFSETS,
};
use crate::index::{decode_file, IndexEntry, IndexExpectation, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::options::MAX_SEGMENT_SIZE;
use crate::report::VerifyReport;

/// How segment files are read: one buffer for all of them (up to a
/// segment's size, instead of fresh memory faulted in for each), and who
/// is told the bytes read.
struct Reading<'a> {
    progress: &'a mut dyn FnMut(u64),
    buf: Vec<u8>,
}

impl Log {
    /// Checks this log's directory and files into `report`. A channel
    /// deleted meanwhile is skipped. `progress` is told the bytes of each
    /// segment file read.
    pub(crate) fn verify(&self, report: &mut VerifyReport, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let storage = &self.env.storage;
        // Only what was published when the check started is checked: the
        // directory, the active segment's published end and the last seq,
        // taken together under the state lock (appends wait meanwhile).
        let (names, live_end, last) = {
            let st = self.state.lock();
            let names = match storage.list_dir(&self.dir) {
                Ok(n) => n,
                Err(_) if self.is_deleted() => return Ok(()),
                Err(e) => return Err(e),
            };
            // The active segment and those rolled away from and not sealed
            // yet: checked up to their end now, and not required sealed.
            let live: Vec<(u64, usize)> = if self.env.read_only {
                // Attached read-only: what the follower validated, up to
                // its end (the owner may not have sealed it on disk yet).
                self.table
                    .snapshot()
                    .iter()
                    .filter_map(|e| match e.segment() {
                        Some(seg) => Some((e.base, seg.region.published())),
                        None => e.seal().map(|s| (e.base, usize::try_from(s.durable_end).unwrap_or(0))),
                    })
                    .collect()
            } else {
                st.active
                    .iter()
                    .chain(st.sealing.iter().map(|s| &s.active))
                    .map(|a| (a.seg.base, a.records.region().published()))
                    .collect()
            };
            (names, live, self.last_seq())
        };
        if self.is_deleted() {
            // Its files are going: nothing to check.
            return Ok(());
        }
        let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        bases.sort_unstable();
        if self.env.read_only {
            // Segments the owner made after the follower's last look are
            // past the snapshot: being written, not checked.
            let newest = self.table.snapshot().iter().last().map(|e| e.base);
            bases.retain(|&b| newest.is_some_and(|n| b <= n));
        }
        for n in &names {
            let known = parse_segment_name(n).is_some() || parse_index_name(n).is_some_and(|b| bases.contains(&b));
            if n.contains(".damaged") {
                report.note(
                    &self.dir.join(n),
                    None,
                    "set aside by a repair (not part of the channel)",
                );
            } else if n.ends_with(".tmp") {
                // A segment being created right now (or left by a crash; the
                // next open removes it).
                report.note(&self.dir.join(n), None, "a segment in creation or left by a crash");
            } else if !known {
                report.problem(&self.dir.join(n), None, "unexpected file in the channel directory");
            }
        }
        // What the catalog says must exist.
        let entry = self.catalog.snapshot().channels.into_values().find(|e| e.id == self.id);
        if let Some(entry) = entry.filter(|e| super::recover::newest_missing(e, &bases)) {
            report.problem(
                &self.dir.join(segment_file_name(entry.newest_base)),
                None,
                "missing, but the catalog records it as the channel's newest durable segment",
            );
        }
        let first = self.first_seq();
        match bases.first() {
            Some(&b) if b > first => {
                report.problem(
                    &self.dir,
                    None,
                    format!("first segment starts at {b}, after the first retained seq {first}"),
                );
            }
            None if last >= first => {
                report.problem(&self.dir, None, format!("no segment holds messages {first}..={last}"));
            }
            _ => {}
        }
        let mut expected_base = None;
        let mut reading = Reading {
            progress,
            buf: Vec::new(),
        };
        for (i, &base) in bases.iter().enumerate() {
            let path = self.dir.join(segment_file_name(base));
            let is_last = i + 1 == bases.len();
            let published = live_end.iter().find(|(b, _)| *b == base).map(|(_, end)| *end);
            let next = match self.verify_segment(base, &path, is_last, published, report, &mut reading) {
                Ok(next) => next,
                // Deleted while we read it: the channel is gone.
                Err(_) if self.is_deleted() => return Ok(()),
                Err(e) => return Err(e),
            };
            if let (Some(want), true) = (expected_base, i > 0) {
                if want != base {
                    report.problem(
                        &path,
                        Some(0),
                        format!("previous segment ends before seq {want}, this one starts at {base}"),
                    );
                }
            }
            expected_base = next;
            report.segments += 1;
        }
        if let Some(next) = expected_base {
            if next != last + 1 && next > first {
                report.problem(
                    &self.dir,
                    None,
                    format!("records end before seq {next} but the channel's last seq is {last}"),
                );
            }
        }
        Ok(())
    }

    /// Checks one segment file; returns the seq after its last record.
    fn verify_segment(
        &self,
        base: u64,
        path: &Path,
        is_last: bool,
        published: Option<usize>,
        report: &mut VerifyReport,
        reading: &mut Reading<'_>,
    ) -> Result<Option<u64>> {
        let bytes = match self
            .env
            .storage
            .read_file_into(path, MAX_SEGMENT_SIZE, &mut reading.buf)
        {
            Ok(()) => {
                (reading.progress)(reading.buf.len() as u64);
                &reading.buf[..]
            }
            // Removed by retention since the directory was listed: nothing
            // to check (the catalog's first retained seq is past it).
            Err(_) if self.removed_by_retention(base, path) => return Ok(None),
            // A directory in its place, unreadable blocks: found, not fatal
            // (unless the channel is being deleted: then nothing is).
            Err(Error::Io { source, .. }) if !self.is_deleted() => {
                report.problem(path, None, format!("cannot be read as a segment: {source}"));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let header = match bytes.get(..SEGMENT_HEADER_LEN).map(FixedHeader::decode) {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                report.problem(path, Some(0), e);
                return Ok(None);
            }
            None => {
                report.problem(path, Some(0), "shorter than a segment header");
                return Ok(None);
            }
        };
        if header.channel_id != self.id || header.base_seq != base || header.segment_len != bytes.len() as u64 {
            report.problem(path, Some(0), "header does not match the file's channel, name or size");
            return Ok(None);
        }
        let slot = read_slot(bytes, self.id, base, header.segment_len).map(|(s, _)| s);
        // The segment that was active at the snapshot is checked up to its
        // published end then, even if it was sealed since.
        let sealed = slot.filter(|s| s.sealed && published.is_none());
        if !is_last && sealed.is_none() && published.is_none() {
            report.problem(
                path,
                Some(SLOT_OFFSETS[0] as u64),
                "followed by another segment but not sealed",
            );
        }
        let limit = match (sealed, published) {
            (Some(s), _) => usize::try_from(s.durable_end).unwrap_or(bytes.len()),
            (None, Some(p)) => p,
            (None, None) => bytes.len(),
        };
        let view = SegmentBytes {
            base: 0,
            bytes: bytes.get(..limit).unwrap_or(bytes),
        };
        let mut cursor = FrameCursor::new(
            crate::format::frame::segment_seed(self.id, base),
            SEGMENT_HEADER_LEN,
            base,
        );
        // In offset order (the walk's), searched by offset: a map cost a
        // fifth of verify's time.
        let mut frames: Vec<(usize, u64, u64)> = Vec::new();
        while cursor.offset + FRAME_HEADER_LEN <= limit {
            let zeros = view
                .get(cursor.offset, FRAME_HEADER_LEN)
                .is_some_and(|h| h.iter().all(|&b| b == 0));
            if zeros {
                break; // the end of the records
            }
            match cursor.step(view, true) {
                Ok(frame) => {
                    if frame.header.kind() == FrameKind::Message {
                        frames.push((frame.offset, frame.header.seq, frame.header.timestamp));
                    }
                    report.records += 1;
                }
                Err(e) => {
                    report.problem(
                        path,
                        Some(e.offset as u64),
                        format!("record {} does not validate: {}", cursor.expected, e.reason()),
                    );
                    return Ok(None);
                }
            }
        }
        let (offset, expected) = (cursor.offset, cursor.expected);
        if let Some(s) = sealed {
            if offset as u64 != s.durable_end || expected != s.next_seq {
                report.problem(
                    path,
                    Some(offset as u64),
                    format!(
                        "records end at {offset} (seq {expected}); the seal says {} (seq {})",
                        s.durable_end, s.next_seq
                    ),
                );
            }
        } else if published.is_none() && bytes.get(offset..).is_some_and(|rest| rest.iter().any(|&b| b != 0)) {
            report.problem(path, Some(offset as u64), "non-zero bytes after the last record");
        }
        // A live segment's index may already describe records appended
        // after the snapshot: only what was checked is compared.
        let checked_to = published.map(|_| offset);
        self.verify_index(base, path, bytes.len(), &frames, checked_to, report);
        Ok(Some(expected))
    }

    /// Whether the segment file at `base` is gone because retention
    /// removed it (its records are all below the first retained seq).
    fn removed_by_retention(&self, base: u64, path: &Path) -> bool {
        if self.env.storage.exists(path) {
            return false;
        }
        self.catch_up();
        // Retention takes a segment out of the list before it removes it.
        self.table.snapshot().iter().all(|e| e.base != base)
    }

    /// An index file, if present, must decode and point at real records.
    fn verify_index(
        &self,
        base: u64,
        path: &Path,
        segment_len: usize,
        frames: &[(usize, u64, u64)],
        checked_to: Option<usize>,
        report: &mut VerifyReport,
    ) {
        let idx_path = path.with_file_name(index_file_name(base));
        let storage = &self.env.storage;
        if !storage.exists(&idx_path) {
            return;
        }
        let capacity = SegmentIndex::capacity_for(segment_len, self.env.opts.get_index_interval() as usize);
        let max = (IDX_HEADER_LEN + capacity * IDX_ENTRY_LEN) as u64;
        let bytes = match storage.read_file(&idx_path, max) {
            Ok(b) => b,
            Err(e) => {
                report.note(&idx_path, None, e.to_string());
                return;
            }
        };
        let want = IndexExpectation {
            channel_id: self.id,
            base,
            records_start: SEGMENT_HEADER_LEN,
            segment_len,
            capacity,
            sealed_at: None,
        };
        match decode_file(&bytes, &want) {
            Ok((index, _, _)) => {
                let checked = |e: &IndexEntry| checked_to.is_none_or(|end| e.offset < end);
                for e in (0..index.len()).filter_map(|i| index.get(i)).filter(checked) {
                    let found = frames
                        .binary_search_by_key(&e.offset, |f| f.0)
                        .ok()
                        .and_then(|i| frames.get(i));
                    if found != Some(&(e.offset, e.seq, e.timestamp)) {
                        report.problem(
                            &idx_path,
                            None,
                            format!("entry for seq {} does not point at that record", e.seq),
                        );
                        break;
                    }
                }
            }
            Err(e) => report.note(
                &idx_path,
                Some(0),
                format!("index does not decode ({e}); it is rebuilt when the segment is next opened"),
            ),
        }
    }
}
