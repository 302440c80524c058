//! Read throughput: sequential scan (owned messages and lent ones), random
//! get, time lookup, and a reader tailing a channel while a writer appends.
//!
//! `cargo bench --bench read`

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spool::{Options, Store, SyncPolicy};

const MESSAGES: u64 = 1_000_000;

fn read(c: &mut Criterion) {
    for payload in [100usize, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).expect("open");
        let ch = store.channel("bench").expect("channel");
        let data = vec![0x5Au8; payload];
        let batch: Vec<&[u8]> = vec![&data; 1000];
        let count = if payload > 500 { MESSAGES / 4 } else { MESSAGES };
        for _ in 0..count / 1000 {
            ch.publish_batch(&batch).expect("publish");
        }
        drop(ch);
        store.close().expect("close");
        // Reopened, so sealed segments are read as a restarted process would.
        let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).expect("open");
        let ch = store.channel("bench").expect("channel");
        let first_ts = ch.get(1).expect("get").timestamp();
        let last_ts = ch.get(count).expect("get").timestamp();

        let mut group = c.benchmark_group("read");
        group.throughput(Throughput::Elements(count));
        group.sample_size(10);
        group.bench_with_input(BenchmarkId::new("sequential", payload), &payload, |b, _| {
            b.iter(|| {
                let mut sum = 0usize;
                for m in ch.read_from(1).expect("read") {
                    sum += m.expect("message").payload().len();
                }
                assert_eq!(sum, count as usize * payload);
            })
        });
        group.bench_with_input(BenchmarkId::new("sequential_lent", payload), &payload, |b, _| {
            b.iter(|| {
                let mut sum = 0usize;
                let mut messages = ch.read_from(1).expect("read");
                while let Some(m) = messages.next_ref() {
                    sum += m.expect("message").payload().len();
                }
                assert_eq!(sum, count as usize * payload);
            })
        });
        group.throughput(Throughput::Elements(1));
        group.sample_size(50);
        let mut x = 88172645463325252u64;
        group.bench_with_input(BenchmarkId::new("random_get", payload), &payload, |b, _| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let seq = 1 + x % count;
                ch.get(seq).expect("get").seq()
            })
        });
        group.bench_with_input(BenchmarkId::new("time_lookup", payload), &payload, |b, _| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let ts = first_ts + x % (last_ts - first_ts + 1);
                ch.seq_at_or_after(ts).expect("lookup")
            })
        });
        group.finish();
    }
}

/// A writer publishes batches of 100 while a reader follows with
/// `read_from` + `next_ref`; the time is until the reader has seen them all.
fn tailing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).expect("open");
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1)).sample_size(10);
    group.bench_function(BenchmarkId::new("tailing", 100), |b| {
        b.iter_custom(|iters| {
            let _ = store.delete_channel("tail");
            let ch = store.channel("tail").expect("channel");
            let data = [0x3Cu8; 100];
            let batch: Vec<&[u8]> = vec![&data; 100];
            let start = Instant::now();
            std::thread::scope(|s| {
                let writer = &ch;
                s.spawn(move || {
                    for _ in 0..iters.div_ceil(100) {
                        writer.publish_batch(&batch).expect("publish");
                    }
                });
                let mut seen = 0u64;
                let mut messages = ch.read_from(1).expect("read");
                while seen < iters {
                    match messages.next_ref() {
                        Some(m) => {
                            assert_eq!(m.expect("message").payload().len(), 100);
                            seen += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, read, tailing);
criterion_main!(benches);
