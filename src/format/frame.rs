//! The record frame: how one message (or one repaired hole) is laid out in a
//! segment. See docs/format.md for the diagram.
//!
//! ```text
//! 0      4      8             16            24
//! | len  | crc  | seq (u64)   | timestamp   | payload ... | zero pad to 8 |
//! ```
//!
//! The CRC-32 covers `len`, `seq`, `timestamp` and the payload, and starts
//! from a per-segment seed derived from the channel id and the segment's
//! base sequence, so a record copied from another segment or channel fails.
//! A frame is accepted only when its length fits in the segment, its seq is
//! the one expected at that position (never 0), and the CRC matches: an
//! all-zero page fails on seq, an all-0xFF page on length.

/// Bytes before the payload.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
/// Set in `len` for a hole frame written by repair.
pub(crate) const HOLE_FLAG: u32 = 1 << 31;
/// Largest payload length a frame can describe.
pub(crate) const MAX_LEN: u32 = HOLE_FLAG - 1;

/// Total bytes a frame with `payload_len` bytes occupies (8-byte aligned).
#[inline]
pub(crate) fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len + 7) & !7
}

/// The CRC seed for records of one segment.
pub(crate) fn segment_seed(channel_id: u64, base_seq: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b"spool-record");
    h.update(&channel_id.to_le_bytes());
    h.update(&base_seq.to_le_bytes());
    h.finalize()
}

/// Payloads up to this long are checksummed from one contiguous copy with
/// the header fields: one pass of the CRC instead of two is ~25 % faster
/// on small records (the copy costs less than the second pass's setup).
const SMALL_PAYLOAD: usize = 256 - 20;

#[inline]
fn checksum(seed: u32, len_field: u32, seq: u64, timestamp: u64, payload: &[u8]) -> u32 {
    let mut buf = [0u8; 256];
    buf[0..4].copy_from_slice(&len_field.to_le_bytes());
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12..20].copy_from_slice(&timestamp.to_le_bytes());
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    match buf.get_mut(20..20 + payload.len()) {
        Some(rest) if payload.len() <= SMALL_PAYLOAD => {
            rest.copy_from_slice(payload);
            h.update(&buf[..20 + payload.len()]);
        }
        _ => {
            h.update(&buf[..20]);
            h.update(payload);
        }
    }
    h.finalize()
}

/// Encodes the 24-byte frame header of a message.
#[inline]
pub(crate) fn encode_message(seed: u32, seq: u64, timestamp: u64, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    // Callers check `payload.len() <= max_payload <= MAX_LEN`.
    let len = payload.len() as u32;
    encode(len, checksum(seed, len, seq, timestamp, payload), seq, timestamp)
}

/// Encodes the header of a hole frame covering seqs `first..=last` and
/// `span` bytes in total (the padding payload is all zero).
pub(crate) fn encode_hole(seed: u32, first: u64, last: u64, span: usize) -> Option<[u8; FRAME_HEADER_LEN]> {
    let pad = span.checked_sub(FRAME_HEADER_LEN)?;
    if pad % 8 != 0 || pad as u64 > u64::from(MAX_LEN) || last < first || first == 0 {
        return None;
    }
    let len = pad as u32 | HOLE_FLAG;
    let zeros = vec![0u8; pad];
    Some(encode(len, checksum(seed, len, first, last, &zeros), first, last))
}

fn encode(len: u32, crc: u32, seq: u64, timestamp: u64) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&timestamp.to_le_bytes());
    h
}

/// A parsed frame header (not yet validated against its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    len_field: u32,
    crc: u32,
    /// Sequence (first lost seq for a hole).
    pub seq: u64,
    /// Timestamp (last lost seq for a hole).
    pub timestamp: u64,
}

/// What a valid frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A message with `seq` and `timestamp`.
    Message,
    /// Seqs `seq..=timestamp` were lost and removed by repair.
    Hole,
}

impl FrameHeader {
    /// Parses the first 24 bytes of `bytes`.
    #[inline]
    pub(crate) fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        let b: &[u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Some(FrameHeader {
            len_field: u32_at(0),
            crc: u32_at(4),
            seq: u64_at(8),
            timestamp: u64_at(16),
        })
    }

    /// Payload length in bytes.
    #[inline]
    pub(crate) fn payload_len(&self) -> usize {
        (self.len_field & !HOLE_FLAG) as usize
    }

    /// Whole frame length in bytes.
    #[inline]
    pub(crate) fn frame_len(&self) -> usize {
        frame_len(self.payload_len())
    }

    /// Message or hole.
    #[inline]
    pub(crate) fn kind(&self) -> FrameKind {
        if self.len_field & HOLE_FLAG != 0 {
            FrameKind::Hole
        } else {
            FrameKind::Message
        }
    }

