//! Cancellation safety: receive futures dropped at random points (in a
//! `select!` with a timer, or after a random number of polls by a tiny
//! executor in this file) lose and skip nothing, for subscribers and queue
//! members; a dropped durable-publish future leaves its message published.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::StreamExt;
use spool::{Options, QueueOptions, StartAt, Store, SyncPolicy};

const DEADLINE: Duration = Duration::from_secs(120);

fn open(policy: SyncPolicy) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(1 << 20).sync_policy(policy);
    let store = Store::open(dir.path(), opts).unwrap();
    (dir, store)
}

/// Publishes `n` messages from a tokio task with random pauses, so that the
/// receiver sometimes finds one at once and sometimes waits.
fn spawn_publisher(ch: spool::Channel, n: u64, seed: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rng = common::Rng(seed);
        for i in 0..n {
            ch.publish(&i.to_le_bytes()).unwrap();
            match rng.below(8) {
                0 => tokio::time::sleep(Duration::from_micros(rng.below(800))).await,
                1 | 2 => tokio::task::yield_now().await,
                _ => {}
            }
        }
    })
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// On this runtime the publisher and the receiver share the one thread, so
/// a receive is cancelled only between the publisher's steps.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `select!` between a receive and a timer of random length: whenever the
/// timer wins, the receive future is dropped. The subscriber still sees
/// every message once, in order.
#[test]
fn subscriber_receive_cancelled_by_a_timer_loses_nothing_multi_thread() {
    subscriber_receive_cancelled_by_a_timer(multi_thread());
}

#[test]
fn subscriber_receive_cancelled_by_a_timer_loses_nothing_current_thread() {
    subscriber_receive_cancelled_by_a_timer(current_thread());
}

fn subscriber_receive_cancelled_by_a_timer(rt: tokio::runtime::Runtime) {
    const N: u64 = 5_000;
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    let cancelled = rt.block_on(async {
        let publisher = spawn_publisher(ch.clone(), N, 1);
        let mut rng = common::Rng(2);
        let mut cancelled = 0u64;
        let mut next = 1;
        let mut stream = sub.stream();
        let receive = async {
            while next <= N {
                let timer = tokio::time::sleep(Duration::from_micros(rng.below(400)));
                let got = if rng.below(2) == 0 {
                    tokio::select! {
                        m = sub.recv_async() => Some(m),
                        _ = timer => None,
                    }
                } else {
                    tokio::select! {
                        m = stream.next() => m,
                        _ = timer => None,
                    }
                };
                match got {
                    Some(m) => {
                        assert_eq!(m.unwrap().seq(), next, "lost, skipped or repeated");
                        next += 1;
                    }
                    None => cancelled += 1,
                }
            }
        };
        tokio::time::timeout(DEADLINE, receive).await.expect("stalled");
        publisher.await.unwrap();
        cancelled
    });
    assert!(cancelled > 50, "only {cancelled} receives were cancelled");
    assert!(sub.try_recv().unwrap().is_none());
}

/// The same for a queue group: a dropped receive hands out nothing, so no
/// message waits for an ack deadline (ack_wait is long here) and none is
/// delivered twice.
#[test]
fn queue_receive_cancelled_by_a_timer_hands_out_nothing_multi_thread() {
    queue_receive_cancelled_by_a_timer(multi_thread());
}

#[test]
fn queue_receive_cancelled_by_a_timer_hands_out_nothing_current_thread() {
    queue_receive_cancelled_by_a_timer(current_thread());
}

