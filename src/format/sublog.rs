//! The subscribers log: one file per store holding every subscriber commit
//! as a record. One record can hold the positions of several subscribers
//! on several channels plus one state blob, which is what makes a
//! multi-subscriber commit atomic: a record is either whole and valid, or
//! it is damage. See docs/format.md.
//!
//! Format version 2 (written now) lays the file out like a segment: a
//! 128-byte header (a fixed part naming the store, the log's generation and
//! its length, and the two durability slots segments have), then records
//! in segment frames (`format::frame`) whose seq is the record number and
//! whose payload is the record body; the file is preallocated and mapped.
//! Version 1 (an append-only file of length+CRC records) is still read, to
//! be rewritten as version 2.

use std::path::Path;
use std::sync::Arc;

use crate::codec::{u64_at, ByteReader};
use crate::error::{Error, Result};
pub(crate) use crate::format::queue_meta::QueueMeta;

/// File name, in the store's root.
pub(crate) const LOG_FILE: &str = "subscribers";
const MAGIC: &[u8; 8] = b"SPOOLSUB";
const VERSION_1: u16 = 1;
/// The version this build writes.
pub(crate) const VERSION_2: u16 = 2;
/// Version 1: bytes before the first record.
pub(crate) const LOG_HEADER_LEN: usize = 16;
/// Version 2: bytes before the first record (a fixed part and two slots).
pub(crate) const V2_HEADER_LEN: usize = 128;
const V2_FIXED_LEN: usize = 64;
const RECORD_HEADER_LEN: usize = 8;
const KIND_COMMIT: u8 = 1;
const KIND_REMOVE: u8 = 2;
const KIND_WATERMARK: u8 = 3;
/// Commit entry kinds: a plain subscriber, a queue group as earlier builds
/// wrote it (no delivery state; still read), a queue group with its
/// delivery state (`QueueMeta`).
const ENTRY_PLAIN: u8 = 0;
const ENTRY_QUEUE: u8 = 1;
const ENTRY_QUEUE_META: u8 = 2;

/// The fixed part of a version 2 log's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogHeader {
    /// Incremented by every rewrite; the catalog records the current one.
    pub generation: u64,
    /// The file's length (it is preallocated and never resized).
    pub file_len: u64,
    /// Record number of the first record in the file.
    pub first_record: u64,
    /// The store this log belongs to.
    pub store_id: u128,
}

impl LogHeader {
    pub(crate) fn encode(&self) -> [u8; V2_FIXED_LEN] {
        let mut b = [0u8; V2_FIXED_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&VERSION_2.to_le_bytes());
        b[10..12].copy_from_slice(&(V2_HEADER_LEN as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.file_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_record.to_le_bytes());
        b[40..56].copy_from_slice(&self.store_id.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version, header length and CRC.
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<LogHeader, String> {
        let fixed = b
            .get(..V2_FIXED_LEN)
            .ok_or("file shorter than a subscribers log header")?;
        if fixed.get(..8) != Some(MAGIC.as_slice()) {
            return Err("no subscribers log magic (not a spool subscribers log, or a zeroed header)".into());
        }
        if crate::codec::u32_at(fixed, 60) != Some(crc32fast::hash(&fixed[..60])) {
            return Err("subscribers log header checksum mismatch".into());
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != VERSION_2 {
            return Err(format!("subscribers log version {version} where 2 was expected"));
        }
        if usize::from(u16::from_le_bytes([fixed[10], fixed[11]])) != V2_HEADER_LEN {
            return Err("subscribers log header length is not 128".into());
        }
        let id = fixed
            .get(40..56)
            .and_then(|b| b.try_into().ok())
            .map(u128::from_le_bytes)
            .unwrap_or(0);
        Ok(LogHeader {
            generation: u64_at(fixed, 16).unwrap_or(0),
            file_len: u64_at(fixed, 24).unwrap_or(0),
            first_record: u64_at(fixed, 32).unwrap_or(0),
            store_id: id,
        })
    }
}

/// The CRC seed of a log's records and slots: records of another store or
/// another generation of the log never validate.
pub(crate) fn log_seed(store_id: u128, generation: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b"spool-subscribers");
    h.update(&store_id.to_le_bytes());
    h.update(&generation.to_le_bytes());
    h.finalize()
}

/// The version of a log file, from its first bytes (`None`: not a log).
pub(crate) fn version_of(bytes: &[u8]) -> Option<u16> {
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return None;
    }
    // The magic alone (a log cut after 8 or 9 bytes) names no version.
    bytes.get(8..10).map(|v| u16::from_le_bytes([v[0], v[1]]))
}

/// Plain subscriber or queue group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubKind {
    Plain,
    Queue,
}

/// One subscriber's durable position in a commit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub channel_id: u64,
    pub name: String,
    pub kind: SubKind,
    /// Last processed seq (for a queue group: the ack floor).
    pub position: u64,
    /// Queue groups: acknowledged ranges above the floor.
    pub acked_above: Vec<(u64, u64)>,
    /// Queue groups: delivery state (entry kind 2; default for kind 1).
    pub meta: QueueMeta,
}

