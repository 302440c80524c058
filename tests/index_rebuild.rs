//! The sparse index is derived data: missing, corrupt, truncated, foreign or
//! subtly wrong index files never change what reads return.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{payload, small};
use spool::Store;

const N: u64 = 3000;

fn build(dir: &Path) -> Vec<u64> {
    let store = Store::open(dir, small(16 << 10)).unwrap();
    let ch = store.channel("i").unwrap();
    let mut stamps = Vec::new();
    for seq in 1..=N {
        ch.publish(&payload(6, seq)).unwrap();
        stamps.push(ch.get(seq).unwrap().timestamp());
    }
    drop(ch);
    store.close().unwrap();
    stamps
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    common::channel_files(dir, 1, "idx")
}

fn verify_reads(dir: &Path, stamps: &[u64]) {
    let store = Store::open(dir, small(16 << 10)).unwrap();
    let ch = store.channel("i").unwrap();
    for seq in (1..=N).step_by(7).chain([N]) {
        assert_eq!(ch.get(seq).unwrap().payload(), payload(6, seq).as_slice(), "seq {seq}");
    }
    for (i, ts) in stamps.iter().enumerate().step_by(97) {
        let want = stamps.iter().position(|t| t >= ts).unwrap() as u64 + 1;
        assert_eq!(ch.seq_at_or_after(*ts).unwrap(), Some(want), "time of seq {}", i + 1);
    }
    let mut count = 0;
    for m in ch.read_from(1).unwrap() {
        count += 1;
        assert_eq!(m.unwrap().seq(), count);
    }
    assert_eq!(count, N);
}

fn damage_each(mutate: impl Fn(&Path, &[u8]) -> Option<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let stamps = build(dir.path());
    let files = index_files(dir.path());
    assert!(files.len() > 5, "need several sealed segments");
    let originals: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    for (f, orig) in files.iter().zip(&originals) {
        match mutate(f, orig) {
            Some(bytes) => fs::write(f, bytes).unwrap(),
            None => fs::remove_file(f).unwrap(),
        }
    }
    verify_reads(dir.path(), &stamps);
    // Every index that was read was rebuilt to exactly what spool writes.
    for (f, orig) in files.iter().zip(&originals) {
        if let Ok(now) = fs::read(f) {
            assert_eq!(&now, orig, "{} was not rebuilt faithfully", f.display());
        }
    }
}

#[test]
fn missing_index_files() {
    damage_each(|_, _| None);
}

#[test]
fn corrupt_index_files() {
    damage_each(|_, b| {
        let mut b = b.to_vec();
        let at = b.len() / 2;
        b[at] ^= 0x40;
        Some(b)
    });
}

#[test]
fn truncated_and_empty_index_files() {
    damage_each(|p, b| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        Some(if name.contains('3') {
            Vec::new()
        } else {
            b[..b.len() - 5].to_vec()
        })
    });
}

#[test]
fn index_of_another_segment() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = build(dir.path());
    let files = index_files(dir.path());
    let first = fs::read(&files[0]).unwrap();
    for f in &files[1..] {
        fs::write(f, &first).unwrap();
    }
    verify_reads(dir.path(), &stamps);
}

/// An index with a valid checksum whose entries point at the wrong offsets
/// must not make reads fail or return wrong messages.
#[test]
fn wrong_offsets_with_valid_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = build(dir.path());
    for f in index_files(dir.path()) {
        let mut b = fs::read(&f).unwrap();
        let entries = (b.len() - 64) / 16;
        for e in 1..entries {
            let at = 64 + e * 16 + 4;
            let off = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            b[at..at + 4].copy_from_slice(&(off + 8).to_le_bytes());
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&b[..60]);
        h.update(&b[64..]);
        let crc = h.finalize();
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        fs::write(&f, b).unwrap();
    }
    verify_reads(dir.path(), &stamps);
}

fn rewrite_idx_header(bytes: &mut [u8], covered_end: u64, next_seq: u64) {
    bytes[32..40].copy_from_slice(&covered_end.to_le_bytes());
    bytes[40..48].copy_from_slice(&next_seq.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..60]);
    h.update(&bytes[64..]);
    let crc = h.finalize();
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The last segment's index file lets open skip what it covers; one that
/// lies about where the records end must not cut records off.
#[test]
fn lying_index_of_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small(1 << 20)).unwrap();
        let ch = store.channel("i").unwrap();
        for seq in 1..=500 {
            ch.publish(&payload(6, seq)).unwrap();
        }
        drop(ch);
        store.close().unwrap();
    }
    let idx = index_files(dir.path()).pop().unwrap();
    let honest = fs::read(&idx).unwrap();
    let entry_offset = |i: usize| u32::from_le_bytes(honest[64 + i * 16 + 4..64 + i * 16 + 8].try_into().unwrap());
    let entry_seq = |i: usize| {
        1 + u64::from(u32::from_le_bytes(
            honest[64 + i * 16..64 + i * 16 + 4].try_into().unwrap(),
        ))
    };
    let lies = [
        // Covered end inside a record.
        (u64::from(entry_offset(3)) + 8, entry_seq(3) + 1),
        // A real record boundary with the wrong seq.
        (u64::from(entry_offset(3)), entry_seq(3) + 5),
        // Claims to cover less than the file holds, truthfully.
        (u64::from(entry_offset(3)), entry_seq(3)),
    ];
    for (end, next) in lies {
        let mut bytes = honest.clone();
        // Keep only the entries below the claimed end, as a real index would.
        let keep = (0..(honest.len() - 64) / 16)
            .take_while(|&i| u64::from(entry_offset(i)) < end)
            .count();
        let mut trimmed = bytes[..64 + keep * 16].to_vec();
        trimmed[56..60].copy_from_slice(&(keep as u32).to_le_bytes());
        rewrite_idx_header(&mut trimmed, end, next);
        bytes = trimmed;
        fs::write(&idx, &bytes).unwrap();
        let store = Store::open(dir.path(), small(1 << 20)).unwrap();
        let got = common::read_all(&store, "i");
        assert_eq!(got.len(), 500, "index claiming end {end}, next seq {next}");
        assert!(got.iter().all(|(s, p)| p == &payload(6, *s)));
        assert_eq!(store.recovery_report().channels[0].torn_tail, None);
        store.close().unwrap();
        assert_eq!(fs::read(&idx).unwrap(), honest, "close rewrites the true index");
    }
}
