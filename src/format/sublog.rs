//! The subscribers log: one append-only file per store holding every
//! subscriber commit as a CRC-framed record. One record can hold the
//! positions of several subscribers on several channels plus one state
//! blob, which is what makes a multi-subscriber commit atomic: a record is
//! either whole and valid, or it is a torn tail and ignored. See
//! docs/format.md.

use std::path::Path;
use std::sync::Arc;

use crate::codec::ByteReader;
use crate::error::{Error, Result};

/// File name, in the store's root.
pub(crate) const LOG_FILE: &str = "subscribers";
const MAGIC: &[u8; 8] = b"SPOOLSUB";
const VERSION: u16 = 1;
/// Bytes before the first record.
pub(crate) const LOG_HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
const KIND_COMMIT: u8 = 1;
const KIND_REMOVE: u8 = 2;

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
}

/// A record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogRecord {
    Commit { entries: Vec<Position>, state: Arc<[u8]> },
    Remove { channel_id: u64, name: String },
}

pub(crate) fn file_header() -> [u8; LOG_HEADER_LEN] {
    let mut h = [0u8; LOG_HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// Encodes a record with its length and CRC.
pub(crate) fn encode(rec: &LogRecord) -> Vec<u8> {
    let mut body = Vec::new();
    match rec {
        LogRecord::Commit { entries, state } => {
            body.push(KIND_COMMIT);
            body.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            for e in entries {
                body.extend_from_slice(&e.channel_id.to_le_bytes());
                put_name(&mut body, &e.name);
                body.push(match e.kind {
                    SubKind::Plain => 0,
                    SubKind::Queue => 1,
                });
                body.extend_from_slice(&e.position.to_le_bytes());
                body.extend_from_slice(&(e.acked_above.len() as u32).to_le_bytes());
                for (a, b) in &e.acked_above {
                    body.extend_from_slice(&a.to_le_bytes());
                    body.extend_from_slice(&b.to_le_bytes());
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
    }
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

fn decode_body(body: &[u8]) -> Option<LogRecord> {
    let mut r = ByteReader::new(body);
    let rec = match r.u8()? {
        KIND_COMMIT => {
            let count = r.u16()?;
            let mut entries = Vec::new();
            for _ in 0..count {
                let channel_id = r.u64()?;
                let name = name(&mut r)?;
                let kind = match r.u8()? {
                    0 => SubKind::Plain,
                    1 => SubKind::Queue,
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
                entries.push(Position {
                    channel_id,
                    name,
                    kind,
                    position,
                    acked_above,
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

/// Decodes a whole log file. A record whose length or CRC does not check
/// out ends the log (a torn append). A record with a valid CRC that does
/// not parse is corruption.
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Decoded> {
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
    if version != VERSION {
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
                    },
                    Position {
                        channel_id: 2,
                        name: "workers".into(),
                        kind: SubKind::Queue,
                        position: 7,
                        acked_above: vec![(9, 9), (11, 20)],
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
        let mut f = file_header().to_vec();
        for r in records {
            f.extend(encode(r));
        }
        f
    }

    #[test]
    fn round_trip() {
        let f = file(&sample());
        let d = decode(&f, Path::new("s")).expect("decode");
        assert_eq!(d.records, sample());
        assert_eq!(d.valid_end, f.len());
    }

    #[test]
    fn every_truncation_is_a_clean_prefix() {
        let f = file(&sample());
        let first_end = LOG_HEADER_LEN + encode(&sample()[0]).len();
        for cut in LOG_HEADER_LEN..f.len() {
            let d = decode(&f[..cut], Path::new("s")).expect("decode");
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
            match decode(&g, Path::new("s")) {
                Ok(d) => assert!(d.records.len() < 2, "flip at {i} went unnoticed"),
                Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn bad_magic_is_corrupt() {
        assert!(matches!(
            decode(b"NOTSPOOL........", Path::new("s")),
            Err(Error::Corrupt { .. })
        ));
        assert!(decode(&[], Path::new("s")).is_ok());
    }
}
