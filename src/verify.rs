//! The integrity checker: reads every file of a store from storage (not
//! through the in-memory state) and checks each structure and the
//! invariants across files. It changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::channel::ChannelCore;
use crate::error::Result;
use crate::index::{decode_file, IndexExpectation, SegmentIndex, IDX_ENTRY_LEN, IDX_HEADER_LEN};
use crate::record::{segment_seed, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::segment::{index_file_name, parse_segment_name, FixedHeader, Slot, SEGMENT_HEADER_LEN, SLOT_OFFSETS};
use crate::store::StoreShared;
use crate::subscriber::log::{self as sublog, LogRecord, LOG_FILE};

/// One problem found by [`Store::verify`](crate::Store::verify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// Byte offset in it, where that means something.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// What [`Store::verify`](crate::Store::verify) checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: usize,
    /// Records (and repaired holes) checked, CRC included.
    pub records: u64,
    /// Everything that is wrong; empty for a healthy store.
    pub problems: Vec<Problem>,
    /// Derived data that is stale or torn and will be rebuilt when needed
    /// (an index file after a crash): worth knowing, not wrong.
    pub notes: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, path: &Path, offset: Option<u64>, detail: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            offset,
            detail: detail.into(),
        });
    }
}

const ROOT_FILES: [&str; 3] = ["LOCK", "catalog", LOG_FILE];

