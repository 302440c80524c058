//! Sparse per-segment index: one entry (seq, offset, timestamp) every
//! `index_interval` bytes of records.
//!
//! In memory the index is an append-only array of atomics that the single
//! writer of a segment extends and any reader searches without a lock. On
//! disk (`<base>.idx`) it is derived data: written when a segment is sealed
//! or closed, at syncs, and as live checkpoints while it is written;
//! validated when loaded, rebuilt from the segment when it does not match.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::codec::{u32_at, u64_at};

const CHUNK_ENTRIES: usize = 512;
const IDX_MAGIC: &[u8; 8] = b"SPOOLIDX";
/// Version 2 adds the live mark; version 1 is still read.
const IDX_VERSION: u16 = 2;
/// Bytes before the first entry of an index file of version 1.
const IDX_V1_HEADER_LEN: usize = 64;
/// Bytes before the first entry of an index file (version 2).
pub(crate) const IDX_HEADER_LEN: usize = 128;
/// Header flag: the coverage includes records that were not durable when
/// the file was written (a live checkpoint), so it holds only on the same
/// boot and for the same file (see `LiveMark`).
const FLAG_LIVE: u32 = 1;
/// Bytes per entry in an index file.
pub(crate) const IDX_ENTRY_LEN: usize = 16;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub seq: u64,
    pub offset: usize,
    pub timestamp: u64,
}

/// The in-memory index of one segment.
pub(crate) struct SegmentIndex {
    base: u64,
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
    len: AtomicUsize,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIndex").field("entries", &self.len()).finish()
    }
}

impl SegmentIndex {
    /// An empty index able to hold `capacity` entries.
    pub(crate) fn new(base: u64, capacity: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK_ENTRIES).max(1);
        SegmentIndex {
            base,
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// How many entries a segment of `segment_len` bytes can need.
    pub(crate) fn capacity_for(segment_len: usize, interval: usize) -> usize {
        segment_len / interval.max(1) + 2
    }

    /// How many entries it can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK_ENTRIES
    }

