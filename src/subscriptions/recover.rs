//! Reading the subscribers log at open: which records are there, which of
//! them are known durable, and what is damaged. Nothing is written here;
//! `Subscriptions::open` decides what to cut or rewrite once the channels
//! are recovered.
//!
//! A version 2 log carries a durable watermark (its newest slot; all of it
//! after a clean close): a bad record below it, or a missing, foreign or
//! older copy of the file, is corruption; only a bad record past it is a
//! torn tail. A version 1 log has no watermark: its first bad record ends
//! it, as that format always did, and it is rewritten as version 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::catalog::CatalogData;
use crate::format::frame::{FrameCursor, FrameKind, SegmentBytes};
use crate::format::segment::{Slot, SLOT_OFFSETS};
use crate::format::sublog::{
    decode_body, decode_v1, log_seed, version_of, LogHeader, LogRecord, LOG_FILE, V2_HEADER_LEN, VERSION_2,
};
use crate::slots::newest_slot;

/// A record read from the log.
pub(crate) struct Scanned {
    pub recno: u64,
    pub timestamp: u64,
    /// Where its frame starts (version 2).
    pub offset: usize,
    pub record: LogRecord,
}

/// A span of records a repair could not read.
pub(crate) struct Damage {
    pub first: u64,
    pub last: u64,
    pub offset: usize,
    /// What the damaged bytes still say, when they parse despite the bad
    /// checksum (names of the subscribers whose commit is lost).
    pub hint: Option<LogRecord>,
    pub detail: String,
}

/// Where the records came from.
pub(crate) enum Source {
    /// No log yet (a new store, or a version 1 store that never had one).
    None,
    /// A version 1 log (to be rewritten).
    V1 { torn_at: Option<u64> },
    /// A version 2 log, usable as it is when nothing needs a rewrite.
    V2 {
        header: LogHeader,
        seed: u32,
        /// Offset just past the last valid record.
        end: usize,
        next_record: u64,
        newest: Option<(Slot, usize)>,
        /// A torn tail starts here.
        torn_at: Option<usize>,
    },
}

/// The log as found at open.
pub(crate) struct LogScan {
    pub path: PathBuf,
    pub records: Vec<Scanned>,
    /// Records numbered below this are known durable.
    pub durable_before: u64,
    pub source: Source,
    /// Repair only: what could not be read.
    pub damage: Vec<Damage>,
    /// The file must be rewritten (format upgrade, repair, generation).
    pub rewrite: bool,
}

impl LogScan {
    /// The highest position (or acked seq) each channel's durable commits
    /// reached: the channel must hold at least that much, since a commit is
    /// made durable only after its channel is.
    pub(crate) fn durable_floors(&self) -> HashMap<u64, u64> {
        let mut floors: HashMap<u64, u64> = HashMap::new();
        for s in self.records.iter().filter(|s| s.recno < self.durable_before) {
            if let LogRecord::Commit { entries, .. } = &s.record {
                for e in entries {
                    let top = e.acked_above.iter().map(|r| r.1).fold(e.position, u64::max);
                    let f = floors.entry(e.channel_id).or_default();
                    *f = (*f).max(top);
                }
            }
        }
        floors
    }
}

