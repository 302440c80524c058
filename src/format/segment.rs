//! The segment file: its name, and its header: a fixed part written once
//! at creation and two alternating 32-byte slots that record how far the
//! segment is known to be durable (and whether it is sealed). See
//! docs/format.md.

use crate::codec::{u32_at, u64_at};

/// File name of the segment whose first seq is `base`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// File name of that segment's index.
pub(crate) fn index_file_name(base: u64) -> String {
    format!("{base:020}.idx")
}

/// Parses `<20 digits>.seg`.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_base(name.strip_suffix(".seg")?)
}

/// Parses `<20 digits>.idx`.
pub(crate) fn parse_index_name(name: &str) -> Option<u64> {
    parse_base(name.strip_suffix(".idx")?)
}

fn parse_base(digits: &str) -> Option<u64> {
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Magic at the start of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SPOOLSEG";
/// Segment format version.
pub(crate) const SEGMENT_VERSION: u16 = 1;
/// Bytes before the first record.
pub const SEGMENT_HEADER_LEN: usize = 128;
// `Limits` refuses a `max_bytes` below one header and one empty record.
const _: () = assert!(SEGMENT_HEADER_LEN as u64 + 24 == crate::limits::MIN_BYTES_LIMIT);

/// Bytes of the fixed part of the header.
pub(crate) const FIXED_LEN: usize = 64;
/// Bytes of one slot.
pub(crate) const SLOT_LEN: usize = 32;
/// Offsets of the two slots.
pub(crate) const SLOT_OFFSETS: [usize; 2] = [FIXED_LEN, FIXED_LEN + SLOT_LEN];
const FLAG_SEALED: u32 = 1;
const FLAG_CLEAN: u32 = 2;

/// The fixed part of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub channel_id: u64,
    pub base_seq: u64,
    pub segment_len: u64,
    pub created_ns: u64,
}

impl FixedHeader {
    pub(crate) fn encode(&self) -> [u8; FIXED_LEN] {
        let mut b = [0u8; FIXED_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.channel_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.segment_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_ns.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version, header length and CRC.
    pub(crate) fn decode(b: &[u8]) -> Result<FixedHeader, String> {
        let fixed = b.get(..FIXED_LEN).ok_or("file shorter than a segment header")?;
        if fixed.get(..8) != Some(SEGMENT_MAGIC.as_slice()) {
            return Err("no segment magic (not a spool segment, or a zeroed header)".into());
        }
        if u32_at(fixed, 60) != Some(crc32fast::hash(&fixed[..60])) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != SEGMENT_VERSION {
            return Err(format!(
                "segment format version {version} is not supported (this build reads {SEGMENT_VERSION})"
            ));
        }
        let header_len = u16::from_le_bytes([fixed[10], fixed[11]]);
        if usize::from(header_len) != SEGMENT_HEADER_LEN {
            return Err(format!("header length {header_len} is not {SEGMENT_HEADER_LEN}"));
        }
        Ok(FixedHeader {
            channel_id: u64_at(fixed, 16).unwrap_or(0),
            base_seq: u64_at(fixed, 24).unwrap_or(0),
            segment_len: u64_at(fixed, 32).unwrap_or(0),
            created_ns: u64_at(fixed, 40).unwrap_or(0),
        })
    }
}

/// What a slot records: records in `[header, durable_end)` are durable and
/// `next_seq` is the seq of the record at `durable_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub durable_end: u64,
    pub next_seq: u64,
    pub last_timestamp: u64,
    /// No record will ever be added.
    pub sealed: bool,
    /// Written at a clean close: nothing was written past `durable_end`, and
    /// nothing will be until a slot without this flag is durable.
    pub clean: bool,
    /// Orders the two slots (30 bits, wrapping); the newer one counts.
    pub generation: u32,
}

const GENERATION_BITS: u32 = 30;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;

impl Slot {
    /// The slot of a segment nothing is known about yet.
    pub(crate) fn empty(base_seq: u64) -> Slot {
        Slot {
            durable_end: SEGMENT_HEADER_LEN as u64,
            next_seq: base_seq,
            last_timestamp: 0,
            sealed: false,
            clean: false,
            generation: 0,
        }
    }

    /// The generation after this one.
    pub(crate) fn next_generation(&self) -> u32 {
        self.generation.wrapping_add(1) & GENERATION_MASK
    }

