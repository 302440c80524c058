//! Damage in durable data: `Corrupt` by default, and the repair option that
//! keeps everything intact around the damage and reports what was lost.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{payload, read_all, small};
use spool::{Error, RecoveryMode, Store};

const N: u64 = 2000;

fn segments(dir: &Path) -> Vec<PathBuf> {
    common::channel_files(dir, 1, "seg")
}

fn build(dir: &Path) {
    let store = Store::open(dir, small(8192)).unwrap();
    let ch = store.channel("c").unwrap();
    for seq in 1..=N {
        ch.publish(&payload(2, seq)).unwrap();
    }
    drop(ch);
    store.close().unwrap();
}

/// Offset of the frame of `seq` in a segment whose first seq is `base`.
fn frame_offset(base: u64, seq: u64) -> usize {
    (base..seq).fold(spool::SEGMENT_HEADER_LEN, |off, s| {
        off + ((24 + payload(2, s).len() + 7) & !7)
    })
}

fn base_of(p: &Path) -> u64 {
    p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn flipped_bit_in_sealed_segment_is_corrupt_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let segs = segments(dir.path());
    let victim = &segs[3];
    let base = base_of(victim);
    let damaged_seq = base + 5;
    let off = frame_offset(base, damaged_seq);
    let mut bytes = fs::read(victim).unwrap();
    bytes[off + 24] ^= 0x08; // first payload byte (every payload here is non-empty past seq 1)
    assert!(!payload(2, damaged_seq).is_empty());
    fs::write(victim, &bytes).unwrap();

    // Strict: the store opens (sealed segments are not read at open), the
    // damaged record is a typed error naming the file and offset.
    {
        let store = Store::open(dir.path(), small(8192)).unwrap();
        let ch = store.channel("c").unwrap();
        match ch.get(damaged_seq) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!(&path, victim);
                assert_eq!(offset, off as u64);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(ch.get(base - 1).unwrap().payload(), payload(2, base - 1).as_slice());
        let mut it = ch.read_from(1).unwrap();
        let good = it.by_ref().take_while(|m| m.is_ok()).count() as u64;
        assert_eq!(good, damaged_seq - 1, "iteration stops at the damage");
        assert!(it.next().is_none(), "and stays stopped");
    }

    // Repair: everything but the damaged message is kept, the loss reported.
    {
        let store = Store::open(dir.path(), small(8192).recovery_mode(RecoveryMode::Repair)).unwrap();
        let lost = &store.recovery_report().channels[0].lost;
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!((lost[0].first, lost[0].last), (damaged_seq, damaged_seq));
        assert_eq!(&lost[0].path, victim);
        assert_eq!(lost[0].offset, off as u64);
        let ch = store.channel("c").unwrap();
        assert!(
            matches!(ch.get(damaged_seq), Err(Error::Lost { first_lost, last_lost, .. })
            if first_lost == damaged_seq && last_lost == damaged_seq)
        );
        assert_eq!(
            ch.get(damaged_seq + 1).unwrap().payload(),
            payload(2, damaged_seq + 1).as_slice()
        );
        let results: Vec<_> = ch.read_from(1).unwrap().collect();
        assert_eq!(results.len() as u64, N);
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    }

    // The repair is persistent: a strict open now reads the hole as lost.
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("c").unwrap();
    assert!(matches!(ch.get(damaged_seq), Err(Error::Lost { .. })));
    assert_eq!(ch.read_from(1).unwrap().filter(|r| r.is_ok()).count() as u64, N - 1);
    assert_eq!(ch.publish(b"more").unwrap(), N + 1);
}

