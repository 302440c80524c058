//! A torn last record, at every byte offset: recovery keeps the exact prefix
//! before it, zeroes what follows, and later appends are valid.

mod common;

use common::{open_sim, payload, read_all, small};
use spool::sim::SimStorage;

const SEG: &str = "/store/channels/1/00000000000000000001.seg";
const N: u64 = 12;

fn frame_len(payload: usize) -> usize {
    (24 + payload + 7) & !7
}

/// Publishes N messages without syncing and returns the state after a
/// process crash, plus the offset and length of the last record's frame.
fn crashed_store() -> (SimStorage, usize, usize) {
    let sim = SimStorage::new();
    let store = open_sim(&sim, small(64 << 10)).unwrap();
    let ch = store.channel("t").unwrap();
    let mut offset = spool::SEGMENT_HEADER_LEN;
    let mut last = (0, 0);
    for seq in 1..=N {
        let p = payload(9, seq);
        ch.publish(&p).unwrap();
        last = (offset, frame_len(p.len()));
        offset += frame_len(p.len());
    }
    let crashed = sim.process_crash();
    drop(ch);
    drop(store);
    (crashed, last.0, last.1)
}

fn check_cut(fill: u8) {
    let (template, last_off, last_len) = crashed_store();
    let original = template.read(SEG).unwrap();
    for cut in 0..last_len {
        let image = template.process_crash();
        let mut bytes = original.clone();
        for b in &mut bytes[last_off + cut..last_off + last_len] {
            *b = fill;
        }
        // Stale garbage further on must not survive either.
        for b in &mut bytes[last_off + last_len + 64..last_off + last_len + 96] {
            *b = 0x5A;
        }
        // Padding after the payload is not part of the record.
        let used = 24 + payload(9, N).len();
        let intact = bytes[last_off..last_off + used] == original[last_off..last_off + used];
        image.overwrite(SEG, &bytes).unwrap();

        let store = open_sim(&image, small(64 << 10)).unwrap();
        let kept = if intact { N } else { N - 1 };
        let got = read_all(&store, "t");
        assert_eq!(got.len() as u64, kept, "cut at {cut} (fill {fill:#x})");
        common::assert_verified(&store, &format!("cut at {cut}"));
        for (seq, p) in &got {
            assert_eq!(p, &payload(9, *seq));
        }
        let torn = store.recovery_report().channels[0].torn_tail.clone();
        let expected_cut = if intact { last_off + last_len } else { last_off };
        assert_eq!(torn.map(|t| t.1), Some(expected_cut as u64), "cut at {cut}");

        let ch = store.channel("t").unwrap();
        for seq in kept + 1..=kept + 5 {
            assert_eq!(ch.publish(&payload(10, seq)).unwrap(), seq);
        }
        drop(ch);
        store.close().unwrap();
        let store = open_sim(&image, small(64 << 10)).unwrap();
        let got = read_all(&store, "t");
        assert_eq!(got.len() as u64, kept + 5);
        for (seq, p) in got {
            let tag = if seq <= kept { 9 } else { 10 };
            assert_eq!(p, payload(tag, seq), "seq {seq} after cut {cut}");
        }
        assert_eq!(store.recovery_report().channels[0].torn_tail, None, "clean reopen");
    }
}

#[test]
fn torn_at_every_byte_zero_filled() {
    check_cut(0x00);
}

#[test]
fn torn_at_every_byte_garbage_filled() {
    check_cut(0xA7);
}

#[test]
fn torn_at_every_byte_ff_filled() {
    check_cut(0xFF);
}

/// A commit past the subscribers log's durable watermark that points at
/// messages the same crash cut from its channel goes with the torn tail,
/// and the report says which subscriber is back at which durable commit.
#[test]
fn commit_cut_with_the_torn_tail_is_reported_per_subscriber() {
    use spool::StartAt;
    let sim = SimStorage::new();
    let store = open_sim(&sim, small(64 << 10)).unwrap();
    let ch = store.channel("t").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    let mut offset = spool::SEGMENT_HEADER_LEN;
    for seq in 1..=10 {
        let p = payload(9, seq);
        ch.publish(&p).unwrap();
        offset += frame_len(p.len());
    }
    sub.commit(10, b"ten").unwrap();
    store.sync().unwrap();
    for seq in 11..=20 {
        ch.publish(&payload(9, seq)).unwrap();
    }
    sub.commit(20, b"twenty").unwrap();
    let image = sim.process_crash();
    drop((sub, ch, store));
    // The channel's unsynced records did not reach the disk; the commit did.
    let mut bytes = image.read(SEG).unwrap();
    bytes[offset..].fill(0);
    image.overwrite(SEG, &bytes).unwrap();

    let store = open_sim(&image, small(64 << 10)).unwrap();
    let ch = store.channel("t").unwrap();
    assert_eq!(ch.last_seq(), 10);
    let report = store.recovery_report();
    assert!(report.subscribers.torn_tail.is_some(), "{report:#?}");
    assert!(
        report.subscribers.lost.is_empty(),
        "nothing durable was lost: {report:#?}"
    );
    let cut: Vec<_> = report
        .subscribers
        .cut
        .iter()
        .map(|c| (c.channel_id, c.name.as_str(), c.reverted_to))
        .collect();
    assert_eq!(cut, [(ch.id(), "s", Some(10))], "{report:#?}");
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    assert_eq!(sub.committed(), (10, b"ten".to_vec().into()));
}