/// A record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogRecord {
    Commit {
        entries: Vec<Position>,
        state: Arc<[u8]>,
    },
    Remove {
        channel_id: u64,
        name: String,
    },
    /// The log up to byte `end`, where record `next_record` starts, was
    /// durable when this record was written (see docs/format.md).
    Watermark {
        end: u64,
        next_record: u64,
    },
}

/// Version 1: the file header.
#[cfg(test)]
pub(crate) fn file_header_v1() -> [u8; LOG_HEADER_LEN] {
    let mut h = [0u8; LOG_HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION_1.to_le_bytes());
    h
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// Encodes a record's body (both versions).
pub(crate) fn encode_body(rec: &LogRecord) -> Vec<u8> {
    // Sized up front: one allocation per record on the commit path.
    let mut body = Vec::with_capacity(match rec {
        LogRecord::Commit { entries, state } => {
            7 + state.len()
                + entries
                    .iter()
                    .map(|e| 23 + e.name.len() + 16 * e.acked_above.len())
                    .sum::<usize>()
        }
        LogRecord::Remove { name, .. } => 11 + name.len(),
        LogRecord::Watermark { .. } => 17,
    });
    match rec {
        LogRecord::Commit { entries, state } => {
            body.push(KIND_COMMIT);
            body.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            for e in entries {
                body.extend_from_slice(&e.channel_id.to_le_bytes());
                put_name(&mut body, &e.name);
                body.push(match e.kind {
                    SubKind::Plain => ENTRY_PLAIN,
                    SubKind::Queue => ENTRY_QUEUE_META,
                });
                body.extend_from_slice(&e.position.to_le_bytes());
                body.extend_from_slice(&(e.acked_above.len() as u32).to_le_bytes());
                for (a, b) in &e.acked_above {
                    body.extend_from_slice(&a.to_le_bytes());
                    body.extend_from_slice(&b.to_le_bytes());
                }
                if e.kind == SubKind::Queue {
                    e.meta.encode(&mut body);
                }
            }
            body.extend_from_slice(&(state.len() as u32).to_le_bytes());
            body.extend_from_slice(state);
        }
        LogRecord::Remove { channel_id, name } => {
            body.push(KIND_REMOVE);
            body.extend_from_slice(&channel_id.to_le_bytes());
            put_name(&mut body, name);
        }
        LogRecord::Watermark { end, next_record } => {
            body.push(KIND_WATERMARK);
            body.extend_from_slice(&end.to_le_bytes());
            body.extend_from_slice(&next_record.to_le_bytes());
        }
    }
    body
}

/// Version 1: a record with its length and CRC.
#[cfg(test)]
pub(crate) fn encode_v1(rec: &LogRecord) -> Vec<u8> {
    let body = encode_body(rec);
    let len = (body.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&body);
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn name(r: &mut ByteReader<'_>) -> Option<String> {
    let len = usize::from(r.u16()?);
    let s = std::str::from_utf8(r.take(len)?).ok()?;
    (!s.is_empty() && s.len() <= 255 && !s.contains('\0')).then(|| s.to_string())
}

/// Decodes a record's body; `None` if it does not parse.
pub(crate) fn decode_body(body: &[u8]) -> Option<LogRecord> {
    let mut r = ByteReader::new(body);
    let rec = match r.u8()? {
        KIND_COMMIT => {
            let count = r.u16()?;
            let mut entries = Vec::new();
            for _ in 0..count {
                let channel_id = r.u64()?;
                let name = name(&mut r)?;
                let entry_kind = r.u8()?;
                let kind = match entry_kind {
                    ENTRY_PLAIN => SubKind::Plain,
                    ENTRY_QUEUE | ENTRY_QUEUE_META => SubKind::Queue,
                    _ => return None,
                };
                let position = r.u64()?;
                let ranges = r.u32()? as usize;
                // Bounded by the bytes that are really there.
                if ranges > body.len() / 16 {
                    return None;
                }
                let mut acked_above = Vec::with_capacity(ranges);
                for _ in 0..ranges {
                    let (a, b) = (r.u64()?, r.u64()?);
                    if b < a || a <= position {
                        return None;
                    }
                    acked_above.push((a, b));
                }
                let meta = if entry_kind == ENTRY_QUEUE_META {
                    QueueMeta::decode(&mut r, position, body.len())?
                } else {
                    QueueMeta::default()
                };
                entries.push(Position {
                    channel_id,
                    name,
                    kind,
                    position,
                    acked_above,
                    meta,
                });
            }
            let len = r.u32()? as usize;
            let state: Arc<[u8]> = Arc::from(r.take(len)?);
            LogRecord::Commit { entries, state }
        }
        KIND_REMOVE => LogRecord::Remove {
            channel_id: r.u64()?,
            name: name(&mut r)?,
        },
        KIND_WATERMARK => LogRecord::Watermark {
            end: r.u64()?,
            next_record: r.u64()?,
        },
        _ => return None,
    };
    r.is_done().then_some(rec)
}

/// What reading the log found.
pub(crate) struct Decoded {
    pub records: Vec<LogRecord>,
    /// Where the valid records end; bytes after it are a torn tail.
    pub valid_end: usize,
}

/// Decodes a whole version 1 log file. A record whose length or CRC does
/// not check out ends the log (version 1 cannot tell a torn append from
/// damage). A record with a valid CRC that does not parse is corruption.
pub(crate) fn decode_v1(bytes: &[u8], path: &Path) -> Result<Decoded> {
    if bytes.is_empty() {
        return Ok(Decoded {
            records: Vec::new(),
            valid_end: 0,
        });
    }
    if bytes.get(..8) != Some(MAGIC.as_slice()) || bytes.len() < LOG_HEADER_LEN {
        return Err(Error::corrupt(path, 0, "not a spool subscribers log (bad magic)"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION_1 {
        return Err(Error::corrupt(
            path,
            8,
            format!("subscribers log version {version} is not supported"),
        ));
    }
    let mut records = Vec::new();
    let mut at = LOG_HEADER_LEN;
    while let Some(head) = bytes.get(at..at + RECORD_HEADER_LEN) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(body) = bytes.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&head[..4]);
        h.update(body);
        if len == 0 || h.finalize() != crc {
            break;
        }
        let rec = decode_body(body).ok_or_else(|| {
            Error::corrupt(
                path,
                at as u64,
                "subscriber record has a valid checksum but does not parse",
            )
        })?;
        records.push(rec);
        at += RECORD_HEADER_LEN + len;
    }
    Ok(Decoded { records, valid_end: at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_probe_never_reads_past_the_end() {
        let mut b = MAGIC.to_vec();
        assert_eq!(version_of(&b), None, "magic only");
        b.push(2);
        assert_eq!(version_of(&b), None, "magic and one byte");
        b.push(0);
        assert_eq!(version_of(&b), Some(2));
        assert_eq!(version_of(b"SPOOLSU"), None);
    }

    fn sample() -> Vec<LogRecord> {
        vec![
            LogRecord::Commit {
                entries: vec![
                    Position {
                        channel_id: 1,
                        name: "billing".into(),
                        kind: SubKind::Plain,
                        position: 41,
                        acked_above: vec![],
                        meta: QueueMeta::default(),
                    },
                    Position {
                        channel_id: 2,
                        name: "workers".into(),
                        kind: SubKind::Queue,
                        position: 7,
                        acked_above: vec![(9, 9), (11, 20)],
                        meta: QueueMeta {
                            delivered_through: 30,
                            terminated: 2,
                            dead_lettered: 1,
                            dlq_mark: 5,
                            counts: vec![(8, 3), (21, 2)],
                        },
                    },
                ],
                state: Arc::from(&b"state"[..]),
            },
            LogRecord::Remove {
                channel_id: 1,
                name: "billing".into(),
            },
        ]
    }

    fn file(records: &[LogRecord]) -> Vec<u8> {
        let mut f = file_header_v1().to_vec();
        for r in records {
            f.extend(encode_v1(r));
        }
        f
    }

    #[test]
    fn bodies_round_trip() {
        for r in sample() {
            assert_eq!(decode_body(&encode_body(&r)), Some(r));
        }
    }

    #[test]
    fn v2_header_round_trip_and_damage() {
        let h = LogHeader {
            generation: 3,
            file_len: 1 << 16,
            first_record: 77,
            store_id: 0xabcdef,
        };
        let b = h.encode();
        assert_eq!(LogHeader::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x04;
            assert!(LogHeader::decode(&d).is_err(), "byte {i}");
        }
        assert_ne!(log_seed(1, 2), log_seed(1, 3));
        assert_ne!(log_seed(1, 2), log_seed(2, 2));
    }

    #[test]
    fn round_trip() {
        let f = file(&sample());
        let d = decode_v1(&f, Path::new("s")).expect("decode");
        assert_eq!(d.records, sample());
        assert_eq!(d.valid_end, f.len());
    }

    #[test]
    fn every_truncation_is_a_clean_prefix() {
        let f = file(&sample());
        let first_end = LOG_HEADER_LEN + encode_v1(&sample()[0]).len();
        for cut in LOG_HEADER_LEN..f.len() {
            let d = decode_v1(&f[..cut], Path::new("s")).expect("decode");
            let expect = if cut >= first_end { 1 } else { 0 };
            assert_eq!(d.records.len(), expect, "cut {cut}");
        }
    }

    #[test]
    fn flipped_bits_end_the_log() {
        let f = file(&sample());
        for i in LOG_HEADER_LEN..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x20;
            match decode_v1(&g, Path::new("s")) {
                Ok(d) => assert!(d.records.len() < 2, "flip at {i} went unnoticed"),
                Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn bad_magic_is_corrupt() {
        assert!(matches!(
            decode_v1(b"NOTSPOOL........", Path::new("s")),
            Err(Error::Corrupt { .. })
        ));
        assert!(decode_v1(&[], Path::new("s")).is_ok());
    }
}