fn queue_receive_cancelled_by_a_timer(rt: tokio::runtime::Runtime) {
    const N: u64 = 5_000;
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("c").unwrap();
    let opts = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(4);
    let member = ch.queue_subscribe_with("g", StartAt::First, opts).unwrap();
    let cancelled = rt.block_on(async {
        let publisher = spawn_publisher(ch.clone(), N, 3);
        let mut rng = common::Rng(4);
        let mut cancelled = 0u64;
        let mut next = 1;
        let mut stream = member.stream();
        let receive = async {
            while next <= N {
                let timer = tokio::time::sleep(Duration::from_micros(rng.below(400)));
                let got = if rng.below(2) == 0 {
                    tokio::select! {
                        d = member.recv_async() => Some(d),
                        _ = timer => None,
                    }
                } else {
                    tokio::select! {
                        d = stream.next() => d,
                        _ = timer => None,
                    }
                };
                match got {
                    Some(d) => {
                        let d = d.unwrap();
                        assert_eq!((d.seq(), d.delivery_count()), (next, 1), "lost or handed out twice");
                        member.ack(d.seq()).unwrap();
                        next += 1;
                    }
                    None => cancelled += 1,
                }
            }
        };
        tokio::time::timeout(DEADLINE, receive).await.expect("stalled");
        publisher.await.unwrap();
        cancelled
    });
    assert!(cancelled > 50, "only {cancelled} receives were cancelled");
    assert_eq!(member.ack_floor(), N);
}

/// A tiny executor: polls `fut` at most `polls` times with a waker that
/// counts its wake-ups, running `between` before each poll; the future is
/// dropped if it is still pending after that.
fn poll_then_drop<F: Future>(fut: F, polls: u64, mut between: impl FnMut()) -> Option<F::Output> {
    struct Count(AtomicU64);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let waker = Waker::from(Arc::new(Count(AtomicU64::new(0))));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    for _ in 0..polls {
        between();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Deterministic cancellation at random points: each receive future is
/// polled 0 to 3 times, with a publish or not before each poll, then
/// dropped if still pending.
#[test]
fn receives_dropped_after_random_polls_lose_nothing() {
    const N: u64 = 20_000;
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    let opts = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(1);
    let member = ch.queue_subscribe_with("g", StartAt::First, opts).unwrap();
    let mut rng = common::Rng(common::seed());
    let (mut published, mut next_sub, mut next_member, mut dropped) = (0u64, 1u64, 1u64, 0u64);
    let mut rounds = 0u64;
    while next_sub <= N || next_member <= N {
        rounds += 1;
        assert!(rounds < 100 * N, "no progress: a dropped future held a message back");
        let mut maybe_publish = |rng: &mut common::Rng| {
            if published < N && rng.below(3) == 0 {
                published = ch.publish(&published.to_le_bytes()).unwrap();
            }
        };
        let polls = rng.below(4);
        let mut r = common::Rng(rng.next());
        match poll_then_drop(sub.recv_async(), polls, || maybe_publish(&mut r)) {
            Some(m) => {
                assert_eq!(m.unwrap().seq(), next_sub, "subscriber lost, skipped or repeated");
                next_sub += 1;
            }
            None => dropped += 1,
        }
        let polls = rng.below(4);
        let mut r = common::Rng(rng.next());
        let got = if rng.below(2) == 0 {
            poll_then_drop(member.recv_async(), polls, || maybe_publish(&mut r))
        } else {
            let mut s = member.stream();
            poll_then_drop(s.next(), polls, || maybe_publish(&mut r)).map(Option::unwrap)
        };
        match got {
            Some(d) => {
                let d = d.unwrap();
                assert_eq!(
                    (d.seq(), d.delivery_count()),
                    (next_member, 1),
                    "member lost or repeated"
                );
                member.ack(d.seq()).unwrap();
                next_member += 1;
            }
            None => dropped += 1,
        }
        if published < N && rng.below(4) == 0 {
            published = ch.publish(&published.to_le_bytes()).unwrap();
        }
    }
    assert!(dropped > 1000, "only {dropped} futures were dropped pending");
    assert_eq!(member.ack_floor(), N);
}

/// Dropping a durable-publish future does not unpublish: the message is
/// there, and awaiting `synced_through` makes it durable.
#[test]
fn a_dropped_durable_publish_stays_published() {
    let (_dir, store) = open(SyncPolicy::Never);
    let ch = store.channel("c").unwrap();
    drop(ch.publish_durable_async(b"kept"));
    assert_eq!(ch.last_seq(), 1);
    assert_eq!(ch.get(1).unwrap().payload(), b"kept");
    futures::executor::block_on(ch.synced_through(1)).unwrap();
    assert!(ch.durable_seq() >= 1);
}