    /// Number of entries (Acquire: entries below it are fully written).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends an entry. Only the segment's single writer calls this.
    /// Returns false (and records nothing) when the index is full or the
    /// entry does not fit the packed form.
    pub(crate) fn push(&self, e: IndexEntry) -> bool {
        let n = self.len.load(Ordering::Relaxed);
        let Some(delta) = e.seq.checked_sub(self.base).and_then(|d| u32::try_from(d).ok()) else {
            return false;
        };
        let Ok(offset) = u32::try_from(e.offset) else {
            return false;
        };
        let Some(chunk) = self.chunks.get(n / CHUNK_ENTRIES) else {
            return false;
        };
        let chunk = chunk.get_or_init(|| (0..CHUNK_ENTRIES * 2).map(|_| AtomicU64::new(0)).collect());
        let i = (n % CHUNK_ENTRIES) * 2;
        if let (Some(w0), Some(w1)) = (chunk.get(i), chunk.get(i + 1)) {
            w0.store(u64::from(delta) << 32 | u64::from(offset), Ordering::Relaxed);
            w1.store(e.timestamp, Ordering::Relaxed);
            self.len.store(n + 1, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Entry `i` (`i < len()`).
    pub(crate) fn get(&self, i: usize) -> Option<IndexEntry> {
        if i >= self.len() {
            return None;
        }
        let chunk = self.chunks.get(i / CHUNK_ENTRIES)?.get()?;
        let j = (i % CHUNK_ENTRIES) * 2;
        let w0 = chunk.get(j)?.load(Ordering::Relaxed);
        let w1 = chunk.get(j + 1)?.load(Ordering::Relaxed);
        Some(IndexEntry {
            seq: self.base + (w0 >> 32),
            offset: (w0 & 0xFFFF_FFFF) as usize,
            timestamp: w1,
        })
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<IndexEntry> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Number of leading entries for which `pred` holds (entries are sorted
    /// so that `pred` is true for a prefix).
    fn partition_point(&self, pred: impl Fn(&IndexEntry) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if pred(&e) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The last entry with `seq <= target`. Entries are nearly evenly
    /// spaced in seq when records are of similar size, so the search
    /// interpolates first (one or two probes, each a likely cache miss on
    /// a random lookup) and falls back to bisection when the guesses do not
    /// close in.
    pub(crate) fn floor_seq(&self, target: u64) -> Option<IndexEntry> {
        let n = self.len();
        let first = self.get(0)?;
        if target < first.seq {
            return None;
        }
        let last = self.get(n - 1)?;
        if target >= last.seq {
            return Some(last);
        }
        // Invariant: entry `lo` has seq <= target < seq of entry `hi`.
        let (mut lo, mut hi) = (0usize, n - 1);
        let (mut lo_seq, mut hi_seq) = (first.seq, last.seq);
        for _ in 0..3 {
            if hi - lo <= 1 {
                break;
            }
            let span = (hi - lo) as u128;
            let step = (u128::from(target - lo_seq) * span / u128::from(hi_seq - lo_seq)) as usize;
            let guess = (lo + step).clamp(lo + 1, hi - 1);
            let g = self.get(guess)?;
            if g.seq <= target {
                (lo, lo_seq) = (guess, g.seq);
                // The usual case: the next entry is past the target.
                match self.get(guess + 1) {
                    Some(next) if next.seq > target => return Some(g),
                    Some(next) if guess + 1 < hi => (lo, lo_seq) = (guess + 1, next.seq),
                    _ => {}
                }
            } else {
                (hi, hi_seq) = (guess, g.seq);
            }
        }
        // Bisection over what is left.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid)?.seq <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.get(lo)
    }

    /// The last entry at an offset `<= target`.
    pub(crate) fn floor_offset(&self, target: usize) -> Option<IndexEntry> {
        let n = self.partition_point(|e| e.offset <= target);
        n.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The last entry with `timestamp < target` (the scan for the first
    /// record at or after `target` starts there).
    pub(crate) fn floor_before_time(&self, target: u64) -> Option<IndexEntry> {
        let n = self.partition_point(|e| e.timestamp < target);
        n.checked_sub(1).and_then(|i| self.get(i))
    }

    /// How many entries describe the records `cov` covers (entries the
    /// writer added past `cov.end` meanwhile are left out).
    pub(crate) fn entries_within(&self, cov: Coverage) -> usize {
        self.partition_point(|e| e.offset < cov.end)
    }

    /// The on-disk form of entries `from..to`.
    pub(crate) fn encode_entries(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(to.saturating_sub(from) * IDX_ENTRY_LEN);
        for e in (from..to).filter_map(|i| self.get(i)) {
            out.extend_from_slice(&((e.seq - self.base) as u32).to_le_bytes());
            out.extend_from_slice(&(e.offset as u32).to_le_bytes());
            out.extend_from_slice(&e.timestamp.to_le_bytes());
        }
        out
    }

    /// The header of an index file with `count` entries whose bytes have
    /// CRC `entries_crc`, for the records `cov` describes. `live`: the
    /// coverage includes records not durable yet (see `LiveMark`).
    pub(crate) fn encode_header(
        &self,
        channel_id: u64,
        cov: Coverage,
        live: Option<LiveMark>,
        count: usize,
        entries_crc: u32,
    ) -> [u8; IDX_HEADER_LEN] {
        let mut out = [0u8; IDX_HEADER_LEN];
        out[0..8].copy_from_slice(IDX_MAGIC);
        out[8..10].copy_from_slice(&IDX_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(IDX_ENTRY_LEN as u16).to_le_bytes());
        let flags = if live.is_some() { FLAG_LIVE } else { 0 };
        out[12..16].copy_from_slice(&flags.to_le_bytes());
        out[16..24].copy_from_slice(&channel_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.base.to_le_bytes());
        out[32..40].copy_from_slice(&(cov.end as u64).to_le_bytes());
        out[40..48].copy_from_slice(&cov.next_seq.to_le_bytes());
        out[48..56].copy_from_slice(&cov.last_timestamp.to_le_bytes());
        out[56..60].copy_from_slice(&(count as u32).to_le_bytes());
        let mark = live.unwrap_or_default();
        out[64..80].copy_from_slice(&mark.boot_id.to_le_bytes());
        out[80..88].copy_from_slice(&mark.device.to_le_bytes());
        out[88..96].copy_from_slice(&mark.inode.to_le_bytes());
        out[96..100].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = header_crc(&out);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The whole index file for the records `cov` describes (what a
    /// segment writes in steps, in one piece).
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn encode_file(&self, channel_id: u64, cov: Coverage, live: Option<LiveMark>) -> Vec<u8> {
        let n = self.entries_within(cov);
        let entries = self.encode_entries(0, n);
        let header = self.encode_header(channel_id, cov, live, n, crc32fast::hash(&entries));
        let mut out = Vec::with_capacity(IDX_HEADER_LEN + entries.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&entries);
        out
    }
}

/// The records an index file describes: they end at `end`, where `next_seq`
/// would be, and the last of them has `last_timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub end: usize,
    pub next_seq: u64,
    pub last_timestamp: u64,
}

/// Where a live checkpoint was written: the machine's boot and the segment
/// file's identity. Its coverage is trusted only when both are the same at
/// open (the process crashed, the page cache holding what it wrote is
/// intact, and the file is the same one, not a copy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LiveMark {
    pub boot_id: u128,
    pub device: u64,
    pub inode: u64,
}

/// Version 1's checksum: bytes 0..60, then everything from byte 64 on.
fn v1_crc(file: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(file.get(..60).unwrap_or(file));
    h.update(file.get(64..).unwrap_or(&[]));
    h.finalize()
}

/// Version 2's header checksum: bytes 0..60 and 64..128. The entries have
/// their own (at +96), so that new entries can be appended and the header
/// rewritten without reading back what is already in the file.
fn header_crc(file: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(file.get(..60).unwrap_or(file));
    h.update(file.get(64..IDX_HEADER_LEN).unwrap_or(&[]));
    h.finalize()
}

/// What an index file must agree with to be used.
pub(crate) struct IndexExpectation {
    pub channel_id: u64,
    pub base: u64,
    pub records_start: usize,
    pub segment_len: usize,
    pub capacity: usize,
    /// For a sealed segment: the end and next seq of its seal.
    pub sealed_at: Option<(usize, u64)>,
}

/// A decoded index file: the entries, what they cover, and the live mark
/// of a live checkpoint.
pub(crate) type Decoded = (SegmentIndex, Coverage, Option<LiveMark>);

/// Decodes and validates an index file (version 1 or 2); `Err` says why it
/// must be rebuilt.
pub(crate) fn decode_file(bytes: &[u8], want: &IndexExpectation) -> Result<Decoded, String> {
    if bytes.get(..8) != Some(IDX_MAGIC.as_slice()) {
        return Err("bad magic".into());
    }
    let field = |at| u64_at(bytes, at).ok_or_else(|| "truncated header".to_string());
    let version = u16::from_le_bytes([bytes.get(8).copied().unwrap_or(0), bytes.get(9).copied().unwrap_or(0)]);
    let header_len = match version {
        1 => IDX_V1_HEADER_LEN,
        IDX_VERSION => IDX_HEADER_LEN,
        _ => return Err(format!("unknown version {version}")),
    };
    let live = if version >= 2 && u32_at(bytes, 12).is_some_and(|f| f & FLAG_LIVE != 0) {
        let boot_id = bytes
            .get(64..80)
            .and_then(|b| b.try_into().ok())
            .map(u128::from_le_bytes)
            .ok_or("truncated header")?;
        Some(LiveMark {
            boot_id,
            device: field(80)?,
            inode: field(88)?,
        })
    } else {
        None
    };
    if field(16)? != want.channel_id || field(24)? != want.base {
        return Err("belongs to another segment".into());
    }
    let cov = Coverage {
        end: usize::try_from(field(32)?).map_err(|_| "covered end out of range".to_string())?,
        next_seq: field(40)?,
        last_timestamp: field(48)?,
    };
    if cov.end < want.records_start || cov.end > want.segment_len || cov.next_seq < want.base {
        return Err("covered range outside the segment".into());
    }
    if want.sealed_at.is_some_and(|sealed| sealed != (cov.end, cov.next_seq)) {
        return Err("stale: does not cover the segment's records".into());
    }
    let count = u64::from(u32_at(bytes, 56).ok_or("truncated header")?);
    if count > want.capacity as u64 || bytes.len() as u64 != header_len as u64 + count * IDX_ENTRY_LEN as u64 {
        return Err("entry count does not match the file length".into());
    }
    let crc_ok = match version {
        1 => u32_at(bytes, 60) == Some(v1_crc(bytes)),
        _ => {
            u32_at(bytes, 60) == Some(header_crc(bytes))
                && u32_at(bytes, 96) == bytes.get(header_len..).map(crc32fast::hash)
        }
    };
    if !crc_ok {
        return Err("checksum mismatch".into());
    }
    let index = SegmentIndex::new(want.base, want.capacity);
    let mut prev: Option<IndexEntry> = None;
    for chunk in bytes.get(header_len..).unwrap_or(&[]).chunks_exact(IDX_ENTRY_LEN) {
        let e = IndexEntry {
            seq: want.base + u64::from(u32_at(chunk, 0).unwrap_or(0)),
            offset: u32_at(chunk, 4).unwrap_or(0) as usize,
            timestamp: u64_at(chunk, 8).unwrap_or(0),
        };
        let ordered = prev.is_none_or(|p| e.seq > p.seq && e.offset > p.offset && e.timestamp >= p.timestamp);
        let inside = e.offset >= want.records_start
            && e.offset < cov.end
            && e.seq < cov.next_seq
            && e.timestamp <= cov.last_timestamp;
        if !ordered || !inside {
            return Err(format!("entry for seq {} is out of order or out of bounds", e.seq));
        }
        if !index.push(e) {
            return Err("entry does not fit".into());
        }
        prev = Some(e);
    }
    Ok((index, cov, live))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u64) -> SegmentIndex {
        let idx = SegmentIndex::new(100, 4096);
        for i in 0..n {
            assert!(idx.push(IndexEntry {
                seq: 100 + i * 10,
                offset: 128 + i as usize * 4096,
                timestamp: 1000 + i * 5,
            }));
        }
        idx
    }

    const COV: Coverage = Coverage {
        end: 128 + 2000 * 4096,
        next_seq: 100 + 2000 * 10,
        last_timestamp: 1000 + 1999 * 5,
    };

    fn expectation() -> IndexExpectation {
        IndexExpectation {
            channel_id: 7,
            base: 100,
            records_start: 128,
            segment_len: 1 << 30,
            capacity: 4096,
            sealed_at: Some((COV.end, COV.next_seq)),
        }
    }

    #[test]
    fn lookups_across_chunks() {
        let idx = sample(2000);
        assert_eq!(idx.len(), 2000);
        assert_eq!(idx.floor_seq(99), None);
        assert_eq!(idx.floor_seq(100).map(|e| e.seq), Some(100));
        assert_eq!(idx.floor_seq(109).map(|e| e.seq), Some(100));
        assert_eq!(idx.floor_seq(110).map(|e| e.seq), Some(110));
        assert_eq!(idx.floor_seq(u64::MAX).map(|e| e.seq), Some(100 + 1999 * 10));
        assert_eq!(idx.floor_before_time(1000), None);
        assert_eq!(idx.floor_before_time(1001).map(|e| e.seq), Some(100));
        assert_eq!(idx.floor_before_time(1006).map(|e| e.seq), Some(110));
    }

    /// The interpolating search agrees with a plain bisection on uneven
    /// spacings (runs of tiny and huge records, single entries, gaps).
    #[test]
    fn floor_seq_matches_bisection_on_uneven_spacing() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..200 {
            let len = 1 + rnd(3000) as usize;
            let idx = SegmentIndex::new(1000, len);
            let mut seq = 1000 + rnd(5);
            for i in 0..len {
                assert!(idx.push(IndexEntry {
                    seq,
                    offset: 128 + i * 64,
                    timestamp: i as u64,
                }));
                // Mostly even steps, sometimes a burst or a long gap.
                seq += match rnd(10) {
                    0 => 1,
                    1 => 1 + rnd(100_000),
                    _ => 8 + rnd(3),
                };
            }
            for _ in 0..300 {
                let target = 990 + rnd(seq - 980);
                let want = idx
                    .partition_point(|e| e.seq <= target)
                    .checked_sub(1)
                    .and_then(|i| idx.get(i));
                assert_eq!(idx.floor_seq(target), want, "round {round}, target {target}");
            }
        }
    }

    #[test]
    fn file_round_trip_and_rejections() {
        let idx = sample(2000);
        let want = expectation();
        let file = idx.encode_file(7, COV, None);
        let (back, cov, live) = decode_file(&file, &want).expect("valid file");
        assert_eq!(live, None);
        assert_eq!(cov, COV);
        assert_eq!(back.len(), 2000);
        assert_eq!(back.get(1234), idx.get(1234));
        let unsealed = IndexExpectation {
            sealed_at: None,
            ..expectation()
        };
        assert!(
            decode_file(&file, &unsealed).is_ok(),
            "an active segment takes any coverage"
        );

        let mut flipped = file.clone();
        flipped[IDX_HEADER_LEN + 100] ^= 1;
        assert!(decode_file(&flipped, &want).is_err());
        assert!(decode_file(&file[..file.len() - 1], &want).is_err());
        assert!(decode_file(&[], &want).is_err());
        let stale = IndexExpectation {
            sealed_at: Some((COV.end + 8, COV.next_seq)),
            ..expectation()
        };
        assert!(decode_file(&file, &stale).is_err());
        let other = IndexExpectation {
            channel_id: 8,
            ..expectation()
        };
        assert!(decode_file(&file, &other).is_err());
    }

    #[test]
    fn full_index_refuses() {
        let idx = SegmentIndex::new(1, 1);
        let e = |s| IndexEntry {
            seq: s,
            offset: 0,
            timestamp: 0,
        };
        for s in 1..=CHUNK_ENTRIES as u64 {
            assert!(idx.push(e(s)));
        }
        assert!(!idx.push(e(10_000)));
    }
}