    pub(crate) fn encode(&self, seed: u32) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(&self.durable_end.to_le_bytes());
        b[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.last_timestamp.to_le_bytes());
        let flags = (u32::from(self.sealed) * FLAG_SEALED) | (u32::from(self.clean) * FLAG_CLEAN);
        let word = flags | ((self.generation & GENERATION_MASK) << 2);
        b[24..28].copy_from_slice(&word.to_le_bytes());
        let mut h = crc32fast::Hasher::new_with_initial(seed);
        h.update(&b[..28]);
        b[28..32].copy_from_slice(&h.finalize().to_le_bytes());
        b
    }

    /// A valid slot, or `None` for a torn, zero or foreign one.
    pub(crate) fn decode(b: &[u8], seed: u32, base_seq: u64, segment_len: u64) -> Option<Slot> {
        let b = b.get(..SLOT_LEN)?;
        let mut h = crc32fast::Hasher::new_with_initial(seed);
        h.update(&b[..28]);
        if u32_at(b, 28)? != h.finalize() {
            return None;
        }
        let word = u32_at(b, 24)?;
        let slot = Slot {
            durable_end: u64_at(b, 0)?,
            next_seq: u64_at(b, 8)?,
            last_timestamp: u64_at(b, 16)?,
            sealed: word & FLAG_SEALED != 0,
            clean: word & FLAG_CLEAN != 0,
            generation: word >> 2,
        };
        let plausible = slot.durable_end >= SEGMENT_HEADER_LEN as u64
            && slot.durable_end <= segment_len
            && slot.next_seq >= base_seq;
        plausible.then_some(slot)
    }

    /// The newer of two slots, by wrapping generation.
    pub(crate) fn newest(a: Option<Slot>, b: Option<Slot>) -> Option<Slot> {
        match (a, b) {
            (Some(x), Some(y)) => {
                let ahead = y.generation.wrapping_sub(x.generation) & GENERATION_MASK;
                Some(if ahead != 0 && ahead < 1 << (GENERATION_BITS - 1) {
                    y
                } else {
                    x
                })
            }
            (x, None) => x,
            (None, y) => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_index_name("00000000000000000007.idx"), Some(7));
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000001.seg.tmp"), None);
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None, "overflows u64");
    }

    #[test]
    fn fixed_header_round_trip_and_damage() {
        let h = FixedHeader {
            channel_id: 3,
            base_seq: 1001,
            segment_len: 1 << 20,
            created_ns: 5,
        };
        let b = h.encode();
        assert_eq!(FixedHeader::decode(&b), Ok(h));
        for i in 0..FIXED_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(FixedHeader::decode(&d).is_err(), "byte {i}");
        }
        assert!(FixedHeader::decode(&[0u8; 64]).is_err());
        assert!(FixedHeader::decode(&b[..63]).is_err());
    }

    #[test]
    fn slots_validate_only_for_their_segment() {
        let s = Slot {
            durable_end: 4096,
            next_seq: 1010,
            last_timestamp: 9,
            sealed: true,
            clean: false,
            generation: 7,
        };
        let b = s.encode(77);
        assert_eq!(Slot::decode(&b, 77, 1001, 1 << 20), Some(s));
        assert_eq!(Slot::decode(&b, 78, 1001, 1 << 20), None);
        assert_eq!(Slot::decode(&[0u8; 32], 77, 1001, 1 << 20), None);
        assert_eq!(Slot::decode(&b, 77, 1001, 1024), None, "end past segment");
        let clean = Slot { clean: true, ..s };
        assert_eq!(Slot::decode(&clean.encode(77), 77, 1001, 1 << 20), Some(clean));
    }

    #[test]
    fn newest_follows_generation_across_wrap() {
        let at = |generation| Slot {
            generation,
            ..Slot::empty(1)
        };
        assert_eq!(Slot::newest(Some(at(3)), Some(at(4))), Some(at(4)));
        assert_eq!(Slot::newest(Some(at(4)), Some(at(3))), Some(at(4)));
        let last = GENERATION_MASK;
        assert_eq!(Slot::newest(Some(at(last)), Some(at(0))), Some(at(0)), "wraps");
        assert_eq!(at(last).next_generation(), 0);
        assert_eq!(Slot::newest(Some(at(5)), None), Some(at(5)));
    }
}
