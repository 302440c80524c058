//! Entry points for the decoder fuzz targets in `fuzz/` (built with the
//! `fuzz` cargo feature) and their replay in `cargo test` (the tests
//! below): each feeds arbitrary bytes to one decoder. Not part of the
//! supported API.
//!
//! When the first byte of the input is odd, the checksums are recomputed
//! after the input is placed, so that the fuzzer reaches the code behind
//! the CRC checks.

use std::path::Path;

use crate::catalog::Catalog;
use crate::format::frame::{segment_seed, FrameHeader, FRAME_HEADER_LEN};
use crate::format::sublog as log;
use crate::index::{decode_file, IndexExpectation};

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
    if h.check_shape(bytes.len(), h.seq.max(1)).is_ok() {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target, usize); 4] = [
        ("record_frame", super::record_frame, 20_000),
        ("index_file", super::index_file, 5_000),
        ("subscribers_log", super::subscribers_log, 10_000),
        ("catalog", super::catalog, 10_000),
    ];

    /// SplitMix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    fn regressions(name: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<u8>)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_none_or(|x| x != "md"))
            .filter_map(|e| {
                std::fs::read(e.path())
                    .ok()
                    .map(|b| (e.file_name().to_string_lossy().into_owned(), b))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn decoder_targets_replay() {
        let base: u64 = std::env::var("SPOOL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED);
        eprintln!("SPOOL_SEED={base}");
        for (name, target, cases) in TARGETS {
            for (file, input) in regressions(name) {
                eprintln!("{name}: regression {file}");
                target(&input);
            }
            for i in 0..cases {
                let mut rng = Rng(base ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let len = match rng.next() % 10 {
                    0..=5 => rng.next() % 64,
                    6..=8 => rng.next() % 600,
                    _ => rng.next() % 6000,
                } as usize;
                let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                target(&input);
            }
        }
    }
}
