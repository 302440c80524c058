//! Queue-group receive + ack throughput: 1, 2 and 4 members (threads) on
//! 100-byte messages published beforehand, acking each message or with
//! `ack_through` every 100 deliveries. `SyncPolicy::Never`: an ack costs
//! no write (the group's record goes with the next sync). Then under
//! `SyncPolicy::Always`, where an ack is durable when it returns.
//!
//! Run: `cargo bench -p spool-benches --bench queue`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spool::{Options, QueueOptions, StartAt, Store, SyncPolicy};

const N: u64 = 200_000;

#[derive(Clone, Copy)]
enum Acks {
    Each,
    Through100,
}

/// Spins for `work`: a job's processing, so the bench can show how
/// throughput grows with members once messages take real work.
fn process(work: Duration) {
    if work.is_zero() {
        return;
    }
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn run(members: usize, acks: Acks, policy: SyncPolicy, n: u64) -> Duration {
    run_with_work(members, acks, policy, n, Duration::ZERO)
}

fn run_with_work(members: usize, acks: Acks, policy: SyncPolicy, n: u64, work: Duration) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Options::default().sync_policy(policy)).expect("open");
    let ch = store.channel("q").expect("channel");
    let payload = [7u8; 100];
    let batch: Vec<&[u8]> = vec![&payload[..]; 1000];
    for _ in 0..n / 1000 {
        ch.publish_batch(&batch).expect("publish");
    }
    if !n.is_multiple_of(1000) {
        ch.publish_batch(&batch[..(n % 1000) as usize]).expect("publish");
    }
    ch.sync().expect("sync");
    let done = Arc::new(AtomicU64::new(0));
    let opts = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(256);
    let joined: Vec<_> = (0..members)
        .map(|_| {
            ch.queue_subscribe_with("g", StartAt::First, opts.clone())
                .expect("join")
        })
        .collect();
    let start = Instant::now();
    let workers: Vec<_> = joined
        .into_iter()
        .map(|m| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let (mut held, mut last) = (0u64, 0u64);
                while done.load(Ordering::Relaxed) < n {
                    match m.try_recv().expect("recv") {
                        Some(d) => {
                            process(work);
                            match acks {
                                Acks::Each => {
                                    m.ack(d.seq()).expect("ack");
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                                Acks::Through100 => {
                                    held += 1;
                                    last = d.seq();
                                    if held == 100 {
                                        let n = m.ack_through(last).expect("ack_through");
                                        done.fetch_add(n as u64, Ordering::Relaxed);
                                        held = 0;
                                    }
                                }
                            }
                        }
                        None if held > 0 => {
                            let n = m.ack_through(last).expect("ack_through");
                            done.fetch_add(n as u64, Ordering::Relaxed);
                            held = 0;
                        }
                        None => std::thread::yield_now(),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    start.elapsed()
}

fn receive_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_receive_ack");
    group.sample_size(10).throughput(Throughput::Elements(N));
    for (name, acks) in [("ack_each", Acks::Each), ("ack_through_100", Acks::Through100)] {
        for members in [1usize, 2, 4] {
            group.bench_function(BenchmarkId::new(name, members), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(members, acks, SyncPolicy::Never, N)).sum())
            });
        }
    }
    group.finish();
}

/// The same under `SyncPolicy::Always` (each ack durable when it
/// returns: one record and one sync per group of concurrent acks), on
/// fewer messages.
fn receive_ack_always(c: &mut Criterion) {
    const ALWAYS_N: u64 = 400;
    let mut group = c.benchmark_group("queue_receive_ack_always");
    group.sample_size(10).throughput(Throughput::Elements(ALWAYS_N));
    for (name, acks) in [("ack_each", Acks::Each), ("ack_through_100", Acks::Through100)] {
        for members in [1usize, 2] {
            group.bench_function(BenchmarkId::new(name, members), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run(members, acks, SyncPolicy::Always, ALWAYS_N))
                        .sum()
                })
            });
        }
    }
    group.finish();
}

/// Each message takes 2 µs of work (a spin): what members buy when jobs
/// do something. 1 and 2 members, on this 2-core machine.
fn receive_ack_with_work(c: &mut Criterion) {
    const WORK_N: u64 = 20_000;
    let mut group = c.benchmark_group("queue_receive_ack_work_2us");
    group.sample_size(10).throughput(Throughput::Elements(WORK_N));
    for members in [1usize, 2] {
        group.bench_function(BenchmarkId::new("ack_each", members), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run_with_work(members, Acks::Each, SyncPolicy::Never, WORK_N, Duration::from_micros(2)))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, receive_ack, receive_ack_always, receive_ack_with_work);
criterion_main!(benches);
