//! Entry points for the fuzz targets in `fuzz/` and their replay in
//! `cargo test`: each feeds arbitrary bytes to one decoder. Not part of the
//! supported API.
//!
//! When the first byte of the input is odd, the checksums are recomputed
//! after the input is placed, so that the fuzzer reaches the code behind
//! the CRC checks.

use std::path::Path;

use crate::catalog::Catalog;
use crate::index::{decode_file, IndexExpectation};
use crate::record::{segment_seed, FrameHeader, FRAME_HEADER_LEN};
use crate::subscriber::log;

fn split(data: &[u8]) -> (bool, &[u8]) {
    match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    }
}

/// A record frame at the start of `data`, validated as a reader would.
pub fn record_frame(data: &[u8]) {
    let (fix, rest) = split(data);
    let mut bytes = rest.to_vec();
    let seed = segment_seed(1, 1);
    let Some(h) = FrameHeader::parse(&bytes) else { return };
    if fix {
        let end = (FRAME_HEADER_LEN + h.payload_len()).min(bytes.len());
        let payload = bytes.get(FRAME_HEADER_LEN..end).unwrap_or(&[]).to_vec();
        let mut hasher = crc32fast::Hasher::new_with_initial(seed);
        hasher.update(bytes.get(0..4).unwrap_or(&[]));
        hasher.update(bytes.get(8..24).unwrap_or(&[]));
        hasher.update(&payload);
        let crc = hasher.finalize().to_le_bytes();
        if let Some(slot) = bytes.get_mut(4..8) {
            slot.copy_from_slice(&crc);
        }
    }
    let Some(h) = FrameHeader::parse(&bytes) else { return };
    if h.check_shape(bytes.len(), h.seq.max(1), false).is_ok() {
        let payload = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.payload_len());
        assert!(payload.is_some(), "a frame that passed the shape check fits its bytes");
        let _ = payload.is_some_and(|p| h.crc_matches(seed, p));
        let _ = h.next_seq();
    }
}

/// An index file, decoded against a fixed segment.
pub fn index_file(data: &[u8]) {
    let (fix, rest) = split(data);
    let mut bytes = rest.to_vec();
    if fix && bytes.len() >= 64 {
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[..60]);
        h.update(&bytes[64..]);
        let crc = h.finalize().to_le_bytes();
        bytes[60..64].copy_from_slice(&crc);
    }
    let want = IndexExpectation {
        channel_id: u64::from_le_bytes(bytes.get(16..24).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])),
        base: u64::from_le_bytes(bytes.get(24..32).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])).max(1),
        records_start: 128,
        segment_len: 1 << 20,
        capacity: (1 << 20) / 64 + 2,
        sealed_at: None,
    };
    if let Ok((index, cov)) = decode_file(&bytes, &want) {
        assert!(cov.end <= want.segment_len);
        for i in 0..index.len() {
            let e = index.get(i).expect("entries below len exist");
            assert!(e.offset < cov.end && e.seq < cov.next_seq);
        }
    }
}

/// A subscribers log, replayed record by record.
pub fn subscribers_log(data: &[u8]) {
    let (fix, rest) = split(data);
    let mut bytes = log::file_header().to_vec();
    bytes.extend_from_slice(rest);
    if fix {
        // Recompute each record's CRC along the length chain.
        let mut at = log::LOG_HEADER_LEN;
        while let Some(len) = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        {
            let end = at + 8 + len;
            if end > bytes.len() {
                break;
            }
            let mut h = crc32fast::Hasher::new();
            h.update(&bytes[at..at + 4]);
            h.update(&bytes[at + 8..end]);
            let crc = h.finalize().to_le_bytes();
            bytes[at + 4..at + 8].copy_from_slice(&crc);
            at = end;
        }
    }
    if let Ok(d) = log::decode(&bytes, Path::new("subscribers")) {
        assert!(d.valid_end <= bytes.len());
        for r in d.records {
            assert!(!log::encode(&r).is_empty());
        }
    }
}

/// A catalog file.
pub fn catalog(data: &[u8]) {
    let (fix, rest) = split(data);
    let mut bytes = rest.to_vec();
    if fix && bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]).to_le_bytes();
        bytes[n..].copy_from_slice(&crc);
    }
    if let Ok(c) = Catalog::decode(&bytes, Path::new("catalog")) {
        let again = Catalog::decode(&c.encode(), Path::new("catalog")).expect("re-encoding decodes");
        assert_eq!(again, c);
    }
}
