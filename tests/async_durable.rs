//! Durable publish futures resolve only once the data is durable: on the
//! simulated storage, a power cut taken right after a future resolves
//! (whatever each unsynced page then keeps: old bytes, new bytes or a torn
//! mix) recovers a store that holds the message, with the same payload.
//! Checked for `publish_durable_async`, `publish_batch_durable_async` and
//! `synced_through`, under each sync policy, on futures' executor and on
//! tokio's current-thread and multi-thread runtimes with concurrent tasks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{open_sim, payload, read_all, Rng};
use parking_lot::Mutex;
use spool::sim::SimStorage;
use spool::{Options, SyncPolicy};

/// What a power cut must keep: the messages `first..=last` with these
/// payloads, in the file system `after` the cut.
struct Cut {
    after: SimStorage,
    first: u64,
    payloads: Vec<Vec<u8>>,
    context: String,
}

impl Cut {
    fn check(self) {
        let store = open_sim(&self.after, options(SyncPolicy::Never)).expect("reopen after the power cut");
        let got = read_all(&store, "c");
        let last = self.first + self.payloads.len() as u64 - 1;
        assert!(
            got.len() as u64 >= last,
            "{}: seqs {}..={last} resolved durable, but only {} survived the power cut",
            self.context,
            self.first,
            got.len()
        );
        for (i, p) in self.payloads.iter().enumerate() {
            let seq = self.first + i as u64;
            assert_eq!(&got[seq as usize - 1], &(seq, p.clone()), "{}: seq {seq}", self.context);
        }
    }
}

fn options(policy: SyncPolicy) -> Options {
    common::small(1 << 16).sync_policy(policy)
}

/// One store per policy; each round publishes a few messages plainly
/// (written, not durable), then awaits one of the three durable futures and
/// cuts the power at once, with a seed of its own.
#[test]
fn a_power_cut_right_after_resolution_keeps_the_message() {
    let policies = [
        SyncPolicy::Never,
        SyncPolicy::Interval(Duration::from_secs(3600)),
        SyncPolicy::Always,
    ];
    for (p, policy) in policies.into_iter().enumerate() {
        let sim = SimStorage::new();
        let store = open_sim(&sim, options(policy)).unwrap();
        let ch = store.channel("c").unwrap();
        let mut rng = Rng(p as u64 + 11);
        for round in 0..60u64 {
            for _ in 0..rng.below(4) {
                let seq = ch.last_seq() + 1;
                ch.publish(&payload(9, seq)).unwrap();
            }
            let first = ch.last_seq() + 1;
            let payloads: Vec<Vec<u8>> = match round % 3 {
                0 => {
                    let p = payload(1, first);
                    let seq = futures::executor::block_on(ch.publish_durable_async(&p)).unwrap();
                    assert_eq!(seq, first);
                    vec![p]
                }
                1 => {
                    let n = 1 + rng.below(30);
                    let batch: Vec<Vec<u8>> = (first..first + n).map(|s| payload(2, s)).collect();
                    let range = futures::executor::block_on(ch.publish_batch_durable_async(&batch)).unwrap();
                    assert_eq!(range, first..=first + n - 1);
                    batch
                }
                _ => {
                    let p = payload(3, first);
                    assert_eq!(ch.publish(&p).unwrap(), first);
                    futures::executor::block_on(ch.synced_through(first)).unwrap();
                    vec![p]
                }
            };
            let seed = (p as u64) << 32 | round;
            Cut {
                after: sim.power_loss(seed),
                first,
                payloads,
                context: format!("policy {policy:?}, round {round}, power-loss seed {seed}"),
            }
            .check();
        }
    }
}

/// Concurrent tasks publish durably on one channel; each takes a power cut
/// the moment its future resolves. The cuts are checked after the run.
fn concurrent_tasks(rt: tokio::runtime::Runtime, label: &str) {
    const TASKS: u64 = 6;
    const EACH: u64 = 20;
    let sim = SimStorage::new();
    let store = open_sim(&sim, options(SyncPolicy::Never)).unwrap();
    let ch = store.channel("c").unwrap();
    let cuts = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (ch, sim, cuts) = (ch.clone(), sim.clone(), Arc::clone(&cuts));
                tokio::spawn(async move {
                    for i in 0..EACH {
                        // Plain publishes from this task interleave with the
                        // durable ones of the others.
                        ch.publish(b"plain").unwrap();
                        let p = payload(t, i);
                        let seq = ch.publish_durable_async(&p).await.unwrap();
                        let seed = t << 32 | i;
                        let after = sim.power_loss(seed);
                        cuts.lock().push((after, seq, p, seed));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let cuts = std::mem::take(&mut *cuts.lock());
    assert_eq!(cuts.len() as u64, TASKS * EACH);
    for (after, seq, p, seed) in cuts {
        Cut {
            after,
            first: seq,
            payloads: vec![p],
            context: format!("{label}: seq {seq}, power-loss seed {seed}"),
        }
        .check();
    }
}

#[test]
fn concurrent_durable_publishes_on_tokio_multi_thread_survive_power_cuts() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    concurrent_tasks(rt, "multi-thread");
}

#[test]
fn concurrent_durable_publishes_on_tokio_current_thread_survive_power_cuts() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    concurrent_tasks(rt, "current-thread");
}
