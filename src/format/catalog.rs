//! The catalog file: which channels exist (name, id, first retained seq,
//! limits), what durable state must exist for each (its newest segment, the
//! last seq known durable), the id high-water mark, the store's identity and
//! the generation of its subscribers log. Version 2; version 1 (no
//! identity, no durable state) is still read. See docs/format.md.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::codec::ByteReader;
use crate::error::{Error, Result};
use crate::limits::Limits;

const MAGIC: &[u8; 8] = b"SPOOLCAT";
/// The version this build writes.
pub(crate) const CATALOG_VERSION: u16 = 2;
/// Refuse catalog files larger than this instead of allocating for them.
pub(crate) const MAX_CATALOG_BYTES: u64 = 64 << 20;
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
    /// Base of the newest segment whose creation is durable and recorded
    /// (0: none recorded). Every segment below it is sealed; a segment
    /// above it holds nothing durable.
    pub newest_base: u64,
    /// The last seq known durable when this entry was written (at a
    /// segment roll or a clean close; 0: none known). Recovery must find at
    /// least this much.
    pub durable_seq: u64,
}

impl ChannelEntry {
    /// A new channel's entry.
    pub(crate) fn new(id: u64, limits: Limits) -> ChannelEntry {
        ChannelEntry {
            id,
            first_seq: 1,
            limits,
            newest_base: 0,
            durable_seq: 0,
        }
    }
}

/// The decoded catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CatalogData {
    /// Random, fixed when the store is created: names this store (and its
    /// copies) apart from every other one.
    pub store_id: u128,
    /// Next id to hand out; ids below it are never reused.
    pub next_id: u64,
    /// Generation of the subscribers log that must exist (0: none recorded,
    /// a store of format version 1).
    pub subs_generation: u64,
    pub channels: BTreeMap<String, ChannelEntry>,
}

impl CatalogData {
    /// The catalog of a new store.
    pub(crate) fn new(store_id: u128) -> CatalogData {
        CatalogData {
            store_id,
            next_id: 1,
            subs_generation: 0,
            channels: BTreeMap::new(),
        }
    }