    /// Seq that follows this frame.
    #[inline]
    pub(crate) fn next_seq(&self) -> u64 {
        match self.kind() {
            FrameKind::Message => self.seq.saturating_add(1),
            FrameKind::Hole => self.timestamp.saturating_add(1),
        }
    }

    /// Checks everything but the CRC: the frame fits in `room` bytes and
    /// carries `expected` (never 0); a hole's range is not reversed.
    #[inline]
    pub(crate) fn check_shape(&self, room: usize, expected: u64) -> Result<(), Fault> {
        if self.frame_len() > room {
            return Err(Fault::TooLong {
                len: self.frame_len(),
                room,
            });
        }
        if self.seq == 0 || self.seq != expected {
            return Err(Fault::WrongSeq {
                found: self.seq,
                expected,
            });
        }
        if self.kind() == FrameKind::Hole && self.timestamp < self.seq {
            return Err(Fault::ReversedHole {
                first: self.seq,
                last: self.timestamp,
            });
        }
        Ok(())
    }

    /// Checks the CRC against the payload bytes.
    #[inline]
    pub(crate) fn crc_matches(&self, seed: u32, payload: &[u8]) -> bool {
        checksum(seed, self.len_field, self.seq, self.timestamp, payload) == self.crc
    }
}

/// Bytes of a segment seen from offset `base` on: the whole file (base 0),
/// its records zone, or the published part of it. Offsets given to `get`
/// are offsets in the file.
#[derive(Clone, Copy)]
pub(crate) struct SegmentBytes<'a> {
    pub base: usize,
    pub bytes: &'a [u8],
}

impl<'a> SegmentBytes<'a> {
    /// `len` bytes at file offset `off`, if all of them are in view.
    #[inline]
    pub(crate) fn get(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        let start = off.checked_sub(self.base)?;
        self.bytes.get(start..start.checked_add(len)?)
    }

    /// File offset of the end of the view.
    #[inline]
    pub(crate) fn end(&self) -> usize {
        self.base + self.bytes.len()
    }
}

/// A frame that validated, with where it starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub offset: usize,
    pub header: FrameHeader,
}

impl Frame {
    /// File offset just past the frame.
    #[inline]
    pub(crate) fn end(&self) -> usize {
        self.offset + self.header.frame_len()
    }
}

/// Why a frame did not validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The 24-byte header does not fit before `end`.
    HeaderPastEnd { end: usize },
    /// The frame is longer than the `room` left.
    TooLong { len: usize, room: usize },
    /// The frame carries another seq than the one due there.
    WrongSeq { found: u64, expected: u64 },
    /// A hole frame whose range is reversed.
    ReversedHole { first: u64, last: u64 },
    /// The payload does not fit in the bytes in view.
    PayloadPastEnd,
    /// The checksum does not match.
    Checksum { seq: u64 },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::HeaderPastEnd { end } => write!(f, "record header runs past the end ({end})"),
            Fault::TooLong { len, room } => {
                write!(
                    f,
                    "frame length {len} runs past the end of the segment ({room} bytes left)"
                )
            }
            Fault::WrongSeq { found, expected } => write!(f, "sequence {found} where {expected} was expected"),
            Fault::ReversedHole { first, last } => write!(f, "hole {first}..={last} is reversed"),
            Fault::PayloadPastEnd => write!(f, "payload runs past the end"),
            Fault::Checksum { seq } => write!(f, "checksum mismatch in record {seq}"),
        }
    }
}

/// Why a frame did not validate, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameError {
    pub offset: usize,
    pub fault: Fault,
}

impl FrameError {
    /// The fault as a sentence, for error messages.
    pub(crate) fn reason(&self) -> String {
        self.fault.to_string()
    }
}

/// The one walk over record frames, used by recovery, verify and lookups:
/// where the next frame must start, which seq it must carry, and with
/// which seed its CRC was computed. Every step checks the frame's shape
/// (length inside the view, expected seq, hole bounds); the CRC is checked
/// when the caller asks for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameCursor {
    pub offset: usize,
    pub expected: u64,
    seed: u32,
}

impl FrameCursor {
    /// A walk starting at `offset`, where a frame carrying `expected` must be.
    pub(crate) fn new(seed: u32, offset: usize, expected: u64) -> FrameCursor {
        FrameCursor { offset, expected, seed }
    }

    /// Validates the frame at the cursor within `view` (whose end is the end
    /// of what may be read) and moves past it. `crc`: also check the
    /// checksum. On error the cursor does not move.
    #[inline]
    pub(crate) fn step(&mut self, view: SegmentBytes<'_>, crc: bool) -> Result<Frame, FrameError> {
        let frame = self.peek(view, crc)?;
        self.offset = frame.end();
        self.expected = frame.header.next_seq();
        Ok(frame)
    }

