//! Append throughput: payload size x single/batch of 100 x sync policy, and
//! 1, 2 and 4 publishing threads (at 100 bytes, to keep the run short).
//!
//! `cargo bench --bench append`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use spool::{Channel, Options, Store, SyncPolicy};

/// A store whose channel is replaced (outside the timed part) before it
/// grows past about 1 GiB, so long runs do not fill the disk.
struct Target {
    _dir: tempfile::TempDir,
    store: Store,
    channel: Channel,
    published: u64,
    max_msgs: u64,
}

impl Target {
    fn new(policy: SyncPolicy, payload: usize) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options::default().sync_policy(policy).max_payload(64 << 10);
        let store = Store::open(dir.path(), opts).expect("open");
        let channel = store.channel("bench").expect("channel");
        Target {
            _dir: dir,
            store,
            channel,
            published: 0,
            max_msgs: (1u64 << 30) / (payload as u64 + 24),
        }
    }

    fn make_room(&mut self, next: u64) {
        if self.published + next > self.max_msgs {
            self.store.delete_channel("bench").expect("delete");
            self.channel = self.store.channel("bench").expect("channel");
            self.published = 0;
        }
        self.published += next;
    }
}

fn policy_name(policy: SyncPolicy) -> &'static str {
    match policy {
        SyncPolicy::Never => "never",
        SyncPolicy::Always => "always",
        _ => "interval",
    }
}

/// `threads` threads each publish `iters` calls of `batch` messages.
fn bench_case(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    policy: SyncPolicy,
    payload: usize,
    batch: usize,
    threads: usize,
) {
    let data = vec![0xA5u8; payload];
    let calls: Vec<&[u8]> = vec![&data; batch];
    let kind = if batch == 1 { "single" } else { "batch100" };
    let id = BenchmarkId::new(format!("{kind}/{threads}t"), payload);
    group.throughput(Throughput::Elements((batch * threads) as u64));
    group.bench_with_input(id, &payload, |b, &p| {
        let mut t = Target::new(policy, p);
        b.iter_custom(|iters| {
            t.make_room(iters * (batch * threads) as u64);
            let ch = &t.channel;
            let calls = &calls;
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(move || {
                        for _ in 0..iters {
                            if batch == 1 {
                                ch.publish(calls[0]).expect("publish");
                            } else {
                                ch.publish_batch(calls).expect("publish");
                            }
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
}

fn append(c: &mut Criterion) {
    for policy in [
        SyncPolicy::Never,
        SyncPolicy::Interval(Duration::from_secs(1)),
        SyncPolicy::Always,
    ] {
        let mut group = c.benchmark_group(format!("append/{}", policy_name(policy)));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        if policy == SyncPolicy::Always {
            group.sample_size(10);
        }
        for payload in [16usize, 100, 1024, 16 << 10] {
            for batch in [1, 100] {
                bench_case(&mut group, policy, payload, batch, 1);
            }
        }
        for threads in [2, 4] {
            for batch in [1, 100] {
                bench_case(&mut group, policy, 100, batch, threads);
            }
        }
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
