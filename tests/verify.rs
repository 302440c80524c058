//! The integrity checker finds each kind of damage, with path and offset,
//! and finds nothing in a healthy store.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{payload, small};
use spool::{StartAt, Store};

fn build(dir: &Path) {
    let store = Store::open(dir, small(8192)).unwrap();
    let ch = store.channel("v").unwrap();
    for seq in 1..=1500 {
        ch.publish(&payload(8, seq)).unwrap();
    }
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    sub.commit(700, b"state").unwrap();
    drop(sub);
    drop(ch);
    store.close().unwrap();
}

fn segment(dir: &Path, i: usize) -> PathBuf {
    common::channel_files(dir, 1, "seg")[i].clone()
}

fn problems(dir: &Path) -> Vec<spool::Problem> {
    let store = Store::open(dir, small(8192)).unwrap();
    let r = store.verify().unwrap();
    assert!(r.segments > 10 && r.records > 1000, "{r:?}");
    r.problems
}

#[test]
fn healthy_store_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    assert_eq!(problems(dir.path()), vec![]);
}

#[test]
fn flipped_bit_is_found_with_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let seg = segment(dir.path(), 3);
    let mut b = fs::read(&seg).unwrap();
    b[128 + 30] ^= 1;
    fs::write(&seg, b).unwrap();
    let p = problems(dir.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].path, seg);
    assert_eq!(p[0].offset, Some(128));
}

#[test]
fn orphans_and_missing_segments_are_found() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    fs::remove_file(segment(dir.path(), 5)).unwrap();
    fs::write(dir.path().join("channels/1/stray.bin"), b"?").unwrap();
    fs::write(dir.path().join("notes.txt"), b"?").unwrap();
    let p = problems(dir.path());
    let text = format!("{p:#?}");
    assert!(p.iter().any(|x| x.path.ends_with("stray.bin")), "{text}");
    assert!(p.iter().any(|x| x.path.ends_with("notes.txt")), "{text}");
    assert!(p.iter().any(|x| x.detail.contains("starts at")), "{text}");
}

#[test]
fn index_pointing_at_the_wrong_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let idx = segment(dir.path(), 2).with_extension("idx");
    let mut b = fs::read(&idx).unwrap();
    // Entries follow a 128-byte header (docs/format.md, index version 2).
    assert_eq!(u16::from_le_bytes([b[8], b[9]]), 2, "index version");
    let entries = 128;
    b[entries + 16 + 4] = b[entries + 16 + 4].wrapping_add(8);
    // Both checksums made to match: the entries' (at 96), then the
    // header's (at 60, over bytes 0..60 and 64..128).
    let entries_crc = crc32fast::hash(&b[entries..]);
    b[96..100].copy_from_slice(&entries_crc.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..60]);
    h.update(&b[64..entries]);
    let crc = h.finalize();
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::write(&idx, b).unwrap();
    let p = problems(dir.path());
    assert!(p.iter().any(|x| x.path == idx), "{p:#?}");
}

/// The catalog's newest segment removed under a live store: what the next
/// open refuses, verify reports now.
#[test]
fn missing_newest_segment_is_found_on_a_live_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let ch = store.channel("v").unwrap();
    for seq in 1..=300 {
        ch.publish(&payload(8, seq)).unwrap();
    }
    store.sync().unwrap();
    let newest = common::channel_files(dir.path(), 1, "seg").pop().unwrap();
    fs::remove_file(&newest).unwrap();
    let r = store.verify().unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.path == newest && p.detail.contains("newest")),
        "{:#?}",
        r.problems
    );
}