    /// The entry of channel incarnation `id`, if it is live.
    pub(crate) fn by_id_mut(&mut self, id: u64) -> Option<&mut ChannelEntry> {
        self.channels.values_mut().find(|e| e.id == id)
    }
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

/// Encodes the catalog (format version 2).
pub(crate) fn encode(data: &CatalogData) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + data.channels.len() * 80);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(data.channels.len() as u32).to_le_bytes());
    out.extend_from_slice(&data.next_id.to_le_bytes());
    out.extend_from_slice(&data.store_id.to_le_bytes());
    out.extend_from_slice(&data.subs_generation.to_le_bytes());
    for (name, e) in &data.channels {
        out.extend_from_slice(&e.id.to_le_bytes());
        out.extend_from_slice(&e.first_seq.to_le_bytes());
        encode_limits(&mut out, &e.limits);
        out.extend_from_slice(&e.newest_base.to_le_bytes());
        out.extend_from_slice(&e.durable_seq.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and validates a catalog of version 1 or 2. A version 1 catalog
/// has no store identity: `store_id` is 0 and the caller assigns one.
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<CatalogData> {
    decode_checked(bytes, path, true)
}

/// As [`decode`], without the checksum: what a damaged catalog still says,
/// for repair to read names from (every other rule still applies).
pub(crate) fn decode_ignoring_checksum(bytes: &[u8], path: &Path) -> Result<CatalogData> {
    decode_checked(bytes, path, false)
}

fn decode_checked(bytes: &[u8], path: &Path, check: bool) -> Result<CatalogData> {
    let bad = |offset: usize, detail: &str| Error::corrupt(path, offset as u64, detail.to_string());
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| bad(0, "catalog shorter than its checksum"))?;
    let (body, crc) = bytes.split_at(body_len);
    if check && crc32fast::hash(body).to_le_bytes() != crc {
        return Err(bad(body_len, "catalog checksum mismatch"));
    }
    let mut c = ByteReader::new(body);
    if c.take(8) != Some(MAGIC.as_slice()) {
        return Err(bad(0, "not a spool catalog (bad magic)"));
    }
    let version = c.u16().ok_or_else(|| bad(8, "truncated header"))?;
    if version != 1 && version != CATALOG_VERSION {
        return Err(bad(
            8,
            &format!("catalog version {version} is not supported (this build reads 1 and 2)"),
        ));
    }
    let _reserved = c.u16();
    let count = c.u32().ok_or_else(|| bad(12, "truncated header"))?;
    let next_id = c.u64().ok_or_else(|| bad(16, "truncated header"))?;
    let (store_id, subs_generation) = if version >= 2 {
        let id = c
            .take(16)
            .and_then(|b| b.try_into().ok())
            .map(u128::from_le_bytes)
            .ok_or_else(|| bad(24, "truncated header"))?;
        (id, c.u64().ok_or_else(|| bad(40, "truncated header"))?)
    } else {
        (0, 0)
    };
    let mut channels = BTreeMap::new();
    let mut ids = HashSet::new();
    for _ in 0..count {
        let at = c.position();
        let (Some(id), Some(first_seq)) = (c.u64(), c.u64()) else {
            return Err(bad(at, "truncated channel entry"));
        };
        let limits = decode_limits(&mut c)
            .filter(|l| l.validate().is_ok())
            .ok_or_else(|| bad(at, "invalid channel limits"))?;
        let (newest_base, durable_seq) = if version >= 2 {
            match (c.u64(), c.u64()) {
                (Some(n), Some(d)) => (n, d),
                _ => return Err(bad(at, "truncated channel entry")),
            }
        } else {
            (0, 0)
        };
        let len = c.u16().ok_or_else(|| bad(at, "truncated channel entry"))?;
        let name = c
            .take(usize::from(len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| bad(at, "channel name truncated or not UTF-8"))?;
        if validate_name(name).is_err() || id >= next_id || id == 0 || first_seq == 0 {
            return Err(bad(at, "invalid channel entry"));
        }
        if newest_base > 0 && newest_base > durable_seq.saturating_add(1) {
            return Err(bad(
                at,
                &format!(
                    "channel {name:?}: newest segment {newest_base} starts past its durable seq {durable_seq} + 1"
                ),
            ));
        }
        if !ids.insert(id) {
            return Err(bad(at, &format!("two channels share the id {id}")));
        }
        let entry = ChannelEntry {
            id,
            first_seq,
            limits,
            newest_base,
            durable_seq,
        };
        if channels.insert(name.to_string(), entry).is_some() {
            return Err(bad(at, "duplicate channel name"));
        }
    }
    if !c.is_done() {
        return Err(bad(c.position(), "trailing bytes after the last channel"));
    }
    Ok(CatalogData {
        store_id,
        next_id,
        subs_generation,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CatalogData {
        let mut c = CatalogData {
            store_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            next_id: 9,
            subs_generation: 4,
            channels: BTreeMap::new(),
        };
        c.channels
            .insert("orders".into(), ChannelEntry::new(3, Limits::default()));
        c.channels.insert(
            "ünïcode".into(),
            ChannelEntry {
                id: 8,
                first_seq: 500,
                limits: Limits::default()
                    .max_msgs(10)
                    .max_age(Duration::from_secs(60))
                    .max_subscribers(3),
                newest_base: 900,
                durable_seq: 1234,
            },
        );
        c
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(decode(&encode(&c), Path::new("catalog")).ok(), Some(c));
    }

    #[test]
    fn every_truncation_and_flip_is_rejected() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], Path::new("c")).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b, Path::new("c")).is_err(), "flip at {i}");
        }
    }

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn what_cannot_be_is_corrupt_even_with_a_valid_checksum() {
        let mut two = sample();
        two.channels.get_mut("orders").unwrap().id = 8;
        let err = decode(&encode(&two), Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("share the id 8"), "{err}");
        let mut high = sample();
        high.channels.get_mut("orders").unwrap().id = 9;
        assert!(
            decode(&encode(&high), Path::new("c")).is_err(),
            "id at the high-water mark"
        );
        let mut ahead = sample();
        ahead.channels.get_mut("orders").unwrap().newest_base = 50;
        assert!(
            decode(&encode(&ahead), Path::new("c")).is_err(),
            "segment past the durable seq"
        );
        // Re-encoded with a valid checksum: still refused.
        let bytes = encode(&two);
        assert!(decode(&with_crc(bytes[..bytes.len() - 4].to_vec()), Path::new("c")).is_err());
    }

    #[test]
    fn version_1_is_read() {
        // A version 1 catalog as spool 0.1's first format wrote it.
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&0u16.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&5u64.to_le_bytes());
        v1.extend_from_slice(&4u64.to_le_bytes());
        v1.extend_from_slice(&7u64.to_le_bytes());
        encode_limits(&mut v1, &Limits::default().max_msgs(100));
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(b"c");
        let c = decode(&with_crc(v1), Path::new("c")).unwrap();
        assert_eq!((c.store_id, c.next_id, c.subs_generation), (0, 5, 0));
        let e = &c.channels["c"];
        assert_eq!((e.id, e.first_seq, e.newest_base, e.durable_seq), (4, 7, 0, 0));
        assert_eq!(e.limits.max_msgs, Some(100));
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