impl StoreShared {
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let storage = &self.env.storage;
        let root = &self.env.root;
        for name in storage.list_dir(root)? {
            if !ROOT_FILES.contains(&name.as_str()) && name != "channels" {
                report.problem(&root.join(&name), None, "unexpected file in the store directory");
            }
        }
        let channels: Vec<Arc<ChannelCore>> = self.channels.read().values().cloned().collect();
        let ids: Vec<u64> = channels.iter().map(|c| c.id).collect();
        let chans = root.join("channels");
        for name in storage.list_dir(&chans)? {
            if !name.parse::<u64>().is_ok_and(|id| ids.contains(&id)) {
                report.problem(&chans.join(&name), None, "directory of no live channel (orphan)");
            }
        }
        let mut last_seqs = HashMap::new();
        for core in &channels {
            self.verify_channel(core, &mut report)?;
            last_seqs.insert(core.id, core.last_seq.load(Ordering::Acquire));
        }
        self.verify_subscribers(&last_seqs, &mut report)?;
        Ok(report)
    }

    fn verify_channel(&self, core: &ChannelCore, report: &mut VerifyReport) -> Result<()> {
        let storage = &self.env.storage;
        let names = storage.list_dir(&core.dir)?;
        let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        bases.sort_unstable();
        for n in &names {
            let idx_of = n.strip_suffix(".idx").and_then(|d| d.parse::<u64>().ok());
            let known = parse_segment_name(n).is_some() || idx_of.is_some_and(|b| bases.contains(&b));
            if !known {
                report.problem(&core.dir.join(n), None, "unexpected file in the channel directory");
            }
        }
        let first = core.first_seq.load(Ordering::Acquire);
        let last = core.last_seq.load(Ordering::Acquire);
        match bases.first() {
            Some(&b) if b > first => {
                report.problem(
                    &core.dir,
                    None,
                    format!("first segment starts at {b}, after the first retained seq {first}"),
                );
            }
            None if last >= first => {
                report.problem(&core.dir, None, format!("no segment holds messages {first}..={last}"));
            }
            _ => {}
        }
        // Only what was published when the check started is checked.
        let live_end = core
            .segments
            .at(core.segments.len().saturating_sub(1))
            .and_then(|(slot, _)| {
                core.segments
                    .open(&self.env, core.id, &slot, None)
                    .ok()
                    .filter(|s| s.seal_info().is_none())
                    .map(|s| (slot.base, s.region.published()))
            });
        let mut expected_base = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = core.dir.join(crate::segment::segment_file_name(base));
            let is_last = i + 1 == bases.len();
            let published = live_end.filter(|(b, _)| *b == base).map(|(_, end)| end);
            let next = verify_segment(self, core.id, base, &path, is_last, published, report)?;
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
                    &core.dir,
                    None,
                    format!("records end before seq {next} but the channel's last seq is {last}"),
                );
            }
        }
        Ok(())
    }

    fn verify_subscribers(&self, last_seqs: &HashMap<u64, u64>, report: &mut VerifyReport) -> Result<()> {
        let path = self.env.root.join(LOG_FILE);
        let bytes = self.env.storage.read_file(&path, u64::MAX)?;
        let decoded = match sublog::decode(&bytes, &path) {
            Ok(d) => d,
            Err(e) => {
                report.problem(&path, None, e.to_string());
                return Ok(());
            }
        };
        if decoded.valid_end != bytes.len() {
            report.problem(
                &path,
                Some(decoded.valid_end as u64),
                "bytes after the last valid record",
            );
        }
        let mut positions: BTreeMap<(u64, String), u64> = BTreeMap::new();
        for rec in decoded.records {
            match rec {
                LogRecord::Commit { entries, .. } => {
                    for e in entries {
                        positions.insert((e.channel_id, e.name), e.position);
                    }
                }
                LogRecord::Remove { channel_id, name } => {
                    positions.remove(&(channel_id, name));
                }
            }
        }
        for ((id, name), pos) in positions {
            if let Some(last) = last_seqs.get(&id) {
                if pos > *last {
                    report.problem(
                        &path,
                        None,
                        format!("subscriber {name:?} of channel {id} is at {pos}, past the log's end {last}"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Checks one segment file; returns the seq after its last record.
fn verify_segment(
    shared: &StoreShared,
    channel_id: u64,
    base: u64,
    path: &Path,
    is_last: bool,
    published: Option<usize>,
    report: &mut VerifyReport,
) -> Result<Option<u64>> {
    let storage = &shared.env.storage;
    let bytes = storage.read_file(path, crate::options::MAX_SEGMENT_SIZE)?;
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
    if header.channel_id != channel_id || header.base_seq != base || header.segment_len != bytes.len() as u64 {
        report.problem(path, Some(0), "header does not match the file's channel, name or size");
        return Ok(None);
    }
    let seed = segment_seed(channel_id, base);
    let slot = SLOT_OFFSETS
        .iter()
        .filter_map(|&at| {
            bytes
                .get(at..at + 32)
                .and_then(|b| Slot::decode(b, seed, base, header.segment_len))
        })
        .fold(None, |best, s| Slot::newest(best, Some(s)));
    let sealed = slot.filter(|s| s.sealed);
    if !is_last && sealed.is_none() {
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
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = base;
    let mut frames = HashMap::new();
    while offset + FRAME_HEADER_LEN <= limit {
        let Some(h) = bytes.get(offset..).and_then(FrameHeader::parse) else {
            break;
        };
        if h.seq == 0 && h.payload_len() == 0 {
            break; // zeros: the end of the records
        }
        let payload = bytes.get(offset + FRAME_HEADER_LEN..offset + FRAME_HEADER_LEN + h.payload_len());
        let valid =
            h.check_shape(limit - offset, expected, false).is_ok() && payload.is_some_and(|p| h.crc_matches(seed, p));
        if !valid {
            report.problem(
                path,
                Some(offset as u64),
                format!("record {expected} does not validate"),
            );
            return Ok(None);
        }
        if h.kind() == FrameKind::Message {
            frames.insert(offset, (h.seq, h.timestamp));
        }
        report.records += 1;
        expected = h.next_seq();
        offset += h.frame_len();
    }
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
    verify_index(shared, channel_id, base, path, &bytes, &frames, report)?;
    Ok(Some(expected))
}

/// An index file, if present, must decode and point at real records.
fn verify_index(
    shared: &StoreShared,
    channel_id: u64,
    base: u64,
    path: &Path,
    segment: &[u8],
    frames: &HashMap<usize, (u64, u64)>,
    report: &mut VerifyReport,
) -> Result<()> {
    let idx_path = path.with_file_name(index_file_name(base));
    let storage = &shared.env.storage;
    if !storage.exists(&idx_path) {
        return Ok(());
    }
    let capacity = SegmentIndex::capacity_for(segment.len(), shared.env.opts.get_index_interval() as usize);
    let max = (IDX_HEADER_LEN + capacity * IDX_ENTRY_LEN) as u64;
    let bytes = match storage.read_file(&idx_path, max) {
        Ok(b) => b,
        Err(e) => {
            report.notes.push(Problem {
                path: idx_path,
                offset: None,
                detail: e.to_string(),
            });
            return Ok(());
        }
    };
    let want = IndexExpectation {
        channel_id,
        base,
        records_start: SEGMENT_HEADER_LEN,
        segment_len: segment.len(),
        capacity,
        sealed_at: None,
    };
    match decode_file(&bytes, &want) {
        Ok((index, _)) => {
            for e in (0..index.len()).filter_map(|i| index.get(i)) {
                if frames.get(&e.offset) != Some(&(e.seq, e.timestamp)) {
                    report.problem(
                        &idx_path,
                        None,
                        format!("entry for seq {} does not point at that record", e.seq),
                    );
                    break;
                }
            }
        }
        Err(e) => report.notes.push(Problem {
            path: idx_path,
            offset: Some(0),
            detail: format!("index does not decode ({e}); it is rebuilt when the segment is next opened"),
        }),
    }
    Ok(())
}