/// Reads the log the catalog says must exist; `repair`: salvage what can
/// be read instead of refusing damage.
pub(crate) fn scan(env: &Env, catalog: &CatalogData, repair: bool) -> Result<LogScan> {
    let storage = &env.storage;
    let path = env.root.join(LOG_FILE);
    let generation = catalog.subs_generation;
    let exists = storage.exists(&path);
    let bytes = if exists {
        match storage.read_file(&path, u64::MAX) {
            Ok(b) => Some(b),
            Err(Error::Io { source, .. }) if !repair => {
                return Err(Error::corrupt(&path, 0, format!("cannot be read: {source}")));
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let empty = |rewrite| LogScan {
        path: path.clone(),
        records: Vec::new(),
        durable_before: 0,
        source: Source::None,
        damage: Vec::new(),
        rewrite,
    };
    let Some(bytes) = bytes else {
        if generation == 0 {
            // A store of format version 1 without any subscriber yet.
            return Ok(empty(true));
        }
        if !repair {
            return Err(Error::corrupt(
                &path,
                0,
                format!("the subscribers log (generation {generation} in the catalog) is missing"),
            ));
        }
        let mut scan = empty(true);
        scan.damage.push(Damage {
            first: 0,
            last: u64::MAX,
            offset: 0,
            hint: None,
            detail: "the subscribers log is missing or unreadable; every subscriber's commits are lost".into(),
        });
        return Ok(scan);
    };
    match version_of(&bytes) {
        Some(1) if generation == 0 => scan_v1(&path, &bytes),
        Some(VERSION_2) => scan_v2(&path, &bytes, catalog, repair, env.same_boot),
        _ if repair => salvage(&path, &bytes, catalog),
        Some(v) => Err(Error::corrupt(
            &path,
            8,
            format!("subscribers log version {v} where the catalog expects version 2 generation {generation}"),
        )),
        None if generation == 0 && bytes.is_empty() => Ok(empty(true)),
        None => Err(Error::corrupt(&path, 0, "not a spool subscribers log (bad magic)")),
    }
}

fn scan_v1(path: &Path, bytes: &[u8]) -> Result<LogScan> {
    let decoded = decode_v1(bytes, path)?;
    let torn = (decoded.valid_end < bytes.len()).then_some(decoded.valid_end as u64);
    let count = decoded.records.len() as u64;
    Ok(LogScan {
        path: path.to_path_buf(),
        records: decoded
            .records
            .into_iter()
            .enumerate()
            .map(|(i, record)| Scanned {
                recno: i as u64 + 1,
                timestamp: 0,
                offset: 0,
                record,
            })
            .collect(),
        // Version 1 could not tell durable from torn: what is there counts.
        durable_before: count + 1,
        source: Source::V1 { torn_at: torn },
        damage: Vec::new(),
        rewrite: true,
    })
}

/// Repair of a log whose header cannot be trusted: find records of this
/// store (either generation the catalog allows) wherever they validate,
/// and its durable watermark if a slot survived. When nothing can be read,
/// every subscriber's commits are lost (and reported).
fn salvage(path: &Path, bytes: &[u8], catalog: &CatalogData) -> Result<LogScan> {
    let mut best: Option<LogScan> = None;
    for generation in [catalog.subs_generation, catalog.subs_generation + 1] {
        let seed = log_seed(catalog.store_id, generation);
        let view = SegmentBytes { base: 0, bytes };
        let Some(first) = FrameCursor::new(seed, V2_HEADER_LEN, 1).resync(view, 1, u64::MAX) else {
            continue;
        };
        let header = LogHeader {
            generation,
            file_len: bytes.len() as u64,
            first_record: first.header.seq,
            store_id: catalog.store_id,
        };
        // The slots carry their own checksum (seeded by store and
        // generation): one that validates still knows the durable end.
        let newest = newest_slot(bytes, seed, 0, u64::MAX);
        let mut scan = walk_from(path, bytes, header, seed, newest, true, Some(first.offset), false)?;
        scan.damage.push(Damage {
            first: 1.min(first.header.seq),
            last: first.header.seq.saturating_sub(1),
            offset: 0,
            hint: None,
            detail: "the subscribers log header is damaged; records before the first readable one are lost".into(),
        });
        if newest.is_none() {
            let (first, offset) = match &scan.source {
                Source::V2 { next_record, end, .. } => (*next_record, *end),
                _ => (first.header.seq, first.offset),
            };
            scan.damage.push(Damage {
                first,
                last: u64::MAX,
                offset,
                hint: None,
                detail: "the subscribers log header is damaged and its durable watermark is lost; records after the last readable one may be lost".into(),
            });
        }
        if best.as_ref().is_none_or(|b| b.records.len() < scan.records.len()) {
            best = Some(scan);
        }
    }
    Ok(match best {
        Some(mut b) => {
            b.rewrite = true;
            b
        }
        None => LogScan {
            path: path.to_path_buf(),
            records: Vec::new(),
            durable_before: 0,
            source: Source::None,
            damage: vec![Damage {
                first: 0,
                last: u64::MAX,
                offset: 0,
                hint: None,
                detail: format!(
                    "no record of the subscribers log ({} bytes) can be read; every subscriber's commits are lost",
                    bytes.len()
                ),
            }],
            rewrite: true,
        },
    })
}

fn scan_v2(path: &Path, bytes: &[u8], catalog: &CatalogData, repair: bool, same_boot: bool) -> Result<LogScan> {
    let header = match LogHeader::decode(bytes) {
        Ok(h) => h,
        Err(reason) if repair => {
            let _ = reason;
            return salvage(path, bytes, catalog);
        }
        Err(reason) => return Err(Error::corrupt(path, 0, reason)),
    };
    let g = catalog.subs_generation;
    let problem = if header.store_id != catalog.store_id {
        Some("the subscribers log belongs to another store".to_string())
    } else if header.generation != g && header.generation != g + 1 {
        Some(format!(
            "the subscribers log is generation {}, the catalog expects {g} (an older or foreign copy)",
            header.generation
        ))
    } else if header.file_len != bytes.len() as u64 {
        Some(format!(
            "the subscribers log is {} bytes but its header says {} (truncated or extended)",
            bytes.len(),
            header.file_len
        ))
    } else {
        None
    };
    if let Some(reason) = problem {
        if !repair {
            return Err(Error::corrupt(path, 0, reason));
        }
        return salvage(path, bytes, catalog);
    }
    let seed = log_seed(header.store_id, header.generation);
    let newest = newest_slot(bytes, seed, header.first_record, header.file_len);
    if newest.is_none() {
        // A log on record holds a valid slot from its creation on (each
        // write leaves the other intact): none means damage, and where its
        // durable records end is unknown.
        if !repair {
            return Err(Error::corrupt(
                path,
                SLOT_OFFSETS[0] as u64,
                "both durability slots of the subscribers log header are damaged, so which commits were durable is unknown; open with RecoveryMode::Repair to keep every commit that validates",
            ));
        }
        return salvage(path, bytes, catalog);
    }
    let mut scan = walk_from(path, bytes, header, seed, newest, repair, None, same_boot)?;
    // A rename done but not yet recorded in the catalog: record it.
    scan.rewrite |= header.generation != g;
    Ok(scan)
}

/// Walks the records of a version 2 log (for the fuzz targets).
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn walk(
    path: &Path,
    bytes: &[u8],
    header: LogHeader,
    seed: u32,
    newest: Option<(Slot, usize)>,
    repair: bool,
) -> Result<LogScan> {
    walk_from(path, bytes, header, seed, newest, repair, None, false)
}

/// Walks the records from the first one, or (`salvage`: a repair of a log
/// whose header or slots are lost) from the frame at `salvage`, looking
/// past every bad record for the next one that validates. `same_boot`:
/// the previous owner ran on this boot, so a bad record past the durable
/// watermark with a valid one after it is damage, not a torn tail (a
/// process crash leaves at most the record being written torn, with
/// nothing after it).
#[allow(clippy::too_many_arguments)]
fn walk_from(
    path: &Path,
    bytes: &[u8],
    header: LogHeader,
    seed: u32,
    newest: Option<(Slot, usize)>,
    repair: bool,
    salvage: Option<usize>,
    same_boot: bool,
) -> Result<LogScan> {
    let len = usize::try_from(header.file_len).unwrap_or(usize::MAX).min(bytes.len());
    let view = SegmentBytes {
        base: 0,
        bytes: bytes.get(..len).unwrap_or(bytes),
    };
    let slot = newest
        .map(|(s, _)| s)
        .unwrap_or_else(|| Slot::empty(header.first_record));
    let durable_end = usize::try_from(slot.durable_end).unwrap_or(usize::MAX);
    let mut cursor = FrameCursor::new(seed, salvage.unwrap_or(V2_HEADER_LEN), header.first_record);
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let mut torn_at = None;
    // The newest durable watermark seen: the slot's, then watermark records.
    let mut claimed_next = slot.next_seq;
    while cursor.offset < len {
        match cursor.step(view, true) {
            Ok(frame) => {
                if frame.header.kind() == FrameKind::Hole {
                    continue;
                }
                let body = view
                    .get(
                        frame.offset + crate::format::frame::FRAME_HEADER_LEN,
                        frame.header.payload_len(),
                    )
                    .unwrap_or(&[]);
                let record = decode_body(body).ok_or_else(|| {
                    Error::corrupt(
                        path,
                        frame.offset as u64,
                        "subscriber record has a valid checksum but does not parse",
                    )
                })?;
                if let LogRecord::Watermark { end, next_record } = record {
                    // It can only vouch for what lies before it.
                    if end <= frame.offset as u64 && next_record <= frame.header.seq {
                        claimed_next = claimed_next.max(next_record);
                    }
                }
                records.push(Scanned {
                    recno: frame.header.seq,
                    timestamp: frame.header.timestamp,
                    offset: frame.offset,
                    record,
                });
            }
            Err(e) => {
                let below = e.offset < durable_end || cursor.expected < slot.next_seq;
                let vouched = !below && later_watermark(view, seed, cursor).is_some_and(|end| end > e.offset as u64);
                let followed = same_boot
                    && cursor
                        .resync(near(view, e.offset), cursor.expected.saturating_add(1), u64::MAX)
                        .is_some();
                if !(below || vouched || followed || salvage.is_some()) {
                    torn_at = Some(e.offset);
                    break;
                }
                if !repair {
                    return Err(Error::corrupt(
                        path,
                        e.offset as u64,
                        if e.offset < durable_end || cursor.expected < slot.next_seq {
                            format!("{} below the durable end {durable_end}", e.reason())
                        } else if vouched {
                            format!("{}, below a durable watermark recorded after it", e.reason())
                        } else {
                            format!(
                                "{}, but a later record validates: after a process crash only the last \
                                 record can be torn, so this is damage",
                                e.reason()
                            )
                        },
                    ));
                }
                // Resume at the next record that validates (a later number).
                let resume = cursor.resync(view, cursor.expected.saturating_add(1), u64::MAX);
                if resume.is_none() && salvage.is_some() && e.offset >= durable_end && cursor.expected >= slot.next_seq
                {
                    // Nothing validates after it: the records end here.
                    torn_at = Some(e.offset);
                    break;
                }
                let hint = damaged_body(view, e.offset);
                let (last, next) = match resume {
                    Some(f) => (f.header.seq - 1, Some(f)),
                    None => (slot.next_seq.max(cursor.expected.saturating_add(1)) - 1, None),
                };
                damage.push(Damage {
                    first: cursor.expected,
                    last,
                    offset: e.offset,
                    hint,
                    detail: e.reason(),
                });
                match next {
                    Some(f) => cursor = FrameCursor::new(seed, f.offset, f.header.seq),
                    None => {
                        torn_at = Some(e.offset);
                        break;
                    }
                }
            }
        }
    }
    if torn_at.is_none() && cursor.expected < slot.next_seq {
        // The bytes ended before the records the watermark says were durable.
        if !repair {
            return Err(Error::corrupt(
                path,
                cursor.offset as u64,
                format!(
                    "the subscribers log ends at record {} but records up to {} were durable (the file was shortened)",
                    cursor.expected,
                    slot.next_seq - 1
                ),
            ));
        }
        damage.push(Damage {
            first: cursor.expected,
            last: slot.next_seq - 1,
            offset: cursor.offset,
            hint: None,
            detail: "the file ends before them".into(),
        });
    }
    let durable_before = if slot.clean { u64::MAX } else { claimed_next };
    // After a clean close nothing was written past the durable end.
    if slot.clean && torn_at == Some(durable_end) {
        torn_at = None;
    }
    let rewrite = !damage.is_empty();
    Ok(LogScan {
        path: path.to_path_buf(),
        records,
        durable_before,
        source: Source::V2 {
            header,
            seed,
            end: cursor.offset,
            next_record: cursor.expected,
            newest,
            torn_at,
        },
        damage,
        rewrite,
    })
}

/// The furthest end a valid watermark record after the bad record at
/// `at` vouches for (records after a bad one are found by resyncing).
/// How far past a bad record the log is searched for records that
/// validate: records a sync covers are followed by its watermark within
/// what one sync writes, and the rest of a preallocated file is zeros, not
/// worth probing every 8 bytes of.
const LOOK_AHEAD: usize = 1 << 20;

/// `view` cut `LOOK_AHEAD` bytes past `at`.
fn near(view: SegmentBytes<'_>, at: usize) -> SegmentBytes<'_> {
    SegmentBytes {
        base: view.base,
        bytes: view
            .bytes
            .get(..at.saturating_add(LOOK_AHEAD).saturating_sub(view.base))
            .unwrap_or(view.bytes),
    }
}

fn later_watermark(view: SegmentBytes<'_>, seed: u32, at: FrameCursor) -> Option<u64> {
    use crate::format::frame::FRAME_HEADER_LEN;
    let view = near(view, at.offset);
    let mut best: Option<u64> = None;
    let mut from = FrameCursor::new(seed, at.offset + FRAME_HEADER_LEN, at.expected.saturating_add(1));
    while let Some(f) = from.resync(view, from.expected, u64::MAX) {
        let body = view.get(f.offset + FRAME_HEADER_LEN, f.header.payload_len());
        if let Some(LogRecord::Watermark { end, .. }) = body.and_then(decode_body) {
            if end <= f.offset as u64 {
                best = Some(best.map_or(end, |b| b.max(end)));
            }
        }
        from = FrameCursor::new(seed, f.end(), f.header.next_seq());
    }
    best
}

/// The record body of the (invalid) frame at `offset`, if its length is
/// plausible and the bytes still parse: which subscribers a damaged commit
/// was about.
fn damaged_body(view: SegmentBytes<'_>, offset: usize) -> Option<LogRecord> {
    use crate::format::frame::{FrameHeader, FRAME_HEADER_LEN};
    let header = FrameHeader::parse(view.get(offset, FRAME_HEADER_LEN)?)?;
    decode_body(view.get(offset + FRAME_HEADER_LEN, header.payload_len())?)
}