    /// As `step`, without moving.
    #[inline]
    pub(crate) fn peek(&self, view: SegmentBytes<'_>, crc: bool) -> Result<Frame, FrameError> {
        let fail = |fault| FrameError {
            offset: self.offset,
            fault,
        };
        let header = view
            .get(self.offset, FRAME_HEADER_LEN)
            .and_then(FrameHeader::parse)
            .ok_or_else(|| fail(Fault::HeaderPastEnd { end: view.end() }))?;
        header
            .check_shape(view.end().saturating_sub(self.offset), self.expected)
            .map_err(fail)?;
        if crc {
            let payload = view
                .get(self.offset + FRAME_HEADER_LEN, header.payload_len())
                .ok_or_else(|| fail(Fault::PayloadPastEnd))?;
            if !header.crc_matches(self.seed, payload) {
                return Err(fail(Fault::Checksum { seq: header.seq }));
            }
        }
        Ok(Frame {
            offset: self.offset,
            header,
        })
    }

    /// The first frame at or after the cursor (8-byte steps) that validates,
    /// CRC included, and carries a seq of at least `min_seq` and at most
    /// `max_seq`: where a repair resumes after damage. The cursor is not
    /// moved.
    pub(crate) fn resync(&self, view: SegmentBytes<'_>, min_seq: u64, max_seq: u64) -> Option<Frame> {
        let mut at = self.offset;
        while at + FRAME_HEADER_LEN <= view.end() {
            let probe = FrameCursor::new(self.seed, at, 0);
            if let Some(h) = view.get(at, FRAME_HEADER_LEN).and_then(FrameHeader::parse) {
                let in_range = h.seq >= min_seq.max(1) && h.seq <= max_seq;
                if in_range {
                    let found = FrameCursor {
                        expected: h.seq,
                        ..probe
                    }
                    .peek(view, true);
                    if let Ok(frame) = found {
                        return Some(frame);
                    }
                }
            }
            at += 8;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(frame: &[u8], seed: u32, expected: u64) -> bool {
        let Some(h) = FrameHeader::parse(frame) else {
            return false;
        };
        if h.check_shape(frame.len(), expected).is_err() {
            return false;
        }
        let payload = &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.payload_len()];
        h.crc_matches(seed, payload)
    }

    fn message(seed: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = encode_message(seed, seq, 42, payload).to_vec();
        f.extend_from_slice(payload);
        f.resize(frame_len(payload.len()), 0);
        f
    }

    #[test]
    fn round_trip_and_empty_payload() {
        let seed = segment_seed(1, 1);
        assert!(valid(&message(seed, 1, b"hello"), seed, 1));
        assert!(valid(&message(seed, 7, b""), seed, 7));
        assert_eq!(frame_len(0), 24);
        assert_eq!(frame_len(1), 32);
        assert_eq!(frame_len(8), 32);
    }

    #[test]
    fn zero_and_ff_pages_never_validate() {
        let seed = segment_seed(1, 1);
        for expected in [0, 1, 2] {
            assert!(!valid(&[0u8; 4096], seed, expected));
            assert!(!valid(&[0xFFu8; 4096], seed, expected));
        }
    }

    #[test]
    fn other_segment_channel_or_seq_fails() {
        let seed = segment_seed(1, 1);
        let f = message(seed, 1, b"payload");
        assert!(!valid(&f, segment_seed(2, 1), 1), "other channel");
        assert!(!valid(&f, segment_seed(1, 100), 1), "other segment");
        assert!(!valid(&f, seed, 2), "wrong position");
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let seed = segment_seed(3, 9);
        let f = message(seed, 9, b"some payload bytes");
        let used = FRAME_HEADER_LEN + 18;
        for bit in 0..used * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            assert!(!valid(&g, seed, 9), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn oversized_length_fails() {
        let seed = segment_seed(1, 1);
        let mut f = message(seed, 1, b"abc");
        f[0..4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(!valid(&f, seed, 1));
    }

    #[test]
    fn hole_frames() {
        let seed = segment_seed(1, 1);
        let h = encode_hole(seed, 5, 9, 48).expect("hole");
        let mut f = h.to_vec();
        f.resize(48, 0);
        let parsed = FrameHeader::parse(&f).expect("parse");
        assert_eq!(parsed.kind(), FrameKind::Hole);
        assert_eq!(parsed.next_seq(), 10);
        assert!(valid(&f, seed, 5));
        assert!(encode_hole(seed, 5, 9, 20).is_none(), "too short for a header");
        assert!(encode_hole(seed, 9, 5, 48).is_none(), "reversed");
    }
}