#[test]
fn smashed_length_field_keeps_later_records() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let segs = segments(dir.path());
    let victim = &segs[2];
    let base = base_of(victim);
    let off = frame_offset(base, base + 3);
    let mut bytes = fs::read(victim).unwrap();
    bytes[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(victim, &bytes).unwrap();

    let store = Store::open(dir.path(), small(8192).recovery_mode(RecoveryMode::Repair)).unwrap();
    let lost = &store.recovery_report().channels[0].lost;
    assert_eq!((lost[0].first, lost[0].last), (base + 3, base + 3), "{lost:?}");
    let got = read_all_ok(&store);
    assert_eq!(got.len() as u64, N - 1);
    assert!(got.iter().all(|(s, p)| p == &payload(2, *s)));
}

fn read_all_ok(store: &Store) -> Vec<(u64, Vec<u8>)> {
    store
        .channel("c")
        .unwrap()
        .read_from(1)
        .unwrap()
        .filter_map(|m| m.ok().map(|m| (m.seq(), m.payload().to_vec())))
        .collect()
}

#[test]
fn damage_below_durable_watermark_of_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small(1 << 20)).unwrap();
        let ch = store.channel("c").unwrap();
        for seq in 1..=100 {
            ch.publish(&payload(2, seq)).unwrap();
        }
        ch.sync().unwrap();
        ch.publish(&payload(2, 101)).unwrap();
        ch.sync().unwrap();
        drop(ch);
        store.close().unwrap();
    }
    let seg = &segments(dir.path())[0];
    let off = frame_offset(1, 50);
    let mut bytes = fs::read(seg).unwrap();
    bytes[off + 30] ^= 0xFF;
    fs::write(seg, &bytes).unwrap();

    // After a clean close the index file lets open skip the durable part:
    // the damage is found when the record is read.
    {
        let store = Store::open(dir.path(), small(1 << 20)).unwrap();
        match store.channel("c").unwrap().get(50) {
            Err(Error::Corrupt { path, offset, .. }) => assert_eq!((&path, offset), (seg, off as u64)),
            other => panic!("expected Corrupt on read, got {other:?}"),
        }
    }
    // After a crash (no current index file) open scans the segment and
    // refuses, naming the file and offset.
    fs::remove_file(seg.with_extension("idx")).unwrap();
    match Store::open(dir.path(), small(1 << 20)) {
        Err(Error::Corrupt { path, offset, detail }) => {
            assert_eq!(&path, seg);
            assert_eq!(offset, off as u64);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected Corrupt at open, got {other:?}"),
    }
    let store = Store::open(dir.path(), small(1 << 20).recovery_mode(RecoveryMode::Repair)).unwrap();
    let lost = &store.recovery_report().channels[0].lost;
    assert_eq!((lost[0].first, lost[0].last), (50, 50));
    assert_eq!(read_all_ok(&store).len(), 100);
    assert_eq!(store.channel("c").unwrap().last_seq(), 101);
}

