//! The catalog: which channels exist, their ids, and the id high-water mark.
//!
//! Replaced atomically on every change: written to `catalog.tmp`, synced,
//! renamed over `catalog`, directory synced. A crash leaves either the old
//! or the new catalog, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::codec::ByteReader;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"SPOOLCAT";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 24;
/// Refuse catalog files larger than this instead of allocating for them.
const MAX_CATALOG_BYTES: u64 = 64 << 20;
/// Longest channel name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// One channel's catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChannelEntry {
    pub id: u64,
    /// First retained sequence (advanced by retention).
    pub first_seq: u64,
    /// The channel's own limits (overrides of the store defaults).
    pub limits: Limits,
}

fn ns(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn encode_limits(out: &mut Vec<u8>, l: &Limits) {
    let mask = u8::from(l.max_msgs.is_some())
        | u8::from(l.max_bytes.is_some()) << 1
        | u8::from(l.max_age.is_some()) << 2
        | u8::from(l.max_subscribers.is_some()) << 3
        | u8::from(l.max_inactivity.is_some()) << 4;
    out.push(mask);
    for v in [
        l.max_msgs.unwrap_or(0),
        l.max_bytes.unwrap_or(0),
        ns(l.max_age),
        l.max_subscribers.map_or(0, |n| n as u64),
        ns(l.max_inactivity),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn decode_limits(c: &mut ByteReader<'_>) -> Option<Limits> {
    let mask = c.u8()?;
    if mask >> 5 != 0 {
        return None;
    }
    let mut v = [0u64; 5];
    for slot in &mut v {
        *slot = c.u64()?;
    }
    let has = |bit: u8| mask & (1 << bit) != 0;
    Some(Limits {
        max_msgs: has(0).then_some(v[0]),
        max_bytes: has(1).then_some(v[1]),
        max_age: has(2).then(|| Duration::from_nanos(v[2])),
        max_subscribers: if has(3) {
            Some(usize::try_from(v[3]).ok()?)
        } else {
            None
        },
        max_inactivity: has(4).then(|| Duration::from_nanos(v[4])),
    })
}

/// The decoded catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Catalog {
    /// Next id to hand out; ids below it are never reused.
    pub next_id: u64,
    pub channels: BTreeMap<String, ChannelEntry>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            next_id: 1,
            channels: BTreeMap::new(),
        }
    }
}

/// Checks a channel name: non-empty UTF-8, at most 255 bytes, no NUL.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a channel name cannot be empty"
    } else if name.len() > MAX_NAME_LEN {
        "a channel name is at most 255 bytes of UTF-8"
    } else if name.contains('\0') {
        "a channel name cannot contain NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

impl Catalog {
    pub(crate) fn path(root: &Path) -> PathBuf {
        root.join("catalog")
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.channels.len() * 48);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.channels.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.next_id.to_le_bytes());
        for (name, e) in &self.channels {
            out.extend_from_slice(&e.id.to_le_bytes());
            out.extend_from_slice(&e.first_seq.to_le_bytes());
            encode_limits(&mut out, &e.limits);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Catalog> {
        let bad = |offset: usize, detail: &str| Error::corrupt(path, offset as u64, detail.to_string());
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| bad(0, "catalog shorter than its checksum"))?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad(body_len, "catalog checksum mismatch"));
        }
        let mut c = ByteReader::new(body);
        if c.take(8) != Some(MAGIC.as_slice()) {
            return Err(bad(0, "not a spool catalog (bad magic)"));
        }
        let version = c.u16().ok_or_else(|| bad(8, "truncated header"))?;
        if version != VERSION {
            return Err(bad(8, &format!("catalog version {version} is not supported")));
        }
        let _reserved = c.u16();
        let count = c.u32().ok_or_else(|| bad(12, "truncated header"))?;
        let next_id = c.u64().ok_or_else(|| bad(16, "truncated header"))?;
        let mut channels = BTreeMap::new();
        for _ in 0..count {
            let at = c.position();
            let (Some(id), Some(first_seq)) = (c.u64(), c.u64()) else {
                return Err(bad(at, "truncated channel entry"));
            };
            let limits = decode_limits(&mut c)
                .filter(|l| l.validate().is_ok())
                .ok_or_else(|| bad(at, "invalid channel limits"))?;
            let len = c.u16().ok_or_else(|| bad(at, "truncated channel entry"))?;
            let name = c
                .take(usize::from(len))
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(at, "channel name truncated or not UTF-8"))?;
            if validate_name(name).is_err() || id >= next_id || id == 0 || first_seq == 0 {
                return Err(bad(at, "invalid channel entry"));
            }
            if channels
                .insert(name.to_string(), ChannelEntry { id, first_seq, limits })
                .is_some()
            {
                return Err(bad(at, "duplicate channel name"));
            }
        }
        if !c.is_done() {
            return Err(bad(c.position(), "trailing bytes after the last channel"));
        }
        Ok(Catalog { next_id, channels })
    }

    /// Reads the catalog; `None` when there is none yet.
    pub(crate) fn load(storage: &Storage, root: &Path) -> Result<Option<Catalog>> {
        let path = Self::path(root);
        if !storage.exists(&path) {
            return Ok(None);
        }
        let bytes = storage.read_file(&path, MAX_CATALOG_BYTES)?;
        Self::decode(&bytes, &path).map(Some)
    }

    /// Replaces the catalog durably (write temp, sync, rename, sync dir).
    pub(crate) fn save(&self, storage: &Storage, root: &Path) -> Result<()> {
        let path = Self::path(root);
        let tmp = root.join("catalog.tmp");
        storage.write_file(&tmp, &self.encode())?;
        storage.sync_file(&tmp)?;
        storage.rename(&tmp, &path)?;
        storage.sync_dir(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let mut c = Catalog {
            next_id: 9,
            channels: BTreeMap::new(),
        };
        c.channels.insert(
            "orders".into(),
            ChannelEntry {
                id: 3,
                first_seq: 1,
                limits: Limits::default(),
            },
        );
        c.channels.insert(
            "ünïcode".into(),
            ChannelEntry {
                id: 8,
                first_seq: 500,
                limits: Limits::default()
                    .max_msgs(10)
                    .max_age(Duration::from_secs(60))
                    .max_subscribers(3),
            },
        );
        c
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(Catalog::decode(&c.encode(), Path::new("catalog")).ok(), Some(c));
    }

    #[test]
    fn every_truncation_and_flip_is_rejected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Catalog::decode(&bytes[..cut], Path::new("c")).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Catalog::decode(&b, Path::new("c")).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("a").is_ok());
        assert!(validate_name(&"x".repeat(255)).is_ok());
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\0b").is_err());
        assert!(validate_name("with/slash and spaces").is_ok());
    }
}
