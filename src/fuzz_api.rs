//! Entry points for the decoder fuzz targets in `fuzz/` (built with the
//! `fuzz` cargo feature) and their replay in `cargo test` (the tests
//! below). Not part of the supported API.
//!
//! Each target reads its input two ways: as raw bytes handed to the decoder
//! (it must not panic, and what it accepts must be well-formed), and as a
//! recipe for a valid structure that is encoded, decoded back (it must
//! round-trip), then mutated at an input-chosen place (the decoder must
//! reject the mutation or, where a byte is not covered by a checksum,
//! decode to exactly what was encoded).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::format::catalog::{decode as decode_catalog, encode as encode_catalog, CatalogData, ChannelEntry};
use crate::format::frame::{
    encode_message, frame_len, segment_seed, FrameCursor, FrameHeader, SegmentBytes, FRAME_HEADER_LEN,
};
use crate::format::sublog::{
    decode_body, encode_body, log_seed, LogHeader, LogRecord, Position, SubKind, V2_HEADER_LEN,
};
use crate::index::{decode_file, Coverage, IndexEntry, IndexExpectation, SegmentIndex};
use crate::limits::Limits;

/// Reads fuzz input front to back; zeros once it runs out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, _| v << 8 | u64::from(self.u8()))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

/// Flips one input-chosen bit of `bytes`; returns its index.
fn mutate(bytes: &mut [u8], r: &mut Recipe<'_>) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    let i = r.below(bytes.len() as u64) as usize;
    bytes[i] ^= 1 << (r.u8() % 8);
    Some(i)
}

/// Record frames: raw bytes validated at offset 0, then a frame built from
/// the input, round-tripped and mutated.
pub fn record_frame(data: &[u8]) {
    let seed = segment_seed(3, 1);
    // Raw: whatever validates must fit its bytes and carry the seq asked.
    if let Some(h) = FrameHeader::parse(data) {
        let view = SegmentBytes { base: 0, bytes: data };
        if let Ok(f) = FrameCursor::new(seed, 0, h.seq).peek(view, true) {
            assert!(f.end() <= data.len() && f.header.seq == h.seq && h.seq != 0);
        }
    }
    let mut r = Recipe(data);
    let seq = 1 + r.below(1 << 40);
    let ts = r.u64();
    let len = r.below(300) as usize;
    let payload = r.bytes(len);
    let mut frame = encode_message(seed, seq, ts, &payload).to_vec();
    frame.extend_from_slice(&payload);
    frame.resize(frame_len(len), 0);
    let view = SegmentBytes { base: 0, bytes: &frame };
    let good = FrameCursor::new(seed, 0, seq)
        .peek(view, true)
        .expect("an encoded frame validates");
    assert_eq!(
        (good.header.seq, good.header.timestamp, good.header.payload_len()),
        (seq, ts, len)
    );
    let mut bad = frame.clone();
    let Some(i) = mutate(&mut bad, &mut r) else { return };
    let view = SegmentBytes { base: 0, bytes: &bad };
    match FrameCursor::new(seed, 0, seq).peek(view, true) {
        // Only the zero padding after the payload is outside the checksum.
        Ok(f) => {
            assert!(i >= FRAME_HEADER_LEN + len, "flip of byte {i} went unnoticed");
            assert_eq!(
                (f.header.seq, f.header.timestamp, f.header.payload_len()),
                (seq, ts, len)
            );
        }
        Err(_) => assert!(
            i < FRAME_HEADER_LEN + len,
            "a flip in the padding (byte {i}) was refused"
        ),
    }
    // Another segment's seed, or another position, never validates.
    let view = SegmentBytes { base: 0, bytes: &frame };
    assert!(FrameCursor::new(segment_seed(3, 2), 0, seq).peek(view, true).is_err());
    assert!(FrameCursor::new(seed, 0, seq + 1).peek(view, true).is_err());
}

