//! The async API on tokio, each next to its blocking equivalent:
//!
//! - publish→receive latency across tasks (`recv_async`), with one-way
//!   percentiles printed as in `subscribe.rs` (whose
//!   `subscribe/publish_to_receive_round_trip` is the blocking equivalent);
//! - consumer throughput: draining a 100k-message backlog through
//!   `Subscriber::stream`, and through blocking `recv`;
//! - durable publish throughput under `SyncPolicy::Always` with 1, 8 and 64
//!   concurrent tasks (`publish_durable_async`), and with as many threads
//!   blocking in `publish`: group commit lets concurrent publishers share
//!   each fdatasync.
//!
//! `cargo bench -p spool-benches --bench async`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use spool::{Options, StartAt, Store, SyncPolicy};

fn open(policy: SyncPolicy) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().sync_policy(policy)).expect("open");
    (dir, store)
}

/// Two workers: the publishing and the receiving task run in parallel, as
/// the blocking bench's two threads do.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// One-way latency from a publishing task to a task waiting in
/// `recv_async`: the receiver reads the send time (ns since a shared origin)
/// from the payload. Criterion times the round trip (publish, then yield
/// until the receiver has it); the one-way percentiles are printed.
fn latency(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("lat").expect("channel");
    let sub = ch.subscribe("rx", StartAt::New).expect("subscribe");
    let origin = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let rx = {
        let received = Arc::clone(&received);
        rt.spawn(async move {
            let mut samples = Vec::with_capacity(1 << 20);
            loop {
                let Ok(m) = sub.recv_async().await else { break };
                let sent = u64::from_le_bytes(m.payload().try_into().unwrap_or([0; 8]));
                if sent == u64::MAX {
                    break;
                }
                let now = origin.elapsed().as_nanos() as u64;
                samples.push(now.saturating_sub(sent));
                received.store(m.seq(), Ordering::Release);
            }
            samples
        })
    };
    let mut group = c.benchmark_group("async_subscribe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_to_recv_async_round_trip", |b| {
        b.iter_custom(|iters| {
            let (ch, received) = (ch.clone(), Arc::clone(&received));
            let publisher = rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let sent = origin.elapsed().as_nanos() as u64;
                    let seq = ch.publish(&sent.to_le_bytes()).expect("publish");
                    while received.load(Ordering::Acquire) < seq {
                        tokio::task::yield_now().await;
                    }
                }
                start.elapsed()
            });
            rt.block_on(publisher).expect("publisher")
        })
    });
    group.finish();
    ch.publish(&u64::MAX.to_le_bytes()).expect("publish");
    let mut s = rt.block_on(rx).expect("receiver");
    s.sort_unstable();
    eprintln!(
        "publish->recv_async one-way latency across tasks over {} messages: p50 {:.2} us, p99 {:.2} us, p999 {:.2} us",
        s.len(),
        percentile(&s, 0.50) as f64 / 1e3,
        percentile(&s, 0.99) as f64 / 1e3,
        percentile(&s, 0.999) as f64 / 1e3
    );
}

/// Draining a backlog: a fresh subscriber per iteration reads all of it,
/// through `stream()` on a tokio task or through blocking `recv`.
fn consumer(c: &mut Criterion) {
    const N: u64 = 100_000;
    let rt = runtime();
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("backlog").expect("channel");
    let batch: Vec<[u8; 100]> = vec![[0x5A; 100]; 1000];
    for _ in 0..N / 1000 {
        ch.publish_batch(&batch).expect("publish");
    }
    let mut group = c.benchmark_group("consumer_drain_100k");
    group.sample_size(10).throughput(Throughput::Elements(N));
    for kind in ["stream", "blocking_recv"] {
        group.bench_function(kind, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sub = ch.subscribe("drain", StartAt::First).expect("subscribe");
                    let start = Instant::now();
                    let sub = if kind == "stream" {
                        rt.block_on(rt.spawn(async move {
                            let mut stream = sub.stream();
                            for _ in 0..N {
                                stream.next().await.expect("item").expect("message");
                            }
                            drop(stream);
                            sub
                        }))
                        .expect("consumer")
                    } else {
                        for _ in 0..N {
                            sub.recv().expect("message");
                        }
                        sub
                    };
                    total += start.elapsed();
                    sub.unsubscribe().expect("unsubscribe");
                }
                total
            })
        });
    }
    group.finish();
}

/// Durable publishes under `SyncPolicy::Always`: `n` tasks each await
/// `publish_durable_async` in a loop, or `n` threads each call `publish`
/// (which blocks until durable). Elements are messages made durable.
fn durable(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_publish_always");
    group.sample_size(10);
    let payload = [0xA5u8; 100];
    for n in [1u64, 8, 64] {
        group.throughput(Throughput::Elements(n));
        let (_dir, store) = open(SyncPolicy::Always);
        let ch = store.channel("d").expect("channel");
        group.bench_function(BenchmarkId::new("async_tasks", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let ch = ch.clone();
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    ch.publish_durable_async(&payload).await.expect("publish");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
                start.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("blocking_threads", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..n {
                        s.spawn(|| {
                            for _ in 0..iters {
                                ch.publish(&payload).expect("publish");
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, latency, consumer, durable);
criterion_main!(benches);
