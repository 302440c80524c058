//! Retention: append throughput with a limit that forces deletions every
//! few segments vs no limit, and the time of one compaction pass over 100
//! channels.
//!
//! `cargo bench --bench retention`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spool::{Limits, Options, Store, SyncPolicy};

const SEGMENT: u64 = 1 << 20;

fn append(c: &mut Criterion) {
    let payload = [0x33u8; 100];
    let batch: Vec<&[u8]> = vec![&payload; 100];
    let mut group = c.benchmark_group("retention_append");
    group.throughput(Throughput::Elements(100));
    // ~7700 messages of 100 B per 1 MiB segment: keep about three segments.
    for (label, limits) in [
        ("no_limit", Limits::default()),
        ("max_msgs_3_segments", Limits::default().max_msgs(23_000)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options::default()
            .segment_size(SEGMENT)
            .sync_policy(SyncPolicy::Never)
            .compact_interval(Duration::from_millis(10));
        let store = Store::open(dir.path(), opts).expect("open");
        let mut ch = store.channel_with_limits("c", limits).expect("channel");
        let mut published = 0u64;
        group.bench_function(BenchmarkId::new("batch100", label), |b| {
            b.iter_custom(|iters| {
                // Without a limit the disk fills: start over now and then,
                // outside the timing.
                if published > 5_000_000 && limits.max_msgs.is_none() {
                    store.delete_channel("c").expect("delete");
                    ch = store.channel_with_limits("c", limits).expect("channel");
                    published = 0;
                }
                published += iters * 100;
                let start = Instant::now();
                for _ in 0..iters {
                    ch.publish_batch(&batch).expect("publish");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn pass_over_100_channels(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options::default()
        .segment_size(64 << 10)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600));
    let store = Store::open(dir.path(), opts).expect("open");
    let payload = [0x44u8; 100];
    let batch: Vec<&[u8]> = vec![&payload; 100];
    let channels: Vec<_> = (0..100)
        .map(|i| {
            store
                .channel_with_limits(&format!("c{i}"), Limits::default().max_msgs(1000))
                .expect("channel")
        })
        .collect();
    for ch in &channels {
        for _ in 0..10 {
            ch.publish_batch(&batch).expect("publish");
        }
    }
    let mut group = c.benchmark_group("compaction_pass");
    group.sample_size(20);
    group.bench_function("100_channels_idle", |b| b.iter(|| store.compact_now().expect("pass")));
    group.bench_function("100_channels_each_trimming", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for ch in &channels {
                    for _ in 0..10 {
                        ch.publish_batch(&batch).expect("publish");
                    }
                }
                let start = Instant::now();
                let report = store.compact_now().expect("pass");
                total += start.elapsed();
                assert_eq!(report.channels_trimmed, 100);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, append, pass_over_100_channels);
criterion_main!(benches);
