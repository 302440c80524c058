//! Segment rolls, reads across segments, seq and time lookups at segment
//! and index boundaries.

mod common;

use common::{payload, small};
use spool::{Store, SEGMENT_HEADER_LEN};

fn seg_files(dir: &std::path::Path) -> Vec<String> {
    let chan = dir.join("channels").join("1");
    let mut names: Vec<String> = std::fs::read_dir(chan)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn rolls_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("roll").unwrap();
    for seq in 1..=2000u64 {
        ch.publish(&payload(3, seq)).unwrap();
    }
    let files = seg_files(dir.path());
    assert!(files.len() > 10, "expected many segments, got {files:?}");
    assert_eq!(files[0], "00000000000000000001.seg");
    // Each file is named by its first seq, and reads work across all of them.
    for name in &files {
        let base: u64 = name.trim_end_matches(".seg").parse().unwrap();
        let m = ch.get(base).unwrap();
        assert_eq!(m.payload(), payload(3, base).as_slice());
        if base > 1 {
            assert_eq!(ch.get(base - 1).unwrap().payload(), payload(3, base - 1).as_slice());
        }
    }
    for from in [1, 2, 999, 1500, 2000] {
        let seqs: Vec<u64> = ch.read_from(from).unwrap().map(|m| m.unwrap().seq()).collect();
        assert_eq!(seqs, (from..=2000).collect::<Vec<_>>());
    }
    // A message bigger than half a segment forces a roll with room left over.
    let big = vec![9u8; 1024];
    let s = ch.publish(&big).unwrap();
    assert_eq!(ch.get(s).unwrap().payload(), big.as_slice());
    drop(ch);
    store.close().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("roll").unwrap();
    assert_eq!(ch.last_seq(), 2001);
    let all: Vec<u64> = ch.read_from(1).unwrap().map(|m| m.unwrap().seq()).collect();
    assert_eq!(all, (1..=2001).collect::<Vec<_>>());
}

#[test]
fn largest_payload_fits_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 4096u64;
    let max = (seg as usize - SEGMENT_HEADER_LEN - 24) as u32;
    let store = Store::open(dir.path(), small(seg).max_payload(max)).unwrap();
    let ch = store.channel("big").unwrap();
    let p = vec![0xAB; max as usize];
    for _ in 0..3 {
        let s = ch.publish(&p).unwrap();
        assert_eq!(ch.get(s).unwrap().payload(), p.as_slice());
    }
    assert_eq!(seg_files(dir.path()).len(), 3);
}

#[test]
fn seq_lookups_hit_every_index_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(16 << 10)).unwrap();
    let ch = store.channel("idx").unwrap();
    for seq in 1..=3000u64 {
        ch.publish(&payload(4, seq)).unwrap();
    }
    for seq in 1..=3000u64 {
        assert_eq!(ch.get(seq).unwrap().payload(), payload(4, seq).as_slice(), "seq {seq}");
    }
    drop(ch);
    store.close().unwrap();
    // After reopen the sealed segments are loaded lazily with their index files.
    let store = Store::open(dir.path(), small(16 << 10)).unwrap();
    let ch = store.channel("idx").unwrap();
    for seq in (1..=3000u64).rev() {
        assert_eq!(ch.get(seq).unwrap().seq(), seq);
    }
}

#[test]
fn time_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("t").unwrap();
    assert_eq!(ch.seq_at_or_after(0).unwrap(), None, "empty channel");
    let mut stamps = Vec::new();
    for seq in 1..=600u64 {
        ch.publish(&payload(5, seq)).unwrap();
        stamps.push(ch.get(seq).unwrap().timestamp());
        if seq % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "timestamps never decrease");
    let check = |ch: &spool::Channel| {
        for (i, ts) in stamps.iter().enumerate() {
            let first_with_ts = stamps.iter().position(|t| t >= ts).unwrap() as u64 + 1;
            assert_eq!(ch.seq_at_or_after(*ts).unwrap(), Some(first_with_ts), "seq {}", i + 1);
            let found = ch.seq_at_or_after(ts + 1).unwrap();
            let expect = stamps.iter().position(|t| *t > *ts).map(|p| p as u64 + 1);
            assert_eq!(found, expect);
        }
        assert_eq!(ch.seq_at_or_after(0).unwrap(), Some(1));
        assert_eq!(ch.seq_at_or_after(stamps[599] + 1).unwrap(), None);
    };
    check(&ch);
    drop(ch);
    store.close().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    check(&store.channel("t").unwrap());
}

/// `Messages::next_ref` lends the same messages `next` returns, across
/// segment rolls, and picks up messages published after it caught up.
#[test]
fn next_ref_lends_what_next_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), common::small(16 << 10)).unwrap();
    let ch = store.channel("lend").unwrap();
    let batch: Vec<Vec<u8>> = (1..=700).map(|s| common::payload(9, s)).collect();
    ch.publish_batch(&batch).unwrap();
    assert!(
        common::channel_files(dir.path(), 1, "seg").len() > 3,
        "the data spans segments"
    );
    let owned: Vec<(u64, u64, Vec<u8>)> = ch
        .read_from(5)
        .unwrap()
        .map(|m| {
            let m = m.unwrap();
            (m.seq(), m.timestamp(), m.payload().to_vec())
        })
        .collect();
    let mut lent = Vec::new();
    let mut kept = Vec::new();
    let mut it = ch.read_from(5).unwrap();
    while let Some(m) = it.next_ref() {
        let m = m.unwrap();
        lent.push((m.seq(), m.timestamp(), m.payload().to_vec()));
        if m.seq() % 100 == 0 {
            kept.push(m.to_message());
        }
    }
    assert_eq!(lent, owned);
    assert_eq!(owned.len(), 696);
    for m in &kept {
        assert_eq!(m.payload(), batch[m.seq() as usize - 1].as_slice());
    }
    ch.publish(b"later").unwrap();
    let m = it.next_ref().expect("a message published after catching up").unwrap();
    assert_eq!((m.seq(), m.payload()), (701, b"later".as_slice()));
    assert!(it.next_ref().is_none());
}
