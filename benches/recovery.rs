//! Open time after a clean close and after a torn tail (the state a crash
//! leaves), at 1, 4 and 16 segments per channel and 1 and 100 channels:
//! open time should stay flat in the amount of sealed data.
//!
//! `cargo bench --bench recovery`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use spool::{Options, Store, SyncPolicy};

const SEGMENT: u64 = 1 << 20;

fn opts() -> Options {
    Options::default()
        .segment_size(SEGMENT)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600))
}

/// The last segment of each channel as a crash leaves it: its index file
/// gone, no durable slot or clean mark, half a record after the last one.
type TornFiles = Vec<(std::path::PathBuf, Vec<u8>)>;

/// A store with `channels` channels of about `segments` full segments each,
/// and (with `torn`) the crash image of each last segment.
fn build(channels: usize, segments: u64, torn: bool) -> (tempfile::TempDir, TornFiles) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let payload = [0x55u8; 100];
    let batch: Vec<&[u8]> = vec![&payload; 1000];
    let per_segment = SEGMENT / 128;
    for c in 0..channels {
        let ch = store.channel(&format!("c{c}")).expect("channel");
        for _ in 0..(segments * per_segment).div_ceil(1000) {
            ch.publish_batch(&batch).expect("publish");
        }
    }
    store.close().expect("close");
    let mut images = Vec::new();
    if torn {
        for c in 0..channels {
            let chan_dir = dir.path().join("channels").join((c + 1).to_string());
            let mut segs: Vec<_> = std::fs::read_dir(&chan_dir)
                .expect("dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect();
            segs.sort();
            let last = segs.pop().expect("a segment");
            let mut bytes = std::fs::read(&last).expect("read");
            // Drop both slots (no durable watermark, no clean mark) and
            // write half a record after the last one.
            bytes[64..128].fill(0);
            let end = bytes.iter().rposition(|&b| b != 0).map_or(128, |p| (p + 8) & !7);
            bytes[end..end + 12].copy_from_slice(&[0x99; 12]);
            images.push((last, bytes));
        }
    }
    (dir, images)
}

/// Puts the crash images back (recovery repaired them last time).
fn restore(images: &TornFiles) {
    for (path, bytes) in images {
        let _ = std::fs::remove_file(path.with_extension("idx"));
        std::fs::write(path, bytes).expect("write");
    }
}

fn open_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    for channels in [1usize, 100] {
        for segments in [1u64, 4, 16] {
            if channels == 100 && segments == 16 {
                continue; // 1.6 GB of data: the 1-channel rows already show the trend
            }
            for torn in [false, true] {
                let (dir, images) = build(channels, segments, torn);
                let label = format!("{channels}ch_{segments}seg_{}", if torn { "torn" } else { "clean" });
                group.bench_function(BenchmarkId::from_parameter(label), |b| {
                    b.iter_batched(
                        || restore(&images),
                        |()| {
                            let store = Store::open(dir.path(), opts()).expect("open");
                            assert_eq!(store.recovery_report().channels.len(), channels);
                            // Returned, so that closing it is not measured.
                            store
                        },
                        BatchSize::PerIteration,
                    )
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, open_time);
criterion_main!(benches);
