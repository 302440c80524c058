//! Subscribers: publish→receive latency across threads (with percentiles),
//! commit rate with a 64-byte state, queue group throughput.
//!
//! `cargo bench --bench subscribe`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spool::{Options, QueueOptions, StartAt, Store, SyncPolicy};

fn open(policy: SyncPolicy) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().sync_policy(policy)).expect("open");
    (dir, store)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// One-way latency: the receiver reads the send time (ns since a shared
/// origin) from the payload. Criterion times the round trip (publish, then
/// wait until the receiver has it); the one-way percentiles are printed.
fn latency(c: &mut Criterion) {
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("lat").expect("channel");
    let sub = ch.subscribe("rx", StartAt::New).expect("subscribe");
    let origin = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(1 << 20)));
    let rx = {
        let (received, samples) = (Arc::clone(&received), Arc::clone(&samples));
        std::thread::spawn(move || loop {
            let Ok(m) = sub.recv() else { return };
            let sent = u64::from_le_bytes(m.payload().try_into().unwrap_or([0; 8]));
            if sent == u64::MAX {
                return;
            }
            let now = origin.elapsed().as_nanos() as u64;
            samples.lock().push(now.saturating_sub(sent));
            received.store(m.seq(), Ordering::Release);
        })
    };
    let mut group = c.benchmark_group("subscribe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_to_receive_round_trip", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let sent = origin.elapsed().as_nanos() as u64;
                let seq = ch.publish(&sent.to_le_bytes()).expect("publish");
                while received.load(Ordering::Acquire) < seq {
                    std::hint::spin_loop();
                }
            }
            start.elapsed()
        })
    });
    group.finish();
    ch.publish(&u64::MAX.to_le_bytes()).expect("publish");
    rx.join().expect("receiver");
    let mut s = samples.lock().clone();
    s.sort_unstable();
    eprintln!(
        "publish->receive one-way latency over {} messages: p50 {:.2} us, p99 {:.2} us, p999 {:.2} us",
        s.len(),
        percentile(&s, 0.50) as f64 / 1e3,
        percentile(&s, 0.99) as f64 / 1e3,
        percentile(&s, 0.999) as f64 / 1e3
    );
}

fn commits(c: &mut Criterion) {
    let state = [0x42u8; 64];
    let mut group = c.benchmark_group("commit64");
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        let label = if policy == SyncPolicy::Always {
            "sync_each"
        } else {
            "no_sync"
        };
        let (_dir, store) = open(policy);
        let ch = store.channel("c").expect("channel");
        let batch: Vec<&[u8]> = vec![b"m"; 1000];
        let sub = ch.subscribe("s", StartAt::First).expect("subscribe");
        if policy == SyncPolicy::Always {
            group.sample_size(10).measurement_time(Duration::from_secs(3));
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("commit", label), |b| {
            b.iter_custom(|iters| {
                // Messages to commit against, made durable outside the timing.
                let (pos, _) = sub.committed();
                while ch.last_seq() < pos + iters {
                    ch.publish_batch(&batch).expect("publish");
                }
                ch.sync().expect("sync");
                let start = Instant::now();
                for i in 1..=iters {
                    sub.commit(pos + i, &state).expect("commit");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn queue_group(c: &mut Criterion) {
    const N: u64 = 20_000;
    let mut group = c.benchmark_group("queue_group");
    group.sample_size(10).throughput(Throughput::Elements(N));
    for members in [2usize, 4] {
        group.bench_function(BenchmarkId::new("members", members), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, store) = open(SyncPolicy::Never);
                    let ch = store.channel("q").expect("channel");
                    let batch: Vec<&[u8]> = vec![b"job"; 1000];
                    for _ in 0..N / 1000 {
                        ch.publish_batch(&batch).expect("publish");
                    }
                    ch.sync().expect("sync");
                    let done = Arc::new(AtomicU64::new(0));
                    let opts = QueueOptions::default()
                        .ack_wait(Duration::from_secs(60))
                        .max_in_flight(256);
                    let start = Instant::now();
                    let workers: Vec<_> = (0..members)
                        .map(|_| {
                            let m = ch
                                .queue_subscribe_with("g", StartAt::First, opts.clone())
                                .expect("join");
                            let done = Arc::clone(&done);
                            std::thread::spawn(move || {
                                while done.load(Ordering::Acquire) < N {
                                    if let Some(d) = m.try_recv().expect("recv") {
                                        m.ack(d.seq()).expect("ack");
                                        done.fetch_add(1, Ordering::AcqRel);
                                    }
                                }
                            })
                        })
                        .collect();
                    for w in workers {
                        w.join().expect("worker");
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, latency, commits, queue_group);
criterion_main!(benches);