/// Index files: raw bytes decoded against a fixed segment, then an index
/// built from the input, round-tripped and mutated.
pub fn index_file(data: &[u8]) {
    let want = |sealed_at| IndexExpectation {
        channel_id: 7,
        base: 100,
        records_start: 128,
        segment_len: 1 << 20,
        capacity: (1 << 20) / 64 + 2,
        sealed_at,
    };
    if let Ok((index, cov, _)) = decode_file(data, &want(None)) {
        assert!(cov.end <= 1 << 20);
        for i in 0..index.len() {
            let e = index.get(i).expect("entries below len exist");
            assert!(e.offset < cov.end && e.seq < cov.next_seq);
        }
    }
    let mut r = Recipe(data);
    let index = SegmentIndex::new(100, (1 << 20) / 64 + 2);
    let (mut seq, mut offset, mut ts) = (100u64, 128usize, r.u64() >> 8);
    let mut entries = Vec::new();
    for _ in 0..r.below(40) {
        let e = IndexEntry {
            seq,
            offset,
            timestamp: ts,
        };
        assert!(index.push(e));
        entries.push(e);
        seq += 1 + r.below(50);
        offset += 64 * (1 + r.below(60) as usize);
        ts += r.below(1000);
    }
    let cov = Coverage {
        end: offset,
        next_seq: seq,
        last_timestamp: ts,
    };
    let live = (r.below(2) == 0).then(|| crate::index::LiveMark {
        boot_id: u128::from(r.u64()),
        device: r.u64(),
        inode: r.u64(),
    });
    let file = index.encode_file(7, cov, live);
    let (back, back_cov, back_live) = decode_file(&file, &want(Some((offset, seq)))).expect("an encoded index decodes");
    assert_eq!(back_cov, cov);
    assert_eq!(back_live, live);
    let decoded: Vec<IndexEntry> = (0..back.len()).filter_map(|i| back.get(i)).collect();
    assert_eq!(decoded, entries);
    let mut bad = file.clone();
    if let Some(i) = mutate(&mut bad, &mut r) {
        assert!(
            decode_file(&bad, &want(None)).is_err(),
            "flip of byte {i} went unnoticed"
        );
    }
    assert!(
        decode_file(&file, &want(Some((offset + 8, seq)))).is_err(),
        "stale coverage refused"
    );
}

fn record_from(r: &mut Recipe<'_>) -> LogRecord {
    let name = |r: &mut Recipe<'_>| format!("s{}", r.below(1000));
    if r.below(7) == 0 {
        return LogRecord::Watermark {
            end: r.below(1 << 40),
            next_record: r.below(1 << 40),
        };
    }
    if r.below(5) == 0 {
        return LogRecord::Remove {
            channel_id: 1 + r.below(9),
            name: name(r),
        };
    }
    let entries = (0..1 + r.below(3))
        .map(|_| {
            let position = r.below(1 << 30);
            let queue = r.below(2) == 1;
            let mut acked = Vec::new();
            let mut at = position + 1;
            for _ in 0..if queue { r.below(4) } else { 0 } {
                let first = at + 1 + r.below(5);
                let last = first + r.below(5);
                acked.push((first, last));
                at = last + 1;
            }
            Position {
                channel_id: 1 + r.below(9),
                name: name(r),
                kind: if queue { SubKind::Queue } else { SubKind::Plain },
                position,
                acked_above: acked,
                meta: Default::default(),
            }
        })
        .collect();
    let state_len = r.below(80) as usize;
    LogRecord::Commit {
        entries,
        state: Arc::from(r.bytes(state_len)),
    }
}

/// The subscribers log: raw bytes as a version 1 log and as a version 2
/// log image; then a version 2 log built from the input (records of every
/// kind, the first `durable` of them covered by a slot), read back whole,
/// then with one bit flipped: strict reading either refuses it, or returns
/// exactly the records before the flip (a flip past the durable end is a
/// torn tail).
pub fn subscribers_log(data: &[u8]) {
    use crate::format::segment::Slot;
    let path = Path::new("subscribers");
    if let Ok(d) = crate::format::sublog::decode_v1(data, path) {
        assert!(d.valid_end <= data.len());
    }
    if let Ok(h) = LogHeader::decode(data) {
        let seed = log_seed(h.store_id, h.generation);
        let _ = crate::subscriptions::walk_image(path, data, h, seed, None, false);
        let _ = crate::subscriptions::walk_image(path, data, h, seed, None, true);
    }
    let mut r = Recipe(data);
    let records: Vec<LogRecord> = (0..r.below(12)).map(|_| record_from(&mut r)).collect();
    for rec in &records {
        assert_eq!(decode_body(&encode_body(rec)).as_ref(), Some(rec), "bodies round-trip");
    }
    let header = LogHeader {
        generation: 1 + r.below(5),
        file_len: 1 << 16,
        first_record: 1 + r.below(1000),
        store_id: u128::from(r.u64()) << 64 | 1,
    };
    let seed = log_seed(header.store_id, header.generation);
    let mut image = vec![0u8; header.file_len as usize];
    image[..64].copy_from_slice(&header.encode());
    let mut at = V2_HEADER_LEN;
    let mut ends = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let body = encode_body(rec);
        let head = encode_message(seed, header.first_record + i as u64, 1000 + i as u64, &body);
        image[at..at + FRAME_HEADER_LEN].copy_from_slice(&head);
        image[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + body.len()].copy_from_slice(&body);
        at += frame_len(body.len());
        ends.push(at);
    }
    let durable = r.below(records.len() as u64 + 1) as usize;
    let slot = Slot {
        durable_end: if durable == 0 { V2_HEADER_LEN } else { ends[durable - 1] } as u64,
        next_seq: header.first_record + durable as u64,
        ..Slot::empty(header.first_record)
    };
    image[64..96].copy_from_slice(&slot.encode(seed));
    let newest = crate::slots::newest_slot(&image, seed, header.first_record, header.file_len);
    assert_eq!(newest.map(|n| n.0), Some(slot));
    let read = |img: &[u8]| crate::subscriptions::walk_image(path, img, header, seed, newest, false);
    let whole = read(&image).expect("a well-formed log reads");
    assert_eq!(whole, records, "every record comes back");
    let Some(i) = mutate(&mut image, &mut r) else { return };
    match read(&image) {
        Ok(got) => {
            // Accepted: a prefix of what was written, never less than what
            // the slot says is durable, never a changed record.
            assert!(got.len() >= durable, "flip of byte {i} lost durable records silently");
            assert_eq!(
                &records[..got.len()],
                got.as_slice(),
                "flip of byte {i} changed a record"
            );
        }
        Err(e) => assert!(matches!(e, crate::Error::Corrupt { .. }), "{e}"),
    }
}