#[test]
fn zero_byte_and_header_only_segments() {
    for keep in [0usize, spool::SEGMENT_HEADER_LEN] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let segs = segments(dir.path());
        let victim = segs.last().unwrap();
        let bytes = fs::read(victim).unwrap();
        fs::write(victim, &bytes[..keep]).unwrap();
        match Store::open(dir.path(), small(8192)) {
            Err(Error::Corrupt {
                path,
                offset: 0,
                detail,
            }) => {
                assert_eq!(&path, victim);
                assert!(detail.contains("too short"), "{detail}");
            }
            other => panic!("keep {keep}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn missing_middle_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let segs = segments(dir.path());
    fs::remove_file(&segs[4]).unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("c").unwrap();
    let err = ch
        .read_from(1)
        .unwrap()
        .find_map(|m| m.err())
        .expect("a gap must be reported");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn foreign_segment_does_not_validate() {
    // A segment copied from another channel fails on its header.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small(8192)).unwrap();
        for name in ["c", "d"] {
            let ch = store.channel(name).unwrap();
            for seq in 1..=10 {
                ch.publish(&payload(2, seq)).unwrap();
            }
        }
        store.close().unwrap();
    }
    let src = dir.path().join("channels/2/00000000000000000001.seg");
    let dst = dir.path().join("channels/1/00000000000000000001.seg");
    fs::copy(&src, &dst).unwrap();
    match Store::open(dir.path(), small(8192)) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, dst),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Even with the header rewritten by repair, its records do not validate
    // for this channel: the repair keeps nothing from it, and reports the
    // ten messages the catalog recorded as durable as lost.
    let store = Store::open(dir.path(), small(8192).recovery_mode(RecoveryMode::Repair)).unwrap();
    let ch = store.channel("c").unwrap();
    let lost: Vec<(u64, u64)> = store.recovery_report().channels[0]
        .lost
        .iter()
        .map(|l| (l.first, l.last))
        .collect();
    assert_eq!(lost, vec![(1, 10)]);
    assert!(matches!(
        ch.get(5),
        Err(Error::Lost {
            first_lost: 1,
            last_lost: 10,
            ..
        })
    ));
    assert_eq!(ch.publish(b"after").unwrap(), 11, "no seq is handed out twice");
}

#[test]
fn damaged_catalog_and_lock_files() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let catalog = dir.path().join("catalog");
    let good = fs::read(&catalog).unwrap();
    for bad in [Vec::new(), good[..good.len() / 2].to_vec(), vec![0xFF; good.len()]] {
        fs::write(&catalog, &bad).unwrap();
        match Store::open(dir.path(), small(8192)) {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, catalog),
            other => panic!("expected Corrupt for the catalog, got {other:?}"),
        }
    }
    fs::remove_file(&catalog).unwrap();
    match Store::open(dir.path(), small(8192)) {
        Err(Error::Corrupt { detail, .. }) => assert!(detail.contains("missing"), "{detail}"),
        other => panic!("expected Corrupt for a missing catalog, got {other:?}"),
    }
    fs::write(&catalog, &good).unwrap();
    // The lock file's content is informational only.
    fs::write(dir.path().join("LOCK"), [0xFFu8; 64]).unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    assert_eq!(read_all(&store, "c").len() as u64, N);
}

/// Repair happens inside `Store::open` only: a sealed segment closed out of
/// the cache and opened again later is read-only and strict, so no byte of
/// any file is written and nothing is scanned again, while a message taken
/// from its first mapping stays valid.
#[test]
fn repair_mode_reopens_sealed_segments_read_only() {
    // Enough 4 KiB segments that reading them all closes the first one
    // (at most 64 small segments stay open).
    const N: u64 = 4000;
    let sim = spool::sim::SimStorage::new();
    let opts = small(4096);
    {
        let store = common::open_sim(&sim, opts.clone()).unwrap();
        let ch = store.channel("c").unwrap();
        for seq in 1..=N {
            ch.publish(&payload(2, seq)).unwrap();
        }
        store.close().unwrap();
    }
    let store = common::open_sim(&sim, opts.recovery_mode(RecoveryMode::Repair)).unwrap();
    let ch = store.channel("c").unwrap();
    let files: Vec<PathBuf> = sim
        .list_all()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "idx"))
        .collect();
    let before: Vec<Vec<u8>> = files.iter().map(|p| sim.read(p).unwrap()).collect();
    let ops = sim.ops();
    let first = ch.get(1).unwrap();
    // Reading every later segment pushes the first one out of the cache of
    // open sealed segments; reading it again opens it again.
    let mut seq = 1;
    while seq <= N - 100 {
        assert_eq!(ch.get(seq).unwrap().payload(), payload(2, seq).as_slice());
        seq += 20;
    }
    assert_eq!(ch.get(2).unwrap().payload(), payload(2, 2).as_slice());
    assert_eq!(first.payload(), payload(2, 1).as_slice(), "a held message stays valid");
    assert_eq!(sim.ops(), ops, "no storage call changed anything after open");
    for (path, bytes) in files.iter().zip(&before) {
        assert_eq!(&sim.read(path).unwrap(), bytes, "{} was written", path.display());
    }
}
