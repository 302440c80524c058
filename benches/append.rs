//! Append throughput: payload size x single/batch x sync policy.
//!
//! `cargo bench --bench append`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spool::{Channel, Options, Store, SyncPolicy};

/// A store whose channel is replaced (outside the timed part) before it
/// grows past `max_msgs`, so long runs do not fill the disk.
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
        let store = Store::open(dir.path(), Options::default().sync_policy(policy)).expect("open");
        let channel = store.channel("bench").expect("channel");
        Target {
            _dir: dir,
            store,
            channel,
            published: 0,
            max_msgs: (1u64 << 30) / payload as u64,
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

fn append(c: &mut Criterion) {
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        let name = match policy {
            SyncPolicy::Always => "append/always",
            _ => "append/never",
        };
        let mut group = c.benchmark_group(name);
        if policy == SyncPolicy::Always {
            group.sample_size(10).measurement_time(Duration::from_secs(3));
        }
        for payload in [100usize, 1024] {
            let data = vec![0xA5u8; payload];
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::new("single", payload), &payload, |b, &p| {
                let mut t = Target::new(policy, p);
                b.iter_custom(|iters| {
                    t.make_room(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        t.channel.publish(&data).expect("publish");
                    }
                    start.elapsed()
                })
            });
            let batch: Vec<&[u8]> = vec![&data; 100];
            group.throughput(Throughput::Elements(100));
            group.bench_with_input(BenchmarkId::new("batch100", payload), &payload, |b, &p| {
                let mut t = Target::new(policy, p);
                b.iter_custom(|iters| {
                    t.make_room(iters * 100);
                    let start = Instant::now();
                    for _ in 0..iters {
                        t.channel.publish_batch(&batch).expect("publish");
                    }
                    start.elapsed()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