/// Catalogs: raw bytes decoded, then a catalog built from the input,
/// round-tripped and mutated (every flip is refused: the checksum covers
/// every byte).
pub fn catalog(data: &[u8]) {
    if let Ok(c) = decode_catalog(data, Path::new("catalog")) {
        let again = decode_catalog(&encode_catalog(&c), Path::new("catalog")).expect("re-encoding decodes");
        // A version 1 catalog comes back as version 2 with the same content.
        assert_eq!(again, c);
    }
    let mut r = Recipe(data);
    let next_id = 1 + r.below(50);
    let mut channels = BTreeMap::new();
    for id in 1..next_id {
        if r.below(3) == 0 {
            continue;
        }
        let durable_seq = r.below(1 << 40);
        let newest_base = if r.below(2) == 0 {
            0
        } else {
            1 + r.below(durable_seq + 1)
        };
        let limits = Limits {
            max_msgs: (r.below(2) == 0).then(|| 1 + r.below(1000)),
            ..Limits::default()
        };
        channels.insert(
            format!("ch-{id}-{}", r.below(100)),
            ChannelEntry {
                id,
                first_seq: 1 + r.below(1000),
                limits,
                newest_base,
                durable_seq,
            },
        );
    }
    let c = CatalogData {
        store_id: u128::from(r.u64()) | 1,
        next_id,
        subs_generation: r.below(100),
        channels,
    };
    let bytes = encode_catalog(&c);
    assert_eq!(
        decode_catalog(&bytes, Path::new("c")).as_ref().ok(),
        Some(&c),
        "round trip"
    );
    let mut bad = bytes.clone();
    if let Some(i) = mutate(&mut bad, &mut r) {
        assert!(
            decode_catalog(&bad, Path::new("c")).is_err(),
            "flip of byte {i} went unnoticed"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target, usize); 4] = [
        ("record_frame", super::record_frame, 20_000),
        ("index_file", super::index_file, 5_000),
        ("subscribers_log", super::subscribers_log, 5_000),
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
                let outcome = std::panic::catch_unwind(|| target(&input));
                assert!(outcome.is_ok(), "{name}: case {i} failed; input: {input:?}");
            }
        }
    }

    /// The harnesses can fail: a decoder that accepted a flipped byte, or
    /// lost a record, is caught.
    #[test]
    fn harnesses_catch_a_broken_decoder() {
        // A frame whose checksum is not checked passes a flip: the
        // harness's own check must reject that.
        let seed = crate::format::frame::segment_seed(3, 1);
        let payload = b"abcdefgh";
        let mut frame = crate::format::frame::encode_message(seed, 5, 9, payload).to_vec();
        frame.extend_from_slice(payload);
        frame[super::FRAME_HEADER_LEN] ^= 1;
        let view = crate::format::frame::SegmentBytes { base: 0, bytes: &frame };
        let unchecked = crate::format::frame::FrameCursor::new(seed, 0, 5).peek(view, false);
        assert!(unchecked.is_ok(), "without the CRC the flip passes");
        assert!(crate::format::frame::FrameCursor::new(seed, 0, 5)
            .peek(view, true)
            .is_err());
    }
}
